"""`wildix-ast test-call` (WMS "Générer un appel") on the example site running on a real
Asterisk 22, originated through the lab's console and followed with the AMI service's own
account: the echo test and a user's phone are
answered, a busy phone is reported busy with its cause, an unknown number fails; no channel
is left."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from support.live_site import LiveSite

pytestmark = pytest.mark.lab


def run_test_call(live: LiveSite, *args: str) -> tuple[int, dict[str, object]]:
    done = subprocess.run(
        [sys.executable, "-m", "wildix_ast", "test-call", "--json", "--lab", live.lab.name,
         *args],
        capture_output=True, text=True, timeout=90, check=False,
        env={**os.environ, "WILDIX_AST_DB": str(live.work / "store.sqlite3"),
             "WILDIX_AST_LAB_STATE": str(live.lab.dir.parent)})
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout)


def test_echo_test_is_answered_and_lasts_the_hold_time(clean_live: LiveSite) -> None:
    code, result = run_test_call(clean_live, "--echo", "--from", "101", "--hold", "1.5")
    assert code == 0, result
    assert result["result"] == "answered" and result["channels_left"] == 0
    assert result["number"] == "*43" and result["context"] == "proc-users"
    assert 1.3 < float(result["duration"]) < 4  # type: ignore[arg-type]


def test_a_users_phone_answers_and_a_busy_room_is_busy(clean_live: LiveSite) -> None:
    sipp = clean_live.sipp()
    with sipp.phone("102", clean_live.password("102"), behaviour="answer") as phone:
        code, result = run_test_call(clean_live, "102", "--from", "101", "--hold", "1")
        assert code == 0, result
        assert result["result"] == "answered"
        assert phone.uas.wait(timeout=10).answered == 1
    # A busy person goes to voicemail (answered); a meeting room has no mailbox.
    with sipp.phone("150", clean_live.password("150"), behaviour="busy"):
        code, result = run_test_call(clean_live, "150", "--from", "101", "--ring-timeout", "10")
    assert code == 1
    assert result["result"] == "busy", result
    assert result["cause"] == 17 and result["channels_left"] == 0


def test_an_unknown_number_fails_with_a_clear_error(clean_live: LiveSite) -> None:
    code, result = run_test_call(clean_live, "4999", "--from", "101")
    assert code == 1 and result["result"] in ("failed", "no answer"), result
    assert result["channels_left"] == 0
    done = subprocess.run(
        [sys.executable, "-m", "wildix_ast", "test-call", "102", "--from", "999",
         "--ami-port", str(clean_live.compiled.ami_port)], capture_output=True, text=True,
        timeout=30, check=False,
        env={**os.environ, "WILDIX_AST_DB": str(clean_live.work / "store.sqlite3")})
    assert done.returncode == 1 and "--from 999: no user" in done.stderr
