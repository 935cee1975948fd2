"""What wildix-ast keeps beside a target's configuration, in `<etc>/.wildix-ast/` (0700):

* `manifest.json`: the files wildix-ast owns and their SHA-256 (a hand edit shows as drift;
  only owned files are ever removed);
* `generations/<n>/`: each configuration that went live (files + `meta.json`: time, kind,
  store revision), the newest `keep` of them, for `history` and `rollback`, with the sound
  files it had under Asterisk's data folder: `sounds/<sha256>`, one copy per content (a
  hard link to an older generation's copy of the same bytes), named by path in `meta.json`;
* `journal/`: the apply in progress (its step, the files and sound files as they were
  before it); a journal left behind means an apply was killed, and the next command
  finishes or undoes it;
* `lock`: one apply at a time per target (an fcntl lock: the kernel drops it when its holder
  dies, so a killed apply never blocks the next) and `lock-holder.json`, who holds it.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import shutil
import socket
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from wildix_ast.errors import ApplyError, TargetBusyError
from wildix_ast.files import fsync_dir, write_atomic

STATE_DIR = ".wildix-ast"
# What a first version kept directly in the folder; read once, then removed.
LEGACY_MANIFEST = ".wildix-ast-manifest.json"
LEGACY_PREVIOUS = ".wildix-ast-previous"
DEFAULT_KEEP = 5
PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
SOUNDS = "sounds"  # the sound files of a generation or journal, by sha256


@dataclass(frozen=True)
class Generation:
    number: int
    applied_at: str
    kind: str  # apply | rollback | install | recovered
    files: dict[str, str]  # name -> sha256
    store_revision: int | None = None
    from_generation: int | None = None
    sounds: dict[str, str] | None = None
    """Sound file path under Asterisk's data folder -> sha256; None: the sound files were
    not recorded (a target without a data folder, or a generation older than this field),
    and a rollback to it leaves them alone."""

    def to_json(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class Journal:
    """An apply in progress. `step`: writing → reloading → verifying → recording."""

    started_at: str
    pid: int
    command: str
    step: str
    touched: list[str]
    reloads: list[str]
    restart: bool
    store_revision_before: int | None
    new_files: dict[str, str] = field(default_factory=dict)  # name -> sha256
    #: Asterisk's data folder the sound files below are under (None: sounds left alone)
    data_dir: str | None = None
    #: each sound file the apply writes or removes -> sha256 of its saved previous bytes
    #: (`journal/sounds/<sha256>`), None when it did not exist
    sounds_before: dict[str, str | None] = field(default_factory=dict)
    #: every sound file the target holds once the apply is done -> sha256 (None: left alone)
    new_sounds: dict[str, str] | None = None


@functools.lru_cache(maxsize=64)
def digest(text: str) -> str:
    # cached: the journal, the manifest and the generation each record the digests of
    # the same new files (a 10,000-user pjsip.conf is 8 MB)
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


@functools.lru_cache(maxsize=256)
def sound_digest(data: bytes) -> str:
    # cached like `digest`: the journal, the generation and the recovery ask for the same
    # sound files (an hour of hold music is 170 MB)
    return hashlib.sha256(data).hexdigest()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _write_durable(path: Path, text: str | bytes) -> None:
    """Write a new file of a staging folder: no temporary file nor rename, since nothing
    reads the folder before it is renamed into place (its files are synced first)."""
    data = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def _linked(kept: Path, path: Path) -> bool:
    """Share the previous generation's copy of an unchanged file (a hard link: nothing
    rewrites a kept file in place); False when it cannot be shared."""
    try:
        os.link(kept, path)
    except OSError:
        return False
    return True


class TargetState:
    def __init__(self, etc_dir: Path, keep: int = DEFAULT_KEEP) -> None:
        self.etc_dir = etc_dir
        self.dir = etc_dir / STATE_DIR
        self.keep = keep

    # -- files of the target ---------------------------------------------------------------

    @staticmethod
    def reserved(name: str) -> bool:
        return name.startswith(".wildix-ast")

    def read(self, name: str) -> str | None:
        try:
            return (self.etc_dir / name).read_bytes().decode("utf-8", "surrogateescape")
        except FileNotFoundError:
            return None

    digest = staticmethod(digest)

    def ensure(self) -> None:
        for folder in (self.dir, self.dir / "generations"):
            folder.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
            os.chmod(folder, PRIVATE_DIR)

    def _write(self, path: Path, text: str) -> None:
        write_atomic(path, text, mode=PRIVATE_FILE)

    # -- manifest ----------------------------------------------------------------------------

    def manifest(self) -> dict[str, str]:
        path = self.dir / "manifest.json"
        if not path.exists():
            path = self.etc_dir / LEGACY_MANIFEST
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        try:
            files = json.loads(text)["files"]
            return {str(k): str(v) for k, v in files.items()}
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise ApplyError(f"{path} is unreadable ({e}); move it away to let wildix-ast "
                             "take ownership again") from None

    def write_manifest(self, files: Mapping[str, str]) -> None:
        self.ensure()
        data = {"version": 2, "files": {n: digest(t) for n, t in sorted(files.items())}}
        self._write(self.dir / "manifest.json", json.dumps(data, indent=2) + "\n")
        with contextlib.suppress(FileNotFoundError):
            (self.etc_dir / LEGACY_MANIFEST).unlink()
        shutil.rmtree(self.etc_dir / LEGACY_PREVIOUS, ignore_errors=True)

    # -- generations ---------------------------------------------------------------------------

    def generations(self) -> list[Generation]:
        found: list[Generation] = []
        folder = self.dir / "generations"
        if not folder.is_dir():
            return []
        for entry in folder.iterdir():
            meta = entry / "meta.json"
            if not entry.name.isdigit() or not meta.is_file():
                continue  # a generation being written, or not ours
            with contextlib.suppress(ValueError, TypeError, KeyError):
                found.append(Generation(**json.loads(meta.read_text(encoding="utf-8"))))
        return sorted(found, key=lambda g: g.number)

    def generation_files(self, number: int) -> dict[str, str]:
        folder = self.dir / "generations" / str(number) / "files"
        if not folder.is_dir():
            raise ApplyError(f"generation {number} is not kept on {self.etc_dir} (see "
                             "`wildix-ast history`)")
        return {p.name: p.read_bytes().decode("utf-8", "surrogateescape")
                for p in sorted(folder.iterdir())}

    def generation_sounds(self, number: int) -> dict[str, bytes] | None:
        """The sound files generation `number` had (path under Asterisk's data folder ->
        bytes); None when it did not record them."""
        found = [g for g in self.generations() if g.number == number]
        if not found or found[0].sounds is None:
            return None
        folder = self.dir / "generations" / str(number) / SOUNDS
        by_digest: dict[str, bytes] = {}
        out: dict[str, bytes] = {}
        for path, sha in sorted(found[0].sounds.items()):
            if sha not in by_digest:
                try:
                    by_digest[sha] = (folder / sha).read_bytes()
                except FileNotFoundError:
                    raise ApplyError(f"generation {number} on {self.etc_dir} lost its copy "
                                     f"of the sound file {path}") from None
            out[path] = by_digest[sha]
        return out

    def attach(self, number: int, name: str, text: str) -> bool:
        """Keep `text` as `name` beside generation `number` (owner-only: what the caller
        keeps there, e.g. the settings a rollback gives back to the store, may hold
        passwords); False when that generation is not kept. The one writer of generation
        folders besides `record_generation`."""
        folder = self.dir / "generations" / str(number)
        if not folder.is_dir():
            return False
        write_atomic(folder / name, text, mode=0o600)
        return True

    def attachment(self, number: int, name: str) -> str | None:
        """What `attach` kept as `name` beside generation `number` (None: nothing)."""
        try:
            return (self.dir / "generations" / str(number) / name).read_text(encoding="utf-8")
        except (FileNotFoundError, NotADirectoryError):
            return None

    def record_generation(self, files: Mapping[str, str], kind: str,
                          store_revision: int | None,
                          from_generation: int | None = None,
                          sounds: Mapping[str, bytes] | None = None) -> Generation:
        """Keep `files` and `sounds` (None: not recorded) as the newest generation (written
        aside, then renamed into place) and forget the oldest beyond `keep`."""
        self.ensure()
        existing = self.generations()
        number = (existing[-1].number + 1) if existing else 1
        generation = Generation(number=number, applied_at=_now(), kind=kind,
                                files={n: digest(t) for n, t in sorted(files.items())},
                                store_revision=store_revision,
                                from_generation=from_generation,
                                sounds=None if sounds is None else {
                                    p: sound_digest(b) for p, b in sorted(sounds.items())})
        root = self.dir / "generations"
        staging = root / f".{number}.{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        (staging / "files").mkdir(mode=PRIVATE_DIR, parents=True)
        previous = existing[-1] if existing else None
        for name, text in files.items():
            kept = root / str(previous.number) / "files" / name if previous else None
            if kept is not None and previous is not None \
                    and previous.files.get(name) == generation.files[name] \
                    and _linked(kept, staging / "files" / name):
                continue
            _write_durable(staging / "files" / name, text)
        if sounds is not None and generation.sounds is not None:
            (staging / SOUNDS).mkdir(mode=PRIVATE_DIR)
            self._keep_sounds(staging / SOUNDS, {generation.sounds[p]: data
                                                 for p, data in sounds.items()})
        _write_durable(staging / "meta.json", json.dumps(generation.to_json(), indent=2) + "\n")
        fsync_dir(staging / "files")
        fsync_dir(staging)
        os.chmod(staging, PRIVATE_DIR)
        os.replace(staging, root / str(number))
        fsync_dir(root)
        for old in [*existing, generation][:-self.keep]:
            shutil.rmtree(root / str(old.number), ignore_errors=True)
        return generation

    def _kept_sounds(self) -> dict[str, Path]:
        """sha256 -> a kept generation's copy of a sound file with that content."""
        found: dict[str, Path] = {}
        for generation in self.generations():
            folder = self.dir / "generations" / str(generation.number) / SOUNDS
            found.update({sha: folder / sha for sha in (generation.sounds or {}).values()})
        return found

    def _keep_sounds(self, folder: Path, by_digest: Mapping[str, bytes]) -> None:
        """One owner-only copy per content in `folder`, named by its sha256: a hard link to
        a kept generation's copy when there is one (hold music is large, and most applies
        change no sound)."""
        kept = self._kept_sounds() if by_digest else {}
        for sha, data in by_digest.items():
            copy = kept.get(sha)
            if copy is None or not _linked(copy, folder / sha):
                _write_durable(folder / sha, data)
        fsync_dir(folder)

    # -- journal -------------------------------------------------------------------------------

    @property
    def _journal_dir(self) -> Path:
        return self.dir / "journal"

    def journal(self) -> Journal | None:
        path = self._journal_dir / "journal.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict) and "media_dir" in data:  # written before 0.2
                data["data_dir"] = data.pop("media_dir")
            return Journal(**data)
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as e:
            raise ApplyError(f"{path} is unreadable ({e}): an interrupted apply left it; "
                             f"its saved files are in {self._journal_dir / 'before'}") from None

    def begin(self, journal: Journal, before: Mapping[str, str],
              sounds_before: Mapping[str, bytes | None] | None = None) -> None:
        """Save the running versions of the files about to change (and of the sound files,
        None for one that does not exist yet), then the journal: once journal.json exists,
        everything needed to undo the apply is on disk."""
        self.ensure()
        shutil.rmtree(self._journal_dir, ignore_errors=True)
        saved = self._journal_dir / "before"
        saved.mkdir(mode=PRIVATE_DIR, parents=True)
        os.chmod(self._journal_dir, PRIVATE_DIR)
        if sounds_before:
            journal.sounds_before = {p: None if data is None else sound_digest(data)
                                     for p, data in sounds_before.items()}
            (self._journal_dir / SOUNDS).mkdir(mode=PRIVATE_DIR)
            self._keep_sounds(self._journal_dir / SOUNDS, {
                sound_digest(data): data for data in sounds_before.values()
                if data is not None})
        kept = self._newest_generation_files()
        for name, text in before.items():
            # A running file is normally the newest generation's copy: share it (a hard
            # link, as generations do) rather than write and sync megabytes again.
            copy = kept.get((name, digest(text)))
            if copy is None or not _linked(copy, saved / name):
                self._write(saved / name, text)
        fsync_dir(saved)
        self._write(self._journal_dir / "journal.json", json.dumps(asdict(journal)) + "\n")

    def _newest_generation_files(self) -> dict[tuple[str, str], Path]:
        """(name, sha256) -> the newest generation's copy of that file."""
        generations = self.generations()
        if not generations:
            return {}
        newest = generations[-1]
        folder = self.dir / "generations" / str(newest.number) / "files"
        return {(name, sha): folder / name for name, sha in newest.files.items()}

    def step(self, journal: Journal, step: str) -> None:
        journal.step = step
        self._write(self._journal_dir / "journal.json", json.dumps(asdict(journal)) + "\n")

    def saved_before(self) -> dict[str, str]:
        folder = self._journal_dir / "before"
        return {p.name: p.read_bytes().decode("utf-8", "surrogateescape")
                for p in sorted(folder.iterdir())} if folder.is_dir() else {}

    def saved_sounds(self, journal: Journal) -> dict[str, bytes | None]:
        """The sound files as they were before the journal's apply (None: absent)."""
        folder = self._journal_dir / SOUNDS
        return {path: None if sha is None else (folder / sha).read_bytes()
                for path, sha in journal.sounds_before.items()}

    def end(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self._journal_dir / "journal.json").unlink()
        shutil.rmtree(self._journal_dir, ignore_errors=True)
        fsync_dir(self.dir)

    # -- lock -----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, command: str, timeout: float) -> Iterator[None]:
        """Hold the target's lock; wait up to `timeout` seconds for another holder, then
        raise TargetBusyError naming it."""
        self.ensure()
        fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT, PRIVATE_FILE)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise TargetBusyError(self._busy_message(timeout)) from None
                    time.sleep(0.05)
            holder = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
                      "since": _now()}
            self._write(self.dir / "lock-holder.json", json.dumps(holder) + "\n")
            yield
        finally:
            os.close(fd)  # releases the lock

    def _busy_message(self, timeout: float) -> str:
        try:
            holder = json.loads((self.dir / "lock-holder.json").read_text(encoding="utf-8"))
            who = (f"pid {holder['pid']} on {holder['host']} ({holder['command']}), since "
                   f"{holder['since']}")
        except (OSError, ValueError, KeyError, TypeError):
            who = "another wildix-ast process"
        return (f"{self.etc_dir} is being changed by {who}; waited {timeout:g} s "
                "(--lock-timeout)")
