"""FastAGI decision latency and the call setup rate it costs.

    .venv/bin/python bench/agi.py [--concurrency 100] [--sessions 10000] [--no-sessions]
                                  [--calls 1000] [--rate 50] [--hold 2] [--rounds 2]
                                  [--no-asterisk]

1. `wildix-ast agi serve` runs as its own process; clients playing Asterisk's side of the
   protocol (`wildix_ast.services.agi.probe`) hold FastAGI sessions on the `popup` route: one at a
   time, bursts of N connecting at once, N back to back (saturation), and N per second while
   N other connections are held open. Printed: p50/p99/max of a whole session (connect,
   handshake, decision, answers, close), refused connections, errors, sessions/s. Baseline,
   in the same run with the same client: panoramisk 1.4's FastAGI serving the same answers.
2. Unless --no-asterisk: a lab Asterisk 22 takes SIP calls from a SIPp phone (the
   project's sip_test driver) at a fixed rate, each held `--hold` seconds (rate × hold
   calls up at once: 100 by default), through a route decided by `wildix-ast agi serve`
   (its `popup` route, the service as the unit runs it) and through the same route decided
   in pure dialplan, and through the `call-user` route every call to a user asks (the
   example site's store), interleaved, `--rounds` times. The dialplan stamps the time around
   the decision: printed are the decision latency p50/p99 as Asterisk saw it, the calls that
   took the fallback (refused or failed sessions), connected calls per second of offered
   time for each route and the popup/pure ratio, and post-dial delays.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))

from wildix_ast.ami import AmiClient
from wildix_ast.cli.agi import check
from wildix_ast.services.agi.probe import probe
from wildix_ast.services.agi.server import OK, STATUS_VARIABLE, request_signature
from wildix_ast.store import open_store
from wildix_ast.store.vault import fastagi_key

HOST = "127.0.0.1"
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "site.yaml"
WILDIX = [sys.executable, "-m", "wildix_ast"]


#: port -> the FastAGI key of the `wildix-ast agi serve` listening there (its requests are
#: signed, as the project's dialplan signs them); panoramisk's take the bare route
KEYS: dict[int, str] = {}
PROBE_UNIQUEID = "1700000000.1"  # the uniqueid of `probe.handshake`


def route(port: int, name: str, args: list[str]) -> str:
    key = KEYS.get(port)
    if key is None:
        return name
    return f"{request_signature(key, PROBE_UNIQUEID, name, args)}/{name}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


#: The same decision served by panoramisk 1.4's FastAGI (the library this project did not
#: take): the baseline of the latency table, measured in the same run with the same client.
#: Only well-formed sessions are sent to it (a truncated one would freeze it, see
#: tests/unit/test_agi_libraries.py).
PANORAMISK_SERVER = """
import asyncio, sys
from panoramisk.fast_agi import Application

async def popup(request):
    # the same single command ours sends for a decision
    await request.send_command('EXEC "MSet" "WILDIX_POPUP_URL=01,WILDIX_AGI_STATUS=OK"')

async def main():
    app = Application()
    app.add_route("popup", popup)
    server = await asyncio.start_server(app.handler, "127.0.0.1", int(sys.argv[1]),
                                        backlog=1024)
    await server.serve_forever()

asyncio.run(main())
"""


def start_server(port: int, kind: str, db: str) -> subprocess.Popen[bytes]:
    """`wildix-ast agi serve` (kind "ours", reading the store `db`, which gets a FastAGI
    key) or the panoramisk baseline, answering."""
    command = [*WILDIX, "agi", "serve", "--host", HOST, "--port",
               str(port)] if kind == "ours" else [sys.executable, "-c", PANORAMISK_SERVER,
                                                  str(port)]
    if kind == "ours":
        command += ["--db", db]
        with open_store(db) as store:
            KEYS[port] = fastagi_key(store)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            result = asyncio.run(probe(HOST, port, route(port, "popup", ["x"]), ["x"],
                                       timeout=1))
            if result.variables.get(STATUS_VARIABLE) == OK:
                return process
        except Exception:
            if process.poll() is not None:
                raise RuntimeError(f"the {kind} FastAGI server exited") from None
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"the {kind} FastAGI server did not answer within 20 s")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class Tally:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.refused = 0
        self.errors = 0
        self.started = time.perf_counter()
        self.ended = self.started

    def done(self) -> Tally:
        self.ended = time.perf_counter()
        return self

    @property
    def rate(self) -> float:
        return len(self.latencies) / (self.ended - self.started)

    async def one(self, port: int) -> None:
        try:
            result = await probe(HOST, port, route(port, "popup", ["{CALLERNUM:1}"]),
                                 ["{CALLERNUM:1}"], timeout=10)
        except ConnectionRefusedError:
            self.refused += 1
            return
        except Exception:
            self.errors += 1
            return
        if result.variables.get(STATUS_VARIABLE) != OK:
            self.errors += 1
        else:
            self.latencies.append(result.elapsed)

    def row(self, label: str) -> list[str]:
        values = self.latencies or [float("nan")]
        return [label, str(len(self.latencies)), f"{percentile(values, 0.5) * 1000:.2f}",
                f"{percentile(values, 0.99) * 1000:.2f}", f"{max(values) * 1000:.2f}",
                f"{self.rate:.0f}", str(self.refused), str(self.errors)]


async def back_to_back(port: int, concurrency: int, sessions: int) -> Tally:
    tally = Tally()
    per_worker = max(1, sessions // concurrency)

    async def worker() -> None:
        for _ in range(per_worker):
            await tally.one(port)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return tally.done()


async def bursts(port: int, size: int, rounds: int) -> Tally:
    """`size` sessions connecting at the same instant (simultaneous calls), `rounds` times."""
    tally = Tally()
    for _ in range(rounds):
        await asyncio.gather(*(tally.one(port) for _ in range(size)))
        await asyncio.sleep(0.05)
    return tally.done()


async def steady(port: int, rate: float, seconds: float, held: int) -> Tally:
    """Sessions arriving at `rate` per second while `held` other connections stay open mid-
    handshake (calls whose Asterisk side is slow): latency when not saturated."""
    idle = [await asyncio.open_connection(HOST, port) for _ in range(held)]
    for _reader, writer in idle:
        writer.write(b"agi_network: yes\n")
    tally = Tally()
    tasks = []
    for _ in range(int(rate * seconds)):
        tasks.append(asyncio.create_task(tally.one(port)))
        await asyncio.sleep(1 / rate)
    await asyncio.gather(*tasks)
    tally.done()
    for _reader, writer in idle:
        writer.transport.abort()
    return tally


def measure_latency(console: Console, concurrency: int, sessions: int) -> None:
    table = Table(title="FastAGI sessions (server in its own process, route popup: one EXEC "
                        "MSet; the client plays Asterisk, one Python process on the same "
                        "cores)")
    for column in ("server, load", "sessions", "p50 ms", "p99 ms", "max ms", "sessions/s",
                   "refused", "errors"):
        table.add_column(column, justify="right")
    figures: dict[str, Tally] = {}
    names = {"panoramisk": "panoramisk 1.4", "ours": "wildix-ast agi"}
    ports = {kind: free_port() for kind in names}
    scratch = tempfile.TemporaryDirectory(prefix="wildix-bench-agi-")
    db = f"sqlite:///{scratch.name}/store.sqlite3"
    processes = {kind: start_server(ports[kind], kind, db) for kind in names}
    scenarios: list[tuple[str, Callable[[int], Coroutine[Any, Any, Tally]]]] = [
        ("1 at a time", lambda port: back_to_back(port, 1, max(200, sessions // 20))),
        (f"bursts of {concurrency} at once",
         lambda port: bursts(port, concurrency, max(1, sessions // concurrency // 4))),
        (f"{concurrency} back to back", lambda port: back_to_back(port, concurrency, sessions)),
        (f"{concurrency}/s with {concurrency} connections held open",
         lambda port: steady(port, concurrency, 10, concurrency)),
    ]
    try:
        # Each scenario runs on both servers one after the other, so the load of this
        # shared machine, which drifts over minutes, weighs on both alike.
        for label, scenario in scenarios:
            for kind in names:
                if kind == "panoramisk" and "held open" in label:
                    continue  # the held-open connections would freeze it (its spin)
                tally = asyncio.run(scenario(ports[kind]))
                figures[f"{kind}:{label}"] = tally
                table.add_row(*tally.row(f"{names[kind]}, {label}"))
        server = asyncio.run(check(HOST, ports["ours"], 2.0))
    finally:
        for process in processes.values():
            process.terminate()
            process.wait(timeout=15)
        scratch.cleanup()
    console.print(table)
    ours = figures[f"ours:{concurrency} back to back"]
    theirs = figures[f"panoramisk:{concurrency} back to back"]
    p99_ratio = percentile(ours.latencies, 0.99) / percentile(theirs.latencies, 0.99)
    console.print(f"{concurrency} back to back, ours vs panoramisk (same run, same client): "
                  f"p99 ×{p99_ratio:.2f}, sessions/s ×{ours.rate / theirs.rate:.2f}; "
                  f"server-side p99 (handshake read → last answer, last 10,000 sessions): "
                  f"{server['WILDIX_AGI_P99_MS']} ms. Back to back, a session waits for the "
                  f"{concurrency - 1} others (latency ≈ concurrency / throughput).")


#: One phone (101) calls 600 (the route decided in pure dialplan) or 601 (the same route
#: decided by `wildix-ast agi serve`'s popup route: the caller's popup URL). Both stamp the
#: time around the decision and report it in a UserEvent, so the only difference between
#: them is the FastAGI session. 602 asks the `call-user` route the calls to a user take (the
#: example site's 102 read from a store, the store's revision read on every call), so the
#: decision latency of a real call is measured too. The call is answered and held until
#: SIPp hangs up.
EXTENSIONS = """\
[general]
static = yes
writeprotect = yes

[sip-in]
exten => 600,1,Set(T0=${{STRFTIME(,,%s.%6q)}})
 same => n,Set(WILDIX_POPUP_URL=https://crm.example/?n=${{CALLERID(num)}})
 same => n,Set(WILDIX_AGI_STATUS=OK)
 same => n,Goto(decided,s,1)
exten => 601,1,Set(T0=${{STRFTIME(,,%s.%6q)}})
 same => n,Set(WILDIX_AGI_STATUS=)
 same => n,AGI(agi://127.0.0.1:{port}/${{SHA1({key}|${{UNIQUEID}}|popup|https://crm.example/?n={{CALLERNUM}}|{key})}}/popup,https://crm.example/?n={{CALLERNUM}})
 same => n,Goto(decided,s,1)
exten => 602,1,Set(T0=${{STRFTIME(,,%s.%6q)}})
 same => n,Set(WILDIX_AGI_STATUS=)
 same => n,AGI(agi://127.0.0.1:{port}/${{SHA1({key}|${{UNIQUEID}}|call-user|102||{key})}}/call-user,102,)
 same => n,Goto(decided,s,1)

[decided]
exten => s,1,Set(T1=${{STRFTIME(,,%s.%6q)}})
 same => n,UserEvent(BenchDecision,T0: ${{T0}},T1: ${{T1}},Status: ${{WILDIX_AGI_STATUS}})
 same => n,GotoIf($["${{WILDIX_AGI_STATUS}}" = "OK"]?answer)
 same => n,Hangup(21)
 same => n(answer),Answer()
 same => n,Wait(120)
 same => n,Hangup()
"""
POPUP = "FastAGI popup"
CALL_USER = "FastAGI call-user"
ROUTES = (("pure dialplan", "600"), (POPUP, "601"), (CALL_USER, "602"))
BENCH_MODULES = ("res_speech.so", "res_agi.so", "app_userevent.so", "func_strings.so",
                 "func_callerid.so", "func_sha1.so")


class Decisions:
    """The BenchDecision events of one run: decision latency as Asterisk saw it (the
    dialplan's clock around the decision), and the calls that took the fallback."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.fallbacks = 0

    def add(self, event: dict[str, str]) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.latencies.append(float(event["T1"]) - float(event["T0"]))
        if event.get("Status") != "OK":
            self.fallbacks += 1


async def sip_run(ami_port: int, sip_port: int, number: str, calls: int, rate: float,
                  hold: float, work_dir: Path) -> tuple[Any, Decisions, float]:
    """SIPp phone 101 calls `number` `calls` times at a fixed `rate`, each held `hold` s
    (so rate × hold calls are up at once), while AMI collects the decisions."""
    from wildix_ast.lab.sipp import SippDriver

    decisions = Decisions()
    concurrency = max(1, round(rate * hold))
    async with AmiClient(HOST, ami_port, "lab", "lab-secret", events=True, timeout=10) as ami:
        ami.on_event("UserEvent", lambda e: decisions.add(dict(e))
                     if e.get("UserEvent") == "BenchDecision" else None)
        driver = SippDriver(sip_port, work_dir=work_dir, timeout=600)
        started = time.perf_counter()
        result = await asyncio.to_thread(
            driver.call_load, "101", "Bench-Passw0rd-101", number, calls=calls, rate=rate,
            limit=concurrency + 20, hold_seconds=hold, timeout=calls / rate + hold + 120)
        elapsed = time.perf_counter() - started
        await asyncio.sleep(0.5)
        deadline = time.monotonic() + 30
        while await ami.channels_count() and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
    return result, decisions, elapsed


def measure_calls(console: Console, calls: int, rate: float, hold: float,
                  rounds: int) -> None:
    if os.geteuid() != 0:
        console.print("[yellow]call rate skipped: the lab needs root[/]")
        return
    from support.lab_fixtures import PJSIP_MODULES, pjsip_phone_conf, running_lab

    agi_port = free_port()
    rows: list[tuple[str, Any, Decisions, float]] = []
    with tempfile.TemporaryDirectory(prefix="wildix-bench-agi-") as tmp:
        # `wildix-ast agi serve`, as the unit runs it: its own process, with the example
        # site in its store for the call-user route, and its key (the dialplan signs with it)
        db = f"sqlite:///{tmp}/store.sqlite3"
        subprocess.run([*WILDIX, "import", str(EXAMPLE), "--db", db], check=True,
                       stdout=subprocess.DEVNULL)
        with open_store(db) as store:
            key = fastagi_key(store)
        files = {"extensions.conf": EXTENSIONS.format(port=agi_port, key=key),
                 "pjsip.conf": pjsip_phone_conf("101", "Bench-Passw0rd-101", "sip-in")}
        with running_lab(Path(tmp), "bench-agi",
                         extra_modules=BENCH_MODULES + PJSIP_MODULES,
                         extra_files=files) as lab:
            server_process = start_server(agi_port, "ours", db)
            try:
                for index in range(rounds):  # interleaved: a neighbour's load hits all alike
                    for label, number in ROUTES:
                        result, decisions, elapsed = asyncio.run(sip_run(
                            lab.ports.ami, lab.ports.sip, number, calls, rate, hold,
                            Path(tmp) / f"sipp-{number}-{index}"))
                        rows.append((label, result, decisions, elapsed))
                server = asyncio.run(check(HOST, agi_port, 2.0))
            finally:
                server_process.terminate()
                server_process.wait(timeout=15)
    concurrency = round(rate * hold)
    table = Table(title=f"SIP calls through Asterisk 22 at a fixed {rate:g} calls/s, each "
                        f"held {hold:g} s (~{concurrency} up at once), {calls} per run")
    for column in ("route decided by", "connected", "failed", "connected/s",
                   "decision p50 ms", "decision p99 ms", "fallbacks", "post-dial p50 ms",
                   "post-dial p99 ms"):
        table.add_column(column, justify="right")
    rates: dict[str, list[float]] = {}
    latencies: dict[str, list[float]] = {}
    for label, result, decisions, _elapsed in rows:
        connected = result.connected or 0
        # offered at a fixed rate: calls set up per second of offered time
        setup_rate = connected / (calls / rate)
        rates.setdefault(label, []).append(setup_rate)
        latencies.setdefault(label, []).extend(decisions.latencies)
        values = decisions.latencies or [float("nan")]
        table.add_row(label, str(connected), str(calls - connected), f"{setup_rate:.1f}",
                      f"{percentile(values, 0.5) * 1000:.2f}",
                      f"{percentile(values, 0.99) * 1000:.2f}", str(decisions.fallbacks),
                      f"{(result.post_dial_delay(50) or 0) * 1000:.0f}",
                      f"{(result.post_dial_delay(99) or 0) * 1000:.0f}")
    console.print(table)
    ratio = statistics.fmean(rates[POPUP]) / statistics.fmean(rates["pure dialplan"])
    for route in (POPUP, CALL_USER):
        agi = latencies[route] or [float("nan")]
        console.print(
            f"{route} decision at ~{concurrency} concurrent calls, as Asterisk saw it (AGI() "
            f"start to end): p50 {percentile(agi, 0.5) * 1000:.2f} ms, p99 "
            f"{percentile(agi, 0.99) * 1000:.2f} ms (target < 5 ms)")
    fallbacks = sum(d.fallbacks for label, _r, d, _e in rows if label != "pure dialplan")
    console.print(
        f"the service's own p99 over both routes (handshake read → last answer): "
        f"{server['WILDIX_AGI_P99_MS']} ms; refused or failed sessions: {fallbacks}"
        f" fallbacks, service counters: {server['WILDIX_AGI_CONNECTIONS']} connections, "
        f"{server['WILDIX_AGI_FAILED']} failed, {server['WILDIX_AGI_BAD_HANDSHAKES']} bad "
        "handshakes")
    console.print(f"call setup rate, {POPUP}-decided vs pure dialplan (same run, fixed "
                  f"offered rate): ratio {ratio:.2f} (target ≥ 0.9)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--sessions", type=int, default=10000)
    parser.add_argument("--calls", type=int, default=1000, help="SIP calls per run")
    parser.add_argument("--rate", type=float, default=50.0, help="SIP calls/s offered")
    parser.add_argument("--hold", type=float, default=2.0,
                        help="seconds each call stays up (rate × hold are up at once)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-asterisk", action="store_true")
    parser.add_argument("--no-sessions", action="store_true",
                        help="skip the FastAGI-only sessions (against panoramisk)")
    args = parser.parse_args()
    console = Console(width=120)
    if not args.no_sessions:
        measure_latency(console, args.concurrency, args.sessions)
    if not args.no_asterisk:
        measure_calls(console, args.calls, args.rate, args.hold, args.rounds)


if __name__ == "__main__":
    main()
