"""The loopback ports of a lab instance: SIP (UDP and TCP), AMI (TCP) and an RTP range.

A lab takes one whole slot of the project's port allocator (`wildix_ast/lab/allocator.py`: random
slots below the kernel's ephemeral range, each reserved with an `fcntl` lock in a shared
folder) and lays its ports out in it. The reservation's file descriptor is inherited by
Asterisk (see `Lab.start`), so the slot stays taken exactly as long as the instance, or the
process that allocated it, lives.
"""

from __future__ import annotations

import contextlib
import os
import random
from dataclasses import asdict, dataclass

from wildix_ast.errors import LabError
from wildix_ast.lab.allocator import (
    FIRST_SLOT_PORT,
    LAST_PORT,
    LOOPBACK,
    SLOT_SIZE,
    lock_slot,
    port_in_use,
    reserve_slot,
    slot_base,
    slot_of,
)

# SIP, AMI, SIP TLS, then the RTP range, in a slot of SLOT_SIZE ports.
RTP_OFFSET = 16
# 4 ports a call (two legs, RTP + RTCP each): 250 calls at once, what bench/load.py's
# 100 calls/s need (200 ports failed 52 of 300 calls at 25 calls/s with 488).
RTP_COUNT = 1000


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

    @property
    def agi(self) -> int:
        """Where the lab's dialplan asks the FastAGI service (a test or a person starts
        `wildix-ast agi serve --port` there); nothing listens by default, so calls take the
        dialplan's direct path, never another lab's service."""
        return self.sip + 3

    def listening(self) -> list[tuple[str, int, str]]:
        """(protocol, port, purpose) of each port Asterisk binds at start."""
        return [("udp", self.sip, "SIP UDP"), ("tcp", self.sip, "SIP TCP"),
                ("tcp", self.ami, "AMI")]

    def __str__(self) -> str:
        return (f"SIP {self.host}:{self.sip} (UDP+TCP), AMI {self.host}:{self.ami}, "
                f"RTP {self.rtp_start}-{self.rtp_end}")


def check_ports_free(ports: LabPorts) -> None:
    """Raise LabError naming the first listening port another program already holds."""
    for protocol, port, purpose in ports.listening():
        if port_in_use(protocol, port, ports.host):
            raise LabError(f"port {port}/{protocol} ({purpose}) on {ports.host} is already "
                           f"in use by another program (see `ss -lnp{protocol[0]} "
                           f"sport = :{port}`); stop it, or let the lab pick free ports")


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


def _layout(base: int) -> LabPorts:
    return LabPorts(sip=base, ami=base + 1, rtp_start=base + RTP_OFFSET,
                    rtp_end=base + RTP_OFFSET + RTP_COUNT - 1)


def _slot_free(base: int) -> bool:
    ports = _layout(base)
    if any(port_in_use(protocol, port, ports.host) for protocol, port, _ in ports.listening()):
        return False
    return not any(port_in_use("udp", port, ports.host)
                   for port in range(ports.rtp_start, ports.rtp_end + 1))


def reserve_slot_of(ports: LabPorts) -> PortReservation | None:
    """Reserve again the slot `ports` came from (a restart); None if another run holds it.
    Ports that are not one of our slots (chosen by hand) are returned without a lock."""
    slot = slot_of(ports.sip)
    if slot is None or _layout(slot_base(slot)) != ports:
        return PortReservation(ports, None)
    fd = lock_slot(slot)
    return PortReservation(ports, fd) if fd is not None else None


def allocate_ports(rng: random.Random | None = None, attempts: int = 64) -> PortReservation:
    """Pick a random free slot of loopback ports and reserve it."""
    reserved = reserve_slot(_slot_free, rng=rng, attempts=attempts)
    if reserved is None:
        raise LabError(f"found no free block of {SLOT_SIZE} loopback ports between "
                       f"{FIRST_SLOT_PORT} and {LAST_PORT} after {attempts} tries: stop some "
                       "lab instances (wildix-ast lab status / down)")
    slot, fd = reserved
    return PortReservation(_layout(slot_base(slot)), fd)
