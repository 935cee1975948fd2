"""`wildix-ast directory sync|status|password`: users from the company directory (LDAP /
Active Directory), see docs/directory.md."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.markup import escape

from wildix_ast.cli.console import emit_json, err, mode, out

app = typer.Typer(help="Users from the company directory (LDAP / Active Directory).",
                  no_args_is_help=True)

DbUrl = Annotated[str | None, typer.Option(
    "--db", envvar="WILDIX_AST_DB", show_envvar=True,
    help="Store: a SQLite file path or a database URL.")]
JsonOutput = Annotated[bool, typer.Option(
    "--json", help="Print one JSON object on standard output (errors too).")]


@app.command()
def sync(
    dry_run: Annotated[bool, typer.Option("--dry-run", "--check",
                                          help="Show the plan; write nothing.")] = False,
    full: Annotated[bool, typer.Option("--full", help="Read every entry whole, not only "
                                       "those changed since the last sync.")] = False,
    allow_empty: Annotated[bool, typer.Option(
        "--allow-empty", help="Remove every directory user if the directory lists none "
        "(refused otherwise: an empty answer is more often a wrong filter).")] = False,
    with_history: Annotated[bool, typer.Option(
        "--with-history", help="Also delete the removed users' calls from every call "
        "history backend (GDPR).")] = False,
    db: DbUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """Create, change and remove the users the directory owns (only those). The next
    `apply` removes the removed users' endpoints and voicemail messages."""
    from wildix_ast.cli.users import changes_json, show_user_changes
    from wildix_ast.services.directory.sync import plan_sync, sync_directory
    from wildix_ast.store import open_store, open_store_for_plan
    from wildix_ast.store.directory import sync_state

    mode.json = as_json
    with (open_store_for_plan(db) if dry_run else open_store(db)) as store:
        whole = full or sync_state(store) is None
        plan = plan_sync(store, full=whole, allow_empty=allow_empty) if dry_run \
            else sync_directory(store, full=whole, allow_empty=allow_empty,
                                with_history=with_history)
    welcome = plan.welcome
    for problem in welcome.skipped if welcome else ():
        err.print(f"[yellow]![/] {escape(problem)}")
    if as_json:
        emit_json({"ok": True, "dry_run": dry_run, "full": plan.full, "server": plan.server,
                   "listed": plan.listed, "read": plan.read, **changes_json(plan.changes),
                   "welcome_mails": welcome.queued if welcome else 0,
                   "history_removed": plan.history_removed})
        return
    show_user_changes(plan.changes, f"directory sync ({'full' if plan.full else 'incremental'}"
                                    f", {plan.server})")
    out.print(f"{plan.listed} directory users listed, {plan.read} entries read")
    for name, count in plan.history_removed.items():
        out.print(f"[green]✓[/] {name}: {count} call record(s) of removed users deleted")
    if dry_run:
        out.print("[dim]dry run: nothing written[/]")


@app.command()
def status(db: DbUrl = None, as_json: JsonOutput = False) -> None:
    """The last sync and how many users the directory owns."""
    from wildix_ast.store import open_store
    from wildix_ast.store.directory import owned_users, sync_state

    mode.json = as_json
    with open_store(db) as store:
        state = sync_state(store)
        owned = len(owned_users(store))
    if as_json:
        emit_json({"ok": True, "owned_users": owned, "last_sync": None if state is None else {
            "server": state.server, "at": state.synced_at.isoformat(), "full": state.full,
            "users": state.users, "added": state.added, "changed": state.changed,
            "removed": state.removed, "change_mark": state.change_mark}})
        return
    out.print(f"{owned} users owned by the directory")
    if state is None:
        out.print("never synchronised")
    else:
        out.print(f"last sync {state.synced_at:%Y-%m-%d %H:%M:%S} UTC "
                  f"({'full' if state.full else 'incremental'}) from {state.server}: "
                  f"{state.users} listed, {state.added} added, {state.changed} changed, "
                  f"{state.removed} removed")


@app.command()
def password(db: DbUrl = None) -> None:
    """Keep the bind password, read from standard input (never from the command line)."""
    from wildix_ast.errors import WildixError
    from wildix_ast.store import open_store
    from wildix_ast.store.directory import BIND_PASSWORD_KEY

    value = sys.stdin.readline().rstrip("\n")
    if not value:
        raise WildixError("no password on standard input")
    with open_store(db) as store:
        store.put_secret(BIND_PASSWORD_KEY, value)
    out.print("[green]✓[/] directory bind password kept (owner-only, never printed)")
