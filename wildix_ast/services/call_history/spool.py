"""The collector's durable state: one local SQLite database (WAL, synchronous=FULL, so every
commit is on disk before it returns).

Tables: `sources` (a checkpoint per file read), `legs` (CDRs of calls not over yet), `ends`
(LINKEDID_END seen, not assembled yet), `records` (finished calls, one per call id, in the
order they were finished: `id` is what the delivery cursors count), `deliveries` (per
backend: the last record id written there, when, the last error), `rejected` (lines that
could not be read, kept with where they were), `late_legs` (a leg that came after its call
was assembled: kept and logged, never silently dropped).

Every change of state is one transaction: lines taken + checkpoint moved; legs turned into
a record + legs forgotten; a backend's batch written + its cursor moved (the write itself is
in the backend, idempotent, so a crash between the two re-sends, never loses)."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wildix_ast.services.call_history.record import CallRecord
from wildix_ast.services.call_history.source import Checkpoint

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sources (name TEXT PRIMARY KEY, device INTEGER NOT NULL,
    inode INTEGER NOT NULL, offset INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS legs (linkedid TEXT NOT NULL, uniqueid TEXT NOT NULL,
    sequence TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (uniqueid, sequence));
CREATE INDEX IF NOT EXISTS legs_linkedid ON legs (linkedid);
CREATE TABLE IF NOT EXISTS ends (linkedid TEXT PRIMARY KEY, seen REAL NOT NULL);
CREATE TABLE IF NOT EXISTS records (id INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id TEXT NOT NULL UNIQUE, body TEXT NOT NULL, finished REAL NOT NULL,
    caller_user TEXT NOT NULL DEFAULT '', call_class TEXT NOT NULL DEFAULT '',
    direction TEXT NOT NULL DEFAULT '', disposition TEXT NOT NULL DEFAULT '',
    start REAL NOT NULL DEFAULT 0, billsec REAL NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS records_brake ON records (caller_user, call_class, start);
CREATE TABLE IF NOT EXISTS brake_clears (extension TEXT NOT NULL, call_class TEXT NOT NULL,
    cleared REAL NOT NULL, PRIMARY KEY (extension, call_class));
CREATE TABLE IF NOT EXISTS deliveries (backend TEXT PRIMARY KEY, last_id INTEGER NOT NULL,
    last_write REAL, last_error TEXT, error_at REAL);
CREATE TABLE IF NOT EXISTS rejected (source TEXT NOT NULL, offset INTEGER NOT NULL,
    line BLOB NOT NULL, PRIMARY KEY (source, offset));
CREATE TABLE IF NOT EXISTS late_legs (linkedid TEXT NOT NULL, body TEXT NOT NULL);
"""


LEGLESS_WAIT = 30.0


@dataclass(frozen=True)
class Delivery:
    backend: str
    last_id: int
    last_write: float | None
    last_error: str | None
    error_at: float | None


class Spool:
    """One collector's state (see the module documentation). One instance per thread."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fresh = not path.exists()
        self.path = path
        self.db = sqlite3.connect(path, timeout=30, isolation_level=None,
                                  check_same_thread=False)
        if fresh:
            os.chmod(path, 0o600)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # --- intake ---------------------------------------------------------------------------

    def checkpoint(self, source: str) -> Checkpoint | None:
        row = self.db.execute("SELECT device, inode, offset FROM sources WHERE name = ?",
                              (source,)).fetchone()
        return Checkpoint(*row) if row else None

    def take(self, source: str, checkpoint: Checkpoint | None, *,
             legs: Sequence[dict[str, Any]] = (), ends: Sequence[str] = (),
             rejected: Sequence[tuple[int, bytes]] = (), now: float | None = None) -> int:
        """Keep what was read and move the checkpoint, at once; the late legs' count."""
        seen = time.time() if now is None else now
        late = 0
        with self._transaction() as db:
            for leg in legs:
                linkedid = str(leg["linkedid"])
                body = json.dumps(leg, separators=(",", ":"), sort_keys=True)
                if db.execute("SELECT 1 FROM records WHERE call_id = ?",
                              (linkedid,)).fetchone():
                    db.execute("INSERT INTO late_legs (linkedid, body) VALUES (?, ?)",
                               (linkedid, body))
                    late += 1
                    continue
                db.execute("INSERT OR IGNORE INTO legs (linkedid, uniqueid, sequence, body) "
                           "VALUES (?, ?, ?, ?)", (linkedid, str(leg.get("uniqueid", "")),
                                                   str(leg.get("sequence", "")), body))
            for linkedid in ends:
                db.execute("INSERT OR IGNORE INTO ends (linkedid, seen) VALUES (?, ?)",
                           (linkedid, seen))
            for offset, line in rejected:
                db.execute("INSERT OR IGNORE INTO rejected (source, offset, line) "
                           "VALUES (?, ?, ?)", (source, offset, line))
            if checkpoint is not None:
                db.execute("INSERT INTO sources (name, device, inode, offset) "
                           "VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                           "device = excluded.device, inode = excluded.inode, "
                           "offset = excluded.offset",
                           (source, checkpoint.device, checkpoint.inode, checkpoint.offset))
        return late

    # --- assembly -------------------------------------------------------------------------

    def due(self, ended_before: float, orphaned_before: float) -> list[str]:
        """Calls to assemble: over (LINKEDID_END) before `ended_before`, or legs with no end
        whose last leg ended before `orphaned_before` (Asterisk died during the call)."""
        # an end whose legs are not in yet waits for them (Asterisk's CDR thread may lag
        # behind its CEL one under load) up to LEGLESS_WAIT, then is dropped: a call with
        # no CDR at all has nothing to record
        ended = [r[0] for r in self.db.execute(
            "SELECT e.linkedid FROM ends e WHERE e.seen <= ? AND (e.seen <= ? OR EXISTS "
            "(SELECT 1 FROM legs l WHERE l.linkedid = e.linkedid)) ORDER BY e.seen",
            (ended_before, ended_before - LEGLESS_WAIT))]
        orphans = []
        for linkedid, body in self.db.execute(
                "SELECT linkedid, body FROM legs WHERE linkedid NOT IN "
                "(SELECT linkedid FROM ends)"):
            try:
                finished = float(json.loads(body).get("end") or 0)
            except ValueError:
                finished = 0.0
            if finished < orphaned_before:
                orphans.append(linkedid)
        return ended + sorted(set(orphans) - set(ended))

    def legs(self, linkedid: str) -> list[dict[str, Any]]:
        return [json.loads(r[0]) for r in self.db.execute(
            "SELECT body FROM legs WHERE linkedid = ?", (linkedid,))]

    def finish(self, linkedid: str, record: CallRecord | None, now: float) -> None:
        """Keep the call's record (None: an end without legs) and forget its legs."""
        with self._transaction() as db:
            if record is not None:
                db.execute("INSERT OR IGNORE INTO records (call_id, body, finished, "
                           "caller_user, call_class, direction, disposition, start, billsec) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           (linkedid, json.dumps(record.to_json()), now, record.caller_user,
                            record.call_class, record.direction, record.disposition,
                            record.start, record.billsec))
            db.execute("DELETE FROM legs WHERE linkedid = ?", (linkedid,))
            db.execute("DELETE FROM ends WHERE linkedid = ?", (linkedid,))

    # --- delivery -------------------------------------------------------------------------

    def records_after(self, last_id: int, limit: int) -> list[tuple[int, CallRecord]]:
        return [(r[0], CallRecord.from_json(json.loads(r[1]))) for r in self.db.execute(
            "SELECT id, body FROM records WHERE id > ? ORDER BY id LIMIT ?", (last_id, limit))]

    def delivery(self, backend: str) -> Delivery:
        row = self.db.execute("SELECT backend, last_id, last_write, last_error, error_at "
                              "FROM deliveries WHERE backend = ?", (backend,)).fetchone()
        return Delivery(*row) if row else Delivery(backend, 0, None, None, None)

    def delivered(self, backend: str, last_id: int, when: float) -> None:
        with self._transaction() as db:
            db.execute("INSERT INTO deliveries (backend, last_id, last_write) VALUES (?, ?, ?) "
                       "ON CONFLICT (backend) DO UPDATE SET last_id = excluded.last_id, "
                       "last_write = excluded.last_write, last_error = NULL, error_at = NULL",
                       (backend, last_id, when))

    def failed(self, backend: str, error: str, when: float) -> None:
        with self._transaction() as db:
            db.execute("INSERT INTO deliveries (backend, last_id, last_error, error_at) "
                       "VALUES (?, 0, ?, ?) ON CONFLICT (backend) DO UPDATE SET "
                       "last_error = excluded.last_error, error_at = excluded.error_at",
                       (backend, error[:500], when))

    def prune(self, backends: Sequence[str], older_than: float) -> int:
        """Forget records every one of `backends` has and that finished before
        `older_than`; how many (the spool does not grow for ever)."""
        cursors = [self.delivery(name).last_id for name in backends]
        if not cursors:
            return 0
        with self._transaction() as db:
            gone = db.execute("DELETE FROM records WHERE id <= ? AND finished < ?",
                              (min(cursors), older_than)).rowcount
        return int(gone)

    # --- the toll-fraud brake (brake.py) -------------------------------------------------

    def outside_usage(self, extension: str, call_class: str, since: float,
                      refused: Sequence[str]) -> tuple[int, float]:
        """(outside calls, billed seconds) of a user in a class since `since`."""
        marks = ", ".join("?" for _ in refused)
        row = self.db.execute(
            "SELECT COUNT(*), COALESCE(SUM(billsec), 0) FROM records WHERE caller_user = ? "
            "AND call_class = ? AND direction = 'outgoing' AND start >= ? "
            f"AND disposition NOT IN ({marks})",
            (extension, call_class, since, *refused)).fetchone()
        return int(row[0]), float(row[1])

    def brake_cleared(self, extension: str, call_class: str) -> float:
        row = self.db.execute("SELECT cleared FROM brake_clears WHERE extension = ? AND "
                              "call_class = ?", (extension, call_class)).fetchone()
        return float(row[0]) if row else 0.0

    def clear_brake(self, extension: str, call_class: str, when: float) -> None:
        with self._transaction() as db:
            db.execute("INSERT INTO brake_clears (extension, call_class, cleared) "
                       "VALUES (?, ?, ?) ON CONFLICT (extension, call_class) DO UPDATE SET "
                       "cleared = excluded.cleared", (extension, call_class, when))

    # --- status ---------------------------------------------------------------------------

    def last_record(self) -> tuple[int, float | None]:
        row = self.db.execute("SELECT MAX(id) FROM records").fetchone()
        return int(row[0] or 0), None

    def oldest_after(self, last_id: int) -> float | None:
        row = self.db.execute("SELECT MIN(finished) FROM records WHERE id > ?",
                              (last_id,)).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    def counts(self) -> dict[str, int]:
        return {table: int(self.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
                for table in ("legs", "ends", "records", "rejected", "late_legs")}
