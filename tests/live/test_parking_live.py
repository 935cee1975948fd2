"""Park orbits on a real Asterisk 22 (issue 7, must-show 6): a phone blind-transfers its
caller to an orbit (SIP REFER), the call waits there with hold music, and another phone
dialling the orbit takes it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from support.live_site import LiveSite, live_site

pytestmark = pytest.mark.lab

ORBIT = "701"  # the example site's park orbit


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveSite]:
    with live_site(tmp_path_factory.mktemp("parking"), "parking") as site:
        yield site


def parked(live: LiveSite) -> str:
    return live.lab.cli(f"parking show orbit-{ORBIT}")


def wait_for(condition: object, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s: {what}")


def test_a_call_parked_on_an_orbit_is_picked_up_from_another_phone(live: LiveSite) -> None:
    sipp = live.sipp()
    with sipp.phone("102", live.password("102"), behaviour="transfer",
                    keys={"target": ORBIT}) as bruno, \
            ThreadPoolExecutor(1) as pool:
        # Alice calls Bruno; Bruno answers and transfers her to the orbit. Her call lasts
        # until someone hangs up on her (at most 20 s).
        alice = pool.submit(sipp.call, "101", live.password("101"), "102", 20.0)
        wait_for(lambda: "PJSIP/101-" in parked(live), "Alice parked on the orbit")
        shown = " ".join(parked(live).split())
        assert f"Space : {ORBIT} Channel : PJSIP/101-" in shown
        # unanswered, she would ring Bruno again, who parked her
        assert "Parker Dial String : PJSIP/102" in shown
        assert "Comeback to Origin : yes" in shown
        # waiting, she hears the lot's hold music
        assert "MusicOnHold Class : default" in shown
        assert "PJSIP/102-" not in live.lab.cli("core show channels")  # Bruno left
        # The reception dials the orbit and talks with her for 2 s, then hangs up.
        reception = sipp.call("100", live.password("100"), ORBIT, 2.0)
        assert reception.success, reception.run.describe()
        result = alice.result(timeout=30)
        bruno.uas.wait()
    assert result.connected and result.hangup_by == "remote", result.run.describe()
    assert result.duration < 18  # taken off the orbit, not ended by her own timeout
    assert "PJSIP/101-" not in parked(live)
    assert live.wait_no_channels() == 0


def test_dialling_an_empty_orbit_says_none_is_parked(live: LiveSite) -> None:
    result = live.sipp().call("100", live.password("100"), ORBIT, 10.0)
    # ParkedCall answers, plays pbx-invalidpark in the caller's language, hangs up
    assert result.connected and result.hangup_by == "remote", result.run.describe()
    assert live.wait_no_channels() == 0
