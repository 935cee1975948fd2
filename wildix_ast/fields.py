"""Constrained string types shared by every settings section.

Every string that reaches a generated Asterisk file passes through one of these types, so
none can carry a newline, a comment, a section header or a dialplan expression into it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field


@dataclass(frozen=True)
class Width:
    """How many characters a stored value of this type takes (the store sizes its columns
    from it; pydantic ignores it). `exact` values are compared byte for byte (names and
    numbers that identify something), whatever the database's default collation."""

    chars: int
    exact: bool = False


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# Characters with a meaning in Asterisk configuration files or dialplan expressions.
TEXT_FORBIDDEN = set(';[]"\\${}<>=`|')


# Text without a forbidden or control character, in one regex pass (every user's name and
# department); the detailed checks below run only to explain a refusal.
_CLEAN = re.compile("[^" + re.escape("".join(sorted(TEXT_FORBIDDEN)))
                    + r"\x00-\x1f\x7f-\x9f\u2028\u2029]*")


def _free_text(value: str) -> str:
    if _CLEAN.fullmatch(value) and value == value.strip():
        return value
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters or line breaks")
    bad = sorted({c for c in value if c in TEXT_FORBIDDEN})
    if bad:
        raise ValueError(f"must not contain {' '.join(repr(c) for c in bad)}")
    if value != value.strip():
        raise ValueError("must not start or end with white space")
    return value


def _quoted_number(value: object) -> object:
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError(f"write {value} in quotes (\"{value}\"): unquoted, YAML reads it as "
                         "a number and drops leading zeros and '+'")
    return value


NumberText = BeforeValidator(_quoted_number)


def _pattern(regex: str, what: str) -> AfterValidator:
    compiled = re.compile(regex)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(f"{value!r} is not a valid {what}")
        return value

    return AfterValidator(check)


FreeText = Annotated[str, Width(80), Field(min_length=1, max_length=80),
                     AfterValidator(_free_text)]
"""A person's or department's name: any printable text but Asterisk's special characters."""

Identifier = Annotated[str, Width(40, exact=True), _pattern(
    r"[A-Za-z][A-Za-z0-9_-]{0,39}",
    "identifier (a letter, then letters, digits, '_' or '-', 40 at most)")]
"""A name that becomes an Asterisk object or context name (groups, dialplan procedures)."""

Extension = Annotated[str, Width(8, exact=True), NumberText, _pattern(
    r"[0-9]{2,8}", "extension (2 to 8 digits)")]
PhoneNumber = Annotated[str, Width(21, exact=True), NumberText, _pattern(
    r"\+?[0-9]{3,20}", "phone number (3 to 20 digits, optionally after '+')")]
Email = Annotated[str, Width(255), Field(max_length=254), _pattern(
    r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})+", "email address")]
Login = Annotated[str, Width(64), _pattern(
    r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}", "login (letters, digits, '.', '_', '@', '-')")]
Language = Annotated[str, Width(5), _pattern(
    r"[a-z]{2}(_[A-Z]{2})?", "language code (like 'fr' or 'en_GB')")]
ToneZone = Annotated[str, Width(2), _pattern(
    r"[a-z]{2}", "tone zone (a two-letter country code like 'fr')")]
CountryCode = Annotated[str, Width(4), NumberText, _pattern(
    r"[1-9][0-9]{0,3}", "country calling code (like '33')")]
Port = Annotated[int, Field(ge=1, le=65535)]
