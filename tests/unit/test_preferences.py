"""User preferences: the model (errors naming the field, nothing that can reach the dialplan
but numbers, fixed words and identifiers) and the store (rows per user, look-up, one
user's change in a transaction, import sets them, export shows them)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError
from support.examples import examples

from wildix_ast.errors import SettingsError, StoreError, UnknownUserError
from wildix_ast.model import fields
from wildix_ast.model.preferences import (
    CallerPattern,
    CallTypePreferences,
    ForwardTarget,
    Hotline,
    Preferences,
    Ringtone,
    caller_matches,
)
from wildix_ast.model.settings_file import dump_site, parse_site
from wildix_ast.model.site import Site
from wildix_ast.model.users import User
from wildix_ast.store import Store, open_store

SITE = """\
users:
  - name: Ann
    extension: "101"
    mobile: "+33600000101"
    preferences:
      external: {reject: true, forward_busy: VOICEMAIL, call_timeout: 15, ringtone: ext-1}
      internal: {forward_unavailable: "102", call_waiting: false}
      whitelist: ["+33612345678", "+3314*"]
      blacklist: ["+33899000000"]
      hotline: {number: "102", delay: 3}
      shared_voicemail: "102"
      popup_url: "https://crm.example/?n={CALLERNUM:1}&u={USERNUM}"
  - {name: Ben, extension: "102"}
"""

# What may reach the dialplan from a preference: no separator, bracket, quote or expression.
DIALPLAN_SAFE = re.compile(r"[A-Za-z0-9+*_-]*")


def user(**preferences: Any) -> User:
    return User(name="Ann", extension="101", mobile="+33600000101", preferences=preferences)


def problems(error: ValidationError) -> list[tuple[str, str]]:
    return [(".".join(str(p) for p in e["loc"]), fields.message(e)) for e in error.errors()]


# --- the model -------------------------------------------------------------------------------

def test_the_settings_file_sets_every_field() -> None:
    site = parse_site(SITE)
    ann = site.users[0].preferences
    assert ann.external.reject and ann.external.forward_busy == "VOICEMAIL"
    assert ann.external.call_timeout == 15 and ann.external.ringtone == "ext-1"
    assert ann.internal.forward_unavailable == "102" and not ann.internal.call_waiting
    assert not ann.internal.reject and ann.internal.call_waiting is False
    assert ann.hotline == Hotline(number="102", delay=3)
    assert ann.of_call_type("external") is ann.external and ann.of_call_type("") is ann.internal
    assert site.users[1].preferences == Preferences()
    # defaults are not written back
    assert "preferences" not in dump_site(Site(users=[site.users[1]]), include_secrets=False)


@pytest.mark.parametrize(("preferences", "where", "message"), [
    ({"external": {"forward_busy": "1,2"}}, "preferences.external.forward_busy",
     "not a valid forward destination"),
    ({"external": {"forward_busy": 102}}, "preferences.external.forward_busy",
     'write 102 in quotes'),
    ({"internal": {"call_timeout": 0}}, "preferences.internal.call_timeout",
     "greater than or equal to 1"),
    ({"internal": {"ringtone": "a;b"}}, "preferences.internal.ringtone",
     "not a valid ringtone name"),
    ({"internal": {"mobility_delay": 500}}, "preferences.internal.mobility_delay",
     "less than or equal to 120"),
    ({"external": {"rejects": True}}, "preferences.external.rejects", "unknown setting"),
    ({"blacklist": ["+33 6"]}, "preferences.blacklist.0", "not a valid caller number"),
    ({"hotline": {"number": "${EXTEN}"}}, "preferences.hotline.number",
     "not a valid number to dial"),
    ({"popup_url": "http://x/ y"}, "preferences.popup_url", "URL without spaces"),
])
def test_errors_name_the_field(preferences: dict[str, Any], where: str, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        user(**preferences)
    found = problems(caught.value)
    assert any(loc == where and message in msg for loc, msg in found), found


@pytest.mark.parametrize(("preferences", "message"), [
    ({"internal": {"forward_always": "101"}}, "internal.forward_always: 101 is this user's own"),
    ({"hotline": {"number": "101"}}, "hotline.number: 101 is this user's own"),
    ({"whitelist": ["+331"], "blacklist": ["+331"]}, "+331 in both the whitelist and the "),
    ({"shared_voicemail": "101"}, "a user's own mailbox"),
])
def test_rules_across_fields(preferences: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        user(**preferences)
    with pytest.raises(ValidationError, match=r"mobility: needs the user.s mobile"):
        User(name="Bob", extension="102", preferences={"external": {"mobility": True}})


_ADAPTERS: list[TypeAdapter[Any]] = [TypeAdapter(t) for t in (ForwardTarget, CallerPattern,
                                                             Ringtone)]


@settings(max_examples=examples(400))
@given(st.text(min_size=0, max_size=30) | st.from_regex(r"\+?[0-9]{2,20}[,;()$|&^\n ]?.*"))
def test_no_accepted_value_can_carry_dialplan(value: str) -> None:
    """Any text a person can write: what a field accepts is made of safe characters only."""
    for adapter in _ADAPTERS:
        try:
            accepted = adapter.validate_python(value)
        except ValidationError:
            continue
        assert DIALPLAN_SAFE.fullmatch(accepted), (adapter, accepted)


def test_caller_lists_match_exactly_or_by_prefix() -> None:
    assert caller_matches("+33612345678", "+33612345678")
    assert not caller_matches("+3361234567", "+33612345678")
    assert caller_matches("+3361*", "+33612345678")
    assert not caller_matches("+3362*", "+33612345678")


# --- the store -------------------------------------------------------------------------------

@pytest.fixture
def store(tmp_path: Path) -> Store:
    opened = open_store(str(tmp_path / "store.sqlite3"))
    opened.import_site(parse_site(SITE))
    return opened


def test_import_sets_and_export_shows(store: Store) -> None:
    site = parse_site(SITE)
    assert store.preferences_of("101") == site.users[0].preferences
    assert store.preferences_of("102") == Preferences()
    assert store.preferences_of("999") is None
    assert store.export_site() == site
    text = dump_site(store.export_site(), include_secrets=False)
    assert "forward_busy: VOICEMAIL" in text and "+3314*" in text, text


def test_a_change_is_kept_and_counted(store: Store) -> None:
    before = store.revision()
    changed = store.change_preferences(
        "102", lambda p: p.model_copy(update={"dnd": True}))
    assert changed.dnd and store.preferences_of("102") == changed
    assert store.revision() == before + 1
    # the same value again writes nothing
    store.change_preferences("102", lambda p: p)
    assert store.revision() == before + 1
    # an import of the settings file puts the file's preferences back, even the same file
    store.import_site(parse_site(SITE))
    assert store.preferences_of("102") == Preferences()


def test_a_refused_change_leaves_them(store: Store) -> None:
    before, revision = store.preferences_of("101"), store.revision()
    with pytest.raises(SettingsError, match="nothing was changed") as caught:
        store.change_preferences("101", lambda p: p.model_copy(update={
            "internal": CallTypePreferences(forward_always="101")}))
    assert caught.value.exit_code == 2
    (problem,) = caught.value.problems
    assert problem.location == "internal.forward_always"
    assert problem.message.startswith("101 is this user's own extension")
    with pytest.raises(StoreError, match="they are unchanged: RuntimeError: x"):
        store.change_preferences("101", lambda p: (_ for _ in ()).throw(RuntimeError("x")))
    with pytest.raises(UnknownUserError, match="no user has extension 555"):
        store.change_preferences("555", lambda p: p)
    assert store.preferences_of("101") == before and store.revision() == revision


def test_concurrent_changes_all_apply(tmp_path: Path) -> None:
    """Eight writers add one blacklist entry each to the same user at once: none is lost."""
    path = str(tmp_path / "store.sqlite3")
    open_store(path).import_site(parse_site(SITE))
    errors: list[BaseException] = []

    def add(number: str) -> None:
        try:
            with open_store(path) as mine:
                mine.change_preferences("102", lambda p: p.model_copy(
                    update={"blacklist": [*p.blacklist, number]}))
        except BaseException as exc:
            errors.append(exc)

    numbers = [f"+3399900000{i}" for i in range(8)]
    threads = [threading.Thread(target=add, args=(n,)) for n in numbers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    found = open_store(path).preferences_of("102")
    assert found is not None and sorted(found.blacklist) == numbers


def test_killed_mid_change_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    open_store(str(path)).import_site(parse_site(SITE))
    code = ("from wildix_ast.store import open_store\n"
            f"open_store({str(path)!r}).change_preferences('102', "
            "lambda p: p.model_copy(update={'dnd': True}))\n")
    env = {**os.environ, "WILDIX_AST_CRASH_AT": "preferences-before-commit"}
    done = subprocess.run([sys.executable, "-c", code], env=env, check=False)
    assert done.returncode == -9
    found = open_store(str(path)).preferences_of("102")
    assert found == Preferences()


def test_users_gone_take_their_preferences(store: Store) -> None:
    site = parse_site(SITE)
    ben = site.users[1]
    store.import_site(Site(users=[ben.model_copy(update={
        "preferences": Preferences(dnd=True)})]))
    assert store.preferences_of("101") is None
    found = store.preferences_of("102")
    assert found is not None and found.dnd
