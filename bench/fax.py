"""Fax over SIP on the lab (issue 20: must-show 2's full table, and faxes per minute).

Starts the site's lab (trunks `faxt38` and `faxg711` from the settings), a plain sender lab
and a `MediaRelay` per transport (tests/support/fax_sip.py, docs/fax.md "Transport"), then:

1. baseline: one fax alone per transport through a clean relay (no loss, no jitter);
2. for each transport, `--runs` faxes of `--pages` pages, `--concurrency` at a time (a
   batch is sent, the next one when the site has recorded all of its faxes), through
   `--loss` and `--jitter`;

and prints one table: faxes, complete (SUCCESS with every page, from the site's Fax2Mail job
records), failures and their reasons, wall time, faxes completed per minute and its ratio
to the baseline's, media datagrams dropped by the relay and UDPTL datagrams (T.38) carried.

    sudo .venv/bin/python bench/fax.py --runs 20            # must-show 2: 20 + 20
    sudo .venv/bin/python bench/fax.py --runs 4 --pages 1   # a quick look

`--beside-load` measures instead whether the fax server adds failed calls to the routing
load (issue 20's performance item): on the same site lab, SIPp phones 101 -> 102 (bench/
load.py's load: digest auth, RTP, `--load-calls` calls at each of `--load-rates`) first
alone, then while `--concurrency` faxes per transport are being received (Fax2Mail,
ReceiveFAX on the site, through a relay with 0-40 ms jitter and no loss), side by side with
the ratio of answered calls; and whether those faxes completed.

    sudo .venv/bin/python bench/fax.py --beside-load --load-rates 10,25 --load-calls 100
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from support.fax_pages import fax_tiff, make_pdf
from support.fax_sip import FIRST_RUN, FaxLine, caller, fax_line

from wildix_ast.lab.sipp import Line, PhoneLoad, SippDriver

TRANSPORTS = ("g711", "t38")


@dataclass
class Result:
    transport: str
    condition: str
    concurrency: int
    faxes: int
    complete: int
    reasons: list[str]
    seconds: float
    dropped: int
    udptl: int

    @property
    def per_minute(self) -> float:
        return self.complete * 60 / self.seconds if self.seconds else 0.0


def _batch(line: FaxLine, inside: str, fax: str, runs: list[int], pages: int,
           ) -> tuple[int, list[str]]:
    line.send(inside, fax, runs)
    records = line.wait_records(runs, 90 + 25 * pages * len(runs))
    line.site.wait_no_channels(30)
    complete, reasons = 0, []
    for run in runs:
        record = records.get(caller(run))
        if record and record["status"] == "SUCCESS" and record["pages"] == str(pages):
            complete += 1
        else:
            reasons.append(record["statusstr"] if record else "no record")
    return complete, reasons


def measure(line: FaxLine, inside: str, fax: str, pages: int, runs: int, concurrency: int,
            loss: float, jitter: float, first: int) -> Result:
    relay = line.relays[fax]
    relay.loss, relay.jitter = loss, jitter
    before = relay.totals()
    numbers = list(range(first, first + runs))
    complete, reasons = 0, []
    started = time.monotonic()
    for at in range(0, runs, concurrency):
        done, why = _batch(line, inside, fax, numbers[at:at + concurrency], pages)
        complete += done
        reasons += why
        print(f"  {fax}: {complete}/{min(at + concurrency, runs)} complete", flush=True)
    seconds = time.monotonic() - started
    after = relay.totals()
    dropped = sum(after[(k, "dropped")] - before[(k, "dropped")] for k in ("rtp", "udptl"))
    udptl = after[("udptl", "forwarded")] - before[("udptl", "forwarded")]
    condition = f"{loss:.0%} loss, 0-{jitter * 1000:.0f} ms" if loss or jitter else "clean"
    return Result(fax, condition, concurrency, runs, complete, reasons, seconds, dropped,
                  udptl)


@dataclass
class LoadRow:
    rate: float
    faxes_beside: int
    calls: int
    answered: int
    failed: int
    retransmissions: int
    pdd_p99_ms: float | None
    fax_records_during: int
    """Fax records written while the load ran (0: every fax was in progress throughout)."""


def _load(line: FaxLine, passwords: dict[str, str], rate: float, calls: int, work: Path,
          name: str, faxes_beside: int) -> LoadRow:
    driver = SippDriver(line.site.lab.ports.sip, work_dir=work / name)
    before = len(line.records())
    result = PhoneLoad(driver, Line("101", passwords["101"]), Line("102", passwords["102"]),
                       calls=calls, rate=rate, hold_seconds=1.0).run()
    during = len(line.records()) - before
    return LoadRow(rate, faxes_beside, calls, result.answered, result.failed,
                   result.retransmissions, result.post_dial_delay_ms().get("p99"), during)


def beside_load(args: argparse.Namespace) -> None:
    """Routing load alone, then with faxes being received, at each rate (see the module's
    docstring)."""
    rates = [float(r) for r in args.load_rates.split(",")]
    transports = [t for t in args.transports.split(",") if t]
    rows: list[LoadRow] = []
    fax_outcomes: list[tuple[float, str, int, int, list[str]]] = []
    with tempfile.TemporaryDirectory(prefix="bench-fax-load-") as tmp, \
            fax_line(Path(tmp), loss=0.0, jitter=args.jitter, seed=args.seed) as line:
        work = Path(tmp)
        passwords = {u.extension: u.sip_password for u in line.site.compiled.site.users
                     if u.extension in ("101", "102") and u.sip_password is not None}
        original = make_pdf(work / "original.pdf", args.pages)
        host, inside = line.sender_path("bench.tif")
        fax_tiff(original, host)
        first = dict(FIRST_RUN)
        for rate in rates:
            print(f"{rate:g} calls/s: the load alone", flush=True)
            rows.append(_load(line, passwords, rate, args.load_calls, work,
                              f"alone-{rate:g}", 0))
            line.site.wait_no_channels(30)
            line.clear()
            runs = {fax: list(range(first[fax], first[fax] + args.concurrency))
                    for fax in transports}
            for fax in transports:
                first[fax] += args.concurrency
                line.send(inside, fax, runs[fax])
            time.sleep(3.0)  # the faxes answered and under way before the load starts
            print(f"{rate:g} calls/s: the load beside {sum(map(len, runs.values()))} faxes",
                  flush=True)
            rows.append(_load(line, passwords, rate, args.load_calls, work,
                              f"beside-{rate:g}", sum(map(len, runs.values()))))
            every = [run for fax in transports for run in runs[fax]]
            records = line.wait_records(every, 90 + 30 * args.pages * args.concurrency)
            line.site.wait_no_channels(30)
            for fax in transports:
                complete, reasons = 0, []
                for run in runs[fax]:
                    record = records.get(caller(run))
                    if record and record["status"] == "SUCCESS" and \
                            record["pages"] == str(args.pages):
                        complete += 1
                    else:
                        reasons.append(record["statusstr"] if record else "no record")
                fax_outcomes.append((rate, fax, len(runs[fax]), complete, reasons))
    table = Table(title=f"Routing load (SIPp 101 -> 102, {args.load_calls} calls a rate) "
                        "alone and beside faxes being received (lab, 2 shared cores: "
                        "timings under load)")
    for column in ("calls/s", "answered alone", "failed alone", "PDD p99 alone",
                   "faxes beside", "answered beside", "failed beside", "PDD p99 beside",
                   "answered ratio", "fax records during the load"):
        table.add_column(column)
    for alone, beside in zip(rows[::2], rows[1::2], strict=True):
        table.add_row(f"{alone.rate:g}", f"{alone.answered}/{alone.calls}", str(alone.failed),
                      _ms(alone.pdd_p99_ms), str(beside.faxes_beside),
                      f"{beside.answered}/{beside.calls}", str(beside.failed),
                      _ms(beside.pdd_p99_ms),
                      f"{beside.answered / alone.answered:.2f}" if alone.answered else "-",
                      str(beside.fax_records_during))
    console = Console(width=200)
    console.print(table)
    faxes = Table(title=f"The faxes beside the load ({args.pages} pages each)")
    for column in ("calls/s", "transport", "faxes", "complete", "failures"):
        faxes.add_column(column)
    for rate, fax, sent, complete, reasons in fax_outcomes:
        faxes.add_row(f"{rate:g}", fax, str(sent), str(complete),
                      "; ".join(sorted(set(reasons))) or "-")
    console.print(faxes)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="faxes per transport")
    parser.add_argument("--pages", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--loss", type=float, default=0.01)
    parser.add_argument("--jitter", type=float, default=0.040, help="seconds")
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument("--transports", default=",".join(TRANSPORTS))
    parser.add_argument("--beside-load", action="store_true",
                        help="the routing load alone and beside faxes, side by side")
    parser.add_argument("--load-rates", default="10,25", help="calls/s (--beside-load)")
    parser.add_argument("--load-calls", type=int, default=100,
                        help="calls at each rate (--beside-load)")
    args = parser.parse_args()
    if args.beside_load:
        beside_load(args)
        return
    transports = [t for t in args.transports.split(",") if t]
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="bench-fax-") as work, \
            fax_line(Path(work), seed=args.seed) as line:
        original = make_pdf(Path(work) / "original.pdf", args.pages)
        host, inside = line.sender_path("bench.tif")
        fax_tiff(original, host)
        for fax in transports:
            line.clear()
            first = FIRST_RUN[fax]
            print(f"{fax}: baseline, one fax alone, clean relay", flush=True)
            results.append(measure(line, inside, fax, args.pages, 1, 1, 0.0, 0.0, first))
            print(f"{fax}: {args.runs} faxes, {args.concurrency} at a time", flush=True)
            results.append(measure(line, inside, fax, args.pages, args.runs,
                                   args.concurrency, args.loss, args.jitter, first + 1))
    table = Table(title=f"Fax over SIP through the relay: {args.pages}-page faxes "
                        "(lab, 2 shared cores: timings under load)")
    for column in ("transport", "relay", "jobs at once", "faxes", "complete", "failed",
                   "failures", "seconds", "complete/min", "vs baseline", "media dropped",
                   "UDPTL carried"):
        table.add_column(column)
    baseline = {r.transport: r for r in results if r.concurrency == 1}
    for r in results:
        base = baseline[r.transport].per_minute
        table.add_row(r.transport, r.condition, str(r.concurrency), str(r.faxes),
                      str(r.complete), str(r.faxes - r.complete),
                      "; ".join(sorted(set(r.reasons))) or "-", f"{r.seconds:.0f}",
                      f"{r.per_minute:.2f}", f"{r.per_minute / base:.2f}x" if base else "-",
                      str(r.dropped), str(r.udptl))
    Console(width=200).print(table)


if __name__ == "__main__":
    main()
