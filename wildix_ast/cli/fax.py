"""`wildix-ast fax collect`: Fax2Mail's step (wildix_ast.services.fax.inbound): each fax
Asterisk received becomes a PDF mailed through the mail queue."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from wildix_ast.cli.console import emit_json, mode, out
from wildix_ast.cli.live import DbUrl, JsonOutput
from wildix_ast.cli.mail import QueueDir
from wildix_ast.errors import SettingsError
from wildix_ast.mail.queue import MailQueueError, default_root

app = typer.Typer(help="The fax server (WMS Serveur FAX/SMS): Fax2Mail and Mail2Fax.",
                  no_args_is_help=True)


@app.command("collect")
def collect(
    spool: Annotated[Path, typer.Option(
        "--spool", envvar="WILDIX_AST_FAX_SPOOL", show_envvar=True,
        help="Asterisk's fax spool (<astspooldir>/wildix-fax).")],
    queue_dir: QueueDir = None,
    db: DbUrl = None,
    copy_to: Annotated[list[str] | None, typer.Option(
        "--copy-to", help="Also mail every fax here (default: the site's "
        "fax.copy_address).")] = None,
    as_json: JsonOutput = False,
) -> None:
    """Mail each received fax (and each failed reception's report) once."""
    from wildix_ast.services.fax.inbound import collect as collect_jobs
    from wildix_ast.store import open_store

    mode.json = as_json
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if not (spool / "new").is_dir():
        raise SettingsError(f"--spool {spool}: no new/ folder: not a fax spool")
    with open_store(db) as store:
        def email_of(extension: str) -> str | None:
            user = store.user_by_extension(extension)
            return None if user is None else user.email

        copies = list(copy_to) if copy_to is not None else [
            a for a in [store.export_site().fax_server.copy_address if store.has_site()
                        else None] if a]
        try:
            done = collect_jobs(spool, email_of, copy_to=copies,
                                queue_root=queue_dir or default_root())
        except MailQueueError as error:
            raise SettingsError(f"fax collect: {error}") from error
    if as_json:
        emit_json({"ok": True, "jobs": [{"job": c.job, "status": c.status,
                                         "queued": c.queued} for c in done]})
        return
    table = Table("job", "status", "mails queued")
    for c in done:
        table.add_row(c.job, c.status or "-", str(c.queued))
    out.print(table if done else "no fax job waiting")


def _mail2fax() -> None:
    from wildix_ast.cli.mail2fax import register

    register(app)


_mail2fax()
