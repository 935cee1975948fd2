"""Users from a real OpenLDAP server (Debian's slapd, started by the tests on loopback, LDAPS
with a test CA): a full sync of 10,000 users in groups, an incremental sync after changing
10 and deleting 5 (store, secrets, preferences, device assignment and rendered PJSIP: 0
orphans), and the bad
inputs (unreachable server, wrong password, untrusted certificate, an empty group, entries
missing attributes) that must stop with a clear message and change nothing.

Range retrieval (AD's `member;range=0-1499`) cannot be shown with slapd, which never splits
a value list: tests/unit/test_directory.py plays AD's answers to the ranging function."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.cli_run import assert_no_traceback, run
from support.slapd_server import (
    BASE_DN,
    READER_DN,
    READER_PASSWORD,
    SlapdServer,
    base_ldif,
    group_ldif,
    make_ca,
    person_ldif,
)

from wildix_ast.asterisk.render import render_site
from wildix_ast.errors import DirectoryError
from wildix_ast.model.devices import Device
from wildix_ast.store import open_store
from wildix_ast.store.devices import add_device
from wildix_ast.store.directory import owned_users, sync_state
from wildix_ast.store.vault import with_secrets

USERS = 10_000
GROUPS = 10
FILTER = "(&(objectClass=inetOrgPerson)(!(employeeType=disabled)))"


def _dn(i: int) -> str:
    return f"uid=u{i:05d},ou=people,{BASE_DN}"


@pytest.fixture(scope="module")
def slapd() -> Iterator[SlapdServer]:
    server = SlapdServer()
    parts = [base_ldif()]
    for i in range(USERS):
        parts.append(person_ldif(f"u{i:05d}", cn=f"User {i} Martin", number=str(20000 + i),
                                 mail=f"u{i}@example.org", mobile=f"+33 6 12 {i:05d}"))
    # people outside the PBX groups, and the small cases of the error tests
    parts.append(person_ldif("outsider", cn="Not In A Group", number="39999"))
    parts.append(person_ldif("nocn", cn="x", ou="people", number="39998",
                             extra=[("description", "no displayName")]))
    size = USERS // GROUPS
    for g in range(GROUPS):
        parts.append(group_ldif(f"pbx{g}", (_dn(i) for i in range(g * size, (g + 1) * size))))
    parts.append(group_ldif("small", [_dn(0), _dn(1), _dn(2)]))
    parts.append(group_ldif("empty", []))
    server.load("".join(parts))
    server.start()
    yield server
    server.stop()


def _site(slapd: SlapdServer, *, group_filter: str = "(cn=pbx*)", port: int | None = None,
          ca_file: Path | None = None, extra: str = "", history: Path | None = None) -> str:
    calls = "" if history is None else (
        f"call_history: {{backends: [{{name: local, kind: sqlite, path: {history}}}]}}\n")
    return f"""{calls}
groups: [{{name: default}}, {{name: staff}}]
users:
  - {{name: Local Person, extension: "101", email: local@example.org}}
directory:
  enabled: true
  servers: ["127.0.0.1:{port or slapd.ldaps_port}"]
  ca_file: {ca_file or slapd.ca_file}
  bind_dn: "{READER_DN}"
  base_dn: "{BASE_DN}"
  user_filter: "{FILTER}"
  group_filter: "{group_filter}"
  acl_group: staff
  extension_first: "5000"
  extension_last: "5999"
{extra}"""


def _store(tmp_path: Path, text: str, password: str = READER_PASSWORD) -> dict[str, str]:
    (tmp_path / "site.yaml").write_text(text)
    env = {"WILDIX_AST_DB": str(tmp_path / "store.sqlite3")}
    done = run("import", str(tmp_path / "site.yaml"), env=env)
    assert done.returncode == 0, done.stderr
    done = run("directory", "password", stdin=password + "\n", env=env)
    assert done.returncode == 0, done.stderr
    return env


def _sync(env: dict[str, str], *args: str) -> tuple[dict[str, object], float]:
    report, seconds, _ = _timed_sync(env, *args)
    return report, seconds


def _within(bar: float, seconds: float, cpu: float) -> None:
    """The issue's bar on the wall clock, scaled by how many processes share each core
    right now (on a CI machine shared with other jobs the wall clock measures the others
    too), and the command's own CPU time under the unscaled bar."""
    crowding = max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1))
    assert cpu < bar, f"{cpu:.1f} s of CPU in the command (bar {bar} s)"
    assert seconds < bar * crowding, f"{seconds:.1f} s (bar {bar} s × crowding {crowding:.1f})"


def _timed_sync(env: dict[str, str], *args: str) -> tuple[dict[str, object], float, float]:
    """The sync's JSON report, its wall-clock time and the CPU time of the command."""
    started, cpu = time.perf_counter(), _children_cpu()
    done = run("directory", "sync", "--json", *args, env=env)
    seconds = time.perf_counter() - started
    used = _children_cpu() - cpu
    print(f"directory sync {' '.join(args)}: {seconds:.1f} s, of which "
          f"{used:.1f} s CPU in the command (load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    assert_no_traceback(done)
    assert done.returncode == 0, done.stdout + done.stderr
    report: dict[str, object] = json.loads(done.stdout)
    return report, seconds, used


def _children_cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def _orphans(db: str, extensions: set[str]) -> list[str]:
    """Rows anywhere in the store that still name one of `extensions`."""
    from sqlalchemy import select

    from wildix_ast.store import tables as t

    found = []
    with open_store(db) as store, store.engine.connect() as connection:
        for table in t.STORE_TABLES:
            if "extension" in table.c:
                for (value,) in connection.execute(select(table.c.extension)):
                    if value in extensions:
                        found.append(f"{table.name}: {value}")
        for (key,) in connection.execute(select(t.secrets.c.key)):
            if any(f":{e}:" in f":{key}:" or key.endswith(f":{e}") or f":{e}:" in key
                   for e in extensions):
                found.append(f"secrets: {key}")
    return found


def _calls(history: Path, pairs: list[tuple[str, str]]) -> None:
    """Call records between the users of `pairs` in the call history backend `history`."""
    from sqlalchemy import create_engine, insert

    from wildix_ast.services.call_history.backends import record_table
    from wildix_ast.services.call_history.record import COLUMNS

    table = record_table("call_history")
    engine = create_engine(f"sqlite+pysqlite:///{history}")
    table.metadata.create_all(engine)
    floats = {"start", "answer", "end", "duration", "billsec"}
    with engine.begin() as connection:
        connection.execute(insert(table), [
            {**{c: 1e9 if c in floats else ("[]" if c == "legs" else "x") for c in COLUMNS},
             "call_id": f"{n}.0", "caller_user": caller, "callee_user": callee}
            for n, (caller, callee) in enumerate(pairs)])
    engine.dispose()


def _users_in_calls(history: Path) -> set[str]:
    import sqlite3

    with sqlite3.connect(history) as connection:
        rows = connection.execute("SELECT caller_user, callee_user FROM call_history")
        return {user for row in rows for user in row}


def test_full_then_incremental_sync(slapd: SlapdServer, tmp_path: Path) -> None:
    history = tmp_path / "calls.sqlite3"
    env = _store(tmp_path, _site(slapd, history=history))
    db = env["WILDIX_AST_DB"]

    report, full_seconds, cpu = _timed_sync(env)
    print(f"full sync of {USERS} users: {full_seconds:.1f} s")
    assert report["full"] is True and len(report["added"]) == USERS  # type: ignore[arg-type]
    _within(60, full_seconds, cpu)
    with open_store(db) as store:
        site = store.export_site()
    by_extension = {u.extension: u for u in site.users}
    assert len(site.users) == USERS + 1  # the outsider is in no PBX group
    assert by_extension["101"].name == "Local Person"  # not the directory's: untouched
    assert by_extension["20007"].email == "u7@example.org"
    assert by_extension["20007"].mobile == "+3361200007"
    assert by_extension["20007"].group == "staff"
    assert "39999" not in by_extension

    # the to-be-deleted users have everything a user can have: preferences and secrets
    deleted = [3, 14, 159, 2653, 5897]
    gone = {str(20000 + i) for i in deleted}
    with open_store(db) as store:
        for extension in gone:
            store.change_preferences(extension, lambda p: p.model_copy(update={"dnd": True}))
        store.put_secret(f"user:{20003}:voicemail_pin", "123456")
        add_device(store, Device(mac="001565000003", vendor="yealink", extension="20003"))
    assert _orphans(db, gone)  # the check finds them while they exist
    # and calls in the call history, to and from the users to delete (GDPR)
    _calls(history, [("20003", "101"), ("101", "20014"), ("20001", "20159"),
                     ("20001", "20002"), ("22653", "25897")])

    admin = slapd.admin()
    changed = [1, 2, 10, 100, 1000, 2000, 3000, 4000, 6000, 9999]
    for i in changed[:7]:
        assert admin.modify(_dn(i), {"mail": [("MODIFY_REPLACE", [f"new{i}@example.org"])]})
    assert admin.modify(_dn(4000), {"cn": [("MODIFY_REPLACE", ["Renamed Person"])]})
    # a number taken away: the user keeps the extension they have
    assert admin.modify(_dn(6000), {"telephoneNumber": [("MODIFY_DELETE", [])]})
    assert admin.modify(_dn(9999), {"mobile": [("MODIFY_REPLACE", ["+33 7 00 00 00 01"])]})
    for i in deleted[:4]:
        assert admin.delete(_dn(i))
    # disabled in the directory (the user filter leaves it out): removed like a deleted one
    assert admin.modify(_dn(deleted[4]), {"employeeType": [("MODIFY_ADD", ["disabled"])]})
    admin.unbind()

    report, incremental_seconds, cpu = _timed_sync(env, "--with-history")
    print(f"incremental sync (10 changed, 5 removed): {incremental_seconds:.1f} s")
    _within(5, incremental_seconds, cpu)
    assert report["full"] is False
    assert sorted(report["removed"]) == sorted(gone)  # type: ignore[arg-type]
    assert sorted(report["changed"]) == sorted(  # type: ignore[arg-type]
        str(20000 + i) for i in changed if i != 6000)  # 6000: same user, same extension
    assert report["added"] == []
    assert report["read"] == len(changed)  # only the changed entries were read whole
    assert report["history_removed"] == {"local": 4}
    assert _users_in_calls(history) == {"20001", "20002"}  # 0 calls of the removed users

    with open_store(db) as store:
        site = store.export_site()
        rendered = render_site(with_secrets(site, store),
                               manager_secret="Mgr#secret12345")["pjsip.conf"]
    by_extension = {u.extension: u for u in site.users}
    assert len(site.users) == USERS + 1 - len(gone)
    assert by_extension["20001"].email == "new1@example.org"
    assert by_extension["24000"].name == "Renamed Person"
    assert by_extension["26000"].name == "User 6000 Martin"
    assert by_extension["29999"].mobile == "+33700000001"
    assert not gone & set(by_extension)
    assert _orphans(db, gone) == []
    for extension in gone:
        assert f"[{extension}]" not in rendered and f"[{extension}-auth]" not in rendered
    assert "[20001]" in rendered and "[101]" in rendered

    # nothing changed since: an incremental sync reads no entry and writes nothing
    with open_store(db) as store:
        revision = store.revision()
    report, _ = _sync(env)
    assert (report["added"], report["changed"], report["removed"], report["read"]) == \
        ([], [], [], 0)
    with open_store(db) as store:
        assert store.revision() == revision


def test_two_syncs_at_once_stay_consistent(slapd: SlapdServer, tmp_path: Path) -> None:
    """Two syncs started together (two processes) on one store: the one that writes second
    finds the store changed since it read it, writes nothing, and plans again; both end
    well and every user is created once, with one ownership record each."""
    import subprocess
    import sys

    env = _store(tmp_path, _site(slapd, group_filter="(cn=pbx0)"))
    full_env = {**os.environ, "NO_COLOR": "1", **env}
    command = [sys.executable, "-m", "wildix_ast", "directory", "sync", "--json"]
    both = [subprocess.Popen(command, env=full_env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in both]
    for process, (stdout, stderr) in zip(both, outputs, strict=True):
        assert "Traceback" not in stderr
        assert process.returncode == 0, stdout + stderr
    added = sorted(len(json.loads(stdout)["added"]) for stdout, _ in outputs)
    with open_store(env["WILDIX_AST_DB"]) as store:
        users = [u.extension for u in store.export_site().users]
        owned = owned_users(store)
    # the group's members (a few may have been deleted by the test before): each created
    # by one of the two syncs, once
    assert added[0] == 0 and added[1] == len(owned) > USERS // GROUPS - 10
    assert len(users) == len(set(users)) == len(owned) + 1
    assert sorted(o.extension for o in owned.values()) == sorted(set(users) - {"101"})


def _refused(env: dict[str, str], *args: str) -> str:
    db = env["WILDIX_AST_DB"]
    with open_store(db) as store:
        revision, users = store.revision(), len(store.export_site().users)
    done = run("directory", "sync", *args, env=env)
    assert_no_traceback(done)
    assert done.returncode == DirectoryError.exit_code, done.stdout + done.stderr
    with open_store(db) as store:
        assert (store.revision(), len(store.export_site().users)) == (revision, users)
    return done.stderr


def test_unreachable_server(slapd: SlapdServer, tmp_path: Path, unused_port: int) -> None:
    env = _store(tmp_path, _site(slapd, group_filter="(cn=small)", port=unused_port))
    message = _refused(env)
    assert "no directory server could be used" in message and "connection refused" in message


def test_wrong_bind_password(slapd: SlapdServer, tmp_path: Path) -> None:
    env = _store(tmp_path, _site(slapd, group_filter="(cn=small)"), password="Wrong#pass1")
    assert "refused the bind DN" in _refused(env)


def test_untrusted_certificate(slapd: SlapdServer, tmp_path: Path) -> None:
    other_ca, _ = make_ca(tmp_path, "other")
    env = _store(tmp_path, _site(slapd, group_filter="(cn=small)", ca_file=other_ca))
    assert "certificate is not trusted" in _refused(env)


def test_starttls_with_the_right_ca(slapd: SlapdServer, tmp_path: Path) -> None:
    env = _store(tmp_path, _site(slapd, group_filter="(cn=small)", port=slapd.ldap_port,
                                 extra="  security: starttls\n"))
    with open_store(env["WILDIX_AST_DB"]) as store:
        revision = store.revision()
    plan = run("directory", "sync", "--dry-run", env=env)
    assert plan.returncode == 0, plan.stderr
    assert "20001" in plan.stdout and "add" in plan.stdout and "nothing written" in plan.stdout
    with open_store(env["WILDIX_AST_DB"]) as store:  # the dry run wrote nothing
        assert store.revision() == revision and len(store.export_site().users) == 1
        assert sync_state(store) is None and owned_users(store) == {}
    report, _ = _sync(env)
    assert sorted(report["added"]) == ["20000", "20001", "20002"]  # type: ignore[arg-type]


def test_empty_group_removes_nobody(slapd: SlapdServer, tmp_path: Path) -> None:
    env = _store(tmp_path, _site(slapd, group_filter="(cn=small)"))
    _sync(env)
    (tmp_path / "site.yaml").write_text(_site(slapd, group_filter="(cn=empty)"))
    assert run("import", str(tmp_path / "site.yaml"), env=env).returncode == 0
    with open_store(env["WILDIX_AST_DB"]) as store:
        assert len(store.export_site().users) == 4  # the import kept the directory's users
    assert "refusing to remove all 3 users" in _refused(env)
    (tmp_path / "site.yaml").write_text(_site(slapd, group_filter="(cn=nosuchgroup)"))
    assert run("import", str(tmp_path / "site.yaml"), env=env).returncode == 0
    assert "finds no group" in _refused(env)


def test_a_base_dn_the_server_does_not_have(slapd: SlapdServer, tmp_path: Path) -> None:
    text = _site(slapd, group_filter="(cn=small)").replace(
        f'base_dn: "{BASE_DN}"', f'base_dn: "ou=nowhere,{BASE_DN}"')
    message = _refused(_store(tmp_path, text))
    assert "ou=nowhere" in message and "noSuchObject" in message


def test_entries_missing_attributes(slapd: SlapdServer, tmp_path: Path) -> None:
    # users named by displayName, which slapd's test entries lack: every entry is refused
    env = _store(tmp_path, _site(slapd, group_filter="(cn=small)",
                                 extra="  attributes: {name: displayName}\n"))
    message = _refused(env)
    assert f"{_dn(0)}: name" in message and "is required" in message
    assert "nothing was changed" in message


@pytest.mark.lab
def test_deleted_directory_user_cannot_register(slapd: SlapdServer,
                                                tmp_path: Path) -> None:
    """The issue's bar, on a live Asterisk 22: a directory user registers; once deleted in
    the directory, a sync and an apply later, their endpoint and their voicemail messages
    are gone and the same phone with the same credentials is refused."""
    from support.live_site import example_site, live_site
    from support.sip_ua import Agent

    from wildix_ast.apply.pipeline import apply_site
    from wildix_ast.model.directory import DirectorySettings
    from wildix_ast.services.directory.sync import apply_sync, plan_sync
    from wildix_ast.store.directory import BIND_PASSWORD_KEY

    victim, survivor = _dn(1), "20002"
    site = example_site()
    site = site.model_copy(update={"directory": DirectorySettings(
        enabled=True, servers=[f"127.0.0.1:{slapd.ldaps_port}"], ca_file=str(slapd.ca_file),
        bind_dn=READER_DN, base_dn=BASE_DN, user_filter=FILTER, group_filter="(cn=small)")})
    with live_site(tmp_path, "directory", site) as live:
        live.store.put_secret(BIND_PASSWORD_KEY, READER_PASSWORD)

        def sync_and_apply() -> None:
            apply_sync(live.store, plan_sync(live.store))
            stored = live.store.export_site()
            apply_site(stored, live.store, live.target)

        sync_and_apply()
        stored = with_secrets(live.store.export_site(), live.store)
        password = {u.extension: u.sip_password for u in stored.users}
        phone = Agent("20001", str(password["20001"]), live.lab.ports.sip)
        try:
            assert phone.register().status == 200
        finally:
            phone.close()

        # messages left for both (Asterisk's own layout: <spool>/voicemail/default/<ext>/)
        spool = live.target.spool_dir
        assert spool is not None
        for extension in ("20001", survivor):
            inbox = spool / "voicemail" / "default" / extension / "INBOX"
            inbox.mkdir(parents=True, exist_ok=True)
            (inbox / "msg0000.txt").write_text('[message]\ncallerid="x" <101>\n')
            (inbox / "msg0000.wav").write_bytes(b"RIFF")

        admin = slapd.admin()
        assert admin.delete(victim)
        admin.unbind()
        sync_and_apply()
        # GDPR: the deleted user's messages are gone from the Asterisk host, not the others'
        assert not (spool / "voicemail" / "default" / "20001").exists()
        assert (spool / "voicemail" / "default" / survivor / "INBOX" / "msg0000.wav").exists()
        assert "20001" not in {u.extension for u in live.store.export_site().users}
        async def show() -> str:
            async with live.console() as console:
                return await console.command("pjsip show endpoints")

        endpoints = asyncio.run(show())
        assert "20001" not in endpoints and survivor in endpoints
        phone = Agent("20001", str(password["20001"]), live.lab.ports.sip)
        try:
            assert phone.register().status in (401, 403)
        finally:
            phone.close()
        other = Agent(survivor, str(password[survivor]), live.lab.ports.sip)
        try:
            assert other.register().status == 200
            assert other.register(expires=0).status == 200
        finally:
            other.close()
