"""The store's contract on every database server it supports, each one real and started for
the session (tests/support/pg_server.py: PostgreSQL 15, tests/support/mariadb_server.py:
MariaDB 10.11): the
same round trips, atomic imports and secrets as on SQLite. Server-specific behaviour (errors,
schema details, MariaDB's concurrency) stays in test_store_postgres.py / test_store_mariadb.py."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from support.examples import examples
from support.mariadb_server import mariadb_server, mariadb_url  # noqa: F401
from support.pg_server import postgres_server, postgres_url  # noqa: F401
from support.store_contract import (
    as_stored,
    check_failed_import_by_constraint,
    check_failed_import_midway,
    check_reimport_counts,
    check_secrets,
    sample_site,
    sites,
)

from wildix_ast.model.site import Site
from wildix_ast.store import open_store

SERVERS = {"postgresql": ("postgres_url", "postgres_server"),
           "mariadb": ("mariadb_url", "mariadb_server")}


@pytest.fixture(params=sorted(SERVERS))
def server(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def url(server: str, request: pytest.FixtureRequest) -> str:
    """A fresh, empty database on that server."""
    return str(request.getfixturevalue(SERVERS[server][0]))


def test_any_valid_site_round_trips(server: str, request: pytest.FixtureRequest) -> None:
    database = request.getfixturevalue(SERVERS[server][1])
    with open_store(database.create_database()) as store:

        @settings(max_examples=examples(15), deadline=None,
                  suppress_health_check=[HealthCheck.too_slow])
        @given(site=sites())
        def round_trip(site: Site) -> None:
            store.import_site(site)
            assert store.export_site() == as_stored(site, store.export_site())

        round_trip()


def test_reimport_counts(url: str) -> None:
    with open_store(url) as store:
        check_reimport_counts(store)


def test_failed_import_by_constraint_changes_nothing(url: str) -> None:
    with open_store(url) as store:
        check_failed_import_by_constraint(store)


def test_failed_import_midway_changes_nothing(url: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    with open_store(url) as store:
        check_failed_import_midway(store, monkeypatch)


def test_secrets_persist_across_reopen(url: str) -> None:
    check_secrets(lambda: open_store(url))


def test_two_stores_see_each_others_imports(url: str) -> None:
    with open_store(url) as first, open_store(url) as second:
        first.import_site(Site())
        assert second.export_site() == Site()
        assert second.revision() == first.revision() == 1
        second.import_site(sample_site())
        assert first.export_site() == as_stored(sample_site(), first.export_site())
