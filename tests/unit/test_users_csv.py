"""`wildix-ast users export|import` (CSV) as a person runs them: the round trip gives exactly
the edited changes, a bad row is reported with its line and nothing is imported."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from support.cli_run import assert_no_traceback, run

from wildix_ast.errors import SettingsError
from wildix_ast.model.users_csv import COLUMNS, parse_users_csv
from wildix_ast.store import open_store

pytestmark = pytest.mark.slow  # runs the CLI as processes

SITE = """\
groups: [{name: default}, {name: sales}]
users:
  - {name: Ann Martin, extension: "101", email: ann@example.com, login: ann,
     sip_password: "Sip#0000101xY", preferences: {dnd: true}}
  - {name: Ben, extension: "102", mobile: "+33611223344", department: R&D}
  - {name: "@Cleo", extension: "103", type: admin, group: sales}
  - {name: Dan, extension: "104", office_did: "+33144556677", language: fr}
"""


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "site.yaml").write_text(SITE)
    env = {"WILDIX_AST_DB": str(tmp_path / "store.sqlite3")}
    done = run("import", str(tmp_path / "site.yaml"), env=env)
    assert done.returncode == 0, done.stderr
    return env


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _write(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def _stored(env: dict[str, str]) -> dict[str, dict[str, object]]:
    with open_store(env["WILDIX_AST_DB"]) as store:
        return {u.extension: u.model_dump() for u in store.export_site().users}


def test_round_trip_gives_exactly_the_edited_changes(env: dict[str, str],
                                                      tmp_path: Path) -> None:
    exported = run("users", "export", env=env)
    assert exported.returncode == 0, exported.stderr
    rows = _rows(exported.stdout)
    assert [r["extension"] for r in rows] == ["101", "102", "103", "104"]
    assert rows[2]["name"] == "'@Cleo"  # a spreadsheet would run it as a formula
    assert "Sip#" not in exported.stdout  # no secrets in the file
    before = _stored(env)

    # the unedited file changes nothing
    _write(tmp_path / "same.csv", rows)
    same = run("users", "import", str(tmp_path / "same.csv"), "--json", env=env)
    assert same.returncode == 0, same.stderr
    assert json.loads(same.stdout)["changed"] == []
    assert _stored(env) == before

    rows[1]["email"] = "ben@example.com"     # a field set
    rows[3]["language"] = ""                 # a field cleared
    rows.append({**dict.fromkeys(COLUMNS, ""), "name": "Eva", "extension": "105",
                 "group": "sales"})          # a user added
    _write(tmp_path / "edited.csv", rows)
    done = run("users", "import", str(tmp_path / "edited.csv"), "--json", env=env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["added"], sorted(report["changed"]), report["removed"]) == \
        (["105"], ["102", "104"], [])
    after = _stored(env)
    assert after["102"] == {**before["102"], "email": "ben@example.com"}
    assert after["104"] == {**before["104"], "language": None}
    assert after["105"]["name"] == "Eva" and after["105"]["group"] == "sales"
    # untouched users keep everything, the fields the CSV does not carry included
    for extension in ("101", "103"):
        assert after[extension] == before[extension]
    assert after["101"]["sip_password"] == "Sip#0000101xY"
    assert after["101"]["preferences"]["dnd"] is True
    assert after["103"]["name"] == "@Cleo"


def test_bad_row_is_reported_with_its_line_and_nothing_is_imported(
        env: dict[str, str], tmp_path: Path) -> None:
    rows = _rows(run("users", "export", env=env).stdout)
    rows[0]["name"] = "Ann Changed"          # line 2: valid, yet must not be written
    rows.append({**dict.fromkeys(COLUMNS, ""), "name": "Eva", "extension": "105"})
    rows.append({**dict.fromkeys(COLUMNS, ""), "name": "Fox", "extension": "106",
                 "email": "not-an-email"})  # line 7
    rows.append({**dict.fromkeys(COLUMNS, ""), "name": "Gil", "extension": "107",
                 "email": "ann@example.com"})  # line 8: Ann's email (unique)
    rows.append({**dict.fromkeys(COLUMNS, ""), "name": "Hal", "extension": "108",
                 "group": "nosuchgroup"})  # line 9
    _write(tmp_path / "users.csv", rows)
    before = _stored(env)
    with open_store(env["WILDIX_AST_DB"]) as store:
        revision = store.revision()
    done = run("users", "import", str(tmp_path / "users.csv"), env=env)
    assert_no_traceback(done)
    assert done.returncode == SettingsError.exit_code
    assert "users.csv line 7: email: 'not-an-email' is not a valid email address" \
        in done.stderr
    assert "nothing was imported" in done.stderr
    # the cross-row rules of the settings file too, at their own line
    assert "users.csv line 8" in done.stderr and "users.csv line 9" in done.stderr
    assert _stored(env) == before
    with open_store(env["WILDIX_AST_DB"]) as store:
        assert store.revision() == revision


def test_dry_run_writes_nothing(env: dict[str, str], tmp_path: Path) -> None:
    rows = _rows(run("users", "export", env=env).stdout)
    rows[0]["name"] = "Ann Changed"
    _write(tmp_path / "users.csv", rows)
    before = _stored(env)
    done = run("users", "import", str(tmp_path / "users.csv"), "--dry-run", env=env)
    assert done.returncode == 0, done.stderr
    assert "change" in done.stdout and "name" in done.stdout and "nothing written" in done.stdout
    assert _stored(env) == before


@pytest.mark.parametrize(("text", "location", "message"), [
    ("name,extension,colour\nA,101,red\n", "users.csv line 1", "unknown column 'colour'"),
    ("name,email\nA,a@example.com\n", "users.csv line 1", "missing column 'extension'"),
    ("name,extension\nA,101\nB\n", "users.csv line 3", "1 cells, the header has 2"),
    ('name,extension\n"A,101\n', "users.csv line 2", "unexpected end of data"),
])
def test_file_shape_problems_are_located(text: str, location: str, message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        parse_users_csv(text, "users.csv")
    assert any(p.location == location and message in p.message
               for p in caught.value.problems), caught.value.problems


def test_quoted_cells_keep_their_line_numbers() -> None:
    rows = parse_users_csv('name,extension,department\n"A",101,"two\nlines"\nB,102,\n',
                           "users.csv")
    assert [r.where for r in rows] == ["users.csv line 2", "users.csv line 4"]


def test_an_admin_cannot_edit_another_admin(env: dict[str, str], tmp_path: Path) -> None:
    """The seed's rule: 103 (@Cleo) is an admin; acting as 103, editing an ordinary user
    works, editing admin 105 or making an admin does not, and nothing is written."""
    rows = _rows(run("users", "export", env=env).stdout)
    rows.append({**dict.fromkeys(COLUMNS, ""), "name": "Other Admin", "extension": "105",
                 "type": "admin"})
    _write(tmp_path / "with-admin.csv", rows)
    done = run("users", "import", str(tmp_path / "with-admin.csv"), env=env)  # super admin
    assert done.returncode == 0, done.stderr

    rows[1]["department"] = "Research"   # line 3: an ordinary user: allowed
    rows[4]["name"] = "Renamed Admin"    # line 6: another admin: refused
    rows[3]["type"] = "admin"            # line 5: making an admin: refused
    _write(tmp_path / "edit.csv", rows)
    before = _stored(env)
    done = run("users", "import", str(tmp_path / "edit.csv"), "--as", "103", env=env)
    assert_no_traceback(done)
    assert done.returncode == SettingsError.exit_code
    assert "edit.csv line 6: an administrator cannot edit another administrator" \
        in done.stderr
    assert "edit.csv line 5: an administrator cannot make another administrator" \
        in done.stderr
    assert _stored(env) == before

    rows[4]["name"], rows[3]["type"] = "Other Admin", "user"
    _write(tmp_path / "edit.csv", rows)
    done = run("users", "import", str(tmp_path / "edit.csv"), "--as", "103", env=env)
    assert done.returncode == 0, done.stderr
    assert _stored(env)["102"]["department"] == "Research"

    # preferences: the same rule, and a plain user edits only their own
    refused = run("user", "set", "105", "dnd=on", "--as", "103", env=env)
    assert refused.returncode == 1 and "cannot edit another administrator" in refused.stderr
    assert run("user", "set", "102", "dnd=on", "--as", "103", env=env).returncode == 0
    assert run("user", "set", "102", "dnd=off", "--as", "102", env=env).returncode == 0
    refused = run("user", "set", "101", "dnd=on", "--as", "102", env=env)
    assert refused.returncode == 1 and "only their own" in refused.stderr


def test_user_delete_follows_the_admin_rule(env: dict[str, str], tmp_path: Path) -> None:
    """`user delete --as`: an admin removes an ordinary user, never another admin; a plain
    user removes nobody; nothing is removed when refused. The directory sync never makes
    an admin: a user's type is not one of the fields an attribute can fill."""
    from pydantic import ValidationError

    from wildix_ast.model.directory import AttributeMap

    (tmp_path / "site.yaml").write_text(
        SITE + '  - {name: Eve, extension: "105", type: admin}\n')
    assert run("import", str(tmp_path / "site.yaml"), env=env).returncode == 0
    refused = run("user", "delete", "105", "--as", "103", env=env)
    assert_no_traceback(refused)
    assert refused.returncode == SettingsError.exit_code
    assert "user 105: an administrator cannot remove another administrator" in refused.stderr
    assert "nothing was removed" in refused.stderr
    refused = run("user", "delete", "104", "--as", "102", env=env)
    assert refused.returncode == SettingsError.exit_code
    assert "102 is not an administrator" in refused.stderr
    assert set(_stored(env)) == {"101", "102", "103", "104", "105"}
    done = run("user", "delete", "104", "--as", "103", env=env)
    assert done.returncode == 0, done.stderr
    assert set(_stored(env)) == {"101", "102", "103", "105"}
    with pytest.raises(ValidationError):
        AttributeMap.model_validate({"type": "employeeType"})


def test_new_users_get_a_welcome_mail_once_through_the_queue(env: dict[str, str],
                                                             tmp_path: Path) -> None:
    """A CSV import that creates users queues their welcome mail (a one-time link, never a
    password) in the PBX's mail queue; without a collaboration URL it says so and queues
    none; a user without email gets none."""
    exported = _rows(run("users", "export", env=env).stdout)
    new = dict(exported[0], name="Eve", extension="105", email="eve@example.com",
               login="eve", office_did="", fax_did="")
    silent = dict(new, name="Fay", extension="106", email="", login="fay")
    _write(tmp_path / "new.csv", [*exported, new, silent])
    spool = tmp_path / "spool"
    without_url = {**env, "WILDIX_AST_MAIL_SPOOL": str(spool)}
    done = run("users", "import", str(tmp_path / "new.csv"), "--json", env=without_url)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["welcome_mails"] == 0
    assert "WILDIX_AST_COLLABORATION_URL is not set" in done.stderr
    assert not list(spool.rglob("*.eml"))
    # Eve again as a new user, this time with the URL: one mail, to her only.
    _write(tmp_path / "again.csv", [*exported, dict(new, extension="107", login="eve2",
                                                    email="eve2@example.com")])
    with_url = {**without_url, "WILDIX_AST_COLLABORATION_URL": "https://pbx.example.com"}
    done = run("users", "import", str(tmp_path / "again.csv"), "--json", env=with_url)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["welcome_mails"] == 1
    queued = run("mail", "queue", "--json", env=with_url)
    assert queued.returncode == 0, queued.stderr
    mails = json.loads(queued.stdout)["mails"]
    assert [(m["to"], m["kind"]) for m in mails] == [("eve2@example.com", "welcome")]
    assert "pbx.example.com/password-setup?" in _mail_text(spool)
    # The same file again creates nobody and queues nothing more.
    done = run("users", "import", str(tmp_path / "again.csv"), "--json", env=with_url)
    assert json.loads(done.stdout)["welcome_mails"] == 0
    assert len(json.loads(run("mail", "queue", "--json", env=with_url).stdout)["mails"]) == 1


def _mail_text(spool: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in spool.rglob("*") if p.is_file())


def test_bare_users_lists_the_table_with_status(env: dict[str, str], tmp_path: Path) -> None:
    """`wildix-ast users` (no verb) is the WMS Users table, like `users list`; with no
    Asterisk to ask, the status says unknown and why, it does not fail."""
    env = {**env, "WILDIX_AST_LAB_STATE": str(tmp_path / "labs")}
    table = run("users", "--lab", "absent", env=env)
    assert table.returncode == 0, table.stderr
    assert_no_traceback(table)
    lines = table.stdout.splitlines()
    assert lines[0].strip() == "4 users"
    row = next(line for line in lines if " 103 " in line)
    assert "@Cleo" in row and "admin" in row and "unknown" in row
    assert "status unknown: lab 'absent' is not running" in table.stdout
    as_json = run("users", "--json", "--lab", "absent", env=env)
    assert as_json.returncode == 0, as_json.stderr
    listed = json.loads(as_json.stdout)
    assert [u["extension"] for u in listed["users"]] == ["101", "102", "103", "104"]
    assert {u["status"] for u in listed["users"]} == {"unknown"}
    assert listed == json.loads(run("users", "list", "--json", "--lab", "absent",
                                    env=env).stdout)
