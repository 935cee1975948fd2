"""The store on real SQLite files: migrations, exact round trips, atomic imports, secrets,
and the errors a person meets (each one message, never a traceback)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from sqlalchemy import Engine, create_engine, inspect
from support.examples import examples
from support.sound_fixtures import copy_example_sounds
from support.store_contract import (
    CONCURRENT,
    READ_ONLY_DISK,
    as_stored,
    check_failed_import_by_constraint,
    check_failed_import_midway,
    check_reimport_counts,
    check_round_trip,
    check_schema,
    check_secrets,
    sample_site,
    sites,
    store_error,
    user,
)

from wildix_ast.errors import StoreError
from wildix_ast.model.site import Site
from wildix_ast.store import Store, database, open_store
from wildix_ast.store.schema import SCHEMA_HEAD
from wildix_ast.store.tables import STORE_TABLES

# --- sites -----------------------------------------------------------------------------------


# --- checks shared with the PostgreSQL tests -------------------------------------------------


# --- SQLite ----------------------------------------------------------------------------------


@pytest.mark.parametrize("spelling", ["sqlite:///{path}", "sqlite+pysqlite:///{path}", "{path}"])
def test_a_plain_sqlite_url_reads_the_revision_like_a_path(store: Store, db_path: Path,
                                                            spelling: str) -> None:
    """The FastAGI service reads the revision on every call: a `sqlite:///PATH` store must
    take the sqlite3 path (no SQLAlchemy loaded), and still see other writers' commits."""
    location = spelling.format(path=db_path)
    probe = ("import sys; from wildix_ast.store import open_store; "
             f"s = open_store({location!r}); read = s.revision_reader(); "
             "print(read(), 'sqlalchemy' in sys.modules)")
    before = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True).stdout.split()
    assert before == [str(store.revision()), "False"]
    store.import_site(Site())
    after = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                           check=True).stdout.split()
    assert after == [str(store.revision()), "False"] and after[0] != before[0]


def test_a_sqlite_url_with_options_still_opens(store: Store, db_path: Path) -> None:
    with open_store(f"sqlite:///{db_path}?timeout=5") as opened:
        assert opened.revision() == store.revision()


def test_migration_creates_the_schema_from_empty(db_path: Path) -> None:
    assert not db_path.parent.exists()
    open_store(f"sqlite:///{db_path}").close()
    check_schema(f"sqlite:///{db_path}")
    with sqlite3.connect(db_path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    open_store(str(db_path)).close()  # already at head: nothing to do


def _sample_store_downgraded(db_path: Path, revision: str) -> Engine:
    """A store holding the sample site, taken back by alembic to `revision`; the engine
    on it (the caller disposes of it)."""
    from alembic import command

    with open_store(str(db_path)) as store:
        store.import_site(sample_site())
    engine = create_engine(f"sqlite:///{db_path}")
    with engine.begin() as connection:
        command.downgrade(database._alembic_config(connection), revision)
    return engine


def test_a_store_opened_for_a_plan_is_never_migrated(db_path: Path) -> None:
    """What a dry run opens on PostgreSQL/MariaDB (here the same path on a SQLite URL,
    which `open_store_for_plan` would copy instead): an older schema is refused with a
    message naming the dry run, and the store keeps its revision."""
    engine = _sample_store_downgraded(db_path, "-1")
    try:
        older = database._head_revision(engine)
        assert older not in (None, SCHEMA_HEAD)
        with pytest.raises(StoreError, match="a dry run does not migrate it"):
            database.migrate(engine, "test store", upgrade=False)
        assert database._head_revision(engine) == older
        database.migrate(engine, "test store")  # a real run does (the check above could fail)
        assert database._head_revision(engine) == SCHEMA_HEAD
    finally:
        engine.dispose()


def test_migration_downgrades_to_nothing_and_back(db_path: Path) -> None:
    engine = _sample_store_downgraded(db_path, "base")
    try:
        with engine.connect() as connection:
            assert set(inspect(connection).get_table_names()) == {"alembic_version"}
    finally:
        engine.dispose()
    with open_store(str(db_path)) as store:
        assert not store.has_site()
        assert store.revision() == 0


def test_foreign_keys_are_enforced(store: Store) -> None:
    from sqlalchemy import insert

    from wildix_ast.store import tables

    row = {"position": 0, "type": "user", "name": "X", "extension": "10",
           "group_name": "nope", "dialplan": "users", "fax_dialplan": "users"}
    with pytest.raises(Exception, match="FOREIGN KEY"), store.engine.begin() as connection:
        connection.execute(insert(tables.users).values(**row))


def test_round_trip(store: Store) -> None:
    check_round_trip(store)


@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(site=sites())
def test_any_valid_site_round_trips(shared_store: Store, site: Site) -> None:
    shared_store.import_site(site)
    assert shared_store.export_site() == as_stored(site, shared_store.export_site())


def test_reimport_counts(store: Store) -> None:
    check_reimport_counts(store)


def test_failed_import_by_constraint_changes_nothing(store: Store) -> None:
    check_failed_import_by_constraint(store)


def test_failed_import_midway_changes_nothing(store: Store,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    check_failed_import_midway(store, monkeypatch)


def test_secrets_persist_across_reopen(db_path: Path) -> None:
    check_secrets(lambda: open_store(str(db_path)))


def test_default_location_from_env_then_home(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "env" / "deep" / "db.sqlite3"
    monkeypatch.setenv("WILDIX_AST_DB", str(target))
    with open_store(None) as store:
        store.import_site(Site())
    assert target.exists()
    monkeypatch.delenv("WILDIX_AST_DB")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with open_store(None) as store:
        assert not store.has_site()
    assert (tmp_path / "home/.local/share/wildix-ast/wildix-ast.sqlite3").exists()


@pytest.mark.slow
def test_concurrent_first_opens_and_imports(db_path: Path, tmp_path: Path) -> None:
    """Four processes open a new store at the same instant and import: the schema is made
    once, the imports queue up, none fails."""
    script = tmp_path / "open_and_import.py"
    script.write_text(CONCURRENT)
    start = time.time() + 2  # after every interpreter has started
    processes = [subprocess.Popen([sys.executable, str(script), str(db_path), str(100 + i),
                                   str(start)], stderr=subprocess.PIPE, text=True)
                 for i in range(4)]
    errors = [p.communicate(timeout=120)[1] for p in processes]
    assert [p.returncode for p in processes] == [0] * 4, errors
    with open_store(str(db_path)) as store:
        assert store.revision() == 4
        assert len(store.import_history()) == 4
        (only,) = store.export_site().users
        assert only.extension in {"100", "101", "102", "103"}


def test_threads_share_a_process(db_path: Path) -> None:
    """Stores opened by several threads at once (alembic is not thread-safe)."""
    barrier = threading.Barrier(4)
    failures: list[BaseException] = []

    def work(extension: str) -> None:
        try:
            barrier.wait()
            with open_store(str(db_path)) as store:
                store.import_site(Site(users=[user(extension)]))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(str(100 + i),)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
    with open_store(str(db_path)) as store:
        assert store.revision() == 4


def test_mariadb_schema_sql() -> None:
    """No MariaDB server here: at least the SQL the migration would run there (offline
    mode) keeps unicode (utf8mb4) and compares keys byte for byte."""
    import io

    from alembic import command

    buffer = io.StringIO()
    config = database._alembic_config()
    config.output_buffer = buffer
    config.set_main_option("sqlalchemy.url", "mariadb+pymysql://u@localhost/db")
    command.upgrade(config, "head", sql=True)
    sql = buffer.getvalue()
    # and alembic_version, and documents (made by 0004, dropped by 0009)
    assert sql.count("CREATE TABLE") == len(STORE_TABLES) + 2
    assert "DROP TABLE documents" in sql
    assert sql.count("CHARSET=utf8mb4 ENGINE=InnoDB") == len(STORE_TABLES) + 1  # documents
    assert "extension VARCHAR(8) COLLATE utf8mb4_bin NOT NULL" in sql
    assert "`key` VARCHAR(191) COLLATE utf8mb4_bin NOT NULL" in sql


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "expected"), [
    ("oracle://scott:tiger@db/orcl", "unsupported database 'oracle'"),
    ("ftp://example.org/x", "unsupported database 'ftp'"),
    ("postgresql+asyncpg://u:p@localhost/db", "unsupported driver 'asyncpg'"),
    ("mysql+foo://u:p@localhost/db", "unsupported driver 'foo'"),
    ("://nothing", "neither a database URL nor a file path"),
])
def test_unsupported_urls(url: str, expected: str) -> None:
    assert expected in store_error(url)


def test_password_never_shown(unused_port: int) -> None:
    message = store_error(f"postgresql+psycopg2://me:TopSecret@127.0.0.1:{unused_port}/db")
    assert "TopSecret" not in message
    assert "***" in message


@pytest.mark.parametrize("scheme", ["postgresql+psycopg2", "mysql+pymysql"])
def test_unreachable_server(scheme: str, unused_port: int) -> None:
    message = store_error(f"{scheme}://me:pw@127.0.0.1:{unused_port}/wildix")
    assert message.startswith("cannot reach the database server of")
    assert "check that it runs" in message


def test_newer_schema_is_refused(db_path: Path) -> None:
    open_store(str(db_path)).close()
    with sqlite3.connect(db_path) as raw:
        raw.execute("UPDATE alembic_version SET version_num = '9999'")
    message = store_error(str(db_path))
    assert (f"schema revision 9999, newer than this wildix-ast knows (up to {SCHEMA_HEAD})"
            in message)
    assert "upgrade wildix-ast" in message


def test_folder_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    message = store_error(str(tmp_path / "file" / "db.sqlite3"))
    assert message.startswith("cannot create the folder of the store")


def test_not_a_database(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.sqlite3"
    garbage.write_bytes(b"this is not sqlite" * 100)
    assert "file is not a database" in store_error(str(garbage))


def test_read_only_store(db_path: Path) -> None:
    with open_store(str(db_path)) as store:
        store.import_site(sample_site())
    with open_store(f"sqlite:///file:{db_path}?mode=ro&uri=true") as store:
        assert store.export_site() == as_stored(sample_site(), store.export_site())
        with pytest.raises(StoreError, match=r"cannot write the store .*readonly"):
            store.import_site(Site())
        with pytest.raises(StoreError, match="cannot write the store"):
            store.put_secret("k", "v")
        assert store.export_site() == as_stored(sample_site(), store.export_site())


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"),
                    reason="a read-only mount needs root and unshare")
def test_read_only_disk(tmp_path: Path) -> None:
    """The store's disk mounted read-only (root ignores file modes, so a real mount)."""
    folder = tmp_path / "ro"
    with open_store(str(folder / "site.sqlite3")) as store:
        store.import_site(sample_site())
    script = tmp_path / "probe.py"
    script.write_text(READ_ONLY_DISK)
    result = subprocess.run(
        ["unshare", "-m", "sh", "-c", f'mount --bind -o ro "{folder}" "{folder}" && '
         f'exec "{sys.executable}" "{script}" "{folder}"'],
        capture_output=True, text=True, timeout=60, check=False)
    if "mount" in result.stderr and result.returncode:
        pytest.skip(f"cannot mount here: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(": ", 1) for line in result.stdout.splitlines())
    assert lines["NEW"].startswith("cannot create the folder of the store")
    assert "Read-only file system" in lines["NEW"]
    assert "cannot write the store" in lines["EXISTING"]
    assert "check that its disk is writable" in lines["EXISTING"]
    with open_store(str(folder / "site.sqlite3")) as store:
        assert store.export_site() == as_stored(sample_site(), store.export_site())


def test_sounds_survive_the_store_in_order(tmp_path: Path) -> None:
    site = Site.model_validate({"sounds": [
        {"name": "welcome", "files": {"fr": "sons/accueil.wav", "en": "sons/welcome.mp3"}},
        {"name": "attente", "kind": "music_on_hold", "files": {"fr": "sons/attente.mp3"}}]})
    with open_store(str(tmp_path / "db.sqlite3")) as store:
        store.import_site(site)
        assert store.export_site().sounds == site.sounds


@pytest.mark.slow
def test_import_killed_before_commit_leaves_the_previous_site(tmp_path: Path) -> None:
    """`wildix-ast import` SIGKILLed inside its transaction (every row written, not committed):
    the store still holds the previous site, whole, and takes the next import."""
    db = tmp_path / "db.sqlite3"
    example = Path(__file__).resolve().parents[2] / "examples" / "site.yaml"
    bigger = tmp_path / "bigger.yaml"
    copy_example_sounds(tmp_path)
    bigger.write_text(example.read_text(encoding="utf-8") + "".join(
        f'  - name: Temp {n}\n    extension: "{n}"\n' for n in range(300, 500)),
        encoding="utf-8")
    env = {**os.environ, "WILDIX_AST_DB": str(db), "NO_COLOR": "1"}

    def run(path: Path, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "wildix_ast", "import", str(path)],
                              capture_output=True, text=True, env={**env, **extra},
                              timeout=120, check=False)

    assert run(example).returncode == 0
    with open_store(str(db)) as store:
        before, revision, imports = store.export_site(), store.revision(), \
            len(store.import_history())
    killed = run(bigger, WILDIX_AST_CRASH_AT="import-before-commit")
    assert killed.returncode == -9
    with open_store(str(db)) as store:
        assert store.export_site() == before
        assert store.revision() == revision and len(store.import_history()) == imports
    assert run(bigger).returncode == 0
    with open_store(str(db)) as store:
        assert len(store.export_site().users) == len(before.users) + 200
