"""AmiClient against a real Asterisk 22 (and, for protocol edge cases, a fake server)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.lab_fixtures import (
    LOGGER_CONF,
    assert_stopped_clean,
    asterisk_conf,
    lab_mount_ns,
    manager_conf,
    modules_conf,
    rtp_conf,
)

from wildix_ast.ami import AmiClient, run
from wildix_ast.asterisk.paths import AsteriskPaths
from wildix_ast.errors import AmiError
from wildix_ast.lab.allocator import free_port
from wildix_ast.lab.instance import Lab
from wildix_ast.lab.rootfs import ensure_rootfs

AMI_USER = "lab"  # the account lab_fixtures.manager_conf writes
AMI_SECRET = "t3st-Secr3t"

BASE_PJSIP = """\
[transport-udp]
type=transport
protocol=udp
bind=127.0.0.1:{sip_port}

[phone](!)
type=endpoint
context=internal
disallow=all
allow=ulaw

[1000](phone)
aors=1000
[1000]
type=aor
max_contacts=1

[1001](phone)
aors=1001
auth=1001
[1001]
type=aor
max_contacts=1
[1001]
type=auth
auth_type=userpass
username=1001
password=pw-1001
"""

BASE_EXTENSIONS = """\
[general]
static=yes
writeprotect=yes

[internal]
exten => 600,1,Answer()
 same => n,Echo()
exten => _1XXX,1,Dial(PJSIP/${EXTEN},20)

[from-trunk]
exten => _X.,1,Goto(internal,${EXTEN},1)
"""

MODULES = (
    "res_pjproject.so", "res_sorcery_config.so", "res_sorcery_memory.so",
    "res_sorcery_astdb.so", "res_pjsip.so", "res_pjsip_session.so",
    "res_pjsip_authenticator_digest.so", "res_pjsip_endpoint_identifier_ip.so",
    "res_pjsip_endpoint_identifier_user.so", "res_pjsip_registrar.so",
    "res_pjsip_sdp_rtp.so", "res_rtp_asterisk.so", "chan_pjsip.so", "pbx_config.so",
    "app_echo.so", "app_dial.so", "app_playback.so", "codec_ulaw.so",
    "res_timing_timerfd.so", "bridge_simple.so", "bridge_native_rtp.so",
)


@dataclass
class AsteriskUnderTest:
    """A running lab Asterisk (`wildix_ast.lab.Lab`); `etc_dir` as seen from the host."""

    instance: Lab

    @property
    def paths(self) -> AsteriskPaths:
        return self.instance.paths

    @property
    def etc_dir(self) -> Path:
        return self.instance.etc_dir

    @property
    def ami_port(self) -> int:
        return self.instance.ports.ami

    @property
    def sip_port(self) -> int:
        return self.instance.ports.sip

    @property
    def pid(self) -> int:
        pid = self.instance.pid
        if pid is None:
            raise RuntimeError(f"the lab Asterisk is not running; see {self.instance.log_path}")
        return pid

    def client(self, **kwargs: float | None) -> AmiClient:
        return AmiClient("127.0.0.1", self.ami_port, AMI_USER, AMI_SECRET, **kwargs)  # type: ignore[arg-type]

    def cli(self, command: str) -> str:
        return self.instance.cli(command, timeout=30)

    def base_files(self) -> dict[str, str]:
        return {"pjsip.conf": BASE_PJSIP.format(sip_port=self.sip_port),
                "extensions.conf": BASE_EXTENSIONS}


def _static_files(instance: Lab) -> dict[str, str]:
    return {
        "asterisk.conf": asterisk_conf(instance.paths),
        "modules.conf": modules_conf(MODULES),
        "manager.conf": manager_conf(instance.ports, secret=AMI_SECRET),
        "logger.conf": LOGGER_CONF,
        "rtp.conf": rtp_conf(instance.ports),
    }


@contextlib.contextmanager
def start_asterisk(state_dir: Path, name: str = "ami") -> Iterator[AsteriskUnderTest]:
    """THE place that starts Asterisk for these tests: an instance of the project's lab
    (cached Debian sid root filesystem, built on first use) whose folder is under
    `state_dir`, with the configuration above and its own loopback ports."""
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (chroot, mount namespaces)")
    ensure_rootfs()
    instance = Lab(name, state_dir)
    ast = AsteriskUnderTest(instance)
    for file_name, text in {**_static_files(instance), **ast.base_files()}.items():
        (instance.etc_dir / file_name).write_text(text, encoding="utf-8")
    mount_ns = ""
    try:
        instance.start(timeout=30)
        mount_ns = lab_mount_ns(instance)
        yield ast
    finally:
        pid = instance.pid
        if pid is not None:  # a test may have left it stopped (SIGSTOP)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        instance.stop()
        assert_stopped_clean(instance, mount_ns)


@pytest.fixture(scope="module")
def asterisk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AsteriskUnderTest]:
    with start_asterisk(tmp_path_factory.mktemp("lab")) as ast:
        yield ast


@pytest.fixture
def lab(asterisk: AsteriskUnderTest) -> Iterator[AsteriskUnderTest]:
    """The module's Asterisk, back on the base configuration; no channel left afterwards."""
    for name in (".wildix-ast-manifest.json",):
        (asterisk.etc_dir / name).unlink(missing_ok=True)
    shutil.rmtree(asterisk.etc_dir / ".wildix-ast-previous", ignore_errors=True)
    for name, text in asterisk.base_files().items():
        (asterisk.etc_dir / name).write_text(text)

    async def reload() -> None:
        async with asterisk.client() as ami:
            await ami.reload_module("res_pjsip.so")
            await ami.reload_module("pbx_config.so")

    run(reload())
    yield asterisk

    async def channels() -> int:
        async with asterisk.client() as ami:
            return await ami.channels_count()

    assert run(channels()) == 0


# -- tests against the real Asterisk ----------------------------------------------------------

def test_login_ping_and_lists(lab: AsteriskUnderTest) -> None:
    async def go() -> None:
        async with lab.client() as ami:
            assert ami.healthy
            assert ami.version
            assert await ami.ping() < 1.0
            assert await ami.endpoints() == {"1000", "1001"}
            assert await ami.aors() == {"1000", "1001"}
            assert {"internal", "from-trunk"} <= await ami.contexts()
            assert await ami.contexts(registrar="pbx_config") == {"internal", "from-trunk"}
            assert await ami.channels_count() == 0
            status = await ami.action("CoreStatus")
            assert status["Response"] == "Success" and "CoreCurrentCalls" in status
            assert "Asterisk 22" in await ami.command("core show version")
            assert await ami.module_loaded("res_pjsip.so")
            assert not await ami.module_loaded("app_voicemail.so")
            loaded = await ami.loaded_modules()
            assert "res_pjsip.so" in loaded and "app_voicemail.so" not in loaded

    run(go())


def test_errors_are_ami_errors(lab: AsteriskUnderTest) -> None:
    async def go() -> None:
        async with lab.client() as ami:
            with pytest.raises(AmiError, match="No such command"):
                await ami.command("no such thing")
            with pytest.raises(AmiError, match=r"could not reload nosuch\.so: No such module"):
                await ami.reload_module("nosuch.so")
            with pytest.raises(AmiError, match="refused action NoSuchAction"):
                await ami.action("NoSuchAction")
            with pytest.raises(AmiError, match="line break"):
                await ami.action("Command", Command="core show version\r\nAction: Logoff")
            assert await ami.ping() < 1.0  # the session survived all of that

    run(go())


def test_wrong_secret_is_refused_quickly(lab: AsteriskUnderTest) -> None:
    start = time.monotonic()
    client = AmiClient("127.0.0.1", lab.ami_port, AMI_USER, "wrong", timeout=5)
    with pytest.raises(AmiError) as caught:
        run(client.connect())
    assert caught.value.message == (
        f"AMI refused the login for user {AMI_USER} at 127.0.0.1:{lab.ami_port}")
    assert time.monotonic() - start < 3  # Asterisk itself waits ~1 s before refusing


def test_closed_port_fails_quickly() -> None:
    port = free_port()
    start = time.monotonic()
    with pytest.raises(AmiError, match=f"cannot connect to the AMI at 127.0.0.1:{port}"):
        run(AmiClient("127.0.0.1", port, "x", "y", timeout=5).connect())
    assert time.monotonic() - start < 1


def test_hung_asterisk_times_out(lab: AsteriskUnderTest) -> None:
    async def go() -> None:
        async with lab.client(timeout=1.0, heartbeat=0.3, bulk_timeout=1.0) as ami:
            os.kill(lab.pid, signal.SIGSTOP)
            try:
                start = time.monotonic()
                with pytest.raises(AmiError, match="did not answer action Command "
                                                   "within 1 s"):
                    await ami.endpoints()
                assert 0.9 < time.monotonic() - start < 2.0
                # the heartbeat notices the silence and fails what follows at once
                await asyncio.sleep(1.5)
                assert not ami.healthy
                start = time.monotonic()
                with pytest.raises(AmiError, match="stopped answering pings"):
                    await ami.command("core show version")
                assert time.monotonic() - start < 0.1
                # a new connection to a hung Asterisk: the TCP handshake works, Login does not
                start = time.monotonic()
                with pytest.raises(AmiError, match="did not complete the login"):
                    await lab.client(timeout=1.0).connect()
                assert time.monotonic() - start < 2.0
            finally:
                os.kill(lab.pid, signal.SIGCONT)
        async with lab.client() as again:
            assert await again.ping() < 1.0

    run(go())


def test_long_action_is_not_mistaken_for_a_hang(lab: AsteriskUnderTest) -> None:
    """Asterisk answers a session's actions in order: pings queued behind a slow action
    (a big reload; here WaitEvent) must not declare the connection dead."""
    async def go() -> None:
        async with lab.client(timeout=1.0, heartbeat=0.2) as ami:
            # WaitEvent blocks the session until an event or its Timeout; it may come back
            # early when an event is queued, so keep the session busy for 2.5 s in all.
            start = time.monotonic()
            longest = 0.0
            while time.monotonic() - start < 2.5:
                began = time.monotonic()
                reply = await ami.action("WaitEvent", Timeout="2", timeout=10.0)
                assert reply["Response"] == "Success"
                longest = max(longest, time.monotonic() - began)
                assert ami.healthy
            assert longest > 1.0  # pings (every 0.2 s, 1 s limit) did queue behind it
            await asyncio.sleep(0.5)  # the heartbeat resumes once the session is idle
            assert ami.healthy and await ami.ping() < 1.0

    run(go())


def test_close_never_hangs_on_the_heartbeat(lab: AsteriskUnderTest,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """On Python 3.11 asyncio.wait_for can swallow a cancellation that arrives with the
    answer; a heartbeat that missed its cancellation then slept on and close() waited forever
    (seen once in the 10,000-user benchmark). Here the heartbeat ignores cancellation on
    purpose: close() must still return, and the stop flag ends the stray task."""
    async def stubborn(self: AmiClient, interval: float) -> None:
        while not self._heartbeat_stop:
            try:
                await asyncio.sleep(interval)
            except asyncio.CancelledError:
                continue  # what a swallowed cancellation looks like from inside

    monkeypatch.setattr(AmiClient, "_beat", stubborn)

    async def go() -> None:
        ami = lab.client(timeout=1.0, heartbeat=0.05)
        await ami.connect()
        task = ami._heartbeat_task
        assert task is not None
        start = time.monotonic()
        await asyncio.wait_for(ami.close(), 5.0)
        assert time.monotonic() - start < 2.0
        await asyncio.sleep(0.2)
        assert task.done()

    run(go())


def test_connection_lost_fails_pending_action(lab: AsteriskUnderTest) -> None:
    """The connection breaks under a pending action: it fails at once, and so does the next."""
    async def go() -> None:
        # Long enough that a slow `manager show connected` (a loaded CI machine) cannot let
        # WaitEvent end on its own before the wire is cut.
        async with lab.client(timeout=30.0) as ami:
            pending = asyncio.create_task(ami.action("WaitEvent", Timeout="25"))
            await asyncio.sleep(0.2)
            ours = [line for line in lab.cli("manager show connected").splitlines()
                    if AMI_USER in line]
            assert ours
            assert ami._manager is not None
            ami._manager.protocol.transport.abort()  # the wire breaks under the action
            with pytest.raises(AmiError, match="lost the AMI connection"):
                await pending
            with pytest.raises(AmiError, match="lost the AMI connection"):
                await ami.ping()

    run(go())


def test_utf8_split_across_reads_is_kept() -> None:
    """D4: a tiny server that answers Login, then a Command whose é is cut in two TCP writes."""
    async def go() -> str:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"Asterisk Call Manager/11.0.0\r\n")
            while True:
                try:
                    block = (await reader.readuntil(b"\r\n\r\n")).decode()
                except asyncio.IncompleteReadError:
                    return
                action_id = next(line.split(": ", 1)[1] for line in block.split("\r\n")
                                 if line.lower().startswith("actionid: "))
                if "Action: Login" in block:
                    writer.write(f"Response: Success\r\nActionID: {action_id}\r\n"
                                 "Message: Authentication accepted\r\n\r\n".encode())
                elif "Action: Logoff" in block:
                    writer.write(f"Response: Goodbye\r\nActionID: {action_id}\r\n\r\n"
                                 .encode())
                else:
                    data = (f"Response: Success\r\nActionID: {action_id}\r\n"
                            "Output: Stéphane\r\n\r\n").encode()
                    cut = data.index("é".encode()) + 1
                    writer.write(data[:cut])
                    await writer.drain()
                    await asyncio.sleep(0.05)
                    writer.write(data[cut:])
                await writer.drain()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server, AmiClient("127.0.0.1", port, "u", "s", timeout=2,
                                     heartbeat=None) as client:
            return await client.command("who")

    assert run(go()) == "Stéphane"
