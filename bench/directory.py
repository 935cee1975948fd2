"""Directory sync: full and incremental, against a real slapd on loopback.

    .venv/bin/python bench/directory.py [--users 10000,50000]

For each size, a fresh slapd (tests/support/slapd_server.py: LDAPS, test CA) is loaded with
that many inetOrgPerson users in groups of 1,000. Then a full sync into an empty store, and
an incremental one after 10 entries changed and 5 deleted.

Baselines, measured in the same run: the same change made the other way, from a settings
file (the site the incremental sync writes, dumped to YAML, then parsed and imported into a
copy of the store as it was before the sync: what `wildix-ast import` costs for it), and the
raw ldap3 paged search of every entry with the sync's attributes (what any full sync has to
read); the raw listing of two attributes is the floor of an incremental sync (it lists every
entry to find deletions). Ratios are over the settings-file import. Each step is timed on
the wall clock and in CPU seconds of this process (the machine may be shared: the CPU time
does not grow with the load; slapd's own CPU is not in it)."""

from __future__ import annotations

import argparse
import shutil
import ssl
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import ldap3
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))

from support.slapd_server import (
    BASE_DN,
    READER_DN,
    READER_PASSWORD,
    SlapdServer,
    base_ldif,
    group_ldif,
    person_ldif,
)

from wildix_ast.model.settings_file import dump_site, parse_site
from wildix_ast.services.directory.sync import apply_sync, plan_sync
from wildix_ast.store import open_store
from wildix_ast.store.directory import BIND_PASSWORD_KEY

GROUP = 1000
BASELINE = "baseline: the same change imported from a settings file"
_T = TypeVar("_T")


def timed(figures: dict[str, tuple[float, float]], step: str, work: Callable[[], _T]) -> _T:
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    figures[step] = (time.perf_counter() - wall, time.process_time() - cpu)
    return result


def _dn(i: int) -> str:
    return f"uid=u{i:06d},ou=people,{BASE_DN}"


def raw_paged_search(server: SlapdServer, attributes: list[str]) -> int:
    tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(server.ca_file))
    connection = ldap3.Connection(ldap3.Server("127.0.0.1", port=server.ldaps_port,
                                               use_ssl=True, tls=tls),
                                  READER_DN, READER_PASSWORD, auto_bind=True)
    found = sum(1 for e in connection.extend.standard.paged_search(
        BASE_DN, "(objectClass=inetOrgPerson)", attributes=attributes, paged_size=500,
        generator=True) if e.get("type") == "searchResEntry")
    connection.unbind()
    return found


def measure(users: int) -> dict[str, tuple[float, float]]:
    server = SlapdServer()
    try:
        parts = [base_ldif()]
        parts += [person_ldif(f"u{i:06d}", cn=f"User {i} Martin", number=str(100000 + i),
                              mail=f"u{i}@example.org", mobile=f"+33 6 {i:08d}")
                  for i in range(users)]
        parts += [group_ldif(f"pbx{g}", (_dn(i) for i in range(g, min(g + GROUP, users))))
                  for g in range(0, users, GROUP)]
        server.load("".join(parts))
        server.start()
        figures: dict[str, tuple[float, float]] = {}
        attributes = ["entryUUID", "modifyTimestamp", "cn", "uid", "telephoneNumber", "mail",
                      "mobile", "departmentNumber", "preferredLanguage"]
        raw_paged_search(server, ["entryUUID"])  # warm the server's caches once
        assert timed(figures, "raw ldap3 paged search (every attribute)",
                     lambda: raw_paged_search(server, attributes)) == users
        assert timed(figures, "raw listing (entryUUID, modifyTimestamp)",
                     lambda: raw_paged_search(server, ["entryUUID", "modifyTimestamp"])) \
            == users
        site = parse_site(f"""
groups: [{{name: default}}]
directory:
  enabled: true
  servers: ["127.0.0.1:{server.ldaps_port}"]
  ca_file: {server.ca_file}
  bind_dn: "{READER_DN}"
  base_dn: "{BASE_DN}"
  group_filter: "(cn=pbx*)"
""")
        with tempfile.TemporaryDirectory() as folder:
            path, copy = Path(folder) / "s.sqlite3", Path(folder) / "copy.sqlite3"
            with open_store(str(path)) as store:
                store.import_site(site)
                store.put_secret(BIND_PASSWORD_KEY, READER_PASSWORD)
                timed(figures, "full sync",
                      lambda: apply_sync(store, plan_sync(store, full=True)))
                admin = server.admin()
                for i in range(10):
                    admin.modify(_dn(i * 7),
                                 {"mail": [("MODIFY_REPLACE", [f"n{i}@example.org"])]})
                for i in range(5):
                    admin.delete(_dn(users - 1 - i * 11))
                admin.unbind()
            shutil.copyfile(path, copy)
            with open_store(str(path)) as store:
                plan = timed(figures, "incremental sync: plan (LDAP, compare)",
                             lambda: plan_sync(store))
                timed(figures, "incremental sync: write", lambda: apply_sync(store, plan))
            assert (len(plan.changes.changed), len(plan.changes.removed)) == (10, 5)
            plan_wall, plan_cpu = figures["incremental sync: plan (LDAP, compare)"]
            write_wall, write_cpu = figures["incremental sync: write"]
            figures["incremental sync (10 changed, 5 deleted)"] = (plan_wall + write_wall,
                                                                  plan_cpu + write_cpu)
            assert plan.site is not None
            text = dump_site(plan.site, include_secrets=False)
            with open_store(str(copy)) as store:
                report = timed(figures, BASELINE,
                               lambda: store.import_site(parse_site(text), source_text=text))
            assert (report.changed, report.removed) == (10, 5)
        return figures
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", default="10000,50000",
                        help="comma-separated sizes (default: 10000,50000)")
    sizes = [int(s) for s in parser.parse_args().users.split(",")]
    table = Table(title="directory sync (seconds: wall clock / CPU of this process; ratio: "
                        "wall over the settings-file import of the same change)")
    table.add_column("step")
    for size in sizes:
        table.add_column(f"{size:,} users", justify="right")
        table.add_column("ratio", justify="right")
    results = [measure(size) for size in sizes]
    order = [BASELINE, *(step for step in results[0] if step != BASELINE)]
    for step in order:
        cells = []
        for figures in results:
            wall, cpu = figures[step]
            cells += [f"{wall:.2f} / {cpu:.2f}", f"{wall / figures[BASELINE][0]:.2f}×"]
        table.add_row(step, *cells)
    Console().print(table)


if __name__ == "__main__":
    main()
