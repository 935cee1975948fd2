"""FastAGI decision latency and the call setup rate it costs.

    .venv/bin/python bench/agi.py [--concurrency 100] [--sessions 10000] [--calls 400]
                                  [--no-asterisk] [--sip]

1. `wildix-ast agi serve` runs as its own process; clients playing Asterisk's side of the
   protocol (`wildix_ast.agi.probe`) hold FastAGI sessions on the `popup` route: one at a
   time, bursts of N connecting at once, N back to back (saturation), and N per second while
   N other connections are held open. Printed: p50/p99/max of a whole session (connect,
   handshake, decision, answers, close), refused connections, errors, sessions/s. Baseline,
   in the same run with the same client: panoramisk 1.4's FastAGI serving the same answers.
2. Unless --no-asterisk: a lab Asterisk 22 sets up calls through a route decided by
   `AGI(agi://.../route)` and through the same route decided in pure dialplan, `--parallel`
   at a time: Local channels originated through AMI, and with --sip SIP calls from a SIPp
   phone (the project's sip_test driver) on a minimal hand-written PJSIP configuration (the
   real routes wait for the routing work). Printed: calls/s of each and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
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

from wildix_ast.agi.cli import check
from wildix_ast.agi.probe import probe
from wildix_ast.agi.server import OK, STATUS_VARIABLE
from wildix_ast.ami import AmiClient

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


#: The same decision served by panoramisk 1.4's FastAGI (the library this project did not
#: take): the baseline of the latency table, measured in the same run with the same client.
#: Only well-formed sessions are sent to it (a truncated one would freeze it, see
#: tests/test_agi_libraries.py).
PANORAMISK_SERVER = """
import asyncio, sys
from panoramisk.fast_agi import Application

async def popup(request):
    await request.send_command('SET VARIABLE "WILDIX_POPUP_URL" "01"')
    await request.send_command('SET VARIABLE "WILDIX_AGI_STATUS" "OK"')

async def main():
    app = Application()
    app.add_route("popup", popup)
    server = await asyncio.start_server(app.handler, "127.0.0.1", int(sys.argv[1]),
                                        backlog=1024)
    await server.serve_forever()

asyncio.run(main())
"""


def start_server(port: int, kind: str) -> subprocess.Popen[bytes]:
    """`wildix-ast agi serve` (kind "ours") or the panoramisk baseline, answering."""
    command = [sys.executable, "-m", "wildix_ast", "agi", "serve", "--host", HOST, "--port",
               str(port)] if kind == "ours" else [sys.executable, "-c", PANORAMISK_SERVER,
                                                  str(port)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            result = asyncio.run(probe(HOST, port, "popup", ["x"], timeout=1))
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
            result = await probe(HOST, port, "popup", ["{CALLERNUM:1}"], timeout=10)
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
    table = Table(title="FastAGI sessions (server in its own process, route popup: 2 SET "
                        "VARIABLE; the client plays Asterisk, one Python process on the same "
                        "cores)")
    for column in ("server, load", "sessions", "p50 ms", "p99 ms", "max ms", "sessions/s",
                   "refused", "errors"):
        table.add_column(column, justify="right")
    figures: dict[str, Tally] = {}
    names = {"panoramisk": "panoramisk 1.4", "ours": "wildix-ast agi"}
    ports = {kind: free_port() for kind in names}
    processes = {kind: start_server(ports[kind], kind) for kind in names}
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
    console.print(table)
    ours = figures[f"ours:{concurrency} back to back"]
    theirs = figures[f"panoramisk:{concurrency} back to back"]
    p99_ratio = percentile(ours.latencies, 0.99) / percentile(theirs.latencies, 0.99)
    console.print(f"{concurrency} back to back, ours vs panoramisk (same run, same client): "
                  f"p99 ×{p99_ratio:.2f}, sessions/s ×{ours.rate / theirs.rate:.2f}; "
                  f"server-side p99 (handshake read → last answer, last 10,000 sessions): "
                  f"{server['WILDIX_AGI_P99_MS']} ms. Back to back, a session waits for the "
                  f"{concurrency - 1} others (latency ≈ concurrency / throughput).")


EXTENSIONS = """\
[general]
static = yes
writeprotect = yes

[agi-route]
exten => s,1,Set(WILDIX_AGI_STATUS=)
 same => n,AGI(agi://127.0.0.1:{port}/route,${{ARG}})
 same => n,GotoIf($["${{WILDIX_AGI_STATUS}}" = "OK"]?target,${{WILDIX_TARGET}},1)
 same => n,Goto(target,fallback,1)

[plain-route]
exten => s,1,GotoIf($["${{ARG}}" = "busy"]?target,voicemail,1:target,${{ARG}},1)

[sip-in]
exten => 600,1,Set(ARG=600)
 same => n,Goto(plain-route,s,1)
exten => 601,1,Set(ARG=600)
 same => n,Goto(agi-route,s,1)

[target]
exten => _X.,1,UserEvent(BenchCall,Branch: ${{EXTEN}})
 same => n,Answer()
 same => n,Hangup()
exten => voicemail,1,UserEvent(BenchCall,Branch: voicemail)
 same => n,Hangup()
exten => fallback,1,UserEvent(BenchCall,Branch: fallback)
 same => n,Hangup()
"""


async def call_rate(ami_port: int, context: str, calls: int, parallel: int) -> tuple[float, int]:
    """Calls/s through `context`, and how many took the fallback."""
    async with AmiClient(HOST, ami_port, "lab", "lab-secret", events=True, timeout=10) as ami:
        done = asyncio.Queue[str]()
        ami.on_event("UserEvent", lambda e: done.put_nowait(e.get("Branch", "")))
        in_flight = asyncio.Semaphore(parallel)
        fallbacks = 0

        async def one(index: int) -> None:
            await in_flight.acquire()
            await ami.action("Originate", Channel=f"Local/s@{context}", Application="Wait",
                             Data="0", Async="true",
                             Variable=[f"ARG={'busy' if index % 2 else '600'}"])

        async def collect() -> None:
            nonlocal fallbacks
            for _ in range(calls):
                branch = await asyncio.wait_for(done.get(), 30)
                fallbacks += branch == "fallback"
                in_flight.release()

        started = time.perf_counter()
        async with asyncio.timeout(120):  # a lost event fails the bench, never hangs it
            collector = asyncio.create_task(collect())
            for index in range(calls):
                await one(index)
            await collector
        elapsed = time.perf_counter() - started
        while await ami.channels_count():
            await asyncio.sleep(0.1)
        return calls / elapsed, fallbacks




def sip_rate(lab_sip_port: int, number: str, calls: int, parallel: int,
             work_dir: Path) -> tuple[float, int]:
    """SIPp phone 101 calls `number` `calls` times (at most `parallel` at once, offered
    faster than Asterisk can set them up); connected calls per second, and failures."""
    from wildix_ast.sip_test import SippDriver

    driver = SippDriver(lab_sip_port, work_dir=work_dir, timeout=300)
    started = time.perf_counter()
    # hold_seconds is how long a call waits for Asterisk's BYE, which comes at once (the
    # route answers and hangs up); 0 would mean "wait forever" to SIPp.
    result = driver.call_load("101", "Bench-Passw0rd-101", number, calls=calls,
                              rate=1000, limit=parallel, hold_seconds=2.0, timeout=300)
    elapsed = time.perf_counter() - started
    connected = result.connected if result.connected is not None else result.successful
    return connected / elapsed, calls - connected


def measure_calls(console: Console, calls: int, parallel: int, sip: bool) -> None:
    if os.geteuid() != 0:
        console.print("[yellow]call rate skipped: the lab needs root[/]")
        return
    from lab_fixtures import PJSIP_MODULES, pjsip_phone_conf, running_lab

    async def measure(ami_port: int, agi_port: int) -> list[tuple[str, float, int]]:
        rows = []
        for _ in range(2):  # interleaved, twice, so a neighbour's load hits both alike
            for context in ("plain-route", "agi-route"):
                rate, fallbacks = await call_rate(ami_port, context, calls, parallel)
                rows.append((context, rate, fallbacks))
        return rows

    agi_port = free_port()
    files = {"extensions.conf": EXTENSIONS.format(port=agi_port),
             "pjsip.conf": pjsip_phone_conf("101", "Bench-Passw0rd-101", "sip-in")}
    modules = ("res_speech.so", "res_agi.so", "app_userevent.so", *PJSIP_MODULES)
    with tempfile.TemporaryDirectory(prefix="wildix-bench-agi-") as tmp, \
            running_lab(Path(tmp), "bench-agi", extra_modules=modules,
                        extra_files=files) as lab:
        # In its own process, as in production; the bench's own loop only drives AMI.
        server_process = subprocess.Popen(
            [sys.executable, "-c", BENCH_SERVER, str(agi_port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(1.0)
            rows = asyncio.run(measure(lab.ports.ami, agi_port))
            for index in range(2 if sip else 0):
                for context, number in (("plain-route", "600"), ("agi-route", "601")):
                    rate, failed = sip_rate(lab.ports.sip, number, calls, parallel,
                                            Path(tmp) / f"sipp-{context}-{index}")
                    rows.append((f"sip:{context}", rate, failed))
        finally:
            server_process.terminate()
            server_process.wait(timeout=15)
    table = Table(title=f"Call setup through Asterisk 22: {calls} calls per run, {parallel} at "
                        "a time (Local channels through AMI; SIP calls from a SIPp phone)")
    for column in ("calls", "route decided by", "calls/s", "fallbacks / failed"):
        table.add_column(column, justify="right")
    rates: dict[str, list[float]] = {}
    for context, rate, fallbacks in rows:
        rates.setdefault(context, []).append(rate)
        table.add_row("SIP (SIPp)" if context.startswith("sip:") else "Local",
                      "FastAGI" if context.endswith("agi-route") else "pure dialplan",
                      f"{rate:.0f}", str(fallbacks))
    console.print(table)
    for prefix, label in (("", "Local channels"), ("sip:", "SIP calls"))[:2 if sip else 1]:
        ratio = statistics.fmean(rates[f"{prefix}agi-route"]) / statistics.fmean(
            rates[f"{prefix}plain-route"])
        console.print(f"call setup rate, FastAGI-decided vs pure dialplan ({label}): "
                      f"ratio {ratio:.2f}")


#: The FastAGI server of the call-rate run: the production server class with the bench's
#: `route` decision (the real routes need the routing work's call classes).
BENCH_SERVER = """
import asyncio, sys
from wildix_ast.agi.server import AgiServer, Decision, Route

def route_to(request):
    arg = request.args[0] if request.args else ""
    return Decision({"WILDIX_TARGET": "voicemail" if arg == "busy" else arg})

async def main():
    server = AgiServer({"route": Route.of(route_to)})
    await server.start("127.0.0.1", int(sys.argv[1]))
    await server.serve_forever()

asyncio.run(main())
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--sessions", type=int, default=10000)
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--parallel", type=int, default=20)
    parser.add_argument("--no-asterisk", action="store_true")
    parser.add_argument("--sip", action="store_true",
                        help="also SIP calls from SIPp (unreliable on a loaded 2-core machine: "
                             "most calls time out for both routes there)")
    args = parser.parse_args()
    console = Console(width=120)
    measure_latency(console, args.concurrency, args.sessions)
    if not args.no_asterisk:
        measure_calls(console, args.calls, args.parallel, args.sip)


if __name__ == "__main__":
    main()
