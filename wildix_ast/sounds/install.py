"""The sounds pipeline's last step: where a site's converted sounds go on the Asterisk host.

Asterisk looks a prompt `wildix-ast/<name>` up under its sounds folder in the channel's
language first, dialect stripped (`fr_CA`, then `fr`), then without a language, then in
`en` (main/file.c `fileexists_core`, with asterisk.conf's default `languageprefix = yes`:
the language goes before the whole path, `sounds/fr/wildix-ast/<name>.wav`). So each file
of a sound lands in its language's folder, and the file in the PBX's language (else the
first one) also without a language: a caller whose language the sound lacks hears the
PBX's, as in WMS, not English.

Music-on-hold sounds also get a folder of their own (`<data>/wildix-ast-moh/<name>/`), the
directory of their class in musiconhold.conf: a `files` class plays every file of its
folder.

Everything here is under folders wildix-ast owns (`sounds/*/wildix-ast/`,
`sounds/wildix-ast/`, `wildix-ast-moh/`): a file found there that the site no longer has is
removed. Debian's language folders are links to its prompt packages (`sounds/fr` and
`sounds/fr_CA` both lead to `fr_CA_f_June`): one file shows under several of those names,
so files are told apart by where they really are.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from wildix_ast.errors import WildixError
from wildix_ast.files import write_atomic_bytes
from wildix_ast.model.sounds import Sound, SoundKind
from wildix_ast.sounds.audio import Audio, SoundKey

MOH_FOLDER = "wildix-ast-moh"
#: Sound files are read by Asterisk only; nothing in them is secret.
MEDIA_MODE = 0o644
#: Asterisk runs as its own user: it must get through every folder to the files.
FOLDER_MODE = 0o755

MediaKind = Literal["add", "change", "remove"]

SOUND_FOLDER = "wildix-ast"
"""Under Asterisk's sounds folder and each language's (`<sounds>/fr/wildix-ast/...`)."""


@dataclass(frozen=True)
class SoundFileChange:
    """One sound file to write or remove, relative to Asterisk's data folder."""

    path: str
    kind: MediaKind
    old: bytes | None
    new: bytes | None


def fallback_language(sound: Sound, site_language: str) -> str:
    """The language whose file plays when the caller's is missing."""
    return site_language if site_language in sound.files else next(iter(sound.files))


def moh_folder(name: str) -> str:
    return f"{MOH_FOLDER}/{name}"


def _language_file(name: str, language: str, fmt: str) -> str:
    return f"sounds/{language}/{SOUND_FOLDER}/{name}.{fmt}"


def files_to_install(sounds: list[Sound], site_language: str,
                audio: Mapping[SoundKey, Audio]) -> dict[str, bytes]:
    """Path under the data folder -> bytes, for every sound file of the site."""
    out: dict[str, bytes] = {}
    for sound in sounds:
        missing = [lang for lang in sound.files if (sound.name, lang) not in audio]
        if missing:
            raise WildixError(
                f"sound {sound.name!r} ({', '.join(missing)}) has no converted audio in the "
                "store: import or apply the settings file that brings its files")
        fallback = audio[(sound.name, fallback_language(sound, site_language))]
        for language in sound.files:
            for fmt, data in audio[(sound.name, language)].formats().items():
                out[_language_file(sound.name, language, fmt)] = data
        for fmt, data in fallback.formats().items():
            out[f"sounds/{SOUND_FOLDER}/{sound.name}.{fmt}"] = data
            if sound.kind is SoundKind.MUSIC_ON_HOLD:
                out[f"{moh_folder(sound.name)}/{sound.name}.{fmt}"] = data
    return out


def library_from_files(digests: Mapping[SoundKey, str],
                       sound_files: Mapping[str, bytes]) -> dict[SoundKey, Audio] | None:
    """`files_to_install` backwards: the converted audio of each (sound, language) whose audio
    digest `digests` gives, read from the sound files `sound_files` installed (a rollback gives
    the store back the audio of the generation it restores). None when a file is missing."""
    library: dict[SoundKey, Audio] = {}
    for (name, language), digest in digests.items():
        wav = sound_files.get(_language_file(name, language, "wav"))
        wav16 = sound_files.get(_language_file(name, language, "wav16"))
        if wav is None or wav16 is None:
            return None
        library[(name, language)] = Audio(digest, wav, wav16)
    return library


def _owned(root: Path) -> list[Path]:
    """Files now in the folders wildix-ast owns under `root`."""
    found: list[Path] = []
    for pattern in (f"sounds/*/{SOUND_FOLDER}/*", f"sounds/{SOUND_FOLDER}/*",
                    f"{MOH_FOLDER}/*/*"):
        found += [p for p in root.glob(pattern) if p.is_file() and not p.name.startswith(".")]
    return found


def plan_sound_files(root: Path, wanted: Mapping[str, bytes]) -> tuple[SoundFileChange, ...]:
    """What writing `wanted` under `root` changes (files compared byte for byte)."""
    changes: list[SoundFileChange] = []
    for path in sorted(wanted):
        try:
            old: bytes | None = (root / path).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            old = None
        if old != wanted[path]:
            changes.append(SoundFileChange(path, "add" if old is None else "change", old,
                                       wanted[path]))
    # A wanted file reached through another link is no file to remove: removing it would
    # remove the wanted one, and every apply would put it back.
    seen = {(root / path).resolve() for path in wanted}
    for found in sorted(_owned(root)):
        real = found.resolve()
        if real in seen:
            continue
        seen.add(real)
        changes.append(SoundFileChange(found.relative_to(root).as_posix(), "remove",
                                   found.read_bytes(), None))
    return tuple(changes)


def _make_folders(folder: Path) -> None:
    """Create `folder` and its missing parents with FOLDER_MODE: mkdir's mode is cut by the
    umask, and the Ansible module runs wildix-ast under 077."""
    missing: list[Path] = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):
            path.mkdir()
        os.chmod(path, FOLDER_MODE)


def put_sound_files(root: Path, contents: Mapping[str, bytes | None]) -> None:
    """Write (atomically) or remove each file; folders left empty are removed."""
    for path, data in contents.items():
        target = root / path
        if data is None:
            with contextlib.suppress(FileNotFoundError):
                target.unlink()
            with contextlib.suppress(OSError):
                target.parent.rmdir()  # only when empty
            continue
        _make_folders(target.parent)
        write_atomic_bytes(target, data, mode=MEDIA_MODE)


def describe(changes: tuple[SoundFileChange, ...]) -> list[str]:
    """Plan lines: `+ sounds/fr/wildix-ast/accueil.wav (12.3 kB)`."""
    sign = {"add": "+", "change": "~", "remove": "-"}
    return [f"{sign[c.kind]} {c.path} ({len(c.new if c.new is not None else c.old or b'')}"
            " bytes)" for c in changes]
