"""`wildix-ast fax collect [--serve]`: Fax2Mail's step (wildix_ast.services.fax.inbound,
.service): each fax Asterisk received becomes a PDF mailed through the mail queue and kept
for the call history; finished jobs and old documents are pruned."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from wildix_ast.cli.console import emit_json, mode, out
from wildix_ast.cli.live import DbUrl, JsonOutput
from wildix_ast.cli.mail import QueueDir
from wildix_ast.errors import SettingsError
from wildix_ast.mail.queue import MailQueueError, default_root
from wildix_ast.services.fax.inbound import Collected

app = typer.Typer(help="The fax server (WMS Serveur FAX/SMS): Fax2Mail and Mail2Fax.",
                  no_args_is_help=True)


DocumentsDir = Annotated[Path | None, typer.Option(
    "--documents", envvar="WILDIX_AST_FAX_DOCUMENTS", show_envvar=True,
    help="Where received faxes' PDFs are kept for the call history (owner-only). "
         "Default: ~/.local/share/wildix-ast/fax-documents.")]


@app.command("collect")
def collect(
    spool: Annotated[Path, typer.Option(
        "--spool", envvar="WILDIX_AST_FAX_SPOOL", show_envvar=True,
        help="Asterisk's fax spool (<astspooldir>/wildix-fax).")],
    queue_dir: QueueDir = None,
    db: DbUrl = None,
    documents: DocumentsDir = None,
    copy_to: Annotated[list[str] | None, typer.Option(
        "--copy-to", help="Also mail every fax here (default: the site's "
        "fax.copy_address).")] = None,
    serve: Annotated[bool, typer.Option("--serve", help="Keep running: a pass every "
                                        "--poll seconds until SIGTERM; prunes finished "
                                        "jobs and old documents.")] = False,
    poll: Annotated[float, typer.Option(min=0.05, help="Seconds between passes.")] = 1.0,
    as_json: JsonOutput = False,
) -> None:
    """Mail each received fax (and each failed reception's report) once, and keep its PDF
    for the call history."""
    from wildix_ast.services.fax.documents import default_documents
    from wildix_ast.services.fax.service import FaxService, FaxSettings
    from wildix_ast.store import open_store

    mode.json = as_json
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if not (spool / "new").is_dir():
        raise SettingsError(f"--spool {spool}: no new/ folder: not a fax spool")
    with open_store(db) as store:
        def email_of(extension: str) -> str | None:
            user = store.user_by_extension(extension)
            return None if user is None else user.email

        def settings() -> FaxSettings:
            site = store.export_site() if store.has_site() else None
            copies = list(copy_to) if copy_to is not None else [
                a for a in [site.fax_server.copy_address if site else None] if a]
            if site is None:
                return FaxSettings(email_of, tuple(copies))
            return FaxSettings(email_of, tuple(copies), site.fax_server.keep_days,
                               site.call_history.retention_days)

        service = FaxService(spool, queue_dir or default_root(),
                             documents or default_documents(), settings)

        def report(done: list[Collected]) -> None:
            if as_json:
                emit_json({"ok": True, "jobs": [{"job": c.job, "status": c.status,
                                                 "queued": c.queued, "document": c.document}
                                                for c in done]})
                return
            table = Table("job", "status", "mails queued", "document")
            for c in done:
                table.add_row(c.job, c.status or "-", str(c.queued), c.document or "-")
            out.print(table if done else "no fax job waiting")

        if serve:
            stop = threading.Event()
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: stop.set())
            service.serve(stop, poll, report)
            return
        try:
            found = service.run_once()
        except MailQueueError as error:
            raise SettingsError(f"fax collect: {error}") from error
    report(found)


def _mail2fax() -> None:
    from wildix_ast.cli.mail2fax import register

    register(app)


_mail2fax()
