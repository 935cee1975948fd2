"""Loopback ports for everything wildix-ast starts: lab Asterisks, SIPp phones, test servers.

Several runs (test sessions, labs, people) share one machine. Ports come in slots of
``SLOT_SIZE`` consecutive numbers between ``FIRST_SLOT_PORT`` and ``LAST_PORT``, below the
kernel's ephemeral range, so no outgoing connection is ever handed one of them. A slot is
reserved with an ``fcntl`` lock on a file in a folder every wildix-ast process shares
(:func:`reservations_dir`): the lock lasts as long as the open file descriptor, in this
process or in a child that inherited it, and another run skips a locked slot. Inside a
slot each port is still checked by binding it, since programs outside wildix-ast ignore
the locks.

Two users: a lab instance takes a whole slot and lays its SIP, AMI and RTP ports out in it
(``wildix_ast/lab/ports.py``); anything that needs a few ports at a time (a SIPp process,
a test database) takes them from this process's :class:`PortPool` through
:func:`free_port`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import random
import socket
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from wildix_ast.errors import LabError

LOOPBACK = "127.0.0.1"
# A lab instance lays SIP, AMI, SIP TLS and 1000 RTP ports out in one slot
# (wildix_ast/lab/ports.py).
SLOT_SIZE = 1024
FIRST_SLOT_PORT = 10240  # below: well-known and commonly used ports
LAST_PORT = 32767        # Linux's ephemeral range starts at 32768 by default
SLOT_COUNT = (LAST_PORT + 1 - FIRST_SLOT_PORT) // SLOT_SIZE


def port_in_use(protocol: str, port: int, host: str = LOOPBACK, *,
                reuse_address: bool = True) -> bool:
    """True when binding `host:port` fails because someone holds it.

    With `reuse_address` (the default, as Asterisk's listeners bind) a TCP port in
    TIME_WAIT counts as free; without it, as for SIPp's sockets, it counts as taken."""
    kind = socket.SOCK_DGRAM if protocol == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as probe:
        if kind == socket.SOCK_STREAM and reuse_address:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


def port_free(port: int, host: str = LOOPBACK) -> bool:
    """Free for both UDP and TCP, TIME_WAIT leftovers included as taken."""
    return not any(port_in_use(protocol, port, host, reuse_address=False)
                   for protocol in ("udp", "tcp"))


def reservations_dir() -> Path:
    """The folder shared by every wildix-ast process on this machine for slot locks."""
    path = Path(os.environ.get("WILDIX_AST_PORT_LOCKS",
                               Path(tempfile.gettempdir()) / "wildix-ast-ports"))
    path.mkdir(mode=0o1777, parents=True, exist_ok=True)
    return path


def slot_base(slot: int) -> int:
    """The first port of `slot`."""
    return FIRST_SLOT_PORT + slot * SLOT_SIZE


def slot_of(port: int) -> int | None:
    """The slot whose first port is `port`, or None when `port` starts no slot."""
    offset = port - FIRST_SLOT_PORT
    if offset < 0 or offset % SLOT_SIZE or offset // SLOT_SIZE >= SLOT_COUNT:
        return None
    return offset // SLOT_SIZE


def lock_slot(slot: int) -> int | None:
    """The open, locked file descriptor that reserves `slot`; None if another run holds it.
    The descriptor is not inherited by children unless passed on (`pass_fds`)."""
    path = reservations_dir() / f"slot-{slot}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def reserve_slot(fits: Callable[[int], bool] = lambda base: True, *,
                 rng: random.Random | None = None,
                 attempts: int = 64) -> tuple[int, int] | None:
    """(slot, locked fd) of a random unreserved slot whose first port `fits`; None if
    `attempts` slots were tried in vain."""
    chooser = rng or random.SystemRandom()
    slots = list(range(SLOT_COUNT))
    chooser.shuffle(slots)
    for slot in slots[:attempts]:
        fd = lock_slot(slot)
        if fd is None:
            continue
        if fits(slot_base(slot)):
            return slot, fd
        os.close(fd)
    return None


class PortPool:
    """Ports handed out one (or a few) at a time from slots this process reserved.

    Ports are handed out in turn through the slot, so a port comes back only after the
    whole slot went round: a program given a port has that long to bind it before anyone
    else in this process is offered it, and another process never is (the slot is ours).
    A slot with nothing free left makes the pool reserve another one."""

    def __init__(self, host: str = LOOPBACK) -> None:
        self.host = host
        self._lock = threading.Lock()
        self._slots: list[tuple[int, int]] = []  # (slot, fd)
        self._next = 0  # index into the ports of all our slots, in order

    def take(self, span: int = 1, *, even: bool = False) -> int:
        """The first of `span` consecutive ports, all free for UDP and TCP (an even one
        with `even`, as RTP wants)."""
        if not 1 <= span <= SLOT_SIZE:
            raise ValueError(f"span {span} does not fit in a slot of {SLOT_SIZE} ports")
        with self._lock:
            while True:
                found = self._scan(span, even)
                if found is not None:
                    return found
                self._grow()

    def _scan(self, span: int, even: bool) -> int | None:
        bases = [slot_base(slot) for slot, _ in self._slots]
        total = len(bases) * SLOT_SIZE
        for step in range(total):
            index = (self._next + step) % total
            base, offset = bases[index // SLOT_SIZE], index % SLOT_SIZE
            if (even and offset % 2) or offset + span > SLOT_SIZE:
                continue
            if all(port_free(port, self.host) for port in range(base + offset,
                                                                base + offset + span)):
                self._next = (index + span) % total
                return base + offset
        return None

    def _grow(self) -> None:
        reserved = reserve_slot()
        if reserved is None:
            raise LabError(f"found no free block of {SLOT_SIZE} loopback ports between "
                           f"{FIRST_SLOT_PORT} and {LAST_PORT}: stop some lab instances "
                           "(wildix-ast lab status / down) or other wildix-ast runs")
        self._next = len(self._slots) * SLOT_SIZE
        self._slots.append(reserved)

    def close(self) -> None:
        """Give our slots back (ports handed out and still bound stay with their owner)."""
        with self._lock:
            for _, fd in self._slots:
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._slots.clear()
            self._next = 0


_pools: dict[str, PortPool] = {}
_pools_lock = threading.Lock()


def free_port(host: str = LOOPBACK, *, span: int = 1, even: bool = False) -> int:
    """A port (or the first of `span` consecutive ports) free for UDP and TCP on `host`,
    from this process's pool: no other wildix-ast process and no earlier caller in this
    one is handed it while it may still be in use."""
    with _pools_lock:
        pool = _pools.get(host)
        if pool is None:
            pool = _pools[host] = PortPool(host)
    return pool.take(span, even=even)
