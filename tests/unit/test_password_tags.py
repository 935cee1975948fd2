"""WEB password texts on import (store/password_tags.py): an unchanged text costs no argon2id
work, a changed one is hashed anew, and the store file alone holds nothing to test a guess
faster than argon2id (the tag key lives in its own owner-only file)."""

from __future__ import annotations

import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import argon2
import pytest
from support.store_contract import user

from wildix_ast.model.groups import Group
from wildix_ast.model.passwords import password_matches
from wildix_ast.model.site import Site
from wildix_ast.store import Store, open_store
from wildix_ast.store.password_tags import KEY_ENV, TAG_KIND, password_tag
from wildix_ast.store.vault import user_secret_key

USERS = 12


def text_of(i: int) -> str:
    return f"Web#{i:04d}pass!Q"


def text_site(names: dict[int, str] | None = None,
              texts: dict[int, str] | None = None) -> Site:
    names, texts = names or {}, texts or {}
    return Site(groups=[Group(name="default")], users=[
        user(str(1000 + i), names.get(i, f"User {i}"), login=f"user{i}",
             web_password=texts.get(i, text_of(i))) for i in range(USERS)])


class Argon2Calls:
    """Every argon2id hash and verification made in this process, counted."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.hashes = self.verifications = 0
        real_hash, real_verify = argon2.PasswordHasher.hash, argon2.PasswordHasher.verify

        def counted_hash(hasher: argon2.PasswordHasher, password: str | bytes,
                         **kwargs: object) -> str:
            self.hashes += 1
            return real_hash(hasher, password, **kwargs)  # type: ignore[arg-type]

        def counted_verify(hasher: argon2.PasswordHasher, hashed: str | bytes,
                           password: str | bytes) -> bool:
            self.verifications += 1
            return real_verify(hasher, hashed, password)

        monkeypatch.setattr(argon2.PasswordHasher, "hash", counted_hash)
        monkeypatch.setattr(argon2.PasswordHasher, "verify", counted_verify)

    def reset(self) -> None:
        self.hashes = self.verifications = 0


@pytest.fixture
def argon2_calls(monkeypatch: pytest.MonkeyPatch) -> Argon2Calls:
    return Argon2Calls(monkeypatch)


@pytest.fixture
def own_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A key file of this test's own, in a folder not made yet."""
    path = tmp_path / "keys" / "tag.key"
    monkeypatch.setenv(KEY_ENV, str(path))
    yield path


def web_hash(store: Store, extension: str) -> str:
    found = store.user_by_extension(extension)
    assert found is not None and found.web_password is not None
    return str(found.web_password)


def test_an_unchanged_text_costs_no_argon2(store: Store, argon2_calls: Argon2Calls) -> None:
    store.import_site(text_site())
    assert (argon2_calls.hashes, argon2_calls.verifications) == (USERS, 0)
    hashes = {i: web_hash(store, str(1000 + i)) for i in range(USERS)}
    argon2_calls.reset()
    # another user's name changed: the import compares row by row, every text is looked at
    report = store.import_site(text_site(names={3: "Renamed"}))
    assert report.changed == 1
    assert (argon2_calls.hashes, argon2_calls.verifications) == (0, 0)
    assert {i: web_hash(store, str(1000 + i)) for i in range(USERS)} == hashes
    # and the same site again: one keyed digest compared
    revision = store.revision()
    assert store.import_site(text_site(names={3: "Renamed"})).revision == revision
    assert (argon2_calls.hashes, argon2_calls.verifications) == (0, 0)


def test_a_changed_text_is_hashed_anew(store: Store, argon2_calls: Argon2Calls) -> None:
    store.import_site(text_site())
    before = web_hash(store, "1005")
    argon2_calls.reset()
    report = store.import_site(text_site(texts={5: "Other#5pass!Zq"}))
    assert report.changed == 1
    # its tag no longer matches: verified against the old hash (no), hashed anew
    assert (argon2_calls.hashes, argon2_calls.verifications) == (1, 1)
    after = web_hash(store, "1005")
    assert after != before and password_matches(after, "Other#5pass!Zq")
    assert not password_matches(after, text_of(5))
    argon2_calls.reset()
    store.import_site(text_site(names={0: "Renamed"}, texts={5: "Other#5pass!Zq"}))
    assert (argon2_calls.hashes, argon2_calls.verifications) == (0, 0)


def test_a_hash_replaced_in_the_store_is_not_trusted_by_its_old_tag(
        store: Store, argon2_calls: Argon2Calls) -> None:
    """The tag binds text and hash: a site giving the hash of another text, then the old
    text again, goes through argon2id (and gets a hash of that text)."""
    store.import_site(text_site())
    other = store.export_site()
    replaced = text_site(texts={2: "Third#2pass!Wq"})
    store.import_site(replaced)
    third = web_hash(store, "1002")
    hashed_form = other.model_copy(update={"users": [
        u.model_copy(update={"web_password": third}) if u.extension == "1002" else u
        for u in other.users]})
    store.import_site(hashed_form)  # 1002 holds the hash of "Third…", given as a hash
    argon2_calls.reset()
    store.import_site(text_site())  # 1002's first text again: its tag was for another hash
    assert argon2_calls.verifications >= 1 and argon2_calls.hashes == 1
    assert password_matches(web_hash(store, "1002"), text_of(2))


def test_a_new_key_verifies_each_text_once_and_keeps_the_hashes(
        db_path: Path, own_key: Path, argon2_calls: Argon2Calls) -> None:
    with open_store(str(db_path)) as store:
        store.import_site(text_site())
        hashes = {i: web_hash(store, str(1000 + i)) for i in range(USERS)}
    own_key.unlink()
    from wildix_ast.store import password_tags

    password_tags._key_at.cache_clear()
    argon2_calls.reset()
    with open_store(str(db_path)) as store:
        store.import_site(text_site(names={1: "Renamed"}))
        assert (argon2_calls.hashes, argon2_calls.verifications) == (0, USERS)
        assert {i: web_hash(store, str(1000 + i)) for i in range(USERS)} == hashes
        argon2_calls.reset()
        store.import_site(text_site(names={1: "Renamed again"}))
        assert (argon2_calls.hashes, argon2_calls.verifications) == (0, 0)


def test_the_store_file_alone_holds_no_tag_key(db_path: Path, own_key: Path) -> None:
    with open_store(str(db_path)) as store:
        store.import_site(text_site())
        kept = store.get_secret(user_secret_key("1000", TAG_KIND))
        hashed = web_hash(store, "1000")
    key = own_key.read_bytes()
    assert len(key) == 32
    assert stat.S_IMODE(own_key.stat().st_mode) == 0o600
    assert stat.S_IMODE(own_key.parent.stat().st_mode) == 0o700
    # the tag in the store is keyed: made from the key file, the hash and the text
    assert kept == password_tag(key, "1000", hashed, text_of(0))
    with sqlite3.connect(db_path) as raw:
        raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = b"".join(f.read_bytes() for f in db_path.parent.iterdir())
    assert key not in data and key.hex().encode() not in data
    assert text_of(0).encode() not in data
    assert own_key.parent != db_path.parent


def test_a_key_readable_by_others_is_refused(db_path: Path, own_key: Path) -> None:
    from wildix_ast.errors import StoreError
    from wildix_ast.store import password_tags

    own_key.parent.mkdir(mode=0o700)
    own_key.write_bytes(b"k" * 32)
    own_key.chmod(0o644)
    password_tags._key_at.cache_clear()
    with open_store(str(db_path)) as store, pytest.raises(StoreError, match="chmod 600"):
        store.import_site(text_site())
    password_tags._key_at.cache_clear()


def test_removing_a_user_removes_its_tag(store: Store) -> None:
    store.import_site(text_site())
    assert store.get_secret(user_secret_key("1011", TAG_KIND)) is not None
    site = text_site()
    store.import_site(site.model_copy(update={"users": site.users[:-1]}))
    assert store.get_secret(user_secret_key("1011", TAG_KIND)) is None


def test_the_site_tag_fits_the_stored_digest_column() -> None:
    """PostgreSQL and MariaDB refuse a value longer than `site_state.digest` (SQLite does
    not): the keyed site digest must fit, and differ in form from an unkeyed one."""
    from wildix_ast.store.columns import DIGEST
    from wildix_ast.store.password_tags import SITE_TAG_LENGTH, site_tag

    assert SITE_TAG_LENGTH == DIGEST
    tag = site_tag(b"k" * 32, b"users: []")
    assert len(tag) == DIGEST and tag.startswith("k")
    assert site_tag(b"k" * 32, b"users: []") == tag != site_tag(b"j" * 32, b"users: []")
