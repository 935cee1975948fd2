"""`wildix-ast provisioning serve`: the provisioning server (docs/provisioning.md)."""

from __future__ import annotations

import ipaddress
import logging
import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from wildix_ast.cli.console import out

app = typer.Typer(help="The provisioning server: phones' configuration files over HTTPS.",
                  no_args_is_help=True)

DEFAULT_STATE = Path("/var/lib/wildix-ast/runtime")


@app.command()
def serve(
    host: Annotated[str, typer.Option(
        envvar="WILDIX_AST_PROVISIONING_HOST", help="Address to listen on.")] = "0.0.0.0",
    port: Annotated[int | None, typer.Option(
        envvar="WILDIX_AST_PROVISIONING_PORT", min=1, max=65535,
        help="Default: the stored site's provisioning.port.")] = None,
    certificate: Annotated[Path | None, typer.Option(
        envvar="WILDIX_AST_PROVISIONING_CERT", help="The server's certificate (PEM, with "
        "its chain).")] = None,
    private_key: Annotated[Path | None, typer.Option(
        envvar="WILDIX_AST_PROVISIONING_KEY", help="Its private key (PEM).")] = None,
    state_dir: Annotated[Path | None, typer.Option(
        "--state-dir", envvar="WILDIX_AST_RUNTIME_STATE", show_envvar=True,
        help="The AMI service's state folder, whose bans file the bans go to.")]
    = DEFAULT_STATE,
    no_bans: Annotated[bool, typer.Option(
        "--no-bans", help="Count misses but ban no one (tests only).")] = False,
    never_ban: Annotated[list[str] | None, typer.Option(
        "--never-ban", help="A network (CIDR) never banned; repeat (loopback always).")]
    = None,
    templates: Annotated[Path | None, typer.Option(
        help="A folder of templates overriding templates/provisioning/.")] = None,
    db: Annotated[str | None, typer.Option(
        "--db", envvar="WILDIX_AST_DB", show_envvar=True,
        help="The store: a SQLite path or a database URL.")] = None,
    workers: Annotated[int, typer.Option(
        envvar="WILDIX_AST_PROVISIONING_WORKERS", min=0, max=64,
        help="Worker processes sharing the port (0: one per CPU; 1: no worker process, "
        "this one serves).")] = 0,
) -> None:
    """Run until stopped: serve each phone its configuration."""
    from wildix_ast.errors import ProvisioningError
    from wildix_ast.services.ami.security import LOOPBACK
    from wildix_ast.services.provisioning.guard import MISS_BOOK, Guard, MissBook
    from wildix_ast.services.provisioning.server import (
        Provisioner,
        ProvisioningHTTPServer,
        ProvisioningServerConfig,
        tls_context,
    )
    from wildix_ast.services.provisioning.workers import Heartbeat, listen, run_workers
    from wildix_ast.services.sdnotify import notify
    from wildix_ast.store import open_store

    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s")
    store = open_store(db)
    settings = store.export_site().provisioning
    base = settings.base_url()
    if base is None:
        raise ProvisioningError("provisioning.address is not set: phones would not know "
                                "where to fetch from (set it in the settings file)")
    tls = None
    if not settings.allow_http:
        if certificate is None or private_key is None:
            raise ProvisioningError("HTTPS needs --certificate and --private-key (or set "
                                    "provisioning.allow_http for plain HTTP)")
        try:
            tls = tls_context(certificate, private_key)
        except (OSError, ValueError) as exc:
            raise ProvisioningError(f"the TLS certificate or key: {exc}") from None
    try:
        kept = tuple(ipaddress.ip_network(n, strict=False) for n in never_ban or [])
    except ValueError as exc:
        raise ProvisioningError(f"--never-ban: {exc}") from None
    port = port or settings.port
    count = workers or os.cpu_count() or 1
    if count == 1:
        guard = Guard(None if no_bans else state_dir, threshold=settings.ban_after,
                      never_ban=LOOPBACK + kept)
        provisioner = Provisioner(ProvisioningServerConfig(store, base, guard, templates))
        try:
            server = ProvisioningHTTPServer((host, port), provisioner, tls)
        except OSError as exc:
            raise ProvisioningError(f"cannot listen on {host}:{port}: "
                                    f"{exc.strerror or exc}") from None

        def stop(*_: Any) -> None:
            threading.Thread(target=server.shutdown, daemon=True).start()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        notify("READY=1")
        out.print(f"provisioning server on {'https' if tls else 'http'}://{host}:"
                  f"{server.server_address[1]} (links: {base}/p/<credential>/)")
        try:
            server.serve_forever(poll_interval=0.5)
        finally:
            notify("STOPPING=1")
            server.server_close()
            provisioner.flush()  # the last second's fetches
            store.close()
        return
    try:
        listener = listen(host, port)
    except OSError as exc:
        raise ProvisioningError(f"cannot listen on {host}:{port}: "
                                f"{exc.strerror or exc}") from None
    store.close()  # each worker opens its own (no connection crosses a fork)
    # the workers' shared miss and enrolment counts: this run's, in a folder of its own
    book_folder = Path(tempfile.mkdtemp(prefix="wildix-ast-provisioning-"))

    def work(heartbeat: Heartbeat) -> None:
        own = open_store(db)
        book = MissBook(book_folder / MISS_BOOK)
        guard = Guard(None if no_bans else state_dir, threshold=settings.ban_after,
                      never_ban=LOOPBACK + kept, book=book)
        provisioner = Provisioner(ProvisioningServerConfig(own, base, guard, templates))
        server = ProvisioningHTTPServer((host, port), provisioner, tls, listener=listener,
                                        heartbeat=heartbeat)

        def stop(*_: Any) -> None:
            threading.Thread(target=server.shutdown, daemon=True).start()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        try:
            server.serve_forever(poll_interval=0.5)
        finally:
            server.server_close()
            provisioner.flush()  # the last second's fetches
            own.close()
            book.close()

    out.print(f"provisioning server on {'https' if tls else 'http'}://{host}:"
              f"{listener.getsockname()[1]}, {count} workers "
              f"(links: {base}/p/<credential>/)")
    try:
        run_workers(count, work, notify)
    finally:
        notify("STOPPING=1")
        listener.close()
        shutil.rmtree(book_folder, ignore_errors=True)
