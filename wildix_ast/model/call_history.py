"""Call history settings (WMS Settings > PBX > "Historique des appels et chat").

Where the PBX's call records go: one or more backends at once (SQLite on the PBX by default,
MariaDB/MySQL, PostgreSQL, CSV files), each on or off, and the one backend that `cdr list`,
`cdr stats` and the toll-fraud brake read (`statistics`). MSSQL, which the WMS offers, is
refused with a clear message: no server of it can run in the tests here, and a backend that
is never exercised is one that loses records.

A database password is a secret: never shown in a model's repr, left out of `export`
without `--with-secrets` (`settings_file.dump_site`)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Self

from pydantic import BaseModel, Field, model_validator

from wildix_ast.model.call_classes import CallClass
from wildix_ast.model.common import STRICT, empty_list
from wildix_ast.model.fields import Email, Identifier, Port, Width, pattern


class BackendKind(StrEnum):
    SQLITE = "sqlite"
    MYSQL = "mysql"
    """MariaDB or MySQL."""
    POSTGRESQL = "postgresql"
    CSV = "csv"
    MSSQL = "mssql"
    """Named by the WMS guide; refused (see the module documentation)."""


class CsvRotation(StrEnum):
    """A CSV backend starts a new file every day, every month, or never."""

    DAILY = "daily"
    MONTHLY = "monthly"
    NONE = "none"


SQL_KINDS = frozenset({BackendKind.MYSQL, BackendKind.POSTGRESQL})

#: A table name that is the same identifier in every SQL dialect without quoting.
TableName = Annotated[str, Width(64), pattern(
    r"[A-Za-z_][A-Za-z0-9_]{0,62}", "table name (a letter or '_', then letters, digits, '_')")]
#: A database, or a database user: no quoting needed, nothing a URL would misread.
DatabaseName = Annotated[str, Width(64), pattern(
    r"[A-Za-z_][A-Za-z0-9_.-]{0,62}", "database name (letters, digits, '_', '.', '-')")]
#: An absolute path on the PBX without '..' (a SQLite file or a CSV folder).
PbxPath = Annotated[str, Width(255), pattern(
    r"/(?:[A-Za-z0-9_.+@-]+/)*[A-Za-z0-9_.+@-]+", "absolute path (letters, digits, '_', '.', "
    "'+', '@', '-' between '/')")]
DatabasePassword = Annotated[str, Field(min_length=1, max_length=128), pattern(
    r"[!-~](?:[ -~]*[!-~])?", "database password (printable ASCII, no spaces at either end)")]

#: A database server's host name or IPv4 address (never anything a URL would misread).
DatabaseHost = Annotated[str, Width(253), Field(max_length=253), pattern(
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9][A-Za-z0-9-]{0,62})*",
    "host name or IPv4 address")]

DEFAULT_SQLITE_PATH = "/var/lib/wildix-ast/call_history.sqlite3"
DEFAULT_CSV_FOLDER = "/var/log/wildix-ast/call_history"


class CallHistoryBackend(BaseModel):
    """One place the call records are written to."""

    model_config = STRICT

    name: Identifier
    kind: BackendKind
    enabled: bool = True
    host: DatabaseHost | None = None
    port: Port | None = None
    database: DatabaseName | None = None
    table: TableName = "call_history"
    user: DatabaseName | None = None
    password: DatabasePassword | None = Field(default=None, repr=False, exclude=True)
    """Kept in the store's vault (`cdr:<backend>:password`), never in the backend's row;
    never serialised by the model (digests, JSON output): `dump_site` adds it back when
    asked (`export --with-secrets`)."""
    #: SQLite: the database file
    path: PbxPath | None = None
    #: CSV: the folder of the files
    folder: PbxPath | None = None
    rotation: CsvRotation = CsvRotation.DAILY

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if self.kind is BackendKind.MSSQL:
            raise ValueError(
                "MSSQL is not supported: choose sqlite, mysql (MariaDB/MySQL), postgresql or "
                "csv (no MSSQL server runs in this project's tests, so records sent there "
                "could not be shown to arrive)")
        if self.kind in SQL_KINDS:
            missing = [n for n in ("host", "database", "user") if getattr(self, n) is None]
            if missing:
                raise ValueError(f"a {self.kind.value} backend needs {', '.join(missing)}")
        return self

    @property
    def sqlite_path(self) -> str:
        return self.path or DEFAULT_SQLITE_PATH

    @property
    def csv_folder(self) -> str:
        return self.folder or DEFAULT_CSV_FOLDER


class LimitScope(StrEnum):
    SITE = "site"
    GROUP = "group"
    USER = "user"


class TollLimit(BaseModel):
    """The toll-fraud brake for one call class: at most `minutes` billed outside minutes
    and/or `calls` outside calls per user in a sliding window of `window_minutes`. The
    limit for a user is its own (scope user, name = extension), else its ACL group's (scope
    group), else the site's: each user is counted on its own."""

    model_config = STRICT

    call_class: CallClass
    scope: LimitScope = LimitScope.SITE
    name: Annotated[str, Width(40, exact=True), pattern(
        r"[A-Za-z0-9_-]{0,40}", "group name or extension")] = ""
    minutes: Annotated[int, Field(ge=1, le=100_000)] | None = None
    calls: Annotated[int, Field(ge=1, le=100_000)] | None = None
    window_minutes: Annotated[int, Field(ge=1, le=44_640)] = 60

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if self.minutes is None and self.calls is None:
            raise ValueError("a toll limit needs minutes, calls or both")
        if self.call_class in (CallClass.INTERNAL, CallClass.EMERGENCY):
            raise ValueError(f"{self.call_class.value} calls are never braked")
        if (self.scope is LimitScope.SITE) != (self.name == ""):
            raise ValueError("a site limit has no name; a group or user limit names its "
                             "group or extension")
        return self


def _default_backends() -> list[CallHistoryBackend]:
    return [CallHistoryBackend(name="local", kind=BackendKind.SQLITE)]


class CallHistory(BaseModel):
    """The call history: on or off, its backends, and which one statistics read."""

    model_config = STRICT

    enabled: bool = True
    backends: list[CallHistoryBackend] = Field(default_factory=_default_backends)
    statistics: Identifier = "local"
    """The backend `cdr list` and `cdr stats` read (not a CSV one)."""
    limits: list[TollLimit] = Field(default_factory=empty_list)
    """The toll-fraud brake (see `TollLimit`)."""
    retention_days: Annotated[int, Field(ge=1, le=36500)] = 365
    """How long the history keeps the documents its records refer to: a fax's PDF is
    deleted this many days after the fax (by the fax service). The records in the
    backends are not pruned by it yet (docs/call_history.md)."""
    alert_email: Email | None = None
    """Where the toll-fraud brake mails its alert (through the PBX's mail queue) when it
    stops a user; none: the alert is only logged as a security event."""

    @model_validator(mode="after")
    def _statistics_backend(self) -> Self:
        scopes = [(t.call_class, t.scope, t.name) for t in self.limits]
        if len(scopes) != len(set(scopes)):
            raise ValueError("two toll limits for the same class and scope")
        names = [b.name for b in self.backends]
        doubled = sorted({n for n in names if names.count(n) > 1})
        if doubled:
            raise ValueError(f"call history backends named twice: {', '.join(doubled)}")
        if not self.enabled or not self.backends:
            return self
        chosen = next((b for b in self.backends if b.name == self.statistics), None)
        if chosen is None:
            raise ValueError(f"statistics names {self.statistics!r}, which is not one of the "
                             f"backends ({', '.join(names)})")
        if chosen.kind is BackendKind.CSV:
            raise ValueError(f"statistics cannot read the CSV backend {chosen.name!r}: choose "
                             "a database backend")
        if not chosen.enabled:
            raise ValueError(f"statistics names the disabled backend {chosen.name!r}")
        return self

    @property
    def enabled_backends(self) -> list[CallHistoryBackend]:
        return [b for b in self.backends if b.enabled] if self.enabled else []
