"""AmiClient against a real Asterisk 22 (and, for protocol edge cases, a fake server)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest

from wildix_ast.ami import AmiClient, run
from wildix_ast.asterisk_paths import AsteriskPaths
from wildix_ast.errors import AmiError

PROBE_ROOT = Path("/tmp/probe/root")
ROOT = Path(os.environ.get("WILDIX_AST_TEST_ROOT", "/tmp/apply-root"))
AMI_USER = "wildix-test"
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

MODULES = [
    "res_pjproject.so", "res_sorcery_config.so", "res_sorcery_memory.so",
    "res_sorcery_astdb.so", "res_pjsip.so", "res_pjsip_session.so",
    "res_pjsip_authenticator_digest.so", "res_pjsip_endpoint_identifier_ip.so",
    "res_pjsip_endpoint_identifier_user.so", "res_pjsip_registrar.so",
    "res_pjsip_sdp_rtp.so", "res_rtp_asterisk.so", "chan_pjsip.so", "pbx_config.so",
    "app_echo.so", "app_dial.so", "app_playback.so", "codec_ulaw.so",
    "res_timing_timerfd.so", "bridge_simple.so", "bridge_native_rtp.so",
]


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class AsteriskUnderTest:
    """A running Asterisk; `etc_dir` as seen from the host."""

    root: Path
    paths: AsteriskPaths
    ami_port: int
    sip_port: int
    process: subprocess.Popen[bytes]

    @property
    def etc_dir(self) -> Path:
        return self.root / str(self.paths.etc).lstrip("/")

    @property
    def pid(self) -> int:
        return self.process.pid

    def client(self, **kwargs: float | None) -> AmiClient:
        return AmiClient("127.0.0.1", self.ami_port, AMI_USER, AMI_SECRET, **kwargs)  # type: ignore[arg-type]

    def cli(self, command: str) -> str:
        return subprocess.run(
            ["chroot", str(self.root), "/usr/sbin/asterisk", "-C",
             str(self.paths.etc / "asterisk.conf"), "-rx", command],
            capture_output=True, text=True, timeout=30, check=False).stdout

    def base_files(self) -> dict[str, str]:
        return {"pjsip.conf": BASE_PJSIP.format(sip_port=self.sip_port),
                "extensions.conf": BASE_EXTENSIONS}


_counter = itertools.count()


def _static_files(paths: AsteriskPaths, ami_port: int) -> dict[str, str]:
    directories = "\n".join(f"{key} => {value}" for key, value in (
        ("astetcdir", paths.etc), ("astmoddir", paths.modules), ("astvarlibdir", paths.var_lib),
        ("astdbdir", paths.db), ("astkeydir", paths.key), ("astdatadir", paths.data),
        ("astagidir", paths.agi), ("astspooldir", paths.spool), ("astrundir", paths.run),
        ("astlogdir", paths.log), ("astcachedir", paths.cache), ("astsbindir", "/usr/sbin")))
    return {
        "asterisk.conf": f"[directories]\n{directories}\n\n[options]\n",
        "modules.conf": "[modules]\nautoload=no\n"
                        + "".join(f"load => {m}\n" for m in MODULES),
        "manager.conf": f"[general]\nenabled=yes\nbindaddr=127.0.0.1\nport={ami_port}\n\n"
                        f"[{AMI_USER}]\nsecret={AMI_SECRET}\nread=all\nwrite=all\n"
                        "deny=0.0.0.0/0.0.0.0\npermit=127.0.0.1/255.255.255.255\n",
        "logger.conf": "[logfiles]\nmessages.log => notice,warning,error\n",
    }


@contextlib.contextmanager
def start_asterisk() -> Iterator[AsteriskUnderTest]:
    """THE place that starts Asterisk for these tests (to be switched to wildix_ast.lab):
    a copy of the probe root filesystem, a private prefix inside it, free loopback ports."""
    if os.geteuid() != 0:
        pytest.skip("needs root (chroot, mount namespaces)")
    if not (ROOT / "usr/sbin/asterisk").exists():
        if not (PROBE_ROOT / "usr/sbin/asterisk").exists():
            pytest.skip(f"no Asterisk root filesystem at {ROOT} or {PROBE_ROOT}")
        subprocess.run(["cp", "-a", str(PROBE_ROOT), str(ROOT)], check=True)
    prefix = PurePosixPath(f"/srv/wildix-ast-test-{os.getpid()}-{next(_counter)}")
    paths = AsteriskPaths.private_under(prefix)
    host_prefix = ROOT / str(prefix).lstrip("/")
    shutil.rmtree(host_prefix, ignore_errors=True)
    for folder in paths.writable:
        (ROOT / str(folder).lstrip("/")).mkdir(parents=True, exist_ok=True)
    ami_port, sip_port = free_port(), free_port(socket.SOCK_DGRAM)
    etc = ROOT / str(paths.etc).lstrip("/")
    for name, text in _static_files(paths, ami_port).items():
        (etc / name).write_text(text)
    log = (host_prefix / "console.log").open("wb")
    script = (f"mount -t proc proc {ROOT}/proc && mount --rbind /dev {ROOT}/dev && "
              f"exec chroot {ROOT} /usr/sbin/asterisk -f -n -C {paths.etc}/asterisk.conf")
    process = subprocess.Popen(["unshare", "--mount", "--propagation", "private",
                                "sh", "-c", script], stdout=log, stderr=subprocess.STDOUT)
    ast = AsteriskUnderTest(ROOT, paths, ami_port, sip_port, process)
    for name, text in ast.base_files().items():
        (etc / name).write_text(text)
    try:
        deadline = time.monotonic() + 30
        while "fully booted" not in ast.cli("core waitfullybooted").lower():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("Asterisk did not start: "
                                   + (host_prefix / "console.log").read_text()[-2000:])
            time.sleep(0.2)
        yield ast
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGCONT)
        ast.cli("core stop now")
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.close()
        shutil.rmtree(host_prefix, ignore_errors=True)


@pytest.fixture(scope="module")
def asterisk() -> Iterator[AsteriskUnderTest]:
    with start_asterisk() as ast:
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
        async with lab.client(timeout=1.0, heartbeat=0.3) as ami:
            os.kill(lab.pid, signal.SIGSTOP)
            try:
                start = time.monotonic()
                with pytest.raises(AmiError, match="did not answer action PJSIPShowEndpoints "
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


def test_connection_lost_fails_pending_action(lab: AsteriskUnderTest) -> None:
    """The connection breaks under a pending action: it fails at once, and so does the next."""
    async def go() -> None:
        async with lab.client(timeout=5.0) as ami:
            pending = asyncio.create_task(ami.action("WaitEvent", Timeout="3"))
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
