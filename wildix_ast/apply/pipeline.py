"""The one-way pipeline as use cases: settings → model (+ kept secrets) → rendered files → a
target Asterisk → the store.

The CLI verbs are thin over these functions, and the tests call them too, so what is tested is
what a person runs. `apply_site` holds the target's lock from the plan to the store update:
the store, the files and what Asterisk runs describe the same site after any mix of
concurrent applies, and an apply that reports success had its configuration live.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ParamSpec, Protocol, TypeVar

from wildix_ast.asterisk.manager import runtime_account
from wildix_ast.asterisk.paths import AsteriskPaths
from wildix_ast.model.site import Site
from wildix_ast.store.vault import (
    DraftVault,
    SecretVault,
    fastagi_key,
    manager_secret,
    realtime_secret,
    voicemail_pins,
    with_secrets,
)

if TYPE_CHECKING:
    from wildix_ast.ami import AmiClient
    from wildix_ast.apply import ApplyReport, ConfigTarget, Generation, Plan
    from wildix_ast.apply.timing import Phases
    from wildix_ast.asterisk_cli import AsteriskCli, Runner
    from wildix_ast.sounds.audio import SoundLibrary
    from wildix_ast.store import Store
    from wildix_ast.store.history import ImportReport
    from wildix_ast.store.site_rows import PreparedImport

Progress = Callable[[str, str], None]
P = ParamSpec("P")
R = TypeVar("R")
SITE_SNAPSHOT = "site.json"
#: Beside the site snapshot: each sound file's audio digest ({sound: {language: sha256}}),
#: so that a rollback gives the store back the audio of the sound files it restores.
SOUNDS_SNAPSHOT = "sounds.json"


def _quiet(_step: str, _message: str) -> None:
    pass


class Ports(Protocol):
    @property
    def sip(self) -> int: ...
    @property
    def ami(self) -> int: ...
    @property
    def rtp_start(self) -> int: ...
    @property
    def rtp_end(self) -> int: ...
    @property
    def tls(self) -> int: ...
    @property
    def agi(self) -> int: ...


@dataclass(frozen=True)
class Target:
    """Where a configuration goes: the Asterisk of this host, or a lab's (`Lab.target`)."""

    name: str
    etc_dir: Path
    paths: AsteriskPaths
    ports: Ports | None = None  # None: listen where the site says
    ami_host: str = "127.0.0.1"
    #: Asterisk's data folder as this host sees it: sound files go there (None: not
    #: installed, e.g. `render` into a folder)
    data_dir: Path | None = None
    #: how its console is reached (None: `asterisk -rx` with the target's asterisk.conf)
    runner: Runner | None = field(default=None, compare=False)
    #: Asterisk's spool folder as this host sees it: the voicemail messages of users who
    #: are gone are removed there after an apply (None: left alone, e.g. `render`)
    spool_dir: Path | None = None

    @classmethod
    def host(cls, etc_dir: Path = Path("/etc/asterisk"),
             data_dir: Path | None = None) -> Target:
        paths = AsteriskPaths()
        return cls(name=f"host {etc_dir}", etc_dir=etc_dir, paths=paths,
                   data_dir=data_dir or Path(str(paths.data)),
                   spool_dir=Path(str(paths.spool)) if etc_dir == Path("/etc/asterisk")
                   else None)

    def console(self) -> AsteriskCli:
        """Asterisk's root-only console: what apply reloads, verifies and restarts with
        (no AMI account may: see `asterisk_cli`)."""
        from wildix_ast.asterisk_cli import AsteriskCli, host_runner

        runner = self.runner or host_runner(self.etc_dir / "asterisk.conf")
        return AsteriskCli(runner, self.name)

    def adapt(self, site: Site) -> Site:
        if self.ports is None:
            return site
        return site.with_ports(sip=self.ports.sip, rtp_start=self.ports.rtp_start,
                               rtp_end=self.ports.rtp_end, ami=self.ports.ami,
                               tls=self.ports.tls, agi=self.ports.agi)


@dataclass(frozen=True)
class Compiled:
    """Everything a target needs: the site as it will run, its files, and the AMI login."""

    site: Site
    files: dict[str, str]
    ami_host: str
    ami_port: int
    ami_username: str
    ami_secret: str
    sound_files: dict[str, bytes] | None = None
    """The sound files (path under the data folder -> bytes); None: left alone."""

    def ami(self, timeout: float = 5.0) -> AmiClient:
        from wildix_ast.ami import AmiClient

        return AmiClient(self.ami_host, self.ami_port, self.ami_username, self.ami_secret,
                         timeout=timeout)


def compile_site(site: Site, vault: SecretVault, target: Target,
                 templates: Path | None = None,
                 sounds: SoundLibrary | None = None) -> Compiled:
    """The files `site` renders to on `target`; generated secrets are kept in `vault`.
    `sounds`: the converted audio of the site's sounds (the sound files are installed
    only with it)."""
    from wildix_ast.asterisk.render import render_site
    from wildix_ast.model.trunks import with_provider_addresses
    from wildix_ast.sounds.install import files_to_install

    running = target.adapt(with_secrets(site, vault))
    # registration trunks' provider addresses: resolved here, never on the call path
    running = running.model_copy(update={"trunks": with_provider_addresses(running.trunks)})
    manager, realtime = running.system.manager, running.system.realtime
    secret = manager_secret(vault, manager.username)
    database_secret = (realtime_secret(vault, realtime.username)
                       if realtime.enabled and realtime.engine.value == "postgresql" else "")
    files = render_site(running, manager_secret=secret, paths=target.paths,
                        templates=templates, voicemail_pins=voicemail_pins(running, vault),
                        sounds=sounds,
                        runtime_secret=manager_secret(vault, runtime_account(manager.username)),
                        fastagi_key=fastagi_key(vault), realtime_secret=database_secret,
                        hot_desks=hot_desk_accounts(vault),
                        node_pair_secrets={
                            (a, b): manager_secret(vault, f"node-pair-{a}-{b}")
                            for a, b in _pairs([n.name for n in realtime.nodes])})
    sound_files = None if sounds is None else files_to_install(
        running.sounds, running.system.language_region.language, sounds)
    return Compiled(site=running, files=files, ami_host=target.ami_host, ami_port=manager.port,
                    ami_username=manager.username, ami_secret=secret, sound_files=sound_files)


def hot_desk_accounts(vault: SecretVault) -> tuple[tuple[str, str], ...]:
    """(MAC, SIP password) of each device's hot-desk endpoint: the store's devices (none
    for a vault that is not a store: a bare render), passwords generated once."""
    from wildix_ast.store.handset import hot_desk_secrets
    from wildix_ast.store.store import Store

    return hot_desk_secrets(vault) if isinstance(vault, Store) else ()


def _pairs(names: list[str]) -> list[tuple[str, str]]:
    """Every pair of node names, each sorted: one trunk secret per pair (issue 22)."""
    ordered = sorted(names)
    return [(a, b) for i, a in enumerate(ordered) for b in ordered[i + 1:]]


def site_sounds(site: Site, site_file: Path, store: Store) -> SoundLibrary:
    """The converted audio of the sounds `site_file` names (relative to its folder): what
    the store already has is reused, the rest goes through sox. A missing or undecodable
    file raises before anything is stored."""
    from wildix_ast.model.settings_file import locator
    from wildix_ast.sounds.audio import prepare

    if not site.sounds:
        return {}
    return prepare(site, site_file.resolve().parent, store.sound_audio, locator(site_file))


def config_target(target: Target, compiled: Compiled | None,
                  vault: SecretVault | None = None) -> ConfigTarget:
    """`vault`: where the PostgreSQL realtime writer's connection is kept (realtime mode)."""
    from wildix_ast.apply import ConfigTarget
    from wildix_ast.store.realtime_tables import WRITER_URL_KEY

    config = ConfigTarget(target.etc_dir, target.console if compiled is not None else None,
                          name=target.name, data_dir=target.data_dir,
                          realtime_url=None if vault is None else vault.get_secret(WRITER_URL_KEY))
    return config


def render_to_folder(site: Site, vault: SecretVault, out_dir: Path, *,
                     templates: Path | None = None,
                     paths: AsteriskPaths | None = None) -> list[Path]:
    """`wildix-ast render`: the files of `site` written into `out_dir`."""
    from wildix_ast.asterisk.render import write_rendered

    target = Target(name=f"folder {out_dir}", etc_dir=out_dir, paths=paths or AsteriskPaths())
    return write_rendered(compile_site(site, vault, target, templates).files, out_dir)


@dataclass
class ApplyOutcome:
    target: str
    plan: Plan
    dry_run: bool = False
    offline: bool = False
    report: ApplyReport | None = None
    generation: Generation | None = None
    store: str | None = None
    recovered: str | None = None
    interrupted: str | None = None  # an interrupted apply seen by a dry run
    notes: list[str] = field(default_factory=list)
    timing: Phases | None = None
    """Where the time went (`apply.timing`)."""

    def to_json(self) -> dict[str, object]:
        report = self.report.to_json() if self.report is not None else None
        plan = self.plan.to_json()  # (its diff can take a while: before the timing's end)
        timing = self.timing.to_json() if self.timing is not None else None
        return {
            "ok": True, "target": self.target, "dry_run": self.dry_run,
            "offline": self.offline, **plan,
            "verified": self.report.verified if self.report is not None else None,
            "generation": self.generation.number if self.generation is not None else None,
            "result": report, "store": self.store, "recovered": self.recovered,
            "interrupted": self.interrupted, "timing": timing, "error": None,
        }


def _revision(store: Store) -> int | None:
    return store.revision() if store.has_site() else None


def _snapshot_text(site: Site) -> str:
    # JSON through pydantic's own serializer: YAML for 10,000 users took seconds
    return site.model_dump_json(exclude_defaults=True) + "\n"


def _snapshot(config: ConfigTarget, generation: Generation | None, text: str,
              sounds: SoundLibrary | None = None) -> None:
    """Keep the settings (`_snapshot_text`) beside the generation (owner-only, like the
    store: the passwords the file gave, WEB ones as hashes; generated ones stay in the
    vault), and which audio its sounds are: a rollback puts the store back to the same
    site and sounds as the files."""
    import json

    if generation is None or not config.state.attach(generation.number, SITE_SNAPSHOT, text):
        return
    if sounds is not None and generation.sounds is not None:
        digests: dict[str, dict[str, str]] = {}
        for (name, language), audio in sorted(sounds.items()):
            digests.setdefault(name, {})[language] = audio.digest
        config.state.attach(generation.number, SOUNDS_SNAPSHOT,
                            json.dumps(digests, indent=2) + "\n")


def _snapshot_sounds(config: ConfigTarget, number: int,
                     sound_files: dict[str, bytes] | None) -> SoundLibrary | None:
    """The audio of generation `number`'s sounds, from `sound_files`, the sound files a plan puts
    back from it (None: no sound file is put back, and the store keeps its audio)."""
    import json

    from wildix_ast.sounds.install import library_from_files

    kept = config.state.attachment(number, SOUNDS_SNAPSHOT)
    if sound_files is None or kept is None:
        return None
    digests = json.loads(kept)
    return library_from_files({(name, language): digest
                               for name, languages in digests.items()
                               for language, digest in languages.items()}, sound_files)


def _recover(config: ConfigTarget, store: Store, progress: Progress,
             offline: bool = False) -> str | None:
    """Finish or undo an interrupted apply on `config` (under its lock); offline: put its
    saved files back without Asterisk. A finished one's generation gets the store's site
    and sounds as its snapshot, as if the apply had ended itself."""
    if config.interrupted() is None:
        return None
    if offline:
        return config.discard()
    from wildix_ast.ami import run

    done = run(config.recover(store_revision=_revision(store), progress=progress))
    if done is None:
        return None
    if done.generation is not None and store.has_site():
        _snapshot(config, done.generation, _snapshot_text(store.export_site()),
                  store.stored_sounds())
    return done.message


class _StoreUpdate:
    """The store update of an apply or rollback: `prepare` (run while Asterisk reloads)
    reads and compares what the import needs and serialises the snapshot; `record` (once
    Asterisk shows the new configuration) writes. A failed preparation is left to `record`,
    which does the whole import itself and meets the same error there."""

    def __init__(self, store: Store, site: Site, source_text: str | None = None,
                 sounds: SoundLibrary | None = None, phases: Phases | None = None) -> None:
        from wildix_ast.apply.timing import Phases

        self.store, self.site, self.source_text, self.sounds = store, site, source_text, sounds
        self.phases = phases or Phases()
        self.prepared: PreparedImport | None = None
        self.snapshot: str | None = None
        self.report: ImportReport | None = None

    def prepare(self) -> None:
        with self.phases.alongside("store compare"):
            with contextlib.suppress(Exception):
                self.prepared = self.store.prepare_import(self.site)
            self.snapshot = _snapshot_text(self.site)

    def record(self) -> int | None:
        with self.phases.phase("store"):
            self.report = self.store.import_site(self.site, source_text=self.source_text,
                                                 sounds=self.sounds, prepared=self.prepared)
        return self.report.revision

    def snapshot_text(self) -> str:
        return self.snapshot if self.snapshot is not None else _snapshot_text(self.site)


def _row_cache_written_after(apply: Callable[P, R]) -> Callable[P, R]:
    """The realtime row cache written once `apply` is over, not during its render
    (`row_cache.deferred_saves`)."""

    @functools.wraps(apply)
    def applying(*args: P.args, **kwargs: P.kwargs) -> R:
        from wildix_ast.asterisk.row_cache import deferred_saves

        with deferred_saves():
            return apply(*args, **kwargs)

    return applying


@_row_cache_written_after
def apply_site(site: Site, store: Store, target: Target, *, source_text: str | None = None,
               templates: Path | None = None, dry_run: bool = False, offline: bool = False,
               allow_restart: bool = False, lock_timeout: float = 120.0,
               progress: Progress = _quiet,
               show_plan: Callable[[Plan], None] | None = None,
               sounds: SoundLibrary | None = None,
               phases: Phases | None = None) -> ApplyOutcome:
    """Render for `target`, plan, and (unless a dry run) commit; the store takes the site
    once Asterisk has its configuration (offline: once the files are written). `sounds`:
    the site's converted sound files (`sound_audio.prepare`); None takes the store's.
    `phases`: where the time goes, phase by phase (kept in the outcome's `timing`)."""
    from wildix_ast.apply.timing import Phases

    phases = phases or Phases()
    with phases.phase("imports"):  # the targets' code (plans, journal, generation files)
        from wildix_ast.apply.target import Record
    with phases.phase("sounds"):
        if sounds is None:
            sounds = store.stored_sounds()
            given = None
        else:
            given = sounds
    # a dry run writes no row: the secrets it must generate for new users stay in memory
    vault: SecretVault = DraftVault(store) if dry_run else store
    with phases.phase("render"):
        compiled = compile_site(site, vault, target, templates, sounds)
    config = config_target(target, compiled, vault)
    if dry_run:
        with phases.phase("plan"):
            plan = config.plan(compiled.files, compiled.sound_files)
        journal = config.interrupted()
        outcome = ApplyOutcome(target.name, plan, dry_run=True, timing=phases)
        if journal is not None:
            outcome.interrupted = (f"an apply was interrupted at step '{journal.step}' (pid "
                                   f"{journal.pid}, {journal.started_at}); the next apply or "
                                   "rollback finishes or undoes it")
        if show_plan is not None:
            show_plan(plan)
        return outcome

    update = _StoreUpdate(store, site, source_text, given, phases)

    def record() -> int | None:
        revision = update.record()
        outcome.store = str(update.report)
        return revision

    asked = phases.mark()
    with config.locked(lock_timeout):
        phases.since("plan", asked)  # the lock (waiting for another apply) is the plan's
        with phases.phase("plan"):
            recovered = _recover(config, store, progress, offline)
            plan = config.plan(compiled.files, compiled.sound_files)
            outcome = ApplyOutcome(target.name, plan, offline=offline, recovered=recovered,
                                   timing=phases)
            if show_plan is not None:
                show_plan(plan)
        if offline:
            outcome.generation = config.install(plan, store_revision=record(),
                                                phases=phases)
        else:
            import asyncio  # (not `ami.run`: its module loads panoramisk, unused here)

            outcome.report = asyncio.run(config.commit(
                plan, progress=progress, allow_restart=allow_restart,
                record=Record(store_revision=_revision(store), on_verified=record),
                alongside=update.prepare, phases=phases))
            outcome.generation = outcome.report.generation
        with phases.phase("generation"):
            _snapshot(config, outcome.generation, update.snapshot_text(), sounds)
        if outcome.generation is not None:
            with phases.phase("mailboxes"):
                _forget_mailboxes(target, compiled.site, outcome, progress)
    return outcome


def _forget_mailboxes(target: Target, site: Site, outcome: ApplyOutcome,
                      progress: Progress) -> None:
    """GDPR: the voicemail of users the applied site no longer has (`apply.mailboxes`)."""
    from wildix_ast.apply.mailboxes import remove_gone_mailboxes
    from wildix_ast.asterisk.names import has_mailbox
    from wildix_ast.errors import WildixError

    try:
        removed = remove_gone_mailboxes(target.spool_dir,
                                        {u.extension for u in site.users if has_mailbox(u)})
    except (WildixError, OSError) as exc:
        # the configuration is applied already: say what was not done, do not fail it
        note = f"voicemail of users no longer in the site NOT removed: {exc}"
        outcome.notes.append(note)
        progress("mailboxes", note)
        return
    if removed:
        note = f"voicemail of users no longer in the site removed: {', '.join(removed)}"
        outcome.notes.append(note)
        progress("mailboxes", note)


@dataclass
class RollbackOutcome:
    target: str
    plan: Plan
    restored: int
    report: ApplyReport
    store: str | None

    def to_json(self) -> dict[str, object]:
        return {"ok": True, "target": self.target, "restored_generation": self.restored,
                **self.plan.to_json(), "verified": self.report.verified,
                "generation": self.report.generation.number if self.report.generation else None,
                "result": self.report.to_json(), "store": self.store, "error": None}


def stored_site(store: Store) -> Site:
    from wildix_ast.errors import WildixError

    if not store.has_site():
        raise WildixError("the store holds no site yet: run `wildix-ast import SITE` first")
    return store.export_site()


def rollback_target(store: Store, target: Target, *, to: int | None = None,
                    lock_timeout: float = 120.0, progress: Progress = _quiet,
                    show_plan: Callable[[Plan], None] | None = None) -> RollbackOutcome:
    """Put generation `to` (default: the previous one) back on `target`, verify it, and
    bring the store back to the site it came from."""
    from wildix_ast.ami import run
    from wildix_ast.apply.target import Record

    compiled = compile_site(stored_site(store), store, target)
    config = config_target(target, compiled, store)
    with config.locked(lock_timeout):
        _recover(config, store, progress)
        plan, chosen = config.rollback_plan(to)
        if show_plan is not None:
            show_plan(plan)
        snapshot = config.state.attachment(chosen.number, SITE_SNAPSHOT)
        restored_site = Site.model_validate_json(snapshot) if snapshot is not None else None
        # the audio of the sound files the plan puts back (None: the store keeps its own)
        restored_sounds = _snapshot_sounds(config, chosen.number, plan.new_sound_files)
        store_note: list[str] = []
        update = (_StoreUpdate(store, restored_site, sounds=restored_sounds)
                  if restored_site is not None else None)

        def record() -> int | None:
            if update is not None:
                update.record()
                store_note.append(str(update.report))
            return _revision(store)

        report = run(config.rollback(
            plan, chosen, progress=progress,
            record=Record(store_revision=_revision(store), on_verified=record),
            alongside=update.prepare if update is not None else None))
        if update is not None:
            _snapshot(config, report.generation, update.snapshot_text(), restored_sounds)
    return RollbackOutcome(target.name, plan, chosen.number, report,
                           store_note[0] if store_note else None)


def install_stored_site(store: Store, target: Target) -> None:
    """Write the stored site's files for an Asterisk about to start (the lab's `lab up`)."""
    site = stored_site(store)
    compiled_sounds = store.stored_sounds()
    compiled = compile_site(site, store, target, sounds=compiled_sounds)
    config = config_target(target, compiled, store)
    with config.locked():
        _recover(config, store, _quiet, offline=True)
        generation = config.install(config.plan(compiled.files, compiled.sound_files),
                                    store_revision=_revision(store))
        _snapshot(config, generation, _snapshot_text(site), compiled_sounds)


def setup_realtime_database(store: Store, admin_url: str) -> str:
    """Realtime on PostgreSQL (issue 22), with an admin connection given once and not kept:
    make the four realtime tables (with the columns the stored site's rows need), Asterisk's
    account (the stored site's `system.realtime.username`, its password generated in the
    vault: SELECT on the four tables, nothing else) and apply's writer account
    (`<username>_writer`: SELECT/INSERT/UPDATE/DELETE on the four tables, nothing else; its
    connection kept in the vault). What was done, for the person."""
    from wildix_ast.asterisk.realtime_tables import COLUMNS, FILE_NAME
    from wildix_ast.errors import SettingsError
    from wildix_ast.store.realtime_tables import (
        WRITER_URL_KEY,
        PostgresRealtime,
        row_changes,
        writer_url,
    )

    site = stored_site(store)
    realtime = site.system.realtime
    if not (realtime.enabled and realtime.engine.value == "postgresql"):
        raise SettingsError("system.realtime is not `mode: realtime` with `engine: "
                            "postgresql` in the stored site")
    if not admin_url.startswith(("postgresql://", "postgresql+psycopg2://")):
        raise SettingsError("--admin-url must be a postgresql:// URL")
    # every column a user's rows can have, and those the stored site's rows have now
    files = compile_site(site, store, Target(name="realtime setup", etc_dir=Path("."),
                                              paths=AsteriskPaths())).files
    columns = {table: set(names) for table, names in COLUMNS.items()}
    for (table, _), row in row_changes(None, files.get(FILE_NAME)).write.items():
        columns.setdefault(table, set()).update(row)
    writer = f"{realtime.username}_writer"
    writer_password = realtime_secret(store, writer)
    PostgresRealtime(admin_url).prepare(
        columns, (realtime.username, realtime_secret(store, realtime.username)),
        (writer, writer_password))
    store.put_secret(WRITER_URL_KEY, writer_url(admin_url, writer, writer_password))
    return (f"Asterisk's account {realtime.username!r} may read the realtime tables of "
            f"{realtime.database!r} and nothing else; apply writes their rows with the "
            f"account {writer!r} (kept in the vault), which may not change the tables' "
            "shape nor touch another table; both may use the nodes' expiry log (read; "
            "log and prune); the admin connection is not kept")
