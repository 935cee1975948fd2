"""The call path's settings without Asterisk: freephone numbers, the trunk's caller-name rule
and setup timeout, the SIP User-Agent, voicemail PIN length, and what the dialplan makes of
them (the live calls are in test_emergency_calls.py)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pydantic import ValidationError
from test_render_injection import values

from wildix_ast.asterisk.render import render_site
from wildix_ast.model.call_classes import CallClass, DialplanGeneral, NumberingPlan
from wildix_ast.model.settings_file import load_site
from wildix_ast.model.site import Site
from wildix_ast.model.system import SipRtp
from wildix_ast.model.trunks import CallerName, Trunk
from wildix_ast.services.agi.voicemail_logins import LoginGuard
from wildix_ast.store.vault import VOICEMAIL_PIN_DIGITS, MemoryVault, with_secrets

FRANCE = NumberingPlan.of(DialplanGeneral(), "33")
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "site.yaml"


@pytest.mark.parametrize(("dialled", "expected"), [
    ("0800123456", CallClass.NATIONAL), ("0805123456", CallClass.NATIONAL),
    ("0806123456", CallClass.PREMIUM), ("0899123456", CallClass.PREMIUM),
    ("0810123456", CallClass.PREMIUM)])
def test_france_freephone_numbers_are_national(dialled: str, expected: CallClass) -> None:
    found = FRANCE.classify(dialled)
    assert found is not None and found[0] is expected


@pytest.mark.parametrize(("caller_id", "given", "expected"), [
    ("main_number", None, CallerName.NONE), ("anonymous", None, CallerName.NONE),
    ("office_did", None, CallerName.USER), ("main_number", "user", CallerName.USER),
    ("office_did", "trunk", CallerName.TRUNK)])
def test_caller_name_rule(caller_id: str, given: str | None, expected: CallerName) -> None:
    trunk = Trunk.model_validate({"name": "t", "auth": "ip", "host": "192.0.2.1",
                                  "caller_id": caller_id, "main_number": "+33140000000",
                                  "caller_name": given})
    assert trunk.effective_caller_name is expected


@pytest.mark.parametrize("agent", ["", "PBX; evil=1", "PBX\nVia: x", "a b", "[x]", "x" * 65])
def test_user_agent_admits_a_sip_token_only(agent: str) -> None:
    with pytest.raises(ValidationError):
        SipRtp.model_validate({"user_agent": agent})


@pytest.mark.parametrize("seconds", [0, 61])
def test_setup_timeout_is_bounded(seconds: int) -> None:
    with pytest.raises(ValidationError):
        Trunk.model_validate({"name": "t", "auth": "ip", "host": "192.0.2.1",
                              "setup_timeout": seconds})


@pytest.fixture(scope="module")
def files() -> dict[str, str]:
    site = load_site(EXAMPLE)
    return render_site(with_secrets(site, MemoryVault()), manager_secret="Manager-Secret-42")


def test_user_agent_is_neutral_by_default(files: dict[str, str]) -> None:
    site: Site = load_site(EXAMPLE)
    (agent,) = values(files, "pjsip.conf", "global", "user_agent")
    assert agent == "PBX"
    assert site.system.pbx_name not in agent and "wildix" not in agent.lower()


def test_trunks_are_qualified_by_default(files: dict[str, str]) -> None:
    assert values(files, "pjsip.conf", "trunk-operateur", "qualify_frequency") == ["30"]


def test_voicemail_pins_have_six_digits_and_asterisk_refuses_shorter(
        files: dict[str, str]) -> None:
    assert VOICEMAIL_PIN_DIGITS >= 6
    assert values(files, "voicemail.conf", "general", "minpassword") == [
        str(VOICEMAIL_PIN_DIGITS)]
    pins = [v.split(",")[0] for v in values(files, "voicemail.conf", "default", "101")
            + values(files, "voicemail.conf", "default", "102")]
    assert pins and all(p.isdigit() and len(p) >= 6 for p in pins)


def test_wrong_pins_lock_a_mailbox_until_the_window_passes(tmp_path: Path) -> None:
    guard = LoginGuard(tmp_path / "state" / "logins.sqlite3", max_failures=3, window=600)
    assert [guard.failed("101", "102", now=t) for t in (0, 10)] == [None, None]
    assert guard.failed("102", "100", now=20) is None  # another mailbox counts apart
    lock = guard.failed("101", "102", now=30)
    assert lock is not None and (lock.failures, lock.until) == (3, 600)
    assert guard.locked("101", now=599) is not None
    assert guard.locked("101", now=601) is None  # the first failure left the window
    assert [lk.mailbox for lk in guard.locks(now=300)] == ["101"]
    assert stat.S_IMODE((tmp_path / "state" / "logins.sqlite3").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700


def test_clearing_a_mailbox_unlocks_it(tmp_path: Path) -> None:
    guard = LoginGuard(tmp_path / "logins.sqlite3", max_failures=2)
    guard.failed("101", "102")
    assert guard.failed("101", "102") is not None
    assert guard.clear("101") == 2
    assert guard.locked("101") is None and guard.locks() == []


def _fail_times(path: str, count: int) -> None:
    guard = LoginGuard(Path(path), max_failures=1000)
    for _ in range(count):
        guard.failed("102", "101")


def test_wrong_pins_counted_from_several_processes_at_once_lose_none(tmp_path: Path) -> None:
    """Every FastAGI session records its failure in its own connection: four processes
    recording 10 each at the same time leave exactly 40, and the lock sees them all."""
    import multiprocessing

    path = tmp_path / "logins.sqlite3"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_fail_times, args=(str(path), 10)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    lock = LoginGuard(path, max_failures=40).locked("102")
    assert lock is not None and lock.failures == 40


def test_a_recorder_killed_mid_write_leaves_nothing_half_done(tmp_path: Path) -> None:
    """A process killed (SIGKILL) inside its write transaction: its failure is not counted,
    the file stays usable, and the next failure is recorded."""
    import subprocess
    import sys

    path = tmp_path / "logins.sqlite3"
    guard = LoginGuard(path, max_failures=2)
    guard.failed("102", "101")
    code = ("import os, signal, sqlite3, sys\n"
            "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "db.execute('BEGIN IMMEDIATE')\n"
            "db.execute('INSERT INTO failures (mailbox, at) VALUES (\"102\", 4e9)')\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n")
    killed = subprocess.run([sys.executable, "-c", code, str(path)], check=False)
    assert killed.returncode == -9
    assert guard.locked("102") is None  # one failure counted: the killed one is not
    assert guard.failed("102", "101") is not None  # the file takes the next one
