"""The SIPp driver: builds each role's SIPp command against one SIP server and turns the run
into its result."""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from wildix_ast.lab.allocator import free_port, port_free
from wildix_ast.lab.sipp import scenarios
from wildix_ast.lab.sipp.errors import SippError
from wildix_ast.lab.sipp.media import media_xml
from wildix_ast.lab.sipp.processes import LoadHandle, SippProcess, Transport, UasHandle
from wildix_ast.lab.sipp.results import CallResult, Expect, LoadResult, RegisterResult
from wildix_ast.lab.sipp.scenarios import UAS_BEHAVIOURS, Behaviour, Scenario


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

    ``work_dir`` keeps one run directory per SIPp process (``NNN-name/``) with
    ``command.txt``, ``messages.log``, ``errors.log``, ``stats.csv``, ``screen.log`` and
    ``output.txt``.  Every process gets its SIP port and four media ports from the
    project's port allocator (:func:`wildix_ast.lab.allocator.free_port`).
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
        self._runs = itertools.count(1)
        self._phones = itertools.count(1)

    # ---------------------------------------------------------------- plumbing

    def prepare(
        self,
        name: str,
        scenario: Scenario,
        *,
        port: int,
        keys: Mapping[str, str],
        client: bool,
        timeout: float,
        extra: Sequence[str] = (),
        trace_messages: bool = True,
        wait_ms: int | None = None,
        media: Callable[[Path], str] | None = None,
    ) -> SippProcess:
        """The SIPp process (not started) that plays ``scenario`` from ``port``: as a
        client of the server when ``client``, else as a server waiting on ``port``.
        ``wait_ms`` and ``media`` edit a copy of the scenario in the run directory
        (see :meth:`Scenario.edited`); ``keys`` become ``-key`` values, ``extra`` is
        appended to the command."""
        while True:
            run_dir = self.work_dir / f"{next(self._runs):03d}-{name}"
            try:
                run_dir.mkdir(parents=True)
                break
            except FileExistsError:
                continue
        media_port = free_port(self.local_ip, span=4, even=True)
        scenario_file = scenario.path
        if wait_ms is not None or media is not None:
            edited = scenario.edited(wait_ms=wait_ms, media=media(run_dir) if media else "")
            scenario_file = run_dir / scenario.file
            scenario_file.write_text(edited)
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
        return SippProcess(
            name=name, command=cmd, run_dir=run_dir, sipp_timeout=timeout, keys=dict(keys)
        )

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
            port = contact if port_free(contact, self.local_ip) else free_port(self.local_ip)
        run = self.prepare(
            f"register-{ext}" if expires else f"unregister-{ext}",
            scenarios.REGISTER,
            port=port,
            keys={"user": ext, "contact_port": str(contact), "expires": str(expires)},
            client=True,
            timeout=timeout or self.timeout,
            extra=["-m", "1", "-au", ext, "-ap", password],
        ).run()
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
        dtmf: str = "",
        dtmf_delay: float = 1.0,
    ) -> UasHandle:
        """Start (in the background) a UAS that handles ``calls`` calls to ``ext``.

        ``behaviour``: one of :data:`~wildix_ast.lab.sipp.scenarios.UAS_BEHAVIOURS`:
        ``"answer"`` (180, 200 + G.711 SDP, waits for BYE and 200s it), ``"busy"``
        (486 Busy Here) or ``"ignore"`` (180, then 200 to the CANCEL and 487 to the
        INVITE).  Out-of-dialog OPTIONS (Asterisk's qualify) are answered 200 and not
        counted.  ``calls=0`` runs until :meth:`UasHandle.stop`.
        ``rtp_echo`` echoes the RTP it receives.  SIP providers: ``"unavailable"``
        refuses calls with 503; ``"registrar"`` challenges a REGISTER for the account
        ``ext`` and checks it against ``keys={"secret": ...}`` (200, or 403).

        With ``password`` the UAS registers ``ext`` itself (digest auth, ``expires``
        seconds) from its own socket before any call, and returns once the REGISTER
        got its final answer (``handle.registration``; not checked here).  Stopping
        it unregisters from that socket (``handle.unregistration``).  Without one,
        nothing registers: the UAS answers what is sent to ``handle.port``.

        ``dtmf`` (``"answer"`` without ``password`` only): digits sent as RFC 2833 events
        ``dtmf_delay`` seconds after the ACK, like a person pressing keys once connected
        (a mobile confirming a call with ``*``).
        """
        if dtmf and (behaviour != "answer" or password is not None):
            raise SippError("dtmf: only a plain UAS that answers sends digits")
        uas_port = port if port is not None else free_port(self.local_ip)
        extra = ["-rtp_echo"] if rtp_echo else []
        uas_scenario = UAS_BEHAVIOURS[behaviour].scenario
        if password is None:
            sipp = self.prepare(
                f"uas-{behaviour}-{ext}",
                uas_scenario,
                port=uas_port,
                keys={"user": ext, **(keys or {})},
                client=False,
                timeout=timeout,
                extra=extra,
                media=media_xml(None, dtmf, dtmf_delay) if dtmf else None,
            )
            control_call_id = None
        else:
            # the main call's Call-ID (-cid_str, %u being its number, 1): the stop request's
            call_id = f"wildix-phone-{os.getpid()}-{uas_port}-{next(self._phones)}-"
            control_call_id = call_id + "1"
            sipp = self.prepare(
                f"phone-{behaviour}-{ext}",
                scenarios.PHONE,
                port=uas_port,
                keys={"user": ext, "expires": str(expires), **(keys or {})},
                client=True,
                timeout=timeout,
                extra=[
                    *extra,
                    "-oocsf", str(uas_scenario.path),
                    "-m", "1",
                    "-au", ext,
                    "-ap", password,
                    "-cid_str", call_id + "%u",
                ],
            )  # fmt: skip
        sipp.spawn()
        handle = UasHandle(
            sipp,
            ext,
            behaviour,
            port=uas_port,
            calls=calls,
            local_ip=self.local_ip,
            transport=self.transport,
            control_call_id=control_call_id,
        )
        if password is None:
            self._wait_bound(handle)
        else:
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
        keys: Mapping[str, str] | None = None,
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
            keys=keys,
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

        Media, once connected: ``audio`` (a pcap of RTP, e.g.
        :data:`~wildix_ast.lab.sipp.media.AUDIO_PCAP`) is played in the background;
        ``dtmf`` digits (0-9, ``*``, ``#``) are sent as RFC 2833 events (payload type
        101, as offered) ``dtmf_delay`` seconds after the answer, one every 0.5 s,
        before the hold starts.  Don't combine both: two pcaps would play at once into
        one RTP stream.

        ``cancel_after``: the caller gives up ``cancel_after`` seconds after the first
        180/183 (CANCEL → 200, 487 → ACK); ``expect`` is then ``"cancel"``.
        """
        if expect is None:
            expect = "connect" if cancel_after is None else "cancel"
        wait = hold_seconds if cancel_after is None else cancel_after
        run = self.prepare(
            f"call-{from_ext}-to-{_safe(to_number)}",
            scenarios.CALL if cancel_after is None else scenarios.CANCEL,
            port=free_port(self.local_ip),
            keys={"user": from_ext},
            client=True,
            timeout=timeout or max(self.timeout, wait + 30.0),
            extra=[
                "-m", "1",
                "-s", to_number,
                "-au", from_ext,
                "-ap", password,
            ],
            wait_ms=round(wait * 1000),
            media=media_xml(audio, dtmf, dtmf_delay) if cancel_after is None else None,
        ).run()  # fmt: skip
        return CallResult.of(run, from_ext, to_number, expect)

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
        audio: Path | None = None,
    ) -> LoadResult:
        """Place ``calls`` calls at ``rate`` calls/s, at most ``limit`` at once.

        ``successful``/``failed`` come from SIPp's statistics (a call rejected and
        ended cleanly is "successful" for SIPp); with ``trace_messages`` the calls
        that really connected (final 200) and were rejected are counted too, and the
        post-dial delays measured.  ``audio``: a pcap each connected call plays.
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
            audio=audio,
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
        audio: Path | None = None,
    ) -> LoadHandle:
        """:meth:`call_load` in the background, while the test does something else;
        ``handle.wait()`` returns the :class:`LoadResult`."""
        expected = calls / max(rate, 0.01) + hold_seconds * max(1, calls // max(1, limit))
        sipp = self.prepare(
            f"load-{from_ext}-to-{_safe(to_number)}",
            scenarios.CALL,
            port=free_port(self.local_ip),
            keys={"user": from_ext},
            client=True,
            timeout=timeout or max(self.timeout, expected * 2 + 30.0),
            trace_messages=trace_messages,
            extra=[
                "-m", str(calls),
                "-r", f"{rate:g}",
                "-l", str(limit),
                "-s", to_number,
                "-au", from_ext,
                "-ap", password,
            ],
            wait_ms=round(hold_seconds * 1000),
            media=media_xml(audio, "", 0.0) if audio is not None else None,
        )  # fmt: skip
        sipp.spawn()
        return LoadHandle(sipp, calls, trace_messages)


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", text) or "_"
