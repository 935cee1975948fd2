"""The sounds pipeline without Asterisk: conversion (sox), errors located in the settings
file, the store keeping audio by content, where the files go, the plan, hold music classes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import wave
from collections.abc import Callable
from io import BytesIO
from pathlib import Path

import pytest
from support.sound_fixtures import site_with_sounds, tone

from wildix_ast.apply.target import ConfigTarget
from wildix_ast.asterisk.base import RenderInput
from wildix_ast.asterisk.musiconhold import classes
from wildix_ast.model.settings_file import load_site, locator
from wildix_ast.sounds import audio as sound_audio
from wildix_ast.sounds.audio import Audio, prepare
from wildix_ast.sounds.install import (
    files_to_install,
    library_from_files,
    plan_sound_files,
    put_sound_files,
)
from wildix_ast.store import open_store


def _format(data: bytes) -> tuple[int, int, int, float]:
    with wave.open(BytesIO(data)) as w:
        return (w.getframerate(), w.getnchannels(), w.getsampwidth(),
                w.getnframes() / w.getframerate())


def _none_known(_digests: object) -> dict[str, Audio]:
    return {}


def test_wav_and_mp3_become_8_and_16_khz_mono_16_bit(tmp_path: Path) -> None:
    path = site_with_sounds(tmp_path)
    site = load_site(path)
    library = prepare(site, tmp_path, _none_known)
    assert set(library) == {("accueil", "fr"), ("accueil", "en"), ("attente", "fr"),
                            ("accueil-svi", "fr"), ("ferme", "fr")}  # + the example's
    fr = library[("accueil", "fr")]
    rate, channels, width, seconds = _format(fr.wav)
    assert (rate, channels, width) == (8000, 1, 2)
    assert seconds == pytest.approx(3.0, abs=0.05)
    assert _format(fr.wav16)[:3] == (16000, 1, 2)
    en = library[("accueil", "en")]  # from MP3
    assert _format(en.wav)[:3] == (8000, 1, 2)
    assert _format(en.wav)[3] == pytest.approx(1.0, abs=0.1)
    assert fr.digest != en.digest


def test_known_audio_is_not_converted_again(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    site = load_site(site_with_sounds(tmp_path))
    first = prepare(site, tmp_path, _none_known)
    by_digest = {a.digest: a for a in first.values()}

    def no_sox(*_args: object) -> Audio:
        raise AssertionError("converted again")

    monkeypatch.setattr(sound_audio, "convert", no_sox)
    again = prepare(site, tmp_path, lambda digests: {d: by_digest[d] for d in digests})
    assert again == first


def test_converting_the_same_file_twice_gives_the_same_bytes(tmp_path: Path) -> None:
    # sox dithers with a random seed unless asked to repeat itself (-R): without it, audio
    # dropped from the store and converted again would show as a changed sound file
    site_with_sounds(tmp_path)
    for source in (tmp_path / "sons").iterdir():
        data = source.read_bytes()
        first = sound_audio.convert(data, source.suffix, source.name)
        assert sound_audio.convert(data, source.suffix, source.name) == first, source.name


@pytest.mark.parametrize("damage", ["missing", "not audio", "empty"])
def test_a_bad_file_is_located_and_nothing_is_stored(tmp_path: Path, damage: str) -> None:
    path = site_with_sounds(tmp_path)
    target = tmp_path / "sons" / "welcome-en.mp3"
    if damage == "missing":
        target.unlink()
    elif damage == "not audio":
        target.write_bytes(b"this is not an mp3 file at all\n" * 50)
    else:
        target.write_bytes(b"")
    db = tmp_path / "store.sqlite3"
    result = subprocess.run([sys.executable, "-m", "wildix_ast", "import", str(path)],
                            capture_output=True, text=True, check=False, timeout=120,
                            env={**os.environ, "WILDIX_AST_DB": str(db), "NO_COLOR": "1"})
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    line = next(n for n, text in enumerate(path.read_text().splitlines(), 1)
                if "welcome-en.mp3" in text)
    assert f"sounds[0].files.en (site.yaml line {line})" in result.stderr
    with open_store(str(db)) as store:
        assert not store.has_site()
        assert store.stored_sounds() == {}


def test_validate_names_every_missing_or_empty_sound_file(tmp_path: Path) -> None:
    path = site_with_sounds(tmp_path)
    (tmp_path / "sons" / "welcome-en.mp3").unlink()
    (tmp_path / "sons" / "accueil-fr.wav").write_bytes(b"")
    result = subprocess.run([sys.executable, "-m", "wildix_ast", "validate", str(path),
                             "--json"], capture_output=True, text=True, check=False,
                            timeout=120, env={**os.environ, "NO_COLOR": "1"})
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    problems = json.loads(result.stdout)["error"]["problems"]
    lines = {name: next(n for n, text in enumerate(path.read_text().splitlines(), 1)
                        if name in text) for name in ("welcome-en.mp3", "accueil-fr.wav")}
    assert {p["location"] for p in problems} == {
        f"sounds[0].files.en (site.yaml line {lines['welcome-en.mp3']})",
        f"sounds[0].files.fr (site.yaml line {lines['accueil-fr.wav']})"}
    assert any("no such file" in p["message"] for p in problems)
    assert any("is empty" in p["message"] for p in problems)


def test_the_store_keeps_audio_by_content_and_drops_what_is_gone(tmp_path: Path) -> None:
    path = site_with_sounds(tmp_path)
    site = load_site(path)
    with open_store(str(tmp_path / "store.sqlite3")) as store:
        library = prepare(site, tmp_path, store.sound_audio, locator(path))
        store.import_site(site, sounds=library)
        revision = store.revision()
        assert store.stored_sounds() == library
        store.import_site(site, sounds=library)
        assert store.revision() == revision  # nothing changed
        # new music: the same site text, other audio
        tone(tmp_path / "sons" / "attente.mp3", 2.0, 500)
        changed = prepare(site, tmp_path, store.sound_audio, locator(path))
        store.import_site(site, sounds=changed)
        assert store.revision() == revision + 1
        assert store.stored_sounds() == changed
        old = library[("attente", "fr")].digest
        assert store.sound_audio([old]) == {}  # nothing names it any more
        # an import without audio (a rollback's) keeps the audio as it is
        store.import_site(site)
        assert store.stored_sounds() == changed


def test_files_go_where_asterisk_looks_per_language(tmp_path: Path) -> None:
    site = load_site(site_with_sounds(tmp_path))
    library = prepare(site, tmp_path, _none_known)
    sound_files = files_to_install(site.sounds, "fr", library)
    fr, en = library[("accueil", "fr")], library[("accueil", "en")]
    assert sound_files["sounds/fr/wildix-ast/accueil.wav"] == fr.wav
    assert sound_files["sounds/fr/wildix-ast/accueil.wav16"] == fr.wav16
    assert sound_files["sounds/en/wildix-ast/accueil.wav"] == en.wav
    # without the caller's language: the PBX's (fr), not English
    assert sound_files["sounds/wildix-ast/accueil.wav"] == fr.wav
    assert sound_files["wildix-ast-moh/attente/attente.wav"] == library[("attente", "fr")].wav
    # each sound: wav + wav16 per language and for no language; the example's two fr prompts
    assert len(sound_files) == 12 + 8
    with pytest.raises(Exception, match="no converted audio in the store"):
        files_to_install(site.sounds, "fr", {})


def test_plan_shows_sound_files_and_apply_removes_those_gone(tmp_path: Path) -> None:
    site = load_site(site_with_sounds(tmp_path))
    library = prepare(site, tmp_path, _none_known)
    data = tmp_path / "data"
    (data / "sounds" / "fr").mkdir(parents=True)
    (data / "sounds" / "fr" / "packaged.wav").write_bytes(b"not ours")
    sound_files = files_to_install(site.sounds, "fr", library)
    etc = tmp_path / "etc"
    etc.mkdir()
    target = ConfigTarget(etc, data_dir=data)
    plan = target.plan({"x.conf": "[x]\n"}, sound_files)
    assert len(plan.sound_files) == 12 + 8 and {c.kind for c in plan.sound_files} == {"add"}
    assert "+ sounds/fr/wildix-ast/accueil.wav (" in plan.diff()
    assert plan.to_json()["sounds"][0] == {"path": "sounds/en/wildix-ast/accueil.wav",
                                          "change": "add"}
    target.install(plan)
    assert (data / "sounds/fr/wildix-ast/accueil.wav").read_bytes() == \
        library[("accueil", "fr")].wav
    assert target.plan({"x.conf": "[x]\n"}, sound_files).has_changes is False
    # the English file leaves the site: its files go, packaged prompts stay
    fewer = {p: b for p, b in sound_files.items() if not p.startswith("sounds/en/")}
    plan = target.plan({"x.conf": "[x]\n"}, fewer)
    assert [(c.kind, c.path) for c in plan.sound_files] == [
        ("remove", "sounds/en/wildix-ast/accueil.wav"),
        ("remove", "sounds/en/wildix-ast/accueil.wav16")]
    target.install(plan)
    assert not (data / "sounds/en/wildix-ast").exists()
    assert (data / "sounds/fr/packaged.wav").read_bytes() == b"not ours"
    assert plan_sound_files(data, fewer) == ()


def test_rollback_plan_puts_back_the_sound_files_of_its_generation(tmp_path: Path) -> None:
    """Without Asterisk: the plan back to a generation lists its sound files changed,
    added and removed like an apply's, and writing it leaves exactly those files."""
    etc, data = tmp_path / "etc", tmp_path / "data"
    etc.mkdir()
    target = ConfigTarget(etc, data_dir=data)
    old = {"sounds/fr/wildix-ast/a.wav": b"RIFF old a", "sounds/fr/wildix-ast/gone.wav": b"RIFF g",
           "wildix-ast-moh/m/m.wav": b"RIFF music"}
    new = {"sounds/fr/wildix-ast/a.wav": b"RIFF new a", "sounds/en/wildix-ast/added.wav": b"RIFF +",
           "wildix-ast-moh/m/m.wav": b"RIFF music"}
    target.install(target.plan({"x.conf": "[x]\n"}, old))
    target.install(target.plan({"x.conf": "[y]\n"}, new))
    plan, chosen = target.rollback_plan()
    assert chosen.number == 1
    assert [(c.kind, c.path) for c in plan.sound_files] == [
        ("change", "sounds/fr/wildix-ast/a.wav"), ("add", "sounds/fr/wildix-ast/gone.wav"),
        ("remove", "sounds/en/wildix-ast/added.wav")]
    assert plan.to_json()["sounds"] == [
        {"path": "sounds/fr/wildix-ast/a.wav", "change": "change"},
        {"path": "sounds/fr/wildix-ast/gone.wav", "change": "add"},
        {"path": "sounds/en/wildix-ast/added.wav", "change": "remove"}]
    assert "~ sounds/fr/wildix-ast/a.wav (10 bytes)" in plan.diff()
    target.install(plan)
    assert {p.relative_to(data).as_posix(): p.read_bytes()
            for p in data.rglob("*") if p.is_file()} == old
    assert not (data / "sounds/en/wildix-ast").exists()
    assert target.history()[-1].sounds == target.history()[0].sounds
    # a generation that did not record its sound files leaves them alone
    target.install(target.plan({"x.conf": "[z]\n"}))
    plan, _ = target.rollback_plan(4)
    assert plan.sound_files == () and plan.sound_files_after is None


def test_the_audio_of_installed_files_goes_back_to_the_store(tmp_path: Path) -> None:
    """A rollback gives the store the audio of the sound files it restores."""
    site = load_site(site_with_sounds(tmp_path))
    library = prepare(site, tmp_path, _none_known)
    sound_files = files_to_install(site.sounds, "fr", library)
    digests = {key: audio.digest for key, audio in library.items()}
    assert library_from_files(digests, sound_files) == library
    del sound_files["sounds/en/wildix-ast/accueil.wav16"]
    assert library_from_files(digests, sound_files) is None


def test_put_sound_files_writes_readable_files(tmp_path: Path) -> None:
    put_sound_files(tmp_path, {"sounds/fr/wildix-ast/a.wav": b"RIFF"})
    assert (tmp_path / "sounds/fr/wildix-ast/a.wav").stat().st_mode & 0o777 == 0o644


def test_put_sound_files_folders_are_readable_under_a_strict_umask(tmp_path: Path) -> None:
    """The Ansible module runs wildix-ast with umask 077; Asterisk reads as its own user."""
    old = os.umask(0o077)
    try:
        put_sound_files(tmp_path, {"wildix-ast-moh/attente/attente.wav": b"RIFF"})
    finally:
        os.umask(old)
    for folder in ("wildix-ast-moh", "wildix-ast-moh/attente"):
        assert (tmp_path / folder).stat().st_mode & 0o777 == 0o755, folder


def test_linked_language_folders_change_nothing_once_installed(tmp_path: Path) -> None:
    """Debian: sounds/fr and sounds/fr_CA both link to the fr_CA_f_June prompts. The files
    seen through the other links are the wanted ones, not files to remove."""
    sounds = tmp_path / "sounds"
    (sounds / "fr_CA_f_June").mkdir(parents=True)
    (sounds / "fr").symlink_to("fr_CA_f_June")
    (sounds / "fr_CA").symlink_to("fr_CA_f_June")
    wanted = {"sounds/fr/wildix-ast/a.wav": b"RIFF", "sounds/wildix-ast/a.wav": b"RIFF"}
    put_sound_files(tmp_path, wanted)
    assert plan_sound_files(tmp_path, wanted) == ()
    # a file the site no longer has is removed once, under one of its names
    gone = plan_sound_files(tmp_path, {"sounds/wildix-ast/a.wav": b"RIFF"})
    assert [c.kind for c in gone] == ["remove"]
    put_sound_files(tmp_path, {c.path: None for c in gone})
    assert not (sounds / "fr_CA_f_June" / "wildix-ast").exists()
    assert plan_sound_files(tmp_path, {"sounds/wildix-ast/a.wav": b"RIFF"}) == ()


def test_hold_music_classes_follow_the_site(tmp_path: Path) -> None:
    site = load_site(site_with_sounds(tmp_path))
    library = prepare(site, tmp_path, _none_known)
    given = RenderInput(site=site, manager_secret="x",
                        sound_digests={k: a.digest for k, a in library.items()})
    found = {c.name: c for c in classes(given)}
    assert set(found) == {"default", "attente"}
    assert str(found["attente"].directory) == "/usr/share/asterisk/wildix-ast-moh/attente"
    assert found["attente"].audio == library[("attente", "fr")].digest
    assert str(found["default"].directory) == "/usr/share/asterisk/moh"
    renamed = site.sounds[1].model_copy(update={"name": "default"})
    given = RenderInput(site=site.model_copy(update={"sounds": [site.sounds[0], renamed]}),
                        manager_secret="x")
    assert [(c.name, str(c.directory)) for c in classes(given)] == [
        ("default", "/usr/share/asterisk/wildix-ast-moh/default")]


def _offline_apply(tmp_path: Path) -> tuple[Callable[[], subprocess.CompletedProcess[str]],
                                              Path, Path]:
    """`apply --offline --json` of the example site with sounds (in `tmp_path/settings`),
    as a person runs it; the configuration and data folders."""
    path = site_with_sounds(tmp_path / "settings")
    etc, data = tmp_path / "etc", tmp_path / "data"
    etc.mkdir()
    env = {**os.environ, "WILDIX_AST_DB": str(tmp_path / "store.sqlite3"), "NO_COLOR": "1"}
    command = [sys.executable, "-m", "wildix_ast", "apply", str(path), "--etc", str(etc),
               "--data", str(data), "--offline", "--json"]
    return (lambda: subprocess.run(command, capture_output=True, text=True, check=False,
                                   timeout=120, env=env)), etc, data


def test_apply_as_a_person_runs_it_installs_the_sounds(tmp_path: Path) -> None:
    apply, etc, data = _offline_apply(tmp_path)
    result = apply()
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert {"path": "sounds/fr/wildix-ast/accueil.wav", "change": "add"} in report["sounds"]
    assert _format((data / "sounds/fr/wildix-ast/accueil.wav").read_bytes())[:3] == \
        (8000, 1, 2)
    assert "directory = /usr/share/asterisk/wildix-ast-moh/attente" in \
        (etc / "musiconhold.conf").read_text()
    again = apply()
    assert json.loads(again.stdout)["sounds"] == []  # converted once, installed once


def test_a_sound_file_changed_in_place_is_picked_up_by_the_next_apply(
        tmp_path: Path) -> None:
    """Nothing about a sound file but its bytes says it changed: the same name, the same
    size, even the same modification time. The next apply still converts and installs the
    new audio (the audio is known by the digest of the file's content, read every time)."""
    apply, _, data = _offline_apply(tmp_path)
    first = apply()
    assert first.returncode == 0, first.stdout + first.stderr
    installed = data / "sounds/fr/wildix-ast/accueil.wav"
    before = installed.read_bytes()
    source = tmp_path / "settings" / "sons" / "accueil-fr.wav"
    old = source.stat()
    other = tone(tmp_path / "other.wav", 3.0, 660)  # same length, format: same size
    assert other.stat().st_size == old.st_size
    source.write_bytes(other.read_bytes())
    os.utime(source, ns=(old.st_atime_ns, old.st_mtime_ns))
    assert source.stat().st_size == old.st_size and source.stat().st_mtime_ns == old.st_mtime_ns
    again = apply()
    assert again.returncode == 0, again.stdout + again.stderr
    assert {"path": "sounds/fr/wildix-ast/accueil.wav", "change": "change"} in \
        json.loads(again.stdout)["sounds"]
    assert installed.read_bytes() != before
    assert installed.read_bytes() == sound_audio.convert(other.read_bytes(), ".wav", "x").wav


def test_sound_files_are_located_in_the_settings_file_only_for_a_problem(
        tmp_path: Path) -> None:
    """Locating a place in the settings file parses it again (about a second at 10,000
    users): reading and converting sound files that are fine never asks for a place."""
    path = site_with_sounds(tmp_path)
    site = load_site(path)

    def no_locating(loc: tuple[str | int, ...]) -> str:
        raise AssertionError(f"located {loc} without a problem")

    library = prepare(site, tmp_path, _none_known, no_locating)
    assert library  # converted, nothing located
    sound_audio.check_files(site, tmp_path, no_locating)
    (tmp_path / "sons" / "attente.mp3").write_bytes(b"")
    asked: list[tuple[str | int, ...]] = []

    def locate(loc: tuple[str | int, ...]) -> str:
        asked.append(loc)
        return locator(path)(loc)

    with pytest.raises(sound_audio.SoundFileError) as error:
        prepare(site, tmp_path, _none_known, locate)
    assert asked == [("sounds", 1, "files", "fr")]  # the bad file, and it alone
    line = next(n for n, text in enumerate(path.read_text().splitlines(), 1)
                if "attente.mp3" in text)
    assert f"sounds[1].files.fr (site.yaml line {line})" in str(error.value)
