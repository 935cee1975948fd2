"""Play real phones with SIPp against a live Asterisk 22.

Until the lab module renders the project's own configuration, these tests start an
Asterisk from a copy of the probe root filesystem with a small hand-written
configuration that has the shape the generated one will have: PJSIP UDP+TCP transports
on loopback, endpoints 101/102 with digest auth, Dial → VoiceMail on busy/no answer,
``*43`` echo and ``*97`` VoiceMailMain.

Environment:
- ``WILDIX_SIPP_ROOT``: the root filesystem to run (default ``/tmp/sipp-root``); it is
  created by copying ``WILDIX_PROBE_ROOT`` (default ``/tmp/probe/root``) when missing.
  The probe root itself is never modified.
"""

from __future__ import annotations

import itertools
import os
import shutil
import struct
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from wildix_ast.sip_test import sipp
from wildix_ast.sip_test.sipp import CallResult, SippDriver, SippError

PROBE_ROOT = Path(os.environ.get("WILDIX_PROBE_ROOT", "/tmp/probe/root"))
SIPP_ROOT = Path(os.environ.get("WILDIX_SIPP_ROOT", "/tmp/sipp-root"))
RING_TIMEOUT = 3
PASSWORDS = {"101": "Pw101-xK9q2", "102": "Pw102-Lm4z8"}

MODULES = [
    "res_sorcery_config.so",
    "res_sorcery_memory.so",
    "res_sorcery_astdb.so",
    "res_timing_timerfd.so",
    "res_rtp_asterisk.so",
    "res_pjproject.so",
    "res_pjsip.so",
    "res_pjsip_session.so",
    "res_pjsip_pubsub.so",
    "res_pjsip_authenticator_digest.so",
    "res_pjsip_endpoint_identifier_user.so",
    "res_pjsip_registrar.so",
    "res_pjsip_sdp_rtp.so",
    "res_pjsip_caller_id.so",
    "res_pjsip_rfc3326.so",
    "res_pjsip_dtmf_info.so",
    "chan_pjsip.so",
    "pbx_config.so",
    "app_dial.so",
    "app_echo.so",
    "app_playback.so",
    "res_adsi.so",
    "res_smdi.so",
    "app_voicemail.so",
    "codec_ulaw.so",
    "codec_alaw.so",
    "codec_a_mu.so",
    "codec_gsm.so",
    "format_pcm.so",
    "format_gsm.so",
    "format_wav.so",
    "format_wav_gsm.so",
    "format_sln.so",
    "bridge_simple.so",
    "bridge_native_rtp.so",
    "func_channel.so",
    "func_callerid.so",
]

ASTERISK_CONF = """\
[directories]
astcachedir => /var/cache/asterisk
astetcdir => /etc/asterisk
astmoddir => /usr/lib/x86_64-linux-gnu/asterisk/modules
astvarlibdir => /var/lib/asterisk
astdbdir => /var/lib/asterisk
astkeydir => /var/lib/asterisk
astdatadir => /usr/share/asterisk
astagidir => /usr/share/asterisk/agi-bin
astspooldir => /var/spool/asterisk
astrundir => /var/run/asterisk
astlogdir => /var/log/asterisk
astsbindir => /usr/sbin

[options]
verbose = 3
defaultlanguage = en_US_f_Allison
"""

LOGGER_CONF = """\
[general]
[logfiles]
messages.log => notice,warning,error,verbose
"""


def _pjsip_conf(sip_port: int) -> str:
    parts = [
        "[global]\ntype=global\nendpoint_identifier_order=username\n",
        f"[transport-udp]\ntype=transport\nprotocol=udp\nbind=127.0.0.1:{sip_port}\n",
        f"[transport-tcp]\ntype=transport\nprotocol=tcp\nbind=127.0.0.1:{sip_port}\n",
    ]
    for ext, password in PASSWORDS.items():
        parts.append(
            f"[{ext}]\ntype=endpoint\ncontext=users\ndisallow=all\nallow=ulaw,alaw\n"
            f"auth={ext}\naors={ext}\ndirect_media=no\nrtp_symmetric=yes\n"
            f"callerid=User {ext} <{ext}>\n"
        )
        parts.append(f"[{ext}]\ntype=auth\nauth_type=digest\nusername={ext}\npassword={password}\n")
        # qualify: the phones' UAS must answer Asterisk's OPTIONS between calls
        parts.append(
            f"[{ext}]\ntype=aor\nmax_contacts=1\nremove_existing=yes\nqualify_frequency=1\n"
        )
    return "\n".join(parts)


EXTENSIONS_CONF = f"""\
[general]
static=yes
writeprotect=yes

[globals]
RING_TIMEOUT={RING_TIMEOUT}

[users]
exten => _1XX,1,NoOp(call to ${{EXTEN}})
 same => n,Dial(PJSIP/${{EXTEN}},${{RING_TIMEOUT}})
 same => n,GotoIf($["${{DIALSTATUS}}" = "BUSY"]?busy)
 same => n,VoiceMail(${{EXTEN}}@default,u)
 same => n,Hangup()
 same => n(busy),VoiceMail(${{EXTEN}}@default,b)
 same => n,Hangup()

exten => *43,1,Answer()
 same => n,Echo()
 same => n,Hangup()

exten => *97,1,VoiceMailMain(${{CALLERID(num)}}@default)
 same => n,Hangup()
"""

VOICEMAIL_CONF = """\
[general]
format=wav
attach=no

[default]
101 => 1010,User 101
102 => 1020,User 102
"""


@dataclass
class HandAsterisk:
    """An Asterisk 22 run from a chroot with the hand configuration."""

    root: Path
    sip_port: int
    process: subprocess.Popen[bytes]

    def cli(self, command: str, timeout: float = 10.0) -> str:
        done = subprocess.run(
            ["chroot", str(self.root), "asterisk", "-rx", command],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return done.stdout + done.stderr

    def active_channels(self) -> int:
        out = self.cli("core show channels count")
        for line in out.splitlines():
            if "active channel" in line:
                return int(line.split()[0])
        raise AssertionError(f"unexpected 'core show channels' output: {out!r}")

    def wait_no_channels(self, timeout: float = 10.0) -> int:
        deadline = time.monotonic() + timeout
        count = self.active_channels()
        while count and time.monotonic() < deadline:
            time.sleep(0.2)
            count = self.active_channels()
        return count

    def log(self) -> str:
        path = self.root / "var/log/asterisk/messages.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def contacts(self, ext: str) -> str:
        return self.cli(f"pjsip show aor {ext}")


def _prepare_root() -> Path:
    if not SIPP_ROOT.exists():
        if not PROBE_ROOT.exists():
            pytest.skip(f"no Asterisk root filesystem at {SIPP_ROOT} or {PROBE_ROOT}")
        subprocess.run(["cp", "-a", str(PROBE_ROOT), str(SIPP_ROOT)], check=True)
    return SIPP_ROOT


def _write_config(root: Path, sip_port: int) -> None:
    etc = root / "etc/asterisk"
    modules = "[modules]\nautoload = no\n" + "".join(f"load = {m}\n" for m in MODULES)
    files = {
        "asterisk.conf": ASTERISK_CONF,
        "modules.conf": modules,
        "logger.conf": LOGGER_CONF,
        "pjsip.conf": _pjsip_conf(sip_port),
        "extensions.conf": EXTENSIONS_CONF,
        "voicemail.conf": VOICEMAIL_CONF,
    }
    for name, text in files.items():
        (etc / name).write_text(text)
    log = root / "var/log/asterisk/messages.log"
    if log.exists():
        log.unlink()


@pytest.fixture(scope="module")
def asterisk() -> Iterator[HandAsterisk]:
    if os.geteuid() != 0:
        pytest.skip("needs root (chroot, mount namespaces)")
    if shutil.which("sipp") is None:
        pytest.skip("sipp (Debian package sip-tester) is not installed")
    root = _prepare_root()
    # an Asterisk left running in this root by an interrupted run owns its control
    # socket: stop it (it can only be ours, the root is this test's copy)
    stale = subprocess.run(
        ["chroot", str(root), "asterisk", "-rx", "core stop now"],
        capture_output=True,
        timeout=15,
        check=False,
    )
    if stale.returncode == 0:
        time.sleep(2)
    sip_port = sipp.free_port()
    _write_config(root, sip_port)
    script = (
        f"mount -t proc proc {root}/proc && mount --rbind /dev {root}/dev && "
        f"exec chroot {root} /usr/sbin/asterisk -f -n"
    )
    process = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    ast = HandAsterisk(root=root, sip_port=sip_port, process=process)
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"Asterisk exited with {process.returncode}")
            out = ast.cli("pjsip show transports")
            if f"127.0.0.1:{sip_port}" in out:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"Asterisk did not start: {out}")
            time.sleep(0.3)
        yield ast
    finally:
        if process.poll() is None:
            ast.cli("core stop now")
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


@pytest.fixture()
def driver(asterisk: HandAsterisk, tmp_path: Path) -> Iterator[SippDriver]:
    """A SIPp driver on the hand Asterisk; after each test no channel may be left."""
    yield SippDriver(asterisk.sip_port, work_dir=tmp_path / "sipp", timeout=30)
    left = asterisk.wait_no_channels()
    assert left == 0, asterisk.cli("core show channels verbose")


def _call_in_background(
    driver: SippDriver, from_ext: str, password: str, to: str, *, hold_seconds: float
) -> tuple[threading.Thread, list[CallResult]]:
    """Place a call in a thread, so the test can look at Asterisk during the call."""
    results: list[CallResult] = []

    def run() -> None:
        results.append(driver.call(from_ext, password, to, hold_seconds=hold_seconds))

    thread = threading.Thread(target=run)
    thread.start()
    return thread, results


def _wait_for_app(asterisk: HandAsterisk, app: str, timeout: float = 10.0) -> str:
    """Wait until a channel runs ``app``; return the concise channel list."""
    deadline = time.monotonic() + timeout
    out = ""
    while time.monotonic() < deadline:
        out = asterisk.cli("core show channels concise")
        if f"!{app}!" in out:
            return out
        time.sleep(0.2)
    raise AssertionError(f"no channel in {app}: {out!r}")


# ------------------------------------------------------------------ offline checks


@pytest.mark.parametrize(
    "name", ["register.xml", "uac_call.xml", "uas_answer.xml", "uas_busy.xml", "uas_ring.xml"]
)
def test_scenarios_are_shipped_and_well_formed(name: str) -> None:
    root = ET.parse(sipp.scenario_path(name)).getroot()
    assert root.tag == "scenario"


def test_call_scenario_hold_is_rewritable() -> None:
    text = sipp.scenario_path("uac_call.xml").read_text()
    assert len(sipp._HOLD.findall(text)) == 1


def test_parse_message_trace_and_stats() -> None:
    trace = (
        "----------------------------------------------- 2026-11-27 07:33:44.676182\n"
        "UDP message sent (349 bytes):\n\n"
        "INVITE sip:102@127.0.0.1:5060 SIP/2.0\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1\n"
        "Call-ID: 1-2@127.0.0.1\nCSeq: 1 INVITE\nContent-Length: 3\n\nv=0\n\n"
        "----------------------------------------------- 2026-11-27 07:33:44.677574\n"
        "UDP message received [474] bytes :\n\n"
        "SIP/2.0 401 Unauthorized\nCall-ID: 1-2@127.0.0.1\nCSeq: 1 INVITE\n"
        'WWW-Authenticate: Digest realm="asterisk"\nContent-Length:  0\n\n\n'
        "----------------------------------------------- 2026-11-27 07:33:44.777574\n"
        "UDP message received [474] bytes :\n\n"
        "SIP/2.0 200 OK\ni: 1-2@127.0.0.1\nCSeq: 2 INVITE\nContent-Length:  0\n\n"
    )
    messages = sipp.parse_message_trace(trace)
    assert [m.start_line.split()[1] for m in messages] == ["sip:102@127.0.0.1:5060", "401", "200"]
    assert messages[0].direction == "sent" and messages[0].body == "v=0"
    assert messages[1].method == "INVITE" and messages[1].status == 401
    assert messages[2].call_id == "1-2@127.0.0.1" and messages[2].cseq == (2, "INVITE")
    stats = sipp.parse_stat_csv("StartTime;SuccessfulCall(C);FailedCall(C);\na;0;0;\nb;7;2;\n")
    assert stats["SuccessfulCall(C)"] == "7" and stats["FailedCall(C)"] == "2"


def test_free_ports_are_distinct_and_free() -> None:
    ports = {sipp.free_port() for _ in range(20)}
    assert len(ports) == 20
    media = sipp.free_port(span=4, even=True)
    assert media % 2 == 0


@pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp is not installed")
def test_timeouts_when_nobody_answers(tmp_path: Path) -> None:
    silent = sipp.free_port()  # nothing listens there
    driver = SippDriver(silent, work_dir=tmp_path, timeout=2)
    started = time.monotonic()
    call = driver.call("101", "pw", "102", timeout=2)
    assert time.monotonic() - started < 8
    assert not call.success and call.final_status is None
    assert call.run.sipp_timed_out, call.run.describe()
    assert [m.request_method for m in call.run.messages][:2] == ["INVITE", "INVITE"]
    uas = driver.answer("102", timeout=1).wait()
    assert not uas.success and uas.invites == 0


def test_missing_sipp_binary_is_reported() -> None:
    with pytest.raises(SippError):
        SippDriver(5060, sipp_binary="no-such-sipp-binary")


# ------------------------------------------------------------------ live Asterisk


@pytest.mark.lab
def test_register_and_unregister(driver: SippDriver, asterisk: HandAsterisk) -> None:
    contact_port = sipp.free_port()
    result = driver.register("101", PASSWORDS["101"], contact_port=contact_port)
    assert result.check().status == 200
    assert f"sip:101@127.0.0.1:{contact_port}" in asterisk.contacts("101")
    gone = driver.unregister("101", PASSWORDS["101"], contact_port=contact_port)
    assert gone.check().status == 200
    assert f"sip:101@127.0.0.1:{contact_port}" not in asterisk.contacts("101")


@pytest.mark.lab
def test_register_wrong_password_is_rejected(driver: SippDriver, asterisk: HandAsterisk) -> None:
    contact_port = sipp.free_port()
    result = driver.register(
        "101", "not-the-password", contact_port=contact_port, expect="rejected"
    )
    assert result.ok, result.run.describe()
    assert result.status in (401, 403)
    assert not result.registered
    assert f":{contact_port}" not in asterisk.contacts("101")
    with pytest.raises(SippError):
        driver.register("101", "not-the-password", contact_port=contact_port).check()


@pytest.mark.lab
def test_unknown_endpoint_cannot_register(driver: SippDriver) -> None:
    result = driver.register("999", "whatever", expect="rejected")
    assert result.ok, result.run.describe()


@pytest.mark.lab
def test_call_answered_and_hung_up(driver: SippDriver) -> None:
    with driver.phone("102", PASSWORDS["102"], behaviour="answer") as phone:
        call = driver.call("101", PASSWORDS["101"], "102", hold_seconds=2)
        assert call.check().connected
    uas = phone.uas.wait()
    assert call.statuses[0] == 401  # the digest challenge
    assert call.final_status == 200 and call.hangup_by == "local"
    assert 2.0 <= call.duration < 10, call.duration
    assert uas.success, uas.run.describe()
    assert (uas.invites, uas.answered, uas.byes) == (1, 1, 1)


@pytest.mark.lab
def test_busy_phone_sends_caller_to_voicemail(driver: SippDriver, asterisk: HandAsterisk) -> None:
    with driver.phone("102", PASSWORDS["102"], behaviour="busy") as phone:
        thread, results = _call_in_background(
            driver, "101", PASSWORDS["101"], "102", hold_seconds=3
        )
        channels = _wait_for_app(asterisk, "VoiceMail")
        thread.join(timeout=60)
    uas = phone.uas.wait()
    call = results[0].check()
    assert "102@default,b" in channels
    assert call.final_status == 200  # answered by Asterisk's VoiceMail
    assert uas.busy == 1 and uas.answered == 0, uas.run.describe()


@pytest.mark.lab
def test_unanswered_phone_sends_caller_to_voicemail_after_ring_timeout(
    driver: SippDriver, asterisk: HandAsterisk
) -> None:
    with driver.phone("102", PASSWORDS["102"], behaviour="ignore") as phone:
        thread, results = _call_in_background(
            driver, "101", PASSWORDS["101"], "102", hold_seconds=2
        )
        channels = _wait_for_app(asterisk, "VoiceMail", timeout=RING_TIMEOUT + 10)
        thread.join(timeout=60)
    uas = phone.uas.wait()
    call = results[0].check()
    assert "102@default,u" in channels
    assert 180 in call.statuses and call.final_status == 200
    assert call.duration >= RING_TIMEOUT + 2
    assert uas.cancelled == 1 and uas.answered == 0, uas.run.describe()
    assert uas.success, uas.run.describe()


@pytest.mark.lab
def test_unregistered_phone_goes_straight_to_voicemail(
    driver: SippDriver, asterisk: HandAsterisk
) -> None:
    call = driver.call("101", PASSWORDS["101"], "102", hold_seconds=1).check()
    assert call.duration < RING_TIMEOUT + 2
    assert 'VoiceMail("PJSIP/101-' in asterisk.log()


@pytest.mark.lab
@pytest.mark.parametrize(
    ("from_ext", "password"),
    [("999", "whatever"), ("101", "not-the-password")],
    ids=["unknown-endpoint", "wrong-password"],
)
def test_call_without_valid_credentials_is_rejected(
    driver: SippDriver, from_ext: str, password: str
) -> None:
    call = driver.call(from_ext, password, "102", expect="reject")
    assert call.check().success
    assert not call.connected
    assert call.final_status in (401, 403, 407)
    # and the same call expecting to connect is reported as a failure
    with pytest.raises(SippError):
        driver.call(from_ext, password, "102").check()


def _channel_stats(asterisk: HandAsterisk) -> tuple[int, int]:
    """RTP packets (received, sent) of the first channel in ``pjsip show channelstats``."""
    out = asterisk.cli("pjsip show channelstats")
    for line in out.splitlines():
        fields = line.split()
        # [BridgeId] ChannelId UpTime Codec RxCount RxLost RxPct RxJitter TxCount ...
        for i, value in enumerate(fields):
            if value.startswith("101-") and len(fields) >= i + 8:
                return int(fields[i + 3]), int(fields[i + 7])
    raise AssertionError(f"no channel of 101 in: {out}")


@pytest.mark.lab
def test_echo_test_answers_and_echoes_audio(driver: SippDriver, asterisk: HandAsterisk) -> None:
    results: list[CallResult] = []

    def run() -> None:
        results.append(
            driver.call("101", PASSWORDS["101"], "*43", hold_seconds=3, audio=sipp.AUDIO_PCAP)
        )

    thread = threading.Thread(target=run)
    thread.start()
    _wait_for_app(asterisk, "Echo")
    time.sleep(1.5)
    received, sent = _channel_stats(asterisk)
    thread.join(timeout=60)
    call = results[0].check()
    assert call.final_status == 200 and call.hangup_by == "local"
    assert received > 20 and sent > 20, (received, sent)


@pytest.mark.lab
@pytest.mark.parametrize(
    ("pin", "prompt"),
    [("1010", "vm-youhave"), ("9999", "vm-incorrect")],
    ids=["right-pin", "wrong-pin"],
)
def test_voicemail_main_login_with_dtmf(
    driver: SippDriver, asterisk: HandAsterisk, pin: str, prompt: str
) -> None:
    before = len(asterisk.log())
    call = driver.call("101", PASSWORDS["101"], "*97", hold_seconds=1.5, dtmf=pin + "#")
    assert call.check().final_status == 200
    log = asterisk.log()[before:]
    assert 'VoiceMailMain("PJSIP/101-' in log and '"101@default")' in log, log
    assert f"Playing '{prompt}." in log, log


def test_dtmf_pcap_has_rising_sequence_and_timestamps(tmp_path: Path) -> None:
    length = sipp.write_dtmf_pcap(tmp_path / "d.pcap", "1010#", tone=0.1, gap=0.4)
    assert length == pytest.approx(2.5)
    data = (tmp_path / "d.pcap").read_bytes()
    offset, rtp = 24, []
    while offset < len(data):
        incl = struct.unpack("<IIII", data[offset : offset + 16])[2]
        frame = data[offset + 16 : offset + 16 + incl]
        rtp.append(frame[14 + 20 + 8 :])
        offset += 16 + incl
    assert len(rtp) == 5 * (5 + 3)
    seqs = [struct.unpack("!H", p[2:4])[0] for p in rtp]
    assert all(b == (a + 1) & 0xFFFF for a, b in itertools.pairwise(seqs))
    stamps = sorted({struct.unpack("!I", p[4:8])[0] for p in rtp})
    assert len(stamps) == 5  # one timestamp per event, all different
    events = [p[12] for p in rtp if p[1] & 0x80]  # marker bit: first packet of an event
    assert events == [1, 0, 1, 0, 11]
    with pytest.raises(SippError):
        sipp.write_dtmf_pcap(tmp_path / "x.pcap", "12A")


@pytest.mark.lab
def test_call_load_between_two_phones(driver: SippDriver) -> None:
    calls = 12
    with driver.phone("102", PASSWORDS["102"], calls=calls, timeout=120) as phone:
        load = driver.call_load(
            "101", PASSWORDS["101"], "102", calls=calls, rate=6, limit=6, hold_seconds=1
        )
    uas = phone.uas.wait()
    assert load.success, load.run.describe()
    assert (load.successful, load.failed, load.connected) == (calls, 0, calls)
    assert uas.answered == calls and uas.byes == calls, uas.run.describe()


@pytest.mark.lab
def test_call_load_counts_rejected_calls(driver: SippDriver) -> None:
    load = driver.call_load("101", "not-the-password", "102", calls=3, rate=10, limit=3)
    assert not load.success
    assert load.connected == 0 and load.rejected == 3, load.run.describe()


@pytest.mark.lab
def test_phone_answers_qualify_options_between_calls(driver: SippDriver) -> None:
    with driver.phone("102", PASSWORDS["102"], calls=2) as phone:
        time.sleep(1.5)  # qualify_frequency=1: OPTIONS reach the phone's UAS
        for _ in range(2):
            driver.call("101", PASSWORDS["101"], "102", hold_seconds=0.5).check()
        uas = phone.uas.wait(timeout=10)
    assert uas.options >= 1, uas.run.describe()
    assert (uas.invites, uas.answered, uas.completed) == (2, 2, 2)
    assert uas.success, uas.run.describe()


@pytest.mark.lab
def test_call_over_tcp(asterisk: HandAsterisk, tmp_path: Path) -> None:
    tcp = SippDriver(asterisk.sip_port, transport="tcp", work_dir=tmp_path / "tcp")
    with tcp.phone("102", PASSWORDS["102"]) as phone:
        assert ";transport=TCP" in asterisk.contacts("102")
        call = tcp.call("101", PASSWORDS["101"], "102", hold_seconds=1).check()
    uas = phone.uas.wait()
    assert call.final_status == 200 and call.hangup_by == "local"
    assert uas.success and uas.answered == 1, uas.run.describe()
    assert asterisk.wait_no_channels() == 0


@pytest.mark.lab
def test_caller_gives_up_while_ringing(driver: SippDriver, asterisk: HandAsterisk) -> None:
    before = len(asterisk.log())
    with driver.phone("102", PASSWORDS["102"], behaviour="ignore") as phone:
        call = driver.call("101", PASSWORDS["101"], "102", cancel_after=1.0)
        uas = phone.uas.wait(timeout=10)
    assert call.check().final_status == 487 and not call.connected
    assert 180 in call.statuses
    assert uas.cancelled == 1 and uas.success, uas.run.describe()
    assert "VoiceMail(" not in asterisk.log()[before:]


@pytest.mark.lab
def test_call_load_survives_dialplan_reloads(driver: SippDriver, asterisk: HandAsterisk) -> None:
    calls = 15
    with driver.phone("102", PASSWORDS["102"], calls=calls, timeout=120) as phone:
        handle = driver.start_call_load(
            "101", PASSWORDS["101"], "102", calls=calls, rate=5, limit=5, hold_seconds=1
        )
        reloads = 0
        while handle.running() and reloads < 5:
            time.sleep(0.5)
            assert "Dialplan reloaded" in asterisk.cli("dialplan reload")
            reloads += 1
        load = handle.wait()
        uas = phone.uas.wait(timeout=30)
    assert reloads >= 3
    assert load.success, load.run.describe()
    assert uas.completed == calls, uas.run.describe()


@pytest.mark.lab
def test_two_way_audio_through_the_bridge(driver: SippDriver, asterisk: HandAsterisk) -> None:
    """The caller plays G.711, the callee echoes it: RTP flows both ways via Asterisk."""
    with driver.phone("102", PASSWORDS["102"], rtp_echo=True) as phone:
        results: list[CallResult] = []

        def run() -> None:
            results.append(
                driver.call("101", PASSWORDS["101"], "102", hold_seconds=3, audio=sipp.AUDIO_PCAP)
            )

        thread = threading.Thread(target=run)
        thread.start()
        time.sleep(2.5)
        received, sent = _channel_stats(asterisk)
        thread.join(timeout=60)
    results[0].check()
    assert phone.uas.wait().success
    assert received > 20 and sent > 20, (received, sent)
