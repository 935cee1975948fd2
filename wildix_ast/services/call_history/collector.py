"""The collecting loop: read Asterisk's two files into the spool, assemble the calls that are
over, and deliver the records to every enabled backend, each in its own thread.

A call is over when its LINKEDID_END has been read and `GRACE` has passed since, with the
CDR file read again after that: Asterisk writes the last CDRs of a call a moment after its
last channel is gone, from another thread. Legs with no end (Asterisk was killed during the
call: it never writes the end) are assembled `ORPHAN_AFTER` seconds after their last leg
ended: nothing finished is kept back for ever.

A backend's thread sends the records after its cursor in batches; a failure (server down,
wrong password, a full disk) is recorded as the backend's last error, and the thread tries
again after a backoff (1 s doubling to `MAX_BACKOFF`) from the same cursor. Nothing waits
for a backend but that backend's own thread."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from wildix_ast.calls.call_record import CDR_FILE, CEL_FILE
from wildix_ast.model.call_history import CallHistoryBackend
from wildix_ast.services.call_history.assemble import Directory, assemble
from wildix_ast.services.call_history.backends import Sink, sink_of
from wildix_ast.services.call_history.brake import BrakeKeeper
from wildix_ast.services.call_history.record import parse_line
from wildix_ast.services.call_history.source import read_new
from wildix_ast.services.call_history.spool import Spool
from wildix_ast.services.sdnotify import notify, watchdog_interval

log = logging.getLogger("wildix_ast.call_history")

GRACE = 0.5
ORPHAN_AFTER = 4 * 3600.0
POLL = 0.1
BATCH = 500
MAX_BACKOFF = 10.0
RETAIN = 32 * 86400.0
"""Records stay in the spool this long after every backend has them: the toll-fraud
brake's windows (31 days at most) are counted from there."""
PRUNE_EVERY = 60.0
RELOAD_EVERY = 5.0


@dataclass
class CollectorConfig:
    log_dir: Path
    """Asterisk's log folder, as this host sees it (CDR_FILE and CEL_FILE are there)."""
    spool_path: Path
    backends: list[CallHistoryBackend]
    directory: Directory = field(default_factory=Directory)
    grace: float = GRACE
    orphan_after: float = ORPHAN_AFTER
    poll: float = POLL
    brake: BrakeKeeper | None = None
    """The toll-fraud brake, when the site has limits."""
    reload: Callable[[], Settings | None] | None = None
    """Reads the settings again (None: unchanged since the last call): the collector asks
    every `reload_every` seconds, so an `import` takes effect without a restart."""
    reload_every: float = RELOAD_EVERY


@dataclass(frozen=True)
class Settings:
    """What the collector takes from the store: where to write, what records mean, the
    brake."""

    backends: list[CallHistoryBackend]
    directory: Directory
    brake: BrakeKeeper | None


class Collector:
    def __init__(self, config: CollectorConfig,
                 make_sink: Callable[[CallHistoryBackend], Sink] = sink_of) -> None:
        self.config = config
        self.spool = Spool(config.spool_path)
        self.make_sink = make_sink
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []
        self.delivering: dict[str, tuple[CallHistoryBackend, threading.Thread,
                                         threading.Event]] = {}
        """backend name -> (its settings, its thread, what stops that thread alone)."""
        self._pruned = 0.0
        self._reloaded = 0.0

    # --- intake and assembly --------------------------------------------------------------

    def _intake(self, name: str, is_cel: bool, now: float) -> bool:
        """Take what one file gained; whether more may be waiting."""
        path = self.config.log_dir / name
        batch = read_new(path, self.spool.checkpoint(name))
        for note in batch.notes:
            log.warning("call history: %s", note)
        legs, ends, rejected = [], [], []
        for offset, line in batch.lines:
            data = parse_line(line)
            if data is None:
                rejected.append((offset, line))
            elif is_cel:
                if data.get("eventtype") == "LINKEDID_END":
                    ends.append(str(data["linkedid"]))
            else:
                legs.append(data)
        if rejected:
            log.error("call history: %d unreadable line(s) in %s kept aside (spool table "
                      "'rejected')", len(rejected), path)
        if batch.lines or batch.checkpoint != self.spool.checkpoint(name):
            late = self.spool.take(name, batch.checkpoint, legs=legs, ends=ends,
                                   rejected=rejected, now=now)
            if late:
                log.warning("call history: %d leg(s) came after their call was recorded "
                            "(spool table 'late_legs')", late)
        return batch.more

    def step(self, now: float | None = None) -> int:
        """One pass: read both files, assemble the calls over; how many were assembled."""
        started = time.time() if now is None else now
        while self._intake(CDR_FILE, is_cel=False, now=started):
            pass
        while self._intake(CEL_FILE, is_cel=True, now=started):
            pass
        # the CDR file was read after every end seen GRACE ago: their legs are in
        due = self.spool.due(started - self.config.grace, started - self.config.orphan_after)
        outside: list[tuple[str, str]] = []
        for linkedid in due:
            legs = self.spool.legs(linkedid)
            record = assemble(linkedid, legs, self.config.directory) if legs else None
            self.spool.finish(linkedid, record, time.time())
            if record is not None and record.direction == "outgoing" and record.caller_user:
                outside.append((record.caller_user, record.call_class))
        if outside and self.config.brake is not None:
            self.config.brake.check(self.spool, outside)
        if started - self._pruned > PRUNE_EVERY:
            self._pruned = started
            self.spool.prune([b.name for b in self.config.backends], started - RETAIN)
        return len(due)

    # --- delivery -------------------------------------------------------------------------

    def deliver_once(self, backend: CallHistoryBackend, sink: Sink, spool: Spool) -> int:
        """Send what `backend` lacks; how many records were sent (raises on failure)."""
        sent = 0
        while True:
            cursor = spool.delivery(backend.name).last_id
            batch = spool.records_after(cursor, BATCH)
            if not batch:
                return sent
            sink.write(batch)
            spool.delivered(backend.name, batch[-1][0], time.time())
            sent += len(batch)

    def _deliver_forever(self, backend: CallHistoryBackend,
                         retired: threading.Event | None = None) -> None:
        spool = Spool(self.config.spool_path)
        sink: Sink | None = None
        backoff = 1.0
        done = retired or threading.Event()
        try:
            while not self.stopping.is_set() and not done.is_set():
                try:
                    if sink is None:
                        sink = self.make_sink(backend)
                    self.deliver_once(backend, sink, spool)
                    backoff = 1.0
                    self.stopping.wait(self.config.poll)
                except Exception as exc:  # any failure: record, retry later
                    message = f"{type(exc).__name__}: {exc}".splitlines()[0]
                    log.error("call history backend %s: %s", backend.name, message)
                    spool.failed(backend.name, message, time.time())
                    if sink is not None:
                        sink.close()
                        sink = None
                    self.stopping.wait(backoff)
                    backoff = min(MAX_BACKOFF, backoff * 2)
        finally:
            if sink is not None:
                sink.close()
            spool.close()

    def _start(self, backend: CallHistoryBackend) -> None:
        retired = threading.Event()
        thread = threading.Thread(target=self._deliver_forever, args=(backend, retired),
                                  name=f"cdr-{backend.name}", daemon=True)
        thread.start()
        self.threads.append(thread)
        self.delivering[backend.name] = (backend, thread, retired)

    def start_delivery(self) -> None:
        for backend in self.config.backends:
            self._start(backend)

    def apply_settings(self, settings: Settings) -> list[str]:
        """Take new settings while running: the meaning and the brake at once; a backend
        added starts, one removed or disabled stops, one changed (host, password, table...)
        restarts with its cursor (kept by its name: nothing re-sent, nothing skipped).
        What changed, for the log."""
        changes: list[str] = []
        self.config.directory = settings.directory
        self.config.brake = settings.brake
        wanted = {b.name: b for b in settings.backends}
        for name, (backend, thread, retired) in list(self.delivering.items()):
            if wanted.get(name) != backend:
                retired.set()
                thread.join(timeout=30)
                del self.delivering[name]
                changes.append(f"{name} stopped" if name not in wanted else f"{name} changed")
        for name, backend in wanted.items():
            if name not in self.delivering:
                self._start(backend)
                if not any(c.startswith(f"{name} ") for c in changes):
                    changes.append(f"{name} started")
        self.config.backends = list(settings.backends)
        return changes

    def _reload_when_due(self, now: float) -> None:
        if self.config.reload is None or now - self._reloaded < self.config.reload_every:
            return
        self._reloaded = now
        try:
            settings = self.config.reload()
        except Exception as error:  # the store unreachable: keep the settings in force
            log.error("call history: settings not read again: %s: %s",
                      type(error).__name__, error)
            return
        if settings is not None:
            changes = self.apply_settings(settings)
            log.info("call history: settings read again%s",
                     f" ({', '.join(changes)})" if changes else "")

    def run(self, until: Callable[[], bool] = lambda: False) -> None:
        """Collect and deliver until stopped (`stop`, or `until()` true)."""
        self.start_delivery()
        # systemd (Type=notify): ready once reading; the watchdog is fed by the reading loop,
        # so a collector stuck on its files or its spool is restarted
        notify("READY=1")
        interval = watchdog_interval()
        fed = 0.0
        try:
            while not self.stopping.is_set() and not until():
                self._reload_when_due(time.monotonic())
                self.step()
                if interval is not None and time.monotonic() - fed >= interval:
                    notify("WATCHDOG=1")
                    fed = time.monotonic()
                self.stopping.wait(self.config.poll)
        finally:
            self.stop()

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=30)
        self.spool.close()
