"""Handset login (feature code 99): the pure decision (which device calls, what the code
does), the route against a real SQLite store (login, logout, refusals counted per device
and per user, the lock, two logins at once on one phone), and the generated dialplan and
PJSIP hot-desk endpoints."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from wildix_ast.asterisk.render import render_site
from wildix_ast.calls import variables as v
from wildix_ast.calls.handset_login import (
    Attempt,
    Outcome,
    address_ip,
    decide,
    hot_desk_endpoint,
    identify,
)
from wildix_ast.model.devices import Device, Vendor
from wildix_ast.model.settings_file import parse_site
from wildix_ast.services.agi.handset_routes import HandsetRoute, handset_answer
from wildix_ast.services.agi.protocol import AgiRequest
from wildix_ast.services.agi.voicemail_logins import LoginGuard
from wildix_ast.store import Store, open_store
from wildix_ast.store.devices import add_device, list_devices
from wildix_ast.store.handset import hot_desk_secrets, login_pin, swap_assignment
from wildix_ast.store.vault import MemoryVault, with_secrets

SITE = """users:
  - {name: Ann, extension: "101"}
  - {name: Ben, extension: "102"}
  - {name: Orbit, extension: "700", type: park_orbit}
"""
MAC, OTHER = "001565abcdef", "001565000001"


def device(mac: str = MAC, extension: str | None = None, ip: str | None = None) -> Device:
    return Device(mac=mac, vendor=Vendor.YEALINK, extension=extension, ip=ip)


# --- the pure decision -----------------------------------------------------------------------

@pytest.mark.parametrize(("address", "ip"), [
    ("192.0.2.7:5060", "192.0.2.7"), ("[2001:db8::1]:5062", "2001:db8::1"),
    ("192.0.2.7", "192.0.2.7"), ("", "")])
def test_address_ip(address: str, ip: str) -> None:
    assert address_ip(address) == ip


def test_a_hot_desk_endpoint_names_its_device() -> None:
    found = [device(), device(OTHER)]
    assert identify(hot_desk_endpoint(OTHER), "", found) == found[1]
    assert identify("hd-00156500000z", "", found) is None   # not a MAC
    assert identify("hd-" + "ab" * 6, "", found) is None    # no such device
    assert identify("trunk-secours", "", found) is None     # neither a user nor a device


def test_a_users_endpoint_is_its_device_or_the_one_at_the_callers_address() -> None:
    one = [device(extension="101"), device(OTHER)]
    assert identify("101", "198.51.100.1:5060", one) == one[0]
    two = [device(extension="101", ip="192.0.2.1"), device(OTHER, "101", "192.0.2.2")]
    assert identify("101", "192.0.2.2:5060", two) == two[1]
    assert identify("101", "192.0.2.9:5060", two) is None  # cannot tell: nothing changes
    assert identify("102", "192.0.2.1:5060", two) is None


def test_first_look_logs_out_an_assigned_phone_and_asks_on_a_free_one() -> None:
    out = decide(device(extension="101"), None, stored_pin=None, device_locked=False,
                 user_locked=False)
    assert (out.outcome, out.extension) == (Outcome.LOGGED_OUT, "101")
    asked = decide(device(), None, stored_pin=None, device_locked=False, user_locked=False)
    assert asked.outcome is Outcome.ASK
    assert asked.variables() == {v.HANDSET_RESULT: "ask", v.HANDSET_PLAYBACK: ""}
    locked = decide(device(), None, stored_pin=None, device_locked=True, user_locked=False)
    assert locked.outcome is Outcome.LOCKED
    assert decide(None, None, stored_pin=None, device_locked=False,
                  user_locked=False).outcome is Outcome.UNKNOWN


@pytest.mark.parametrize(("typed", "pin", "stored", "outcome"), [
    ("102", "123456", "123456", Outcome.LOGGED_IN),
    ("102", "123457", "123456", Outcome.REFUSED),
    ("102", "", "123456", Outcome.REFUSED),
    ("102", "12345", "123456", Outcome.REFUSED),
    ("103", "123456", None, Outcome.REFUSED),      # no such user: the same answer
    ("", "123456", "123456", Outcome.REFUSED),
    ("10a", "123456", "123456", Outcome.REFUSED),
    ("102", "1234*6", "1234*6", Outcome.REFUSED),  # digits only, whatever is stored
])
def test_login_attempts(typed: str, pin: str, stored: str | None, outcome: Outcome) -> None:
    decided = decide(device(), Attempt(typed, pin), stored_pin=stored, device_locked=False,
                     user_locked=False)
    assert decided.outcome is outcome
    assert decided.counts_as_failure == (outcome is Outcome.REFUSED)


def test_a_lock_refuses_even_the_right_pin() -> None:
    for device_locked, user_locked in ((True, False), (False, True)):
        decided = decide(device(), Attempt("102", "123456"), stored_pin="123456",
                         device_locked=device_locked, user_locked=user_locked)
        assert decided.outcome is Outcome.LOCKED and not decided.counts_as_failure


# --- the route on a real store ---------------------------------------------------------------

@pytest.fixture
def store(tmp_path: Path) -> Store:
    opened = open_store(str(tmp_path / "store.sqlite3"))
    site = parse_site(SITE)
    opened.import_site(site)
    add_device(opened, device())
    add_device(opened, device(OTHER, "101"))
    return opened


def guard(tmp_path: Path) -> LoginGuard:
    return LoginGuard(tmp_path / "handset.sqlite3", max_failures=3, event="Handset")


def assigned(store: Store, mac: str) -> str | None:
    return next(d.extension for d in list_devices(store) if d.mac == mac)


def pin_of(store: Store, extension: str) -> str:
    from wildix_ast.store.vault import voicemail_pins

    pins = voicemail_pins(store.export_site(), store)
    found = login_pin(store, extension)
    assert found is not None and found == pins[extension] and found.isdigit()
    return found


def test_login_then_logout(store: Store, tmp_path: Path) -> None:
    guarding = guard(tmp_path)
    hot_desk = hot_desk_endpoint(MAC)
    first = handset_answer(store, guarding, hot_desk, "127.0.0.1:5070", None)
    assert first.outcome is Outcome.ASK
    done = handset_answer(store, guarding, hot_desk, "127.0.0.1:5070",
                          Attempt("102", pin_of(store, "102")))
    assert done.outcome is Outcome.LOGGED_IN
    assert assigned(store, MAC) == "102"
    # now registered as 102: the code logs it out (the other 101 phone is untouched)
    out = handset_answer(store, guarding, "102", "127.0.0.1:5070", None)
    assert out.outcome is Outcome.LOGGED_OUT
    assert assigned(store, MAC) is None and assigned(store, OTHER) == "101"


def test_refusals_lock_the_device_and_the_user(store: Store, tmp_path: Path) -> None:
    guarding = guard(tmp_path)
    hot_desk = hot_desk_endpoint(MAC)
    right = pin_of(store, "102")
    wrong = "0" * 6 if right != "0" * 6 else "1" * 6
    outcomes = [handset_answer(store, guarding, hot_desk, "", Attempt("102", wrong))
                .outcome for _ in range(4)]
    assert outcomes == [Outcome.REFUSED] * 3 + [Outcome.LOCKED]
    # the right PIN now changes nothing: the device is locked, and so is user 102
    assert handset_answer(store, guarding, hot_desk, "", Attempt("102", right)) \
        .outcome is Outcome.LOCKED
    assert assigned(store, MAC) is None
    assert guarding.locked("device:" + MAC) is not None
    assert guarding.locked("user:102") is not None
    assert guarding.locked("user:101") is None
    # the first look from a locked device says so at once
    assert handset_answer(store, guarding, hot_desk, "", None).outcome is Outcome.LOCKED


def test_a_park_orbit_or_unknown_user_has_no_pin(store: Store) -> None:
    assert login_pin(store, "700") is None and login_pin(store, "999") is None


def test_two_logins_on_one_phone_at_once_give_one_winner(store: Store) -> None:
    results: list[bool] = []
    barrier = threading.Barrier(2)

    def log_in(extension: str) -> None:
        barrier.wait()
        results.append(swap_assignment(store, MAC, None, extension))

    threads = [threading.Thread(target=log_in, args=(e,)) for e in ("101", "102")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, True]
    assert assigned(store, MAC) in ("101", "102")


class _Session:
    def __init__(self, args: list[str], pin: str) -> None:
        self.request = AgiRequest(headers={}, route="handset-login", args=tuple(args))
        self.pin = pin
        self.asked: list[str] = []

    async def get_variable(self, name: str) -> str | None:
        self.asked.append(name)
        return self.pin


def test_the_route_reads_the_pin_from_the_channel(store: Store, tmp_path: Path) -> None:
    route = HandsetRoute(lambda: store, guard(tmp_path))
    session = _Session([hot_desk_endpoint(MAC), "127.0.0.1:5070", "102", "try"],
                       pin_of(store, "102"))
    answer = asyncio.run(route(session))  # type: ignore[arg-type]
    assert dict(answer.variables)[v.HANDSET_RESULT] == "logged_in"
    assert session.asked == [v.HANDSET_PIN]


# --- what Asterisk gets ----------------------------------------------------------------------

def test_hot_desk_endpoints_and_the_login_code_are_rendered(store: Store) -> None:
    desks = hot_desk_secrets(store)
    assert [m for m, _ in desks] == [OTHER, MAC]
    assert hot_desk_secrets(store) == desks  # generated once, then kept
    site = with_secrets(store.export_site(), MemoryVault())
    files = render_site(site, manager_secret="Manager-Secret-1", hot_desks=desks)
    pjsip, dialplan = files["pjsip.conf"], files["extensions.conf"]
    section = pjsip.split(f"[{hot_desk_endpoint(MAC)}]\n", 1)[1].split("\n\n", 1)[0]
    assert "context = wildix-hot-desk" in section and "set_var" not in section
    assert f"password = {desks[1][1]}" in pjsip
    hot = dialplan.split("[wildix-hot-desk]\n", 1)[1].split("\n[", 1)[0]
    assert "include => wildix-emergency" in hot
    assert "exten => 99,1,Gosub(wildix-handset-login,s,1())" in hot
    assert "_X." not in hot  # nothing but 99 and emergency numbers
    login = dialplan.split("[wildix-handset-login]\n", 1)[1].split("\n[", 1)[0]
    # the PIN is never an AGI() argument (those reach the verbose log)
    agi_lines = [line for line in login.splitlines() if "AGI(" in line]
    assert len(agi_lines) == 2 and not any(v.HANDSET_PIN in line for line in agi_lines)
    assert "Read(WILDIX_HS_PIN," in login
    # the NOTIFY goes from the dialplan, from an endpoint no request can be taken for
    assert "PJSIPNotify(<${WILDIX_HS_CONTACT}>,check-sync)" in login
    notify = pjsip.split("[wildix-notify]\n", 1)[1].split("\n\n", 1)[0]
    assert "identify_by = ip" in notify and "auth" not in notify
    assert "default_outbound_endpoint = wildix-notify" in pjsip
    assert "[check-sync]\nEvent => check-sync" in files["pjsip_notify.conf"]
    assert "write = system" not in files["manager.conf"]


# --- green/gray and what a registration tells (services/ami/registrations.py) ---------------

@pytest.mark.parametrize(("agent", "expected"), [
    ("Yealink SIP-T54W 96.86.0.100", ("T54W", "96.86.0.100")),
    ("snomD785/10.1.54.13", ("D785", "10.1.54.13")),
    ("Grandstream GXP2170 1.0.11.3", ("GXP2170", "1.0.11.3")),
    ("PolycomVVX-VVX_450-UA/6.4.0.1234", ("VVX_450", "6.4.0.1234")),
    ("wildix-ast-test-ua", (None, None)),
    ("Yealink SIP-T54W 96.86.0.100<script>", ("T54W", "96.86.0.100")),
    ("Yealink SIP-" + "A" * 200 + " 1.0", (None, None)),   # too long to be a model
])
def test_model_and_firmware_from_the_user_agent(
        agent: str, expected: tuple[str | None, str | None]) -> None:
    from wildix_ast.services.ami.registrations import model_and_firmware

    assert model_and_firmware(agent) == expected


def test_device_status_follows_its_own_contacts() -> None:
    from wildix_ast.services.ami.registrations import (
        contact_of,
        device_statuses,
        registered_endpoints,
    )

    contacts = [
        contact_of({"Event": "ContactList", "Endpoint": hot_desk_endpoint(MAC),
                    "Uri": "sip:hd@192.0.2.7:5060", "Status": "Reachable",
                    "UserAgent": "Yealink SIP-T54W 96.86.0.100", "ViaAddr": "192.0.2.7"}),
        contact_of({"Endpoint": "101", "Uri": "sip:101@192.0.2.8:5062",
                    "Status": "Unreachable"}),
    ]
    assert contacts[1].ip == "192.0.2.8"
    devices = [device(), device(OTHER, "101"), device("00156500000a", "102")]
    found = {s.device.mac: s.colour for s in device_statuses(devices, contacts)}
    assert found == {MAC: "green", OTHER: "gray", "00156500000a": "gray"}
    assert registered_endpoints(contacts) == {hot_desk_endpoint(MAC)}


def test_contacts_listed_by_the_console() -> None:
    from wildix_ast.services.ami.registrations import listed_contacts

    text = """
  Contact:  <Aor/ContactUri..............................> <Hash....> <Status> <RTT(ms)..>
==========================================================================================

  Contact:  hd-001565abcdef/sip:hd-001565abcdef@127.0.0.1: 483fd312e0 NonQual        -nan
  Contact:  101/sip:101@127.0.0.1:40123                   5b4bebb4d4 Unavail        -nan
  Contact:  102/sip:102@127.0.0.1:40124                   1b8539a4ad Avail         1.234

Objects found: 3
"""
    found = listed_contacts(text)
    assert [(c.endpoint, c.status, c.reachable) for c in found] == [
        (hot_desk_endpoint(MAC), "NonQual", True), ("101", "Unavail", False),
        ("102", "Avail", True)]


@pytest.mark.slow  # runs the CLI as a process
def test_an_admin_lists_and_lifts_handset_login_locks(tmp_path: Path) -> None:
    import json

    from support.cli_run import assert_no_traceback, run

    path = tmp_path / "handset.sqlite3"
    guarding = LoginGuard(path, event="Handset")
    for _ in range(5):
        guarding.failed("device:" + MAC, "hd-" + MAC)
        guarding.failed("user:102", "hd-" + MAC)
    env = {"WILDIX_AST_HANDSET_LOGINS": str(path)}
    listed = run("device", "login-locks", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert {lock["locked"] for lock in json.loads(listed.stdout)["locks"]} == {
        "device:" + MAC, "user:102"}
    done = run("device", "login-unlock", "00:15:65:AB:CD:EF", "--json", env=env)
    assert json.loads(done.stdout)["was_locked"] is True
    assert guarding.locked("device:" + MAC) is None and guarding.locked("user:102")
    done = run("device", "login-unlock", "102", env=env)
    assert_no_traceback(done)
    assert "user:102 unlocked" in done.stdout and guarding.locked("user:102") is None
    bad = run("device", "login-unlock", "nonsense", env=env)
    assert bad.returncode == 2 and "MAC" in bad.stdout + bad.stderr
    assert_no_traceback(bad)
