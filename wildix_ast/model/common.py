"""What every WMS menu model shares: the pydantic configuration and the built-in names.

Each menu module imports this module, `fields` and the models it contains (a user's
preferences, a dialplan's procedures, a trunk's codecs), never a sibling section; the rules
that span sections live in `references`, `routing` and `dialplan_rules`, which read
`sections`."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import ConfigDict

STRICT = ConfigDict(extra="forbid", str_strip_whitespace=False, frozen=True)
"""Unknown settings are errors, text is kept as written, models are values."""


def empty_list() -> list[Any]:
    """The default of a list setting. Not `default_factory=list`: pydantic reads the
    signature of every default factory, and a builtin's costs compiling the tokenizer's
    regexes (0.02 s of every process that imports the models)."""
    return []


class Srtp(StrEnum):
    """SDES-SRTP for phones (per site, overridden per ACL group). Keys travel in the SDP,
    so SRTP is only ever offered or accepted on the TLS transport."""

    OFF = "off"
    #: offered to phones that ask for it; a call without SRTP is still carried
    OPTIONAL = "optional"
    #: a call without SRTP is refused
    REQUIRED = "required"


DEFAULT_GROUP = "default"
"""The ACL group of a user whose settings name none (WMS 'Profil' by default)."""

DEFAULT_PROCEDURE = "users"
"""The built-in dialplan procedure: calls to users by extension."""
