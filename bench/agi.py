"""FastAGI decision latency and the call setup rate it costs.

    .venv/bin/python bench/agi.py [--concurrency 100] [--sessions 20000] [--calls 400]
                                  [--no-asterisk]

1. `wildix-ast agi serve` runs as its own process; N clients (playing Asterisk's side of the
   protocol, `wildix_ast.agi.probe`) hold FastAGI sessions on the `popup` route back to back.
   Printed: p50/p99/max of a whole session (connect, handshake, decision, answers, close) at
   concurrency 1 (baseline) and at N, refused connections, errors, sessions/s, and the
   server's own p99 (handshake read to last answer) from its `health` route.
2. Unless --no-asterisk: a lab Asterisk 22 places calls (Local channels originated through
   AMI, `--parallel` at a time) through a route decided by `AGI(agi://.../route)` and
   through the same route decided in pure dialplan; printed: calls/s of each and the ratio.
   (The SIP version of this ratio, SIPp phones on real PJSIP routes, waits for the routing
   work's dialplan.)
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
from pathlib import Path

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


def start_service(port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "wildix_ast", "agi", "serve", "--host", HOST, "--port",
         str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            asyncio.run(check(HOST, port, 0.5))
            return process
        except Exception:
            if process.poll() is not None:
                raise RuntimeError("wildix-ast agi serve exited") from None
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("wildix-ast agi serve did not answer within 20 s")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def load(port: int, concurrency: int, sessions: int) -> dict[str, float]:
    latencies: list[float] = []
    refused = errors = 0
    remaining = sessions

    async def worker() -> None:
        nonlocal remaining, refused, errors
        while remaining > 0:
            remaining -= 1
            try:
                result = await probe(HOST, port, "popup", ["https://crm/?n={CALLERNUM:1}"],
                                     timeout=10)
            except ConnectionRefusedError:
                refused += 1
                continue
            except Exception:
                errors += 1
                continue
            if result.variables.get(STATUS_VARIABLE) != OK:
                errors += 1
            latencies.append(result.elapsed)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {"p50": percentile(latencies, 0.5) * 1000, "p99": percentile(latencies, 0.99) * 1000,
            "max": max(latencies) * 1000, "mean": statistics.fmean(latencies) * 1000,
            "rate": len(latencies) / elapsed, "refused": refused, "errors": errors,
            "sessions": len(latencies)}


async def burst(port: int, size: int, rounds: int) -> dict[str, float]:
    """`size` sessions connected at once (a burst of simultaneous calls), `rounds` times."""
    latencies: list[float] = []
    refused = errors = 0
    started = time.perf_counter()
    for _ in range(rounds):
        results = await asyncio.gather(
            *(probe(HOST, port, "popup", ["https://crm/?n={CALLERNUM:1}"], timeout=10)
              for _ in range(size)), return_exceptions=True)
        for result in results:
            if isinstance(result, ConnectionRefusedError):
                refused += 1
            elif isinstance(result, BaseException) or \
                    result.variables.get(STATUS_VARIABLE) != OK:
                errors += 1
            else:
                latencies.append(result.elapsed)
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - started
    return {"p50": percentile(latencies, 0.5) * 1000, "p99": percentile(latencies, 0.99) * 1000,
            "max": max(latencies) * 1000, "mean": statistics.fmean(latencies) * 1000,
            "rate": len(latencies) / elapsed, "refused": refused, "errors": errors,
            "sessions": len(latencies)}


def measure_latency(console: Console, concurrency: int, sessions: int) -> None:
    port = free_port()
    process = start_service(port)
    try:
        baseline = asyncio.run(load(port, 1, max(200, sessions // 20)))
        bursts = asyncio.run(burst(port, concurrency, max(1, sessions // concurrency // 4)))
        loaded = asyncio.run(load(port, concurrency, sessions))
        server = asyncio.run(check(HOST, port, 2.0))
    finally:
        process.terminate()
        process.wait(timeout=15)
    table = Table(title="FastAGI sessions against `wildix-ast agi serve` (separate process, "
                        "route popup; client in one Python process on the same cores)")
    for column in ("load", "sessions", "p50 ms", "p99 ms", "max ms", "sessions/s",
                   "refused", "errors"):
        table.add_column(column, justify="right")
    for label, row in (("1 at a time (baseline)", baseline),
                       (f"bursts of {concurrency} at once", bursts),
                       (f"{concurrency} back to back (saturation)", loaded)):
        table.add_row(label, f"{row['sessions']:.0f}", f"{row['p50']:.2f}", f"{row['p99']:.2f}",
                      f"{row['max']:.2f}", f"{row['rate']:.0f}", f"{row['refused']:.0f}",
                      f"{row['errors']:.0f}")
    console.print(table)
    console.print(f"server-side p99 (handshake read → last answer, last 10,000 sessions): "
                  f"{server['WILDIX_AGI_P99_MS']} ms. At saturation a session waits for the "
                  f"{concurrency - 1} others (latency ≈ concurrency / throughput); the burst "
                  f"row is {concurrency} calls set up at the same instant.")


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

[target]
exten => _X.,1,UserEvent(BenchCall,Branch: ${{EXTEN}})
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


def measure_calls(console: Console, calls: int, parallel: int) -> None:
    if os.geteuid() != 0:
        console.print("[yellow]call rate skipped: the lab needs root[/]")
        return
    from lab_fixtures import running_lab

    async def measure(ami_port: int, agi_port: int) -> list[tuple[str, float, int]]:
        rows = []
        for _ in range(2):  # interleaved, twice, so a neighbour's load hits both alike
            for context in ("plain-route", "agi-route"):
                rate, fallbacks = await call_rate(ami_port, context, calls, parallel)
                rows.append((context, rate, fallbacks))
        return rows

    agi_port = free_port()
    files = {"extensions.conf": EXTENSIONS.format(port=agi_port)}
    with tempfile.TemporaryDirectory(prefix="wildix-bench-agi-") as tmp, \
            running_lab(Path(tmp), "bench-agi", extra_modules=(
                "res_speech.so", "res_agi.so", "app_userevent.so"), extra_files=files) as lab:
        # In its own process, as in production; the bench's own loop only drives AMI.
        server_process = subprocess.Popen(
            [sys.executable, "-c", BENCH_SERVER, str(agi_port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(1.0)
            rows = asyncio.run(measure(lab.ports.ami, agi_port))
        finally:
            server_process.terminate()
            server_process.wait(timeout=15)
    table = Table(title=f"Call setup through Asterisk 22: {calls} Local-channel calls per run, "
                        f"{parallel} at a time")
    for column in ("route decided by", "calls/s", "fallbacks"):
        table.add_column(column, justify="right")
    rates: dict[str, list[float]] = {"plain-route": [], "agi-route": []}
    for context, rate, fallbacks in rows:
        rates[context].append(rate)
        table.add_row("FastAGI" if context == "agi-route" else "pure dialplan", f"{rate:.0f}",
                      str(fallbacks))
    console.print(table)
    ratio = statistics.fmean(rates["agi-route"]) / statistics.fmean(rates["plain-route"])
    console.print(f"call setup rate, FastAGI-decided vs pure dialplan: ratio {ratio:.2f}")


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
    parser.add_argument("--sessions", type=int, default=20000)
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--parallel", type=int, default=20)
    parser.add_argument("--no-asterisk", action="store_true")
    args = parser.parse_args()
    console = Console(width=120)
    measure_latency(console, args.concurrency, args.sessions)
    if not args.no_asterisk:
        measure_calls(console, args.calls, args.parallel)


if __name__ == "__main__":
    main()
