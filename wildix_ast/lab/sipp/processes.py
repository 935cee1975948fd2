"""SIPp processes: one run directory and command each (:class:`SippProcess`), and the
handles of the ones that run in the background (a UAS or phone, a load run)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from wildix_ast.lab.sipp.results import (
    LoadResult,
    RegisterResult,
    SippRun,
    UasResult,
    completed_uas_calls,
    register_outcome,
)
from wildix_ast.lab.sipp.scenarios import Behaviour
from wildix_ast.lab.sipp.trace import SipMessage, parse_message_trace, parse_stat_csv

Transport = Literal["udp", "tcp"]


@dataclass
class SippProcess:
    """A SIPp command and its run directory, where it writes ``messages.log``,
    ``errors.log``, ``stats.csv``, ``screen.log`` and ``output.txt``."""

    name: str
    command: list[str]
    run_dir: Path
    #: SIPp's own global timeout (-timeout)
    sipp_timeout: float
    keys: Mapping[str, str] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    process: subprocess.Popen[bytes] | None = None

    def spawn(self) -> subprocess.Popen[bytes]:
        out = (self.run_dir / "output.txt").open("wb")
        try:
            self.process = subprocess.Popen(
                self.command,
                cwd=self.run_dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "TERM": "dumb"},
            )
        finally:
            out.close()
        self.started = time.monotonic()
        return self.process

    def run(self) -> SippRun:
        """Run it to its end (killed ten seconds after SIPp's own timeout)."""
        self.spawn()
        return self.finish(None)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def snapshot(self) -> SippRun:
        """What a still running SIPp has written so far (``exit_code`` None)."""
        return self._read(self.process.poll() if self.process else None, timed_out=False)

    def finish(self, timeout: float | None) -> SippRun:
        """Wait for the process (killing it ``timeout`` seconds after its start) and read
        its files."""
        process = self._started()
        limit = self.sipp_timeout + 10.0 if timeout is None else timeout
        timed_out = False
        try:
            process.wait(timeout=max(0.0, limit - (time.monotonic() - self.started)))
        except subprocess.TimeoutExpired:
            timed_out = True
            process.kill()
            process.wait(timeout=10)
        return self._read(process.returncode, timed_out=timed_out)

    def wait_exit(self, timeout: float) -> None:
        """Give it up to ``timeout`` seconds to exit by itself."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._started().wait(timeout=timeout)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self._started().kill()

    def signal(self, number: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            self._started().send_signal(number)

    def _started(self) -> subprocess.Popen[bytes]:
        if self.process is None:
            raise RuntimeError(f"SIPp process {self.name} was never started")
        return self.process

    def _read(self, exit_code: int | None, *, timed_out: bool) -> SippRun:
        def read(name: str) -> str:
            path = self.run_dir / name
            return path.read_text(errors="replace") if path.exists() else ""

        return SippRun(
            name=self.name,
            command=self.command,
            run_dir=self.run_dir,
            exit_code=exit_code,
            timed_out=timed_out,
            duration=time.monotonic() - self.started,
            output=read("output.txt"),
            messages=parse_message_trace(read("messages.log")),
            error_log=read("errors.log"),
            stats=parse_stat_csv(read("stats.csv")),
        )


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
        sipp: SippProcess,
        ext: str,
        behaviour: Behaviour,
        *,
        port: int,
        calls: int,
        local_ip: str,
        transport: Transport,
        control_call_id: str | None = None,
    ) -> None:
        self.sipp = sipp
        self.ext = ext
        self.behaviour: Behaviour = behaviour
        self.port = port
        self.calls = calls
        self.local_ip = local_ip
        self.transport: Transport = transport
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
        return self.sipp.running()

    def messages(self) -> list[SipMessage]:
        """The messages SIPp traced so far."""
        trace = self.sipp.run_dir / "messages.log"
        size = trace.stat().st_size if trace.exists() else 0
        if size != self._trace_size:  # parse again only when SIPp wrote something
            text = trace.read_text(errors="replace") if size else ""
            self._trace_size = size
            self._messages = parse_message_trace(text)
            self._completed = len(completed_uas_calls(self._messages, self.behaviour))
        return self._messages

    def completed_calls(self) -> int:
        """Calls handled to their end so far (BYE answered, or the refusal ACKed)."""
        self.messages()
        return self._completed

    def wait_registered(self, timeout: float) -> RegisterResult:
        """Wait for the final answer to the phone's REGISTER (or SIPp's exit)."""
        deadline = time.monotonic() + timeout
        while self.running() and time.monotonic() < deadline:
            if register_outcome(self.messages(), unregister=False) is not None:
                break
            time.sleep(0.05)
        # still running: registered (or no answer); exited: refused (or SIPp failed)
        run = self.sipp.snapshot() if self.running() else self.stop().run
        self.registration = RegisterResult(
            ext=self.ext,
            expires=int(self.sipp.keys.get("expires", "0")),
            contact_port=self.port,
            expect="registered",
            status=register_outcome(run.messages, unregister=False),
            run=run,
        )
        return self.registration

    def wait(self, timeout: float | None = None) -> UasResult:
        """Wait until ``calls`` calls are done (or SIPp's own timeout), then stop SIPp."""
        if self.result is not None:
            return self.result
        limit = self.sipp.sipp_timeout + 10.0 if timeout is None else timeout
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
                if self.running() and self.control_call_id is not None:
                    self._send_stop_request()
                    self.sipp.wait_exit(grace)
                if self.running():
                    self.sipp.signal(signal.SIGUSR1)
                sipp_run = self.sipp.finish(time.monotonic() - self.sipp.started + grace)
            finally:
                if self._control is not None:
                    self._control.close()
                    self._control = None
            self.result = UasResult.of(sipp_run, self.ext, self.behaviour)
            if self.control_call_id is not None:
                self.unregistration = RegisterResult(
                    ext=self.ext,
                    expires=0,
                    contact_port=self.port,
                    expect="registered",
                    status=register_outcome(sipp_run.messages, unregister=True),
                    run=sipp_run,
                )
        return self.result

    def _send_stop_request(self) -> None:
        """The request that makes the main call of a self-registering UAS unregister.

        Sent to the UAS port (over TCP, on a connection of its own, kept open until
        SIPp has exited); SIPp matches it to its main call by the Call-ID.
        """
        proto = "UDP" if self.transport == "udp" else "TCP"
        kind = socket.SOCK_DGRAM if self.transport == "udp" else socket.SOCK_STREAM
        sock = socket.socket(socket.AF_INET, kind)
        try:
            sock.bind((self.local_ip, 0))
            sock.settimeout(5.0)
            sock.connect((self.local_ip, self.port))
            here = f"{self.local_ip}:{sock.getsockname()[1]}"
            request = (
                f"MESSAGE sip:{self.ext}@{self.local_ip}:{self.port} SIP/2.0\r\n"
                f"Via: SIP/2.0/{proto} {here};branch=z9hG4bK-wildix-stop-{os.getpid()}\r\n"
                f"From: <sip:wildix-ast-driver@{here}>;tag=stop\r\n"
                f"To: <sip:{self.ext}@{self.local_ip}>\r\n"
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

    def __enter__(self) -> UasHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class LoadHandle:
    """A SIPp load run (:meth:`SippDriver.start_call_load`) in the background."""

    def __init__(self, sipp: SippProcess, calls: int, trace_messages: bool) -> None:
        self.sipp = sipp
        self.calls = calls
        self.trace_messages = trace_messages
        self.result: LoadResult | None = None

    def running(self) -> bool:
        return self.sipp.running()

    def wait(self, timeout: float | None = None) -> LoadResult:
        """Wait for the calls to end (SIPp is killed after ``timeout``)."""
        if self.result is None:
            run = self.sipp.finish(timeout)
            self.result = LoadResult.of(run, self.calls, self.trace_messages)
        return self.result
