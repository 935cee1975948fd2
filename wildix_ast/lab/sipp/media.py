"""RTP a SIPp caller plays once connected: G.711 speech from sip-tester's pcaps, and RFC 2833
DTMF written as a pcap of our own."""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Callable
from pathlib import Path
from xml.sax.saxutils import quoteattr

from wildix_ast.lab.sipp.errors import SippError

#: where SIPp's Debian package keeps its G.711 and RFC 2833 DTMF pcaps
PCAP_DIR = Path("/usr/share/sip-tester")
#: G.711 A-law speech (7 s) shipped with sip-tester
AUDIO_PCAP = PCAP_DIR / "g711a.pcap"

_DTMF_EVENTS = {**{d: int(d) for d in "0123456789"}, "*": 10, "#": 11}


def write_dtmf_pcap(
    path: Path,
    digits: str,
    *,
    payload_type: int = 101,
    tone: float = 0.1,
    gap: float = 0.4,
) -> float:
    """Write RFC 2833 telephone-events for ``digits`` as a pcap SIPp can play.

    SIPp's ``play_pcap_audio`` sends the RTP headers of the pcap unchanged, and the
    per-digit pcaps of sip-tester all start with the same sequence number and
    timestamp, so Asterisk drops a repeated digit ("1010" arrives as "10") as a
    duplicate event.  This writes one stream with rising sequence numbers and
    timestamps instead.  Returns the stream's length in seconds.
    """
    unknown = sorted(set(digits) - set(_DTMF_EVENTS))
    if unknown:
        raise SippError(f"no RFC 2833 event for {''.join(unknown)!r} (only 0-9, *, #)")
    ssrc = int.from_bytes(os.urandom(4), "big")
    seq = int.from_bytes(os.urandom(2), "big") & 0x7FFF
    rtp_ts = int.from_bytes(os.urandom(4), "big") & 0x0FFFFFFF
    packets: list[tuple[float, bytes]] = []
    clock = 0.0
    steps = max(1, round(tone / 0.02))
    for digit in digits:
        event = _DTMF_EVENTS[digit]
        for i in range(steps + 3):  # tone packets, then the end packet sent 3 times
            end = i >= steps
            duration = 160 * min(i + 1, steps)
            marker = 0x80 if i == 0 else 0
            rtp = struct.pack(
                "!BBHII", 0x80, marker | payload_type, seq & 0xFFFF, rtp_ts, ssrc
            ) + struct.pack("!BBH", event, (0x80 if end else 0) | 10, duration)
            packets.append((clock + 0.02 * min(i, steps), rtp))
            seq += 1
        step = tone + gap
        clock += step
        rtp_ts = (rtp_ts + round(step * 8000)) & 0xFFFFFFFF
    with path.open("wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for ident, (at, rtp) in enumerate(packets):
            udp = struct.pack("!HHHH", 6000, 6000, 8 + len(rtp), 0) + rtp
            ip = bytearray(
                struct.pack(
                    "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), ident & 0xFFFF, 0, 64, 17, 0,
                    socket.inet_aton("127.0.0.1"), socket.inet_aton("127.0.0.1"),
                )
            )  # fmt: skip
            ip[10:12] = struct.pack("!H", _ip_checksum(bytes(ip)))
            frame = b"\x00" * 12 + b"\x08\x00" + bytes(ip) + udp
            sec = int(at)
            out.write(struct.pack("<IIII", sec, round((at - sec) * 1e6), len(frame), len(frame)))
            out.write(frame)
    return clock


def _ip_checksum(header: bytes) -> int:
    words: tuple[int, ...] = struct.unpack(f"!{len(header) // 2}H", header)
    total = sum(words)
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def media_xml(audio: Path | None, dtmf: str, dtmf_delay: float) -> Callable[[Path], str]:
    """SIPp elements (built in the run directory given) that play ``audio`` and ``dtmf``."""

    def play(pcap: Path) -> str:
        if not pcap.is_file():
            raise SippError(f"pcap {pcap} not found (Debian package sip-tester)")
        return f"<nop><action><exec play_pcap_audio={quoteattr(str(pcap))}/></action></nop>"

    def build(run_dir: Path) -> str:
        parts: list[str] = []
        if audio is not None:
            parts.append(play(audio))
        if dtmf:
            pcap = run_dir / "dtmf.pcap"
            length = write_dtmf_pcap(pcap, dtmf)
            parts.append(f'<pause milliseconds="{max(1, round(dtmf_delay * 1000))}"/>')
            parts.append(play(pcap))
            parts.append(f'<pause milliseconds="{round(length * 1000) + 200}"/>')
        return "\n  ".join(parts)

    return build
