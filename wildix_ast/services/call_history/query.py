"""Reading the call history back: `cdr list` (filtered records), `cdr stats` (calls, answered,
minutes per user, trunk, class or day), `cdr backends` (each backend's delivery state, from
the collector's spool), and deleting a user's records from every backend (GDPR).

List and statistics read the statistics backend with plain SQL through SQLAlchemy (bound
parameters only: a filter value never becomes SQL text)."""

from __future__ import annotations

import csv
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import and_, case, func, inspect, or_, select
from sqlalchemy.sql.elements import ColumnElement

from wildix_ast.model.call_history import BackendKind, CallHistoryBackend
from wildix_ast.services.call_history.backends import (
    CSV_COLUMNS,
    CsvSink,
    engine_of,
    record_table,
)
from wildix_ast.services.call_history.spool import Spool

GROUPINGS = {"user": "caller_user", "trunk": "trunk", "class": "call_class", "day": "day"}


@dataclass(frozen=True)
class Filters:
    user: str | None = None
    number: str | None = None
    since: float | None = None
    until: float | None = None
    direction: str | None = None
    call_class: str | None = None
    trunk: str | None = None
    disposition: str | None = None


def _conditions(table: Any, given: Filters) -> list[ColumnElement[bool]]:
    c = table.c
    found: list[ColumnElement[bool]] = []
    if given.user:
        found.append(or_(c.caller_user == given.user, c.callee_user == given.user))
    if given.number:
        found.append(or_(c.caller_number == given.number, c.callee_number == given.number,
                         c.dialled == given.number))
    if given.since is not None:
        found.append(c.start >= given.since)
    if given.until is not None:
        found.append(c.start < given.until)
    for column, value in (("direction", given.direction), ("call_class", given.call_class),
                          ("trunk", given.trunk), ("disposition", given.disposition)):
        if value:
            found.append(c[column] == value)
    return found


def list_records(backend: CallHistoryBackend, given: Filters,
                 limit: int = 1000) -> list[dict[str, Any]]:
    table = record_table(backend.table)
    engine = engine_of(backend)
    try:
        with engine.connect() as connection:
            # a table made by an earlier version lacks the fax columns until the collector
            # next writes to it: read what is there, the rest is the columns' defaults
            present = {c["name"] for c in inspect(connection).get_columns(backend.table)}
            chosen = [c for c in table.columns if c.name in present]
            query = select(*chosen).where(and_(True, *_conditions(table, given))) \
                .order_by(table.c.start.desc()).limit(limit)
            missing = {c.name: 0 if c.name in ("fax_pages",) else ""
                       for c in table.columns if c.name not in present}
            return [{**missing, **dict(row)} for row in connection.execute(query).mappings()]
    finally:
        engine.dispose()


def statistics(backend: CallHistoryBackend, by: str, given: Filters) -> list[dict[str, Any]]:
    table = record_table(backend.table)
    key = table.c[GROUPINGS[by]]
    engine = engine_of(backend)
    answered = func.sum(case((table.c.disposition == "answered", 1), else_=0))
    try:
        query = (select(key.label("key"), func.count().label("calls"),
                        answered.label("answered"),
                        func.sum(table.c.billsec).label("seconds"))
                 .where(and_(True, *_conditions(table, given)))
                 .group_by(key).order_by(key))
        with engine.connect() as connection:
            return [{"key": row.key, "calls": int(row.calls), "answered": int(row.answered or 0),
                     "minutes": round(float(row.seconds or 0) / 60, 2)}
                    for row in connection.execute(query)]
    finally:
        engine.dispose()


def backend_states(spool_path: Path,
                   backends: Sequence[CallHistoryBackend]) -> list[dict[str, Any]]:
    """Per backend: ok / failing / lagging / off, last write, records behind, lag in
    seconds (age of the oldest record not written there yet), last error. Without a spool
    (the collector never ran): `not collecting`, and nothing is created."""
    if not spool_path.exists():
        return [{"backend": b.name, "kind": b.kind.value,
                 "state": "off" if not b.enabled else "not collecting", "last_write": None,
                 "behind": 0, "lag_seconds": 0.0, "last_error": None, "error_at": None}
                for b in backends]
    spool = Spool(spool_path)
    try:
        newest = spool.last_record()[0]
        now = time.time()
        states = []
        for backend in backends:
            delivery = spool.delivery(backend.name)
            behind = max(0, newest - delivery.last_id)
            oldest = spool.oldest_after(delivery.last_id) if behind else None
            if not backend.enabled:
                state = "off"
            elif delivery.last_error:
                state = "failing"
            elif behind:
                state = "lagging"
            else:
                state = "ok"
            states.append({"backend": backend.name, "kind": backend.kind.value,
                           "state": state, "last_write": delivery.last_write,
                           "behind": behind,
                           "lag_seconds": round(now - oldest, 3) if oldest else 0.0,
                           "last_error": delivery.last_error, "error_at": delivery.error_at})
        return states
    finally:
        spool.close()


def delete_user_history(backend: CallHistoryBackend, extension: str) -> int:
    """Remove every record where `extension` is the caller or the callee; how many."""
    if backend.kind is BackendKind.CSV:
        return _delete_from_csv(CsvSink(backend), extension)
    table = record_table(backend.table)
    engine = engine_of(backend)
    try:
        with engine.begin() as connection:
            if not engine.dialect.has_table(connection, backend.table):
                return 0
            result = connection.execute(table.delete().where(
                or_(table.c.caller_user == extension, table.c.callee_user == extension)))
            return int(result.rowcount or 0)
    finally:
        engine.dispose()


def _delete_from_csv(sink: CsvSink, extension: str) -> int:
    """Rewrite each CSV file without the user's rows (atomically: a new file renamed)."""
    removed = 0
    if not sink.folder.is_dir():
        return 0
    caller = CSV_COLUMNS.index("caller_user")
    callee = CSV_COLUMNS.index("callee_user")
    for path in sorted(sink.folder.glob(f"{sink.name}*.csv")):
        with open(path, encoding="utf-8", newline="") as stream:
            rows = list(csv.reader(stream))
        kept = [r for i, r in enumerate(rows)
                if i == 0 or len(r) <= callee or extension not in (r[caller], r[callee])]
        if len(kept) == len(rows):
            continue
        removed += len(rows) - len(kept)
        temporary = path.with_suffix(".csv.tmp")
        with open(temporary, "w", encoding="utf-8", newline="") as stream:
            csv.writer(stream, lineterminator="\n").writerows(kept)
        temporary.chmod(0o640)
        temporary.replace(path)
    return removed
