"""Writing a few users' rows: the cost of a change to some users, not of the whole site.

A directory sync (or a CSV import) changes a handful of users of a site of thousands. The
full import (`site_rows.import_site`) serialises and compares every row of the site; this
writes only the rows of the users named (added, changed, moved into a removed user's place,
removed), with their preferences, through the same section machinery (`sections.compare` and
`sections.write_changes`: the same rows, digests and unique-column handling as the full
import). The caller has validated the whole site already (`Site` rules across users).

It runs in one transaction that first takes the store's write lock (the one imports take),
then checks that the store is still at the revision the caller read: a change made
meanwhile (another sync, an import, an apply) makes it write nothing and raise a
StoreError asking to run again, instead of undoing that change. `also` writes the caller's
own rows (the directory's ownership records) in the same transaction. The revision grows
and the stored site digest is dropped, like a preference edit: the next import compares
rows."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import Connection, select, update

from wildix_ast.errors import StoreError, WildixError
from wildix_ast.model.passwords import is_password_hash
from wildix_ast.store import history, sections
from wildix_ast.store import tables as t
from wildix_ast.store.columns import Section
from wildix_ast.store.history import ImportReport
from wildix_ast.store.site_rows import USER_SECRET_KINDS
from wildix_ast.store.vault import user_secret_key
from wildix_ast.testing.crash_points import crash_point

if TYPE_CHECKING:
    from wildix_ast.model.site import Site
    from wildix_ast.store.access import Access


class StoreChanged(StoreError):
    """The store changed after the caller read it: nothing was written."""


class NeedsFullImport(Exception):
    """The users carry what only the full import handles (a WEB password text to hash)."""


def _entries(site: Site, positions: dict[str, int],
             wanted: set[str]) -> dict[Section, list[sections.Entry]]:
    """The section entries of the users at `wanted` (and their preferences), each at its
    place in `site`."""
    touched = [site.users[positions[e]] for e in sorted(wanted) if e in positions]
    if any(u.web_password is not None and not is_password_hash(u.web_password)
           for u in touched):
        raise NeedsFullImport
    made = sections.entries(site.model_copy(update={"users": touched}),
                            [t.USERS, t.PREFERENCES])
    for entry in made[t.USERS]:
        entry.extra["position"] = positions[entry.item.extension]
    return made


def write_users(access: Access, site: Site | None, extensions: Iterable[str], read_at: int,
                also: Callable[[Connection], None] | None = None) -> ImportReport | None:
    """Make the stored rows of the users at `extensions` those of `site` (a user not in
    `site` is removed, with its preferences and secrets), in one transaction, if the
    store is still at revision `read_at`. `site` None: no user row is written, only
    `also` (under the same lock and check). See the module's docstring."""
    named = set(extensions)
    positions = {} if site is None else {u.extension: i for i, u in enumerate(site.users)}
    removed: list[str] = []
    try:
        with access.writing("writing the changed users") as connection:
            state = t.site_state
            # First a write: it takes the lock that serialises imports and other changes.
            connection.execute(update(state).where(state.c.id == 1)
                               .values(revision=state.c.revision))
            revision = int(connection.execute(select(state.c.revision)).scalar_one())
            if revision != read_at:
                raise StoreChanged("the store changed while this command was reading it "
                                 "(another import or sync): nothing was written; run it "
                                 "again")
            if site is None:
                if also is not None:
                    also(connection)
                return None
            users_table = t.USERS.table
            places = dict(connection.execute(select(users_table.c.extension,
                                                    users_table.c.position)).all())
            # besides the named users: those added or gone, and those whose place changed
            wanted = named | {e for e in places if e not in positions} | {
                u.extension for i, u in enumerate(site.users) if places.get(u.extension) != i}
            made = _entries(site, positions, wanted)
            syncs = []
            for section in (t.USERS, t.PREFERENCES):
                old = {}
                chosen = sorted(wanted)
                for start in range(0, len(chosen), sections.BATCH):
                    old.update(sections.stored_rows(
                        connection, section, section.table.c.extension.in_(
                            chosen[start:start + sections.BATCH])))
                syncs.append(sections.compare(section, old, made[section]))
            sections.write_changes(connection, syncs, sections.insert_rows)
            users = syncs[0].changes
            removed = [extension for (extension,) in users.removed]
            gone = [user_secret_key(e, kind) for e in removed for kind in USER_SECRET_KINDS]
            for start in range(0, len(gone), sections.BATCH):
                connection.execute(t.secrets.delete().where(
                    t.secrets.c.key.in_(gone[start:start + sections.BATCH])))
            if also is not None:
                also(connection)
            wrote = any(sync.changes.any for sync in syncs)
            connection.execute(update(state).where(state.c.id == 1).values(
                revision=state.c.revision + int(wrote), digest=None if wrote
                else state.c.digest))
            report = ImportReport(
                users=len(site.users), groups=len(site.groups),
                procedures=len(site.dialplan.procedures), added=len(users.added),
                changed=len(users.changed), removed=len(removed),
                imported_at=datetime.now(UTC), source_sha256=None,
                revision=revision + int(wrote))
            crash_point("user-writes-before-commit")
            if wrote:
                history.record(connection, report)
    except WildixError:
        raise
    except Exception as exc:
        raise StoreError(f"writing the changed users failed, the store {access.where} is "
                         f"unchanged: {type(exc).__name__}: {exc}") from exc
    return report
