"""Incoming calls through dialplan procedures, on a live Asterisk 22: a SIPp provider calls
the site's DIDs over an IP trunk; SIPp phones (registered users) answer or ring.

Time frames are built around the current time in the PBX time zone, so the same tests pass
at any hour: `ouvert` is open now (today, from an hour ago to an hour from now), `ferie` has
the same hours but today is a holiday, `demain` is open tomorrow only.
Every test ends with no channel left on Asterisk."""

from __future__ import annotations

import asyncio
import itertools
import math
import struct
import threading
import time
import wave
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from support.live_site import LiveSite, example_site, live_site

from wildix_ast.lab.allocator import free_port
from wildix_ast.lab.sipp import CallResult, SipMessage, SippDriver
from wildix_ast.lab.sipp.driver import Phone
from wildix_ast.model.site import Site

pytestmark = pytest.mark.lab

PROVIDER = "127.0.0.8"
MAIN, HOLIDAY, TOMORROW, HUNT, ROUND, RANDOM = (
    "+33140000000", "+33140000001", "+33140000002", "+33140000003", "+33140000004",
    "+33140000005")
PROMPT = "test-procedures-menu"


def _clock(moment: datetime) -> str:
    return moment.strftime("%H:%M")


def time_frames(timezone: str) -> list[dict[str, object]]:
    now = datetime.now(ZoneInfo(timezone))
    day = now.strftime("%a").lower()
    tomorrow = (now + timedelta(days=1)).strftime("%a").lower()
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    start = max(midnight, now - timedelta(hours=1))
    end = min(midnight + timedelta(hours=23, minutes=59), now + timedelta(hours=1))
    hours = {"days": [day], "start": _clock(start), "end": _clock(end)}
    return [
        {"name": "ouvert", "weekly": [hours]},
        {"name": "ferie", "weekly": [hours],
         "holidays": [{"date": now.date().isoformat(), "description": "Today"}]},
        {"name": "demain", "weekly": [{"days": [tomorrow]}]},
    ]


def _number(number: str, frame: str, ivr: str) -> dict[str, object]:
    return {"number": number, "applications": [
        {"app": "check_time_frame", "time_frame": frame, "if_no_match": "ferme"},
        {"app": "ivr", "ivr": ivr},
        {"app": "hangup"}]}


def procedures_site(provider_port: int, prompt: Path) -> Site:
    base = example_site()
    data = base.model_dump(mode="json", exclude={"trunks", "trunk_groups", "time_frames",
                                                 "call_groups", "ivrs", "sounds"})
    timezone = base.system.language_region.timezone
    data["dialplan"]["procedures"] = [
        {"name": "reception"},
        {"name": "entrant", "numbers": [
            _number(MAIN, "ouvert", "menu"), _number(HOLIDAY, "ferie", "menu"),
            _number(TOMORROW, "demain", "menu"), _number(HUNT, "ouvert", "menu-hunt"),
            _number(ROUND, "ouvert", "menu-rr"), _number(RANDOM, "ouvert", "menu-random")]},
        {"name": "ferme", "numbers": [{"number": "+X.", "applications": [
            {"app": "voicemail", "user": "101"}, {"app": "hangup"}]}]},
    ]
    data["dialplan"]["general"].pop("trunk_group", None)
    data["dialplan"]["general"].pop("classes", None)
    data.update(
        trunks=[{"name": "provider", "auth": "ip", "host": PROVIDER, "port": provider_port,
                 "dids": ["+33140000000-199"], "procedure": "entrant"}],
        time_frames=time_frames(timezone),
        call_groups=[
            {"name": "sales", "members": ["101", "102"], "strategy": "ring_all",
             "timeout": 15},
            {"name": "sales-hunt", "members": ["101", "102"], "strategy": "hunt",
             "member_timeout": 3, "timeout": 20},
            {"name": "sales-rr", "members": ["101", "102"], "strategy": "round_robin",
             "member_timeout": 5, "timeout": 20},
            {"name": "sales-random", "members": ["101", "102"], "strategy": "random",
             "member_timeout": 5, "timeout": 20}],
        ivrs=[{"name": name, "prompt": PROMPT, "timeout": 3, "repeat": 1,
               "options": [{"digit": "1", "call_group": group}],
               # no key after the prompt and one replay: 102's voicemail
               "on_timeout": {"voicemail": "102"},
               # a wrong key replays the prompt once; a second one: 101's voicemail
               "on_invalid": {"voicemail": "101"}}
              for name, group in (("menu", "sales"), ("menu-hunt", "sales-hunt"),
                                  ("menu-rr", "sales-rr"), ("menu-random", "sales-random"))],
        sounds=[{"name": PROMPT, "files": {"fr": str(prompt)}}],
    )
    return Site.model_validate(data)


def tone(path: Path) -> Path:
    """Half a second of 440 Hz, the IVR's prompt."""
    frames = b"".join(struct.pack("<h", int(6000 * math.sin(2 * math.pi * 440 * i / 8000)))
                      for i in range(4000))
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(frames)
    return path


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveSite]:
    work = tmp_path_factory.mktemp("procedures")
    prompt = tone(work / "menu.wav")  # installed by the sounds pipeline like any site sound
    site = procedures_site(free_port(PROVIDER), prompt)
    with live_site(work, "procedures", site) as running:
        yield running


@pytest.fixture
def clean(live: LiveSite) -> Iterator[LiveSite]:
    yield live
    left = live.wait_no_channels()
    if left:
        async def show() -> str:
            async with live.console() as ami:
                return await ami.command("core show channels verbose")
        print(asyncio.run(show()))
    assert left == 0, "channels left on Asterisk after the test"


def from_provider(live: LiveSite, did: str, caller: str = "0612345678",
                  **kwargs: object) -> CallResult:
    """A call from the provider to `did`, from `caller` (a national number)."""
    driver = SippDriver(live.lab.ports.sip, local_ip=PROVIDER, work_dir=live.work / "provider")
    return driver.call(caller, "unused-Secret-1", did, **kwargs)  # type: ignore[arg-type]


def from_user(message: SipMessage) -> str:
    value = message.header("From") or ""
    return value.split("sip:", 1)[1].split("@")[0]


def applications(live: LiveSite) -> set[tuple[str, str]]:
    """(application, its data) of every channel now."""
    async def read() -> set[tuple[str, str]]:
        async with live.ami() as ami:
            events = await ami.action_list("CoreShowChannels", "CoreShowChannelsComplete")
        return {(str(e.get("Application", "")), str(e.get("ApplicationData", "")))
                for e in events if e.get("Event") == "CoreShowChannel"}
    return asyncio.run(read())


def while_calling(live: LiveSite, place: Callable[[], CallResult],
                  seen: Callable[[set[tuple[str, str]]], bool],
                  timeout: float = 10.0) -> tuple[CallResult, bool]:
    """Place a call in the background and watch the channels until `seen` is true."""
    result: dict[str, CallResult] = {}
    thread = threading.Thread(target=lambda: result.update(call=place()))
    thread.start()
    found = False
    deadline = time.monotonic() + timeout
    while thread.is_alive() and time.monotonic() < deadline and not found:
        found = seen(applications(live))
        time.sleep(0.2)
    thread.join()
    return result["call"], found


def invites(phone: Phone) -> list[SipMessage]:
    return [m for m in phone.uas.messages()
            if m.request_method == "INVITE" and m.direction == "received"]


def cancels(phone: Phone) -> list[SipMessage]:
    return [m for m in phone.uas.messages()
            if m.request_method == "CANCEL" and m.direction == "received"]


def test_inside_the_time_frame_the_ivr_answers_and_1_rings_sales_all_at_once(
        clean: LiveSite) -> None:
    driver = clean.sipp()
    with driver.phone("101", clean.password("101"), behaviour="answer") as alice, \
            driver.phone("102", clean.password("102"), behaviour="ignore") as bruno:
        call, in_ivr = while_calling(
            clean, lambda: from_provider(clean, MAIN, dtmf="1", dtmf_delay=1.0,
                                         hold_seconds=3),
            lambda apps: ("BackGround", f"wildix-ast/{PROMPT}") in apps)
        alice.uas.wait(timeout=20)
        bruno.uas.wait(timeout=20)
    assert in_ivr, "the IVR's prompt never played"
    assert call.connected, call.run.describe()
    (rung_alice,), (rung_bruno,) = invites(alice), invites(bruno)
    # ring all: both phones ring together; 102 is cancelled once 101 answers
    assert rung_alice.time is not None and rung_bruno.time is not None
    assert abs(rung_alice.time - rung_bruno.time) < 1.0
    assert len(cancels(bruno)) == 1
    # the provider's national caller number reaches the phones in E.164
    assert from_user(rung_alice) == from_user(rung_bruno) == "+33612345678"


def test_hunt_rings_the_members_one_after_the_other(clean: LiveSite) -> None:
    driver = clean.sipp()
    with driver.phone("101", clean.password("101"), behaviour="ignore") as alice, \
            driver.phone("102", clean.password("102"), behaviour="answer") as bruno:
        call = from_provider(clean, HUNT, dtmf="1", dtmf_delay=1.0, hold_seconds=6)
        alice.uas.wait(timeout=20)
        bruno.uas.wait(timeout=20)
    assert call.connected, call.run.describe()
    (rung_alice,), (rung_bruno,) = invites(alice), invites(bruno)
    assert len(cancels(alice)) == 1  # 101 rang its 3 seconds, then the next member
    assert rung_alice.time is not None and rung_bruno.time is not None
    assert 2.5 <= rung_bruno.time - rung_alice.time <= 6.0


def test_round_robin_starts_each_call_one_member_further(clean: LiveSite) -> None:
    driver = clean.sipp()
    with driver.phone("101", clean.password("101"), behaviour="answer", calls=0) as alice, \
            driver.phone("102", clean.password("102"), behaviour="answer", calls=0) as bruno:
        first = from_provider(clean, ROUND, dtmf="1", dtmf_delay=1.0, hold_seconds=1)
        after_first = (len(invites(alice)), len(invites(bruno)))
        second = from_provider(clean, ROUND, dtmf="1", dtmf_delay=1.0, hold_seconds=1)
        after_second = (len(invites(alice)), len(invites(bruno)))
    assert first.connected and second.connected, second.run.describe()
    assert after_first == (1, 0)  # 101 first, answered
    assert after_second == (1, 1)  # then 102 first, answered


def test_random_starts_each_call_with_a_member_picked_at_random(clean: LiveSite) -> None:
    # Both members answer: whoever rings first takes the call. Over 14 calls both must be
    # first at least once (a correct random start fails this once in 8,192 runs); a start
    # that never moves (hunt) or alternates (round robin) is told apart by the order.
    driver = clean.sipp()
    firsts: list[str] = []
    with driver.phone("101", clean.password("101"), behaviour="answer", calls=0) as alice, \
            driver.phone("102", clean.password("102"), behaviour="answer", calls=0) as bruno:
        for _ in range(14):
            before = (len(invites(alice)), len(invites(bruno)))
            call = from_provider(clean, RANDOM, dtmf="1", dtmf_delay=1.0, hold_seconds=1)
            assert call.connected, call.run.describe()
            rung = (len(invites(alice)) - before[0], len(invites(bruno)) - before[1])
            assert rung in ((1, 0), (0, 1)), rung  # one member rang, and answered
            firsts.append("101" if rung == (1, 0) else "102")
    assert set(firsts) == {"101", "102"}, firsts
    alternating = all(a != b for a, b in itertools.pairwise(firsts))
    assert not alternating, firsts  # round robin's pattern, 1 in 8,192 by chance


def test_no_key_replays_the_prompt_then_goes_to_the_timeout_target(clean: LiveSite
                                                                   ) -> None:
    prompts: list[float] = []

    def seen(apps: set[tuple[str, str]]) -> bool:
        if ("BackGround", f"wildix-ast/{PROMPT}") in apps and (
                not prompts or time.monotonic() - prompts[-1] > 2.0):
            prompts.append(time.monotonic())
        return any(app == "VoiceMail" and data.startswith("102@default") for app, data in apps)

    call, in_voicemail = while_calling(clean, lambda: from_provider(clean, MAIN,
                                                                    hold_seconds=12),
                                       seen, timeout=20)
    assert call.connected, call.run.describe()
    assert in_voicemail, "no key: the call never reached the timeout target"
    assert len(prompts) == 2  # played, then replayed once (repeat: 1)


@pytest.mark.parametrize(("keys", "mailbox"), [("77", "101"), ("7", "102")],
                         ids=["two-wrong-keys", "one-wrong-key-then-none"])
def test_a_wrong_key_replays_the_prompt_then_goes_to_the_invalid_target(
        clean: LiveSite, keys: str, mailbox: str) -> None:
    """7 is no option. The first wrong key replays the prompt (repeat: 1); a second one
    leaves for the invalid target (101's voicemail), while no key after the replay leaves
    for the timeout target (102's): wrong keys and timeouts share the tries."""
    def seen(apps: set[tuple[str, str]]) -> bool:
        return any(app == "VoiceMail" and data.startswith(f"{mailbox}@default")
                   for app, data in apps)

    call, in_voicemail = while_calling(
        clean, lambda: from_provider(clean, MAIN, dtmf=keys, dtmf_delay=1.0,
                                     hold_seconds=9),
        seen, timeout=15)
    assert call.connected, call.run.describe()
    assert in_voicemail, f"keys {keys!r}: the call never reached {mailbox}'s voicemail"


@pytest.mark.parametrize("did", [HOLIDAY, TOMORROW], ids=["holiday", "another-day"])
def test_outside_the_time_frame_the_caller_reaches_voicemail(clean: LiveSite,
                                                             did: str) -> None:
    driver = clean.sipp()
    with driver.phone("101", clean.password("101"), behaviour="answer", calls=0) as alice:
        call, in_voicemail = while_calling(
            clean, lambda: from_provider(clean, did, hold_seconds=3),
            lambda apps: any(app == "VoiceMail" and data.startswith("101@default")
                             for app, data in apps))
    assert call.connected, call.run.describe()
    assert in_voicemail, "the call never reached 101's voicemail"
    assert invites(alice) == []  # nobody was rung: neither the IVR nor a group ran


def test_a_users_office_did_rings_that_user(clean: LiveSite) -> None:
    driver = clean.sipp()
    with driver.phone("102", clean.password("102"), behaviour="answer") as bruno:
        call = from_provider(clean, "0140000102", hold_seconds=1)  # national: normalised
        bruno.uas.wait(timeout=20)
    assert call.connected, call.run.describe()
    (invite,) = invites(bruno)
    assert from_user(invite) == "+33612345678"


def test_a_did_the_trunk_does_not_carry_is_refused(clean: LiveSite) -> None:
    refused = from_provider(clean, "+33150000000", expect="reject")
    assert refused.final_status == 404, refused.run.describe()


def test_asterisk_loaded_the_procedures_without_a_warning(live: LiveSite) -> None:
    log = (live.lab.log_dir / "messages.log").read_text(encoding="utf-8", errors="replace")
    warnings = [line for line in log.splitlines() if "WARNING" in line
                # no FastAGI service runs here: calls to users take the direct path, loudly
                and "res_agi.c: Connecting to" not in line
                and "FastAGI failed" not in line]
    assert warnings == []
