"""Where call records are written: SQLite, PostgreSQL, MariaDB/MySQL (one table, made if
missing) and CSV files. Every `write` is idempotent, so re-sending a batch after a crash or
a timeout never doubles a call:

- SQL: `call_id` is the primary key; INSERT OR IGNORE (SQLite), ON CONFLICT DO NOTHING
  (PostgreSQL), INSERT IGNORE (MariaDB);
- CSV: each row carries the spool's record id (`record_id`, growing); before appending, the
  file's last complete row says which ids are in already, and a row cut short by a crash is
  cut off first.

Connections time out (connect 5 s, statements 15 s): a server that hangs delays only its own
backend's thread (`collector`)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import (
    Column,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    insert,
    inspect,
)
from sqlalchemy.engine import URL
from sqlalchemy.schema import CreateColumn

from wildix_ast.model.call_history import BackendKind, CallHistoryBackend, CsvRotation
from wildix_ast.services.call_history.record import COLUMNS, CallRecord

CONNECT_TIMEOUT = 5
STATEMENT_TIMEOUT = 15
_FLOATS = frozenset({"start", "answer", "end", "duration", "billsec"})
_INTEGERS = frozenset({"fax_pages"})
_SHORT = {"call_id": 64, "day": 10, "disposition": 16, "direction": 16, "call_class": 16}


class Sink(Protocol):
    def write(self, records: Sequence[tuple[int, CallRecord]]) -> None: ...

    def close(self) -> None: ...


def record_table(name: str, metadata: MetaData | None = None) -> Table:
    """The table of call records named `name` (the backend's `table` setting)."""
    columns: list[Column[Any]] = []
    for column in COLUMNS:
        if column in _FLOATS:
            columns.append(Column(column, Float(precision=53),
                                  nullable=column == "answer"))
        elif column in _INTEGERS:
            columns.append(Column(column, Integer, nullable=False, server_default="0"))
        elif column == "legs":
            columns.append(Column(column, Text, nullable=False))
        else:
            columns.append(Column(column, String(_SHORT.get(column, 128)), nullable=False,
                                  primary_key=column == "call_id",
                                  # a column added after tables existed: ADD COLUMN
                                  # needs a default for the rows already there
                                  server_default="" if column.startswith("fax") else None))
    table = Table(name, metadata or MetaData(), *columns)
    # covers `cdr stats` over a date range: read from the index alone, never the rows
    Index(f"ix_{name}_start", table.c.start, table.c.disposition, table.c.billsec,
          table.c.day, table.c.caller_user, table.c.trunk, table.c.call_class)
    Index(f"ix_{name}_day", table.c.day)
    Index(f"ix_{name}_caller", table.c.caller_user)
    Index(f"ix_{name}_callee", table.c.callee_user)
    return table


def url_of(backend: CallHistoryBackend) -> URL:
    if backend.kind is BackendKind.SQLITE:
        return URL.create("sqlite+pysqlite", database=backend.sqlite_path)
    driver = {BackendKind.POSTGRESQL: "postgresql+psycopg2",
              BackendKind.MYSQL: "mysql+pymysql"}[backend.kind]
    return URL.create(driver, username=backend.user, password=backend.password,
                      host=backend.host, port=backend.port, database=backend.database)


def engine_of(backend: CallHistoryBackend) -> Engine:
    connect: dict[str, Any]
    if backend.kind is BackendKind.SQLITE:
        path = Path(backend.sqlite_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # call records are personal data: the file is the owner's only from its start
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        connect = {"timeout": STATEMENT_TIMEOUT}
    elif backend.kind is BackendKind.POSTGRESQL:
        connect = {"connect_timeout": CONNECT_TIMEOUT,
                   "options": f"-c statement_timeout={STATEMENT_TIMEOUT * 1000}"}
    else:
        connect = {"connect_timeout": CONNECT_TIMEOUT, "read_timeout": STATEMENT_TIMEOUT,
                   "write_timeout": STATEMENT_TIMEOUT, "charset": "utf8mb4"}
    return create_engine(url_of(backend), connect_args=connect, pool_pre_ping=True,
                         pool_size=1 if backend.kind is not BackendKind.SQLITE else 5)


def add_missing_columns(engine: Engine, table: Table) -> list[str]:
    """Give a table made by an older version the record's newer columns (the fax fields),
    each with its default, so old rows stay valid; the names added. Only ADD COLUMN: a
    backend's existing data is never rewritten."""
    with engine.begin() as connection:
        present = {c["name"] for c in inspect(connection).get_columns(table.name)}
        # only columns that have a default can join rows already there (the fax fields)
        missing = [c for c in table.columns
                   if c.name not in present and c.server_default is not None]
        for column in missing:
            ddl = CreateColumn(column).compile(dialect=engine.dialect)
            quoted = engine.dialect.identifier_preparer.quote(table.name)
            connection.exec_driver_sql(f"ALTER TABLE {quoted} ADD COLUMN {ddl}")
    return [c.name for c in missing]


class SqlSink:
    """A database backend: the table is made if missing, then rows inserted idempotently."""

    def __init__(self, backend: CallHistoryBackend) -> None:
        self.backend = backend
        self.engine = engine_of(backend)
        self.table = record_table(backend.table)
        self._ready = False

    def _insert(self) -> Any:
        kind = self.backend.kind
        if kind is BackendKind.POSTGRESQL:
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return pg_insert(self.table).on_conflict_do_nothing(index_elements=["call_id"])
        if kind is BackendKind.MYSQL:
            return insert(self.table).prefix_with("IGNORE")
        return insert(self.table).prefix_with("OR IGNORE")

    def write(self, records: Sequence[tuple[int, CallRecord]]) -> None:
        if not self._ready:
            self.table.metadata.create_all(self.engine, checkfirst=True)
            add_missing_columns(self.engine, self.table)
            self._ready = True
        rows = [record.to_json() for _, record in records]
        with self.engine.begin() as connection:
            connection.execute(self._insert(), rows)

    def close(self) -> None:
        self.engine.dispose()


CSV_COLUMNS = ("record_id", *COLUMNS)
_FORMULA = ("=", "@", "\t", "\r", "+", "-")


def csv_safe(value: object) -> object:
    """A cell a spreadsheet will not run as a formula: a caller's name or number comes from
    outside (`=HYPERLINK(...)`); a leading quote disarms it. Numbers stay as they are
    ('+33140000000', '-1.5')."""
    if not isinstance(value, str) or not value.startswith(_FORMULA):
        return value
    if value[0] in "+-" and value[1:].replace(".", "", 1).isdigit():
        return value
    return "'" + value


class CsvSink:
    """CSV files in a folder, one per day or month (or one), owner-only, fsync'd per batch."""

    def __init__(self, backend: CallHistoryBackend) -> None:
        self.folder = Path(backend.csv_folder)
        self.rotation = backend.rotation
        self.name = backend.table

    def file_for(self, record: CallRecord) -> Path:
        when = dt.datetime.fromtimestamp(record.start, dt.UTC)
        suffix = {CsvRotation.DAILY: when.strftime("-%Y-%m-%d"),
                  CsvRotation.MONTHLY: when.strftime("-%Y-%m"), CsvRotation.NONE: ""}
        return self.folder / f"{self.name}{suffix[self.rotation]}.csv"

    @staticmethod
    def _header_current(path: Path) -> bool:
        """Whether the file's first line is today's columns (an older version's file
        lacks the fax columns: rows of two shapes in one file would mislead a reader)."""
        with open(path, encoding="utf-8", newline="") as stream:
            first = stream.readline()
        return not first or next(csv.reader([first]), []) == list(CSV_COLUMNS)

    @staticmethod
    def _set_aside(path: Path) -> None:
        """Rename an older version's file `<name>.v1.csv` (`.v2` ...); new rows start a
        file with today's header. The record ids go on growing, so nothing is re-sent."""
        for number in range(1, 1000):
            target = path.with_suffix(f".v{number}.csv")
            if not target.exists():
                path.rename(target)
                return
        raise OSError(f"{path}: too many older versions set aside")

    @staticmethod
    def _last_id(path: Path) -> int:
        """The last record id in the file; a row cut short by a crash is cut off."""
        with open(path, "rb+") as stream:
            size = stream.seek(0, os.SEEK_END)
            tail_from = max(0, size - 65536)
            stream.seek(tail_from)
            tail = stream.read()
            if tail and not tail.endswith(b"\n"):
                cut = tail.rfind(b"\n")
                stream.truncate(tail_from + cut + 1 if cut >= 0 else tail_from)
                tail = tail[:cut + 1] if cut >= 0 else b""
            lines = [line for line in tail.split(b"\n") if line]
        for line in reversed(lines):
            first = line.split(b",", 1)[0].strip(b'"')
            if first.isdigit():
                return int(first)
        return 0

    def write(self, records: Sequence[tuple[int, CallRecord]]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o750)
        by_file: dict[Path, list[tuple[int, CallRecord]]] = {}
        for record_id, record in records:
            by_file.setdefault(self.file_for(record), []).append((record_id, record))
        for path, batch in by_file.items():
            if path.exists() and not self._header_current(path):
                self._set_aside(path)
            fresh = not path.exists()
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
            os.close(descriptor)
            last = 0 if fresh else self._last_id(path)
            text = io.StringIO()
            writer = csv.writer(text, lineterminator="\n")
            if fresh or path.stat().st_size == 0:
                writer.writerow(CSV_COLUMNS)
            for record_id, record in batch:
                if record_id > last:
                    data = record.to_json()
                    writer.writerow([record_id, *(csv_safe(data[c]) if data[c] is not None
                                                  else "" for c in COLUMNS)])
            with open(path, "a", encoding="utf-8", newline="") as stream:
                stream.write(text.getvalue())
                stream.flush()
                os.fsync(stream.fileno())

    def close(self) -> None:
        pass


def sink_of(backend: CallHistoryBackend) -> Sink:
    if backend.kind is BackendKind.CSV:
        return CsvSink(backend)
    return SqlSink(backend)
