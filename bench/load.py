"""Call load through the lab Asterisk running the example site, against a bare Asterisk
(same root filesystem, a minimal hand-written configuration) in the same run.

SIPp phones: 102 registers and answers (echoing RTP), 101 places `--calls` calls at each
rate with digest authentication, playing G.711 audio, holding `--hold` seconds. Per rate
and Asterisk: answered, failed, retransmissions, post-dial delay p50/p99, channels left;
then the highest rate with no failed call for each, and their ratio.

    .venv/bin/python bench/load.py [--rates 10,25,50,100] [--calls 300] [--hold 1] [--realtime]

`--realtime` adds the example site in realtime mode (issue 22: users' objects read from the
realtime SQLite file through the sorcery memory cache) beside the file mode, and their ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))

from bare_asterisk import write_bare_config

from wildix_ast.apply.pipeline import compile_site, install_stored_site, site_sounds
from wildix_ast.lab.instance import Lab
from wildix_ast.lab.rootfs import ensure_rootfs
from wildix_ast.lab.sipp import Line, PhoneLoad, SippDriver
from wildix_ast.model.settings_file import load_site
from wildix_ast.model.system import RealtimeMode
from wildix_ast.store import open_store

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "site.yaml"
CALLER, CALLEE = "101", "102"


@dataclass
class Row:
    target: str
    rate: float
    calls: int
    answered: int
    failed: int
    retransmissions: int
    pdd_p50_ms: float | None
    pdd_p99_ms: float | None
    channels_left: int
    seconds: float


@dataclass
class RunningAsterisk:
    name: str
    lab: Lab
    passwords: dict[str, str]


def channels(lab: Lab) -> int:
    match = re.search(r"(\d+) active channels?", lab.cli("core show channels count"))
    return int(match.group(1)) if match else -1


def wait_no_channels(lab: Lab, timeout: float = 15.0) -> int:
    deadline = time.monotonic() + timeout
    while (left := channels(lab)) != 0 and time.monotonic() < deadline:
        time.sleep(0.25)
    return left


@contextmanager
def site_asterisk(work: Path, realtime: bool = False) -> Iterator[RunningAsterisk]:
    """The example site; `realtime`: its users' objects read from the realtime SQLite file
    (system.realtime, issue 22) rather than from pjsip.conf."""
    site = load_site(EXAMPLE)
    if realtime:
        system = site.system
        site = site.model_copy(update={"system": system.model_copy(update={
            "realtime": system.realtime.model_copy(update={"mode": RealtimeMode.REALTIME})})})
    suffix = "-realtime" if realtime else ""
    store = open_store(str(work / f"store{suffix}.sqlite3"))
    # the sound files the example names, converted as `import` does (install needs them)
    store.import_site(site, sounds=site_sounds(site, EXAMPLE, store))
    lab = Lab(f"load-site{suffix}", work)
    compiled = compile_site(site, store, lab.target())  # the generated SIP passwords
    install_stored_site(store, lab.target())
    passwords = {u.extension: u.sip_password for u in compiled.site.users
                 if u.extension in (CALLER, CALLEE) and u.sip_password is not None}
    lab.start(timeout=60)
    try:
        yield RunningAsterisk(f"wildix-ast site{' (realtime)' * realtime}", lab, passwords)
    finally:
        lab.stop()
        store.close()


@contextmanager
def bare_asterisk(work: Path) -> Iterator[RunningAsterisk]:
    lab = Lab("load-bare", work)
    passwords = {CALLER: "Bare#Caller-101x", CALLEE: "Bare#Callee-102x"}
    write_bare_config(lab, passwords, CALLEE)
    lab.start(timeout=60)
    try:
        yield RunningAsterisk("bare Asterisk", lab, passwords)
    finally:
        lab.stop()


def run_load(target: RunningAsterisk, rate: float, calls: int, hold: float, work: Path,
             caller: str = CALLER, callee: str = CALLEE) -> Row:
    """`calls` calls at `rate` from `caller` to `callee` (their passwords in
    `target.passwords`) through `target`, and its figures."""
    driver = SippDriver(target.lab.ports.sip, work_dir=work / f"{target.lab.name}-{rate:g}")
    started = time.monotonic()
    result = PhoneLoad(driver, Line(caller, target.passwords[caller]),
                       Line(callee, target.passwords[callee]), calls=calls, rate=rate,
                       hold_seconds=hold).run()
    seconds = time.monotonic() - started
    delays = result.post_dial_delay_ms()
    return Row(target.name, rate, calls, result.answered, result.failed,
               result.retransmissions, delays.get("p50"), delays.get("p99"),
               wait_no_channels(target.lab), seconds)


def best_clean_rate(rows: list[Row], target: str) -> float:
    """The highest rate with no failed call (0 when every rate failed some)."""
    return max((r.rate for r in rows if r.target == target and r.failed == 0), default=0.0)


def table(rows: list[Row]) -> Table:
    out = Table(title="Call load: SIPp phones 101 -> 102, digest auth, RTP both ways")
    for column in ("Asterisk", "calls/s", "calls", "answered", "failed", "retrans.",
                   "PDD p50 ms", "PDD p99 ms", "channels left", "seconds"):
        out.add_column(column, justify="left" if column == "Asterisk" else "right")
    for r in rows:
        out.add_row(r.target, f"{r.rate:g}", str(r.calls), str(r.answered), str(r.failed),
                    str(r.retransmissions), _ms(r.pdd_p50_ms), _ms(r.pdd_p99_ms),
                    str(r.channels_left), f"{r.seconds:.1f}")
    return out


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="10,25,50,100",
                        help="calls per second, comma-separated (default 10,25,50,100)")
    parser.add_argument("--calls", type=int, default=300, help="calls per rate (300)")
    parser.add_argument("--hold", type=float, default=1.0, help="seconds each call is held")
    parser.add_argument("--realtime", action="store_true",
                        help="also the site in realtime mode (issue 22), with its ratio to "
                             "the file mode")
    parser.add_argument("--only", choices=("site", "bare"),
                        help="load one Asterisk only (no ratio)")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="keep the labs' logs and SIPp traces in DIR")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    console = Console(width=130)
    ensure_rootfs()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="wildix-load-") as tmp:
        work = args.keep or Path(tmp)
        with contextlib.ExitStack() as running:
            site = running.enter_context(site_asterisk(work))
            bare = running.enter_context(bare_asterisk(work))
            targets = [t for t, name in ((site, "site"), (bare, "bare"))
                       if args.only in (None, name)]
            if args.realtime:
                targets.insert(1, running.enter_context(site_asterisk(work, realtime=True)))
            for rate in rates:  # both Asterisks at each rate, one after the other
                for target in targets:
                    row = run_load(target, rate, args.calls, args.hold, work)
                    rows.append(row)
                    console.print(f"{row.target} at {rate:g} calls/s: {row.answered}/"
                                  f"{row.calls} answered, {row.failed} failed, "
                                  f"{row.retransmissions} retransmissions")
    console.print(table(rows))
    ours, theirs = (best_clean_rate(rows, name) for name in ("wildix-ast site",
                                                              "bare Asterisk"))
    ratio = ours / theirs if theirs else float("nan")
    console.print(f"highest rate with 0 failed calls: wildix-ast site {ours:g} calls/s, bare "
                  f"Asterisk {theirs:g} calls/s, ratio {ratio:.2f} (target >= 0.9)")
    if args.realtime:
        realtime = best_clean_rate(rows, "wildix-ast site (realtime)")
        console.print(f"realtime mode {realtime:g} calls/s against the file mode {ours:g} "
                      f"calls/s: ratio {realtime / ours if ours else float('nan'):.2f} "
                      "(target >= 0.9)")


if __name__ == "__main__":
    main()
