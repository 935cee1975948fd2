"""Shared fixtures: one live example site (real Asterisk 22 in the lab) for the session, and
the store tests' SQLite stores."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.live_site import LiveSite, live_site

from wildix_ast.store import Store, open_store

# tests/infra is the testinfra suite of a deployed host: it runs against a host given with
# --hosts (tests/live/test_deploy.py runs it against the booted forky host), not on its own.
collect_ignore = ["infra"]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI a skipped test is a failure: a missing package or no root must not pass as
    green."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if os.environ.get("CI") and skipped and exitstatus == 0:
        reporter.write_line(f"CI: {len(skipped)} test(s) skipped; skips fail the run",
                            red=True)
        session.exitstatus = 1


@pytest.fixture(scope="session", autouse=True)
def password_tag_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The WEB password tag key (store/password_tags.py) of this test session, never the
    user's own: tests and the commands they run inherit it."""
    path = tmp_path_factory.mktemp("tag-key") / "password-tag.key"
    before = os.environ.get("WILDIX_AST_PASSWORD_KEY")
    os.environ["WILDIX_AST_PASSWORD_KEY"] = str(path)
    yield path
    if before is None:
        del os.environ["WILDIX_AST_PASSWORD_KEY"]
    else:
        os.environ["WILDIX_AST_PASSWORD_KEY"] = before


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveSite]:
    with live_site(tmp_path_factory.mktemp("live"), "live") as site:
        yield site


@pytest.fixture
def clean_live(live: LiveSite) -> Iterator[LiveSite]:
    """The live site, checked after the test as Asterisk's testsuite does: no channel left."""
    yield live
    assert live.wait_no_channels() == 0, "channels left on Asterisk after the test"


# --- the store tests' fixtures (tests/unit/test_store.py and the servers' tests) -------------

@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "store" / "site.sqlite3"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    with open_store(str(db_path)) as opened:
        yield opened


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    with open_store(str(tmp_path_factory.mktemp("hypothesis") / "s.sqlite3")) as opened:
        yield opened


@pytest.fixture
def unused_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
