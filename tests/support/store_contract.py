"""What every store must do, written once: the sample sites and their strategies, the checks
and the fixtures that tests/unit/test_store.py runs on SQLite and tests/live/test_store_*.py
on the database servers."""


from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from hypothesis import assume
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError
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
from wildix_ast.store import Store, open_store, sections
from wildix_ast.store.columns import metadata
from wildix_ast.store.schema import SCHEMA_HEAD
from wildix_ast.store.tables import STORE_TABLES
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


def store_error(location: str) -> str:
    with pytest.raises(StoreError) as caught:
        open_store(location).close()
    assert "\n" not in caught.value.message
    return caught.value.message


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


# --- stores made by an older wildix-ast ------------------------------------------------------

MAIN_STORES = Path(__file__).resolve().parents[1] / "unit" / "data" / "main_store"
"""Stores made by main 5a38bd70 (schema 0008, sections as JSON documents), what main
exported from them and the SHA-256 of its render: see make_fixtures.py there."""
MAIN_SITES = ("example", "rich")
# 0008's tables in the order their rows can be inserted (referenced before referencing).
_TABLES_0008 = ("site_state", "system_settings", "lan_networks", "sip_codecs",
                "dialplan_settings", "dialplan_procedures", "acl_groups", "users",
                "user_preferences", "secrets", "documents")


def copy_main_store(name: str, url: str) -> None:
    """Make the database at `url` what main's store `name` is: the schema at 0008 (through
    the migrations), then every row of main's SQLite file."""
    from alembic import command
    from sqlalchemy import MetaData, Table, select

    from wildix_ast.store import database

    engine = create_engine(url)
    source = create_engine(f"sqlite:///file:{MAIN_STORES / f'{name}.sqlite3'}?mode=ro&uri=true")
    try:
        with engine.begin() as connection:
            command.upgrade(database._alembic_config(connection), "0008")
        with source.connect() as reading, engine.begin() as writing:
            writing.exec_driver_sql("DELETE FROM site_state")
            for table_name in _TABLES_0008:
                old = Table(table_name, MetaData(), autoload_with=reading)
                new = Table(table_name, MetaData(), autoload_with=writing)
                rows = [dict(row._mapping) for row in reading.execute(select(old))]
                if rows:
                    writing.execute(new.insert(), rows)
    finally:
        engine.dispose()
        source.dispose()


def rendered(site: Site, vault: SecretVault, out: Path) -> dict[str, bytes]:
    """Every file the render of `site` with `vault`'s secrets writes, by name."""
    from wildix_ast.apply.pipeline import render_to_folder

    return {str(p.relative_to(out)): p.read_bytes()
            for p in sorted(render_to_folder(site, vault, out))}


def main_site(name: str, work: Path) -> Site:
    """The settings file a main store was made from, loaded by today's code."""
    from wildix_ast.model.settings_file import load_site

    settings = work / f"{name}.yaml"
    shutil.copy(MAIN_STORES / f"{name}.yaml", settings)
    (work / "sons").symlink_to(Path(__file__).resolve().parents[2] / "examples" / "sons")
    return load_site(settings)


def check_migrated_main_store(name: str, store: Store, out: Path) -> None:
    """A store of main, migrated: it exports what main exported, and renders byte for byte
    what main rendered (the secrets main generated are kept)."""
    from wildix_ast.model.settings_file import dump_site

    assert store.revision() == 1
    site = store.export_site()
    expected = (MAIN_STORES / f"{name}.export.yaml").read_text(encoding="utf-8")
    assert dump_site(site, include_secrets=False) == expected
    # The render of the migrated store is the render of the settings file main imported
    # (with the secrets main generated): the migration kept every value. (Byte for byte
    # against main's own render, `NAME.render.sha256`, held until features changed the
    # render after 0009: see issue 18's note.)
    out.mkdir(parents=True, exist_ok=True)
    assert rendered(site, store, out / "migrated") == \
        rendered(main_site(name, out), store, out / "settings")
    # The first import after the migrations may write the one row of the settings sections
    # that migrations after 0009 added (the directory's defaults): one revision at most.
    # Then the same site again changes nothing; a change is written and read back.
    first = store.import_site(site).revision
    assert first in (1, 2)
    assert store.import_site(site).revision == first
    changed = site.model_copy(update={"call_groups": site.call_groups[::-1],
                                      "time_frames": site.time_frames[::-1],
                                      "trunks": site.trunks[::-1]})
    assert store.import_site(changed).revision == first + 1
    assert store.export_site() == changed
    store.import_site(site)
    assert store.export_site() == site
