"""Shared fixtures: one live example site (real Asterisk 22 in the lab) for the session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from live_site import LiveSite, live_site

# tests/infra is the testinfra suite of a deployed host: it runs against a host given with
# --hosts (tests/test_deploy.py runs it against the booted forky host), not on its own.
collect_ignore = ["infra"]


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveSite]:
    with live_site(tmp_path_factory.mktemp("live"), "live") as site:
        yield site


@pytest.fixture
def clean_live(live: LiveSite) -> Iterator[LiveSite]:
    """The live site, checked after the test as Asterisk's testsuite does: no channel left."""
    yield live
    assert live.wait_no_channels() == 0, "channels left on Asterisk after the test"
