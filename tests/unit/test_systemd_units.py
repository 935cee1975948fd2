"""The systemd unit templates render and pass `systemd-analyze verify`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jinja2
import pytest

UNITS = Path(__file__).resolve().parents[2] / "deploy" / "systemd"


def render(name: str, **variables: object) -> str:
    environment = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return environment.from_string((UNITS / name).read_text(encoding="utf-8")).render(
        **variables)


@pytest.mark.parametrize("name", ["wildix-ast-agi.service.j2", "wildix-ast-runtime.service.j2",
                                  "wildix-ast-cdr.service.j2",
                                  "wildix-ast-mail.service.j2",
                                  "wildix-ast-provisioning.service.j2",
                                  "wildix-ast-expiry.service.j2"])
def test_unit_verifies(name: str, tmp_path: Path) -> None:
    venv = str(Path(sys.executable).parent.parent)
    text = render(name, wildix_ast_venv=venv, wildix_ast_db="/var/lib/wildix-ast/db.sqlite3",
                  wildix_ast_node_name="b",
                  wildix_ast_never_ban=["192.168.1.0/24", "203.0.113.10"],
                  wildix_ast_fastagi={"host": "127.0.0.1", "port": 4573})
    unit = tmp_path / name.removesuffix(".j2")
    unit.write_text(text, encoding="utf-8")
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)],
                          capture_output=True, text=True, timeout=60, check=False)
    problems = [line for line in done.stderr.splitlines()
                if str(unit) in line or "Unknown" in line or "Invalid" in line]
    assert done.returncode == 0 and not problems, done.stderr
    assert "Type=notify" in text and "WatchdogSec=" in text
    assert f"ExecStart={venv}/bin/wildix-ast " in text


def test_runtime_unit_never_bans_the_given_networks() -> None:
    text = render("wildix-ast-runtime.service.j2", wildix_ast_venv="/opt/v", wildix_ast_db="x",
                  wildix_ast_never_ban=["192.168.1.0/24"])
    assert "runtime serve --state-dir /var/lib/wildix-ast/runtime --never-ban 192.168.1.0/24\n" \
        in text


def test_agi_unit_listens_where_the_site_says_as_its_own_user() -> None:
    text = render("wildix-ast-agi.service.j2", wildix_ast_venv="/opt/v", wildix_ast_db="x",
                  wildix_ast_fastagi={"host": "127.0.0.1", "port": 4599})
    assert "agi serve --host 127.0.0.1 --port 4599\n" in text
    assert "User=wildix-ast-agi\n" in text and "Group=wildix-ast\n" in text
    # the store's folder writable (WAL files, mail spool), nothing else; no capability
    assert "ReadWritePaths=/var/lib/wildix-ast\n" in text and "ReadOnlyPaths" not in text
    assert "CapabilityBoundingSet=\n" in text
    assert "Environment=WILDIX_AST_MAIL_SPOOL=/var/lib/wildix-ast/mail-spool\n" in text


def test_expiry_unit_follows_its_node_unprivileged_with_no_secret_of_its_own() -> None:
    """The follower: its own user and group, the group asterisk.conf gives the console to,
    the asterisk group to read res_pgsql.conf; no store, no vault, no capability."""
    text = render("wildix-ast-expiry.service.j2", wildix_ast_venv="/opt/v",
                  wildix_ast_node_name="b")
    assert ("ExecStart=/opt/v/bin/wildix-ast realtime follow --node b --etc-dir /etc/asterisk "
            "--state /var/lib/wildix-ast-expiry/b.json\n") in text
    assert "User=wildix-ast-expiry\n" in text and "Group=wildix-ast-expiry\n" in text
    assert "SupplementaryGroups=wildix-ast-console asterisk\n" in text
    assert "CapabilityBoundingSet=\n" in text
    assert "WILDIX_AST_DB" not in text and "ReadWritePaths" not in text


def test_provisioning_unit_gets_its_key_from_systemd_and_bans_through_its_group() -> None:
    text = render("wildix-ast-provisioning.service.j2", wildix_ast_venv="/opt/v",
                  wildix_ast_db="x", wildix_ast_never_ban=["192.168.1.0/24"])
    assert "User=wildix-ast-provisioning\n" in text and "Group=wildix-ast\n" in text
    assert "SupplementaryGroups=wildix-ast-bans\n" in text
    # the key stays root's; the service reads systemd's private copy
    assert "LoadCredential=provisioning.key:/etc/wildix-ast/provisioning.key\n" in text
    assert "provisioning serve --certificate ${CREDENTIALS_DIRECTORY}/provisioning.crt " \
        "--private-key ${CREDENTIALS_DIRECTORY}/provisioning.key --never-ban 192.168.1.0/24\n" \
        in text
    assert "ReadWritePaths=/var/lib/wildix-ast\n" in text and "CapabilityBoundingSet=\n" in text
    assert "Environment=WILDIX_AST_RUNTIME_STATE=/var/lib/wildix-ast/runtime\n" in text
    # worker processes: one per CPU unless the role says; their shared counts in its /tmp
    assert "Environment=WILDIX_AST_PROVISIONING_WORKERS=0\n" in text
    assert "PrivateTmp=yes\n" in text and "NotifyAccess=main\n" in text
    assert "Environment=WILDIX_AST_PROVISIONING_WORKERS=3\n" in render(
        "wildix-ast-provisioning.service.j2", wildix_ast_venv="/opt/v", wildix_ast_db="x",
        wildix_ast_provisioning_workers=3)
