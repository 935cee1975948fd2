"""Free loopback ports for a lab instance: SIP (UDP and TCP), AMI (TCP) and an RTP range.

Several test runs may share one machine. Ports are picked at random from fixed slots below
the kernel's ephemeral range (so no outgoing connection is handed one of them), each checked
by binding it, and the slot is reserved with an `fcntl` lock on a file in a shared folder.
The reservation's file descriptor is inherited by Asterisk (see `Lab.start`), so the slot
stays taken exactly as long as the instance, or the process that allocated it, lives.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import random
import socket
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from wildix_ast.errors import LabError

LOOPBACK = "127.0.0.1"
SLOT_SIZE = 1024         # ports per slot: SIP, AMI, SIP TLS, then the RTP range
RTP_OFFSET = 16
# 4 ports a call (two legs, RTP + RTCP each): 250 calls at once, what bench/load.py's
# 100 calls/s need (200 ports failed 52 of 300 calls at 25 calls/s with 488).
RTP_COUNT = 1000
FIRST_SLOT_PORT = 10240  # below: well-known and commonly used ports
LAST_PORT = 32767        # Linux's ephemeral range starts at 32768 by default


@dataclass(frozen=True)
class LabPorts:
    """The loopback ports one instance listens on. SIP uses one number for UDP and TCP."""

    sip: int
    ami: int
    rtp_start: int
    rtp_end: int
    host: str = LOOPBACK

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, object]) -> LabPorts:
        def number(key: str) -> int:
            value = data[key]
            if not isinstance(value, int):
                raise ValueError(f"{key} is not a port number: {value!r}")
            return value

        return cls(sip=number("sip"), ami=number("ami"), rtp_start=number("rtp_start"),
                   rtp_end=number("rtp_end"), host=str(data.get("host", LOOPBACK)))

    @property
    def tls(self) -> int:
        """The SIP TLS port (the slot's spare port), bound only by sites with TLS."""
        return self.sip + 2

    def listening(self) -> list[tuple[str, int, str]]:
        """(protocol, port, purpose) of each port Asterisk binds at start."""
        return [("udp", self.sip, "SIP UDP"), ("tcp", self.sip, "SIP TCP"),
                ("tcp", self.ami, "AMI")]

    def __str__(self) -> str:
        return (f"SIP {self.host}:{self.sip} (UDP+TCP), AMI {self.host}:{self.ami}, "
                f"RTP {self.rtp_start}-{self.rtp_end}")


def port_in_use(protocol: str, port: int, host: str = LOOPBACK) -> bool:
    """True when binding `host:port` fails because someone holds it."""
    kind = socket.SOCK_DGRAM if protocol == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as probe:
        if kind == socket.SOCK_STREAM:
            # like Asterisk's listeners: TIME_WAIT leftovers do not count as taken
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


def check_ports_free(ports: LabPorts) -> None:
    """Raise LabError naming the first listening port another program already holds."""
    for protocol, port, purpose in ports.listening():
        if port_in_use(protocol, port, ports.host):
            raise LabError(f"port {port}/{protocol} ({purpose}) on {ports.host} is already "
                           f"in use by another program (see `ss -lnp{protocol[0]} "
                           f"sport = :{port}`); stop it, or let the lab pick free ports")


def reservations_dir() -> Path:
    """The folder shared by every wildix-ast process on this machine for slot locks."""
    path = Path(os.environ.get("WILDIX_AST_PORT_LOCKS",
                               Path(tempfile.gettempdir()) / "wildix-ast-ports"))
    path.mkdir(mode=0o1777, parents=True, exist_ok=True)
    return path


class PortReservation:
    """Ports plus the open, locked slot file that keeps other wildix-ast runs off them."""

    def __init__(self, ports: LabPorts, fd: int | None) -> None:
        self.ports = ports
        self.fd = fd

    def release(self) -> None:
        """Close our copy of the lock (a running Asterisk that inherited it keeps it)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __del__(self) -> None:
        with contextlib.suppress(OSError):
            self.release()


def _slot_ports(slot: int) -> LabPorts:
    base = FIRST_SLOT_PORT + slot * SLOT_SIZE
    return LabPorts(sip=base, ami=base + 1, rtp_start=base + RTP_OFFSET,
                    rtp_end=base + RTP_OFFSET + RTP_COUNT - 1)


def _slot_free(ports: LabPorts) -> bool:
    if any(port_in_use(protocol, port, ports.host) for protocol, port, _ in ports.listening()):
        return False
    return not any(port_in_use("udp", port, ports.host)
                   for port in range(ports.rtp_start, ports.rtp_end + 1))


def _lock_slot(slot: int) -> int | None:
    path = reservations_dir() / f"slot-{slot}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def reserve_slot_of(ports: LabPorts) -> PortReservation | None:
    """Reserve again the slot `ports` came from (a restart); None if another run holds it.
    Ports that are not one of our slots (chosen by hand) are returned without a lock."""
    offset = ports.sip - FIRST_SLOT_PORT
    slot = offset // SLOT_SIZE
    if offset < 0 or offset % SLOT_SIZE or _slot_ports(slot) != ports:
        return PortReservation(ports, None)
    fd = _lock_slot(slot)
    return PortReservation(ports, fd) if fd is not None else None


def allocate_ports(rng: random.Random | None = None, attempts: int = 64) -> PortReservation:
    """Pick a random free slot of loopback ports and reserve it."""
    chooser = rng or random.SystemRandom()
    slots = list(range((LAST_PORT + 1 - FIRST_SLOT_PORT) // SLOT_SIZE))
    chooser.shuffle(slots)
    for slot in slots[:attempts]:
        fd = _lock_slot(slot)
        if fd is None:
            continue  # another wildix-ast instance holds it
        ports = _slot_ports(slot)
        if _slot_free(ports):
            return PortReservation(ports, fd)
        os.close(fd)
    raise LabError(f"found no free block of {SLOT_SIZE} loopback ports between "
                   f"{FIRST_SLOT_PORT} and {LAST_PORT} after {attempts} tries: stop some "
                   "lab instances (wildix-ast lab status / down)")
