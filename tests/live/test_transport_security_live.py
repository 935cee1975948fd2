"""Issue 17, item 4, on a live Asterisk 22: the TLS transport as a scanner sees it, SRTP that
really encrypts the sound_files, SRTP required refusing a plain call, and the address a phone
outside `lan_networks` is told (NAT). The lab's site has TLS; the test phones on 127.0.0.1
are inside `lan_networks`, one on 127.0.0.3 plays a remote phone (127.0.0.2 is the
example's IP trunk)."""

from __future__ import annotations

import base64
import contextlib
import re
import secrets
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pylibsrtp
import pytest
from support.live_site import LAB_EXTERNAL_ADDRESS, LiveSite, example_site, live_site
from support.sip_ua import Agent, Message, sdp
from test_phones_live import contact_status

from wildix_ast.model.common import Srtp

pytestmark = pytest.mark.lab

#: the example's ACL group of user 101; its phones must use SRTP
REQUIRED_GROUP = "direction"
#: a phone outside lan_networks (the lab's TLS site has 127.0.0.1/32 in them)
REMOTE = "127.0.0.3"


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveSite]:
    site = example_site()
    groups = [g.model_copy(update={"srtp": Srtp.REQUIRED}) if g.name == REQUIRED_GROUP else g
              for g in site.groups]
    site = site.model_copy(update={"groups": groups})
    assert next(u for u in site.users if u.extension == "101").group == REQUIRED_GROUP
    assert next(u for u in site.users if u.extension == "102").group != REQUIRED_GROUP
    with live_site(tmp_path_factory.mktemp("transport"), "transport", site, tls=True) as live:
        yield live


@pytest.fixture
def live(secure: LiveSite) -> Iterator[LiveSite]:
    yield secure
    assert secure.wait_no_channels(10) == 0, "channels left after the test"


def phone(live: LiveSite, ext: str, transport: str, address: str = "127.0.0.1") -> Agent:
    port = live.lab.ports.tls if transport == "tls" else live.lab.ports.sip  # UDP and TCP
    return Agent(ext, live.password(ext), port, transport, local_ip=address)


# --- TLS as a scanner sees it -----------------------------------------------------------------

def handshake(port: int, *options: str) -> tuple[bool, str]:
    """(whether `openssl s_client` with `options` completes a handshake, what it printed)."""
    done = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", *options],
                          input="", capture_output=True, text=True, timeout=20, check=False)
    text = done.stdout + done.stderr
    match = re.search(r"Cipher is (\S+)", text)
    return match is not None and match.group(1) != "(NONE)", text


def test_tls_accepts_only_modern_protocols_and_aead_ciphers(live: LiveSite) -> None:
    # Before: TLS 1.3 refused (method tlsv1_2), AES128-SHA (static RSA, CBC, SHA-1) accepted.
    port = live.lab.ports.tls
    accepted, text = handshake(port, "-tls1_3")
    assert accepted and "TLSv1.3" in text, text
    for cipher in ("ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384",
                   "ECDHE-RSA-CHACHA20-POLY1305"):
        accepted, text = handshake(port, "-tls1_2", "-cipher", cipher)
        assert accepted and f"Cipher is {cipher}" in text, text
    # CBC (with ECDHE, SHA-1 and SHA-256 MACs), static RSA (GCM and CBC): all refused
    for cipher in ("ECDHE-RSA-AES128-SHA", "ECDHE-RSA-AES256-SHA384", "AES128-GCM-SHA256",
                   "AES256-GCM-SHA384", "AES128-SHA", "AES256-SHA256"):
        accepted, text = handshake(port, "-tls1_2", "-cipher", cipher)
        assert not accepted, f"{cipher} accepted:\n{text}"
    for version in ("-tls1_1", "-tls1"):
        accepted, text = handshake(port, version, "-cipher", "DEFAULT@SECLEVEL=0")
        assert not accepted, f"{version} accepted:\n{text}"
        assert "protocol version" in text, text


# --- SRTP -------------------------------------------------------------------------------------

def sound_files(answer: Message) -> tuple[str, int]:
    address = re.search(r"c=IN IP4 (\S+)", answer.body)
    port = re.search(r"m=audio (\d+)", answer.body)
    assert address and port, answer.body
    return address.group(1), int(port.group(1))


def rtp(seq: int, payload: bytes, ssrc: int) -> bytes:
    return struct.pack("!BBHII", 0x80, 8, seq, seq * 160, ssrc) + payload


def test_srtp_call_over_tls_carries_encrypted_media(live: LiveSite) -> None:
    # Before: no test sent sound_files; SRTP was optimistic only. The phone (user 101, SRTP
    # required) calls the echo test over TLS with SDES, sends SRTP-protected PCMA with its
    # key, and reads what Asterisk sends back: not the PCMA it sent, but SRTP that Asterisk's
    # key (from its SDP answer) decrypts to that PCMA.
    ua = phone(live, "101", "tls")
    media_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        media_sock.bind(("127.0.0.1", 0))
        media_sock.setblocking(False)
        assert ua.register().status == 200
        ours = secrets.token_bytes(30)  # AES_CM_128 master key + salt
        offer = sdp(media_sock.getsockname()[1], {8: "PCMA/8000"},
                    crypto=base64.b64encode(ours).decode())
        answer, call_id = ua.call("*43", offer)
        assert answer.status == 200, answer.first
        assert "RTP/SAVP" in answer.body, answer.body
        crypto = re.search(r"a=crypto:\d+ AES_CM_128_HMAC_SHA1_80 inline:([A-Za-z0-9+/=]+)",
                           answer.body)
        assert crypto is not None, answer.body
        theirs = base64.b64decode(crypto.group(1))
        assert theirs != ours
        protect = pylibsrtp.Session(policy=pylibsrtp.Policy(
            key=ours, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
        unprotect = pylibsrtp.Session(policy=pylibsrtp.Policy(
            key=theirs, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND))
        sent = {bytes([seq % 256]) * 160 for seq in range(1, 101)}  # distinct 20 ms frames
        wire: list[bytes] = []
        ssrc = secrets.randbits(32)
        for seq in range(1, 101):
            media_sock.sendto(protect.protect(rtp(seq, bytes([seq % 256]) * 160, ssrc)),
                              sound_files(answer))
            time.sleep(0.02)
            with contextlib.suppress(BlockingIOError):
                while True:
                    wire.append(media_sock.recv(2048))
        assert len(wire) >= 20, f"only {len(wire)} packets came back"
        # on the wire: never the plain PCMA sent, and 10 bytes longer (the SRTP auth tag)
        assert not any(packet[12:] in sent for packet in wire)
        assert all(len(packet) == 12 + 160 + 10 for packet in wire)
        decrypted = [unprotect.unprotect(packet)[12:] for packet in wire]
        echoed = [payload for payload in decrypted if payload in sent]
        assert len(echoed) >= 10, "Asterisk's SRTP did not decrypt to the audio sent"
        bye = ua.hangup(answer, call_id)
        assert bye is not None and bye.status == 200
        assert ua.register(expires=0).status == 200
    finally:
        media_sock.close()
        ua.close()


def test_srtp_required_refuses_a_plain_offer(live: LiveSite) -> None:
    # Before: media_encryption_optimistic=yes everywhere: a call without crypto got plain RTP.
    ua = phone(live, "101", "tls")
    try:
        answer, _ = ua.call("*43", sdp(43000, {8: "PCMA/8000"}))
        assert answer.status == 488, answer.first
        assert "a=crypto" not in answer.body
    finally:
        ua.close()


def sdes_offer(port: int, address: str = "127.0.0.1") -> str:
    return sdp(port, {8: "PCMA/8000"}, address=address,
               crypto=base64.b64encode(secrets.token_bytes(30)).decode())


def test_sdes_offer_over_udp_gets_no_key_back(live: LiveSite) -> None:
    # Before: a UDP INVITE offering SDES got Asterisk's key back in clear. User 101 is a
    # TLS phone: its call over UDP or TCP is refused before any SDP answer, and nothing
    # Asterisk sends back carries a key.
    for transport in ("udp", "tcp"):
        ua = phone(live, "101", transport)
        try:
            answer, _ = ua.call("*43", sdes_offer(45000))
            assert answer.status == 488, (transport, answer.first)
            assert not [m.first for m in ua.received if "a=crypto" in m.body], transport
        finally:
            ua.close()


def qualified(live: LiveSite, agent: Agent, ext: str) -> str:
    """The contact's status once Asterisk's first qualify is answered or given up (the
    dialplan sends a call to a phone whose status is still unknown to its voicemail); the
    agent reads (and answers) what comes meanwhile."""
    deadline = time.monotonic() + 8
    while contact_status(live, ext) not in ("Avail", "Unavail") and time.monotonic() < deadline:
        agent.receive(0.2)
    return contact_status(live, ext)


def test_tls_phone_receives_calls_over_tls_with_srtp(live: LiveSite) -> None:
    # The TLS phone's endpoint sends over the TLS transport: a call from a LAN phone reaches
    # it on its TLS connection, offering SRTP (required), and is answered.
    callee = phone(live, "101", "tls")
    caller = phone(live, "102", "udp")
    try:
        assert callee.register().status == 200
        assert qualified(live, callee, "101") == "Avail"
        answered: dict[str, Message | None] = {}

        def answer() -> None:
            answered["invite"] = callee.answer_call(sdes_offer(48000), 20)

        thread = threading.Thread(target=answer)
        thread.start()
        response, call_id = caller.call("101", sdp(48010, {8: "PCMA/8000"}))
        assert response.status == 200, response.first
        bye = caller.hangup(response, call_id)
        assert bye is not None and bye.status == 200
        thread.join()  # the callee answered, then got the BYE
        invite = answered["invite"]
        assert invite is not None, "\n".join([
            "no INVITE over TLS; the callee got:", *(m.first for m in callee.received),
            live.lab.cli("pjsip show contacts"), live.lab.cli("pjsip show channels"),
            "the lab's log ends:",
            *(live.lab.log_dir / "messages.log").read_text(errors="replace").splitlines()[-12:]])
        assert "RTP/SAVP" in invite.body and "a=crypto:" in invite.body, invite.body
        assert callee.register(expires=0).status == 200
    finally:
        callee.close()
        caller.close()


def test_tls_phone_is_reached_over_tls_only(live: LiveSite) -> None:
    # Asterisk 22 cannot refuse a REGISTER by transport: a TLS phone registered over UDP is
    # still sent nothing over UDP (no qualify, no INVITE with its SDES key): the endpoint's
    # transport is TLS, so the contact is unreachable and a call to it goes to voicemail.
    callee = phone(live, "101", "udp")
    caller = phone(live, "102", "udp")
    try:
        assert callee.register().status == 200
        assert qualified(live, callee, "101") == "Unavail"
        assert [m.first for m in callee.received if m.method is not None] == []
        answer, call_id = caller.call("101", sdp(46000, {8: "PCMA/8000"}))
        invite = callee.wait_for("INVITE", 3)
        assert invite is None, invite.body
        if answer.status == 200:  # the voicemail
            caller.hangup(answer, call_id)
        assert not [m.first for m in callee.received if "a=crypto" in m.body]
        assert callee.register(expires=0).status == 200
    finally:
        callee.close()
        caller.close()


def acl_refusals(log: Path, offset: int) -> set[str]:
    """`METHOD/TRANSPORT` of the requests from 127.0.0.3 that the endpoint ACL refused,
    logged since `offset`: the distributor names the method and Call-ID, the security event
    the transport."""
    with open(log, encoding="utf-8", errors="replace") as handle:
        handle.seek(offset)
        lines = handle.read().splitlines()
    methods: dict[str, str] = {}
    transports: dict[str, str] = {}
    for line in lines:
        refused = re.search(r"Request '(\w+)' from '<sip:102@[^']*>' failed for "
                            r"'127\.0\.0\.3:\d+' \(callid: ([^)]+)\) - Not match Endpoint ACL",
                            line)
        if refused:
            methods[refused.group(2)] = refused.group(1)
        event = re.search(r'SecurityEvent="FailedACL".*SessionID="([^"]+)".*'
                          r'RemoteAddress="IPV4/(\w+)/127\.0\.0\.3/', line)
        if event:
            transports[event.group(1)] = event.group(2)
    return {f"{methods[call]}/{transports[call]}" for call in methods.keys() & transports.keys()}


def test_lan_phone_is_refused_outside_lan_networks(live: LiveSite) -> None:
    # Before: UDP and TCP stayed open to every phone from anywhere once TLS was on. User 102
    # is a LAN phone (no SRTP): from 127.0.0.3, outside lan_networks, its REGISTER and INVITE
    # are refused over UDP, TCP and TLS, with the right password (Asterisk answers an ACL
    # failure like a wrong password, 401, and logs it as FailedACL); from 127.0.0.1 it
    # registers.
    log = live.lab.log_dir / "messages.log"
    offset = log.stat().st_size
    for transport in ("udp", "tcp", "tls"):
        ua = phone(live, "102", transport, REMOTE)
        try:
            assert ua.register().status in (401, 403), transport
            answer, _ = ua.call("*43", sdp(47000, {8: "PCMA/8000"}, address=REMOTE))
            assert answer.status in (401, 403), (transport, answer.first)
        finally:
            ua.close()
    expected = {f"{method}/{transport}" for method in ("REGISTER", "INVITE")
                for transport in ("UDP", "TCP", "TLS")}
    refused: set[str] = set()
    deadline = time.monotonic() + 5
    while refused != expected and time.monotonic() < deadline:
        time.sleep(0.2)
        refused = acl_refusals(log, offset)
    assert refused == expected
    inside = phone(live, "102", "udp")
    try:
        assert inside.register().status == 200
        assert inside.register(expires=0).status == 200
    finally:
        inside.close()


# --- NAT --------------------------------------------------------------------------------------

def echo_answer(live: LiveSite, address: str) -> Message:
    ua = phone(live, "101", "tls", address)
    try:
        answer, call_id = ua.call("*43", sdes_offer(44000, address))
        assert answer.status == 200, answer.first
        bye = ua.hangup(answer, call_id)
        assert bye is not None and bye.status == 200
        return answer
    finally:
        ua.close()


def test_remote_phone_is_told_the_external_address(live: LiveSite) -> None:
    # Before: TLS without external_address was accepted: a phone outside lan_networks got
    # the host's private address and sent its audio nowhere.
    remote = echo_answer(live, REMOTE)
    assert sound_files(remote)[0] == str(LAB_EXTERNAL_ADDRESS), remote.body
    inside = echo_answer(live, "127.0.0.1")
    assert sound_files(inside)[0] == "127.0.0.1", inside.body


# --- the plain SIP port, kept to the LAN by the AMI service's firewall chain ------------------

def test_the_firewall_keeps_the_plain_sip_port_to_the_lan_and_the_trunks(live: LiveSite) -> None:
    """Asterisk takes a TLS phone's REGISTER over UDP from anywhere (it cannot refuse a
    request by transport): the AMI service's chain, built from the site as `runtime serve`
    builds it, keeps the UDP/TCP port to the LAN and the trunks. From 127.0.0.3 (outside
    lan_networks) the REGISTER over UDP and TCP gets nothing back, over TLS it registers;
    from 127.0.0.1 (the LAN) UDP still registers."""
    import ipaddress
    import os
    import shutil

    from wildix_ast.services.ami.account import site_runtime
    from wildix_ast.services.ami.firewall import Firewall

    if os.geteuid() != 0 or shutil.which("iptables") is None:
        pytest.skip("needs root and iptables")
    runtime = site_runtime(live.compiled.site)
    assert runtime.plain_port is not None  # TLS on: the service keeps the plain port
    plain = live.lab.ports.sip
    outside = Agent("101", live.password("101"), plain, "udp", timeout=2.0, local_ip=REMOTE)
    try:
        assert outside.register().status == 200  # before: taken over UDP from anywhere
        assert outside.register(expires=0).status == 200
    finally:
        outside.close()
    firewall = Firewall((plain,), chain=f"wxa-plain-{os.getpid()}", plain_ports=(plain,),
                        plain_from=tuple(ipaddress.ip_network(n) for n in runtime.never_ban))
    firewall.apply([])
    try:
        outside = Agent("101", live.password("101"), plain, "udp", timeout=2.0,
                        local_ip=REMOTE)
        try:
            with pytest.raises(TimeoutError):
                outside.register()
        finally:
            outside.close()
        with pytest.raises(OSError):  # the TCP handshake itself is dropped
            Agent("101", live.password("101"), plain, "tcp", timeout=2.0, local_ip=REMOTE)
        over_tls = phone(live, "101", "tls", REMOTE)
        try:
            assert over_tls.register().status == 200
            assert over_tls.register(expires=0).status == 200
        finally:
            over_tls.close()
        inside = phone(live, "102", "udp")
        try:
            assert inside.register().status == 200
            assert inside.register(expires=0).status == 200
        finally:
            inside.close()
    finally:
        assert firewall.remove()
