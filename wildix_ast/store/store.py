"""The store: the site persisted in SQLite, PostgreSQL or MariaDB, and the generated secrets.

`open_store()` migrates the database to the schema this code knows (alembic `upgrade head`,
the only way the schema is ever made) and returns a `Store`. Every failure a person can meet
(server down, wrong password, unknown URL scheme, a newer schema, a read-only disk) comes out
as a `StoreError` with one actionable message.

Opening a SQLite store that is already at the current schema, and reading or keeping its
secrets (all `render` needs), use Python's own sqlite3: SQLAlchemy is loaded on the first
import, export or lookup, alembic only when there is a migration to run. A SQLite file and
its folder are created owner-only (0600, 0700): they hold SIP passwords."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

from wildix_ast.errors import Problem, StoreError, WildixError
from wildix_ast.model import fields
from wildix_ast.model.passwords import hash_password, is_password_hash, password_matches
from wildix_ast.model.site import Site
from wildix_ast.store.vault import user_secret_key
from wildix_ast.testing.crash_points import crash_point

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine
    from sqlalchemy.engine import URL

    from wildix_ast.model.dialplan import Procedure
    from wildix_ast.model.groups import Group
    from wildix_ast.model.preferences import Preferences
    from wildix_ast.model.users import User
    from wildix_ast.sounds.audio import Audio, SoundKey, SoundLibrary
    from wildix_ast.store.sections import Changes, Entry, Sync

SCHEMA_HEAD = "0008"
"""The newest migration (a test checks it is alembic's head): a store at this revision opens
without loading alembic (nor SQLAlchemy, for a SQLite file)."""
DB_ENV = "WILDIX_AST_DB"
DEFAULT_PATH = Path("~/.local/share/wildix-ast/wildix-ast.sqlite3")
# The per-user secrets of wildix_ast.store.vault, deleted with their user ("web": 0001).
USER_SECRET_KINDS = ("sip", "web", "voicemail_pin")
SQLITE_TIMEOUT = 30  # seconds to wait for another writer
_Model = TypeVar("_Model")


@dataclass(frozen=True)
class ImportReport:
    """What an import changed. Users are matched by extension; a user that only moved in
    the list is not counted as changed (the new order is stored all the same)."""

    users: int
    groups: int
    procedures: int
    added: int
    changed: int
    removed: int
    imported_at: datetime
    source_sha256: str | None = None
    """The SHA-256 of the settings text: the history keeps this digest, never the text."""
    revision: int = 0
    """The store revision after this import (see `Store.revision`)."""

    @property
    def unchanged(self) -> int:
        return self.users - self.added - self.changed

    def __str__(self) -> str:
        return (f"{self.users} users ({self.added} added, {self.changed} changed, "
                f"{self.removed} removed), {self.groups} groups, "
                f"{self.procedures} dialplan procedures")


@dataclass(frozen=True)
class PreparedImport:
    """The reading and comparing half of an import of `site`, done ahead (while Asterisk
    reloads), without the write lock. The import uses it only if the store still is as it
    was read (same revision and site digest: every change to the site's rows moves one of
    them); otherwise it compares again under the lock, so the result is the same."""

    site: Site
    whole: str | None
    """The digest of the whole site (None: a WEB password text in it, compared row-wise)."""
    revision: int
    stored_digest: str | None
    syncs: list[Sync] | None
    """Each section's differences (None: the stored digest says the rows are equal)."""


# --- opening ---------------------------------------------------------------------------------

def default_location() -> str:
    """`$WILDIX_AST_DB`, else the SQLite file in the user's data directory."""
    return os.environ.get(DB_ENV) or str(DEFAULT_PATH.expanduser())


def _owner_only(path: Path) -> None:
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


def _sqlite_head(path: Path) -> str | None:
    """The schema revision of a SQLite store, through sqlite3 (no SQLAlchemy)."""
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=rw", uri=True,
                                     timeout=SQLITE_TIMEOUT)) as connection:
            found = connection.execute("SELECT version_num FROM alembic_version").fetchall()
    except sqlite3.Error:
        return None  # no schema yet, or a problem the full path explains properly
    return str(found[0][0]) if len(found) == 1 else None


_SQLITE_URL_PREFIXES = ("sqlite:///", "sqlite+pysqlite:///")


def _sqlite_file(location: str) -> Path | None:
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


def open_store(url: str | None = None) -> Store:
    """Open (creating and migrating as needed) the store at `url`: a database URL
    (sqlite:///PATH, postgresql+psycopg2://..., mysql+pymysql://...) or a SQLite file path.
    None means `$WILDIX_AST_DB`, else ~/.local/share/wildix-ast/wildix-ast.sqlite3."""
    location = url or default_location()
    path = _sqlite_file(location)
    if path is not None:
        _owner_only(path)
        if _sqlite_head(path) == SCHEMA_HEAD:
            return Store(str(path), path)
    from wildix_ast.store.database import parse_url, sqlite_path

    parsed = parse_url(location)
    file = sqlite_path(parsed)
    if file is not None:
        _owner_only(file)
    store = Store(str(file) if file is not None
                  else parsed.render_as_string(hide_password=True), file, parsed)
    store.engine  # noqa: B018 - opening migrates
    return store


# --- the store -------------------------------------------------------------------------------

def _aware(moment: datetime) -> datetime:
    """SQLite and MariaDB give back the UTC time without its zone."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _hash_web_passwords(connection: Connection, entries: list[Entry]) -> None:
    """Make every user entry that carries a WEB password text carry its argon2id hash: the
    stored hash when the text is the same (so an unchanged user stays unchanged), a new one
    otherwise. Only these users' stored hashes are read."""
    from concurrent.futures import ThreadPoolExecutor

    from sqlalchemy import select

    from wildix_ast.store import sections
    from wildix_ast.store.tables import users

    texts = [e for e in entries if e.item.web_password is not None
             and not is_password_hash(e.item.web_password)]
    if not texts:
        return
    stored: dict[str, str] = {}
    wanted = [e.item.extension for e in texts]
    for start in range(0, len(wanted), sections.BATCH):
        stored.update(connection.execute(
            select(users.c.extension, users.c.web_password).where(
                users.c.extension.in_(wanted[start:start + sections.BATCH]),
                users.c.web_password.is_not(None))).all())

    def hashed(entry: Entry) -> str:
        text, before = entry.item.web_password, stored.get(entry.item.extension)
        return before if before is not None and password_matches(before, text) \
            else hash_password(text)

    # argon2 releases the GIL: every core works on a large site's passwords.
    with ThreadPoolExecutor() as pool:
        for entry, value in zip(texts, pool.map(hashed, texts), strict=True):
            entry.item = entry.item.model_copy(update={"web_password": value})
            entry.digest = sections.digest(entry.item)


# Keys per query when reading secrets in bulk (SQLite allows 999 parameters).
_SECRET_BATCH = 500
# Beyond this many keys, a SQLite store's secrets are read in one pass over the table.
_SECRET_SCAN = 2000


LIST_DOCUMENTS = ("trunks", "trunk_groups", "sounds", "time_frames", "call_groups", "ivrs")
"""Top-level list sections of the site kept whole as one JSON document each."""


def _documents(site: Site) -> dict[str, str]:
    """The sections without tables yet, as JSON documents (see tables.documents)."""
    import json

    general = site.dialplan.general
    return {
        **{name: json.dumps([item.model_dump(mode="json") for item in getattr(site, name)])
           for name in LIST_DOCUMENTS},
        "group_acl": json.dumps({g.name: {"allow": [str(c) for c in g.allow],
                                          "deny": [str(c) for c in g.deny]}
                                 for g in site.groups if g.allow or g.deny}),
        "dialplan_general": general.model_dump_json(exclude_unset=True),
        # a procedure's row keeps its name; its ordered numbers and applications live here
        "procedure_numbers": json.dumps({
            p.name: [n.model_dump(mode="json", exclude_defaults=True) for n in p.numbers]
            for p in site.dialplan.procedures if p.numbers}),
        "dialplan_feature_codes": site.dialplan.feature_codes.model_dump_json(
            exclude_unset=True),
    }


def _site_digest(site: Site) -> str | None:
    """The digest of the whole site as it will be stored: a re-import of the same site
    compares one value. None with a WEB password text in it (stored, a digest of the text
    would be a fast hash of the password): such a site takes the row-wise path."""
    from wildix_ast.store import sections

    return None if any(u.web_password is not None and not is_password_hash(u.web_password)
                       for u in site.users) else sections.digest(site)


def _read_documents(connection: Connection) -> dict[str, str]:
    from sqlalchemy import select

    from wildix_ast.store import tables as t

    return {str(name): str(body) for name, body in connection.execute(
        select(t.documents.c.name, t.documents.c.body))}


def _write_documents(connection: Connection, documents: dict[str, str]) -> bool:
    """Write the documents that differ; whether any did."""
    from sqlalchemy import insert, update

    from wildix_ast.store import tables as t

    stored = _read_documents(connection)
    wrote = False
    for name, body in documents.items():
        if stored.get(name) == body:
            continue
        if name in stored:
            connection.execute(update(t.documents).where(t.documents.c.name == name)
                               .values(body=body))
        else:
            connection.execute(insert(t.documents).values(name=name, body=body))
        wrote = True
    return wrote


def _with_documents(data: dict[str, Any], documents: dict[str, str]) -> dict[str, Any]:
    import json

    for name in LIST_DOCUMENTS:
        if name in documents:
            data[name] = json.loads(documents[name])
    acl = json.loads(documents.get("group_acl", "{}"))
    for group in data.get("groups", []):
        group.update(acl.get(group.get("name"), {}))
    general = json.loads(documents.get("dialplan_general", "{}"))
    if general:
        data.setdefault("dialplan", {})["general"] = general
    numbers = json.loads(documents.get("procedure_numbers", "{}"))
    for procedure in data.get("dialplan", {}).get("procedures", []):
        if procedure.get("name") in numbers:
            procedure["numbers"] = numbers[procedure["name"]]
    codes = json.loads(documents.get("dialplan_feature_codes", "{}"))
    if codes:
        data.setdefault("dialplan", {})["feature_codes"] = codes
    return data


def _write_sounds(connection: Connection, sounds: SoundLibrary) -> bool:
    """Make sound_files name exactly `sounds`, adding the audio not kept yet and dropping
    audio nothing names any more; whether anything changed."""
    from sqlalchemy import delete, insert, select

    from wildix_ast.store import tables as t

    files = t.sound_files.c
    stored = {(str(s), str(lang)): str(d) for s, lang, d in connection.execute(
        select(files.sound, files.language, files.digest))}
    wanted = {key: audio.digest for key, audio in sounds.items()}
    if stored == wanted:
        return False
    kept = {str(d) for (d,) in connection.execute(select(t.sound_audio.c.digest))}
    new_audio = {a.digest: a for a in sounds.values() if a.digest not in kept}
    if new_audio:
        connection.execute(insert(t.sound_audio), [
            {"digest": a.digest, "wav": a.wav, "wav16": a.wav16} for a in new_audio.values()])
    connection.execute(delete(t.sound_files))
    if wanted:
        connection.execute(insert(t.sound_files), [
            {"sound": s, "language": lang, "digest": d} for (s, lang), d in wanted.items()])
    unused = sorted((kept | set(new_audio)) - set(wanted.values()))
    if unused:
        connection.execute(delete(t.sound_audio).where(t.sound_audio.c.digest.in_(unused)))
    return True


def _located(location: tuple[int | str, ...], message: str) -> Problem:
    """A problem of a user's preferences: rules across the user's fields say their field
    first (`preferences.hotline.number: ...`), which becomes the location."""
    where = ".".join(str(part) for part in location)
    if not where and message.startswith("preferences.") and ": " in message:
        where, message = message.split(": ", 1)
    return Problem(where.removeprefix("preferences."), message)


class UnknownUserError(WildixError):
    """A command names an extension no user has."""

    exit_code = 1


class Store:
    """The persisted site and the generated secrets (a `SecretVault`)."""

    def __init__(self, where: str, path: Path | None, url: URL | None = None) -> None:
        self.where = where
        """Where the store is, for messages (a path, or the URL without its password)."""
        self._path = path
        self._url = url
        self._engine: Engine | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close every connection to the database."""
        if self._engine is not None:
            self._engine.dispose()

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine, made (and the schema migrated) on first use."""
        if self._engine is None:
            from wildix_ast.store.database import (
                create_store_engine,
                migrate,
                parse_url,
                translated,
            )

            url = self._url or parse_url(str(self._path))
            engine = create_store_engine(url)
            try:
                with translated(self.where, "opening"):
                    try:
                        migrate(engine, self.where)
                    except StoreError:
                        raise
                    except Exception:
                        # Another process may have been migrating the same new store at the
                        # same time: its work is done now, so a second look finds it at head.
                        migrate(engine, self.where)
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
    def _reading(self, action: str) -> Iterator[Connection]:
        """A consistent snapshot across several SELECTs."""
        from wildix_ast.store.database import translated

        with translated(self.where, action), self.engine.connect() as connection:
            if self.dialect != "sqlite":
                connection = connection.execution_options(isolation_level="REPEATABLE READ")
            with connection.begin():
                yield connection

    def revision_reader(self) -> Callable[[], int]:
        """A function returning `revision()` as cheaply as the database allows, for a
        service that checks it on every call: on a SQLite file, one kept sqlite3 connection
        (each SELECT sees the last commit; ~0.04 ms against ~1 ms through SQLAlchemy)."""
        if self._path is None or self._url is not None:
            return self.revision
        import threading

        connection = sqlite3.connect(self._path, timeout=SQLITE_TIMEOUT, isolation_level=None,
                                     check_same_thread=False)
        lock = threading.Lock()

        def read() -> int:
            with lock:
                try:
                    found = connection.execute("SELECT revision FROM site_state").fetchone()
                except sqlite3.Error as exc:
                    from wildix_ast.store.database import explain

                    raise explain(exc, self.where, "reading the store revision") from exc
            return int(found[0])

        return read

    def has_site(self) -> bool:
        """Whether a site has been imported."""
        if self._path is not None and self._url is None:
            with self._sqlite("reading the site") as connection:
                return connection.execute("SELECT id FROM system_settings").fetchone() \
                    is not None
        from sqlalchemy import select

        from wildix_ast.store import tables as t

        with self._reading("reading the site") as connection:
            return connection.execute(select(t.system_settings.c.id)).first() is not None

    def revision(self) -> int:
        """A number that grows with every import that changed something: what a generated
        configuration came from, and a cheap poll for runtime services."""
        if self._path is not None and self._url is None:
            # sqlite3: an apply reads it before reloading, when SQLAlchemy is not loaded yet
            with self._sqlite("reading the store revision") as connection:
                return int(connection.execute("SELECT revision FROM site_state").fetchone()[0])
        from sqlalchemy import select

        from wildix_ast.store import tables as t

        with self._reading("reading the store revision") as connection:
            return int(connection.execute(select(t.site_state.c.revision)).scalar_one())

    def export_site(self) -> Site:
        """The stored site, exactly as imported (WEB passwords as their hashes)."""
        from wildix_ast.store.sections import read_rows, site_data
        from wildix_ast.store.tables import SECTIONS, SYSTEM

        with self._reading("exporting the site") as connection:
            rows = {section: read_rows(connection, section) for section in SECTIONS}
            documents = _read_documents(connection)
        if not rows[SYSTEM]:
            raise StoreError(f"the store {self.where} holds no site yet: import one first")
        return self._valid(Site, _with_documents(site_data(rows), documents))

    def _valid(self, model: type[_Model], data: Any) -> _Model:
        from pydantic import ValidationError

        try:
            return model.model_validate(data)  # type: ignore[attr-defined,no-any-return]
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(part) for part in first["loc"])
            raise StoreError(f"the store {self.where} holds an invalid site ({where}: "
                             f"{fields.message(first)}; {exc.error_count()} problem(s)): "
                             "import a valid settings file again") from None

    def prepare_import(self, site: Site) -> PreparedImport:
        """Read and compare what an import of `site` needs, in one read snapshot and without
        the write lock: `import_site(site, prepared=...)` then only writes (see
        `PreparedImport`). Errors are those `import_site` would meet."""
        from sqlalchemy import select

        from wildix_ast.store import tables as t

        whole = _site_digest(site)
        with self._reading("importing the site") as connection:
            revision, stored_digest = connection.execute(
                select(t.site_state.c.revision, t.site_state.c.digest)).one()
            syncs = None if whole is not None and whole == stored_digest \
                else self._syncs(connection, site)
        return PreparedImport(site, whole, int(revision), stored_digest, syncs)

    def import_site(self, site: Site, source_text: str | None = None,
                    sounds: SoundLibrary | None = None,
                    prepared: PreparedImport | None = None) -> ImportReport:
        """Make the store hold `site`, in one transaction: all or nothing. Only the rows that
        differ are written; the revision grows only if something did. `sounds`: the
        converted audio of the site's sound files (`sound_audio.prepare`); None keeps the
        stored audio as it is. `prepared`: `prepare_import(site)` done earlier, used if the
        store has not changed since.

        Secrets are kept, except those of users that are gone (matched by extension)."""
        from sqlalchemy import insert, select, update

        from wildix_ast.store import sections
        from wildix_ast.store import tables as t
        from wildix_ast.store.database import translated, writing

        sha256 = None if source_text is None \
            else hashlib.sha256(source_text.encode("utf-8")).hexdigest()
        if prepared is not None and prepared.site is not site:
            prepared = None
        whole = prepared.whole if prepared is not None else _site_digest(site)
        users = sections.Changes()
        now = datetime.now(UTC)
        try:
            with translated(self.where, "importing the site"), \
                    writing(self.engine) as connection:
                # First a write: it takes the lock that serialises concurrent imports.
                connection.execute(update(t.site_state).where(t.site_state.c.id == 1)
                                   .values(revision=t.site_state.c.revision))
                stored_revision, stored_digest = connection.execute(
                    select(t.site_state.c.revision, t.site_state.c.digest)).one()
                if prepared is not None and (prepared.revision, prepared.stored_digest) \
                        != (stored_revision, stored_digest):
                    prepared = None  # written meanwhile: compare again, under the lock
                wrote_sounds = sounds is not None and _write_sounds(connection, sounds)
                if whole is None or whole != stored_digest or wrote_sounds:
                    syncs = prepared.syncs if prepared is not None else None
                    users, wrote = self._write_rows(connection, site, syncs)
                    connection.execute(update(t.site_state).where(t.site_state.c.id == 1)
                                       .values(revision=t.site_state.c.revision
                                               + int(wrote or wrote_sounds), digest=whole))
                revision = int(connection.execute(select(t.site_state.c.revision)).scalar_one())
                report = ImportReport(
                    users=len(site.users), groups=len(site.groups),
                    procedures=len(site.dialplan.procedures), added=len(users.added),
                    changed=len(users.changed), removed=len(users.removed), imported_at=now,
                    source_sha256=sha256, revision=revision)
                crash_point("import-before-commit")
                connection.execute(insert(t.imports).values(
                    imported_at=now, source_sha256=sha256, users=report.users,
                    groups=report.groups, procedures=report.procedures, added=report.added,
                    changed=report.changed, removed=report.removed, revision=revision))
        except StoreError as exc:
            raise StoreError(f"import failed, the store is unchanged: {exc.message}") from exc
        except Exception as exc:
            raise StoreError(f"import failed, the store {self.where} is unchanged: "
                             f"{type(exc).__name__}: {exc}") from exc
        return report

    def sound_audio(self, digests: Iterable[str]) -> dict[str, Audio]:
        """The converted audio kept under each of `digests` (those the store has)."""
        from sqlalchemy import select

        from wildix_ast.sounds.audio import Audio
        from wildix_ast.store import tables as t

        wanted = sorted(set(digests))
        found: dict[str, Audio] = {}
        audio = t.sound_audio.c
        with self._reading("reading sounds") as connection:
            for start in range(0, len(wanted), _SECRET_BATCH):
                for digest, wav, wav16 in connection.execute(
                        select(audio.digest, audio.wav, audio.wav16).where(
                            audio.digest.in_(wanted[start:start + _SECRET_BATCH]))):
                    found[str(digest)] = Audio(str(digest), bytes(wav), bytes(wav16))
        return found

    def stored_sounds(self) -> dict[SoundKey, Audio]:
        """The audio of every file of the stored site's sounds: (sound, language) -> Audio."""
        from sqlalchemy import select

        from wildix_ast.sounds.audio import Audio
        from wildix_ast.store import tables as t

        files, audio = t.sound_files.c, t.sound_audio.c
        with self._reading("reading sounds") as connection:
            return {(str(s), str(lang)): Audio(str(d), bytes(wav), bytes(wav16))
                    for s, lang, d, wav, wav16 in connection.execute(
                        select(files.sound, files.language, files.digest, audio.wav,
                               audio.wav16).join(t.sound_audio, audio.digest == files.digest))}

    def _syncs(self, connection: Connection, site: Site) -> list[Sync]:
        """Each section's stored rows compared with the rows of `site`."""
        from wildix_ast.store import sections
        from wildix_ast.store import tables as t

        new_entries = sections.entries(site)
        _hash_web_passwords(connection, new_entries[t.USERS])
        return [sections.compare(section, sections.stored_rows(connection, section),
                                 new_entries[section]) for section in t.SECTIONS]

    def _write_rows(self, connection: Connection, site: Site,
                    syncs: list[Sync] | None = None) -> tuple[Changes, bool]:
        """Write the rows of `site` that differ from the stored ones (`syncs`: compared
        already, against the rows the store still holds): what changed in users, and
        whether anything was written."""
        from wildix_ast.store import sections
        from wildix_ast.store import tables as t

        if syncs is None:
            syncs = self._syncs(connection, site)
        sections.write_changes(connection, syncs, sections.insert_rows)
        wrote_documents = _write_documents(connection, _documents(site))
        users = syncs[t.SECTIONS.index(t.USERS)].changes
        gone = [user_secret_key(extension, kind)
                for (extension,) in users.removed for kind in USER_SECRET_KINDS]
        for start in range(0, len(gone), sections.BATCH):
            connection.execute(t.secrets.delete().where(
                t.secrets.c.key.in_(gone[start:start + sections.BATCH])))
        return users, wrote_documents or any(sync.changes.any for sync in syncs)

    def import_history(self) -> list[ImportReport]:
        """Every import, oldest first."""
        from sqlalchemy import select

        from wildix_ast.store import tables as t

        with self._reading("reading the import history") as connection:
            return [ImportReport(users=r.users, groups=r.groups, procedures=r.procedures,
                                 added=r.added, changed=r.changed, removed=r.removed,
                                 imported_at=_aware(r.imported_at),
                                 source_sha256=r.source_sha256, revision=r.revision or 0)
                    for r in connection.execute(select(t.imports).order_by(t.imports.c.id))]

    # Lookups for call-time services: one indexed query each, not the whole site.

    def _user_where(self, condition: Any) -> User | None:
        """One user, with its preferences: one query (the preferences row joined)."""
        from sqlalchemy import select

        from wildix_ast.model.users import User
        from wildix_ast.store.sections import item_data
        from wildix_ast.store.tables import PREFERENCES, USERS, user_preferences, users

        body = user_preferences.c.body.label("preferences_body")
        with self._reading("looking a user up") as connection:
            found = connection.execute(
                select(users, body).outerjoin(
                    user_preferences, user_preferences.c.extension == users.c.extension)
                .where(condition)).first()
        if found is None:
            return None
        row = found._mapping
        data = item_data(USERS, row)
        if row["preferences_body"] is not None:
            data["preferences"] = item_data(PREFERENCES, {"body": row["preferences_body"]})
        return self._valid(User, data)

    def user_by_extension(self, extension: str) -> User | None:
        from wildix_ast.store.tables import users

        return self._user_where(users.c.extension == extension)

    def user_by_did(self, number: str) -> User | None:
        """The user whose office or fax DID is `number`."""
        from sqlalchemy import or_

        from wildix_ast.store.tables import users

        return self._user_where(or_(users.c.office_did == number, users.c.fax_did == number))

    def user_by_login(self, login: str) -> User | None:
        """Logins compare without case, as the model's uniqueness rule does."""
        from wildix_ast.store.tables import users

        return self._user_where(users.c.login_key == login.lower())

    def group_of(self, extension: str) -> Group | None:
        """The ACL group of the user at `extension` (None if there is no such user)."""
        from sqlalchemy import select

        from wildix_ast.model.groups import Group
        from wildix_ast.store.sections import item_data, read_rows
        from wildix_ast.store.tables import GROUPS, acl_groups, users

        with self._reading("looking a group up") as connection:
            rows = read_rows(connection, GROUPS, acl_groups.c.name == select(
                users.c.group_name).where(users.c.extension == extension).scalar_subquery())
        return self._valid(Group, item_data(GROUPS, rows[0])) if rows else None

    def procedure_of(self, extension: str, *, fax: bool = False) -> Procedure | None:
        """The dialplan procedure (the fax one with `fax`) of the user at `extension`."""
        import json

        from sqlalchemy import select

        from wildix_ast.model.common import DEFAULT_PROCEDURE
        from wildix_ast.model.dialplan import Procedure
        from wildix_ast.store.sections import item_data, read_rows
        from wildix_ast.store.tables import PROCEDURES, documents, users

        column = users.c.fax_dialplan if fax else users.c.dialplan
        with self._reading("looking a procedure up") as connection:
            name = connection.execute(select(column).where(
                users.c.extension == extension)).scalar()
            rows = [] if name is None else read_rows(
                connection, PROCEDURES, PROCEDURES.table.c.name == name)
            numbers = connection.execute(select(documents.c.body).where(
                documents.c.name == "procedure_numbers")).scalar() if rows else None
        if name == DEFAULT_PROCEDURE:
            return Procedure(name=DEFAULT_PROCEDURE)
        if not rows:
            return None
        data = item_data(PROCEDURES, rows[0])
        data["numbers"] = json.loads(numbers or "{}").get(name, [])
        return self._valid(Procedure, data)

    def preferences_of(self, extension: str) -> Preferences | None:
        """The preferences of the user at `extension` (None if there is no such user): one
        primary-key query, what the FastAGI service reads on every call."""
        import json

        from sqlalchemy import select

        from wildix_ast.model.preferences import Preferences
        from wildix_ast.store.tables import user_preferences, users

        with self._reading("looking preferences up") as connection:
            found = connection.execute(
                select(users.c.extension, user_preferences.c.body)
                .outerjoin(user_preferences, user_preferences.c.extension == users.c.extension)
                .where(users.c.extension == extension)).first()
        if found is None:
            return None
        return self._valid(Preferences, json.loads(found.body or "{}"))

    def change_preferences(self, extension: str,
                           change: Callable[[Preferences], Preferences]) -> Preferences:
        """Replace the preferences of the user at `extension` with `change(current)`, in one
        transaction that holds the store's write lock from the read to the write: two changes
        at once both apply, one after the other, and an error (a refused value, a lost
        database) leaves the stored preferences as they were. The result is checked with
        the user's own fields (wildix_ast.model.users.User) before it is written.

        The revision grows (call-time services see the change on the next call; no Asterisk
        reload is involved) and the stored site digest is dropped, so the next import of a
        settings file sets the preferences it gives even if the file itself is unchanged."""
        from pydantic import ValidationError
        from sqlalchemy import insert, update

        from wildix_ast.errors import SettingsError
        from wildix_ast.model.preferences import Preferences
        from wildix_ast.model.users import User
        from wildix_ast.store.database import translated, writing
        from wildix_ast.store.sections import item_data, read_rows
        from wildix_ast.store.tables import (
            PREFERENCES,
            USERS,
            preferences_json,
            site_state,
            user_preferences,
        )

        try:
            with translated(self.where, "changing preferences"), \
                    writing(self.engine) as connection:
                # First a write: the lock that serialises imports and other changes.
                connection.execute(update(site_state).where(site_state.c.id == 1)
                                   .values(revision=site_state.c.revision))
                rows = read_rows(connection, USERS, USERS.table.c.extension == extension)
                if not rows:
                    raise UnknownUserError(f"no user has extension {extension}")
                stored = read_rows(connection, PREFERENCES,
                                   user_preferences.c.extension == extension)
                current = self._valid(Preferences, item_data(PREFERENCES, stored[0])
                                      if stored else {})
                wanted = change(current)
                user = item_data(USERS, rows[0])
                try:
                    User.model_validate({**user, "preferences": wanted.model_dump()})
                except ValidationError as exc:
                    problems = [_located(e["loc"], fields.message(e))
                                for e in exc.errors(include_url=False)]
                    raise SettingsError(f"the preferences of user {extension} are not "
                                        "valid; nothing was changed", problems) from None
                body = preferences_json(wanted)
                if stored and stored[0]["body"] == body:
                    return wanted
                if stored:
                    connection.execute(update(user_preferences).where(
                        user_preferences.c.extension == extension).values(body=body))
                else:
                    connection.execute(insert(user_preferences).values(
                        extension=extension, body=body))
                crash_point("preferences-before-commit")
                connection.execute(update(site_state).where(site_state.c.id == 1).values(
                    revision=site_state.c.revision + 1, digest=None))
        except WildixError:
            raise
        except Exception as exc:
            raise StoreError(f"changing the preferences of {extension} failed, they are "
                             f"unchanged: {type(exc).__name__}: {exc}") from exc
        return wanted

    # SecretVault: through sqlite3 on a SQLite file (render needs nothing else).

    @contextmanager
    def _sqlite(self, action: str) -> Iterator[sqlite3.Connection]:
        assert self._path is not None
        try:
            with closing(sqlite3.connect(self._path, timeout=SQLITE_TIMEOUT,
                                         isolation_level=None)) as connection:
                yield connection
        except sqlite3.Error as exc:
            from wildix_ast.store.database import explain

            raise explain(exc, self.where, action) from exc

    def get_secret(self, key: str) -> str | None:
        if self._path is not None and self._url is None:
            with self._sqlite("reading a secret") as connection:
                found = connection.execute("SELECT value FROM secrets WHERE key = ?",
                                           (key,)).fetchone()
            return None if found is None else str(found[0])
        from sqlalchemy import select

        from wildix_ast.store import tables as t
        from wildix_ast.store.database import translated

        with translated(self.where, "reading a secret"), self.engine.connect() as connection:
            value = connection.execute(
                select(t.secrets.c.value).where(t.secrets.c.key == key)).scalar()
            connection.rollback()
        return None if value is None else str(value)

    def get_secrets(self, keys: Iterable[str]) -> dict[str, str]:
        """The kept values of `keys`, read in a few queries (not one per key)."""
        wanted = list(dict.fromkeys(keys))
        found: dict[str, str] = {}
        if self._path is not None and self._url is None:
            with self._sqlite("reading secrets") as connection:
                if len(wanted) > _SECRET_SCAN:
                    # a render of a large site asks for most of the table: one pass over
                    # it takes half the time of the batches of keys
                    keys = set(wanted)
                    found.update((str(k), str(v)) for k, v in connection.execute(
                        "SELECT key, value FROM secrets") if k in keys)
                    return found
                for start in range(0, len(wanted), _SECRET_BATCH):
                    batch = wanted[start:start + _SECRET_BATCH]
                    marks = ",".join("?" * len(batch))
                    found.update((str(k), str(v)) for k, v in connection.execute(
                        f"SELECT key, value FROM secrets WHERE key IN ({marks})", batch))
            return found
        from sqlalchemy import select

        from wildix_ast.store import tables as t
        from wildix_ast.store.database import translated

        with translated(self.where, "reading secrets"), self.engine.connect() as connection:
            for start in range(0, len(wanted), _SECRET_BATCH):
                batch = wanted[start:start + _SECRET_BATCH]
                found.update((str(k), str(v)) for k, v in connection.execute(
                    select(t.secrets.c.key, t.secrets.c.value).where(
                        t.secrets.c.key.in_(batch))))
            connection.rollback()
        return found

    def put_secrets(self, values: Mapping[str, str]) -> None:
        """Keep every value in one transaction."""
        if not values:
            return
        if self._path is not None and self._url is None:
            with self._sqlite("saving secrets") as connection:
                connection.execute("BEGIN IMMEDIATE")
                connection.executemany(
                    "INSERT INTO secrets (key, value) VALUES (?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    list(values.items()))
                connection.execute("COMMIT")
            return
        from sqlalchemy import bindparam, insert, select
        from sqlalchemy import update as sql_update
        from sqlalchemy.exc import IntegrityError

        from wildix_ast.store import tables as t
        from wildix_ast.store.database import translated, writing

        for attempt in range(2):
            try:
                with translated(self.where, "saving secrets"), \
                        writing(self.engine) as connection:
                    keys = list(values)
                    existing: set[str] = set()
                    for start in range(0, len(keys), _SECRET_BATCH):
                        existing.update(str(k) for (k,) in connection.execute(
                            select(t.secrets.c.key).where(
                                t.secrets.c.key.in_(keys[start:start + _SECRET_BATCH]))))
                    updates = [{"k": k, "v": v} for k, v in values.items() if k in existing]
                    inserts = [{"key": k, "value": v} for k, v in values.items()
                               if k not in existing]
                    if updates:
                        connection.execute(sql_update(t.secrets).where(
                            t.secrets.c.key == bindparam("k")).values(value=bindparam("v")),
                            updates)
                    if inserts:
                        connection.execute(insert(t.secrets), inserts)
                return
            except StoreError as exc:
                # Another process inserted one of the keys meanwhile: update it instead.
                if attempt or not isinstance(exc.__cause__, IntegrityError):
                    raise

    def put_secret(self, key: str, value: str) -> None:
        """Keep `value` under `key`, committed at once."""
        if self._path is not None and self._url is None:
            with self._sqlite("saving a secret") as connection:
                connection.execute("BEGIN IMMEDIATE")
                connection.execute("INSERT INTO secrets (key, value) VALUES (?, ?) "
                                   "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                                   (key, value))
                connection.execute("COMMIT")
            return
        from sqlalchemy import insert
        from sqlalchemy import update as sql_update
        from sqlalchemy.exc import IntegrityError

        from wildix_ast.store import tables as t
        from wildix_ast.store.database import translated, writing

        for attempt in range(2):
            try:
                with translated(self.where, "saving a secret"), \
                        writing(self.engine) as connection:
                    done = connection.execute(sql_update(t.secrets).where(
                        t.secrets.c.key == key).values(value=value)).rowcount
                    if not done:
                        connection.execute(insert(t.secrets).values(key=key, value=value))
                return
            except StoreError as exc:
                # Another process inserted the same key meanwhile: update it instead.
                if attempt or not isinstance(exc.__cause__, IntegrityError):
                    raise
