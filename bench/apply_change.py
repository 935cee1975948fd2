"""A one-user change applied by the whole `wildix-ast apply` process, WEB passwords written
as texts and as hashes, against Asterisk's own reload of the files that change, in one run,
for each site size.

    .venv/bin/python bench/apply_change.py [--users 10000,100000] [--rounds 2] [--large-rounds 1]

Per size: one store and one lab Asterisk with the site. The site is written twice, the same
site both times: once with every WEB password as text (as a person writes it), once with
every WEB password as the hash the store keeps (as an export gives it); applying one form
after the other changes nothing in the store. Each round applies a rename of one user, then
the name back, in each form, and right after each apply measures Asterisk reloading the
modules that apply reloaded doing the same change itself: the files the apply wrote are put
back as they were and reloaded (the change undone: shown), then written as the apply wrote
them and reloaded (the same change as the apply's, by Asterisk alone). The ratio apply /
that reload is the figure (target <= 1.25). Touching a file without changing it (what
bench/apply.py reloads) costs Asterisk less than a real change: a real change is the fair
baseline.

The apply runs with `--json` (its `timing` gives the phases; a person's run without it
differs by printing the one-line diff). Its wall time is measured from before the process
starts until it ends.

Setting up: the first import of a site with WEB password texts hashes each (argon2id,
~40 ms each: 200 s for 10,000 users on 2 cores, half an hour for 100,000). The setup's
import therefore hashes with cheap argon2id parameters (m=1 MiB, t=1); what is measured
never verifies nor hashes an unchanged text (its keyed tag matches: store/password_tags.py),
so the parameters of the stored hashes do not enter the figures. The apply's JSON `timing`
shows the store update taking milliseconds."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))

from apply import _asterisk_reload
from sites import site_yaml

from wildix_ast.apply.pipeline import install_stored_site
from wildix_ast.lab.instance import Lab
from wildix_ast.lab.rootfs import ensure_rootfs
from wildix_ast.model.settings_file import dump_site, parse_site
from wildix_ast.store import open_store, site_rows

WILDIX = [sys.executable, "-m", "wildix_ast"]
RENAMED = ("name: User 0 Dupont-Martin", "name: User 0 Renamed")


def _cheap_hash(password: str) -> str:
    from argon2 import PasswordHasher

    return PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(password)


def _apply(site: Path, lab: str, env: dict[str, str]) -> tuple[float, dict[str, object]]:
    started = time.perf_counter()
    result = subprocess.run([*WILDIX, "apply", str(site), "--lab", lab, "--json"], env=env,
                            capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"apply {site.name} failed ({result.returncode}):\n{result.stderr}"
                         f"\n{result.stdout[-2000:]}")
    return elapsed, json.loads(result.stdout)


def measure_forms(users: int, rounds: int, console: Console, tmp: Path,
                  ) -> dict[str, list[tuple[float, float]]]:
    """Per WEB password form, (the apply's wall time, Asterisk's reload of the same change)
    of each measured apply; the tables printed as they come."""
    work = tmp / f"{users}"
    work.mkdir()
    env = {**os.environ, "WILDIX_AST_DB": str(work / "store.sqlite3"),
           "WILDIX_AST_LAB_STATE": str(work / "labs"), "NO_COLOR": "1",
           "WILDIX_AST_PASSWORD_KEY": str(work / "keys" / "password-tag.key")}
    os.environ["WILDIX_AST_PASSWORD_KEY"] = env["WILDIX_AST_PASSWORD_KEY"]
    started = time.perf_counter()
    text_form = site_yaml(users, web_texts=True, first_extension=200000)
    site = parse_site(text_form)
    module = vars(site_rows)
    real_hash = module["hash_password"]
    module["hash_password"] = _cheap_hash  # the setup's import only (see the docstring)
    try:
        with open_store(env["WILDIX_AST_DB"]) as store:
            store.import_site(site)
            hash_form = dump_site(store.export_site(), include_secrets=True)
            lab = Lab(f"change{users}", work / "labs")
            target = lab.target()
            install_stored_site(store, target)
    finally:
        module["hash_password"] = real_hash
    files = {}
    for form, body in (("texts", text_form), ("hashes", hash_form)):
        assert RENAMED[0] in body
        files[form] = (work / f"{form}.yaml", work / f"{form}-renamed.yaml")
        files[form][0].write_text(body, encoding="utf-8")
        files[form][1].write_text(body.replace(*RENAMED, 1), encoding="utf-8")
    console.print(f"{users:,} users: store and files ready in "
                  f"{time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    lab.start(timeout=max(300, users // 100))
    console.print(f"{users:,} users: lab Asterisk booted in "
                  f"{time.perf_counter() - started:.1f} s")
    table = Table(title=f"one-user change, {users:,} users", show_edge=False)
    for column in ("round", "WEB passwords", "change", "wildix-ast apply",
                   "Asterisk: the same change", "ratio", "target", "(its undo)", "reloaded",
                   "apply's phases (s)"):
        table.add_column(column, justify="right")
    ratios: dict[str, list[float]] = {"texts": [], "hashes": []}
    pairs: dict[str, list[tuple[float, float]]] = {"texts": [], "hashes": []}
    try:
        # the lab's files came from the store: a first apply makes the site file's own
        # (and the target's first generation) before anything is measured
        _apply(files["texts"][0], lab.name, env)
        for n in range(rounds):
            for form in ("texts", "hashes"):
                for label, path in (("rename", files[form][1]), ("back", files[form][0])):
                    before = {p.name: p.read_bytes() for p in lab.etc_dir.glob("*.conf")}
                    wall, outcome = _apply(path, lab.name, env)
                    result = outcome["result"]
                    assert isinstance(result, dict)
                    modules = [r["module"] for r in result["reloads"]]
                    written = {name: (lab.etc_dir / name).read_bytes()
                               for name in result["files_written"]}
                    for name in written:
                        (lab.etc_dir / name).write_bytes(before[name])
                    undo = asyncio.run(_asterisk_reload(target.console(), modules))
                    for name, body in written.items():
                        (lab.etc_dir / name).write_bytes(body)
                    reload = asyncio.run(_asterisk_reload(target.console(), modules))
                    ratios[form].append(wall / reload)
                    pairs[form].append((wall, reload))
                    timing = outcome["timing"]
                    assert isinstance(timing, dict)
                    phases = " ".join(f"{k} {v:.2f}" for k, v in timing["phases"].items()
                                      if v >= 0.01)
                    # as it comes too: a large site's round takes minutes
                    console.print(f"  {users:,} users, {form}, {label}: apply {wall:.2f} s, "
                                  f"Asterisk {reload:.2f} s ({wall / reload:.2f}×), "
                                  f"undo {undo:.2f} s; load average "
                                  f"{os.getloadavg()[0]:.1f}", highlight=False)
                    table.add_row(str(n + 1), form, label, f"{wall:.2f} s", f"{reload:.2f} s",
                                  f"{ratios[form][-1]:.2f}×", "≤ 1.25×", f"{undo:.2f} s",
                                  ", ".join(m.removesuffix(".so") for m in modules), phases)
    finally:
        lab.stop()
    console.print(table)
    summary = []
    for form, values in ratios.items():
        summary.append(f"{form}: median {statistics.median(values):.2f}×, worst "
                       f"{max(values):.2f}×")
    console.print(f"{users:,} users, apply / Asterisk reload: " + "; ".join(summary)
                  + " (target ≤ 1.25×)")
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", default="10000,100000",
                        help="site sizes, comma-separated")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--large-rounds", type=int, default=1,
                        help="rounds for sites above 20,000 users (each reload is long)")
    args = parser.parse_args()
    console = Console(width=220)
    ensure_rootfs()
    with tempfile.TemporaryDirectory(prefix="wildix-bench-change-") as tmp_name:
        for users in (int(u) for u in args.users.split(",")):
            measure_forms(users, args.rounds if users <= 20_000 else args.large_rounds, console,
                  Path(tmp_name))
    console.print(f"load average while measuring: {os.getloadavg()[0]:.1f} on "
                  f"{os.cpu_count()} cores")


if __name__ == "__main__":
    main()
