"""Writing a few users' rows (`store.user_writes`): the stored site after it is the one a
full import of the same site gives, row for row; a stale read writes nothing; the removed
users' secrets and preferences go with them."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from wildix_ast.model.settings_file import parse_site
from wildix_ast.model.user_merge import Incoming, merge_users
from wildix_ast.store import open_store
from wildix_ast.store import tables as t
from wildix_ast.store.user_writes import StoreChanged, write_users

SITE = """
groups: [{name: default}, {name: sales}]
users:
""" + "".join(f'  - {{name: U{i}, extension: "{200 + i}", email: u{i}@example.org}}\n'
              for i in range(20))


def _rows(db: str) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    with open_store(db) as store, store.engine.connect() as connection:
        users = connection.execute(select(t.users).order_by(t.users.c.extension)).all()
        prefs = connection.execute(select(t.user_preferences).order_by(
            t.user_preferences.c.extension)).all()
    return ([tuple(r) for r in users], [tuple(r) for r in prefs])


def _changed_site(db: str) -> tuple[object, set[str], int]:
    with open_store(db) as store:
        site = store.export_site()
        merged, changes = merge_users(
            site, [Incoming("a", {"name": "Renamed", "extension": "203",
                                  "email": "new3@example.org"}),
                   Incoming("b", {"name": "New", "extension": "250"})],
            remove=["201", "207"], fill_holes=True)
        touched = {u.extension for u in changes.added} | {"201", "207"} \
            | {a.extension for _, a in changes.changed}
        return merged, touched, store.revision()


def test_the_same_rows_as_a_full_import(tmp_path: Path) -> None:
    partial, full = str(tmp_path / "partial.sqlite3"), str(tmp_path / "full.sqlite3")
    for db in (partial, full):
        with open_store(db) as store:
            store.import_site(parse_site(SITE))
            store.put_secret("user:201:sip", "Sip#secret1234")
            store.change_preferences("207", lambda p: p.model_copy(update={"dnd": True}))
    merged, touched, revision = _changed_site(partial)
    with open_store(partial) as store:
        report = write_users(store.access, merged, touched, revision)  # type: ignore[arg-type]
        assert report is not None
        assert (report.added, report.changed, report.removed) == (1, 1, 2)
        assert store.revision() == revision + 1
        assert store.get_secret("user:201:sip") is None
        assert store.preferences_of("207") is None
        assert [u.extension for u in store.export_site().users] == \
            [u.extension for u in merged.users]  # type: ignore[attr-defined]
    merged_full, _, _ = _changed_site(full)
    with open_store(full) as store:
        store.import_site(merged_full)  # type: ignore[arg-type]
    assert _rows(partial) == _rows(full)
    with open_store(partial) as store:  # a full import of the same site finds nothing to do
        before = store.revision()
        assert store.import_site(store.export_site()).revision == before


def test_a_stale_read_writes_nothing(tmp_path: Path) -> None:
    db = str(tmp_path / "s.sqlite3")
    with open_store(db) as store:
        store.import_site(parse_site(SITE))
    merged, touched, revision = _changed_site(db)
    with open_store(db) as store:
        store.change_preferences("205", lambda p: p.model_copy(update={"dnd": True}))
        before = _rows(db)
        with pytest.raises(StoreChanged, match="changed while this command"):
            write_users(store.access, merged, touched, revision)  # type: ignore[arg-type]
        assert _rows(db) == before


def test_places_follow_the_site_even_for_users_not_named(tmp_path: Path) -> None:
    # the caller names only the removed user; the last user moved into its place is
    # written too (its position), so the order of the stored users stays the site's
    db = str(tmp_path / "s.sqlite3")
    with open_store(db) as store:
        store.import_site(parse_site(SITE))
        site = store.export_site()
        merged, _ = merge_users(site, [], remove=["202"], fill_holes=True)
        write_users(store.access, merged, {"202"}, store.revision())
        assert [u.extension for u in store.export_site().users] == \
            [u.extension for u in merged.users]


def test_no_site_writes_only_what_the_caller_adds(tmp_path: Path) -> None:
    # a sync that found nothing changed: its records, under the same lock and check
    from wildix_ast.store.directory import directory_view

    db = str(tmp_path / "s.sqlite3")
    with open_store(db) as store:
        store.import_site(parse_site(SITE + "directory: {enabled: true, servers: [ldap1], "
                                            "base_dn: 'dc=x', acl_group: sales}\n"))
        settings, groups, extensions = directory_view(store)
        assert settings.enabled and settings.servers == ["ldap1"]
        assert groups == {"default", "sales"} and extensions == {str(200 + i)
                                                                  for i in range(20)}
        revision, before = store.revision(), _rows(db)
        called: list[bool] = []
        assert write_users(store.access, None, [], revision,
                           also=lambda connection: called.append(True)) is None
        assert called == [True] and store.revision() == revision and _rows(db) == before
        store.change_preferences("205", lambda p: p.model_copy(update={"dnd": True}))
        with pytest.raises(StoreChanged):
            write_users(store.access, None, [], revision, also=lambda c: called.append(True))
        assert called == [True]
