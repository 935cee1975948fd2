"""The shortcuts taken for speed decide exactly as the paths they shortcut."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError
from support.examples import examples

from wildix_ast import conf
from wildix_ast.cli import main as cli
from wildix_ast.model import fields
from wildix_ast.model.call_classes import COUNTRY_TABLES, NumberRule, first_match, matches
from wildix_ast.model.fields import TEXT_FORBIDDEN, FreeText
from wildix_ast.model.passwords import (
    _DEFAULT_WORDS,
    SPECIALS,
    _detailed_problems,
    generate_password,
    password_problems,
)

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "site.yaml"

# Characters that reach every branch of the checks: classes, forbidden ones, white space,
# controls, non-ASCII letters and digits, and the default words.
_CHARS = st.sampled_from([
    *"aZ9", *SPECIALS, *sorted(TEXT_FORBIDDEN), *" \t\n\x00\x7f\u2028éÉ٣ß",
    "wildix", "ADMIN", "Passw0rd"])


@settings(max_examples=examples(1000), deadline=None)
@given(st.lists(_CHARS, max_size=24).map("".join))
def test_password_shortcut_agrees_with_the_detailed_policy(candidate: str) -> None:
    assert password_problems(candidate) == _detailed_problems(candidate)


def test_password_shortcut_on_generated_and_default_passwords() -> None:
    for candidate in [generate_password() for _ in range(200)] + [
            f"{w.capitalize()}#2026x" for w in _DEFAULT_WORDS] + ["Sip#0000001xY"]:
        assert password_problems(candidate) == _detailed_problems(candidate)


_FREE_TEXT = TypeAdapter(FreeText)


def _free_text_outcome(value: str) -> str:
    try:
        return "ok:" + _FREE_TEXT.validate_python(value)
    except ValidationError as error:
        return "error:" + fields.message(error.errors()[0])


def _detailed_free_text(value: str) -> str:
    # what FreeText's one Rust pattern stands for, in Python's own terms
    from wildix_ast.model.fields import _CONTROL

    if _CONTROL.search(value):
        return "error:must not contain control characters or line breaks"
    bad = sorted({c for c in value if c in TEXT_FORBIDDEN})
    if bad:
        return f"error:must not contain {' '.join(repr(c) for c in bad)}"
    if value != value.strip():
        return "error:must not start or end with white space"
    return "ok:" + value


@settings(max_examples=examples(1000), deadline=None)
@given(st.lists(_CHARS, min_size=1, max_size=12).map("".join))
def test_free_text_pattern_agrees_with_the_detailed_checks(value: str) -> None:
    assert _free_text_outcome(value) == _detailed_free_text(value)


def test_free_text_pattern_agrees_on_every_character() -> None:
    # Rust's Unicode classes against Python's str.strip() and the forbidden set, for each
    # code point inside a name and at its end
    from wildix_ast.model.fields import _CONTROL

    chars = [chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000]
    inside = {c for c in chars if _CONTROL.match(c) or c in TEXT_FORBIDDEN}
    at_end = inside | {c for c in chars if not c.strip()}
    for form, expected in (("a{}a", inside), ("a{}", at_end)):
        values = [form.format(c) for c in chars]
        try:
            TypeAdapter(list[FreeText]).validate_python(values)
            refused = set()
        except ValidationError as error:
            refused = {chars[int(e["loc"][0])] for e in error.errors()}
        assert refused == expected, sorted(refused ^ expected)[:5]


def test_parsed_chunks_are_copies() -> None:
    text = "[t](!)\na = 1\n[s](t)\nb = 2\n"
    whole = conf.chunks(text)
    first = conf.parse_chunks([whole[1]], text)
    first[0].items.append(("c", "3"))
    first[0].line = 99
    again = conf.parse_chunks([whole[1]], text)
    assert again[0].items == [("a", "1"), ("b", "2")] and again[0].line == 3


def test_cli_mounts_heavy_groups_only_when_needed() -> None:
    probe = ("import sys; from wildix_ast.cli import main as cli; "
             "cli.mount_subcommands(sys.argv[1:]); "
             "print(sorted(m for m in sys.modules if m.startswith('wildix_ast.cli.')))")
    groups = {"wildix_ast.cli.lab", "wildix_ast.cli.runtime", "wildix_ast.cli.agi",
              "wildix_ast.cli.live", "wildix_ast.cli.users"}
    render = subprocess.run([sys.executable, "-c", probe, "render"], capture_output=True,
                            text=True, check=True).stdout
    assert "wildix_ast.cli.main" in render
    assert not [g for g in groups if repr(g) in render], render
    # help, groups and unknown words see every command
    for argv in ([], ["--help"], ["lab"], ["no-such-verb"]):
        mounted = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True,
                                 text=True, check=True).stdout
        assert all(repr(g) in mounted for g in groups), (argv, mounted)


def test_cli_help_lists_every_group() -> None:
    result = subprocess.run([sys.executable, "-m", "wildix_ast", "--help"],
                            capture_output=True, text=True, check=True,
                            env={**os.environ, "COLUMNS": "200"})
    for verb in ("render", "apply", "lab", "agi", "runtime", "password"):
        assert f" {verb} " in result.stdout
    assert cli.app.registered_commands


def _render(out: Path, cache: Path, db: Path) -> dict[str, bytes]:
    env = {**os.environ, "WILDIX_AST_CACHE": str(cache), "WILDIX_AST_DB": str(db)}
    subprocess.run([sys.executable, "-m", "wildix_ast", "render", str(EXAMPLE), "--out",
                    str(out)], env=env, capture_output=True, text=True, check=True)
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def test_template_bytecode_cache_gives_the_same_files(tmp_path: Path) -> None:
    cache, db = tmp_path / "cache", tmp_path / "store.sqlite3"
    cold = _render(tmp_path / "cold", cache, db)
    assert list((cache / "jinja").iterdir()), "compiled templates were not kept"
    warm = _render(tmp_path / "warm", cache, db)
    assert warm == cold


def test_template_bytecode_cache_unusable_is_only_slower(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x", encoding="utf-8")
    db = tmp_path / "store.sqlite3"
    assert _render(tmp_path / "a", blocker, db) == _render(tmp_path / "b", tmp_path / "c", db)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))


def test_generations_share_unchanged_files(tmp_path: Path) -> None:
    from wildix_ast.apply.state import TargetState

    state = TargetState(tmp_path, keep=2)
    first = {"a.conf": "[a]\nx = 1\n", "b.conf": "[b]\ny = 2\n"}
    second = {**first, "a.conf": "[a]\nx = 3\n"}
    third = {**second, "b.conf": "[b]\ny = 4\n", "c.conf": "[c]\n"}
    numbers = [state.record_generation(files, "apply", None).number
               for files in (first, second, third)]
    folder = state.dir / "generations"
    assert [g.number for g in state.generations()] == numbers[1:]  # the oldest is gone
    assert state.generation_files(numbers[1]) == second
    assert state.generation_files(numbers[2]) == third
    shared = [(folder / str(n) / "files" / "a.conf").stat() for n in numbers[1:]]
    assert shared[0].st_ino == shared[1].st_ino  # unchanged: one copy
    assert shared[0].st_mode & 0o777 == 0o600
    changed = [(folder / str(n) / "files" / "b.conf").stat().st_ino for n in numbers[1:]]
    assert changed[0] != changed[1]
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]


_POOL = st.sampled_from(["default", "sales", "users", "Sales", "support"])


@settings(max_examples=examples(300), deadline=None)
@given(groups=st.lists(_POOL, min_size=1, max_size=4),
       users=st.lists(st.tuples(st.sampled_from(["100", "101", "102"]), _POOL,
                                st.sampled_from([None, "a@x.org", "A@x.org", "b@x.org"]),
                                st.sampled_from([None, "+3314000", "101"])), max_size=5))
def test_reference_shortcut_agrees_with_the_walker(groups: list[str],
                                                   users: list[tuple[str, str, str | None,
                                                                     str | None]]) -> None:
    """Valid sites (no repeat) take a shortcut; it must find what the walker of raw input
    finds, in the same order and places."""
    from wildix_ast.model.groups import Group
    from wildix_ast.model.references import reference_errors
    from wildix_ast.model.site import Site
    from wildix_ast.model.users import User

    raw_users = [{"name": f"U {i}", "extension": ext, "group": group,
                  **({"email": email} if email else {}), **({"office_did": did} if did else {})}
                 for i, (ext, group, email, did) in enumerate(users)]
    raw = {"groups": [{"name": g} for g in groups], "users": raw_users}
    model = Site.model_construct(groups=[Group.model_validate(g) for g in raw["groups"]],
                                 users=[User.model_validate(u) for u in raw_users])

    def seen(found: object) -> list[tuple[object, str]]:
        return [(e["loc"], str(e["type"])) for e in found]  # type: ignore[attr-defined]

    assert seen(reference_errors(model, Site)) == seen(reference_errors(raw, Site))


_TEMPLATE_HEADER = re.compile(r"(?m)^\[[^\]\n]*\]\s*\([^)\n]*!")
"""How conf.py found template headers before (every position tried): the reference."""


@settings(max_examples=examples(1000), deadline=None)
@given(st.lists(st.sampled_from([*"[]()!\n a;=", "[t](!)\n", "\n[", "](", "(!"]),
                max_size=40).map("".join))
def test_template_headers_found_as_by_the_line_regex(text: str) -> None:
    assert list(conf._template_starts(text)) == [
        m.start() for m in _TEMPLATE_HEADER.finditer(text)]


@settings(max_examples=examples(1000), deadline=None)
@given(st.lists(st.sampled_from([*"[]()!\n a;=", "[t]\n", "\n[", "[s] ", "x[y]"]),
                max_size=40).map("".join))
def test_header_index_as_by_the_line_regex(text: str) -> None:
    index: dict[str, list[int]] = {}
    for found in re.finditer(r"(?m)^\[([^\]\n]+)\]", text):
        index.setdefault(found[1].strip(), []).append(found.start())
    conf._header_index.cache_clear()
    assert conf._header_index(text) == {k: tuple(v) for k, v in index.items()}


@settings(max_examples=examples(1000), deadline=None)
@given(st.lists(st.sampled_from([*"[]()!\n a;=\tts", "[t]\n", "\n[", "[s] ", "x[y]", "[ t ]",
                                 "[t-a]", "[t.a]", "\xa0"]), max_size=40).map("".join),
       st.sets(st.sampled_from(["t", "s", "y", "t-a", "t.a", "a", "x[y", " t", ""]),
               max_size=4))
@example("[t\n]\n[ t ]\nx [t]\n[t\xa0]\n[t-a]\n[\tt]", {"t", "t-a"})
def test_few_headers_found_as_through_the_index(text: str, names: set[str]) -> None:
    """`chunks_named` searches for a few names directly: the same sections as the index
    of every header gives."""
    index = conf._header_index(text)
    expected = [(name, start) for name in sorted(names & index.keys())
                for start in index[name]]
    assert [(c.name, c.line, c.text) for c in conf.chunks_named(text, names)] == [
        (name, text.count("\n", 0, start) + 1,
         text[start:(end + 1) if (end := text.find("\n[", start)) >= 0 else len(text)])
        for name, start in expected]


_SQLITE_URLS = ["sqlite:////tmp/x y/store.db", "sqlite:///rel.db", "sqlite:///a@b:c",
                "sqlite:///~/x", "sqlite+pysqlite:////t#x", "sqlite:///./a/../b.db"]


def test_sqlite_url_shortcut_reads_the_file_sqlalchemy_reads() -> None:
    from wildix_ast.store.access import sqlite_file as _sqlite_file
    from wildix_ast.store.database import parse_url, sqlite_path

    for url in _SQLITE_URLS:
        assert _sqlite_file(url) == sqlite_path(parse_url(url)), url
    # anything SQLAlchemy would read differently takes the full path
    for url in ("sqlite://", "sqlite:///:memory:", "sqlite:///a%20b", "sqlite:///a?mode=ro",
                "sqlite:///file:x?mode=ro&uri=true", "SQLITE:////tmp/x",
                "postgresql://u@h/db", "mysql+pymysql://u@h/db"):
        assert _sqlite_file(url) is None, url


def test_secrets_through_sqlite3_equal_those_through_sqlalchemy(tmp_path: Path) -> None:
    from wildix_ast.model.settings_file import load_site
    from wildix_ast.store import Store, open_store
    from wildix_ast.store.database import parse_url
    from wildix_ast.store.vault import manager_secret, voicemail_pins, with_secrets

    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    site = load_site(EXAMPLE)
    with open_store(url) as made:  # a new store: migrated through alembic
        made.import_site(site)
        generated = (with_secrets(site, made), voicemail_pins(site, made),
                     manager_secret(made, "wildix-ast"))
    fast = open_store(url)
    full = Store(fast.where, tmp_path / "store.sqlite3", parse_url(url))
    assert fast.access.url is None, "a store at head opened through SQLAlchemy"
    for vault in (fast, full):
        with vault:
            assert (with_secrets(site, vault), voicemail_pins(site, vault),
                    manager_secret(vault, "wildix-ast")) == generated
            keys = [f"user:{u.extension}:{k}" for u in site.users for k in ("sip", "x")]
            assert vault.get_secrets(keys) == fast.get_secrets(keys) != {}


def test_render_of_a_current_sqlite_url_store_needs_no_sqlalchemy(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    probe = ("import sys; from wildix_ast.cli.main import main\ntry: main()\nexcept SystemExit: "
             "pass\nprint(sorted(m for m in sys.modules if m.split('.')[0] in "
             "('sqlalchemy', 'alembic')))")
    args = [sys.executable, "-c", probe, "render", str(EXAMPLE), "--out", str(tmp_path / "o"),
            "--db", url]
    first = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    assert "'sqlalchemy'" in first  # a new store is made through alembic
    again = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    assert again.strip().endswith("[]"), again


def _matches_by_shape(pattern: str, number: str) -> bool:
    # call_classes.matches without its compiled regex: the shape's positions one by one
    from wildix_ast.model.call_classes import Shape

    shape = Shape.parse(pattern)
    if not number.isdigit() or len(number) < shape.min_length:
        return False
    if not shape.open_end and len(number) != len(shape.positions):
        return False
    return all(d in s for d, s in zip(number, shape.positions, strict=False))


_PATTERN_TOKENS = st.sampled_from(["0", "1", "3", "9", "X", "Z", "N", "[1-5]", "[67]",
                                   "[0-9]", "[5-1]", "[2]"])
_NUMBER_CHARS = st.sampled_from([*"0123456789", "+", "a", "٣", "²", " "])


@settings(max_examples=examples(2000), deadline=None)
@given(st.lists(_PATTERN_TOKENS, min_size=1, max_size=6).map("".join), st.booleans(),
       st.lists(_NUMBER_CHARS, max_size=9).map("".join))
def test_pattern_regex_agrees_with_the_shape(body: str, open_end: bool, number: str) -> None:
    from wildix_ast.model.call_classes import matches

    pattern = body + ("." if open_end else "")
    assert matches(pattern, number) == _matches_by_shape(pattern, number)


def test_time_zone_shortcut_only_accepts_listed_zones(tmp_path: Path) -> None:
    import zoneinfo

    from wildix_ast.model.system import _listed_zone

    listed = zoneinfo.available_timezones()
    assert listed and all(_listed_zone(zone) for zone in listed)
    for value in ("Europe/../Europe/Paris", "./Europe/Paris", "Europe//Paris", "/Europe/Paris",
                  "posixrules", "right/Europe/Paris", "posix/Europe/Paris", "Europe",
                  "Europe/Paris/", "zone.tab", "Mars/Olympus", "", "europe/paris"):
        assert _listed_zone(value) == (value in listed), value
    # a zone file under a linked folder, a file not in TZif: the walk lists neither
    root = tmp_path / "zoneinfo"
    (root / "Real").mkdir(parents=True)
    (root / "Real" / "Zone").write_bytes(b"TZif2...")
    (root / "Real" / "Text").write_bytes(b"# not a zone")
    (root / "Linked").symlink_to(root / "Real")
    (root / "Top").write_bytes(b"TZif2...")
    zoneinfo.reset_tzpath([str(root)])
    try:
        listed = zoneinfo.available_timezones()
        assert listed == {"Real/Zone", "Top"}
        for value in ("Real/Zone", "Real/Text", "Linked/Zone", "Top", "Real"):
            assert _listed_zone(value) == (value in listed), value
    finally:
        zoneinfo.reset_tzpath()


def test_default_preferences_need_none_of_the_user_checks() -> None:
    # users._preferences_fit skips the shared defaults: they must give it nothing to check
    from wildix_ast.model.preferences import NO_PREFERENCES, Preferences
    from wildix_ast.model.users import User

    assert Preferences() == NO_PREFERENCES
    assert NO_PREFERENCES.forward_targets() == []
    assert not NO_PREFERENCES.internal.mobility and not NO_PREFERENCES.external.mobility
    assert NO_PREFERENCES.shared_voicemail is None
    assert User(name="A", extension="101").preferences is NO_PREFERENCES


def test_secrets_read_in_one_pass_equal_those_read_by_keys(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    from wildix_ast.store import open_store
    from wildix_ast.store import secret_table as store_module

    with open_store(str(tmp_path / "store.sqlite3")) as store:
        store.put_secrets({f"user:{n}:{kind}": f"v{n}{kind}" for n in range(1500)
                           for kind in ("sip", "voicemail_pin")} | {"manager:x": "m"})
        wanted = [f"user:{n}:{kind}" for n in range(0, 3000, 2)
                  for kind in ("sip", "voicemail_pin", "web")] + ["manager:x"]
        assert len(wanted) > store_module.SECRET_SCAN
        scanned = store.get_secrets(wanted)
        monkeypatch.setattr(store_module, "SECRET_SCAN", len(wanted))
        assert scanned == store.get_secrets(wanted)
        assert len(scanned) == 1501 and scanned["user:2:sip"] == "v2sip"


def _first_by_loop(rules: tuple[NumberRule, ...], number: str) -> NumberRule | None:
    return next((r for r in rules if matches(r.pattern, number)), None)


@settings(max_examples=examples(2000), deadline=None)
@given(st.sampled_from(sorted(COUNTRY_TABLES)), st.booleans(),
       st.text(alphabet="0123456789+", min_size=0, max_size=14))
def test_one_regex_finds_the_first_rule_like_the_loop(country: str, short: bool,
                                                      number: str) -> None:
    table = COUNTRY_TABLES[country]
    rules = table.short_numbers if short else table.number_rules
    assert first_match(rules)(number) == _first_by_loop(rules, number)
