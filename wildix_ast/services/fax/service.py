"""`wildix-ast fax collect --serve`: the fax service's loop (systemd unit `wildix-ast-fax`).

Every `poll` seconds (1 s by default: a fax is mailed about a second after its call ended,
without inotify) it collects the jobs Asterisk dropped in `new/` (`inbound.collect`). A job
that fails is tried again at the next pass and moved to `bad/` after `inbound.MAX_TRIES`
failures: a bad job never stops the loop. The settings (recipients, the copy address,
retention) are read from the store at every pass that has work and at least every
`SETTINGS_EVERY` seconds, so an `import` takes effect without a restart.

Retention runs here, not from cron: every `PRUNE_EVERY` seconds the spool's `done/` and
`bad/` files older than `fax_server.keep_days` and the documents older than
`call_history.retention_days` are deleted (`documents`). Jobs still in `new/` or `tmp/`
are never touched.

systemd: READY=1 once the first pass is done, WATCHDOG=1 from the loop itself (a loop stuck
on a conversion longer than the watchdog is restarted; tiff2pdf has its own 120 s limit,
below the unit's WatchdogSec)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from wildix_ast.services.fax.documents import DAY, prune_documents, prune_spool
from wildix_ast.services.fax.inbound import Collected, collect
from wildix_ast.services.sdnotify import notify

log = logging.getLogger(__name__)

PRUNE_EVERY = 3600.0
SETTINGS_EVERY = 30.0


@dataclass(frozen=True)
class FaxSettings:
    """What a pass needs from the store."""

    email_of: Callable[[str], str | None]
    copy_to: tuple[str, ...] = ()
    keep_days: int = 30
    retention_days: int = 365


@dataclass
class FaxService:
    spool: Path
    queue_root: Path
    documents: Path | None
    settings: Callable[[], FaxSettings]
    """Read again at every pass with jobs, and at least every SETTINGS_EVERY seconds."""
    failures: dict[str, int] = field(default_factory=dict)
    _current: FaxSettings | None = None
    _read_at: float = 0.0
    _pruned_at: float = 0.0

    def _settings(self, now: float, fresh: bool) -> FaxSettings:
        if self._current is None or fresh or now - self._read_at >= SETTINGS_EVERY:
            self._current = self.settings()
            self._read_at = now
        return self._current

    def run_once(self, now: float | None = None) -> list[Collected]:
        """One pass: collect what waits, prune when due."""
        moment = time.time() if now is None else now
        waiting = any((self.spool / "new").glob("*.job"))
        settings = self._settings(moment, fresh=waiting)
        found = collect(self.spool, settings.email_of, copy_to=settings.copy_to,
                        queue_root=self.queue_root, documents=self.documents,
                        failures=self.failures) if waiting else []
        if moment - self._pruned_at >= PRUNE_EVERY:
            self._pruned_at = moment
            self.prune(settings, moment)
        return found

    def prune(self, settings: FaxSettings, now: float) -> tuple[int, int]:
        jobs = prune_spool(self.spool, now - settings.keep_days * DAY)
        documents = 0 if self.documents is None else \
            prune_documents(self.documents, now - settings.retention_days * DAY)
        if jobs or documents:
            log.info("fax retention: %d finished job file(s) and %d document(s) deleted",
                     jobs, documents)
        return jobs, documents

    def serve(self, stop: threading.Event, poll: float = 1.0,
              report: Callable[[list[Collected]], None] = lambda found: None) -> None:
        """Pass after pass until `stop` is set; a pass that collected reports. An error
        of a whole pass (the store unreachable) is logged and the next pass tries again."""
        ready = False
        while not stop.is_set():
            try:
                found = self.run_once()
            except Exception as error:  # the loop outlives any one failure
                log.error("fax collect: pass failed: %s: %s", type(error).__name__, error)
                found = []
            if not ready:
                notify("READY=1")
                ready = True
            notify("WATCHDOG=1")
            if found:
                report(found)
            stop.wait(poll)
