"""WMS Dialplan -> General settings: prefixes, emergency numbers, call classes.

A dialled number is classified into a call class (internal, local, national, mobile,
international, premium/special, emergency) by the country's number tables, and normalised
("Correct called number") to E.164 before any trunk sees it: `0140000000`, `0033140000000`
and `+33140000000` are the same number, `+33140000000`. Short numbers (emergency, `3XXX`
services) are not E.164 numbers: they are routed as dialled.

Tables are written on the national significant number (NSN: the digits after the national
prefix, or after `+<country code>`), so one table row covers the national, `00<cc>` and
`+<cc>` forms. France and Italy are shipped; a site replaces either list (`number_rules`,
`short_numbers`) or the prefixes. Within one table patterns must not overlap: a number has
one class whatever order the dialplan tries patterns in (Asterisk orders patterns by
specificity, not by position).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Self

from pydantic import BaseModel, Field, model_validator

from wildix_ast.model.common import STRICT, empty_list
from wildix_ast.model.fields import pattern


class CallClass(StrEnum):
    INTERNAL = "internal"
    LOCAL = "local"
    NATIONAL = "national"
    MOBILE = "mobile"
    INTERNATIONAL = "international"
    PREMIUM = "premium"
    EMERGENCY = "emergency"


#: Fail-closed ACL defaults: what a group may call unless it says otherwise.
DEFAULT_ALLOWED = frozenset({CallClass.INTERNAL, CallClass.LOCAL, CallClass.NATIONAL,
                             CallClass.MOBILE, CallClass.EMERGENCY})
#: The classes that leave on a trunk (internal calls never do).
EXTERNAL_CLASSES = tuple(c for c in CallClass if c is not CallClass.INTERNAL)

# WMS / Asterisk pattern syntax without the leading '_': digits, X (0-9), Z (1-9), N (2-9),
# [..] sets of digits and ranges, and a trailing '.' (one or more digits).
_TOKEN = r"(?:[0-9XZN]|\[(?:[0-9](?:-[0-9])?)+\])"
NumberPattern = Annotated[str, pattern(
    rf"{_TOKEN}{{1,20}}\.?", "number pattern (digits, X, Z, N, [1-5] sets, a final '.')")]
Prefix = Annotated[str, pattern(r"[0-9]{1,4}", "prefix (1 to 4 digits)")]
ShortNumber = Annotated[str, pattern(r"[0-9]{2,8}", "short number (2 to 8 "
                                                  "digits)")]


class NumberRule(BaseModel):
    """One row of a number table: numbers matching `pattern` are of class `call_class`."""

    model_config = STRICT

    pattern: NumberPattern
    call_class: CallClass

    @model_validator(mode="after")
    def _external(self) -> Self:
        if self.call_class is CallClass.INTERNAL:
            raise ValueError("internal numbers are the PBX's own (users, feature codes); a "
                             "number table holds external classes only")
        return self


def _rules(*rows: tuple[str, CallClass]) -> tuple[NumberRule, ...]:
    return tuple(NumberRule(pattern=p, call_class=c) for p, c in rows)


@dataclass(frozen=True)
class CountryTable:
    """A shipped numbering plan (facts from the national regulators' plans)."""

    country_code: str
    national_prefix: str
    international_prefix: str
    emergency_numbers: tuple[str, ...]
    number_rules: tuple[NumberRule, ...]
    short_numbers: tuple[NumberRule, ...]


C = CallClass
COUNTRY_TABLES: dict[str, CountryTable] = {
    # ARCEP plan: 0 + 9 digits; 01-05 geographic, 06/07 mobile, 08 special rates, 09 VoIP.
    # 0800-0805 are freephone ("numéros verts", free for the caller): national, so the
    # default group reaches them; 0806-0899 cost the caller more: premium.
    "33": CountryTable(
        country_code="33", national_prefix="0", international_prefix="00",
        emergency_numbers=("15", "17", "18", "112", "114", "115", "119", "116000", "191",
                           "196", "197"),
        number_rules=_rules(("[1-5]XXXXXXXX", C.NATIONAL), ("[67]XXXXXXXX", C.MOBILE),
                            ("80[0-5]XXXXXX", C.NATIONAL), ("80[6-9]XXXXXX", C.PREMIUM),
                            ("8ZXXXXXXX", C.PREMIUM), ("9XXXXXXXX", C.NATIONAL)),
        short_numbers=_rules(("3XXX", C.PREMIUM), ("10XX", C.PREMIUM), ("118XXX", C.PREMIUM)),
    ),
    # AGCOM plan: no national prefix (the leading 0 of geographic numbers is part of the
    # number), 3xx mobile (10 digits), 80x freephone, 89x premium, 1xx short numbers.
    "39": CountryTable(
        country_code="39", national_prefix="", international_prefix="00",
        emergency_numbers=("112", "113", "114", "115", "118", "1515", "1530"),
        number_rules=_rules(("0XXXXX.", C.NATIONAL), ("3XXXXXXXX.", C.MOBILE),
                            ("80XXX.", C.NATIONAL), ("89XXX.", C.PREMIUM),
                            ("84XXX.", C.PREMIUM)),
        short_numbers=_rules(("12XX", C.PREMIUM), ("4XXX.", C.PREMIUM)),
    ),
}


GroupName = Annotated[str, pattern(r"[A-Za-z][A-Za-z0-9_-]{0,39}", "identifier (a letter, "
                                    "then letters, digits, '_' or '-', 40 at most)")]


class ClassSettings(BaseModel):
    """What a site sets for one call class."""

    model_config = STRICT

    call_class: CallClass
    trunk_group: GroupName | None = None
    """Where this class leaves, instead of the general `trunk_group`."""
    max_calls: Annotated[int, Field(ge=0, le=10000)] | None = None
    """At most this many simultaneous calls of the class on the whole PBX (a toll-fraud
    brake)."""


class DialplanGeneral(BaseModel):
    """Dialplan -> General settings. Left out, prefixes and tables come from the country
    table of `system.language_region.country_code` (France 33, Italy 39)."""

    model_config = STRICT

    national_prefix: Annotated[str, pattern(
        r"[0-9]{0,4}", "national prefix (up to 4 digits; '' where there is none)")] | None = None
    international_prefix: Prefix | None = None
    outside_line_prefix: Prefix | None = None
    """Dialled before every external number (WMS 'prefix for outside line'), stripped."""
    emergency_numbers: Annotated[list[ShortNumber], Field(min_length=1)] | None = None
    number_rules: Annotated[list[NumberRule], Field(min_length=1)] | None = None
    short_numbers: list[NumberRule] | None = None
    trunk_group: GroupName | None = None
    """The trunk group external calls leave on."""
    classes: list[ClassSettings] = Field(default_factory=empty_list)
    """Per call class: another trunk group, a limit of simultaneous calls."""


@dataclass(frozen=True)
class NumberingPlan:
    """The effective settings: the site's, else its country's."""

    country_code: str
    national_prefix: str
    international_prefix: str
    outside_line_prefix: str
    emergency_numbers: tuple[str, ...]
    number_rules: tuple[NumberRule, ...]
    short_numbers: tuple[NumberRule, ...]

    @classmethod
    def of(cls, general: DialplanGeneral, country_code: str) -> NumberingPlan:
        table = COUNTRY_TABLES.get(country_code)

        def rows(value: list[NumberRule] | None,
                 shipped: tuple[NumberRule, ...] | None) -> tuple[NumberRule, ...]:
            return tuple(value) if value is not None else (shipped or ())

        national = general.national_prefix if general.national_prefix is not None else (
            table.national_prefix if table else "0")
        international = general.international_prefix or (
            table.international_prefix if table else "00")
        emergency = tuple(general.emergency_numbers) if general.emergency_numbers is not None \
            else (table.emergency_numbers if table else ("112",))
        return cls(country_code=country_code, national_prefix=national,
                   international_prefix=international,
                   outside_line_prefix=general.outside_line_prefix or "",
                   emergency_numbers=emergency,
                   number_rules=rows(general.number_rules, table.number_rules if table else None),
                   short_numbers=rows(general.short_numbers,
                                      table.short_numbers if table else None))

    @functools.cached_property
    def _first_short(self) -> Callable[[str], NumberRule | None]:
        return first_match(self.short_numbers)

    @functools.cached_property
    def _first_rule(self) -> Callable[[str], NumberRule | None]:
        return first_match(self.number_rules)

    # The same decisions as the generated dialplan, for `wildix-ast` itself and the tests.
    def classify(self, dialled: str) -> tuple[CallClass, str] | None:
        """(class, number sent onwards: E.164 or the short number) of an external number
        as a user dials it, or None when the PBX refuses it as unknown."""
        number = dialled
        if self.outside_line_prefix:
            if dialled in self.emergency_numbers:
                return CallClass.EMERGENCY, dialled
            if not dialled.startswith(self.outside_line_prefix):
                return None
            number = dialled[len(self.outside_line_prefix):]
        if number in self.emergency_numbers:
            return CallClass.EMERGENCY, number
        short = self._first_short(number)
        if short is not None:
            return short.call_class, number
        cc, intl, nat = self.country_code, self.international_prefix, self.national_prefix
        nsn: str | None = None
        if number.startswith("+" + cc):
            nsn = number[1 + len(cc):]
        elif number.startswith(intl + cc):
            nsn = number[len(intl) + len(cc):]
        elif number.startswith("+") or number.startswith(intl):
            rest = number[1:] if number.startswith("+") else number[len(intl):]
            # the dialplan's `_00Z.` / `_+Z.`: a country code never starts with 0
            if matches("Z.", rest):
                return CallClass.INTERNATIONAL, "+" + rest
            return None
        elif number.startswith(nat):
            nsn = number[len(nat):]
        if nsn is None:
            return None
        rule = self._first_rule(nsn)
        return None if rule is None else (rule.call_class, f"+{cc}{nsn}")


# --- patterns --------------------------------------------------------------------------------

_SETS = {"X": frozenset("0123456789"), "Z": frozenset("123456789"), "N": frozenset("23456789")}


@dataclass(frozen=True)
class Shape:
    """A parsed pattern: one set of digits per position, and whether a '.' (one or more
    digits) follows."""

    positions: tuple[frozenset[str], ...]
    open_end: bool

    @classmethod
    def parse(cls, pattern: str) -> Shape:
        open_end = pattern.endswith(".")
        body = pattern[:-1] if open_end else pattern
        positions: list[frozenset[str]] = []
        for token in re.findall(r"\[[^\]]*\]|.", body):
            if token.startswith("["):
                chars: set[str] = set()
                for low, high in re.findall(r"([0-9])(?:-([0-9]))?", token[1:-1]):
                    chars.update(str(d) for d in range(int(low), int(high or low) + 1))
                positions.append(frozenset(chars))
            else:
                positions.append(_SETS.get(token, frozenset(token)))
        return cls(tuple(positions), open_end)

    @property
    def min_length(self) -> int:
        return len(self.positions) + (1 if self.open_end else 0)

    def overlaps(self, other: Shape) -> bool:
        """Some number matches both."""
        a, b = self, other
        if not a.open_end and not b.open_end and len(a.positions) != len(b.positions):
            return False
        if not a.open_end and len(a.positions) < b.min_length:
            return False
        if not b.open_end and len(b.positions) < a.min_length:
            return False
        return all(x & y for x, y in zip(a.positions, b.positions, strict=False))


@functools.lru_cache(maxsize=1024)
def _shape(pattern: str) -> Shape:
    return Shape.parse(pattern)


@functools.lru_cache(maxsize=1024)
def _regex(pattern: str) -> re.Pattern[str]:
    # Validation classifies every extension of a site against every table pattern: one
    # compiled regex per pattern decides in C what a loop over the shape's positions did
    # in Python (a test holds both equal). `matches` has checked the number is digits.
    shape = _shape(pattern)
    positions = "".join(f"[{''.join(map(re.escape, sorted(s)))}]" if s else "(?!)"
                        for s in shape.positions)
    return re.compile(positions + (".+" if shape.open_end else ""), re.DOTALL)


def matches(pattern: str, number: str) -> bool:
    """`number` (digits) is one `pattern` stands for."""
    return number.isdigit() and _regex(pattern).fullmatch(number) is not None


def first_match(rules: tuple[NumberRule, ...]) -> Callable[[str], NumberRule | None]:
    """number (digits) -> the first of `rules` whose pattern it matches, as a loop over
    `matches` finds it; in one regex (validation classifies every extension of a site)."""
    if not rules:
        return lambda number: None
    # one group per pattern, tried in order: the group that matched is the first rule
    regex = re.compile("|".join(f"({_regex(r.pattern).pattern})" for r in rules), re.DOTALL)

    def first(number: str) -> NumberRule | None:
        found = regex.fullmatch(number) if number.isdigit() else None
        return None if found is None or found.lastindex is None else rules[found.lastindex - 1]

    return first


def asterisk_pattern(pattern: str) -> str:
    """The Asterisk spelling of a table pattern (the same syntax, '_' marks a pattern)."""
    return pattern if pattern.isdigit() else "_" + pattern
