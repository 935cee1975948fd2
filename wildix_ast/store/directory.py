"""The company directory's records in the store: which users it owns (their origin, by
entry UUID, with each entry's change mark) and the state of the last sync.

A sync writes the users (only those that changed: `store.user_writes`) and these records
in one transaction (`write_owned`, `drop_owned`, `write_sync_state` take the caller's
connection). The store-level `record_owned` / `forget_owned` / `record_sync` serve the
fallback through the full import, where the records are written around it so that a sync
killed at any point leaves nothing a later sync misreads: a user's ownership is recorded
before the import adds the user (an ownership without a user is a user still to create),
and dropped after the import removed the user (an ownership of a missing user is dropped
by the next sync)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from wildix_ast.store.vault import user_secret_key

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from wildix_ast.model.directory import DirectorySettings
    from wildix_ast.model.site import Site
    from wildix_ast.store.history import ImportReport
    from wildix_ast.store.store import Store

BIND_PASSWORD_KEY = "directory:bind_password"
"""The vault key of the directory's bind password."""
_BATCH = 500


@dataclass(frozen=True)
class Owned:
    """A user the directory created: its entry and the entry's change mark at the last
    sync (modifyTimestamp on OpenLDAP, uSNChanged on Active Directory)."""

    extension: str
    entry_uuid: str
    dn: str
    change_mark: str | None


@dataclass(frozen=True)
class SyncState:
    """The last successful sync."""

    server: str
    change_mark: str | None
    synced_at: datetime
    full: bool
    users: int
    added: int
    changed: int
    removed: int


def owned_users(store: Store) -> dict[str, Owned]:
    """Every owned user, by entry UUID."""
    from sqlalchemy import select

    from wildix_ast.store.database import translated
    from wildix_ast.store.tables import directory_users as t

    with translated(store.where, "reading the directory's users"), \
            store.engine.connect() as connection:
        rows = connection.execute(select(t.c.extension, t.c.entry_uuid, t.c.dn,
                                         t.c.change_mark)).all()
    return {str(r.entry_uuid): Owned(str(r.extension), str(r.entry_uuid), str(r.dn),
                                     r.change_mark) for r in rows}


def owned_extensions(store: Store) -> set[str]:
    """The extensions of the users the directory owns. On a SQLite file through sqlite3:
    every apply asks, and SQLAlchemy's import alone (0.1-0.15 s) would cost more than the
    question."""
    if store.access.sqlite_file is None:
        return {o.extension for o in owned_users(store).values()}
    with store.access.sqlite("reading the directory's users") as connection:
        return {str(extension) for (extension,) in
                connection.execute("SELECT extension FROM directory_users")}


def record_owned(store: Store, owned: Iterable[Owned]) -> None:
    """Insert or update ownership records (one transaction)."""
    from wildix_ast.store.database import translated, writing

    with translated(store.where, "recording the directory's users"), \
            writing(store.engine) as connection:
        write_owned(connection, owned)


def write_owned(connection: Connection, owned: Iterable[Owned]) -> None:
    """Insert or update ownership records, in the caller's transaction."""
    from sqlalchemy import delete, insert

    from wildix_ast.store.tables import directory_users as t

    rows = [{"extension": o.extension, "entry_uuid": o.entry_uuid, "dn": o.dn,
             "change_mark": o.change_mark, "synced_at": datetime.now(UTC)} for o in owned]
    if rows:
        for start in range(0, len(rows), _BATCH):
            batch = rows[start:start + _BATCH]
            connection.execute(delete(t).where(t.c.entry_uuid.in_(
                [r["entry_uuid"] for r in batch])))
            connection.execute(delete(t).where(t.c.extension.in_(
                [r["extension"] for r in batch])))
            connection.execute(insert(t), batch)


def forget_owned(store: Store, extensions: Iterable[str]) -> None:
    """Drop the ownership records (and any secret left) of users that are gone."""
    from wildix_ast.store.database import translated, writing

    with translated(store.where, "forgetting the directory's users"), \
            writing(store.engine) as connection:
        drop_owned(connection, extensions)


def drop_owned(connection: Connection, extensions: Iterable[str]) -> None:
    """Drop ownership records (and any secret left) by extension, in the caller's
    transaction."""
    from sqlalchemy import delete

    from wildix_ast.store.site_rows import USER_SECRET_KINDS
    from wildix_ast.store.tables import directory_users as t
    from wildix_ast.store.tables import secrets

    gone = list(extensions)
    if gone:
        for start in range(0, len(gone), _BATCH):
            batch = gone[start:start + _BATCH]
            connection.execute(delete(t).where(t.c.extension.in_(batch)))
            connection.execute(delete(secrets).where(secrets.c.key.in_(
                [user_secret_key(e, kind) for e in batch for kind in USER_SECRET_KINDS])))


def sync_state(store: Store) -> SyncState | None:
    from sqlalchemy import select

    from wildix_ast.store.database import translated
    from wildix_ast.store.tables import directory_state as t

    with translated(store.where, "reading the directory's state"), \
            store.engine.connect() as connection:
        row = connection.execute(select(t)).first()
    if row is None:
        return None
    moment = row.synced_at
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
    return SyncState(str(row.server), row.change_mark, moment, bool(row.full), row.users,
                     row.added, row.changed, row.removed)


def record_sync(store: Store, state: SyncState) -> None:
    from wildix_ast.store.database import translated, writing

    with translated(store.where, "recording the directory sync"), \
            writing(store.engine) as connection:
        write_sync_state(connection, state)


def write_sync_state(connection: Connection, state: SyncState) -> None:
    """The last sync's state, in the caller's transaction."""
    from sqlalchemy import delete, insert

    from wildix_ast.store.tables import directory_state as t

    values: Mapping[str, object] = {
        "id": 1, "server": state.server, "change_mark": state.change_mark,
        "synced_at": state.synced_at, "full": int(state.full), "users": state.users,
        "added": state.added, "changed": state.changed, "removed": state.removed}
    connection.execute(delete(t))
    connection.execute(insert(t).values(**values))


def with_directory_users(store: Store, site: Site) -> Site:
    """`site` (read from a settings file) with the directory's users it does not list added
    back from the store: a settings file describes the users people manage; the directory
    manages its own, and a settings import must not delete them (their secrets and
    preferences with them) for the next sync to create them again. A user the file lists
    at an owned extension is the file's."""
    if not store.has_site():
        return site
    owned = owned_extensions(store)
    listed = {u.extension for u in site.users}
    missing = owned - listed
    if not missing:
        return site
    from wildix_ast.model.site import Site as SiteModel

    kept = [u for u in store.export_site().users if u.extension in missing]
    data: dict[str, Any] = site.model_dump(exclude_unset=True, exclude={"users"})
    data["users"] = [*site.users, *kept]  # valid models: only the rules across rows run
    return SiteModel.model_validate(data)


def import_unless_changed(store: Store, site: Site, read_at: int) -> ImportReport:
    """Import `site`, made from the store as it was at revision `read_at`, unless the store
    changed since (another import, CSV or sync would otherwise be undone by this one): then
    a StoreError asks to run the command again. The check and the import are two steps; the
    window between them is one query long."""
    from wildix_ast.errors import StoreError

    if store.revision() != read_at:
        raise StoreError("the store changed while this command was reading it (another "
                         "import or sync): nothing was written; run it again")
    return store.import_site(site)


def directory_view(store: Store) -> tuple[DirectorySettings, set[str], set[str]]:
    """What a sync needs before it knows whether anything changed, without reading the
    whole site: the directory settings, the ACL groups' names and the users' extensions."""
    from sqlalchemy import select

    from wildix_ast.model.directory import DirectorySettings
    from wildix_ast.store import sections
    from wildix_ast.store import tables as t

    parts = (t.DIRECTORY, t.DIRECTORY_SERVERS)
    with store.access.reading("reading the directory settings") as connection:
        rows = {section: sections.read_rows(connection, section) for section in parts}
        groups = {str(name) for (name,) in connection.execute(select(t.GROUPS.table.c.name))}
        extensions = {str(e) for (e,) in connection.execute(
            select(t.USERS.table.c.extension))}
    data = sections.site_data(rows, parts).get("directory", {})
    return store.access.valid(DirectorySettings, data), groups, extensions
