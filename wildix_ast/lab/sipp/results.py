"""What a SIPp run says: the finished process (:class:`SippRun`) and, read from its trace and
statistics, the result of each role (registration, call, UAS, load)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from wildix_ast.lab.sipp.errors import SippError
from wildix_ast.lab.sipp.scenarios import UAS_BEHAVIOURS, Behaviour
from wildix_ast.lab.sipp.trace import SipMessage, stat_int

Expect = Literal["connect", "reject", "cancel"]

#: SIPp's documented exit codes.
EXIT_CODES: dict[int, str] = {
    0: "all calls were successful",
    1: "at least one call failed",
    97: "exit on internal command (calls may have been processed)",
    99: "normal exit without calls processed",
    255: "fatal error",
    254: "fatal error binding a socket",
}


@dataclass
class SippRun:
    """One finished SIPp process and what it left in its run directory."""

    name: str
    command: list[str]
    run_dir: Path
    exit_code: int | None
    timed_out: bool
    duration: float
    output: str
    messages: list[SipMessage]
    error_log: str
    stats: dict[str, str]

    @property
    def sipp_timed_out(self) -> bool:
        """SIPp's own global timeout (-timeout, -timeout_error) ended the run (exit 255)."""
        return self.exit_code == 255 and "timed out after" in self.error_log

    @property
    def exit_meaning(self) -> str:
        if self.timed_out:
            return "killed by the driver after its timeout"
        if self.exit_code is None:
            return "not finished"
        if self.sipp_timed_out:
            return "SIPp's global timeout expired (exit 255)"
        return EXIT_CODES.get(self.exit_code, f"exit code {self.exit_code}")

    @property
    def successful_calls(self) -> int:
        return stat_int(self.stats, "SuccessfulCall(C)")

    @property
    def failed_calls(self) -> int:
        return stat_int(self.stats, "FailedCall(C)")

    @property
    def created_calls(self) -> int:
        return stat_int(self.stats, "TotalCallCreated")

    @property
    def retransmissions(self) -> int:
        """Requests and responses SIPp sent again for want of an answer (UDP timers)."""
        return stat_int(self.stats, "Retransmissions(C)")

    def responses(self, method: str, direction: str = "received") -> list[SipMessage]:
        return [
            m
            for m in self.messages
            if m.is_response and m.direction == direction and m.method == method
        ]

    def requests(self, method: str, direction: str = "received") -> list[SipMessage]:
        return [
            m
            for m in self.messages
            if not m.is_response and m.direction == direction and m.request_method == method
        ]

    def final_status(self, method: str, direction: str = "received") -> int | None:
        """The last final (>= 200) status code of a ``method`` response."""
        finals = [
            m.status
            for m in self.responses(method, direction)
            if m.status is not None and m.status >= 200
        ]
        return finals[-1] if finals else None

    def describe(self) -> str:
        """A short text for assertion messages: exit code, errors, last messages."""
        lines = [f"{self.name}: {self.exit_meaning} ({self.duration:.2f} s) in {self.run_dir}"]
        if self.error_log.strip():
            lines.append("errors:\n" + self.error_log.strip()[-3000:])
        summary = [
            f"  {m.direction:8} {m.start_line}"
            + (f"  [{m.header('CSeq')}]" if m.is_response else "")
            for m in self.messages[-20:]
        ]
        if summary:
            lines.append("messages:\n" + "\n".join(summary))
        if self.output.strip() and (self.exit_code not in (0, 99) or self.timed_out):
            lines.append("output:\n" + self.output.strip()[-1500:])
        return "\n".join(lines)


# --------------------------------------------------------------------------- registration


@dataclass
class RegisterResult:
    ext: str
    expires: int
    #: the port in the Contact (for a phone: its UAS port, which sent the REGISTER)
    contact_port: int
    expect: Literal["registered", "rejected"]
    #: the final status of the last REGISTER (200 when registered, 401/403 when refused)
    status: int | None
    run: SippRun

    @property
    def registered(self) -> bool:
        """200, from a SIPp run that ended cleanly (or, for a phone's registration, is
        still running: its UAS goes on handling calls)."""
        return self.status == 200 and self.run.exit_code in (0, None) and not self.run.timed_out

    @property
    def ok(self) -> bool:
        """True when the outcome is what was expected."""
        if self.expect == "registered":
            return self.registered
        return self.status is not None and self.status >= 300 and not self.registered

    def check(self) -> RegisterResult:
        if not self.ok:
            raise SippError(
                f"REGISTER {self.ext}: expected {self.expect}, got {self.status}\n"
                + self.run.describe()
            )
        return self


def register_outcome(messages: Sequence[SipMessage], *, unregister: bool) -> int | None:
    """The final status of a phone's registration (CSeq 1-2 of ``phone.xml``) or of its
    unregistration (CSeq 3-4); None while there is none.  A 401/407 is final only
    when the REGISTER that carried the credentials got it."""
    first, second = (3, 4) if unregister else (1, 2)
    finals: list[tuple[int, int]] = []
    for m in messages:
        cseq = m.cseq
        if (
            m.direction == "received"
            and m.status is not None
            and m.status >= 200
            and cseq is not None
            and cseq[1] == "REGISTER"
            and cseq[0] in (first, second)
        ):
            finals.append((cseq[0], m.status))
    for number, status in reversed(finals):
        if number == second or status not in (401, 407):
            return status
    return None


# --------------------------------------------------------------------------- calls


@dataclass
class CallResult:
    from_ext: str
    to_number: str
    expect: Expect
    #: every status received for the INVITE(s), in order (100, 401, 100, 180, 200 ...)
    statuses: list[int]
    #: the last final status of the INVITE, None if none came
    final_status: int | None
    connected: bool
    #: who ended the connected call cleanly: "local" (our BYE got 200) or "remote"
    #: (the far end's BYE, which we answered 200); None if it was never ended
    hangup_by: Literal["local", "remote"] | None
    #: seconds the SIPp process ran
    duration: float
    run: SippRun

    @classmethod
    def of(cls, run: SippRun, from_ext: str, to_number: str, expect: Expect) -> CallResult:
        final = run.final_status("INVITE")
        hangup_by: Literal["local", "remote"] | None = None
        if any(m.status == 200 for m in run.responses("BYE")):
            hangup_by = "local"
        elif any(m.status == 200 for m in run.responses("BYE", "sent")):
            hangup_by = "remote"
        return cls(
            from_ext=from_ext,
            to_number=to_number,
            expect=expect,
            statuses=[m.status for m in run.responses("INVITE") if m.status is not None],
            final_status=final,
            connected=final == 200,
            hangup_by=hangup_by,
            duration=run.duration,
            run=run,
        )

    @property
    def success(self) -> bool:
        """True when the outcome is what was expected, and the call ended cleanly."""
        if self.expect == "connect":
            return self.connected and self.hangup_by is not None and self.run.exit_code == 0
        if self.expect == "cancel":
            return not self.connected and self.final_status == 487 and self.run.exit_code == 0
        return (
            not self.connected
            and self.final_status is not None
            and self.final_status >= 300
            and not self.run.timed_out
        )

    def check(self) -> CallResult:
        if not self.success:
            raise SippError(
                f"call {self.from_ext} → {self.to_number}: expected {self.expect}, "
                f"final status {self.final_status}, statuses {self.statuses}\n"
                + self.run.describe()
            )
        return self


# --------------------------------------------------------------------------- UAS


@dataclass
class UasResult:
    ext: str
    behaviour: Behaviour
    #: distinct calls (Call-IDs) that sent us an INVITE
    invites: int
    #: calls we answered 200 / refused 486 / that were cancelled / that we got a BYE for
    answered: int
    busy: int
    cancelled: int
    byes: int
    #: qualify OPTIONS answered (not calls)
    options: int
    #: calls handled to their end (BYE answered, or the refusal ACKed)
    completed: int
    run: SippRun
    #: out-of-dialog NOTIFYs answered (Asterisk's unsolicited MWI; not calls)
    notifies: int = 0

    @classmethod
    def of(cls, run: SippRun, ext: str, behaviour: Behaviour) -> UasResult:
        def calls(found: list[SipMessage], status: int | None = None) -> int:
            return len({m.call_id for m in found if status is None or m.status == status})

        sent = run.responses("INVITE", "sent")
        return cls(
            ext=ext,
            behaviour=behaviour,
            invites=calls(run.requests("INVITE")),
            answered=calls(sent, 200),
            busy=calls(sent, 486),
            cancelled=calls(run.requests("CANCEL")),
            byes=calls(run.requests("BYE")),
            options=calls(run.requests("OPTIONS")),
            completed=len(completed_uas_calls(run.messages, behaviour)),
            run=run,
            notifies=calls(run.requests("NOTIFY")),
        )

    @property
    def success(self) -> bool:
        """SIPp saw no failed call and every INVITE was handled to its end."""
        return (
            self.run.exit_code in (0, 99)
            and not self.run.timed_out
            and self.run.failed_calls == 0
            and self.completed == self.invites
        )


def completed_uas_calls(messages: Sequence[SipMessage], behaviour: Behaviour) -> set[str]:
    """Call-IDs of the calls a UAS of ``behaviour`` handled to their end."""

    def ids(pred: Callable[[SipMessage], bool]) -> set[str]:
        return {m.call_id for m in messages if m.call_id is not None and pred(m)}

    if UAS_BEHAVIOURS[behaviour].registrar:
        return ids(lambda m: m.direction == "sent" and m.method == "REGISTER"
                   and m.status is not None and m.status >= 200 and m.status != 401)
    final = UAS_BEHAVIOURS[behaviour].refuses_with
    if final is None:
        return ids(lambda m: m.direction == "sent" and m.status == 200 and m.method == "BYE")
    refused = ids(lambda m: m.direction == "sent" and m.status == final)
    acked = ids(lambda m: m.direction == "received" and m.request_method == "ACK")
    return refused & acked


# --------------------------------------------------------------------------- load


@dataclass
class LoadResult:
    calls: int
    successful: int
    failed: int
    created: int
    #: calls whose final INVITE status was 200 / a rejection (only when messages are
    #: traced; SIPp itself counts a rejected call that ended cleanly as successful)
    connected: int | None
    rejected: int | None
    duration: float
    run: SippRun
    #: requests and responses SIPp had to send again (lost or late answers)
    retransmissions: int = 0
    #: seconds from each call's first INVITE to its first ringing (180/183) or, without
    #: one, its final answer (only when messages are traced)
    post_dial_delays: list[float] = field(default_factory=list)

    @classmethod
    def of(cls, run: SippRun, calls: int, traced: bool) -> LoadResult:
        connected: int | None = None
        rejected: int | None = None
        if traced:
            finals: dict[str | None, int] = {}
            for m in run.responses("INVITE"):
                if m.status is not None and m.status >= 200:
                    finals[m.call_id] = m.status
            connected = sum(1 for status in finals.values() if status == 200)
            rejected = sum(1 for status in finals.values() if status != 200)
        return cls(
            calls=calls,
            successful=run.successful_calls,
            failed=run.failed_calls,
            created=run.created_calls,
            connected=connected,
            rejected=rejected,
            duration=run.duration,
            run=run,
            retransmissions=run.retransmissions,
            post_dial_delays=post_dial_delays(run.messages) if traced else [],
        )

    @property
    def success(self) -> bool:
        """All calls completed, and (when traced) all of them connected."""
        complete = self.successful == self.calls and self.failed == 0
        return complete and (self.connected is None or self.connected == self.calls)

    def post_dial_delay(self, percent: float) -> float | None:
        """The ``percent`` percentile (nearest rank) of :attr:`post_dial_delays`, in
        seconds; None without any."""
        return percentile(self.post_dial_delays, percent)


def post_dial_delays(messages: Sequence[SipMessage]) -> list[float]:
    """Per call (in the order they started), seconds from the first INVITE it sent to the
    first 180/183 it received, or to its final answer if it never rang; a digest
    challenge (401/407) is part of the delay, as a person dialling waits through it."""
    started: dict[str, float] = {}
    answered: dict[str, float] = {}
    for m in messages:
        when, call, status = m.time, m.call_id, m.status
        if when is None or call is None or m.method != "INVITE":
            continue
        if m.direction == "sent" and not m.is_response:
            started.setdefault(call, when)
        elif m.direction == "received" and status is not None and call not in answered and (
            status in (180, 183) or (status >= 200 and status not in (401, 407))
        ):
            answered[call] = when
    return [answered[call] - at for call, at in started.items() if call in answered]


def percentile(values: Sequence[float], percent: float) -> float | None:
    """The nearest-rank ``percent`` percentile of ``values``; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(percent / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]
