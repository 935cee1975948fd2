"""Voicemail PIN failures across calls: a mailbox whose PIN was mistyped MAX_FAILURES times
within WINDOW is locked until the oldest of those failures leaves the window (or an
administrator clears it: `wildix-ast voicemail unlock`).

Asterisk's own `maxlogins` counts per call only: hanging up and calling again gave an
attacker unlimited guesses of a 6-digit PIN from any phone. The FastAGI service keeps the
failures here, durably (a SQLite file: several service processes and the CLI share it,
each write one transaction), and logs each failure and each lock as a security event.
Only mailbox numbers and times are kept, never a PIN."""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

LOGINS_ENV = "WILDIX_AST_VOICEMAIL_LOGINS"
MAX_FAILURES = 5
WINDOW = 15 * 60.0
"""Seconds: failures older than this no longer count, so a lock lifts by itself."""

security_log = logging.getLogger("wildix_ast.security")


HANDSET_LOGINS_ENV = "WILDIX_AST_HANDSET_LOGINS"


def handset_logins_path() -> Path:
    """Where refused handset logins are counted (per device and per user)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return Path(os.environ.get(HANDSET_LOGINS_ENV) or Path(base) / "wildix-ast" /
                "handset-logins.sqlite3")


def default_path() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return Path(os.environ.get(LOGINS_ENV) or Path(base) / "wildix-ast" /
                "voicemail-logins.sqlite3")


@dataclass(frozen=True)
class Lock:
    mailbox: str
    failures: int
    until: float
    """When the lock lifts by itself (epoch seconds)."""

    def to_json(self) -> dict[str, object]:
        return {"mailbox": self.mailbox, "failures": self.failures, "until": self.until}


class LoginGuard:
    """The failures of each mailbox in the last WINDOW seconds."""

    def __init__(self, path: Path, max_failures: int = MAX_FAILURES,
                 window: float = WINDOW, *, event: str = "Voicemail") -> None:
        self.path, self.max_failures, self.window = path, max_failures, window
        #: the security events' prefix (`<event>LoginFailed`, `<event>Locked`...): the same
        #: guard counts handset logins (`Handset`) in a file of their own
        self.event = event

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)  # owner-only from the start
        os.close(fd)
        db = sqlite3.connect(self.path, timeout=5.0, isolation_level=None)
        try:
            db.execute("CREATE TABLE IF NOT EXISTS failures (mailbox TEXT NOT NULL, "
                       "at REAL NOT NULL)")
            db.execute("CREATE INDEX IF NOT EXISTS failures_mailbox ON failures (mailbox, at)")
            db.execute("BEGIN IMMEDIATE")  # count and insert under one write lock
            yield db
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        finally:
            db.close()

    def _recent(self, db: sqlite3.Connection, mailbox: str, now: float) -> list[float]:
        rows = db.execute("SELECT at FROM failures WHERE mailbox = ? AND at > ? ORDER BY at",
                          (mailbox, now - self.window)).fetchall()
        return [float(r[0]) for r in rows]

    def _lock(self, mailbox: str, recent: list[float]) -> Lock | None:
        if len(recent) < self.max_failures:
            return None
        # lifts when only max_failures - 1 of them are left in the window
        return Lock(mailbox, len(recent), recent[-self.max_failures] + self.window)

    def locked(self, mailbox: str, now: float | None = None) -> Lock | None:
        now = time.time() if now is None else now
        with self._db() as db:
            return self._lock(mailbox, self._recent(db, mailbox, now))

    def failed(self, mailbox: str, caller: str, now: float | None = None) -> Lock | None:
        """Record one wrong PIN for `mailbox` (from the phone `caller`); the lock, if the
        mailbox is now locked."""
        now = time.time() if now is None else now
        with self._db() as db:
            db.execute("DELETE FROM failures WHERE at <= ?", (now - self.window,))
            db.execute("INSERT INTO failures (mailbox, at) VALUES (?, ?)", (mailbox, now))
            recent = self._recent(db, mailbox, now)
        lock = self._lock(mailbox, recent)
        security_log.warning(
            'SecurityEvent="%sLoginFailed",Mailbox="%s",Caller="%s",Failures="%d",'
            'Locked="%s"', self.event, mailbox, caller, len(recent), "yes" if lock else "no")
        if lock is not None and len(recent) == self.max_failures:
            security_log.warning('SecurityEvent="%sLocked",Mailbox="%s",Until="%d"',
                                 self.event, mailbox, lock.until)
        return lock

    def clear(self, mailbox: str) -> int:
        """Forget the mailbox's failures (it is unlocked); how many there were."""
        with self._db() as db:
            count = db.execute("DELETE FROM failures WHERE mailbox = ?", (mailbox,)).rowcount
        security_log.warning('SecurityEvent="%sUnlocked",Mailbox="%s",Failures="%d"',
                             self.event, mailbox, count)
        return count

    def locks(self, now: float | None = None) -> list[Lock]:
        now = time.time() if now is None else now
        with self._db() as db:
            boxes = [r[0] for r in db.execute(
                "SELECT DISTINCT mailbox FROM failures WHERE at > ? ORDER BY mailbox",
                (now - self.window,))]
            found = [self._lock(b, self._recent(db, b, now)) for b in boxes]
        return [lock for lock in found if lock is not None]
