"""musiconhold.conf: hold music classes: `default` (Debian's music, unless the site has a
music-on-hold sound named `default`) and one class per music-on-hold sound of the site
(WMS Sounds), named like the sound, playing its folder (wildix_ast.sounds.install)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from wildix_ast.asterisk.base import ConfigFile, Reload, RenderInput, View, static_modules
from wildix_ast.model.sounds import SoundKind
from wildix_ast.sounds.install import fallback_language, moh_folder

DEFAULT_CLASS = "default"


@dataclass(frozen=True)
class MohClass:
    name: str
    directory: PurePosixPath
    audio: str
    """The digest of the audio its folder holds: new music changes this file, so the class
    is reloaded (res_musiconhold reads its folders only when it loads)."""


def classes(given: RenderInput) -> list[MohClass]:
    language = given.site.system.language_region.language
    found = [MohClass(DEFAULT_CLASS, given.paths.data / "moh", "")]
    for sound in given.site.sounds:
        if sound.kind is not SoundKind.MUSIC_ON_HOLD:
            continue
        music = MohClass(sound.name, given.paths.data / moh_folder(sound.name),
                         given.sound_digests.get(
                             (sound.name, fallback_language(sound, language)), ""))
        if sound.name == DEFAULT_CLASS:
            found[0] = music
        else:
            found.append(music)
    return found


def _view(given: RenderInput) -> View:
    return {"classes": classes(given)}


FILE = ConfigFile(
    name="musiconhold.conf",
    applied_by=Reload("res_musiconhold.so", "module reload res_musiconhold.so", order=20),
    view=_view,
    modules=static_modules("res_musiconhold.so"),
)
