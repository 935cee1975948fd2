"""The realtime database Asterisk reads (issue 22): its rows written from
`wildix-realtime.conf` (`asterisk/realtime_tables.py`), only those that changed.

`row_changes(old, new)` compares two versions of that file section by section (a one-user
change on 100,000 users parses a few sections, not all) and says which rows to write and
which to delete; `SqliteRealtime.write` does it in one transaction. Both are idempotent:
writing old -> new on tables that hold either version leaves the new one, so an apply
killed before or after the write, then undone or finished, leaves the tables agreeing with
the files (apply writes old -> new, an undo new -> old).

On SQLite the realtime database is a file of its own in Asterisk's configuration folder,
never the store: Asterisk opens it, and it holds only the four tables Asterisk needs
(owner and group readable, like pjsip.conf, which held the same passwords)."""

from __future__ import annotations

import os
import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wildix_ast.errors import ApplyError
from wildix_ast.store import expiry_log

TABLES = ("ps_endpoints", "ps_auths", "ps_aors", "voicemail")
#: the primary key column of each table (Asterisk's own schema names)
KEYS = {"ps_endpoints": "id", "ps_auths": "id", "ps_aors": "id", "voicemail": "uniqueid"}
_COLUMN = re.compile(r"[a-z][a-z0-9_]{0,63}")
_ITEM = re.compile(r"^\s*([^=\s][^=]*?)\s*=\s?(.*)$")

Columns = dict[str, str]


@dataclass
class RowChanges:
    """What the tables need: rows to write whole ((table, key) -> columns) and keys to
    delete, per table; `database`: the file's `[database]` section."""

    database: dict[str, str] = field(default_factory=dict)
    write: dict[tuple[str, str], Columns] = field(default_factory=dict)
    delete: set[tuple[str, str]] = field(default_factory=set)

    @property
    def touched(self) -> set[tuple[str, str]]:
        return set(self.write) | self.delete

    def __bool__(self) -> bool:
        return bool(self.write or self.delete)


def _blocks(text: str | None) -> dict[tuple[str, str], str]:
    """(table, key) -> the section's text; `[database]` under ("", "database")."""
    found: dict[tuple[str, str], str] = {}
    if not text:
        return found
    for block in text.split("\n["):
        name, _, body = block.partition("]\n")
        if body.startswith("table = "):
            table = body[len("table = "):body.find("\n") if "\n" in body else None]
            found[(table.strip(), name)] = body
        elif name == "database":
            found[("", name)] = body
    return found


#: res_config_pgsql (and res_config_odbc) split every value they read on ';' and decode
#: `^XX` (two hex digits) into one byte (`ast_realtime_decode_chunk`); res_config_sqlite3
#: does neither. Written raw, a generated SIP password holding `^62` reached Asterisk as
#: `b`, and the user was refused (docs/realtime.md, "Values Asterisk decodes").
_CHUNK_ESCAPES = str.maketrans({"^": "^5E", ";": "^3B"})


def encode_chunk(value: str) -> str:
    """`value` as res_config_pgsql gives it back whole: '^' and ';' as `^XX`."""
    return value.translate(_CHUNK_ESCAPES)


def _columns(body: str, *, encoded: bool = False) -> Columns:
    """A section's items as columns: several values of one option are joined with ';'
    (how Asterisk's realtime drivers give one option several values); `encoded`: each
    value first escaped as res_config_pgsql decodes it (`encode_chunk`)."""
    columns: Columns = {}
    for line in body.splitlines():
        if not line or line.startswith(";"):
            continue
        found = _ITEM.match(line)
        if found is None:
            continue
        key, value = found[1], found[2]
        if encoded:
            value = encode_chunk(value)
        if key == "table":
            continue
        if not _COLUMN.fullmatch(key):
            raise ApplyError(f"wildix-realtime.conf: {key!r} is not a column name")
        columns[key] = f"{columns[key]};{value}" if key in columns else value
    return columns


def _changed_parts(old: str | None, new: str | None) -> tuple[str | None, str | None]:
    """The parts of `old` and `new` between their common head and tail, cut at section
    headers and split by `_blocks` into the same sections as the whole texts (a rename at
    10,000 users: the sections from its endpoint to its mailbox, not all 40,000 twice)."""
    from wildix_ast.conf import changed_region

    if not old or not new:
        return old, new
    region = changed_region(old, new, at_headers=True)
    old_part, new_part = old[region.start:region.old_end], new[region.start:region.new_end]
    if region.start:  # starts at a header: as after the "\n[" the whole text is split on
        old_part, new_part = "\n" + old_part, "\n" + new_part
    if region.old_end < len(old):  # ends before a header: its "\n" is the split's
        old_part, new_part = old_part[:-1], new_part[:-1]
    return old_part, new_part


def _database(text: str | None) -> str:
    """The body of the `[database]` section (the first section of a rows file)."""
    if not text:
        return ""
    start = 0 if text.startswith("[database]\n") else text.find("\n[database]\n") + 1
    if start == 0 and not text.startswith("[database]\n"):
        return ""
    end = text.find("\n[", start)
    return _blocks("\n" + text[start:end if end >= 0 else None]).get(("", "database"), "")


def row_changes(old: str | None, new: str | None) -> RowChanges:
    """The rows to write and delete so that tables holding `old`'s rows hold `new`'s."""
    before, after = (_blocks(part) for part in _changed_parts(old, new))
    changes = RowChanges(database=_columns(_database(new) or _database(old)))
    encoded = changes.database.get("engine") == "postgresql"
    for key, body in after.items():
        if key[0] and before.get(key) != body:
            changes.write[key] = _columns(body, encoded=encoded)
    changes.delete = {key for key in before if key[0] and key not in after}
    for table, _ in changes.touched:
        if table not in TABLES:
            raise ApplyError(f"wildix-realtime.conf: unknown realtime table {table!r}")
    return changes


def _create_table(table: str, key: str, columns: list[str]) -> str:
    """The CREATE TABLE of a realtime table on SQLite: its rows stored in **descending**
    key order (`WITHOUT ROWID`, `PRIMARY KEY (key DESC)`), so that a query without an
    index (res_config_sqlite3 adds no ORDER BY) returns them in that order.

    Why: sorcery links the objects of a multi-row fetch into a list container sorted by
    id (`ast_sorcery_object_id_sort`), whose insert walks from the head to the first
    larger id. Rows in ascending order (the users' order, the order they were written)
    make each insert walk the whole list: 100,000 endpoints took over 7 minutes of CPU at
    boot (res_pjsip's qualify set-up fetches every AOR and endpoint, res_pjsip_mwi every
    endpoint with a mailbox). In descending order each insert stops at the head."""
    return (f'CREATE TABLE "{table}" ("{key}" TEXT NOT NULL'
            + "".join(f', "{c}" TEXT' for c in columns)
            + f', PRIMARY KEY ("{key}" DESC)) WITHOUT ROWID')


class SqliteRealtime:
    """The realtime file Asterisk reads through res_config_sqlite3."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _connect(self) -> sqlite3.Connection:
        new = not self.path.exists()
        connection = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
        if new:
            os.chmod(self.path, 0o640)
        return connection

    def write(self, changes: RowChanges, expiries: list[tuple[str, str]] | None = None,
              ) -> None:
        """Write `changes` in one transaction (all or nothing). `expiries`: the expiry
        log is PostgreSQL's (several nodes need PostgreSQL): refused here."""
        if expiries is not None:
            raise ApplyError("several nodes need the realtime tables on PostgreSQL")
        if not changes:
            return
        try:
            connection = self._connect()
        except (OSError, sqlite3.Error) as e:
            raise ApplyError(f"cannot open the realtime file {self.path}: {e}") from e
        try:
            connection.execute("BEGIN IMMEDIATE")
            known = self._tables(connection)
            for table in self._keyed_by_rowid(connection):
                self._rebuild_descending(connection, table, KEYS[table], known[table])
            for table in TABLES:
                key = KEYS[table]
                gone = [k for t, k in changes.delete if t == table]
                rows = [(k, columns) for (t, k), columns in changes.write.items()
                        if t == table]
                if not (gone or rows):
                    continue
                if table not in known:
                    connection.execute(_create_table(table, key, []))
                    known[table] = {key}
                connection.executemany(f'DELETE FROM "{table}" WHERE "{key}" = ?',
                                       [(k,) for k in gone])
                for column in sorted({c for _, cols in rows for c in cols} - known[table]):
                    connection.execute(f'ALTER TABLE "{table}" ADD COLUMN "{column}" TEXT')
                    known[table].add(column)
                # a whole row each time: a column a new version leaves out becomes NULL
                others = sorted(known[table] - {key})
                statement = (f'INSERT OR REPLACE INTO "{table}" ("{key}"'
                             + "".join(f', "{c}"' for c in others) + ") VALUES (?"
                             + ", ?" * len(others) + ")")
                connection.executemany(statement, [(k, *(cols.get(c) for c in others))
                                                   for k, cols in rows])
            connection.execute("COMMIT")
        except sqlite3.Error as e:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise ApplyError(f"writing the realtime file {self.path} failed, it is "
                             f"unchanged: {e}") from e
        finally:
            connection.close()

    @staticmethod
    def _keyed_by_rowid(connection: sqlite3.Connection) -> set[str]:
        """The realtime tables made before their rows were kept in descending key order
        (rowid tables)."""
        return {name for name, sql in connection.execute(
                    "SELECT name, sql FROM sqlite_master WHERE type='table'")
                if name in TABLES and "WITHOUT ROWID" not in (sql or "").upper()}

    @staticmethod
    def _rebuild_descending(connection: sqlite3.Connection, table: str, key: str,
                            columns: set[str]) -> None:
        """Move a rowid table's rows into a table in descending key order (`_create_table`),
        inside the caller's transaction (once per file made by an earlier version)."""
        others = sorted(columns - {key})
        names = ", ".join(f'"{c}"' for c in [key, *others])
        connection.execute(f'ALTER TABLE "{table}" RENAME TO "{table}_by_rowid"')
        connection.execute(_create_table(table, key, others))
        connection.execute(f'INSERT INTO "{table}" ({names}) SELECT {names} '
                           f'FROM "{table}_by_rowid"')
        connection.execute(f'DROP TABLE "{table}_by_rowid"')

    @staticmethod
    def _tables(connection: sqlite3.Connection) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type='table'"):
            if name in TABLES:
                found[name] = {row[1] for row in connection.execute(
                    f'PRAGMA table_info("{name}")')}
        return found

    def rows(self, table: str) -> dict[str, Columns]:
        """Every row of `table` (key -> its non-NULL columns): for checks and tests."""
        if table not in TABLES or not self.path.exists():
            return {}
        connection = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        try:
            if table not in self._tables(connection):
                return {}
            cursor = connection.execute(f'SELECT * FROM "{table}"')
            names = [d[0] for d in cursor.description]
            key = KEYS[table]
            return {row[names.index(key)]: {n: v for n, v in zip(names, row, strict=True)
                                            if v is not None and n != key}
                    for row in cursor}
        finally:
            connection.close()


class PostgresRealtime:
    """The realtime tables on PostgreSQL, written with the writer's connection (a libpq URL
    kept in the vault, `WRITER_URL_KEY`: an account that may read and write the rows of the
    four tables and nothing else); Asterisk reads them with its own account (SELECT on the
    four tables and nothing else). `prepare`, with an admin connection given once, makes
    both."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _connect(self) -> Any:
        try:
            import psycopg2
        except ImportError as e:  # the `postgresql` extra
            raise ApplyError("realtime on PostgreSQL needs psycopg2 (pip install "
                             "'wildix-ast[postgresql]')") from e
        try:
            return psycopg2.connect(self.url.replace("postgresql+psycopg2://",
                                                     "postgresql://", 1), connect_timeout=5)
        except psycopg2.Error as e:
            raise ApplyError(f"cannot reach the realtime database: {e}".strip()) from e

    def write(self, changes: RowChanges, expiries: list[tuple[str, str]] | None = None,
              ) -> None:
        """Write `changes` in one transaction (all or nothing). The writer account may not
        change the tables' shape: a column the rows need and the table lacks is refused
        with what to do (`realtime setup` adds it with the admin connection). `expiries`
        ((cache, key) of the changed cached objects; None: no other node): logged for the
        nodes' followers in the same transaction (`store.expiry_log`)."""
        if not changes:
            return
        import psycopg2

        connection = self._connect()
        try:
            with connection, connection.cursor() as cursor:
                if expiries is not None:
                    expiry_log.append(cursor, expiries)
                for table in TABLES:
                    key = KEYS[table]
                    gone = [k for t, k in changes.delete if t == table]
                    rows = [(k, cols) for (t, k), cols in changes.write.items() if t == table]
                    if not (gone or rows):
                        continue
                    if gone:
                        cursor.execute(f'DELETE FROM "{table}" WHERE "{key}" = ANY(%s)',
                                       (gone,))
                    known = _pg_columns(cursor, table)
                    missing = sorted({c for _, cols in rows for c in cols} - known)
                    if missing:
                        raise ApplyError(
                            f"the realtime table {table} has no column "
                            f"{', '.join(missing)}; the writer account may not add one: run "
                            "`wildix-ast realtime setup --admin-url URL` again")
                    others = sorted(known - {key})
                    statement = (
                        f'INSERT INTO "{table}" ("{key}"' + "".join(f', "{c}"' for c in others)
                        + ") VALUES (%s" + ", %s" * len(others) + f') ON CONFLICT ("{key}") '
                        + ("DO UPDATE SET " + ", ".join(f'"{c}" = EXCLUDED."{c}"'
                                                        for c in others)
                           if others else "DO NOTHING"))
                    cursor.executemany(statement, [(k, *(cols.get(c) for c in others))
                                                   for k, cols in rows])
        except psycopg2.Error as e:
            hint = ("; run `wildix-ast realtime setup --admin-url URL` again (it makes the "
                    "nodes' expiry log)" if expiry_log.TABLE in str(e) else "")
            raise ApplyError(f"writing the realtime tables failed, they are unchanged: "
                             f"{e}".strip() + hint) from e
        finally:
            connection.close()

    def prepare(self, columns: dict[str, set[str]], reader: tuple[str, str],
                writer: tuple[str, str]) -> None:
        """With the admin connection: make the four tables with `columns` (table -> the
        columns the rows need; added when missing), Asterisk's account `reader` (name,
        password: SELECT on the four tables, nothing else) and apply's account `writer`
        (SELECT, INSERT, UPDATE, DELETE on the four tables, nothing else: no DDL, no other
        table). Both get the nodes' expiry log (`store.expiry_log`): the reader may SELECT
        it (each node's follower reads it with the reader's account), the writer may
        SELECT it, INSERT its cache and key columns only (ids from the sequence, times
        from the server), DELETE (prune) and use its sequence. Idempotent: run again,
        it adds new columns and resets the passwords."""
        import psycopg2
        from psycopg2 import sql

        connection = self._connect()
        try:
            with connection, connection.cursor() as cursor:
                for table in TABLES:
                    key = KEYS[table]
                    cursor.execute(f'CREATE TABLE IF NOT EXISTS "{table}" '
                                   f'("{key}" TEXT PRIMARY KEY)')
                    for column in sorted(columns.get(table, set()) - {key}):
                        if not _COLUMN.fullmatch(column):
                            raise ApplyError(f"{column!r} is not a column name")
                        cursor.execute(f'ALTER TABLE "{table}" ADD COLUMN IF NOT EXISTS '
                                       f'"{column}" TEXT')
                cursor.execute(expiry_log.CREATE)
                log, sequence = (sql.Identifier(expiry_log.TABLE),
                                 sql.Identifier(f"{expiry_log.TABLE}_id_seq"))
                for (username, password), rights in ((reader, "SELECT"),
                                                     (writer, "SELECT, INSERT, UPDATE, DELETE")):
                    role = sql.Identifier(username)
                    cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (username,))
                    verb = "ALTER" if cursor.fetchone() else "CREATE"
                    cursor.execute(sql.SQL(verb + " ROLE {} LOGIN NOSUPERUSER NOCREATEDB "
                                           "NOCREATEROLE NOINHERIT PASSWORD %s").format(role),
                                   (password,))
                    for table in TABLES:
                        cursor.execute(sql.SQL("REVOKE ALL ON {} FROM {}").format(
                            sql.Identifier(table), role))
                        cursor.execute(sql.SQL("GRANT " + rights + " ON {} TO {}").format(
                            sql.Identifier(table), role))
                    cursor.execute(sql.SQL("REVOKE ALL ON {}, {} FROM {}").format(
                        log, sequence, role))
                    writes = username == writer[0]
                    cursor.execute(sql.SQL(
                        "GRANT " + ("SELECT, DELETE" if writes else "SELECT")
                        + " ON {} TO {}").format(log, role))
                    if writes:
                        # the cache and the key only: ids come from the sequence, never
                        # chosen (an id far ahead would hide every later entry from the
                        # followers), and times from the server's clock
                        cursor.execute(sql.SQL("GRANT INSERT (cache, key) ON {} TO {}")
                                       .format(log, role))
                        cursor.execute(sql.SQL("GRANT USAGE ON SEQUENCE {} TO {}").format(
                            sequence, role))
        except psycopg2.Error as e:
            raise ApplyError(f"making the realtime accounts failed: {e}".strip()) from e
        finally:
            connection.close()


def _pg_columns(cursor: Any, table: str) -> set[str]:
    cursor.execute("SELECT column_name FROM information_schema.columns "
                   "WHERE table_name = %s AND table_schema = current_schema()", (table,))
    return {name for (name,) in cursor.fetchall()}


def writer_url(admin_url: str, username: str, password: str) -> str:
    """`admin_url` (postgresql://user:password@host:port/database) with the writer's
    account in place of the admin's: the only URL kept."""
    from urllib.parse import quote, urlsplit, urlunsplit

    parts = urlsplit(admin_url.replace("postgresql+psycopg2://", "postgresql://", 1))
    host = parts.hostname or ""
    netloc = (f"{quote(username, safe='')}:{quote(password, safe='')}@"
              f"{'[' + host + ']' if ':' in host else host}"
              + (f":{parts.port}" if parts.port else ""))
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


#: The vault key of the connection apply writes the PostgreSQL realtime tables with
WRITER_URL_KEY = "realtime:writer-url"
RealtimeDatabase = SqliteRealtime | PostgresRealtime


def open_realtime(etc_dir: Path, database: dict[str, str],
                  writer_url: str | None = None) -> RealtimeDatabase:
    """The realtime database a `[database]` section names, as this host reaches it
    (`writer_url`: PostgreSQL's writer connection, from the vault)."""
    engine = database.get("engine", "")
    if engine == "sqlite":
        name = database.get("dbfile", "")
        if not name or "/" in name or name.startswith("."):
            raise ApplyError(f"wildix-realtime.conf: dbfile {name!r} is not a file name")
        return SqliteRealtime(etc_dir / name)
    if engine == "postgresql":
        if not writer_url:
            raise ApplyError("realtime on PostgreSQL: no writer connection kept; run "
                             "`wildix-ast realtime setup --admin-url URL` first")
        return PostgresRealtime(writer_url)
    raise ApplyError(f"wildix-realtime.conf: unknown realtime engine {engine!r}")
