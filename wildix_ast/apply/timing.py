"""Where an apply's time goes: wall seconds per phase, from the process's start to its end.

`Phases` is handed down the apply (`apply_site`, `ConfigTarget.commit`); each step runs in
`with phases.phase(name)`. Work done in a thread alongside another phase (the store
comparison while Asterisk reloads) is kept apart (`overlapped`): it adds nothing to the
wall time unless the phase it runs beside ends first (then `record` waits for it)."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator

#: The phases in the order an apply runs them, and what each covers.
PHASES: dict[str, str] = {
    "start": "interpreter start and the command line's imports, until the command runs",
    "load": "reading and validating the settings file (the settings model loaded first)",
    "imports": "the apply's own code loaded (render, plan, targets, the store)",
    "open": "the target found, the store opened (migrated if new)",
    "sounds": "the sound files' audio (converted or read from the store)",
    "render": "the model and secrets to the Asterisk files",
    "plan": "lock, recovery, comparing with the running files",
    "check": "the running files unchanged, the new ones valid",
    "console": "Asterisk's console answers (before anything is written)",
    "write": "journal, then the changed files and realtime rows written",
    "reload": "Asterisk reloading the modules whose files changed",
    "verify": "Asterisk shows what changed (AMI/console)",
    "store": "the store update: the import's writes (compared during reload)",
    "generation": "manifest, generation and site snapshot kept",
    "mailboxes": "the voicemail of users no longer in the site removed",
    "devices": "phones of removed users unassigned, the store closed",
    "output": "the result printed, the process ends",
}


def process_age() -> float | None:
    """Seconds since this process started (Linux: /proc), None where unknown."""
    try:
        with open("/proc/self/stat", encoding="ascii") as stat:
            fields = stat.read().rpartition(")")[2].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")
        return time.clock_gettime(time.CLOCK_BOOTTIME) - started
    except (OSError, ValueError, IndexError, AttributeError):
        return None


class Phases:
    """Wall seconds per phase of one command (see the module documentation)."""

    def __init__(self) -> None:
        age = process_age()
        self.origin = time.perf_counter() - (age or 0.0)
        self.seconds: dict[str, float] = {}
        #: CPU seconds of each phase (this thread's: the phases run in one), since the
        #: wall seconds of a loaded machine say little about the work: `start` is the whole
        #: process's CPU time until these phases were made
        self.cpu: dict[str, float] = {}
        if age is not None:
            self.seconds["start"] = age
            self.cpu["start"] = time.process_time()
        self.overlapped: dict[str, float] = {}
        self._lock = threading.Lock()
        #: phases under way (the JSON output is made inside its `output` phase)
        self._open: dict[str, tuple[float, float]] = {}

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = self.mark()
        self._open[name] = started  # counted so far when the table is made inside it
        try:
            yield
        finally:
            self._open.pop(name, None)
            self.since(name, started)

    @contextlib.contextmanager
    def alongside(self, name: str) -> Iterator[None]:
        """Work in a thread beside the main phases: shown, not added to the sum."""
        started = time.perf_counter()
        try:
            yield
        finally:
            with self._lock:
                self.overlapped[name] = self.overlapped.get(name, 0.0) \
                    + time.perf_counter() - started

    @staticmethod
    def mark() -> tuple[float, float]:
        """Now, for `since`: a phase that ends inside a `with` or `async with` block whose
        entering is the phase (a lock taken, a console reached)."""
        return time.perf_counter(), time.thread_time()

    def since(self, name: str, mark: tuple[float, float]) -> None:
        """Add the time from `mark` to now to phase `name`."""
        self.add(name, time.perf_counter() - mark[0], time.thread_time() - mark[1])

    def add(self, name: str, seconds: float, cpu: float = 0.0) -> None:
        with self._lock:
            self.seconds[name] = self.seconds.get(name, 0.0) + seconds
            self.cpu[name] = self.cpu.get(name, 0.0) + cpu

    def total(self) -> float:
        """Seconds since the process started (or since these phases were made)."""
        return time.perf_counter() - self.origin

    def _so_far(self) -> tuple[dict[str, float], dict[str, float]]:
        """Wall and CPU seconds per phase, those under way counted until now."""
        seconds, cpu = dict(self.seconds), dict(self.cpu)
        now = self.mark()
        for name, (wall, thread) in self._open.items():
            seconds[name] = seconds.get(name, 0.0) + now[0] - wall
            cpu[name] = cpu.get(name, 0.0) + now[1] - thread
        return seconds, cpu

    def rows(self) -> list[tuple[str, float, str]]:
        """(phase, seconds, what it covers), in running order, then 'other' (the gaps)."""
        so_far = self._so_far()[0]
        order = list(PHASES) + [n for n in so_far if n not in PHASES]
        found = [(n, so_far[n], PHASES.get(n, "")) for n in order if n in so_far]
        other = self.total() - sum(s for _, s, _ in found)
        if other > 0.0005:
            found.append(("other", other, "between the phases above"))
        return found

    def to_json(self) -> dict[str, object]:
        return {"total_seconds": round(self.total(), 3),
                "phases": {n: round(s, 3) for n, s, _ in self.rows()},
                "alongside": {n: round(s, 3) for n, s in self.overlapped.items()},
                "cpu_seconds": {n: round(s, 3) for n, s in self._so_far()[1].items()},
                "cpu_total_seconds": round(time.process_time(), 3)}
