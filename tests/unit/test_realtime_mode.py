"""Realtime mode (issue 22) without Asterisk: what the render leaves out of pjsip.conf and
voicemail.conf is exactly what the rows file holds; the rows written into the realtime
file follow any two versions, idempotently (what an undo after a kill relies on); the plan
masks the rows' passwords; the file mode renders as before."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.examples import examples

from wildix_ast.apply import ConfigTarget
from wildix_ast.apply.pipeline import render_to_folder
from wildix_ast.conf import sections
from wildix_ast.errors import ApplyError
from wildix_ast.model.settings_file import load_site
from wildix_ast.model.site import Site
from wildix_ast.model.system import RealtimeEngine, RealtimeMode
from wildix_ast.store.realtime_tables import (
    TABLES,
    RowChanges,
    SqliteRealtime,
    open_realtime,
    row_changes,
)
from wildix_ast.store.vault import MemoryVault

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "site.yaml"
REALTIME_FILES = {"sorcery.conf", "extconfig.conf", "res_config_sqlite3.conf",
                  "wildix-realtime.conf"}


def realtime(site: Site, engine: RealtimeEngine = RealtimeEngine.SQLITE) -> Site:
    system = site.system
    return site.model_copy(update={"system": system.model_copy(update={
        "realtime": system.realtime.model_copy(update={"mode": RealtimeMode.REALTIME,
                                                       "engine": engine})})})


def rendered(site: Site, folder: Path, vault: MemoryVault) -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8")
            for p in render_to_folder(site, vault, folder)}


def test_realtime_mode_moves_the_users_objects_into_rows(tmp_path: Path) -> None:
    site, vault = load_site(EXAMPLE), MemoryVault()
    files = rendered(site, tmp_path / "file", vault)
    assert not REALTIME_FILES & set(files)  # the file mode renders what it always did
    live = rendered(realtime(site), tmp_path / "realtime", vault)
    assert set(live) >= REALTIME_FILES and "res_pgsql.conf" not in live
    before = {(s.name, s.get("type")) for s in sections(files["pjsip.conf"])}
    after = {(s.name, s.get("type")) for s in sections(live["pjsip.conf"])}
    rows = row_changes(None, live["wildix-realtime.conf"]).write
    kinds = {"ps_endpoints": "endpoint", "ps_auths": "auth", "ps_aors": "aor"}
    moved = {(key, kinds[table]) for table, key in rows if table in kinds}
    assert moved and before - after == moved and after < before
    assert "101 =>" in files["voicemail.conf"] and "101 =>" not in live["voicemail.conf"]
    assert rows[("voicemail", "101@default")]["mailbox"] == "101"
    # the same password the file mode gave the phone
    auth = next(s for s in sections(files["pjsip.conf"]) if s.name == "101-auth")
    assert rows[("ps_auths", "101-auth")]["password"] == auth.get("password")
    assert "res_sorcery_realtime.so" in live["modules.conf"]
    assert "res_sorcery_realtime.so" not in files["modules.conf"]


def test_postgresql_renders_its_account_with_a_kept_secret(tmp_path: Path) -> None:
    vault = MemoryVault()
    live = rendered(realtime(load_site(EXAMPLE), RealtimeEngine.POSTGRESQL), tmp_path, vault)
    assert "res_config_sqlite3.conf" not in live
    assert f"dbpass = {vault.get_secret('realtime:asterisk')}" in live["res_pgsql.conf"]
    assert "pgsql,asterisk,ps_auths" in live["extconfig.conf"]


def test_rows_follow_any_two_versions_idempotently(tmp_path: Path) -> None:
    site, vault = realtime(load_site(EXAMPLE)), MemoryVault()
    one = rendered(site, tmp_path / "one", vault)["wildix-realtime.conf"]
    users = [u.model_copy(update={"sip_password": "Changed-Pass-123!"})
             if u.extension == "101" else u for u in site.users if u.extension != "102"]
    two = rendered(site.model_copy(update={"users": users}), tmp_path / "two",
                   vault)["wildix-realtime.conf"]
    changes = row_changes(one, two)
    assert ("ps_auths", "101-auth") in changes.write and len(changes.write) == 1
    assert changes.delete == {("ps_endpoints", "102"), ("ps_auths", "102-auth"),
                              ("ps_aors", "102"), ("voicemail", "102@default")}
    db = open_realtime(tmp_path, changes.database)
    db.write(row_changes(None, one))
    first = {t: db.rows(t) for t in TABLES}
    for _ in range(2):  # twice: a killed apply's undo may meet the tables either way
        db.write(row_changes(one, two))
    assert db.rows("ps_auths")["101-auth"]["password"] == "Changed-Pass-123!"
    assert "102" not in db.rows("ps_endpoints")
    for _ in range(2):
        db.write(row_changes(two, one))
    assert {t: db.rows(t) for t in TABLES} == first
    assert (db.path.stat().st_mode & 0o777) == 0o640
    # an endpoint keeps every set_var, joined as realtime drivers read several values
    assert first["ps_endpoints"]["101"]["set_var"].count(";") == 2


def asterisk_reads(value: str) -> list[str]:
    """What res_config_pgsql gives Asterisk for one column: the value split on ';', each
    chunk's `^XX` decoded (main/config.c ast_realtime_decode_chunk, Asterisk 22)."""
    import re

    return [re.sub(r"\^([0-9A-Fa-f]{2})", lambda m: chr(int(m[1], 16)), chunk)
            for chunk in value.split(";") if chunk]


def test_values_reach_asterisk_whole_through_postgresql(tmp_path: Path) -> None:
    """A generated SIP password may hold '^' (SPECIALS): written raw, res_config_pgsql
    decoded `^62` into `b` and the user was refused (the CI failure of 190 after the
    PostgreSQL outage). On PostgreSQL each value is escaped as Asterisk decodes it, several
    values still joined by ';'; the SQLite driver decodes nothing, its values stay raw."""
    password = "Ab1^62^5e;x^^zz-9!"
    for engine, expected in ((RealtimeEngine.POSTGRESQL, [password]),
                             (RealtimeEngine.SQLITE, None)):
        site, vault = realtime(load_site(EXAMPLE), engine), MemoryVault()
        users = [u.model_copy(update={"sip_password": "Ab1^62zz-9!x"})
                 if u.extension == "101" else u for u in site.users]
        text = rendered(site.model_copy(update={"users": users}), tmp_path / engine.value,
                        vault)["wildix-realtime.conf"]
        row = row_changes(None, text).write[("ps_auths", "101-auth")]
        endpoint = row_changes(None, text).write[("ps_endpoints", "101")]
        if expected is None:
            assert row["password"] == "Ab1^62zz-9!x"
            continue
        assert asterisk_reads(row["password"]) == ["Ab1^62zz-9!x"]
        assert len(asterisk_reads(endpoint["set_var"])) == 3  # still several values
    from wildix_ast.store.realtime_tables import encode_chunk

    assert asterisk_reads(encode_chunk(password)) == [password]


def test_bad_rows_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ApplyError, match="unknown realtime table"):
        row_changes(None, "[database]\nengine = sqlite\n\n[x]\ntable = users\nid = 1\n")
    with pytest.raises(ApplyError, match="not a column name"):
        row_changes(None, "[x]\ntable = ps_auths\nbad column\" = 1\n")
    with pytest.raises(ApplyError, match="not a file name"):
        open_realtime(tmp_path, {"engine": "sqlite", "dbfile": "../store.sqlite3"})
    assert not SqliteRealtime(tmp_path / "none.sqlite3").rows("ps_auths")


def test_the_plan_masks_the_rows_passwords(tmp_path: Path) -> None:
    site, vault = realtime(load_site(EXAMPLE)), MemoryVault()
    etc = tmp_path / "etc"
    etc.mkdir()
    one = rendered(site, tmp_path / "one", vault)
    ConfigTarget(etc).install(ConfigTarget(etc).plan(one))
    assert SqliteRealtime(etc / "wildix-realtime.sqlite3").rows("ps_auths")  # install wrote
    users = [u.model_copy(update={"sip_password": "Changed-Pass-123!"})
             if u.extension == "101" else u for u in site.users]
    two = rendered(site.model_copy(update={"users": users}), tmp_path / "two", vault)
    plan = ConfigTarget(etc).plan(two)
    assert [c.name for c in plan.touched] == ["wildix-realtime.conf"]
    assert plan.modules_to_reload() == [] and plan.restart_reasons() == []
    diff = plan.diff()
    assert "Changed-Pass-123!" not in diff and "********" in diff


def _whole_row_changes(old: str | None, new: str | None) -> RowChanges:
    """`row_changes` as it was: both texts' every section compared."""
    from wildix_ast.store.realtime_tables import _blocks, _columns

    before, after = _blocks(old), _blocks(new)
    changes = RowChanges(database=_columns(after.get(("", "database"), "")
                                           or before.get(("", "database"), "")))
    encoded = changes.database.get("engine") == "postgresql"
    for key, body in after.items():
        if key[0] and before.get(key) != body:
            changes.write[key] = _columns(body, encoded=encoded)
    changes.delete = {key for key in before if key[0] and key not in after}
    return changes


DATABASES = st.sampled_from(["[database]\nengine = sqlite\ndbfile = a.sqlite3\n",
                             "[database]\nengine = postgresql\nhost = db\n"])
ROW_SECTIONS = st.sampled_from([
    "[100]\ntable = ps_endpoints\ncontext = a\n",
    "[100]\ntable = ps_endpoints\ncontext = b\n",
    "[100]\ntable = ps_aors\nmax_contacts = 1\n",
    "[101]\ntable = ps_endpoints\ncontext = a\nset_var = X=1\nset_var = Y=2\n",
    "[101-auth]\ntable = ps_auths\npassword = p^;1\n",
    "[101@default]\ntable = voicemail\nfullname = A\n",
    "[101@default]\ntable = voicemail\nfullname = B\n",
])


def _row_key(section: str) -> str:
    """A row's table and key (its header and first line): one row per key in a file."""
    return "\n".join(section.split("\n")[:2])


@settings(max_examples=examples(300), deadline=None)
@given(old=st.lists(ROW_SECTIONS, max_size=12, unique_by=_row_key),
       new=st.lists(ROW_SECTIONS, max_size=12, unique_by=_row_key),
       databases=st.tuples(DATABASES, DATABASES), trailing=st.booleans())
def test_row_changes_of_the_changed_part_are_those_of_the_whole_texts(
        old: list[str], new: list[str], databases: tuple[str, str], trailing: bool) -> None:
    """Only the part between the texts' common head and tail is cut into rows; the rows
    to write and delete are those a comparison of every row finds."""
    end = "\n" if trailing else ""
    old_text = "\n".join(["; Generated\n", databases[0], *old]) + end
    new_text = "\n".join(["; Generated\n", databases[1], *new]) + end
    found, whole = row_changes(old_text, new_text), _whole_row_changes(old_text, new_text)
    assert (found.database, found.write, found.delete) == \
        (whole.database, whole.write, whole.delete)


def _scan_order(path: Path, table: str, where: str) -> list[str]:
    """The keys in the order res_config_sqlite3's multi-row query gets them (its
    `SELECT * ... WHERE ...` has no ORDER BY)."""
    import sqlite3

    connection = sqlite3.connect(path)
    try:
        return [row[0] for row in connection.execute(
            f'SELECT * FROM "{table}" WHERE {where}')]
    finally:
        connection.close()


def test_rows_reach_asterisk_in_descending_key_order(tmp_path: Path) -> None:
    """Sorcery links a multi-row fetch into a list sorted by id, each insert walking from
    the head: rows in ascending order cost O(n²) (minutes at 100,000 users, at boot).
    Whatever order they are written in, the tables give them in descending order."""
    import sqlite3

    def rows(keys: list[str]) -> str:
        return "[database]\nengine = sqlite\n" + "".join(
            f"[{k}]\ntable = ps_endpoints\nmailboxes = {k}@default\n" for k in keys)

    ascending = [f"{n}" for n in range(200000, 200300)]
    db = SqliteRealtime(tmp_path / "new.sqlite3")
    db.write(row_changes(None, rows(ascending)))
    db.write(row_changes(rows(ascending), rows([*ascending, "150000", "299999"])))
    wanted = sorted([*ascending, "150000", "299999"], reverse=True)
    assert _scan_order(db.path, "ps_endpoints", "mailboxes != ''") == wanted
    assert _scan_order(db.path, "ps_endpoints", "id LIKE '%'") == wanted  # unqualified

    # a file made by an earlier version (a rowid table, rows in the order written) is
    # moved to the descending order, rows whole, by the next write that changes a row
    old = tmp_path / "old.sqlite3"
    connection = sqlite3.connect(old)
    connection.execute('CREATE TABLE "ps_endpoints" ("id" TEXT PRIMARY KEY, "mailboxes" TEXT)')
    connection.executemany('INSERT INTO "ps_endpoints" VALUES (?, ?)',
                           [(k, f"{k}@default") for k in ascending])
    connection.commit()
    connection.close()
    assert _scan_order(old, "ps_endpoints", "mailboxes != ''") == ascending
    SqliteRealtime(old).write(row_changes(rows(ascending[:-1]), rows(ascending)))
    assert _scan_order(old, "ps_endpoints", "mailboxes != ''") == ascending[::-1]
    assert SqliteRealtime(old).rows("ps_endpoints")["200007"] == {"mailboxes": "200007@default"}
