"""No accepted value can change the structure of a rendered Asterisk file.

For every string field of the model, hypothesis tries values (arbitrary text, Asterisk's
special characters, values shaped like the field's pattern): either the model refuses it with
a pydantic ValidationError, or the rendered files have exactly the sections, keys, dialplan
lines and field counts they have with the benign example site, and the value reads back
unchanged where it is written."""

from __future__ import annotations

import copy
import re
import typing
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from support.examples import examples

from wildix_ast.asterisk.render import render_site
from wildix_ast.errors import RenderError
from wildix_ast.model.passwords import SPECIALS, generate_password
from wildix_ast.model.site import Site
from wildix_ast.model.system import SUPPORTED_TONE_ZONES
from wildix_ast.store.vault import MemoryVault, with_secrets

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "site.yaml"
MANAGER_SECRET = "Mgr-s3cret.Value"

# ------------------------------------------------------------------ a tiny .conf parser


class ConfSyntaxError(ValueError):
    pass


@dataclass
class Section:
    name: str
    options: str | None
    entries: list[tuple[str, str, str]] = field(default_factory=list)
    """(key, operator '=' or '=>', value)"""


_SECTION = re.compile(r"\[([^\[\]]+)\](?:\(([^()]*)\))?")


def _strip_comment(line: str) -> str:
    out = []
    i = 0
    while i < len(line):
        char = line[i]
        if char == "\\" and i + 1 < len(line):
            out.append(line[i:i + 2])
            i += 2
            continue
        if char == ";":
            break
        out.append(char)
        i += 1
    return "".join(out)


def parse_conf(text: str) -> list[Section]:
    """Asterisk's configuration syntax, as main/config.c reads it: `;` comments (unless
    escaped), `[section](options)`, `key = value` or `key => value`, whitespace trimmed.
    Block comments and `#include`/`#exec` are reported as errors: we never generate them."""
    sections: list[Section] = []
    for number, raw in enumerate(text.split("\n"), 1):
        if ";--" in raw:
            raise ConfSyntaxError(f"line {number}: block comment")
        line = _strip_comment(raw).strip()
        if not line:
            continue
        if line.startswith("#"):
            raise ConfSyntaxError(f"line {number}: directive {line!r}")
        if line.startswith("["):
            match = _SECTION.fullmatch(line)
            if match is None:
                raise ConfSyntaxError(f"line {number}: bad section header {line!r}")
            sections.append(Section(match.group(1), match.group(2)))
            continue
        if "=" not in line:
            raise ConfSyntaxError(f"line {number}: no '=' in {line!r}")
        if not sections:
            raise ConfSyntaxError(f"line {number}: entry before any section")
        key, value = line.split("=", 1)
        operator = "="
        if value.startswith(">"):
            operator, value = "=>", value[1:]
        sections[-1].entries.append((key.strip(), operator, value.strip()))
    return sections


def split_args(text: str) -> list[str]:
    """Split application arguments on commas outside parentheses and quotes."""
    args, depth, current, quoted = [], 0, "", False
    for char in text:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in "([":
            depth += 1
        elif not quoted and char in ")]":
            depth -= 1
        if char == "," and depth == 0 and not quoted:
            args.append(current)
            current = ""
        else:
            current += char
    args.append(current)
    return args


_PRIORITY = re.compile(r"([0-9]+|n(?:\+[0-9]+)?)(?:\(([A-Za-z0-9_-]+)\))?,([A-Za-z0-9_]+)"
                       r"\((.*)\)")


_HINT = re.compile(r"hint,PJSIP/[0-9]+")
_PARK_HINT = re.compile(r"hint,park:[0-9]+@orbit-[0-9]+")  # a park orbit's BLF


def dialplan_line(value: str, *, same: bool = False) -> tuple[str, str, str | None, str, int]:
    """`exten => EXT,PRIO(label),App(args)` (or `same => PRIO(label),App(args)`) ->
    (EXT, PRIO, label, App, number of args)."""
    ext, rest = ("", value) if same else value.split(",", 1) if "," in value else (value, "")
    hint = _HINT.fullmatch(rest)
    if hint is not None and not same:  # `exten => EXT,hint,PJSIP/EXT` (a BLF hint)
        return ext, "hint", None, "PJSIP/<number>", 1
    if _PARK_HINT.fullmatch(rest) is not None and not same:
        return ext, "hint", None, "park:<orbit>", 1
    match = _PRIORITY.fullmatch(rest)
    if match is None or (not same and not ext):
        raise ConfSyntaxError(f"not a dialplan line: {value!r}")
    prio, label, app, args = match.groups()
    return ext, prio, label, app, len(split_args(args))


def _section_class(file: str, name: str) -> str:
    if re.fullmatch(r"[0-9]+", name):
        return "<number>"
    if re.fullmatch(r"[0-9]+-auth", name):
        return "<number>-auth"
    if name.startswith("proc-"):
        return "proc-<name>"
    for prefix in ("acl-", "wildix-tg-", "wildix-trunk-", "wildix-pn-", "wildix-tf-",
                   "wildix-cg-", "wildix-ivr-", "wildix-indid-", "wildix-inrange-",
                   "wildix-in-"):
        if name.startswith(prefix):
            return prefix + "<name>"
    if file == "pjsip.conf" and name.startswith("trunk-"):
        return "trunk-<name>" + next((s for s in ("-auth", "-reg", "-identify")
                                      if name.endswith(s)), "")
    if file == "manager.conf" and name != "general":
        return "<account>"
    return name


def _number_class(text: str) -> str:
    # a called number may be exact or a pattern: either is one extension; feature codes
    # and their options are numbers too: '*50', '63*2**97'
    if re.fullmatch(r"[+*]?[0-9][0-9*]*|[*#]", text) or re.fullmatch(
            r"_[0-9XZN\[\]+.*#-]+", text):
        return "<number>"
    return text


# Contexts whose line count follows the number tables (a country code, a site's own table):
# compared as the set of line shapes they use, which must stay within the benign one's.
_TABLE_CONTEXTS = ("wildix-outgoing", "wildix-emergency")
# A trunk's DID ranges: as many patterns as the ranges need.
_RANGE_CONTEXT = "wildix-inrange-"
# A group's transfer targets: the number table's forms of the classes it may call.
_TRANSFER_CONTEXT = "wildix-transfer-"
_ADMISSION = re.compile(r",(Set\(WILDIX_DIALLED=\$\{EXTEN\}\)|Gosub\(wildix-admit,[a-z]+,1\))$")


def signature(files: dict[str, str]) -> dict[str, list[Any]]:
    """The structure of every file, with the names the site chooses abstracted."""
    shape: dict[str, list[Any]] = {}
    for file, text in sorted(files.items()):
        sections = []
        for section in parse_conf(text):
            entries: list[Any] = []
            admitted = ""  # the extension whose admission steps were left out
            for key, operator, value in section.entries:
                if file == "extensions.conf" and _ADMISSION.search(value):
                    # the admission of an open-ended pattern: the same two steps, whatever
                    # the site (they carry no value), present or not as the pattern is
                    if key == "exten":
                        admitted = value.split(",", 1)[0]
                    continue
                if admitted and key == "same":
                    key, value = "exten", f"{admitted},1{value.removeprefix('n')}"
                admitted = ""
                entry: tuple[Any, ...] = (_number_class(key), operator)
                if file == "extensions.conf" and key in ("exten", "same"):
                    ext, prio, label, app, nargs = dialplan_line(value, same=key == "same")
                    entry += (_number_class(ext), prio, label, app, nargs)
                elif file == "voicemail.conf" and section.name == "default":
                    fields = value.split(",")
                    entry += (len(fields), len(fields[-1].split("|")),
                              [f.split("=")[0] for f in fields[-1].split("|")])
                elif file == "pjsip.conf" and key == "callerid":
                    entry += (bool(re.fullmatch(r'"[^"]*" <[0-9]+>', value)),)
                entries.append(entry)
            if file == "extensions.conf" and section.name.startswith("proc-"):
                continue  # one per procedure: checked by procedure_contexts()
            if file == "extensions.conf" and (section.name in _TABLE_CONTEXTS
                                              or section.name.startswith(_RANGE_CONTEXT)
                                              or section.name.startswith(_TRANSFER_CONTEXT)):
                shape.setdefault("<tables>", []).extend(entries)
                continue
            sections.append((_section_class(file, section.name), section.options, entries))
        shape[file] = sections
    return shape


def procedure_contexts(files: dict[str, str]) -> dict[str, list[tuple[str, str, str]]]:
    return {s.name: s.entries for s in parse_conf(files["extensions.conf"])
            if s.name.startswith("proc-")}


def values(files: dict[str, str], file: str, section_name: str, key: str) -> list[str]:
    return [v for s in parse_conf(files[file]) if s.name == section_name
            for k, _, v in s.entries if k == key]


# ------------------------------------------------------------------ the parser itself


def test_parser_reads_asterisk_syntax() -> None:
    sections = parse_conf("; c\n[a](!)\nx = 1 ; note\ny=>2,3\n\n[b]\nz = a\\;b\n")
    assert [(s.name, s.options) for s in sections] == [("a", "!"), ("b", None)]
    assert sections[0].entries == [("x", "=", "1"), ("y", "=>", "2,3")]
    assert sections[1].entries == [("z", "=", "a\\;b")]
    with pytest.raises(ConfSyntaxError):
        parse_conf("[a]\n#include other.conf\n")
    assert dialplan_line("101,1,Gosub(ctx,s,1(101))") == ("101", "1", None, "Gosub", 3)
    assert dialplan_line("n(busy),VoiceMail(${ARG1}@default,b)", same=True) == (
        "", "n", "busy", "VoiceMail", 2)


# ------------------------------------------------------------------ the property


def _example() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    return data


def _render(data: dict[str, Any], manager_secret: str = MANAGER_SECRET) -> dict[str, str]:
    site = with_secrets(Site.model_validate(data), MemoryVault())
    return render_site(site, manager_secret=manager_secret)


BENIGN = _example()
# optional trunk settings present, so that setting them changes no structure
BENIGN["trunks"][0].update(registrar="127.0.0.1", outbound_proxy="127.0.0.1")
BENIGN["dialplan"]["procedures"][1]["numbers"][0]["applications"][1]["if_match"] = "mobiles"
BENIGN_FILES = _render(BENIGN)
BENIGN_SHAPE = signature(BENIGN_FILES)
BENIGN_TABLES = BENIGN_SHAPE.pop("<tables>")

Setter = Callable[[dict[str, Any], str], None]


def _at(*path: str | int) -> Setter:
    def set_value(data: dict[str, Any], value: str) -> None:
        node: Any = data
        for part in path[:-1]:
            node = node.setdefault(part, {}) if isinstance(part, str) else node[part]
        node[path[-1]] = value
    return set_value


def _group_name(data: dict[str, Any], value: str) -> None:
    old = data["groups"][1]["name"]
    data["groups"][1]["name"] = value
    for user in data["users"]:
        if user.get("group") == old:
            user["group"] = value


def _rename(node: Any, keys: tuple[str, ...], old: str, new: str) -> None:
    """Every reference to `old` under `keys` anywhere in the settings becomes `new`."""
    if isinstance(node, list):
        for item in node:
            _rename(item, keys, old, new)
    elif isinstance(node, dict):
        for key, item in node.items():
            if key in keys and item == old:
                node[key] = new
            else:
                _rename(item, keys, old, new)


def _renamed(keys: tuple[str, ...], *path: str | int) -> Setter:
    """Sets the name at `path` and every reference to it (keys naming that kind)."""
    def set_value(data: dict[str, Any], value: str) -> None:
        node: Any = data
        for part in path[:-1]:
            node = node[part]
        old = node[path[-1]]
        _rename(data, keys, old, value)
        node[path[-1]] = value
    return set_value


_procedure_name = _renamed(("dialplan", "fax_dialplan", "procedure", "if_match",
                            "if_no_match"), "dialplan", "procedures", 0, "name")


def _trunk_name(data: dict[str, Any], value: str) -> None:
    old = data["trunks"][0]["name"]
    data["trunks"][0]["name"] = value
    for group in data["trunk_groups"]:
        group["trunks"] = [value if t == old else t for t in group["trunks"]]
    _rename(data["dialplan"], ("trunk",), old, value)


def _trunk_group_name(data: dict[str, Any], value: str) -> None:
    old = data["trunk_groups"][0]["name"]
    data["trunk_groups"][0]["name"] = value
    _rename(data["dialplan"], ("trunk_group",), old, value)


def _in_list(*path: str | int) -> Setter:
    set_list = _at(*path)

    def set_value(data: dict[str, Any], value: str) -> None:
        set_list(data, [value])  # type: ignore[arg-type]
    return set_value


def _rule(key: str) -> Setter:
    def set_value(data: dict[str, Any], value: str) -> None:
        data["dialplan"]["general"][key] = [
            {"pattern": value, "call_class": "national"},
            {"pattern": "7XXXXXXX" if value[:1] != "7" else "6XXXXXXX",
             "call_class": "mobile"}]
    return set_value


_MAIN = ("dialplan", "procedures", 1, "numbers")  # main: +33140000000, +331400002XX
_MOBILES = ("dialplan", "procedures", 3, "numbers", 0, "applications")
_ACCUEIL = ("ivrs", 0)

# Two users whose fields are mutated: 101 (admin, every field set) and 102.
FIELDS: dict[str, Setter] = {
    # procedures: a called number and every application field that names or writes
    "dialplan.procedures[].numbers[].number": _at(*_MAIN, 1, "number"),
    "applications[].language": _at(*_MAIN, 0, "applications", 0, "language"),
    "applications[].time_frame": _at(*_MAIN, 0, "applications", 1, "time_frame"),
    "applications[].if_match": _at(*_MAIN, 0, "applications", 1, "if_match"),
    "applications[].if_no_match": _at(*_MAIN, 0, "applications", 1, "if_no_match"),
    "applications[].ivr": _at(*_MAIN, 0, "applications", 2, "ivr"),
    "applications[].call_group": _at(*_MAIN, 0, "applications", 3, "call_group"),
    "applications[].user": _at(*_MAIN, 0, "applications", 4, "user"),
    "applications[].sound": _at(*_MAIN, 1, "applications", 1, "sound"),
    "applications[].procedure": _at(*_MAIN, 1, "applications", 4, "procedure"),
    "applications[].number": _at(*_MOBILES, 1, "number"),
    "applications[].name": _at(*_MOBILES, 2, "name"),
    "applications[].prepend": _at(*_MOBILES, 3, "prepend"),
    "applications[].trunk": _at(*_MOBILES, 4, "trunk"),
    "applications[].trunk_group": _at(*_MOBILES, 5, "trunk_group"),
    "time_frames[].name": _renamed(("time_frame",), "time_frames", 0, "name"),
    "time_frames[].description": _at("time_frames", 0, "description"),
    "time_frames[].weekly[].start": _at("time_frames", 0, "weekly", 0, "start"),
    "time_frames[].weekly[].end": _at("time_frames", 0, "weekly", 1, "end"),
    "time_frames[].holidays[].description": _at("time_frames", 0, "holidays", 0,
                                                "description"),
    "call_groups[].name": _renamed(("call_group",), "call_groups", 0, "name"),
    "call_groups[].description": _at("call_groups", 0, "description"),
    "call_groups[].members[]": _at("call_groups", 0, "members", 1),
    "ivrs[].name": _renamed(("ivr",), *_ACCUEIL, "name"),
    "ivrs[].description": _at(*_ACCUEIL, "description"),
    "ivrs[].prompt": _at(*_ACCUEIL, "prompt"),
    "ivrs[].options[].digit": _at(*_ACCUEIL, "options", 1, "digit"),
    "ivrs[].options[].call_group": _at(*_ACCUEIL, "options", 0, "call_group"),
    "ivrs[].options[].user": _at(*_ACCUEIL, "options", 3, "user"),
    "ivrs[].options[].voicemail": _at(*_ACCUEIL, "options", 4, "voicemail"),
    "ivrs[].options[].procedure": _at(*_ACCUEIL, "options", 5, "procedure"),
    "ivrs[].on_timeout.call_group": _at(*_ACCUEIL, "on_timeout", "call_group"),
    "trunks[].dids[]": _in_list("trunks", 0, "dids"),
    "trunks[].procedure": _at("trunks", 1, "procedure"),
    "system.pbx_name": _at("system", "pbx_name"),
    "system.language_region.language": _at("system", "language_region", "language"),
    "system.language_region.tone_zone": _at("system", "language_region", "tone_zone"),
    "system.language_region.country_code": _at("system", "language_region", "country_code"),
    "system.language_region.timezone": _at("system", "language_region", "timezone"),
    "system.manager.username": _at("system", "manager", "username"),
    "groups[].name": _group_name,
    "groups[].description": _at("groups", 1, "description"),
    "dialplan.echo_test": _at("dialplan", "echo_test"),
    "dialplan.voicemail": _at("dialplan", "voicemail"),
    "dialplan.procedures[].name": _procedure_name,
    "dialplan.procedures[].description": _at("dialplan", "procedures", 0, "description"),
    "trunks[].name": _trunk_name,
    "trunks[].description": _at("trunks", 1, "description"),
    "trunks[].host": _at("trunks", 0, "host"),
    "trunks[].registrar": _at("trunks", 0, "registrar"),
    "trunks[].outbound_proxy": _at("trunks", 0, "outbound_proxy"),
    "trunks[].username": _at("trunks", 0, "username"),
    "trunks[].secret": _at("trunks", 0, "secret"),
    "trunks[].main_number": _at("trunks", 1, "main_number"),
    "trunk_groups[].name": _trunk_group_name,
    "trunk_groups[].trunks[]": _at("trunk_groups", 0, "trunks", 1),
    "dialplan.general.national_prefix": _at("dialplan", "general", "national_prefix"),
    "dialplan.general.international_prefix": _at("dialplan", "general",
                                                 "international_prefix"),
    "dialplan.general.outside_line_prefix": _at("dialplan", "general", "outside_line_prefix"),
    "dialplan.general.trunk_group": _at("dialplan", "general", "trunk_group"),
    "dialplan.general.classes[].trunk_group": _at("dialplan", "general", "classes", 0,
                                                  "trunk_group"),
    "dialplan.general.emergency_numbers[]": _in_list("dialplan", "general",
                                                     "emergency_numbers"),
    "dialplan.general.number_rules[].pattern": _rule("number_rules"),
    "dialplan.general.short_numbers[].pattern": _rule("short_numbers"),
    **{f"users[{index}].{name}": _at("users", index, name)
       for index, name in ((0, "name"), (1, "name"), (0, "login"), (1, "extension"),
                           (0, "office_did"), (4, "fax_did"), (0, "email"), (0, "mobile"),
                           (0, "language"), (0, "group"), (0, "department"), (2, "dialplan"),
                           (0, "fax_dialplan"), (0, "web_password"), (1, "sip_password"))},
}

_SPECIAL_CHARS = [*',;[]"\\${}<>=`|#!&()\'%@:/*+-_.~^?', " ", "\t", "\n", "\x00", "\u2028",
                  "\xa0"]
_text = st.text(alphabet=st.sampled_from([*_SPECIAL_CHARS, "a", "Z", "é", "9", "0", "ß"]),
                min_size=1, max_size=24)
_any_text = st.text(max_size=24)
_digits = st.from_regex(r"\+?[0-9]{2,12}", fullmatch=True)
_feature = st.from_regex(r"\*?[0-9]{1,6}", fullmatch=True)
_identifier = st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,12}", fullmatch=True)
_email = st.from_regex(r"[A-Za-z0-9._%+-]{1,8}@[A-Za-z0-9-]{1,6}\.[a-z]{2,3}", fullmatch=True)
_password = st.builds(lambda body, tail: "Aa1" + body + tail,
                      st.text(alphabet=st.sampled_from([*_SPECIAL_CHARS, *SPECIALS, "b", "é"]),
                              min_size=1, max_size=16),
                      st.sampled_from([*SPECIALS, "!"]))
_timezone = st.sampled_from(sorted(zoneinfo.available_timezones()))
_language = st.from_regex(r"[a-z]{2}(_[A-Z]{2})?", fullmatch=True)
_pattern = st.from_regex(r"([0-9XZN]|\[[0-9](-[0-9])?\]){1,9}\.?", fullmatch=True)

CANDIDATES = st.one_of(_text, _any_text, _digits, _feature, _identifier, _email, _password,
                       _timezone, _language, st.builds(generate_password),
                       st.sampled_from(["general", "globals", "Users", "users", "default",
                                        "wildix-call-user", "101", "+33140000102", "*97",
                                        "fr", "gb", "uk", "a,b", "x=>y", "O'Brien (Sales)"]))


_good_password = st.builds(lambda body: "Aa1" + body + "!",
                           st.text(alphabet=st.sampled_from([*SPECIALS, "b", "é", "Q", "7"]),
                                   min_size=1, max_size=20))
# Values of each field's own domain, so the accepted path is taken often, not only refusals.
EXTRAS: dict[str, st.SearchStrategy[str]] = {
    "system.language_region.tone_zone": st.sampled_from(SUPPORTED_TONE_ZONES),
    "system.language_region.country_code": st.from_regex(r"[1-9][0-9]{0,3}", fullmatch=True),
    "users[0].group": st.sampled_from(["default", "direction"]),
    "users[0].fax_dialplan": st.sampled_from(["users", "reception"]),
    "users[2].dialplan": st.sampled_from(["users", "reception"]),
    "users[0].web_password": _good_password,
    "users[1].sip_password": _good_password,
    "users[1].extension": st.from_regex(r"[0-9]{2,8}", fullmatch=True),
    "dialplan.echo_test": _feature,
    "dialplan.general.national_prefix": st.from_regex(r"[0-9]{0,4}", fullmatch=True),
    "dialplan.general.international_prefix": st.from_regex(r"[0-9]{1,4}", fullmatch=True),
    "dialplan.general.outside_line_prefix": st.from_regex(r"[0-9]{1,4}", fullmatch=True),
    "dialplan.general.emergency_numbers[]": st.from_regex(r"[0-9]{2,8}", fullmatch=True),
    "dialplan.general.number_rules[].pattern": _pattern,
    "dialplan.general.short_numbers[].pattern": _pattern,
    "trunks[].host": st.from_regex(r"[a-z0-9][a-z0-9.-]{0,20}", fullmatch=True),
    "trunks[].registrar": st.from_regex(r"[a-z0-9][a-z0-9.-]{0,20}", fullmatch=True),
    "trunks[].username": st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,10}", fullmatch=True),
    "trunks[].secret": _password,
    "trunks[].main_number": _digits,
    "trunk_groups[].trunks[]": st.sampled_from(["operateur", "secours"]),
    "dialplan.general.classes[].trunk_group": st.sampled_from(["sortants", "nope"]),
    "dialplan.voicemail": _feature,
    # values of the site's own names, so references are accepted too
    **{f"applications[].{key}": st.sampled_from(names) for key, names in (
        ("time_frame", ["bureau"]), ("if_match", ["ferme", "mobiles", "reception"]),
        ("if_no_match", ["ferme", "mobiles"]), ("ivr", ["accueil"]),
        ("call_group", ["ventes", "support", "standard"]), ("user", ["101", "102"]),
        ("sound", ["ferme", "accueil-svi"]), ("procedure", ["ferme", "mobiles"]),
        ("trunk", ["secours", "operateur"]), ("trunk_group", ["sortants"]),
        ("language", ["en", "it", "fr_FR"]))},
    "applications[].name": st.from_regex(r"[\w .'+-]{1,30}", fullmatch=True),
    "applications[].number": _digits,
    "applications[].prepend": st.from_regex(r"\+?[0-9]{0,8}", fullmatch=True),
    "dialplan.procedures[].numbers[].number": st.one_of(_pattern, _digits, st.from_regex(
        r"\+?([0-9XZN*#]|\[[0-9](-[0-9])?\]){1,12}\.?", fullmatch=True)),
    "time_frames[].weekly[].start": st.from_regex(r"[0-2][0-9]:[0-5][0-9]", fullmatch=True),
    "time_frames[].weekly[].end": st.from_regex(r"[0-2][0-9]:[0-5][0-9]", fullmatch=True),
    "call_groups[].members[]": st.sampled_from(["100", "101", "102", "150"]),
    "ivrs[].prompt": st.sampled_from(["ferme", "accueil-svi"]),
    "ivrs[].options[].digit": st.from_regex(r"[0-9*#]", fullmatch=True),
    "ivrs[].options[].call_group": st.sampled_from(["ventes", "direction"]),
    "ivrs[].options[].user": st.sampled_from(["101", "102", "150"]),
    "ivrs[].options[].voicemail": st.sampled_from(["101", "102", "150"]),
    "ivrs[].options[].procedure": st.sampled_from(["main", "mobiles"]),
    "ivrs[].on_timeout.call_group": st.sampled_from(["ventes", "direction"]),
    "trunks[].dids[]": st.from_regex(r"\+33140000[0-9]{3}(-[0-9]{1,3})?", fullmatch=True),
    "trunks[].procedure": st.sampled_from(["main", "ferme", "mobiles", "users"]),
    "time_frames[].name": _identifier, "call_groups[].name": _identifier,
    "ivrs[].name": _identifier,
}


def _check(field_name: str, value: str) -> None:
    data = copy.deepcopy(BENIGN)
    FIELDS[field_name](data, value)
    try:
        site = Site.model_validate(data)
    except ValidationError:
        return  # refused by the model: fine, as long as it is nothing else
    files = render_site(with_secrets(site, MemoryVault()), manager_secret=MANAGER_SECRET)
    shape = signature(files)
    tables = shape.pop("<tables>")
    assert set(tables) <= set(BENIGN_TABLES), f"{field_name}={value!r} added a table line"
    assert shape == BENIGN_SHAPE, f"{field_name}={value!r} changed the structure"
    # a context per procedure (a procedure named like the built-in `users` is the same one):
    # the emergency numbers first, its numbers in order, the users; the users' procedure
    # also reaches outgoing calls
    numbers = {p.name: len(p.numbers) for p in site.dialplan.procedures}
    assert procedure_contexts(files) == {
        f"proc-{name}": [("include", "=>", "wildix-emergency"),
                         *(("include", "=>", f"wildix-pn-{name}-{i}")
                           for i in range(numbers.get(name, 0))),
                         ("include", "=>", "wildix-extensions"),
                         ("include", "=>", "wildix-services"),
                         *([("include", "=>", "wildix-outgoing")] if name == "users" else [])]
        for name in site.dialplan.procedure_names}
    # where the value is written, it reads back unchanged
    if field_name == "users[0].name":
        assert values(files, "pjsip.conf", "101", "callerid") == [f'"{value}" <101>']
        fullname = values(files, "voicemail.conf", "default", "101")[0].split(",")[1]
        assert fullname == " ".join(value.replace(",", " ").split())
    if field_name == "users[1].sip_password":
        assert values(files, "pjsip.conf", "102-auth", "password") == [value]
    if field_name == "trunks[].secret":
        assert values(files, "pjsip.conf", "trunk-operateur-auth", "password") == [value]
    if field_name == "trunks[].username":
        assert values(files, "pjsip.conf", "trunk-operateur-auth", "username") == [value]
    if field_name == "applications[].name":
        assert f"Set(CALLERID(name)={value})" in files["extensions.conf"]
    if field_name == "users[0].email":
        assert values(files, "voicemail.conf", "default", "101")[0].split(",")[2] == value


@pytest.mark.parametrize("field_name", sorted(FIELDS))
def test_no_accepted_value_changes_the_structure(field_name: str) -> None:
    @settings(max_examples=examples(120), deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow])
    @given(st.one_of(CANDIDATES, EXTRAS.get(field_name, st.nothing())))
    def run(value: str) -> None:
        _check(field_name, value)

    run()


def test_every_string_field_of_the_model_is_covered() -> None:
    """A new string field in the model must be added to FIELDS."""
    from wildix_ast.model import procedures
    from wildix_ast.model.call_classes import ClassSettings, DialplanGeneral, NumberRule
    from wildix_ast.model.call_groups import CallGroup
    from wildix_ast.model.dialplan import Dialplan, Procedure
    from wildix_ast.model.groups import Group
    from wildix_ast.model.ivrs import Ivr, IvrOption, IvrTarget
    from wildix_ast.model.system import LanguageRegion, Manager, System
    from wildix_ast.model.time_frames import Holiday, TimeFrame, WeeklyRule
    from wildix_ast.model.trunks import Trunk, TrunkGroup
    from wildix_ast.model.users import User

    def strings(model: Any) -> set[str]:
        return {name for name, info in model.model_fields.items()
                if "str" in repr(info.annotation) or name.endswith("password")}

    covered = {name.rsplit(".", 1)[-1].removesuffix("[]") for name in FIELDS}
    applications = typing.get_args(typing.get_args(procedures.Application)[0])
    for model in (System, LanguageRegion, Manager, Group, Dialplan, Procedure, User, Trunk,
                  TrunkGroup, DialplanGeneral, NumberRule, ClassSettings, procedures.Number,
                  *applications, TimeFrame, WeeklyRule, Holiday, CallGroup, Ivr, IvrOption,
                  IvrTarget):
        missing = strings(model) - covered
        assert not missing, f"{model.__name__}: {missing} not exercised"


@given(_password | _good_password | _text | st.builds(generate_password))
@settings(max_examples=examples(150), deadline=None, derandomize=True)
def test_manager_secret_either_renders_the_same_or_is_refused(secret: str) -> None:
    try:
        files = _render(BENIGN, manager_secret=secret)
    except RenderError:
        return
    shape = signature(files)
    assert shape.pop("<tables>") == BENIGN_TABLES and shape == BENIGN_SHAPE
    assert values(files, "manager.conf", "wildix-ast", "secret") == [secret]


def test_a_comma_in_a_name_does_not_shift_voicemail_fields() -> None:
    data = copy.deepcopy(BENIGN)
    data["users"][0]["name"] = "Martin, Alice, jr"
    files = _render(data)
    line = values(files, "voicemail.conf", "default", "101")[0]
    assert line.split(",")[1:3] == ["Martin Alice jr", "alice.martin@acme.fr"]
    assert values(files, "pjsip.conf", "101", "callerid") == ['"Martin, Alice, jr" <101>']
