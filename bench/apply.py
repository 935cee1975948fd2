"""Whole-process `wildix-ast apply` of a one-user change on a large site, against Asterisk's
own reload of the same modules in the same run; and whole-process `wildix-ast render`.

    .venv/bin/python bench/apply.py [--users 10000] [--rounds 2] [--renders 5] [--renders-only]

Prints, for each round: the wall time of the `wildix-ast apply` process (what a person waits
for: interpreter start, load, store, render, plan, write, reloads, AMI verification, store
update, generation), the time Asterisk itself takes to reload the modules that change
(`module reload` of res_pjsip.so and app_voicemail.so through AMI, the same instance, right
after, their files' modification time moved as a change moves it), and their ratio (target
<= 1.25). Asterisk skips most of res_pjsip's reload when pjsip.conf did not change since its
last load (measured here: 1.9 s against 4.0 s at 10,000 users): the reload of the unchanged
files is shown too, with the ratio against it (what this benchmark printed before).
Then the wall time of `wildix-ast render` processes for the example site (target < 0.4 s)
and for the large site (target < 1 s), after the floor under them: a process that only
imports the libraries every render needs (pydantic, typer, rich, Jinja2, yaml-rs). Each
process's CPU time (user + system) is shown too: on a shared machine it moves less than
wall time.

The apply's wall time is split by the moments its progress lines (standard error) arrive:
before its first reload (start, load, render, plan, checks, journal, writes), reloading
(until it starts verifying: Asterisk's work, while the store update is prepared alongside),
and after (verification, store update, generation, exit). `--renders-only` skips the lab and
the apply rounds (the render figures alone)."""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))

from sites import site_yaml

from wildix_ast.apply.pipeline import install_stored_site
from wildix_ast.asterisk_cli import CliQueries
from wildix_ast.lab.instance import Lab
from wildix_ast.lab.rootfs import ensure_rootfs
from wildix_ast.model.settings_file import parse_site
from wildix_ast.store import open_store

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "site.yaml"
WILDIX = [sys.executable, "-m", "wildix_ast"]


@dataclass(frozen=True)
class Run:
    wall: float
    cpu: float
    """user + system seconds of the process: steadier than wall time on a shared machine."""
    phases: tuple[float, float, float] | None = None
    """An apply's (before its first reload, reloading, after) in seconds of wall time."""


_LIBRARIES = "import pydantic.main, typer, rich.console, jinja2, yaml_rs"
"""What every `wildix-ast render` imports before any of its own work: the interpreter and
these libraries are a floor no change to wildix-ast's code can go under."""


def _run_python(code: str, env: dict[str, str]) -> Run:
    cpu = _children_cpu()
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    return Run(time.perf_counter() - started, _children_cpu() - cpu)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(args: list[str], env: dict[str, str]) -> Run:
    cpu = _children_cpu()
    started = time.perf_counter()
    result = subprocess.run([*WILDIX, *args], env=env, capture_output=True, text=True,
                            check=False)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return Run(elapsed, _children_cpu() - cpu)


def _run_apply(args: list[str], env: dict[str, str]) -> Run:
    """`_run` of an apply, timing when its progress lines arrive (standard error is read
    as the process writes it; standard output is drained by a thread so it never blocks)."""
    cpu = _children_cpu()
    started = time.perf_counter()
    process = subprocess.Popen([*WILDIX, *args], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stderr is not None
    drained = threading.Thread(target=process.stdout.read, daemon=True)
    drained.start()
    seen: dict[str, float] = {}
    lines = []
    for line in process.stderr:
        lines.append(line)
        step = line.lstrip("• ").partition(":")[0]
        seen.setdefault(step, time.perf_counter() - started)
    process.wait()
    drained.join()
    elapsed = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({process.returncode}):\n{''.join(lines)}")
    phases = None
    if "reload" in seen and "verify" in seen:
        phases = (seen["reload"], seen["verify"] - seen["reload"], elapsed - seen["verify"])
    return Run(elapsed, _children_cpu() - cpu, phases)


async def _asterisk_reload(console: CliQueries, modules: list[str],
                           touch: Sequence[Path] = ()) -> float:
    """Seconds Asterisk takes to reload `modules` one after the other, after moving the
    modification time of the `touch` files (Asterisk then reads them as changed)."""
    for path in touch:
        os.utime(path)
    async with console as ami:
        started = time.perf_counter()
        for module in modules:
            await ami.reload_module(module)
        return time.perf_counter() - started


def _apply_rounds(args: argparse.Namespace, console: Console, env: dict[str, str], tmp: Path,
                  original: Path, renamed: Path, text: str) -> None:
    """The apply rounds: a lab with the site, then one-user renames and back."""
    site = parse_site(text)
    with open_store(env["WILDIX_AST_DB"]) as store:
        store.import_site(site)
        lab = Lab("benchapply", tmp / "labs")
        target = lab.target()
        install_stored_site(store, target)
        # what apply reloads through: Asterisk's console (no AMI account may reload)
        ami = target.console
    started = time.perf_counter()
    lab.start(timeout=300)
    console.print(f"lab Asterisk with {args.users:,} users booted in "
                  f"{time.perf_counter() - started:.1f} s")
    table = Table(title=f"one-user rename, {args.users:,} users", show_edge=False)
    for column in ("round", "wildix-ast apply (process)", "its CPU", "Asterisk reload",
                   "ratio", "target", "apply: before reload", "reloading", "after",
                   "reload (unchanged)", "ratio to it"):
        table.add_column(column, justify="right")
    modules = ["res_pjsip.so", "app_voicemail.so"]
    changed = [lab.etc_dir / "pjsip.conf", lab.etc_dir / "voicemail.conf"]
    ratios: list[float] = []
    unchanged_ratios: list[float] = []
    try:
        for n in range(args.rounds):
            for label, path in (("rename", renamed), ("back", original)):
                whole = _run_apply(["apply", str(path), "--lab", "benchapply"], env)
                reload = asyncio.run(_asterisk_reload(ami(), modules, changed))
                unchanged = asyncio.run(_asterisk_reload(ami(), modules))
                ratios.append(whole.wall / reload)
                unchanged_ratios.append(whole.wall / unchanged)
                phases = [f"{p:.2f} s" for p in whole.phases] if whole.phases else ["?"] * 3
                table.add_row(f"{n + 1} {label}", f"{whole.wall:.2f} s",
                              f"{whole.cpu:.2f} s", f"{reload:.2f} s",
                              f"{ratios[-1]:.2f}×", "≤ 1.25×", *phases,
                              f"{unchanged:.2f} s", f"{unchanged_ratios[-1]:.2f}×")
    finally:
        lab.stop()
    console.print(table)
    console.print(f"ratio: median {statistics.median(ratios):.2f}×, best "
                  f"{min(ratios):.2f}× (target ≤ 1.25×); against the reload of unchanged "
                  f"files: median {statistics.median(unchanged_ratios):.2f}×, best "
                  f"{min(unchanged_ratios):.2f}×")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--renders", type=int, default=5,
                        help="render processes per site (median and best are shown)")
    parser.add_argument("--renders-only", action="store_true",
                        help="only the render processes (no lab, no apply rounds)")
    args = parser.parse_args()
    console = Console(width=200)
    if not args.renders_only:
        ensure_rootfs()
    with tempfile.TemporaryDirectory(prefix="wildix-bench-apply-") as tmp_name:
        tmp = Path(tmp_name)
        env = {**os.environ, "WILDIX_AST_DB": str(tmp / "store.sqlite3"),
               "WILDIX_AST_LAB_STATE": str(tmp / "labs"), "NO_COLOR": "1"}
        text = site_yaml(args.users)
        original = tmp / "site.yaml"
        original.write_text(text, encoding="utf-8")
        renamed = tmp / "renamed.yaml"
        renamed.write_text(text.replace("name: User 0 Dupont-Martin",
                                        "name: User 0 Renamed", 1), encoding="utf-8")
        if not args.renders_only:
            _apply_rounds(args, console, env, tmp, original, renamed, text)

        renders = Table(title=f"wildix-ast render (whole process, {args.renders} runs)",
                        show_edge=False)
        for column in ("site", "median", "best", "CPU (best)", "target"):
            renders.add_column(column, justify="right")
        floor = [_run_python(_LIBRARIES, env) for _ in range(args.renders)]
        renders.add_row("floor: the libraries' import only",
                        f"{statistics.median(r.wall for r in floor):.2f} s",
                        f"{min(r.wall for r in floor):.2f} s",
                        f"{min(r.cpu for r in floor):.2f} s", "")
        for label, path, goal in (("example (6 users)", EXAMPLE, 0.4),
                                  (f"{args.users:,} users", original, 1.0)):
            runs = [_run(["render", str(path), "--out", str(tmp / "out")], env)
                    for _ in range(args.renders)]
            renders.add_row(label, f"{statistics.median(r.wall for r in runs):.2f} s",
                            f"{min(r.wall for r in runs):.2f} s",
                            f"{min(r.cpu for r in runs):.2f} s", f"< {goal} s")
        console.print(renders)
        console.print(f"load average while measuring: {os.getloadavg()[0]:.1f} on "
                      f"{os.cpu_count()} cores")


if __name__ == "__main__":
    main()
