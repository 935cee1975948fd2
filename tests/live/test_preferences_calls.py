"""User preferences on real calls (issue 8, must-show 1, 3 and 5): a lab Asterisk 22 running
the example site, SIPp phones and a SIPp provider behind the site's IP trunk, and the real
`wildix-ast agi serve` process reading the same store. Preferences are changed in the store
between calls (no Asterisk reload). Every test ends with no channel left on Asterisk."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from support.agi_fixtures import AgiService, agi_service
from support.live_site import (
    TEST_RING_TIMEOUT,
    LiveSite,
    example_site,
    live_site,
    without_trunk_procedures,
)
from test_calls import call_watching_applications

from wildix_ast.lab.allocator import free_port
from wildix_ast.lab.sipp import CallResult, SipMessage, SippDriver, UasHandle
from wildix_ast.model.preferences import Preferences
from wildix_ast.model.site import Site
from wildix_ast.model.trunks import Trunk, TrunkGroup
from wildix_ast.services.agi.probe import probe

pytestmark = pytest.mark.lab

TRUNK = "127.0.0.2"  # the provider's address: calls from it are the trunk's (external)


def prefs_site(provider_port: int) -> Site:
    """The example site with one IP trunk, whose provider is a SIPp UAS on TRUNK."""
    base = without_trunk_procedures(example_site())
    trunk = Trunk(name="secours", auth="ip", host=TRUNK, port=provider_port,
                  caller_id="main_number", main_number="+33140000000",
                  qualify_frequency=0)  # its provider comes and goes with each test
    return Site.model_validate({
        **base.model_dump(exclude={"trunks", "trunk_groups"}),
        "trunks": [trunk.model_dump()],
        "trunk_groups": [TrunkGroup(name="sortants", trunks=["secours"]).model_dump()]})


@pytest.fixture(scope="module")
def provider_port() -> int:
    return free_port(TRUNK)


@pytest.fixture(scope="module")
def live(provider_port: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveSite]:
    with live_site(tmp_path_factory.mktemp("prefs"), "prefs", prefs_site(provider_port)) as site:
        yield site


def start_service(live: LiveSite) -> Any:
    """`wildix-ast agi serve` where the lab's dialplan asks, on the live site's store."""
    return agi_service("--port", str(live.lab.ports.agi),
                       "--db", str(live.work / "store.sqlite3"))


@pytest.fixture
def clean(live: LiveSite) -> Iterator[LiveSite]:
    yield live
    for extension in ("100", "101", "102"):
        live.store.change_preferences(extension, lambda _: Preferences())
    assert live.wait_no_channels() == 0, "channels left on Asterisk after the test"


@pytest.fixture
def service(clean: LiveSite) -> Iterator[AgiService]:
    with start_service(clean) as running:
        yield running


def prefer(live: LiveSite, extension: str, **preferences: Any) -> None:
    live.store.change_preferences(extension,
                                  lambda _: Preferences.model_validate(preferences))


def answered(service: AgiService) -> int:
    """Sessions the service answered OK so far (its health route)."""
    result = asyncio.run(probe(service.host, service.port, "health", timeout=5))
    return int(result.variables["WILDIX_AGI_ANSWERED"])


def call(live: LiveSite, ext: str, number: str, **kwargs: Any) -> CallResult:
    return live.sipp().call(ext, live.password(ext), number, **kwargs)


def from_trunk(live: LiveSite, caller: str, number: str = "+33140000102",
               **kwargs: Any) -> CallResult:
    """An external call: the provider sends `caller` (E.164) to 102's office DID."""
    driver = SippDriver(live.lab.ports.sip, local_ip=TRUNK, work_dir=live.work / "trunk")
    return driver.call(caller, "unused-Secret-1", number, **kwargs)


def provider(live: LiveSite, port: int, calls: int = 1) -> UasHandle:
    driver = SippDriver(live.lab.ports.sip, local_ip=TRUNK, work_dir=live.work / "provider")
    return driver.answer("provider", behaviour="answer", port=port, calls=calls, timeout=60)


def invites(handle: UasHandle) -> list[SipMessage]:
    return [m for m in handle.messages() if m.request_method == "INVITE"]


# --- must-show 1: forward when busy ----------------------------------------------------------

def test_busy_forwards_to_voicemail(clean: LiveSite, service: AgiService) -> None:
    prefer(clean, "102", internal={"forward_busy": "VOICEMAIL"})
    before = answered(service)
    driver = clean.sipp()
    with driver.phone("102", clean.password("102"), behaviour="busy") as phone:
        result, apps = call_watching_applications(clean, driver, "101", "102", hold=3)
        seen = phone.uas.wait(timeout=15)
    assert seen.busy == 1  # the phone answered 486
    assert result.connected, result.run.describe()
    assert ("VoiceMail", "102@default,b") in apps
    assert answered(service) == before + 2  # the call's decision (and this health check)


def test_busy_forwards_to_a_number_that_rings(clean: LiveSite, service: AgiService) -> None:
    prefer(clean, "102", internal={"forward_busy": "100"})
    driver = clean.sipp()
    with driver.phone("102", clean.password("102"), behaviour="busy") as busy, \
            driver.phone("100", clean.password("100"), behaviour="answer") as other:
        result = call(clean, "101", "102", hold_seconds=1)
        seen_busy = busy.uas.wait(timeout=15)
        seen = other.uas.wait(timeout=15)
    assert seen_busy.busy == 1
    assert result.connected, result.run.describe()
    assert seen.invites == 1 and seen.answered == 1 and seen.byes == 1


def test_forward_to_an_external_number_uses_the_forwarding_users_routing(
        clean: LiveSite, service: AgiService, provider_port: int) -> None:
    """102 forwards everything: a national number leaves through the trunk with the site's
    caller ID; an international one is refused by 102's group (default), although the
    caller (101, group direction) may call abroad: the forward has 102's rights (the call
    then ends in 102's mailbox)."""
    prefer(clean, "102", internal={"forward_always": "+33140000999"})
    with provider(clean, provider_port) as uas:
        result = call(clean, "101", "102", hold_seconds=1)
        uas.wait(timeout=15)
    assert result.connected, result.run.describe()
    (invite,) = invites(uas)
    assert invite.start_line.split()[1].startswith("sip:+33140000999@")

    # refused by 102's class: the caller is not dropped, it reaches 102's voicemail
    prefer(clean, "102", internal={"forward_always": "0044201234567"})
    with provider(clean, provider_port, calls=0) as uas:
        refused = call(clean, "101", "102", hold_seconds=1)
        uas.stop()
    assert refused.connected, refused.run.describe()
    assert invites(uas) == []


def test_timeout_ringtone_then_forward_unavailable(clean: LiveSite,
                                                   service: AgiService) -> None:
    """102 rings 2 s (not the site's 6 s) with its ringtone for internal calls, then the
    call goes to 100, who answers."""
    prefer(clean, "102", internal={"call_timeout": 2, "ringtone": "inside",
                                   "forward_unavailable": "100"})
    driver = clean.sipp()
    with driver.phone("102", clean.password("102"), behaviour="ignore") as ringing, \
            driver.phone("100", clean.password("100"), behaviour="answer") as other:
        started = time.monotonic()
        result = call(clean, "101", "102", hold_seconds=1)
        elapsed = time.monotonic() - started
        ringing.uas.wait(timeout=15)
        seen = other.uas.wait(timeout=15)
    assert result.connected, result.run.describe()
    assert seen.answered == 1
    assert elapsed < TEST_RING_TIMEOUT + 1, f"{elapsed:.1f} s: the site's ring timeout ran"
    (invite,) = invites(ringing.uas)
    assert invite.header("Alert-Info") == "<http://127.0.0.1>;info=inside"


def test_call_waiting_off_and_do_not_disturb(clean: LiveSite, service: AgiService) -> None:
    prefer(clean, "102", internal={"call_waiting": False})
    driver = clean.sipp()
    with driver.phone("102", clean.password("102"), behaviour="answer") as phone:
        first: dict[str, CallResult] = {}
        thread = threading.Thread(target=lambda: first.update(
            call=call(clean, "101", "102", hold_seconds=5)))
        thread.start()
        deadline = time.monotonic() + 10
        while not invites(phone.uas) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        second, apps = call_watching_applications(clean, driver, "100", "102", hold=1)
        thread.join()
        phone.uas.wait(timeout=15)
    assert first["call"].connected, first["call"].run.describe()
    assert second.connected, second.run.describe()
    assert ("VoiceMail", "102@default,b") in apps  # busy: no second call on the phone
    assert len(invites(phone.uas)) == 1

    prefer(clean, "102", dnd=True)
    with driver.phone("102", clean.password("102"), behaviour="answer", calls=0) as phone:
        result, apps = call_watching_applications(clean, driver, "101", "102", hold=1)
        time.sleep(0.3)
        phone.uas.stop()
    assert result.connected, result.run.describe()
    assert ("VoiceMail", "102@default,b") in apps
    assert invites(phone.uas) == []


def test_a_forwarding_loop_ends_in_a_mailbox(clean: LiveSite, service: AgiService) -> None:
    """102 forwards to 100, 100 to 102: the call follows 3 forwards, then the user it has
    reached takes it in their mailbox (no endless Local channels)."""
    prefer(clean, "102", internal={"forward_always": "100"})
    prefer(clean, "100", internal={"forward_always": "102"})
    result, apps = call_watching_applications(clean, clean.sipp(), "101", "102", hold=2)
    assert result.connected, result.run.describe()
    assert ("VoiceMail", "100@default,u") in apps
    assert ("Dial", "Local/102@wildix-forward") in apps  # it did go round


# --- must-show 3: reject external calls, white and black lists -------------------------------

def test_reject_all_external_but_internal_rings(clean: LiveSite, service: AgiService) -> None:
    prefer(clean, "102", external={"reject": True}, whitelist=["+33612345678"])
    driver = clean.sipp()
    with driver.phone("102", clean.password("102"), behaviour="answer", calls=2) as phone:
        refused = from_trunk(clean, "+33655555555", expect="reject")
        inside = call(clean, "101", "102", hold_seconds=1)
        trusted = from_trunk(clean, "+33612345678", hold_seconds=1)
        seen = phone.uas.wait(timeout=15)
    assert refused.final_status == 403, refused.run.describe()
    assert inside.connected, inside.run.describe()
    assert trusted.connected, trusted.run.describe()  # whitelisted: through reject-all
    assert seen.invites == 2 and seen.answered == 2


def test_blacklisted_caller_is_refused(clean: LiveSite, service: AgiService) -> None:
    driver = clean.sipp()
    with driver.phone("102", clean.password("102"), behaviour="answer") as phone:
        # the next call sees the change, without any reload
        prefer(clean, "102", blacklist=["+33699*"])
        refused = from_trunk(clean, "+33699000001", expect="reject")
        other = from_trunk(clean, "+33655555555", hold_seconds=1)
        seen = phone.uas.wait(timeout=15)
    assert refused.final_status == 403, refused.run.describe()
    assert other.connected, other.run.describe()
    assert seen.invites == 1


# --- must-show 5: the service killed or answering garbage ------------------------------------

class GarbageServer:
    """Accepts FastAGI connections and answers nonsense (in a thread of its own)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.connections = 0
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _garbage(self, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        await reader.readuntil(b"\n\n")
        writer.write(b"\x00\xffSET VARIABLE WILDIX_AGI_STATUS\n200 OK\n")
        await writer.drain()
        writer.close()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._garbage, "127.0.0.1", self.port,
                                            reuse_address=True)
        self._ready.set()
        await self._stop.wait()
        server.close()

    def __enter__(self) -> GarbageServer:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *_: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


def check_fail_safe(live: LiveSite, provider_port: int) -> None:
    """102 rejects every internal call in its preferences: without the service, 102 still
    rings (the direct path), and 102's international call is still refused (its group)."""
    driver = live.sipp()
    with driver.phone("102", live.password("102"), behaviour="answer") as phone:
        inside = call(live, "101", "102", hold_seconds=1)
        seen = phone.uas.wait(timeout=15)
    assert inside.connected, inside.run.describe()
    assert seen.answered == 1
    with provider(live, provider_port, calls=0) as uas:
        abroad = call(live, "102", "0044201234567", expect="reject")
        uas.stop()
    assert abroad.final_status == 403, abroad.run.describe()
    assert invites(uas) == []


def test_service_killed_internal_calls_still_ring(clean: LiveSite, provider_port: int) -> None:
    prefer(clean, "102", internal={"reject": True})
    with start_service(clean) as running:
        refused = call(clean, "101", "102", expect="reject")  # the service applies it
        assert refused.final_status == 403, refused.run.describe()
        running.stop(signal.SIGKILL)
    check_fail_safe(clean, provider_port)


def test_service_answering_garbage_internal_calls_still_ring(clean: LiveSite,
                                                             provider_port: int) -> None:
    prefer(clean, "102", internal={"reject": True})
    with GarbageServer(clean.lab.ports.agi) as garbage:
        check_fail_safe(clean, provider_port)
    assert garbage.connections >= 1  # the dialplan did ask it
