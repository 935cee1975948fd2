"""Directory sync: full and incremental, against a real slapd on loopback.

    .venv/bin/python bench/directory.py [--users 10000,50000]

For each size, a fresh slapd (tests/support/slapd_server.py: LDAPS, test CA) is loaded with
that many inetOrgPerson users in groups of 1,000. Baseline, measured in the same run: the raw
ldap3 paged search of the same entries with the same attributes (what any sync has to read).
Then a full sync into an empty store, and an incremental one after 10 entries changed and 5
deleted. The ratios are each step's time over the baseline; the raw listing of two attributes
is the floor of an incremental sync (it lists every entry to find deletions)."""

from __future__ import annotations

import argparse
import ssl
import sys
import tempfile
import time
from pathlib import Path

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

from wildix_ast.model.settings_file import parse_site
from wildix_ast.services.directory.sync import apply_sync, plan_sync
from wildix_ast.store import open_store
from wildix_ast.store.directory import BIND_PASSWORD_KEY

GROUP = 1000


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


def measure(users: int) -> dict[str, float]:
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
        figures: dict[str, float] = {}
        attributes = ["entryUUID", "modifyTimestamp", "cn", "uid", "telephoneNumber", "mail",
                      "mobile", "departmentNumber", "preferredLanguage"]
        raw_paged_search(server, ["entryUUID"])  # warm the server's caches once
        start = time.perf_counter()
        assert raw_paged_search(server, attributes) == users
        figures["baseline: raw ldap3 paged search"] = time.perf_counter() - start
        start = time.perf_counter()
        assert raw_paged_search(server, ["entryUUID", "modifyTimestamp"]) == users
        figures["raw listing (entryUUID, modifyTimestamp)"] = time.perf_counter() - start
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
        with tempfile.TemporaryDirectory() as folder, \
                open_store(str(Path(folder) / "s.sqlite3")) as store:
            store.import_site(site)
            store.put_secret(BIND_PASSWORD_KEY, READER_PASSWORD)
            start = time.perf_counter()
            apply_sync(store, plan_sync(store, full=True))
            figures["full sync"] = time.perf_counter() - start
            admin = server.admin()
            for i in range(10):
                admin.modify(_dn(i * 7), {"mail": [("MODIFY_REPLACE", [f"n{i}@example.org"])]})
            for i in range(5):
                admin.delete(_dn(users - 1 - i * 11))
            admin.unbind()
            start = time.perf_counter()
            plan = plan_sync(store)
            apply_sync(store, plan)
            figures["incremental sync (10 changed, 5 deleted)"] = time.perf_counter() - start
            assert (len(plan.changes.changed), len(plan.changes.removed)) == (10, 5)
        return figures
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", default="10000,50000",
                        help="comma-separated sizes (default: 10000,50000)")
    sizes = [int(s) for s in parser.parse_args().users.split(",")]
    table = Table(title="directory sync (seconds; ratio: over the raw paged search)")
    table.add_column("step")
    for size in sizes:
        table.add_column(f"{size:,} users", justify="right")
        table.add_column("ratio", justify="right")
    results = [measure(size) for size in sizes]
    for step in results[0]:
        cells = []
        for figures in results:
            base = figures["baseline: raw ldap3 paged search"]
            cells += [f"{figures[step]:.2f}", f"{figures[step] / base:.1f}×"]
        table.add_row(step, *cells)
    Console().print(table)


if __name__ == "__main__":
    main()
