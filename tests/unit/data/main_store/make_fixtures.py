"""How the stores in this folder were made, with main's code at commit 5a38bd70 (schema 0008,
the JSON `documents` table): from main's checkout, `cd /work/main && .venv/bin/python
<this folder>/make_fixtures.py examples/sons`, with this folder's `example.yaml` (main's
examples/site.yaml as it was) and `rich.yaml` (the example with every optional setting of
the sections main kept as documents); the sounds must exist for the sites to load.

For each site: import it (without converting the sounds: the audio tables are not what
the migration changes, and keep the file small), render it from the store's export (which
generates and keeps the secrets), then write what main exported (`NAME.export.yaml`, the
`wildix-ast export` text) and the SHA-256 of every rendered file (`NAME.render.sha256`)."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import sys
import tempfile
from pathlib import Path

from wildix_ast.apply.pipeline import render_to_folder
from wildix_ast.model.settings_file import dump_site, load_site
from wildix_ast.store import open_store

HERE = Path(__file__).resolve().parent


def make(name: str, sounds: Path) -> None:
    with tempfile.TemporaryDirectory() as work:
        settings = Path(work) / f"{name}.yaml"
        shutil.copy(HERE / f"{name}.yaml", settings)
        shutil.copytree(sounds, Path(work) / "sons")
        site = load_site(settings)
        store_file = HERE / f"{name}.sqlite3"
        store_file.unlink(missing_ok=True)
        with open_store(str(store_file)) as store:
            store.import_site(site, settings.read_text(encoding="utf-8"))
            exported = store.export_site()
            out = Path(work) / "out"
            written = render_to_folder(exported, store, out)
        (HERE / f"{name}.export.yaml").write_text(dump_site(exported, include_secrets=False),
                                                  encoding="utf-8")
        lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(out)}"
                 for p in sorted(written)]
        (HERE / f"{name}.render.sha256").write_text("\n".join(lines) + "\n", encoding="utf-8")
    # small pages: a few kilobytes per table instead of 4 KiB each
    connection = sqlite3.connect(store_file, isolation_level=None)
    connection.execute("PRAGMA journal_mode = DELETE")
    connection.execute("PRAGMA page_size = 512")
    connection.execute("VACUUM")
    connection.close()


if __name__ == "__main__":
    for site_name in ("example", "rich"):
        make(site_name, Path(sys.argv[1]) if len(sys.argv) > 1 else Path("examples/sons"))
