"""Call history benchmarks (issue 19), each printed with its target:

- `stats`: `cdr stats` for one month over 1,000,000 records (three months of synthetic
  calls), per user, trunk, class and day, on SQLite and on PostgreSQL (a throwaway server):
  target < 1 s each;
- `lag`: real calls through the lab (101 calls the echo code), the collector running as its
  own process with a SQLite statistics backend; for each call, the time from its hang-up
  (the record's `end`) to the moment the record can be read in the backend: p50/p99/max,
  target p99 <= 2 s;
- `capacity`: the highest call rate with no failed call, with the call history on
  (CDR/CEL written, the collector delivering to SQLite and CSV) against off, on the same
  lab in the same run: target ratio >= 0.9.

    .venv/bin/python bench/cdr.py [--part stats|lag|capacity|all] [--records 1000000]
        [--calls 500] [--rate 10] [--rates 10,20,30,40]
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import os
import random
import signal
import sqlite3
import statistics as stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from wildix_ast.model.call_history import CallHistoryBackend
from wildix_ast.services.call_history.backends import SqlSink
from wildix_ast.services.call_history.query import GROUPINGS, Filters, statistics
from wildix_ast.services.call_history.record import COLUMNS

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # the lab and server helpers of the tests

MONTH_START = dt.datetime(2026, 11, 1, tzinfo=dt.UTC).timestamp()
MONTH_END = dt.datetime(2026, 12, 1, tzinfo=dt.UTC).timestamp()
SPAN_START = dt.datetime(2026, 10, 1, tzinfo=dt.UTC).timestamp()
SPAN_END = dt.datetime(2027, 1, 1, tzinfo=dt.UTC).timestamp()


# --- stats over a million records ------------------------------------------------------------

def synthetic_rows(count: int, seed: int = 19) -> Iterator[tuple[Any, ...]]:
    rng = random.Random(seed)
    classes = ("internal", "local", "national", "mobile", "international")
    dispositions = ("answered", "answered", "answered", "no_answer", "busy", "failed")
    for n in range(count):
        start = rng.uniform(SPAN_START, SPAN_END)
        answered = rng.random() < 0.7
        billsec = rng.uniform(5, 600) if answered else 0.0
        row = {"call_id": f"{int(start)}.{n}", "start": start,
               "answer": start + 5 if answered else None, "end": start + 5 + billsec,
               "duration": 5 + billsec, "billsec": billsec,
               "disposition": "answered" if answered else rng.choice(dispositions[3:]),
               "direction": rng.choice(("internal", "incoming", "outgoing")),
               "day": dt.datetime.fromtimestamp(start, dt.UTC).strftime("%Y-%m-%d"),
               "caller_user": str(100 + rng.randrange(200)), "caller_name": "",
               "caller_number": "", "caller_group": "default",
               "callee_user": str(100 + rng.randrange(200)), "callee_name": "",
               "callee_number": "+33140000000", "callee_group": "", "dialled": "0140000000",
               "call_class": rng.choice(classes), "trunk": rng.choice(("op1", "op2", "op3")),
               "handled_by": "users", "voicemail": "", "legs": "[]"}
        yield tuple(row[c] for c in COLUMNS)


def time_stats(backend: CallHistoryBackend) -> dict[str, float]:
    timings = {}
    month = Filters(since=MONTH_START, until=MONTH_END)
    for by in GROUPINGS:
        statistics(backend, by, month)  # warm the cache as a running PBX's would be
        began = time.perf_counter()
        rows = statistics(backend, by, month)
        timings[by] = time.perf_counter() - began
        assert rows
    return timings


def stats_sqlite(records: int, work: Path) -> dict[str, float]:
    backend = CallHistoryBackend(name="b", kind="sqlite",
                                 path=str(work / "bench.sqlite3"))
    sink = SqlSink(backend)
    sink.table.metadata.create_all(sink.engine)
    sink.close()
    db = sqlite3.connect(work / "bench.sqlite3")
    marks = ", ".join("?" for _ in COLUMNS)
    began = time.perf_counter()
    quoted = ", ".join(f'"{c}"' for c in COLUMNS)
    db.executemany(f"INSERT INTO call_history ({quoted}) VALUES ({marks})",
                   synthetic_rows(records))
    db.commit()
    db.execute("ANALYZE")
    db.close()
    print(f"  sqlite: {records} records loaded in {time.perf_counter() - began:.1f} s")
    return time_stats(backend)


def stats_postgres(records: int) -> dict[str, float]:
    from sqlalchemy.engine import make_url
    from support.pg_server import PostgresServer

    server = PostgresServer()
    server.start()
    try:
        url = make_url(server.create_database())
        backend = CallHistoryBackend(
            name="b", kind="postgresql", host=url.host, port=url.port,
            database=url.database, user=url.username, password=url.password)
        sink = SqlSink(backend)
        sink.table.metadata.create_all(sink.engine)
        began = time.perf_counter()
        raw = sink.engine.raw_connection()
        try:
            cursor = raw.cursor()
            chunk = 100_000
            rows = synthetic_rows(records)
            while True:
                text = io.StringIO()
                writer = csv.writer(text)
                written = 0
                for row in rows:
                    writer.writerow(["\\N" if v is None else v for v in row])
                    written += 1
                    if written == chunk:
                        break
                if not written:
                    break
                text.seek(0)
                quoted = ", ".join(f'"{c}"' for c in COLUMNS)
                cursor.copy_expert(f"COPY call_history ({quoted}) FROM STDIN "
                                   "WITH (FORMAT csv, NULL '\\N')", text)
            raw.commit()
            cursor.execute("ANALYZE call_history")
            raw.commit()
        finally:
            raw.close()
        sink.close()
        print(f"  postgresql: {records} records loaded in {time.perf_counter() - began:.1f} s")
        return time_stats(backend)
    finally:
        server.stop()


def run_stats(records: int) -> bool:
    print(f"stats: one month out of {records} records (three months)")
    ok = True
    with tempfile.TemporaryDirectory() as folder:
        measures: list[tuple[str, Callable[[], dict[str, float]]]] = [
            ("sqlite", lambda: stats_sqlite(records, Path(folder))),
            ("postgresql", lambda: stats_postgres(records))]
        for name, measure in measures:
            for by, seconds in measure().items():
                verdict = "ok" if seconds < 1.0 else "OVER 1 s"
                ok &= seconds < 1.0
                print(f"  {name:<10} cdr stats --by {by:<6} {seconds * 1000:8.1f} ms  "
                      f"{verdict}", flush=True)
    return ok


# --- the lab: lag and capacity ---------------------------------------------------------------

@contextmanager
def history_lab(work: Path, enabled: bool) -> Iterator[Any]:
    from support.live_site import example_site, live_site

    from wildix_ast.model.site import Site

    base = example_site()
    site = Site.model_validate({**base.model_dump(), "call_history": {
        "enabled": enabled, "backends": [
            {"name": "local", "kind": "sqlite", "path": str(work / "history.sqlite3")},
            {"name": "files", "kind": "csv", "folder": str(work / "csv")}]}})
    with live_site(work / "lab", "cdrbench-on" if enabled else "cdrbench-off", site) as live:
        collector = None
        if enabled:
            env = {**os.environ, "WILDIX_AST_DB": str(live.work / "store.sqlite3")}
            collector = subprocess.Popen(
                [sys.executable, "-m", "wildix_ast", "cdr", "collect", "--log-dir",
                 str(live.lab.log_dir), "--spool", str(work / "spool.sqlite3")],
                env=env, stderr=subprocess.DEVNULL)
        try:
            yield live
        finally:
            if collector is not None:
                collector.send_signal(signal.SIGTERM)
                collector.wait(timeout=30)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def run_lag(calls: int, rate: float) -> bool:
    print(f"lag: {calls} calls at {rate:g}/s, hang-up -> queryable in the SQLite backend")
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        with history_lab(work, enabled=True) as live:
            database = work / "history.sqlite3"
            seen: dict[str, float] = {}
            ends: dict[str, float] = {}
            load = live.sipp().start_call_load("101", live.password("101"), "*43",
                                               calls=calls, rate=rate, limit=50,
                                               hold_seconds=1, trace_messages=False)
            deadline = time.monotonic() + calls / rate + 60
            while len(seen) < calls and time.monotonic() < deadline:
                if database.exists():
                    try:
                        db = sqlite3.connect(database, timeout=1)
                        rows = db.execute("SELECT call_id, \"end\" FROM call_history").fetchall()
                        db.close()
                    except sqlite3.OperationalError:
                        rows = []
                    now = time.time()
                    for call_id, end in rows:
                        if call_id not in seen:
                            seen[call_id], ends[call_id] = now, end
                time.sleep(0.02)
            result = load.wait()
    lags = [seen[c] - ends[c] for c in seen]
    print(f"  calls: {result.successful} ok, {result.failed} failed; records: {len(seen)}")
    if not lags:
        return False
    p99 = percentile(lags, 0.99)
    print(f"  lag p50 {stat.median(lags):.3f} s, p99 {p99:.3f} s, max {max(lags):.3f} s "
          f"(target p99 <= 2 s: {'ok' if p99 <= 2 else 'OVER'})")
    return p99 <= 2 and len(seen) == result.successful


def highest_clean_rate(live: Any, rates: list[float], seconds: float) -> float:
    best = 0.0
    for rate in rates:
        calls = max(1, int(rate * seconds))
        # traced: SIPp counts a refused call that ended cleanly as successful
        result = live.sipp().call_load("101", live.password("101"), "*43", calls=calls,
                                       rate=rate, limit=int(rate * 3) + 5, hold_seconds=1,
                                       trace_messages=True)
        print(f"    {rate:5g}/s: {result.connected} connected, {result.failed} failed, "
              f"{result.rejected} refused", flush=True)
        live.wait_no_channels(10)
        if result.failed or result.connected != calls:
            break
        best = rate
    return best


def run_capacity(rates: list[float], seconds: float) -> bool:
    print(f"capacity: rates {rates}, {seconds:g} s each, highest with no failed call")
    found: dict[bool, float] = {}
    for enabled in (False, True):
        with tempfile.TemporaryDirectory() as folder, \
                history_lab(Path(folder), enabled=enabled) as live:
            print(f"  call history {'on' if enabled else 'off'}:")
            found[enabled] = highest_clean_rate(live, rates, seconds)
    ratio = found[True] / found[False] if found[False] else 0.0
    print(f"  highest clean rate: off {found[False]:g}/s, on {found[True]:g}/s, "
          f"ratio {ratio:.2f} (target >= 0.9: {'ok' if ratio >= 0.9 else 'UNDER'})")
    return ratio >= 0.9


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("stats", "lag", "capacity", "all"), default="all")
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--rates", default="10,20,30,40,50")
    parser.add_argument("--seconds", type=float, default=6.0)
    args = parser.parse_args()
    parts: dict[str, Callable[[], bool]] = {
        "stats": lambda: run_stats(args.records),
        "lag": lambda: run_lag(args.calls, args.rate),
        "capacity": lambda: run_capacity([float(r) for r in args.rates.split(",")],
                                         args.seconds)}
    chosen = list(parts) if args.part == "all" else [args.part]
    ok = all([parts[name]() for name in chosen])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
