"""Fax2Mail: each fax job the dialplan dropped becomes a PDF mailed through the one mail
queue, to the fax user and to the site's fax copy address.

The dialplan (asterisk/fax_contexts.py) moves `<job>.tif` and `<job>.job` into
`<astspooldir>/wildix-fax/new/`, the record last. `collect()` reads each record strictly
(known keys, each value's characters checked again here: the dialplan FILTERed them, this
is the second check), converts the TIFF with tiff2pdf (argument list, no shell, a timeout),
queues one mail per recipient with the key `fax-<job>-<n>` (queued once however often a
job is collected: a crash between queueing and moving the job only repeats a no-op), then
moves the job into `done/`. A failed or partial reception gives a report mail (with the
pages that did arrive); a record it cannot read goes to `bad/` and is logged, never mailed
and never retried in a loop.

Why a step of its own and not the mail sender's drop handling: the conversion runs an
external program on caller-supplied image data, and it can take seconds for a long fax;
the sender's passes stay SMTP only, and this step is retried on its own. It runs
unprivileged, as the service user that can read Asterisk's fax spool (group `wildix-ast`).
"""

from __future__ import annotations

import contextlib
import logging
import re
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from wildix_ast.mail.queue import Attachment, enqueue_mail
from wildix_ast.services.fax.documents import store_document

log = logging.getLogger(__name__)

_VALUE = {
    "job": r"[0-9]{1,20}(\.[0-9]{1,10})?", "user": r"[0-9]{1,8}", "did": r"\+?[0-9]{0,21}",
    "from": r"\+?[0-9]{0,32}", "status": r"[A-Z_]{0,20}", "statusstr": r"[0-9A-Za-z_ :.+]{0,200}",
    "error": r"[0-9A-Za-z_ :.+]{0,100}", "pages": r"[0-9]{0,4}", "duration": r"-?[0-9]{1,9}",
    "remote": r"[0-9A-Za-z +.]{0,40}", "rate": r"[0-9]{0,6}", "ecm": r"[a-z]{0,5}",
    "resolution": r"[0-9x]{0,20}",
}
TIFF2PDF_SECONDS = 120.0
MAX_RECORD = 4096


class BadJob(ValueError):
    """A job record that is not what the dialplan writes."""


@dataclass(frozen=True)
class FaxJob:
    job: str
    user: str
    did: str
    caller: str
    status: str
    status_text: str
    error: str
    pages: int
    duration: int
    remote: str
    rate: str
    ecm: str
    resolution: str

    @property
    def received(self) -> bool:
        return self.status == "SUCCESS" and self.pages > 0


def parse_record(text: str) -> FaxJob:
    """A job record (`key=value` lines); BadJob on anything else."""
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line:
            continue
        key, sep, value = line.partition("=")
        if not sep or key not in _VALUE:
            raise BadJob(f"line {number}: not a job field: {line[:40]!r}")
        if key in values:
            raise BadJob(f"line {number}: {key} given twice")
        if not re.fullmatch(_VALUE[key], value):
            raise BadJob(f"line {number}: {key}: not an accepted value: {value[:40]!r}")
        values[key] = value
    missing = [k for k in ("job", "user", "status", "duration") if k not in values]
    if missing:
        raise BadJob("missing " + ", ".join(missing))
    return FaxJob(job=values["job"], user=values["user"], did=values.get("did", ""),
                  caller=values.get("from", ""), status=values["status"],
                  status_text=values.get("statusstr", ""), error=values.get("error", ""),
                  pages=int(values.get("pages") or 0), duration=int(values["duration"]),
                  remote=values.get("remote", ""), rate=values.get("rate", ""),
                  ecm=values.get("ecm", ""), resolution=values.get("resolution", ""))


def tiff_to_pdf(tiff: Path) -> bytes:
    """The fax as one PDF (tiff2pdf keeps each page's resolution: a fine fax's 204x196
    dpi pages come out at their true size). tiff2pdf seeks in its output, so it writes a
    file in a private temporary folder. Raises OSError or a SubprocessError."""
    with tempfile.TemporaryDirectory(prefix="wildix-fax-") as folder:
        pdf = Path(folder) / "fax.pdf"
        subprocess.run(["tiff2pdf", "-o", str(pdf), "--", str(tiff)],
                       capture_output=True, check=True, timeout=TIFF2PDF_SECONDS)
        data = pdf.read_bytes()
    if not data.startswith(b"%PDF-"):
        raise OSError(f"tiff2pdf wrote no PDF for {tiff.name}")
    return data


@dataclass(frozen=True)
class Collected:
    job: str
    queued: int
    """Mails newly queued (0 when the job's mails were queued before)."""
    status: str
    document: str = ""
    """The stored PDF's reference (`documents.document_reference`), if one was kept."""


def _body(job: FaxJob, attached: bool) -> str:
    caller = job.caller or "unknown"
    lines = [f"From: {caller}" + (f" ({job.remote})" if job.remote else ""),
             f"To: {job.did or job.user}", f"Pages: {job.pages}",
             f"Duration: {job.duration} s", f"Status: {job.status or 'none'}"]
    if not job.received:
        lines.append(f"Reason: {job.status_text or job.error or 'no fax was received'}")
        lines.append("The pages that arrived are attached." if attached
                     else "No page arrived.")
    if job.rate:
        lines.append(f"Rate: {job.rate} bit/s, ECM: {job.ecm or 'no'}")
    return "\n".join(lines) + "\n"


def _subject(job: FaxJob) -> str:
    caller = job.caller or "unknown"
    if job.received:
        return f"Fax from {caller}: {job.pages} page{'s' * (job.pages != 1)}"
    return f"Fax from {caller} not received ({job.status or 'no fax'})"


MAX_TRIES = 5
"""A job whose collection fails this often in one process (an unexpected error: a full
disk, a mail queue it cannot write) is moved to `bad/` and logged: one bad job never stops
the others, and never loops for ever."""


def collect(spool: Path, email_of: Callable[[str], str | None], *,
            copy_to: Sequence[str] = (), queue_root: Path | None = None,
            documents: Path | None = None,
            failures: dict[str, int] | None = None) -> list[Collected]:
    """Mail every job in `spool/new` once; `email_of(extension)` gives the fax user's
    address (None: the copy address only). With `documents`, a received fax's PDF is also
    kept there for the call history (`documents.store_document`). `failures` counts each
    job's failed tries across calls (the serving loop keeps it)."""
    found: list[Collected] = []
    tries = {} if failures is None else failures
    new, done, bad = spool / "new", spool / "done", spool / "bad"
    for folder in (done, bad):
        folder.mkdir(mode=0o770, exist_ok=True)
    for record in sorted(new.glob("*.job")):
        try:
            collected = _collect_job(record, email_of, copy_to=copy_to,
                                     queue_root=queue_root, documents=documents,
                                     done=done, bad=bad)
        except Exception as error:  # one job's failure must not stop the others
            count = tries[record.name] = tries.get(record.name, 0) + 1
            log.error("fax job %s: not collected (try %d of %d): %s: %s", record.stem,
                      count, MAX_TRIES, type(error).__name__, error)
            if count >= MAX_TRIES:
                _move_aside(record, bad)
                tries.pop(record.name, None)
            continue
        tries.pop(record.name, None)
        if collected is not None:
            found.append(collected)
    return found


def _move_aside(record: Path, bad: Path) -> None:
    log.error("fax job %s: moved to bad/ after %d failed tries", record.stem, MAX_TRIES)
    for path in (record.with_suffix(".tif"), record):
        with contextlib.suppress(FileNotFoundError):
            path.rename(bad / path.name)


def _collect_job(record: Path, email_of: Callable[[str], str | None], *,
                 copy_to: Sequence[str], queue_root: Path | None, documents: Path | None,
                 done: Path, bad: Path) -> Collected | None:
    tiff = record.with_suffix(".tif")
    try:
        # a link in new/ would make this service read (and mail) a file only it may read
        for path in (record, tiff):
            if path.is_symlink() or (path.exists() and not path.is_file()):
                raise BadJob(f"{path.name} is not a plain file")
        if record.lstat().st_size > MAX_RECORD:
            raise BadJob("record too large")
        job = parse_record(record.read_text(encoding="ascii"))
        if job.job != record.stem:
            raise BadJob(f"job {job.job} in a record named {record.name}")
    except (BadJob, UnicodeDecodeError) as error:
        log.error("fax job %s: unreadable record, moved to bad/: %s", record.name, error)
        record.rename(bad / record.name)
        if tiff.is_symlink():
            tiff.rename(bad / tiff.name)
        return None
    pdf: bytes | None = None
    if tiff.exists() and tiff.stat().st_size > 0:
        try:
            pdf = tiff_to_pdf(tiff)
        except (OSError, subprocess.SubprocessError) as error:
            log.error("fax job %s: the TIFF did not convert: %s", job.job, error)
    document = ""
    if pdf is not None and documents is not None and job.pages > 0:
        # before the mails: the call record's reference names it from the dialplan's
        # values, so it must exist by the time the job counts as collected
        document = store_document(documents, job.user, job.job, pdf)
    attachments = ([Attachment(f"fax-{job.caller or 'unknown'}-{job.job}.pdf",
                               "application/pdf", pdf)] if pdf is not None else [])
    body = _body(job, pdf is not None)
    if pdf is None and job.received:
        body += "The received image could not be converted to PDF.\n"
    recipients = [r for r in (email_of(job.user), *copy_to) if r]
    if not recipients:
        log.error("fax job %s: user %s has no email and no copy address is set",
                  job.job, job.user)
    queued = 0
    for n, address in enumerate(dict.fromkeys(recipients)):
        ident = enqueue_mail(address, _subject(job), body, kind="fax_in",
                             key=f"fax-{job.job}-{n}", attachments=attachments,
                             details={"fax_job": job.job, "pages": str(job.pages)},
                             root=queue_root)
        queued += ident is not None
    for path in (tiff, record):  # the record last, as the dialplan moved them
        if path.exists():
            path.rename(done / path.name)
    return Collected(job.job, queued, job.status, document)
