"""One call record as the call history keeps it: its columns, and parsing Asterisk's lines.

A record is one call as a person thinks of it (a forwarded call is one call with its legs),
keyed by Asterisk's linked id (`call_id`). Times are UTC epoch seconds (float), so every
backend compares and sums them the same way; `day` (UTC, `YYYY-MM-DD`) groups statistics
without a database's own date functions."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, fields
from enum import StrEnum
from typing import Any


class Disposition(StrEnum):
    ANSWERED = "answered"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    FAILED = "failed"
    REFUSED_CLASS = "refused_class"
    """The caller's ACL group may not call this class (403)."""
    OVER_LIMIT = "over_limit"
    """A class limit or the toll-fraud brake refused it."""


class Direction(StrEnum):
    INTERNAL = "internal"
    INCOMING = "incoming"
    OUTGOING = "outgoing"


@dataclass
class CallRecord:
    call_id: str
    start: float
    answer: float | None
    end: float
    duration: float
    billsec: float
    disposition: str
    direction: str
    day: str
    caller_user: str = ""
    caller_name: str = ""
    caller_number: str = ""
    caller_group: str = ""
    callee_user: str = ""
    callee_name: str = ""
    callee_number: str = ""
    callee_group: str = ""
    dialled: str = ""
    call_class: str = ""
    trunk: str = ""
    handled_by: str = ""
    voicemail: str = ""
    fax: str = ""
    """`received` or `sent` when the call carried a fax (else empty); the fields below
    then say how it went. Mail2Fax's sent faxes fill the same fields."""
    fax_status: str = ""
    """FAXOPT(status): SUCCESS, FAILED (empty when the fax never started)."""
    fax_pages: int = 0
    fax_remote: str = ""
    """The remote fax station id."""
    fax_document: str = ""
    """The fax's PDF, `<extension>/<job>.pdf` in the fax documents folder
    (`services.fax.documents`), when pages arrived (or were sent); the fax service keeps
    it for `call_history.retention_days`."""
    legs: str = "[]"
    """The CDRs the record was made of (JSON), for whoever bills from the raw legs."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CallRecord:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(CallRecord))

# cdr_custom's JSON escapes the quote character only: a backslash in a value (a caller's
# name) comes out bare, which JSON refuses. Doubled here unless it escapes a quote.
_BARE_BACKSLASH = re.compile(rb'\\(?!")')


def parse_line(line: bytes) -> dict[str, Any] | None:
    """A JSON line from cdr_custom/cel_custom, or None when it cannot be read (the caller
    keeps it aside, never drops it silently)."""
    for attempt in (line, _BARE_BACKSLASH.sub(rb"\\\\", line)):
        try:
            data = json.loads(attempt.decode("utf-8", errors="replace"), strict=False)
        except ValueError:
            continue
        if isinstance(data, dict) and isinstance(data.get("linkedid"), str) \
                and data["linkedid"]:
            return data
        return None
    return None
