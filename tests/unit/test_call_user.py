"""The call-user decision without Asterisk: the pure function over a user's preferences, and
the FastAGI route (a real session through the server) that adapts it."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.examples import examples

from wildix_ast.calls import variables as v
from wildix_ast.calls.call_user import (
    CALL_USER_ROUTE,
    IncomingCall,
    decide,
)
from wildix_ast.model.preferences import Preferences
from wildix_ast.model.settings_file import parse_site
from wildix_ast.model.users import User
from wildix_ast.services.agi.probe import probe
from wildix_ast.services.agi.routes import StoreLookup, default_routes
from wildix_ast.services.agi.server import AgiServer
from wildix_ast.store import open_store

INTERNAL = IncomingCall("", "101")
EXTERNAL = IncomingCall("external", "+33612345678")


def bob(**preferences: Any) -> User:
    return User(name="Bob", extension="102", office_did="+33140000102", group="sales",
                dialplan="night", mobile="+33600000102", preferences=preferences)


def test_no_preferences_ring_as_before() -> None:
    decision = decide(bob(), INTERNAL)
    assert set(decision) == set(v.CALL_USER_DECISION)
    assert decision[v.ACTION] == "ring" and decision[v.CALL_WAITING] == "1"
    assert decision[v.FORWARD_BUSY] == decision[v.FORWARD_UNAVAILABLE] == decision[v.TIMEOUT] == ""
    # a forward would leave with Bob's rights and caller ID
    assert (decision[v.FORWARD_GROUP], decision[v.FORWARD_PROCEDURE], decision[v.FORWARD_DID]) == \
        ("sales", "night", "+33140000102")


def test_unknown_user_takes_the_direct_path() -> None:
    decision = decide(None, INTERNAL)
    assert decision[v.ACTION] == "direct" and set(decision) == set(v.CALL_USER_DECISION)


def test_each_class_has_its_functions() -> None:
    user = bob(external={"reject": True}, internal={
        "forward_busy": "VOICEMAIL", "forward_unavailable": "+33612000000",
        "call_timeout": 12, "call_waiting": False, "ringtone": "inside"})
    assert decide(user, EXTERNAL)[v.ACTION] == "reject"
    inside = decide(user, INTERNAL)
    assert inside[v.ACTION] == "ring"
    assert (inside[v.FORWARD_BUSY], inside[v.FORWARD_UNAVAILABLE], inside[v.TIMEOUT],
            inside[v.CALL_WAITING], inside[v.RINGTONE]) == \
        ("VOICEMAIL", "+33612000000", "12", "0", "inside")


def test_forward_always() -> None:
    decision = decide(bob(external={"forward_always": "VOICEMAIL"}), EXTERNAL)
    assert (decision[v.ACTION], decision[v.FORWARD]) == ("forward", "VOICEMAIL")
    assert decide(bob(external={"forward_always": "VOICEMAIL"}), INTERNAL)[v.ACTION] == "ring"


@pytest.mark.parametrize(("preferences", "call", "action"), [
    # blacklisted: refused whatever the class, even if whitelisted elsewhere by prefix
    ({"blacklist": ["+33612345678"]}, EXTERNAL, "reject"),
    ({"blacklist": ["+3361*"]}, EXTERNAL, "reject"),
    ({"blacklist": ["101"]}, INTERNAL, "reject"),
    ({"blacklist": ["+3362*"]}, EXTERNAL, "ring"),
    # whitelisted: through reject-all and do-not-disturb, not through a forward-always
    ({"external": {"reject": True}, "whitelist": ["+33612345678"]}, EXTERNAL, "ring"),
    ({"external": {"reject": True}, "whitelist": ["+3361*"]}, EXTERNAL, "ring"),
    ({"external": {"reject": True}, "whitelist": ["+33699999999"]}, EXTERNAL, "reject"),
    ({"dnd": True}, INTERNAL, "busy"),
    ({"dnd": True, "whitelist": ["101"]}, INTERNAL, "ring"),
    ({"external": {"forward_always": "103"}, "whitelist": ["+33612345678"]}, EXTERNAL,
     "forward"),
    # reject before do-not-disturb before forward-always
    ({"dnd": True, "external": {"reject": True, "forward_always": "103"}}, EXTERNAL, "reject"),
    ({"dnd": True, "external": {"forward_always": "103"}}, EXTERNAL, "busy"),
    # no caller number: no list matches
    ({"blacklist": ["+33*"]}, IncomingCall("external", ""), "ring"),
])
def test_lists_and_order(preferences: dict[str, Any], call: IncomingCall, action: str) -> None:
    assert decide(bob(**preferences), call)[v.ACTION] == action


# Characters the dialplan may receive from a decision (numbers, words, identifiers).
SAFE = re.compile(r"[A-Za-z0-9+_-]*")
forwards = st.none() | st.sampled_from(["VOICEMAIL", "103", "+33612345678"])
classes = st.fixed_dictionaries({}, optional={
    "reject": st.booleans(), "forward_busy": forwards, "forward_unavailable": forwards,
    "forward_always": forwards, "call_waiting": st.booleans(),
    "call_timeout": st.none() | st.integers(1, 600),
    "ringtone": st.none() | st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}", fullmatch=True)})


@settings(max_examples=examples(300))
@given(internal=classes, external=classes, dnd=st.booleans(),
       lists=st.lists(st.from_regex(r"\+?[0-9]{2,20}\*?", fullmatch=True), max_size=4),
       call_type=st.sampled_from(["", "external", "garbage,x"]),
       caller=st.text(max_size=30))
def test_every_decision_is_dialplan_safe(internal: dict[str, Any], external: dict[str, Any],
                                         dnd: bool, lists: list[str], call_type: str,
                                         caller: str) -> None:
    """Whatever the preferences and whatever the caller ID (it comes from the caller), a
    decision carries only fixed words, digits, numbers and identifiers."""
    user = bob(internal=internal, external=external, dnd=dnd, blacklist=lists[:2],
               whitelist=[x for x in lists[2:] if x not in lists[:2]])
    decision = decide(user, IncomingCall(call_type, caller))
    assert set(decision) == set(v.CALL_USER_DECISION)
    assert decision[v.ACTION] in ("ring", "reject", "busy", "forward")
    for value in decision.values():
        assert SAFE.fullmatch(value), decision


def test_route_answers_from_the_store(tmp_path: Any) -> None:
    store = open_store(str(tmp_path / "store.sqlite3"))
    store.import_site(parse_site(
        'users:\n  - {name: Bob, extension: "102", preferences: {external: {reject: true},'
        ' whitelist: ["+33612345678"]}}\n'))
    lookup = StoreLookup(str(tmp_path / "store.sqlite3"))

    async def ask(*args: str, caller: str = "101") -> dict[str, str]:
        server = AgiServer(default_routes(lookup))
        host, port = await server.start("127.0.0.1", 0)
        try:
            result = await probe(host, port, CALL_USER_ROUTE, args, timeout=5,
                                 headers={"agi_callerid": caller})
        finally:
            await server.close()
        return result.variables

    try:
        assert asyncio.run(ask("102", ""))[v.ACTION] == "ring"
        assert asyncio.run(ask("102", "external", caller="+33100000000"))[v.ACTION] == "reject"
        assert asyncio.run(ask("102", "external", caller="+33612345678"))[v.ACTION] == "ring"
        assert asyncio.run(ask("555", ""))[v.ACTION] == "direct"
        # a change is seen by the next call, without restarting anything
        store.change_preferences("102", lambda p: Preferences(dnd=True))
        answer = asyncio.run(ask("102", ""))
        assert answer[v.ACTION] == "busy" and answer["WILDIX_AGI_STATUS"] == "OK"
    finally:
        lookup.close()
        store.close()


def test_route_with_the_store_unreachable_answers_failed(tmp_path: Any) -> None:
    (tmp_path / "a-file").write_text("")
    lookup = StoreLookup(str(tmp_path / "a-file" / "store.sqlite3"))  # cannot be made

    async def ask() -> dict[str, str]:
        server = AgiServer(default_routes(lookup))
        host, port = await server.start("127.0.0.1", 0)
        try:
            return (await probe(host, port, CALL_USER_ROUTE, ("102", ""), timeout=5)).variables
        finally:
            await server.close()

    variables = asyncio.run(ask())
    assert variables["WILDIX_AGI_STATUS"] == "FAILED"
    assert v.ACTION not in variables


def test_lookup_keeps_users_until_the_store_changes(tmp_path: Any) -> None:
    path = str(tmp_path / "store.sqlite3")
    store = open_store(path)
    site = 'users:\n  - {name: Bob, extension: "102", preferences: {dnd: %s}}\n'
    store.import_site(parse_site(site % "false"))
    lookup = StoreLookup(path)
    try:
        first = lookup("102")
        assert first is not None and not first.preferences.dnd
        assert lookup("102") is first  # kept: same revision
        store.import_site(parse_site(site % "true"))  # an import changes the revision
        second = lookup("102")
        assert second is not None and second.preferences.dnd
        store.change_preferences("102", lambda p: Preferences())
        third = lookup("102")
        assert third is not None and not third.preferences.dnd
        assert lookup("555") is None
    finally:
        lookup.close()
        store.close()
