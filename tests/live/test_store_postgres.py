"""The store on a real PostgreSQL 15 server started for the session (tests/support/pg_server.py):
the same round trips and atomic imports as on SQLite, and the server's own errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.pg_server import PostgresServer, postgres_server, postgres_url  # noqa: F401
from support.store_contract import (
    MAIN_SITES,
    check_migrated_main_store,
    check_round_trip,
    check_schema,
    copy_main_store,
)

from wildix_ast.errors import StoreError
from wildix_ast.store import Store, open_store

pytestmark = pytest.mark.postgres


def test_migration_creates_the_schema_from_empty(postgres_url: str) -> None:  # noqa: F811
    open_store(postgres_url).close()
    check_schema(postgres_url)
    open_store(postgres_url).close()  # already at head


@pytest.mark.parametrize("name", MAIN_SITES)
def test_a_store_of_main_migrates(postgres_url: str, name: str,  # noqa: F811
                                  tmp_path: Path) -> None:
    """main's store (its rows copied into a database at 0008) through 0009: the export and
    the render are main's."""
    copy_main_store(name, postgres_url)
    with open_store(postgres_url) as store:
        check_migrated_main_store(name, store, tmp_path / "out")
    check_schema(postgres_url)


def test_round_trip(postgres_url: str) -> None:  # noqa: F811
    with open_store(postgres_url) as store:
        assert store.dialect == "postgresql"
        check_round_trip(store)














def _error(url: str) -> str:
    with pytest.raises(StoreError) as caught:
        open_store(url).close()
    return caught.value.message


def test_wrong_password(postgres_server: PostgresServer) -> None:  # noqa: F811
    message = _error(postgres_server.url(password="wrong-password"))
    assert message.startswith("the database server of")
    assert "refused the user name or password" in message
    assert "wrong-password" not in message


def test_missing_database(postgres_server: PostgresServer) -> None:  # noqa: F811
    message = _error(postgres_server.url("no_such_db"))
    assert "does not exist" in message
    assert "create it first" in message


def test_nothing_listens_on_the_port(postgres_server: PostgresServer) -> None:  # noqa: F811
    """A port where no server listens: refused at once, one message."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    message = _error(postgres_server.url(port=port))
    assert message.startswith("cannot reach the database server of")


def test_user_without_rights(postgres_server: PostgresServer,  # noqa: F811
                             postgres_url: str) -> None:  # noqa: F811
    """PostgreSQL 15 lets only the owner create tables in `public`."""
    postgres_server.execute("CREATE ROLE visitor LOGIN PASSWORD 'Visitor-pw1'")
    database = postgres_url.rsplit("/", 1)[1]
    url = postgres_url.replace(f"{postgres_server.user}:{postgres_server.password}@",
                               "visitor:Visitor-pw1@")
    message = _error(url)
    assert message.startswith(f"the database user of postgresql+psycopg2://visitor:***@"
                              f"127.0.0.1:{postgres_server.port}/{database} lacks a right")
    assert "permission denied for schema public" in message


def test_store_type_is_a_vault(postgres_url: str) -> None:  # noqa: F811
    with open_store(postgres_url) as store:
        assert isinstance(store, Store)
        store.put_secret("a", "1")
        assert store.get_secret("a") == "1"
