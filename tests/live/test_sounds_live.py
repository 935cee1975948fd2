"""Sounds on a real Asterisk 22: apply installs a site's converted sounds, and a call plays
the file of the callee's language (the prompt the site brought, and Asterisk's own prompts
from the Debian sound packages), hold music classes play their sound. What Asterisk
plays is read from the files it holds open while it streams (/proc/<pid>/fd)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.live_site import LiveSite, live_site
from support.sound_fixtures import site_with_sounds, tone

from wildix_ast.apply.pipeline import apply_site, site_sounds
from wildix_ast.model.settings_file import load_site
from wildix_ast.model.site import Site

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveSite]:
    with live_site(tmp_path_factory.mktemp("sounds"), "sounds") as site:
        yield site


def opened(live: LiveSite, fragment: str, timeout: float = 5.0) -> tuple[str, bytes]:
    """The path of the first file Asterisk holds open whose path has `fragment`, and its
    bytes read through Asterisk's own descriptor (what it plays, whatever the path holds)."""
    pid = live.lab.pid
    assert pid is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                path = os.readlink(f"/proc/{pid}/fd/{fd}")
                if fragment in path:
                    return path, Path(f"/proc/{pid}/fd/{fd}").read_bytes()
            except OSError:
                continue
        time.sleep(0.02)
    raise AssertionError(f"Asterisk opened no file like {fragment!r} within {timeout} s")


def played(live: LiveSite, extension: str, application: str,
           fragment: str) -> tuple[str, bytes]:
    """Call `extension`'s phone (it answers) and run `application` on the call; the sound
    file Asterisk opens for it, and its bytes."""
    with live.sipp().phone(extension, live.password(extension)) as phone:
        live.lab.cli(f"channel originate PJSIP/{extension} application {application}")
        found = opened(live, fragment)
        live.lab.cli("channel request hangup all")
        phone.uas.wait()
    assert live.wait_no_channels() == 0
    return found


def plays(live: LiveSite, extension: str, application: str, fragment: str) -> str:
    """The path of the sound file Asterisk opens (`played`)."""
    return played(live, extension, application, fragment)[0]


def sounds_site(folder: Path) -> tuple[Site, Path]:
    site_file = site_with_sounds(folder)
    site = load_site(site_file)
    # 102 speaks Italian: the site's prompt has no Italian file, Asterisk's prompts do
    users = [u.model_copy(update={"language": "it"}) if u.extension == "102" else u
             for u in site.users]
    return site.model_copy(update={"users": users}), site_file


@pytest.fixture(scope="module")
def applied(live: LiveSite) -> Site:
    site, site_file = sounds_site(live.work / "settings")
    sounds = site_sounds(site, site_file, live.store)
    shown = apply_site(site, live.store, live.target, sounds=sounds, dry_run=True)
    paths = {c.path: c.kind for c in shown.plan.sound_files}
    assert paths["sounds/fr/wildix-ast/accueil.wav"] == "add"
    assert paths["wildix-ast-moh/attente/attente.wav16"] == "add"
    assert "+ sounds/en/wildix-ast/accueil.wav16 (" in shown.plan.diff()
    assert not (live.lab.data_dir / "sounds/fr/wildix-ast/accueil.wav").exists()  # dry run
    outcome = apply_site(site, live.store, live.target, sounds=sounds)
    assert outcome.report is not None and outcome.report.verified
    assert (live.lab.data_dir / "sounds/fr/wildix-ast/accueil.wav").is_file()
    assert live.store.stored_sounds() == sounds
    return site


def test_a_prompt_plays_in_the_callees_language(live: LiveSite, applied: Site) -> None:
    assert plays(live, "101", "Playback wildix-ast/accueil", "accueil.").endswith(
        "/sounds/fr/wildix-ast/accueil.wav")
    assert plays(live, "100", "Playback wildix-ast/accueil", "accueil.").endswith(
        "/sounds/en/wildix-ast/accueil.wav")
    # no Italian file: the PBX's language (French), not Asterisk's English fallback
    assert plays(live, "102", "Playback wildix-ast/accueil", "accueil.").endswith(
        "/data/sounds/wildix-ast/accueil.wav")


def test_system_prompts_play_in_the_callees_language(live: LiveSite, applied: Site) -> None:
    assert "/fr_CA_f_June/vm-intro." in plays(live, "101", "Playback vm-intro", "vm-intro.")
    assert "/it_IT_m_Carlo/vm-intro." in plays(live, "102", "Playback vm-intro", "vm-intro.")
    assert "/en_US_f_Allison/vm-intro." in plays(live, "100", "Playback vm-intro",
                                                 "vm-intro.")


def test_hold_music_class_plays_its_sound(live: LiveSite, applied: Site) -> None:
    classes = live.lab.cli("moh show classes")
    assert "Class: attente" in classes
    assert "/srv/wildix-ast/data/wildix-ast-moh/attente" in classes
    assert "wildix-ast-moh/attente/attente." in plays(live, "101", "MusicOnHold attente,5",
                                                      "attente.")


def test_new_music_is_installed_and_its_class_reloaded(live: LiveSite, applied: Site) -> None:
    folder = live.work / "settings"
    tone(folder / "sons" / "attente.mp3", 2.0, 523)
    site_file = folder / "site.yaml"
    sounds = site_sounds(applied, site_file, live.store)
    outcome = apply_site(applied, live.store, live.target, sounds=sounds)
    assert outcome.report is not None
    assert {c.path for c in outcome.plan.sound_files} == {
        "wildix-ast-moh/attente/attente.wav", "wildix-ast-moh/attente/attente.wav16",
        "sounds/fr/wildix-ast/attente.wav", "sounds/fr/wildix-ast/attente.wav16",
        "sounds/wildix-ast/attente.wav", "sounds/wildix-ast/attente.wav16"}
    assert "res_musiconhold.so" in [r.module for r in outcome.report.reloads]
    again = apply_site(applied, live.store, live.target, sounds=sounds)
    assert not again.plan.has_changes
