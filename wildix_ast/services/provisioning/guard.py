"""Who may still ask the provisioning server: misses (a file for an unknown MAC, a wrong or
old credential, a name that is no phone's file) counted per source address; at
`threshold` within `window` seconds the address is banned through the SIP ban service's
file (`services.ami.ban_file`), so `wildix-ast security bans` lists it, `security unban`
lifts it, and the AMI service's firewall drops the address's SIP packets too. The server
itself refuses a banned address's connections before reading a byte of them.

The counting is the SIP policy's (`services.ami.security.record_attempt`): loopback is
never banned; the LAN is (phones and scanners sit on the same LAN: the threshold, not the
network, tells them apart).

Several worker processes (`provisioning serve --workers`) share one count: each miss is
recorded under a lock in a small file of the server's own (`MissBook`, touched on misses and
enrolments only, never on a served file), so a scanner is banned after the threshold's
misses in total, whichever workers answered them. Each worker looks at the ban file's
identity (inode, size, mtime: one stat) on every connection, so a ban made by one worker is
enforced by the others from their next connection on."""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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

MISS_BOOK = "counts.json"
"""The workers' shared miss and enrolment counts, in the folder the server made for them."""
BOOK_PRUNE_AT = 10_000
"""Addresses in the book beyond which the ones with no recent miss are dropped."""


class MissBook:
    """Counts shared by the server's worker processes: recent miss times and enrolments per
    address, in one JSON file read and written under an exclusive `flock` (and a thread
    lock: one process's threads share its file description). A file that cannot be read
    (a worker killed mid-write) starts the counts afresh, and says so."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._threads = threading.Lock()
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self._file = os.fdopen(fd, "r+", encoding="utf-8")

    @contextlib.contextmanager
    def locked(self) -> Iterator[dict[str, dict[str, Any]]]:
        """The counts, written back when the block ends without an error."""
        with self._threads:
            fcntl.flock(self._file, fcntl.LOCK_EX)
            try:
                self._file.seek(0)
                text = self._file.read()
                try:
                    data = json.loads(text) if text else {}
                    if not isinstance(data, dict):
                        raise ValueError("not an object")
                except ValueError as exc:
                    log.error("%s unreadable (%s): counting afresh", self.path, exc)
                    data = {}
                data.setdefault("misses", {})
                data.setdefault("enrolled", {})
                yield data
                self._file.seek(0)
                self._file.truncate()
                self._file.write(json.dumps(data, separators=(",", ":")))
                self._file.flush()
            finally:
                fcntl.flock(self._file, fcntl.LOCK_UN)

    def close(self) -> None:
        self._file.close()


class Guard:
    """Thread-safe miss counter and ban check for the server's worker threads."""

    def __init__(self, state_dir: Path | None, threshold: int = 10, window: float = 3600.0,
                 ban_time: float = 3600.0, never_ban: tuple[IpNetwork, ...] = LOOPBACK,
                 clock: Callable[[], float] = time.time, book: MissBook | None = None) -> None:
        """`book`: the counts shared with the other workers (None: this process's own)."""
        self.state_dir = state_dir
        self.book = book
        self.policy = BanPolicy(threshold=threshold, window=window, ban_time=ban_time,
                                never_ban=never_ban)
        self.clock = clock
        self._lock = threading.Lock()
        self._state = SecurityState()
        self._banned: dict[str, float] = {}
        self._enrolled: dict[str, int] = {}
        self._mtime: tuple[int, int, int] | None = None

    def _identity(self) -> tuple[int, int, int] | None:
        assert self.state_dir is not None
        try:
            found = (self.state_dir / BANS_FILE).stat()
        except FileNotFoundError:
            return None
        return found.st_ino, found.st_size, found.st_mtime_ns

    def _follow(self, now: float) -> None:
        """Adopt the ban file's bans (another worker's or service's, an unban) when the file
        changed: one stat a look (the file is replaced whole: a new inode each write)."""
        if self.state_dir is None:
            return
        mtime = self._identity()
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
            self._follow(now)
            until = self._banned.get(key)
            if until is not None and until > now:
                return None  # banned already (by another worker): its count starts at unban
            if self.book is None:
                self._state, ban = record_attempt(self._state, self.policy, key, now,
                                                  f"provisioning: {reason}")
            else:
                ban = self._miss_in_book(key, now, reason)
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
                self._mtime = self._identity()
        return ban

    def _miss_in_book(self, key: str, now: float, reason: str) -> Ban | None:
        assert self.book is not None
        with self.book.locked() as counts:
            misses: dict[str, list[float]] = counts["misses"]
            state = SecurityState(attempts={key: tuple(misses.get(key, ()))})
            state, ban = record_attempt(state, self.policy, key, now, f"provisioning: {reason}")
            recent = state.attempts.get(key)
            if recent:
                misses[key] = list(recent)
            else:
                misses.pop(key, None)
            if len(misses) > BOOK_PRUNE_AT:
                for address in [a for a, times in misses.items()
                                if not times or now - times[-1] >= self.policy.window]:
                    del misses[address]
        return ban

    def claim_enrolment(self, address: str, limit: int) -> bool:
        """Count one enrolment for `address` if it has fewer than `limit` (in every worker
        together); False when it has them already."""
        key = _normal(address)
        if self.book is None:
            with self._lock:
                if self._enrolled.get(key, 0) >= limit:
                    return False
                self._enrolled[key] = self._enrolled.get(key, 0) + 1
                return True
        with self.book.locked() as counts:
            enrolled: dict[str, int] = counts["enrolled"]
            if enrolled.get(key, 0) >= limit:
                return False
            enrolled[key] = enrolled.get(key, 0) + 1
            return True

    def release_enrolment(self, address: str) -> None:
        """Give back a claim that enrolled nothing."""
        key = _normal(address)
        if self.book is None:
            with self._lock:
                self._enrolled[key] = max(0, self._enrolled.get(key, 0) - 1)
            return
        with self.book.locked() as counts:
            enrolled: dict[str, int] = counts["enrolled"]
            enrolled[key] = max(0, enrolled.get(key, 0) - 1)


def _normal(address: str) -> str:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip)
