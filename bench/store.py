"""Store import / re-import / export time for a large site.

    .venv/bin/python bench/store.py [--users 50000] [--db URL]

Without --db, a fresh SQLite file in a temporary folder. A PostgreSQL or MariaDB URL must
name an empty database (the benchmark imports into it)."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))

from sites import site_yaml

from wildix_ast.settings_file import parse_site
from wildix_ast.store import open_store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--db", help="database URL (default: a temporary SQLite file)")
    args = parser.parse_args()
    site = parse_site(site_yaml(args.users))
    changed = site.model_copy(update={"users": [
        site.users[0].model_copy(update={"name": "Renamed"}), *site.users[1:]]})
    with tempfile.TemporaryDirectory() as tmp:
        url = args.db or str(Path(tmp) / "bench.sqlite3")
        backend = url.split(":")[0] if args.db else "SQLite"
        table = Table(title=f"store with {args.users:,} users ({backend})")
        table.add_column("step")
        table.add_column("seconds", justify="right")
        with open_store(url) as store:
            for label, action in (("first import", lambda: store.import_site(site)),
                                  ("re-import, unchanged", lambda: store.import_site(site)),
                                  ("re-import, one user changed",
                                   lambda: store.import_site(changed)),
                                  ("export", store.export_site)):
                start = time.perf_counter()
                action()
                table.add_row(label, f"{time.perf_counter() - start:.2f}")
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
