"""The call history on a live Asterisk 22 (issue 19): real calls through the lab (answered,
busy, unanswered, internal, refused by class, out through a provider stand-in, in from a
trunk) each give exactly one record in SQLite, PostgreSQL, MariaDB and CSV at once, with its
disposition, direction, users, class and trunk, and durations within 1 s of what SIPp
measured. The collecting service runs as its own process (`wildix-ast cdr collect`)."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from support.agi_fixtures import agi_service
from support.live_site import LiveSite, example_site, live_site, without_trunk_procedures
from support.mariadb_server import MariaDBServer, mariadb_server  # noqa: F401
from support.pg_server import PostgresServer, postgres_server  # noqa: F401

from wildix_ast.calls.call_record import BRAKE_FOLDER
from wildix_ast.lab.allocator import free_port
from wildix_ast.lab.sipp import CallResult, SippDriver, UasHandle
from wildix_ast.model.preferences import Preferences
from wildix_ast.model.site import Site
from wildix_ast.model.trunks import Trunk, TrunkGroup

pytestmark = pytest.mark.lab

TRUNK = "127.0.0.2"  # the provider stand-in's address: calls from it come in by the trunk
REPO = Path(__file__).resolve().parents[2]


def _backend(kind: str, name: str, url: str) -> dict[str, Any]:
    parsed = make_url(url)
    return {"name": name, "kind": kind, "host": parsed.host, "port": parsed.port,
            "database": parsed.database, "user": parsed.username,
            "password": parsed.password}


def history_site(provider_port: int, work: Path, pg_url: str, maria_url: str) -> Site:
    base = without_trunk_procedures(example_site())
    trunk = Trunk(name="secours", auth="ip", host=TRUNK, port=provider_port,
                  caller_id="main_number", main_number="+33140000000", qualify_frequency=0)
    return Site.model_validate({
        **base.model_dump(exclude={"trunks", "trunk_groups"}),
        "trunks": [trunk.model_dump()],
        "trunk_groups": [TrunkGroup(name="sortants", trunks=["secours"]).model_dump()],
        "call_history": {"statistics": "local", "backends": [
            {"name": "local", "kind": "sqlite", "path": str(work / "history.sqlite3")},
            _backend("postgresql", "pg", pg_url), _backend("mysql", "maria", maria_url),
            {"name": "files", "kind": "csv", "folder": str(work / "csv")}],
            # the toll-fraud brake: one international call an hour for 101
            "limits": [{"call_class": "international", "scope": "user", "name": "101",
                        "calls": 1, "window_minutes": 60}]}})


@dataclass
class HistoryLab:
    site: Site
    live: LiveSite
    work: Path
    provider_port: int
    pg_url: str
    maria_url: str
    pg: PostgresServer
    maria: MariaDBServer
    collector: subprocess.Popen[bytes] | None = None

    @property
    def spool(self) -> Path:
        return self.work / "spool.sqlite3"

    @property
    def brake_dir(self) -> Path:
        lab = self.live.lab
        return lab.host_path(lab.paths.spool / BRAKE_FOLDER)

    def start_collector(self) -> None:
        env = {**os.environ, "WILDIX_AST_DB": str(self.live.work / "store.sqlite3")}
        self.collector = subprocess.Popen(
            [sys.executable, "-m", "wildix_ast", "cdr", "collect",
             "--log-dir", str(self.live.lab.log_dir), "--spool", str(self.spool),
             "--brake-dir", str(self.brake_dir)],
            env=env, stderr=open(self.work / "collector.log", "ab"))  # noqa: SIM115

    def kill_collector(self) -> None:
        if self.collector is not None:
            self.collector.send_signal(signal.SIGKILL)
            self.collector.wait(timeout=10)
            self.collector = None

    def stop_collector(self) -> None:
        if self.collector is not None:
            self.collector.terminate()
            self.collector.wait(timeout=30)
            self.collector = None

    def cli(self, *argv: str) -> Any:
        env = {**os.environ, "WILDIX_AST_DB": str(self.live.work / "store.sqlite3")}
        done = subprocess.run([sys.executable, "-m", "wildix_ast", *argv], env=env,
                              capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        return json.loads(done.stdout) if "--json" in argv else done.stdout

    def states(self) -> dict[str, dict[str, Any]]:
        found = self.cli("cdr", "backends", "--spool", str(self.spool), "--json")
        return {b["backend"]: b for b in found["backends"]}

    def rows(self, backend: str) -> list[dict[str, Any]]:
        if backend == "files":
            found: list[dict[str, Any]] = []
            for path in sorted((self.work / "csv").glob("*.csv")):
                with open(path, encoding="utf-8", newline="") as stream:
                    found += list(csv.DictReader(stream))
            return found
        url = {"local": f"sqlite:///{self.work / 'history.sqlite3'}", "pg": self.pg_url,
               "maria": self.maria_url}[backend]
        engine = create_engine(url)
        try:
            with engine.connect() as connection:
                return [dict(r) for r in connection.execute(
                    text("SELECT * FROM call_history")).mappings()]
        except Exception:  # the table is made with the first record
            return []
        finally:
            engine.dispose()

    def wait_records(self, backend: str, count: int, timeout: float = 20) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            rows = self.rows(backend)
            if len(rows) >= count or time.monotonic() > deadline:
                return rows
            time.sleep(0.2)


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory, postgres_server: PostgresServer,  # noqa: F811
            mariadb_server: MariaDBServer) -> Iterator[HistoryLab]:  # noqa: F811
    work = tmp_path_factory.mktemp("history")
    port = free_port(TRUNK)
    pg_url = postgres_server.create_database()
    maria_url = mariadb_server.create_database()
    site = history_site(port, work, pg_url, maria_url)
    with live_site(work / "lab", "history", site) as live:
        lab = HistoryLab(site, live, work, port, pg_url, maria_url, postgres_server,
                         mariadb_server)
        lab.start_collector()
        try:
            yield lab
        finally:
            lab.stop_collector()


def call(live: LiveSite, ext: str, number: str, **kwargs: Any) -> CallResult:
    return live.sipp().call(ext, live.password(ext), number, **kwargs)


def provider(live: LiveSite, port: int, calls: int = 1) -> UasHandle:
    driver = SippDriver(live.lab.ports.sip, local_ip=TRUNK, work_dir=live.work / "provider")
    return driver.answer("provider", behaviour="answer", port=port, calls=calls, timeout=60)


def from_trunk(live: LiveSite, caller: str, number: str, **kwargs: Any) -> CallResult:
    driver = SippDriver(live.lab.ports.sip, local_ip=TRUNK, work_dir=live.work / "trunk")
    return driver.call(caller, "unused-Secret-1", number, **kwargs)


@dataclass
class Placed:
    name: str
    began: float
    ended: float
    result: CallResult
    expected: dict[str, str]


def test_every_call_once_in_every_backend_with_its_meaning(history: HistoryLab) -> None:
    live = history.live
    driver = live.sipp()
    placed: list[Placed] = []

    def place(name: str, expected: dict[str, str], run: Any) -> None:
        began = time.time()
        result = run()
        placed.append(Placed(name, began, time.time(), result, expected))
        assert live.wait_no_channels() == 0
        time.sleep(0.3)  # calls well apart: each record is told by its start

    with driver.phone("102", live.password("102"), behaviour="answer"):
        place("internal answered", {"disposition": "answered", "direction": "internal",
                                    "caller_user": "101", "callee_user": "102"},
              lambda: call(live, "101", "102", hold_seconds=2))
    with driver.phone("102", live.password("102"), behaviour="busy"):
        place("busy", {"disposition": "busy", "direction": "internal",
                       "caller_user": "101", "callee_user": "102", "voicemail": "102"},
              lambda: call(live, "101", "102", hold_seconds=1))
    with driver.phone("102", live.password("102"), behaviour="ignore"):
        place("no answer", {"disposition": "no_answer", "direction": "internal",
                            "caller_user": "101", "callee_user": "102"},
              lambda: call(live, "101", "102", hold_seconds=1))
    with provider(live, history.provider_port):
        place("outgoing", {"disposition": "answered", "direction": "outgoing",
                           "caller_user": "102", "trunk": "secours", "call_class": "national",
                           "callee_number": "+33140000000"},
              lambda: call(live, "102", "0140000000", hold_seconds=2))
    place("refused by class", {"disposition": "refused_class", "direction": "outgoing",
                               "caller_user": "102", "call_class": "international"},
          lambda: call(live, "102", "0044201234567", expect="reject"))
    with driver.phone("102", live.password("102"), behaviour="answer"):
        place("incoming", {"disposition": "answered", "direction": "incoming",
                           "callee_user": "102", "trunk": "secours",
                           "caller_number": "+33612345678"},
              lambda: from_trunk(live, "+33612345678", "+33140000102", hold_seconds=2))
    # forwarded: 102 is busy and forwards to 100 (a user preference, read by the FastAGI
    # service): one call, two legs, answered by 100
    live.store.change_preferences("102", lambda _: Preferences.model_validate(
        {"internal": {"forward_busy": "100"}}))
    try:
        with agi_service("--port", str(live.lab.ports.agi),
                         "--db", str(live.work / "store.sqlite3")), \
                driver.phone("102", live.password("102"), behaviour="busy"), \
                driver.phone("100", live.password("100"), behaviour="answer"):
            place("forwarded", {"disposition": "answered", "direction": "internal",
                                "caller_user": "101", "callee_user": "100", "dialled": "102"},
                  lambda: call(live, "101", "102", hold_seconds=2))
    finally:
        live.store.change_preferences("102", lambda _: Preferences())
    for p in placed:
        expect_connected = p.expected["disposition"] != "refused_class"
        assert p.result.connected == expect_connected, (p.name, p.result.run.describe())

    worst = 0.0
    for backend in ("local", "pg", "maria", "files"):
        rows = history.wait_records(backend, len(placed))
        ids = [r["call_id"] for r in rows]
        assert len(ids) == len(set(ids)) == len(placed), (backend, ids)
        for p in placed:
            mine = [r for r in rows if p.began - 0.05 <= float(r["start"]) <= p.ended]
            assert len(mine) == 1, (backend, p.name, [(r["start"], r["disposition"])
                                                      for r in rows])
            (row,) = mine
            for key, value in p.expected.items():
                assert str(row[key]) == value, (backend, p.name, key, row)
            # SIPp's own run covers the call from its INVITE to the end of the BYE exchange
            if p.result.connected:
                gap = abs(float(row["duration"]) - p.result.duration)
                worst = max(worst, gap)
                assert gap <= 1.0, (backend, p.name, row["duration"], p.result.duration)
            if row["caller_user"]:  # a user's calls go through its dialplan procedure
                assert row["handled_by"] == "procedure:users", (backend, p.name, row)
            legs = json.loads(row["legs"])
            assert legs and all(leg["linkedid"] == row["call_id"] for leg in legs)
            if p.name == "forwarded":
                assert {leg["dstchannel"].split("-")[0] for leg in legs} >= \
                    {"PJSIP/102", "PJSIP/100"}, legs

    print(f"{len(placed)} calls, 4 backends: record duration vs SIPp's at most {worst:.3f} s "
          "apart")

    # reading it back from the statistics backend (the local SQLite)
    listed = history.cli("cdr", "list", "--trunk", "secours", "--json")["calls"]
    assert sorted(c["direction"] for c in listed) == ["incoming", "outgoing"]
    refused = history.cli("cdr", "list", "--disposition", "refused_class", "--json")["calls"]
    assert [c["dialled"] for c in refused] == ["0044201234567"]
    per_user = {r["key"]: r for r in history.cli("cdr", "stats", "--by", "user",
                                                 "--json")["rows"]}
    assert per_user["101"]["calls"] == 4 and per_user["102"]["calls"] == 2
    table = history.cli("cdr", "list", "--csv", "--user", "100")
    assert table.count("\n") == 2 and table.startswith("call_id,")
    states = history.states()
    assert all(states[b]["state"] == "ok" for b in ("local", "pg", "maria", "files")), states


def test_toll_fraud_brake_refuses_the_next_international_call_until_cleared(
        history: HistoryLab) -> None:
    live = history.live
    with provider(live, history.provider_port, calls=3):
        first = call(live, "101", "0044201234567", hold_seconds=1)
        assert first.connected, first.run.describe()
        deadline = time.monotonic() + 10
        while not history.cli("cdr", "brake", "list", "--brake-dir", str(history.brake_dir),
                               "--json")["brakes"] and time.monotonic() < deadline:
            time.sleep(0.2)
        braked = call(live, "101", "0044201234568", expect="reject")
        national = call(live, "101", "0140000000", hold_seconds=0.5)
        history.cli("cdr", "brake", "clear", "101", "--brake-dir", str(history.brake_dir),
                    "--spool", str(history.spool), "--json")
        again = call(live, "101", "0044201234569", hold_seconds=0.5)
    assert braked.final_status == 403 and not braked.connected, braked.run.describe()
    assert national.connected, national.run.describe()
    assert again.connected, again.run.describe()
    assert "toll-fraud brake: user 101 may not call international" in \
        (history.work / "collector.log").read_text()
    time.sleep(2)
    refused = history.cli("cdr", "list", "--disposition", "over_limit", "--json")["calls"]
    assert [c["dialled"] for c in refused] == ["0044201234568"]


def test_wrong_password_and_a_full_disk_then_fixed(history: HistoryLab) -> None:
    """PostgreSQL refuses the password, the CSV folder's disk is full: `cdr backends` says
    which fail and why, SQLite and MariaDB keep receiving, and once fixed every call is in
    every backend once. (A missing table is made: the first test starts from none.)"""
    live = history.live
    full = history.work / "full-disk"
    full.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(full)], check=True)
    try:
        filler = os.open(full / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
        with contextlib.suppress(OSError):  # fill it up
            os.write(filler, b"x" * 65536)
        os.close(filler)
        data = history.site.model_dump(mode="json")
        for backend in data["call_history"]["backends"]:
            if backend["name"] == "pg":
                backend["password"] = "Not-The-Password-1"
            if backend["name"] == "files":
                backend["folder"] = str(full / "csv")
        history.stop_collector()
        live.store.import_site(Site.model_validate(data))
        history.start_collector()
        before = len(history.rows("local"))
        calls = 3
        result = live.sipp().call_load("101", live.password("101"), "*43", calls=calls,
                                       rate=3, limit=3, hold_seconds=0.5)
        assert result.successful == calls, result.run.describe()
        assert len(history.wait_records("local", before + calls)) == before + calls
        time.sleep(1)
        states = history.states()
        assert states["pg"]["state"] == "failing", states
        assert "password authentication failed" in states["pg"]["last_error"], states
        assert states["files"]["state"] == "failing", states
        assert "No space left" in states["files"]["last_error"], states
        assert states["maria"]["state"] == "ok", states
        assert states["local"]["state"] == "ok", states
        history.stop_collector()
        live.store.import_site(history.site)  # fixed
        history.start_collector()
        found = all_call_ids(history, before + calls)
        assert_once_everywhere(found, before + calls)
    finally:
        history.stop_collector()
        live.store.import_site(history.site)
        subprocess.run(["umount", str(full)], check=False)
        history.start_collector()


# --- outages and kills: nothing finished is lost, nothing doubled -------------------------

#: CI's short version; `WILDIX_AST_CDR_OUTAGE_CALLS=200 WILDIX_AST_CDR_OUTAGE_SECONDS=60`
#: is the issue's (about 2 minutes more).
OUTAGE_CALLS = int(os.environ.get("WILDIX_AST_CDR_OUTAGE_CALLS", "40"))
OUTAGE_SECONDS = float(os.environ.get("WILDIX_AST_CDR_OUTAGE_SECONDS", "20"))
BACKENDS = ("local", "pg", "maria", "files")


def all_call_ids(history: HistoryLab, expected: int, timeout: float = 60) -> dict[str, list[str]]:
    """Each backend's call ids once it holds `expected` records (or the timeout passed)."""
    return {b: [r["call_id"] for r in history.wait_records(b, expected, timeout)]
            for b in BACKENDS}


def assert_once_everywhere(found: dict[str, list[str]], expected: int) -> None:
    for backend, ids in found.items():
        assert len(ids) == len(set(ids)), (backend, "doubled")
        assert len(ids) == expected, (backend, len(ids), expected)
    reference = set(found["local"])
    assert all(set(ids) == reference for ids in found.values())


def test_databases_down_during_calls_then_every_call_once(history: HistoryLab) -> None:
    live = history.live
    before = len(history.rows("local"))
    rate = max(2.0, OUTAGE_CALLS / OUTAGE_SECONDS)
    load = live.sipp().start_call_load("101", live.password("101"), "*43",
                                       calls=OUTAGE_CALLS, rate=rate, limit=10,
                                       hold_seconds=0.5)
    history.pg.pause()
    history.maria.pause()
    outage_began = time.monotonic()
    try:
        time.sleep(min(OUTAGE_SECONDS, 8))
        states = history.states()
        # the others keep receiving while the databases are down, which say so
        assert states["pg"]["state"] == "failing" and states["pg"]["last_error"], states
        assert states["maria"]["state"] == "failing" and states["maria"]["last_error"], states
        assert states["local"]["state"] in ("ok", "lagging"), states
        assert len(history.rows("local")) > before
        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - outage_began)))
    finally:
        history.pg.resume()
        history.maria.resume()
    resumed = time.monotonic()
    result = load.wait()
    assert result.failed == 0 and result.successful == OUTAGE_CALLS, result.run.describe()
    assert live.wait_no_channels() == 0
    found = all_call_ids(history, before + OUTAGE_CALLS)
    assert_once_everywhere(found, before + OUTAGE_CALLS)
    print(f"outage {OUTAGE_SECONDS:g} s, {OUTAGE_CALLS} calls: every backend complete "
          f"{time.monotonic() - resumed:.1f} s after the databases came back")
    states = history.states()
    assert all(s["state"] == "ok" and s["behind"] == 0 for s in states.values()), states


def test_collector_killed_during_calls_loses_and_doubles_nothing(history: HistoryLab) -> None:
    live = history.live
    before = len(history.rows("local"))
    calls = 20
    load = live.sipp().start_call_load("101", live.password("101"), "*43", calls=calls,
                                       rate=4, limit=10, hold_seconds=0.3)
    for _ in range(3):  # killed three times, at different points of its work
        time.sleep(1.3)
        history.kill_collector()
        time.sleep(0.4)
        history.start_collector()
    result = load.wait()
    assert result.failed == 0 and result.successful == calls, result.run.describe()
    found = all_call_ids(history, before + calls)
    assert_once_everywhere(found, before + calls)


def test_asterisk_killed_during_calls_keeps_every_finished_call(history: HistoryLab) -> None:
    live = history.live
    before = len(history.rows("local"))
    load = live.sipp().start_call_load("101", live.password("101"), "*43", calls=30,
                                       rate=5, limit=10, hold_seconds=1, timeout=40)
    time.sleep(3.5)
    pid = live.lab.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    result = load.wait()
    finished = result.successful  # the calls whose BYE Asterisk answered before it died
    assert 0 < finished < 30, result.run.describe()
    live.lab.stop()
    live.lab.start()
    time.sleep(3)  # GRACE and delivery
    found = all_call_ids(history, before + finished, timeout=15)
    for backend, ids in found.items():
        assert len(ids) == len(set(ids)), (backend, "doubled")
        # every call that finished is there; a call cut by the kill may be too (its legs
        # that had ended), never twice
        assert len(ids) >= before + finished, (backend, len(ids), before + finished)
    reference = set(found["local"])
    assert all(set(ids) == reference for ids in found.values())
