"""How long a live Asterisk 22 (the lab) takes to start with, and to reload, a large site.

    .venv/bin/python bench/reload.py [--users 10000]"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))

from sites import site_yaml

from wildix_ast.apply import install, plan
from wildix_ast.lab.instance import Lab
from wildix_ast.lab.rootfs import ensure_rootfs
from wildix_ast.pipeline import Target, commit_plan, compile_site
from wildix_ast.secrets_vault import MemoryVault
from wildix_ast.settings_file import parse_site


def measure_reload(console: Console, users: int) -> None:
    ensure_rootfs()
    site = parse_site(site_yaml(users))
    vault = MemoryVault()
    with tempfile.TemporaryDirectory(prefix="wildix-bench-") as tmp:
        lab = Lab("bench", Path(tmp))
        target = Target.lab(lab)
        compiled = compile_site(site, vault, target)
        install(plan(lab.etc_dir, compiled.files))
        started = time.perf_counter()
        lab.start(timeout=300)
        boot = time.perf_counter() - started
        try:
            table = Table(title=f"Asterisk 22 with {users:,} users")
            table.add_column("step")
            table.add_column("seconds", justify="right")
            table.add_row("start (fully booted)", f"{boot:.2f}")
            # One user renamed: pjsip.conf and voicemail.conf change, the dialplan does not.
            first = site.users[0].model_copy(update={"name": "Renamed User"})
            changed = site.model_copy(update={"users": [first, *site.users[1:]]})
            for label, new_site in (("rename one user", changed), ("rename back", site)):
                compiled = compile_site(new_site, vault, target)
                report = asyncio.run(commit_plan(compiled, plan(lab.etc_dir, compiled.files)))
                for reload in report.reloads:
                    table.add_row(f"{label}: {reload.cli}", f"{reload.seconds:.2f}")
                table.add_row(f"{label}: verify {users:,} endpoints through AMI",
                              f"{report.verify_seconds:.2f}")
                table.add_row(f"{label}: whole apply", f"{report.total_seconds:.2f}")
            console.print(table)
        finally:
            lab.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10_000)
    args = parser.parse_args()
    measure_reload(Console(width=120), args.users)


if __name__ == "__main__":
    main()
