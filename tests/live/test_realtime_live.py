"""Realtime objects on a live Asterisk 22 (issue 22): the users' PJSIP objects and mailboxes
read from the realtime SQLite file; a password change applied with no module reload (the
old password refused at once), its rollback, and an apply killed after the rows were
written."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from support.live_site import LiveSite, example_site, live_site
from support.sip_ua import Agent, register_status
from support.sound_fixtures import copy_example_sounds
from test_apply_target import as_json, cli

from wildix_ast.apply import pipeline
from wildix_ast.asterisk.res_config_sqlite3 import REALTIME_SQLITE_FILE
from wildix_ast.model.settings_file import dump_site
from wildix_ast.model.site import Site
from wildix_ast.model.system import RealtimeMode
from wildix_ast.store.realtime_tables import SqliteRealtime

pytestmark = pytest.mark.lab


def realtime(site: Site) -> Site:
    system = site.system
    return site.model_copy(update={"system": system.model_copy(update={
        "realtime": system.realtime.model_copy(update={"mode": RealtimeMode.REALTIME})})})


def with_password(site: Site, extension: str, password: str) -> Site:
    users = [u.model_copy(update={"sip_password": password}) if u.extension == extension
             else u for u in site.users]
    return site.model_copy(update={"users": users})


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveSite]:
    with live_site(tmp_path_factory.mktemp("realtime"), "realtime",
                   realtime(example_site())) as site:
        yield site


def tables(live: LiveSite) -> SqliteRealtime:
    return SqliteRealtime(live.lab.etc_dir / REALTIME_SQLITE_FILE)


def current(live: LiveSite, extension: str) -> str:
    """The SIP password the realtime table holds now (earlier tests change some)."""
    return tables(live).rows("ps_auths")[f"{extension}-auth"]["password"]


def registers(live: LiveSite, extension: str, password: str) -> int | None:
    return register_status(live.lab.ports.sip, extension, password)


def last_reload(live: LiveSite) -> str:
    """Asterisk's last reload, as AMI's CoreStatus gives it (a date and time)."""
    async def ask() -> str:
        async with live.ami() as ami:
            status = await ami.action("CoreStatus")
        return f"{status['CoreReloadDate']} {status['CoreReloadTime']}"

    return asyncio.run(ask())


def test_users_are_read_from_the_realtime_tables(live: LiveSite) -> None:
    pjsip = (live.lab.etc_dir / "pjsip.conf").read_text(encoding="utf-8")
    assert "[101-auth]" not in pjsip  # the users are rows, not sections
    assert set(tables(live).rows("ps_auths")) == {f"{e}-auth" for e in
                                                  ("100", "101", "102", "150", "190")}
    assert registers(live, "101", live.password("101")) == 200
    assert registers(live, "101", "not-the-password") in (401, 403)


def test_a_new_password_is_live_without_a_reload_and_rolls_back(live: LiveSite) -> None:
    site = realtime(example_site())
    old = live.password("101")
    assert registers(live, "101", old) == 200  # the old auth is in Asterisk's cache now
    reloaded_at = last_reload(live)
    new = "Realtime-Pass-2026!x"
    outcome = pipeline.apply_site(with_password(site, "101", new), live.store, live.target)
    report = outcome.report
    assert report is not None
    assert report.reloads == [] and not report.restarted
    assert report.files_written == ["wildix-realtime.conf"]
    assert report.rows_changed == ["ps_auths/101-auth"]
    assert report.expired == ["wildix-auths/101-auth"]
    assert "********" in outcome.plan.diff() and new not in outcome.plan.diff()
    assert tables(live).rows("ps_auths")["101-auth"]["password"] == new
    assert registers(live, "101", new) == 200
    assert registers(live, "101", old) in (401, 403)
    assert last_reload(live) == reloaded_at  # no module reload at all

    back = pipeline.rollback_target(live.store, live.target)
    assert back.report.reloads == []
    assert tables(live).rows("ps_auths")["101-auth"]["password"] == old
    assert registers(live, "101", old) == 200
    assert registers(live, "101", new) in (401, 403)
    assert last_reload(live) == reloaded_at
    assert live.store.export_site().users[0].sip_password != new


def test_a_user_added_then_removed_without_reloading_pjsip(live: LiveSite) -> None:
    """A new user's rows are written, Asterisk shows its endpoint (the apply's verification
    asks for it) and it registers; removed, it is refused. Neither res_pjsip nor
    app_voicemail is reloaded; the dialplan is (the user's extension is in it)."""
    from wildix_ast.model.users import User

    site = realtime(example_site())
    added = site.model_copy(update={"users": [
        *site.users, User(name="Temp 103", extension="103", sip_password="Added-Pass-2026!x")]})
    report = pipeline.apply_site(added, live.store, live.target).report
    assert report is not None and report.verified
    assert [r.module for r in report.reloads] == ["pbx_config.so"]
    assert "ps_endpoints/103" in report.rows_changed
    assert registers(live, "103", "Added-Pass-2026!x") == 200
    report = pipeline.apply_site(site, live.store, live.target).report
    assert report is not None and report.verified
    assert [r.module for r in report.reloads] == ["pbx_config.so"]
    assert "103" not in tables(live).rows("ps_endpoints")
    assert registers(live, "103", "Added-Pass-2026!x") in (401, 403)


def rows_agree(live: LiveSite) -> dict[str, dict[str, str]]:
    """The realtime tables hold exactly the rows wildix-realtime.conf says (no journal
    left); the auths, by name."""
    from wildix_ast.store.realtime_tables import TABLES, row_changes

    text = (live.lab.etc_dir / "wildix-realtime.conf").read_text(encoding="utf-8")
    wanted = row_changes(None, text).write
    for table in TABLES:
        held = tables(live).rows(table)
        assert held == {key: columns for (t, key), columns in wanted.items() if t == table}
    assert not (live.lab.etc_dir / ".wildix-ast" / "journal").exists()
    return tables(live).rows("ps_auths")


@pytest.mark.parametrize("step", ["after-rows", "after-store"])
def test_an_apply_killed_after_writing_rows_is_undone_or_finished(
        live: LiveSite, tmp_path: Path, step: str) -> None:
    """SIGKILL once the new rows are in the tables (before Asterisk was told), or once the
    store took the new site: the next apply undoes or finishes it; the tables, the files,
    the store and what phones can do agree again."""
    copy_example_sounds(tmp_path)
    base = tmp_path / "base.yaml"
    base.write_text(dump_site(realtime(example_site()), include_secrets=True),
                    encoding="utf-8")
    assert as_json(cli(live, "apply", str(base), "--lab", "realtime", "--json"))["ok"]
    old = rows_agree(live)["101-auth"]["password"]
    changed = tmp_path / "changed.yaml"
    new = "Killed-Midway-2026!x"
    changed.write_text(dump_site(with_password(realtime(example_site()), "101", new),
                                 include_secrets=True), encoding="utf-8")
    killed = cli(live, "apply", str(changed), "--lab", "realtime",
                 env={"WILDIX_AST_CRASH_AT": step})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert tables(live).rows("ps_auths")["101-auth"]["password"] == new  # written, then killed
    finished = step == "after-store"
    again = as_json(cli(live, "apply", str(changed if finished else base), "--lab",
                        "realtime", "--json"))
    assert str(again["recovered"]).startswith("finished" if finished else "undid")
    assert again["changed"] is False
    password = rows_agree(live)["101-auth"]["password"]
    assert password == (new if finished else old)
    assert registers(live, "101", password) == 200
    assert registers(live, "101", old if finished else new) in (401, 403)


def test_a_database_that_stops_answering_does_not_stop_cached_users(live: LiveSite) -> None:
    """The realtime file locked by another process (Asterisk's reads get SQLITE_BUSY after
    the busy timeout, 50 ms): users Asterisk has already read keep registering from its
    memory cache, each request waiting that timeout once for the read that misses
    (res_pjsip looks up `user@domain` before `user`, and a miss is not cached); a user it
    has not read yet is refused until the database answers again. (Calls during the lock:
    test_cached_users_call_each_other_while_the_database_is_locked.)"""
    import sqlite3
    import time

    passwords = {e: current(live, e) for e in ("101", "102", "190")}
    # a user Asterisk has never read: 190's objects under another name, written straight
    # into the table (an apply would have Asterisk show them, and so read them)
    from wildix_ast.store.realtime_tables import RowChanges

    db = tables(live)
    fresh = RowChanges(write={
        ("ps_endpoints", "777"): {**db.rows("ps_endpoints")["190"], "auth": "777-auth",
                                  "aors": "777"},
        ("ps_auths", "777-auth"): {**db.rows("ps_auths")["190-auth"], "username": "777"},
        ("ps_aors", "777"): db.rows("ps_aors")["190"]})
    db.write(fresh)
    for extension in ("101", "102"):
        assert registers(live, extension, passwords[extension]) == 200
    lock = sqlite3.connect(live.lab.etc_dir / REALTIME_SQLITE_FILE, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        for extension in ("101", "102"):
            assert registers(live, extension, passwords[extension]) == 200
        cached_seconds = (time.monotonic() - started) / 2
        try:
            uncached: int | None = registers(live, "777", passwords["190"])
        except TimeoutError:
            uncached = None
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert uncached != 200
    assert registers(live, "777", passwords["190"]) == 200  # the database is back
    db.write(RowChanges(delete=set(fresh.write)))
    print(f"cached users register in {cached_seconds:.2f} s each while the database is "
          f"locked; an uncached user: {uncached}")


def test_concurrent_applies_leave_rows_that_agree(live: LiveSite, tmp_path: Path) -> None:
    """Two `wildix-ast apply` processes at once, each a different password for 101: one
    waits for the other's lock; the tables end with the password of the one that ran last,
    which the store and the files hold too, and Asterisk takes it."""
    from test_apply_target import start

    copy_example_sounds(tmp_path)
    paths = []
    for n in (1, 2):
        path = tmp_path / f"site-{n}.yaml"
        path.write_text(dump_site(with_password(realtime(example_site()), "101",
                                                f"Concurrent-{n}-2026!x"),
                                  include_secrets=True), encoding="utf-8")
        paths.append(path)
    running = [start(live, "apply", str(p), "--lab", "realtime", "--json") for p in paths]
    results = [json.loads(process.communicate(timeout=180)[0]) for process in running]
    assert all(r["ok"] for r in results), results
    password = rows_agree(live)["101-auth"]["password"]
    stored = next(u for u in live.store.export_site().users if u.extension == "101")
    assert password == stored.sip_password
    assert password in {"Concurrent-1-2026!x", "Concurrent-2-2026!x"}
    assert registers(live, "101", password) == 200


def call_between_cached_users(live: LiveSite, passwords: dict[str, str],
                              outage: Callable[[], AbstractContextManager[object]]) -> None:
    """101 calls 102, both already read by Asterisk (cached), while `outage` lasts: the call
    reaches 102 with 101's caller ID and is answered (SIPp checks the call connected)."""
    import threading
    from typing import Any

    from support.sip_ua import sdp

    callee = Agent("102", passwords["102"], live.lab.ports.sip, timeout=5.0)
    try:
        assert callee.register(expires=120).status == 200
        assert registers(live, "101", passwords["101"]) == 200
        answered: dict[str, Any] = {}
        with outage():
            def answer() -> None:
                answered["invite"] = callee.answer_call(sdp(41000, {0: "PCMU/8000"}), 20)

            thread = threading.Thread(target=answer)
            thread.start()
            call = live.sipp().call("101", passwords["101"], "102", hold_seconds=2)
            thread.join()

        async def endpoint() -> str:
            async with live.console() as console:
                return await console.command("pjsip show endpoint 102")

        assert answered["invite"] is not None, asyncio.run(endpoint())
        assert "<sip:101@" in (answered["invite"].header("P-Asserted-Identity") or "")
        assert call.connected, call.run.describe()
        callee.register(expires=0)
    finally:
        callee.close()


def test_cached_users_call_each_other_while_the_database_is_locked(live: LiveSite) -> None:
    """The realtime file locked by another process. Before: the call went to voicemail —
    not because of the lock (it did without it too) but because res_pjsip kept the
    realtime endpoint 102 `Unavailable` beside its reachable contact, and the dialplan
    trusted DEVICE_STATE alone (call_user_contexts._unreachable); and each of the caller's
    requests waited res_config_sqlite3's one-second busy timeout (now 50 ms)."""
    import sqlite3

    @contextlib.contextmanager
    def locked() -> Iterator[object]:
        lock = sqlite3.connect(live.lab.etc_dir / REALTIME_SQLITE_FILE, isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")
        try:
            yield lock
        finally:
            lock.execute("ROLLBACK")
            lock.close()

    call_between_cached_users(live, {e: current(live, e) for e in ("101", "102")}, locked)


#: The bound of the test below: generous for a loaded 2-core machine (measured here: 2.9 s
#: at load average 7-11, 12.1 s at 14.7, interpreter start alone up to 3 s); the real
#: figure is bench/realtime.py's; this one is printed too.
CHANGE_BOUND = 30.0


def test_a_one_user_change_is_live_from_the_command_start_without_a_reload(
        live: LiveSite, tmp_path: Path) -> None:
    """A person's `wildix-ast apply` of a new SIP password: from the process's start until
    a REGISTER with the new password is accepted (polled while the command runs), then the
    old one refused, and CoreStatus's reload time unchanged (no module reload)."""
    import time

    from test_apply_target import start

    copy_example_sounds(tmp_path)
    old = current(live, "101")
    assert registers(live, "101", old) == 200
    reloaded_at = last_reload(live)
    new = "Quick-Change-2026!x"
    path = tmp_path / "site.yaml"
    path.write_text(dump_site(with_password(realtime(example_site()), "101", new),
                              include_secrets=True), encoding="utf-8")
    began = time.perf_counter()
    process = start(live, "apply", str(path), "--lab", "realtime")
    live_after = None
    while time.perf_counter() - began < CHANGE_BOUND + 30:
        if registers(live, "101", new) == 200:
            live_after = time.perf_counter() - began
            break
        time.sleep(0.02)
    output, errors = process.communicate(timeout=180)
    assert process.returncode == 0, errors
    print(f"one-user change live after {live_after} s (bound {CHANGE_BOUND} s)")
    assert live_after is not None and live_after < CHANGE_BOUND
    assert registers(live, "101", old) in (401, 403)
    assert last_reload(live) == reloaded_at
    assert "nothing to reload" in output
