"""The SIP bans' firewall chain on the real kernel (iptables, root; no Asterisk needed: the
service enforces its bans whether or not its AMI session is up): removal takes exactly what
was added, a stopped service leaves nothing and enforces its bans again when it starts, a
crashed one leaves its chain for the next start, `security unban` lifts the rule itself."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from wildix_ast.lab.allocator import free_port
from wildix_ast.services.ami.ban_file import load_bans, save_bans
from wildix_ast.services.ami.firewall import Firewall, enforced
from wildix_ast.services.ami.security import Ban, BanPolicy
from wildix_ast.services.ami.service import MonitorService, ServiceConfig
from wildix_ast.services.ami.supervisor import AmiSettings

pytestmark = pytest.mark.lab


def rules() -> str:
    """Every rule of the filter table, both IP versions."""
    return "".join(subprocess.run([program, "-w", "5", "-S"], capture_output=True, text=True,
                                  check=True).stdout for program in ("iptables", "ip6tables"))


@pytest.fixture
def firewall() -> Iterator[Firewall]:
    if os.geteuid() != 0 or shutil.which("iptables") is None:
        pytest.skip("needs root and iptables")
    # a chain of this test run's own, on a port nothing listens on
    chain = Firewall((free_port("127.0.0.1"),), chain=f"wxa-fw-{os.getpid()}")
    before = rules()
    try:
        yield chain
    finally:
        chain.remove()
    assert chain.chain not in rules()
    assert rules() == before  # nothing else touched


def ban(address: str) -> Ban:
    now = time.time()
    return Ban(address, now, now + 600, 20, "test")


def test_remove_takes_exactly_what_apply_added_and_can_run_again(firewall: Firewall) -> None:
    before = rules()
    firewall.apply([ipaddress.ip_network("192.0.2.7/32"),
                    ipaddress.ip_network("2001:db8::7/128")])
    assert sorted(enforced(firewall.chain)) == ["192.0.2.7", "2001:db8::7"]
    assert f"-A INPUT -j {firewall.chain}" in rules()
    assert firewall.remove()
    assert rules() == before
    assert not firewall.remove()  # twice, or with the chain already gone: nothing to do
    assert rules() == before


def test_a_stopped_service_removes_its_chain_and_enforces_again_when_started(
        firewall: Firewall, tmp_path: Path) -> None:
    save_bans(tmp_path, {"192.0.2.9": ban("192.0.2.9")})
    # nothing listens there: the service keeps retrying AMI, its bans are enforced anyway
    config = ServiceConfig(AmiSettings("127.0.0.1", free_port("127.0.0.1"), "u", "s",
                                       timeout=0.5), tmp_path, BanPolicy(),
                           status_interval=0.1, firewall=firewall)

    async def run(until: Callable[[MonitorService], bool], *, clean: bool) -> None:
        service = MonitorService(config)
        task = asyncio.create_task(service.run())
        deadline = time.monotonic() + 10
        while not until(service):
            assert time.monotonic() < deadline and not task.done()
            await asyncio.sleep(0.05)
        if clean:
            service.stop()  # SIGTERM's handler
            await asyncio.wait_for(task, 10)
        else:
            task.cancel()  # no requested stop: as a crash, the chain stays
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(run(lambda s: s.enforced == {"192.0.2.9"}, clean=True))
    assert firewall.chain not in rules()
    assert set(load_bans(tmp_path)) == {"192.0.2.9"}  # the ban itself survives the stop
    asyncio.run(run(lambda s: s.enforced == {"192.0.2.9"}, clean=False))
    assert enforced(firewall.chain) == ["192.0.2.9"]
    asyncio.run(run(lambda s: s.enforced == {"192.0.2.9"}, clean=True))
    assert firewall.chain not in rules()


def unban(state_dir: Path, address: str, *prefix: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*prefix, sys.executable, "-m", "wildix_ast", "security", "unban",
                           address, "--state-dir", str(state_dir)], capture_output=True,
                          text=True, timeout=60, check=False,
                          env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"})


def test_unban_while_the_service_is_not_running(firewall: Firewall, tmp_path: Path) -> None:
    """The service crashed (its chain stays, dropping two addresses): `unban` lifts the rule
    at once; without CAP_NET_ADMIN it says the rule stays (exit 9), and a second `unban` with
    the capability lifts it though the list no longer holds it."""
    setpriv = shutil.which("setpriv")
    assert setpriv is not None, "setpriv (util-linux) drops the capability"
    save_bans(tmp_path, {a: ban(a) for a in ("192.0.2.5", "192.0.2.6")})
    config = ServiceConfig(AmiSettings("127.0.0.1", free_port("127.0.0.1"), "u", "s",
                                       timeout=0.5), tmp_path, BanPolicy(),
                           status_interval=0.1, firewall=firewall)

    async def crash() -> None:
        service = MonitorService(config)
        task = asyncio.create_task(service.run())
        while not (service.enforced and (tmp_path / "status.json").exists()):
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)  # a status written with the enforcement
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(crash())
    assert sorted(enforced(firewall.chain)) == ["192.0.2.5", "192.0.2.6"]

    done = unban(tmp_path, "192.0.2.5")
    assert done.returncode == 0, done.stderr
    assert f"192.0.2.5 unbanned; the firewall chain {firewall.chain} no longer drops it" \
        in done.stdout
    assert enforced(firewall.chain) == ["192.0.2.6"]
    assert set(load_bans(tmp_path)) == {"192.0.2.6"}

    refused = unban(tmp_path, "192.0.2.6", setpriv, "--bounding-set=-net_admin,-net_raw")
    assert refused.returncode == 9, refused.stdout + refused.stderr
    assert f"the firewall chain {firewall.chain} still drops its SIP packets until the AMI " \
        "service runs again" in " ".join(refused.stderr.split())
    assert enforced(firewall.chain) == ["192.0.2.6"]
    assert load_bans(tmp_path) == {}

    again = unban(tmp_path, "192.0.2.6")
    assert again.returncode == 0, again.stderr
    assert "(it was no longer listed)" in again.stdout and "no longer drops it" in again.stdout
    assert enforced(firewall.chain) == []
    never = unban(tmp_path, "192.0.2.6")
    assert never.returncode == 1 and "is not banned" in never.stderr
