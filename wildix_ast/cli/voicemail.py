"""`wildix-ast voicemail locks|unlock`: the mailboxes locked after wrong PINs across calls
(wildix_ast.services.agi.voicemail_logins), and lifting a lock before it lifts by itself."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from wildix_ast.cli.console import emit_json, mode, out
from wildix_ast.cli.live import JsonOutput
from wildix_ast.errors import SettingsError
from wildix_ast.services.agi.voicemail_logins import (
    LOGINS_ENV,
    MAX_FAILURES,
    WINDOW,
    Lock,
    LoginGuard,
    default_path,
)

app = typer.Typer(help=f"Voicemail PINs: a mailbox is locked after {MAX_FAILURES} wrong "
                       f"PINs within {WINDOW / 60:.0f} minutes, across calls.",
                  no_args_is_help=True)

LoginsFile = Annotated[Path | None, typer.Option(
    "--voicemail-logins", envvar=LOGINS_ENV, show_envvar=True,
    help="The FastAGI service's count of wrong PINs. Default: "
         "~/.local/share/wildix-ast/voicemail-logins.sqlite3.")]


@app.command("locks")
def locks(logins: LoginsFile = None, as_json: JsonOutput = False) -> None:
    """The mailboxes locked now."""
    mode.json = as_json
    found = LoginGuard(logins or default_path()).locks()
    if as_json:
        emit_json({"ok": True, "locks": [lock.to_json() for lock in found]})
        return
    out.print(locks_table("locked mailboxes", ("mailbox", "wrong PINs"), found))


def locks_table(title: str, columns: tuple[str, str], found: list[Lock]) -> Table:
    """A LoginGuard's locks as a table: what is locked, how many failures, until when."""
    table = Table(title=title, show_edge=False)
    for column in (*columns, "until"):
        table.add_column(column)
    for lock in found:
        table.add_row(lock.mailbox, str(lock.failures),
                      dt.datetime.fromtimestamp(lock.until).strftime("%F %T"))
    return table


@app.command("unlock")
def unlock(mailbox: Annotated[str, typer.Argument(help="The mailbox (its extension).")],
           logins: LoginsFile = None, as_json: JsonOutput = False) -> None:
    """Forget a mailbox's wrong PINs: it opens again with its PIN (logged as a security
    event)."""
    mode.json = as_json
    if not (mailbox.isdigit() and 2 <= len(mailbox) <= 8):
        raise SettingsError(f"{mailbox!r} is not a mailbox (an extension: 2 to 8 digits)")
    guard = LoginGuard(logins or default_path())
    was_locked = guard.locked(mailbox) is not None
    cleared = guard.clear(mailbox)
    if as_json:
        emit_json({"ok": True, "mailbox": mailbox, "was_locked": was_locked,
                   "failures_cleared": cleared})
        return
    state = "unlocked" if was_locked else "was not locked"
    out.print(f"[green]✓[/] mailbox {mailbox} {state}; {cleared} wrong PIN(s) forgotten")
