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
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError
from sound_fixtures import copy_example_sounds
from sqlalchemy import create_engine, inspect

from wildix_ast.errors import StoreError
from wildix_ast.model.dialplan import Dialplan, Procedure
from wildix_ast.model.fields import FreeText
from wildix_ast.model.groups import Group
from wildix_ast.model.passwords import is_password_hash, password_matches, password_problems
from wildix_ast.model.settings_file import parse_site
from wildix_ast.model.site import Site
from wildix_ast.model.system import Codec, LanguageRegion, Manager, SipRtp, System
from wildix_ast.model.users import User, UserType
from wildix_ast.store import Store, database, open_store, sections
from wildix_ast.store.schema import SCHEMA_HEAD
from wildix_ast.store.tables import STORE_TABLES, metadata
from wildix_ast.store.vault import SecretVault, manager_secret, user_secret_key, with_secrets

# --- sites -----------------------------------------------------------------------------------

PASSWORDS = ["Xk9!vTq2#pLm", "Zz8?Lw3@Qe", "Mn4~Rt7^Yu0_"]
assert not any(password_problems(p) for p in PASSWORDS)

SAMPLE = """\
system:
  pbx_name: acme
  language_region: {language: fr, tone_zone: fr, country_code: "33", timezone: Europe/Paris}
  sip_rtp: {external_address: 203.0.113.5, lan_networks: [192.168.1.0/24], lan_codecs: [g722],
            remote_codecs: [opus, alaw]}
  manager: {port: 5039, username: ami-user}
groups:
  - {name: sales, description: Ventes & marketing}
  - name: default
dialplan:
  echo_test: "*44"
  ring_timeout: 35
  procedures: [{name: night, description: Nuit}, {name: day}]
users:
  - {name: Zoé Écrivain, extension: "201", email: Zoe@acme.fr, login: zoe, office_did:
     "+33140000201", fax_did: "+33140000299", mobile: "+33600000201", language: fr,
     group: sales, department: R&D, dialplan: night, fax_dialplan: day, type: admin,
     web_password: "Xk9!vTq2#pLm", sip_password: "Zz8?Lw3@Qe"}
  - {name: Bob, extension: "102"}
  - {name: Fax, extension: "150", type: fax}
  - {name: Parking, extension: "700", type: park_orbit}
  - {name: Salle A, extension: "800", type: room, email: salle@acme.fr}
"""


def sample_site() -> Site:
    return parse_site(SAMPLE)


def user(extension: str, name: str = "User", **fields: Any) -> User:
    return User(name=name, extension=extension, **fields)


_FREE_TEXT: TypeAdapter[str] = TypeAdapter(FreeText)


def _is_free_text(value: str) -> bool:
    try:
        _FREE_TEXT.validate_python(value)
    except ValidationError:
        return False
    return True


free_text = st.text(alphabet=st.one_of(st.characters(categories=("L", "N")),
                                       st.sampled_from(" '-.,()&/@+é")),
                    min_size=1, max_size=80).filter(_is_free_text)
identifiers = st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,39}", fullmatch=True)
extensions = st.from_regex(r"[0-9]{2,8}", fullmatch=True)
phones = st.from_regex(r"\+?[0-9]{3,20}", fullmatch=True)
emails = st.from_regex(r"[A-Za-z0-9._%+-]{1,20}@[A-Za-z0-9-]{1,12}\.[A-Za-z]{2,6}",
                       fullmatch=True)
logins = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,30}", fullmatch=True)
networks = st.sampled_from(["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "192.168.1.0/24",
                            "203.0.113.0/24", "0.0.0.0/0", "198.51.100.7/32"])
addresses = st.sampled_from(["0.0.0.0", "127.0.0.1", "192.168.1.10", "203.0.113.5"])


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


@st.composite
def sites(draw: st.DrawFn) -> Site:
    """Valid sites of every shape: optional fields set or not, lists empty or not."""
    rtp_start = draw(st.integers(10000, 30000))
    system = System(
        pbx_name=draw(identifiers),
        language_region=LanguageRegion(
            language=draw(st.sampled_from(["en", "fr", "en_GB", "de_DE"])),
            tone_zone=draw(st.sampled_from(["us", "fr", "de"])),
            country_code=draw(st.from_regex(r"[1-9][0-9]{0,3}", fullmatch=True)),
            timezone=draw(st.sampled_from(["UTC", "Europe/Paris",
                                           "America/Argentina/ComodRivadavia"]))),
        sip_rtp=SipRtp(
            bind_address=IPv4Address(draw(addresses)),
            sip_port=draw(st.integers(1, 9999)),
            rtp_start=rtp_start, rtp_end=draw(st.integers(rtp_start + 1, 65535)),
            external_address=draw(optional(addresses.map(IPv4Address))),
            lan_networks=draw(st.lists(networks.map(IPv4Network), max_size=4)),
            lan_codecs=draw(st.lists(st.sampled_from(list(Codec)), min_size=1, max_size=4)),
            remote_codecs=draw(st.lists(st.sampled_from(list(Codec)), min_size=1,
                                        max_size=4))),
        manager=Manager(port=draw(st.integers(1, 65535)), username=draw(identifiers)),
    )
    procedures = draw(st.lists(identifiers, max_size=3, unique=True))
    dialplan = Dialplan(
        echo_test=draw(st.sampled_from(["*43", "*1", "*9999"])),
        voicemail=draw(st.sampled_from(["*97", "*98"])),
        ring_timeout=draw(st.integers(5, 300)),
        procedures=[Procedure(name=name, description=draw(optional(free_text)))
                    for name in procedures])
    group_names = draw(st.lists(identifiers, min_size=1, max_size=4, unique=True))
    groups = [Group(name=name, description=draw(optional(free_text))) for name in group_names]
    routes = ["users", *procedures]
    users = []
    for extension in draw(st.lists(extensions, max_size=6, unique=True)):
        users.append(User(
            type=draw(st.sampled_from(list(UserType))), name=draw(free_text),
            login=draw(optional(logins)), extension=extension,
            office_did=draw(optional(phones)), fax_did=draw(optional(phones)),
            email=draw(optional(emails)), mobile=draw(optional(phones)),
            language=draw(optional(st.sampled_from(["fr", "en_US"]))),
            group=draw(st.sampled_from(group_names)), department=draw(optional(free_text)),
            dialplan=draw(st.sampled_from(routes)), fax_dialplan=draw(st.sampled_from(routes)),
            web_password=draw(optional(st.sampled_from(PASSWORDS))),
            sip_password=draw(optional(st.sampled_from(PASSWORDS)))))
    try:
        return Site(system=system, groups=groups, dialplan=dialplan, users=users)
    except ValidationError:
        assume(False)  # colliding numbers, emails or logins: not a valid site
        raise


# --- checks shared with the PostgreSQL tests -------------------------------------------------

def check_round_trip(store: Store) -> None:
    assert not store.has_site()
    with pytest.raises(StoreError, match="holds no site yet"):
        store.export_site()
    for site in (sample_site(), Site(), Site(groups=[], users=[]),
                 Site(groups=[Group(name="sales"), Group(name="Sales")]),
                 sample_site().model_copy(update={"users": sample_site().users[::-1]})):
        store.import_site(site)
        assert store.has_site()
        assert store.export_site() == as_stored(site, store.export_site())


def as_stored(site: Site, exported: Site) -> Site:
    """`site` as the store gives it back: each WEB password text as the hash of that text."""
    users = []
    for written, back in zip(site.users, exported.users, strict=True):
        if written.web_password is not None and not is_password_hash(written.web_password):
            assert back.web_password is not None and is_password_hash(back.web_password)
            assert password_matches(back.web_password, written.web_password)
            written = written.model_copy(update={"web_password": back.web_password})
        users.append(written)
    return site.model_copy(update={"users": users})


def check_reimport_counts(store: Store) -> None:
    first = Site(users=[user("101", "Ann"), user("102", "Ben"), user("103", "Cy")])
    report = store.import_site(first, source_text="first")
    assert (report.added, report.changed, report.removed, report.unchanged) == (3, 0, 0, 0)
    assert str(report) == "3 users (3 added, 0 changed, 0 removed), 1 groups, " \
                          "0 dialplan procedures"
    second = Site(users=[user("103", "Cy"), user("102", "Benjamin"), user("104", "Di")])
    report = store.import_site(second, source_text="second")
    assert (report.added, report.changed, report.removed, report.unchanged) == (1, 1, 1, 1)
    assert store.export_site() == second  # the new order, too
    report = store.import_site(second)
    assert (report.added, report.changed, report.removed, report.unchanged) == (0, 0, 0, 3)
    history = store.import_history()
    assert [(h.added, h.changed, h.removed, h.users) for h in history] == \
        [(3, 0, 0, 3), (1, 1, 1, 3), (0, 0, 0, 3)]
    import hashlib
    assert history[0].source_sha256 == hashlib.sha256(b"first").hexdigest()
    assert history[2].source_sha256 is None
    assert history[0].imported_at <= history[1].imported_at <= history[2].imported_at
    assert history[0].imported_at.tzinfo is not None


def check_failed_import_by_constraint(store: Store) -> None:
    """A site that slipped past validation breaks a unique constraint in the middle of the
    users: the transaction is rolled back, the previous site stays exactly."""
    good = sample_site()
    store.import_site(good)
    generation = store.revision()
    imports = len(store.import_history())
    users = [*good.users, user("555", "Other"), user("556", "Same email", email="zoe@ACME.fr")]
    bad = Site.model_construct(system=good.system, groups=good.groups,
                               dialplan=good.dialplan, users=users)
    with pytest.raises(StoreError, match=r"import failed, the store .*is unchanged") as caught:
        store.import_site(bad)
    assert "uq_users_email" in caught.value.message or "UNIQUE" in caught.value.message
    assert store.export_site() == as_stored(good, store.export_site())
    assert store.revision() == generation
    assert len(store.import_history()) == imports
    dangling = Site.model_construct(system=good.system, groups=good.groups[:1],
                                    dialplan=good.dialplan, users=good.users)
    with pytest.raises(StoreError, match="import failed"):  # users.group_name -> acl_groups
        store.import_site(dangling)
    assert store.export_site() == as_stored(good, store.export_site())


def check_failed_import_midway(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure after half the users are written leaves nothing of them."""
    good = sample_site()
    store.import_site(good)
    store.put_secret(user_secret_key("102", "sip"), "Kept-secret-1")
    real = sections.insert_rows
    new = Site(users=[user(str(100 + i), f"U{i}") for i in range(10)])

    def half_then_fail(connection: Any, table: Any, rows: Any) -> None:
        if table.name == "users":
            real(connection, table, rows[: len(rows) // 2])
            raise RuntimeError("disk pulled out")
        real(connection, table, rows)

    monkeypatch.setattr(sections, "insert_rows", half_then_fail)
    with pytest.raises(StoreError, match="unchanged: RuntimeError: disk pulled out"):
        store.import_site(new)
    monkeypatch.undo()
    assert store.export_site() == as_stored(good, store.export_site())
    assert store.get_secret(user_secret_key("102", "sip")) == "Kept-secret-1"
    store.import_site(new)
    assert store.export_site() == new


def check_secrets(open_: Callable[[], Store]) -> None:
    with open_() as store:
        vault: SecretVault = store
        site = Site(users=[user("101"), user("102", sip_password=PASSWORDS[0])])
        store.import_site(site)
        filled = with_secrets(site, vault)
        ami = manager_secret(vault, "wildix-ast")
        assert store.get_secret("missing") is None
        store.put_secret("k", "v1")
        store.put_secret("k", "v2")
    with open_() as store:
        assert with_secrets(store.export_site(), store) == filled
        assert manager_secret(store, "wildix-ast") == ami
        assert store.get_secret("k") == "v2"
        # An import keeps secrets, except those of users that are gone.
        store.import_site(Site(users=[user("102", sip_password=PASSWORDS[0]), user("103")]))
        assert store.get_secret(user_secret_key("101", "sip")) is None
        assert store.get_secret(user_secret_key("101", "web")) is None
        assert store.get_secret(user_secret_key("102", "sip")) is None  # given, not generated
        assert store.get_secret(user_secret_key("103", "sip")) is None  # not rendered yet
        assert manager_secret(store, "wildix-ast") == ami


def check_schema(url: str) -> None:
    """The migrations make exactly the tables the code describes."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            names = set(inspect(connection).get_table_names())
            assert {t.name for t in STORE_TABLES} | {"alembic_version"} <= names
            ours = {t.name for t in STORE_TABLES}
            context = MigrationContext.configure(connection, opts={
                "compare_type": True,
                "include_object": lambda obj, name, type_, reflected, other:
                    type_ != "table" or name in ours})
            assert compare_metadata(context, metadata) == []
            assert context.get_current_heads() == (SCHEMA_HEAD,)
            unique = {tuple(u["column_names"])
                      for u in inspect(connection).get_unique_constraints("users")}
            assert {("extension",), ("email_key",), ("login_key",)} <= unique
    finally:
        engine.dispose()


# --- SQLite ----------------------------------------------------------------------------------

@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "store" / "site.sqlite3"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    with open_store(str(db_path)) as opened:
        yield opened


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


def test_migration_downgrades_to_nothing_and_back(db_path: Path) -> None:
    from alembic import command

    with open_store(str(db_path)) as store:
        store.import_site(sample_site())
    engine = create_engine(f"sqlite:///{db_path}")
    try:
        with engine.begin() as connection:
            command.downgrade(database._alembic_config(connection), "base")
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
    with pytest.raises(Exception, match="FOREIGN KEY"), store._engine.begin() as connection:
        connection.execute(insert(tables.users).values(**row))


def test_round_trip(store: Store) -> None:
    check_round_trip(store)


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    with open_store(str(tmp_path_factory.mktemp("hypothesis") / "s.sqlite3")) as opened:
        yield opened


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
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


CONCURRENT = """
import sys, time
from wildix_ast.model.site import Site
from wildix_ast.store import open_store
from wildix_ast.model.users import User
start = float(sys.argv[3])
time.sleep(max(0.0, start - time.time()))
with open_store(sys.argv[1]) as store:
    store.import_site(Site(users=[User(name="U", extension=sys.argv[2])]))
"""


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
    assert sql.count("CREATE TABLE") == len(STORE_TABLES) + 1  # and alembic_version
    assert sql.count("CHARSET=utf8mb4 ENGINE=InnoDB") == len(STORE_TABLES)
    assert "extension VARCHAR(8) COLLATE utf8mb4_bin NOT NULL" in sql
    assert "`key` VARCHAR(191) COLLATE utf8mb4_bin NOT NULL" in sql


# --- errors ----------------------------------------------------------------------------------

def store_error(location: str) -> str:
    with pytest.raises(StoreError) as caught:
        open_store(location).close()
    assert "\n" not in caught.value.message
    return caught.value.message


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


@pytest.fixture
def unused_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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


READ_ONLY_DISK = """
import sys
from wildix_ast.errors import StoreError
from wildix_ast.model.site import Site
from wildix_ast.store import open_store
try:
    open_store(sys.argv[1] + "/new/site.sqlite3")
except StoreError as error:
    print("NEW:", error.message)
try:
    # SQLite cannot even read a WAL database without writing its -shm file next to it.
    with open_store(sys.argv[1] + "/site.sqlite3") as store:
        store.import_site(Site())
except StoreError as error:
    print("EXISTING:", error.message)
"""


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


def test_import_killed_before_commit_leaves_the_previous_site(tmp_path: Path) -> None:
    """`wildix-ast import` SIGKILLed inside its transaction (every row written, not committed):
    the store still holds the previous site, whole, and takes the next import."""
    db = tmp_path / "db.sqlite3"
    example = Path(__file__).parent.parent / "examples" / "site.yaml"
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
