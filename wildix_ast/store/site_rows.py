"""The whole site in and out of the store: import (only the rows that differ, in one
transaction), export (exactly what was imported), and what an import compares ahead."""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from wildix_ast.errors import StoreError
from wildix_ast.model.passwords import hash_password, is_password_hash, password_matches
from wildix_ast.model.site import Site
from wildix_ast.sounds.audio import SoundLibrary
from wildix_ast.store import history, sections
from wildix_ast.store import tables as t
from wildix_ast.store.access import Access
from wildix_ast.store.history import ImportReport
from wildix_ast.store.sections import Changes, Entry, Sync
from wildix_ast.store.stored_sounds import write_sounds
from wildix_ast.store.vault import user_secret_key
from wildix_ast.testing.crash_points import crash_point

# The per-user secrets of wildix_ast.store.vault, deleted with their user ("web": 0001).
USER_SECRET_KINDS = ("sip", "web", "voicemail_pin")


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


def _hash_web_passwords(connection: Connection, entries: list[Entry]) -> None:
    """Make every user entry that carries a WEB password text carry its argon2id hash: the
    stored hash when the text is the same (so an unchanged user stays unchanged), a new one
    otherwise. Only these users' stored hashes are read."""
    users = t.users
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


LIST_DOCUMENTS = ("trunks", "trunk_groups", "sounds", "time_frames", "call_groups", "ivrs")
"""Top-level list sections of the site kept whole as one JSON document each."""


def _documents(site: Site) -> dict[str, str]:
    """The sections without tables yet, as JSON documents (see tables.documents)."""
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
    return None if any(u.web_password is not None and not is_password_hash(u.web_password)
                       for u in site.users) else sections.digest(site)


def _read_documents(connection: Connection) -> dict[str, str]:
    return {str(name): str(body) for name, body in connection.execute(
        select(t.documents.c.name, t.documents.c.body))}


def _write_documents(connection: Connection, documents: dict[str, str]) -> bool:
    """Write the documents that differ; whether any did."""
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


def export_site(access: Access) -> Site:
    """The stored site, exactly as imported (WEB passwords as their hashes)."""
    with access.reading("exporting the site") as connection:
        rows = {section: sections.read_rows(connection, section) for section in t.SECTIONS}
        documents = _read_documents(connection)
    if not rows[t.SYSTEM]:
        raise StoreError(f"the store {access.where} holds no site yet: import one first")
    return access.valid(Site, _with_documents(sections.site_data(rows), documents))


def _syncs(connection: Connection, site: Site) -> list[Sync]:
    """Each section's stored rows compared with the rows of `site`."""
    new_entries = sections.entries(site)
    _hash_web_passwords(connection, new_entries[t.USERS])
    return [sections.compare(section, sections.stored_rows(connection, section),
                             new_entries[section]) for section in t.SECTIONS]


def _write_rows(connection: Connection, site: Site,
                syncs: list[Sync] | None = None) -> tuple[Changes, bool]:
    """Write the rows of `site` that differ from the stored ones (`syncs`: compared
    already, against the rows the store still holds): what changed in users, and
    whether anything was written."""
    if syncs is None:
        syncs = _syncs(connection, site)
    sections.write_changes(connection, syncs, sections.insert_rows)
    wrote_documents = _write_documents(connection, _documents(site))
    users = syncs[t.SECTIONS.index(t.USERS)].changes
    gone = [user_secret_key(extension, kind)
            for (extension,) in users.removed for kind in USER_SECRET_KINDS]
    for start in range(0, len(gone), sections.BATCH):
        connection.execute(t.secrets.delete().where(
            t.secrets.c.key.in_(gone[start:start + sections.BATCH])))
    return users, wrote_documents or any(sync.changes.any for sync in syncs)


def prepare_import(access: Access, site: Site) -> PreparedImport:
    """Read and compare what an import of `site` needs, in one read snapshot and without
    the write lock (see `PreparedImport`)."""
    whole = _site_digest(site)
    with access.reading("importing the site") as connection:
        revision, stored_digest = connection.execute(
            select(t.site_state.c.revision, t.site_state.c.digest)).one()
        syncs = None if whole is not None and whole == stored_digest \
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
            if whole is None or whole != stored_digest or wrote_sounds:
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
