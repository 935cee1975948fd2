"""Must-show 3 of issue 21, against the live lab: the provisioning server runs as its own
process (`wildix-ast provisioning serve`) over HTTPS with the lab's certificate; a scanner
walking one vendor's MAC prefix gets no SIP secret and is banned at the threshold, then
refused at once; a known phone and an enrolled phone fetch their files (the certificate
checked) and register in the lab with exactly the credentials the files hold; after
`device reset-password` the old link is refused."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.cli_run import REPO
from support.live_site import LiveSite
from support.sip_ua import Agent

from wildix_ast.lab.tls import lab_certificate
from wildix_ast.model.provisioning import ProvisioningSettings
from wildix_ast.services.ami.ban_file import load_bans
from wildix_ast.store import open_store
from wildix_ast.store.vault import user_secret_key

pytestmark = pytest.mark.lab

SCANNER = "127.0.0.77"
THRESHOLD = 10


@dataclass
class Server:
    port: int
    ca: Path
    db: str
    state: Path
    process: subprocess.Popen[str]

    def cli(self, *args: str) -> dict[str, object]:
        done = subprocess.run([sys.executable, "-m", "wildix_ast", *args, "--db", self.db,
                               "--json"], capture_output=True, text=True, timeout=60,
                              check=False, env={**os.environ, "NO_COLOR": "1"})
        assert done.returncode == 0, done.stdout + done.stderr
        found: dict[str, object] = json.loads(done.stdout)
        return found

    def connection(self, source: str = "127.0.0.1") -> http.client.HTTPSConnection:
        context = ssl.create_default_context(cafile=str(self.ca))  # verified, by its IP SAN
        return http.client.HTTPSConnection("127.0.0.1", self.port, context=context,
                                           timeout=10, source_address=(source, 0))

    def get(self, path: str, source: str = "127.0.0.1") -> tuple[int, str]:
        connection = self.connection(source)
        try:
            connection.request("GET", path, headers={"User-Agent": "Yealink SIP-T54W 96.86.0.100"})
            answer = connection.getresponse()
            return answer.status, answer.read().decode()
        finally:
            connection.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def server(live: LiveSite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A store of its own holding the live site's users with their lab SIP passwords, and
    the server on it."""
    work = tmp_path_factory.mktemp("provisioning")
    port = _free_port()
    cert, key = (live.lab.host_path(p) for p in lab_certificate(live.lab))
    db = str(work / "store.sqlite3")
    ports = live.lab.ports  # the phones must be sent to the lab's SIP port
    site = live.store.export_site().with_ports(sip=ports.sip, rtp_start=ports.rtp_start,
                                               rtp_end=ports.rtp_end, ami=ports.ami)
    site = site.model_copy(update={"provisioning": ProvisioningSettings(
        address="127.0.0.1", port=port, ntp_server="127.0.0.1", voice_vlan=20)})
    with open_store(db) as store:
        store.put_secrets({user_secret_key(u.extension, "sip"): live.password(u.extension)
                           for u in live.compiled.site.users if u.type.has_phone})
        store.import_site(site)
    state = work / "runtime"
    log_file = (work / "server.log").open("w")  # a file: a pipe nobody reads would fill
    process = subprocess.Popen(
        [sys.executable, "-m", "wildix_ast", "provisioning", "serve", "--host", "127.0.0.1",
         "--certificate", str(cert), "--private-key", str(key), "--state-dir", str(state),
         "--db", db], cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "NO_COLOR": "1"})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            break
        assert process.poll() is None, (work / "server.log").read_text()
        time.sleep(0.2)
    running = Server(port, cert, db, state, process)
    try:
        yield running
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)
        log_file.close()
        log = (work / "server.log").read_text()
        # every request logged, never a credential
        assert "outcome=" in log
        assert len(log.splitlines()) < 200  # a banned scanner's connections: one line
        assert not re.search(r"/p/(?!<credential>)[A-Za-z0-9_-]{16,}", log), log[-2000:]


def _fields(text: str) -> dict[str, str]:
    return {k.strip(): v.strip() for k, _, v in
            (line.partition("=") for line in text.splitlines() if "=" in line)}


def _register_as_served(live: LiveSite, text: str) -> None:
    """Register in the lab with exactly what the Yealink file says."""
    fields = _fields(text)
    assert fields["account.1.sip_server.1.address"] == "127.0.0.1"
    assert fields["account.1.auth_name"] == fields["account.1.user_name"]
    assert int(fields["account.1.sip_server.1.port"]) == live.lab.ports.sip
    phone = Agent(fields["account.1.user_name"], fields["account.1.password"],
                  int(fields["account.1.sip_server.1.port"]), "udp")
    try:
        assert phone.register().status == 200
        assert phone.register(expires=0).status == 200
    finally:
        phone.close()


def test_a_known_phone_fetches_over_https_registers_and_its_old_link_dies(
        live: LiveSite, server: Server) -> None:
    mac = "001565000101"
    added = server.cli("device", "add", mac, "--vendor", "yealink", "--user", "101")
    link = str(added["provisioning_link"])
    assert link.startswith(f"https://127.0.0.1:{server.port}/p/")
    path = link.split(str(server.port), 1)[1]
    status, text = server.get(f"{path}{mac}.cfg")
    assert status == 200 and "account.1.password" in text
    assert "static.network.vlan.internet_port_vid = 20" in text
    _register_as_served(live, text)

    renewed = server.cli("device", "reset-password", mac)
    assert server.get(f"{path}{mac}.cfg")[0] == 404  # the old credential is refused
    new_path = str(renewed["provisioning_link"]).split(str(server.port), 1)[1]
    status, again = server.get(f"{new_path}{mac}.cfg")
    assert status == 200 and _fields(again)["account.1.password"] == live.password("101")


def test_an_enrolled_phone_gets_no_secret_until_assigned_then_registers(
        live: LiveSite, server: Server) -> None:
    mac = "805ec0000102"
    assert server.get(f"/enrol/{mac}.cfg")[0] == 404  # no window: never added
    server.cli("device", "enrol", "--minutes", "5", "--vendor", "yealink")
    status, first = server.get(f"/enrol/{mac}.cfg")
    assert status == 200 and "account.1.password" not in first
    link = _fields(first)["static.auto_provision.server.url"]
    path = link.split(str(server.port), 1)[1]
    status, unassigned = server.get(f"{path}{mac}.cfg")
    assert status == 200 and "account.1.password" not in unassigned
    server.cli("device", "assign", mac, "102")
    status, assigned = server.get(f"{path}{mac}.cfg")
    assert status == 200
    _register_as_served(live, assigned)
    server.cli("device", "enrol", "--minutes", "0")


def test_a_scanner_gets_no_secret_and_is_banned_then_refused_at_once(server: Server) -> None:
    answers: list[tuple[int, str]] = []
    connection = server.connection(SCANNER)
    try:
        for n in range(100_000):  # one vendor prefix, every MAC in turn, guessed credentials
            try:
                connection.request("GET", f"/p/{secrets.token_urlsafe(24)}/001565{n:06x}.cfg")
                answer = connection.getresponse()
                answers.append((answer.status, answer.read().decode()))
            except (OSError, http.client.HTTPException):
                break  # the server closed on us: banned
            if any(b == SCANNER for b in load_bans(server.state)):
                break
    finally:
        connection.close()
    assert len(answers) <= THRESHOLD
    assert all(status == 404 and "password" not in body for status, body in answers)
    assert SCANNER in load_bans(server.state)  # the SIP ban service's own file
    # from now on every request is refused before a byte is read
    started = time.monotonic()
    refused = 0
    for _ in range(2000):
        sock = socket.socket()
        sock.bind((SCANNER, 0))
        try:
            sock.connect(("127.0.0.1", server.port))
            sock.settimeout(5)
            sock.sendall(b"GET /p/x/001565000000.cfg HTTP/1.1\r\nHost: x\r\n\r\n")
            refused += sock.recv(100) == b""
        except OSError:
            refused += 1
        finally:
            sock.close()
    elapsed = time.monotonic() - started
    assert refused == 2000
    # measured 4,470/s on a quiet moment of the 2-core machine and 625-2,129/s with a load
    # average of 10 to 18 (bench/provisioning.py refuses 100,000): at least 400/s, 100,000
    # in about 4 minutes at worst, with no store read, no render, no byte served
    print(f"2000 refusals of a banned source in {elapsed:.2f} s ({2000 / elapsed:.0f}/s)")
    assert elapsed < 5.0, f"2000 refusals took {elapsed:.2f} s"
