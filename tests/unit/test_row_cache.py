"""The realtime row cache (issue 22, `asterisk/row_cache.py`): a one-user change derives
that user's rows only; a change other users depend on (a setting, a group, the shared
mailbox's existence) derives them again; whatever the cache holds, the rows are those of a
render without it; a cache file altered, cut short or keyed otherwise is not trusted; it
keeps no unkeyed digest of a user's entry (its WEB password text)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from wildix_ast.apply.pipeline import render_to_folder
from wildix_ast.asterisk import render
from wildix_ast.asterisk.base import RenderInput
from wildix_ast.asterisk.row_cache import FOLDER
from wildix_ast.model.common import Srtp
from wildix_ast.model.settings_file import load_site
from wildix_ast.model.site import Site
from wildix_ast.model.system import RealtimeMode
from wildix_ast.model.users import User
from wildix_ast.store.vault import MemoryVault, with_secrets

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "site.yaml"
ROWS = "wildix-realtime.conf"


def realtime(site: Site) -> Site:
    system = site.system
    return site.model_copy(update={"system": system.model_copy(update={
        "realtime": system.realtime.model_copy(update={"mode": RealtimeMode.REALTIME})})})


class Derived:
    """The users whose rows the render derived (not taken from the cache)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.users: list[list[str]] = []
        real = render._derive_rows

        def spy(env: object, given: object, users: list[User]) -> object:
            self.users.append([u.extension for u in users])
            return real(env, given, users)  # type: ignore[arg-type]

        monkeypatch.setattr(render, "_derive_rows", spy)

    def last(self) -> list[str]:
        return self.users[-1] if self.users else []


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("WILDIX_AST_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / FOLDER


def rows(site: Site, vault: MemoryVault, folder: Path) -> str:
    render_to_folder(site, vault, folder)
    return (folder / ROWS).read_text(encoding="utf-8")


def uncached(site: Site, vault: MemoryVault, folder: Path,
             monkeypatch: pytest.MonkeyPatch) -> str:
    """The rows of a render with an empty cache of its own: every user derived."""
    with monkeypatch.context() as patch:
        patch.setenv("WILDIX_AST_CACHE", str(folder / "empty-cache"))
        return rows(site, vault, folder / "out")


def with_user(site: Site, extension: str, **changes: object) -> Site:
    return site.model_copy(update={"users": [
        u.model_copy(update=changes) if u.extension == extension else u for u in site.users]})


def test_a_one_user_change_derives_that_user_only(
        tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site, vault = realtime(load_site(EXAMPLE)), MemoryVault()
    derived = Derived(monkeypatch)
    first = rows(site, vault, tmp_path / "1")
    phones = [u.extension for u in site.users]
    assert derived.last() == phones and len(phones) > 2
    assert rows(site, vault, tmp_path / "2") == first
    assert len(derived.users) == 1  # all from the cache
    renamed = with_user(site, phones[1], name="Renamed Person",
                        sip_password="Another-Pass-987!")
    second = rows(renamed, vault, tmp_path / "3")
    assert derived.last() == [phones[1]]
    assert second != first and "Renamed Person" in second and "Another-Pass-987!" in second
    assert second == uncached(renamed, vault, tmp_path / "u", monkeypatch)


def test_what_other_users_depend_on_derives_them_again(
        tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site, vault = realtime(load_site(EXAMPLE)), MemoryVault()
    derived = Derived(monkeypatch)
    rows(site, vault, tmp_path / "0")
    everyone = [u.extension for u in site.users]

    # a system setting (the site's language, which users without their own speak)
    region = site.system.language_region
    other = "en" if region.language != "en" else "fr"
    spoken = site.model_copy(update={"system": site.system.model_copy(update={
        "language_region": region.model_copy(update={"language": other})})})
    got = rows(spoken, vault, tmp_path / "1")
    assert derived.last() == everyone
    assert got == uncached(spoken, vault, tmp_path / "u1", monkeypatch)

    # a group: SRTP for one group's phones on a TLS site
    sip = site.system.sip_rtp.model_copy(update={
        "tls_certificate": "/etc/ssl/pbx.pem", "tls_private_key": "/etc/ssl/pbx.key",
        "external_address": "192.0.2.10"})
    tls = site.model_copy(update={"system": site.system.model_copy(update={"sip_rtp": sip})})
    rows(tls, vault, tmp_path / "2")
    group = site.users[0].group
    groups = [g.model_copy(update={"srtp": Srtp.OPTIONAL}) if g.name == group else g
              for g in tls.groups]
    assert any(g.name == group for g in groups)
    secured = tls.model_copy(update={"groups": groups})
    got = rows(secured, vault, tmp_path / "3")
    assert derived.last() == everyone
    assert got == uncached(secured, vault, tmp_path / "u3", monkeypatch)
    assert "media_encryption_optimistic" in got

    # a template override of pjsip.conf: a context change as well
    overrides = tmp_path / "templates"
    overrides.mkdir()
    builtin = render.builtin_templates_dir() / "pjsip.conf.j2"
    (overrides / "pjsip.conf.j2").write_text(
        builtin.read_text(encoding="utf-8").replace("direct_media = no",
                                                    "direct_media = no\n; overridden"),
        encoding="utf-8")
    given = RenderInput(site=with_secrets(site, vault),
                               manager_secret="Manager-Secret-4-Test!x")
    plain = render.render_files(given)[ROWS]
    count = len(derived.users)
    assert render.render_files(given, overrides)[ROWS] == plain  # comments are no column
    assert len(derived.users) == count + 1 and derived.last() == everyone


def test_a_shared_mailbox_appearing_derives_its_sharers_again(
        tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site, vault = realtime(load_site(EXAMPLE)), MemoryVault()
    first, second = site.users[0], site.users[1]
    preferences = first.preferences.model_copy(update={"shared_voicemail": second.extension})
    sharing = with_user(site, first.extension, preferences=preferences)
    derived = Derived(monkeypatch)
    rows(sharing, vault, tmp_path / "1")
    # the shared mailbox's owner changes (its name only): the sharer is not derived again
    renamed = with_user(sharing, second.extension, name="Someone Else")
    got = rows(renamed, vault, tmp_path / "2")
    assert derived.last() == [second.extension]
    assert got == uncached(renamed, vault, tmp_path / "u2", monkeypatch)
    # the shared mailbox goes away (its owner removed): the sharer's phone changes too
    gone = renamed.model_copy(update={"users": [u for u in renamed.users
                                                if u.extension != second.extension]})
    got = rows(gone, vault, tmp_path / "3")
    assert derived.last() == [first.extension]
    assert got == uncached(gone, vault, tmp_path / "u3", monkeypatch)


def test_a_cache_file_not_whole_or_not_ours_is_not_trusted(
        tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site, vault = realtime(load_site(EXAMPLE)), MemoryVault()
    good = rows(site, vault, tmp_path / "0")
    (kept,) = list(cache.glob("*.bin"))
    assert kept.stat().st_mode & 0o777 == 0o600 and cache.stat().st_mode & 0o777 == 0o700
    whole = kept.read_bytes()
    derived = Derived(monkeypatch)
    # a user's password changed inside the file (same length), the file cut short (a kill
    # while writing a file not renamed atomically), emptied, or foreign
    target = with_secrets(site, vault).users[0].sip_password
    assert target is not None and target.encode() in whole
    forged = whole.replace(target.encode(), b"X" * len(target))
    for broken in (forged, whole[: len(whole) // 2], b"", b"wxrows1\n" + b"\0" * 40):
        kept.write_bytes(broken)
        assert rows(site, vault, tmp_path / f"b{len(broken)}") == good
        assert derived.last() == [u.extension for u in site.users]
    # another key (a store moved to another host): nothing trusted, rows still right
    kept.write_bytes(whole)
    monkeypatch.setenv("WILDIX_AST_PASSWORD_KEY", str(tmp_path / "other.key"))
    count = len(derived.users)
    assert rows(site, vault, tmp_path / "k") == good
    assert len(derived.users) == count + 1


def test_the_cache_keeps_no_unkeyed_digest_of_a_user(
        tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site, vault = realtime(load_site(EXAMPLE)), MemoryVault()
    text = "A-Web-Password-Text-42!"
    site = with_user(site, site.users[0].extension, web_password=text)
    rows(site, vault, tmp_path / "0")
    (kept,) = list(cache.glob("*.bin"))
    data = kept.read_bytes()
    user = site.users[0]
    assert text.encode() not in data
    plain = user.__pydantic_serializer__.to_json(user)
    for digest in (hashlib.sha256(plain).hexdigest(), hashlib.sha256(plain).digest(),
                   hashlib.sha256(text.encode()).hexdigest()):
        assert (digest.encode() if isinstance(digest, str) else digest) not in data


def test_every_render_input_besides_the_users_is_in_the_context() -> None:
    """An input of the render that the users' rows may read (a secret, the hot desks, a
    node pair's secret) changes the context, so no user's rows are taken from the cache."""
    import dataclasses

    site = realtime(load_site(EXAMPLE))
    given = RenderInput(site=site, manager_secret="m")
    env = render.environment()
    base = render._rows_context(env, given)
    assert render._rows_context(env, RenderInput(site=site, manager_secret="m")) == base
    for change in ({"manager_secret": "other"}, {"realtime_secret": "r"},
                   {"hot_desks": (("001122334455", "pw"),)},
                   {"node_pair_secrets": {("a", "b"): "s"}}):
        assert render._rows_context(env, dataclasses.replace(given, **change)) != base, change


def whole_render(site: Site, vault: MemoryVault, folder: Path) -> dict[str, bytes]:
    render_to_folder(site, vault, folder)
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def language(site: Site, value: str) -> Site:
    system = site.system
    return site.model_copy(update={"system": system.model_copy(update={
        "language_region": system.language_region.model_copy(update={"language": value})})})


CHANGES = ["add", "rename", "sip password", "remove", "setting"]


def reference_errors(site: Site) -> bool:
    try:
        Site.model_validate(site.model_dump())
    except ValueError:
        return True
    return False


def changed(site: Site, kind: str) -> Site:
    users = list(site.users)
    if kind == "add":
        new = User.model_validate({"extension": "4789", "name": "Added Person",
                                   "sip_password": "Added-Pass-4789!"})
        return site.model_copy(update={"users": [*users, new]})
    if kind == "rename":
        return with_user(site, users[1].extension, name="Renamed Person")
    if kind == "sip password":
        return with_user(site, users[1].extension, sip_password="Another-Pass-987!")
    if kind == "remove":
        for gone in reversed(users):  # a user with a phone that nothing else names
            left = site.model_copy(update={"users": [u for u in users if u is not gone]})
            if gone.type.has_phone and not reference_errors(left):
                return left
        raise AssertionError("no user can be removed alone")
    return language(site, "en")


@pytest.mark.parametrize("kind", CHANGES)
def test_a_warm_render_gives_every_file_of_a_cold_one_byte_for_byte(
        tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    """The rows file is joined from the users' kept blocks: after a one-user change of
    each kind (and a setting every user depends on), every file equals a render with an
    empty cache, byte for byte."""
    site, vault = realtime(load_site(EXAMPLE)), MemoryVault()
    whole_render(site, vault, tmp_path / "before")
    after = Site.model_validate(changed(site, kind).model_dump())  # checked like a file
    laid_out: list[int] = []  # users whose blocks a render lays out
    real = render._user_blocks

    def spy(env: object, given: object, head: str, users: list[object]) -> object:
        laid_out.append(len(users))
        return real(env, given, head, users)  # type: ignore[arg-type]

    monkeypatch.setattr(render, "_user_blocks", spy)
    warm = whole_render(after, vault, tmp_path / "warm")
    one = {"add": [1], "rename": [1], "sip password": [1], "remove": []}
    if kind in one:
        assert laid_out == one[kind]
    else:  # every user with rows laid out again, at once
        assert len(laid_out) == 1 and laid_out[0] > 1
    with monkeypatch.context() as patch:
        patch.setenv("WILDIX_AST_CACHE", str(tmp_path / "empty-cache"))
        cold = whole_render(after, vault, tmp_path / "cold")
    assert warm.keys() == cold.keys() and ROWS in warm
    assert {n for n in warm if warm[n] != cold[n]} == set()
    before = (tmp_path / "before" / ROWS).read_bytes()
    assert warm[ROWS] != before  # the change is in the rows (a warm file is not stale)


def test_an_override_of_the_rows_template_is_rendered_whole(
        tmp_path: Path, cache: Path) -> None:
    """Blocks are joined for the built-in template only: an override's layout is its own."""
    site, vault = realtime(load_site(EXAMPLE)), MemoryVault()
    whole_render(site, vault, tmp_path / "before")
    folder = tmp_path / "templates"
    folder.mkdir()
    builtin = render.builtin_templates_dir() / "wildix-realtime.conf.j2"
    (folder / "wildix-realtime.conf.j2").write_text(
        builtin.read_text(encoding="utf-8").replace("table = ", "table= "), encoding="utf-8")
    text = render.render_files(RenderInput(
        site=with_secrets(site, vault), manager_secret="Manager-Secret-4821!"), folder)[ROWS]
    assert "table= ps_endpoints" in text and "table = " not in text


def test_an_apply_writes_the_cache_once_it_is_over(
        tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside `deferred_saves` (an apply) the render writes no cache; the block's end
    writes it, even when the block ends by an error; outside, a render writes it at once."""
    from wildix_ast.asterisk.row_cache import deferred_saves

    site, vault = realtime(load_site(EXAMPLE)), MemoryVault()
    with pytest.raises(RuntimeError), deferred_saves():
        rows(site, vault, tmp_path / "1")
        assert not cache.exists() or not list(cache.glob("*.bin"))
        raise RuntimeError("the apply failed after its render")
    assert len(list(cache.glob("*.bin"))) == 1
    derived = Derived(monkeypatch)
    renamed = with_user(site, site.users[1].extension, name="Renamed Person")
    rows(renamed, vault, tmp_path / "2")  # outside: written at once
    assert derived.last() == [site.users[1].extension]
    rows(renamed, vault, tmp_path / "3")
    assert len(derived.users) == 1  # the second render found every user
