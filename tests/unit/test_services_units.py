"""WMS services without Asterisk: feature codes (parse, change, what the caller hears), the
dialplan they render, and the missed-call mail queue."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support.live_site import example_site

from wildix_ast.asterisk.call_user_contexts import mobility_leg
from wildix_ast.asterisk.render import render_site
from wildix_ast.asterisk.service_contexts import feature_code_extensions
from wildix_ast.calls.call_user import IncomingCall, decide
from wildix_ast.calls.missed_calls import MailSpool, MissedCall
from wildix_ast.errors import SettingsError
from wildix_ast.model.feature_codes import (
    Action,
    InvalidCode,
    Service,
    ServiceRequest,
    ServiceState,
    announce,
    change,
    parse,
)
from wildix_ast.model.preferences import VOICEMAIL, Preferences
from wildix_ast.model.settings_file import parse_site
from wildix_ast.model.site import Site
from wildix_ast.services.agi.protocol import AgiRequest
from wildix_ast.services.agi.service_routes import feature_code, missed_call, mobility
from wildix_ast.store import Store, open_store
from wildix_ast.store.vault import MemoryVault, with_secrets


@pytest.mark.parametrize(("service", "option", "expected"), [
    (Service.DND, "", ServiceRequest(Service.DND, Action.STATUS)),
    (Service.DND, "*1", ServiceRequest(Service.DND, Action.ON)),
    (Service.DND, "*0", ServiceRequest(Service.DND, Action.OFF)),
    (Service.FORWARD_ALL, "*2*0612345678",
     ServiceRequest(Service.FORWARD_ALL, Action.SET, "0612345678")),
    (Service.FORWARD_ALL, "*2*+33612345678",
     ServiceRequest(Service.FORWARD_ALL, Action.SET, "+33612345678")),
    (Service.FORWARD_BUSY, "*2*VOICEMAIL",
     ServiceRequest(Service.FORWARD_BUSY, Action.SET, VOICEMAIL)),
])
def test_options_parse(service: Service, option: str, expected: ServiceRequest) -> None:
    assert parse(service, option) == expected


@pytest.mark.parametrize(("service", "option"), [
    (Service.DND, "*2*0612345678"),   # DND has no destination
    (Service.DND, "*2"),               # WMS "away": not modelled
    (Service.FORWARD_ALL, "*2*"),
    (Service.FORWARD_ALL, "*2*1"),      # too short a number
    (Service.FORWARD_ALL, "*2*06*12"),
    (Service.FORWARD_ALL, "*3"),
    (Service.FORWARD_ALL, "1"),
])
def test_anything_else_is_refused(service: Service, option: str) -> None:
    with pytest.raises(InvalidCode):
        parse(service, option)


def test_forward_on_needs_a_destination_and_off_keeps_none() -> None:
    off = ServiceState(False)
    with pytest.raises(InvalidCode):
        change(off, ServiceRequest(Service.FORWARD_ALL, Action.ON))
    on = change(off, ServiceRequest(Service.FORWARD_ALL, Action.SET, "103"))
    assert on == ServiceState(True, "103")
    assert change(on, ServiceRequest(Service.FORWARD_ALL, Action.STATUS)) == on
    assert change(on, ServiceRequest(Service.FORWARD_ALL, Action.OFF)).active is False
    assert change(off, ServiceRequest(Service.DND, Action.ON)) == ServiceState(True)


def test_announcements_use_asterisk_prompts_and_say_the_number() -> None:
    said = announce(Service.FORWARD_ALL, ServiceState(True, "+33612345678"))
    assert said.playback == "call-fwd-unconditional&activated&to-extension"
    assert said.digits == "33612345678"
    assert announce(Service.FORWARD_ALL, ServiceState(True, VOICEMAIL)).digits == ""
    assert announce(Service.DND, ServiceState(False)).playback == "do-not-disturb&de-activated"


def test_feature_codes_render_digit_patterns_only() -> None:
    found = feature_code_extensions(example_site())
    assert ("63", "forward_all", "") in found
    assert ("_63*2*X.", "forward_all", "${EXTEN:2}") in found
    assert ("63*2**97", "forward_all", "*2*VOICEMAIL") in found
    assert ("_60*X", "dnd", "${EXTEN:2}") in found
    # nothing but digits, '*', '+' and Asterisk's pattern letters reaches the dialplan
    assert all(set(e.lstrip("_")) <= set("0123456789*+X.") for e, _, _ in found)
    assert mobility_leg("102") == "&Local/102@wildix-mobility/n"


def _with_codes(site: Site, **codes: str) -> str:
    text = json.loads(site.model_dump_json(exclude_unset=True, exclude_none=True))
    text["dialplan"]["feature_codes"] = codes
    return json.dumps(text)


def test_feature_codes_are_unique_among_numbers() -> None:
    site = example_site()
    taken = site.users[0].extension
    with pytest.raises(SettingsError) as raised:
        parse_site(_with_codes(site, forward_all=taken), "site.yaml")
    assert any("dialplan.feature_codes.forward_all" in str(p) for p in raised.value.problems)
    with pytest.raises(SettingsError):
        parse_site(_with_codes(site, status="61"), "site.yaml")  # same as forward_busy


def _missed(uniqueid: str = "1764270000.42") -> MissedCall:
    return MissedCall(uniqueid=uniqueid, user_extension="102", user_name="Bob Martin",
                      user_email="bob@example.com", caller_number="+33612345678",
                      caller_name="Alice", call_type="external",
                      at=datetime(2026, 11, 27, 20, 5, 1, tzinfo=UTC))


def test_a_missed_call_queues_exactly_one_message(tmp_path: Path) -> None:
    spool = MailSpool(tmp_path / "spool")
    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append(spool.queue_missed_call(
        _missed()))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 7 + [True]
    (message,) = spool.pending()
    assert message.to == "bob@example.com"
    assert "Alice (+33612345678)" in message.subject
    assert "2026-11-27 20:05:01 UTC" in message.body
    assert message.call["user"] == "102" and message.call["call_type"] == "external"
    assert list((tmp_path / "spool" / "tmp").iterdir()) == []  # nothing half-written left
    assert spool.queue_missed_call(_missed("1764270000.43"))
    assert len(spool.pending()) == 2


def test_the_spool_refuses_names_that_are_not_ids(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        MailSpool(tmp_path).queue_missed_call(_missed("../../etc/passwd"))


# --- the FastAGI routes over a real store ---------------------------------------------------

@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(str(tmp_path / "store.sqlite3")) as opened:
        opened.import_site(example_site())
        yield opened


def _request(route: str, *args: str, uniqueid: str = "1764270000.7",
             callerid: str = "101") -> AgiRequest:
    return AgiRequest(headers={"agi_uniqueid": uniqueid, "agi_callerid": callerid,
                               "agi_calleridname": "Alice"}, route=route, args=args)


def test_feature_code_route_changes_the_store_in_one_transaction(store: Store) -> None:
    before = store.revision()
    said = feature_code(store, _request("feature-code", "102", "forward_all", "*2*0612345678"))
    assert said.variables["WILDIX_FC_RESULT"] == "ok"
    assert said.variables["WILDIX_FC_PLAYBACK"] == "call-fwd-unconditional&activated&to-extension"
    prefs = store.preferences_of("102")
    assert prefs is not None
    assert prefs.internal.forward_always == prefs.external.forward_always == "0612345678"
    assert store.revision() == before + 1
    status = feature_code(store, _request("feature-code", "102", "forward_all", ""))
    assert status.variables["WILDIX_FC_DIGITS"] == "0612345678"
    feature_code(store, _request("feature-code", "102", "forward_all", "*0"))
    assert store.preferences_of("102").internal.forward_always is None  # type: ignore[union-attr]
    feature_code(store, _request("feature-code", "102", "dnd", "*1"))
    assert store.preferences_of("102").dnd is True  # type: ignore[union-attr]


@pytest.mark.parametrize("args", [
    ("102", "forward_all", "*2*102"),       # to its own extension: the call would loop
    ("102", "forward_all", "*1"),           # on, but no destination was ever given
    ("102", "forward_all", "*2*12*3"),
    ("999", "dnd", "*1"),                   # no such user
    ("trunk-operateur", "dnd", "*1"),       # not a user's phone
    ("102", "reboot", "*1"),
])
def test_feature_code_route_refusals_change_nothing(store: Store,
                                                    args: tuple[str, ...]) -> None:
    before = store.revision()
    said = feature_code(store, _request("feature-code", *args))
    assert said.variables["WILDIX_FC_RESULT"] == "invalid"
    assert said.variables["WILDIX_FC_PLAYBACK"] == "beeperr&invalid"
    assert store.revision() == before


def test_mobility_route_follows_the_class_preferences(store: Store) -> None:
    assert mobility(store, _request("mobility", "101", "")).variables == {"WILDIX_MOBILE": ""}

    def on(p: Preferences) -> Preferences:
        return p.model_copy(update={"external": p.external.model_copy(update={
            "mobility": True, "mobility_delay": 5, "mobility_confirmation": True})})

    store.change_preferences("101", on)
    assert mobility(store, _request("mobility", "101", "")).variables == {"WILDIX_MOBILE": ""}
    leg = mobility(store, _request("mobility", "101", "external")).variables
    assert leg == {"WILDIX_MOBILE": "+33612345678", "WILDIX_MOBILITY_DELAY": "5",
                   "WILDIX_MOBILITY_CONFIRM": "1", "WILDIX_MOBILITY_GROUP": "direction",
                   "WILDIX_MOBILITY_DID": "+33140000101"}


def test_missed_call_route_queues_one_mail_when_asked(store: Store, tmp_path: Path) -> None:
    spool = MailSpool(tmp_path / "spool")
    ask = _request("missed-call", "102", "")
    assert missed_call(store, spool, ask).variables == {"WILDIX_MISSED_QUEUED": "0"}
    store.change_preferences("102", lambda p: p.model_copy(update={
        "internal": p.internal.model_copy(update={"missed_call_email": True})}))
    assert missed_call(store, spool, ask).variables == {"WILDIX_MISSED_QUEUED": "1"}
    assert missed_call(store, spool, ask).variables == {"WILDIX_MISSED_QUEUED": "0"}
    (message,) = spool.pending()
    assert message.to == "bruno.lefevre@acme.fr" and message.call["caller_number"] == "101"


def test_shared_voicemail_shows_on_the_phone_and_opens_without_pin() -> None:
    site = example_site()
    bruno = site.users[1]
    shared = bruno.model_copy(update={"preferences": bruno.preferences.model_copy(
        update={"shared_voicemail": "101"})})
    site = site.model_copy(update={"users": [site.users[0], shared, *site.users[2:]]})
    files = render_site(with_secrets(site, MemoryVault()), manager_secret="Mgr-s3cret.Value")
    assert "mailboxes = 102@default,101@default" in files["pjsip.conf"]
    assert "mailboxes = 101@default\n" in files["pjsip.conf"]
    dialplan = files["extensions.conf"]
    assert "exten => 102*101,1,NoOp()" in dialplan
    # the mailbox number is admitted first (digits only), like every open-ended extension
    assert ("exten => _*97*X.,1,Set(WILDIX_DIALLED=${EXTEN})\n"
            " same => n,Gosub(wildix-admit,code,1)\n same => n,Answer()\n") in dialplan


def test_call_user_decision_carries_the_services() -> None:
    site = example_site()
    alice = site.users[0]  # has a mobile and an email
    prefs = alice.preferences.model_copy(update={
        "call_waiting_beep": False, "popup_url": "https://crm/x?n={CALLERNUM:1},{CALLTYPE}",
        "external": alice.preferences.external.model_copy(update={
            "mobility": True, "missed_call_email": True})})
    user = alice.model_copy(update={"preferences": prefs})
    external = decide(user, IncomingCall(call_type="external", caller="+33612345678"))
    assert external["WILDIX_MOBILITY"] == "1" and external["WILDIX_MISSED_MAIL"] == "1"
    assert external["WILDIX_CW_BEEP"] == ""
    assert external["WILDIX_POPUP_URL"] == "https://crm/x?n=33612345678%2Cexternal"
    internal = decide(user, IncomingCall(call_type="", caller="102"))
    assert internal["WILDIX_MOBILITY"] == internal["WILDIX_MISSED_MAIL"] == ""
    plain = decide(site.users[1], IncomingCall(call_type="", caller="101"))
    assert plain["WILDIX_CW_BEEP"] == "1" and plain["WILDIX_POPUP_URL"] == ""
