"""`wildix-ast user set|show`: one user's preferences in the store (WMS "Préférences
utilisateur"). A change is one transaction and is seen by the FastAGI service on the next
call: no apply, no Asterisk reload."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from wildix_ast.cli.console import emit_json, mode, out
from wildix_ast.model.preferences import CallTypePreferences, Preferences, edit

app = typer.Typer(help="A user's preferences (forwards, reject, lists, DND...), changed live.",
                  no_args_is_help=True)

ExtensionArg = Annotated[str, typer.Argument(help="The user's extension.", show_default=False)]
DbUrl = Annotated[str | None, typer.Option(
    "--db", envvar="WILDIX_AST_DB", show_envvar=True,
    help="Store: a SQLite file path or a database URL.")]
JsonOutput = Annotated[bool, typer.Option(
    "--json", help="Print one JSON object on standard output (errors too).")]


@app.command("set")
def set_(
    extension: ExtensionArg,
    assignments: Annotated[list[str], typer.Argument(
        help="KEY=VALUE (KEY= puts the default back), KEY+=VALUE / KEY-=VALUE for the "
             "whitelist and blacklist. Per class: internal.* and external.* (reject, "
             "forward_busy, forward_unavailable, forward_always [number or VOICEMAIL], "
             "call_waiting, call_timeout, mobility, mobility_delay, mobility_confirmation, "
             "missed_call_email, ringtone); settings: dnd, shared_voicemail, hotline.number, "
             "hotline.delay, call_waiting_beep, popup_url, popup_http.", show_default=False)],
    db: DbUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """Change a user's preferences; the next call follows them (no reload)."""
    from wildix_ast.store import open_store

    mode.json = as_json
    with open_store(db) as store:
        changed = store.change_preferences(extension, lambda now: edit(now, assignments))
    _print(extension, changed, as_json, "changed")


@app.command()
def show(extension: ExtensionArg, db: DbUrl = None, as_json: JsonOutput = False) -> None:
    """Print a user's preferences."""
    from wildix_ast.store import open_store
    from wildix_ast.store.store import UnknownUserError

    mode.json = as_json
    with open_store(db) as store:
        found = store.preferences_of(extension)
    if found is None:
        raise UnknownUserError(f"no user has extension {extension}")
    _print(extension, found, as_json, None)


def _text(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "on" if value else "off"
    return escape(str(value))


def _print(extension: str, preferences: Preferences, as_json: bool, verb: str | None) -> None:
    if as_json:
        emit_json({"ok": True, "extension": extension,
                   "preferences": preferences.model_dump(mode="json")})
        return
    table = Table(title=f"User {extension}: functions per call class", show_edge=False)
    table.add_column("function")
    table.add_column("internal")
    table.add_column("external")
    for name in CallTypePreferences.model_fields:
        table.add_row(name, _text(getattr(preferences.internal, name)),
                      _text(getattr(preferences.external, name)))
    out.print(table)
    for name in Preferences.model_fields:
        if name in ("internal", "external"):
            continue
        value = getattr(preferences, name)
        if name in ("whitelist", "blacklist"):
            value = ", ".join(value) or None
        elif name == "hotline" and value is not None:
            value = f"{value.number} after {value.delay} s"
        out.print(f"{name}: {_text(value)}")
    if verb:
        out.print(f"[green]✓[/] preferences of {extension} {verb}; the next call follows them")


@app.command("welcome")
def welcome(
    extension: ExtensionArg,
    url: Annotated[str, typer.Option(
        "--url", envvar="WILDIX_AST_COLLABORATION_URL", show_envvar=True,
        help="The collaboration URL users log in at (https://pbx.example.com).")],
    password_stdin: Annotated[bool, typer.Option(
        "--password-stdin", help="Put the password read from standard input in the mail, "
        "in clear (by default the mail carries a one-time link to choose one).")] = False,
    db: DbUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """Queue the welcome mail of a user, in the user's language (fr, en, it)."""
    import sys

    from wildix_ast.mail.welcome import queue_welcome
    from wildix_ast.store import open_store
    from wildix_ast.store.store import UnknownUserError

    mode.json = as_json
    password = sys.stdin.readline().rstrip("\n") if password_stdin else None
    with open_store(db) as store:
        user = store.user_by_extension(extension)
        if user is None:
            raise UnknownUserError(f"no user has extension {extension}")
        system = store.export_site().system
        ident = queue_welcome(user, store, collaboration_url=url, pbx_name=system.pbx_name,
                              site_language=system.language_region.language,
                              password=password or None)
    if as_json:
        emit_json({"ok": True, "id": ident, "to": user.email})
    else:
        out.print(f"[green]✓[/] welcome mail to {escape(user.email or '')} queued ({ident})")
