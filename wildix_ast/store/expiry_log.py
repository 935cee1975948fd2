"""The expiry log of several Asterisk nodes on one PostgreSQL store (issue 22,
docs/scaling.md): one row per cached realtime object an apply changed, written by apply's
writer account in the same transaction as the rows themselves, read by each node's
follower (`services/expiry`) with Asterisk's reader account.

A row holds a sequence id, the sorcery memory cache's name, the object's key and the time:
no secret. After the commit the writer sends `NOTIFY` on `CHANNEL`, so a follower that
`LISTEN`s wakes at once; one that was not listening (stopped, frozen, cut off) reads what
it has not done yet by id. The log is pruned by age (`KEEP_DAYS`) by the writer; the
newest row is never pruned, so a follower can always see the last id (and tell a gap: a
log that starts past its last id)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

#: The log table, next to the four realtime tables (not one Asterisk reads).
TABLE = "wildix_expiry_log"
#: The PostgreSQL notification channel a follower listens on.
CHANNEL = "wildix_expiry"
#: Days an entry is kept: a node down longer than that empties its caches when it comes
#: back (it cannot tell what it missed).
KEEP_DAYS = 7

CREATE = (f'CREATE TABLE IF NOT EXISTS "{TABLE}" (id BIGSERIAL PRIMARY KEY, '
          "cache TEXT NOT NULL, key TEXT NOT NULL, "
          "logged_at TIMESTAMPTZ NOT NULL DEFAULT now())")


@dataclass(frozen=True)
class Entry:
    """One cached object to forget on every node."""

    id: int
    cache: str
    key: str


def append(cursor: Any, entries: Iterable[tuple[str, str]]) -> int:
    """Inside the writer's transaction: log `entries` ((cache, key)), prune what is older
    than `KEEP_DAYS` (never the newest row) and notify the followers (PostgreSQL delivers
    the notification at commit, not before). Returns how many were logged."""
    wanted = list(entries)
    if not wanted:
        return 0
    cursor.executemany(f'INSERT INTO "{TABLE}" (cache, key) VALUES (%s, %s)', wanted)
    cursor.execute(f'DELETE FROM "{TABLE}" WHERE logged_at < now() - %s * interval \'1 day\' '
                   f'AND id < (SELECT max(id) FROM "{TABLE}")', (KEEP_DAYS,))
    cursor.execute(f"NOTIFY {CHANNEL}")
    return len(wanted)


def bounds(cursor: Any) -> tuple[int | None, int | None]:
    """The oldest and newest ids in the log (None, None: empty)."""
    cursor.execute(f'SELECT min(id), max(id) FROM "{TABLE}"')
    low, high = cursor.fetchone()
    return low, high


def after(cursor: Any, last: int, limit: int = 10_000) -> list[Entry]:
    """The entries after id `last`, oldest first (at most `limit`)."""
    cursor.execute(f'SELECT id, cache, key FROM "{TABLE}" WHERE id > %s ORDER BY id LIMIT %s',
                   (last, limit))
    return [Entry(int(i), str(c), str(k)) for i, c, k in cursor.fetchall()]
