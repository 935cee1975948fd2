"""A host deployed with the wildix_ast role, checked from outside (testinfra over SSH):
Asterisk 22 running our configuration, units, sockets exactly as configured, AMI on loopback
only, owner-only secrets, and a real SIP call answered through it."""

from __future__ import annotations

import json
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from deployed_host import Deployed

#: pjproject's DNS resolver keeps client sockets on kernel-chosen (ephemeral) ports.
EPHEMERAL_PORTS = range(32768, 61000)
SECRET_FILES = ("manager.conf", "pjsip.conf", "voicemail.conf")
KNOWN_DEFAULTS = {"wildix", "admin", "1234", "amp111", "secret", "password", "asterisk"}


def asterisk_cli(host: Any, command: str) -> str:
    return str(host.check_output("asterisk -rx %s", command))


def wildix_ast_json(host: Any, deployed: Deployed, *args: str) -> dict[str, Any]:
    result = host.run(f"WILDIX_AST_DB={deployed.db} {deployed.wildix_ast} "
                      + " ".join(args) + " --json")
    data = json.loads(result.stdout)
    assert isinstance(data, dict), result.stdout
    return data


def process_sockets(host: Any, process: str = "asterisk") -> set[tuple[str, str, int]]:
    """(protocol, address, port) of every socket a process of that name listens on or has
    bound (UDP). ss shows the owning process only for the host's own processes, so this
    works on a host sharing its network namespace too."""
    found: set[tuple[str, str, int]] = set()
    for line in host.check_output("ss -H -tulpn").splitlines():
        if f'"{process}"' not in line:
            continue
        fields = line.split()
        address, _, port = fields[4].rpartition(":")
        found.add((fields[0], address.strip("[]"), int(port)))
    return found


@pytest.fixture
def passwords(host: Any, deployed: Deployed) -> dict[str, str]:
    text = host.check_output(f"WILDIX_AST_DB={deployed.db} {deployed.wildix_ast} export "
                             "--with-secrets")
    site = yaml.safe_load(text)
    return {u["extension"]: u["sip_password"] for u in site["users"] if u.get("sip_password")}


def test_asterisk_22_from_the_distribution(host: Any) -> None:
    package = host.package("asterisk")
    assert package.is_installed
    assert re.match(r"(\d+:)?22\.", package.version), package.version


def test_system_prompts_of_the_sites_languages(host: Any, deployed: Deployed) -> None:
    from wildix_ast.sounds.prompts import PACKAGED_LANGUAGES, site_languages

    languages = [lang for lang in site_languages(deployed.site) if lang in PACKAGED_LANGUAGES]
    assert languages
    for language in languages:
        for flavour in ("", "-wav", "-g722"):
            assert host.package(f"asterisk-core-sounds-{language}{flavour}").is_installed
        # the folder Asterisk looks in for a channel of that language
        assert host.file(f"/usr/share/asterisk/sounds/{language}/vm-intro.wav").exists


def test_asterisk_enabled_active_as_its_own_user(host: Any) -> None:
    service = host.service("asterisk")
    assert service.is_enabled and service.is_running
    main_pid = host.check_output("systemctl show -P MainPID asterisk.service")
    assert host.process.get(pid=int(main_pid)).user == "asterisk"


def test_wildix_ast_units_enabled_and_active(host: Any, deployed: Deployed) -> None:
    managed = host.run("ls /etc/systemd/system/wildix-ast-*.service").stdout.split()
    assert sorted(Path(p).stem for p in managed) == sorted(deployed.services)
    for name in deployed.services:
        unit = host.service(name)
        assert unit.is_enabled, f"{name} is not enabled"
        assert host.run(f"systemctl is-active {name}").stdout.strip() == "active", name


def test_running_files_are_what_the_store_renders(host: Any, deployed: Deployed) -> None:
    plan = wildix_ast_json(host, deployed, "apply", deployed.settings_path, "--dry-run")
    assert plan["ok"], plan
    assert plan["changed"] is False and plan["files"] == [], plan["diff"]


def test_asterisk_loaded_our_configuration(host: Any, deployed: Deployed,
                                          passwords: dict[str, str]) -> None:
    endpoints = asterisk_cli(host, "pjsip show endpoints")
    assert passwords, "the store has no user with a phone"
    for extension in passwords:
        assert re.search(rf"Endpoint:\s+{extension}\b", endpoints), extension
    assert "wildix-extensions" in asterisk_cli(host, "dialplan show wildix-extensions")
    assert re.search(rf"Default language:\s+{deployed.language}\b",
                     asterisk_cli(host, "core show settings"))
    # autoload = no: exactly the modules our modules.conf lists
    wanted = set(re.findall(r"^load = (\S+)$",
                            host.file("/etc/asterisk/modules.conf").content_string, re.M))
    loaded = set(re.findall(r"^(\S+\.so)\s", asterisk_cli(host, "module show"), re.M))
    assert loaded == wanted, (sorted(wanted - loaded), sorted(loaded - wanted))


def test_listening_sockets_exactly_as_configured(host: Any, deployed: Deployed) -> None:
    sockets = process_sockets(host)
    bind, sip, ami = deployed.bind_address, deployed.sip_port, deployed.ami_port
    fixed = {s for s in sockets if s[2] not in EPHEMERAL_PORTS}
    assert fixed == {("tcp", bind, sip), ("udp", bind, sip), ("tcp", "127.0.0.1", ami)}
    # the rest are UDP client sockets (DNS), never a TCP listener
    assert all(s[0] == "udp" for s in sockets - fixed), sockets - fixed
    if "wildix-ast-agi" in deployed.services:
        address, _, port = deployed.agi.rpartition(":")
        listening = {s for s in process_sockets(host, "wildix-ast") if s[0] == "tcp"}
        assert ("tcp", address, int(port)) in listening, listening
        assert all(s[1] in ("127.0.0.1", "::1") for s in listening), listening


def test_ami_not_reachable_off_loopback(host: Any, deployed: Deployed) -> None:
    manager = host.file("/etc/asterisk/manager.conf").content_string
    assert re.search(r"^bindaddr = 127\.0\.0\.1$", manager, re.M)
    assert re.search(r"^deny = 0\.0\.0\.0/0\.0\.0\.0$", manager, re.M)
    addresses = [a for a in host.interface.default().addresses
                 if ":" not in a and not a.startswith("127.")]
    assert addresses, "the host has no non-loopback IPv4 address to try"
    for address in addresses:
        probe = host.run("timeout 3 bash -c %s",
                         f"exec 3<>/dev/tcp/{address}/{deployed.ami_port}")
        assert probe.rc != 0, f"AMI answered on {address}:{deployed.ami_port}"


def test_secrets_owner_only(host: Any, deployed: Deployed) -> None:
    for name in SECRET_FILES:
        conf = host.file(f"/etc/asterisk/{name}")
        assert conf.mode == 0o640 and conf.user == "asterisk" and conf.group == "asterisk", \
            (name, oct(conf.mode), conf.user, conf.group)
    for path, mode in ((deployed.settings_path, 0o600), (deployed.db, 0o600),
                       (str(Path(deployed.db).parent), 0o700),
                       (str(Path(deployed.settings_path).parent), 0o700)):
        item = host.file(path)
        assert item.exists and item.user == "root" and item.mode == mode, \
            (path, oct(item.mode), item.user)


def test_no_default_or_short_secret(host: Any) -> None:
    text = host.file("/etc/asterisk/manager.conf").content_string
    secrets = re.findall(r"^secret = (.*)$", text, re.M)
    assert secrets, "manager.conf has no account"
    for secret in secrets:
        assert secret.lower() not in KNOWN_DEFAULTS and len(secret) >= 20
    passwords = re.findall(r"^password = (.*)$",
                           host.file("/etc/asterisk/pjsip.conf").content_string, re.M)
    assert passwords and all(len(p) >= 12 and p.lower() not in KNOWN_DEFAULTS
                             for p in passwords)


def test_call_answered_through_the_deployed_asterisk(host: Any, deployed: Deployed,
                                                     passwords: dict[str, str]) -> None:
    from wildix_ast.lab.sipp import SippDriver

    caller, callee = "101", "102"
    driver = SippDriver(deployed.sip_port, server_host=deployed.sip_host,
                        local_ip=deployed.local_ip,
                        work_dir=Path(tempfile.mkdtemp(prefix="wildix-infra-sipp-")))
    with driver.phone(callee, passwords[callee], behaviour="answer") as phone:
        call = driver.call(caller, passwords[caller], callee, hold_seconds=1)
        answered = phone.uas.wait(timeout=15)
    assert call.success and call.connected, call.run.describe()
    assert answered.answered >= 1
    deadline = time.monotonic() + 5
    while True:  # no channel may be left on Asterisk
        summary = asterisk_cli(host, "core show channels count")
        if re.search(r"^0 active channels", summary, re.M) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert re.search(r"^0 active channels", summary, re.M), summary
