"""`wildix-ast realtime follow --node NAME` (issue 22, docs/scaling.md): one node's
follower of the expiry log.

Several nodes read one PostgreSQL store; each keeps its own sorcery memory cache. An apply
writes the changed rows and, in the same transaction, one expiry log entry per changed
cached object (`store.expiry_log`), then PostgreSQL notifies. The follower, on the node's
host, `LISTEN`s with Asterisk's own reader account (read from the node's res_pgsql.conf:
no secret of its own), reads the entries after the last id it has done and expires each
through its own Asterisk's console (`sorcery memory cache expire CACHE KEY`, the key
re-checked: a log row is data from the network, not a command). The last id done is kept
in a small state file, written atomically after each batch, so a follower killed midway
does the rest (expiring twice is harmless) and never skips one.

It cannot account for what happened before its first start, nor for entries pruned before
it read them (a log that starts past its last id): then it expires its three caches whole
(`sorcery memory cache expire CACHE`; every user is read again on its next use). A
follower stopped, frozen or cut off from the database catches up from the log when it
comes back; an Asterisk that does not answer is tried again each second, its entries kept.
No AMI account, no network path between the applying host and the nodes beyond the store.
"""

from __future__ import annotations

import contextlib
import json
import select
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wildix_ast.asterisk.sorcery import CACHES, expire_command
from wildix_ast.asterisk_cli import Runner
from wildix_ast.conf import sections
from wildix_ast.errors import ApplyError, SettingsError, WildixError
from wildix_ast.files import write_atomic
from wildix_ast.store import expiry_log

#: Seconds between two reads of the log without a notification (a lost notification, a
#: dead connection noticed): the log is the truth, the notification only a wake-up.
POLL_SECONDS = 10.0
#: Seconds Asterisk's console has to answer one command (a frozen Asterisk answers when it
#: resumes: the command waits in the socket's queue).
CONSOLE_TIMEOUT = 10.0
#: Seconds between two tries after a failure (database or console).
RETRY_SECONDS = 1.0

Say = Callable[[str], None]


@dataclass(frozen=True)
class Reader:
    """How Asterisk reads the realtime tables: its res_pgsql.conf (0640, Asterisk's group:
    the follower reads it as a member of that group)."""

    host: str
    port: int
    database: str
    username: str
    password: str

    @classmethod
    def from_res_pgsql(cls, path: Path) -> Reader:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise SettingsError(f"{path}: unreadable ({e.strerror}): the follower reads "
                                "Asterisk's realtime account there (is this a node with "
                                "realtime on PostgreSQL?)") from e
        general = next((s for s in sections(text) if s.name == "general"), None)
        values = {k: v for k, v in general.items} if general is not None else {}
        missing = [k for k in ("dbhost", "dbname", "dbuser", "dbpass") if not values.get(k)]
        if missing:
            raise SettingsError(f"{path}: no {', '.join(missing)} in [general]")
        try:
            port = int(values.get("dbport", "5432"))
        except ValueError:
            raise SettingsError(f"{path}: dbport {values['dbport']!r} is not a port") from None
        return cls(values["dbhost"], port, values["dbname"], values["dbuser"],
                   values["dbpass"])

    def connect(self) -> Any:
        import psycopg2

        connection = psycopg2.connect(
            host=self.host, port=self.port, dbname=self.database, user=self.username,
            password=self.password, connect_timeout=5, application_name="wildix-ast follow",
            # a server that vanished without a word is noticed within about 20 s
            keepalives=1, keepalives_idle=10, keepalives_interval=3, keepalives_count=3)
        connection.autocommit = True
        return connection


class FollowState:
    """The last log id this node has done, in a small JSON file (atomic writes)."""

    def __init__(self, path: Path, node: str) -> None:
        self.path = path
        self.node = node

    def last(self) -> int | None:
        """None: never started, or the file is unreadable (then the caches go whole)."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return int(data["last_id"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save(self, last: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, json.dumps({"node": self.node, "last_id": last}) + "\n",
                     mode=0o600)


@dataclass
class CatchUp:
    """What one pass did: entries expired, entries refused, whether (and why) the caches
    were emptied whole, the last id done."""

    expired: int = 0
    refused: int = 0
    whole: str | None = None
    last_id: int = 0

    def to_json(self) -> dict[str, object]:
        return {"expired": self.expired, "refused": self.refused, "whole": self.whole,
                "last_id": self.last_id}


class Follower:
    """One node's follower: `catch_up` once, or `run` until `stop` is set."""

    def __init__(self, node: str, reader: Reader, console: Runner, state: FollowState,
                 say: Say = lambda _m: None) -> None:
        self.node = node
        self.reader = reader
        self.console = console
        self.state = state
        self.say = say

    def _run(self, command: str) -> None:
        self.console(command, CONSOLE_TIMEOUT)

    def _whole(self, why: str) -> None:
        for cache in sorted(CACHES):
            self._run(expire_command(cache))
        self.say(f"node {self.node}: caches emptied ({why})")

    def _expire(self, entry: expiry_log.Entry) -> bool:
        """Expire one entry; False when refused (its cache emptied whole instead, when the
        cache is one of ours: the change is still accounted for)."""
        try:
            command = expire_command(entry.cache, entry.key)
        except ApplyError as e:
            self.say(f"node {self.node}: log entry {entry.id} refused: {e.message}")
            if entry.cache in CACHES:
                self._run(expire_command(entry.cache))
            return False
        self._run(command)
        return True

    def catch_up(self, cursor: Any) -> CatchUp:
        """Expire what the log holds after the last id done (or everything, when that
        cannot be accounted for); the state file follows each batch."""
        done = CatchUp()
        last = self.state.last()
        low, high = expiry_log.bounds(cursor)
        why = None
        if last is None:
            why = "first start: what it cached before cannot be accounted for"
        elif low is not None and low > last + 1:
            why = f"the log was pruned past the last entry done ({last})"
        elif high is not None and high < last:
            why = f"the log ends before the last entry done ({last}): a new database"
        if why is not None:
            self._whole(why)
            done.whole, last = why, high or 0
            self.state.save(last)
        assert last is not None
        while entries := expiry_log.after(cursor, last):
            try:
                for entry in entries:
                    if self._expire(entry):
                        done.expired += 1
                    else:
                        done.refused += 1
                    last = entry.id
            finally:
                self.state.save(last)
        done.last_id = last
        return done

    def once(self) -> CatchUp:
        """One catch-up (`realtime follow --once`)."""
        import psycopg2

        try:
            connection = self.reader.connect()
        except psycopg2.Error as e:
            raise WildixError(f"cannot reach the realtime database: {e}".strip()) from e
        try:
            with connection.cursor() as cursor:
                return self.catch_up(cursor)
        except psycopg2.Error as e:
            raise WildixError(f"reading the expiry log failed: {e}".strip()) from e
        finally:
            connection.close()

    def run(self, stop: threading.Event, ready: Callable[[], object] = lambda: None,
            alive: Callable[[], object] = lambda: None) -> None:
        """Follow until `stop` is set: LISTEN, catch up, then catch up again on each
        notification (or every POLL_SECONDS); reconnect after any failure. `ready`: called
        once after the first catch-up; `alive`: after every pass and every failure (the
        systemd watchdog: a loop stuck anywhere stops calling it)."""
        import psycopg2

        first = True
        while not stop.is_set():
            connection = None
            try:
                connection = self.reader.connect()
                with connection.cursor() as cursor:
                    # LISTEN before reading: an entry committed in between is either read
                    # now or notified
                    cursor.execute(f"LISTEN {expiry_log.CHANNEL}")
                    self._report(self.catch_up(cursor))
                    if first:
                        ready()
                        first = False
                    self.say(f"node {self.node}: following the expiry log")
                    while not stop.is_set():
                        alive()
                        if select.select([connection], [], [], POLL_SECONDS)[0]:
                            connection.poll()
                            connection.notifies.clear()
                        self._report(self.catch_up(cursor))
            except psycopg2.Error as e:
                self.say(f"node {self.node}: realtime database: {str(e).strip()}; "
                         f"trying again in {RETRY_SECONDS:g} s")
            except WildixError as e:  # the console did not answer
                self.say(f"node {self.node}: {e.message}; trying again in "
                         f"{RETRY_SECONDS:g} s")
            finally:
                if connection is not None:
                    with contextlib.suppress(Exception):
                        connection.close()
            alive()
            stop.wait(RETRY_SECONDS)

    def _report(self, done: CatchUp) -> None:
        if done.expired or done.refused:
            self.say(f"node {self.node}: {done.expired} expired, {done.refused} refused "
                     f"(last entry {done.last_id})")

