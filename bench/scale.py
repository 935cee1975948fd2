"""Issue 22's must-show in one command: for each site size, in one run,

- the file apply of a one-user change against Asterisk's own reload of it, WEB passwords
  as texts and as hashes (`bench/apply_change.py`'s method);
- a one-user change from the command's start until a phone registers with it, realtime
  mode against the file mode (`bench/realtime.py`'s method), p50 and p99;
- capacity at 50 calls/s (`bench/load.py`'s method, short): the file mode against a bare
  Asterisk, the realtime mode against the file mode (and the bare Asterisk), the calls
  placed between two of the site's own users in the same labs as the changes;

each as a ratio against its baseline measured in the same run, printed as one table at the
end (`--json`: the same as JSON on standard output, the progress on standard error).

    .venv/bin/python bench/scale.py --users 10000 100000 [--changes 20] [--calls 150]

Where a mode cannot run at a size, the table says why, as measured in this run: the
file-mode lab is booted at every size; a boot that fails (at 100,000 users res_pjsip logs
`Excessive refcount` and does not finish within `--file-boot-timeout`) gives its log's
telling line as the reason for the file mode's figures and for the baselines that need it.
Each setup step (site text, parse, store import, render and install, lab boot) is timed
and printed, as is the apply's own phase table (median of its `--json` timing) per mode.
Long: never in CI (docs/benchmarks.md has the run time)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))

import apply_change
import load
import realtime

from wildix_ast.errors import LabError
from wildix_ast.lab.rootfs import ensure_rootfs

#: the two synthetic users the capacity calls go between (`sites.site_yaml`'s first two)
CALLER = str(realtime.FIRST_EXTENSION)
CALLEE = str(realtime.FIRST_EXTENSION + 1)
CALLER_PASSWORD, CALLEE_PASSWORD = "Sip#0000000xY", "Sip#0000001xY"
RATE = 50.0


@dataclass
class Figure:
    """One line of the table: a measure, its baseline, their ratio (None: not measured,
    `why` says so)."""

    users: int
    measure: str
    value: str
    baseline: str
    ratio: float | None
    target: str
    why: str = ""
    load: str = ""


@dataclass
class SizeResult:
    users: int
    figures: list[Figure] = field(default_factory=list)
    setup_seconds: dict[str, dict[str, float]] = field(default_factory=dict)
    #: per mode, the median of each phase of the apply's `--json` timing over the changes
    apply_phases: dict[str, dict[str, float]] = field(default_factory=dict)
    changes_seconds: dict[str, list[float]] = field(default_factory=dict)
    #: per mode, the changes whose apply failed (the reason), not in the figures
    change_failures: dict[str, list[str]] = field(default_factory=dict)
    capacity: dict[str, dict[str, object]] = field(default_factory=dict)
    seconds: float = 0.0


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.1f} / {five:.1f}"


def failure_reason(error: BaseException) -> str:
    """The telling line of a failure: for a lab that did not boot, why (the timeout) and
    the log line Asterisk gave (an ERROR or a FRACK such as res_pjsip's `Excessive
    refcount`), else the first line of the message."""
    text = str(error.message if isinstance(error, LabError) else error)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    found = ""
    for marker in ("Excessive refcount", "FRACK", "ERROR", "error:"):
        found = next((line for line in lines if marker in line), "")
        if found:
            break
    first = lines[0] if lines else type(error).__name__
    if "did not finish booting" in first or "exited during start" in first:
        head = first.split(";")[0]
        return f"{head}; its log: {found}"[:400] if found else head[:400]
    return (found or first)[:400]


def _attempt(what: str, console: Console, action: Callable[[], object]) -> str | None:
    """Run `action`; None if it went through, else the reason it did not (printed)."""
    try:
        action()
    except (Exception, SystemExit) as error:  # one part's failure is a figure
        reason = failure_reason(error)
        console.print(f"  {what}: FAILED: {reason}", highlight=False)
        return reason
    return None


def _capacity(site: realtime.BootedSite, calls: int, hold: float) -> load.Row:
    target = load.RunningAsterisk(
        f"{site.mode} mode, {site.users:,} users", site.lab,
        {CALLER: CALLER_PASSWORD, CALLEE: CALLEE_PASSWORD})
    return load.run_load(target, RATE, calls, hold, site.work, CALLER, CALLEE)


def _capacity_text(row: load.Row) -> str:
    p99 = "-" if row.pdd_p99_ms is None else f"{row.pdd_p99_ms:.0f}"
    return (f"{row.answered}/{row.calls} answered, {row.failed} failed, PDD p99 {p99} ms, "
            f"{row.seconds:.1f} s")


def _phases(timings: list[dict[str, object]]) -> dict[str, float]:
    names: dict[str, list[float]] = {}
    for timing in timings:
        phases = timing.get("phases")
        if isinstance(phases, dict):
            for name, seconds in phases.items():
                names.setdefault(name, []).append(float(seconds))
    return {name: round(statistics.median(values), 3) for name, values in names.items()}


def measure_mode(users: int, mode: str, args: argparse.Namespace, tmp: Path,
                 console: Console, result: SizeResult) -> tuple[
                     list[float] | None, load.Row | None, str | None]:
    """The changes and the capacity of one mode at one size, in one lab: (change seconds,
    capacity row, why not)."""
    console.print(f"[bold]{users:,} users, {mode} mode[/bold]")
    changes: list[float] | None = None
    capacity: load.Row | None = None
    timings: list[dict[str, object]] = []
    failures: list[str] = []
    boot_timeout = (args.file_boot_timeout if mode == "file" and users > args.file_limit
                    else max(600.0, users / 40))
    try:
        with realtime.booted(users, mode, tmp, console, in_place=args.in_place,
                             boot_timeout=boot_timeout) as site:
            result.setup_seconds[mode] = site.steps

            def run() -> None:
                nonlocal changes
                count = args.changes if mode == "realtime" else (
                    args.baseline_changes or args.changes)
                changes = realtime.run_changes(site, count, console, args.in_place,
                                               timings=timings, failures=failures)

            changes_failed = _attempt(f"{mode} changes", console, run)

            def calls() -> None:
                nonlocal capacity
                capacity = _capacity(site, args.calls, args.hold)
                console.print(f"  capacity at {RATE:g} calls/s: {_capacity_text(capacity)}",
                              highlight=False)

            capacity_failed = _attempt(f"{mode} capacity", console, calls)
    except (Exception, SystemExit) as error:  # the setup's failure too
        reason = failure_reason(error)
        console.print(f"  {mode} mode at {users:,} users: not measured: {reason}",
                      highlight=False)
        return None, None, reason
    result.apply_phases[mode] = _phases(timings)
    result.change_failures[mode] = failures
    if changes is not None:
        result.changes_seconds[mode] = changes
    if capacity is not None:
        result.capacity[mode] = asdict(capacity)
    return changes, capacity, changes_failed or capacity_failed


def _failed_note(result: SizeResult) -> str:
    failed = {mode: len(found) for mode, found in result.change_failures.items() if found}
    if not failed:
        return ""
    first = next(found[0] for found in result.change_failures.values() if found)
    return (" (failed applies: " + ", ".join(f"{m} {n}" for m, n in failed.items())
            + f"; first: {failure_reason(SystemExit(first))})")


def measure_size(users: int, args: argparse.Namespace, tmp: Path,
                 console: Console) -> SizeResult:
    started = time.perf_counter()
    result = SizeResult(users)
    add = result.figures.append
    file_changes, file_capacity, file_why = measure_mode(users, "file", args, tmp, console,
                                                         result)
    file_down = file_changes is None and file_capacity is None
    # 1. the file apply against Asterisk's own reload, both password forms
    if file_down:
        for form in ("texts", "hashes"):
            add(Figure(users, f"file apply, WEB {form} / Asterisk reload", "(not run)",
                       "(not run)", None, "≤ 1.25×", f"file-mode lab: {file_why}", _load()))
    else:
        console.print(f"[bold]{users:,} users, file apply against Asterisk's reload[/bold]")
        forms: dict[str, list[tuple[float, float]]] = {}

        def run_forms() -> None:
            forms.update(apply_change.measure_forms(users, args.rounds, console, tmp))

        why = _attempt("file apply / reload", console, run_forms)
        for form in ("texts", "hashes"):
            pairs = forms.get(form, [])
            if not pairs:
                add(Figure(users, f"file apply, WEB {form} / Asterisk reload", "(failed)",
                           "(failed)", None, "≤ 1.25×", why or "no round", _load()))
                continue
            walls = [wall for wall, _ in pairs]
            reloads = [reload for _, reload in pairs]
            ratios = [wall / reload for wall, reload in pairs]
            add(Figure(users, f"file apply, WEB {form} / Asterisk reload",
                       f"median {statistics.median(walls):.2f} s",
                       f"reload {statistics.median(reloads):.2f} s",
                       statistics.median(ratios), "≤ 1.25×",
                       f"worst {max(ratios):.2f}× over {len(ratios)}", _load()))
    # 2. and 3. the realtime mode, against the file mode
    live_changes, live_capacity, live_why = measure_mode(users, "realtime", args, tmp,
                                                         console, result)
    for label, q in (("p50", 0.5), ("p99", 0.99)):
        measure = f"realtime change -> REGISTER {label}"
        if live_changes is None:
            add(Figure(users, measure, "(not run)", "-", None, "< 1 s",
                       f"realtime mode: {live_why}", _load()))
            continue
        value = realtime.percentile(live_changes, q)
        if file_changes is None:
            add(Figure(users, measure, f"{value:.2f} s", "file mode (not run)", None,
                       "< 1 s", f"{len(live_changes)} changes{_failed_note(result)}; "
                       f"file mode: {file_why}", _load()))
            continue
        file_value = realtime.percentile(file_changes, q)
        add(Figure(users, measure, f"{value:.2f} s", f"file mode {file_value:.2f} s",
                   value / file_value, "< 1 s",
                   f"{len(live_changes)} / {len(file_changes)} changes"
                   + _failed_note(result), _load()))
    # capacity: the bare Asterisk (the file mode's baseline), measured now
    bare: load.Row | None = None

    def run_bare() -> None:
        nonlocal bare
        with load.bare_asterisk(tmp / f"bare-{users}") as asterisk:
            bare = load.run_load(asterisk, RATE, args.calls, args.hold, tmp / f"bare-{users}")
        console.print(f"  bare Asterisk at {RATE:g} calls/s: {_capacity_text(bare)}",
                      highlight=False)

    (tmp / f"bare-{users}").mkdir()
    bare_why = _attempt("bare Asterisk capacity", console, run_bare)
    if bare is not None:
        result.capacity["bare"] = asdict(bare)
    title = f"answered at {RATE:g} calls/s"
    for mode, row, why, base, base_name, base_why in (
            ("file", file_capacity, file_why, bare, "bare Asterisk", bare_why),
            ("realtime", live_capacity, live_why, file_capacity, "file mode", file_why)):
        if row is None:
            add(Figure(users, f"{title}, {mode} mode", "(not run)", "-", None, "≥ 0.9×",
                       f"{mode} mode: {why}", _load()))
            continue
        if base is None and mode == "realtime" and bare is not None:
            # no file mode at this size: the bare Asterisk is the baseline left
            base, base_name = bare, "bare Asterisk (no file mode: " + str(file_why) + ")"
        if base is None:
            add(Figure(users, f"{title}, {mode} mode", _capacity_text(row),
                       f"{base_name} (not run)", None, "≥ 0.9×", str(base_why), _load()))
            continue
        ratio = row.answered / base.answered if base.answered else None
        add(Figure(users, f"{title}, {mode} mode", _capacity_text(row),
                   f"{base_name}: {_capacity_text(base)}", ratio, "≥ 0.9×", "", _load()))
    result.seconds = time.perf_counter() - started
    return result


def summary(results: list[SizeResult]) -> Table:
    table = Table(title="issue 22, one run: each figure against its baseline measured in "
                  "the same run", show_edge=False, show_lines=True)
    for column in ("users", "measure", "wildix-ast", "baseline", "ratio", "target",
                   "note", "load 1/5 min"):
        table.add_column(column, justify="left" if column in ("measure", "note") else "right",
                         overflow="fold")
    for result in results:
        for f in result.figures:
            table.add_row(f"{f.users:,}", f.measure, f.value, f.baseline,
                          "-" if f.ratio is None else f"{f.ratio:.2f}×", f.target, f.why,
                          f.load)
    return table


def steps_table(results: list[SizeResult]) -> Table:
    table = Table(title="setup steps (s) and the apply's own phases (median s over the "
                  "changes, its --json timing)", show_edge=False)
    for column in ("users", "mode", "setup steps", "apply phases"):
        table.add_column(column, overflow="fold")
    for result in results:
        for mode in ("file", "realtime"):
            steps = result.setup_seconds.get(mode, {})
            phases = result.apply_phases.get(mode, {})
            table.add_row(f"{result.users:,}", mode,
                          ", ".join(f"{k} {v:.1f}" for k, v in steps.items()) or "-",
                          ", ".join(f"{k} {v:.2f}" for k, v in phases.items() if v >= 0.01)
                          or "-")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--changes", type=int, default=20,
                        help="one-user changes per mode (add, rename, password, remove)")
    parser.add_argument("--baseline-changes", type=int, default=0,
                        help="changes in the file mode (the baseline; default --changes): "
                        "each costs a res_pjsip reload there")
    parser.add_argument("--in-place", action="store_true",
                        help="only renames and new SIP passwords (no dialplan reload)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="file apply / reload: rename-and-back rounds per password form")
    parser.add_argument("--calls", type=int, default=150,
                        help=f"capacity: calls at {RATE:g} calls/s per Asterisk (150)")
    parser.add_argument("--hold", type=float, default=1.0)
    parser.add_argument("--file-limit", type=int, default=realtime.FILE_MODE_LIMIT,
                        help="above this size the file-mode lab gets --file-boot-timeout "
                        "to boot (and the file apply / reload is not tried if it fails)")
    parser.add_argument("--file-boot-timeout", type=float, default=240.0,
                        help="seconds the file-mode lab has to boot above --file-limit")
    parser.add_argument("--json", action="store_true",
                        help="the results as JSON on standard output")
    args = parser.parse_args()
    console = Console(width=200, stderr=args.json)
    began = time.perf_counter()
    ensure_rootfs()
    realtime.byte_compiled()
    results: list[SizeResult] = []
    with tempfile.TemporaryDirectory(prefix="wildix-bench-scale-") as tmp_name:
        for users in args.users:
            tmp = Path(tmp_name) / str(users)
            tmp.mkdir()
            results.append(measure_size(users, args, tmp, console))
            with contextlib.suppress(Exception):
                console.print(summary(results[-1:]))
    total = time.perf_counter() - began
    console.print(steps_table(results))
    console.print(summary(results))
    console.print(f"whole run {total / 60:.1f} min; load average at the end (1/5 min) "
                  f"{_load()} on {os.cpu_count()} cores", highlight=False)
    if args.json:
        print(json.dumps({"results": [asdict(r) for r in results], "seconds": round(total, 1),
                          "load_average": os.getloadavg(), "cores": os.cpu_count()},
                         indent=2))


if __name__ == "__main__":
    main()
