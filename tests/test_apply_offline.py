"""`apply --offline` (a host whose Asterisk is stopped or not ours yet) through the real
command: files written atomically with generations, a truthful `changed`, owner-only state."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from test_cli import EXAMPLE, assert_no_traceback, run


def test_offline_apply_twice_then_history(tmp_path: Path) -> None:
    env = {"WILDIX_AST_DB": str(tmp_path / "store.sqlite3")}
    etc = tmp_path / "etc"
    first = run("apply", str(EXAMPLE), "--etc", str(etc), "--offline", "--json", env=env)
    assert first.returncode == 0, first.stderr
    assert_no_traceback(first)
    data = json.loads(first.stdout)
    assert data["ok"] is True and data["offline"] is True and data["changed"] is True
    assert data["generation"] == 1 and data["verified"] is None
    assert {"asterisk.conf: asterisk.conf is read only at startup"} <= set(
        data["restart_needed"])
    assert (etc / "pjsip.conf").is_file()
    assert stat.S_IMODE((etc / "pjsip.conf").stat().st_mode) == 0o640
    assert stat.S_IMODE((etc / ".wildix-ast").stat().st_mode) == 0o700

    second = json.loads(run("apply", str(EXAMPLE), "--etc", str(etc), "--offline", "--json",
                            env=env).stdout)
    assert second["changed"] is False and second["generation"] is None

    history = json.loads(run("history", "--etc", str(etc), "--json").stdout)
    assert [g["number"] for g in history["generations"]] == [1]
    assert history["generations"][0]["kind"] == "install"
    snapshot = etc / ".wildix-ast" / "generations" / "1" / "site.json"
    assert stat.S_IMODE(snapshot.stat().st_mode) == 0o600
    # generated passwords stay in the store's vault, never in a snapshot
    assert "sip_password" not in snapshot.read_text(encoding="utf-8")


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    env = {"WILDIX_AST_DB": str(tmp_path / "store.sqlite3")}
    etc = tmp_path / "etc"
    etc.mkdir()
    result = run("apply", str(EXAMPLE), "--etc", str(etc), "--dry-run", "--json", env=env)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["dry_run"] is True and data["changed"] is True
    assert "+[101]" in data["diff"] and "password = ********" in data["diff"]
    assert list(etc.iterdir()) == []


def test_rollback_without_an_earlier_generation_is_one_message(tmp_path: Path) -> None:
    env = {"WILDIX_AST_DB": str(tmp_path / "store.sqlite3")}
    etc = tmp_path / "etc"
    run("apply", str(EXAMPLE), "--etc", str(etc), "--offline", env=env)
    result = run("rollback", "--etc", str(etc), "--json", env=env)
    assert result.returncode == 6
    assert_no_traceback(result)
    error = json.loads(result.stdout)["error"]
    assert "no earlier generation to roll back to" in error["message"]
