"""Mail2Fax's durable job spool: one job per accepted mail, on disk before the mail is
acknowledged on its server (deleted or flagged), so that a job is never lost and never made
twice.

A folder (default `~/.local/share/wildix-ast/fax-jobs`, `$WILDIX_AST_FAX_JOBS`; deployed:
`/var/lib/wildix-ast/fax-jobs`, 2770, shared by the poller's and the dialer's users through
their own group; each file 0660) holding `<key>.json` (the job: its state, tries,
outcome) and `<key>.tif` (the pages to send). The key is the SHA-256 of the mail's
Message-ID and of the digest of its whole content: the same mail fetched again (a
connection cut before it was acknowledged, a restart) finds its job and is only
acknowledged; a new mail (even with the same Message-ID and other content) is a new job.
Every write is a rename of an fsync'd file followed by an fsync of the folder; the TIFF is
written (and synced) before the job that names it.

States: `queued` (waiting for its next try), `calling` / `dialing` (a fax call of it may
be under way: see services/fax/dialer.py), `sent`, `failed` (every try used, or refused by
the dialplan), `refused` (never sendable: no PDF, unknown sender... a report says why).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from wildix_ast.errors import FaxError
from wildix_ast.files import fsync_dir, write_atomic, write_atomic_bytes

JOBS_ENV = "WILDIX_AST_FAX_JOBS"
_KEY = re.compile(r"[0-9a-f]{32}")
STATES = ("queued", "calling", "dialing", "sent", "failed", "refused")
FINAL = frozenset({"sent", "failed", "refused"})
FILE_MODE = 0o660
"""The folder keeps others out (0700 by default; deployed 2770, the two users' group)."""
log = logging.getLogger(__name__)


def default_root() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return Path(os.environ.get(JOBS_ENV) or Path(base) / "wildix-ast" / "fax-jobs")


def mail_key(message_id: str, raw: bytes) -> str:
    """The job key of a mail: its Message-ID and its content's digest."""
    content = hashlib.sha256(raw).hexdigest()
    return hashlib.sha256(f"{message_id}\0{content}".encode("utf-8", "replace")
                          ).hexdigest()[:32]


@dataclass(frozen=True)
class Job:
    key: str
    profile: str
    message_id: str
    sender: str
    """The From address (lower-cased), where the report goes ('' if unusable)."""
    state: str
    accepted_at: float
    number: str = ""
    extension: str = ""
    """The user the fax is sent as (their group, number); '' when refused before."""
    call_class: str = ""
    pages: int = 0
    attempts: int = 0
    next_try: float = 0.0
    reason: str = ""
    """Why it was refused or failed, or the last try's outcome."""
    report: bool = True
    """Whether the sender gets a report (not an unknown sender: no backscatter)."""
    keep_mail: bool = False
    """Acknowledge the mail by flagging it, never by deleting it (unknown senders)."""
    call_tag: str = ""
    call_started: float = 0.0
    result: dict[str, str] = field(default_factory=dict)
    history: list[str] = field(default_factory=list)
    finished_at: float = 0.0

    @property
    def final(self) -> bool:
        return self.state in FINAL

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def moved(self, **changes: Any) -> Job:
        return replace(self, **changes)


class JobSpool:
    def __init__(self, root: Path | None = None) -> None:
        self.root = root or default_root()

    def ensure(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _path(self, key: str, suffix: str) -> Path:
        if not _KEY.fullmatch(key):
            raise FaxError(f"not a fax job key: {key!r}")
        return self.root / f"{key}.{suffix}"

    def tiff(self, key: str) -> Path:
        return self._path(key, "tif")

    def get(self, key: str) -> Job | None:
        path = self._path(key, "json")
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise FaxError(f"{path}: unreadable fax job: {e}") from None
        if not isinstance(data, dict):
            raise FaxError(f"{path}: not a fax job")
        known = set(Job.__dataclass_fields__)
        try:  # each field of its own type: a job file is read by another user than its writer
            job = _JOB.validate_python({k: v for k, v in data.items() if k in known})
        except ValidationError as e:
            raise FaxError(f"{path}: not a fax job: {e.errors()[0]['msg']}") from None
        if job.key != key or job.state not in STATES:
            raise FaxError(f"{path}: not a fax job: its key or state")
        return job

    def put(self, job: Job, tiff: bytes | None = None) -> None:
        """The job on disk (and its pages first, when given): synced before it returns."""
        self.ensure()
        if tiff is not None:
            write_atomic_bytes(self.tiff(job.key), tiff, FILE_MODE)
        write_atomic(self._path(job.key, "json"), json.dumps(job.to_json(), indent=1),
                     FILE_MODE)
        fsync_dir(self.root)

    def jobs(self) -> list[Job]:
        if not self.root.is_dir():
            return []
        found: list[Job] = []
        for path in self.root.glob("*.json"):
            if not _KEY.fullmatch(path.stem):
                continue
            try:
                job = self.get(path.stem)
            except FaxError as e:  # one unreadable job never stops the others
                log.error("%s", e.message)
                continue
            if job is not None:
                found.append(job)
        return sorted(found, key=lambda j: j.accepted_at)

    @contextlib.contextmanager
    def sending(self) -> Iterator[None]:
        """Held by the one process that places fax calls: jobs are sent one at a time, so
        two jobs to one destination never overlap, and no job is dialled twice at once."""
        self.ensure()
        with open(self.root / "sender.lock", "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise FaxError(f"{self.root}: another fax sender is running") from None
            yield


_JOB: TypeAdapter[Job] = TypeAdapter(Job)


def now() -> float:
    return time.time()
