"""Channel variables are named once, in `wildix_ast/calls/variables.py`: no other file of the
package or its templates writes one as a literal, and every one the rendered dialplan uses
is named there. `WILDIX_AST_*` environment variables are not channel variables."""

from __future__ import annotations

import re
from pathlib import Path

from support.live_site import EXAMPLE

from wildix_ast.asterisk.render import render_site
from wildix_ast.calls import variables
from wildix_ast.calls.mobility import NO_LEG, MobilityLeg
from wildix_ast.model.settings_file import load_site
from wildix_ast.store.vault import MemoryVault, with_secrets

ROOT = Path(__file__).resolve().parents[2]
HOME = ROOT / "wildix_ast" / "calls" / "variables.py"
_LITERAL = re.compile(r"(?<![A-Za-z0-9])_*(WILDIX_(?!AST_)[A-Z0-9_]*)")


def literals(text: str) -> list[str]:
    """The channel-variable names written in `text` (inherited `_`/`__` forms included)."""
    return _LITERAL.findall(text)


def named() -> dict[str, str]:
    """Constant -> channel variable name, as `variables` declares them."""
    return {k: value for k, value in vars(variables).items()
            if k.isupper() and isinstance(value, str)}


def test_the_scanner_finds_channel_variables_and_leaves_environment_variables() -> None:
    text = ('Set(__WILDIX_FORWARDS=1) "WILDIX_GROUP" ${WILDIX_AGI_STATUS} WILDIX_AST_DB '
            "os.environ['WILDIX_AST_LAB_STATE']")
    assert literals(text) == ["WILDIX_FORWARDS", "WILDIX_GROUP", "WILDIX_AGI_STATUS"]


def test_no_channel_variable_is_written_outside_the_variables_module() -> None:
    files = [p for p in (ROOT / "wildix_ast").rglob("*.py") if p != HOME]
    files += [p for p in (ROOT / "templates").rglob("*") if p.is_file()]
    assert len(files) > 100
    found = {f"{p.relative_to(ROOT)}:{n}: {name}"
             for p in files
             for n, line in enumerate(p.read_text(errors="replace").splitlines(), 1)
             for name in literals(line)}
    assert not found, "write these as wildix_ast.calls.variables names:\n" + "\n".join(
        sorted(found))


def test_each_name_is_a_distinct_channel_variable() -> None:
    values = named()
    assert all(v.startswith(variables.PREFIX) and not v.startswith("WILDIX_AST_")
               for v in values.values())
    twice = {v for v in values.values() if list(values.values()).count(v) > 1}
    assert not twice
    # a group (a FastAGI route's answer) only holds names of this module
    for group in (variables.CALL_USER_DECISION, variables.MOBILITY_LEG):
        assert set(group) <= set(values.values()) and len(set(group)) == len(group)


def test_every_variable_the_rendered_dialplan_uses_is_named() -> None:
    files = render_site(with_secrets(load_site(EXAMPLE), MemoryVault()),
                        manager_secret="Mgr-s3cret.Value")
    used = {name for text in (files["extensions.conf"], files["pjsip.conf"])
            for name in literals(text)}
    known = set(named().values())
    # a round-robin call group's global is the prefix and the group's name
    unnamed = {n for n in used - known if not n.startswith(variables.ROUND_ROBIN_PREFIX)}
    assert not unnamed
    assert {variables.GROUP, variables.CALL_TYPE, variables.AGI_STATUS,
            *variables.CALL_USER_DECISION} <= used


def test_the_mobility_route_answers_its_group() -> None:
    leg = MobilityLeg(mobile="+33600000001", delay=5, confirm=True, group="staff",
                      office_did="+33140000101")
    assert tuple(leg.variables()) == variables.MOBILITY_LEG
    assert set(NO_LEG) <= set(variables.MOBILITY_LEG)
