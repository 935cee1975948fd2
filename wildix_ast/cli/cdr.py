"""`wildix-ast cdr collect|list|stats|backends|forget-user`: the call history
(wildix_ast.services.call_history): the collecting service, and reading what it wrote."""

from __future__ import annotations

import csv
import datetime as dt
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from wildix_ast.cli.console import emit_json, mode, out
from wildix_ast.cli.live import DbUrl, JsonOutput
from wildix_ast.errors import SettingsError, StoreError, WildixError
from wildix_ast.model.call_history import BackendKind, CallHistory, CallHistoryBackend

app = typer.Typer(help="Call history: every call once in every enabled backend.",
                  no_args_is_help=True)

DEFAULT_SPOOL = Path.home() / ".local/share/wildix-ast/call-history.sqlite3"
SpoolPath = Annotated[Path, typer.Option(
    "--spool", envvar="WILDIX_AST_CDR_SPOOL", show_envvar=True,
    help="The collector's own state (checkpoints, records not delivered yet).")]
BrakeDir = Annotated[Path, typer.Option(
    "--brake-dir", envvar="WILDIX_AST_CDR_BRAKE_DIR", show_envvar=True,
    help="Where the toll-fraud brake's flags go: <Asterisk's spool folder>/wildix-brake.")]
DEFAULT_BRAKE_DIR = Path("/var/spool/asterisk/wildix-brake")
LogDir = Annotated[Path, typer.Option(
    "--log-dir", envvar="WILDIX_AST_CDR_LOG_DIR", show_envvar=True,
    help="Asterisk's log folder, where it writes the call records.")]


def _settings(db: str | None) -> tuple[CallHistory, Any]:
    from wildix_ast.store import open_store
    from wildix_ast.store.vault import with_backend_passwords

    with open_store(db) as store:
        if not store.has_site():
            raise StoreError("the store holds no site yet: run `wildix-ast import SITE` first")
        site = with_backend_passwords(store.export_site(), store)
    return site.call_history, site


def _settings_version(store: Any, names: list[str]) -> tuple[object, ...]:
    """What the collector's settings come from, cheaply: the store's revision, and the
    known backends' passwords (kept in the vault: a password-only change moves no
    revision)."""
    from wildix_ast.store.vault import cdr_password_key

    kept = store.get_secrets([cdr_password_key(n) for n in names])
    return store.revision(), tuple(sorted(kept.items()))


def _statistics_backend(history: CallHistory) -> CallHistoryBackend:
    chosen = next((b for b in history.backends if b.name == history.statistics), None)
    if chosen is None or chosen.kind is BackendKind.CSV:
        raise SettingsError("no statistics backend: set call_history.statistics to a "
                            "database backend")
    return chosen


def _database_failure(exc: Exception, backend: CallHistoryBackend) -> WildixError:
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return StoreError(f"call history backend {backend.name!r} ({backend.kind.value}): {first}")


@app.command("collect")
def collect(log_dir: LogDir = Path("/var/log/asterisk"), spool: SpoolPath = DEFAULT_SPOOL,
            brake_dir: BrakeDir = DEFAULT_BRAKE_DIR, db: DbUrl = None,
            once: Annotated[bool, typer.Option(
                "--once", help="One pass and every backend written once, then exit.")] = False,
            ) -> None:
    """The collecting service: reads Asterisk's call records, writes each call once to
    every enabled backend. Runs until SIGTERM/SIGINT."""
    from wildix_ast.services.call_history.assemble import Directory
    from wildix_ast.services.call_history.backends import sink_of
    from wildix_ast.services.call_history.brake import BrakeKeeper
    from wildix_ast.services.call_history.collector import (
        Collector,
        CollectorConfig,
        Settings,
    )

    os.umask(0o077)  # call records are personal data: what the collector makes is its own
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s")
    def settings_of(history: CallHistory, site: Any) -> Settings:
        directory = Directory.of(site)
        brake = BrakeKeeper(brake_dir, history.limits,
                            {e: group for e, (_, group) in directory.users.items()},
                            alert_to=history.alert_email) \
            if history.limits else None
        return Settings(history.enabled_backends, directory, brake)

    from wildix_ast.store import open_store

    history, site = _settings(db)
    first = settings_of(history, site)
    # one store kept open for the polls: a revision and a few vault keys every 5 s
    polled = open_store(db)
    names = [b.name for b in history.backends]
    read_at = [_settings_version(polled, names)]

    def reload() -> Settings | None:
        """The settings again when an import moved the store's revision or a backend's
        password changed."""
        version = _settings_version(polled, names)
        if version == read_at[0]:
            return None
        history, site = _settings(db)
        names[:] = [b.name for b in history.backends]
        read_at[0] = _settings_version(polled, names)
        return settings_of(history, site)

    config = CollectorConfig(log_dir=log_dir, spool_path=spool, backends=first.backends,
                             directory=first.directory, brake=first.brake, reload=reload)
    collector = Collector(config)
    if once:
        polled.close()
        collector.step()
        failures = []
        for backend in config.backends:
            try:
                sink = sink_of(backend)
                try:
                    collector.deliver_once(backend, sink, collector.spool)
                finally:
                    sink.close()
            except Exception as exc:  # reported per backend
                collector.spool.failed(backend.name, str(exc).splitlines()[0], time.time())
                failures.append(backend.name)
        collector.spool.close()
        if failures:
            raise StoreError(f"backends not written: {', '.join(failures)} "
                             "(see `wildix-ast cdr backends`)")
        return

    def stop(_signal: int, _frame: object) -> None:
        collector.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        collector.run()
    finally:
        polled.close()


def _epoch(text: str | None, option: str) -> float | None:
    if text is None:
        return None
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise SettingsError(f"{option} {text!r} is not a date (YYYY-MM-DD or "
                            "YYYY-MM-DDTHH:MM)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def _filters(user: str | None, number: str | None, since: str | None, until: str | None,
             direction: str | None, call_class: str | None, trunk: str | None,
             disposition: str | None) -> Any:
    from wildix_ast.services.call_history.query import Filters

    return Filters(user=user, number=number, since=_epoch(since, "--since"),
                   until=_epoch(until, "--until"), direction=direction,
                   call_class=call_class, trunk=trunk, disposition=disposition)


User = Annotated[str | None, typer.Option("--user", help="Caller or callee extension.")]
Number = Annotated[str | None, typer.Option("--number", help="Caller, callee or dialled.")]
Since = Annotated[str | None, typer.Option("--since", help="From this date (UTC).")]
Until = Annotated[str | None, typer.Option("--until", help="Before this date (UTC).")]
DirectionOpt = Annotated[str | None, typer.Option("--direction")]
ClassOpt = Annotated[str | None, typer.Option("--class")]
TrunkOpt = Annotated[str | None, typer.Option("--trunk")]
DispositionOpt = Annotated[str | None, typer.Option("--disposition")]

_LIST_COLUMNS = ("start", "direction", "caller_user", "caller_number", "callee_user",
                 "callee_number", "call_class", "trunk", "disposition", "duration", "billsec")


def _when(epoch: float | None) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%F %T") if epoch else ""


@app.command("list")
def list_(user: User = None, number: Number = None, since: Since = None, until: Until = None,
          direction: DirectionOpt = None, call_class: ClassOpt = None, trunk: TrunkOpt = None,
          disposition: DispositionOpt = None,
          limit: Annotated[int, typer.Option("--limit", min=1, max=1_000_000)] = 100,
          as_csv: Annotated[bool, typer.Option("--csv", help="CSV on standard output.")] = False,
          db: DbUrl = None, as_json: JsonOutput = False) -> None:
    """The calls, newest first, from the statistics backend."""
    from wildix_ast.services.call_history.backends import csv_safe
    from wildix_ast.services.call_history.query import list_records

    mode.json = as_json
    history, _ = _settings(db)
    backend = _statistics_backend(history)
    given = _filters(user, number, since, until, direction, call_class, trunk, disposition)
    try:
        rows = list_records(backend, given, limit)
    except Exception as exc:  # any database failure becomes a message
        raise _database_failure(exc, backend) from None
    if as_json:
        emit_json({"ok": True, "calls": rows})
        return
    if as_csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        if rows:
            writer.writerow(rows[0].keys())
        writer.writerows([[csv_safe(v) for v in r.values()] for r in rows])
        return
    table = Table(title=f"calls ({len(rows)})", show_edge=False)
    for column in (*_LIST_COLUMNS, "fax"):
        table.add_column(column)
    for row in rows:
        fax = (f"{row['fax']} {row['fax_status'] or '-'}, {row['fax_pages']} p, "
               f"{row['fax_document'] or 'no document'}") if row.get("fax") else ""
        table.add_row(*(_when(row[c]) if c == "start" else str(row[c]) for c in _LIST_COLUMNS),
                      escape(fax))
    out.print(table)


@app.command("stats")
def stats(by: Annotated[str, typer.Option("--by", help="user, trunk, class or day.")] = "day",
          user: User = None, since: Since = None, until: Until = None,
          direction: DirectionOpt = None, call_class: ClassOpt = None,
          trunk: TrunkOpt = None, db: DbUrl = None, as_json: JsonOutput = False) -> None:
    """Calls, answered calls and billed minutes per user, trunk, class or day."""
    from wildix_ast.services.call_history.query import GROUPINGS, statistics

    mode.json = as_json
    if by not in GROUPINGS:
        raise SettingsError(f"--by {by!r}: one of {', '.join(GROUPINGS)}")
    history, _ = _settings(db)
    backend = _statistics_backend(history)
    given = _filters(user, None, since, until, direction, call_class, trunk, None)
    try:
        rows = statistics(backend, by, given)
    except Exception as exc:  # any database failure becomes a message
        raise _database_failure(exc, backend) from None
    if as_json:
        emit_json({"ok": True, "by": by, "rows": rows})
        return
    table = Table(title=f"calls per {by}", show_edge=False)
    for column in (by, "calls", "answered", "minutes"):
        table.add_column(column)
    for row in rows:
        table.add_row(str(row["key"]), str(row["calls"]), str(row["answered"]),
                      f"{row['minutes']:.2f}")
    out.print(table)


@app.command("backends")
def backends(spool: SpoolPath = DEFAULT_SPOOL, db: DbUrl = None,
             as_json: JsonOutput = False) -> None:
    """Each backend: state, last write, records behind, lag, last error."""
    from wildix_ast.services.call_history.query import backend_states

    mode.json = as_json
    history, _ = _settings(db)
    states = backend_states(spool, history.backends)
    if as_json:
        emit_json({"ok": True, "backends": states})
        return
    table = Table(title="call history backends", show_edge=False)
    for column in ("backend", "kind", "state", "last write", "behind", "lag (s)",
                   "last error"):
        table.add_column(column)
    for state in states:
        table.add_row(state["backend"], state["kind"], state["state"],
                      _when(state["last_write"]), str(state["behind"]),
                      f"{state['lag_seconds']:.1f}", state["last_error"] or "")
    out.print(table)


FaxDocuments = Annotated[Path | None, typer.Option(
    "--fax-documents", envvar="WILDIX_AST_FAX_DOCUMENTS", show_envvar=True,
    help="The fax documents folder (the fax service's; default "
         "~/.local/share/wildix-ast/fax-documents).")]


@app.command("forget-user")
def forget_user(extension: Annotated[str, typer.Argument(help="The user's extension.")],
                db: DbUrl = None, documents: FaxDocuments = None,
                as_json: JsonOutput = False) -> None:
    """GDPR: remove every call of a user (as caller or callee) from every backend, and the
    user's fax documents."""
    from wildix_ast.services.call_history.query import delete_user_history

    mode.json = as_json
    if not (extension.isdigit() and 2 <= len(extension) <= 8):
        raise SettingsError(f"{extension!r} is not an extension (2 to 8 digits)")
    history, _ = _settings(db)
    removed: dict[str, int] = {}
    for backend in history.backends:
        try:
            removed[backend.name] = delete_user_history(backend, extension)
        except Exception as exc:  # any database failure becomes a message
            raise _database_failure(exc, backend) from None
    faxes = _forget_documents(documents, extension)
    if as_json:
        emit_json({"ok": True, "extension": extension, "removed": removed,
                   "fax_documents_removed": faxes})
        return
    for name, count in removed.items():
        out.print(f"[green]✓[/] {name}: {count} record(s) of {extension} removed")
    out.print(f"[green]✓[/] {faxes} fax document(s) of {extension} removed")


def _forget_documents(documents: Path | None, extension: str) -> int:
    from wildix_ast.services.fax.documents import default_documents, forget_user_documents

    folder = documents or default_documents()
    try:
        return forget_user_documents(folder, extension)
    except OSError as error:
        raise SettingsError(f"fax documents {folder}: {error.strerror or error}: run as "
                            "the fax service's user or root") from None


brake_app = typer.Typer(help="The toll-fraud brake (call_history.limits).",
                        no_args_is_help=True)
app.add_typer(brake_app, name="brake")


@brake_app.command("list")
def brake_list(brake_dir: BrakeDir = DEFAULT_BRAKE_DIR, as_json: JsonOutput = False) -> None:
    """The users braked now, per class, and until when."""
    from wildix_ast.services.call_history.brake import BrakeKeeper

    mode.json = as_json
    active = BrakeKeeper(brake_dir, [], {}).active()
    if as_json:
        emit_json({"ok": True, "brakes": [{"user": b.extension, "class": b.call_class,
                                           "until": b.until} for b in active]})
        return
    table = Table(title="toll-fraud brakes on", show_edge=False)
    for column in ("user", "class", "until"):
        table.add_column(column)
    for b in active:
        table.add_row(b.extension, b.call_class, _when(b.until))
    out.print(table)


@brake_app.command("clear")
def brake_clear(extension: Annotated[str, typer.Argument(help="The user's extension.")],
                call_class: Annotated[str | None, typer.Option(
                    "--class", help="Only this class (default: every class).")] = None,
                brake_dir: BrakeDir = DEFAULT_BRAKE_DIR, spool: SpoolPath = DEFAULT_SPOOL,
                as_json: JsonOutput = False) -> None:
    """Lift a user's brake now: its calls of the class go out again, and only calls from
    now on count towards the limit (logged as a security event)."""
    from wildix_ast.model.call_classes import CallClass
    from wildix_ast.services.call_history.brake import clear
    from wildix_ast.services.call_history.spool import Spool

    mode.json = as_json
    if not (extension.isdigit() and 2 <= len(extension) <= 8):
        raise SettingsError(f"{extension!r} is not an extension (2 to 8 digits)")
    if call_class is not None and call_class not in {c.value for c in CallClass}:
        raise SettingsError(f"--class {call_class!r}: one of "
                            f"{', '.join(c.value for c in CallClass)}")
    opened = Spool(spool)
    try:
        cleared = clear(brake_dir, opened, extension, call_class)
    finally:
        opened.close()
    if as_json:
        emit_json({"ok": True, "user": extension, "cleared": cleared})
        return
    out.print(f"[green]✓[/] {extension}: " + (f"brake lifted ({', '.join(cleared)})"
                                              if cleared else "was not braked"))


def user_delete(extension: Annotated[str, typer.Argument(help="The user's extension.")],
                with_history: Annotated[bool, typer.Option(
                    "--with-history", help="Also remove the user's calls from every call "
                    "history backend and its fax documents (GDPR).")] = False,
                acting: Annotated[str | None, typer.Option(
                    "--as", help="The administrator (login or extension) removing the user: "
                    "the seed's rule applies (an admin cannot remove another admin). "
                    "Without it: the super administrator (whoever holds the store).")] = None,
                db: DbUrl = None, documents: FaxDocuments = None,
                as_json: JsonOutput = False) -> None:
    """Remove a user from the stored site (`apply` then makes the PBX forget it, their
    voicemail messages included) and, with --with-history, every call it made or received
    from every call history backend and their fax documents."""
    from pydantic import ValidationError

    from wildix_ast.model.fields import message
    from wildix_ast.model.site import Site
    from wildix_ast.services.call_history.query import delete_user_history
    from wildix_ast.store import open_store
    from wildix_ast.store.vault import with_backend_passwords

    mode.json = as_json
    if not (extension.isdigit() and 2 <= len(extension) <= 8):
        raise SettingsError(f"{extension!r} is not an extension (2 to 8 digits)")
    with open_store(db) as store:
        if not store.has_site():
            raise StoreError("the store holds no site yet: run `wildix-ast import SITE` first")
        site = with_backend_passwords(store.export_site(), store)
        leaving = next((u for u in site.users if u.extension == extension), None)
        if leaving is None:
            raise SettingsError(f"no user has extension {extension}")
        if acting is not None:
            from wildix_ast.cli.users import check_admin_rule
            from wildix_ast.model.user_merge import UserChanges

            check_admin_rule(site, acting, UserChanges(removed=[leaving]),
                             {extension: f"user {extension}"}, "removed")
        data = site.model_dump()
        data["users"] = [u for u in data["users"] if u["extension"] != extension]
        try:
            remaining = Site.model_validate(data)
        except ValidationError as exc:
            where = ", ".join(f"{'.'.join(str(p) for p in e['loc'])}: {message(e)}"
                              for e in exc.errors()[:3])
            raise SettingsError(f"user {extension} cannot be removed: {where}") from None
        store.import_site(remaining)
    removed: dict[str, int] = {}
    faxes = 0
    if with_history:
        for backend in site.call_history.backends:
            try:
                removed[backend.name] = delete_user_history(backend, extension)
            except Exception as exc:  # any database failure becomes a message
                raise _database_failure(exc, backend) from None
        faxes = _forget_documents(documents, extension)
    if as_json:
        emit_json({"ok": True, "extension": extension, "history_removed": removed,
                   "fax_documents_removed": faxes})
        return
    out.print(f"[green]✓[/] user {extension} removed from the store (run `wildix-ast apply`)")
    for name, count in removed.items():
        out.print(f"[green]✓[/] {name}: {count} call record(s) of {extension} removed")
    if with_history:
        out.print(f"[green]✓[/] {faxes} fax document(s) of {extension} removed")
