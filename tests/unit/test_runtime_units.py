"""The AMI service's pure parts: ban policy, PBX state reducers, the per-call log."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest

from wildix_ast.services.ami.ban_file import lift_ban, load_bans, save_bans, update_bans
from wildix_ast.services.ami.call_log import (
    CallLog,
    LoggedEvent,
    LogWriter,
    format_call,
    read_log,
    read_log_files,
    wanted,
)
from wildix_ast.services.ami.pbx_state import PbxState, apply_event, snapshot
from wildix_ast.services.ami.security import (
    Ban,
    BanPolicy,
    SecurityState,
    active_bans,
    banned_networks,
    enforceable,
    expire,
    never_banned,
    record_attempt,
    record_event,
    source_address,
    unban,
)

POLICY = BanPolicy.with_networks(["192.168.1.0/24", "203.0.113.10"], threshold=5, window=60,
                                 ban_time=600)


def attempts(state: SecurityState, address: str, times: list[float]) -> SecurityState:
    for now in times:
        state, _ban = record_attempt(state, POLICY, address, now, "test")
    return state


# -- security --------------------------------------------------------------------------------

@pytest.mark.parametrize(("remote", "address"), [
    ("IPV4/UDP/198.51.100.7/5060", "198.51.100.7"),
    ("IPV6/UDP/2001:db8::1/5060", "2001:db8::1"),
    ("IPV4/TCP/10.0.0.1/49152", "10.0.0.1"),
    ("", None), ("IPV4/UDP/not-an-ip/5060", None),
])
def test_source_address(remote: str, address: str | None) -> None:
    assert source_address({"RemoteAddress": remote}) == address


def test_the_firewall_never_enforces_a_ban_of_a_never_banned_network() -> None:
    """The bans file has two writers (the AMI service, the provisioning server): a ban of
    the LAN or a trunk written into it (a compromised writer, an older file) is listed but
    never becomes a firewall rule."""
    policy = BanPolicy.with_networks(["192.168.1.0/24", "203.0.113.9"])
    bans = {a: Ban(address=a, since=0, until=100, attempts=10, reason="provisioning")
            for a in ("198.51.100.7", "192.168.1.20", "203.0.113.9", "127.0.0.1")}
    state = SecurityState(bans=bans)
    assert len(banned_networks(state, 1)) == 4  # could fail: all four are listed
    assert enforceable(state, policy, 1) == [ipaddress.ip_network("198.51.100.7/32")]


def test_threshold_within_the_window_bans() -> None:
    state = attempts(SecurityState(), "198.51.100.7", [0, 10, 20, 30])
    assert active_bans(state, 31) == []
    state, ban = record_attempt(state, POLICY, "198.51.100.7", 40, "InvalidAccountID")
    assert ban is not None and (ban.since, ban.until, ban.attempts) == (40, 640, 5)
    assert banned_networks(state, 41) == [ipaddress.ip_network("198.51.100.7/32")]
    assert "198.51.100.7" not in state.attempts  # counting starts again after the ban


def test_attempts_spread_over_more_than_the_window_do_not_ban() -> None:
    state = attempts(SecurityState(), "198.51.100.7", [0, 20, 40, 60, 80, 100, 120, 140])
    assert active_bans(state, 141) == []


def test_bans_expire() -> None:
    state = attempts(SecurityState(), "198.51.100.7", [0, 1, 2, 3, 4])
    assert banned_networks(state, 603) != []
    assert banned_networks(state, 604) == []  # until = 4 + 600
    assert expire(state, POLICY, 700) == SecurityState()


@pytest.mark.parametrize("address", ["192.168.1.50", "203.0.113.10", "127.0.0.1", "::1"])
def test_lan_trunk_and_loopback_are_never_banned(address: str) -> None:
    assert never_banned(POLICY, address)
    state = attempts(SecurityState(), address, [float(i) for i in range(50)])
    assert active_bans(state, 50) == []


def test_a_neighbour_of_a_trunk_is_banned() -> None:
    state = attempts(SecurityState(), "203.0.113.11", [0, 1, 2, 3, 4])
    assert [b.address for b in active_bans(state, 5)] == ["203.0.113.11"]


def test_ipv6_ban_is_one_host() -> None:
    state = attempts(SecurityState(), "2001:db8::7", [0, 1, 2, 3, 4])
    assert banned_networks(state, 5) == [ipaddress.ip_network("2001:db8::7/128")]


def test_unban_lifts_and_forgets() -> None:
    state = attempts(SecurityState(), "198.51.100.7", [0, 1, 2, 3, 4])
    state, lifted = unban(state, "198.51.100.7")
    assert lifted and active_bans(state, 5) == []
    assert unban(state, "198.51.100.7") == (state, False)


def test_only_failure_events_count() -> None:
    event = {"Event": "SuccessfulAuth", "RemoteAddress": "IPV4/UDP/198.51.100.7/5060"}
    state = SecurityState()
    for now in range(10):
        state, _ = record_event(state, POLICY, event, now)
    assert state == SecurityState()
    failed = {"Event": "ChallengeResponseFailed", "Service": "PJSIP", "AccountID": "101",
              "RemoteAddress": "IPV4/UDP/198.51.100.7/5060"}
    bans = []
    for now in range(5):
        state, ban = record_event(state, POLICY, failed, now)
        bans.append(ban)
    assert bans[-1] is not None and bans[-1].reason == "ChallengeResponseFailed (PJSIP " \
        "account 101)"


def test_policy_is_checked() -> None:
    with pytest.raises(ValueError):
        BanPolicy(threshold=0)
    with pytest.raises(ValueError):
        BanPolicy.with_networks(["not a network"])


def test_bans_file_round_trip_and_unban(tmp_path: Path) -> None:
    state = attempts(SecurityState(), "198.51.100.7", [0, 1, 2, 3, 4])
    save_bans(tmp_path, dict(state.bans))
    assert load_bans(tmp_path) == dict(state.bans)
    assert lift_ban(tmp_path, "198.51.100.7")
    assert load_bans(tmp_path) == {}
    assert not lift_ban(tmp_path, "198.51.100.7")



def test_the_service_never_undoes_an_unban_made_since_it_last_read_the_file(
        tmp_path: Path) -> None:
    """The lost update this guards against: the service bans Y with its own copy of the bans
    still holding X, which `unban` lifted meanwhile; X must stay lifted."""
    from wildix_ast.services.ami.service import MonitorService, ServiceConfig
    from wildix_ast.services.ami.supervisor import AmiSettings

    clock = [1000.0]
    policy = BanPolicy(threshold=2, window=60, ban_time=600, never_ban=())
    service = MonitorService(ServiceConfig(AmiSettings("127.0.0.1", 1, "u", "s"), tmp_path,
                                           policy), clock=lambda: clock[0])

    def fail(address: str) -> None:
        for _ in range(2):
            service.on_event({"Event": "InvalidAccountID",
                              "RemoteAddress": f"IPV4/UDP/{address}/5060"})

    fail("198.51.100.1")
    assert set(load_bans(tmp_path)) == {"198.51.100.1"}
    assert lift_ban(tmp_path, "198.51.100.1")  # another process, before the service follows
    fail("198.51.100.2")
    assert set(load_bans(tmp_path)) == {"198.51.100.2"}
    assert set(service.security.bans) == {"198.51.100.2"}
    # an expiry goes through the file too: it never resurrects what was lifted meanwhile
    assert lift_ban(tmp_path, "198.51.100.2")
    clock[0] += 601
    service._expire(clock[0])
    assert load_bans(tmp_path) == {} and service.security.bans == {}


def test_concurrent_bans_and_unbans_lose_nothing(tmp_path: Path) -> None:
    """Writers in threads (flock is per open file, so threads contend as processes do): every
    ban added and every unban made is in the final file."""
    import threading

    seeded = {f"198.51.100.{i}": Ban(f"198.51.100.{i}", 0, 9e9, 20, "seed")
              for i in range(40)}
    save_bans(tmp_path, seeded)

    def add(first: int) -> None:
        for i in range(first, first + 40):
            address = f"203.0.113.{i}"
            update_bans(tmp_path, lambda b, a=address: {**b, a: Ban(a, 1, 9e9, 20, "new")})

    def lift() -> None:
        for address in seeded:
            assert lift_ban(tmp_path, address)

    threads = [threading.Thread(target=add, args=(0,)), threading.Thread(target=add, args=(40,)),
               threading.Thread(target=lift)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(load_bans(tmp_path)) == {f"203.0.113.{i}" for i in range(80)}

# -- PBX state -------------------------------------------------------------------------------

def test_snapshot_then_events() -> None:
    state = snapshot("22.10.1", [{"Device": "PJSIP/101", "State": "NOT_INUSE"}],
                     [{"Aor": "101", "Uri": "sip:101@127.0.0.1:5070", "Status": "Reachable"}],
                     [{"Uniqueid": "1.1", "Channel": "PJSIP/101-1", "Linkedid": "1.1",
                       "ChannelStateDesc": "Up"}])
    assert state.devices == {"PJSIP/101": "NOT_INUSE"}
    assert state.contacts == {"101/sip:101@127.0.0.1:5070": "Reachable"}
    state = apply_event(state, {"Event": "DeviceStateChange", "Device": "PJSIP/101",
                                "State": "INUSE"})
    state = apply_event(state, {"Event": "Newchannel", "Uniqueid": "1.2",
                                "Channel": "PJSIP/102-2", "ChannelStateDesc": "Ring",
                                "Linkedid": "1.1", "CallerIDNum": "101", "Exten": "102"})
    state = apply_event(state, {"Event": "Newstate", "Uniqueid": "1.2",
                                "ChannelStateDesc": "Up"})
    assert state.channels["1.2"].state == "Up" and state.channels["1.2"].caller == "101"
    state = apply_event(state, {"Event": "Hangup", "Uniqueid": "1.1"})
    state = apply_event(state, {"Event": "ContactStatus", "AOR": "101",
                                "URI": "sip:101@127.0.0.1:5070", "ContactStatus": "Removed"})
    assert set(state.channels) == {"1.2"} and state.contacts == {}
    assert state.devices == {"PJSIP/101": "INUSE"}
    json.dumps(state.to_json())


def test_unrelated_events_keep_the_same_state() -> None:
    state = PbxState()
    for event in ({"Event": "FullyBooted"}, {"Event": "Newstate", "Uniqueid": "9"},
                  {"Event": "Hangup", "Uniqueid": "9"}):
        assert apply_event(state, event) is state


# -- call log --------------------------------------------------------------------------------

def call_events(linkedid: str, start: float, caller: str = "101",
                callee: str = "102") -> list[LoggedEvent]:
    a, b = linkedid, linkedid + "1"
    return [
        LoggedEvent(start, {"Event": "Newchannel", "Uniqueid": a, "Linkedid": a,
                            "Channel": f"PJSIP/{caller}-1", "CallerIDNum": caller,
                            "Exten": callee, "ChannelStateDesc": "Ring"}),
        LoggedEvent(start + 0.01, {"Event": "Newexten", "Uniqueid": a, "Linkedid": a,
                                   "Channel": f"PJSIP/{caller}-1", "Context": "users",
                                   "Exten": callee, "Application": "Dial",
                                   "AppData": f"PJSIP/{callee},20"}),
        LoggedEvent(start + 0.02, {"Event": "Newchannel", "Uniqueid": b, "Linkedid": a,
                                   "Channel": f"PJSIP/{callee}-2", "CallerIDNum": callee}),
        LoggedEvent(start + 2.5, {"Event": "Hangup", "Uniqueid": b,
                                  "Channel": f"PJSIP/{callee}-2", "Cause": "16",
                                  "Cause-txt": "Normal Clearing"}),
    ]


def test_events_are_grouped_per_call() -> None:
    log = CallLog()
    for event in call_events("100.1", 1000.0) + call_events("200.1", 2000.0, "103", "104"):
        log.add(event)
    assert [e.name for e in log.call("100.11")] == ["Newchannel", "Newexten", "Newchannel",
                                                    "Hangup"]
    assert log.call("100.1") == log.call("100.11")
    assert log.find("104") == ["200.1"]
    assert log.find("102", around=1010.0, window=60) == ["100.1"]
    assert log.find("102", around=5000.0, window=60) == []
    text = format_call(log.call("100.1"))
    assert text.splitlines()[0].startswith("call 100.1")
    assert "+  2.500s  Hangup" in text and "Cause-txt=Normal Clearing" in text
    assert "AppData=PJSIP/102,20" in text


def test_log_is_bounded() -> None:
    log = CallLog(max_calls=3, max_events=2)
    for i in range(5):
        for event in call_events(f"{i}.0", float(i)):
            log.add(event)
    assert [call for call, _ in log.calls()] == ["2.0", "3.0", "4.0"]
    assert len(log.call("4.0")) == 2 and log.call("0.0") == []


def test_noise_is_not_kept() -> None:
    assert not wanted({"Event": "VarSet", "Uniqueid": "1"})
    assert not wanted({"Event": "FullyBooted"})
    assert wanted({"Event": "Newexten", "Uniqueid": "1"})


def test_log_file_round_trip_rotation_and_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "calls.jsonl"
    writer = LogWriter(path, max_bytes=600)
    for event in call_events("100.1", 1000.0) + call_events("200.1", 2000.0, "Élise", "104"):
        writer.write(event)
    writer.close()
    assert path.with_name("calls.jsonl.1").exists()
    with open(path, "a", encoding="utf-8") as handle:
        handle.write('{"t": 3000, "e": {"Event": "Newch')  # the service died mid-line
    log = read_log_files(path)
    assert [call for call, _ in log.calls()] == ["100.1", "200.1"]
    assert log.call("200.1")[0].fields["CallerIDNum"] == "Élise"
    assert read_log(["garbage", "{}"]).call("x") == []


def test_the_firewall_chain_is_rendered_whole_from_the_bans() -> None:
    from wildix_ast.services.ami.firewall import Firewall

    firewall = Firewall((5061, 5060), chain="wildix-ast-bans")
    banned = [ipaddress.ip_network("203.0.113.7/32"), ipaddress.ip_network("2001:db8::1/128")]
    text = firewall.render(banned, 4)
    assert text == (
        "*filter\n:wildix-ast-bans - [0:0]\n"
        "-A wildix-ast-bans -s 203.0.113.7/32 -p udp -m multiport --dports 5060,5061 -j DROP\n"
        "-A wildix-ast-bans -s 203.0.113.7/32 -p tcp -m multiport --dports 5060,5061 -j DROP\n"
        "COMMIT\n")
    assert "2001:db8::1/128 -p udp" in firewall.render(banned, 6)
    assert "-A" not in firewall.render([], 4)  # nothing banned: the chain is emptied
    with pytest.raises(ValueError):
        Firewall((5060,), chain="x; rm -rf /")
    with pytest.raises(ValueError):
        Firewall(())


def test_with_tls_on_the_plain_sip_port_is_kept_to_the_lan_and_the_trunks() -> None:
    """After the bans: what the PBX opened itself (a provider's answers) passes, then the LAN
    and the trunks, then everything else to the UDP/TCP port is dropped; the TLS port is
    left to the bans alone."""
    from wildix_ast.services.ami.firewall import Firewall

    firewall = Firewall((5060, 5061), chain="wildix-ast-bans", plain_ports=(5060,),
                        plain_from=(ipaddress.ip_network("192.168.1.0/24"),
                                    ipaddress.ip_network("198.51.100.7/32"),
                                    ipaddress.ip_network("2001:db8::/64")))
    lines = firewall.render([ipaddress.ip_network("203.0.113.7/32")], 4).splitlines()
    udp = [line for line in lines if "-p udp" in line]
    assert udp == [
        "-A wildix-ast-bans -s 203.0.113.7/32 -p udp -m multiport --dports 5060,5061 -j DROP",
        "-A wildix-ast-bans -p udp -m multiport --dports 5060 -m conntrack --ctstate "
        "ESTABLISHED,RELATED -j RETURN",
        "-A wildix-ast-bans -s 192.168.1.0/24 -p udp -m multiport --dports 5060 -j RETURN",
        "-A wildix-ast-bans -s 198.51.100.7/32 -p udp -m multiport --dports 5060 -j RETURN",
        "-A wildix-ast-bans -p udp -m multiport --dports 5060 -j DROP"]
    assert "2001:db8::/64" not in "\n".join(lines)  # each IP version its own networks
    assert "-s 2001:db8::/64 -p tcp" in firewall.render([], 6)
    assert "5061 -j DROP" not in firewall.render([], 4)  # TLS: only bans


def test_the_site_says_when_the_plain_sip_port_is_kept() -> None:
    from wildix_ast.model.settings_file import load_site
    from wildix_ast.services.ami.account import site_runtime

    site = load_site(Path(__file__).resolve().parents[2] / "examples" / "site.yaml")
    assert site_runtime(site).plain_port is None  # no TLS: phones may use UDP anywhere
    sip = site.system.sip_rtp.model_copy(update={
        "tls_certificate": "/etc/asterisk/keys/pbx.crt",
        "tls_private_key": "/etc/asterisk/keys/pbx.key"})
    tls = site.model_copy(update={"system": site.system.model_copy(update={"sip_rtp": sip})})
    assert site_runtime(tls).plain_port == site.system.sip_rtp.sip_port


def test_the_site_gives_the_runtime_account_never_banned_networks_and_sip_ports() -> None:
    from wildix_ast.model.settings_file import load_site
    from wildix_ast.services.ami.account import site_runtime

    site = load_site(Path(__file__).resolve().parents[2] / "examples" / "site.yaml")
    runtime = site_runtime(site)
    assert runtime.ami_user == f"{site.system.manager.username}-runtime"
    assert [str(n) for n in site.system.sip_rtp.lan_networks] == \
        list(runtime.never_ban[:len(site.system.sip_rtp.lan_networks)])
    assert runtime.sip_ports[0] == site.system.sip_rtp.sip_port


def test_only_the_hosts_own_loopback_address_is_protected() -> None:
    """The lab's simulated remote phones use other 127/8 addresses: those are bannable."""
    assert never_banned(BanPolicy.with_networks([]), "127.0.0.1")
    assert not never_banned(BanPolicy.with_networks([]), "127.0.0.9")


def test_runtime_serve_keeps_the_plain_port_of_a_stored_tls_site(tmp_path: Path) -> None:
    """What `runtime serve` gives its firewall: the stored site's plain SIP port when TLS is
    on (a lab's own port when one is given), nothing without TLS."""
    from wildix_ast.model.settings_file import load_site
    from wildix_ast.services.ami.account import plain_sip_port
    from wildix_ast.store import open_store

    site = load_site(Path(__file__).resolve().parents[2] / "examples" / "site.yaml")
    sip = site.system.sip_rtp.model_copy(update={
        "tls_certificate": "/etc/asterisk/keys/pbx.crt",
        "tls_private_key": "/etc/asterisk/keys/pbx.key",
        "external_address": ipaddress.ip_address("203.0.113.7")})
    tls = site.model_validate(site.model_copy(update={"system": site.system.model_copy(
        update={"sip_rtp": sip})}).model_dump())
    plain, secure = str(tmp_path / "plain.sqlite3"), str(tmp_path / "tls.sqlite3")
    for db, stored in ((plain, site), (secure, tls)):
        with open_store(db) as store:
            store.import_site(stored)
    assert plain_sip_port(None, plain) == ()
    assert plain_sip_port(None, secure) == (site.system.sip_rtp.sip_port,)
    assert plain_sip_port([15060], secure) == (15060,)
