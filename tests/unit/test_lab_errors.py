"""A lab that cannot start says why in one line, through the real CLI entry point."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from wildix_ast.cli import main as cli
from wildix_ast.errors import LabError
from wildix_ast.lab.instance import Lab


def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
            *args: str) -> tuple[int, str]:
    monkeypatch.setattr("sys.argv", ["wildix-ast", *args])
    with pytest.raises(SystemExit) as stopped:
        cli.main()
    code = stopped.value.code
    return code if isinstance(code, int) else 1, capsys.readouterr().err


def test_not_root_is_one_message(monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("WILDIX_AST_CACHE", str(tmp_path / "cache"))
    code, err = run_cli(monkeypatch, capsys, "lab", "build")
    assert code == LabError.exit_code
    assert "needs root" in err and "Traceback" not in err


def test_lab_without_configuration_refuses_to_start(tmp_path: Path) -> None:
    lab = Lab("empty", tmp_path)
    with pytest.raises(LabError, match=r"asterisk\.conf"):
        lab.start(timeout=5)
    assert not lab.is_running()


def test_commands_on_a_stopped_lab_say_so(monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str],
                                          tmp_path: Path) -> None:
    monkeypatch.setenv("WILDIX_AST_LAB_STATE", str(tmp_path))
    monkeypatch.setenv("WILDIX_AST_DB", str(tmp_path / "store.sqlite3"))
    code, err = run_cli(monkeypatch, capsys, "lab", "call", "101", "102")
    assert code == 1 and "is not running" in err and "lab up" in err


def test_previous_builds_are_pruned_but_not_the_ones_in_use(tmp_path: Path) -> None:
    from wildix_ast.lab.rootfs import ASTERISK_BINARY, MARKER, prune_other_builds

    def fake_build(name: str) -> Path:
        root = tmp_path / name
        (root / ASTERISK_BINARY.relative_to("/")).parent.mkdir(parents=True)
        (root / ASTERISK_BINARY.relative_to("/")).write_text("")
        (root / MARKER).write_text("{}")
        return root

    keep, old = fake_build("aaaaaaaaaaaa"), fake_build("bbbbbbbbbbbb")
    (tmp_path / "bbbbbbbbbbbb.debootstrap.log").write_text("log")
    unfinished = tmp_path / "cccccccccccc"
    unfinished.mkdir()  # no marker: maybe another run's build in progress
    building = tmp_path / ".dddddddddddd.building-x"
    building.mkdir()
    assert prune_other_builds(keep) == [old]
    assert keep.exists() and unfinished.exists() and building.exists()
    assert not old.exists() and not (tmp_path / "bbbbbbbbbbbb.debootstrap.log").exists()
