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
recorded in one transaction of a small SQLite file of the server's own (`MissBook`, touched
on misses and enrolments only, never on a served file), so a scanner is banned after the threshold's
misses in total, whichever workers answered them. Each worker looks at the ban file's
identity (inode, size, mtime: one stat) on every connection, so a ban made by one worker is
enforced by the others from their next connection on."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
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

MISS_BOOK = "counts.sqlite3"
"""The workers' shared miss and enrolment counts, in the folder the server made for them."""
BOOK_ROWS = 100_000
"""Miss rows kept at most (a flood from ever new addresses): the oldest go first."""


class MissBook:
    """Counts shared by the server's worker processes: recent miss times and enrolments per
    address, in a small SQLite file of the server's own (each change one `BEGIN IMMEDIATE`
    transaction: SQLite's lock serialises the workers; a worker killed mid-change leaves
    the file as it was). Not durable on purpose (`synchronous=OFF`): the counts live as long
    as the server's run, as they did in memory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._threads = threading.Lock()
        self._db = sqlite3.connect(path, timeout=10.0, isolation_level=None,
                                   check_same_thread=False)
        with self._threads:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=OFF")
            self._db.execute("CREATE TABLE IF NOT EXISTS misses "
                             "(address TEXT NOT NULL, at REAL NOT NULL)")
            self._db.execute("CREATE INDEX IF NOT EXISTS misses_by_address "
                             "ON misses (address, at)")
            self._db.execute("CREATE INDEX IF NOT EXISTS misses_by_time ON misses (at)")
            self._db.execute("CREATE TABLE IF NOT EXISTS enrolled "
                             "(address TEXT PRIMARY KEY, count INTEGER NOT NULL)")
        self._changes = 0

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One change, with every other worker's kept out until it ends."""
        with self._threads:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def record(self, address: str, now: float, window: float,
               decide: Callable[[tuple[float, ...]], tuple[float, ...]]) -> None:
        """Replace `address`'s recent miss times by `decide(its recent times)`."""
        with self.transaction() as db:
            recent = tuple(at for (at,) in db.execute(
                "SELECT at FROM misses WHERE address = ? AND at > ? ORDER BY at",
                (address, now - window)))
            kept = decide(recent)
            db.execute("DELETE FROM misses WHERE address = ?", (address,))
            db.executemany("INSERT INTO misses (address, at) VALUES (?, ?)",
                           [(address, at) for at in kept])
            self._changes += 1
            if self._changes % 1000 == 0:  # now and then: the old ones, then the excess
                db.execute("DELETE FROM misses WHERE at <= ?", (now - window,))
                db.execute("DELETE FROM misses WHERE rowid IN (SELECT rowid FROM misses "
                           "ORDER BY at DESC LIMIT -1 OFFSET ?)", (BOOK_ROWS,))

    def claim(self, address: str, limit: int) -> bool:
        with self.transaction() as db:
            found = db.execute("SELECT count FROM enrolled WHERE address = ?",
                               (address,)).fetchone()
            if found is not None and found[0] >= limit:
                return False
            db.execute("INSERT INTO enrolled (address, count) VALUES (?, 1) ON CONFLICT "
                       "(address) DO UPDATE SET count = count + 1", (address,))
            return True

    def release(self, address: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE enrolled SET count = max(0, count - 1) WHERE address = ?",
                       (address,))

    def close(self) -> None:
        with self._threads:
            self._db.close()


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
        made: list[Ban] = []

        def decide(recent: tuple[float, ...]) -> tuple[float, ...]:
            state, ban = record_attempt(SecurityState(attempts={key: recent}), self.policy,
                                        key, now, f"provisioning: {reason}")
            if ban is not None:
                made.append(ban)
            return tuple(state.attempts.get(key, ()))

        self.book.record(key, now, self.policy.window, decide)
        return made[0] if made else None

    def claim_enrolment(self, address: str, limit: int) -> bool:
        """Count one enrolment for `address` if it has fewer than `limit` (in every worker
        together); False when it has them already."""
        key = _normal(address)
        if self.book is not None:
            return self.book.claim(key, limit)
        with self._lock:
            if self._enrolled.get(key, 0) >= limit:
                return False
            self._enrolled[key] = self._enrolled.get(key, 0) + 1
            return True

    def release_enrolment(self, address: str) -> None:
        """Give back a claim that enrolled nothing."""
        key = _normal(address)
        if self.book is not None:
            self.book.release(key)
            return
        with self._lock:
            self._enrolled[key] = max(0, self._enrolled.get(key, 0) - 1)


def _normal(address: str) -> str:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip)
