"""Sound files for tests, made with sox (`synth`), and a settings file that uses them."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "site.yaml"


def tone(path: Path, seconds: float, frequency: int, rate: int = 44100,
         channels: int = 2) -> Path:
    """A sine tone file; the format follows the suffix (.wav, .mp3)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["sox", "-q", "-n", "-r", str(rate), "-c", str(channels), str(path),
                    "synth", str(seconds), "sine", str(frequency)], check=True)
    return path


SOUNDS = """\
  - name: accueil
    description: greeting
    files: {fr: sons/accueil-fr.wav, en: sons/welcome-en.mp3}
  - name: attente
    kind: music_on_hold
    files: {fr: sons/attente.mp3}
"""


def site_with_sounds(folder: Path, example: Path = EXAMPLE) -> Path:
    """The example site plus two sounds (a prompt in fr and en, hold music), its files in
    `folder/sons/`: the French prompt lasts 3 s, the English one 1 s."""
    tone(folder / "sons" / "accueil-fr.wav", 3.0, 440)
    tone(folder / "sons" / "welcome-en.mp3", 1.0, 880)
    tone(folder / "sons" / "attente.mp3", 4.0, 330)
    copy_example_sounds(folder)
    text = example.read_text(encoding="utf-8")
    assert text.count("\nsounds:\n") == 1, "the example has one sounds section"
    site = folder / "site.yaml"
    site.write_text(text.replace("\nsounds:\n", "\nsounds:\n" + SOUNDS, 1), encoding="utf-8")
    return site


def copy_example_sounds(folder: Path) -> None:
    """The example's sound files into `folder/sons`, for a copy of the example settings
    file written in `folder` (its sound paths are relative to the file)."""
    target = folder / "sons"
    target.mkdir(parents=True, exist_ok=True)
    for shipped in (EXAMPLE.parent / "sons").glob("*"):
        (target / shipped.name).write_bytes(shipped.read_bytes())
