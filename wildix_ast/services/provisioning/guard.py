"""Who may still ask the provisioning server: misses (a file for an unknown MAC, a wrong or
old credential, a name that is no phone's file) counted per source address; at
`threshold` within `window` seconds the address is banned through the SIP ban service's
file (`services.ami.ban_file`), so `wildix-ast security bans` lists it, `security unban`
lifts it, and the AMI service's firewall drops the address's SIP packets too. The server
itself refuses a banned address's connections before reading a byte of them.

The counting is the SIP policy's (`services.ami.security.record_attempt`): loopback is
never banned; the LAN is (phones and scanners sit on the same LAN: the threshold, not the
network, tells them apart)."""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from wildix_ast.services.ami.ban_file import BANS_FILE, load_bans, update_bans
from wildix_ast.services.ami.security import (
    LOOPBACK,
    Ban,
    BanPolicy,
    IpNetwork,
    SecurityState,
    record_attempt,
)

log = logging.getLogger(__name__)

FOLLOW_EVERY = 1.0
"""Seconds between looks at the ban file for bans and unbans made by others."""


class Guard:
    """Thread-safe miss counter and ban check for the server's worker threads."""

    def __init__(self, state_dir: Path | None, threshold: int = 10, window: float = 3600.0,
                 ban_time: float = 3600.0, never_ban: tuple[IpNetwork, ...] = LOOPBACK,
                 clock: Callable[[], float] = time.time) -> None:
        self.state_dir = state_dir
        self.policy = BanPolicy(threshold=threshold, window=window, ban_time=ban_time,
                                never_ban=never_ban)
        self.clock = clock
        self._lock = threading.Lock()
        self._state = SecurityState()
        self._banned: dict[str, float] = {}
        self._mtime: float | None = None
        self._looked = 0.0

    def _follow(self, now: float) -> None:
        """Adopt the ban file's bans (another service's, an unban) at most once a second."""
        if self.state_dir is None or now - self._looked < FOLLOW_EVERY:
            return
        self._looked = now
        try:
            mtime = (self.state_dir / BANS_FILE).stat().st_mtime
        except FileNotFoundError:
            mtime = None
        if mtime == self._mtime:
            return
        self._mtime = mtime
        try:
            bans = load_bans(self.state_dir)
        except Exception as exc:  # a broken file must not stop the server from refusing
            log.error("cannot read the bans file: %s", exc)
            return
        unbanned = set(self._banned) - set(bans)
        self._banned = {address: ban.until for address, ban in bans.items()}
        if unbanned:  # an unbanned address starts counting afresh
            self._state = SecurityState(
                attempts={a: t for a, t in self._state.attempts.items() if a not in unbanned})

    def banned(self, address: str) -> bool:
        key = _normal(address)
        now = self.clock()
        with self._lock:
            self._follow(now)
            until = self._banned.get(key)
            return until is not None and until > now

    def miss(self, address: str, reason: str) -> Ban | None:
        """Count one miss; the ban it caused (written to the ban file), if any."""
        key = _normal(address)
        now = self.clock()
        with self._lock:
            self._state, ban = record_attempt(self._state, self.policy, key, now,
                                              f"provisioning: {reason}")
            if ban is None:
                return None
            self._banned[key] = ban.until
            # the state's copy is not kept: the ban file is the one record of bans
            self._state = SecurityState(attempts=self._state.attempts)
        log.warning("banned %s for %g s after %d provisioning misses (%s)", key,
                    self.policy.ban_time, ban.attempts, reason)
        if self.state_dir is not None:
            update_bans(self.state_dir, lambda bans: {**bans, key: ban})
            with self._lock:
                self._mtime = (self.state_dir / BANS_FILE).stat().st_mtime
        return ban


def _normal(address: str) -> str:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip)
