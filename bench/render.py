"""Load + validate + render time and peak memory for sites of 100 to 50,000 users (in-process;
bench/apply.py times the whole commands against a live Asterisk).

    .venv/bin/python bench/render.py [--sizes 100,1000,10000,50000]

Each size runs in a fresh process so its peak memory (max RSS) is its own."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))

TARGETS = {10_000: (1.0, 300.0), 50_000: (5.0, None)}


def measure_one(users: int) -> dict[str, float]:
    """Runs in the child: the file is written first, then timed from reading it."""
    import resource

    from sites import site_yaml

    from wildix_ast.asterisk.paths import AsteriskPaths
    from wildix_ast.asterisk.render import render_site
    from wildix_ast.model.settings_file import load_site

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "site.yaml"
        path.write_text(site_yaml(users), encoding="utf-8")
        baseline_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        start = time.perf_counter()
        site = load_site(path)
        loaded = time.perf_counter()
        files = render_site(site, manager_secret="Bench#Secret1", paths=AsteriskPaths())
        rendered = time.perf_counter()
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"users": users, "load_validate_s": loaded - start, "render_s": rendered - loaded,
            "total_s": rendered - start, "peak_rss_mb": peak_rss,
            "baseline_rss_mb": baseline_rss, "output_kb": sum(map(len, files.values())) / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,10000,50000")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure_one(args.child)))
        return
    console = Console(width=120)
    table = Table(title="load + validate + render")
    for column in ("users", "load+validate s", "render s", "total s", "peak RSS MB",
                   "output KiB", "target"):
        table.add_column(column, justify="right")
    for users in (int(s) for s in args.sizes.split(",")):
        child = subprocess.run([sys.executable, __file__, "--child", str(users)],
                               capture_output=True, text=True, check=False)
        if child.returncode != 0:
            console.print(f"[red]{users} users failed:[/]\n{child.stderr}")
            sys.exit(1)
        r = json.loads(child.stdout)
        target = TARGETS.get(users)
        verdict = ""
        if target:
            ok = r["total_s"] < target[0] and (target[1] is None or r["peak_rss_mb"] < target[1])
            limit = f"< {target[0]:g} s" + (f", < {target[1]:g} MB" if target[1] else "")
            verdict = f"[green]{limit} ✓[/]" if ok else f"[red]{limit} ✗[/]"
        table.add_row(f"{users:,}", f"{r['load_validate_s']:.3f}", f"{r['render_s']:.3f}",
                      f"{r['total_s']:.3f}", f"{r['peak_rss_mb']:.0f}",
                      f"{r['output_kb']:,.0f}", verdict)
    console.print(table)


if __name__ == "__main__":
    main()
