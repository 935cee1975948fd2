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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="faxes per transport")
    parser.add_argument("--pages", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--loss", type=float, default=0.01)
    parser.add_argument("--jitter", type=float, default=0.040, help="seconds")
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument("--transports", default=",".join(TRANSPORTS))
    args = parser.parse_args()
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
