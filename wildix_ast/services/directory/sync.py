"""Users from the company directory: the plan of a sync (what it adds, changes, removes),
and its application through the store's import (only the changed rows are written).

Every sync lists the directory's users (their entry UUID and change mark, a few bytes each,
in pages): UUIDs the store owns that are no longer listed are users deleted, disabled
(filtered out) or taken out of the groups; new UUIDs are users to create; a change mark
that differs from the recorded one is an entry changed since the last sync. Only these
entries are then read whole. A full sync reads every entry whole. A sync never touches a
user it does not own. See docs/directory.md."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from wildix_ast.errors import DirectoryError, Problem
from wildix_ast.model.directory import DirectorySettings
from wildix_ast.model.user_merge import Incoming, UserChanges, merge_users
from wildix_ast.services.directory.ldap import (
    DirectoryConnection,
    Entry,
    entry_of,
    normal_dn,
)
from wildix_ast.services.directory.welcome import Welcome
from wildix_ast.store.directory import (
    BIND_PASSWORD_KEY,
    Owned,
    SyncState,
    directory_view,
    drop_owned,
    forget_owned,
    import_unless_changed,
    owned_users,
    record_owned,
    record_sync,
    write_owned,
    write_sync_state,
)

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from wildix_ast.model.site import Site
    from wildix_ast.model.users import User
    from wildix_ast.store.store import Store

# Above this many changed entries, one paged search of them all beats one read each.
_READ_ONE_BY_ONE = 500
_SEPARATORS = re.compile(r"[\s().\-/]")
_EXTENSION = re.compile(r"^[0-9]{2,8}$")


@dataclass
class SyncPlan:
    """What a sync would do, and what it read."""

    full: bool
    server: str
    listed: int
    read: int
    changes: UserChanges
    site: Site | None
    """The site the sync writes (None: nothing changed, the stored site was not read)."""
    owned: dict[str, Owned]
    """The ownership records after the sync, by entry UUID."""
    owned_before: dict[str, Owned] = field(default_factory=dict)
    revision: int = 0
    """The store revision the plan was read at."""
    gone: list[str] = field(default_factory=list)
    """Extensions whose ownership ends (removed users, and records of vanished users)."""
    change_mark: str | None = None
    seconds: float = 0.0
    welcome: Welcome | None = None
    """The welcome mails of the users the sync created (set when it is written)."""
    history_removed: dict[str, int] = field(default_factory=dict)
    """Call records of the removed users deleted, by call history backend (GDPR)."""


def _number(value: str | None) -> str | None:
    if value is None:
        return None
    cleaned = _SEPARATORS.sub("", value)
    return cleaned or None


def _user_data(entry: Entry, settings: DirectorySettings,
               attributes: dict[str, str]) -> dict[str, Any]:
    data: dict[str, Any] = {"group": settings.acl_group}
    for name, attribute in attributes.items():
        value = entry.first(attribute)
        if name in ("mobile", "office_did"):
            value = _number(value)
        elif name == "extension":
            continue
        elif name == "language" and value is not None:
            value = value.lower()[:2]
        data[name] = value
    return data


def _extension(entry: Entry, attribute: str | None) -> str | None:
    number = _number(entry.first(attribute)) if attribute else None
    return number if number is not None and _EXTENSION.match(number) else None


def plan_sync(store: Store, *, full: bool = False, allow_empty: bool = False) -> SyncPlan:
    """Read the directory and compare it with the store; nothing is written."""
    started = time.perf_counter()
    revision = store.revision()
    settings, group_names, present = directory_view(store)
    if not settings.enabled:
        raise DirectoryError("the directory is not enabled (directory.enabled in the settings)")
    assert settings.base_dn is not None
    if settings.acl_group not in group_names:
        raise DirectoryError(f"directory.acl_group: no ACL group {settings.acl_group!r}")
    owned = owned_users(store)
    password = store.get_secret(BIND_PASSWORD_KEY) if settings.bind_dn else None
    if settings.bind_dn and password is None:
        raise DirectoryError("no bind password is kept for the directory: set it with "
                             "`wildix-ast directory password`")
    mapping = settings.attributes_for()
    if "name" not in mapping:
        raise DirectoryError("directory.attributes.name: no attribute gives users' names")
    identity, mark = settings.identity_attribute, settings.change_attribute
    with DirectoryConnection(settings, password) as directory:
        members: set[str] | None = None
        if settings.group_filter:
            groups, members = directory.group_members(settings.base_dn, settings.group_filter)
            if groups == 0:
                raise DirectoryError(f"the group filter {settings.group_filter} finds no group "
                                     f"under {settings.base_dn!r}; nothing was changed")
        wanted_attributes = [identity, mark, *mapping.values()]
        listed: dict[str, tuple[str, str | None]] = {}
        whole: dict[str, Entry] = {}
        problems: list[Problem] = []
        for entry in directory.search(settings.base_dn, settings.effective_user_filter,
                                      wanted_attributes if full else [identity, mark]):
            if members is not None and normal_dn(entry.dn) not in members:
                continue
            uuid = entry.first(identity)
            if uuid is None:
                problems.append(Problem(entry.dn, f"has no {identity} (cannot follow it)"))
                continue
            listed[uuid] = (entry.dn, entry.first(mark))
            if full:
                whole[uuid] = entry
        if not listed and owned and not allow_empty:
            raise DirectoryError(
                f"the directory lists no user (filter {settings.effective_user_filter}"
                f"{', groups ' + settings.group_filter if settings.group_filter else ''}): "
                f"refusing to remove all {len(owned)} users it created; nothing was changed "
                "(run with --allow-empty if that is meant)")
        stale = [u for u, (dn, m) in listed.items()
                 if u not in owned or owned[u].change_mark != m or owned[u].dn != dn
                 or owned[u].extension not in present]
        if not full:
            if len(stale) > _READ_ONE_BY_ONE:
                wanted = set(stale)
                for entry in directory.search(settings.base_dn, settings.effective_user_filter,
                                              wanted_attributes):
                    uuid = entry.first(identity)
                    if uuid in wanted:
                        whole[uuid] = entry
            else:
                for uuid in stale:
                    dn = listed[uuid][0]
                    whole[uuid] = entry_of(dn, directory.read(dn, wanted_attributes))
        server = directory.server_name
    if problems:
        raise DirectoryError(f"{len(problems)} directory entries cannot become users; "
                             "nothing was changed", problems)
    if not whole and owned.keys() <= listed.keys():
        # nothing new, changed or gone: the stored site is not read at all
        plan = SyncPlan(full=full, server=server, listed=len(listed), read=0,
                        changes=UserChanges(), site=None, owned=dict(owned),
                        owned_before=owned, change_mark=_last_mark(listed),
                        seconds=time.perf_counter() - started)
    else:
        # unchecked: merge_users checks whole the site a sync writes (the rules across
        # sections for 10,000 users are a quarter of the time: run once, not twice)
        site = store.export_site(checked=False)
        try:
            plan = _compare(site, settings, mapping, owned, listed, whole, full, server,
                            started)
        except DirectoryError:
            from wildix_ast.store.user_writes import StoreChanged

            # the ownership records were read before another sync wrote, the site after:
            # its new users look unowned; plan again from one state rather than refuse
            if store.revision() != revision:
                raise StoreChanged("the store changed while the sync read it") from None
            raise
    plan.revision = revision
    return plan


def _last_mark(listed: dict[str, tuple[str, str | None]]) -> str | None:
    return max((m for _, m in listed.values() if m), default=None)


def _compare(site: Site, settings: DirectorySettings, mapping: dict[str, str],
             owned: dict[str, Owned], listed: dict[str, tuple[str, str | None]],
             whole: dict[str, Entry], full: bool, server: str, started: float) -> SyncPlan:
    by_extension = {u.extension: u for u in site.users}
    owned_extensions = {o.extension for o in owned.values()}
    taken = set(by_extension)
    first, last = int(settings.extension_first), int(settings.extension_last)
    width = len(settings.extension_first)
    free = (str(n).zfill(width) for n in range(first, last + 1))

    def allocate() -> str:
        for candidate in free:
            if candidate not in taken:
                taken.add(candidate)
                return candidate
        raise DirectoryError(f"no free extension left between {settings.extension_first} "
                             f"and {settings.extension_last} (directory.extension_first/last)")

    incoming: list[Incoming] = []
    problems: list[Problem] = []
    after: dict[str, Owned] = {}
    for uuid, (dn, mark) in listed.items():
        record = owned.get(uuid)
        entry = whole.get(uuid)
        if entry is None:  # unchanged since the last sync: kept as it is
            assert record is not None
            after[uuid] = record
            continue
        extension = _extension(entry, mapping.get("extension"))
        if extension is None:
            extension = record.extension if record is not None else allocate()
        if extension in by_extension and extension not in owned_extensions:
            problems.append(Problem(dn, f"extension {extension} belongs to a user the "
                                        "directory does not own"))
            continue
        taken.add(extension)
        data = _user_data(entry, settings, mapping)
        data["extension"] = extension
        incoming.append(Incoming(dn, data))
        after[uuid] = Owned(extension, uuid, dn, mark)
    if problems:
        raise DirectoryError(f"{len(problems)} directory entries cannot become users; "
                             "nothing was changed", problems)
    kept = {o.extension for o in after.values()}
    gone = sorted({o.extension for u, o in owned.items() if o.extension not in kept})
    try:
        # the ACL group is the directory's choice for new users only: an administrator
        # may move a user to another group afterwards
        merged, changes = merge_users(site, incoming, remove=gone, keep=("group",),
                                      fill_holes=True)
    except Exception as exc:
        from wildix_ast.errors import SettingsError

        if isinstance(exc, SettingsError):
            raise DirectoryError(f"{len(exc.problems)} directory entries cannot become "
                                 "users; nothing was changed", exc.problems) from None
        raise
    return SyncPlan(full=full, server=server, listed=len(listed), read=len(whole),
                    changes=changes, site=merged, owned=after, owned_before=owned, gone=gone,
                    change_mark=_last_mark(listed),
                    seconds=time.perf_counter() - started)


def apply_sync(store: Store, plan: SyncPlan) -> None:
    """Write a plan in one transaction under the store's write lock, if the store is still
    at the revision the plan was read at (else a StoreChanged, nothing written): the rows
    of the users added, changed and removed (only those: `store.user_writes`), the
    ownership records and the sync's state. Then the new users' SIP passwords and the
    removed users' device assignments, and the welcome mails."""
    from wildix_ast.services.directory.welcome import welcome_new_users
    from wildix_ast.store.user_writes import NeedsFullImport, write_users

    fresh = [o for u, o in plan.owned.items() if plan.owned_before.get(u) != o]
    kept = {o.extension for o in plan.owned.values()}
    forget = [e for e in plan.gone if e not in kept]
    state = SyncState(
        server=plan.server, change_mark=plan.change_mark, synced_at=datetime.now(UTC),
        full=plan.full, users=plan.listed, added=len(plan.changes.added),
        changed=len(plan.changes.changed), removed=len(plan.changes.removed))

    def ownership(connection: Connection) -> None:
        write_owned(connection, fresh)
        drop_owned(connection, forget)
        write_sync_state(connection, state)

    touched = {u.extension for u in plan.changes.added} \
        | {u.extension for u in plan.changes.removed} \
        | {e for before, after in plan.changes.changed for e in (before.extension,
                                                                  after.extension)}
    try:
        write_users(store.access, plan.site, touched, plan.revision, also=ownership)
    except NeedsFullImport:
        assert plan.site is not None  # a user with a WEB password text: the full import hashes it
        record_owned(store, fresh)
        import_unless_changed(store, plan.site, plan.revision)
        forget_owned(store, forget)
        record_sync(store, state)
    if plan.changes.added:
        from wildix_ast.store.vault import with_secrets

        assert plan.site is not None
        # new users get their SIP password now, as after a settings import
        with_secrets(plan.site, store)
    if plan.changes.removed:
        from wildix_ast.store.devices import unassign_missing_users

        unassign_missing_users(store)
    if plan.changes.added and plan.site is not None:
        plan.welcome = welcome_new_users(plan.changes.added, store, plan.site,
                                         event=f"r{store.revision()}")


def sync_directory(store: Store, *, full: bool = False, allow_empty: bool = False,
                   with_history: bool = False, attempts: int = 3) -> SyncPlan:
    """Plan and write a sync. Two syncs (or a sync and an import) at once: the one that
    writes second finds the store changed since it read it, writes nothing, and plans
    again from the new state (up to `attempts` times) rather than undo the other's
    change or fail. `with_history`: the removed users' calls leave every call history
    backend too (GDPR; their voicemail leaves the Asterisk host at the next apply)."""
    from wildix_ast.store.user_writes import StoreChanged

    for attempt in range(attempts):
        try:
            plan = plan_sync(store, full=full, allow_empty=allow_empty)
            apply_sync(store, plan)
        except StoreChanged:
            if attempt == attempts - 1:
                raise
            continue
        if with_history and plan.site is not None:
            plan.history_removed = forget_history(plan.site, plan.changes.removed)
        return plan
    raise AssertionError("unreachable")


def forget_history(site: Site, removed: list[User]) -> dict[str, int]:
    """Delete the calls of the `removed` users from every call history backend of `site`;
    how many per backend. A backend that fails is a DirectoryError naming it (the users
    are removed already: `wildix-ast cdr forget-user EXT` finishes the job)."""
    from wildix_ast.services.call_history.query import delete_user_history

    counts: dict[str, int] = {}
    for backend in site.call_history.backends:
        counts[backend.name] = 0
        for user in removed:
            try:
                counts[backend.name] += delete_user_history(backend, user.extension)
            except Exception as exc:  # any database failure becomes a message
                raise DirectoryError(
                    f"the users were removed, but deleting the calls of {user.extension} "
                    f"from call history backend {backend.name!r} failed "
                    f"({type(exc).__name__}): run `wildix-ast cdr forget-user "
                    f"{user.extension}` once it is reachable") from None
    return counts
