"""apply: plan/diff as pure unit tests; commit/verify/rollback against a real Asterisk 22."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from test_ami import AsteriskUnderTest, asterisk, lab

from wildix_ast.ami import run
from wildix_ast.apply import (
    STATE_DIR,
    ApplyReport,
    ConfigTarget,
    Expectation,
    Journal,
    TargetState,
    Timeouts,
)
from wildix_ast.apply import make_plan as plan
from wildix_ast.apply.state import LEGACY_MANIFEST, digest, sound_digest
from wildix_ast.errors import ApplyError
from wildix_ast.files import write_atomic

MANIFEST = f"{STATE_DIR}/manifest.json"

__all__ = ["asterisk", "lab"]  # fixtures shared with test_ami

PJSIP = """\
[udp]
type=transport
protocol=udp
bind=127.0.0.1:5060

[1000]
type=endpoint
aors=1000
auth=1000
[1000]
type=aor
[1000]
type=auth
auth_type=userpass
username=1000
password=hunter2
"""


# -- plan and diff (no Asterisk) --------------------------------------------------------------

def test_plan_added_changed_unchanged_and_removed_only_if_owned(tmp_path: Path) -> None:
    (tmp_path / "pjsip.conf").write_text(PJSIP)
    (tmp_path / "extensions.conf").write_text("[internal]\n")
    (tmp_path / "rtp.conf").write_text("[general]\n")          # owned, then dropped
    (tmp_path / "cdr.conf").write_text("[general]\n")          # not ours: never removed
    # the manifest where a first version kept it: still read
    (tmp_path / LEGACY_MANIFEST).write_text(json.dumps({"version": 1, "files": {
        "pjsip.conf": digest(PJSIP), "rtp.conf": digest("[general]\n"),
        "extensions.conf": "0" * 64}}))
    p = plan(tmp_path, {"pjsip.conf": PJSIP, "extensions.conf": "[internal]\nexten => 1,1,"
                        "NoOp()\n", "voicemail.conf": "[general]\n"})
    assert p.unchanged == ["pjsip.conf"]
    assert p.changed == ["extensions.conf"]
    assert p.added == ["voicemail.conf"]
    assert p.removed == ["rtp.conf"]
    assert p.drifted == ("extensions.conf",)  # edited by hand since the last apply
    assert [r.module for r in p.modules_to_reload()] == [
        "res_rtp_asterisk.so", "app_voicemail.so", "pbx_config.so"]
    assert p.restart_reasons() == []
    assert "cdr.conf" not in p.diff()


def test_diff_is_unified_and_masks_secrets(tmp_path: Path) -> None:
    (tmp_path / "pjsip.conf").write_text(PJSIP)
    (tmp_path / "voicemail.conf").write_text("[general]\nformat=wav\n[default]\n"
                                             "1000 => 4321,Ann,ann@example.com\n")
    new = PJSIP.replace("password=hunter2", "password=correct-horse").replace(
        "[1000]\ntype=aor\n", "[1000]\ntype=aor\nmax_contacts=2\n")
    p = plan(tmp_path, {"pjsip.conf": new, "voicemail.conf": "[general]\nformat=wav\n"
                        "[default]\n1000 => 9999,Ann,ann@example.com\n"})
    diff = p.diff()
    assert diff.startswith("--- running/pjsip.conf\n+++ new/pjsip.conf\n@@")
    assert "+max_contacts=2\n" in diff
    assert "-password=********\n" in diff and "+password=******** (changed)\n" in diff
    assert "--- running/voicemail.conf\n+++ new/voicemail.conf" in diff
    assert "+1000 => ******** (changed),Ann,ann@example.com" in diff
    for secret in ("hunter2", "correct-horse", "4321", "9999"):
        assert secret not in diff
    # an unchanged secret is masked and not reported as changed
    same = plan(tmp_path, {"pjsip.conf": PJSIP + "\n[x]\ntype=aor\n"}).diff()
    assert "hunter2" not in same and "(changed)" not in same


def test_transport_change_and_restart_files(tmp_path: Path) -> None:
    (tmp_path / "pjsip.conf").write_text(PJSIP)
    moved = PJSIP.replace("127.0.0.1:5060", "127.0.0.1:5070")
    assert plan(tmp_path, {"pjsip.conf": moved}).transport_changes() == [
        "transport 'udp' changed"]
    # the same transport written through a template is no change
    templated = PJSIP.replace("[udp]\ntype=transport\n", "[t](!)\ntype=transport\n[udp](t)\n")
    assert plan(tmp_path, {"pjsip.conf": templated}).transport_changes() == []
    added = PJSIP + "\n[tcp]\ntype=transport\nprotocol=tcp\nbind=127.0.0.1:5060\n"
    p = plan(tmp_path, {"pjsip.conf": added, "modules.conf": "[modules]\nautoload=yes\n"})
    reasons = p.restart_reasons()
    assert any(r.startswith("modules.conf:") for r in reasons)
    assert any("transport 'tcp' added" in r and "#436" in r for r in reasons)


def test_validate_finds_problems_before_anything_is_written(tmp_path: Path) -> None:
    p = plan(tmp_path, {
        "pjsip.conf": PJSIP + "\n[2000]\ntype=endpoint\naors=2000\n[oops]\nallow=ulaw\n",
        "extensions.conf": "[internal]\nexten => 1,1\nsame => n,NoOp()\n",
        "rtp.conf": "[general]\nthis is not a setting\n",
    })
    problems = [str(x) for x in p.validate()]
    assert "pjsip.conf line 18: [2000] aors=2000: no aor '2000'" in problems
    assert "pjsip.conf line 21: [oops] has no type=" in problems
    assert "extensions.conf [internal]: malformed exten => 1,1" in problems
    assert "rtp.conf line 2: expected 'name = value', got 'this is not a setting'" in problems
    with pytest.raises(ApplyError):
        plan(tmp_path, {"../passwd": "x"})


def test_atomic_write_mode_and_no_temp_files(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "pjsip.conf"
    target.write_text("old\n")
    write_atomic(target, "new ; é\n")
    assert target.read_text() == "new ; é\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert os.listdir(tmp_path) == ["pjsip.conf"]

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk on fire"):
        write_atomic(target, "never\n")
    assert target.read_text() == "new ; é\n"
    assert os.listdir(tmp_path) == ["pjsip.conf"]


# -- commit against a real Asterisk -------------------------------------------------------------

def test_journal_shares_the_newest_generation_copy_of_a_running_file(tmp_path: Path) -> None:
    """The saved running file is the newest generation's copy (a hard link, owner-only) when
    it has the same digest; a file edited since (drift) is saved as it runs now."""
    state = TargetState(tmp_path)
    state.record_generation({"pjsip.conf": PJSIP, "extensions.conf": "[a]\n"}, "apply", 1)
    kept = tmp_path / STATE_DIR / "generations" / "1" / "files"
    journal = Journal(started_at="now", pid=1, command="test", step="writing", touched=[],
                      reloads=[], restart=False, store_revision_before=1)
    state.begin(journal, {"pjsip.conf": PJSIP, "extensions.conf": "[a]\n; edited\n"})
    saved = tmp_path / STATE_DIR / "journal" / "before"
    assert (saved / "pjsip.conf").stat().st_ino == (kept / "pjsip.conf").stat().st_ino
    assert (saved / "extensions.conf").stat().st_ino != (kept / "extensions.conf").stat().st_ino
    assert state.saved_before() == {"pjsip.conf": PJSIP, "extensions.conf": "[a]\n; edited\n"}
    assert {stat.S_IMODE(p.stat().st_mode) for p in saved.iterdir()} == {0o600}
    state.end()
    assert (kept / "pjsip.conf").read_text() == PJSIP  # the generation keeps its copy


def test_generations_keep_sound_files_by_content(tmp_path: Path) -> None:
    """One owner-only copy per content, shared with older generations by hard links; a
    generation pruned away takes none of the copies the kept ones share."""
    state = TargetState(tmp_path, keep=2)
    a, b, c = b"RIFF a", b"RIFF b", b"RIFF c"
    first = state.record_generation({"x.conf": "[x]\n"}, "apply", 1, sounds={
        "sounds/fr/wildix-ast/p.wav": a, "sounds/wildix-ast/p.wav": a, "moh/m.wav": b})
    assert first.sounds == {"moh/m.wav": sound_digest(b),
                            "sounds/fr/wildix-ast/p.wav": sound_digest(a),
                            "sounds/wildix-ast/p.wav": sound_digest(a)}
    root = tmp_path / STATE_DIR / "generations"
    assert sorted(os.listdir(root / "1" / "sounds")) == sorted(
        {sound_digest(a), sound_digest(b)})
    state.record_generation({"x.conf": "[x]\n"}, "apply", 2, sounds={
        "sounds/fr/wildix-ast/p.wav": c, "moh/m.wav": b})
    assert (root / "2" / "sounds" / sound_digest(b)).stat().st_ino == \
        (root / "1" / "sounds" / sound_digest(b)).stat().st_ino
    assert state.generation_sounds(1) == {"sounds/fr/wildix-ast/p.wav": a,
                                          "sounds/wildix-ast/p.wav": a, "moh/m.wav": b}
    assert state.generation_sounds(2) == {"sounds/fr/wildix-ast/p.wav": c, "moh/m.wav": b}
    third = state.record_generation({"x.conf": "[x]\n"}, "apply", 3)
    assert third.sounds is None and state.generation_sounds(3) is None  # not recorded
    assert [g.number for g in state.generations()] == [2, 3]
    assert state.generation_sounds(2) == {"sounds/fr/wildix-ast/p.wav": c, "moh/m.wav": b}
    for path in (root / "2" / "sounds").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((root / "2" / "sounds").stat().st_mode) == 0o700


def test_journal_saves_the_sound_files_an_apply_changes(tmp_path: Path) -> None:
    """The journal keeps the previous bytes of each sound file the apply writes or removes
    (shared with the newest generation when the same), and which ones did not exist."""
    state = TargetState(tmp_path)
    old = b"RIFF old"
    state.record_generation({}, "apply", 1, sounds={"sounds/wildix-ast/a.wav": old})
    journal = Journal(started_at="now", pid=1, command="test", step="writing", touched=[],
                      reloads=[], restart=False, store_revision_before=1,
                      data_dir=str(tmp_path / "data"))
    state.begin(journal, {}, {"sounds/wildix-ast/a.wav": old, "sounds/wildix-ast/b.wav": None})
    kept = state.journal()
    assert kept is not None and kept.sounds_before == {
        "sounds/wildix-ast/a.wav": sound_digest(old), "sounds/wildix-ast/b.wav": None}
    assert state.saved_sounds(kept) == {"sounds/wildix-ast/a.wav": old,
                                        "sounds/wildix-ast/b.wav": None}
    copy = tmp_path / STATE_DIR / "journal" / "sounds" / sound_digest(old)
    generation = tmp_path / STATE_DIR / "generations" / "1" / "sounds" / sound_digest(old)
    assert copy.stat().st_ino == generation.stat().st_ino
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    state.end()
    assert generation.read_bytes() == old


def _target(lab: AsteriskUnderTest) -> ConfigTarget:
    return ConfigTarget(lab.etc_dir, lab.client)


def _apply(lab: AsteriskUnderTest, files: dict[str, str], also: Expectation | None = None, *,
           verify_timeout: float = 5.0) -> tuple[ApplyReport, list[tuple[str, str]]]:
    steps: list[tuple[str, str]] = []
    target = _target(lab)
    with target.locked(5):
        return run(target.commit(target.plan(files), also_expect=also,
                                 progress=lambda step, msg: steps.append((step, msg)),
                                 timeouts=Timeouts(verify=verify_timeout))), steps


def _seen(lab: AsteriskUnderTest) -> tuple[set[str], set[str], set[str]]:
    async def go() -> tuple[set[str], set[str], set[str]]:
        async with lab.client() as ami:
            return await ami.endpoints(), await ami.aors(), await ami.contexts("pbx_config")

    return run(go())


def _no_temp_files(lab: AsteriskUnderTest) -> None:
    leftovers = [n for n in os.listdir(lab.etc_dir) if n.endswith(".tmp")]
    state = lab.etc_dir / STATE_DIR
    if state.exists():
        leftovers += [p.name for p in state.rglob("*") if p.name.startswith(".")]
        assert not (state / "journal").exists()
    assert leftovers == []


def test_commit_adds_an_endpoint_and_a_context(lab: AsteriskUnderTest) -> None:
    files = lab.base_files()
    files["pjsip.conf"] += "\n[1002](phone)\naors=1002\n[1002]\ntype=aor\nmax_contacts=1\n"
    files["extensions.conf"] += "\n[ivr-main]\nexten => s,1,Answer()\n"
    report, steps = _apply(lab, files)
    assert sorted(report.files_written) == ["extensions.conf", "pjsip.conf"]
    assert [r.module for r in report.reloads] == ["res_pjsip.so", "pbx_config.so"]
    assert report.verify_attempts >= 1 and report.verify_seconds < 5
    endpoints, aors, contexts = _seen(lab)
    assert endpoints == {"1000", "1001", "1002"} and "1002" in aors
    assert contexts == {"internal", "from-trunk", "ivr-main"}
    assert [s for s, _ in steps][:3] == ["check", "validate", "backup"] and steps[-1][0] == "done"
    target = _target(lab)
    newest = target.history()[-1]
    assert newest.kind == "apply"
    assert target.state.generation_files(newest.number)["pjsip.conf"] == files["pjsip.conf"]
    assert stat.S_IMODE((lab.etc_dir / STATE_DIR).stat().st_mode) == 0o700
    manifest = json.loads((lab.etc_dir / MANIFEST).read_text())
    assert sorted(manifest["files"]) == ["extensions.conf", "pjsip.conf"]
    for name in ("pjsip.conf", "extensions.conf"):
        assert stat.S_IMODE((lab.etc_dir / name).stat().st_mode) == 0o640
    _no_temp_files(lab)
    # a second apply of the same files changes nothing and still verifies
    again, _ = _apply(lab, files)
    assert again.files_written == [] and again.reloads == [] and again.generation is None
    assert target.history()[-1].number == newest.number


def test_commit_removes_an_endpoint_and_a_context(lab: AsteriskUnderTest) -> None:
    files = lab.base_files()
    files["pjsip.conf"] = files["pjsip.conf"].split("[1001](phone)")[0]
    files["extensions.conf"] = files["extensions.conf"].split("[from-trunk]")[0]
    _, steps = _apply(lab, files)
    assert "2 endpoints present" not in dict(steps)["verify"]
    assert "0 endpoints present, 1 gone" in dict(steps)["verify"]  # only what changed
    endpoints, aors, contexts = _seen(lab)
    assert endpoints == {"1000"} and aors == {"1000"} and contexts == {"internal"}


def test_failed_verification_restores_previous_files(lab: AsteriskUnderTest) -> None:
    before = {n: (lab.etc_dir / n).read_bytes() for n in ("pjsip.conf", "extensions.conf")}
    manifest = lab.etc_dir / MANIFEST
    manifest_before = manifest.read_bytes() if manifest.exists() else None
    generations_before = _target(lab).history()
    files = lab.base_files()
    files["pjsip.conf"] += "\n[1003](phone)\naors=1003\n[1003]\ntype=aor\n"
    with pytest.raises(ApplyError) as caught:
        _apply(lab, files, Expectation(endpoints={"9999"}))  # nothing defines it
    message = caught.value.message
    assert message.startswith("verification failed: endpoint 9999 missing")
    assert "the previous configuration was restored (pjsip.conf) and reloaded" in message
    for name, data in before.items():
        assert (lab.etc_dir / name).read_bytes() == data
    endpoints, _, _ = _seen(lab)
    assert endpoints == {"1000", "1001"}
    assert (manifest.read_bytes() if manifest.exists() else None) == manifest_before
    assert _target(lab).history() == generations_before  # nothing recorded
    _no_temp_files(lab)


def test_config_asterisk_rejects_is_rolled_back(lab: AsteriskUnderTest) -> None:
    """Our checks pass it; Asterisk refuses the endpoint (an invalid option value)."""
    before = (lab.etc_dir / "pjsip.conf").read_bytes()
    files = lab.base_files()
    files["pjsip.conf"] += ("\n[1004](phone)\naors=1004\ndtmf_mode=carrier-pigeon\n"
                            "[1004]\ntype=aor\n")
    with pytest.raises(ApplyError, match=r"endpoint 1004 missing.*previous configuration "
                                         "was restored"):
        _apply(lab, files, verify_timeout=1.0)
    assert (lab.etc_dir / "pjsip.conf").read_bytes() == before
    endpoints, aors, _ = _seen(lab)
    assert endpoints == {"1000", "1001"} and aors == {"1000", "1001"}


def test_transport_change_is_refused(lab: AsteriskUnderTest) -> None:
    before = (lab.etc_dir / "pjsip.conf").read_bytes()
    files = lab.base_files()
    files["pjsip.conf"] = files["pjsip.conf"].replace("protocol=udp", "protocol=udp\ntos=ef")
    with pytest.raises(ApplyError, match=r"transport changed: restart required.*"
                                         "transport 'transport-udp' changed"):
        _apply(lab, files)
    assert (lab.etc_dir / "pjsip.conf").read_bytes() == before
    assert not (lab.etc_dir / STATE_DIR / "journal").exists()


def test_invalid_files_are_not_written(lab: AsteriskUnderTest) -> None:
    before = (lab.etc_dir / "extensions.conf").read_bytes()
    files = lab.base_files()
    files["extensions.conf"] += "\n[broken\n"
    with pytest.raises(ApplyError, match="invalid, nothing was written"):
        _apply(lab, files)
    assert (lab.etc_dir / "extensions.conf").read_bytes() == before


def test_transport_change_with_allow_restart(lab: AsteriskUnderTest) -> None:
    """Last in the module: the restarted Asterisk keeps the changed transport."""
    files = lab.base_files()
    files["pjsip.conf"] = files["pjsip.conf"].replace("protocol=udp", "protocol=udp\ntos=ef")

    target = _target(lab)
    report = run(target.commit(target.plan(files), allow_restart=True,
                               timeouts=Timeouts(restart=30.0)))
    assert report.restarted and report.reloads == []
    tos = [line for line in lab.cli("pjsip show transport transport-udp").splitlines()
           if line.strip().startswith("tos ")]
    assert tos and tos[0].split(":")[1].strip() == "184"  # EF, read only at startup
    endpoints, _, _ = _seen(lab)
    assert endpoints == {"1000", "1001"}
