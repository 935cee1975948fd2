"""Outgoing calls through trunks, on a live Asterisk 22: SIPp phones call out, SIPp providers
(UAS on their own loopback addresses) answer, refuse with 503 or challenge a REGISTER.
Every test ends with no channel left on Asterisk."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.live_site import LiveSite, example_site, live_site, without_trunk_procedures
from support.sip_ua import Agent, sdp

from wildix_ast.lab.allocator import free_port
from wildix_ast.lab.sipp import CallResult, SipMessage, SippDriver, UasHandle
from wildix_ast.model.call_classes import CallClass, DialplanGeneral
from wildix_ast.model.groups import Group
from wildix_ast.model.site import Site
from wildix_ast.model.trunks import Trunk, TrunkGroup

pytestmark = pytest.mark.lab

PRIMARY, BACKUP, DEAD, STRANGER = "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"
TINY = "127.0.0.6"  # a trunk of one call at a time that hides the caller
ACCOUNT, SECRET = "0140000000", "Provider-Secret-42"


class Providers:
    def __init__(self) -> None:
        self.primary = free_port(PRIMARY)
        self.backup = free_port(BACKUP)
        self.dead = free_port(DEAD)
        self.tiny = free_port(TINY)
        self.registrar = free_port("127.0.0.1")
        self.strict_registrar = free_port("127.0.0.1")


def routing_site(p: Providers) -> Site:
    base = without_trunk_procedures(example_site())
    trunks = [
        Trunk(name="primary", auth="ip", host=PRIMARY, port=p.primary),
        Trunk(name="backup", auth="ip", host=BACKUP, port=p.backup, caller_id="main_number",
              main_number="+33140000000", number_format="national"),
        Trunk(name="dead", auth="ip", host=DEAD, port=p.dead),
        Trunk(name="tiny", auth="ip", host=TINY, port=p.tiny, max_calls=1,
              caller_id="anonymous"),
        Trunk(name="account", auth="registration", host="127.0.0.1", port=p.registrar,
              username=ACCOUNT, secret=SECRET),
        Trunk(name="mistyped", auth="registration", host="127.0.0.1",
              port=p.strict_registrar, username=ACCOUNT, secret="Not-The-Secret-1"),
    ]
    # providers come and go with each test: qualify would find them gone between tests
    trunks = [t.model_copy(update={"qualify_frequency": 0}) for t in trunks]
    groups = [Group(name="default"),
              Group(name="direction", allow=[CallClass.INTERNATIONAL, CallClass.PREMIUM]),
              Group(name="stagiaires", deny=[CallClass.MOBILE])]
    general = DialplanGeneral.model_validate({"trunk_group": "main", "classes": [
        {"call_class": "international", "max_calls": 1},
        {"call_class": "mobile", "trunk_group": "failover"},
        {"call_class": "premium", "trunk_group": "capped"},
        {"call_class": "emergency", "trunk_group": "capped"}]})
    dialplan = base.dialplan.model_copy(update={"general": general})
    # 103 dials abroad through a procedure of its own (9 + the international number) that
    # sets the class itself and dials a trunk: the class limit must hold there too.
    sortie = {"name": "sortie", "numbers": [{"number": "9.", "applications": [
        {"app": "set_call_class", "call_class": "international"},
        {"app": "correct_called_number", "remove": 1, "prepend": "+"},
        {"app": "dial_trunk", "trunk": "primary"},
        {"app": "hangup", "cause": 34}]}]}
    users = [*base.model_dump()["users"], {
        "type": "user", "name": "Zoé Martin", "extension": "103", "group": "direction",
        "dialplan": "sortie", "email": "zoe@acme.example"}]
    return Site.model_validate({
        **base.model_dump(exclude={"trunks", "trunk_groups", "groups", "dialplan", "users"}),
        "users": users,
        "groups": [g.model_dump() for g in groups],
        "dialplan": {**dialplan.model_dump(),
                     "procedures": [*dialplan.model_dump()["procedures"], sortie]},
        "trunks": [t.model_dump() for t in trunks],
        "trunk_groups": [TrunkGroup(name="main", trunks=["primary"]).model_dump(),
                         TrunkGroup(name="failover", trunks=["dead", "backup"]).model_dump(),
                         TrunkGroup(name="registered", trunks=["account"]).model_dump(),
                         TrunkGroup(name="capped", trunks=["tiny", "backup"]).model_dump()],
    })


@pytest.fixture(scope="module")
def providers() -> Providers:
    return Providers()


def start_registrar(port: int, work: Path) -> UasHandle:
    """A provider's registrar knowing the account ACCOUNT / SECRET, up before Asterisk
    starts and registers."""
    return SippDriver(0, work_dir=work).answer(ACCOUNT, behaviour="registrar", port=port,
                                               calls=1, timeout=120, keys={"secret": SECRET})


@pytest.fixture(scope="module")
def registrar(providers: Providers, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[UasHandle]:
    with start_registrar(providers.registrar, tmp_path_factory.mktemp("registrar")) as handle:
        yield handle


@pytest.fixture(scope="module")
def strict_registrar(providers: Providers, tmp_path_factory: pytest.TempPathFactory
                     ) -> Iterator[UasHandle]:
    """The provider of the trunk whose secret is mistyped."""
    with start_registrar(providers.strict_registrar,
                         tmp_path_factory.mktemp("strict-registrar")) as handle:
        yield handle


@pytest.fixture(scope="module")
def live(providers: Providers, registrar: UasHandle, strict_registrar: UasHandle,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveSite]:
    with live_site(tmp_path_factory.mktemp("routing"), "routing", routing_site(providers),
                   from_store=False) as site:
        yield site


@pytest.fixture
def clean(live: LiveSite) -> Iterator[LiveSite]:
    yield live
    assert live.wait_no_channels() == 0, "channels left on Asterisk after the test"


def provider(live: LiveSite, address: str, port: int, behaviour: str = "answer",
             calls: int = 1) -> UasHandle:
    driver = SippDriver(live.lab.ports.sip, local_ip=address, work_dir=live.work / "providers")
    return driver.answer("provider", behaviour=behaviour, port=port,  # type: ignore[arg-type]
                         calls=calls, timeout=60)


def invites(handle: UasHandle) -> list[SipMessage]:
    return [m for m in handle.messages() if m.request_method == "INVITE"]


def request_user(message: SipMessage) -> str:
    uri = message.start_line.split()[1]
    return uri.removeprefix("sip:").split("@")[0]


def from_user(message: SipMessage) -> str:
    value = message.header("From") or ""
    return value.split("sip:", 1)[1].split("@")[0]


def call(live: LiveSite, ext: str, number: str, **kwargs: object) -> CallResult:
    return live.sipp().call(ext, live.password(ext), number, **kwargs)  # type: ignore[arg-type]


def while_a_call_is_up(live: LiveSite, uas: UasHandle, ext: str, number: str,
                       then: str, **kwargs: object) -> tuple[CallResult, CallResult]:
    """(the first call, held 4 s, that `uas` receives; a second call placed meanwhile)."""
    first: dict[str, CallResult] = {}
    thread = threading.Thread(target=lambda: first.update(
        call=call(live, ext, number, hold_seconds=4)))
    thread.start()
    deadline = time.monotonic() + 10
    while not invites(uas) and time.monotonic() < deadline:
        time.sleep(0.1)
    second = call(live, ext, then, **kwargs)
    thread.join()
    return first["call"], second


def test_national_number_leaves_normalised_with_the_users_did(clean: LiveSite,
                                                              providers: Providers) -> None:
    with provider(clean, PRIMARY, providers.primary) as uas:
        result = call(clean, "102", "0140000000", hold_seconds=1)
        seen = uas.wait(timeout=15)
    assert result.connected, result.run.describe()
    (invite,) = invites(uas)
    assert request_user(invite) == "+33140000000"  # 0140000000 normalised to E.164
    assert from_user(invite) == "+33140000102"  # the caller's office DID
    assert seen.answered == 1 and seen.byes == 1


def test_other_national_forms_are_the_same_number(clean: LiveSite,
                                                  providers: Providers) -> None:
    with provider(clean, PRIMARY, providers.primary, calls=2) as uas:
        for form in ("0033140000000", "+33140000000"):
            assert call(clean, "102", form, hold_seconds=0.5).connected
        uas.wait(timeout=15)
    assert [request_user(m) for m in invites(uas)] == ["+33140000000"] * 2


def test_default_group_cannot_call_abroad_and_no_invite_reaches_the_trunk(
        clean: LiveSite, providers: Providers) -> None:
    with provider(clean, PRIMARY, providers.primary, calls=0) as uas:
        refused = call(clean, "102", "0044201234567", expect="reject")
        time.sleep(0.5)
        uas.stop()
    assert refused.final_status == 403, refused.run.describe()
    assert invites(uas) == []


def assert_second_call_over_the_limit(live: LiveSite, providers: Providers, ext: str,
                                      first_number: str, second_number: str) -> None:
    """With `ext`'s first international call (+44201234567) up at the primary provider, a
    second one is refused with 503 (the class limit of 1) and never reaches the trunk."""
    with provider(live, PRIMARY, providers.primary) as uas:
        first, second = while_a_call_is_up(live, uas, ext, first_number,
                                           then=second_number, expect="reject")
        uas.wait(timeout=15)
    assert first.connected, first.run.describe()
    assert [request_user(m) for m in invites(uas)] == ["+44201234567"]
    assert second.final_status == 503, second.run.describe()


def test_granted_group_calls_abroad_within_the_class_limit(clean: LiveSite,
                                                          providers: Providers) -> None:
    assert_second_call_over_the_limit(clean, providers, "101", "0044201234567",
                                      "+12125551234")


def test_a_procedures_trunk_dial_keeps_the_class_limit(clean: LiveSite,
                                                       providers: Providers) -> None:
    """The class a procedure sets is counted like outgoing routing counts it: with one
    international call up, a second one from the procedure never reaches the trunk."""
    assert_second_call_over_the_limit(clean, providers, "103", "944201234567",
                                      "912125551234")


def test_trunk_group_fails_over_from_503_to_the_next_trunk(clean: LiveSite,
                                                            providers: Providers) -> None:
    with provider(clean, DEAD, providers.dead, behaviour="unavailable") as dead, \
            provider(clean, BACKUP, providers.backup) as backup:
        result = call(clean, "101", "0612345678", hold_seconds=1)
        refused = dead.wait(timeout=15)
        answered = backup.wait(timeout=15)
    assert result.connected, result.run.describe()
    assert any(m.status == 503 for m in refused.run.responses("INVITE", "sent"))
    (invite,) = invites(backup)
    # the backup trunk wants national numbers and shows the main number
    assert request_user(invite) == "0612345678"
    assert from_user(invite) == "0140000000"
    assert answered.answered == 1


def test_a_full_trunk_passes_to_the_next_and_anonymous_hides_the_caller(
        clean: LiveSite, providers: Providers) -> None:
    with provider(clean, TINY, providers.tiny) as tiny, \
            provider(clean, BACKUP, providers.backup) as backup:
        # tiny is full with the first call: the second leaves on backup
        first, second = while_a_call_is_up(clean, tiny, "101", "3631", then="3631",
                                           hold_seconds=0.5)
        tiny.wait(timeout=15)
        backup.wait(timeout=15)
    assert first.connected and second.connected, second.run.describe()
    (hidden,) = invites(tiny)
    assert "anonymous" in (hidden.header("From") or "").lower()
    assert hidden.header("P-Asserted-Identity") is None
    assert "101" not in (hidden.header("From") or "")
    (shown,) = invites(backup)
    assert request_user(shown) == "3631" and from_user(shown) == "0140000000"


def test_registration_trunk_answers_the_providers_challenge(clean: LiveSite,
                                                             registrar: UasHandle) -> None:
    seen = registrar.wait(timeout=30)
    registers = seen.run.requests("REGISTER")
    assert len(registers) >= 2
    assert "Digest" in (registers[1].header("Authorization") or "")
    assert [m.status for m in seen.run.responses("REGISTER", "sent")][:2] == [401, 200]

    async def registrations() -> str:
        async with clean.console() as ami:
            return await ami.command("pjsip show registrations")

    assert "Registered" in asyncio.run(registrations())


def test_the_line_token_is_taken_only_from_the_providers_address(
        clean: LiveSite, registrar: UasHandle) -> None:
    """Issue 17, part 3: the registration trunk's calls are recognised by the `line` token
    of its REGISTER's contact, which travels in clear; after the project's apply, a call
    carrying it from another address is refused, from the provider's (its host, resolved at
    apply) it is taken."""
    seen = registrar.wait(timeout=30)
    contact = seen.run.requests("REGISTER")[-1].header("Contact") or ""
    token = re.search(r";line=([A-Za-z0-9]+)", contact)
    assert token is not None, contact
    statuses: dict[str, int | None] = {}
    for source in (STRANGER, "127.0.0.1"):  # 127.0.0.1: the registrar's address
        agent = Agent(ACCOUNT, "unused", clean.lab.ports.sip, local_ip=source,
                      uri_params=f";line={token[1]}")
        # the stranger's Via and Contact claim the provider's address: only the packets'
        # source counts
        agent.local_ip = "127.0.0.1"
        try:
            answer, call_id = agent.call("+33140000102", sdp(agent.local_port + 2,
                                                             {8: "PCMA/8000"}))
            statuses[source] = answer.status
            if answer.status == 200:
                agent.hangup(answer, call_id)
        finally:
            agent.close()
    assert statuses == {STRANGER: 403, "127.0.0.1": 200}, statuses


def test_registration_with_a_wrong_secret_is_refused_by_the_provider(
        clean: LiveSite, strict_registrar: UasHandle) -> None:
    seen = strict_registrar.wait(timeout=30)
    assert [m.status for m in seen.run.responses("REGISTER", "sent")][:2] == [401, 403]


def test_ip_trunk_calls_are_accepted_only_from_its_address(clean: LiveSite) -> None:
    port = clean.lab.ports.sip
    work = clean.work / "inbound"
    from_trunk = SippDriver(port, local_ip=PRIMARY, work_dir=work).call(
        "provider", "unused-Secret-1", "+33140000102", hold_seconds=1)
    assert from_trunk.connected, from_trunk.run.describe()  # 102's office DID: voicemail
    stranger = SippDriver(port, local_ip=STRANGER, work_dir=work).call(
        "provider", "unused-Secret-1", "+33140000102", expect="reject")
    assert not stranger.connected and stranger.final_status in (401, 403)


def test_group_denying_a_class_keeps_emergency() -> None:
    site = routing_site(Providers())
    stagiaires = next(g for g in site.groups if g.name == "stagiaires")
    assert CallClass.MOBILE not in stagiaires.allowed
    assert CallClass.EMERGENCY in stagiaires.allowed


def test_emergency_goes_out_showing_the_caller_and_premium_is_denied(
        clean: LiveSite, providers: Providers) -> None:
    with provider(clean, PRIMARY, providers.primary, calls=0) as primary, \
            provider(clean, TINY, providers.tiny) as tiny:
        premium = call(clean, "102", "3631", expect="reject")
        emergency = call(clean, "102", "112", hold_seconds=0.5)
        tiny.wait(timeout=15)
        time.sleep(0.3)
        primary.stop()
    assert premium.final_status == 403, premium.run.describe()
    assert invites(primary) == []
    assert emergency.connected, emergency.run.describe()
    (invite,) = invites(tiny)
    assert request_user(invite) == "112"  # as dialled, not E.164
    # the trunk hides callers (caller_id: anonymous), but not from emergency services
    assert from_user(invite) == "+33140000102"


def test_unknown_national_number_is_refused_as_unallocated(clean: LiveSite) -> None:
    refused = call(clean, "102", "0033123", expect="reject")
    assert refused.final_status == 404, refused.run.describe()


def test_asterisk_loaded_the_routing_without_a_warning(live: LiveSite) -> None:
    log = (live.lab.log_dir / "messages.log").read_text(encoding="utf-8", errors="replace")
    warnings = [line for line in log.splitlines() if "WARNING" in line
                # the trunk with a mistyped secret, refused on purpose
                and "403 Forbidden fatal response" not in line
                # no FastAGI service runs here: calls to users take the direct path, loudly
                and "res_agi.c: Connecting to" not in line
                and "FastAGI failed" not in line]
    assert warnings == []
