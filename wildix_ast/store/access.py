"""How the store reaches its database: the sqlite3 fast path of a SQLite file, and the
SQLAlchemy engine (made, and the schema migrated, on first use) for everything else.

Every room of the store (`site_rows`, `lookups`, `preference_edits`, `secret_table`,
`stored_sounds`, `history`) works through one `Access`. Only this module and `secret_table`
use sqlite3 directly: a render and the FastAGI service's revision poll on a current SQLite
store never load SQLAlchemy (a tenth of a second of a short command)."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import ValidationError

from wildix_ast.errors import StoreError
from wildix_ast.model import fields

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine
    from sqlalchemy.engine import URL

SQLITE_TIMEOUT = 30  # seconds to wait for another writer
_Model = TypeVar("_Model")


def owner_only(path: Path) -> None:
    """Create the store's folder (0700) and file (0600) if they do not exist yet; existing
    ones keep the modes their owner chose."""
    try:
        if not path.parent.is_dir():
            path.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create the folder of the store {path}: "
                         f"{exc.strerror or exc}") from None
    # It may exist, or the folder be unwritable (SQLite explains that when it opens the file).
    with suppress(OSError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def sqlite_head(path: Path) -> str | None:
    """The schema revision of a SQLite store, through sqlite3 (no SQLAlchemy)."""
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=rw", uri=True,
                                     timeout=SQLITE_TIMEOUT)) as connection:
            found = connection.execute("SELECT version_num FROM alembic_version").fetchall()
    except sqlite3.Error:
        return None  # no schema yet, or a problem the full path explains properly
    return str(found[0][0]) if len(found) == 1 else None


_SQLITE_URL_PREFIXES = ("sqlite:///", "sqlite+pysqlite:///")


def sqlite_file(location: str) -> Path | None:
    """The SQLite file `location` names when reading it needs no SQLAlchemy: a plain path,
    or a `sqlite:///PATH` URL spelt simply (no query, no %-escapes, no `file:` URI, not in
    memory), read as SQLAlchemy reads it (a test holds them equal). None: anything else.
    A render then reads its secrets, and the FastAGI service the revision on every call
    (~0.01 ms instead of ~1.8 ms), through sqlite3."""
    if "://" not in location:
        return Path(location).expanduser().absolute()
    prefix = next((p for p in _SQLITE_URL_PREFIXES if location.startswith(p)), None)
    if prefix is None:
        return None
    database = location[len(prefix):]
    if not database or database == ":memory:" or database.startswith("file:") \
            or any(c in database for c in "%?"):
        return None
    return Path(database)


def sqlite_error(exc: sqlite3.Error, where: str, action: str) -> StoreError:
    # database.py loads SQLAlchemy: only when there is an error to explain
    from wildix_ast.store.database import explain

    return explain(exc, where, action)


class Access:
    """One store's database: where it is, and the connections to it."""

    def __init__(self, where: str, path: Path | None, url: URL | None = None,
                 upgrade: bool = True) -> None:
        self.where = where
        """Where the store is, for messages (a path, or the URL without its password)."""
        self.path = path
        self.url = url
        self.upgrade = upgrade
        """Whether opening may migrate an older schema (False: a dry run, which writes
        nothing; an older schema is then refused with a message)."""
        self._engine: Engine | None = None

    @property
    def sqlite_file(self) -> Path | None:
        """The SQLite file sqlite3 reads directly (None: through SQLAlchemy only)."""
        return self.path if self.url is None else None

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine, made (and the schema migrated) on first use."""
        if self._engine is None:
            # SQLAlchemy is loaded here, on first use: never on the sqlite3 fast path
            from wildix_ast.store.database import (
                create_store_engine,
                migrate,
                parse_url,
                translated,
            )

            url = self.url or parse_url(str(self.path))
            engine = create_store_engine(url)
            try:
                with translated(self.where, "opening"):
                    try:
                        migrate(engine, self.where, self.upgrade)
                    except StoreError:
                        raise
                    except Exception:
                        # Another process may have been migrating the same new store at the
                        # same time: its work is done now, so a second look finds it at head.
                        migrate(engine, self.where, self.upgrade)
            except BaseException:
                engine.dispose()
                raise
            self._engine = engine
        return self._engine

    @property
    def dialect(self) -> str:
        """The database kind: 'sqlite', 'postgresql' or 'mysql'."""
        return self.engine.dialect.name

    @contextmanager
    def reading(self, action: str) -> Iterator[Connection]:
        """A consistent snapshot across several SELECTs."""
        from wildix_ast.store.database import translated  # SQLAlchemy: see `engine`

        with translated(self.where, action), self.engine.connect() as connection:
            if self.dialect != "sqlite":
                connection = connection.execution_options(isolation_level="REPEATABLE READ")
            with connection.begin():
                yield connection

    @contextmanager
    def writing(self, action: str) -> Iterator[Connection]:
        """A write transaction (IMMEDIATE on SQLite), errors explained."""
        from wildix_ast.store.database import translated, writing  # see `engine`

        with translated(self.where, action), writing(self.engine) as connection:
            yield connection

    @contextmanager
    def sqlite(self, action: str) -> Iterator[sqlite3.Connection]:
        """A sqlite3 connection to the SQLite file, in autocommit mode."""
        assert self.path is not None
        try:
            with closing(sqlite3.connect(self.path, timeout=SQLITE_TIMEOUT,
                                         isolation_level=None)) as connection:
                yield connection
        except sqlite3.Error as exc:
            raise sqlite_error(exc, self.where, action) from exc

    def sqlite_reader(self, query: str, action: str) -> Callable[[], Any]:
        """A function returning the first column of `query`'s first row through one kept
        sqlite3 connection (each SELECT sees the last commit)."""
        assert self.path is not None
        connection = sqlite3.connect(self.path, timeout=SQLITE_TIMEOUT, isolation_level=None,
                                     check_same_thread=False)
        lock = threading.Lock()

        def read() -> Any:
            with lock:
                try:
                    found = connection.execute(query).fetchone()
                except sqlite3.Error as exc:
                    raise sqlite_error(exc, self.where, action) from exc
            return found[0]

        return read

    def valid(self, model: type[_Model], data: Any,
              context: dict[str, Any] | None = None) -> _Model:
        """`data` as a `model`, or a StoreError saying the store holds an invalid site."""
        try:
            return model.model_validate(  # type: ignore[attr-defined,no-any-return]
                data, context=context)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(part) for part in first["loc"])
            raise StoreError(f"the store {self.where} holds an invalid site ({where}: "
                             f"{fields.message(first)}; {exc.error_count()} problem(s)): "
                             "import a valid settings file again") from None
