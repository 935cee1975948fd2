"""Directory sync as a person runs it: `wildix-ast directory sync`, full and incremental,
against a real slapd on loopback.

    .venv/bin/python bench/directory.py [--users 10000,50000]

For each size, a fresh slapd (tests/support/slapd_server.py: LDAPS, test CA) is loaded with
that many inetOrgPerson users in groups of 1,000, and a store gets the directory settings
and the bind password. Then the command, each run a process from start to exit: a full
sync into the empty store (`directory sync`, the first one is full), and an incremental
one after 10 entries changed and 5 deleted (its JSON answer checked: 10 changed, 5 removed).

Baselines, measured in the same run with OpenLDAP's own compiled client over the same
LDAPS: `ldapsearch` of every entry with the sync's attributes (paged by 500: what a full
sync has to read), and `ldapsearch` listing two attributes of every entry (the floor of an
incremental sync, which lists every entry to find deletions). Ratios are the command's wall
time over the matching ldapsearch's. Each step: wall clock, and CPU seconds (user + system)
of the process and its children, from wait4 (the machine may be shared: CPU does not grow
with the load; slapd's own CPU is not in it)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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
from wildix_ast.store import open_store
from wildix_ast.store.directory import BIND_PASSWORD_KEY

GROUP = 1000
ATTRIBUTES = ["entryUUID", "modifyTimestamp", "cn", "uid", "telephoneNumber", "mail",
              "mobile", "departmentNumber", "preferredLanguage"]
FULL_BASELINE = "baseline: ldapsearch, every entry, the sync's attributes"
LIST_BASELINE = "baseline: ldapsearch, every entry, 2 attributes"
FULL = "wildix-ast directory sync (full, first)"
INCREMENTAL = "wildix-ast directory sync (incremental: 10 changed, 5 deleted)"
#: each step's baseline (the ratio's denominator)
AGAINST = {FULL: FULL_BASELINE, INCREMENTAL: LIST_BASELINE}


def timed_process(figures: dict[str, tuple[float, float]], step: str, command: list[str],
                  env: dict[str, str]) -> str:
    """Run `command` as a process; its wall time and CPU (user + system, children too)
    go in `figures`; its standard output is returned (exit 0 required)."""
    with tempfile.TemporaryFile() as output:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.PIPE, env=env)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        error = process.stderr.read().decode() if process.stderr else ""
        assert process.returncode == 0, f"{step}: exit {process.returncode}: {error}"
        figures[step] = (wall, usage.ru_utime + usage.ru_stime)
        output.seek(0)
        return output.read().decode()


def ldapsearch(server: SlapdServer, attributes: list[str]) -> list[str]:
    return ["ldapsearch", "-LLL", "-o", "ldif-wrap=no", "-x",
            "-H", f"ldaps://127.0.0.1:{server.ldaps_port}", "-D", READER_DN,
            "-w", READER_PASSWORD, "-b", BASE_DN, "-E", "pr=500/noprompt",
            "(objectClass=inetOrgPerson)", *attributes]


def _dn(i: int) -> str:
    return f"uid=u{i:06d},ou=people,{BASE_DN}"


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
        env = {**os.environ, "LDAPTLS_CACERT": str(server.ca_file), "NO_COLOR": "1"}
        subprocess.run(ldapsearch(server, ["entryUUID"]), env=env, check=True,
                       capture_output=True)  # warm the server's caches once
        listing = timed_process(figures, FULL_BASELINE, ldapsearch(server, ATTRIBUTES), env)
        assert listing.count("\ndn: ") + listing.startswith("dn: ") == users
        timed_process(figures, LIST_BASELINE,
                      ldapsearch(server, ["entryUUID", "modifyTimestamp"]), env)
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
            path = Path(folder) / "s.sqlite3"
            with open_store(str(path)) as store:
                store.import_site(site)
                store.put_secret(BIND_PASSWORD_KEY, READER_PASSWORD)
            command = [sys.executable, "-m", "wildix_ast", "directory", "sync", "--db",
                       str(path), "--json"]
            full = json.loads(timed_process(figures, FULL, command, env))
            assert full["full"] and len(full["added"]) == users, {
                k: v for k, v in full.items() if not isinstance(v, list)}
            admin = server.admin()
            for i in range(10):
                admin.modify(_dn(i * 7), {"mail": [("MODIFY_REPLACE", [f"n{i}@example.org"])]})
            for i in range(5):
                admin.delete(_dn(users - 1 - i * 11))
            admin.unbind()
            incremental = json.loads(timed_process(figures, INCREMENTAL, command, env))
            assert not incremental["full"]
            assert (len(incremental["changed"]), len(incremental["removed"])) == (10, 5), \
                incremental
        return figures
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", default="10000,50000",
                        help="comma-separated sizes (default: 10000,50000)")
    sizes = [int(s) for s in parser.parse_args().users.split(",")]
    table = Table(title="directory sync as run (seconds: wall clock / CPU of the process "
                        f"and its children; ratio: wall over its baseline), load average "
                        f"{os.getloadavg()[0]:.1f} at start")
    table.add_column("step")
    for size in sizes:
        table.add_column(f"{size:,} users", justify="right")
        table.add_column("ratio", justify="right")
    results = [measure(size) for size in sizes]
    for step in results[0]:
        cells = []
        for figures in results:
            wall, cpu = figures[step]
            baseline = AGAINST.get(step)
            ratio = f"{wall / figures[baseline][0]:.1f}×" if baseline else ""
            cells += [f"{wall:.2f} / {cpu:.2f}", ratio]
        table.add_row(step, *cells)
    Console().print(table)
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
