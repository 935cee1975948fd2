"""System prompts per language: which Debian packages a site needs, and the lab's root
filesystem carries them (its cache key follows the package list)."""

from __future__ import annotations

import dataclasses

from wildix_ast.lab.rootfs import LAB
from wildix_ast.model.settings_file import parse_site
from wildix_ast.sounds.prompts import PACKAGED_LANGUAGES, packages, site_languages


def test_the_sites_languages_are_its_own_then_its_users() -> None:
    site = parse_site("""
system: {language_region: {language: fr}}
users:
  - {name: A, extension: "101", email: a@x.io, language: it}
  - {name: B, extension: "102", email: b@x.io, language: en_GB}
  - {name: C, extension: "103", email: c@x.io}
""")
    assert site_languages(site) == ["fr", "en_GB", "it"]
    assert packages(site_languages(site)) == [
        "asterisk-core-sounds-en", "asterisk-core-sounds-en-g722",
        "asterisk-core-sounds-en-wav", "asterisk-core-sounds-fr",
        "asterisk-core-sounds-fr-g722", "asterisk-core-sounds-fr-wav",
        "asterisk-core-sounds-it", "asterisk-core-sounds-it-g722",
        "asterisk-core-sounds-it-wav"]
    assert packages(["de", "nl"]) == []  # Debian has none: callers hear English


def test_the_lab_carries_every_packaged_language_and_its_key_says_so() -> None:
    for language in PACKAGED_LANGUAGES:
        for flavour in ("", "-wav", "-g722"):
            assert f"asterisk-core-sounds-{language}{flavour}" in LAB.packages
    fewer = dataclasses.replace(LAB, packages=tuple(
        p for p in LAB.packages if not p.startswith("asterisk-core-sounds-fr")))
    assert fewer.key() != LAB.key()
