"""A one-user change's cost, per site size: the part of issue 22's must-show without the
calls (bench/scale.py is the whole must-show in one command, calls at 50 calls/s
included; `--changes 0` here: the file apply against the reload alone). A change applied in the
file mode against Asterisk's own reload of it (WEB passwords as texts and as hashes,
bench/apply_change.py), and the realtime change-to-registration p50/p99 against the file
mode's (bench/realtime.py), each as a ratio against its baseline measured in the same run,
with the load average beside the figures (the machine is shared).

    .venv/bin/python bench/change.py [--users 10000 100000] [--rounds 1] [--changes 20]

Above `--file-limit` users (default 20,000) the file mode is not measured: its lab
Asterisk does not boot at 100,000 users (res_pjsip `Excessive refcount`), so there is no
file-mode baseline at that size; the realtime figures are then printed against the target
alone. Capacity at 50 calls/s is bench/load.py's (`--realtime`)."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))

import apply_change
import realtime

from wildix_ast.lab.rootfs import ensure_rootfs


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.1f} / {five:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--rounds", type=int, default=1,
                        help="file mode: rename-and-back rounds per password form")
    parser.add_argument("--changes", type=int, default=20,
                        help="realtime: changes per mode (add, rename, password, remove); "
                        "0: the file apply against the reload only")
    parser.add_argument("--file-limit", type=int, default=realtime.FILE_MODE_LIMIT)
    args = parser.parse_args()
    console = Console(width=200)
    ensure_rootfs()
    realtime.byte_compiled()
    summary = Table(title="one-user change: wildix-ast against its baseline in the same run",
                    show_edge=False)
    for column in ("users", "measure", "wildix-ast", "baseline", "ratio", "target",
                   "load 1/5 min"):
        summary.add_column(column, justify="right")
    with tempfile.TemporaryDirectory(prefix="wildix-bench-issue22-") as tmp_name:
        tmp = Path(tmp_name)
        for users in args.users:
            if users > args.file_limit:
                summary.add_row(f"{users:,}", "file apply / Asterisk reload", "(not run)",
                                "(not run)", "-", "≤ 1.25×", realtime.NO_FILE_BASELINE)
            else:
                found = apply_change.measure_forms(users, args.rounds, console, tmp)
                for form, rows in found.items():
                    walls = [wall for wall, _ in rows]
                    reloads = [reload for _, reload in rows]
                    ratios = [wall / reload for wall, reload in rows]
                    summary.add_row(f"{users:,}", f"file apply, WEB {form}",
                                    f"median {statistics.median(walls):.2f} s",
                                    f"reload {statistics.median(reloads):.2f} s",
                                    f"median {statistics.median(ratios):.2f}× "
                                    f"(worst {max(ratios):.2f}×)", "≤ 1.25×", _load())
            if args.changes < 1:
                continue  # `--changes 0`: the file apply against the reload only
            modes = ("file", "realtime") if users <= args.file_limit else ("realtime",)
            times = {mode: realtime.measure(users, mode, args.changes, tmp, console)
                     for mode in modes}
            live = times["realtime"]
            p50, p99 = statistics.median(live), realtime.percentile(live, 0.99)
            if "file" in times:
                base = times["file"]
                b50, b99 = statistics.median(base), realtime.percentile(base, 0.99)
                summary.add_row(f"{users:,}", "realtime change -> REGISTER p50",
                                f"{p50:.2f} s", f"file mode {b50:.2f} s",
                                f"{p50 / b50:.2f}×", "< 1 s", _load())
                summary.add_row(f"{users:,}", "realtime change -> REGISTER p99",
                                f"{p99:.2f} s", f"file mode {b99:.2f} s",
                                f"{p99 / b99:.2f}×", "< 1 s", _load())
            else:
                for label, value in (("p50", p50), ("p99", p99)):
                    summary.add_row(f"{users:,}", f"realtime change -> REGISTER {label}",
                                    f"{value:.2f} s", "(no file mode)", "-", "< 1 s", _load())
    console.print(summary)
    console.print(f"load average at the end (1/5 min): {_load()} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
