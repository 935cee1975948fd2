"""WMS Sounds ('Sons'): prompts and music on hold a site brings as WAV or MP3 files.

A sound has one name and a file per language; IVRs, play-sound applications and
music-on-hold classes refer to it by name. Asterisk picks the file in the caller's language
(the channel's `CHANNEL(language)`), the site's language otherwise. Converting the files to
what Asterisk plays and installing them is the sounds pipeline's job; this module is the
model only."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, Field

from wildix_ast.model.common import STRICT
from wildix_ast.model.fields import FreeText, Identifier, Language, Width, pattern

SourceFile = Annotated[str, Width(255), Field(min_length=1, max_length=255), pattern(
    r"[^\x00-\x1f\x7f]*\.(?:wav|WAV|mp3|MP3)", "path of a .wav or .mp3 file")]
"""Relative paths are read from the settings file's folder."""


class SoundKind(StrEnum):
    PROMPT = "prompt"
    MUSIC_ON_HOLD = "music_on_hold"


class Sound(BaseModel):
    model_config = STRICT

    name: Identifier
    description: FreeText | None = None
    kind: SoundKind = SoundKind.PROMPT
    files: Annotated[dict[Language, SourceFile], Field(min_length=1)]
    """One file per language, e.g. `{fr: sons/accueil.wav, en: sons/welcome.mp3}`."""
