"""Dialplan procedures, time frames, call groups, IVRs and incoming calls: the model, its
validation (every problem located), the store round trip and the rendered dialplan (the
live calls are in test_procedures_calls.py)."""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_settings import problems

from wildix_ast.asterisk.procedure_contexts import application_steps, did_patterns, to_e164
from wildix_ast.asterisk.render import render_site
from wildix_ast.model.call_classes import DialplanGeneral, NumberingPlan, Shape
from wildix_ast.model.dialplan_rules import covers
from wildix_ast.model.procedures import CheckTimeFrame, DialUser, Greeting, Hangup, VoicemailApp
from wildix_ast.model.settings_file import parse_site
from wildix_ast.model.site import Site
from wildix_ast.model.trunks import did_bounds
from wildix_ast.store import open_store
from wildix_ast.store.vault import MemoryVault, with_secrets

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "site.yaml"
Data = dict[str, Any]


def example() -> Data:
    data: Data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    return data


def problems_after(change: Callable[[Data], None]) -> list[str]:
    data = example()
    change(data)
    return problems(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))


def main_apps(data: Data) -> list[Data]:
    apps: list[Data] = data["dialplan"]["procedures"][1]["numbers"][0]["applications"]
    return apps


def located(found: list[str], where: str, message: str) -> bool:
    return any(p.startswith(where) and message in p for p in found)


def test_the_example_uses_every_application_and_keeps_their_order() -> None:
    site = parse_site(EXAMPLE.read_text(encoding="utf-8"))
    used = {app.app for p in site.dialplan.procedures for n in p.numbers
            for app in n.applications}
    assert used == {"answer", "set_call_class", "check_time_frame", "dial_user", "call_group",
                    "ivr", "voicemail", "dial_trunk", "dial_trunk_group",
                    "set_caller_number", "set_caller_name", "correct_called_number",
                    "set_language", "play_sound", "wait", "goto_procedure", "hangup"}
    assert {g.strategy for g in site.call_groups} == {"ring_all", "hunt", "random",
                                                      "round_robin"}
    main = site.dialplan.procedures[1]
    assert [n.number for n in main.numbers] == ["+33140000000", "+331400002XX"]
    assert isinstance(main.numbers[0].applications[1], CheckTimeFrame)
    assert isinstance(site.dialplan.procedures[2].numbers[0].applications[2], Hangup)


def test_store_round_trip_keeps_numbers_applications_and_new_sections(tmp_path: Path
                                                                       ) -> None:
    site = parse_site(EXAMPLE.read_text(encoding="utf-8"))
    with open_store(str(tmp_path / "store.sqlite3")) as store:
        store.import_site(site)
        back = store.export_site()
        assert back.dialplan.procedures == site.dialplan.procedures
        assert (back.time_frames, back.call_groups, back.ivrs) == (
            site.time_frames, site.call_groups, site.ivrs)
        assert [t.dids for t in back.trunks] == [t.dids for t in site.trunks]
        # a call-time look-up gets the numbers too (user 100's procedure is `reception`)
        reception = store.procedure_of("100")
        assert reception is not None and reception.name == "reception"
        assert reception == site.dialplan.procedures[0]
        # reordered applications come back reordered
        procedures = list(site.dialplan.procedures)
        number = procedures[1].numbers[0]
        swapped = number.model_copy(update={"applications": number.applications[::-1]})
        procedures[1] = procedures[1].model_copy(
            update={"numbers": [swapped, *procedures[1].numbers[1:]]})
        changed = site.model_copy(update={"dialplan": site.dialplan.model_copy(
            update={"procedures": procedures})})
        assert store.import_site(changed).revision > 0
        assert store.export_site().dialplan.procedures[1].numbers[0] == swapped


@pytest.mark.parametrize(("change", "where", "message"), [
    (lambda d: main_apps(d)[4].update(user="555"),
     "dialplan.procedures[1].numbers[0].applications[4].user",
     "user '555' is not defined in users"),
    (lambda d: main_apps(d)[3].update(call_group="nope"),
     "dialplan.procedures[1].numbers[0].applications[3].call_group",
     "call group 'nope' is not defined"),
    (lambda d: main_apps(d)[2].update(ivr="nope"),
     "dialplan.procedures[1].numbers[0].applications[2].ivr", "IVR 'nope' is not defined"),
    (lambda d: main_apps(d)[1].update(time_frame="nope"),
     "dialplan.procedures[1].numbers[0].applications[1].time_frame",
     "time frame 'nope' is not defined"),
    (lambda d: main_apps(d)[1].update(if_no_match="nope"),
     "dialplan.procedures[1].numbers[0].applications[1].if_no_match",
     "dialplan procedure 'nope' is not defined"),
    (lambda d: d["dialplan"]["procedures"][3]["numbers"][0]["applications"][4].update(
        trunk="nope"), "dialplan.procedures[3].numbers[0].applications[4].trunk",
     "trunk 'nope' is not defined"),
    (lambda d: d["dialplan"]["procedures"][3]["numbers"][0]["applications"][5].update(
        trunk_group="nope"), "dialplan.procedures[3].numbers[0].applications[5].trunk_group",
     "trunk group 'nope' is not defined"),
    (lambda d: d["dialplan"]["procedures"][1]["numbers"][1]["applications"][1].update(
        sound="nope"), "dialplan.procedures[1].numbers[1].applications[1].sound",
     "sound 'nope' is not defined"),
    (lambda d: d["ivrs"][0].update(prompt="nope"), "ivrs[0].prompt",
     "sound 'nope' is not defined"),
    (lambda d: d["ivrs"][0]["on_timeout"].update(call_group="nope"),
     "ivrs[0].on_timeout.call_group", "call group 'nope' is not defined"),
    (lambda d: d["ivrs"][0]["options"][5].update(procedure="nope"),
     "ivrs[0].options[5].procedure", "dialplan procedure 'nope' is not defined"),
    (lambda d: d["call_groups"][0]["members"].append("555"), "call_groups[0].members[2]",
     "user '555' is not defined"),
    (lambda d: d["trunks"][0].update(procedure="nope"), "trunks[0].procedure",
     "dialplan procedure 'nope' is not defined"),
    (lambda d: d["call_groups"].append(dict(d["call_groups"][0])), "call_groups[4].name",
     "call group 'ventes' already defined at call_groups[0]"),
    (lambda d: d["time_frames"].append(dict(d["time_frames"][0])), "time_frames[1].name",
     "time frame 'bureau' already defined"),
    (lambda d: d["ivrs"].append(copy.deepcopy(d["ivrs"][0])), "ivrs[1].name",
     "IVR 'accueil' already defined"),
    # numbers: duplicates, shadowed by an earlier pattern
    (lambda d: d["dialplan"]["procedures"][1]["numbers"].append(
        copy.deepcopy(d["dialplan"]["procedures"][1]["numbers"][0])),
     "dialplan.procedures[1].numbers[2].number", "already listed at numbers[0]"),
    (lambda d: d["dialplan"]["procedures"][1]["numbers"].append(
        {"number": "+3314000025X", "applications": [{"app": "hangup"}]}),
     "dialplan.procedures[1].numbers[2].number",
     "'+3314000025X' is never reached: '+331400002XX' (numbers[1])"),
    (lambda d: d["dialplan"]["procedures"][2]["numbers"].append(
        {"number": "+33140000000", "applications": [{"app": "hangup"}]}),
     "dialplan.procedures[2].numbers[1].number", "never reached: '+X.'"),
    (lambda d: d["dialplan"]["procedures"][1]["numbers"][0].update(number="+33[9-1"),
     "dialplan.procedures[1].numbers[0].number", "not a valid called number"),
    # loops
    (lambda d: d["dialplan"]["procedures"][2]["numbers"][0]["applications"].insert(
        0, {"app": "goto_procedure", "procedure": "main"}),
     "dialplan.procedures[", "go-to loop between procedures: "),
    # targets that cannot take the call
    (lambda d: main_apps(d)[4].update(user="150"),
     "dialplan.procedures[1].numbers[0].applications[4].user", "user 150 (room) has no "
     "mailbox"),
    (lambda d: d["call_groups"][0]["members"].append("701"), "call_groups[0].members[2]",
     "user 701 (park_orbit) has no phone"),
    (lambda d: d["sounds"][1].update(kind="music_on_hold"),
     "dialplan.procedures[2].numbers[0].applications[0].sound", "is music on hold"),
    # trunks
    (lambda d: d["trunks"][1].update(dids=["+33140000250-260"]), "trunks[1].dids[0]",
     "DIDs +33140000250-260 overlap +33140000000-299 (trunks[0].dids[0])"),
    (lambda d: d["trunks"][1].update(procedure="users"), "trunks[1].procedure",
     "cannot enter the users' procedure"),
    # an outside caller has no group: a trunk dial it reaches needs a class first
    (lambda d: main_apps(d).insert(0, {"app": "dial_trunk", "trunk": "secours"}),
     "dialplan.procedures[1].numbers[0].applications[0]", "takes outside callers (from a "
     "trunk) and dials a trunk without a class"),
    (lambda d: d["trunks"][1].update(dids=["+33140000399-300"]), "trunks[1]",
     "ends before it starts"),
    # time frames, call groups, IVRs
    (lambda d: d["time_frames"][0]["weekly"][0].update(end="08:00"),
     "time_frames[0].weekly[0]", "end 08:00 is not after start 09:00"),
    (lambda d: d["time_frames"][0]["weekly"][0].update(start=570),
     "time_frames[0].weekly[0].start", "write times in quotes"),
    (lambda d: d["time_frames"][0]["holidays"][1].update(until="2027-08-01"),
     "time_frames[0].holidays[1]", "is before date"),
    (lambda d: d["call_groups"][0]["members"].append("101"), "call_groups[0]",
     "member 101 listed twice"),
    (lambda d: d["ivrs"][0]["options"][1].update(digit="1"), "ivrs[0]", "key 1 used twice"),
    (lambda d: d["ivrs"][0]["options"][1].update(user="101"), "ivrs[0].options[1]",
     "give exactly one of"),
    (lambda d: main_apps(d)[1].pop("if_no_match"),
     "dialplan.procedures[1].numbers[0].applications[1]", "give if_match or if_no_match"),
    (lambda d: d["dialplan"]["procedures"][3]["numbers"][0]["applications"][2].update(
        name="Acme, Paris"), "dialplan.procedures[3].numbers[0].applications[2]",
     "not a valid caller name"),
])
def test_problems_are_located(change: Callable[[Data], None], where: str,
                              message: str) -> None:
    found = problems_after(change)
    assert located(found, where, message), found


def test_a_trunk_dial_an_outside_caller_reaches_needs_a_class_first() -> None:
    """Reached through a go-to (ferme -> mobiles) or an IVR's procedure key, not only as a
    trunk's own procedure; a phone's procedure may dial without one (its caller's group is
    checked by the class it sets, or the administrator chose so)."""
    unclassed = "takes outside callers (from a trunk) and dials a trunk without a class"

    def drop_class(data: Data) -> None:
        data["dialplan"]["procedures"][3]["numbers"][0]["applications"].pop(0)

    def valid(change: Callable[[Data], None]) -> bool:
        data = example()
        change(data)
        return bool(parse_site(yaml.safe_dump(data, allow_unicode=True, sort_keys=False)))

    assert valid(drop_class)  # mobiles: only phones reach it

    def through_goto(data: Data) -> None:
        drop_class(data)
        data["dialplan"]["procedures"][2]["numbers"][0]["applications"].insert(
            0, {"app": "goto_procedure", "procedure": "mobiles"})

    found = problems_after(through_goto)
    assert located(found, "dialplan.procedures[3].numbers[0].applications[3]", unclassed)

    def through_ivr(data: Data) -> None:
        drop_class(data)
        data["ivrs"][0]["options"][5].update(procedure="mobiles")

    found = problems_after(through_ivr)
    assert located(found, "dialplan.procedures[3].numbers[0].applications[3]", unclassed)
    # classed: the example as it is takes a trunk's caller into mobiles through its IVR
    assert valid(lambda d: d["ivrs"][0]["options"][5].update(procedure="mobiles"))


def test_validate_refuses_an_unclassed_trunk_dial_located_with_exit_2(tmp_path: Path
                                                                      ) -> None:
    data = example()
    main_apps(data).insert(0, {"app": "dial_trunk", "trunk": "secours"})
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    result = subprocess.run([sys.executable, "-m", "wildix_ast", "validate", str(path)],
                            capture_output=True, text=True, check=False, timeout=120,
                            env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"})
    assert result.returncode == 2
    assert "Traceback" not in result.stdout + result.stderr
    assert re.search(r"dialplan\.procedures\[1\]\.numbers\[0\]\.applications\[0\] "
                     r"\(site\.yaml line \d+\): procedure 'main' takes outside callers",
                     result.stderr), result.stderr


def test_a_reference_problem_and_a_field_problem_come_in_one_pass() -> None:
    def change(data: Data) -> None:
        main_apps(data)[3].update(call_group="nope")
        data["ivrs"][0].update(timeout=0)

    found = problems_after(change)
    assert located(found, "ivrs[0].timeout", "greater than or equal to 1")
    assert located(found, "dialplan.procedures[1].numbers[0].applications[3].call_group",
                   "not defined")


@pytest.mark.parametrize(("wide", "narrow", "expected"), [
    ("X.", "1XX", True), ("1XX", "1XX", True), ("1XX", "X.", False), ("+X.", "+33X", True),
    ("+33X.", "+33", False), ("[1-5]X", "3X", True), ("3X", "[1-5]X", False),
    ("1X.", "1X", False), ("1X.", "1XX.", True), ("NXX", "1XX", False),
])
def test_covers(wide: str, narrow: str, expected: bool) -> None:
    assert covers(Shape.parse(wide), Shape.parse(narrow)) is expected


@pytest.mark.parametrize(("did", "patterns"), [
    ("+33140000000", ["33140000000"]),
    ("+33140000000-299", ["331400000XX", "331400001XX", "331400002XX"]),
    ("+33140000105-123", ["33140000105", "33140000106", "33140000107", "33140000108",
                          "33140000109", "3314000011X", "33140000120", "33140000121",
                          "33140000122", "33140000123"]),
    ("+3314000-99", ["33140XX"]),
])
def test_did_ranges_become_the_fewest_patterns(did: str, patterns: list[str]) -> None:
    first, last, digits = did_bounds(did)
    assert did_patterns(first, last, digits) == patterns
    # every number of the range matches exactly one pattern, no other number does
    for number in range(first - 3, last + 4):
        text = str(number)
        matching = [p for p in patterns if len(p) == len(text)
                    and all(c in ("X", d) for c, d in zip(p, text, strict=True))]
        assert len(matching) == (1 if first <= number <= last else 0)


def rendered() -> str:
    site = with_secrets(parse_site(EXAMPLE.read_text(encoding="utf-8")), MemoryVault())
    return render_site(site, manager_secret="Mgr-s3cret.Value")["extensions.conf"]


def section(text: str, name: str) -> list[str]:
    body = text.split(f"\n[{name}]\n", 1)[1].split("\n[", 1)[0]
    return [line for line in body.splitlines() if line and not line.startswith(";")]


def test_the_rendered_dialplan_follows_the_model() -> None:
    text = rendered()
    assert section(text, "proc-main") == ["include => wildix-emergency",
                                          "include => wildix-pn-main-0",
                                          "include => wildix-pn-main-1",
                                          "include => wildix-extensions",
                                          "include => wildix-services"]
    main = section(text, "wildix-pn-main-0")
    assert main[0] == "exten => +33140000000,1,Set(WILDIX_CALLED=${EXTEN})"
    assert main[1:4] == [
        " same => n,Set(CHANNEL(language)=fr)",
        " same => n,Gosub(wildix-tf-bureau,s,1)",
        ' same => n,GotoIf($["${GOSUB_RETVAL}" = "0" & ${DIALPLAN_EXISTS(proc-ferme,'
        '${WILDIX_CALLED},1)}]?proc-ferme,${WILDIX_CALLED},1)']
    assert main[-1] == " same => n(end),Hangup()"
    assert section(text, "wildix-pn-main-1")[0].startswith("exten => _+331400002XX,1,")
    frame = section(text, "wildix-tf-bureau")
    assert " same => n,GotoIf($[${WILDIX_TODAY} >= 20270802 & ${WILDIX_TODAY} <= 20270820]" \
        "?closed)" in frame
    assert " same => n,GotoIfTime(14:00-18:00,mon&tue&wed&thu&fri,*,*,Europe/Paris?open)" \
        in frame
    ring_all = section(text, "wildix-cg-standard")
    assert " same => n,Dial(${WILDIX_CG:1},30)" in ring_all
    hunt = "\n".join(section(text, "wildix-cg-ventes"))
    assert hunt.index("Dial(PJSIP/101,") < hunt.index("Dial(PJSIP/102,")
    assert "RAND(0,1)" in "\n".join(section(text, "wildix-cg-direction"))
    assert "GLOBAL(WILDIX_RR_support)" in "\n".join(section(text, "wildix-cg-support"))
    ivr = section(text, "wildix-ivr-accueil")
    assert " same => n(prompt),Background(wildix-ast/accueil-svi)" in ivr
    assert "exten => 1,1,Gosub(wildix-cg-ventes,s,1)" in ivr
    assert "exten => 9,1,VoiceMail(101@default,u)" in ivr
    incoming = "\n".join(section(text, "wildix-in-operateur"))
    assert "Set(__WILDIX_CALLTYPE=external)" in incoming
    assert section(text, "wildix-indid-operateur") == [
        "include => wildix-did", "include => wildix-inrange-operateur"]


def test_applications_render_their_steps() -> None:
    site = parse_site(EXAMPLE.read_text(encoding="utf-8"))
    # a meeting room has no mailbox: the call-user subroutine gets none
    assert application_steps(site, DialUser(app="dial_user", user="150"), 0) == [
        "Gosub(wildix-call-user,s,1(150,))", 'GotoIf($["${DIALSTATUS}" = "ANSWER"]?end)']
    busy = VoicemailApp(app="voicemail", user="102", greeting=Greeting.BUSY)
    assert application_steps(site, busy, 0)[0] == "VoiceMail(102@default,b)"


def test_numbers_from_a_provider_become_e164() -> None:
    steps = to_e164(NumberingPlan.of(DialplanGeneral(), "33"), "N", "n")
    lines = [s if isinstance(s, str) else s[1] for s in steps]
    assert "Set(N=+${N:2})" in lines and "Set(N=+33${N:1})" in lines
    italy = [s if isinstance(s, str) else s[1]
             for s in to_e164(NumberingPlan.of(DialplanGeneral(), "39"), "N", "n")]
    assert "Set(N=+39${N})" in italy
    assert len(italy) == len(lines)


def test_site_without_the_new_sections_is_unchanged() -> None:
    assert Site().time_frames == [] and Site().ivrs == [] and Site().call_groups == []


def test_an_office_did_written_nationally_is_reached_in_e164() -> None:
    from wildix_ast.asterisk.user_contexts import e164

    plan = NumberingPlan.of(DialplanGeneral(), "33")
    assert e164(plan, "0140000101") == "+33140000101"
    assert e164(plan, "+33140000101") == "+33140000101"
    assert e164(plan, "3631") == "3631"  # short numbers stay as they are
