"""Realtime objects on a live Asterisk 22 (issue 22): the users' PJSIP objects and mailboxes
read from the realtime SQLite file; a password change applied with no module reload (the
old password refused at once), its rollback, and an apply killed after the rows were
written."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.cli_run import EXAMPLE
from support.live_site import LiveSite, example_site, live_site
from support.sip_ua import Agent
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


def registers(live: LiveSite, extension: str, password: str) -> int | None:
    agent = Agent(extension, password, live.lab.ports.sip, timeout=5.0)
    try:
        return agent.register(expires=60).status
    finally:
        agent.close()


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
