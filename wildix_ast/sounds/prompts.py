"""System prompts per language (WMS Language & region -> "Sound packages").

Asterisk's own prompts (voicemail, "the person at extension...", digits) come from Debian's
`asterisk-core-sounds-<language>-<format>` packages. Without the package of a language,
callers of that language hear the English prompts (Asterisk falls back to `en`). Debian
carries five languages; each in `wav` (8 kHz: G.711, GSM... phones) and `g722` (wideband
phones: no resampling, no loss). Which languages a site needs: its own and its users'.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wildix_ast.model.site import Site

#: Languages Debian ships Asterisk core prompts for (`apt-cache search asterisk-core-sounds`).
PACKAGED_LANGUAGES = ("en", "es", "fr", "it", "ru")
#: Packages per language: the base one (GSM, and the `sounds/<language>` link to the voice's
#: folder, e.g. `fr` -> `fr_CA_f_June`: without it no `fr` folder exists at all), `wav`
#: (signed linear 8 kHz) and `g722` (16 kHz).
FLAVOURS = ("", "-wav", "-g722")


def site_languages(site: Site) -> list[str]:
    """The languages callers of `site` may speak: the PBX's, then its users' (sorted)."""
    default = site.system.language_region.language
    others = sorted({u.language for u in site.users if u.language} - {default})
    return [default, *others]


def base_language(language: str) -> str:
    """`fr_CA` -> `fr`: Asterisk strips dialects when it looks for a prompt."""
    return language.split("_", 1)[0].split("-", 1)[0].lower()


def packages(languages: Iterable[str]) -> list[str]:
    """The Debian packages of the prompts of `languages` (those Debian carries), sorted."""
    wanted = {base_language(lang) for lang in languages} & set(PACKAGED_LANGUAGES)
    return sorted(f"asterisk-core-sounds-{lang}{flavour}" for lang in wanted
                  for flavour in FLAVOURS)

