"""`wildix-ast user set|show`: one user's preferences in the store (WMS "Préférences
utilisateur"). A change is one transaction and is seen by the FastAGI service on the next
call: no apply, no Asterisk reload. `wildix-ast users import|export`: the user table as a
CSV file (WMS Users > Import / Export CSV)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from wildix_ast.cli.console import emit_json, err, mode, out
from wildix_ast.model.preferences import CallTypePreferences, Preferences, edit

if TYPE_CHECKING:
    from wildix_ast.model.user_merge import UserChanges

app = typer.Typer(help="A user's preferences (forwards, reject, lists, DND...), changed live.",
                  no_args_is_help=True)

users_app = typer.Typer(help="The users with their status (bare, or list), the user table as "
                             "CSV (import, export).", invoke_without_command=True)

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
             "whitelist and blacklist. Per call type: internal.* and external.* (reject, "
             "forward_busy, forward_unavailable, forward_always [number or VOICEMAIL], "
             "call_waiting, call_timeout, mobility, mobility_delay, mobility_confirmation, "
             "missed_call_email, ringtone); settings: dnd, shared_voicemail, hotline.number, "
             "hotline.delay, call_waiting_beep, popup_url, popup_http.", show_default=False)],
    acting: Annotated[str | None, typer.Option(
        "--as", help="Who makes the change (login or extension): the user themself, or an "
        "admin, who cannot edit another admin. Without it: the super administrator.")]
    = None,
    db: DbUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """Change a user's preferences; the next call follows them (no reload)."""
    from wildix_ast.store import open_store

    mode.json = as_json
    with open_store(db) as store:
        if acting is not None:
            _may_edit(store, acting, extension)
        changed = store.change_preferences(extension, lambda now: edit(now, assignments))
    _print(extension, changed, as_json, "changed")


@app.command()
def show(extension: ExtensionArg, db: DbUrl = None, as_json: JsonOutput = False) -> None:
    """Print a user's preferences."""
    from wildix_ast.errors import UnknownUserError
    from wildix_ast.store import open_store

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


# --- users import / export (CSV) -------------------------------------------------------------

MAX_CSV_BYTES = 64 * 1024 * 1024


def show_user_changes(changes: UserChanges, title: str, limit: int = 100) -> None:
    """The users a change adds, changes (with the fields that differ) and removes: a table
    like `apply --dry-run`'s plan."""
    if not changes.any:
        out.print("[green]no changes[/]: the stored users are up to date")
        return
    table = Table(title=title, show_edge=False)
    table.add_column("extension")
    table.add_column("name")
    table.add_column("change")
    table.add_column("fields")
    rows: list[tuple[str, str, str, str]] = []
    for user in changes.added:
        rows.append((user.extension, escape(user.name), "[green]add[/]", ""))
    for before, after in changes.changed:
        differ = [name for name in type(after).model_fields
                  if getattr(before, name) != getattr(after, name)]
        rows.append((after.extension, escape(after.name), "[yellow]change[/]",
                     escape(", ".join(differ))))
    for user in changes.removed:
        rows.append((user.extension, escape(user.name), "[red]remove[/]", ""))
    for row in rows[:limit]:
        table.add_row(*row)
    out.print(table)
    if len(rows) > limit:
        out.print(f"[dim]… and {len(rows) - limit} more (--json lists them all)[/]")
    out.print(changes.summary())


def changes_json(changes: UserChanges) -> dict[str, Any]:
    return {"added": [u.extension for u in changes.added],
            "changed": [a.extension for _, a in changes.changed],
            "removed": [u.extension for u in changes.removed]}


@users_app.command("import")
def import_csv(
    csv_file: Annotated[Path, typer.Argument(help="The CSV file (the columns of `users "
                                             "export`).", show_default=False)],
    dry_run: Annotated[bool, typer.Option("--dry-run", "--check",
                                          help="Show what would change; write nothing.")]
    = False,
    acting: Annotated[str | None, typer.Option(
        "--as", help="The administrator (login or extension) doing the import: the seed's "
        "rule applies (an admin cannot edit other admins). Without it: the super "
        "administrator (whoever holds the store).")] = None,
    db: DbUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """Add or change users from a CSV file (matched by extension): all rows or none."""
    from wildix_ast.errors import SettingsError
    from wildix_ast.model.user_merge import merge_users
    from wildix_ast.model.users_csv import parse_users_csv
    from wildix_ast.services.directory.welcome import welcome_new_users
    from wildix_ast.store import open_store, open_store_for_plan

    mode.json = as_json
    try:
        if csv_file.stat().st_size > MAX_CSV_BYTES:
            raise SettingsError(f"{csv_file} is larger than {MAX_CSV_BYTES >> 20} MiB")
        text = csv_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SettingsError(f"{csv_file}: no such file") from None
    except UnicodeDecodeError as exc:
        raise SettingsError(f"{csv_file} is not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise SettingsError(f"{csv_file}: {exc.strerror or exc}") from None
    rows = parse_users_csv(text, csv_file.name)
    with (open_store_for_plan(db) if dry_run else open_store(db)) as store:
        if not store.has_site():
            raise SettingsError("the store holds no site yet: run `wildix-ast import SITE` "
                                "first")
        revision = store.revision()
        stored = store.export_site()
        site, changes = merge_users(stored, rows)
        if acting is not None:
            check_admin_rule(stored, acting, changes,
                              {str(r.data.get("extension")): r.where for r in rows})
        report = None
        if not dry_run and changes.any:
            from wildix_ast.store.directory import import_unless_changed

            report = import_unless_changed(store, site, revision)
        welcome = welcome_new_users(changes.added, store, site, event=f"r{report.revision}") \
            if report is not None and changes.added else None
    for problem in welcome.skipped if welcome else ():
        err.print(f"[yellow]![/] {escape(problem)}")
    if as_json:
        emit_json({"ok": True, "dry_run": dry_run, **changes_json(changes),
                   "revision": report.revision if report else None,
                   "welcome_mails": welcome.queued if welcome else 0})
        return
    show_user_changes(changes, f"users from {csv_file.name}")
    if dry_run:
        out.print("[dim]dry run: nothing written[/]")
    elif changes.any:
        out.print(f"[green]✓[/] imported {csv_file}")


def _may_edit(store: Any, acting: str, extension: str) -> None:
    """The seed's rule for one user's settings: a user edits their own, an admin those of
    users that are not admins."""
    from wildix_ast.errors import UnknownUserError, WildixError
    from wildix_ast.model.users import UserType

    actor = store.user_by_extension(acting) or store.user_by_login(acting)
    target = store.user_by_extension(extension)
    if actor is None:
        raise UnknownUserError(f"--as {acting}: no user has this login or extension")
    if target is None or actor.extension == target.extension:
        return
    if actor.type is not UserType.ADMIN:
        raise WildixError(f"{acting} may edit only their own preferences")
    if target.type is UserType.ADMIN:
        raise WildixError(f"{acting} cannot edit {extension}: an administrator cannot edit "
                          "another administrator")


def check_admin_rule(site: Any, acting: str, changes: UserChanges,
                     where: dict[str, str], verb: str = "imported") -> None:
    """The seed's rule (`admin_rule_problems`) for `changes` made by `acting` (login or
    extension): a SettingsError listing what they may not do, before anything is written."""
    from wildix_ast.errors import SettingsError, UnknownUserError
    from wildix_ast.model.user_merge import admin_rule_problems

    actor = next((u for u in site.users if acting in (u.extension, u.login)), None)
    if actor is None:
        raise UnknownUserError(f"--as {acting}: no user has this login or extension")
    problems = admin_rule_problems(actor, changes, where)
    if problems:
        raise SettingsError(f"{len(problems)} change(s) {acting} may not make; nothing was "
                            f"{verb}", problems)


@users_app.command("export")
def export_csv(
    output: Annotated[Path | None, typer.Option("--out", "-o", help="Write to this file "
                                                "instead of standard output.")] = None,
    db: DbUrl = None,
) -> None:
    """Print the stored users as CSV (no passwords, no preferences)."""
    import sys

    from wildix_ast.errors import SettingsError
    from wildix_ast.model.users_csv import users_csv
    from wildix_ast.store import open_store

    with open_store(db) as store:
        if not store.has_site():
            raise SettingsError("the store holds no site yet: run `wildix-ast import SITE` "
                                "first")
        text = users_csv(store.export_site().users)
    if output is None:
        sys.stdout.write(text)
        return
    from wildix_ast.files import write_atomic

    # personal data (names, emails, mobiles): owner-only
    write_atomic(output, text, mode=0o600)
    out.print(f"[green]✓[/] wrote {output}")


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

    from wildix_ast.errors import UnknownUserError
    from wildix_ast.mail.welcome import queue_welcome
    from wildix_ast.store import open_store

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


LabOption = Annotated[str | None, typer.Option(
    "--lab", help="Ask this lab instance's Asterisk (default: the host's).",
    show_default=False)]


@users_app.callback()
def users_table(ctx: typer.Context, db: DbUrl = None, lab: LabOption = None,
                as_json: JsonOutput = False) -> None:
    """Bare `wildix-ast users [--json]`: the users with their status, as `users list`
    (the WMS Users menu opens on its table)."""
    if ctx.invoked_subcommand is None:
        list_users(db=db, lab=lab, as_json=as_json)


@users_app.command("list")
def list_users(
    db: DbUrl = None,
    lab: LabOption = None,
    as_json: JsonOutput = False,
) -> None:
    """The users (WMS Users table): extension, name, type, group, email, their devices,
    and green (a registered phone) or gray, from Asterisk's console."""
    from wildix_ast.cli.devices import live_contacts
    from wildix_ast.services.ami.registrations import registered_endpoints
    from wildix_ast.store import open_store
    from wildix_ast.store.devices import list_devices

    mode.json = as_json
    with open_store(db) as store:
        site = store.export_site()
        devices = list_devices(store)
    contacts, problem = live_contacts(lab)
    online = registered_endpoints(contacts or [])
    rows = []
    for user in site.users:
        status = ("unknown" if contacts is None else
                  "green" if user.extension in online else "gray") \
            if user.type.has_phone else "—"
        rows.append({"extension": user.extension, "name": user.name,
                     "type": user.type.value, "group": user.group, "email": user.email,
                     "devices": [d.mac for d in devices if d.extension == user.extension],
                     "status": status})
    if as_json:
        emit_json({"ok": True, "status_error": problem, "users": rows})
        return
    table = Table(title=f"{len(rows)} users", show_edge=False)
    for column in ("status", "extension", "name", "type", "group", "email", "devices"):
        table.add_column(column)
    marks = {"green": "[green]● green[/]", "gray": "[bright_black]● gray[/]",
             "unknown": "? unknown", "—": "—"}
    for row in rows:
        table.add_row(marks[str(row["status"])], str(row["extension"]), escape(str(row["name"])),
                      str(row["type"]), escape(str(row["group"])),
                      escape(str(row["email"] or "—")),
                      ", ".join(row["devices"]) or "—")  # type: ignore[arg-type]
    out.print(table)
    if problem is not None:
        out.print(f"status unknown: {escape(problem)}")
