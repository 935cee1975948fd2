"""`wildix-ast agi ...`: run the FastAGI service, check that it answers."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import signal
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from wildix_ast.calls import variables as v
from wildix_ast.calls.missed_calls import SPOOL_ENV, MailSpool, default_spool
from wildix_ast.cli.console import out
from wildix_ast.errors import ServiceError, SettingsError
from wildix_ast.services.agi.probe import probe
from wildix_ast.services.agi.routes import StoreLookup, default_routes
from wildix_ast.services.agi.server import (
    HEALTH_CHECK_TIMEOUT,
    HEALTH_ROUTE,
    OK,
    AgiServer,
    KeySource,
    Limits,
)
from wildix_ast.services.agi.voicemail_logins import (
    HANDSET_LOGINS_ENV,
    LOGINS_ENV,
    LoginGuard,
    default_path,
    handset_logins_path,
)
from wildix_ast.services.sdnotify import keep_alive, notify
from wildix_ast.store.vault import FASTAGI_KEY

app = typer.Typer(help="The FastAGI service: call-time decisions for the dialplan.",
                  no_args_is_help=True)

Host = Annotated[str, typer.Option("--host", envvar="WILDIX_AST_AGI_HOST", show_envvar=True,
                                   help="Address to listen on / to check.")]
Port = Annotated[int, typer.Option("--port", envvar="WILDIX_AST_AGI_PORT", show_envvar=True,
                                   min=0, max=65535, help="TCP port (Asterisk's default 4573).")]


@app.command()
def serve(
    host: Host = "127.0.0.1",
    port: Port = 4573,
    backlog: Annotated[int, typer.Option(min=16, max=65535, help="Listen queue length.")]
    = Limits.backlog,
    max_sessions: Annotated[int, typer.Option(min=1, help="Sessions at once before "
                                              "answering FAILED.")] = Limits.max_sessions,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log every session.")]
    = False,
    db: Annotated[str | None, typer.Option(
        "--db", envvar="WILDIX_AST_DB", show_envvar=True,
        help="The store (users' preferences): a SQLite path or a database URL.")] = None,
    mail_spool: Annotated[Path | None, typer.Option(
        "--mail-spool", envvar=SPOOL_ENV, show_envvar=True,
        help="Where missed-call mails are queued. Default: "
             "~/.local/share/wildix-ast/mail-spool.")] = None,
    voicemail_logins: Annotated[Path | None, typer.Option(
        "--voicemail-logins", envvar=LOGINS_ENV, show_envvar=True,
        help="Where wrong voicemail PINs are counted across calls. Default: "
             "~/.local/share/wildix-ast/voicemail-logins.sqlite3.")] = None,
    handset_logins: Annotated[Path | None, typer.Option(
        "--handset-logins", envvar=HANDSET_LOGINS_ENV, show_envvar=True,
        help="Where refused handset logins are counted (per device and per user). "
             "Default: ~/.local/share/wildix-ast/handset-logins.sqlite3.")] = None,
) -> None:
    """Answer FastAGI requests until stopped (SIGTERM or Ctrl-C). Only on loopback: every
    request but `health` must carry the key the store keeps (the applied dialplan sends
    it), and it travels in clear."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise SettingsError(f"--host {host}: the FastAGI service listens on a loopback "
                            "address only (FastAGI is plain TCP: its key would travel in "
                            "clear)")
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    limits = Limits(backlog=backlog, max_sessions=max_sessions)
    lookup = StoreLookup(db)
    spool = MailSpool(mail_spool or default_spool())
    guard = LoginGuard(voicemail_logins or default_path())
    handset_guard = LoginGuard(handset_logins or handset_logins_path(), event="Handset")
    try:
        asyncio.run(_serve(host, port, limits, lookup, spool, guard, handset_guard))
    finally:
        lookup.close()


async def _serve(host: str, port: int, limits: Limits, lookup: StoreLookup,
                 spool: MailSpool, guard: LoginGuard, handset_guard: LoginGuard) -> None:
    await asyncio.to_thread(lookup.warm_up)
    server = AgiServer(default_routes(lookup, spool, guard, handset_guard), limits,
                       health_check=lookup.check, key=_store_key(lookup))
    try:
        bound = await server.start(host, port)
    except OSError as e:
        raise ServiceError(f"the FastAGI service cannot listen on {host}:{port}: "
                           f"{e.strerror or e}") from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    listening = f"listening on {bound[0]}:{bound[1]}"

    async def store_problem() -> str | None:
        try:
            async with asyncio.timeout(HEALTH_CHECK_TIMEOUT):
                await asyncio.to_thread(lookup.check)
        except Exception as e:  # any failure: the unit shows it, the watchdog is withheld
            return f"{listening}; the store cannot be read: {e or type(e).__name__}"
        return None

    watchdog = asyncio.create_task(keep_alive(store_problem, ready_status=listening))
    notify(f"READY=1\nSTATUS={listening}")
    out.print(f"FastAGI service listening on {bound[0]}:{bound[1]} "
              f"(routes: {', '.join(sorted(server.routes))})")
    try:
        await stop.wait()
    finally:
        notify("STOPPING=1")
        watchdog.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watchdog
        await server.close()


def _store_key(lookup: StoreLookup) -> KeySource:
    """The FastAGI key kept in the store's vault, read (never generated) until found:
    until a site is applied there is none, and every request but `health` is refused."""
    found: list[str] = []

    def key() -> str | None:
        if not found:
            value = lookup.store().get_secrets([FASTAGI_KEY]).get(FASTAGI_KEY)
            if value:
                found.append(value)
        return found[0] if found else None

    return key


@app.command()
def status(
    host: Host = "127.0.0.1",
    port: Port = 4573,
    timeout: Annotated[float, typer.Option(min=0.01, help="Seconds to wait.")] = 1.0,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Hold one FastAGI session on the `health` route, as Asterisk would; print the counters."""
    variables = asyncio.run(check(host, port, timeout))
    if as_json:
        print(json.dumps({"ok": True, "address": f"{host}:{port}", **variables}))
        return
    table = Table(title=f"FastAGI service {host}:{port}", show_edge=False)
    table.add_column("counter")
    table.add_column("value", justify="right")
    for name, value in variables.items():
        table.add_row(name.removeprefix(v.AGI_HEALTH_PREFIX).lower().replace("_", " "), value)
    out.print(table)
    out.print("[green]✓[/] the FastAGI service answers")


async def check(host: str, port: int, timeout: float) -> dict[str, str]:
    """The health route's variables; ServiceError if the service does not answer OK."""
    where = f"{host}:{port}"
    try:
        result = await probe(host, port, HEALTH_ROUTE, timeout=timeout)
    except TimeoutError:
        raise ServiceError(f"the FastAGI service at {where} did not answer within "
                           f"{timeout:g} s (hung or overloaded)") from None
    except OSError as e:
        raise ServiceError(f"the FastAGI service at {where} is not reachable: "
                           f"{e.strerror or e}") from None
    except Exception as e:  # garbage on the wire: the probe cannot parse it
        raise ServiceError(f"the FastAGI service at {where} answered garbage: {e}") from None
    if result.variables.get(v.AGI_STATUS) != OK:
        raise ServiceError(f"the FastAGI service at {where} did not answer OK: "
                           f"{result.variables or result.commands}")
    return {k: x for k, x in result.variables.items() if k != v.AGI_STATUS}
