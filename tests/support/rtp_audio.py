"""A G.711 A-law RTP stream of any length, as a pcap SIPp plays (`play_pcap_audio`):
sip-tester's own speech pcap lasts 7 s, and Asterisk stops recording a voicemail when no
audio comes for 2 s, so a test that records longer needs its own."""

from __future__ import annotations

import math
import os
import socket
import struct
from pathlib import Path

_FRAME = 160  # 20 ms at 8 kHz


def _alaw(sample: int) -> int:
    """One 16-bit linear sample to G.711 A-law (ITU-T G.711's segment encoding)."""
    sign = 0x80 if sample >= 0 else 0
    magnitude = min(abs(sample), 32767) >> 3
    if magnitude < 32:
        code = magnitude >> 1
    else:
        segment = magnitude.bit_length() - 5
        code = (segment << 4) | ((magnitude >> segment) & 0x0F)
    return int((code | sign) ^ 0x55)


def _checksum(header: bytes) -> int:
    total: int = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def write_tone_pcap(path: Path, seconds: float, frequency: float = 440.0) -> Path:
    """A `seconds` long 440 Hz tone as RTP payload type 8 (PCMA), 20 ms a packet."""
    period = [_alaw(round(8000 * math.sin(2 * math.pi * frequency * n / 8000)))
              for n in range(8000)]
    ssrc = int.from_bytes(os.urandom(4), "big")
    with path.open("wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for index in range(round(seconds * 50)):
            start = index * _FRAME % 8000
            payload = bytes(period[start:start + _FRAME])
            rtp = struct.pack("!BBHII", 0x80, 8 | (0x80 if index == 0 else 0),
                              index & 0xFFFF, index * _FRAME, ssrc) + payload
            udp = struct.pack("!HHHH", 6000, 6000, 8 + len(rtp), 0) + rtp
            ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), index & 0xFFFF,
                                       0, 64, 17, 0, socket.inet_aton("127.0.0.1"),
                                       socket.inet_aton("127.0.0.1")))
            ip[10:12] = struct.pack("!H", _checksum(bytes(ip)))
            frame = b"\x00" * 12 + b"\x08\x00" + bytes(ip) + udp
            at = index * 0.02
            out.write(struct.pack("<IIII", int(at), round((at - int(at)) * 1e6), len(frame),
                                  len(frame)))
            out.write(frame)
    return path
