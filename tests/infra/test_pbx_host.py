"""A host deployed with the wildix_ast role, checked from outside (testinfra over SSH):
Asterisk 22 running our configuration, units, sockets exactly as configured, AMI on loopback
only, owner-only secrets, and a real SIP call answered through it."""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
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
SERVICE_GROUP = "wildix-ast"
SERVICE_USERS = {"wildix-ast-agi": "wildix-ast-agi", "wildix-ast-runtime": "wildix-ast-runtime",
                 "wildix-ast-mail": "wildix-ast-mail", "wildix-ast-cdr": "wildix-ast-cdr",
                 "wildix-ast-fax": "wildix-ast-fax", "wildix-ast-faxpoll": "wildix-ast-faxpoll",
                 "wildix-ast-faxdial": "wildix-ast-faxdial",
                 "wildix-ast-provisioning": "wildix-ast-provisioning"}
#: The role's defaults (wildix_ast_fax_spool, wildix_ast_fax_documents).
FAX_SPOOL = "/var/spool/asterisk/wildix-fax"
FAX_DOCUMENTS = "/var/lib/wildix-ast/fax-documents"
#: (wildix_ast_fax_jobs, wildix_ast_fax_out_spool) and Asterisk's console socket (Debian's).
FAX_JOBS = "/var/lib/wildix-ast/fax-jobs"
FAX_OUT_SPOOL = "/var/spool/asterisk/wildix-fax-out"
CONSOLE = "/run/asterisk/asterisk.ctl"
#: The role's defaults (wildix_ast_provisioning_certificate, _private_key, the AMI service's
#: state folder).
PROVISIONING_CERTIFICATE = "/etc/wildix-ast/provisioning.crt"
PROVISIONING_KEY = "/etc/wildix-ast/provisioning.key"
RUNTIME_STATE = "/var/lib/wildix-ast/runtime"
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
        # the provisioning server listens for the phones on the LAN; the others on loopback
        phones = deployed.site.provisioning.port \
            if "wildix-ast-provisioning" in deployed.services else None
        assert all(s[1] in ("127.0.0.1", "::1") for s in listening if s[2] != phones), \
            listening


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
    # the settings file: root's only; the store (every generated secret): root's and the
    # services' group's, in a folder of theirs (setgid: its -wal/-shm files stay the group's)
    for path, mode, group in ((deployed.settings_path, 0o600, "root"),
                              (str(Path(deployed.settings_path).parent), 0o700, "root"),
                              (deployed.db, 0o660, SERVICE_GROUP),
                              (deployed.store_folder, 0o2770, SERVICE_GROUP)):
        item = host.file(path)
        assert item.exists and item.user == "root" and item.group == group \
            and item.mode == mode, (path, oct(item.mode), item.user, item.group)
    # nothing in the state folder is readable by others, whoever created it
    loose = host.check_output(f"find {deployed.store_folder} -perm /o=rwx")
    assert loose == "", loose


def unit_user(host: Any, unit: str) -> str:
    pid = int(host.check_output(f"systemctl show -P MainPID {unit}"))
    assert pid > 0, f"{unit} has no main process"
    return str(host.process.get(pid=pid).user)


def test_services_run_as_their_own_users(host: Any, deployed: Deployed) -> None:
    owners = {unit: unit_user(host, f"{unit}.service") for unit in deployed.services}
    assert owners == {unit: SERVICE_USERS[unit] for unit in deployed.services}, owners
    assert unit_user(host, "asterisk.service") == "asterisk"
    for unit in deployed.services:
        # no account of a service can log in
        passwd = host.user(SERVICE_USERS[unit])
        assert passwd.shell == "/usr/sbin/nologin" and passwd.group == SERVICE_GROUP, unit
    # the AMI service keeps CAP_NET_ADMIN (iptables bans) and nothing else; FastAGI none
    if "wildix-ast-runtime" in deployed.services:
        caps = host.check_output("systemctl show -P CapabilityBoundingSet "
                                 "wildix-ast-runtime.service")
        assert caps.split() == ["cap_net_admin"], caps
    if "wildix-ast-agi" in deployed.services:
        caps = host.check_output("systemctl show -P CapabilityBoundingSet wildix-ast-agi")
        assert caps.strip() == "", caps


def test_agi_service_is_healthy_with_its_store(host: Any, deployed: Deployed) -> None:
    """Its health answer reads the store (it fails on a store the unit cannot use)."""
    address, _, port = deployed.agi.rpartition(":")
    status = host.run(f"{deployed.wildix_ast} agi status --host {address} --port {port} "
                      "--json")
    assert status.rc == 0, status.stdout + status.stderr
    text = host.check_output("systemctl show -P StatusText wildix-ast-agi.service")
    assert text == f"listening on {deployed.agi}", text
    # `wildix-ast status` asks it where the stored site says, without being told
    overview = host.run(f"WILDIX_AST_DB={deployed.db} {deployed.wildix_ast} status --json "
                        f"--state-dir {deployed.store_folder}/runtime")
    services = {s["name"]: s for s in json.loads(overview.stdout)["services"]}
    assert services["FastAGI service"]["ok"], services
    dialplan = host.file("/etc/asterisk/extensions.conf").content_string
    assert f"agi://{deployed.agi}" in dialplan  # the one setting, in the dialplan too


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
    if "wildix-ast-cdr" in deployed.services:
        # the collector records it, once, in the statistics backend
        found: list[dict[str, Any]] = []
        listed: dict[str, Any] = {}
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            listed = wildix_ast_json(host, deployed, "cdr", "list", "--user", caller)
            found = [c for c in listed.get("calls", [])
                     if c["callee_user"] == callee and c["disposition"] == "answered"]
            if found:
                break
            time.sleep(0.5)
        collector = host.run("journalctl -u wildix-ast-cdr --no-pager -n 20").stdout
        assert len(found) == 1, (listed, collector)


def sipp(deployed: Deployed) -> Any:
    from wildix_ast.lab.sipp import SippDriver

    return SippDriver(deployed.sip_port, server_host=deployed.sip_host,
                      local_ip=deployed.local_ip,
                      work_dir=Path(tempfile.mkdtemp(prefix="wildix-infra-sipp-")))


def invites(phone: Any) -> int:
    return sum(1 for m in phone.uas.messages() if m.request_method == "INVITE")


def preferences(host: Any, deployed: Deployed, extension: str) -> dict[str, Any]:
    data = wildix_ast_json(host, deployed, "user", "show", extension)
    assert data["ok"], data
    prefs: dict[str, Any] = data["preferences"]
    return prefs


def no_channel_left(host: Any) -> None:
    deadline = time.monotonic() + 5
    while True:
        summary = asterisk_cli(host, "core show channels count")
        if re.search(r"^0 active channels", summary, re.M) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert re.search(r"^0 active channels", summary, re.M), summary


def test_forward_all_set_by_feature_code_is_followed(host: Any, deployed: Deployed,
                                                     passwords: dict[str, str]) -> None:
    """Only the FastAGI service can route this: it stores the forward the phone dialled
    (63*2*101) and then sends the next call to 102 to 101."""
    if "wildix-ast-agi" not in deployed.services:
        pytest.fail("the FastAGI service is not deployed on this host")
    driver = sipp(deployed)
    set_on = driver.call("102", passwords["102"], "63*2*101", hold_seconds=4)
    assert set_on.connected, set_on.run.describe()
    try:
        prefs = preferences(host, deployed, "102")
        assert prefs["internal"]["forward_always"] == "101", prefs
        with driver.phone("101", passwords["101"]) as alice, \
                driver.phone("102", passwords["102"], calls=0) as bruno:
            forwarded = driver.call("100", passwords["100"], "102", hold_seconds=1)
            alice.uas.wait(timeout=20)
            assert forwarded.connected, forwarded.run.describe()
            assert invites(alice) == 1
            assert invites(bruno) == 0  # 102's own phone never rang
    finally:
        off = driver.call("102", passwords["102"], "63*0", hold_seconds=3)
    assert off.connected, off.run.describe()
    assert preferences(host, deployed, "102")["internal"]["forward_always"] is None
    no_channel_left(host)


def test_missed_call_mail_is_spooled_where_the_service_writes(
        host: Any, deployed: Deployed, passwords: dict[str, str]) -> None:
    if "wildix-ast-agi" not in deployed.services:
        pytest.fail("the FastAGI service is not deployed on this host")
    callee = deployed.site.user_by_extension("102")
    assert callee is not None and callee.email, "the test needs user 102 with an e-mail"
    settings = ("internal.missed_call_email=true", "internal.mobility=false")
    assert wildix_ast_json(host, deployed, "user", "set", "102", *settings)["ok"]
    # the mail queue's folders a queued mail can be in (the sender may have moved it on)
    folders = " ".join(f"{deployed.mail_spool}/{f}" for f in ("new", "sending", "sent",
                                                              "failed"))
    listing = f"find {folders} -name 'missed_call.*-102.json' 2>/dev/null || true"
    before = set(host.check_output(listing).split())
    try:
        driver = sipp(deployed)
        with driver.phone("102", passwords["102"], behaviour="ignore"):
            result = driver.call("101", passwords["101"], "102", cancel_after=3)
        assert not result.connected, result.run.describe()
        deadline = time.monotonic() + 10
        while (added := set(host.check_output(listing).split()) - before) == set() \
                and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        wildix_ast_json(host, deployed, "user", "set", "102", "internal.missed_call_email=",
                        "internal.mobility=")
    assert len(added) == 1, added
    path = added.pop()
    message = json.loads(host.file(path).content_string)
    assert message["to"] == str(callee.email), message
    assert message["kind"] == "missed_call", message
    assert message["details"]["caller_number"] == "101" and message["details"]["user"] == "102"
    spooled = host.file(path)
    assert spooled.user == SERVICE_USERS["wildix-ast-agi"] and not spooled.mode & 0o007, \
        (spooled.user, oct(spooled.mode))
    no_channel_left(host)


def test_a_fax_asterisk_drops_is_mailed_and_kept_owner_only(
        host: Any, deployed: Deployed, tmp_path: Path) -> None:
    """The fax service's rights on the booted host: a job written as Asterisk writes it
    (a 1-page TIFF and its record, moved into new/) is collected within seconds: its mail
    is in the queue for the fax user, its PDF kept owner-only for the call history, the
    job in done/ (the service's own folder)."""
    if "wildix-ast-fax" not in deployed.services:
        pytest.fail("the fax service is not deployed on this host")
    from support.fax_pages import fax_tiff, make_pdf

    fax_user = next((u for u in deployed.site.users if u.type.value == "fax" and u.email),
                    None)
    assert fax_user is not None, "the test needs a fax user with an e-mail in the site"
    for folder, owner, mode in (("new", "asterisk", 0o2770), ("done", "wildix-ast-fax", 0o700),
                                ("bad", "wildix-ast-fax", 0o700)):
        found = host.file(f"{FAX_SPOOL}/{folder}")
        assert (found.user, found.mode) == (owner, mode), (folder, found.user, oct(found.mode))
    documents = host.file(FAX_DOCUMENTS)
    assert (documents.user, documents.group, documents.mode) == (
        "wildix-ast-fax", "wildix-ast-faxdocs", 0o2770)   # shared with Mail2Fax's dialer
    job = f"{int(time.time())}.{os.getpid() % 1000}"
    tiff = fax_tiff(make_pdf(tmp_path / "one.pdf", 1), tmp_path / "one.tif")
    record = (f"job={job}\nuser={fax_user.extension}\ndid=\nfrom=+33155501234\n"
              "status=SUCCESS\nstatusstr=OK\nerror=\npages=1\nduration=20\n"
              "remote=INFRA TEST\nrate=14400\necm=yes\nresolution=8031x7700\n")
    encoded = base64.b64encode(tiff.read_bytes()).decode()
    host.check_output(
        "runuser -u asterisk -- sh -c %s",
        f"cd {FAX_SPOOL}/tmp && echo {encoded} | base64 -d > {job}.tif && "
        f"printf %s {shlex.quote(record)} > {job}.job && mv {job}.tif {job}.job ../new/")
    done = host.file(f"{FAX_SPOOL}/done/{job}.job")
    deadline = time.monotonic() + 20
    while not done.exists and time.monotonic() < deadline:
        time.sleep(0.2)
    journal = host.run("journalctl -u wildix-ast-fax --no-pager -n 20").stdout
    assert done.exists, journal
    document = host.file(f"{FAX_DOCUMENTS}/{fax_user.extension}/{job}.pdf")
    assert document.exists and document.user == "wildix-ast-fax", journal
    assert document.mode == 0o600 and document.content.startswith(b"%PDF-")
    folders = " ".join(f"{deployed.mail_spool}/{f}" for f in ("new", "sending", "sent",
                                                              "failed"))
    queued = host.check_output(f"grep -l -F -e {job} -r {folders} 2>/dev/null || true").split()
    assert len(queued) == 1, (queued, journal)
    message = json.loads(host.file(queued[0]).content_string)
    assert (message["to"], message["kind"]) == (str(fax_user.email), "fax_in"), message


def test_mail2fax_poller_has_no_console_and_the_dialer_is_its_only_user(
        host: Any, deployed: Deployed) -> None:
    """Mail2Fax's split (docs/security.md): the poller (untrusted mail, ghostscript) cannot
    open Asterisk's console socket, nor see Asterisk's folders; the dialer, not root, is the
    console group's only member; the job spool and the outgoing fax spool are theirs only."""
    if "wildix-ast-faxpoll" not in deployed.services:
        pytest.fail("Mail2Fax is not deployed on this host (the site needs a profile)")
    console = host.file(CONSOLE)
    assert (console.group, console.mode & 0o777) == ("wildix-ast-console", 0o660), \
        (console.group, oct(console.mode))
    members = host.check_output("getent group wildix-ast-console").split(":")[3]
    # Asterisk's own user (to give the socket to the group) and the dialer, no one else
    assert sorted(members.split(",")) == ["asterisk", "wildix-ast-faxdial"], members
    poller_groups = set(host.check_output("id -nG wildix-ast-faxpoll").split())
    assert poller_groups == {"wildix-ast", "wildix-ast-faxjobs"}, poller_groups
    dialer_groups = set(host.check_output("id -nG wildix-ast-faxdial").split())
    assert {"wildix-ast-console", "asterisk", "wildix-ast-faxjobs"} <= dialer_groups
    for unit, user in (("wildix-ast-faxpoll", "wildix-ast-faxpoll"),
                       ("wildix-ast-faxdial", "wildix-ast-faxdial")):
        assert unit_user(host, f"{unit}.service") == user
        assert host.check_output(f"systemctl show -P CapabilityBoundingSet {unit}").strip() \
            == "", unit
    extra = host.check_output("systemctl show -P SupplementaryGroups wildix-ast-faxpoll")
    assert extra.split() == ["wildix-ast-faxjobs"], extra

    # the poller's user cannot use the console; the dialer's can (asterisk -rx exits 1 when
    # it cannot connect)
    denied = host.run("runuser -u wildix-ast-faxpoll -- asterisk -rx 'core show uptime'")
    assert denied.rc != 0 and "System uptime" not in denied.stdout, denied.stdout
    allowed = host.run("runuser -u wildix-ast-faxdial -- asterisk -rx 'core show uptime'")
    assert allowed.rc == 0 and "System uptime" in allowed.stdout, allowed.stderr
    # its unit hides Asterisk's folders and allows no local socket at all
    hidden = host.check_output("systemctl show -P InaccessiblePaths wildix-ast-faxpoll")
    assert "/run/asterisk" in hidden and "/etc/asterisk" in hidden, hidden
    families = host.check_output("systemctl show -P RestrictAddressFamilies "
                                 "wildix-ast-faxpoll")
    assert "AF_UNIX" not in families and "AF_INET" in families, families

    for path, owner, group in ((FAX_JOBS, "wildix-ast-faxpoll", "wildix-ast-faxjobs"),
                               (FAX_OUT_SPOOL, "asterisk", "wildix-ast-console"),
                               (f"{FAX_OUT_SPOOL}/send", "asterisk", "wildix-ast-console"),
                               (f"{FAX_OUT_SPOOL}/done", "asterisk", "wildix-ast-console")):
        found = host.file(path)
        assert (found.user, found.group, found.mode) == (owner, group, 0o2770), \
            (path, found.user, found.group, oct(found.mode))


def _provisioning_get(deployed: Deployed, certificate: Path, path: str,
                      source: str = "127.0.0.1") -> tuple[int, bytes]:
    """(status, body) of one GET to the deployed provisioning server, its certificate
    checked (the role's self-signed one names the site's provisioning.address)."""
    import socket
    import ssl

    settings = deployed.site.provisioning
    context = ssl.create_default_context(cafile=str(certificate))
    with socket.create_connection((deployed.sip_host, settings.port), timeout=10,
                                  source_address=(source, 0)) as raw, \
            context.wrap_socket(raw, server_hostname=str(settings.address)) as tls:
        tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {settings.address}\r\n"
                    "Connection: close\r\n\r\n".encode())
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def test_provisioning_server_tls_no_secret_for_unknown_macs_bans_scanners(
        host: Any, deployed: Deployed, passwords: dict[str, str]) -> None:
    """The provisioning server as the role runs it: its own user, listening with TLS on the
    site's port, the key root's only at rest (systemd's private copy owner-only for the
    service); an unknown MAC gets the 404 of every miss and no secret; a scanner (a
    non-loopback source) is banned through the AMI service's bans file, which the service's
    group may write (checked when the host shares this machine's loopback: the scanner's
    address is 127.0.0.77); every request in the journal, never a credential."""
    if "wildix-ast-provisioning" not in deployed.services:
        pytest.fail("the provisioning server is not deployed on this host")
    settings = deployed.site.provisioning
    assert settings.address is not None, "the site sets no provisioning.address"
    assert unit_user(host, "wildix-ast-provisioning.service") == "wildix-ast-provisioning"
    assert host.check_output("systemctl show -P CapabilityBoundingSet "
                             "wildix-ast-provisioning.service").strip() == ""
    for path, mode in ((PROVISIONING_CERTIFICATE, 0o644), (PROVISIONING_KEY, 0o600)):
        item = host.file(path)
        assert (item.user, item.group, item.mode) == ("root", "root", mode), \
            (path, item.user, item.group, oct(item.mode))
    pid = host.check_output("systemctl show -P MainPID wildix-ast-provisioning.service")
    # systemd's copy: in the service's own mount namespace, read-only, nobody else's
    # (systemd 262 makes it root's, readable by the service's user or group: 0440)
    folder = f"/proc/{pid}/root/run/credentials/wildix-ast-provisioning.service"
    copy = host.check_output(f"stat -c '%U %a' {folder}/provisioning.key").split()
    assert copy[0] in ("root", "wildix-ast-provisioning") and copy[1] in ("400", "440"), copy
    runtime = host.file(RUNTIME_STATE)
    assert (runtime.user, runtime.group, runtime.mode) == \
        ("wildix-ast-runtime", "wildix-ast-bans", 0o2770)
    listening = {s for s in process_sockets(host, "wildix-ast") if s[0] == "tcp"}
    assert any(s[2] == settings.port for s in listening), listening
    with tempfile.TemporaryDirectory() as folder:
        certificate = Path(folder) / "provisioning.crt"
        certificate.write_text(host.file(PROVISIONING_CERTIFICATE).content_string)
        credential = base64.urlsafe_b64encode(os.urandom(24)).decode()
        status, body = _provisioning_get(deployed, certificate,
                                         f"/p/{credential}/001565abcdef.cfg")
        assert status == 404 and body == b"not found\n", (status, body)
        status, body = _provisioning_get(deployed, certificate, "/enrol/001565abcdef.cfg")
        assert status == 404 and body == b"not found\n", (status, body)
        journal = host.check_output("journalctl -u wildix-ast-provisioning --no-pager -n 40")
        assert "mac=001565abcdef file=/p/<credential>/001565abcdef.cfg status=404 " \
            "outcome=refused: unknown MAC" in journal, journal
        assert credential not in journal
        if not deployed.sip_host.startswith("127."):
            return  # a remote host: banning this machine would cut the rest of the suite off
        # a scanner: 10 misses from one address ban it in the AMI service's bans file
        scanner = "127.0.0.77"
        try:
            for n in range(settings.ban_after):
                status, body = _provisioning_get(deployed, certificate,
                                                 f"/p/{credential}/0015650000{n:02x}.cfg",
                                                 scanner)
                assert status == 404 and not any(p.encode() in body
                                                 for p in passwords.values())
            bans_file = host.file(f"{RUNTIME_STATE}/bans.json")
            bans = json.loads(bans_file.content_string)
            assert scanner in {b["address"] for b in bans["bans"]}, bans
            # the bans group's (the AMI service reads it too), nobody else's
            assert (bans_file.group, bans_file.mode) == ("wildix-ast-bans", 0o640), \
                (bans_file.user, bans_file.group, oct(bans_file.mode))
            assert "wildix-ast-bans" in host.user("wildix-ast-runtime").groups
        finally:
            host.run(f"{deployed.wildix_ast} security unban {scanner} "
                     f"--state-dir {RUNTIME_STATE}")
