"""The fax documents the call history refers to, and the fax spool's retention.

Each received fax (and each fax Mail2Fax sent: services/fax/dialer.py) is kept as
`<documents>/<extension>/<job>.pdf`: the fax user's (or the sender's) extension, the job
name (the receiving (sending) channel's UNIQUEID, digits and dots). The call record of the fax call
names it `<extension>/<job>.pdf` (`fax_document`, relative to the documents folder:
`wildix_ast.services.call_history.assemble`), so the reference needs no lookup and a
user's documents are one folder to delete (GDPR, `user delete --with-history`).

Owner-only: the files are 0600, owned by the fax service's user (or the Mail2Fax dialer's,
for sent faxes); the folders 0700, or, deployed, 2770 in a group of those two users only
(faxes are personal data: a payslip, a medical record). A document is written to a
temporary name in its folder, fsync'd, then renamed: a crash leaves no half PDF under a
name a record refers to (a leftover `.tmp` is removed by the next pruning).

Retention, run by the fax service itself (not cron): documents older than the history's
`retention_days`; the spool's `done/` and `bad/` files older than `fax_server.keep_days`.
`new/` and `tmp/` are never touched: a job not yet collected is never pruned.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

DOCUMENTS_ENV = "WILDIX_AST_FAX_DOCUMENTS"
_EXTENSION = re.compile(r"[0-9]{1,8}")
_JOB = re.compile(r"[0-9]{1,20}(\.[0-9]{1,10})?")
DAY = 86400.0


def default_documents() -> Path:
    """$WILDIX_AST_FAX_DOCUMENTS, else ~/.local/share/wildix-ast/fax-documents."""
    given = os.environ.get(DOCUMENTS_ENV)
    if given:
        return Path(given)
    return Path.home() / ".local" / "share" / "wildix-ast" / "fax-documents"


def document_reference(extension: str, job: str) -> str:
    """The reference a call record keeps: `<extension>/<job>.pdf` (relative to the
    documents folder); ValueError on anything but an extension and a job name."""
    if not _EXTENSION.fullmatch(extension) or not _JOB.fullmatch(job):
        raise ValueError(f"not a fax document: extension {extension!r}, job {job!r}")
    return f"{extension}/{job}.pdf"


def document_path(documents: Path, reference: str) -> Path:
    """Where a reference's document is; ValueError for a reference not made by
    `document_reference` (no `..`, no absolute path, no other file)."""
    extension, _, name = reference.partition("/")
    job = name.removesuffix(".pdf")
    if document_reference(extension, job) != reference:
        raise ValueError(f"not a fax document reference: {reference!r}")
    return documents / extension / f"{job}.pdf"


def store_document(documents: Path, extension: str, job: str, pdf: bytes) -> str:
    """Keep a fax's PDF (owner-only, synced, renamed into place); its reference."""
    reference = document_reference(extension, job)
    target = document_path(documents, reference)
    documents.mkdir(mode=0o700, parents=True, exist_ok=True)
    # an extension's folder takes the documents folder's rights: 0700 alone, 2770 when the
    # fax service and Mail2Fax's dialer share it (deployed: their own group)
    target.parent.mkdir(mode=(documents.stat().st_mode & 0o770) | 0o700, exist_ok=True)
    temporary = target.with_name(f".{target.name}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW,
                         0o600)
    try:
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(pdf)
            stream.flush()
            os.fsync(stream.fileno())
        temporary.replace(target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    folder = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
    return reference


def forget_user_documents(documents: Path, extension: str) -> int:
    """GDPR: delete every fax document of a user; how many there were."""
    if not _EXTENSION.fullmatch(extension):
        raise ValueError(f"{extension!r} is not an extension")
    folder = documents / extension
    if not folder.is_dir() or folder.is_symlink():
        return 0
    count = sum(1 for _ in folder.glob("*.pdf"))
    shutil.rmtree(folder)
    return count


@dataclass(frozen=True)
class Pruned:
    documents: int = 0
    jobs: int = 0


def _older(path: Path, before: float) -> bool:
    try:
        return path.lstat().st_mtime < before
    except FileNotFoundError:
        return False


def prune_documents(documents: Path, older_than: float) -> int:
    """Delete the documents (and leftover temporary files) last written before
    `older_than` (epoch seconds); empty user folders go too. How many documents."""
    gone = 0
    if not documents.is_dir():
        return 0
    for folder in documents.iterdir():
        if not folder.is_dir() or folder.is_symlink() or not _EXTENSION.fullmatch(folder.name):
            continue
        for path in folder.iterdir():
            if path.is_file() and _older(path, older_than):
                path.unlink(missing_ok=True)
                gone += path.suffix == ".pdf" and not path.name.startswith(".")
        if not any(folder.iterdir()):
            folder.rmdir()
    return gone


def prune_spool(spool: Path, older_than: float) -> int:
    """Delete the finished jobs' files (`done/`, `bad/`) last written before `older_than`;
    how many files. `new/` and `tmp/` are never read here."""
    gone = 0
    for name in ("done", "bad"):
        folder = spool / name
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if path.is_file() and _older(path, older_than):
                path.unlink(missing_ok=True)
                gone += 1
    return gone
