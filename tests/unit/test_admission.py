"""The admission point in the rendered dialplan (issue 16, part 1), without a lab: every
extension whose pattern can match any character admits the number first, every trunk Dial()
filters its target again, and the settings boundary refuses Dial-string syntax in the numbers
a forward or a mobility leg dials. tests/live/test_admission_live.py shows it on live calls."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from support.examples import examples

from wildix_ast.asterisk.render import render_site
from wildix_ast.model.preferences import Preferences
from wildix_ast.model.settings_file import load_site
from wildix_ast.model.site import Site
from wildix_ast.model.users import User
from wildix_ast.store.vault import MemoryVault, with_secrets

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "site.yaml"
DIAL_SYNTAX = ["&", "@", "/", ",", "^", "(", ")", "$", "{", "}", ";", " ", '"', "\x01", "\n",
               "${EXTEN}", "$[1+1]", "|", "#x"]


def rendered(country: str) -> str:
    data = load_site(EXAMPLE).model_dump()
    data["system"]["language_region"]["country_code"] = country
    site = with_secrets(Site.model_validate(data), MemoryVault())
    return render_site(site, manager_secret="Mgr-s3cret.Value")["extensions.conf"]


def extensions(text: str) -> list[tuple[str, str, list[str]]]:
    """(context, extension, its steps) of a rendered extensions.conf."""
    found: list[tuple[str, str, list[str]]] = []
    context = ""
    for line in text.splitlines():
        if line.startswith("["):
            context = line.strip("[]")
        elif line.startswith("exten => "):
            name, _, rest = line.removeprefix("exten => ").partition(",")
            priority, _, app = rest.partition(",")
            if priority != "hint":
                found.append((context, name, [app]))
        elif line.startswith(" same => ") and found:
            found[-1][2].append(line.removeprefix(" same => ").partition(",")[2])
    return found


@pytest.mark.parametrize("country", ["33", "39"])
def test_every_open_ended_extension_admits_the_number_first(country: str) -> None:
    found = extensions(rendered(country))
    open_ended = [(c, n, s) for c, n, s in found if n.startswith("_") and n.endswith((".", "!"))]
    assert len(open_ended) >= 20  # number tables, procedures, services, trunk entries
    for context, name, steps in open_ended:
        assert steps[0] == "Set(WILDIX_DIALLED=${EXTEN})", (context, name)
        assert re.fullmatch(r"Gosub\(wildix-admit,(number|code),1\)", steps[1]), (context, name)
    # the feature codes (and only they) admit '*' and '#'
    kinds = {(c, s[1]) for c, _, s in open_ended}
    assert {c for c, k in kinds if k.endswith(",code,1)")} == {"wildix-services"}
    # transfer contexts hold no open-ended pattern at all: a REFER to anything but
    # digits finds nothing (404) before the caller is moved
    assert not [n for c, n, _ in found if c.startswith("wildix-transfer-") and
                not re.fullmatch(r"_?[0-9XZN+\[\]*#-]+", n)]


@pytest.mark.parametrize("country", ["33", "39"])
def test_every_trunk_dial_filters_its_target(country: str) -> None:
    text = rendered(country)
    dials = [line.partition(",")[2] for line in text.splitlines() if "Dial(" in line]
    trunk_dials = [d for d in dials if "@trunk-" in d]
    assert trunk_dials
    assert all(d.startswith("Dial(PJSIP/${FILTER(+0-9,${DEST})}@trunk-") for d in trunk_dials)
    assert "Set(DEST=${FILTER(+0-9,${ARG1})})" in text
    # the admission subroutine itself: digits after an optional '+', else 404
    assert 'GotoIf(${REGEX("^[+]?[0-9]{1,32}$" ${WILDIX_DIALLED})}?ok)' in text


@settings(max_examples=examples(60), derandomize=True, database=None)
@given(st.sampled_from(["0140000000", "+33612345678", "0044201234567"]),
       st.sampled_from(DIAL_SYNTAX))
def test_forward_and_mobile_numbers_refuse_dial_syntax(number: str, syntax: str) -> None:
    """What a forward or a mobility leg dials comes from the store: its boundary refuses
    anything but digits (and VOICEMAIL for a forward)."""
    for value in (number + syntax, syntax + number, number[:4] + syntax + number[4:]):
        with pytest.raises(ValidationError):
            Preferences.model_validate({"external": {"forward_always": value}})
        with pytest.raises(ValidationError):
            User.model_validate({"name": "A", "extension": "104", "email": "a@b.fr",
                                 "mobile": value})
