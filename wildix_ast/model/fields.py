"""Constrained string types shared by every settings section.

Every string that reaches a generated Asterisk file passes through one of these types, so
none can carry a newline, a comment, a section header or a dialplan expression into it.

The checks are pydantic-core's own (Rust regular expressions anchored at both ends of the
text, lengths), not Python callbacks: at 10,000 users a callback per field was a third of
the validation time. `message` turns pydantic's error about one of them back into words a
person reads; every place that reports a settings error goes through it."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from pydantic import Field

if TYPE_CHECKING:
    from pydantic.fields import FieldInfo
    from pydantic_core import ErrorDetails


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

_EXPLAINED: dict[str, Callable[[object], str]] = {}
"""Anchored pattern -> what to say about a value it refused."""


def pattern(regex: str, what: str | Callable[[object], str]) -> FieldInfo:
    """Values matching the whole of `regex` (Rust syntax: no look-around; `$` is the end of
    the text, a final newline included). `what`: the kind of value, as in "'x' is not a
    valid <what>", or a function explaining a refused value."""
    # the group's name tells apart two types that share a regex (the error names the pattern)
    anchored = f"^(?P<t{len(_EXPLAINED)}>{regex})$"
    _EXPLAINED[anchored] = what if callable(what) else (
        lambda value: f"{value!r} is not a valid {what}")
    constraint: FieldInfo = Field(pattern=anchored)
    return constraint


def _explain_free_text(value: object) -> str:
    text = str(value)
    if _CONTROL.search(text):
        return "must not contain control characters or line breaks"
    bad = sorted({c for c in text if c in TEXT_FORBIDDEN})
    if bad:
        return f"must not contain {' '.join(repr(c) for c in bad)}"
    return "must not start or end with white space"


# Rust's \s is Unicode White_Space: the characters str.strip() removes, but for the
# controls \x1c-\x1f that the class refuses anyway (tests/live/test_speed.py compares them all).
_TEXT_CHAR = r'[^;\[\]"\\${}<>=`|\x00-\x1f\x7f-\x9f\u2028\u2029'  # TEXT_FORBIDDEN, controls
FREE_TEXT_PATTERN = f"{_TEXT_CHAR}\\s](?:{_TEXT_CHAR}]*{_TEXT_CHAR}\\s])?"

FreeText = Annotated[str, Width(80), Field(min_length=1, max_length=80),
                     pattern(FREE_TEXT_PATTERN, _explain_free_text)]
"""A person's or department's name: any printable text but Asterisk's special characters."""


def message(error: ErrorDetails) -> str:
    """What a person reads about one of pydantic's errors in the settings."""
    kind, value = error["type"], error.get("input")
    if kind == "string_pattern_mismatch":
        explain = _EXPLAINED.get(str(error.get("ctx", {}).get("pattern")))
        if explain is not None:
            return explain(value)
    elif kind == "string_type" and isinstance(value, int) and not isinstance(value, bool):
        return (f"write {value} in quotes (\"{value}\"): unquoted, YAML reads it as a number "
                "and drops leading zeros and '+'")
    elif kind == "extra_forbidden":
        return "unknown setting (check its spelling and its section)"
    elif kind == "missing":
        return "is required"
    return error["msg"].removeprefix("Value error, ")


Identifier = Annotated[str, Width(40, exact=True), pattern(
    r"[A-Za-z][A-Za-z0-9_-]{0,39}",
    "identifier (a letter, then letters, digits, '_' or '-', 40 at most)")]
"""A name that becomes an Asterisk object or context name (groups, dialplan procedures)."""

Extension = Annotated[str, Width(8, exact=True), pattern(
    r"[0-9]{2,8}", "extension (2 to 8 digits)")]
PhoneNumber = Annotated[str, Width(21, exact=True), pattern(
    r"\+?[0-9]{3,20}", "phone number (3 to 20 digits, optionally after '+')")]
Email = Annotated[str, Width(255), Field(max_length=254), pattern(
    r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})+", "email address")]
Login = Annotated[str, Width(64), pattern(
    r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}", "login (letters, digits, '.', '_', '@', '-')")]
Language = Annotated[str, Width(5), pattern(
    r"[a-z]{2}(_[A-Z]{2})?", "language code (like 'fr' or 'en_GB')")]
ToneZone = Annotated[str, Width(2), pattern(
    r"[a-z]{2}", "tone zone (a two-letter country code like 'fr')")]
CountryCode = Annotated[str, Width(4), pattern(
    r"[1-9][0-9]{0,3}", "country calling code (like '33')")]
SipToken = Annotated[str, Width(64), pattern(
    r"[A-Za-z0-9][A-Za-z0-9._/+-]{0,63}",
    "SIP product token (letters, digits, '.', '_', '/', '+', '-'; no spaces)")]
"""What the PBX calls itself in SIP `User-Agent`/`Server` headers."""
Port = Annotated[int, Field(ge=1, le=65535)]
Host = Annotated[str, Field(max_length=253), pattern(
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9][A-Za-z0-9-]{0,62})*",
    "host name or IPv4 address")]
"""A server's name or IPv4 address (SIP trunks, SMTP servers): nothing a shell, a dial
string or a configuration file would read as more than one word."""
