"""WMS popup URL: a user's URL template expanded for each incoming call.

Placeholders (WMS "Préférences utilisateur"): `{CALLERNUM}`, `{CALLERNAME}`, `{USERNUM}`,
`{USERNAME}`, `{CALLTYPE}`, `{TAGS}`; each may take Asterisk-style substring manipulation,
`{CALLERNUM:1}` (drop the first character), `{CALLERNUM:-4}` (the last four),
`{CALLERNUM:1:3}` (three characters from the second). Values are URL-encoded; unknown
placeholders are left as written so a typo shows in the result instead of vanishing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

PLACEHOLDERS = ("CALLERNUM", "CALLERNAME", "USERNUM", "USERNAME", "CALLTYPE", "TAGS")
_PLACEHOLDER = re.compile(r"\{(?P<name>[A-Z]+)(?::(?P<offset>-?\d+)(?::(?P<length>-?\d+))?)?\}")


@dataclass(frozen=True)
class PopupCall:
    """What a popup URL can show about one call to one user."""

    caller_number: str = ""
    caller_name: str = ""
    user_number: str = ""
    user_name: str = ""
    call_type: str = ""  # internal / external: the call type
    tags: tuple[str, ...] = ()

    def value(self, name: str) -> str | None:
        return {
            "CALLERNUM": self.caller_number, "CALLERNAME": self.caller_name,
            "USERNUM": self.user_number, "USERNAME": self.user_name,
            "CALLTYPE": self.call_type, "TAGS": ",".join(self.tags),
        }.get(name)


def substring(value: str, offset: int, length: int | None = None) -> str:
    """Asterisk's `${VAR:offset:length}`: a negative offset counts from the end, a negative
    length leaves that many characters off the end."""
    start = max(0, len(value) + offset) if offset < 0 else min(offset, len(value))
    rest = value[start:]
    if length is None:
        return rest
    return rest[:length] if length >= 0 else rest[:max(0, len(rest) + length)]


def expand(template: str, call: PopupCall) -> str:
    """The template with every known placeholder replaced by its URL-encoded value."""
    def replace(found: re.Match[str]) -> str:
        value = call.value(found["name"])
        if value is None:
            return found[0]
        if found["offset"] is not None:
            length = int(found["length"]) if found["length"] is not None else None
            value = substring(value, int(found["offset"]), length)
        return quote(value, safe="")

    return _PLACEHOLDER.sub(replace, template)


# Ascii letters, digits and -._~ stay; everything else becomes %XX: what `quote(value,
# safe="")` can produce for one placeholder's value.
_ENCODED_VALUE = r"[A-Za-z0-9._~%-]*"


def published(template: str, call: PopupCall) -> str:
    """The URL as the dialplan publishes it (AMI UserEvent splits fields on commas, so the
    template's own commas are encoded too)."""
    return expand(template, call).replace(",", "%2C")


def is_expansion_of(template: str, url: str) -> bool:
    """Whether `url` is `template` as `published` expands it for some call: its literal
    parts as written, each placeholder an encoded value (which holds no '/', '?', '@', ':'
    nor '#', so no value can change the host, the path's shape or the query's keys)."""
    pattern: list[str] = []
    position = 0
    for found in _PLACEHOLDER.finditer(template):
        pattern.append(re.escape(template[position:found.start()].replace(",", "%2C")))
        pattern.append(_ENCODED_VALUE if found["name"] in PLACEHOLDERS
                       else re.escape(found[0]))
        position = found.end()
    pattern.append(re.escape(template[position:].replace(",", "%2C")))
    return re.fullmatch("".join(pattern), url) is not None
