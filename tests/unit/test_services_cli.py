"""The services as processes: systemd notifications (readiness, watchdog), the overload
answer, `wildix-ast runtime` and `security` reading a state folder, `wildix-ast status`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wildix_ast.calls import variables as v
from wildix_ast.errors import ServiceError, SettingsError, WildixError
from wildix_ast.services.agi.probe import probe
from wildix_ast.services.agi.server import (
    FAILED,
    AgiServer,
    Decision,
    Limits,
    Route,
)
from wildix_ast.services.agi.session import AgiSession
from wildix_ast.services.ami.ban_file import BANS_FILE, save_bans
from wildix_ast.services.ami.call_log import LoggedEvent, LogWriter
from wildix_ast.services.ami.security import Ban
from wildix_ast.services.ami.service import CALLS_FILE, STATUS_FILE

pytestmark = pytest.mark.slow  # runs the CLI as processes

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "site.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wildix_ast(*args: str, env: dict[str, str] | None = None
               ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wildix_ast", *args], capture_output=True,
                          text=True, timeout=60, check=False,
                          env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200", **(env or {})})


def test_agi_serve_notifies_systemd_and_stops_pinging_when_stalled(tmp_path: Path) -> None:
    """READY=1 once listening, WATCHDOG=1 every WatchdogSec/2 from the event loop; a stalled
    process (SIGSTOP) stops pinging, so systemd would kill it."""
    address = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(address)
        notify.settimeout(10)
        process = subprocess.Popen(
            [sys.executable, "-m", "wildix_ast", "agi", "serve", "--port", "0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            # its own store: the watchdog is fed only while the store can be read
            env={**os.environ, "NOTIFY_SOCKET": address, "WATCHDOG_USEC": "200000",
                 "WILDIX_AST_DB": str(tmp_path / "store.sqlite3")})
        try:
            messages = [notify.recv(4096).decode() for _ in range(4)]
            assert any(m.startswith("READY=1") for m in messages), messages
            assert messages.count("WATCHDOG=1") >= 2
            os.kill(process.pid, signal.SIGSTOP)
            time.sleep(0.3)
            notify.settimeout(0.1)
            while True:  # drain what was sent before the stop
                try:
                    notify.recv(4096)
                except TimeoutError:
                    break
            notify.settimeout(0.6)
            stalled = []
            with contextlib.suppress(TimeoutError):
                stalled.append(notify.recv(4096))
            assert stalled == []
        finally:
            os.kill(process.pid, signal.SIGCONT)
            process.terminate()
            process.wait(timeout=15)
        assert process.returncode == 0


def test_overload_answers_failed_at_once() -> None:
    async def held(_session: AgiSession) -> Decision:
        await asyncio.sleep(1.0)
        return Decision()

    async def go() -> None:
        server = AgiServer({"held": Route.session(held, timeout=5)}, Limits(max_sessions=2))
        port = (await server.start("127.0.0.1", 0))[1]
        try:
            busy = [asyncio.create_task(probe("127.0.0.1", port, "held")) for _ in range(2)]
            await asyncio.sleep(0.2)
            start = time.monotonic()
            result = await probe("127.0.0.1", port, "held")
            assert time.monotonic() - start < 0.5
            assert result.variables == {v.AGI_ERROR: "overloaded", v.AGI_STATUS: FAILED}
            assert [r.variables[v.AGI_STATUS] for r in await asyncio.gather(*busy)] == \
                ["OK", "OK"]
        finally:
            await server.close()

    asyncio.run(go())


def test_runtime_commands_read_the_state_folder(tmp_path: Path) -> None:
    now = time.time()
    status = {"updated": now, "ami": {"address": "127.0.0.1:5038", "connected": True,
                                      "connected_since": now, "connections": 1,
                                      "last_error": ""},
              "pbx": {"version": "22.10.1", "devices": {"PJSIP/101": "NOT_INUSE",
                                                        "PJSIP/102": "UNAVAILABLE"},
                      "contacts": {}, "channels": []},
              "bans": []}
    (tmp_path / STATUS_FILE).write_text(json.dumps(status))
    done = wildix_ast("runtime", "status", "--state-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "connected, Asterisk 22.10.1" in done.stdout and "PJSIP/102" in done.stdout

    status["ami"]["connected"] = False  # type: ignore[index]
    status["ami"]["last_error"] = "lost the AMI connection"  # type: ignore[index]
    (tmp_path / STATUS_FILE).write_text(json.dumps(status))
    done = wildix_ast("runtime", "status", "--state-dir", str(tmp_path))
    assert done.returncode == ServiceError.exit_code and "not connected to Asterisk" in done.stderr

    status["updated"] = now - 60
    (tmp_path / STATUS_FILE).write_text(json.dumps(status))
    done = wildix_ast("runtime", "status", "--state-dir", str(tmp_path))
    assert done.returncode == ServiceError.exit_code and "not running" in done.stderr

    writer = LogWriter(tmp_path / CALLS_FILE)
    writer.write(LoggedEvent(now, {"Event": "Newchannel", "Uniqueid": "1.1", "Linkedid": "1.1",
                                   "Channel": "PJSIP/101-1", "CallerIDNum": "101",
                                   "Exten": "102"}))
    writer.write(LoggedEvent(now + 1, {"Event": "Hangup", "Uniqueid": "1.1",
                                       "Linkedid": "1.1", "Channel": "PJSIP/101-1",
                                       "Cause-txt": "Normal Clearing"}))
    writer.close()
    by_id = wildix_ast("runtime", "call", "1.1", "--state-dir", str(tmp_path))
    by_number = wildix_ast("runtime", "call", "--number", "102", "--state-dir", str(tmp_path))
    assert by_id.returncode == 0 and by_id.stdout == by_number.stdout
    assert "from 101 to 102" in by_id.stdout and "Cause-txt=Normal Clearing" in by_id.stdout
    missing = wildix_ast("runtime", "call", "9.9", "--state-dir", str(tmp_path))
    assert missing.returncode == ServiceError.exit_code and "no call 9.9" in missing.stderr

    save_bans(tmp_path, {"198.51.100.7": Ban("198.51.100.7", now, now + 600, 20,
                                             "InvalidAccountID")})
    assert "198.51.100.7" in wildix_ast("security", "bans", "--state-dir", str(tmp_path)).stdout
    listed = json.loads(wildix_ast("security", "bans", "--json", "--state-dir",
                                   str(tmp_path)).stdout)
    assert [b["address"] for b in listed["bans"]] == ["198.51.100.7"]
    assert "198.51.100.7" in wildix_ast("runtime", "bans", "--state-dir", str(tmp_path)).stdout
    assert wildix_ast("security", "unban", "198.51.100.7", "--state-dir",
                      str(tmp_path)).returncode == 0
    assert json.loads((tmp_path / BANS_FILE).read_text()) == {"bans": []}
    again = wildix_ast("security", "unban", "198.51.100.7", "--state-dir", str(tmp_path))
    assert again.returncode == WildixError.exit_code and "is not banned" in again.stderr
    bad = wildix_ast("security", "unban", "nope", "--state-dir", str(tmp_path))
    assert bad.returncode == SettingsError.exit_code and "not an IP address" in bad.stderr


def test_status_shows_users_calls_and_services(tmp_path: Path) -> None:
    db = tmp_path / "store.sqlite3"
    env = {"WILDIX_AST_DB": str(db)}
    assert wildix_ast("import", str(EXAMPLE), env=env).returncode == 0
    now = time.time()
    status = {"updated": now, "pid": 1, "events": 5,
              "ami": {"address": "127.0.0.1:5038", "connected": True, "connected_since": now,
                      "connections": 1, "last_error": ""},
              "pbx": {"version": "22.10.1",
                      "devices": {"PJSIP/101": "NOT_INUSE", "PJSIP/102": "UNAVAILABLE"},
                      "contacts": {},
                      "channels": [{"uniqueid": "1.1", "linkedid": "1.1", "name": "PJSIP/101-1",
                                    "state": "Up", "caller": "101", "exten": "102",
                                    "context": "users"}]},
              "bans": [], "enforcement": {"kind": "iptables", "chain": "wildix-ast-bans",
                                          "enforced": [], "error": ""}}
    (tmp_path / STATUS_FILE).write_text(json.dumps(status))
    port = free_port()  # nothing listens there: the FastAGI service is down
    done = wildix_ast("status", "--json", "--state-dir", str(tmp_path), "--agi-port",
                      str(port), env=env)
    assert done.returncode == ServiceError.exit_code, done.stderr
    view = json.loads(done.stdout)
    colours = {u["extension"]: u["colour"] for u in view["users"]}
    assert colours["101"] == "green" and colours["102"] == "gray"
    assert view["calls"][0]["caller"] == "101" and view["calls"][0]["callee"] == "102"
    health = {s["name"]: s["ok"] for s in view["services"]}
    assert health == {"AMI service": True, "Asterisk": True, "SIP bans": True,
                      "FastAGI service": False}
    assert "FastAGI service" in done.stderr

    async def with_agi() -> subprocess.CompletedProcess[str]:
        server = AgiServer({})
        _host, agi_port = await server.start("127.0.0.1", 0)
        try:
            return await asyncio.to_thread(
                wildix_ast, "status", "--state-dir", str(tmp_path), "--agi-port",
                str(agi_port), env=env)
        finally:
            await server.close()

    done = asyncio.run(with_agi())
    assert done.returncode == 0, done.stderr
    assert "101" in done.stdout and "1 of" in done.stdout and "FastAGI service" in done.stdout

    (tmp_path / STATUS_FILE).unlink()  # the AMI service is not running: all gray
    done = wildix_ast("status", "--json", "--state-dir", str(tmp_path), "--agi-port",
                      str(port), env=env)
    view = json.loads(done.stdout)
    assert done.returncode == ServiceError.exit_code
    assert {u["colour"] for u in view["users"]} == {"gray"} and view["ok"] is False
