"""`apply --offline` (a host whose Asterisk is stopped or not ours yet) through the real
command: files written atomically with generations, a truthful `changed`, owner-only state."""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import stat
from pathlib import Path

import pytest
import yaml
from support.cli_run import EXAMPLE, assert_no_traceback, run
from support.sound_fixtures import copy_example_sounds, site_with_sounds, tone

pytestmark = pytest.mark.slow  # runs the CLI as processes


def test_offline_apply_twice_then_history(tmp_path: Path) -> None:
    env = {"WILDIX_AST_DB": str(tmp_path / "store.sqlite3")}
    etc, data_dir = tmp_path / "etc", str(tmp_path / "data")
    first = run("apply", str(EXAMPLE), "--etc", str(etc), "--data", data_dir, "--offline",
                "--json", env=env)
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

    second = json.loads(run("apply", str(EXAMPLE), "--etc", str(etc), "--data", data_dir,
                            "--offline", "--json", env=env).stdout)
    assert second["changed"] is False and second["generation"] is None

    history = json.loads(run("history", "--etc", str(etc), "--json").stdout)
    assert [g["number"] for g in history["generations"]] == [1]
    assert history["generations"][0]["kind"] == "install"
    snapshot = etc / ".wildix-ast" / "generations" / "1" / "site.json"
    assert stat.S_IMODE(snapshot.stat().st_mode) == 0o600
    # generated passwords stay in the store's vault, never in a snapshot
    assert "sip_password" not in snapshot.read_text(encoding="utf-8")


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    """Not even a cache: no compiled templates, no realtime row cache, no password tag key
    (a realtime site, whose render uses the row cache)."""
    cache, key = tmp_path / "cache", tmp_path / "keys" / "password-tag.key"
    env = {"WILDIX_AST_DB": str(tmp_path / "store.sqlite3"), "WILDIX_AST_CACHE": str(cache),
           "WILDIX_AST_PASSWORD_KEY": str(key)}
    site = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    site["system"].setdefault("realtime", {})["mode"] = "realtime"
    site_file = tmp_path / "site.yaml"
    site_file.write_text(yaml.safe_dump(site), encoding="utf-8")
    copy_example_sounds(tmp_path)
    etc = tmp_path / "etc"
    etc.mkdir()
    result = run("apply", str(site_file), "--etc", str(etc), "--data", str(tmp_path / "data"),
                 "--dry-run", "--json", env=env)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["dry_run"] is True and data["changed"] is True
    assert "[101]" in data["diff"] and "********" in data["diff"]
    assert list(etc.iterdir()) == []
    assert not cache.exists() and not key.exists()
    assert not (tmp_path / "store.sqlite3").exists()  # no store made for a plan either
    # the same run for real makes them (the check above could fail)
    real = run("apply", str(site_file), "--etc", str(etc), "--data", str(tmp_path / "data"),
               "--offline", "--json", env=env)
    assert real.returncode == 0, real.stderr
    assert (cache / "jinja").is_dir() and key.is_file()


def _example_with_103(tmp_path: Path) -> Path:
    """The example site with a user 103 added, beside its sound files."""
    site = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    site["users"].append({"name": "Temp 103", "extension": "103"})
    changed = tmp_path / "site-103.yaml"
    changed.write_text(yaml.safe_dump(site, allow_unicode=True), encoding="utf-8")
    copy_example_sounds(tmp_path)
    return changed


def test_a_dry_run_on_an_older_store_plans_on_a_copy_and_migrates_nothing(
        tmp_path: Path) -> None:
    """A store whose schema is older than the code (here taken back one migration) is
    migrated on open by a real run; a dry run plans on a migrated copy in a temporary
    folder and leaves the store's bytes and revision as they were."""
    from alembic import command
    from sqlalchemy import create_engine

    from wildix_ast.store import database
    from wildix_ast.store.schema import SCHEMA_HEAD

    store = tmp_path / "store.sqlite3"
    env = {"WILDIX_AST_DB": str(store)}
    etc, data_dir = tmp_path / "etc", tmp_path / "data"
    common = ("--etc", str(etc), "--data", str(data_dir), "--json")
    assert run("apply", str(EXAMPLE), *common, "--offline", env=env).returncode == 0
    engine = create_engine(f"sqlite:///{store}")
    try:
        with engine.begin() as connection:
            command.downgrade(database._alembic_config(connection), "-1")
    finally:
        engine.dispose()

    def revision() -> str:
        with contextlib.closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True)) as db:
            return str(db.execute("SELECT version_num FROM alembic_version").fetchone()[0])

    older = revision()
    assert older != SCHEMA_HEAD
    changed = _example_with_103(tmp_path)
    before = _fingerprint(store, etc, data_dir)

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    result = run("apply", str(changed), *common, "--dry-run", env={**env, "TMPDIR": str(scratch)})
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["changed"] is True and "[103]" in data["diff"]
    assert _fingerprint(store, etc, data_dir) == before
    assert revision() == older
    assert list(scratch.iterdir()) == []  # the copy is gone with the process
    # the real run migrates it (the check above could fail)
    assert run("apply", str(changed), *common, "--offline", env=env).returncode == 0
    assert revision() == SCHEMA_HEAD


def _fingerprint(store: Path, *folders: Path) -> tuple[dict[str, str], dict[str, int]]:
    """SHA-256 of every file under `folders` and of the store file, and the row count of
    every table of the store."""
    files = {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
             for folder in folders for p in sorted(folder.rglob("*")) if p.is_file()}
    files[str(store)] = hashlib.sha256(store.read_bytes()).hexdigest()
    with contextlib.closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True)) as db:
        tables = [row[0] for row in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")]
        rows = {t: int(db.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0])
                for t in tables}
    return files, rows


def test_dry_run_adding_a_user_keeps_every_file_and_row(tmp_path: Path) -> None:
    """A dry run that must generate secrets for a new user (SIP password, voicemail PIN)
    renders them in memory only: the store, Asterisk's folder and the data folder keep
    every byte and row; the real run then generates and keeps them."""
    store = tmp_path / "store.sqlite3"
    env = {"WILDIX_AST_DB": str(store)}
    etc, data_dir = tmp_path / "etc", tmp_path / "data"
    common = ("--etc", str(etc), "--data", str(data_dir), "--json")
    assert run("apply", str(EXAMPLE), *common, "--offline", env=env).returncode == 0
    changed = _example_with_103(tmp_path)
    before = _fingerprint(store, etc, data_dir)
    assert before[1]["secrets"] > 0

    result = run("apply", str(changed), *common, "--dry-run", env=env)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["dry_run"] is True and "+[103]" in data["diff"]
    assert "+password = ********" in data["diff"]  # the new user's, masked
    assert _fingerprint(store, etc, data_dir) == before

    applied = run("apply", str(changed), *common, "--offline", env=env)
    assert applied.returncode == 0, applied.stderr
    after = _fingerprint(store, etc, data_dir)[1]
    assert after["secrets"] == before[1]["secrets"] + 2  # 103's SIP password and PIN


def test_rollback_without_an_earlier_generation_is_one_message(tmp_path: Path) -> None:
    env = {"WILDIX_AST_DB": str(tmp_path / "store.sqlite3")}
    etc = tmp_path / "etc"
    data = str(tmp_path / "data")
    run("apply", str(EXAMPLE), "--etc", str(etc), "--data", data, "--offline", env=env)
    result = run("rollback", "--etc", str(etc), "--data", data, "--json", env=env)
    assert result.returncode == 6
    assert_no_traceback(result)
    error = json.loads(result.stdout)["error"]
    assert "no earlier generation to roll back to" in error["message"]


def test_generations_keep_the_sound_files_owner_only(tmp_path: Path) -> None:
    """Each offline apply's generation records its sound files by content (the data folder
    keeps them readable for Asterisk, the generation owner-only); an unchanged sound is a
    hard link to the previous generation's copy."""
    site = site_with_sounds(tmp_path / "settings")
    env = {"WILDIX_AST_DB": str(tmp_path / "store.sqlite3")}
    etc, data = tmp_path / "etc", tmp_path / "data"
    command = ("apply", str(site), "--etc", str(etc), "--data", str(data), "--offline",
               "--json")
    assert run(*command, env=env).returncode == 0
    tone(tmp_path / "settings" / "sons" / "welcome-en.mp3", 2.0, 660)  # the English prompt
    second = json.loads(run(*command, env=env).stdout)
    assert second["files"] == []  # only sound files change
    assert {s["path"] for s in second["sounds"]} == {"sounds/en/wildix-ast/accueil.wav",
                                                     "sounds/en/wildix-ast/accueil.wav16"}
    assert second["result"] is None and second["generation"] == 2

    history = json.loads(run("history", "--etc", str(etc), "--json").stdout)["generations"]
    first, newest = history[0]["sounds"], history[1]["sounds"]
    assert set(first) == set(newest) and len(first) == 12 + 8
    changed = {p for p in first if first[p] != newest[p]}
    assert changed == {"sounds/en/wildix-ast/accueil.wav", "sounds/en/wildix-ast/accueil.wav16"}
    kept = etc / ".wildix-ast" / "generations"
    for path, sha in newest.items():
        copy = kept / "2" / "sounds" / sha
        assert copy.read_bytes() == (data / path).read_bytes(), path
        assert stat.S_IMODE(copy.stat().st_mode) == 0o600
        assert stat.S_IMODE((data / path).stat().st_mode) == 0o644
        if path not in changed:
            assert copy.stat().st_ino == (kept / "1" / "sounds" / sha).stat().st_ino
    assert stat.S_IMODE((kept / "2" / "sounds").stat().st_mode) == 0o700
    sounds = json.loads((kept / "2" / "sounds.json").read_text(encoding="utf-8"))
    assert set(sounds["accueil"]) == {"fr", "en"}
    assert stat.S_IMODE((kept / "2" / "sounds.json").stat().st_mode) == 0o600
    human = run("history", "--etc", str(etc))
    assert "sound files" in human.stdout and " 20 " in human.stdout


def test_a_journal_written_before_the_sound_files_rename_is_read(tmp_path: Path) -> None:
    """0.1 named the journal's data folder `media_dir`: a killed 0.1 apply's journal must
    still be finished or undone by this version, not called unreadable."""
    from wildix_ast.apply import STATE_DIR, TargetState

    state = TargetState(tmp_path)
    state.ensure()
    folder = tmp_path / STATE_DIR / "journal"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "journal.json").write_text(json.dumps({
        "started_at": "now", "pid": 1, "command": "wildix-ast apply", "step": "writing",
        "touched": ["pjsip.conf"], "reloads": ["res_pjsip.so"], "restart": False,
        "store_revision_before": 3, "media_dir": "/var/lib/asterisk"}))
    journal = state.journal()
    assert journal is not None and journal.data_dir == "/var/lib/asterisk"
    assert journal.touched == ["pjsip.conf"]
