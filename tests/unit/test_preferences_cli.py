"""`wildix-ast user set|show` as a person runs them (a process): state, errors, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.cli_run import assert_no_traceback, run

from wildix_ast.errors import SettingsError
from wildix_ast.model.preferences import Preferences, edit
from wildix_ast.store import open_store

pytestmark = pytest.mark.slow  # runs the CLI as processes

SITE = 'users:\n  - {name: Ann, extension: "101"}\n  - {name: Ben, extension: "102"}\n'


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "site.yaml").write_text(SITE)
    env = {"WILDIX_AST_DB": str(tmp_path / "store.sqlite3")}
    assert run("import", str(tmp_path / "site.yaml"), env=env).returncode == 0
    return env


def test_edit_assignments() -> None:
    changed = edit(Preferences(), ["external.reject=on", "external.forward_busy=VOICEMAIL",
                                   "blacklist+=+33611,+33612", "dnd=yes", "hotline.number=103",
                                   "internal.call_timeout=20"])
    assert changed.external.reject and changed.external.forward_busy == "VOICEMAIL"
    assert changed.blacklist == ["+33611", "+33612"] and changed.dnd
    assert changed.hotline is not None and changed.hotline.number == "103"
    assert changed.internal.call_timeout == 20
    back = edit(changed, ["blacklist-=+33611", "external.reject=", "hotline="])
    assert back.blacklist == ["+33612"] and not back.external.reject and back.hotline is None
    assert edit(back, ["blacklist=+1234,+5678"]).blacklist == ["+1234", "+5678"]


@pytest.mark.parametrize(("assignment", "where", "message"), [
    ("external.rejects=1", "external.rejects", "unknown setting"),
    ("dnd+=1", "dnd", "+= works on lists"),
    ("external.call_timeout=abc", "external.call_timeout", "valid integer"),
    ("blacklist-=+339", "blacklist", "+339 is not in the blacklist"),
    ("nonsense", "nonsense", "write KEY=VALUE"),
    ("external.forward_busy=1,2", "external.forward_busy", "not a valid forward destination"),
])
def test_edit_errors_name_the_field(assignment: str, where: str, message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        edit(Preferences(), [assignment])
    assert any(p.location == where and message in p.message for p in caught.value.problems), \
        caught.value.problems


def test_set_then_show(env: dict[str, str]) -> None:
    done = run("user", "set", "102", "external.reject=on", "blacklist+=+33699000001",
               "dnd=on", env=env)
    assert done.returncode == 0, done.stderr
    assert "preferences of 102 changed" in done.stdout
    shown = run("user", "show", "102", "--json", env=env)
    assert shown.returncode == 0
    data = json.loads(shown.stdout)
    assert data["ok"] and data["preferences"]["external"]["reject"] is True
    assert data["preferences"]["blacklist"] == ["+33699000001"]
    assert data["preferences"]["dnd"] is True
    exported = run("export", env=env)
    assert "blacklist:" in exported.stdout and "reject: true" in exported.stdout


def test_errors_have_exit_codes_and_change_nothing(env: dict[str, str]) -> None:
    bad = run("user", "set", "102", "external.forward_busy=1,2", "internal.call_timeout=0",
              env=env)
    assert bad.returncode == 2
    assert_no_traceback(bad)
    assert "external.forward_busy" in bad.stderr and "internal.call_timeout" in bad.stderr
    loop = run("user", "set", "102", "internal.forward_always=102", "--json", env=env)
    assert loop.returncode == 2
    error = json.loads(loop.stdout)["error"]
    assert error["problems"][0]["location"] == "internal.forward_always"
    unknown = run("user", "set", "999", "dnd=on", env=env)
    assert unknown.returncode == 1 and "no user has extension 999" in unknown.stderr
    assert run("user", "show", "999", env=env).returncode == 1
    with open_store(env["WILDIX_AST_DB"]) as store:
        assert store.preferences_of("102") == Preferences()
