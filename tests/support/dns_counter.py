"""A DNS server on a loopback address that answers every query REFUSED and counts them: a
lab Asterisk pointed at it (`Lab(nameserver=...)`) shows every look-up it makes."""

from __future__ import annotations

import random
import socket
import threading
from types import TracebackType


class DnsCounter:
    """Listens on 127.53.x.y:53 (a loopback address of its own: port 53 of 127.0.0.1 may
    be taken, and parallel test runs each get one)."""

    def __init__(self) -> None:
        self.queries: list[str] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for _ in range(50):
            address = f"127.53.{random.randint(1, 254)}.{random.randint(1, 254)}"
            try:
                self._sock.bind((address, 53))
                break
            except OSError:
                continue
        else:
            raise RuntimeError("no free 127.53.x.y:53 for the DNS counter")
        self.address = address
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                data, peer = self._sock.recvfrom(4096)
            except OSError:
                return
            if len(data) < 12:
                continue
            with self._lock:
                self.queries.append(_question(data))
            # same id, QR=1, RCODE=5 (REFUSED), the question echoed: the resolver gives up
            reply = data[:2] + bytes([0x81 | (data[2] & 0x01), 0x05]) + data[4:6] + \
                b"\x00\x00\x00\x00\x00\x00" + data[12:]
            self._sock.sendto(reply, peer)

    def count(self) -> int:
        with self._lock:
            return len(self.queries)

    def names(self) -> list[str]:
        with self._lock:
            return list(self.queries)

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> DnsCounter:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()


def _question(packet: bytes) -> str:
    """The queried name of a DNS packet ('?' if it cannot be read)."""
    labels, position = [], 12
    try:
        while packet[position]:
            length = packet[position]
            labels.append(packet[position + 1:position + 1 + length].decode(errors="replace"))
            position += length + 1
    except IndexError:
        return "?"
    return ".".join(labels)
