"""A configuration target (the lab's folder, or /etc/asterisk of a host) and the verbs
integrators know from NAPALM: plan (compare), commit, discard, rollback, plus history.

`commit` runs under the target's lock, in small steps: `_refusals` (a plan made against other
running files, an invalid one, a restart not allowed), `_write` (journal, then each file
atomically), `_go_live` (reload only the modules whose files changed, or restart; verify
through AMI what changed), and `_record` (the caller's `on_verified`, the store update, then
the new generation). `rollback` is `commit` of a `rollback_plan`, recorded as such.
On a failure it puts the previous files back, reloads and verifies them. If the process is
killed, the journal stays: the next command on the target finds it, and `apply` or `rollback`
finish it (the store already took the new site) or undo it.

Sound files under Asterisk's data folder go the same way as the configuration files: the
journal saves those the apply changes or removes, a failure or an undo puts them back, and
each generation keeps the sound files it had, so that a rollback restores them too.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from wildix_ast.apply.plan import FileChange, Plan, ReloadStep, make_plan
from wildix_ast.apply.state import (
    DEFAULT_KEEP,
    Generation,
    Journal,
    TargetState,
    digest,
    sound_digest,
)
from wildix_ast.apply.timing import Phases
from wildix_ast.apply.verify import Expectation, verify
from wildix_ast.asterisk import by_name
from wildix_ast.asterisk.base import SyncRows
from wildix_ast.asterisk.sorcery import cache_entries, expire_command
from wildix_ast.asterisk_cli import CliQueries
from wildix_ast.errors import AmiError, ApplyError
from wildix_ast.files import fsync_dir, write_atomic
from wildix_ast.sounds.install import plan_sound_files, put_sound_files
from wildix_ast.store.realtime_tables import open_realtime, row_changes
from wildix_ast.testing.crash_points import crash_point

Progress = Callable[[str, str], None]
"""progress(step, message); steps: recover, check, validate, backup, write, reload, restart,
verify, record, rollback, done."""
AmiFactory = Callable[[], CliQueries]

DEFAULT_LOCK_TIMEOUT = 120.0
def _quiet(_step: str, _message: str) -> None:
    pass


@dataclass
class ReloadResult:
    module: str
    cli: str
    seconds: float
    status: str  # reloaded | not loaded

    def to_json(self) -> dict[str, object]:
        return {"module": self.module, "cli": self.cli, "seconds": round(self.seconds, 3),
                "status": self.status}


@dataclass(frozen=True)
class Recovery:
    """What `recover` did with an interrupted apply."""

    message: str
    generation: Generation | None = None
    """The generation a finished apply was recorded as (None: it was undone)."""


@dataclass(frozen=True)
class Record:
    """How a commit is recorded: its generation's kind, the generation it restores, and the
    store revision it came from: what `on_verified` returns (it runs once Asterisk shows the
    new configuration: the store update), else `store_revision`, the store's revision when
    the commit started (kept in the journal too)."""

    kind: str = "apply"
    from_generation: int | None = None
    store_revision: int | None = None
    on_verified: Callable[[], int | None] | None = None

    def revision(self) -> int | None:
        return self.on_verified() if self.on_verified is not None else self.store_revision


@dataclass(frozen=True)
class Timeouts:
    """Seconds to wait for Asterisk to show the new configuration, and to come back from a
    restart."""

    verify: float = 5.0
    restart: float = 60.0


@dataclass
class ApplyReport:
    files_written: list[str] = field(default_factory=list)
    files_removed: list[str] = field(default_factory=list)
    sounds_written: list[str] = field(default_factory=list)
    sounds_removed: list[str] = field(default_factory=list)
    reloads: list[ReloadResult] = field(default_factory=list)
    restarted: bool = False
    verified: bool | None = None
    verify_seconds: float = 0.0
    verify_attempts: int = 0
    total_seconds: float = 0.0
    generation: Generation | None = None
    recovered: str | None = None
    #: realtime rows written or deleted, as "table/key" (issue 22)
    rows_changed: list[str] = field(default_factory=list)
    #: sorcery memory cache entries expired (no module reload), as "cache/key"
    expired: list[str] = field(default_factory=list)
    #: several nodes: how many cache entries the rows' transaction logged for the other
    #: nodes' followers (None: nothing logged; store.expiry_log)
    logged_for_nodes: int | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "files_written": self.files_written, "files_removed": self.files_removed,
            "sounds_written": self.sounds_written, "sounds_removed": self.sounds_removed,
            "reloads": [r.to_json() for r in self.reloads], "restarted": self.restarted,
            "verified": self.verified, "verify_seconds": round(self.verify_seconds, 3),
            "total_seconds": round(self.total_seconds, 3),
            "generation": self.generation.number if self.generation else None,
            "recovered": self.recovered, "rows_changed": self.rows_changed,
            "expired": self.expired, "logged_for_nodes": self.logged_for_nodes,
        }


def _put(etc: Path, contents: Mapping[str, str | None]) -> None:
    for name, text in contents.items():
        if text is None:
            with contextlib.suppress(FileNotFoundError):
                (etc / name).unlink()
        else:
            write_atomic(etc / name, text)
    fsync_dir(etc)


def _read_sounds(root: Path, paths: Mapping[str, str]) -> dict[str, bytes]:
    """The sound files now at `paths` under `root` (those missing are left out)."""
    found: dict[str, bytes] = {}
    for path in paths:
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            found[path] = (root / path).read_bytes()
    return found


def _sync_rows(etc: Path, touched: list[FileChange], *, undo: bool = False,
               writer_url: str | None = None, logged: list[str] | None = None) -> list[str]:
    """Write into the realtime tables the rows the touched rows files change (`undo`: back
    from each change's new version to its old one); the rows, as "table/key". When the
    rows file says `expiry_log = yes` (several nodes read the tables), the changed cached
    objects go into the expiry log in the same transaction (`store.expiry_log`), for every
    node's follower; `logged` receives them ("cache/key")."""
    written: list[str] = []
    for change in touched:
        rules = by_name().get(change.name)
        if rules is None or not isinstance(rules.applied_by, SyncRows):
            continue
        old, new = (change.new, change.old) if undo else (change.old, change.new)
        changes = row_changes(old, new)
        rows = sorted(f"{table}/{key}" for table, key in changes.touched)
        if changes:
            # checked before anything is written: a key that could break the console
            # command is refused here, not by each node's follower
            entries = cache_entries(rows)
            for_nodes = changes.database.get("expiry_log") == "yes"
            open_realtime(etc, changes.database, writer_url).write(
                changes, entries if for_nodes else None)
            if for_nodes and logged is not None:
                logged += [f"{cache}/{key}" for cache, key in entries]
        written += rows
    return written


async def _expire(ami: CliQueries, rows: list[str], say: Progress) -> list[str]:
    """Expire the cached PJSIP objects of `rows` ("table/key") from Asterisk's sorcery memory
    caches: each is read again from its table on its next use, without a module reload."""
    entries = cache_entries(rows)  # refuses a key that could break the console command
    for cache, key in entries:
        await ami.command(expire_command(cache, key))
    if entries:
        say("expire", f"{len(entries)} cached realtime objects expired (no reload)")
    return [f"{cache}/{key}" for cache, key in entries]


def _in_thread(work: Callable[[], object] | None) -> threading.Thread:
    """Start `work` in a thread (a daemon: Ctrl-C does not wait for it); join() it. The
    thread runs at the lowest CPU priority: it works while Asterisk reloads, and must not
    take a core from Asterisk's reload (on Linux a thread's nice value is its own)."""

    def humbly() -> None:
        with contextlib.suppress(OSError, AttributeError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        if work is not None:
            work()

    thread = threading.Thread(target=humbly, name="wildix-ast-alongside", daemon=True)
    thread.start()
    return thread


def _hurry(helper: threading.Thread) -> None:
    """Asterisk's reload is over: the work alongside, if still running, gets this thread's
    priority back, since the apply now waits for it. At nice 19 on a loaded machine it got
    almost no CPU: the store update of a 10,000-user apply waited 18-81 s for a comparison
    of about one second (bench/apply_change.py at load average 9-12). Raising a priority
    needs privilege (apply on a host runs as root); without it the thread keeps nice 19."""
    if helper.is_alive() and helper.native_id is not None:
        with contextlib.suppress(OSError, AttributeError):
            os.setpriority(os.PRIO_PROCESS, helper.native_id,
                           os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))


def _command_line() -> str:
    return " ".join(["wildix-ast", *sys.argv[1:]])[:200]


class ConfigTarget:
    """One Asterisk configuration folder and the Asterisk that reads it."""

    def __init__(self, etc_dir: Path, ami: AmiFactory | None = None, *,
                 keep: int = DEFAULT_KEEP, name: str | None = None,
                 data_dir: Path | None = None, realtime_url: str | None = None) -> None:
        self.etc_dir = etc_dir
        #: Asterisk's data folder as this host sees it, where sound files go (None: none)
        self.data_dir = data_dir
        self.name = name or str(etc_dir)
        self.state = TargetState(etc_dir, keep)
        self._ami = ami
        #: realtime on PostgreSQL: the connection the rows are written with (the vault's)
        self.realtime_url = realtime_url

    # -- reading -------------------------------------------------------------------------------

    def plan(self, files: Mapping[str, str],
             sound_files: Mapping[str, bytes] | None = None) -> Plan:
        """`sound_files`: the sound files the target must hold (path under the data folder ->
        bytes); None leaves the sound files alone."""
        plan = make_plan(self.etc_dir, files)
        if sound_files is None or self.data_dir is None:
            return plan
        return dataclasses.replace(plan, sound_files=plan_sound_files(self.data_dir, sound_files),
                                   sound_files_after=tuple(sorted(sound_files.items())))

    def _put_sound_files(self, plan: Plan) -> None:
        if self.data_dir is not None and plan.sound_files:
            put_sound_files(self.data_dir, {c.path: c.new for c in plan.sound_files})

    def history(self) -> list[Generation]:
        return self.state.generations()

    def interrupted(self) -> Journal | None:
        """The journal of an apply that did not finish (killed), if any."""
        return self.state.journal()

    @contextlib.contextmanager
    def locked(self, timeout: float = DEFAULT_LOCK_TIMEOUT) -> Iterator[None]:
        with self.state.lock(_command_line(), timeout):
            yield

    # -- writing without Asterisk ---------------------------------------------------------

    def install(self, plan: Plan, *, store_revision: int | None = None,
                phases: Phases | None = None) -> Generation | None:
        """Write the plan for an Asterisk that is not running (a first start, or a host
        whose Asterisk the caller restarts): atomic writes, manifest, and a generation when
        something changed. `phases`: where the time goes (`apply.timing`)."""
        phases = phases or Phases()
        with phases.phase("check"):
            problems = plan.validate()
        if problems:
            raise ApplyError("the new configuration is invalid; nothing was written", problems)
        with phases.phase("write"):  # as in `commit`: the files, then the realtime rows
            self._put_sound_files(plan)
            _put(self.etc_dir, {c.name: c.new for c in plan.touched})
            _sync_rows(self.etc_dir, plan.touched, writer_url=self.realtime_url)
        with phases.phase("generation"):
            self.state.write_manifest(plan.new_files)
            if not plan.has_changes and self.state.generations():
                return None
            return self.state.record_generation(plan.new_files, "install", store_revision,
                                                sounds=plan.new_sound_files)

    # -- commit --------------------------------------------------------------------------------

    def _ami_client(self) -> CliQueries:
        if self._ami is None:
            raise ApplyError(f"{self.name}: no AMI connection configured; only an offline "
                             "install is possible")
        return self._ami()

    async def commit(self, plan: Plan, *, progress: Progress = _quiet,
                     allow_restart: bool = False, record: Record | None = None,
                     timeouts: Timeouts | None = None, also_expect: Expectation | None = None,
                     alongside: Callable[[], object] | None = None,
                     phases: Phases | None = None) -> ApplyReport:
        """Apply `plan` (made under the same lock); see the module documentation. `record`:
        how the new generation is recorded (its store revision comes from `on_verified`,
        which runs once Asterisk shows the new configuration). `also_expect`: objects
        Asterisk must show besides those the changed files define. `alongside`: work that
        changes nothing (e.g. reading what the store update needs), run in a thread while
        Asterisk reloads (the process only waits then) and finished before `on_verified`;
        it must not raise. `phases`: where the time goes (`apply.timing`)."""
        record, timeouts = record or Record(), timeouts or Timeouts()
        phases = phases or Phases()
        started = time.monotonic()
        with phases.phase("check"):
            restart = self._refusals(plan, allow_restart, progress)
            expected, absent = _expectations(plan, bool(restart), also_expect)
        # Log in before writing anything: an AMI that refuses us must leave the files as
        # they are.
        asked = phases.mark()
        async with self._ami_client() as ami:
            phases.since("console", asked)
            if not plan.has_changes and also_expect is None:
                return self._unchanged(plan, record, started, progress)
            report = ApplyReport()
            with phases.phase("write"):
                journal, before = self._write(plan, record, restart, report, progress)
            helper = _in_thread(alongside)
            failure = await self._go_live(ami, plan, journal, restart, (expected, absent),
                                          timeouts, report, progress, phases)
            if failure is not None:
                progress("rollback", failure)
                restored = await self._undo(ami, plan.touched, plan.modules_to_reload(),
                                            bool(restart), progress, timeouts.restart,
                                            self.data_dir, before)
                self.state.end()
                _hurry(helper)
                helper.join()
                raise ApplyError(f"{failure}; {restored}")
        with phases.phase("store"):  # the comparison alongside, if it is not done yet
            _hurry(helper)
            helper.join()
        return self._record(plan, journal, record, report, started, progress, phases)

    def _refusals(self, plan: Plan, allow_restart: bool, say: Progress) -> list[str]:
        """Refuse a plan made against other running files, an invalid one, or one that needs
        a restart unless allowed; the reasons to restart (empty: reloads do)."""
        say("check", "comparing with the running files")
        moved = [c.name for c in plan.changes if self.state.read(c.name) != c.old]
        if moved:
            raise ApplyError("the running configuration changed since the plan was made: "
                             + ", ".join(moved) + "; make a new plan")
        say("validate", "checking the new files")
        problems = plan.validate()
        if problems:
            raise ApplyError("the new configuration is invalid, nothing was written: "
                             + "; ".join(str(p) for p in problems), problems=problems)
        restart = plan.restart_reasons()
        if restart and not allow_restart:
            kind = "transport changed: " if plan.transport_changes() else ""
            raise ApplyError(f"{kind}restart required, refused without --restart; nothing "
                             "was written: " + "; ".join(restart))
        return restart

    def _unchanged(self, plan: Plan, record: Record, started: float,
                   say: Progress) -> ApplyReport:
        """Nothing to write: Asterisk answered our login; a target without history still
        gets its first generation."""
        say("done", "nothing to change; Asterisk answers with our AMI account")
        report = ApplyReport(verified=True)
        if not self.state.generations():
            self.state.write_manifest(plan.new_files)
            report.generation = self.state.record_generation(
                plan.new_files, record.kind, record.revision(), record.from_generation,
                plan.new_sound_files)
        elif record.on_verified is not None:
            record.on_verified()
        report.total_seconds = time.monotonic() - started
        return report

    def _write(self, plan: Plan, record: Record, restart: list[str], report: ApplyReport,
               say: Progress) -> tuple[Journal, dict[str, bytes | None]]:
        """Journal the running files and sound files, then write the new ones (sounds
        first: once the dialplan or hold music that plays them is reloaded, they are
        there). Returns the journal and the sound files as they were."""
        journal = Journal(
            started_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"), pid=os.getpid(),
            command=_command_line(), step="writing",
            touched=[c.name for c in plan.touched],
            reloads=[r.module for r in plan.modules_to_reload()], restart=bool(restart),
            store_revision_before=record.store_revision,
            new_files={n: digest(t) for n, t in plan.new_files.items()},
            data_dir=None if self.data_dir is None else str(self.data_dir),
            new_sounds=None if plan.sound_files_after is None else {
                p: sound_digest(b) for p, b in plan.sound_files_after})
        before = {c.path: c.old for c in plan.sound_files}
        self.state.begin(journal, {c.name: c.old for c in plan.touched if c.old is not None},
                         before)
        say("backup", f"running files kept in {self.state.dir / 'journal'}")
        for change in plan.touched:
            say("write", f"{change.kind} {change.name}")
        crash_point("before-write")
        for sound_files in plan.sound_files:
            say("write", f"{sound_files.kind} sound {sound_files.path}")
        self._put_sound_files(plan)
        crash_point("after-sounds")
        _put(self.etc_dir, {c.name: c.new for c in plan.touched})
        crash_point("after-write")
        report.files_written = [c.name for c in plan.touched if c.new is not None]
        report.files_removed = plan.removed
        report.sounds_written = [c.path for c in plan.sound_files if c.new is not None]
        report.sounds_removed = [c.path for c in plan.sound_files if c.new is None]
        return journal, before

    async def _go_live(self, ami: CliQueries, plan: Plan, journal: Journal,
                       restart: list[str], wanted: tuple[Expectation, Expectation],
                       timeouts: Timeouts, report: ApplyReport, say: Progress,
                       phases: Phases) -> str | None:
        """Reload what changed (or restart), then verify; the failure, or None."""
        with phases.phase("write"):
            self.state.step(journal, "reloading")
        expected, absent = wanted
        try:
            # the realtime rows after the files (the journal holds the previous rows file:
            # an undo writes the previous rows back), before anything is reloaded
            logged: list[str] = []
            with phases.phase("write"):
                report.rows_changed = _sync_rows(self.etc_dir, plan.touched,
                                                 writer_url=self.realtime_url, logged=logged)
        except ApplyError as e:
            return e.message
        if logged:
            report.logged_for_nodes = len(logged)
            say("nodes", f"{len(logged)} cached objects logged for the other nodes' "
                         "followers")
        crash_point("after-rows")
        try:
            with phases.phase("reload"):
                if restart:
                    await _restart(ami, say, timeouts.restart)
                    report.restarted = True
                else:
                    # the changed rows first: they are live before the (slower) reloads
                    report.expired = await _expire(ami, report.rows_changed, say)
                    report.reloads = await _reload_all(ami, plan.modules_to_reload(), say)
            crash_point("after-reload")
            with phases.phase("verify"):
                self.state.step(journal, "verifying")
                say("verify", _describe(expected, absent))
                missing, report.verify_attempts, report.verify_seconds = await verify(
                    ami, expected, absent, timeout=timeouts.verify)
        except AmiError as e:
            return f"{'restart' if restart else 'reload'} failed: {e.message}"
        return "verification failed: " + ", ".join(missing) if missing else None

    def _record(self, plan: Plan, journal: Journal, record: Record, report: ApplyReport,
                started: float, say: Progress, phases: Phases | None = None) -> ApplyReport:
        """Asterisk shows the new configuration: update the store (`on_verified`), then
        keep the new generation and close the journal."""
        phases = phases or Phases()
        report.verified = True
        self.state.step(journal, "recording")
        crash_point("before-store")
        revision = record.revision()
        crash_point("after-store")
        with phases.phase("generation"):
            self.state.write_manifest(plan.new_files)
            if plan.has_changes or not self.state.generations():
                say("record", "keeping this configuration as a new generation")
                report.generation = self.state.record_generation(
                    plan.new_files, record.kind, revision, record.from_generation,
                    plan.new_sound_files)
            self.state.end()
        report.total_seconds = time.monotonic() - started
        say("done", f"applied in {report.total_seconds:.2f} s")
        return report

    async def _undo(self, ami: CliQueries, touched: list[FileChange], reloads: list[ReloadStep],
                    restart: bool, say: Progress, restart_timeout: float,
                    data_dir: Path | None = None,
                    sounds: Mapping[str, bytes | None] | None = None) -> str:
        """Put back the previous files and sound files (`sounds`: path -> previous bytes,
        None for one that did not exist), reload and verify."""
        names = ", ".join(c.name for c in touched)
        sounds = sounds if data_dir is not None and sounds else {}
        if sounds:
            names += f" and {len(sounds)} sound files"
        try:
            # The previous sounds before the previous configuration that plays them is
            # reloaded; the sounds it does not know only once it no longer plays them.
            if sounds and data_dir is not None:
                put_sound_files(data_dir, {p: b for p, b in sounds.items() if b is not None})
            _put(self.etc_dir, {c.name: c.old for c in touched})
            rows = _sync_rows(self.etc_dir, touched, undo=True,
                              writer_url=self.realtime_url)
        except ApplyError as e:
            return (f"the previous files were restored ({names}) but writing the previous "
                    f"realtime rows failed: {e.message}")
        except OSError as e:
            return (f"RESTORING THE PREVIOUS FILES FAILED ({e}); they are kept in "
                    f"{self.state.dir / 'journal'}")
        try:
            if restart:
                await _restart(ami, say, restart_timeout)
            else:
                await _reload_all(ami, reloads, say)
                await _expire(ami, rows, say)
        except AmiError as e:
            return (f"the previous files were restored ({names}) but reloading them failed: "
                    f"{e.message}")
        finally:
            if sounds and data_dir is not None:
                with contextlib.suppress(OSError):
                    put_sound_files(data_dir, {p: None for p, b in sounds.items() if b is None})
        old = Expectation()
        for change in touched:
            if change.old is not None:
                with contextlib.suppress(ApplyError):
                    old.update(Expectation.of_change(change.name, None, change.old)[0])
        try:
            missing, _, _ = await verify(ami, old, timeout=2.0)
        except AmiError as e:
            missing = [f"(could not check: {e.message})"]
        if missing:
            return (f"the previous files were restored ({names}) and reloaded, but Asterisk "
                    f"does not show all of them again: {', '.join(missing)}")
        return f"the previous configuration was restored ({names}) and reloaded"

    # -- recovery, discard, rollback ---------------------------------------------------------

    async def recover(self, *, store_revision: int | None, progress: Progress = _quiet,
                      restart_timeout: float = 60.0) -> Recovery | None:
        """Finish or undo an interrupted apply (call under the lock). Finish when it was
        verified and the store already took the new site; undo otherwise. Returns what was
        done, or None when there was nothing to recover."""
        journal = self.state.journal()
        if journal is None:
            return None
        what = (f"an apply interrupted at step '{journal.step}' (pid {journal.pid}, "
                f"started {journal.started_at}: {journal.command})")
        stored = (store_revision is not None and journal.store_revision_before is not None
                  and store_revision > journal.store_revision_before)
        data_dir = Path(journal.data_dir) if journal.data_dir else None
        if journal.step == "recording" and stored:
            files = {n: t for n in journal.new_files if (t := self.state.read(n)) is not None}
            # the apply wrote its sounds before its files: they are on disk
            sounds = (None if journal.new_sounds is None or data_dir is None
                      else _read_sounds(data_dir, journal.new_sounds))
            self.state.write_manifest(files)
            generation = self.state.record_generation(files, "recovered", store_revision,
                                                      sounds=sounds)
            self.state.end()
            return Recovery(f"finished {what}: Asterisk and the store already had its "
                            "configuration", generation)
        progress("recover", f"undoing {what}")
        if self._ami is None:
            self._put_back(journal)
            self.state.end()
            return Recovery(f"undid {what}: the previous files are back (Asterisk not "
                            "contacted)")
        saved = self.state.saved_before()
        touched = [FileChange(n, "change", saved.get(n), self.state.read(n))
                   for n in journal.touched]
        reloads = [ReloadStep(m, f"module reload {m}", ()) for m in journal.reloads]
        async with self._ami_client() as ami:
            result = await self._undo(ami, touched, reloads, journal.restart, progress,
                                      restart_timeout, data_dir,
                                      self.state.saved_sounds(journal))
        self.state.end()
        return Recovery(f"undid {what}: {result}")

    def _put_back(self, journal: Journal) -> None:
        """The files and sound files as they were before the journal's apply, written
        without Asterisk."""
        if journal.data_dir and journal.sounds_before:
            put_sound_files(Path(journal.data_dir), self.state.saved_sounds(journal))
        saved = self.state.saved_before()
        touched = [FileChange(n, "change", saved.get(n), self.state.read(n))
                   for n in journal.touched]
        _put(self.etc_dir, {n: saved.get(n) for n in journal.touched})
        _sync_rows(self.etc_dir, touched, undo=True, writer_url=self.realtime_url)

    def discard(self) -> str | None:
        """NAPALM's discard: drop what is not committed. A plan is only a value, so the one
        thing to drop is an interrupted apply's journal, putting its saved files back
        without touching Asterisk (use `recover` to reload too)."""
        journal = self.state.journal()
        if journal is None:
            return None
        self._put_back(journal)
        self.state.end()
        return f"discarded the apply started {journal.started_at} (pid {journal.pid})"

    def rollback_plan(self, to: int | None = None) -> tuple[Plan, Generation]:
        """The plan that puts generation `to` (default: the one before the newest) back."""
        generations = self.state.generations()
        if to is None:
            if len(generations) < 2:
                raise ApplyError(f"{self.name}: no earlier generation to roll back to "
                                 f"({len(generations)} kept; see `wildix-ast history`)")
            chosen = generations[-2]
        else:
            found = [g for g in generations if g.number == to]
            if not found:
                kept = ", ".join(str(g.number) for g in generations) or "none"
                raise ApplyError(f"{self.name}: generation {to} is not kept (kept: {kept})")
            chosen = found[0]
        files = self.state.generation_files(chosen.number)
        return self.plan(files, self.state.generation_sounds(chosen.number)), chosen

    async def rollback(self, plan: Plan, chosen: Generation, *, progress: Progress = _quiet,
                       record: Record | None = None,
                       alongside: Callable[[], object] | None = None) -> ApplyReport:
        """NAPALM's rollback: commit `plan` (from `rollback_plan`, which shows it first), which
        puts generation `chosen` back, and record it as a generation of kind `rollback`. A
        rollback may restart Asterisk: the files it restores ran before."""
        record = dataclasses.replace(record or Record(), kind="rollback",
                                     from_generation=chosen.number)
        return await self.commit(plan, progress=progress, allow_restart=True, record=record,
                                 alongside=alongside)


def _expectations(plan: Plan, restart: bool, also: Expectation | None,
                  ) -> tuple[Expectation, Expectation]:
    """What Asterisk must show once the plan is live, and what it must no longer show."""
    expected, absent = Expectation(), Expectation()
    for change in plan.touched:
        present, gone = Expectation.of_change(change.name, change.old, change.new)
        expected.update(present)
        absent.update(gone)
    if restart:  # a restart reloads everything: everything must be back
        expected = Expectation.from_files(plan.new_files)
    if also is not None:
        expected.update(also)
    return expected, absent


def _describe(expected: Expectation, absent: Expectation) -> str:
    parts = []
    for label, wanted, gone in (("endpoints", expected.endpoints, absent.endpoints),
                                ("AORs", expected.aors, absent.aors),
                                ("contexts", expected.contexts, absent.contexts)):
        if wanted or gone:
            parts.append(f"{len(wanted)} {label} present, {len(gone)} gone")
    return "asking Asterisk: " + ("; ".join(parts) if parts else "nothing changed to check")


async def _reload_all(ami: CliQueries, reloads: list[ReloadStep], say: Progress,
                      ) -> list[ReloadResult]:
    results: list[ReloadResult] = []
    # one console command lists them all (each command is a process on a busy host)
    loaded = await ami.loaded_modules() if any(s.module.endswith(".so") for s in reloads) \
        else set()
    for step in reloads:
        start = time.monotonic()
        if step.module.endswith(".so") and step.module not in loaded:
            say("reload", f"{step.module} is not loaded: nothing to reload")
            results.append(ReloadResult(step.module, step.cli, 0.0, "not loaded"))
            continue
        say("reload", step.cli)
        await ami.reload_module(step.module)
        results.append(ReloadResult(step.module, step.cli, time.monotonic() - start,
                                    "reloaded"))
    return results


async def _restart(ami: CliQueries, say: Progress, timeout: float) -> None:
    """`core restart gracefully` (Asterisk waits for the calls in progress to end), then
    reconnect to the new process (told apart from the old one by its startup time)."""
    before = await ami.started_at()
    say("restart", "core restart gracefully")
    with contextlib.suppress(AmiError):
        await ami.command("core restart gracefully")
    await ami.close()
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        try:
            await ami.connect()
            now = await ami.started_at()
        except AmiError as e:
            last = e.message
            continue
        # uptime is in whole seconds: a start more than 1.5 s later is another process
        if now - before > 1.5:
            # The console answers while modules still load: PJSIP may not be there yet.
            try:
                await ami.command("core waitfullybooted",
                                  timeout=max(1.0, deadline - time.monotonic()))
            except AmiError as e:
                last = e.message
                continue
            return
        await ami.close()
        last = "the old Asterisk process is still running"
    raise AmiError(f"Asterisk did not come back within {timeout:g} s of the restart: {last}")
