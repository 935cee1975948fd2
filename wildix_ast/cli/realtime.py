"""`wildix-ast realtime setup`: realtime on PostgreSQL (issue 22), once per database, with
an admin connection that is not kept: the four tables, apply's writer account (rows of those
four tables only; its connection kept in the store's vault, never shown) and Asterisk's own
account, allowed to read those four tables and nothing else."""

from __future__ import annotations

from pathlib import Path
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


@app.command("expire")
def expire(
    lab: Annotated[str | None, typer.Option(
        "--lab", help="The lab instance whose configuration folder keeps the pending "
        "expiries (instead of this host's).", show_default=False)] = None,
    etc_dir: Annotated[Path, typer.Option(
        "--etc-dir", help="Asterisk's configuration folder on this host.")]
    = Path("/etc/asterisk"),
    everything: Annotated[bool, typer.Option(
        "--all", help="Empty the other nodes' caches of users' SIP objects entirely (when "
        "the pending list was lost).")] = False,
    db: DbUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """Catch the other nodes up: expire on each the realtime objects an apply could not
    (a node that did not answer); exits 5 while a node is still not reached."""
    from rich.table import Table

    from wildix_ast.apply.pipeline import Target, expire_on_nodes
    from wildix_ast.errors import AmiError
    from wildix_ast.lab.instance import running_lab
    from wildix_ast.store import open_store

    mode.json = as_json
    target = running_lab(lab).target() if lab else Target.host(etc_dir)
    with open_store(db) as store:
        result = expire_on_nodes(store, target, whole=everything)
    if as_json:
        emit_json({"ok": not result.missed, **result.to_json()})
    else:
        table = Table("node", "result")
        for node, entries in sorted(result.expired.items()):
            table.add_row(node, f"{len(entries)} expired" if entries != ["*"] else
                          "caches emptied")
        for node, problem in sorted(result.missed.items()):
            table.add_row(node, f"[red]not reached[/]: {problem}")
        if result.expired or result.missed:
            out.print(table)
        else:
            out.print("nothing pending on any node")
    if result.missed:
        if as_json:
            raise typer.Exit(AmiError.exit_code)
        raise AmiError("not every node was reached: " + ", ".join(sorted(result.missed)))
