"""Call classes, number normalisation, ACL groups, trunks: the model and its validation
(the live calls are in test_routing_calls.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_render import ASTERISKLINT, asterisklint
from test_settings import problems

from wildix_ast.asterisk import by_name
from wildix_ast.asterisk.render import render_site
from wildix_ast.model.call_classes import CallClass, DialplanGeneral, NumberingPlan, Shape, matches
from wildix_ast.model.groups import Group
from wildix_ast.model.routing import numbering_plan
from wildix_ast.model.settings_file import parse_site
from wildix_ast.model.site import Site
from wildix_ast.store.vault import MemoryVault, with_secrets

C = CallClass
FRANCE = NumberingPlan.of(DialplanGeneral(), "33")
ITALY = NumberingPlan.of(DialplanGeneral(), "39")


@pytest.mark.parametrize(("dialled", "expected"), [
    ("0140000000", (C.NATIONAL, "+33140000000")),
    ("0033140000000", (C.NATIONAL, "+33140000000")),
    ("+33140000000", (C.NATIONAL, "+33140000000")),
    ("0612345678", (C.MOBILE, "+33612345678")),
    ("0033712345678", (C.MOBILE, "+33712345678")),
    ("0899123456", (C.PREMIUM, "+33899123456")),
    ("0912345678", (C.NATIONAL, "+33912345678")),
    ("3631", (C.PREMIUM, "3631")),
    ("118712", (C.PREMIUM, "118712")),
    ("112", (C.EMERGENCY, "112")),
    ("15", (C.EMERGENCY, "15")),
    ("0044201234567", (C.INTERNATIONAL, "+44201234567")),
    ("+12125551234", (C.INTERNATIONAL, "+12125551234")),
    ("014000000", None),  # one digit short
    ("0033123", None),
    ("123", None),
])
def test_france(dialled: str, expected: tuple[CallClass, str] | None) -> None:
    assert FRANCE.classify(dialled) == expected


@pytest.mark.parametrize(("dialled", "expected"), [
    ("0612345678", (C.NATIONAL, "+390612345678")),  # Rome: the 0 belongs to the number
    ("00390612345678", (C.NATIONAL, "+390612345678")),
    ("3331234567", (C.MOBILE, "+393331234567")),
    ("+393331234567", (C.MOBILE, "+393331234567")),
    ("800123456", (C.NATIONAL, "+39800123456")),
    ("892123", (C.PREMIUM, "+39892123")),
    ("113", (C.EMERGENCY, "113")),
    ("0033140000000", (C.INTERNATIONAL, "+33140000000")),
])
def test_italy(dialled: str, expected: tuple[CallClass, str] | None) -> None:
    assert ITALY.classify(dialled) == expected


def test_outside_line_prefix_is_stripped_and_emergency_needs_none() -> None:
    plan = NumberingPlan.of(DialplanGeneral(outside_line_prefix="0"), "33")
    assert plan.classify("00140000000") == (C.NATIONAL, "+33140000000")
    assert plan.classify("112") == plan.classify("0112") == (C.EMERGENCY, "112")
    assert plan.classify("0140000000") is None  # without the outside-line prefix


def test_a_site_replaces_a_table() -> None:
    general = DialplanGeneral.model_validate({
        "number_rules": [{"pattern": "1XXXXXXXX", "call_class": "local"},
                         {"pattern": "[2-5]XXXXXXXX", "call_class": "national"}],
        "emergency_numbers": ["112"]})
    plan = NumberingPlan.of(general, "33")
    assert plan.classify("0140000000") == (C.LOCAL, "+33140000000")
    assert plan.classify("0240000000") == (C.NATIONAL, "+33240000000")
    assert plan.classify("0612345678") is None and plan.classify("15") is None


def test_patterns() -> None:
    assert matches("[1-5]XXXXXXXX", "140000000") and not matches("[1-5]XXXXXXXX", "640000000")
    assert matches("0XXXXX.", "0612345678") and not matches("0XXXXX.", "06123")
    overlap = [("[1-5]XXX", "1XXX", True), ("[1-5]XXX", "6XXX", False),
               ("1XXX", "1XXXX", False), ("1X.", "1XXXX", True), ("1X.", "1X", False),
               ("NXX", "1XX", False), ("ZXX", "1XX", True), ("8X.", "89X.", True)]
    for a, b, expected in overlap:
        assert Shape.parse(a).overlaps(Shape.parse(b)) is expected, (a, b)
        assert Shape.parse(b).overlaps(Shape.parse(a)) is expected, (b, a)


def test_groups_fail_closed() -> None:
    plain = Group(name="g")
    assert plain.allowed == {C.INTERNAL, C.LOCAL, C.NATIONAL, C.MOBILE, C.EMERGENCY}
    granted = Group(name="g", allow=[C.INTERNATIONAL], deny=[C.MOBILE])
    assert C.INTERNATIONAL in granted.allowed and C.MOBILE not in granted.allowed
    assert C.PREMIUM not in granted.allowed


SITE = """\
system:
  language_region: {country_code: "33"}
groups:
  - name: default
  - name: sales
    allow: [international]
trunks:
  - {name: op, auth: registration, host: sip.example.net, username: acme, secret: Give-n-42}
  - {name: backup, auth: ip, host: 192.0.2.10, caller_id: main_number,
     main_number: "+33140000000"}
trunk_groups:
  - {name: out, trunks: [op, backup]}
dialplan:
  general: {trunk_group: out, classes: [{call_class: international, max_calls: 2}]}
users:
  - {name: Alice, extension: "101", group: sales}
"""


def test_good_routing_site() -> None:
    site = parse_site(SITE)
    assert [t.name for t in site.trunks] == ["op", "backup"]
    assert site.trunks[1].identify_addresses == ["192.0.2.10"]


@pytest.mark.parametrize(("change", "location", "words"), [
    (("trunks: [op, backup]", "trunks: [op, gone]"), "trunk_groups[0].trunks[1]",
     "trunk 'gone' is not defined"),
    (("trunks: [op, backup]", "trunks: [op, op]"), "trunk_groups[0].trunks[1]", "twice"),
    (("{trunk_group: out,", "{trunk_group: nowhere,"), "dialplan.general.trunk_group",
     "'nowhere' is not defined"),
    (("{call_class: international, max_calls: 2}", "{call_class: emergency, max_calls: 2}"),
     "dialplan.general.classes[0].max_calls", "never limited"),
    (("max_calls: 2}]", "max_calls: 2}, {call_class: international}]"),
     "dialplan.general.classes[1].call_class", "already set"),
    (("max_calls: 2}]", "max_calls: 2}, {call_class: premium, trunk_group: nope}]"),
     "dialplan.general.classes[1].trunk_group", "'nope' is not defined"),
    (("{trunk_group: out, classes: [{call_class: international, max_calls: 2}]}",
      "{classes: [{call_class: premium, trunk_group: out}]}"),
     "dialplan.general.trunk_group", "emergency calls have no trunk group"),
    (("allow: [international]", "allow: [international]\n    deny: [international, "
      "emergency]"), "groups[1].deny", "emergency calls always go out"),
    (("allow: [international]", "allow: [mobile]\n    deny: [mobile]"), "groups[1].deny",
     "both allowed and denied"),
    (("{name: backup,", "{name: op,"), "trunks[1].name", "already defined"),
    (('extension: "101"', 'extension: "112"'), "users[0].extension",
     "also an external number (emergency"),
    (("classes:", "number_rules: [{pattern: '1XXXXXXXX', call_class: local}, "
      "{pattern: '[1-5]XXXXXXXX', call_class: national}], classes:"),
     "dialplan.general.number_rules[1].pattern", "overlaps '1XXXXXXXX'"),
    (("username: acme, secret: Give-n-42", "username: acme"), "trunks[0]",
     "needs username and secret"),
    (("host: 192.0.2.10,", "host: backup.example.net,"), "trunks[1]", "needs addresses"),
    (("{name: backup,", "{name: op-auth,"), "trunks[1].name", "may not end with"),
    (("secret: Give-n-42", "secret: 'Give;n-42'"), "trunks[0].secret", "trunk secret"),
])
def test_routing_problems_are_located(change: tuple[str, str], location: str,
                                      words: str) -> None:
    old, new = change
    assert old in SITE
    found = problems(SITE.replace(old, new, 1))
    assert any(location in p and words in p for p in found), found


def test_short_numbers_must_not_shadow_national_numbers_without_a_prefix() -> None:
    text = SITE.replace('country_code: "33"', 'country_code: "39"').replace(
        "{trunk_group: out,", "{short_numbers: [{pattern: '3XXX.', call_class: premium}], "
        "trunk_group: out,")
    found = problems(text)
    assert any("dialplan.general.short_numbers[0].pattern" in p
               and "also matches national numbers dialled as 3XXXXXXXX." in p
               for p in found), found
    assert parse_site(SITE.replace('country_code: "33"', 'country_code: "39"'))


def test_trunk_secret_is_masked_in_plan_diffs() -> None:
    site = with_secrets(parse_site(SITE), MemoryVault())
    text = render_site(site, manager_secret="Mgr-s3cret.Value")["pjsip.conf"]
    assert "password = Give-n-42" in text
    pjsip = by_name()["pjsip.conf"]
    assert pjsip.secret("trunk-op-auth", "password", "=", "Give-n-42") == ("Give-n-42", "")


def test_ip_trunk_is_identified_by_address_only_and_registration_by_line() -> None:
    site = with_secrets(parse_site(SITE), MemoryVault())
    text = render_site(site, manager_secret="Mgr-s3cret.Value")["pjsip.conf"]
    assert "[trunk-backup-identify]" in text and "match = 192.0.2.10" in text
    assert "[trunk-op-identify]" not in text
    assert text.count("identify_by = ip") == 3  # the two trunks and the send-only wildix-notify
    registration = text[text.index("[trunk-op-reg]"):]
    assert "line = yes" in registration and "endpoint = trunk-op" in registration


def site_for(country: str, outside: str | None) -> tuple[Site, str]:
    """SITE in another country, with an outside-line prefix: the site and its dialplan."""
    text = SITE.replace('country_code: "33"', f'country_code: "{country}"')
    if outside:
        text = text.replace("{trunk_group: out,", f'{{outside_line_prefix: "{outside}", '
                            "trunk_group: out,")
    site = with_secrets(parse_site(text), MemoryVault())
    return site, render_site(site, manager_secret="Mgr-s3cret.Value")["extensions.conf"]


@pytest.mark.parametrize(("country", "outside"), [("33", None), ("39", "9"), ("44", None)])
def test_asterisklint_accepts_the_routing_of_every_table(country: str, outside: str | None,
                                                         tmp_path: Path) -> None:
    """asterisklint is a dev dependency (GPL: run as a program, never imported)."""
    assert ASTERISKLINT.exists(), "asterisklint (dev dependency) is not installed"
    _, dialplan = site_for(country, outside)
    result = asterisklint(dialplan, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[wildix-trunk-op]" in dialplan


def test_registrar_and_outbound_proxy() -> None:
    text = SITE.replace("host: sip.example.net,", "host: sip.example.net, registrar: "
                        "reg.example.net, outbound_proxy: proxy.example.net,")
    site = with_secrets(parse_site(text), MemoryVault())
    pjsip = render_site(site, manager_secret="Mgr-s3cret.Value")["pjsip.conf"]
    registration = pjsip[pjsip.index("[trunk-op-reg]"):]
    assert "server_uri = sip:reg.example.net:5060" in registration
    assert "client_uri = sip:acme@sip.example.net:5060" in registration
    assert pjsip.count("outbound_proxy = sip:proxy.example.net;lr") == 2
    assert "registrar is for registration trunks" in " ".join(problems(SITE.replace(
        "host: 192.0.2.10,", "host: 192.0.2.10, registrar: x.example.net,")))


# --- the generated dialplan decides like NumberingPlan.classify --------------------------------

def _positions(pattern: str) -> tuple[list[frozenset[str]], bool]:
    shape = Shape.parse(pattern.lstrip("_").replace("+", "P"))
    return [frozenset("+") if s == {"P"} else s for s in shape.positions], shape.open_end


def _match(extension: str, number: str) -> tuple[int, ...] | None:
    """None if `extension` does not match `number`, else its sort key as Asterisk orders
    matching patterns: position by position, fewer possible digits first, '.' last."""
    if not extension.startswith("_"):
        return (1,) * len(number) if extension == number else None
    positions, open_end = _positions(extension)
    if len(number) < len(positions) + open_end or (not open_end
                                                    and len(number) != len(positions)):
        return None
    if not all(c in s for c, s in zip(number, positions, strict=False)):
        return None
    return tuple(len(s) for s in positions) + ((11,) if open_end else ())


ADMISSION = ("Set(WILDIX_DIALLED=", "Gosub(wildix-admit,")


def dialplan_decision(dialplan: str, number: str) -> tuple[str, str] | None:
    """(class, number routed) the rendered dialplan gives `number`: `wildix-emergency`
    first (every procedure includes it first), then the `wildix-outgoing` context."""
    emergency = dialplan.split("[wildix-emergency]\n", 1)[1].split("\n\n[", 1)[0]
    for extension, app in re.findall(r"exten => ([^,]+),1,[^\n]*\n same => n,([^\n]*)",
                                     emergency):
        if extension == number:
            call_class, _, argument = app.removeprefix("Gosub(wildix-route,").partition(",1(")
            return call_class, argument.removesuffix("))")
    context = dialplan.split("[wildix-outgoing]\n", 1)[1].split("\n\n[", 1)[0]
    best: tuple[tuple[int, ...], str] | None = None
    # each extension's first step past the admission of an open-ended pattern
    routes: list[tuple[str, str]] = []
    for line in context.splitlines():
        if line.startswith("exten => "):
            extension, _, app = line.removeprefix("exten => ").split(",", 2)
            routes.append((extension, app))
        elif line.startswith(" same => n,") and routes[-1][1].startswith(ADMISSION):
            routes[-1] = (routes[-1][0], line.removeprefix(" same => n,"))
    for extension, app in routes:
        key = _match(extension, number)
        if key is not None and (best is None or key < best[0]):
            best = (key, app)
    if best is None or best[1].startswith("Hangup("):
        return None
    call_class, _, argument = best[1].removeprefix("Gosub(wildix-route,").partition(",1(")
    routed = re.sub(r"\$\{EXTEN(?::(\d+))?\}", lambda m: number[int(m.group(1) or 0):],
                    argument.removesuffix("))"))
    return call_class, routed


@pytest.mark.parametrize(("country", "outside"), [("33", None), ("33", "0"), ("39", None)])
def test_dialplan_and_model_classify_alike(country: str, outside: str | None) -> None:
    site, dialplan = site_for(country, outside)
    plan = numbering_plan(site)
    numbers = ["0140000000", "0033140000000", "+33140000000", "0612345678", "0899123456",
               "3631", "118712", "112", "15", "113", "0044201234567", "+12125551234",
               "0612345678", "3331234567", "00393331234567", "892123", "0033123", "000",
               "+0", "0390612345678", "1234", "06123"]
    numbers += [(outside or "") + n for n in numbers]
    for number in numbers:
        expected = plan.classify(number)
        found = dialplan_decision(dialplan, number)
        assert found == (None if expected is None else (str(expected[0]), expected[1])), number
