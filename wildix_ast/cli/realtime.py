"""`wildix-ast realtime setup`: realtime on PostgreSQL (issue 22), once per database, with
an admin connection that is not kept: the four tables, apply's writer account (rows of those
four tables only; its connection kept in the store's vault, never shown) and Asterisk's own
account, allowed to read those four tables and nothing else."""

from __future__ import annotations

from typing import Annotated

import typer

from wildix_ast.cli.console import emit_json, mode, out
from wildix_ast.cli.users import DbUrl, JsonOutput

app = typer.Typer(help="Realtime objects: users' SIP objects and mailboxes in database "
                       "tables (system.realtime; docs/realtime.md).", no_args_is_help=True)



@app.command("setup")
def setup(
    admin_url: Annotated[str, typer.Option(
        "--admin-url", envvar="WILDIX_AST_REALTIME_ADMIN_URL", show_envvar=True,
        help="postgresql://user:password@host:port/database: an account that may create "
             "roles and tables there; used once, not kept.",
        show_default=False)],
    db: DbUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """Make the tables, Asterisk's read-only account and apply's writer account
    (PostgreSQL)."""
    from wildix_ast.apply.pipeline import setup_realtime_database
    from wildix_ast.store import open_store

    mode.json = as_json
    with open_store(db) as store:
        message = setup_realtime_database(store, admin_url)
    if as_json:
        emit_json({"ok": True, "message": message})
    else:
        out.print(message)
