"""The whole site in and out of the store: import (only the rows that differ, in one
transaction), export (exactly what was imported), and what an import compares ahead."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, insert, select, update

from wildix_ast.errors import StoreError
from wildix_ast.model.passwords import hash_password, is_password_hash, password_matches
from wildix_ast.model.site import STORED_UNCHECKED, Site
from wildix_ast.sounds.audio import SoundLibrary
from wildix_ast.store import history, sections
from wildix_ast.store import tables as t
from wildix_ast.store.access import Access
from wildix_ast.store.history import ImportReport
from wildix_ast.store.password_tags import (
    TAG_KIND,
    password_tag,
    site_tag,
    tag_key,
    tag_matches,
)
from wildix_ast.store.sections import Changes, Entry, Sync
from wildix_ast.store.stored_sounds import write_sounds
from wildix_ast.store.vault import user_secret_key
from wildix_ast.testing.crash_points import crash_point

# The per-user secrets of wildix_ast.store.vault, deleted with their user ("web": 0001;
# TAG_KIND: the keyed tag of a WEB password text, password_tags).
USER_SECRET_KINDS = ("sip", "web", "voicemail_pin", TAG_KIND)


@dataclass(frozen=True)
class PreparedImport:
    """The reading and comparing half of an import of `site`, done ahead (while Asterisk
    reloads), without the write lock. The import uses it only if the store still is as it
    was read (same revision and site digest: every change to the site's rows moves one of
    them); otherwise it compares again under the lock, so the result is the same."""

    site: Site
    whole: str
    """The digest of the whole site (keyed when it holds a WEB password text)."""
    revision: int
    stored_digest: str | None
    syncs: Comparison | None
    """Each section's differences (None: the stored digest says the rows are equal)."""


def _hash_web_passwords(connection: Connection, entries: list[Entry]) -> dict[str, str]:
    """Make every user entry that carries a WEB password text carry its argon2id hash: the
    stored hash when the text is the same (so an unchanged user stays unchanged), a new one
    otherwise. A text whose keyed tag (`password_tags`) matches its stored hash costs no
    argon2id work; the others are verified or hashed. Only these users' stored hashes and
    tags are read. Returns the tags to keep (vault key -> tag) for those that changed."""
    users = t.users
    texts = [e for e in entries if e.item.web_password is not None
             and not is_password_hash(e.item.web_password)]
    if not texts:
        return {}
    key = tag_key()
    stored: dict[str, str] = {}
    wanted = [e.item.extension for e in texts]
    tag_keys = [user_secret_key(extension, TAG_KIND) for extension in wanted]
    kept_tags: dict[str, str] = {}
    for start in range(0, len(wanted), sections.BATCH):
        stored.update(connection.execute(
            select(users.c.extension, users.c.web_password).where(
                users.c.extension.in_(wanted[start:start + sections.BATCH]),
                users.c.web_password.is_not(None))).all())
        kept_tags.update(connection.execute(
            select(t.secrets.c.key, t.secrets.c.value).where(
                t.secrets.c.key.in_(tag_keys[start:start + sections.BATCH]))).all())

    def unchanged(entry: Entry) -> bool:
        extension = entry.item.extension
        before = stored.get(extension)
        return before is not None and tag_matches(
            key, extension, before, entry.item.web_password,
            kept_tags.get(user_secret_key(extension, TAG_KIND)))

    def hashed(entry: Entry) -> str:
        text, before = entry.item.web_password, stored.get(entry.item.extension)
        return before if before is not None and password_matches(before, text) \
            else hash_password(text)

    slow = [e for e in texts if not unchanged(e)]
    tags: dict[str, str] = {}
    # argon2 releases the GIL: every core works on a large site's passwords.
    with ThreadPoolExecutor() as pool:
        for entry, value in zip(slow, pool.map(hashed, slow), strict=True):
            text, extension = entry.item.web_password, entry.item.extension
            tags[user_secret_key(extension, TAG_KIND)] = password_tag(
                key, extension, value, text)
            entry.item = entry.item.model_copy(update={"web_password": value})
            entry.digest = sections.digest(entry.item)
    for entry in texts:
        if entry.item.web_password is not None \
                and not is_password_hash(entry.item.web_password):
            # unchanged: the stored hash, the stored digest (the same item as stored)
            entry.item = entry.item.model_copy(
                update={"web_password": stored[entry.item.extension]})
            entry.digest = sections.digest(entry.item)
    return tags


def _site_digest(site: Site) -> str:
    """The digest of the whole site as it will be stored: a re-import of the same site
    compares one value. With a WEB password text in it, a digest keyed with the tag key
    (`password_tags`): unkeyed, it would be a fast hash of the passwords."""
    serialized = site.__pydantic_serializer__.to_json(site)
    if any(u.web_password is not None and not is_password_hash(u.web_password)
           for u in site.users):
        return site_tag(tag_key(), serialized)
    return hashlib.blake2b(serialized, digest_size=16).hexdigest()


def _keep_tags(connection: Connection, tags: dict[str, str]) -> None:
    """Keep the WEB password tags in the vault's table, in the import's transaction."""
    if not tags:
        return
    keys = list(tags)
    for start in range(0, len(keys), sections.BATCH):
        connection.execute(t.secrets.delete().where(
            t.secrets.c.key.in_(keys[start:start + sections.BATCH])))
    connection.execute(insert(t.secrets), [{"key": k, "value": v} for k, v in tags.items()])


def export_site(access: Access, *, checked: bool = True) -> Site:
    """The stored site, exactly as imported (WEB passwords as their hashes). `checked`:
    False skips the rules across sections (for a command that checks whole the site it
    writes next: see `Site._cross_checks`)."""
    with access.reading("exporting the site") as connection:
        rows = {section: sections.read_rows(connection, section) for section in t.SECTIONS}
    if not rows[t.SYSTEM]:
        raise StoreError(f"the store {access.where} holds no site yet: import one first")
    return access.valid(Site, sections.site_data(rows),
                        None if checked else {STORED_UNCHECKED: True})


@dataclass(frozen=True)
class Comparison:
    """Each section's differences, and the WEB password tags to keep (vault key -> tag)."""

    syncs: list[Sync]
    tags: dict[str, str]


def _syncs(connection: Connection, site: Site) -> Comparison:
    """Each section's stored rows compared with the rows of `site`."""
    new_entries = sections.entries(site)
    tags = _hash_web_passwords(connection, new_entries[t.USERS])
    return Comparison([sections.compare(section, sections.stored_rows(connection, section),
                                        new_entries[section],
                                        follows_owner=section in FOLLOW_OWNER)
                       for section in t.SECTIONS], tags)


#: Sections of plain values whose every writer changes their owner's digest with them
#: (`preference_edits` drops the user's), so that an owner stored unchanged means its
#: rows are too: compared only for the owners that changed.
FOLLOW_OWNER = frozenset({t.PREFERENCES})


def _write_rows(connection: Connection, site: Site,
                compared: Comparison | None = None) -> tuple[Changes, bool]:
    """Write the rows of `site` that differ from the stored ones (`compared`: compared
    already, against the rows the store still holds): what changed in users, and
    whether anything was written."""
    if compared is None:
        compared = _syncs(connection, site)
    syncs = compared.syncs
    sections.write_changes(connection, syncs, sections.insert_rows)
    _keep_tags(connection, compared.tags)
    users = syncs[t.SECTIONS.index(t.USERS)].changes
    gone = [user_secret_key(extension, kind)
            for (extension,) in users.removed for kind in USER_SECRET_KINDS]
    for start in range(0, len(gone), sections.BATCH):
        connection.execute(t.secrets.delete().where(
            t.secrets.c.key.in_(gone[start:start + sections.BATCH])))
    return users, any(sync.changes.any for sync in syncs)


def prepare_import(access: Access, site: Site) -> PreparedImport:
    """Read and compare what an import of `site` needs, in one read snapshot and without
    the write lock (see `PreparedImport`)."""
    whole = _site_digest(site)
    with access.reading("importing the site") as connection:
        revision, stored_digest = connection.execute(
            select(t.site_state.c.revision, t.site_state.c.digest)).one()
        syncs = None if whole == stored_digest \
            else _syncs(connection, site)
    return PreparedImport(site, whole, int(revision), stored_digest, syncs)


def import_site(access: Access, site: Site, source_text: str | None = None,
                sounds: SoundLibrary | None = None,
                prepared: PreparedImport | None = None) -> ImportReport:
    """Make the store hold `site`, in one transaction: all or nothing (see
    `Store.import_site`)."""
    sha256 = None if source_text is None \
        else hashlib.sha256(source_text.encode("utf-8")).hexdigest()
    if prepared is not None and prepared.site is not site:
        prepared = None
    whole = prepared.whole if prepared is not None else _site_digest(site)
    users = sections.Changes()
    now = datetime.now(UTC)
    state = t.site_state
    try:
        with access.writing("importing the site") as connection:
            # First a write: it takes the lock that serialises concurrent imports.
            connection.execute(update(state).where(state.c.id == 1)
                               .values(revision=state.c.revision))
            stored_revision, stored_digest = connection.execute(
                select(state.c.revision, state.c.digest)).one()
            if prepared is not None and (prepared.revision, prepared.stored_digest) \
                    != (stored_revision, stored_digest):
                prepared = None  # written meanwhile: compare again, under the lock
            wrote_sounds = sounds is not None and write_sounds(connection, sounds)
            if whole != stored_digest or wrote_sounds:
                syncs = prepared.syncs if prepared is not None else None
                users, wrote = _write_rows(connection, site, syncs)
                connection.execute(update(state).where(state.c.id == 1).values(
                    revision=state.c.revision + int(wrote or wrote_sounds), digest=whole))
            revision = int(connection.execute(select(state.c.revision)).scalar_one())
            report = ImportReport(
                users=len(site.users), groups=len(site.groups),
                procedures=len(site.dialplan.procedures), added=len(users.added),
                changed=len(users.changed), removed=len(users.removed), imported_at=now,
                source_sha256=sha256, revision=revision)
            crash_point("import-before-commit")
            history.record(connection, report)
    except StoreError as exc:
        raise StoreError(f"import failed, the store is unchanged: {exc.message}") from exc
    except Exception as exc:
        raise StoreError(f"import failed, the store {access.where} is unchanged: "
                         f"{type(exc).__name__}: {exc}") from exc
    return report
