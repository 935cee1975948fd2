"""`wildix-ast device ...` as a person runs them: add (the provisioning password shown once),
list (never a credential), assign to a user and line, reset the password (the old one is
gone), and a removed user's phone is unassigned (no orphan assignment)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.cli_run import assert_no_traceback, run

from wildix_ast.errors import SettingsError
from wildix_ast.store import open_store
from wildix_ast.store.devices import credential_hash, credential_matches, provisioning_key

pytestmark = pytest.mark.slow  # runs the CLI as processes

SITE = """users:
  - {name: Ann, extension: "101"}
  - {name: Ben, extension: "102"}
  - {name: Orbit, extension: "700", type: park_orbit}
"""


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "site.yaml").write_text(SITE)
    env = {"WILDIX_AST_DB": str(tmp_path / "store.sqlite3")}
    assert run("import", str(tmp_path / "site.yaml"), env=env).returncode == 0
    return env


def _json(*args: str, env: dict[str, str]) -> dict[str, object]:
    done = run(*args, "--json", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    found: dict[str, object] = json.loads(done.stdout)
    return found


def _secret(env: dict[str, str], mac: str) -> str | None:
    with open_store(env["WILDIX_AST_DB"]) as store:
        return store.get_secret(provisioning_key(mac))


def test_device_life(env: dict[str, str], tmp_path: Path) -> None:
    added = _json("device", "add", "00:15:65:AB:CD:EF", "--vendor", "yealink", "--model",
                  "T54W", "--user", "101", env=env)
    mac = "001565abcdef"
    first = str(added["provisioning_password"])
    # the store keeps only a hash of it (never the text)
    assert added["mac"] == mac and len(first) >= 32
    assert _secret(env, mac) == credential_hash(mac, first)
    assert credential_matches(mac, first, _secret(env, mac))

    listed = run("device", "list", env=env)
    assert listed.returncode == 0 and mac in listed.stdout and "101" in listed.stdout
    assert first not in listed.stdout
    devices = _json("device", "list", env=env)["devices"]
    assert devices == [{"mac": mac, "vendor": "yealink", "model": "T54W",  # type: ignore[comparison-overlap]
                        "extension": "101", "line": 1, "ip": None, "firmware": None,
                        "last_seen": None, "status": "unknown"}]  # no Asterisk here
    assert first not in json.dumps(devices)

    _json("device", "assign", "00-15-65-ab-cd-ef", "102", "--line", "2", env=env)
    again = str(_json("device", "reset-password", mac, env=env)["provisioning_password"])
    assert again != first and _secret(env, mac) == credential_hash(mac, again)
    assert not credential_matches(mac, first, _secret(env, mac))

    # Ben leaves (a settings import without him): his phone is unassigned, nothing dangles
    (tmp_path / "site.yaml").write_text(SITE.replace('  - {name: Ben, extension: "102"}\n',
                                                     ""))
    assert run("import", str(tmp_path / "site.yaml"), env=env).returncode == 0
    (device,) = _json("device", "list", env=env)["devices"]  # type: ignore[misc]
    assert device["extension"] is None

    _json("device", "remove", mac, env=env)
    assert _json("device", "list", env=env)["devices"] == [] and _secret(env, mac) is None


@pytest.mark.parametrize(("args", "code", "message"), [
    (("device", "add", "00:15:65", "--vendor", "yealink"), SettingsError.exit_code,
     "MAC address"),
    (("device", "add", "001565abcdef", "--vendor", "nokia"), SettingsError.exit_code,
     "vendor"),
    (("device", "add", "001565abcdef", "--vendor", "snom", "--user", "199"), 1,
     "no user has extension 199"),
    (("device", "add", "001565abcdef", "--vendor", "snom", "--user", "700"), 1,
     "park orbit"),
    (("device", "assign", "001565abcdef", "101"), 1, "no device 001565abcdef"),
    (("device", "reset-password", "zz"), SettingsError.exit_code, "MAC address"),
])
def test_bad_input(env: dict[str, str], args: tuple[str, ...], code: int,
                   message: str) -> None:
    done = run(*args, env=env)
    assert_no_traceback(done)
    assert done.returncode == code and message in done.stderr, done.stderr


def test_a_mac_is_added_once(env: dict[str, str]) -> None:
    assert run("device", "add", "001565abcdef", "--vendor", "snom", env=env).returncode == 0
    first = _secret(env, "001565abcdef")
    done = run("device", "add", "00:15:65:ab:cd:ef", "--vendor", "snom", env=env)
    assert done.returncode == 1 and "known already" in done.stderr
    assert _secret(env, "001565abcdef") == first
