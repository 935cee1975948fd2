"""The lab against a real Asterisk 22: root filesystem cache, instances, errors, CLI.

Needs root; builds the root filesystem on first use (about a minute), then reuses it."""

from __future__ import annotations

import os
import random
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.lab_fixtures import (
    assert_stopped_clean,
    host_mounts_under,
    instance_mounts,
    lab_mount_ns,
    modules_conf,
    running_lab,
    write_minimal_config,
)
from typer.testing import CliRunner

from wildix_ast.cli.lab import app
from wildix_ast.errors import LabError
from wildix_ast.lab.allocator import port_in_use
from wildix_ast.lab.instance import Lab
from wildix_ast.lab.ports import RTP_COUNT, allocate_ports
from wildix_ast.lab.rootfs import (
    MOUNT_POINT,
    ensure_rootfs,
    host_mirror,
    is_built,
    require_tool,
    rootfs_info,
)

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")


@pytest.fixture(scope="module")
def rootfs() -> Path:
    return ensure_rootfs()


@pytest.fixture(scope="module")
def shared_lab(rootfs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """One running instance for the tests that only look at it."""
    with running_lab(tmp_path_factory.mktemp("lab"), "shared") as lab:
        yield lab


def ami_banner(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        return connection.recv(100).decode()


# ------------------------------------------------------------------ without Asterisk
def test_host_mirror_reads_deb822_and_one_line_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    assert host_mirror(tmp_path) == "http://deb.debian.org/debian"
    (tmp_path / "sources.list").write_text(
        "deb http://security.debian.org/debian-security bookworm-security main\n"
        "deb [arch=amd64] http://mirror.example/debian bookworm main\n")
    assert host_mirror(tmp_path) == "http://mirror.example/debian"
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://deb822.example/debian/\nSuites: bookworm\n\n"
        "Types: deb\nURIs: http://deb822.example/debian-security\nSuites: bookworm-security\n")
    assert host_mirror(tmp_path) == "http://deb822.example/debian"


def test_missing_host_tool_names_its_package() -> None:
    with pytest.raises(LabError, match="install the Debian package `no-such-package`"):
        require_tool("no-such-tool-wildix", "no-such-package")


def test_port_slots_are_random_free_and_reserved() -> None:
    first = allocate_ports(random.Random(1))
    try:
        ports = first.ports
        assert ports.rtp_end - ports.rtp_start + 1 == RTP_COUNT
        assert len({ports.sip, ports.ami, ports.rtp_start}) == 3
        assert not port_in_use("udp", ports.sip) and not port_in_use("tcp", ports.ami)
        # the same random sequence must skip the slot we hold
        second = allocate_ports(random.Random(1))
        assert second.ports != ports
        second.release()
    finally:
        first.release()


# ------------------------------------------------------------------ live Asterisk
@pytest.mark.lab
@needs_root
def test_rootfs_is_built_once_then_reused(rootfs: Path) -> None:
    assert is_built(rootfs)
    assert (rootfs / MOUNT_POINT.relative_to("/")).is_dir()
    assert str(rootfs_info(rootfs)["asterisk"]).split(":")[-1].startswith("22.")
    started = time.monotonic()
    assert ensure_rootfs() == rootfs
    assert time.monotonic() - started < 1.0


@pytest.mark.lab
@needs_root
def test_instance_runs_asterisk_22_in_its_own_namespace(shared_lab: Lab) -> None:
    assert shared_lab.is_running()
    assert shared_lab.version().startswith("Asterisk 22.")
    pid = shared_lab.pid
    assert pid is not None
    mounts = instance_mounts(pid)
    assert {"/proc", "/dev", str(MOUNT_POINT)} <= set(mounts)
    assert host_mounts_under(shared_lab.rootfs) == []  # nothing leaks to the host
    assert "Asterisk Call Manager" in ami_banner(shared_lab.ports.ami)
    assert "app_echo.so" in shared_lab.cli("module show like echo")
    assert str(shared_lab.ports.rtp_start) in shared_lab.cli("rtp show settings")
    assert (shared_lab.log_dir / "full").is_file()
    # the state file lets another process find it
    other = Lab(shared_lab.name, shared_lab.dir.parent)
    assert other.is_running() and other.pid == pid and other.ports == shared_lab.ports


@pytest.mark.lab
@needs_root
def test_two_instances_at_once_and_clean_stop(rootfs: Path, tmp_path: Path) -> None:
    first, second = Lab("one", tmp_path), Lab("two", tmp_path)
    for lab in (first, second):
        write_minimal_config(lab)
    assert first.ports != second.ports
    first.start()
    try:
        second.start()
        pids = (first.pid, second.pid)
        namespaces = (lab_mount_ns(first), lab_mount_ns(second))
        assert None not in pids and namespaces[0] != namespaces[1]
        for lab in (first, second):
            assert lab.version().startswith("Asterisk 22.")
            assert "Asterisk Call Manager" in ami_banner(lab.ports.ami)
        started = time.monotonic()
        assert second.stop() is True
        assert time.monotonic() - started < 5
        assert_stopped_clean(second, namespaces[1], pids[1])
        assert first.is_running()  # the other one is untouched
        assert second.stop() is False  # idempotent
    finally:
        first.stop()
        second.stop()
    assert_stopped_clean(first, namespaces[0], pids[0])


@pytest.mark.lab
@needs_root
def test_restart_keeps_ports(rootfs: Path, tmp_path: Path) -> None:
    lab = Lab("again", tmp_path)
    write_minimal_config(lab)
    ports = lab.ports
    lab.start()
    lab.stop()
    again = Lab("again", tmp_path)
    assert again.ports == ports
    again.start()
    try:
        assert "Asterisk Call Manager" in ami_banner(ports.ami)
    finally:
        again.stop()


@pytest.mark.lab
@needs_root
def test_missing_asterisk_conf_is_a_clear_error(rootfs: Path, tmp_path: Path) -> None:
    lab = Lab("empty", tmp_path)
    with pytest.raises(LabError, match=r"asterisk\.conf is missing"):
        lab.start()
    assert not lab.is_running()


@pytest.mark.lab
@needs_root
def test_taken_port_is_a_clear_error(rootfs: Path, tmp_path: Path) -> None:
    lab = Lab("busy", tmp_path)
    write_minimal_config(lab)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind(("127.0.0.1", lab.ports.sip))
        with pytest.raises(LabError, match=rf"port {lab.ports.sip}/udp \(SIP UDP\).*in use"):
            lab.start()
    assert not lab.is_running()


@pytest.mark.lab
@needs_root
def test_asterisk_exiting_during_start_shows_its_log(rootfs: Path, tmp_path: Path) -> None:
    lab = Lab("broken", tmp_path)
    write_minimal_config(lab)
    (lab.etc_dir / "modules.conf").write_text(modules_conf() + "require => no_such_mod.so\n")
    with pytest.raises(LabError, match=r"(?s)exited during start.*no_such_mod"):
        lab.start()
    assert not lab.is_running()
    assert host_mounts_under(lab.rootfs) == []


@pytest.mark.lab
@needs_root
def test_boot_timeout_is_a_clear_error_and_leaves_nothing(rootfs: Path,
                                                          tmp_path: Path) -> None:
    lab = Lab("slow", tmp_path)
    write_minimal_config(lab)
    with pytest.raises(LabError, match="timed out"):
        lab.start(timeout=0)
    assert not lab.is_running()
    lab.start()  # and it can start normally afterwards
    lab.stop()


@pytest.mark.lab
@needs_root
def test_cli_status_cli_and_down(shared_lab: Lab, tmp_path: Path) -> None:
    runner = CliRunner()
    state = ["--state-dir", str(shared_lab.dir.parent)]
    result = runner.invoke(app, ["status", *state], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "shared" in result.output and str(shared_lab.pid) in result.output
    assert "22.10" in result.output
    result = runner.invoke(app, ["cli", "core show uptime", "--name", "shared", *state])
    assert result.exit_code == 0 and "System uptime" in result.output
    # up --config from a folder with port placeholders, then down
    config = tmp_path / "config"
    config.mkdir()
    write_minimal_config(Lab("scratch", tmp_path / "scratch"))
    for source in (tmp_path / "scratch" / "scratch" / "srv" / "etc").iterdir():
        text = source.read_text()
        if source.name == "manager.conf":
            text = "\n".join("port = @AMI_PORT@" if line.startswith("port =") else line
                             for line in text.splitlines()) + "\n"
        (config / source.name).write_text(text)
    cli_state = ["--state-dir", str(tmp_path / "state")]
    result = runner.invoke(app, ["up", "--name", "c", "--config", str(config), *cli_state])
    assert result.exit_code == 0, result.output
    lab = Lab("c", tmp_path / "state")
    try:
        assert "Asterisk Call Manager" in ami_banner(lab.ports.ami)
    finally:
        result = runner.invoke(app, ["down", "--name", "c", *cli_state])
    assert result.exit_code == 0 and "stopped" in result.output
    assert not lab.is_running()
