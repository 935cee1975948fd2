"""The store by section: imports that write only what changed, the revision, order, lookups,
secrets at rest (file modes, hashed WEB passwords) and the migrations from a 0001 store."""

# The `db_path` and `store` fixtures come from test_store (parameters re-use their names).

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from support.store_contract import PASSWORDS, as_stored, sample_site, user

from wildix_ast.model.dialplan import Dialplan, Procedure
from wildix_ast.model.groups import Group
from wildix_ast.model.passwords import is_password_hash, password_matches
from wildix_ast.model.settings_file import dump_site, parse_site
from wildix_ast.model.site import Site
from wildix_ast.store import Store, open_store
from wildix_ast.store import database as store_database
from wildix_ast.store.schema import SCHEMA_HEAD
from wildix_ast.store.vault import user_secret_key


class Writes:
    """The INSERT, UPDATE and DELETE statements a store runs, with their row counts."""

    def __init__(self, store: Store) -> None:
        self.statements: list[tuple[str, int]] = []

        @event.listens_for(store.engine, "before_cursor_execute")
        def _record(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any,
                    executemany: bool) -> None:
            verb = statement.split(None, 1)[0].upper()
            if verb in ("INSERT", "UPDATE", "DELETE"):
                rows = len(parameters) if executemany else 1
                self.statements.append((" ".join(statement.split()[:3]), rows))

    def site_tables(self) -> list[tuple[str, int]]:
        """Writes other than the bookkeeping (the serialising lock row, the history)."""
        return [(s, n) for s, n in self.statements
                if "site_state" not in s and "imports" not in s]


def big_site(count: int) -> Site:
    return Site(groups=[Group(name="default"), Group(name="sales")],
                users=[user(str(1000 + i), f"User {i}", email=f"u{i}@acme.fr",
                            login=f"user{i}", group="sales" if i % 2 else "default")
                       for i in range(count)])


def test_reimport_unchanged_writes_nothing_and_keeps_the_revision(store: Store) -> None:
    site = big_site(50)
    first = store.import_site(site)
    writes = Writes(store)
    reads: list[str] = []
    event.listen(store.engine, "before_cursor_execute",
                 lambda _c, _k, statement, *_: reads.append(statement))
    again = store.import_site(site)
    assert writes.site_tables() == []
    # The same site has the same digest: not even the users are read.
    assert not any("FROM users" in statement for statement in reads)
    assert again.revision == first.revision == store.revision()
    assert (again.added, again.changed, again.removed) == (0, 0, 0)


def test_one_user_changed_is_one_row_written(store: Store) -> None:
    site = big_site(50)
    store.import_site(site)
    before = store.revision()
    changed = site.model_copy(update={"users": [
        *site.users[:10], site.users[10].model_copy(update={"name": "Renamed"}),
        *site.users[11:]]})
    writes = Writes(store)
    report = store.import_site(changed)
    assert writes.site_tables() == [("UPDATE users SET", 1)]
    assert (report.added, report.changed, report.removed) == (0, 1, 0)
    assert report.revision == before + 1 == store.revision()
    assert store.export_site() == changed


def _renamed_swapped_added(site: Site) -> Site:
    """One user renamed, two swapped, one removed, one added (with a WEB password text)."""
    users = list(site.users)
    users[3] = users[3].model_copy(update={"name": "Renamed"})
    users[4], users[5] = users[5], users[4]
    return site.model_copy(update={"users": [
        *users[:-1], user("999", "Added", web_password=PASSWORDS[2])]})


def _report(report: Any) -> tuple[Any, ...]:
    return (report.users, report.added, report.changed, report.removed, report.revision)


def test_a_prepared_import_writes_what_a_plain_one_writes(tmp_path: Path) -> None:
    """`prepare_import` (an apply does it while Asterisk reloads) then `import_site` with
    it: the same statements, report and stored site as an import done in one go."""
    site = big_site(20)
    changed = _renamed_swapped_added(site)
    outcomes = []
    for name, prepare in (("plain", False), ("prepared", True)):
        with open_store(str(tmp_path / name / "store.sqlite3")) as opened:
            opened.import_site(site)
            prepared = opened.prepare_import(changed) if prepare else None
            writes = Writes(opened)
            reads: list[str] = []
            event.listen(opened.engine, "before_cursor_execute",
                         lambda _c, _k, statement, *_, to=reads: to.append(statement))
            report = opened.import_site(changed, prepared=prepared)
            # prepared, the import only writes: the users were compared beforehand
            assert any(r.startswith("SELECT") and "FROM users" in r for r in reads) \
                is not prepare
            exported = opened.export_site()
            # the added user's WEB password is hashed with a random salt: compared apart
            assert exported == as_stored(changed, exported)
            outcomes.append((writes.statements, _report(report)))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][1][1:4] == (1, 1, 1)


def test_a_prepared_import_compares_again_when_the_store_changed_meanwhile(
        store: Store) -> None:
    """Another writer between the preparation and the import (another import, a
    preference change): the import does not trust the stale comparison."""
    site = big_site(20)
    store.import_site(site)
    changed = _renamed_swapped_added(site)
    prepared = store.prepare_import(changed)
    meanwhile = site.model_copy(update={"users": site.users[2:]})  # 1000, 1001 removed
    store.import_site(meanwhile)
    report = store.import_site(changed, prepared=prepared)
    assert (report.added, report.removed) == (3, 1)  # 1000, 1001 and 999 back; 1019 gone
    assert store.export_site() == as_stored(changed, store.export_site())

    prepared = store.prepare_import(site)
    store.change_preferences("1003", lambda p: p.model_copy(update={"dnd": True}))
    store.import_site(site, prepared=prepared)
    assert store.export_site() == site  # the preference set meanwhile is replaced


def test_the_apply_store_update_writes_what_it_prepared(store: Store) -> None:
    """The apply's store update (pipeline): prepared while Asterisk reloads, it then only
    writes; the settings snapshot is serialised by the preparation too."""
    from wildix_ast.apply.pipeline import _snapshot_text, _StoreUpdate

    site = big_site(20)
    store.import_site(site)
    changed = _renamed_swapped_added(site)
    update = _StoreUpdate(store, changed)
    update.prepare()
    assert update.prepared is not None and update.snapshot_text() == _snapshot_text(changed)
    reads: list[str] = []
    event.listen(store.engine, "before_cursor_execute",
                 lambda _c, _k, statement, *_: reads.append(statement))
    revision = update.record()
    assert not any(r.startswith("SELECT") and "FROM users" in r for r in reads)
    assert update.report is not None and update.report.changed == 1
    assert revision == update.report.revision == store.revision()


def test_revision_and_has_site_agree_with_sqlalchemy(store: Store) -> None:
    """On a SQLite file they are read through sqlite3 (an apply reads them before loading
    SQLAlchemy); a store opened by a URL with options reads them through SQLAlchemy."""
    by_url = open_store(f"sqlite:///{store.where}?timeout=30")  # an option: SQLAlchemy's way
    assert by_url.access.url is not None
    assert (store.has_site(), by_url.has_site()) == (False, False)
    store.import_site(big_site(3))
    assert (store.has_site(), store.revision()) == (by_url.has_site(), by_url.revision())
    by_url.close()


def test_rows_trade_unique_values_and_places_in_one_import(store: Store) -> None:
    """Two users swap emails, a user is inserted at the top (every position moves), a group
    is renamed and its users follow: all in one import, constraints hold throughout."""
    site = big_site(6)
    store.import_site(site)
    users = list(site.users)
    users[0], users[1] = (users[0].model_copy(update={"email": users[1].email}),
                          users[1].model_copy(update={"email": users[0].email}))
    users = [user("999", "New first", email=site.users[5].email),
             *[u.model_copy(update={"group": "vente"}) if u.group == "sales" else u
               for u in users[:5]]]
    swapped = Site(groups=[Group(name="vente"), Group(name="default")], users=users)
    report = store.import_site(swapped)
    assert (report.added, report.removed) == (1, 1)
    assert store.export_site() == swapped


def test_order_of_every_list_survives(store: Store) -> None:
    site = sample_site()
    reordered = site.model_copy(update={
        "groups": site.groups[::-1],
        "dialplan": Dialplan(procedures=[Procedure(name="day"),
                                         Procedure(name="night", description="Nuit")]),
        "users": site.users[::-1]})
    store.import_site(site)
    before = store.revision()
    report = store.import_site(reordered)
    assert report.changed == 0  # moving is not changing a user...
    assert report.revision == before + 1  # ...but the site changed
    assert store.export_site() == as_stored(reordered, store.export_site())


def test_lookups_without_loading_the_site(store: Store) -> None:
    store.import_site(sample_site())
    zoe = store.user_by_extension("201")
    assert zoe is not None and zoe.name == "Zoé Écrivain"
    assert zoe.web_password is not None and password_matches(zoe.web_password, PASSWORDS[0])
    assert store.user_by_extension("999") is None
    assert store.user_by_did("+33140000201") == zoe  # office DID
    assert store.user_by_did("+33140000299") == zoe  # fax DID
    assert store.user_by_did("201") is None
    assert store.user_by_login("ZOE") == zoe  # logins ignore case, as the model does
    assert store.group_of("201") == Group(name="sales", description="Ventes & marketing")
    assert store.group_of("102") == Group(name="default")
    assert store.procedure_of("201") == Procedure(name="night", description="Nuit")
    assert store.procedure_of("201", fax=True) == Procedure(name="day")
    assert store.procedure_of("102") == Procedure(name="users")  # the built-in one
    assert store.group_of("999") is None and store.procedure_of("999") is None


def test_a_lookup_reads_one_user(store: Store) -> None:
    store.import_site(big_site(200))
    selects: list[str] = []

    @event.listens_for(store.engine, "before_cursor_execute")
    def _record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            selects.append(" ".join(statement.split()))

    found = store.user_by_extension("1100")
    assert found is not None and found.name == "User 100"
    (query,) = selects
    assert query.startswith("SELECT users.") and "WHERE users.extension = ?" in query


# --- secrets at rest -------------------------------------------------------------------------

def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_new_store_is_owner_only(db_path: Path) -> None:
    with open_store(str(db_path)) as store:
        store.import_site(sample_site())
        store.put_secret("k", "v")
    assert mode(db_path.parent) == 0o700
    files = sorted(db_path.parent.iterdir())
    assert db_path in files
    assert all(mode(f) == 0o600 for f in files), {f.name: oct(mode(f)) for f in files}


def test_an_existing_folder_keeps_its_mode(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    with open_store(str(tmp_path / "site.sqlite3")):
        pass
    assert mode(tmp_path) == 0o755
    assert mode(tmp_path / "site.sqlite3") == 0o600


def test_no_password_text_in_the_database_file(db_path: Path) -> None:
    """WEB passwords are only hashes, in the users table and in the import history (which
    keeps the settings text's SHA-256, never the text)."""
    web = "Wq7!plainText#1"
    text = dump_site(sample_site(), include_secrets=True)
    site = parse_site(text.replace(PASSWORDS[0], web))
    with open_store(str(db_path)) as store:
        store.import_site(site, source_text=text)
        store.import_site(site, source_text=text)
        stored = store.user_by_extension("201")
        assert stored is not None and stored.web_password is not None
        assert is_password_hash(stored.web_password)
        assert store.get_secret(user_secret_key("201", "web")) is None
    with sqlite3.connect(db_path) as raw:
        raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = b"".join(f.read_bytes() for f in db_path.parent.iterdir())
    assert web.encode() not in data
    assert PASSWORDS[1].encode() in data  # SIP passwords stay recoverable


def test_web_password_round_trip_through_export(store: Store) -> None:
    """An export carries the hash; importing it back changes nothing; the same text in the
    settings file is recognised (not re-hashed); another text makes a new hash."""
    store.import_site(sample_site())
    exported = store.export_site()
    text = dump_site(exported, include_secrets=True)
    hashed = exported.users[0].web_password
    assert hashed is not None and hashed in text and PASSWORDS[0] not in text
    revision = store.revision()
    assert store.import_site(parse_site(text)).revision == revision
    assert store.import_site(sample_site()).revision == revision
    other = sample_site().model_copy(update={"users": [
        sample_site().users[0].model_copy(update={"web_password": PASSWORDS[2]}),
        *sample_site().users[1:]]})
    report = store.import_site(other)
    assert report.changed == 1 and report.revision == revision + 1
    now = store.user_by_extension("201")
    assert now is not None and now.web_password is not None
    assert password_matches(now.web_password, PASSWORDS[2])


# --- opening cheaply, migrating ----------------------------------------------------------------

def test_schema_head_is_alembics() -> None:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(store_database._alembic_config())
    assert script.get_current_head() == SCHEMA_HEAD


PROBE = """
import sys
from wildix_ast.store import open_store
with open_store(sys.argv[1]) as store:
    store.put_secret("probe", "value")
    assert store.get_secret("probe") == "value"
print(sorted(m for m in ("sqlalchemy", "alembic") if m in sys.modules))
"""


def test_a_current_store_opens_without_sqlalchemy(db_path: Path) -> None:
    """What render needs (open, secrets) loads neither SQLAlchemy nor alembic."""
    open_store(str(db_path)).close()
    result = subprocess.run([sys.executable, "-c", PROBE, str(db_path)], capture_output=True,
                            text=True, check=True, timeout=60)
    assert result.stdout.strip() == "[]"


def test_migration_from_0001_keeps_the_data(db_path: Path) -> None:
    """A store made and filled by revision 0001 (plain WEB passwords, generated WEB secrets)
    upgrades to the head: same site, WEB passwords as hashes of the same texts, other secrets
    kept, the generation counter carried over as the revision."""
    from alembic import command

    db_path.parent.mkdir()
    engine = create_engine(f"sqlite:///{db_path}")
    with engine.begin() as connection:
        command.upgrade(store_database._alembic_config(connection), "0001")
        connection.exec_driver_sql("UPDATE site_state SET generation = 7")
        for statement in (
            "INSERT INTO system_settings VALUES (1, 'acme', 'fr', 'fr', '33', 'Europe/Paris', "
            "'0.0.0.0', 5060, 10000, 20000, NULL, 5038, 'wildix-ast')",
            "INSERT INTO lan_networks VALUES (0, '192.168.1.0/24')",
            "INSERT INTO sip_codecs VALUES ('lan', 0, 'g722'), ('remote', 0, 'alaw')",
            "INSERT INTO dialplan_settings VALUES (1, '*43', '*97', 20)",
            "INSERT INTO dialplan_procedures (position, name, description) "
            "VALUES (0, 'night', 'Nuit')",
            "INSERT INTO acl_groups (position, name, description) VALUES (0, 'default', NULL)",
            "INSERT INTO users (position, type, name, login, login_key, extension, email, "
            "email_key, group_name, dialplan, fax_dialplan, web_password, sip_password) "
            f"VALUES (0, 'user', 'Ann', 'Ann', 'ann', '101', 'Ann@acme.fr', 'ann@acme.fr', "
            f"'default', 'night', 'users', '{PASSWORDS[0]}', '{PASSWORDS[1]}')",
            "INSERT INTO users (position, type, name, extension, group_name, dialplan, "
            "fax_dialplan) VALUES (1, 'user', 'Bob', '102', 'default', 'users', 'users')",
            f"INSERT INTO secrets VALUES ('user:102:web', '{PASSWORDS[2]}'), "
            "('user:102:sip', 'Kept#Sip1x'), ('manager:wildix-ast', 'Ami#Secret1')",
            "INSERT INTO imports (imported_at, source_sha256, users, groups, procedures, "
            "added, changed, removed) VALUES ('2026-11-27 10:00:00', NULL, 2, 1, 1, 2, 0, 0)",
        ):
            connection.exec_driver_sql(statement)
    engine.dispose()
    with open_store(str(db_path)) as store:
        site = store.export_site()
        assert store.revision() == 7
        assert [h.users for h in store.import_history()] == [2]
        assert store.get_secret("user:102:web") is None
        assert store.get_secret("user:102:sip") == "Kept#Sip1x"
        assert store.get_secret("manager:wildix-ast") == "Ami#Secret1"
    ann, bob = site.users
    assert ann.web_password is not None and password_matches(ann.web_password, PASSWORDS[0])
    assert bob.web_password is not None and password_matches(bob.web_password, PASSWORDS[2])
    expected = Site.model_validate({
        "system": {"pbx_name": "acme", "language_region": {
            "language": "fr", "tone_zone": "fr", "country_code": "33",
            "timezone": "Europe/Paris"},
            "sip_rtp": {"lan_networks": ["192.168.1.0/24"], "lan_codecs": ["g722"],
                        "remote_codecs": ["alaw"]}},
        "groups": [{"name": "default"}],
        "dialplan": {"procedures": [{"name": "night", "description": "Nuit"}]},
        "users": [{"name": "Ann", "login": "Ann", "extension": "101", "email": "Ann@acme.fr",
                   "dialplan": "night", "web_password": ann.web_password,
                   "sip_password": PASSWORDS[1]},
                  {"name": "Bob", "extension": "102", "web_password": bob.web_password}]})
    assert site == expected
    data = db_path.read_bytes() + b"".join(
        f.read_bytes() for f in db_path.parent.glob("*-wal"))
    assert PASSWORDS[0].encode() not in data


def test_export_with_secrets_file_is_owner_only(db_path: Path, tmp_path: Path) -> None:
    env = {**os.environ, "WILDIX_AST_DB": str(db_path)}
    settings = tmp_path / "site.yaml"
    settings.write_text(dump_site(sample_site(), include_secrets=True))
    cli = [sys.executable, "-m", "wildix_ast"]
    subprocess.run([*cli, "import", str(settings)], env=env, check=True, capture_output=True,
                   timeout=120)
    out = tmp_path / "export.yaml"
    out.write_text("old")
    out.chmod(0o644)
    subprocess.run([*cli, "export", "--with-secrets", "-o", str(out)], env=env, check=True,
                   capture_output=True, timeout=120)
    assert mode(out) == 0o600
    assert PASSWORDS[1] in out.read_text() and PASSWORDS[0] not in out.read_text()


# --- the generic mechanism: an ordered list inside list items ---------------------------------

def test_an_ordered_list_inside_list_items_keeps_its_order(tmp_path: Path) -> None:
    """What the routing issue adds (a procedure's ordered applications) is one more child
    `Section`: rows carry their parent's key and position; only differences are written."""
    from pydantic import BaseModel, ConfigDict
    from sqlalchemy import Column, ForeignKeyConstraint, Integer, MetaData, String, Table

    from wildix_ast.model.fields import Identifier
    from wildix_ast.store import sections
    from wildix_ast.store.columns import Section

    class App(BaseModel):
        model_config = ConfigDict(frozen=True)
        app: Identifier
        argument: Identifier | None = None

    class Proc(BaseModel):
        model_config = ConfigDict(frozen=True)
        name: Identifier
        applications: list[App] = []

    class Plan(BaseModel):
        model_config = ConfigDict(frozen=True)
        procedures: list[Proc] = []

    schema = MetaData()
    procs = Section("procs", "procedures", Proc, key=("name",), schema=schema)
    apps = Section("apps", "applications", App, key=("position",), parent=procs,
                   parent_key=(("procedure", "name"),), schema=schema)
    Table("procs", schema, Column("id", Integer, primary_key=True),
          Column("position", Integer, nullable=False), *procs.columns())
    Table("apps", schema, Column("id", Integer, primary_key=True),
          Column("procedure", String(40), nullable=False),
          Column("position", Integer, nullable=False), *apps.columns(),
          ForeignKeyConstraint(["procedure"], ["procs.name"]))
    tree = (procs, apps)
    engine = create_engine(f"sqlite:///{tmp_path / 'tree.sqlite3'}")
    schema.create_all(engine)

    def store(plan: Plan) -> list[str]:
        """Write `plan`; the plan read back must be `plan`. The kinds of statements written."""
        writes: list[str] = []

        def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            if statement.split()[0] in ("INSERT", "UPDATE", "DELETE"):
                writes.append(statement.split()[0])

        event.listen(engine, "before_cursor_execute", record)
        try:
            with engine.begin() as connection:
                found = sections.entries(plan, tree)
                syncs = [sections.compare(s, sections.stored_rows(connection, s), found[s])
                         for s in tree]
                sections.write_changes(connection, syncs, sections.insert_rows)
                back = sections.site_data(
                    {s: sections.read_rows(connection, s) for s in tree}, tree)
        finally:
            event.remove(engine, "before_cursor_execute", record)
        assert Plan.model_validate(back) == plan
        return writes

    day = Proc(name="day", applications=[App(app="Wait", argument="one"),
                                         App(app="Dial", argument="users"),
                                         App(app="Voicemail")])
    night = Proc(name="night", applications=[App(app="Playback", argument="closed")])
    assert store(Plan(procedures=[day, night])) == ["INSERT", "INSERT"]
    assert store(Plan(procedures=[day, night])) == []  # nothing changed, nothing written
    reordered = day.model_copy(update={"applications": day.applications[::-1]})
    assert set(store(Plan(procedures=[reordered, night]))) == {"UPDATE"}
    shorter = night.model_copy(update={"applications": []})
    assert "DELETE" in store(Plan(procedures=[shorter, reordered]))
    engine.dispose()
