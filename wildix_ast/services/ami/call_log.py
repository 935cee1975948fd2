"""WMS "Debug": every AMI event of a call, kept per call and printed readably.

A call is its Linkedid (every channel of one call shares it; a channel's own Uniqueid maps
to it). The service appends each channel event to a JSON-lines file (rotated by size) and
keeps the latest calls in memory; `wildix-ast runtime call` reads the file, so a person finds
a call by a Uniqueid or by a number and a time, from another process.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

#: Dialplan variable noise; the rest of a call's events are what a person debugs with.
SKIPPED_EVENTS = frozenset({"VarSet", "RTCPSent", "RTCPReceived"})
#: Channel properties the printout shows only when they change.
_STICKY = frozenset({"ChannelStateDesc", "CallerIDNum", "CallerIDName", "ConnectedLineNum",
                     "Context", "Exten", "Priority"})
_DETAIL_FIELDS = ("ChannelStateDesc", "CallerIDNum", "CallerIDName", "ConnectedLineNum",
                  "Context", "Exten", "Priority", "Application", "AppData", "Cause",
                  "Cause-txt", "DialStatus", "DestChannel", "BridgeUniqueid", "State",
                  "Device", "UserEvent", "Variable", "Value")


@dataclass(frozen=True)
class LoggedEvent:
    time: float  # seconds since the epoch, when the service received it
    fields: Mapping[str, str]

    @property
    def name(self) -> str:
        return self.fields.get("Event", "?")

    @property
    def call(self) -> str:
        return self.fields.get("Linkedid") or self.fields.get("Uniqueid", "")

    def to_json(self) -> str:
        return json.dumps({"t": round(self.time, 6), "e": dict(self.fields)},
                          ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str) -> LoggedEvent:
        data = json.loads(line)
        return cls(time=float(data["t"]), fields={str(k): str(v) for k, v in data["e"].items()})


def wanted(event: Mapping[str, str]) -> bool:
    """A channel event worth keeping for the call's debug log."""
    return bool(event.get("Uniqueid")) and event.get("Event", "") not in SKIPPED_EVENTS


class CallLog:
    """The events of the latest `max_calls` calls, at most `max_events` each."""

    def __init__(self, max_calls: int = 5000, max_events: int = 1000) -> None:
        self.max_calls = max_calls
        self.max_events = max_events
        self._calls: OrderedDict[str, list[LoggedEvent]] = OrderedDict()
        self._call_of: dict[str, str] = {}  # Uniqueid -> Linkedid

    def add(self, event: LoggedEvent) -> None:
        uniqueid = event.fields.get("Uniqueid", "")
        # A channel stays in the call it started in, even if a bridge later changes its
        # Linkedid; events that lack one follow their channel.
        call = self._call_of.get(uniqueid) or event.call
        if not call:
            return
        if uniqueid:
            self._call_of[uniqueid] = call
        events = self._calls.setdefault(call, [])
        self._calls.move_to_end(call)
        if len(events) < self.max_events:
            events.append(event)
        while len(self._calls) > self.max_calls:
            _call, old = self._calls.popitem(last=False)
            for e in old:
                self._call_of.pop(e.fields.get("Uniqueid", ""), None)

    def call(self, uniqueid: str) -> list[LoggedEvent]:
        """The events of the call that `uniqueid` (a Uniqueid or Linkedid) belongs to."""
        return list(self._calls.get(self._call_of.get(uniqueid, uniqueid), []))

    def calls(self) -> Iterator[tuple[str, list[LoggedEvent]]]:
        yield from self._calls.items()

    def find(self, number: str, *, around: float | None = None,
             window: float = 300.0) -> list[str]:
        """Calls (Linkedids, oldest first) where `number` called or was called, optionally
        started within `window` seconds of the time `around`."""
        found = []
        for call, events in self._calls.items():
            if around is not None and abs(events[0].time - around) > window:
                continue
            if any(number in (e.fields.get("CallerIDNum"), e.fields.get("Exten"),
                              e.fields.get("ConnectedLineNum")) for e in events):
                found.append(call)
        return found


def read_log(lines: Iterable[str], log: CallLog | None = None) -> CallLog:
    """A CallLog rebuilt from JSON lines (bad lines, e.g. a torn last line, are skipped)."""
    target = log or CallLog(max_calls=10**9)
    for line in lines:
        try:
            target.add(LoggedEvent.from_json(line))
        except (ValueError, KeyError, TypeError):
            continue
    return target


def read_log_files(path: Path) -> CallLog:
    """The rotated file (`path.1`) then the current one."""
    log = CallLog(max_calls=10**9)
    for candidate in (path.with_name(path.name + ".1"), path):
        if candidate.exists():
            with open(candidate, encoding="utf-8", errors="replace") as handle:
                read_log(handle, log)
    return log


class LogWriter:
    """Appends events as JSON lines; renames the file to `<name>.1` past `max_bytes`."""

    def __init__(self, path: Path, max_bytes: int = 50 * 1024 * 1024) -> None:
        self.path = path
        self.max_bytes = max_bytes
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle: IO[str] = self._open()

    def _open(self) -> IO[str]:
        """Owner-only (calls are personal data; the folder is the bans group's too)."""
        handle = open(self.path, "a", encoding="utf-8",  # noqa: SIM115 (kept open)
                      opener=lambda name, flags: os.open(name, flags, 0o600))
        os.fchmod(handle.fileno(), 0o600)
        return handle

    def write(self, event: LoggedEvent) -> None:
        self._handle.write(event.to_json() + "\n")
        if self._handle.tell() > self.max_bytes:
            self._handle.close()
            os.replace(self.path, self.path.with_name(self.path.name + ".1"))
            self._handle = self._open()

    def flush(self) -> None:
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()


def _clock(when: float) -> str:
    return dt.datetime.fromtimestamp(when).strftime("%H:%M:%S.%f")[:-3]


def format_call(events: list[LoggedEvent]) -> str:
    """One line per event: wall time, time since the call's first event, event, channel,
    and the fields that changed since that channel's previous line (the state, caller,
    dialplan position), so a long call reads as a story, not a wall of repeats."""
    if not events:
        return "(no events)"
    start = events[0].time
    caller = next((e.fields["CallerIDNum"] for e in events
                   if e.fields.get("CallerIDNum") not in (None, "", "<unknown>")), "?")
    callee = next((e.fields["Exten"] for e in events if e.fields.get("Exten")), "?")
    day = dt.datetime.fromtimestamp(start).strftime("%Y-%m-%d")
    lines = [f"call {events[0].call} — {day}, {len(events)} events, from {caller} to {callee}"]
    width = max(len(e.name) for e in events)
    channel_width = max(len(e.fields.get("Channel", "")) for e in events)
    shown: dict[str, dict[str, str]] = {}
    for event in events:
        before = shown.setdefault(event.fields.get("Channel", ""), {})
        details = []
        for key in _DETAIL_FIELDS:
            value = event.fields.get(key)
            if value in (None, "", "<unknown>"):
                continue
            if key in _STICKY and before.get(key) == value:
                continue
            before[key] = value
            details.append(f"{key}={value}")
        lines.append(f"{_clock(event.time)} +{event.time - start:7.3f}s  "
                     f"{event.name:<{width}}  {event.fields.get('Channel', ''):<{channel_width}}"
                     f"  {' '.join(details)}".rstrip())
    return "\n".join(lines)
