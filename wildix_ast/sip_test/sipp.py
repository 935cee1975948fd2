"""Drive SIPp (3.6, Debian package ``sip-tester``) to play real phones against Asterisk.

Every SIPp process runs as a subprocess with a timeout, on its own free loopback port
(SIP and media), with its message trace, error trace, statistics CSV and final screen
written into a run directory under ``work_dir``.  Outcomes are read from those files:
the SIP status codes from the message trace, call counts from the statistics, and the
process exit code (see :data:`EXIT_CODES`).

Roles:

* :meth:`SippDriver.register` / :meth:`SippDriver.unregister`: one REGISTER with digest
  auth from a short-lived SIPp process (registration checks; the contact it leaves is
  only reachable where the server does not rewrite contacts).
* :meth:`SippDriver.answer`: a UAS for an extension that answers (200 + SDP, waits for
  BYE), is busy (486), or rings until CANCEL (180, 200/487).  With ``password`` the UAS
  registers itself, from the socket it answers on, as a real phone does: Asterisk's
  ``rewrite_contact = yes`` stores the REGISTER's source address as the contact, so
  only the socket that registered receives the calls.
* :meth:`SippDriver.call`: a UAC that calls a number as an extension, with the 401/407
  digest challenge, holds the call and hangs up (or expects a rejection).
* :meth:`SippDriver.call_load`: many calls (``-m``/``-r``/``-l``) with counts from SIPp's
  statistics.
* :meth:`SippDriver.phone`: a self-registering UAS as a context manager; at the end the
  UAS unregisters (Expires: 0) from the same socket and stops.

A self-registering UAS is SIPp in client mode with ``-m 1``: the main scenario
(``phone.xml``) registers, then waits for the driver's stop request (a SIP MESSAGE
with the main call's Call-ID, sent to the UAS port) and unregisters; the INVITEs,
OPTIONS and MWI NOTIFYs Asterisk sends meanwhile match no call of SIPp and go to the
out-of-call scenario (``-oocsf``: ``uas_answer.xml``, ``uas_busy.xml`` or
``uas_ring.xml``).
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Literal
from xml.sax.saxutils import quoteattr

__all__ = [
    "AUDIO_PCAP",
    "EXIT_CODES",
    "PCAP_DIR",
    "CallResult",
    "LoadHandle",
    "LoadResult",
    "Phone",
    "RegisterResult",
    "SipMessage",
    "SippDriver",
    "SippError",
    "SippRun",
    "UasHandle",
    "UasResult",
    "free_port",
    "scenario_path",
    "write_dtmf_pcap",
]

Transport = Literal["udp", "tcp"]
Behaviour = Literal["answer", "busy", "ignore", "unavailable", "registrar"]
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

_SCENARIOS = {
    "register": "register.xml",
    "call": "uac_call.xml",
    "cancel": "uac_cancel.xml",
    "answer": "uas_answer.xml",
    "busy": "uas_busy.xml",
    "ignore": "uas_ring.xml",
    # providers (SIP trunks): one that refuses calls with 503, a registrar that challenges
    "unavailable": "uas_unavailable.xml",
    "registrar": "uas_registrar.xml",
    "phone": "phone.xml",
}

#: where SIPp's Debian package keeps its G.711 and RFC 2833 DTMF pcaps
PCAP_DIR = Path("/usr/share/sip-tester")
#: G.711 A-law speech (7 s) shipped with sip-tester
AUDIO_PCAP = PCAP_DIR / "g711a.pcap"
_MEDIA_MARK = "<!-- wildix-ast media: the driver puts its pcap playback (audio, DTMF) here -->"

#: the hold of uac_call.xml: the timeout of the wait for the far end's BYE
_HOLD = re.compile(r'(<recv request="BYE" timeout=")\d+(" ontimeout="local_hangup")')
#: the ring time of uac_cancel.xml (one pause per INVITE attempt)
_RING = re.compile(r'(<pause milliseconds=")\d+("/><!-- ring time -->)')

_handed_out: set[int] = set()
_port_lock = threading.Lock()


class SippError(RuntimeError):
    """SIPp could not be run, or a result was checked and did not match."""


def scenario_path(name: str) -> Path:
    """The path of a scenario shipped in ``wildix_ast/sip_test/scenarios``."""
    ref = resources.files("wildix_ast.sip_test").joinpath("scenarios", name)
    path = Path(str(ref))
    if not path.is_file():
        raise SippError(f"SIPp scenario {name} not found at {path}")
    return path


def _port_is_free(host: str, port: int) -> bool:
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                return False
    return True


def free_port(host: str = "127.0.0.1", *, span: int = 1, even: bool = False) -> int:
    """A port (or ``span`` consecutive ports) free for both UDP and TCP on ``host``.

    Ports already handed out by this process are never handed out again, so parallel
    SIPp processes started from one test run cannot collide with each other.
    """
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((host, 0))
            port = int(probe.getsockname()[1])
        if even and port % 2:
            port += 1
        if port + span > 65535:
            continue
        candidates = range(port, port + span)
        with _port_lock:
            if any(p in _handed_out for p in candidates):
                continue
            if all(_port_is_free(host, p) for p in candidates):
                _handed_out.update(candidates)
                return port
    raise SippError(f"no free port on {host}")


# --------------------------------------------------------------------------- traces


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
        compact = {"call-id": "i", "from": "f", "to": "t", "via": "v", "contact": "m"}
        names = {lowered, compact.get(lowered, lowered)}
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


def _stat_int(stats: Mapping[str, str], name: str) -> int:
    value = stats.get(name, "").strip()
    return int(value) if value.isdigit() else 0


# --------------------------------------------------------------------------- results


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
    screen: str

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
        return _stat_int(self.stats, "SuccessfulCall(C)")

    @property
    def failed_calls(self) -> int:
        return _stat_int(self.stats, "FailedCall(C)")

    @property
    def created_calls(self) -> int:
        return _stat_int(self.stats, "TotalCallCreated")

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

    @property
    def error_log(self) -> str:
        return self.run.error_log

    def check(self) -> CallResult:
        if not self.success:
            raise SippError(
                f"call {self.from_ext} → {self.to_number}: expected {self.expect}, "
                f"final status {self.final_status}, statuses {self.statuses}\n"
                + self.run.describe()
            )
        return self


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
    #: calls handled to their end (BYE answered, or 486/487 ACKed)
    completed: int
    run: SippRun
    #: out-of-dialog NOTIFYs answered (Asterisk's unsolicited MWI; not calls)
    notifies: int = 0

    @property
    def success(self) -> bool:
        """SIPp saw no failed call and every INVITE was handled to its end."""
        return (
            self.run.exit_code in (0, 99)
            and not self.run.timed_out
            and self.run.failed_calls == 0
            and self.completed == self.invites
        )


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

    @property
    def success(self) -> bool:
        """All calls completed, and (when traced) all of them connected."""
        complete = self.successful == self.calls and self.failed == 0
        return complete and (self.connected is None or self.connected == self.calls)


# --------------------------------------------------------------------------- processes


class UasHandle:
    """A SIPp UAS running in the background for one extension.

    SIPp's call limit cannot count the calls: Asterisk's qualify OPTIONS would count as
    calls.  The handle counts the finished calls of its behaviour in the message trace
    instead (:meth:`completed_calls`) and stops SIPp once ``calls`` are done.

    A self-registering UAS (``control_call_id`` set) has its :attr:`registration`; it is
    stopped by a request to its main call, which unregisters from the same socket
    (:attr:`unregistration`) and ends; a plain UAS is stopped with SIGUSR1.
    """

    def __init__(
        self,
        driver: SippDriver,
        ext: str,
        behaviour: Behaviour,
        port: int,
        calls: int,
        process: subprocess.Popen[bytes],
        run: _PendingRun,
        control_call_id: str | None = None,
    ) -> None:
        self.driver = driver
        self.ext = ext
        self.behaviour: Behaviour = behaviour
        self.port = port
        self.calls = calls
        self.process = process
        self._run = run
        self.control_call_id = control_call_id
        self.result: UasResult | None = None
        #: the phone's REGISTER (self-registering UAS only)
        self.registration: RegisterResult | None = None
        #: the phone's REGISTER with Expires: 0, once stopped (self-registering UAS only)
        self.unregistration: RegisterResult | None = None
        self._trace_size = -1
        self._messages: list[SipMessage] = []
        self._completed = 0
        self._control: socket.socket | None = None

    def running(self) -> bool:
        return self.process.poll() is None

    def messages(self) -> list[SipMessage]:
        """The messages SIPp traced so far."""
        trace = self._run.run_dir / "messages.log"
        size = trace.stat().st_size if trace.exists() else 0
        if size != self._trace_size:  # parse again only when SIPp wrote something
            text = trace.read_text(errors="replace") if size else ""
            self._trace_size = size
            self._messages = parse_message_trace(text)
            self._completed = len(_completed_uas_calls(self._messages, self.behaviour))
        return self._messages

    def completed_calls(self) -> int:
        """Calls handled to their end so far (BYE answered, or 486/487 ACKed)."""
        self.messages()
        return self._completed

    def wait_registered(self, timeout: float) -> RegisterResult:
        """Wait for the final answer to the phone's REGISTER (or SIPp's exit)."""
        deadline = time.monotonic() + timeout
        while self.running() and time.monotonic() < deadline:
            if _register_outcome(self.messages(), unregister=False) is not None:
                break
            time.sleep(0.05)
        # still running: registered (or no answer); exited: refused (or SIPp failed)
        run = self._run.snapshot(self.process) if self.running() else self.stop().run
        self.registration = RegisterResult(
            ext=self.ext,
            expires=int(self._run.keys.get("expires", "0")),
            contact_port=self.port,
            expect="registered",
            status=_register_outcome(run.messages, unregister=False),
            run=run,
        )
        return self.registration

    def wait(self, timeout: float | None = None) -> UasResult:
        """Wait until ``calls`` calls are done (or SIPp's own timeout), then stop SIPp."""
        if self.result is not None:
            return self.result
        limit = self._run.sipp_timeout + 10.0 if timeout is None else timeout
        deadline = time.monotonic() + limit
        while self.running() and time.monotonic() < deadline:
            if self.calls and self.completed_calls() >= self.calls:
                break
            time.sleep(0.1)
        return self.stop()

    def stop(self, grace: float = 5.0) -> UasResult:
        """Stop SIPp now.

        A self-registering UAS gets its stop request and unregisters first (``grace``
        seconds for that and for SIPp to exit).  Then SIGUSR1 (quit once the current
        calls end) and, ``grace`` seconds later, SIGKILL.
        """
        if self.result is None:
            try:
                if self.process.poll() is None and self.control_call_id is not None:
                    self._send_stop_request()
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        self.process.wait(timeout=grace)
                if self.process.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        self.process.send_signal(signal.SIGUSR1)
                sipp_run = self._run.finish(
                    self.process, time.monotonic() - self._run.started + grace
                )
            finally:
                if self._control is not None:
                    self._control.close()
                    self._control = None
            self.result = self._summarise(sipp_run)
            if self.control_call_id is not None:
                self.unregistration = RegisterResult(
                    ext=self.ext,
                    expires=0,
                    contact_port=self.port,
                    expect="registered",
                    status=_register_outcome(sipp_run.messages, unregister=True),
                    run=sipp_run,
                )
        return self.result

    def _send_stop_request(self) -> None:
        """The request that makes the main call of a self-registering UAS unregister.

        Sent to the UAS port (over TCP, on a connection of its own, kept open until
        SIPp has exited); SIPp matches it to its main call by the Call-ID.
        """
        driver = self.driver
        proto = "UDP" if driver.transport == "udp" else "TCP"
        kind = socket.SOCK_DGRAM if driver.transport == "udp" else socket.SOCK_STREAM
        sock = socket.socket(socket.AF_INET, kind)
        try:
            sock.bind((driver.local_ip, 0))
            sock.settimeout(5.0)
            sock.connect((driver.local_ip, self.port))
            here = f"{driver.local_ip}:{sock.getsockname()[1]}"
            request = (
                f"MESSAGE sip:{self.ext}@{driver.local_ip}:{self.port} SIP/2.0\r\n"
                f"Via: SIP/2.0/{proto} {here};branch=z9hG4bK-wildix-stop-{os.getpid()}\r\n"
                f"From: <sip:wildix-ast-driver@{here}>;tag=stop\r\n"
                f"To: <sip:{self.ext}@{driver.local_ip}>\r\n"
                f"Call-ID: {self.control_call_id}\r\n"
                "CSeq: 1 MESSAGE\r\n"
                "Max-Forwards: 70\r\n"
                "Content-Length: 0\r\n\r\n"
            )
            sock.sendall(request.encode())
        except OSError:
            sock.close()  # SIPp is gone or its socket is closed: SIGUSR1 follows
            return
        self._control = sock

    def _summarise(self, run: SippRun) -> UasResult:
        options = {m.call_id for m in run.requests("OPTIONS")}
        notifies = {m.call_id for m in run.requests("NOTIFY")}
        invites = {m.call_id for m in run.requests("INVITE")}
        answered = {m.call_id for m in run.responses("INVITE", "sent") if m.status == 200}
        busy = {m.call_id for m in run.responses("INVITE", "sent") if m.status == 486}
        cancelled = {m.call_id for m in run.requests("CANCEL")}
        byes = {m.call_id for m in run.requests("BYE")}
        return UasResult(
            ext=self.ext,
            behaviour=self.behaviour,
            invites=len(invites),
            answered=len(answered),
            busy=len(busy),
            cancelled=len(cancelled),
            byes=len(byes),
            options=len(options),
            completed=len(_completed_uas_calls(run.messages, self.behaviour)),
            run=run,
            notifies=len(notifies),
        )

    def __enter__(self) -> UasHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _register_outcome(messages: Sequence[SipMessage], *, unregister: bool) -> int | None:
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


def _completed_uas_calls(messages: Sequence[SipMessage], behaviour: Behaviour) -> set[str]:
    """Call-IDs of the calls a UAS of ``behaviour`` handled to their end."""

    def ids(pred: Callable[[SipMessage], bool]) -> set[str]:
        return {m.call_id for m in messages if m.call_id is not None and pred(m)}

    if behaviour == "answer":
        return ids(lambda m: m.direction == "sent" and m.status == 200 and m.method == "BYE")
    if behaviour == "registrar":
        return ids(lambda m: m.direction == "sent" and m.status in (200, 403)
                   and m.method == "REGISTER")
    final = {"busy": 486, "unavailable": 503}.get(behaviour, 487)
    refused = ids(lambda m: m.direction == "sent" and m.status == final)
    acked = ids(lambda m: m.direction == "received" and m.request_method == "ACK")
    return refused & acked


@dataclass
class _PendingRun:
    name: str
    command: list[str]
    run_dir: Path
    sipp_timeout: float
    keys: Mapping[str, str] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    def snapshot(self, process: subprocess.Popen[bytes]) -> SippRun:
        """What a still running SIPp has written so far (``exit_code`` None)."""
        return self._read(process.poll(), timed_out=False)

    def finish(self, process: subprocess.Popen[bytes], timeout: float | None) -> SippRun:
        """Wait for the process (killing it after ``timeout``) and read its files."""
        limit = self.sipp_timeout + 10.0 if timeout is None else timeout
        timed_out = False
        try:
            process.wait(timeout=max(0.0, limit - (time.monotonic() - self.started)))
        except subprocess.TimeoutExpired:
            timed_out = True
            process.kill()
            process.wait(timeout=10)
        return self._read(process.returncode, timed_out=timed_out)

    def _read(self, exit_code: int | None, *, timed_out: bool) -> SippRun:
        d = self.run_dir

        def read(name: str) -> str:
            path = d / name
            return path.read_text(errors="replace") if path.exists() else ""

        return SippRun(
            name=self.name,
            command=self.command,
            run_dir=d,
            exit_code=exit_code,
            timed_out=timed_out,
            duration=time.monotonic() - self.started,
            output=read("output.txt"),
            messages=parse_message_trace(read("messages.log")),
            error_log=read("errors.log"),
            stats=parse_stat_csv(read("stats.csv")),
            screen=read("screen.log"),
        )


class LoadHandle:
    """A SIPp load run (:meth:`SippDriver.start_call_load`) in the background."""

    def __init__(
        self,
        calls: int,
        trace_messages: bool,
        process: subprocess.Popen[bytes],
        run: _PendingRun,
    ) -> None:
        self.calls = calls
        self.trace_messages = trace_messages
        self.process = process
        self._run = run
        self.result: LoadResult | None = None

    def running(self) -> bool:
        return self.process.poll() is None

    def wait(self, timeout: float | None = None) -> LoadResult:
        """Wait for the calls to end (SIPp is killed after ``timeout``)."""
        if self.result is not None:
            return self.result
        run = self._run.finish(self.process, timeout)
        connected: int | None = None
        rejected: int | None = None
        if self.trace_messages:
            finals: dict[str | None, int] = {}
            for m in run.responses("INVITE"):
                if m.status is not None and m.status >= 200:
                    finals[m.call_id] = m.status
            connected = sum(1 for status in finals.values() if status == 200)
            rejected = sum(1 for status in finals.values() if status != 200)
        self.result = LoadResult(
            calls=self.calls,
            successful=run.successful_calls,
            failed=run.failed_calls,
            created=run.created_calls,
            connected=connected,
            rejected=rejected,
            duration=run.duration,
            run=run,
        )
        return self.result


@dataclass
class Phone:
    """A registered extension whose calls are handled by a SIPp UAS."""

    ext: str
    password: str
    uas: UasHandle
    #: the REGISTER sent from the UAS socket (status 200)
    registration: RegisterResult

    @property
    def unregistration(self) -> RegisterResult | None:
        """The REGISTER with Expires: 0 sent from the UAS socket once the phone is
        closed (None before)."""
        return self.uas.unregistration


class SippDriver:
    """Runs SIPp processes against one SIP server (an Asterisk PJSIP transport).

    ``work_dir`` keeps one run directory per SIPp process (``NN-name/``) with
    ``messages.log``, ``errors.log``, ``stats.csv``, ``screen.log`` and ``output.txt``.
    """

    def __init__(
        self,
        server_port: int,
        *,
        server_host: str = "127.0.0.1",
        local_ip: str = "127.0.0.1",
        transport: Transport = "udp",
        work_dir: Path | None = None,
        sipp_binary: str = "sipp",
        timeout: float = 30.0,
    ) -> None:
        binary = shutil.which(sipp_binary)
        if binary is None:
            raise SippError(f"{sipp_binary} not found (Debian package sip-tester)")
        self.binary = binary
        self.server_host = server_host
        self.server_port = server_port
        self.local_ip = local_ip
        self.transport: Transport = transport
        self.timeout = timeout
        self.work_dir = (
            Path(tempfile.mkdtemp(prefix="wildix-sipp-")) if work_dir is None else work_dir
        )
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._counter = itertools.count(1)

    # ---------------------------------------------------------------- plumbing

    def _prepare(
        self,
        name: str,
        scenario: str,
        *,
        port: int,
        keys: Mapping[str, str],
        client: bool,
        timeout: float,
        extra: Sequence[str] = (),
        trace_messages: bool = True,
        hold_ms: int | None = None,
        media_xml: Callable[[Path], str] | None = None,
    ) -> _PendingRun:
        while True:
            run_dir = self.work_dir / f"{next(self._counter):03d}-{name}"
            try:
                run_dir.mkdir(parents=True)
                break
            except FileExistsError:
                continue
        media_port = free_port(self.local_ip, span=4, even=True)
        scenario_file = scenario_path(_SCENARIOS[scenario])
        if hold_ms is not None or media_xml is not None:
            text = scenario_file.read_text()
            if hold_ms is not None:
                pattern, expected = (_RING, 2) if scenario == "cancel" else (_HOLD, 1)
                text, count = pattern.subn(rf"\g<1>{max(1, hold_ms)}\g<2>", text)
                if count != expected:
                    raise SippError(f"{scenario_file}: no hold/ring time to set")
            media = media_xml(run_dir) if media_xml is not None else ""
            if media:
                if text.count(_MEDIA_MARK) != 1:
                    raise SippError(f"{scenario_file}: no place for media")
                text = text.replace(_MEDIA_MARK, media)
            scenario_file = run_dir / scenario_file.name
            scenario_file.write_text(text)
        cmd = [self.binary]
        if client:
            cmd.append(f"{self.server_host}:{self.server_port}")
        cmd += [
            "-sf", str(scenario_file),
            "-i", self.local_ip,
            "-p", str(port),
            "-bind_local",
            "-mi", self.local_ip,
            "-mp", str(media_port),
            "-t", "u1" if self.transport == "udp" else "t1",
            "-nostdin",
            "-trace_err", "-error_file", str(run_dir / "errors.log"),
            "-trace_stat", "-stf", str(run_dir / "stats.csv"), "-fd", "1",
            "-trace_screen", "-screen_file", str(run_dir / "screen.log"),
            "-timeout", f"{max(1, round(timeout))}s", "-timeout_error",
        ]  # fmt: skip
        if trace_messages:
            cmd += ["-trace_msg", "-message_file", str(run_dir / "messages.log")]
        for key, value in keys.items():
            cmd += ["-key", key, value]
        cmd += list(extra)
        (run_dir / "command.txt").write_text(" ".join(cmd) + "\n")
        return _PendingRun(
            name=name, command=cmd, run_dir=run_dir, sipp_timeout=timeout, keys=dict(keys)
        )

    def _spawn(self, pending: _PendingRun) -> subprocess.Popen[bytes]:
        out = (pending.run_dir / "output.txt").open("wb")
        try:
            process = subprocess.Popen(
                pending.command,
                cwd=pending.run_dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "TERM": "dumb"},
            )
        finally:
            out.close()
        pending.started = time.monotonic()
        return process

    def _run(self, pending: _PendingRun) -> SippRun:
        return pending.finish(self._spawn(pending), None)

    # ---------------------------------------------------------------- roles

    def register(
        self,
        ext: str,
        password: str,
        *,
        contact_port: int | None = None,
        expires: int = 300,
        expect: Literal["registered", "rejected"] = "registered",
        timeout: float | None = None,
    ) -> RegisterResult:
        """REGISTER ``ext`` (digest auth) with a Contact at ``contact_port``.

        SIPp sends from ``contact_port`` when that port is free (without one, from a
        fresh port, which is also the contact), else from a fresh port.  A server that
        rewrites contacts (``rewrite_contact = yes``) stores the source address, so
        :meth:`unregister` with the same ``contact_port`` removes what this added; no
        calls can reach that contact once SIPp has exited (for a phone that answers,
        see :meth:`phone` / ``answer(password=...)``).
        ``expires=0`` un-registers.  With ``expect="rejected"``, ``result.ok`` is true
        when the server refused (e.g. wrong password → 401/403 again).
        """
        if contact_port is None:
            port = contact = free_port(self.local_ip)
        else:
            contact = contact_port
            free = _port_is_free(self.local_ip, contact)
            port = contact if free else free_port(self.local_ip)
        pending = self._prepare(
            f"register-{ext}" if expires else f"unregister-{ext}",
            "register",
            port=port,
            keys={"user": ext, "contact_port": str(contact), "expires": str(expires)},
            client=True,
            timeout=timeout or self.timeout,
            extra=["-m", "1", "-au", ext, "-ap", password],
        )
        run = self._run(pending)
        return RegisterResult(
            ext=ext,
            expires=expires,
            contact_port=contact,
            expect=expect,
            status=run.final_status("REGISTER"),
            run=run,
        )

    def unregister(
        self, ext: str, password: str, *, contact_port: int, timeout: float | None = None
    ) -> RegisterResult:
        """Remove the contact at ``contact_port`` (REGISTER with Expires: 0), sent from
        ``contact_port`` when it is free (see :meth:`register`)."""
        return self.register(ext, password, contact_port=contact_port, expires=0, timeout=timeout)

    def answer(
        self,
        ext: str,
        *,
        behaviour: Behaviour = "answer",
        calls: int = 1,
        port: int | None = None,
        timeout: float = 60.0,
        rtp_echo: bool = False,
        password: str | None = None,
        expires: int = 300,
        keys: Mapping[str, str] | None = None,
    ) -> UasHandle:
        """Start (in the background) a UAS that handles ``calls`` calls to ``ext``.

        ``behaviour``: ``"answer"`` (180, 200 + G.711 SDP, waits for BYE and 200s it),
        ``"busy"`` (486 Busy Here) or ``"ignore"`` (180, then 200 to the CANCEL and 487
        to the INVITE).  Out-of-dialog OPTIONS (Asterisk's qualify) are answered 200
        and not counted.  ``calls=0`` runs until :meth:`UasHandle.stop`.
        ``rtp_echo`` echoes the RTP it receives.  ``"unavailable"`` refuses calls with
        503 and ``"registrar"`` challenges a REGISTER and checks it against
        ``keys={"secret": ...}`` (``ext`` is the account): SIP providers for trunks.

        With ``password`` the UAS registers ``ext`` itself (digest auth, ``expires``
        seconds) from its own socket before any call, and returns once the REGISTER
        got its final answer (``handle.registration``; not checked here).  Stopping
        it unregisters from that socket (``handle.unregistration``).  Without one,
        nothing registers: the UAS answers what is sent to ``handle.port``.
        """
        uas_port = port if port is not None else free_port(self.local_ip)
        extra: list[str] = []
        if rtp_echo:
            extra.append("-rtp_echo")
        if password is None:
            pending = self._prepare(
                f"uas-{behaviour}-{ext}",
                behaviour,
                port=uas_port,
                keys={"user": ext, **(keys or {})},
                client=False,
                timeout=timeout,
                extra=extra,
            )
            process = self._spawn(pending)
            handle = UasHandle(self, ext, behaviour, uas_port, calls, process, pending)
            self._wait_bound(handle)
            return handle
        token = f"{os.getpid()}-{uas_port}-{next(self._counter)}"
        pending = self._prepare(
            f"phone-{behaviour}-{ext}",
            "phone",
            port=uas_port,
            keys={"user": ext, "expires": str(expires)},
            client=True,
            timeout=timeout,
            extra=[
                *extra,
                "-oocsf", str(scenario_path(_SCENARIOS[behaviour])),
                "-m", "1",
                "-au", ext,
                "-ap", password,
                # the main call's Call-ID, %u being its number (1): the stop request's
                "-cid_str", f"wildix-phone-{token}-%u",
            ],
        )  # fmt: skip
        process = self._spawn(pending)
        handle = UasHandle(
            self,
            ext,
            behaviour,
            uas_port,
            calls,
            process,
            pending,
            control_call_id=f"wildix-phone-{token}-1",
        )
        handle.wait_registered(self.timeout)
        return handle

    def _wait_bound(self, handle: UasHandle, timeout: float = 5.0) -> None:
        """Wait until the UAS owns its SIP port (so a call cannot beat it)."""
        deadline = time.monotonic() + timeout
        kind = socket.SOCK_DGRAM if self.transport == "udp" else socket.SOCK_STREAM
        while time.monotonic() < deadline:
            if not handle.running():
                raise SippError(
                    f"SIPp UAS for {handle.ext} exited at start\n" + handle.wait().run.describe()
                )
            with socket.socket(socket.AF_INET, kind) as sock:
                try:
                    sock.bind((self.local_ip, handle.port))
                except OSError:
                    return
            time.sleep(0.05)
        raise SippError(f"SIPp UAS for {handle.ext} did not bind port {handle.port}")

    @contextlib.contextmanager
    def phone(
        self,
        ext: str,
        password: str,
        *,
        behaviour: Behaviour = "answer",
        calls: int = 1,
        timeout: float = 60.0,
        rtp_echo: bool = False,
    ) -> Iterator[Phone]:
        """A registered phone: a UAS that registered ``ext`` from its own socket (the
        REGISTER checked: 200); at the end it unregisters from that socket and stops.
        Use ``phone.uas.wait()`` to collect what the UAS saw."""
        uas = self.answer(
            ext,
            behaviour=behaviour,
            calls=calls,
            timeout=timeout,
            rtp_echo=rtp_echo,
            password=password,
        )
        try:
            assert uas.registration is not None
            registration = uas.registration.check()
            yield Phone(ext=ext, password=password, uas=uas, registration=registration)
        finally:
            uas.stop()

    def call(
        self,
        from_ext: str,
        password: str,
        to_number: str,
        hold_seconds: float = 1.0,
        *,
        expect: Expect | None = None,
        timeout: float | None = None,
        audio: Path | None = None,
        dtmf: str = "",
        dtmf_delay: float = 1.0,
        cancel_after: float | None = None,
    ) -> CallResult:
        """Call ``to_number`` as ``from_ext``, hold ``hold_seconds``, hang up.

        If the far end hangs up during the hold (e.g. voicemail ends), the BYE is
        answered 200 and ``hangup_by`` is ``"remote"``.
        Handles the 401/407 challenge, 1xx (100/180/181/182/183) and 200 from a phone
        or from Asterisk itself (voicemail, echo).  A final rejection is ACKed and
        returned as ``final_status``; with ``expect="reject"`` that is a success.

        Media, once connected: ``audio`` (a pcap of RTP, e.g. :data:`AUDIO_PCAP`) is
        played in the background; ``dtmf`` digits (0-9, ``*``, ``#``) are sent as
        RFC 2833 events (payload type 101, as offered) ``dtmf_delay`` seconds after
        the answer, one every 0.5 s, before the hold starts.  Don't combine both:
        two pcaps would play at once into one RTP stream.

        ``cancel_after``: the caller gives up ``cancel_after`` seconds after the first
        180/183 (CANCEL → 200, 487 → ACK); ``expect`` is then ``"cancel"``.
        """
        port = free_port(self.local_ip)
        if expect is None:
            expect = "connect" if cancel_after is None else "cancel"
        wait = hold_seconds if cancel_after is None else cancel_after
        limit = timeout or max(self.timeout, wait + 30.0)
        pending = self._prepare(
            f"call-{from_ext}-to-{_safe(to_number)}",
            "call" if cancel_after is None else "cancel",
            port=port,
            keys={"user": from_ext},
            client=True,
            timeout=limit,
            extra=[
                "-m", "1",
                "-s", to_number,
                "-au", from_ext,
                "-ap", password,
            ],
            hold_ms=round(wait * 1000),
            media_xml=_media_xml(audio, dtmf, dtmf_delay) if cancel_after is None else None,
        )  # fmt: skip
        run = self._run(pending)
        invite_responses = run.responses("INVITE")
        statuses = [m.status for m in invite_responses if m.status is not None]
        final = run.final_status("INVITE")
        hangup_by: Literal["local", "remote"] | None = None
        if any(m.status == 200 for m in run.responses("BYE")):
            hangup_by = "local"
        elif any(m.status == 200 for m in run.responses("BYE", "sent")):
            hangup_by = "remote"
        return CallResult(
            from_ext=from_ext,
            to_number=to_number,
            expect=expect,
            statuses=statuses,
            final_status=final,
            connected=final == 200,
            hangup_by=hangup_by,
            duration=run.duration,
            run=run,
        )

    def call_load(
        self,
        from_ext: str,
        password: str,
        to_number: str,
        *,
        calls: int,
        rate: float = 2.0,
        limit: int = 5,
        hold_seconds: float = 1.0,
        timeout: float | None = None,
        trace_messages: bool = True,
    ) -> LoadResult:
        """Place ``calls`` calls at ``rate`` calls/s, at most ``limit`` at once.

        ``successful``/``failed`` come from SIPp's statistics (a call rejected and
        ended cleanly is "successful" for SIPp); with ``trace_messages`` the calls
        that really connected (final 200) and were rejected are counted too.
        """
        return self.start_call_load(
            from_ext,
            password,
            to_number,
            calls=calls,
            rate=rate,
            limit=limit,
            hold_seconds=hold_seconds,
            timeout=timeout,
            trace_messages=trace_messages,
        ).wait()

    def start_call_load(
        self,
        from_ext: str,
        password: str,
        to_number: str,
        *,
        calls: int,
        rate: float = 2.0,
        limit: int = 5,
        hold_seconds: float = 1.0,
        timeout: float | None = None,
        trace_messages: bool = True,
    ) -> LoadHandle:
        """:meth:`call_load` in the background, while the test does something else;
        ``handle.wait()`` returns the :class:`LoadResult`."""
        port = free_port(self.local_ip)
        expected = calls / max(rate, 0.01) + hold_seconds * max(1, calls // max(1, limit))
        sipp_timeout = timeout or max(self.timeout, expected * 2 + 30.0)
        pending = self._prepare(
            f"load-{from_ext}-to-{_safe(to_number)}",
            "call",
            port=port,
            keys={"user": from_ext},
            client=True,
            timeout=sipp_timeout,
            trace_messages=trace_messages,
            extra=[
                "-m", str(calls),
                "-r", f"{rate:g}",
                "-l", str(limit),
                "-s", to_number,
                "-au", from_ext,
                "-ap", password,
            ],
            hold_ms=round(hold_seconds * 1000),
        )  # fmt: skip
        return LoadHandle(calls, trace_messages, self._spawn(pending), pending)


_DTMF_EVENTS = {**{d: int(d) for d in "0123456789"}, "*": 10, "#": 11}


def write_dtmf_pcap(
    path: Path,
    digits: str,
    *,
    payload_type: int = 101,
    tone: float = 0.1,
    gap: float = 0.4,
) -> float:
    """Write RFC 2833 telephone-events for ``digits`` as a pcap SIPp can play.

    SIPp's ``play_pcap_audio`` sends the RTP headers of the pcap unchanged, and the
    per-digit pcaps of sip-tester all start with the same sequence number and
    timestamp, so Asterisk drops a repeated digit ("1010" arrives as "10") as a
    duplicate event.  This writes one stream with rising sequence numbers and
    timestamps instead.  Returns the stream's length in seconds.
    """
    unknown = sorted(set(digits) - set(_DTMF_EVENTS))
    if unknown:
        raise SippError(f"no RFC 2833 event for {''.join(unknown)!r} (only 0-9, *, #)")
    ssrc = int.from_bytes(os.urandom(4), "big")
    seq = int.from_bytes(os.urandom(2), "big") & 0x7FFF
    rtp_ts = int.from_bytes(os.urandom(4), "big") & 0x0FFFFFFF
    packets: list[tuple[float, bytes]] = []
    clock = 0.0
    steps = max(1, round(tone / 0.02))
    for digit in digits:
        event = _DTMF_EVENTS[digit]
        for i in range(steps + 3):  # tone packets, then the end packet sent 3 times
            end = i >= steps
            duration = 160 * min(i + 1, steps)
            marker = 0x80 if i == 0 else 0
            rtp = struct.pack(
                "!BBHII", 0x80, marker | payload_type, seq & 0xFFFF, rtp_ts, ssrc
            ) + struct.pack("!BBH", event, (0x80 if end else 0) | 10, duration)
            packets.append((clock + 0.02 * min(i, steps), rtp))
            seq += 1
        step = tone + gap
        clock += step
        rtp_ts = (rtp_ts + round(step * 8000)) & 0xFFFFFFFF
    with path.open("wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for ident, (at, rtp) in enumerate(packets):
            udp = struct.pack("!HHHH", 6000, 6000, 8 + len(rtp), 0) + rtp
            ip = bytearray(
                struct.pack(
                    "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), ident & 0xFFFF, 0, 64, 17, 0,
                    socket.inet_aton("127.0.0.1"), socket.inet_aton("127.0.0.1"),
                )
            )  # fmt: skip
            ip[10:12] = struct.pack("!H", _ip_checksum(bytes(ip)))
            frame = b"\x00" * 12 + b"\x08\x00" + bytes(ip) + udp
            sec = int(at)
            out.write(struct.pack("<IIII", sec, round((at - sec) * 1e6), len(frame), len(frame)))
            out.write(frame)
    return clock


def _ip_checksum(header: bytes) -> int:
    words: tuple[int, ...] = struct.unpack(f"!{len(header) // 2}H", header)
    total = sum(words)
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _media_xml(audio: Path | None, dtmf: str, dtmf_delay: float) -> Callable[[Path], str]:
    """SIPp elements (built in the run directory) that play ``audio`` and ``dtmf``."""

    def play(pcap: Path) -> str:
        if not pcap.is_file():
            raise SippError(f"pcap {pcap} not found (Debian package sip-tester)")
        return f"<nop><action><exec play_pcap_audio={quoteattr(str(pcap))}/></action></nop>"

    def build(run_dir: Path) -> str:
        parts: list[str] = []
        if audio is not None:
            parts.append(play(audio))
        if dtmf:
            pcap = run_dir / "dtmf.pcap"
            length = write_dtmf_pcap(pcap, dtmf)
            parts.append(f'<pause milliseconds="{max(1, round(dtmf_delay * 1000))}"/>')
            parts.append(play(pcap))
            parts.append(f'<pause milliseconds="{round(length * 1000) + 200}"/>')
        return "\n  ".join(parts)

    return build


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", text) or "_"
