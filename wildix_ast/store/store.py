"""The store: the site persisted in SQLite, PostgreSQL or MariaDB, and the generated secrets.

`open_store()` migrates the database to the schema this code knows (alembic `upgrade head`,
the only way the schema is ever made) and returns a `Store`. Every failure a person can meet
(server down, wrong password, unknown URL scheme, a newer schema, a read-only disk) comes out
as a `StoreError` with one actionable message.

`Store` is the front door callers use; the work is done in the store's rooms: `site_rows`
(import, export), `lookups` (call-time queries), `preference_edits`, `secret_table` (the
vault), `stored_sounds`, `history`, all through one `access.Access`.

Opening a SQLite store that is already at the current schema, and reading or keeping its
secrets (all `render` needs), use Python's own sqlite3: SQLAlchemy is loaded on the first
import, export or lookup (the rooms that need it are imported inside the methods for this
reason), alembic only when there is a migration to run. A SQLite file and its folder are
created owner-only (0600, 0700): they hold SIP passwords."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from contextlib import closing
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

from wildix_ast.store.access import Access, owner_only, sqlite_error, sqlite_file, sqlite_head
from wildix_ast.store.schema import SCHEMA_HEAD
from wildix_ast.store.secret_table import DatabaseSecrets, SecretTable, SqliteFileSecrets

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.engine import URL

    from wildix_ast.model.dialplan import Procedure
    from wildix_ast.model.groups import Group
    from wildix_ast.model.preferences import Preferences
    from wildix_ast.model.site import Site
    from wildix_ast.model.users import User
    from wildix_ast.sounds.audio import Audio, SoundKey, SoundLibrary
    from wildix_ast.store.history import ImportReport
    from wildix_ast.store.site_rows import PreparedImport

DB_ENV = "WILDIX_AST_DB"
SQLITE_BATCH = 500  # values bound in one query (SQLite allows 999)
DEFAULT_PATH = Path("~/.local/share/wildix-ast/wildix-ast.sqlite3")


def default_location() -> str:
    """`$WILDIX_AST_DB`, else the SQLite file in the user's data directory."""
    return os.environ.get(DB_ENV) or str(DEFAULT_PATH.expanduser())


def open_store(url: str | None = None, upgrade: bool = True) -> Store:
    """Open (creating and migrating as needed) the store at `url`: a database URL
    (sqlite:///PATH, postgresql+psycopg2://..., mysql+pymysql://...) or a SQLite file path.
    None means `$WILDIX_AST_DB`, else ~/.local/share/wildix-ast/wildix-ast.sqlite3.
    `upgrade=False` (a dry run): a store whose schema is not the head is refused, never
    migrated."""
    location = url or default_location()
    path = sqlite_file(location)
    if path is not None:
        owner_only(path)
        if sqlite_head(path) == SCHEMA_HEAD:
            return Store(str(path), path)
    # not a current SQLite file: SQLAlchemy is needed anyway
    from wildix_ast.store.database import parse_url, sqlite_path

    parsed = parse_url(location)
    file = sqlite_path(parsed)
    if file is not None:
        owner_only(file)
    store = Store(str(file) if file is not None
                  else parsed.render_as_string(hide_password=True), file, parsed, upgrade)
    store.engine  # noqa: B018 - opening migrates
    return store


def open_store_for_plan(url: str | None = None) -> Store:
    """The store a dry run opens (it writes nothing anywhere): `url`, never migrated (an
    older PostgreSQL/MariaDB schema is refused with a message), unless it names a SQLite
    file that does not exist yet (opening would create it) or whose schema is older than
    this code (opening would migrate it). Then an empty store, or a copy of that file made
    with SQLite's backup from a read-only connection, in a temporary folder (0700) removed
    when the process ends, which opening creates or migrates."""
    import atexit
    import shutil
    import sqlite3
    import tempfile

    location = url or default_location()
    path = sqlite_file(location)
    if path is None or (path.exists() and sqlite_head(path) == SCHEMA_HEAD):
        return open_store(location, upgrade=False)
    folder = tempfile.mkdtemp(prefix="wildix-ast-dry-run-")
    atexit.register(shutil.rmtree, folder, True)
    scratch = Path(folder) / "store.sqlite3"
    if path.exists():
        try:
            with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as source, \
                    closing(sqlite3.connect(scratch)) as copy:
                source.backup(copy)
        except sqlite3.Error as exc:
            raise sqlite_error(exc, str(path), "copying for a dry run") from None
        scratch.chmod(0o600)
    return open_store(str(scratch))


class Store(SecretTable):
    """The persisted site and the generated secrets (a `SecretVault`, see `SecretTable`).

    Each method below hands its work to one room of the store; those rooms load SQLAlchemy
    at import, so they are imported inside the methods: `open_store` + the secrets (a
    render) and `revision` stay on sqlite3 alone."""

    def __init__(self, where: str, path: Path | None, url: URL | None = None,
                 upgrade: bool = True) -> None:
        self.access = Access(where, path, url, upgrade)
        super().__init__(SqliteFileSecrets(self.access) if self.access.sqlite_file
                         else DatabaseSecrets(self.access))

    @property
    def where(self) -> str:
        """Where the store is, for messages (a path, or the URL without its password)."""
        return self.access.where

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close every connection to the database."""
        self.access.close()

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine, made (and the schema migrated) on first use."""
        return self.access.engine

    @property
    def dialect(self) -> str:
        """The database kind: 'sqlite', 'postgresql' or 'mysql'."""
        return self.access.dialect

    # --- the site's state: sqlite3 on a SQLite file --------------------------------------

    def revision_reader(self) -> Callable[[], int]:
        """A function returning `revision()` as cheaply as the database allows, for a
        service that checks it on every call: on a SQLite file, one kept sqlite3 connection
        (each SELECT sees the last commit; ~0.04 ms against ~1 ms through SQLAlchemy)."""
        if self.access.sqlite_file is None:
            return self.revision
        read = self.access.sqlite_reader("SELECT revision FROM site_state",
                                         "reading the store revision")
        return lambda: int(read())

    def has_site(self) -> bool:
        """Whether a site has been imported."""
        if self.access.sqlite_file is not None:
            with self.access.sqlite("reading the site") as connection:
                return connection.execute("SELECT id FROM system_settings").fetchone() \
                    is not None
        from sqlalchemy import select

        from wildix_ast.store.tables import system_settings

        with self.access.reading("reading the site") as connection:
            return connection.execute(select(system_settings.c.id)).first() is not None

    def revision(self) -> int:
        """A number that grows with every import that changed something: what a generated
        configuration came from, and a cheap poll for runtime services."""
        if self.access.sqlite_file is not None:
            # sqlite3: an apply reads it before reloading, when SQLAlchemy is not loaded yet
            with self.access.sqlite("reading the store revision") as connection:
                return int(connection.execute("SELECT revision FROM site_state").fetchone()[0])
        from sqlalchemy import select

        from wildix_ast.store.tables import site_state

        with self.access.reading("reading the store revision") as connection:
            return int(connection.execute(select(site_state.c.revision)).scalar_one())

    # --- the whole site (site_rows) ------------------------------------------------------

    def export_site(self, *, checked: bool = True) -> Site:
        """The stored site, exactly as imported (WEB passwords as their hashes). `checked`:
        False skips the rules across sections, for a command that checks whole the site
        it writes (a directory sync)."""
        from wildix_ast.store import site_rows

        return site_rows.export_site(self.access, checked=checked)

    def prepare_import(self, site: Site) -> PreparedImport:
        """Read and compare what an import of `site` needs, in one read snapshot and without
        the write lock: `import_site(site, prepared=...)` then only writes (see
        `PreparedImport`). Errors are those `import_site` would meet."""
        from wildix_ast.store import site_rows

        return site_rows.prepare_import(self.access, site)

    def import_site(self, site: Site, source_text: str | None = None,
                    sounds: SoundLibrary | None = None,
                    prepared: PreparedImport | None = None) -> ImportReport:
        """Make the store hold `site`, in one transaction: all or nothing. Only the rows that
        differ are written; the revision grows only if something did. `sounds`: the
        converted audio of the site's sound files (`sound_audio.prepare`); None keeps the
        stored audio as it is. `prepared`: `prepare_import(site)` done earlier, used if the
        store has not changed since.

        Secrets are kept, except those of users that are gone (matched by extension). The
        call history backends' passwords the site gives go to the vault (their rows have no
        column for them) once the import succeeded."""
        from wildix_ast.store import site_rows
        from wildix_ast.store.vault import with_backend_passwords

        report = site_rows.import_site(self.access, site, source_text, sounds, prepared)
        with_backend_passwords(site, self)
        return report

    def import_history(self) -> list[ImportReport]:
        """Every import, oldest first."""
        from wildix_ast.store import history

        with self.access.reading("reading the import history") as connection:
            return history.import_history(connection)

    # --- sounds (stored_sounds) ----------------------------------------------------------

    def sound_audio(self, digests: Iterable[str]) -> dict[str, Audio]:
        """The converted audio kept under each of `digests` (those the store has). On a
        SQLite file through sqlite3: every apply of a site with sounds asks, before anything
        needs SQLAlchemy (whose import alone costs 0.1-0.15 s)."""
        if self.access.sqlite_file is None:
            from wildix_ast.store import stored_sounds

            with self.access.reading("reading sounds") as connection:
                return stored_sounds.audio_by_digest(connection, digests)
        from wildix_ast.sounds.audio import Audio

        wanted, found = sorted(set(digests)), {}
        with self.access.sqlite("reading sounds") as connection:
            for start in range(0, len(wanted), SQLITE_BATCH):
                batch = wanted[start:start + SQLITE_BATCH]
                marks = ",".join("?" * len(batch))
                for digest, wav, wav16 in connection.execute(
                        f"SELECT digest, wav, wav16 FROM sound_audio WHERE digest IN ({marks})",
                        batch):
                    found[str(digest)] = Audio(str(digest), bytes(wav), bytes(wav16))
        return found

    def stored_sounds(self) -> dict[SoundKey, Audio]:
        """The audio of every file of the stored site's sounds: (sound, language) -> Audio."""
        from wildix_ast.store import stored_sounds

        with self.access.reading("reading sounds") as connection:
            return stored_sounds.sound_library(connection)

    # --- call-time lookups (lookups) -----------------------------------------------------

    def user_by_extension(self, extension: str) -> User | None:
        from wildix_ast.store import lookups

        return lookups.user_by_extension(self.access, extension)

    def user_by_did(self, number: str) -> User | None:
        """The user whose office or fax DID is `number`."""
        from wildix_ast.store import lookups

        return lookups.user_by_did(self.access, number)

    def user_by_login(self, login: str) -> User | None:
        """Logins compare without case, as the model's uniqueness rule does."""
        from wildix_ast.store import lookups

        return lookups.user_by_login(self.access, login)

    def group_of(self, extension: str) -> Group | None:
        """The ACL group of the user at `extension` (None if there is no such user)."""
        from wildix_ast.store import lookups

        return lookups.group_of(self.access, extension)

    def procedure_of(self, extension: str, *, fax: bool = False) -> Procedure | None:
        """The dialplan procedure (the fax one with `fax`) of the user at `extension`."""
        from wildix_ast.store import lookups

        return lookups.procedure_of(self.access, extension, fax=fax)

    def preferences_of(self, extension: str) -> Preferences | None:
        """The preferences of the user at `extension` (None if there is no such user)."""
        from wildix_ast.store import lookups

        return lookups.preferences_of(self.access, extension)

    # --- preferences (preference_edits) --------------------------------------------------

    def change_preferences(self, extension: str,
                           change: Callable[[Preferences], Preferences]) -> Preferences:
        """Replace the preferences of the user at `extension` with `change(current)` under
        the store's write lock (see `preference_edits.change_preferences`)."""
        from wildix_ast.store import preference_edits

        return preference_edits.change_preferences(self.access, extension, change)
