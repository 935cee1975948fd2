"""The Ansible role against a real booted Debian forky host (systemd in systemd-nspawn),
over SSH: first deployment, a second run that changes nothing, `--check --diff`, the
testinfra suite (tests/infra) with a SIP call through the deployed Asterisk, and bad input
(a settings file that does not validate, an apply that fails verification, an unreachable
host, a distribution without Asterisk 22) failing the play with wildix-ast's message while
the host keeps its previous configuration.

The tests run in file order and share one host: each starts from what the previous left."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.sound_fixtures import copy_example_sounds

from wildix_ast.lab.allocator import free_port
from wildix_ast.testing.deploy_host.host import DeployHost, HostInfo

pytestmark = [pytest.mark.deploy, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
ANSIBLE = REPO / "ansible"
EXAMPLE = REPO / "examples" / "site.yaml"
VENV_BIN = Path(sys.executable).parent
#: The role's default services (deploy/systemd/), checked by the testinfra suite.
SERVICES = ("wildix-ast-agi", "wildix-ast-runtime", "wildix-ast-mail", "wildix-ast-cdr",
            "wildix-ast-fax", "wildix-ast-faxpoll", "wildix-ast-faxdial",
            "wildix-ast-provisioning")
"""Mail2Fax's two because the site has a Mail2Fax profile, the provisioning server because
it sets `provisioning.address` (write_site)."""
#: Run on the host (python3, read-only): {table: row count} of the store.
COUNT_ROWS = """
import json, sqlite3
db = sqlite3.connect("file:/var/lib/wildix-ast/wildix-ast.sqlite3?mode=ro", uri=True)
tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
print(json.dumps({t: db.execute('SELECT count(*) FROM "%s"' % t).fetchone()[0] for t in tables}))
"""
RECAP = re.compile(r"^(?P<host>\S+)\s+:\s+ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+"
                   r"unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)", re.M)


@dataclass
class Play:
    rc: int
    output: str
    seconds: float

    def recap(self) -> dict[str, int]:
        match = RECAP.search(self.output)
        assert match, f"no PLAY RECAP in:\n{self.output[-3000:]}"
        return {k: int(v) for k, v in match.groupdict().items() if k != "host"}

    def __str__(self) -> str:
        return f"exit {self.rc} after {self.seconds:.1f} s:\n{self.output[-6000:]}"


@dataclass
class Deployment:
    info: HostInfo
    work: Path
    site: Path
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def wheel_dir(self) -> Path:
        return self.work / "wheel"

    def inventory(self, port: int | None = None, **variables: object) -> Path:
        """An inventory for the host (or for `port`, where nothing answers). After the first
        run, plays install the wheel that run built instead of building it again."""
        port = self.info.ssh_port if port is None else port
        wheels = sorted(self.wheel_dir.glob("wildix_ast-*.whl"))
        all_vars = {"wildix_ast_site_file": str(self.site),
                    "wildix_ast_build_dir": str(self.wheel_dir),
                    # the host shares this machine's network: phones' port on loopback
                    "wildix_ast_provisioning_host": "127.0.0.1",
                    **({"wildix_ast_wheel": str(wheels[0])} if wheels else {}), **variables}
        data = {"pbx": {"hosts": {"forky": {
            "ansible_host": "127.0.0.1", "ansible_port": port, "ansible_user": "root",
            "ansible_ssh_private_key_file": str(self.info.key),
            "ansible_ssh_common_args": "-o StrictHostKeyChecking=no "
                                       "-o UserKnownHostsFile=/dev/null"}},
            "vars": all_vars}}
        path = self.work / f"inventory-{len(list(self.work.glob('inventory-*')))}.yml"
        path.write_text(yaml.safe_dump(data), encoding="utf-8")
        return path

    def play(self, step: str, *args: str, inventory: Path | None = None) -> Play:
        started = time.monotonic()
        result = run_playbook(inventory or self.inventory(), *args)
        play = Play(result.returncode, result.stdout, time.monotonic() - started)
        self.timings[step] = play.seconds
        (self.work / f"{step}.log").write_text(play.output, encoding="utf-8")
        return play

    def ssh(self, command: str) -> str:
        result = subprocess.run(self.info.ssh_command(command), capture_output=True,
                                text=True, check=False, stdin=subprocess.DEVNULL, timeout=60)
        assert result.returncode == 0, (command, result.stdout, result.stderr)
        return result.stdout

    def snapshot(self) -> dict[str, str]:
        """SHA-256 of every file wildix-ast owns on the host (Asterisk's and its own)."""
        text = self.ssh("find /etc/asterisk /etc/wildix-ast -maxdepth 1 -type f "
                        "-exec sha256sum {} +")
        sums = {line.split()[1]: line.split()[0] for line in text.splitlines()}
        assert "/etc/asterisk/pjsip.conf" in sums and "/etc/wildix-ast/site.yaml" in sums
        return sums

    def everything(self) -> tuple[dict[str, str], dict[str, int]]:
        """`snapshot`, plus every file of the state folder (the store, its WAL, the mail
        spool) and the row count of every table of the store. Left out: the AMI service's
        live state (`runtime/`, rewritten every few seconds whatever else runs), the mail
        sender's delivery state (`mail-spool/state/`: its retries of the mails the testinfra
        suite queued go on during the check run) and SQLite's
        shared-memory index (`-shm`, which readers change)."""
        text = self.ssh("find /var/lib/wildix-ast -path /var/lib/wildix-ast/runtime -prune "
                        "-o -path /var/lib/wildix-ast/mail-spool/state -prune "
                        "-o -type f ! -name '*-shm' -exec sha256sum {} +")
        sums = {line.split()[1]: line.split()[0] for line in text.splitlines()}
        assert "/var/lib/wildix-ast/wildix-ast.sqlite3" in sums, sums
        rows = json.loads(self.ssh("python3 -c " + shlex.quote(COUNT_ROWS)))
        assert rows.get("secrets", 0) > 0 and rows.get("users", 0) > 0, rows
        return {**self.snapshot(), **sums}, rows

    def endpoints(self) -> set[str]:
        text = self.ssh("asterisk -rx 'pjsip show endpoints'")
        return set(re.findall(r"^\s*Endpoint:\s+(\S+?)(?:/\S+)?\s", text, re.M))


def run_playbook(inventory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ANSIBLE_CONFIG": str(ANSIBLE / "ansible.cfg"),
           "ANSIBLE_NOCOLOR": "1", "ANSIBLE_HOST_KEY_CHECKING": "0",
           "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}"}
    return subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", str(inventory),
                           str(ANSIBLE / "playbook.yml"), *args],
                          cwd=ANSIBLE, env=env, capture_output=True, text=True, check=False,
                          stdin=subprocess.DEVNULL, timeout=600)


def write_site(path: Path, info: HostInfo, *, extra_users: tuple[str, ...] = (),
               ring_timeout: int | None = None, duplicate_extension: bool = False) -> None:
    """The example site on the host's loopback ports (it shares this machine's network)."""
    site: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    ports = info.ports
    site["system"]["sip_rtp"].update(bind_address="127.0.0.1", sip_port=ports.sip,
                                     rtp_start=ports.rtp_start, rtp_end=ports.rtp_end)
    site["system"]["manager"] = {"port": ports.ami}
    # FastAGI on the slot's spare port (the host shares this network): the role's unit
    # listens where this setting (and so the dialplan) says
    site["system"]["fastagi"] = {"host": "127.0.0.1", "port": ports.sip + 3}
    # a Mail2Fax profile: the role then runs the poller and the dialer (its mailbox is a
    # port nothing listens on: the poller logs each failed poll and keeps running)
    site["mail2fax_profiles"] = [{"name": "invoices", "protocol": "imap",
                                  "server": "127.0.0.1", "port": ports.sip + 5,
                                  "security": "none", "user": "fax",
                                  "password": "Fax-Box-Pass-42"}]
    # the provisioning server (enabled by its address) on the slot's next spare port
    site["provisioning"] = {"address": "127.0.0.1", "port": ports.sip + 4}
    if ring_timeout is not None:
        site["dialplan"]["ring_timeout"] = ring_timeout
    for extension in extra_users:
        site["users"].append({"name": f"Temp {extension}", "extension": extension})
    if duplicate_extension:
        site["users"].append({"name": "Copy of Alice", "extension": "101"})
    path.write_text(yaml.safe_dump(site, allow_unicode=True, sort_keys=False),
                    encoding="utf-8")
    copy_example_sounds(path.parent)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory,
               request: pytest.FixtureRequest) -> Iterator[Deployment]:
    work = tmp_path_factory.mktemp("deploy")
    host = DeployHost(f"test-{os.getpid()}", work / "hosts")
    started = time.monotonic()
    info = host.up()
    deployment = Deployment(info, work, work / "site.yaml")
    deployment.timings["boot (incl. cached root filesystem)"] = time.monotonic() - started
    write_site(deployment.site, info)
    try:
        yield deployment
    finally:
        started = time.monotonic()
        host.down()
        deployment.timings["power off"] = time.monotonic() - started
        report_timings(request.config, deployment.timings)


def report_timings(config: pytest.Config, timings: dict[str, float]) -> None:
    """Each step's time on the terminal (CI logs), past output capturing."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        reporter.write_line(f"deployment steps, {sum(timings.values()):.0f} s in all:")
        for step, seconds in timings.items():
            reporter.write_line(f"  {seconds:6.1f} s  {step}")


def test_first_run_deploys(deployment: Deployment) -> None:
    play = deployment.play("first run")
    assert play.rc == 0, str(play)
    assert play.recap()["changed"] > 0
    assert "Restart Asterisk on the files written offline" in play.output
    assert {"101", "102"} <= deployment.endpoints()


def test_second_run_changes_nothing(deployment: Deployment) -> None:
    before = deployment.snapshot()
    play = deployment.play("second run")
    assert play.rc == 0, str(play)
    assert play.recap()["changed"] == 0, str(play)
    assert deployment.snapshot() == before


def test_testinfra_suite_passes(deployment: Deployment) -> None:
    info = deployment.info
    ssh_config = deployment.work / "ssh_config"
    # one SSH connection for the whole suite: testinfra runs one ssh per command
    ssh_config.write_text("Host *\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n"
                          "  LogLevel ERROR\n  ControlMaster auto\n  ControlPersist 30\n"
                          f"  ControlPath {deployment.work}/ssh-%C\n", encoding="utf-8")
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", "tests/infra",
         f"--hosts=ssh://root@127.0.0.1:{info.ssh_port}",
         f"--ssh-identity-file={info.key}", f"--ssh-config={ssh_config}",
         f"--pbx-services={','.join(SERVICES)}"],
        cwd=REPO, capture_output=True, text=True, check=False, timeout=300)
    deployment.timings["testinfra suite"] = time.monotonic() - started
    (deployment.work / "testinfra.log").write_text(result.stdout + result.stderr,
                                                   encoding="utf-8")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert re.search(r"\b1[0-9] passed\b", result.stdout), result.stdout[-2000:]
    passed = set(re.findall(r"^PASSED tests/infra/test_pbx_host\.py::(\w+)", result.stdout,
                            re.M))
    # the services really work on the host, as their own users
    assert {"test_services_run_as_their_own_users", "test_agi_service_is_healthy_with_its_store",
            "test_forward_all_set_by_feature_code_is_followed",
            "test_missed_call_mail_is_spooled_where_the_service_writes",
            "test_a_fax_asterisk_drops_is_mailed_and_kept_owner_only",
            "test_provisioning_server_tls_no_secret_for_unknown_macs_bans_scanners"} <= passed, \
        passed


def test_check_diff_shows_the_change_and_changes_nothing(deployment: Deployment) -> None:
    """A check run that adds a user (new secrets to generate) and changes a setting: /etc,
    the state folder and every row of the store stay as they were."""
    before = deployment.everything()
    write_site(deployment.site, deployment.info, ring_timeout=31, extra_users=("103",))
    try:
        play = deployment.play("--check --diff of a changed setting", "--check", "--diff")
    finally:
        write_site(deployment.site, deployment.info)
    assert play.rc == 0, str(play)
    assert play.recap()["changed"] >= 1
    # the settings file's diff and wildix-ast's plan of the rendered files
    assert re.search(r"^\+\s+ring_timeout: 31$", play.output, re.M), str(play)
    assert re.search(r"^\+\[103\]$", play.output, re.M), str(play)
    assert "ring_timeout: 31" not in deployment.ssh("cat /etc/wildix-ast/site.yaml")
    after = deployment.everything()
    assert after == before, {key: (before[i].get(key), after[i].get(key))  # what differs
                             for i in (0, 1) for key in before[i].keys() | after[i].keys()
                             if before[i].get(key) != after[i].get(key)}
    assert "103" not in deployment.endpoints()


def test_bad_settings_fail_the_play_and_keep_the_host(deployment: Deployment) -> None:
    before = deployment.snapshot()
    write_site(deployment.site, deployment.info, duplicate_extension=True)
    try:
        play = deployment.play("bad settings file")
    finally:
        write_site(deployment.site, deployment.info)
    assert play.rc == 2, str(play)
    assert play.recap()["failed"] == 1
    # wildix-ast's own message, located in the file the integrator edits
    assert "wildix-ast:" in play.output and "101" in play.output, str(play)
    assert str(deployment.site) in play.output
    assert re.search(r"users\[\d+\]\.extension \(site\.yaml line \d+\)", play.output), str(play)
    assert ".candidate" not in play.output
    assert deployment.snapshot() == before
    assert deployment.ssh("systemctl is-active asterisk").strip() == "active"


def test_failed_verification_fails_the_play_and_restores(deployment: Deployment) -> None:
    before = deployment.snapshot()
    endpoints = deployment.endpoints()
    overrides = deployment.work / "overrides"
    overrides.mkdir()
    # An override Asterisk refuses on every endpoint: the reload drops them, verification
    # sees it, wildix-ast restores the previous files.
    builtin = (REPO / "templates/asterisk/pjsip.conf.j2").read_text(encoding="utf-8")
    assert "direct_media = no" in builtin
    (overrides / "pjsip.conf.j2").write_text(
        builtin.replace("direct_media = no", "direct_media = no\ndtmf_mode = carrier-pigeon"),
        encoding="utf-8")
    write_site(deployment.site, deployment.info, extra_users=("104",))
    try:
        play = deployment.play("apply failing verification",
                               inventory=deployment.inventory(
                                   wildix_ast_templates_dir=str(overrides)))
    finally:
        write_site(deployment.site, deployment.info)
    assert play.rc == 2, str(play)
    assert "wildix-ast apply:" in play.output and "restored" in play.output, str(play)
    assert deployment.snapshot() == before
    assert deployment.endpoints() == endpoints
    # the next run without the override puts everything back in order: it only removes
    # the override, the configuration is the one that was running
    play = deployment.play("run after the failure (removes the override)")
    assert play.rc == 0 and play.recap()["changed"] == 1, str(play)
    assert deployment.snapshot() == before


def test_unreachable_host_fails_the_play(deployment: Deployment) -> None:
    nobody = free_port()
    play = deployment.play("unreachable host", inventory=deployment.inventory(port=nobody))
    assert play.rc == 4, str(play)
    assert play.recap()["unreachable"] == 1
    assert "UNREACHABLE" in play.output


def test_distribution_without_asterisk_22_fails_before_changing_anything(
        deployment: Deployment) -> None:
    """This machine runs Debian 12 (bookworm), which has no asterisk package: the role,
    pointed at it in check mode, stops at its preflight with the message."""
    release = Path("/etc/os-release").read_text(encoding="utf-8")
    assert 'VERSION_CODENAME=bookworm' in release, "this test reads the machine as bookworm"
    inventory = deployment.work / "local.yml"
    inventory.write_text(yaml.safe_dump({"pbx": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
        "wildix_ast_site_file": str(deployment.site)}}}}), encoding="utf-8")
    play = deployment.play("bookworm (check mode, on this machine)", "--check",
                           inventory=inventory)
    assert play.rc == 2, str(play)
    assert "Debian bookworm offers no asterisk package" in " ".join(play.output.split()), \
        str(play)
    assert shutil.which("asterisk") is None
