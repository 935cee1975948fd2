"""Opening a database: URLs, engines, transactions, migrations and the errors a person reads.

Everything here needs SQLAlchemy, which takes a large part of a short command's time: the
store imports this module only when it needs more than a SQLite file's secrets. alembic is
imported only when the schema is not at `SCHEMA_HEAD`."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError, SQLAlchemyError

from wildix_ast.errors import StoreError
from wildix_ast.store.schema import SCHEMA_HEAD

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
CONNECT_TIMEOUT = 10
_BACKENDS = {"sqlite": "SQLite", "postgresql": "PostgreSQL", "mysql": "MariaDB/MySQL",
             "mariadb": "MariaDB"}
_DRIVERS = {"sqlite": {"pysqlite"}, "postgresql": {"psycopg2"},
            "mysql": {"pymysql", "mysqldb"}, "mariadb": {"pymysql", "mysqldb"}}
_DEFAULT_DRIVER = {"sqlite": "pysqlite", "postgresql": "psycopg2", "mysql": "pymysql",
                   "mariadb": "pymysql"}
_EXTRA = {"postgresql": "postgresql", "mysql": "mariadb", "mariadb": "mariadb"}


def parse_url(location: str) -> URL:
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


def sqlite_path(url: URL) -> Path | None:
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or database in ("", ":memory:") \
            or database.startswith("file:"):
        return None
    return Path(database)


def create_store_engine(url: URL) -> Engine:
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
def writing(engine: Engine) -> Iterator[Connection]:
    """A write transaction (IMMEDIATE on SQLite)."""
    with engine.connect() as connection:
        connection = connection.execution_options(**{_WRITING: True})
        with connection.begin():
            yield connection


def _alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

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


def _head_revision(engine: Engine) -> str | None:
    """The schema revision recorded in the database, read with plain SQL (no alembic);
    None when there is none yet (a new database)."""
    with engine.connect() as connection:
        try:
            found = connection.execute(text("SELECT version_num FROM alembic_version")).all()
        except SQLAlchemyError:
            connection.rollback()
            return None
        connection.rollback()
    return str(found[0][0]) if len(found) == 1 else None


def migrate(engine: Engine, where: str, upgrade: bool = True) -> None:
    """Bring the schema to the head revision, refusing a schema newer than this code, and
    any other than the head when `upgrade` is False (a dry run writes nothing)."""
    # The common case costs one SELECT: alembic (a fifth of a second to import) is loaded
    # only when there is something to migrate or refuse.
    if _head_revision(engine) == SCHEMA_HEAD:
        return
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

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
        found = current(connection)
        if found == (head,):
            return
    if not upgrade:
        raise StoreError(
            f"the store {where} has schema revision {', '.join(found) or 'none (empty)'}, "
            f"older than this wildix-ast's ({head}), and a dry run does not migrate it: run "
            "the command without --dry-run/--check (it migrates the store first)")
    with _MIGRATING, _migration_lock(engine, where), writing(engine) as connection:
        if current(connection) == (head,):  # another process migrated it meanwhile
            return
        try:
            command.upgrade(_alembic_config(connection), "head")
        except CommandError as exc:
            raise StoreError(f"cannot migrate the store {where}: {exc}") from None


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


def explain(exc: BaseException, where: str, action: str) -> StoreError:
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
def translated(where: str, action: str) -> Iterator[None]:
    try:
        yield
    except StoreError:
        raise
    except (SQLAlchemyError, OSError) as exc:
        raise explain(exc, where, action) from exc


