"""Real calls on a live Asterisk 22 running the example site: SIPp phones register with the
users' generated SIP passwords and call each other. Every test ends with no channel left."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from support.live_site import TEST_RING_TIMEOUT, LiveSite

from wildix_ast.lab.sipp import CallResult, SippDriver

pytestmark = pytest.mark.lab


def channel_applications(live: LiveSite) -> list[tuple[str, str]]:
    async def ask() -> list[dict[str, str]]:
        async with live.ami() as ami:
            return await ami.action_list("CoreShowChannels", "CoreShowChannelsComplete")

    return [(c.get("Application", ""), c.get("ApplicationData", "")) for c in asyncio.run(ask())]


def call_watching_applications(live: LiveSite, driver: SippDriver, caller: str, callee: str,
                               hold: float) -> tuple[CallResult, set[tuple[str, str]]]:
    """Place a call and record which dialplan applications Asterisk ran while it was up."""
    seen: set[tuple[str, str]] = set()
    result: dict[str, Any] = {}

    def place() -> None:
        result["call"] = driver.call(caller, live.password(caller), callee, hold_seconds=hold)

    thread = threading.Thread(target=place)
    thread.start()
    while thread.is_alive():
        seen.update(channel_applications(live))
        time.sleep(0.3)
    thread.join()
    return result["call"], seen


def test_users_register_with_their_generated_passwords(clean_live: LiveSite) -> None:
    driver = clean_live.sipp()
    for ext in ("101", "102"):
        registration = driver.register(ext, clean_live.password(ext))
        assert registration.registered, registration.run.describe()
        driver.unregister(ext, clean_live.password(ext), contact_port=registration.contact_port)


def test_wrong_password_is_rejected(clean_live: LiveSite) -> None:
    refused = clean_live.sipp().register("101", "Wr0ng#Password", expect="rejected")
    assert refused.ok and not refused.registered
    assert refused.status in (401, 403)


def test_101_calls_102_who_answers(clean_live: LiveSite) -> None:
    driver = clean_live.sipp()
    with driver.phone("102", clean_live.password("102"), behaviour="answer") as phone:
        call = driver.call("101", clean_live.password("101"), "102", hold_seconds=2)
        seen = phone.uas.wait(timeout=15)
    assert call.success, call.run.describe()
    assert call.connected and call.hangup_by == "local"
    assert seen.invites == 1 and seen.answered == 1 and seen.byes == 1


def test_unknown_endpoint_cannot_call(clean_live: LiveSite) -> None:
    call = clean_live.sipp().call("555", "Some#Passw0rd", "102", expect="reject")
    assert call.success and not call.connected
    assert call.final_status in (401, 403)


def test_wrong_password_cannot_call(clean_live: LiveSite) -> None:
    call = clean_live.sipp().call("101", "Wr0ng#Password", "102", expect="reject")
    assert call.success and not call.connected
    assert call.final_status in (401, 403)


def test_busy_user_sends_the_caller_to_voicemail(clean_live: LiveSite) -> None:
    driver = clean_live.sipp()
    with driver.phone("102", clean_live.password("102"), behaviour="busy") as phone:
        call, apps = call_watching_applications(clean_live, driver, "101", "102", hold=3)
        busy = phone.uas.wait(timeout=15)
    assert busy.busy == 1
    assert call.connected, call.run.describe()
    assert ("VoiceMail", "102@default,b") in apps


def test_unanswered_call_goes_to_voicemail_after_ring_timeout(clean_live: LiveSite) -> None:
    driver = clean_live.sipp()
    with driver.phone("102", clean_live.password("102"), behaviour="ignore") as phone:
        started = time.monotonic()
        call, apps = call_watching_applications(clean_live, driver, "101", "102", hold=2)
        elapsed = time.monotonic() - started
        phone.uas.wait(timeout=15)
    assert call.connected, call.run.describe()
    assert ("VoiceMail", "102@default,u") in apps
    assert elapsed >= TEST_RING_TIMEOUT


def test_echo_feature_code_answers(clean_live: LiveSite) -> None:
    call, apps = call_watching_applications(clean_live, clean_live.sipp(), "101", "*43", hold=2)
    assert call.connected and call.hangup_by == "local", call.run.describe()
    assert any(app == "Echo" for app, _ in apps)


def test_park_orbit_has_no_endpoint(clean_live: LiveSite) -> None:
    async def endpoints() -> set[str]:
        async with clean_live.console() as ami:
            return await ami.endpoints()

    found = asyncio.run(endpoints())
    assert {"101", "102", "100", "150", "190"} <= found
    assert "701" not in found
