"""Store import, re-import (unchanged, one user changed), export and a lookup by extension.

    .venv/bin/python bench/store.py [--users 10000,50000] [--db URL]

Each size starts from a fresh SQLite file in a temporary folder, or from the empty database
`--db` names (PostgreSQL or MariaDB; it is imported into). The ratios compare each re-import
with the first import of the same run. WEB passwords are given as their argon2id hash (what
an export carries); the cost of one plain-text password (hashed on first import, verified
on every re-import) is printed apart."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))

from sites import site_yaml

from wildix_ast.model.passwords import hash_password, password_matches
from wildix_ast.model.settings_file import parse_site
from wildix_ast.store import open_store

LOOKUPS = 500


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def measure(users: int, url: str) -> dict[str, float]:
    site = parse_site(site_yaml(users))
    renamed = site.model_copy(update={"users": [
        *site.users[:users // 2], site.users[users // 2].model_copy(update={"name": "Renamed"}),
        *site.users[users // 2 + 1:]]})
    extensions = [site.users[i * users // LOOKUPS].extension for i in range(LOOKUPS)]
    figures: dict[str, float] = {}
    with open_store(url) as store:
        figures["first import"] = timed(lambda: store.import_site(site))
        figures["re-import, unchanged"] = timed(lambda: store.import_site(site))
        figures["re-import, one user changed"] = timed(lambda: store.import_site(renamed))
        figures["export"] = timed(store.export_site)
        figures["lookup by extension (ms)"] = 1000 * timed(
            lambda: [store.user_by_extension(e) for e in extensions]) / LOOKUPS
        assert store.user_by_extension(extensions[-1]) is not None
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", default="10000,50000",
                        help="comma-separated site sizes (default 10000,50000)")
    parser.add_argument("--db", help="database URL (default: a temporary SQLite file)")
    args = parser.parse_args()
    sizes = [int(n) for n in args.users.split(",")]
    backend = args.db.split(":")[0] if args.db else "SQLite"
    results = {}
    for size in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            results[size] = measure(size, args.db or str(Path(tmp) / f"bench-{size}.sqlite3"))
    table = Table(title=f"store ({backend}), seconds unless said")
    table.add_column("step")
    for size in sizes:
        table.add_column(f"{size:,} users", justify="right")
    for step in results[sizes[0]]:
        table.add_row(step, *(f"{results[s][step]:.3f}" for s in sizes))
    for step in ("re-import, unchanged", "re-import, one user changed"):
        table.add_row(f"first import / {step}",
                      *(f"{results[s]['first import'] / results[s][step]:.1f}×" for s in sizes))
    Console(width=120).print(table)
    hashed = hash_password("Web#0000000xY")
    verify = timed(lambda: password_matches(hashed, "Web#0000000xY"))
    print(f"one plain-text WEB password: {1000 * timed(lambda: hash_password('x')):.0f} ms to "
          f"hash (first import), {1000 * verify:.0f} ms to verify (each re-import)")


if __name__ == "__main__":
    main()
