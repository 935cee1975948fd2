"""Issue 16, parts 1 and 3, on a live Asterisk 22: a dialled number is admitted once (digits,
a leading '+', '*'/'#' only for feature codes) before any classification, and a refusal never
drops a caller.

The phones are raw SIP agents (tests/support/sip_ua.py) sending hostile Request-URIs; the providers
are raw UDP stand-ins on several loopback addresses (127.0.0.2 and 127.0.0.3 are trunks,
127.0.0.4 is named by no trunk) that record every request Asterisk sends them. Hypothesis
generates the dialled strings (derandomized: CI sees the same ones every run)."""

from __future__ import annotations

import asyncio
import re
import secrets
import select
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from support.agi_fixtures import agi_service
from support.live_site import LiveSite, example_site, live_site, without_trunk_procedures
from support.sip_ua import CRLF, Agent, Message, parse, sdp

from wildix_ast.lab.allocator import free_port
from wildix_ast.model.call_classes import CallClass, NumberingPlan
from wildix_ast.model.preferences import Preferences
from wildix_ast.model.routing import numbering_plan
from wildix_ast.model.site import Site

pytestmark = pytest.mark.lab

PRIMARY, BACKUP, STRANGER = "127.0.0.2", "127.0.0.3", "127.0.0.4"
CALLS_PER_PATH = 25


@dataclass
class Provider:
    """A provider stand-in: records every request, answers INVITEs with `status` (486: the
    call ends at once; 200: answered with an SDP), OPTIONS with 200."""

    address: str
    status: int = 486
    requests: list[Message] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.port = free_port(self.address)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((self.address, self.port))
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            ready, _, _ = select.select([self.sock], [], [], 0.1)
            if not ready:
                continue
            data, peer = self.sock.recvfrom(65535)
            message = parse(data.decode(errors="replace"))
            if message.method is None:
                continue
            with self.lock:
                self.requests.append(message)
            if message.method == "INVITE":
                status = self.status
                body = sdp(self.port + 2, {8: "PCMA/8000"}) if status == 200 else ""
                self._reply(message, peer, status, body)
            elif message.method in ("OPTIONS", "BYE", "CANCEL"):
                self._reply(message, peer, 200, "")

    def _reply(self, request: Message, peer: tuple[str, int], status: int, body: str) -> None:
        reason = {200: "OK", 486: "Busy Here"}.get(status, "Status")
        to = request.header("To") or ""
        if ";tag=" not in to:
            to += ";tag=" + secrets.token_hex(4)
        lines = [f"SIP/2.0 {status} {reason}", *(f"Via: {v}" for v in request.all("Via")),
                 f"From: {request.header('From')}", f"To: {to}",
                 f"Call-ID: {request.header('Call-ID')}", f"CSeq: {request.header('CSeq')}",
                 f"Contact: <sip:provider@{self.address}:{self.port}>"]
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body.encode())}")
        self.sock.sendto((CRLF.join(lines) + CRLF + CRLF + body).encode(), peer)

    def invites(self) -> list[Message]:
        with self.lock:
            return [m for m in self.requests if m.method == "INVITE"]

    def clear(self) -> None:
        with self.lock:
            self.requests.clear()

    def close(self) -> None:
        self.stopped.set()
        self.thread.join()
        self.sock.close()


def request_user(message: Message) -> str:
    uri = message.first.split()[1]
    return uri.removeprefix("sip:").split("@")[0]


@dataclass
class Lab:
    live: LiveSite
    country: str
    primary: Provider
    backup: Provider
    stranger: Provider

    @property
    def providers(self) -> list[Provider]:
        return [self.primary, self.backup, self.stranger]

    @property
    def plan(self) -> NumberingPlan:
        return numbering_plan(self.live.compiled.site)

    def allowed(self, ext: str) -> set[CallClass]:
        site = self.live.compiled.site
        user = next(u for u in site.users if u.extension == ext)
        group = next(g for g in site.groups if g.name == user.group)
        return {*group.allowed, CallClass.EMERGENCY}


def admission_site(country: str, primary: Provider, backup: Provider) -> Site:
    """The example site (France's or Italy's number table) with two IP trunks and a
    procedure `sortie` (user 103, default group) whose admin-written '.' patterns dial a
    trunk and a trunk group after `set_call_class`."""
    base = without_trunk_procedures(example_site())
    data = base.model_dump(exclude={"trunks", "trunk_groups"})
    data["system"]["language_region"]["country_code"] = country
    data["dialplan"]["general"] = {"trunk_group": "main"}
    data["dialplan"]["procedures"] = [*data["dialplan"]["procedures"], {
        "name": "sortie", "numbers": [
            {"number": "9.", "applications": [
                {"app": "set_call_class", "call_class": "national"},
                {"app": "correct_called_number", "remove": 1},
                {"app": "dial_trunk", "trunk": "primary"}]},
            {"number": "8.", "applications": [
                {"app": "set_call_class", "call_class": "national"},
                {"app": "correct_called_number", "remove": 1},
                {"app": "dial_trunk_group", "trunk_group": "main"}]},
            {"number": "7.", "applications": [
                {"app": "call_group", "call_group": "standard"}]},
            {"number": "6.", "applications": [{"app": "ivr", "ivr": "accueil"}]}]}]
    data["users"] = [*data["users"], {
        "type": "user", "name": "Zoé Martin", "extension": "103", "group": "default",
        "dialplan": "sortie", "email": "zoe@acme.example"}]
    data["trunks"] = [
        {"name": "primary", "auth": "ip", "host": PRIMARY, "port": primary.port},
        {"name": "backup", "auth": "ip", "host": BACKUP, "port": backup.port}]
    data["trunk_groups"] = [{"name": "main", "trunks": ["primary"]}]
    return Site.model_validate(data)


@pytest.fixture(scope="module", params=["33", "39"], ids=["france", "italy"])
def lab(request: pytest.FixtureRequest,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    country: str = request.param
    primary, backup, stranger = Provider(PRIMARY), Provider(BACKUP), Provider(STRANGER)
    try:
        site = admission_site(country, primary, backup)
        with live_site(tmp_path_factory.mktemp(f"admission-{country}"), f"adm{country}",
                       site, from_store=False) as live:
            yield Lab(live, country, primary, backup, stranger)
    finally:
        for p in (primary, backup, stranger):
            p.close()


# --- hostile dialled strings -------------------------------------------------------------

def _targets(lab: Lab) -> list[str]:
    """Dial-string syntax aimed at somewhere no class check allowed."""
    s = f"{STRANGER}:{lab.stranger.port}"
    return [f"@{s}", f"&PJSIP/1@{s}", f"&PJSIP/sip:1@{s}", f"/sip:1@{s}",
            "&PJSIP/0044201234567@trunk-primary", "&PJSIP/0899123456@trunk-backup",
            "&PJSIP/+33899123456@trunk-primary", f"@trunk-primary&PJSIP/+{lab.country}899123456",
            f"@trunk-primary&PJSIP/trunk-backup/sip:1@{s}&PJSIP/2",
            "@trunk-backup", f",,,,,,^{s}", ",30,D(1)", ")&PJSIP/1@trunk-backup(",
            f"${{CUT(x,,1)}}@{s}", '"', "$[1+1]", "${EXTEN}", "${SHELL(id)}", "{x}", ";x=1",
            " 1", "\x01", "\x7f", "\t", "\r\n", '"&PJSIP/+33899123456@trunk-primary',
            '\\"@trunk-primary&PJSIP/0044201234567', '" | "1', "%"]


def dialled(lab: Lab, prefixes: list[str]) -> st.SearchStrategy[tuple[str, bool]]:
    """(a number that would be allowed + hostile parts, sent with only the characters a
    Request-URI requires escaped (True) or everything but digits escaped)."""
    parts = st.one_of(st.sampled_from(_targets(lab)), st.text("0123456789", max_size=4))
    return st.tuples(st.builds(lambda p, rest: p + "".join(rest), st.sampled_from(prefixes),
                               st.lists(parts, min_size=1, max_size=3)), st.booleans())


def hostile(lab: Lab, prefixes: list[str]) -> st.SearchStrategy[tuple[str, bool]]:
    """Like `dialled`, always with Dial-string syntax (for paths where a number of digits
    alone would ring or wait for a key)."""
    return st.tuples(st.builds(lambda p, d, t: p + d + t, st.sampled_from(prefixes),
                               st.text("0123456789", max_size=4),
                               st.sampled_from(_targets(lab))), st.booleans())


def encode(number: str, minimal: bool) -> str:
    """The Request-URI user part (RFC 3261 user-unreserved characters may stay raw;
    Asterisk decodes %XX)."""
    return quote(number, safe="+*&=$,;?/" if minimal else "+")


def call_out(lab: Lab, ext: str, number: str, minimal: bool) -> int:
    """The phone `ext` dials `number`; the final status it gets."""
    phone = Agent(ext, lab.live.password(ext), lab.live.lab.ports.sip, timeout=15)
    try:
        target = encode(number, minimal)
        response, call_id = phone.call(target, sdp(phone.local_port + 2, {8: "PCMA/8000"}))
        status = response.status or 0
        if status == 200:  # an internal number answered: hang up
            phone.hangup(response, call_id)
        else:
            uri = f"sip:{target}@127.0.0.1:{lab.live.lab.ports.sip}"
            phone.ack(response, uri, f"<sip:{target}@127.0.0.1>", call_id)
        return status
    finally:
        phone.close()


ALLOWED_USER = re.compile(r"^\+?[0-9]+$")
ADMITTED = re.compile(r"\+?[0-9*#]+")


def dial(lab: Lab, ext: str, number: str, minimal: bool) -> int:
    for p in lab.providers:
        p.clear()
    status = call_out(lab, ext, number, minimal)
    time.sleep(0.05)  # a stray INVITE would have left before the final response
    return status


def assert_one_intended_invite(lab: Lab, number: str, status: int,
                               allowed: set[CallClass] | None = None) -> None:
    """At most one INVITE, at a trunk, to digits only, of a class the caller may call
    (`allowed`, when the number table classifies it), and none at any other address."""
    assert lab.stranger.invites() == [], f"{number!r}: INVITE at a host no trunk names"
    seen = lab.primary.invites() + lab.backup.invites()
    assert len(seen) <= 1, f"{number!r}: {len(seen)} INVITEs: {[m.first for m in seen]}"
    for invite in seen:
        user = request_user(invite)
        assert ALLOWED_USER.match(user), f"{number!r} -> INVITE {invite.first!r}"
        if allowed is not None:
            found = lab.plan.classify(user)
            assert found is not None and found[0] in allowed, \
                f"{number!r} -> {invite.first!r} ({found})"
    assert status in (403, 404, 484, 486, 503), f"{number!r}: {status}"
    if not ADMITTED.fullmatch(number):  # Dial-string syntax: refused before it is routed
        assert seen == [] and status in (404, 484), (number, status, seen)


def _prefixes(lab: Lab) -> list[str]:
    if lab.country == "39":
        return ["0612345678", "3123456789", "0039061234567", "+39061234567", "80012345"]
    return ["0140000000", "0612345678", "0033140000000", "+33612345678"]


FRANCE = pytest.mark.parametrize("lab", ["33"], indirect=True, ids=["france"])
HOSTILE = settings(max_examples=CALLS_PER_PATH, derandomize=True, deadline=None,
                   database=None, suppress_health_check=list(HealthCheck))


def test_user_to_outside_admits_only_digits(lab: Lab) -> None:
    """User 102 (default group: no international, no premium) through the number table."""

    stranger = f"{STRANGER}:{lab.stranger.port}"
    national = _prefixes(lab)[0]

    @HOSTILE
    @given(dialled(lab, _prefixes(lab)))
    # what a reviewer did by hand: a host the caller chose, abroad through a national row
    @example((f"{national}@trunk-primary&PJSIP/trunk-backup/sip:1@{stranger}&PJSIP/2", True))
    @example((f"{national}@trunk-primary&PJSIP/0044201234567", False))
    def attempt(case: tuple[str, bool]) -> None:
        number, minimal = case
        assert_one_intended_invite(lab, number, dial(lab, "102", number, minimal),
                                   lab.allowed("102"))

    attempt()
    assert lab.live.wait_no_channels() == 0


def test_international_user_reaches_no_premium_number(lab: Lab) -> None:
    """User 101 (group `direction`: international, not premium) through the international
    pattern: Dial-string syntax must not carry a premium number past the premium check."""
    cc = lab.country
    stranger = f"{STRANGER}:{lab.stranger.port}"
    premium = ["0899123456", "0033899123456"] if cc == "33" else ["89912345", "003989912345"]
    prefixes = [*premium, "0044201234567", f"+{cc}0612345678"[:13]]

    @HOSTILE
    @given(dialled(lab, prefixes))
    @example((f"0044201234567@trunk-primary&PJSIP/+{cc}899123456", True))
    @example((f"0044201234567@trunk-primary&PJSIP/trunk-backup/sip:1@{stranger}&PJSIP/2",
              False))
    def attempt(case: tuple[str, bool]) -> None:
        number, minimal = case
        assert_one_intended_invite(lab, number, dial(lab, "101", number, minimal),
                                   lab.allowed("101"))

    attempt()
    assert lab.live.wait_no_channels() == 0


def test_procedure_trunk_dials_admit_only_digits(lab: Lab) -> None:
    """User 103's procedure: admin-written '9.' (dial_trunk) and '8.' (dial_trunk_group)."""
    prefixes = [p + n for p in ("9", "8") for n in _prefixes(lab)]
    stranger = f"{STRANGER}:{lab.stranger.port}"

    @HOSTILE
    @given(dialled(lab, prefixes))
    @example((f"9{_prefixes(lab)[0]}@trunk-primary&PJSIP/trunk-backup/sip:1@{stranger}"
              "&PJSIP/2", True))
    def attempt(case: tuple[str, bool]) -> None:
        number, minimal = case
        assert_one_intended_invite(lab, number, dial(lab, "103", number, minimal))

    attempt()
    assert lab.live.wait_no_channels() == 0


def test_call_group_and_ivr_numbers_admit_only_digits(lab: Lab) -> None:
    """User 103's procedure: admin-written '7.' (a call group) and '6.' (an IVR)."""

    @HOSTILE
    @given(hostile(lab, ["7", "6"]))
    def attempt(case: tuple[str, bool]) -> None:
        number, minimal = case
        status = dial(lab, "103", number, minimal)
        assert status == 404, (number, status)
        assert_one_intended_invite(lab, number, status)

    attempt()
    assert lab.live.wait_no_channels() == 0


@FRANCE
def test_feature_codes_admit_only_digits_and_stars(lab: Lab) -> None:
    """The forward path from the handset: `63*2*<number>` (forward all) and `*97*<mailbox>`
    with Dial-string syntax: refused before the service is asked, nothing stored."""
    live = lab.live
    before = live.store.user_by_extension("102")
    assert before is not None
    with agi_service("--port", str(live.lab.ports.agi), "--db", str(live.work / "store.sqlite3")):

        @HOSTILE
        @given(hostile(lab, ["63*2*", "61*2*", "63*2*+", "*97*"]))
        def attempt(case: tuple[str, bool]) -> None:
            number, minimal = case
            status = dial(lab, "102", number, minimal)
            assert status == 404, (number, status)
            assert_one_intended_invite(lab, number, status)

        attempt()
    after = live.store.user_by_extension("102")
    assert after is not None and after.preferences == before.preferences
    assert live.wait_no_channels() == 0


# --- part 3: no caller dropped by a refusal ------------------------------------------------

ABROAD = "0044201234567"  # international: user 101 (direction) may call it, 102 may not
TRANSFER_ATTEMPTS = 12  # hostile REFERs in one call


class OutsideCaller(Agent):
    """The provider behind the `backup` IP trunk calling in: a raw SIP agent on BACKUP
    (the trunk's endpoint is matched by that source address, no authentication)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.sock.close()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((BACKUP, 0))
        self.sock.connect(("127.0.0.1", self.port))
        self.local_port = self.sock.getsockname()[1]

    @property
    def contact(self) -> str:
        return f"<sip:{self.user}@{BACKUP}:{self.local_port}>"

    def send(self, text: str) -> None:
        super().send(text.replace(f"127.0.0.1:{self.local_port}", f"{BACKUP}:{self.local_port}")
                     .replace(f"<sip:{self.user}@127.0.0.1>", f"<sip:{self.user}@{BACKUP}>"))


def applications(live: LiveSite) -> set[tuple[str, str]]:
    async def ask() -> list[dict[str, str]]:
        async with live.ami() as ami:
            return await ami.action_list("CoreShowChannels", "CoreShowChannelsComplete")

    return {(c.get("Application", ""), c.get("ApplicationData", ""))
            for c in asyncio.run(ask())}


@FRANCE
def test_forward_refused_by_class_reaches_voicemail(lab: Lab) -> None:
    """102 (default group: no international) forwards every outside call abroad: the
    forward is refused by its class, and the caller reaches 102's voicemail (it got 403)."""
    live = lab.live
    live.store.change_preferences("102", lambda _: Preferences.model_validate(
        {"external": {"forward_always": ABROAD}}))
    for p in lab.providers:
        p.clear()
    caller = OutsideCaller("+33612345678", "", live.lab.ports.sip, timeout=15)
    seen: set[tuple[str, str]] = set()
    try:
        with agi_service("--port", str(live.lab.ports.agi),
                         "--db", str(live.work / "store.sqlite3")):
            result: dict[str, tuple[Message, str]] = {}
            thread = threading.Thread(target=lambda: result.update(call=caller.call(
                "+33140000102", sdp(caller.local_port + 2, {8: "PCMA/8000"}))))
            thread.start()
            deadline = time.monotonic() + 15
            while thread.is_alive() and time.monotonic() < deadline:
                seen |= applications(live)
                time.sleep(0.2)
            thread.join()
            answer, call_id = result["call"]
            assert answer.status == 200, answer.first  # answered by the voicemail
            for _ in range(5):
                seen |= applications(live)
                time.sleep(0.2)
            caller.hangup(answer, call_id)
    finally:
        caller.close()
        live.store.change_preferences("102", lambda _: Preferences())
    assert ("VoiceMail", "102@default,u") in seen, seen
    assert all(p.invites() == [] for p in lab.providers)  # the forward never left
    assert live.wait_no_channels() == 0


def device_state(live: LiveSite, ext: str) -> str:
    async def ask() -> str:
        async with live.ami() as ami:
            reply = await ami.action("Getvar", Variable=f"DEVICE_STATE(PJSIP/{ext})")
            return str(reply.get("Value", ""))

    return asyncio.run(ask())


def _phone_answers(phone: Agent, wait: float) -> Message:
    invite = phone.wait_for("INVITE", wait)
    assert invite is not None, "the phone never rang"
    phone.reply(invite, 200, "OK", sdp(phone.local_port + 2, {8: "PCMA/8000"}),
                to_tag=phone.tag)
    return invite


def _refer(phone: Agent, invite: Message, target: str) -> Message:
    """A blind transfer: REFER in the dialog `invite` opened (the phone is its callee)."""
    contact = re.search(r"<([^>]+)>", invite.header("Contact") or "")
    assert contact is not None
    uri = contact.group(1)
    phone.cseq += 1
    call_id = invite.header("Call-ID") or ""
    lines = [f"REFER {uri} SIP/2.0",
             f"Via: SIP/2.0/UDP 127.0.0.1:{phone.local_port};"
             f"branch=z9hG4bK{secrets.token_hex(8)};rport",
             "Max-Forwards: 70", f"From: {invite.header('To')};tag={phone.tag}",
             f"To: {invite.header('From')}", f"Call-ID: {call_id}",
             f"CSeq: {phone.cseq} REFER", f"Contact: {phone.contact}",
             f"Refer-To: <sip:{target}@127.0.0.1>", f"Referred-By: <sip:{phone.user}@127.0.0.1>",
             "Content-Length: 0"]
    phone.received.clear()  # the NOTIFYs of this transfer only
    phone.send(CRLF.join(lines) + CRLF + CRLF)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        message = phone.receive(deadline - time.monotonic())
        if message is not None and message.method == "BYE":
            phone.reply(message, 200, "OK")
        if message is not None and message.cseq_method == "REFER" and \
                (message.status or 0) >= 200:
            return message
    raise TimeoutError("no answer to the REFER")


def _transfer(lab: Lab, ext: str, target: str, *, hostile: bool = False
              ) -> tuple[Message, OutsideCaller, Agent, Message, str]:
    """An outside call to `ext`'s DID, answered, then blind-transferred by `ext`'s phone to
    `target` (after hostile transfers, all refused, when `hostile`): (the REFER's answer,
    the caller, the phone, the caller's 200, its Call-ID)."""
    live = lab.live
    phone = Agent(ext, live.password(ext), live.lab.ports.sip, timeout=15)
    assert phone.register().status == 200
    # until Asterisk shows the new contact reachable, a call to the user goes to voicemail
    deadline = time.monotonic() + 10
    while device_state(live, ext) == "UNAVAILABLE" and time.monotonic() < deadline:
        phone.receive(0.2)  # answers a qualify OPTIONS
    caller = OutsideCaller("+33612345678", "", live.lab.ports.sip, timeout=15)
    result: dict[str, tuple[Message, str]] = {}
    thread = threading.Thread(target=lambda: result.update(call=caller.call(
        f"+33140000{ext}", sdp(caller.local_port + 2, {8: "PCMA/8000"}))))
    thread.start()
    invite = _phone_answers(phone, 10)
    thread.join()
    answer, call_id = result["call"]
    assert answer.status == 200, answer.first
    time.sleep(0.5)  # the bridge is up
    if hostile:
        _hostile_refers(lab, phone, invite)
    return _refer(phone, invite, target), caller, phone, answer, call_id


def _outcome(phone: Agent, refer: Message, wait: float = 10) -> int:
    """The transfer's final status as the transferring phone learns it: the REFER's own
    answer, or after a 202 the final sipfrag of Asterisk's NOTIFYs (RFC 3515)."""
    if refer.status != 202:
        return refer.status or 0
    seen = 0
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        for message in phone.received[seen:]:
            match = re.match(r"SIP/2\.0 (\d{3})", message.body)
            if message.method == "NOTIFY" and match and int(match.group(1)) >= 200:
                return int(match.group(1))
        seen = len(phone.received)
        message = phone.receive(0.2)
        if message is not None and message.method == "BYE":
            phone.reply(message, 200, "OK")
    raise TimeoutError("no final NOTIFY for the REFER")


def _byes(agent: Agent, wait: float, enough: int | None = None) -> int:
    """BYEs `agent` gets (and answers) within `wait` seconds (or until `enough` came)."""
    count, deadline = 0, time.monotonic() + wait
    while time.monotonic() < deadline and count != enough:
        message = agent.receive(max(0.0, deadline - time.monotonic()))
        if message is not None and message.method == "BYE":
            agent.reply(message, 200, "OK")
            count += 1
    return count


def _hostile_refers(lab: Lab, phone: Agent, invite: Message) -> None:
    """Transfers to Dial-string syntax: each refused before anything moves."""
    national = _prefixes(lab)[0]
    for target in _targets(lab)[:TRANSFER_ATTEMPTS]:
        number = ABROAD + target if len(target) % 2 else national + target
        refer = _refer(phone, invite, encode(number, len(target) % 3 == 0))
        assert _outcome(phone, refer) in (403, 404), number
        assert all(p.invites() == [] for p in lab.providers), \
            (number, [m.first for p in lab.providers for m in p.invites()])


def test_blind_transfer_to_a_number_the_transferer_may_call_connects(lab: Lab) -> None:
    """101 (group direction: international) transfers an outside caller abroad: the
    provider gets the call and answers, and the caller stays in it (it was hung up,
    cause 21: the transferred channel had no group). Transfers to hostile strings first:
    refused, the caller still there."""
    for p in lab.providers:
        p.clear()
    lab.primary.status = 200
    try:
        refer, caller, phone, answer, call_id = _transfer(lab, "101", ABROAD, hostile=True)
        try:
            assert refer.status == 202, refer.first
            assert _outcome(phone, refer) == 200
            deadline = time.monotonic() + 10
            while not lab.primary.invites() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert [request_user(m) for m in lab.primary.invites()] == ["+44201234567"]
            assert _byes(caller, 2) == 0  # the caller is still in the call, now abroad
            assert caller.hangup(answer, call_id) is not None
        finally:
            caller.close()
            phone.close()
    finally:
        lab.primary.status = 486
    deadline = time.monotonic() + 5
    while not [m for m in lab.primary.requests if m.method == "BYE"] and \
            time.monotonic() < deadline:
        time.sleep(0.1)
    assert [m for m in lab.primary.requests if m.method == "BYE"], "the provider's leg stayed"
    assert lab.live.wait_no_channels() == 0


def test_blind_transfer_refused_keeps_the_caller_with_the_transferer(lab: Lab) -> None:
    """102 (default group) transfers an outside caller abroad: the REFER is refused, no
    INVITE leaves, and the caller is still connected to 102 (its BYE reaches 102)."""
    for p in lab.providers:
        p.clear()
    refer, caller, phone, answer, call_id = _transfer(lab, "102", ABROAD, hostile=True)
    try:
        assert _outcome(phone, refer) in (403, 404), [m.body for m in phone.received]
        assert all(p.invites() == [] for p in lab.providers)
        assert _byes(caller, 1) == 0
        assert caller.hangup(answer, call_id) is not None
        assert _byes(phone, 5, enough=1) == 1  # the caller's hang-up reached 102
    finally:
        caller.close()
        phone.close()
    assert lab.live.wait_no_channels() == 0
