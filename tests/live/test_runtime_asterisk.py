"""The AMI service against a real Asterisk 22: reconnection after a restart and after a hang,
the per-call log of real calls, and bans from real failed SIP REGISTERs (SIPp)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from support.lab_fixtures import PJSIP_MODULES, pjsip_phone_conf, running_lab

from wildix_ast.ami import AmiClient
from wildix_ast.lab.instance import Lab
from wildix_ast.lab.sipp import SippDriver, SippError
from wildix_ast.services.ami.ban_file import lift_ban, load_bans
from wildix_ast.services.ami.call_log import format_call, read_log_files
from wildix_ast.services.ami.firewall import Firewall, enforced, lab_chain
from wildix_ast.services.ami.security import BanPolicy, banned_networks
from wildix_ast.services.ami.service import CALLS_FILE, MonitorService, ServiceConfig, read_status
from wildix_ast.services.ami.supervisor import AmiSettings

pytestmark = pytest.mark.lab

EXTENSIONS = """\
[general]
static = yes
writeprotect = yes

[debug]
exten => 700,1,Answer()
 same => n,Wait(0.3)
 same => n,Hangup()
exten => hold,1,Answer()
 same => n,Wait(60)
"""



@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (chroot, mount namespaces)")
    files = {"extensions.conf": EXTENSIONS,
             "pjsip.conf": pjsip_phone_conf("101", "Right-Passw0rd-101", "debug")}
    modules = (*PJSIP_MODULES, "func_devstate.so", "res_manager_devicestate.so")
    with running_lab(tmp_path_factory.mktemp("runtime-lab"), "runtime", extra_modules=modules,
                     extra_files=files) as running:
        yield running


def settings(lab: Lab) -> AmiSettings:
    return AmiSettings("127.0.0.1", lab.ports.ami, "lab", "lab-secret", timeout=1.0,
                       heartbeat=0.5)


@contextlib.asynccontextmanager
async def service_on(lab: Lab, state_dir: Path, policy: BanPolicy | None = None,
                     firewall: Firewall | None = None) -> AsyncIterator[MonitorService]:
    config = ServiceConfig(settings(lab), state_dir, policy or BanPolicy(),
                           status_interval=0.2, firewall=firewall)
    service = MonitorService(config)
    task = asyncio.create_task(service.run())
    try:
        await until(lambda: service.supervisor.connected, 10)
        yield service
    finally:
        service.stop()
        await asyncio.wait_for(task, 10)


async def until(condition: Callable[[], bool], timeout: float,
                what: Callable[[], object] = lambda: "") -> float:
    """Seconds until `condition()` held; AssertionError (showing `what()`) after `timeout`."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, f"not true within {timeout} s: {what()}"
        await asyncio.sleep(0.05)
    return time.monotonic() - start


async def ami_action(lab: Lab, name: str, **fields: str | list[str]) -> None:
    async with AmiClient("127.0.0.1", lab.ports.ami, "lab", "lab-secret") as ami:
        await ami.action(name, **fields)


async def channels_left(lab: Lab) -> int:
    async with AmiClient("127.0.0.1", lab.ports.ami, "lab", "lab-secret") as ami:
        deadline = time.monotonic() + 5
        while (count := await ami.channels_count()) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        return count


def test_state_is_right_again_within_5_s_of_an_asterisk_restart(lab: Lab, tmp_path: Path
                                                               ) -> None:
    async def go() -> float:
        async with service_on(lab, tmp_path) as service:
            await ami_action(lab, "Setvar", Variable="DEVICE_STATE(Custom:lamp)", Value="INUSE")
            await ami_action(lab, "Originate", Channel="Local/hold@debug", Application="Wait",
                             Data="60", Async="true")
            await until(lambda: service.state.devices.get("Custom:lamp") == "INUSE"
                        and len(service.state.channels) == 2, 10)
            await asyncio.to_thread(lab.stop)
            await until(lambda: not service.supervisor.connected, 5)
            assert read_status(tmp_path)["ami"]["connected"] is False
            await asyncio.to_thread(lab.start, timeout=60)
            ready = time.monotonic()

            def right() -> bool:
                status = read_status(tmp_path)
                pbx = status["pbx"]
                return bool(status["ami"]["connected"] and pbx["channels"] == []
                            and pbx["devices"].get("Custom:lamp") == "INUSE"
                            and status["ami"]["connections"] == 2)

            await until(right, 5, lambda: read_status(tmp_path))
            seconds = time.monotonic() - ready
            # events flow on the new connection
            await ami_action(lab, "Setvar", Variable="DEVICE_STATE(Custom:lamp)",
                             Value="NOT_INUSE")
            await until(lambda: service.state.devices.get("Custom:lamp") == "NOT_INUSE", 2)
            return seconds

    seconds = asyncio.run(go())
    print(f"status right {seconds:.2f} s after Asterisk was ready again")
    assert asyncio.run(channels_left(lab)) == 0


def test_a_hung_asterisk_is_detected_and_the_connection_remade(lab: Lab, tmp_path: Path
                                                              ) -> None:
    async def go() -> tuple[float, float]:
        async with service_on(lab, tmp_path) as service:
            pid = lab.pid
            assert pid is not None
            os.kill(pid, signal.SIGSTOP)
            try:
                detected = await until(lambda: not service.supervisor.connected, 5)
                await until(lambda: "stopped answering pings" in
                            service.supervisor.last_error, 1)
                assert service.state.channels == {} and service.state.devices == {}
            finally:
                os.kill(pid, signal.SIGCONT)
            back = await until(lambda: service.supervisor.connected, 5)
            assert service.supervisor.connections == 2
            return detected, back

    detected, back = asyncio.run(go())
    print(f"hang detected after {detected:.2f} s, reconnected {back:.2f} s after SIGCONT")


def test_the_events_of_a_real_call_are_logged_and_printed(lab: Lab, tmp_path: Path) -> None:
    async def go() -> None:
        async with service_on(lab, tmp_path) as service:
            await ami_action(lab, "Originate", Channel="Local/700@debug", Application="Wait",
                             Data="1", CallerID='"Debug" <555>', Async="true")
            await until(lambda: bool(service.calls.find("700")) and any(
                e.name == "Hangup" for _, events in service.calls.calls() for e in events), 10)
            await until(lambda: len([e for e in service.calls.call(service.calls.find("700")[0])
                                     if e.name == "Hangup"]) == 2, 10)
            await asyncio.sleep(0.3)  # one status tick: the log file is flushed

    asyncio.run(go())
    log = read_log_files(tmp_path / CALLS_FILE)
    found = log.find("700")
    assert len(found) == 1
    text = format_call(log.call(found[0]))
    print(text)
    assert "Local/700@debug-" in text
    assert "Application=Wait" in text and "AppData=0.3" in text
    assert text.count("Hangup ") >= 2
    assert asyncio.run(channels_left(lab)) == 0


def test_twenty_failed_registers_ban_an_address_but_never_a_lan_one(lab: Lab, tmp_path: Path
                                                                    ) -> None:
    """Must-show 7: banned, listed, enforced (the kernel drops the address's SIP packets, so
    even its right password no longer registers), unbanned (it registers again); a LAN
    address is counted but never banned."""
    attacker, lan = "127.0.0.2", "127.0.0.3"
    policy = BanPolicy(threshold=20, window=120, ban_time=600,
                       never_ban=(ipaddress.ip_network(f"{lan}/32"),))
    # a chain of this lab's own, closing only its SIP port: other labs on the machine
    # (and 127.0.0.1) are untouched
    firewall = Firewall((lab.ports.sip,), chain=f"wxa-test-{lab.ports.sip}")

    def driver(address: str) -> SippDriver:
        return SippDriver(lab.ports.sip, local_ip=address, work_dir=tmp_path / address)

    def fail_registers(address: str, count: int) -> None:
        for _ in range(count):
            assert driver(address).register("101", "wrong-password", expect="rejected").ok

    def register(address: str) -> int | None:
        """The final status of a REGISTER with the right password (None: no answer)."""
        phone = driver(address)
        try:
            result = phone.register("101", "Right-Passw0rd-101", timeout=4)
        except SippError:
            return None  # SIPp gave up waiting
        if result.registered:  # the AOR keeps one contact: make room for the next one
            assert phone.unregister("101", "Right-Passw0rd-101",
                                    contact_port=result.contact_port).registered
        return result.status

    async def go() -> None:
        async with service_on(lab, tmp_path, policy, firewall) as service:
            assert await asyncio.to_thread(register, attacker) == 200
            await asyncio.to_thread(fail_registers, attacker, 19)
            await asyncio.sleep(0.3)
            assert banned_networks(service.security, time.time()) == []
            await asyncio.to_thread(fail_registers, attacker, 1)
            await until(lambda: bool(service.security.bans), 3)
            assert banned_networks(service.security, time.time()) == [
                ipaddress.ip_network(f"{attacker}/32")]
            await until(lambda: [b["address"] for b in read_status(tmp_path)["bans"]]
                        == [attacker], 2)
            assert "ChallengeResponseFailed" in load_bans(tmp_path)[attacker].reason
            await until(lambda: service.enforced == {attacker}, 3)
            assert enforced(firewall.chain) == [attacker]
            assert read_status(tmp_path)["enforcement"]["enforced"] == [attacker]
            assert await asyncio.to_thread(register, attacker) is None  # not even answered
            assert lift_ban(tmp_path, attacker)
            await until(lambda: not service.security.bans and service.enforced == set(), 3)
            assert enforced(firewall.chain) == []
            assert await asyncio.to_thread(register, attacker) == 200
            await asyncio.to_thread(fail_registers, lan, 25)
            await asyncio.sleep(0.3)
            assert service.security.bans == {}
            assert len(service.security.attempts[lan]) == 20  # counted, never banned
            assert enforced(firewall.chain) == []
            assert await asyncio.to_thread(register, lan) == 200

    try:
        asyncio.run(go())
    finally:
        firewall.remove()
    assert enforced(firewall.chain) == []


def test_an_expired_ban_is_lifted_from_the_firewall(lab: Lab, tmp_path: Path) -> None:
    attacker = "127.0.0.4"
    policy = BanPolicy(threshold=3, window=60, ban_time=2, never_ban=())
    firewall = Firewall((lab.ports.sip,), chain=f"wxa-test-{lab.ports.sip}-x")

    async def go() -> None:
        async with service_on(lab, tmp_path, policy, firewall) as service:
            for _ in range(3):
                await asyncio.to_thread(
                    SippDriver(lab.ports.sip, local_ip=attacker, work_dir=tmp_path).register,
                    "101", "wrong-password", expect="rejected")
            await until(lambda: service.enforced == {attacker}, 3)
            assert enforced(firewall.chain) == [attacker]
            await until(lambda: service.enforced == set(), 5)
            assert enforced(firewall.chain) == []

    try:
        asyncio.run(go())
    finally:
        firewall.remove()


class _LabCli:
    """`wildix-ast` processes against a lab of their own (its state under `tmp_path`)."""

    def __init__(self, tmp_path: Path) -> None:
        self.labs, self.state = tmp_path / "labs", tmp_path / "runtime"
        self.name = f"fw{os.getpid()}"
        self.env = {**os.environ, "WILDIX_AST_LAB_STATE": str(self.labs),
                    "WILDIX_AST_AMI_SECRET": "lab-secret",
                    "WILDIX_AST_DB": str(tmp_path / "none.sqlite3"), "NO_COLOR": "1",
                    "COLUMNS": "200"}

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "wildix_ast", *args], env=self.env,
                              capture_output=True, text=True, timeout=120, check=False)

    @contextlib.contextmanager
    def lab(self) -> Iterator[Lab]:
        with running_lab(self.labs, self.name, extra_modules=PJSIP_MODULES, extra_files={
                "extensions.conf": EXTENSIONS,
                "pjsip.conf": pjsip_phone_conf("101", "Right-Passw0rd-101", "debug")}) as lab:
            yield lab

    def serve(self) -> subprocess.Popen[str]:
        """`runtime serve --lab`, connected to the lab's AMI (bans after 3 failures)."""
        service = subprocess.Popen(
            [sys.executable, "-m", "wildix_ast", "runtime", "serve", "--lab", self.name,
             "--ami-user", "lab", "--never-ban", "10.255.255.0/24", "--threshold", "3",
             "--state-dir", str(self.state)], env=self.env, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not ((self.state / "status.json").exists()
                   and read_status(self.state)["ami"]["connected"]):
            if service.poll() is not None or time.monotonic() > deadline:
                service.kill()
                raise AssertionError(service.communicate(timeout=10)[1] or "not connected")
            time.sleep(0.1)
        return service


def _trace(chain: str) -> list[str]:
    """Every iptables and ip6tables rule that names `chain`."""
    return [line for program in ("iptables", "ip6tables")
            for line in subprocess.run([program, "-w", "5", "-S"], capture_output=True,
                                       text=True, check=True).stdout.splitlines()
            if chain in line]


def _ban(lab: Lab, addresses: tuple[str, ...], chain: str, work: Path) -> None:
    """Real failed REGISTERs from each address until the service's chain drops them all."""
    for address in addresses:
        for _ in range(3):
            assert SippDriver(lab.ports.sip, local_ip=address, work_dir=work / address
                              ).register("101", "wrong-password", expect="rejected").ok
    deadline = time.monotonic() + 30
    while sorted(enforced(chain)) != sorted(addresses):
        assert time.monotonic() < deadline, enforced(chain)
        time.sleep(0.1)


def test_lab_down_removes_the_chain_a_killed_service_left(tmp_path: Path) -> None:
    """`runtime serve --lab` bans two addresses from real failed REGISTERs and is killed
    (SIGKILL: no clean stop, its chain stays); `security unban` lifts one at once (that
    address registers again); `lab down` then leaves no trace of the chain or its jump in
    `iptables -S`, also when run a second time."""
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (chroot, mount namespaces)")
    cli = _LabCli(tmp_path)
    attackers = ("127.0.0.5", "127.0.0.6")
    with cli.lab() as lab:
        chain = lab_chain(lab.ports.sip)
        service = cli.serve()
        try:
            _ban(lab, attackers, chain, tmp_path)
        finally:
            service.kill()
            service.wait(10)
        assert sorted(enforced(chain)) == list(attackers)  # a killed service leaves it

        done = cli.run("security", "unban", attackers[0], "--state-dir", str(cli.state))
        assert done.returncode == 0 and f"chain {chain} no longer drops it" in done.stdout, \
            done.stdout + done.stderr
        assert enforced(chain) == [attackers[1]]
        phone = SippDriver(lab.ports.sip, local_ip=attackers[0], work_dir=tmp_path / "again")
        registered = phone.register("101", "Right-Passw0rd-101", timeout=4)
        assert registered.status == 200
        assert phone.unregister("101", "Right-Passw0rd-101",
                                contact_port=registered.contact_port).registered

        try:
            down = cli.run("lab", "down", "--name", cli.name)
            assert down.returncode == 0 and f"firewall chain {chain} removed" in down.stdout, \
                down.stdout + down.stderr
            assert _trace(chain) == []
            again = cli.run("lab", "down", "--name", cli.name)
            assert again.returncode == 0 and "was not running" in again.stdout \
                and "firewall" not in again.stdout, again.stdout + again.stderr
            assert _trace(chain) == []
        finally:
            Firewall((lab.ports.sip,), chain).remove()
    assert _trace(chain) == []


def test_lab_down_stops_the_service_that_serves_it(tmp_path: Path) -> None:
    """`runtime serve --lab` holds a ban; `lab down` removes the chain, and the service,
    its lab gone for good, stops by itself (exit 0) without writing the chain again. The
    ban stays in bans.json, for the next start."""
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (chroot, mount namespaces)")
    cli = _LabCli(tmp_path)
    with cli.lab() as lab:
        chain = lab_chain(lab.ports.sip)
        service = cli.serve()
        try:
            _ban(lab, ("127.0.0.7",), chain, tmp_path)
            down = cli.run("lab", "down", "--name", cli.name)
            assert down.returncode == 0 and f"firewall chain {chain} removed" in down.stdout, \
                down.stdout + down.stderr
            stopped = time.monotonic()
            _, errors = service.communicate(timeout=40)
            assert service.returncode == 0, errors
            # the grace a restarting lab gets, then the stop
            assert 5 <= time.monotonic() - stopped <= 30, errors
            assert "the served lab has been down" in errors, errors
            assert _trace(chain) == []
            time.sleep(2)
            assert _trace(chain) == []
            assert "127.0.0.7" in load_bans(cli.state)
        finally:
            if service.poll() is None:
                service.kill()
                service.wait(10)
            Firewall((lab.ports.sip,), chain).remove()
