"""Emergency calls and the call path's smaller defects, on a live Asterisk 22: SIPp phones of
every user type and every procedure of the example dial the emergency numbers; SIPp
providers (and a UDP socket that reads and never answers) stand in for the trunks.
Every test ends with no channel left on Asterisk."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from support.agi_fixtures import agi_service
from support.live_site import LiveSite, example_site, live_site
from test_procedures_calls import while_calling
from test_routing_calls import call, from_user, invites, provider, request_user

from wildix_ast.lab.allocator import free_port
from wildix_ast.lab.sipp import CallResult, SipMessage, SippDriver
from wildix_ast.lab.sipp.driver import Phone
from wildix_ast.model.routing import numbering_plan
from wildix_ast.model.site import Site
from wildix_ast.services.agi.voicemail_logins import MAX_FAILURES, LoginGuard

pytestmark = pytest.mark.lab

FIRST, SECOND, GONE, TINY = "127.0.0.11", "127.0.0.12", "127.0.0.13", "127.0.0.14"
MAIN_NUMBER = "+33140000000"
LOGINS = "voicemail-logins.sqlite3"
#: user type or procedure -> an extension of the test site
CALLERS = {"admin (users)": "101", "user (users)": "102", "user (reception)": "100",
           "room": "150", "fax": "190", "user (main)": "104", "user (ferme)": "105",
           "user (mobiles)": "106"}


class Ports:
    def __init__(self) -> None:
        self.first = free_port(FIRST)
        self.second = free_port(SECOND)
        self.gone = free_port(GONE)
        self.tiny = free_port(TINY)


def emergency_site(p: Ports) -> Site:
    """The example site, every procedure kept, with its trunks on loopback stand-ins:
    `operateur` is never qualified (only the bounded attempt guards it), `gone` is qualified
    every 2 s and nothing ever listens there. The others are not qualified: their stand-ins
    come and go with each test, and qualify would find them gone."""
    data = example_site().model_dump(mode="json")
    data["users"] += [
        {"type": "user", "name": f"Poste {proc}", "extension": ext, "dialplan": proc}
        for ext, proc in (("104", "main"), ("105", "ferme"), ("106", "mobiles"))]
    data["dialplan"]["general"]["classes"] = [
        {"call_class": "international", "trunk_group": "capped", "max_calls": 4},
        {"call_class": "premium", "max_calls": 1},
        {"call_class": "mobile", "trunk_group": "qualified"}]
    # always open, a short IVR and a short ring: the IVR's timeout action rings `standard`
    data["time_frames"] = [{"name": "bureau", "weekly": [
        {"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]}]}]
    for ivr in data["ivrs"]:
        ivr.update(timeout=1, repeat=0)
    for group in data["call_groups"]:
        if group["name"] == "standard":
            group["timeout"] = 3
    data["trunks"] = [
        {"name": "operateur", "auth": "ip", "host": FIRST, "port": p.first,
         "caller_id": "office_did", "main_number": MAIN_NUMBER, "qualify_frequency": 0,
         "dids": ["+33140000000-299"], "procedure": "main"},
        {"name": "secours", "auth": "ip", "host": SECOND, "port": p.second,
         "caller_id": "main_number", "main_number": MAIN_NUMBER, "qualify_frequency": 0,
         "dids": ["+33140000300-399"], "procedure": "main"},
        {"name": "gone", "auth": "ip", "host": GONE, "port": p.gone, "qualify_frequency": 2},
        {"name": "tiny", "auth": "ip", "host": TINY, "port": p.tiny, "max_calls": 1,
         "caller_name": "trunk", "qualify_frequency": 0},
    ]
    data["trunk_groups"] = [{"name": "sortants", "trunks": ["operateur", "secours"]},
                            {"name": "qualified", "trunks": ["gone", "secours"]},
                            {"name": "capped", "trunks": ["tiny", "secours"]}]
    return Site.model_validate(data)


@pytest.fixture(scope="module")
def ports() -> Ports:
    return Ports()


@pytest.fixture(scope="module")
def live(ports: Ports, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveSite]:
    work = tmp_path_factory.mktemp("emergency")
    with live_site(work, "emergency", emergency_site(ports)) as site, \
            agi_service("--db", str(work / "store.sqlite3"), "--port", str(site.lab.ports.agi),
                        "--mail-spool", str(work / "spool"),
                        "--voicemail-logins", str(work / LOGINS), timeout=60.0):
        yield site


@pytest.fixture
def clean(live: LiveSite) -> Iterator[LiveSite]:
    yield live
    assert live.wait_no_channels() == 0, "channels left on Asterisk after the test"


def phone_invites(phone: Phone) -> list[SipMessage]:
    return invites(phone.uas)


def display_name(message: SipMessage) -> str:
    value = (message.header("From") or "").split("<", 1)[0].strip()
    return value.strip('"')


def from_trunk(live: LiveSite, address: str, did: str, **kwargs: object) -> CallResult:
    driver = SippDriver(live.lab.ports.sip, local_ip=address, work_dir=live.work / "inbound")
    return driver.call("0612345678", "unused-Secret-1", did, **kwargs)  # type: ignore[arg-type]


def in_background(place: Callable[[], CallResult]) -> tuple[threading.Thread,
                                                           dict[str, CallResult]]:
    result: dict[str, CallResult] = {}
    thread = threading.Thread(target=lambda: result.update(call=place()))
    thread.start()
    return thread, result


def wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


class SilentTrunk:
    """A provider that reads every datagram and never answers (a provider swallowing
    INVITEs): Asterisk hears nothing back, not even an ICMP error."""

    def __init__(self, address: str, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((address, port))
        self.sock.settimeout(0.2)
        self.received: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                self.received.append(self.sock.recv(65535))
            except TimeoutError:
                continue

    def invites(self) -> int:
        return sum(1 for d in self.received if d.startswith(b"INVITE "))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


def emergency_numbers(live: LiveSite) -> list[str]:
    return list(numbering_plan(live.compiled.site).emergency_numbers)


def test_every_user_type_and_procedure_reaches_the_emergency_numbers(
        clean: LiveSite, ports: Ports) -> None:
    """112 and 15 from every user type and every procedure of the example; from the
    reception (whose procedure has no outgoing routes, and room 150 starts with 15) every
    emergency number of the site's list."""
    dials = [(ext, number) for ext in CALLERS.values() for number in ("112", "15")]
    dials += [("100", n) for n in emergency_numbers(clean) if n not in ("112", "15")]
    results: list[tuple[str, str, CallResult]] = []
    with provider(clean, FIRST, ports.first, calls=0) as uas:
        for ext, number in dials:
            results.append((ext, number, call(clean, ext, number, hold_seconds=0)))
        assert wait_for(lambda: len(invites(uas)) >= len(dials), 10)
    failed = [(ext, number, r.final_status) for ext, number, r in results if not r.connected]
    assert failed == [], failed
    seen = invites(uas)
    assert [request_user(m) for m in seen] == [number for _, number in dials]
    users = {u.extension: u for u in clean.compiled.site.users}
    for (ext, _), invite in zip(dials, seen, strict=True):
        # the caller is shown to emergency services: their DID, else the main number
        assert from_user(invite) == (users[ext].office_did or MAIN_NUMBER), invite.start_line
    # a neutral User-Agent: neither the product's nor the site's name
    agent = seen[0].header("User-Agent") or ""
    assert agent == "PBX", agent


def test_an_outside_caller_cannot_make_the_pbx_call_emergency_services(
        clean: LiveSite, ports: Ports) -> None:
    """DID +33140000212 becomes 112 in the example's `main` (remove 10, prepend 1) then
    enters `reception`: emergency numbers there are for phones, so nothing leaves."""
    with provider(clean, FIRST, ports.first, calls=0) as first, \
            provider(clean, SECOND, ports.second, calls=0) as second:
        result = from_trunk(clean, FIRST, "+33140000212", hold_seconds=4)
        time.sleep(0.5)
    assert invites(first) == [] and invites(second) == []
    assert result.hangup_by == "remote", result.run.describe()  # answered, then refused


def to_the_second_trunk(live: LiveSite, ports: Ports, ext: str, number: str, what: str
                        ) -> tuple[float, CallResult, list[SipMessage]]:
    """(seconds from the phone's first INVITE to the call's INVITE at `secours`, by the
    SIPp traces' clocks; the call; the INVITEs `secours` received). Printed, with the time
    from before SIPp starts."""
    with provider(live, SECOND, ports.second) as second:
        start = time.monotonic()
        thread, result = in_background(lambda: call(live, ext, number, hold_seconds=0.5))
        reached = wait_for(lambda: bool(invites(second)), 30)
        wall = time.monotonic() - start if reached else float("inf")
        thread.join()
        second.wait(timeout=15)
    seen = invites(second)
    dialled = result["call"].run.requests("INVITE", "sent")[0].time
    arrived = seen[0].time if seen else None
    assert dialled is not None
    elapsed = arrived - dialled if arrived is not None else float("inf")
    print(f"\n{what}: INVITE at the second trunk {elapsed:.2f} s after the phone's INVITE "
          f"({wall:.2f} s from placing the call, SIPp start included)")
    return elapsed, result["call"], seen


def test_with_the_first_trunk_silent_the_second_gets_the_call_within_5_seconds(
        clean: LiveSite, ports: Ports) -> None:
    silent = SilentTrunk(FIRST, ports.first)
    try:
        elapsed, result, seen = to_the_second_trunk(
            clean, ports, "101", "112", "emergency call, first trunk silent (never qualified)")
    finally:
        silent.close()
    assert silent.invites() >= 1  # the first trunk was tried
    assert elapsed <= 5.0, f"{elapsed:.2f} s"
    assert result.connected, result.run.describe()
    (invite,) = seen
    assert request_user(invite) == "112"
    assert from_user(invite) == MAIN_NUMBER  # secours shows the main number
    assert display_name(invite) == ""  # caller_id main_number: no person's name


def contact_status(live: LiveSite, aor: str) -> str:
    async def show() -> str:  # the console: no AMI account the site has runs CLI commands
        async with live.console() as console:
            return await console.command(f"pjsip show aor {aor}")
    return asyncio.run(show())


def test_a_trunk_qualify_found_unreachable_is_skipped_at_once(clean: LiveSite,
                                                              ports: Ports) -> None:
    assert wait_for(lambda: "Unavail" in contact_status(clean, "trunk-gone"), 20), \
        contact_status(clean, "trunk-gone")
    elapsed, result, _ = to_the_second_trunk(
        clean, ports, "102", "0612345678", "first trunk found unreachable by qualify")
    assert elapsed <= 2.0, f"{elapsed:.2f} s"
    assert result.connected, result.run.describe()


def test_the_trunk_counter_follows_failover(clean: LiveSite, ports: Ports) -> None:
    """tiny (max_calls 1) refuses the first call, which leaves on secours and stays up:
    tiny's place went with it, so the second call is tiny's."""
    with provider(clean, SECOND, ports.second) as second:
        with provider(clean, TINY, ports.tiny, behaviour="unavailable") as refusing:
            thread, first = in_background(lambda: call(clean, "101", "0044201234567",
                                                       hold_seconds=5))
            assert wait_for(lambda: bool(invites(second)), 15)
            refusing.wait(timeout=10)
        with provider(clean, TINY, ports.tiny) as tiny:
            after = call(clean, "101", "0044201234567", hold_seconds=0.5)
            tiny.wait(timeout=15)
        thread.join()
        second.wait(timeout=15)
    assert first["call"].connected, first["call"].run.describe()
    assert after.connected, after.run.describe()
    (invite,) = invites(tiny)
    assert display_name(invite) == "tiny"  # caller_name: trunk


def test_freephone_numbers_are_national_and_other_08_numbers_premium(
        clean: LiveSite, ports: Ports) -> None:
    with provider(clean, FIRST, ports.first) as first:
        free = call(clean, "102", "0800123456", hold_seconds=0.5)
        first.wait(timeout=15)
    paid = call(clean, "102", "0899123456", expect="reject")
    assert free.connected, free.run.describe()
    (invite,) = invites(first)
    assert request_user(invite) == "+33800123456"
    assert display_name(invite) == "Bruno Lefèvre, jr"  # office_did: the user's name
    assert paid.final_status == 403, paid.run.describe()


def test_a_ring_all_group_never_rings_the_callers_phone(clean: LiveSite) -> None:
    driver = clean.sipp()
    with driver.phone("100", clean.password("100"), behaviour="answer", calls=0) as own, \
            driver.phone("101", clean.password("101"), behaviour="answer") as alice:
        result = call(clean, "100", "8", hold_seconds=0.5)  # the reception's group key
        alice.uas.wait(timeout=15)
        time.sleep(0.3)
    assert result.connected, result.run.describe()
    assert len(phone_invites(alice)) == 1
    assert phone_invites(own) == []


def test_after_the_ivrs_timeout_action_the_group_rings_once(clean: LiveSite,
                                                            ports: Ports) -> None:
    """main: IVR (timeout: ring `standard`), then `standard` again, then 101's voicemail.
    The group the IVR rang is not rung a second time; the caller reaches voicemail."""
    driver = clean.sipp()
    with driver.phone("102", clean.password("102"), behaviour="ignore", calls=0) as bruno:
        result = from_trunk(clean, FIRST, MAIN_NUMBER, hold_seconds=14)
        time.sleep(0.3)
    assert result.connected, result.run.describe()
    assert len(phone_invites(bruno)) == 1


def test_an_e164_did_without_plus_reaches_its_user(clean: LiveSite) -> None:
    driver = clean.sipp()
    with driver.phone("101", clean.password("101"), behaviour="answer") as alice:
        result = from_trunk(clean, FIRST, "33140000101", hold_seconds=0.5)
        alice.uas.wait(timeout=15)
    assert result.connected, result.run.describe()
    assert len(phone_invites(alice)) == 1


def mailbox_pin(live: LiveSite, mailbox: str) -> str:
    line = next(v for k, _, v in parse_conf_entries(live.compiled.files["voicemail.conf"])
                if k == mailbox)
    return line.split(",")[0].strip()


def parse_conf_entries(text: str) -> list[tuple[str, str, str]]:
    return [(key.strip(), "=>", value.strip()) for key, sep, value in
            (line.partition("=>") for line in text.splitlines()) if sep]


def open_mailbox(live: LiveSite, caller: str, mailbox: str, pin: str) -> bool:
    """`*97*<mailbox>` from `caller`'s phone, `pin` typed at the prompt: whether the
    mailbox opened (VoiceMailMain ran)."""
    code = live.compiled.site.dialplan.voicemail
    result, opened = while_calling(
        live, lambda: call(live, caller, f"{code}*{mailbox}", dtmf=f"{pin}#",
                           dtmf_delay=1.5, hold_seconds=2.5),
        lambda apps: any(app == "VoiceMailMain" for app, _ in apps), timeout=12)
    assert result.connected, result.run.describe()
    return opened


def test_wrong_voicemail_pins_lock_the_mailbox_across_calls_until_unlocked(
        clean: LiveSite) -> None:
    guard = LoginGuard(clean.work / LOGINS)
    pin = mailbox_pin(clean, "101")
    assert len(pin) >= 6
    for attempt in range(MAX_FAILURES):  # one wrong PIN a call: the per-call limit is moot
        assert not open_mailbox(clean, "102", "101", "1"), attempt
    (lock,) = guard.locks()
    assert (lock.mailbox, lock.failures) == ("101", MAX_FAILURES)
    # locked: the right PIN does not open it either
    assert not open_mailbox(clean, "102", "101", pin)
    unlocked = subprocess.run(
        [sys.executable, "-m", "wildix_ast", "voicemail", "unlock", "101", "--json",
         "--voicemail-logins", str(clean.work / LOGINS)],
        capture_output=True, text=True, check=False, timeout=60)
    assert unlocked.returncode == 0, unlocked.stderr
    assert json.loads(unlocked.stdout) == {"ok": True, "mailbox": "101", "was_locked": True,
                                           "failures_cleared": MAX_FAILURES}
    assert guard.locks() == []
    assert open_mailbox(clean, "102", "101", pin)


def test_asterisk_loaded_the_call_path_without_a_warning(live: LiveSite) -> None:
    log = (live.lab.log_dir / "messages.log").read_text(encoding="utf-8", errors="replace")
    warnings = [line for line in log.splitlines() if "WARNING" in line
                # pjproject, while Asterisk loads its modules at start (not the site's)
                and 'Module "mod-invite" registered during operation' not in line]
    assert warnings == []

