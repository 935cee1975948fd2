"""The `wildix-ast` command against a running lab: what a person sees when Asterisk's
console does not answer, and real calls placed by `wildix-ast lab call`."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.cli_run import EXAMPLE, assert_no_traceback, run


@pytest.mark.lab
def test_apply_when_asterisks_console_does_not_answer(tmp_path: Path) -> None:
    """Apply reloads and verifies through Asterisk's console (no AMI account may): an
    Asterisk that does not answer there gives one clear message, exit code 5, nothing
    written."""
    from support.live_site import live_site

    with live_site(tmp_path, "noconsole") as live:
        live.store.put_secret("manager:wildix-ast", "Not#The0ne+Running")  # a change
        before = {p.name: p.read_bytes() for p in live.lab.etc_dir.iterdir() if p.is_file()}
        control = live.lab.host_path(live.lab.paths.run) / "asterisk.ctl"
        assert control.stat().st_mode & 0o777 == 0o660  # the owner's and its group's
        control.rename(control.with_name("moved.ctl"))
        try:
            result = run("apply", str(EXAMPLE), "--lab", "noconsole",
                         env={"WILDIX_AST_DB": str(tmp_path / "store.sqlite3"),
                              "WILDIX_AST_LAB_STATE": str(tmp_path / "lab")})
        finally:
            control.with_name("moved.ctl").rename(control)
        after = {p.name: p.read_bytes() for p in live.lab.etc_dir.iterdir() if p.is_file()}
    assert result.returncode == 5, result.stderr
    assert_no_traceback(result)
    assert "Asterisk's console (lab noconsole)" in result.stderr, result.stderr
    assert after == before


@pytest.mark.lab
def test_call_verb_places_real_calls(tmp_path: Path) -> None:
    """`wildix-ast lab call` against a running lab: a user answers, and a feature code; the
earlier spelling `wildix-ast call` still works for one release and says so."""
    from support.live_site import live_site

    env = {"WILDIX_AST_DB": str(tmp_path / "store.sqlite3"),
           "WILDIX_AST_LAB_STATE": str(tmp_path / "lab")}
    with live_site(tmp_path, "callverb") as live:
        to_user = run("lab", "call", "101", "102", "--lab", "callverb", "--hold", "1", env=env)
        to_echo = run("call", "101", "*43", "--lab", "callverb", "--hold", "1", env=env)
        not_a_phone = run("lab", "call", "701", "102", "--lab", "callverb", env=env)
        assert live.wait_no_channels() == 0
    assert "deprecated" in to_echo.stderr and "lab call" in to_echo.stderr
    assert "deprecated" not in to_user.stderr
    assert to_user.returncode == 0, to_user.stdout + to_user.stderr
    assert "102 rings and answers │ ✓ 1 INVITE, 1 answered, 1 BYE" in to_user.stdout
    assert "connected and hung up cleanly" in to_user.stdout
    assert to_echo.returncode == 0, to_echo.stdout + to_echo.stderr
    assert not_a_phone.returncode == 1
    assert "701 is not the extension of a user with a phone" in not_a_phone.stderr


@pytest.mark.lab
def test_apply_says_where_its_time_went(tmp_path: Path) -> None:
    """`apply --timing` against a running Asterisk: the reload, the verification and the
    store update are phases of their own; `--json` carries the same phases, adding up to
    no more than the process's whole time."""
    import json
    import shutil

    from support.live_site import live_site

    shutil.copytree(EXAMPLE.parent, tmp_path / "site")
    site = tmp_path / "site" / EXAMPLE.name
    env = {"WILDIX_AST_DB": str(tmp_path / "store.sqlite3"),
           "WILDIX_AST_LAB_STATE": str(tmp_path / "lab")}
    text = site.read_text(encoding="utf-8")
    with live_site(tmp_path, "timing"):
        site.write_text(text.replace("name: Alice Martin", "name: Alice Renamed", 1),
                        encoding="utf-8")
        shown = run("apply", str(site), "--lab", "timing", "--timing", env=env)
        assert shown.returncode == 0, shown.stderr
        site.write_text(text, encoding="utf-8")
        result = run("apply", str(site), "--lab", "timing", "--json", env=env)
    assert_no_traceback(shown)
    assert "where the time went" in shown.stderr
    lines = {line.split()[0]: line for line in shown.stderr.splitlines()
             if line.strip() and line.split()[0] in ("reload", "verify", "store", "render")}
    assert set(lines) == {"reload", "verify", "store", "render"}, shown.stderr
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    timing = outcome["timing"]
    assert timing["phases"]["reload"] > 0 and timing["phases"]["verify"] > 0
    assert sum(timing["phases"].values()) <= timing["total_seconds"] + 0.01
    assert "store compare" in timing["alongside"]
    reloaded = sum(r["seconds"] for r in outcome["result"]["reloads"])
    assert timing["phases"]["reload"] >= reloaded
