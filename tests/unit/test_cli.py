"""The command line as a person meets it: exit codes and messages, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.cli_run import EXAMPLE, REPO, assert_no_traceback, run  # noqa: F401

from wildix_ast.model.site import Site

pytestmark = pytest.mark.slow  # runs the CLI as processes


def test_help_lists_every_verb_with_a_description() -> None:
    result = run("--help")
    assert result.returncode == 0
    for verb in ("validate", "import", "export", "render", "apply", "lab", "test-call",
                 "password"):
        line = next((ln for ln in result.stdout.splitlines() if f" {verb} " in ln), "")
        assert line.split(verb, 1)[1].strip(" │"), f"{verb} has no description"


def test_validate_reports_each_problem_with_exit_2(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text('users:\n  - {name: A, extension: "1x2", email: a@x.io}\n'
                    '  - {name: B, extension: "103", email: a@x.io, group: nope}\n')
    result = run("validate", str(site))
    assert result.returncode == 2
    assert_no_traceback(result)
    assert "users[0].extension (site.yaml line 2): '1x2' is not a valid extension" in result.stderr
    assert "users[1].group" in result.stderr


@pytest.mark.parametrize("args", [("validate", "/nonexistent/site.yaml"),
                                  ("validate", "/"),
                                  ("import", "/nonexistent/site.yaml")])
def test_unreadable_input_is_a_message(args: tuple[str, ...], tmp_path: Path) -> None:
    result = run(*args, env={"WILDIX_AST_DB": str(tmp_path / "store.sqlite3")})
    assert result.returncode == 2
    assert_no_traceback(result)
    assert result.stderr.startswith("error:")


def test_bad_cli_argument_is_a_usage_error() -> None:
    result = run("password", "generate", "--length", "3")
    assert result.returncode == 2
    assert_no_traceback(result)


def test_password_generate_and_check() -> None:
    generated = run("password", "generate", "--count", "3")
    assert generated.returncode == 0
    passwords = generated.stdout.split()
    assert len(set(passwords)) == 3
    for password in passwords:
        assert run("password", "check", stdin=password + "\n").returncode == 0
    refused = run("password", "check", stdin="wildix\n")
    assert refused.returncode == 1 and "known default" in refused.stderr


def test_example_site_is_valid() -> None:
    result = run("validate", str(EXAMPLE))
    assert result.returncode == 0, result.stderr


def without_user_passwords(site: Site) -> Site:
    """The site as a person wrote it: generated SIP passwords left out."""
    users = [u.model_copy(update={"sip_password": None}) for u in site.users]
    return site.model_copy(update={"users": users})


def test_store_keeps_the_routing_sections(tmp_path: Path) -> None:
    """Trunks, trunk groups, group call classes and dialplan.general survive the store
    (kept as JSON documents until they get tables), and an export without secrets has no
    trunk secret."""
    from wildix_ast.model.settings_file import load_site

    env = {"WILDIX_AST_DB": str(tmp_path / "store.sqlite3")}
    assert run("import", str(EXAMPLE), env=env).returncode == 0
    exported = run("export", "--with-secrets", env=env)
    again = tmp_path / "again.yaml"
    again.write_text(exported.stdout)
    site, back = load_site(EXAMPLE), load_site(again)
    assert site.trunks and back.trunks == site.trunks
    assert back.trunk_groups == site.trunk_groups and back.groups == site.groups
    assert back.dialplan == site.dialplan
    plain = run("export", env=env).stdout
    assert "Fourni-par-l-operateur-42" not in plain and "trunk_groups" in plain


def test_import_export_round_trip_and_failed_import_keeps_the_store(tmp_path: Path) -> None:
    env = {"WILDIX_AST_DB": str(tmp_path / "store.sqlite3")}
    assert run("import", str(EXAMPLE), env=env).returncode == 0
    exported = run("export", env=env)
    assert exported.returncode == 0
    assert "password" not in exported.stdout and "secret" not in exported.stdout
    with_secrets = run("export", "--with-secrets", env=env)
    assert with_secrets.stdout.count("sip_password") == 5  # the users with a phone
    again = tmp_path / "again.yaml"
    again.write_text(with_secrets.stdout)
    from wildix_ast.model.settings_file import load_site

    assert without_user_passwords(load_site(again)) == load_site(EXAMPLE)

    broken = tmp_path / "broken.yaml"
    broken.write_text(EXAMPLE.read_text().replace('extension: "102"', 'extension: "101"'))
    refused = run("import", str(broken), env=env)
    assert refused.returncode == 2 and "already used by users[0].extension" in refused.stderr
    assert run("export", env=env).stdout == exported.stdout


def test_render_is_deterministic_with_the_store(tmp_path: Path) -> None:
    env = {"WILDIX_AST_DB": str(tmp_path / "store.sqlite3")}
    first, second = tmp_path / "a", tmp_path / "b"
    assert run("render", str(EXAMPLE), "--out", str(first), env=env).returncode == 0
    assert run("render", str(EXAMPLE), "--out", str(second), env=env).returncode == 0
    names = sorted(p.name for p in first.iterdir())
    assert "pjsip.conf" in names and "extensions.conf" in names
    assert all((first / n).read_bytes() == (second / n).read_bytes() for n in names)


def test_validate_json_says_whether_the_site_runs_the_provisioning_server(
        tmp_path: Path) -> None:
    """The Ansible role adds the provisioning server's unit from this answer."""
    site = tmp_path / "site.yaml"
    site.write_text('users:\n  - {name: A, extension: "101"}\n')
    off = json.loads(run("validate", str(site), "--json").stdout)
    assert off["provisioning"]["enabled"] is False
    site.write_text('users:\n  - {name: A, extension: "101"}\n'
                    "provisioning: {address: pbx.example.org, port: 9443}\n")
    on = json.loads(run("validate", str(site), "--json").stdout)
    assert on["provisioning"] == {"enabled": True, "address": "pbx.example.org",
                                  "port": 9443, "https": True}
