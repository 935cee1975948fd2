"""What a SIPp process writes down: its message trace (``-trace_msg``) and statistics
(``-trace_stat``), parsed into plain values."""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

_COMPACT = {"call-id": "i", "from": "f", "to": "t", "via": "v", "contact": "m"}


@dataclass(frozen=True)
class SipMessage:
    """One SIP message from SIPp's ``-trace_msg`` log."""

    direction: Literal["sent", "received"]
    timestamp: str
    start_line: str
    headers: tuple[tuple[str, str], ...]
    body: str

    @property
    def is_response(self) -> bool:
        return self.start_line.startswith("SIP/2.0 ")

    @property
    def status(self) -> int | None:
        if not self.is_response:
            return None
        parts = self.start_line.split()
        return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None

    @property
    def request_method(self) -> str | None:
        return None if self.is_response else self.start_line.split(" ", 1)[0]

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        names = {lowered, _COMPACT.get(lowered, lowered)}
        for key, value in self.headers:
            if key.lower() in names:
                return value
        return None

    @property
    def call_id(self) -> str | None:
        return self.header("Call-ID")

    @property
    def cseq(self) -> tuple[int, str] | None:
        value = self.header("CSeq")
        if value is None:
            return None
        number, _, method = value.strip().partition(" ")
        return (int(number), method.strip()) if number.isdigit() else None

    @property
    def method(self) -> str | None:
        """The request method, or for a response the method its CSeq names."""
        if not self.is_response:
            return self.request_method
        cseq = self.cseq
        return cseq[1] if cseq else None

    @property
    def time(self) -> float | None:
        """When SIPp sent or received it (seconds since the epoch), None if unreadable."""
        try:
            return datetime.strptime(self.timestamp, "%Y-%m-%d %H:%M:%S.%f").timestamp()
        except ValueError:
            return None


_TRACE_SPLIT = re.compile(r"^-{20,} (?P<ts>[^\n]*)\n", re.MULTILINE)
_TRACE_HEAD = re.compile(r"^\s*(?P<transport>\w+) message (?P<dir>sent|received)[^\n]*\n")


def parse_message_trace(text: str) -> list[SipMessage]:
    """Parse SIPp's ``-trace_msg`` file into messages."""
    messages: list[SipMessage] = []
    pieces = _TRACE_SPLIT.split(text)
    # pieces = [before, ts1, chunk1, ts2, chunk2, ...]
    for ts, chunk in zip(pieces[1::2], pieces[2::2], strict=False):
        head = _TRACE_HEAD.match(chunk)
        if head is None:
            continue
        raw = chunk[head.end() :].lstrip("\r\n")
        header_part, _, body = raw.replace("\r\n", "\n").partition("\n\n")
        lines = header_part.split("\n")
        if not lines or not lines[0].strip():
            continue
        headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            if line[:1] in (" ", "\t") and headers:
                name, value = headers[-1]
                headers[-1] = (name, value + " " + line.strip())
                continue
            name, sep, value = line.partition(":")
            if sep:
                headers.append((name.strip(), value.strip()))
        direction: Literal["sent", "received"] = (
            "sent" if head.group("dir") == "sent" else "received"
        )
        messages.append(
            SipMessage(
                direction=direction,
                timestamp=ts.strip(),
                start_line=lines[0].strip(),
                headers=tuple(headers),
                body=body.strip("\n"),
            )
        )
    return messages


def parse_stat_csv(text: str) -> dict[str, str]:
    """The last row of SIPp's ``-trace_stat`` CSV, keyed by column name."""
    rows = [row for row in csv.reader(text.splitlines(), delimiter=";") if row]
    if len(rows) < 2:
        return {}
    header, last = rows[0], rows[-1]
    return {name: value for name, value in zip(header, last, strict=False) if name}


def stat_int(stats: Mapping[str, str], name: str) -> int:
    """A counter of the statistics, 0 when SIPp did not write it."""
    value = stats.get(name, "").strip()
    return int(value) if value.isdigit() else 0
