"""The store's vault: the `secrets` table behind the `SecretVault` interface.

`SecretTable` writes each vault method once, over the two things an engine must do: read
the values of some keys (or scan the whole table), and upsert values in one transaction.
Two engines do them: `SqliteFileSecrets` through Python's sqlite3 (a render of a SQLite
store needs nothing else, so it never loads SQLAlchemy) and `DatabaseSecrets` through
SQLAlchemy (PostgreSQL, MariaDB, and SQLite URLs sqlite3 cannot read as they are)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING

from wildix_ast.errors import StoreError

if TYPE_CHECKING:
    from wildix_ast.store.access import Access

# Keys per query when reading secrets in bulk (SQLite allows 999 parameters).
SECRET_BATCH = 500
# Beyond this many keys, a SQLite store's secrets are read in one pass over the table.
SECRET_SCAN = 2000


class SecretEngine:
    """What a database must do for the vault."""

    scans_faster: bool = False
    """Whether one pass over the table beats batches of keys for a large request."""

    def read(self, batches: Iterable[list[str]], action: str
             ) -> Iterator[tuple[str, str]]:  # pragma: no cover - interface
        """(key, value) of the kept keys among `batches`, in one read."""
        raise NotImplementedError

    def scan(self, action: str) -> Iterator[tuple[str, str]]:  # pragma: no cover
        raise NotImplementedError

    def upsert(self, values: Mapping[str, str], action: str) -> None:  # pragma: no cover
        """Keep every value in one transaction."""
        raise NotImplementedError


class SecretTable:
    """The `SecretVault` of a store: each method written once, whatever the engine."""

    def __init__(self, engine: SecretEngine) -> None:
        self.secret_engine = engine

    def get_secret(self, key: str) -> str | None:
        return self.get_secrets([key]).get(key)

    def get_secrets(self, keys: Iterable[str]) -> dict[str, str]:
        """The kept values of `keys`, read in a few queries (not one per key)."""
        wanted = list(dict.fromkeys(keys))
        if self.secret_engine.scans_faster and len(wanted) > SECRET_SCAN:
            # a render of a large site asks for most of the table: one pass over it takes
            # half the time of the batches of keys
            keep = set(wanted)
            return {k: v for k, v in self.secret_engine.scan("reading secrets") if k in keep}
        batches = [wanted[start:start + SECRET_BATCH]
                   for start in range(0, len(wanted), SECRET_BATCH)]
        return dict(self.secret_engine.read(batches, "reading secrets"))

    def put_secret(self, key: str, value: str) -> None:
        """Keep `value` under `key`, committed at once."""
        self.secret_engine.upsert({key: value}, "saving a secret")

    def put_secrets(self, values: Mapping[str, str]) -> None:
        """Keep every value in one transaction."""
        if values:
            self.secret_engine.upsert(values, "saving secrets")


class SqliteFileSecrets(SecretEngine):
    """sqlite3 on the store's file: no SQLAlchemy."""

    scans_faster = True

    def __init__(self, access: Access) -> None:
        self.access = access

    def read(self, batches: Iterable[list[str]], action: str) -> Iterator[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        with self.access.sqlite(action) as connection:
            for batch in batches:
                marks = ",".join("?" * len(batch))
                found += ((str(k), str(v)) for k, v in connection.execute(
                    f"SELECT key, value FROM secrets WHERE key IN ({marks})", batch))
        return iter(found)

    def scan(self, action: str) -> Iterator[tuple[str, str]]:
        with self.access.sqlite(action) as connection:
            found = [(str(k), str(v)) for k, v in connection.execute(
                "SELECT key, value FROM secrets")]
        return iter(found)

    def upsert(self, values: Mapping[str, str], action: str) -> None:
        with self.access.sqlite(action) as connection:
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany(
                "INSERT INTO secrets (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                list(values.items()))
            connection.execute("COMMIT")


class DatabaseSecrets(SecretEngine):
    """SQLAlchemy: one portable statement set for PostgreSQL, MariaDB and SQLite."""

    def __init__(self, access: Access) -> None:
        self.access = access

    def read(self, batches: Iterable[list[str]], action: str) -> Iterator[tuple[str, str]]:
        from sqlalchemy import select  # this engine is never on the sqlite3 fast path

        from wildix_ast.store.tables import secrets

        with self.access.reading(action) as connection:
            found = [(str(k), str(v)) for batch in batches for k, v in connection.execute(
                select(secrets.c.key, secrets.c.value).where(secrets.c.key.in_(batch)))]
        return iter(found)

    def scan(self, action: str) -> Iterator[tuple[str, str]]:
        from sqlalchemy import select  # see `read`

        from wildix_ast.store.tables import secrets

        with self.access.reading(action) as connection:
            found = [(str(k), str(v)) for k, v in connection.execute(
                select(secrets.c.key, secrets.c.value))]
        return iter(found)

    def upsert(self, values: Mapping[str, str], action: str) -> None:
        from sqlalchemy import bindparam, insert, select, update  # see `read`
        from sqlalchemy.exc import IntegrityError

        from wildix_ast.store.tables import secrets

        keys = list(values)
        for attempt in range(2):
            try:
                with self.access.writing(action) as connection:
                    existing: set[str] = set()
                    for start in range(0, len(keys), SECRET_BATCH):
                        existing.update(str(k) for (k,) in connection.execute(
                            select(secrets.c.key).where(
                                secrets.c.key.in_(keys[start:start + SECRET_BATCH]))))
                    updates = [{"k": k, "v": v} for k, v in values.items() if k in existing]
                    inserts = [{"key": k, "value": v} for k, v in values.items()
                               if k not in existing]
                    if updates:
                        connection.execute(update(secrets).where(
                            secrets.c.key == bindparam("k")).values(value=bindparam("v")),
                            updates)
                    if inserts:
                        connection.execute(insert(secrets), inserts)
                return
            except StoreError as exc:
                # Another process inserted one of the keys meanwhile: update it instead.
                if attempt or not isinstance(exc.__cause__, IntegrityError):
                    raise
