"""WMS "SIP bloqués": failed authentications and unknown-endpoint attempts counted per source
address; past `threshold` within `window` seconds the address is banned for `ban_time`.

The policy is pure functions over an immutable `SecurityState` (every function takes `now`),
so it is tested without Asterisk or a clock. Addresses in `BanPolicy.never_ban` (the site's
LAN networks and trunks, loopback) are counted for the record but never banned. How a ban is
enforced (a rendered PJSIP ACL, a firewall rule) is decided elsewhere: `banned_networks` is
what it needs.

The input is Asterisk's security events, as AMI delivers them (`read = security`):
`InvalidAccountID` (unknown endpoint), `ChallengeResponseFailed` / `InvalidPassword` (wrong
password), `FailedACL`, ... each with `RemoteAddress: IPV4/UDP/203.0.113.7/5060`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Security events that count as an attempt against the PBX.
FAILURE_EVENTS = frozenset({
    "InvalidAccountID",         # unknown endpoint / user
    "ChallengeResponseFailed",  # wrong digest password
    "InvalidPassword",          # wrong password (AMI, other services)
    "FailedACL",                # refused by an ACL
    "UnexpectedAddress",
    "AuthMethodNotAllowed",
    "RequestNotAllowed",
})

#: The host itself (Asterisk, the services, local tools). Only the canonical addresses: other
#: 127/8 addresses are what the lab's simulated remote phones use, and bannable like them.
LOOPBACK = (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("::1/128"))


@dataclass(frozen=True)
class BanPolicy:
    threshold: int = 20          # attempts within the window that ban
    window: float = 60.0         # seconds
    ban_time: float = 3600.0     # seconds a ban lasts
    never_ban: tuple[IpNetwork, ...] = LOOPBACK

    def __post_init__(self) -> None:
        if self.threshold < 1 or self.window <= 0 or self.ban_time <= 0:
            raise ValueError("threshold, window and ban_time must be positive")

    @classmethod
    def with_networks(cls, networks: Iterable[str], **settings: Any) -> BanPolicy:
        """A policy that never bans loopback nor `networks` (CIDR or single addresses)."""
        parsed = tuple(ipaddress.ip_network(n, strict=False) for n in networks)
        return cls(never_ban=LOOPBACK + parsed, **settings)


@dataclass(frozen=True)
class Ban:
    address: str
    since: float
    until: float
    attempts: int
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"address": self.address, "since": self.since, "until": self.until,
                "attempts": self.attempts, "reason": self.reason}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Ban:
        return cls(address=str(data["address"]), since=float(data["since"]),
                   until=float(data["until"]), attempts=int(data["attempts"]),
                   reason=str(data["reason"]))


@dataclass(frozen=True)
class SecurityState:
    """Recent attempt times per address, and the bans in force."""

    attempts: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    bans: Mapping[str, Ban] = field(default_factory=dict)


def source_address(event: Mapping[str, str]) -> str | None:
    """The peer address of a security event (`IPV4/UDP/203.0.113.7/5060` -> `203.0.113.7`),
    normalised; None when absent or not an IP address."""
    remote = event.get("RemoteAddress", "")
    parts = remote.split("/")
    candidate = parts[2] if len(parts) >= 3 else remote
    try:
        return str(ipaddress.ip_address(candidate.strip("[]")))
    except ValueError:
        return None


def is_attempt(event: Mapping[str, str]) -> bool:
    return event.get("Event", "") in FAILURE_EVENTS


def never_banned(policy: BanPolicy, address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return any(ip in network for network in policy.never_ban if network.version == ip.version)


def record_attempt(state: SecurityState, policy: BanPolicy, address: str, now: float,
                   reason: str) -> tuple[SecurityState, Ban | None]:
    """Count one attempt; the new state, and the Ban it caused (None if none)."""
    recent = tuple(t for t in state.attempts.get(address, ()) if now - t < policy.window)
    recent = (*recent, now)[-policy.threshold:]  # nothing older can matter
    attempts = {**state.attempts, address: recent}
    current = state.bans.get(address)
    if (current is not None and current.until > now) or never_banned(policy, address) \
            or len(recent) < policy.threshold:
        return replace(state, attempts=attempts), None
    ban = Ban(address=address, since=now, until=now + policy.ban_time, attempts=len(recent),
              reason=reason)
    attempts.pop(address)
    return SecurityState(attempts=attempts, bans={**state.bans, address: ban}), ban


def record_event(state: SecurityState, policy: BanPolicy, event: Mapping[str, str],
                 now: float) -> tuple[SecurityState, Ban | None]:
    """`record_attempt` for an AMI security event; other events leave the state as is."""
    if not is_attempt(event):
        return state, None
    address = source_address(event)
    if address is None:
        return state, None
    reason = event.get("Event", "")
    if event.get("AccountID"):
        reason += f" ({event.get('Service', '?')} account {event['AccountID']})"
    return record_attempt(state, policy, address, now, reason)


def expire(state: SecurityState, policy: BanPolicy, now: float) -> SecurityState:
    """Drop ended bans and attempts older than the window."""
    bans = {a: b for a, b in state.bans.items() if b.until > now}
    attempts = {a: kept for a, times in state.attempts.items()
                if (kept := tuple(t for t in times if now - t < policy.window))}
    return SecurityState(attempts=attempts, bans=bans)


def unban(state: SecurityState, address: str) -> tuple[SecurityState, bool]:
    """Lift a ban (and forget its attempts); False if the address was not banned."""
    key = str(ipaddress.ip_address(address))
    if key not in state.bans:
        return state, False
    bans = {a: b for a, b in state.bans.items() if a != key}
    attempts = {a: t for a, t in state.attempts.items() if a != key}
    return SecurityState(attempts=attempts, bans=bans), True


def active_bans(state: SecurityState, now: float) -> list[Ban]:
    return sorted((b for b in state.bans.values() if b.until > now), key=lambda b: b.since)


def banned_networks(state: SecurityState, now: float) -> list[IpNetwork]:
    """What an enforcement (PJSIP ACL `deny=`, firewall) must refuse now: one host network
    (/32 or /128) per banned address."""
    return [ipaddress.ip_network(b.address) for b in active_bans(state, now)]


def enforceable(state: SecurityState, policy: BanPolicy, now: float) -> list[IpNetwork]:
    """`banned_networks` without the addresses the policy never bans: the bans file is also
    written by another service (the provisioning server bans scanners), so the firewall
    checks again that no ban in it cuts off the LAN or a trunk."""
    return [n for n in banned_networks(state, now)
            if not never_banned(policy, str(n.network_address))]
