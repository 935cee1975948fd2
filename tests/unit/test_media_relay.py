"""The lab's lossy SIP/media relay (wildix_ast/lab/media_relay.py) between two plain UDP legs:
SDP points each leg at the relay, media crosses with the seeded loss and keeps its order,
T.38's UDPTL is counted apart, and datagrams that are not SIP do not stop it."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from wildix_ast.lab.media_relay import MediaRelay

HOST = "127.0.0.1"


def _udp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((HOST, 0))
    sock.settimeout(2)
    return sock


def _sip(first: str, call: str, media: str, port: int) -> bytes:
    body = (f"v=0\r\no=- 1 1 IN IP4 {HOST}\r\ns=-\r\nc=IN IP4 {HOST}\r\nt=0 0\r\n"
            f"m={media} {port} {'udptl t38' if media == 'image' else 'RTP/AVP 8'}\r\n")
    return (f"{first}\r\nVia: SIP/2.0/UDP {HOST};branch=z9hG4bK1\r\nCall-ID: {call}\r\n"
            f"CSeq: 1 INVITE\r\nContent-Type: application/sdp\r\n"
            f"Content-Length: {len(body)}\r\n\r\n{body}").encode()


def _announced(message: bytes) -> tuple[str, int]:
    head, _, body = message.partition(b"\r\n\r\n")
    length = int(re.search(rb"Content-Length: (\d+)", head)[1])  # type: ignore[index]
    assert length == len(body)
    address = re.search(rb"c=IN IP4 (\S+)", body)[1].decode()  # type: ignore[index]
    port = int(re.search(rb"m=\S+ (\d+)", body)[1])  # type: ignore[index]
    return address, port


class Legs:
    def __init__(self) -> None:
        self.left_sip, self.right_sip = _udp(), _udp()
        self.left_media, self.right_media = _udp(), _udp()
        self.relay = MediaRelay(HOST, self.left_sip.getsockname(),
                                self.right_sip.getsockname(), loss=0.1, jitter=0.02, seed=7)

    def offer_answer(self, call: str, media: str = "audio") -> tuple[int, int]:
        """(port the left leg sends media to, port the right leg sends to)."""
        self.left_sip.sendto(_sip("INVITE sip:1@x SIP/2.0", call, media,
                                  self.left_media.getsockname()[1]),
                             (HOST, self.relay.left_port))
        offer, _ = self.right_sip.recvfrom(65535)
        assert call.encode() in offer
        address, to_right = _announced(offer)
        assert address == HOST and to_right != self.left_media.getsockname()[1]
        self.right_sip.sendto(_sip("SIP/2.0 200 OK", call, media,
                                   self.right_media.getsockname()[1]),
                              (HOST, self.relay.right_port))
        answer, _ = self.left_sip.recvfrom(65535)
        _, to_left = _announced(answer)
        assert to_left != self.right_media.getsockname()[1]
        return to_left, to_right


@pytest.fixture
def legs() -> Iterator[Legs]:
    running = Legs()
    running.relay.start()
    yield running
    running.relay.stop()
    for sock in (running.left_sip, running.right_sip, running.left_media,
                 running.right_media):
        sock.close()


def _stream(legs: Legs, to: int, count: int) -> list[int]:
    """Send `count` numbered datagrams from the left leg; what the right leg receives (read
    while sending: a socket buffer holds only a few hundred small datagrams)."""
    got: list[int] = []

    def receive() -> None:
        legs.right_media.settimeout(0.5)
        try:
            while True:
                data, source = legs.right_media.recvfrom(65535)
                assert source[0] == HOST
                got.append(int.from_bytes(data[:4], "big"))
        except TimeoutError:
            pass

    reader = threading.Thread(target=receive)
    reader.start()
    for n in range(count):
        legs.left_media.sendto(n.to_bytes(4, "big") + b"x" * 160, (HOST, to))
        time.sleep(0.002)  # paced (RTP is 50 a second)
    reader.join()
    return got


def test_media_crosses_the_relay_with_the_seeded_loss_in_order(legs: Legs) -> None:
    to_left, _ = legs.offer_answer("call-1")
    got = _stream(legs, to_left, 500)
    assert 400 <= len(got) <= 490, len(got)  # 10 % loss
    assert got == sorted(got)  # jitter delays, never reorders
    totals = legs.relay.totals()
    assert totals[("rtp", "dropped")] == 500 - len(got)
    assert totals[("rtp", "forwarded")] == len(got)


def test_t38_media_is_counted_as_udptl_per_call(legs: Legs) -> None:
    to_left, _ = legs.offer_answer("call-fax", "image")
    got = _stream(legs, to_left, 100)
    assert legs.relay.call_counts("call-fax")[("udptl", "forwarded")] == len(got) > 0
    assert legs.relay.call_counts("call-fax")[("rtp", "forwarded")] == 0


def test_garbage_does_not_stop_the_relay(legs: Legs) -> None:
    legs.left_sip.sendto(b"\x00\xff garbage", (HOST, legs.relay.left_port))
    # an SDP whose m= line is broken is passed as it is
    broken = _sip("INVITE sip:1@x SIP/2.0", "call-2", "audio", 4000).replace(
        b"m=audio 4000", b"m=audio x")
    legs.left_sip.sendto(broken, (HOST, legs.relay.left_port))
    assert legs.right_sip.recvfrom(65535)[0] == b"\x00\xff garbage"
    # passed with its body as it was (Content-Length made right)
    assert legs.right_sip.recvfrom(65535)[0].partition(b"\r\n\r\n")[2] == \
        broken.partition(b"\r\n\r\n")[2]
    to_left, _ = legs.offer_answer("call-3")
    assert _stream(legs, to_left, 50)
