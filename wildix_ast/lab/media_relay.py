"""A user-space SIP and media relay between two lab legs that loses and delays media
(the kernel here has no netem): what fax over SIP must survive (issue 20, must-show 2).

Two SIP sockets on the relay's address: the sender's trunk sends to `left_port`, the site's
trunk (`host`, `right_port` in the site's settings) sends to `right_port`; every SIP datagram
is passed to the other side unchanged but for its SDP body, whose connection addresses and
media ports are replaced by a pair of relay sockets per media stream (Call-ID, m-line index,
media type), one facing each side. Each leg therefore sees only the relay: its SIP peer (the
trunks' `rewrite_contact`/`force_rport` keep in-dialog requests on it) and its media peer.

Media datagrams (RTP, its RTCP on the next port, and UDPTL, T.38's transport) arriving on a
stream's socket go out of the other side's socket to that side's announced address, after
a seeded schedule: each is dropped with probability `loss`, else held for a delay drawn
uniformly in [0, `jitter`] seconds, never leaving before the datagram ahead of it in the
same direction (delay varies, order is kept, as on one congested path). SIP is not
impaired: signalling loss is retransmission's business, not the fax's.

`stats` counts what passed and what was dropped, per call and per kind ("rtp", "rtcp",
"udptl"), so a test can tell a T.38 fax (UDPTL datagrams through the relay) from one that
fell back to audio.
"""

from __future__ import annotations

import contextlib
import heapq
import random
import re
import selectors
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

_SDP_TYPE = re.compile(rb"^(?:content-type|c)\s*:\s*application/sdp", re.I | re.M)
_CALL_ID = re.compile(rb"^(?:call-id|i)\s*:\s*(\S+)", re.I | re.M)
_LENGTH = re.compile(rb"^(content-length|l)\s*:\s*\d+", re.I | re.M)
_MEDIA = re.compile(rb"^m=(\S+) (\d+)( .*)$")
_CONNECTION = re.compile(rb"^c=IN IP4 (\S+)$")
MAX_DATAGRAM = 65535


@dataclass
class _Stream:
    """One media stream of a call: a socket facing each side (plus RTCP's for RTP), and
    where each side said it receives."""

    call: str
    kind: str
    sockets: dict[str, list[socket.socket]]
    peer: dict[str, tuple[str, int] | None] = field(
        default_factory=lambda: {"left": None, "right": None})


def _bind_pair(host: str, rtcp: bool) -> list[socket.socket]:
    """A UDP socket on `host` (and, for RTP, one on the next port for RTCP)."""
    for _ in range(200):
        first = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        first.bind((host, 0))
        if not rtcp:
            return [first]
        port = first.getsockname()[1]
        if port % 2 == 0 and port < 65535:
            second = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                second.bind((host, port + 1))
            except OSError:
                second.close()
            else:
                return [first, second]
        first.close()
    raise OSError(f"no free even/odd port pair on {host}")


class MediaRelay:
    """The relay; `start()` runs it in a thread, `stop()` ends it and closes every socket."""

    def __init__(self, host: str, left: tuple[str, int], right: tuple[str, int], *,
                 loss: float = 0.01, jitter: float = 0.040, seed: int = 20) -> None:
        self.host = host
        self.peers = {"left": left, "right": right}
        self.loss = loss
        self.jitter = jitter
        self._random = random.Random(seed)
        self._sip: dict[str, socket.socket] = {}
        for side in ("left", "right"):
            sip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sip.bind((host, 0))
            self._sip[side] = sip
        self._streams: dict[tuple[str, int, str], _Stream] = {}
        self._selector = selectors.DefaultSelector()
        self._queue: list[tuple[float, int, socket.socket, bytes, tuple[str, int]]] = []
        self._sequence = 0
        self._last_release: dict[int, float] = {}
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        #: (call id, kind, "forwarded" | "dropped") -> datagrams
        self.stats: Counter[tuple[str, str, str]] = Counter()

    @property
    def left_port(self) -> int:
        """Where the sender's trunk sends SIP."""
        return int(self._sip["left"].getsockname()[1])

    @property
    def right_port(self) -> int:
        """Where the site's trunk sends SIP (its `port`)."""
        return int(self._sip["right"].getsockname()[1])

    def start(self) -> None:
        for side, sip in self._sip.items():
            sip.setblocking(False)
            self._selector.register(sip, selectors.EVENT_READ, ("sip", side, None))
        self._thread = threading.Thread(target=self._run, name="media-relay", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for key in list(self._selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self._selector.close()

    def totals(self) -> Counter[tuple[str, str]]:
        """(kind, "forwarded" | "dropped") -> datagrams over every call."""
        with self._lock:
            out: Counter[tuple[str, str]] = Counter()
            for (_, kind, what), count in self.stats.items():
                out[(kind, what)] += count
            return out

    def reset_stats(self) -> None:
        with self._lock:
            self.stats.clear()

    def call_counts(self, call_id: str) -> Counter[tuple[str, str]]:
        with self._lock:
            return Counter({(kind, what): n for (call, kind, what), n in self.stats.items()
                            if call == call_id})

    def calls(self) -> list[str]:
        with self._lock:
            return sorted({call for call, _, _ in self.stats})

    # ------------------------------------------------------------------ the loop
    def _run(self) -> None:
        while not self._stopping.is_set():
            wait = 0.2
            if self._queue:
                wait = max(0.0, min(wait, self._queue[0][0] - time.monotonic()))
            for key, _ in self._selector.select(wait):
                self._receive(key.fileobj, key.data)  # type: ignore[arg-type]
            now = time.monotonic()
            while self._queue and self._queue[0][0] <= now:
                _, _, out, data, to = heapq.heappop(self._queue)
                # the far leg's socket may be gone (call over): lost, as on a network
                with contextlib.suppress(OSError):
                    out.sendto(data, to)

    def _receive(self, sock: socket.socket, data: tuple[str, str, _Stream | None]) -> None:
        kind, side, stream = data
        try:
            payload, _ = sock.recvfrom(MAX_DATAGRAM)
        except OSError:
            return
        other = "right" if side == "left" else "left"
        if kind == "sip":
            payload = self._rewrite_sip(payload, side)
            self._sip[other].sendto(payload, self.peers[other])
            return
        assert stream is not None
        to = stream.peer[other]
        if to is None:
            return  # the far side has not said where it receives yet
        index = stream.sockets[side].index(sock)
        out = stream.sockets[other][index]
        media = "rtcp" if index == 1 else stream.kind
        if index == 1:  # RTCP (reports, not media): passed as is
            to = (to[0], to[1] + 1)
            with self._lock:
                self.stats[(stream.call, media, "forwarded")] += 1
            out.sendto(payload, to)
            return
        if self._random.random() < self.loss:
            with self._lock:
                self.stats[(stream.call, media, "dropped")] += 1
            return
        with self._lock:
            self.stats[(stream.call, media, "forwarded")] += 1
        flow = id(out)
        release = max(time.monotonic() + self._random.uniform(0.0, self.jitter),
                      self._last_release.get(flow, 0.0))
        self._last_release[flow] = release
        self._sequence += 1
        heapq.heappush(self._queue, (release, self._sequence, out, payload, to))

    def _rewrite_sip(self, message: bytes, side: str) -> bytes:
        """The SIP datagram from `side` with its SDP pointing at the relay's sockets."""
        head, separator, body = message.partition(b"\r\n\r\n")
        if not separator or not body or not _SDP_TYPE.search(head):
            return message
        found = _CALL_ID.search(head)
        if found is None:
            return message
        call = found[1].decode("ascii", "replace")
        lines = body.split(b"\r\n")
        session_address: bytes | None = None
        for line in lines:
            if line.startswith(b"m="):
                break
            session_line = _CONNECTION.match(line)
            if session_line:
                session_address = session_line[1]
        out: list[bytes] = []
        index = -1
        for at, line in enumerate(lines):
            media = _MEDIA.match(line)
            if media:
                index += 1
                kind, port = media[1].decode("ascii", "replace"), int(media[2])
                address: bytes | None = session_address
                for later in lines[at + 1:]:  # a media-level c= wins
                    if later.startswith(b"m="):
                        break
                    found_address = _CONNECTION.match(later)
                    if found_address:
                        address = found_address[1]
                if port != 0 and address is not None:
                    stream = self._stream(call, index, kind)
                    stream.peer[side] = (address.decode("ascii"), port)
                    facing = "right" if side == "left" else "left"
                    port = stream.sockets[facing][0].getsockname()[1]
                out.append(b"m=%s %d%s" % (media[1], port, media[3]))
            elif _CONNECTION.match(line):
                out.append(b"c=IN IP4 " + self.host.encode("ascii"))
            else:
                out.append(line)
        new_body = b"\r\n".join(out)
        head = _LENGTH.sub(lambda m: m[1] + b": " + str(len(new_body)).encode(), head)
        return head + separator + new_body

    def _stream(self, call: str, index: int, kind: str) -> _Stream:
        key = (call, index, kind)
        stream = self._streams.get(key)
        if stream is None:
            media = "udptl" if kind == "image" else "rtp"
            sockets = {side: _bind_pair(self.host, rtcp=media == "rtp")
                       for side in ("left", "right")}
            stream = _Stream(call, media, sockets)
            for side, pair in sockets.items():
                for sock in pair:
                    sock.setblocking(False)
                    self._selector.register(sock, selectors.EVENT_READ, ("media", side, stream))
            self._streams[key] = stream
        return stream
