"""The apply target as integrators use it, through the real `wildix-ast` process on a live lab:
--json, history, rollback, one apply at a time, applies killed at every step, file modes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.cli_run import EXAMPLE, assert_no_traceback
from support.live_site import LiveSite, live_site
from support.sound_fixtures import copy_example_sounds, tone
from test_sounds_live import played

from wildix_ast.apply import STATE_DIR, ConfigTarget, TargetState
from wildix_ast.apply.state import sound_digest
from wildix_ast.asterisk.names import NOTIFY_ENDPOINT
from wildix_ast.conf import sections
from wildix_ast.errors import TargetBusyError
from wildix_ast.sounds.install import files_to_install, plan_sound_files

pytestmark = pytest.mark.lab
EXAMPLE_TEXT = EXAMPLE.read_text(encoding="utf-8")


def site_with(tmp: Path, *extensions: str, name: str | None = None) -> Path:
    """The example settings file plus temporary users (the example ends with its users)."""
    extra = "".join(f'  - name: Temp {ext}\n    extension: "{ext}"\n' for ext in extensions)
    path = tmp / (name or f"site-{'-'.join(extensions) or 'example'}.yaml")
    copy_example_sounds(tmp)
    path.write_text(EXAMPLE_TEXT + extra, encoding="utf-8")
    return path


FERME_LINE = "  - {name: ferme, description: Message de fermeture, files: {fr: sons/ferme.wav}}\n"


def site_with_sound(tmp: Path, *extensions: str, hertz: int, extra_sound: bool = False,
                    ) -> Path:
    """`site_with` in a folder of its own whose `ferme` prompt is another tone, with an
    `extra` sound too if asked (the example's other files are the same)."""
    folder = tmp / f"ferme-{hertz}-{'-'.join(extensions)}{'-extra' * extra_sound}"
    path = site_with(folder, *extensions)
    tone(folder / "sons" / "ferme.wav", 0.5, hertz, rate=8000, channels=1)
    if extra_sound:
        tone(folder / "sons" / "extra.wav", 0.5, hertz + 100, rate=8000, channels=1)
        text = path.read_text(encoding="utf-8")
        assert FERME_LINE in text
        path.write_text(text.replace(FERME_LINE, FERME_LINE + "  - {name: extra, files: "
                                     "{fr: sons/extra.wav}}\n"), encoding="utf-8")
    return path


def cli(live: LiveSite, *args: str, env: dict[str, str] | None = None,
        ) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200",
            "WILDIX_AST_DB": str(live.work / "store.sqlite3"),
            "WILDIX_AST_LAB_STATE": str(live.work / "lab"), **(env or {})}
    return subprocess.run([sys.executable, "-m", "wildix_ast", *args], capture_output=True,
                          text=True, env=full, timeout=180, check=False)


def start(live: LiveSite, *args: str, env: dict[str, str] | None = None,
          ) -> subprocess.Popen[str]:
    full = {**os.environ, "NO_COLOR": "1", "WILDIX_AST_DB": str(live.work / "store.sqlite3"),
            "WILDIX_AST_LAB_STATE": str(live.work / "lab"), **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "wildix_ast", *args], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full)


def as_json(result: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert_no_traceback(result)
    data = json.loads(result.stdout)
    assert isinstance(data, dict)
    return data


def phones_in_store(live: LiveSite) -> set[str]:
    return {u.extension for u in live.store.export_site().users if u.type.has_phone}


def is_user_endpoint(name: str) -> bool:
    """Not a trunk's (trunk-<name>), a node's (node-<name>), a device's hot-desk endpoint
    (hd-<mac>) nor the NOTIFY sender's."""
    return name != NOTIFY_ENDPOINT and not name.startswith(("trunk-", "node-", "hd-"))


def endpoints_in_files(live: LiveSite) -> set[str]:
    """The users' endpoints."""
    text = (live.lab.etc_dir / "pjsip.conf").read_text(encoding="utf-8")
    return {s.name for s in sections(text) if s.get("type") == "endpoint"
            and is_user_endpoint(s.name)}


def endpoints_in_asterisk(live: LiveSite) -> set[str]:
    async def ask() -> set[str]:
        async with live.console() as ami:
            return await ami.endpoints()

    return {name for name in asyncio.run(ask()) if is_user_endpoint(name)}


def sound_files(live: LiveSite) -> dict[str, bytes]:
    """The sound files the store's site and audio put in the data folder."""
    site = live.store.export_site()
    return files_to_install(site.sounds, site.system.language_region.language,
                       live.store.stored_sounds())


def assert_agree(live: LiveSite) -> set[str]:
    """The store, the files and what Asterisk runs describe the same users, and the data
    folder holds exactly the store's sound files."""
    stored, written, running = phones_in_store(live), endpoints_in_files(live), \
        endpoints_in_asterisk(live)
    assert stored == written == running, (stored, written, running)
    assert not (live.lab.etc_dir / STATE_DIR / "journal").exists()
    assert plan_sound_files(live.lab.data_dir, sound_files(live)) == ()
    return stored


FERME = "sounds/fr/wildix-ast/ferme.wav"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveSite]:
    with live_site(tmp_path_factory.mktemp("target"), "target") as site:
        yield site


BASE = {"100", "101", "102", "150", "190"}  # the example's users with a phone


def test_json_plan_apply_history_and_rollback(live: LiveSite, tmp_path: Path) -> None:
    one = site_with(tmp_path, "103")
    plan = as_json(cli(live, "apply", str(one), "--lab", "target", "--dry-run", "--json"))
    assert plan["ok"] is True and plan["dry_run"] is True and plan["changed"] is True
    files = {f["name"]: f["change"] for f in plan["files"]}  # type: ignore[union-attr]
    assert files["pjsip.conf"] == "change" and files["voicemail.conf"] == "change"
    assert "module reload res_pjsip.so" in plan["reloads"]  # type: ignore[operator]
    assert "+[103]" in str(plan["diff"]) and "password = ********" in str(plan["diff"])
    assert "103" not in endpoints_in_asterisk(live)  # a dry run writes nothing

    applied = as_json(cli(live, "apply", str(one), "--lab", "target", "--json"))
    assert applied["changed"] is True and applied["verified"] is True
    assert isinstance(applied["generation"], int)
    assert assert_agree(live) == BASE | {"103"}
    again = as_json(cli(live, "apply", str(one), "--lab", "target", "--json"))
    assert again["changed"] is False and again["generation"] is None  # truthful `changed`

    history = as_json(cli(live, "history", "--lab", "target", "--json"))
    generations = history["generations"]
    assert isinstance(generations, list) and generations[-1]["number"] == applied["generation"]
    assert generations[-1]["kind"] == "apply"
    assert generations[-1]["store_revision"] is not None

    back = as_json(cli(live, "rollback", "--lab", "target", "--json"))
    assert back["restored_generation"] == generations[-2]["number"]
    assert back["verified"] is True
    assert assert_agree(live) == BASE  # files, Asterisk and the store went back
    newest = as_json(cli(live, "history", "--lab", "target", "--json"))["generations"]
    assert newest[-1]["kind"] == "rollback"  # type: ignore[index]
    assert newest[-1]["from_generation"] == back["restored_generation"]  # type: ignore[index]

    human = cli(live, "history", "--lab", "target")
    assert human.returncode == 0 and "rollback of" in human.stdout


def test_state_modes_are_owner_only(live: LiveSite) -> None:
    state = live.lab.etc_dir / STATE_DIR
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    for path in state.rglob("*"):
        if path.name in ("lock",) or path.is_dir():
            mode = stat.S_IMODE(path.stat().st_mode)
            assert mode & 0o077 == 0, f"{path} is {oct(mode)}"
        else:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for conf in live.lab.etc_dir.glob("*.conf"):
        assert stat.S_IMODE(conf.stat().st_mode) == 0o640, conf


def test_json_error_is_one_object_with_the_exit_code(live: LiveSite, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text('users:\n  - {name: A, extension: "1x2"}\n', encoding="utf-8")
    result = cli(live, "apply", str(bad), "--lab", "target", "--json")
    assert result.returncode == 2
    data = as_json(result)
    assert data["ok"] is False
    error = data["error"]
    assert isinstance(error, dict) and error["exit_code"] == 2
    assert error["problems"][0]["location"].startswith("users[0].extension")
    valid = as_json(cli(live, "validate", str(EXAMPLE), "--json"))
    assert valid["ok"] is True and valid["users"] == 6


def test_concurrent_applies_leave_one_consistent_site(live: LiveSite, tmp_path: Path) -> None:
    """Six applies at once, each adding a different user: each waits its turn; every one
    that says it succeeded had its configuration live; the end state agrees with itself."""
    # not 110-115: 112 and 115 are French emergency numbers, refused as extensions
    extensions = [str(n) for n in range(130, 136)]
    procs = [start(live, "apply", str(site_with(tmp_path, ext)), "--lab", "target", "--json",
                   "--lock-timeout", "170") for ext in extensions]
    results = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=200)
        results.append((proc.returncode, stdout, stderr))
    generations = []
    for code, stdout, stderr in results:
        assert code == 0, stderr
        data = json.loads(stdout)
        assert data["verified"] is True
        generations.append(data["generation"])
    # one after the other: six distinct generations, none lost
    assert len(set(generations)) == 6
    final = assert_agree(live)
    last = extensions[generations.index(max(generations))]
    assert final == BASE | {last}


def test_a_second_apply_waits_then_names_the_holder(live: LiveSite) -> None:
    state = TargetState(live.lab.etc_dir)
    with state.lock("wildix-ast apply held-by-test", timeout=1):
        result = cli(live, "apply", str(EXAMPLE), "--lab", "target", "--lock-timeout", "0.5")
        assert result.returncode == TargetBusyError.exit_code
        assert "held-by-test" in result.stderr and f"pid {os.getpid()}" in result.stderr
        assert_no_traceback(result)


@pytest.mark.parametrize("step", ["before-write", "after-sounds", "after-write",
                                  "after-reload", "before-store", "after-store"])
def test_apply_killed_at_each_step_is_finished_or_undone(live: LiveSite, tmp_path: Path,
                                                         step: str) -> None:
    """SIGKILL in the middle of an apply that adds a user and changes a sound: the next
    command says so, and the next apply finishes or undoes it, sound files included, so
    that the store, the files, the sounds and Asterisk agree again (that apply then has
    nothing left to change)."""
    as_json(cli(live, "apply", str(EXAMPLE), "--lab", "target", "--json"))
    before = assert_agree(live)
    old_sound = (live.lab.data_dir / FERME).read_bytes()
    killed_site = site_with_sound(tmp_path, "120", hertz=600)
    killed = cli(live, "apply", str(killed_site), "--lab", "target",
                 env={"WILDIX_AST_CRASH_AT": step})
    assert killed.returncode == -signal.SIGKILL
    if step != "before-write":  # the new sound is on disk
        assert (live.lab.data_dir / FERME).read_bytes() != old_sound
    history = as_json(cli(live, "history", "--lab", "target", "--json"))
    assert history["interrupted"] is not None and "interrupted" in str(history["interrupted"])
    plan = as_json(cli(live, "apply", str(EXAMPLE), "--lab", "target", "--dry-run", "--json"))
    assert plan["interrupted"] is not None  # a plan says so too

    finished = step == "after-store"
    # the site the store holds once the interrupted apply is finished or undone
    recovered = as_json(cli(live, "apply", str(killed_site if finished else EXAMPLE),
                            "--lab", "target", "--json"))
    assert str(recovered["recovered"]).startswith("finished" if finished else "undid"), \
        recovered["recovered"]
    assert recovered["changed"] is False and recovered["sounds"] == []
    assert assert_agree(live) == (before | {"120"} if finished else before)
    assert ((live.lab.data_dir / FERME).read_bytes() == old_sound) is not finished
    if finished:  # its generation keeps the sounds it wrote, for a later rollback
        generations = as_json(cli(live, "history", "--lab", "target", "--json"))["generations"]
        assert isinstance(generations, list)
        newest = generations[-1]
        assert newest["kind"] == "recovered"
        assert newest["sounds"] == {p: sound_digest(b) for p, b in sound_files(live).items()}
        kept = live.lab.etc_dir / STATE_DIR / "generations" / str(newest["number"])
        assert (kept / "site.json").is_file() and (kept / "sounds.json").is_file()


def test_apply_killed_after_its_sounds_then_offline_apply(live: LiveSite,
                                                          tmp_path: Path) -> None:
    """`apply --offline` discards an interrupted apply without Asterisk: its saved files and
    sound files go back."""
    as_json(cli(live, "apply", str(EXAMPLE), "--lab", "target", "--json"))
    before = assert_agree(live)
    killed = cli(live, "apply", str(site_with_sound(tmp_path, "124", hertz=650)), "--lab",
                 "target", env={"WILDIX_AST_CRASH_AT": "after-sounds"})
    assert killed.returncode == -signal.SIGKILL
    offline = as_json(cli(live, "apply", str(EXAMPLE), "--lab", "target", "--offline",
                          "--json"))
    assert str(offline["recovered"]).startswith("discarded"), offline["recovered"]
    assert offline["changed"] is False and offline["sounds"] == []
    assert assert_agree(live) == before


def test_stale_lock_holder_does_not_block(live: LiveSite) -> None:
    """A holder killed while holding the lock: the kernel released it; the next apply runs."""
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path\n"
        "from wildix_ast.apply import TargetState\n"
        f"s = TargetState(Path({str(live.lab.etc_dir)!r}))\n"
        "with s.lock('sleeper', 5):\n"
        "    print('held', flush=True); time.sleep(60)\n")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    holder.kill()
    holder.wait()
    started = time.monotonic()
    with ConfigTarget(live.lab.etc_dir).locked(timeout=2):
        pass
    assert time.monotonic() - started < 1


@pytest.mark.parametrize("step", ["after-sounds", "after-write", "before-store",
                                  "after-store"])
def test_rollback_killed_midway_is_finished_or_undone(live: LiveSite, tmp_path: Path,
                                                     step: str) -> None:
    """A rollback is a commit like an apply: SIGKILLed midway, the next command finishes it
    (it reached the store) or undoes it, sound files included, and everything agrees."""
    with_user = site_with_sound(tmp_path, "121", hertz=700)
    as_json(cli(live, "apply", str(EXAMPLE), "--lab", "target", "--json"))
    as_json(cli(live, "apply", str(with_user), "--lab", "target", "--json"))
    assert assert_agree(live) == BASE | {"121"}
    killed = cli(live, "rollback", "--lab", "target", env={"WILDIX_AST_CRASH_AT": step})
    assert killed.returncode == -signal.SIGKILL

    finished = step == "after-store"
    # Finished: the rollback had taken 121 and the new sound away (the example's site is
    # back); undone: the site still has them. Either way that site's apply has nothing left
    # to change.
    recovered = as_json(cli(live, "apply", str(EXAMPLE if finished else with_user),
                            "--lab", "target", "--json"))
    assert str(recovered["recovered"]).startswith("finished" if finished else "undid")
    assert recovered["changed"] is False and recovered["sounds"] == []
    assert assert_agree(live) == (BASE if finished else BASE | {"121"})


def test_rollback_restores_the_sound_files_and_their_audio(live: LiveSite,
                                                           tmp_path: Path) -> None:
    """Apply a changed and an added sound, roll back: the previous bytes are back (Asterisk
    plays them), the added sound is gone, the store has the previous audio; rolling back
    again brings the newer sounds back, the removed one included."""
    as_json(cli(live, "apply", str(EXAMPLE), "--lab", "target", "--json"))
    data = live.lab.data_dir
    old_sound, old_audio = (data / FERME).read_bytes(), live.store.stored_sounds()
    newer = as_json(cli(live, "apply", str(site_with_sound(tmp_path, hertz=750,
                                                           extra_sound=True)),
                        "--lab", "target", "--json"))
    changes = {s["path"]: s["change"] for s in newer["sounds"]}  # type: ignore[union-attr]
    assert changes[FERME] == "change" and changes["sounds/fr/wildix-ast/extra.wav"] == "add"
    assert newer["files"] == []  # prompts change no configuration file
    new_sound = (data / FERME).read_bytes()
    assert new_sound != old_sound
    assert played(live, "101", "Playback wildix-ast/ferme", "ferme.")[1] == new_sound

    back = as_json(cli(live, "rollback", "--lab", "target", "--json"))
    assert {s["path"]: s["change"] for s in back["sounds"]} == {  # type: ignore[union-attr]
        path: {"change": "change", "add": "remove"}[kind] for path, kind in changes.items()}
    assert back["verified"] is True
    result = back["result"]
    assert isinstance(result, dict) and FERME in result["sounds_written"]
    assert "sounds/fr/wildix-ast/extra.wav" in result["sounds_removed"]
    assert (data / FERME).read_bytes() == old_sound
    assert not (data / "sounds/fr/wildix-ast/extra.wav").exists()
    assert live.store.stored_sounds() == old_audio
    assert_agree(live)
    path, bytes_played = played(live, "101", "Playback wildix-ast/ferme", "ferme.")
    assert path.endswith(FERME) and bytes_played == old_sound

    again = as_json(cli(live, "rollback", "--lab", "target", "--json"))
    assert again["restored_generation"] == newer["generation"]
    assert (data / FERME).read_bytes() == new_sound
    assert (data / "sounds/fr/wildix-ast/extra.wav").is_file()
    assert ("extra", "fr") in live.store.stored_sounds()
    assert_agree(live)
    history = as_json(cli(live, "history", "--lab", "target", "--json"))["generations"]
    assert history[-1]["sounds"] == history[-3]["sounds"]  # type: ignore[index]
    as_json(cli(live, "apply", str(EXAMPLE), "--lab", "target", "--json"))


def test_rollback_and_apply_at_once_leave_one_consistent_site(live: LiveSite,
                                                              tmp_path: Path) -> None:
    as_json(cli(live, "apply", str(EXAMPLE), "--lab", "target", "--json"))
    as_json(cli(live, "apply", str(site_with(tmp_path, "122")), "--lab", "target", "--json"))
    procs = [start(live, "rollback", "--lab", "target", "--json", "--lock-timeout", "170"),
             start(live, "apply", str(site_with(tmp_path, "123")), "--lab", "target",
                   "--json", "--lock-timeout", "170")]
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=200)
        assert proc.returncode == 0, stderr
        assert json.loads(stdout)["verified"] is True
    final = assert_agree(live)
    # Whichever ran last decided: the apply's site, or the generation before the apply.
    assert final in (BASE | {"123"}, BASE | {"122"}), final
