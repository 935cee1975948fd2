"""The store on a real MariaDB 10.11 server started for the session
(tests/support/mariadb_server.py):
the same round trips and atomic imports as on SQLite and PostgreSQL, and the server's own
errors. The server keeps its compiled-in latin1 default: the store's tables must be utf8mb4
and compare keys byte for byte on their own."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.mariadb_server import MariaDBServer, mariadb_server, mariadb_url  # noqa: F401
from support.store_contract import (
    CONCURRENT,
    MAIN_SITES,
    check_migrated_main_store,
    check_round_trip,
    check_schema,
    copy_main_store,
    user,
)

from wildix_ast.errors import StoreError
from wildix_ast.model.groups import Group
from wildix_ast.model.site import Site
from wildix_ast.store import Store, open_store
from wildix_ast.store.tables import STORE_TABLES


def test_server_defaults_to_latin1(mariadb_server: MariaDBServer) -> None:  # noqa: F811
    """The harder case for the store: nothing in the server makes unicode the default."""
    assert mariadb_server.execute("SELECT @@character_set_server")[0][0] == "latin1"
    assert "MariaDB" in mariadb_server.execute("SELECT @@version")[0][0]


def test_migration_creates_the_schema_from_empty(mariadb_server: MariaDBServer,  # noqa: F811
                                                 mariadb_url: str) -> None:  # noqa: F811
    open_store(mariadb_url).close()
    check_schema(mariadb_url)
    open_store(mariadb_url).close()  # already at head
    database = mariadb_url.rsplit("/", 1)[1]
    # The migration's named lock went with its connection (not kept by the pool).
    assert mariadb_server.execute(
        f"SELECT IS_FREE_LOCK(CONCAT('wildix_ast_migrate:', MD5('{database}')))") == [(1,)]
    tables = mariadb_server.execute(
        "SELECT table_name, engine, table_collation FROM information_schema.tables "
        f"WHERE table_schema = '{database}' AND table_name <> 'alembic_version'")
    assert len(tables) == len(STORE_TABLES)
    assert {(engine, collation) for _, engine, collation in tables} == \
        {("InnoDB", "utf8mb4_unicode_ci")}
    keys = mariadb_server.execute(
        "SELECT table_name, column_name, collation_name FROM information_schema.columns "
        f"WHERE table_schema = '{database}' AND column_name IN ('extension', 'name', 'key')")
    assert {(table, column) for table, column, _ in keys} == {
        ("users", "extension"), ("users", "name"), ("acl_groups", "name"),
        ("dialplan_procedures", "name"), ("secrets", "key"), ("user_preferences", "extension"),
        ("trunks", "name"), ("trunk_groups", "name"), ("time_frames", "name"),
        ("call_groups", "name"), ("ivrs", "name"), ("sounds", "name"),
        ("call_group_members", "extension"), ("directory_users", "extension"),
        ("devices", "extension"), ("call_history_backends", "name"),
        ("call_history_limits", "name"), ("smtp_profiles", "name"),
        ("mail2fax_profiles", "name")}
    assert {(table, column, collation) for table, column, collation in keys
            if collation != "utf8mb4_bin"} == {("users", "name", "utf8mb4_unicode_ci")}


@pytest.mark.parametrize("name", MAIN_SITES)
def test_a_store_of_main_migrates(mariadb_url: str, name: str,  # noqa: F811
                                  tmp_path: Path) -> None:
    """main's store (its rows copied into a database at 0008) through 0009: the export and
    the render are main's."""
    copy_main_store(name, mariadb_url)
    with open_store(mariadb_url) as store:
        check_migrated_main_store(name, store, tmp_path / "out")
    check_schema(mariadb_url)


@pytest.mark.parametrize("scheme", ["mysql+pymysql", "mariadb+pymysql", "mariadb"])
def test_round_trip(mariadb_server: MariaDBServer, scheme: str) -> None:  # noqa: F811
    with open_store(mariadb_server.create_database(scheme=scheme)) as store:
        assert store.dialect == ("mysql" if scheme.startswith("mysql") else "mariadb")
        check_round_trip(store)


def test_unicode_beyond_the_basic_plane(mariadb_url: str) -> None:  # noqa: F811
    """Four-byte UTF-8 (utf8mb4, not MariaDB's three-byte utf8) and case-distinct keys."""
    site = Site(groups=[Group(name="sales", description="Ventes 𝒜 中文"), Group(name="Sales")],
                users=[user("101", "𝒜lice Zoé", group="sales", department="R&D 𝔅"),
                       user("102", "Bob", group="Sales")])
    with open_store(mariadb_url) as store:
        store.import_site(site)
        assert store.export_site() == site












def test_same_secret_twice(mariadb_url: str) -> None:  # noqa: F811
    """MySQL counts changed rows, not matched ones, unless asked: an UPDATE to the same
    value must not look like a missing key (and then a duplicate INSERT)."""
    with open_store(mariadb_url) as store:
        assert isinstance(store, Store)
        store.put_secret("a", "1")
        store.put_secret("a", "1")
        assert store.get_secret("a") == "1"




def test_concurrent_first_opens_and_imports(mariadb_url: str,  # noqa: F811
                                            tmp_path: Path) -> None:
    """Four processes open a new store at the same instant and import: the schema is made
    once (MariaDB's DDL is not transactional: a named lock serialises the migrations), the
    imports queue up on the site_state row lock, none fails."""
    script = tmp_path / "open_and_import.py"
    script.write_text(CONCURRENT)
    start = time.time() + 2  # after every interpreter has started
    processes = [subprocess.Popen([sys.executable, str(script), mariadb_url, str(100 + i),
                                   str(start)], stderr=subprocess.PIPE, text=True)
                 for i in range(4)]
    errors = [p.communicate(timeout=120)[1] for p in processes]
    assert [p.returncode for p in processes] == [0] * 4, errors
    with open_store(mariadb_url) as store:
        assert store.revision() == 4
        assert len(store.import_history()) == 4
        (only,) = store.export_site().users
        assert only.extension in {"100", "101", "102", "103"}


def _error(url: str) -> str:
    with pytest.raises(StoreError) as caught:
        open_store(url).close()
    assert "\n" not in caught.value.message
    return caught.value.message


def test_wrong_password(mariadb_server: MariaDBServer) -> None:  # noqa: F811
    url = mariadb_server.url("wildix_test_any", password="wrong-password")
    message = _error(url)
    assert message.startswith(f"the database server of mysql+pymysql://{mariadb_server.user}"
                              f":***@127.0.0.1:{mariadb_server.port}/wildix_test_any refused "
                              "the user name or password")
    assert "Access denied" in message
    assert "check the credentials" in message
    assert "wrong-password" not in message


def test_missing_database(mariadb_server: MariaDBServer) -> None:  # noqa: F811
    message = _error(mariadb_server.url("wildix_no_such_db"))
    assert message.startswith("the database of")
    assert "Unknown database 'wildix_no_such_db'" in message
    assert "create it first" in message


def test_nothing_listens_on_the_port(mariadb_server: MariaDBServer) -> None:  # noqa: F811
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    message = _error(mariadb_server.url("wildix_test_any", port=port))
    assert message.startswith("cannot reach the database server of")


def test_user_without_rights(mariadb_server: MariaDBServer,  # noqa: F811
                             mariadb_url: str) -> None:  # noqa: F811
    """A user with no right on the database, then one that may only read and write rows."""
    database = mariadb_url.rsplit("/", 1)[1]
    mariadb_server.execute("CREATE USER IF NOT EXISTS 'visitor'@'%' "
                           "IDENTIFIED BY 'Visitor-pw1'")
    url = mariadb_server.url(database, user="visitor", password="Visitor-pw1")
    where = f"mysql+pymysql://visitor:***@127.0.0.1:{mariadb_server.port}/{database}"
    message = _error(url)
    assert message.startswith(f"the database user of {where} lacks a right")
    assert f"Access denied for user 'visitor'@'%' to database '{database}'" in message
    mariadb_server.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON `{database}`.* "
                           "TO 'visitor'@'%'")
    message = _error(url)
    assert message.startswith(f"the database user of {where} lacks a right")
    assert "CREATE command denied" in message
