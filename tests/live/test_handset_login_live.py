"""Handset login on a real Asterisk 22 (issue 21, must-show 4): a phone assigned to nobody
fetches its file from the real provisioning server (`wildix-ast provisioning serve`, HTTPS
with the lab's certificate, on the lab's store), registers with the hot-desk line it holds,
dials 99, types 102 and 102's PIN (SIP INFO DTMF), is assigned to 102 in the store (by the
real `wildix-ast agi serve`), gets the check-sync NOTIFY (the dialplan's PJSIPNotify),
fetches its file again, registers with the line it now holds (102) and calls 101 as 102
(101's phone sees 102's caller ID); then logs out the same way. Real SIP phones
(`support.sip_ua.Agent`)."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.agi_fixtures import AgiService, agi_service
from support.cli_run import REPO, assert_no_traceback, run
from support.live_site import LiveSite, live_site
from support.sip_ua import Agent, Message, sdp

from wildix_ast.calls.handset_login import hot_desk_endpoint
from wildix_ast.lab.tls import lab_certificate
from wildix_ast.model.devices import Device, Vendor
from wildix_ast.model.provisioning import ProvisioningSettings
from wildix_ast.store import Store
from wildix_ast.store.devices import add_device, list_devices
from wildix_ast.store.handset import hot_desk_key, login_pin

pytestmark = pytest.mark.lab

MAC = "001565abcdef"
OTHER = "000b82000001"  # a Grandstream assigned to 100, never registered: gray
OFFER = sdp(40000, {0: "PCMU/8000"})
ANSWER = sdp(40002, {0: "PCMU/8000"})


CREDENTIALS: dict[str, str] = {}


def add_phone(store: Store) -> None:
    CREDENTIALS[MAC] = add_device(store, Device(mac=MAC, vendor=Vendor.YEALINK))
    add_device(store, Device(mac=OTHER, vendor=Vendor.GRANDSTREAM, extension="100"))


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveSite]:
    with live_site(tmp_path_factory.mktemp("handset"), "handset",
                   before_install=add_phone) as site:
        yield site


@dataclass
class Provisioning:
    port: int
    ca: Path

    def fetch(self, mac: str) -> dict[str, str]:
        """The phone's own file, as a Yealink asks for it (`<link><mac>.cfg`)."""
        context = ssl.create_default_context(cafile=str(self.ca))
        connection = http.client.HTTPSConnection("127.0.0.1", self.port, context=context,
                                                 timeout=10)
        try:
            connection.request("GET", f"/p/{CREDENTIALS[mac]}/{mac}.cfg",
                               headers={"User-Agent": "Yealink SIP-T54W 96.86.0.100"})
            answer = connection.getresponse()
            text = answer.read().decode()
            assert answer.status == 200, (answer.status, text)
        finally:
            connection.close()
        return {k.strip(): v.strip() for k, _, v in
                (line.partition("=") for line in text.splitlines() if "=" in line)}


@pytest.fixture(scope="module")
def provisioning(live: LiveSite, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[Provisioning]:
    """`wildix-ast provisioning serve` on the lab's own store (the store the FastAGI
    service assigns devices in), told the lab's SIP port and its own HTTPS port."""
    work = tmp_path_factory.mktemp("provisioning")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ports = live.lab.ports
    site = live.store.export_site().with_ports(sip=ports.sip, rtp_start=ports.rtp_start,
                                               rtp_end=ports.rtp_end, ami=ports.ami)
    live.store.import_site(site.model_copy(update={"provisioning": ProvisioningSettings(
        address="127.0.0.1", port=port)}))
    cert, key = (live.lab.host_path(p) for p in lab_certificate(live.lab))
    log_file = (work / "server.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "wildix_ast", "provisioning", "serve", "--host", "127.0.0.1",
         "--certificate", str(cert), "--private-key", str(key), "--state-dir",
         str(work / "runtime"), "--db", str(live.work / "store.sqlite3")], cwd=REPO,
        stdout=log_file, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "NO_COLOR": "1"})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            break
        assert process.poll() is None, (work / "server.log").read_text()
        time.sleep(0.2)
    try:
        yield Provisioning(port, cert)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)
        log_file.close()


def phone_of(live: LiveSite, served: dict[str, str], **kwargs: object) -> Agent:
    """A phone registering with exactly what its file says."""
    assert int(served["account.1.sip_server.1.port"]) == live.lab.ports.sip
    return Agent(served["account.1.user_name"], served["account.1.password"],
                 int(served["account.1.sip_server.1.port"]), timeout=15, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def service(live: LiveSite, tmp_path: Path) -> Iterator[AgiService]:
    with agi_service("--port", str(live.lab.ports.agi), "--db",
                     str(live.work / "store.sqlite3"), "--handset-logins",
                     str(tmp_path / "handset-logins.sqlite3"),
                     log=tmp_path / "agi.log") as running:
        yield running


def assigned(store: Store) -> str | None:
    return next(d.extension for d in list_devices(store) if d.mac == MAC)


def dial_code(phone: Agent, *attempts: str) -> tuple[Message, list[Message]]:
    """Dial 99 from `phone`, type each of `attempts` (SIP INFO) once answered, a moment
    apart, and wait for the PBX to hang up; (the INVITE's final response, the requests
    received meanwhile)."""
    answer, call_id = phone.call("99", OFFER)
    assert answer.status == 200, answer.first
    for typed in attempts:
        time.sleep(1.0)
        phone.dtmf(answer, call_id, typed)
    seen: list[Message] = []
    deadline = time.monotonic() + 25
    while time.monotonic() < deadline:
        message = phone.receive(deadline - time.monotonic())
        if message is None:
            break
        if message.method is not None:
            seen.append(message)
        if message.method == "BYE":
            phone.reply(message, 200, "OK")
            return answer, seen
    raise AssertionError(f"the PBX did not hang up the login call; got {seen}")


def wait_notify(phone: Agent, seen: list[Message], wait: float = 10.0) -> Message:
    for message in seen:
        if message.method == "NOTIFY":
            return message
    found = phone.wait_for("NOTIFY", wait)
    assert found is not None, "no check-sync NOTIFY"
    return found


def test_login_as_102_then_call_101_as_102_then_logout(
        live: LiveSite, service: AgiService, provisioning: Provisioning) -> None:
    store = live.store
    served = provisioning.fetch(MAC)  # unassigned: its own hot-desk line
    assert served["account.1.user_name"] == hot_desk_endpoint(MAC)
    desk = phone_of(live, served)
    try:
        assert desk.register().status == 200
        # anything but the login code and emergency numbers is refused from the desk
        refused, _ = desk.call("101", OFFER)
        assert refused.status is not None and refused.status >= 400
        # the send-only NOTIFY endpoint cannot be used to call (no request is its)
        stranger = Agent("wildix-notify", "", live.lab.ports.sip, timeout=15)
        try:
            sneaked, _ = stranger.call("99", OFFER)
            assert sneaked.status is not None and sneaked.status >= 400, sneaked.first
        finally:
            stranger.close()
        pin = login_pin(store, "102")
        assert pin is not None
        wrong = "0" * len(pin) if pin != "0" * len(pin) else "1" * len(pin)
        # one wrong PIN, then the right one, in the same call
        _, seen = dial_code(desk, f"102#{wrong}#", f"102#{pin}#")
        assert assigned(store) == "102"
        notify = wait_notify(desk, seen)
        assert (notify.header("Event") or "").strip() == "check-sync"
    finally:
        desk.close()
    # the NOTIFY made the phone fetch its file again: it now holds 102's line
    served = provisioning.fetch(MAC)
    assert served["account.1.user_name"] == "102"
    phone = phone_of(live, served)
    callee = Agent("101", live.password("101"), live.lab.ports.sip, timeout=15)
    try:
        assert phone.register().status == 200 and callee.register().status == 200
        invites: list[Message | None] = []
        ringing = threading.Thread(target=lambda: invites.append(
            callee.answer_call(ANSWER, 15)))
        ringing.start()
        answer, call_id = phone.call("101", OFFER)
        assert answer.status == 200, answer.first
        time.sleep(0.5)
        phone.hangup(answer, call_id)
        ringing.join(20)
        invite = invites[0]
        assert invite is not None
        caller = invite.header("From") or ""
        assert "<sip:102@" in caller and "Bruno" in caller, caller
        # logout: 99 from the logged-in phone, no PIN
        _, seen = dial_code(phone)
        assert assigned(store) is None
        assert (wait_notify(phone, seen).header("Event") or "").strip() == "check-sync"
    finally:
        phone.close()
        callee.close()
    assert provisioning.fetch(MAC)["account.1.user_name"] == hot_desk_endpoint(MAC)
    assert live.wait_no_channels() == 0


def cli_env(live: LiveSite) -> dict[str, str]:
    return {"WILDIX_AST_DB": str(live.work / "store.sqlite3"),
            "WILDIX_AST_LAB_STATE": str(live.lab.dir.parent)}


def cli_json(live: LiveSite, *args: str) -> dict[str, object]:
    done = run(*args, "--json", "--lab", live.lab.name, env=cli_env(live))
    assert done.returncode == 0, done.stdout + done.stderr
    found: dict[str, object] = json.loads(done.stdout)
    return found


def test_device_and_user_status_green_and_gray(live: LiveSite) -> None:
    """Item 3: one phone registered (green), one not (gray), from Asterisk; `device
    sync` records its address, model and firmware from its User-Agent."""
    store = live.store
    desk = Agent(hot_desk_endpoint(MAC), str(store.get_secret(hot_desk_key(MAC))),
                 live.lab.ports.sip, timeout=15, user_agent="Yealink SIP-T54W 96.86.0.100")
    ann = Agent("101", live.password("101"), live.lab.ports.sip, timeout=15)
    stop = threading.Event()

    def answer_qualify() -> None:  # a phone answers the PBX's OPTIONS: reachable
        while not stop.is_set():
            for agent in (desk, ann):
                agent.receive(0.1)

    answering = threading.Thread(target=answer_qualify)
    try:
        assert desk.register().status == 200 and ann.register().status == 200
        answering.start()
        listed = cli_json(live, "device", "list")
        assert listed["status_error"] is None
        status = {d["mac"]: d["status"] for d in listed["devices"]}  # type: ignore[attr-defined]
        assert status == {MAC: "green", OTHER: "gray"}
        synced = cli_json(live, "device", "sync")
        assert synced["seen"] == [MAC]
        row = next(d for d in list_devices(store) if d.mac == MAC)
        assert (row.model, row.firmware, row.ip) == ("T54W", "96.86.0.100", "127.0.0.1")
        assert row.last_seen is not None
        users = {u["extension"]: u for u in cli_json(live, "users", "list")["users"]}  # type: ignore[attr-defined]
        assert users["101"]["status"] == "green" and users["100"]["status"] == "gray"
        assert users["100"]["devices"] == [OTHER]
        assert users["701"]["status"] == "—"  # a park orbit has no phone
        table = run("device", "list", "--lab", live.lab.name, env=cli_env(live))
        assert_no_traceback(table)
        lines = {mac: next(line for line in table.stdout.splitlines() if mac in line)
                 for mac in (MAC, OTHER)}
        assert "green" in lines[MAC] and "T54W" in lines[MAC] and "gray" in lines[OTHER]
        print(table.stdout)
    finally:
        stop.set()
        if answering.is_alive():
            answering.join(5)
        desk.close()
        ann.close()
