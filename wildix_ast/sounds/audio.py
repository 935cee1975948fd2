"""The sounds pipeline's first step: a site's WAV/MP3 files converted (sox) to what Asterisk
plays, identified by content.

Each file becomes two Asterisk formats, both signed 16-bit mono PCM in a WAV container:
`wav` (8 kHz: what G.711, GSM... channels carry, no resampling at play time) and `wav16`
(16 kHz: G.722 phones keep their wideband quality). Asterisk picks, per call, the format
with the cheapest translation to the channel's codec.

The audio is known by the SHA-256 of the source bytes (and of this conversion's recipe):
the store keeps it under that digest, so a re-import converts only files that changed, and
a store can install its sounds without the source files (`lab up`, rollback).
A file that is missing or that sox cannot decode stops everything before anything is
stored, with the file's place in the settings file.
"""

from __future__ import annotations

import functools
import hashlib
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from wildix_ast.errors import Problem, SettingsError
from wildix_ast.model.site import Site

#: Part of every digest: changing the recipe (rates, formats) converts every file again.
RECIPE = "wildix-ast sox 1: wav 8000/16/1, wav16 16000/16/1"
#: The extensions Asterisk's format_wav reads: `wav` (8 kHz), `wav16` (16 kHz).
FORMATS = {"wav": 8000, "wav16": 16000}
SOX_TIMEOUT = 120  # seconds per file: an hour of music converts in a few seconds
WAV_HEADER = 44  # bytes of a canonical WAV header: anything shorter holds no audio

SoundKey = tuple[str, str]
"""(sound name, language)"""


@dataclass(frozen=True)
class Audio:
    """One converted file: its digest and the bytes of each Asterisk format."""

    digest: str
    wav: bytes
    wav16: bytes

    def formats(self) -> dict[str, bytes]:
        return {"wav": self.wav, "wav16": self.wav16}


SoundLibrary = Mapping[SoundKey, Audio]
"""The converted audio of every file of a site's sounds."""


class SoundFileError(SettingsError):
    """A sound file of the settings file is missing or cannot be decoded (exit code 2)."""


def digest_of(data: bytes) -> str:
    return hashlib.sha256(RECIPE.encode() + b"\0" + data).hexdigest()


def _sox() -> str:
    found = shutil.which("sox")
    if found is None:
        raise SoundFileError("sox is not installed: it converts the site's sounds (Debian "
                             "packages sox and libsox-fmt-mp3; .ci/install-system-packages)")
    return found


def convert(data: bytes, suffix: str, place: str | Callable[[], str]) -> Audio:
    """Convert the bytes of a .wav or .mp3 file; `place` locates it in messages (or says
    where, when asked: locating can cost a parse of the settings file)."""
    sox = _sox()

    def located() -> str:
        return place if isinstance(place, str) else place()

    with tempfile.TemporaryDirectory(prefix="wildix-ast-sound-") as tmp:
        source = Path(tmp) / f"source{suffix.lower()}"
        source.write_bytes(data)
        out: dict[str, bytes] = {}
        for fmt, rate in FORMATS.items():
            target = Path(tmp) / f"out-{fmt}.wav"
            try:
                # -R: the same dither every time, so the same file converts to the same bytes
                done = subprocess.run(
                    [sox, "-q", "-R", str(source), "-r", str(rate), "-c", "1", "-b", "16",
                     "-e", "signed-integer", "-t", "wav", str(target)],
                    capture_output=True, text=True, timeout=SOX_TIMEOUT, check=False)
            except subprocess.TimeoutExpired:
                where = located()
                raise SoundFileError(f"{where}: sox did not finish within {SOX_TIMEOUT} s",
                                     [Problem(where, "conversion timed out")]) from None
            if done.returncode != 0:
                reason = (done.stderr.strip().splitlines() or ["no message"])[-1]
                reason = reason.replace(str(source), "the file").removeprefix("sox FAIL ")
                where = located()
                raise SoundFileError(f"{where}: sox cannot decode it: {reason}",
                                     [Problem(where, f"cannot be decoded ({reason})")])
            converted = target.read_bytes()
            if len(converted) <= WAV_HEADER:
                where = located()
                raise SoundFileError(f"{where}: the file holds no audio",
                                     [Problem(where, "holds no audio")])
            out[fmt] = converted
    return Audio(digest_of(data), out["wav"], out["wav16"])


def _unreadable(path: Path, error: OSError) -> str:
    if isinstance(error, FileNotFoundError):
        return f"{path}: no such file"
    if isinstance(error, IsADirectoryError):
        return f"{path} is a folder, not a sound file"
    if isinstance(error, PermissionError):
        return f"{path}: permission denied"
    return f"{path}: {error.strerror}"


def _read(path: Path, where: Callable[[], str]) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        message = _unreadable(path, e)
    place = where()
    raise SoundFileError(f"{place}: {message}", [Problem(place, message)])


Locate = Callable[[tuple[str | int, ...]], str]


def check_files(site: Site, base_dir: Path, locate: Locate | None = None) -> None:
    """`validate`'s check of the sound files (no conversion: that needs sox and the store):
    every file the site names can be read, all problems reported at once, each located."""
    where = locate or (lambda loc: ".".join(str(p) for p in loc))
    problems: list[Problem] = []
    for index, sound in enumerate(site.sounds):
        for language, name in sound.files.items():
            loc = ("sounds", index, "files", language)  # located only if there is a problem
            path = Path(name) if Path(name).is_absolute() else base_dir / name
            try:
                with path.open("rb") as file:
                    if not file.read(1):
                        problems.append(Problem(where(loc), f"{path} is empty"))
            except OSError as e:
                problems.append(Problem(where(loc), _unreadable(path, e)))
    if len(problems) == 1:
        raise SoundFileError(f"{problems[0].location}: {problems[0].message}", problems)
    if problems:
        raise SoundFileError(f"{len(problems)} sound files cannot be used", problems)


def prepare(site: Site, base_dir: Path, known: Callable[[Iterable[str]], Mapping[str, Audio]],
            locate: Locate | None = None) -> dict[SoundKey, Audio]:
    """Every file of the site's sounds converted (relative paths from `base_dir`, the
    settings file's folder). `known(digests)` gives audio already converted (the store),
    so only new or changed files go through sox. `locate` names a place in the settings
    file (`sounds[0].files.fr (site.yaml line 12)`)."""
    where = locate or (lambda loc: ".".join(str(p) for p in loc))
    sources: dict[SoundKey, tuple[Callable[[], str], bytes, str]] = {}
    for index, sound in enumerate(site.sounds):
        for language, name in sound.files.items():
            # located only when there is something to say (a locator parses the file again)
            place: Callable[[], str] = functools.partial(
                where, ("sounds", index, "files", language))
            path = Path(name) if Path(name).is_absolute() else base_dir / name
            data = _read(path, place)
            sources[(sound.name, language)] = (place, data, path.suffix)
    digests = {key: digest_of(data) for key, (_, data, _) in sources.items()}
    have = dict(known(set(digests.values())))
    library: dict[SoundKey, Audio] = {}
    for key, (place, data, suffix) in sources.items():
        digest = digests[key]
        if digest not in have:
            have[digest] = convert(data, suffix, place)
        library[key] = have[digest]
    return library
