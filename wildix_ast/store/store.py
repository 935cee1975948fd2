"""The store: the site persisted in SQLite, PostgreSQL or MariaDB, and the generated secrets.

`open_store()` migrates the database to the schema this code knows (alembic `upgrade head`,
the only way the schema is ever made) and returns a `Store`. Every failure a person can meet
(server down, wrong password, unknown URL scheme, a newer schema, a read-only disk) comes out
as a `StoreError` with one actionable message."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from pydantic import ValidationError
from sqlalchemy import Connection, Engine, Table, create_engine, delete, event, insert, select
from sqlalchemy import update as sql_update
from sqlalchemy.engine import URL, RowMapping, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError, SQLAlchemyError

from wildix_ast.errors import StoreError
from wildix_ast.secrets_vault import user_secret_key
from wildix_ast.site import Site
from wildix_ast.store import tables as t
from wildix_ast.users import User

DB_ENV = "WILDIX_AST_DB"
DEFAULT_PATH = Path("~/.local/share/wildix-ast/wildix-ast.sqlite3")
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
CONNECT_TIMEOUT = 10
# Rows per INSERT batch: bounded memory and statement size for 50,000 users.
BATCH = 1000
# The per-user secrets of wildix_ast.secrets_vault, deleted with their user.
USER_SECRET_KINDS = ("sip", "web")
_BACKENDS = {"sqlite": "SQLite", "postgresql": "PostgreSQL", "mysql": "MariaDB/MySQL",
             "mariadb": "MariaDB"}
_DRIVERS = {"sqlite": {"pysqlite"}, "postgresql": {"psycopg2"},
            "mysql": {"pymysql", "mysqldb"}, "mariadb": {"pymysql", "mysqldb"}}
_DEFAULT_DRIVER = {"sqlite": "pysqlite", "postgresql": "psycopg2", "mysql": "pymysql",
                   "mariadb": "pymysql"}
_EXTRA = {"postgresql": "postgresql", "mysql": "mariadb", "mariadb": "mariadb"}


@dataclass(frozen=True)
class ImportReport:
    """What an import changed. Users are matched by extension."""

    users: int
    groups: int
    procedures: int
    added: int
    changed: int
    removed: int
    imported_at: datetime
    source_sha256: str | None = None

    @property
    def unchanged(self) -> int:
        return self.users - self.added - self.changed

    def __str__(self) -> str:
        return (f"{self.users} users ({self.added} added, {self.changed} changed, "
                f"{self.removed} removed), {self.groups} groups, "
                f"{self.procedures} dialplan procedures")


# --- opening ---------------------------------------------------------------------------------

def default_location() -> str:
    """`$WILDIX_AST_DB`, else the SQLite file in the user's data directory."""
    return os.environ.get(DB_ENV) or str(DEFAULT_PATH.expanduser())


def _parse_url(location: str) -> URL:
    """A database URL from a URL or a plain SQLite file path."""
    if "://" not in location:
        path = Path(location).expanduser().absolute()
        return URL.create("sqlite+pysqlite", database=str(path))
    try:
        url = make_url(location)
    except ArgumentError:
        raise StoreError(f"{location!r} is neither a database URL nor a file path; use "
                         "a path, sqlite:///PATH, postgresql+psycopg2://USER:PASSWORD@HOST/DB "
                         "or mysql+pymysql://USER:PASSWORD@HOST/DB") from None
    backend, _, driver = url.drivername.partition("+")
    if backend not in _BACKENDS:
        raise StoreError(f"unsupported database {backend!r} in "
                         f"{url.render_as_string(hide_password=True)}: use a SQLite path, "
                         "postgresql+psycopg2://... or mysql+pymysql://...")
    if not driver:  # the drivers wildix-ast installs, not SQLAlchemy's defaults
        driver = _DEFAULT_DRIVER[backend]
        url = url.set(drivername=f"{backend}+{driver}")
    if driver not in _DRIVERS[backend]:
        raise StoreError(f"unsupported driver {driver!r} for {_BACKENDS[backend]}: use "
                         + " or ".join(f"{backend}+{d}://" for d in sorted(_DRIVERS[backend])))
    return url


def _sqlite_path(url: URL) -> Path | None:
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or database in ("", ":memory:") \
            or database.startswith("file:"):
        return None
    return Path(database)


def _create_engine(url: URL) -> Engine:
    backend = url.get_backend_name()
    connect_args: dict[str, Any] = {}
    if backend == "sqlite":
        connect_args["timeout"] = 30  # seconds to wait for another writer
        if (url.database or "").startswith("file:"):
            connect_args["uri"] = True
    elif backend == "postgresql" and "connect_timeout" not in url.query:
        connect_args["connect_timeout"] = CONNECT_TIMEOUT
    elif backend in ("mysql", "mariadb"):
        if "connect_timeout" not in url.query:
            connect_args["connect_timeout"] = CONNECT_TIMEOUT
        if "charset" not in url.query:
            connect_args["charset"] = "utf8mb4"
    try:
        engine = create_engine(url, connect_args=connect_args, pool_pre_ping=True)
    except (NoSuchModuleError, ImportError) as exc:
        extra = _EXTRA.get(backend)
        hint = f" (pip install 'wildix-ast[{extra}]')" if extra else ""
        raise StoreError(f"the {_BACKENDS[backend]} driver is not installed{hint}: "
                         f"{exc}") from None
    if backend == "sqlite":
        _sqlite_setup(engine)
    return engine


def _sqlite_setup(engine: Engine) -> None:
    """Foreign keys on, WAL, and real transactions (pysqlite's own handling starts them only
    at the first write, so reads and migrations would not be part of them)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys = ON")
            with suppress(Exception):  # a read-only store keeps its journal mode
                cursor.execute("PRAGMA journal_mode = WAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # A writer takes the write lock at once (waiting for another writer's turn): in
        # WAL mode, a transaction that read first cannot wait for it and fails "locked".
        writing = connection.get_execution_options().get(_WRITING, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if writing else "BEGIN")


_WRITING = "wildix_ast_writing"


@contextmanager
def _writing(engine: Engine) -> Iterator[Connection]:
    """A write transaction (IMMEDIATE on SQLite)."""
    with engine.connect() as connection:
        connection = connection.execution_options(**{_WRITING: True})
        with connection.begin():
            yield connection


def _alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


# alembic keeps its running migration context in module globals: one at a time per process.
_MIGRATING = threading.Lock()


@contextmanager
def _migration_lock(engine: Engine, where: str) -> Iterator[None]:
    """On MariaDB/MySQL, a named lock per database around a migration, held on a connection
    of its own until the migration is committed: their DDL commits at once and takes no lock
    another migrator waits for (SQLite's BEGIN IMMEDIATE and PostgreSQL's transactional DDL
    do), so two processes opening a new store together would both create the tables and one
    would fail with "Table ... already exists"."""
    if engine.dialect.name not in ("mysql", "mariadb"):
        yield
        return
    name = "CONCAT('wildix_ast_migrate:', MD5(DATABASE()))"  # lock names are server-wide
    with engine.connect() as connection:
        if connection.exec_driver_sql(f"SELECT GET_LOCK({name}, 60)").scalar() != 1:
            raise StoreError(f"the store {where} is busy: another wildix-ast has been "
                             "migrating it for a minute; try again when it is done")
        try:
            yield
        finally:
            with suppress(SQLAlchemyError):
                connection.exec_driver_sql(f"SELECT RELEASE_LOCK({name})")
                connection.rollback()


def _migrate(engine: Engine, where: str) -> None:
    """Bring the schema to the head revision, refusing a schema newer than this code."""
    script = ScriptDirectory.from_config(_alembic_config())
    head = script.get_current_head()
    known = {revision.revision for revision in script.walk_revisions()}

    def current(connection: Connection) -> tuple[str, ...]:
        heads = tuple(MigrationContext.configure(connection).get_current_heads())
        unknown = sorted(set(heads) - known)
        if unknown:
            raise StoreError(
                f"the store {where} has schema revision {', '.join(unknown)}, newer than this "
                f"wildix-ast knows (up to {head}): upgrade wildix-ast, or point --db at "
                "another store")
        return heads

    # Reading first: a store already at head opens without a write (read-only media too).
    with engine.begin() as connection:
        if current(connection) == (head,):
            return
    with _MIGRATING, _migration_lock(engine, where), _writing(engine) as connection:
        if current(connection) == (head,):  # another process migrated it meanwhile
            return
        try:
            command.upgrade(_alembic_config(connection), "head")
        except CommandError as exc:
            raise StoreError(f"cannot migrate the store {where}: {exc}") from None


def open_store(url: str | None = None) -> Store:
    """Open (creating and migrating as needed) the store at `url`: a database URL
    (sqlite:///PATH, postgresql+psycopg2://..., mysql+pymysql://...) or a SQLite file path.
    None means `$WILDIX_AST_DB`, else ~/.local/share/wildix-ast/wildix-ast.sqlite3."""
    parsed = _parse_url(url or default_location())
    where = parsed.render_as_string(hide_password=True)
    path = _sqlite_path(parsed)
    if path is not None:
        where = str(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the folder of the store {path}: "
                             f"{exc.strerror or exc}") from None
    engine = _create_engine(parsed)
    try:
        with _translated(where, "opening"):
            try:
                _migrate(engine, where)
            except SQLAlchemyError:
                # Another process may have been migrating the same new store at the same
                # time: its work is done now, so a second look finds the schema at head.
                _migrate(engine, where)
    except BaseException:
        engine.dispose()
        raise
    return Store(engine, where)


# --- errors ----------------------------------------------------------------------------------

_REFUSED = ("connection refused", "could not connect", "can't connect", "timeout expired",
            "timed out", "could not translate host name", "name or service not known",
            "no route to host", "network is unreachable", "lost connection",
            "server closed the connection", "connection reset")
_CREDENTIALS = ("password authentication failed", "access denied", "no password supplied",
                "authentication failed", "pg_hba.conf")
_NO_DATABASE = ("does not exist", "unknown database")
_READ_ONLY = ("readonly database", "read-only", "read only", "unable to open database file",
              "disk i/o error", "no space left", "disk is full")
_NO_RIGHTS = ("permission denied", "command denied", "must be owner")


def _detail(exc: BaseException) -> str:
    original = getattr(exc, "orig", None) or exc
    args: tuple[object, ...] = getattr(original, "args", ())
    if len(args) == 2 and isinstance(args[0], int) and isinstance(args[1], str):
        text = f"{args[1]} (error {args[0]})"  # MariaDB: (code, message)
    else:
        text = str(original).strip()
    return text.splitlines()[0] if text else type(original).__name__


def _explain(exc: BaseException, where: str, action: str) -> StoreError:
    detail = _detail(exc)
    low = detail.lower()
    if isinstance(exc, OSError) and not isinstance(exc, SQLAlchemyError):
        return StoreError(f"the store {where} failed while {action}: {exc.strerror or exc}")
    server = "://" in where and not where.startswith("sqlite")
    if server and (any(s in low for s in _NO_RIGHTS) or "to database" in low):
        return StoreError(f"the database user of {where} lacks a right ({detail}): let it "
                          "create, alter and drop tables and write rows in its database")
    if any(s in low for s in _CREDENTIALS):
        return StoreError(f"the database server of {where} refused the user name or password "
                          f"({detail}): check the credentials in the URL")
    if any(s in low for s in _REFUSED):
        return StoreError(f"cannot reach the database server of {where} ({detail}): check that "
                          "it runs and that the host and port in the URL are right")
    if "database" in low and any(s in low for s in _NO_DATABASE):
        return StoreError(f"the database of {where} does not exist ({detail}): create it "
                          "first (wildix-ast creates the tables, not the database)")
    if any(s in low for s in (*_READ_ONLY, *_NO_RIGHTS)):
        return StoreError(f"cannot write the store {where} ({detail}): check that its disk is "
                          "writable, not full, and that the file and its folder belong to you")
    if "database is locked" in low or "lock wait timeout" in low or "deadlock" in low:
        return StoreError(f"the store {where} is busy ({detail}): another wildix-ast is "
                          "writing to it; try again when it is done")
    if isinstance(exc, IntegrityError):
        return StoreError(f"the database refused the data while {action}: {detail}")
    return StoreError(f"the store {where} failed while {action}: {detail}")


@contextmanager
def _translated(where: str, action: str) -> Iterator[None]:
    try:
        yield
    except StoreError:
        raise
    except (SQLAlchemyError, OSError) as exc:
        raise _explain(exc, where, action) from exc


# --- rows <-> model --------------------------------------------------------------------------

def _user_row(position: int, user: User) -> dict[str, Any]:
    return {
        "position": position, "type": user.type.value, "name": user.name,
        "login": user.login, "login_key": user.login.lower() if user.login else None,
        "extension": user.extension, "office_did": user.office_did, "fax_did": user.fax_did,
        "email": user.email, "email_key": user.email.lower() if user.email else None,
        "mobile": user.mobile, "language": user.language, "group_name": user.group,
        "department": user.department, "dialplan": user.dialplan,
        "fax_dialplan": user.fax_dialplan, "web_password": user.web_password,
        "sip_password": user.sip_password,
    }


# Columns that make a user's content: what decides "changed" on re-import.
_USER_FIELDS = ("type", "name", "login", "extension", "office_did", "fax_did", "email",
                "mobile", "language", "group_name", "department", "dialplan", "fax_dialplan",
                "web_password", "sip_password")


def _user_data(row: RowMapping) -> dict[str, Any]:
    data = {field: row[field] for field in _USER_FIELDS}
    data["group"] = data.pop("group_name")
    return {key: value for key, value in data.items() if value is not None}


# SIP-RTP settings stored as they are, one column each (issue 6).
_PHONE_SETTINGS = ("concurrent_calls", "rtp_timeout", "rtp_hold_timeout", "session_expires",
                   "qualify_frequency", "tls_port", "tls_certificate", "tls_private_key")


def _site_rows(site: Site) -> dict[Table, list[dict[str, Any]]]:
    system, dialplan = site.system, site.dialplan
    region, sip, manager = system.language_region, system.sip_rtp, system.manager
    return {
        t.system_settings: [{
            "id": 1, "pbx_name": system.pbx_name, "language": region.language,
            "tone_zone": region.tone_zone, "country_code": region.country_code,
            "timezone": region.timezone, "bind_address": str(sip.bind_address),
            "sip_port": sip.sip_port, "rtp_start": sip.rtp_start, "rtp_end": sip.rtp_end,
            "external_address": None if sip.external_address is None
            else str(sip.external_address),
            "media_address": None if sip.media_address is None else str(sip.media_address),
            **{name: getattr(sip, name) for name in _PHONE_SETTINGS},
            "manager_port": manager.port, "manager_username": manager.username}],
        t.lan_networks: [{"position": i, "network": str(network)}
                         for i, network in enumerate(sip.lan_networks)],
        t.sip_codecs: [{"scope": scope, "position": i, "codec": codec.value}
                       for scope, codecs in (("lan", sip.lan_codecs),
                                             ("remote", sip.remote_codecs))
                       for i, codec in enumerate(codecs)],
        t.dialplan_settings: [{"id": 1, "echo_test": dialplan.echo_test,
                               "voicemail": dialplan.voicemail,
                               "ring_timeout": dialplan.ring_timeout}],
        t.dialplan_procedures: [{"position": i, "name": p.name, "description": p.description}
                                for i, p in enumerate(dialplan.procedures)],
        t.acl_groups: [{"position": i, "name": g.name, "description": g.description}
                       for i, g in enumerate(site.groups)],
        t.users: [_user_row(i, user) for i, user in enumerate(site.users)],
    }


# Children before parents (users reference groups).
_SITE_TABLES_DELETE = (t.users, t.acl_groups, t.dialplan_procedures, t.dialplan_settings,
                       t.sip_codecs, t.lan_networks, t.system_settings)


def _insert_rows(connection: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """INSERT `rows` into `table`, in batches."""
    for start in range(0, len(rows), BATCH):
        connection.execute(insert(table), list(rows[start:start + BATCH]))


def _described(rows: Sequence[RowMapping]) -> list[dict[str, Any]]:
    return [{"name": r["name"], **({"description": r["description"]}
                                   if r["description"] is not None else {})} for r in rows]


def _aware(moment: datetime) -> datetime:
    """SQLite and MariaDB give back the UTC time without its zone."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# --- the store -------------------------------------------------------------------------------

class Store:
    """The persisted site and the generated secrets (a `SecretVault`)."""

    def __init__(self, engine: Engine, where: str) -> None:
        self._engine = engine
        self.where = where
        """Where the store is, for messages (a path, or the URL without its password)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close every connection to the database."""
        self._engine.dispose()

    @property
    def dialect(self) -> str:
        """The database kind: 'sqlite', 'postgresql' or 'mysql'."""
        return self._engine.dialect.name

    @contextmanager
    def _reading(self, action: str) -> Iterator[Connection]:
        """A consistent snapshot across several SELECTs."""
        with _translated(self.where, action), self._engine.connect() as connection:
            if self.dialect != "sqlite":
                connection = connection.execution_options(isolation_level="REPEATABLE READ")
            with connection.begin():
                yield connection

    def has_site(self) -> bool:
        """Whether a site has been imported."""
        with self._reading("reading the site") as connection:
            return connection.execute(select(t.system_settings.c.id)).first() is not None

    def site_generation(self) -> int:
        """A counter that every import increases: runtime services can poll it cheaply."""
        with self._reading("reading the site generation") as connection:
            value = connection.execute(select(t.site_state.c.generation)).scalar_one()
            return int(value)

    def export_site(self) -> Site:
        """The stored site, exactly as imported."""
        with self._reading("exporting the site") as connection:
            def rows(table: Table, *order: Any) -> list[RowMapping]:
                return [r._mapping for r in connection.execute(
                    select(table).order_by(*order))]

            system = rows(t.system_settings)
            if not system:
                raise StoreError(f"the store {self.where} holds no site yet: import one first")
            dialplan = rows(t.dialplan_settings)[0]
            networks = rows(t.lan_networks, t.lan_networks.c.position)
            codecs = rows(t.sip_codecs, t.sip_codecs.c.scope, t.sip_codecs.c.position)
            procedures = rows(t.dialplan_procedures, t.dialplan_procedures.c.position)
            groups = rows(t.acl_groups, t.acl_groups.c.position)
            users = rows(t.users, t.users.c.position)
        s = system[0]
        data = {
            "system": {
                "pbx_name": s["pbx_name"],
                "language_region": {"language": s["language"], "tone_zone": s["tone_zone"],
                                    "country_code": s["country_code"],
                                    "timezone": s["timezone"]},
                "sip_rtp": {
                    "bind_address": s["bind_address"], "sip_port": s["sip_port"],
                    "rtp_start": s["rtp_start"], "rtp_end": s["rtp_end"],
                    "external_address": s["external_address"],
                    "media_address": s["media_address"],
                    **{name: s[name] for name in _PHONE_SETTINGS},
                    "lan_networks": [r["network"] for r in networks],
                    "lan_codecs": [r["codec"] for r in codecs if r["scope"] == "lan"],
                    "remote_codecs": [r["codec"] for r in codecs if r["scope"] == "remote"]},
                "manager": {"port": s["manager_port"], "username": s["manager_username"]},
            },
            "groups": _described(groups),
            "dialplan": {"echo_test": dialplan["echo_test"], "voicemail": dialplan["voicemail"],
                         "ring_timeout": dialplan["ring_timeout"],
                         "procedures": _described(procedures)},
            "users": [_user_data(r) for r in users],
        }
        try:
            return Site.model_validate(data)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(part) for part in first["loc"])
            raise StoreError(f"the store {self.where} holds an invalid site ({where}: "
                             f"{first['msg']}; {exc.error_count()} problem(s)): import a valid "
                             "settings file again") from None

    def import_site(self, site: Site, source_text: str | None = None) -> ImportReport:
        """Replace the stored site with `site` in one transaction: all or nothing.

        Secrets are kept, except those of users that are gone (matched by extension)."""
        sha256 = None if source_text is None \
            else hashlib.sha256(source_text.encode("utf-8")).hexdigest()
        new_rows = _site_rows(site)
        now = datetime.now(UTC)
        try:
            with _translated(self.where, "importing the site"), \
                    _writing(self._engine) as connection:
                # First a write: it takes the lock that serialises concurrent imports.
                connection.execute(sql_update(t.site_state).where(t.site_state.c.id == 1)
                                   .values(generation=t.site_state.c.generation + 1))
                old = {r.extension: r._mapping for r in connection.execute(
                    select(*(t.users.c[f] for f in _USER_FIELDS)))}
                new = {row["extension"]: row for row in new_rows[t.users]}
                removed = sorted(set(old) - set(new))
                added = sum(1 for extension in new if extension not in old)
                changed = sum(1 for extension, row in new.items() if extension in old
                              and any(old[extension][f] != row[f] for f in _USER_FIELDS))
                for table in _SITE_TABLES_DELETE:
                    connection.execute(delete(table))
                for table in reversed(_SITE_TABLES_DELETE):
                    _insert_rows(connection, table, new_rows[table])
                gone = [user_secret_key(extension, kind)
                        for extension in removed for kind in USER_SECRET_KINDS]
                for start in range(0, len(gone), BATCH):
                    connection.execute(delete(t.secrets).where(
                        t.secrets.c.key.in_(gone[start:start + BATCH])))
                report = ImportReport(
                    users=len(site.users), groups=len(site.groups),
                    procedures=len(site.dialplan.procedures), added=added, changed=changed,
                    removed=len(removed), imported_at=now, source_sha256=sha256)
                connection.execute(insert(t.imports).values(
                    imported_at=now, source_sha256=sha256, users=report.users,
                    groups=report.groups, procedures=report.procedures, added=added,
                    changed=changed, removed=report.removed))
        except StoreError as exc:
            raise StoreError(f"import failed, the store is unchanged: {exc.message}") from exc
        except Exception as exc:
            raise StoreError(f"import failed, the store {self.where} is unchanged: "
                             f"{type(exc).__name__}: {exc}") from exc
        return report

    def import_history(self) -> list[ImportReport]:
        """Every import, oldest first."""
        with self._reading("reading the import history") as connection:
            return [ImportReport(users=r.users, groups=r.groups, procedures=r.procedures,
                                 added=r.added, changed=r.changed, removed=r.removed,
                                 imported_at=_aware(r.imported_at),
                                 source_sha256=r.source_sha256)
                    for r in connection.execute(select(t.imports).order_by(t.imports.c.id))]

    # SecretVault

    def get_secret(self, key: str) -> str | None:
        with _translated(self.where, "reading a secret"), self._engine.connect() as connection:
            value = connection.execute(
                select(t.secrets.c.value).where(t.secrets.c.key == key)).scalar()
            connection.rollback()
        return None if value is None else str(value)

    def put_secret(self, key: str, value: str) -> None:
        """Keep `value` under `key`, committed at once."""
        for attempt in range(2):
            try:
                with _translated(self.where, "saving a secret"), \
                        _writing(self._engine) as connection:
                    done = connection.execute(sql_update(t.secrets).where(
                        t.secrets.c.key == key).values(value=value)).rowcount
                    if not done:
                        connection.execute(insert(t.secrets).values(key=key, value=value))
                return
            except StoreError as exc:
                # Another process inserted the same key meanwhile: update it instead.
                if attempt or not isinstance(exc.__cause__, IntegrityError):
                    raise
