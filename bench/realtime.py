"""A one-user change from the command's start until a phone registers with it: realtime
mode against today's file mode, in the same run, on the same machine.

    .venv/bin/python bench/realtime.py [--users 10000 100000] [--changes 20]

For each site size and each mode (`system.realtime.mode: file`, then `realtime` on SQLite)
a lab Asterisk boots with the site; then `--changes` one-user changes cycle through add
(a new user), rename, new SIP password and remove. Each is timed from the start of the
`wildix-ast apply` process until a REGISTER shows it live: the new or renamed user
registers with its password, a new password is accepted (the old one is then checked
refused), a removed user is refused; a rename (which registers the same before and after)
until the command exits. Prints p50 and p99 per mode and the ratio realtime /
file (the issue's target: < 1 s in realtime mode)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
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
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from sites import site_yaml, user_yaml
from support.sip_ua import Agent

from wildix_ast.apply.pipeline import install_stored_site
from wildix_ast.lab.instance import Lab
from wildix_ast.lab.rootfs import ensure_rootfs
from wildix_ast.model.settings_file import parse_site
from wildix_ast.store import open_store

WILDIX = [sys.executable, "-m", "wildix_ast"]
NEW = "199999"  # the user the changes add, rename, re-key and remove
#: the synthetic users' first extension: 200000 leaves room for 100,000 users above NEW
#: (from 100000, a site of 100,000 users would hold NEW and meet 116xxx/118xxx)
FIRST_EXTENSION = 200000
#: Above this many users the file mode is not measured: its lab Asterisk did not boot at
#: 100,000 users (res_pjsip: `Excessive refcount 100000` on its endpoint container,
#: docs/benchmarks.md), so there is no file-mode baseline to measure at that size.
FILE_MODE_LIMIT = 20_000
NO_FILE_BASELINE = ("the file-mode lab Asterisk does not boot at this size (res_pjsip "
                    "'Excessive refcount' at about 100,000 endpoints)")


def _status(port: int, user: str, password: str) -> int | None:
    agent = Agent(user, password, port, timeout=2.0)
    try:
        status: int | None = agent.register(expires=60).status
        return status
    except TimeoutError:
        return None
    finally:
        agent.close()


def _until(port: int, user: str, password: str, wanted: bool, deadline: float) -> float:
    """Poll REGISTER until it is accepted (`wanted`) or refused; the moment it was."""
    while time.perf_counter() < deadline:
        status = _status(port, user, password)
        if (status == 200) == wanted:
            return time.perf_counter()
        time.sleep(0.02)
    raise SystemExit(f"{user}: REGISTER never {'accepted' if wanted else 'refused'}")


def _changes(count: int) -> list[tuple[str, dict[str, object] | None, str | None, bool]]:
    """(label, the new user or None, the password to register with, accepted?)"""
    out: list[tuple[str, dict[str, object] | None, str | None, bool]] = []
    for n in range(count):
        kind = n % 4
        password = f"Rt#{n // 4:05d}xYzW"
        user: dict[str, object] = {"name": f"New {n // 4}", "extension": NEW,
                                   "sip_password": password}
        if kind == 0:
            out.append(("add", user, password, True))
        elif kind == 1:
            out.append(("rename", {**user, "name": f"Renamed {n // 4}"}, password, True))
        elif kind == 2:
            out.append(("new password", {**user, "name": f"Renamed {n // 4}",
                                         "sip_password": password + "2"}, password + "2", True))
        else:
            out.append(("remove", None, password + "2", False))
    return out


def _in_place(count: int) -> list[tuple[str, dict[str, object] | None, str | None, bool]]:
    """Changes that keep the user's extension (rename, new SIP password), the user present
    from the start: no dialplan reload (`--in-place`)."""
    out: list[tuple[str, dict[str, object] | None, str | None, bool]] = []
    for n in range(count):
        password = f"Rt#{n // 2:05d}xYzW"
        if n % 2 == 0:
            out.append(("rename", {"name": f"Renamed {n}", "extension": NEW,
                                   "sip_password": IN_PLACE_FIRST if n == 0 else
                                   f"Rt#{n // 2 - 1:05d}xYzW"}, None, True))
        else:
            out.append(("new password", {"name": f"Renamed {n - 1}", "extension": NEW,
                                         "sip_password": password}, password, True))
    return out


IN_PLACE_FIRST = "Rt#first0xYzW"


@dataclass
class BootedSite:
    """A lab Asterisk running a synthetic site of `users` users in `mode`, with the store and
    environment `wildix-ast apply` runs with, and the seconds each setup step took."""

    users: int
    mode: str
    lab: Lab
    env: dict[str, str]
    work: Path
    base: str  # the site's text without the changing user
    steps: dict[str, float]


def site_text(base: str, extra: dict[str, object] | None) -> str:
    """The site of `base` (`sites.site_yaml`'s text), plus `extra` if given."""
    return base if extra is None else base + user_yaml(extra)


@contextmanager
def booted(users: int, mode: str, tmp: Path, console: Console,
           in_place: bool = False, boot_timeout: float | None = None,
           ) -> Iterator[BootedSite]:
    """Set up the store and the lab of a `users`-user site in `mode` and boot it, each
    step timed and printed (site text, parse, store import, install, boot); the lab is
    stopped on leaving. `boot_timeout`: the lab's start timeout (by default
    max(600, users / 100) s); a boot that fails raises LabError with the log's tail."""
    work = tmp / f"{mode}-{users}"
    work.mkdir()
    env = {**os.environ, "WILDIX_AST_DB": str(work / "store.sqlite3"),
           "WILDIX_AST_LAB_STATE": str(work / "labs"), "NO_COLOR": "1"}
    name = f"rt{mode[:4]}{users}"
    steps: dict[str, float] = {}

    def step(label: str, began: float) -> None:
        steps[label] = time.perf_counter() - began
        console.print(f"  {mode} mode, {users:,} users: {label} {steps[label]:.1f} s "
                      f"(load average {os.getloadavg()[0]:.1f})", highlight=False)

    began = time.perf_counter()
    base = site_yaml(users, first_extension=FIRST_EXTENSION, realtime=mode)
    first: dict[str, object] | None = (
        {"name": "New", "extension": NEW, "sip_password": IN_PLACE_FIRST} if in_place else None)
    text = site_text(base, first)
    step("site text", began)
    began = time.perf_counter()
    site = parse_site(text)
    step("parse and validate", began)
    lab = Lab(name, work / "labs")
    with open_store(env["WILDIX_AST_DB"]) as store:
        began = time.perf_counter()
        store.import_site(site)
        step("store import", began)
        began = time.perf_counter()
        install_stored_site(store, lab.target())
        step("render and install", began)
    del site
    began = time.perf_counter()
    lab.start(timeout=boot_timeout or max(600, users // 100))
    step("lab boot", began)
    try:
        yield BootedSite(users, mode, lab, env, work, base, steps)
    finally:
        lab.stop()


def run_changes(site: BootedSite, changes: int, console: Console,
                in_place: bool = False, timings: list[dict[str, object]] | None = None,
                failures: list[str] | None = None) -> list[float]:
    """`changes` one-user changes on a booted site, each from the apply's start until a
    REGISTER shows it live (see the module's docstring); the seconds of each. The applies
    run with `--json`; each one's `timing` (its phases) is added to `timings`. With
    `failures`, a change whose apply fails is said there and the next one is tried (each
    apply brings the whole site to its file, so the next change does not depend on it);
    without, the first failure ends the run."""
    lab, env, work, name = site.lab, site.env, site.work, site.lab.name
    seconds: list[float] = []
    previous: str | None = None
    plan = _in_place(changes) if in_place else _changes(changes)
    for label, user, given, accepted in plan:
        password = given
        if password is None and user is not None:
            password = str(user["sip_password"])
        path = work / "site.yaml"
        path.write_text(site_text(site.base, user), encoding="utf-8")
        began = time.perf_counter()
        process = subprocess.Popen([*WILDIX, "apply", str(path), "--lab", name, "--json"],
                                   env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True)
        assert password is not None
        if label == "rename":
            # a phone registers the same before and after a rename: the command's exit
            # (once Asterisk shows the new configuration) is when it is live
            output, errors = process.communicate()
            live = time.perf_counter()
            if process.returncode == 0:
                assert _status(lab.ports.sip, NEW, password) == 200
        else:
            try:
                live = _until(lab.ports.sip, NEW, password, accepted, began + 600)
            except SystemExit:
                live = time.perf_counter()
                if failures is None or process.poll() is None:
                    raise
            output, errors = process.communicate()
        if process.returncode != 0:
            why = f"apply ({label}) failed ({process.returncode}): {errors.strip()[-2000:]}"
            if failures is None:
                raise SystemExit(why)
            failures.append(why)
            console.print(f"  {label}: FAILED: {why[:300]}", highlight=False)
            previous = None
            continue
        if timings is not None:
            with contextlib.suppress(ValueError, AttributeError):
                timings.append(json.loads(output)["timing"])
        seconds.append(live - began)
        if label == "new password" and previous is not None:
            assert _status(lab.ports.sip, NEW, previous) != 200, "old password accepted"
        previous = password
        console.print(f"  {label}: {seconds[-1]:.2f} s "
                      f"(apply process {time.perf_counter() - began:.2f} s; load average "
                      f"{os.getloadavg()[0]:.1f})")
    return seconds


def measure(users: int, mode: str, changes: int, tmp: Path, console: Console,
            in_place: bool = False) -> list[float]:
    with booted(users, mode, tmp, console, in_place) as site:
        return run_changes(site, changes, console, in_place)


def byte_compiled() -> None:
    """Byte-compile wildix_ast as pip does when it installs it: a shell that sets
    PYTHONDONTWRITEBYTECODE (this machine's does) would otherwise have every `apply`
    compile its ~120 modules from source (0.4-0.5 s of its start)."""
    import compileall

    import wildix_ast

    compileall.compile_dir(str(Path(wildix_ast.__file__).parent), quiet=1)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--file-limit", type=int, default=FILE_MODE_LIMIT,
                        help="largest site measured in the file mode too (above it the "
                        "file-mode lab Asterisk does not boot)")
    parser.add_argument("--in-place", action="store_true",
                        help="only renames and new SIP passwords of a user present from the "
                        "start (no dialplan reload)")
    args = parser.parse_args()
    console = Console(width=160)
    ensure_rootfs()
    byte_compiled()
    table = Table(title="one-user change: command start -> phone registers with it",
                  show_edge=False)
    for column in ("users", "file p50", "file p99", "realtime p50", "realtime p99",
                   "ratio p50", "ratio p99", "target (realtime)"):
        table.add_column(column, justify="right")
    with tempfile.TemporaryDirectory(prefix="wildix-bench-realtime-") as tmp_name:
        for users in args.users:
            modes = ("file", "realtime") if users <= args.file_limit else ("realtime",)
            found = {mode: measure(users, mode, args.changes, Path(tmp_name), console,
                                   args.in_place)
                     for mode in modes}
            r = found["realtime"]
            if "file" not in found:
                why = (NO_FILE_BASELINE if users > FILE_MODE_LIMIT
                       else f"not asked for (--file-limit {args.file_limit})")
                console.print(f"{users:,} users: no file-mode baseline: {why}")
                table.add_row(f"{users:,}", "(not run)", "(not run)",
                              f"{statistics.median(r):.2f} s",
                              f"{percentile(r, 0.99):.2f} s", "-", "-", "< 1 s")
                continue
            f = found["file"]
            table.add_row(f"{users:,}", f"{statistics.median(f):.2f} s",
                          f"{percentile(f, 0.99):.2f} s",
                          f"{statistics.median(r):.2f} s", f"{percentile(r, 0.99):.2f} s",
                          f"{statistics.median(r) / statistics.median(f):.2f}×",
                          f"{percentile(r, 0.99) / percentile(f, 0.99):.2f}×", "< 1 s")
    console.print(table)
    load = os.getloadavg()
    console.print(f"load average at the end: {load[0]:.1f} (5 min {load[1]:.1f}, 15 min "
                  f"{load[2]:.1f}) on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
