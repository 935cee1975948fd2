"""Mail2Fax, sending: each queued fax job becomes a fax call, tried again on busy, no
answer or failure, then reported to its sender (pages and duration, or the reason).

A try (`send_due`): a one-time call id; the job is saved `calling` with it; the pages are
copied to `<astspooldir>/wildix-fax-out/send/<id>.tif`; the request
`group|DID|caller|procedure|number` is put in AstDB (`wildix-fax-send/<id>`); the job is
saved `dialing`; `Local/<id>@wildix-fax-send-call` is originated through Asterisk's
console with its other half at `<id>@wildix-fax-send` (asterisk/fax_send_contexts.py).
The hang-up handlers of the two halves drop `<id>.call` (the dial's status and cause) and
`<id>.fax` (FAXOPT status, pages, remote station, duration) into `done/`; they are read
strictly (known keys, each value's characters: the second check after the dialplan's
FILTER).

Exactly one call per try, across a SIGKILL: at start, a job left `calling`/`dialing` is
recovered before anything else: its records are there (the call ended meanwhile: its
outcome is taken); its request is still in AstDB (`database del` finds it: no call took
it, and now none can) — tried again at once, no call was made; else a call took the
request and may still run — its records are waited for until the longest a fax of its
pages can last, and only then is the try counted as failed. A job is therefore never
dialled while an earlier call of it may run.

One sender at a time (the spool's lock), one job at a time: faxes to one destination never
overlap. Retries: `attempts` tries (default 3), `retry_base` seconds doubling to
`retry_max` between them; a call the dialplan refused (cause 21: the sender's class) is not
tried again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import stat
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pydantic import TypeAdapter, ValidationError

from wildix_ast.asterisk import names
from wildix_ast.asterisk.fax_send_contexts import CALL_RECORD_FIELDS, FAX_RECORD_FIELDS
from wildix_ast.asterisk_cli import CliQueries
from wildix_ast.errors import AmiError, FaxError
from wildix_ast.model.fields import Extension, PhoneNumber
from wildix_ast.model.site import Site
from wildix_ast.services.fax.documents import store_document
from wildix_ast.services.fax.inbound import tiff_to_pdf
from wildix_ast.services.fax.jobs import Job, JobSpool, now
from wildix_ast.services.fax.outbound import (
    Refused,
    queue_report,
    route,
    sender_of_address,
    tiff_pages,
)
from wildix_ast.testing.crash_points import crash_point

log = logging.getLogger(__name__)

_VALUE = {"job": r"[0-9a-f]{16}", "uid": r"[0-9]{1,20}(\.[0-9]{1,10})?|",
          "dialstatus": r"[A-Z]{0,20}", "cause": r"[0-9]{0,3}",
          "status": r"[A-Z_]{0,20}", "statusstr": r"[0-9A-Za-z_ :.+]{0,200}",
          "error": r"[0-9A-Za-z_ :.+]{0,100}", "pages": r"[0-9]{0,4}",
          "duration": r"-?[0-9]{1,9}", "remote": r"[0-9A-Za-z +.]{0,40}",
          "rate": r"[0-9]{0,6}", "ecm": r"[a-z]{0,5}", "resolution": r"[0-9x]{0,20}"}
_REQUEST_FIELD = re.compile(r"[A-Za-z0-9_+-]{0,40}")
MAX_RECORD = 4096
MAX_TIFF = 64 * 1024 * 1024
_DIALLED: TypeAdapter[str] = TypeAdapter(PhoneNumber | Extension)
"""A job's number, admitted again through the model's boundary types."""


class FaxLine(Protocol):
    """Where fax calls are placed: Asterisk's console (ConsoleLine)."""

    async def request(self, tag: str, value: str) -> None: ...

    async def take_request(self, tag: str) -> bool:
        """Delete the request if still there; True when it was (no call took it)."""
        ...

    async def originate(self, tag: str) -> None: ...


class ConsoleLine:
    """Fax calls through Asterisk's root-only console (no AMI account may originate)."""

    def __init__(self, console: CliQueries) -> None:
        self.console = console

    async def request(self, tag: str, value: str) -> None:
        await self.console.command(f"database put {names.FAX_SEND_FAMILY} {tag} {value}")

    async def take_request(self, tag: str) -> bool:
        output = await self.console.command(f"database del {names.FAX_SEND_FAMILY} {tag}")
        return "removed" in output.lower()

    async def originate(self, tag: str) -> None:
        output = await self.console.command(
            f"channel originate Local/{tag}@{names.FAX_SEND_CALL_CONTEXT} extension "
            f"{tag}@{names.FAX_SEND_CONTEXT}")
        if output.strip():
            raise FaxError(f"Asterisk refused the fax call: {output.strip()[:200]}")


@dataclass(frozen=True)
class DialSettings:
    attempts: int = 3
    retry_base: float = 60.0
    retry_max: float = 900.0
    ring_seconds: float = 60.0
    seconds_per_page: float = 90.0
    record_wait: float = 5.0
    """After the first record, how long the other may take."""

    def call_limit(self, pages: int) -> float:
        """The longest a fax call of `pages` pages can last, ringing included."""
        return self.ring_seconds + 60.0 + self.seconds_per_page * max(pages, 1)

    def backoff(self, attempts: int) -> float:
        return float(min(self.retry_base * 2 ** max(attempts - 1, 0), self.retry_max))


def read_pages(path: Path) -> bytes:
    """A job's pages, read without following a link: a plain file with one name, inside
    the spool, at most MAX_TIFF bytes, that is a TIFF with at least one page. FaxError
    otherwise (whoever can write the job spool cannot make the dialer fax a file only it
    may read, such as the store)."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as e:
        raise FaxError(f"{path.name}: cannot open the pages: {e.strerror}") from None
    status = os.fstat(descriptor)
    if not stat.S_ISREG(status.st_mode) or status.st_nlink != 1:
        os.close(descriptor)
        raise FaxError(f"{path.name}: the pages are not a plain file of the spool")
    with os.fdopen(descriptor, "rb") as stream:
        data = stream.read(MAX_TIFF + 1)
    if len(data) > MAX_TIFF:
        raise FaxError(f"{path.name}: the pages are over {MAX_TIFF} bytes")
    if data[:4] not in (b"II*\x00", b"MM\x00*") or tiff_pages(data) < 1:
        raise FaxError(f"{path.name}: the pages are not a TIFF")
    return data


def read_record(path: Path, fields: tuple[str, ...]) -> dict[str, str]:
    """A hang-up handler's record; FaxError on anything it does not write."""
    data = path.read_bytes()[:MAX_RECORD + 1]
    if len(data) > MAX_RECORD:
        raise FaxError(f"{path.name}: over {MAX_RECORD} bytes")
    values: dict[str, str] = {}
    for line in data.decode("ascii", "replace").splitlines():
        if not line:
            continue
        key, sep, value = line.partition("=")
        if not sep or key not in fields or key in values or \
                not re.fullmatch(_VALUE[key], value):
            raise FaxError(f"{path.name}: not a record line: {line[:60]!r}")
        values[key] = value
    return values


@dataclass
class Dialer:
    spool: JobSpool
    line: FaxLine
    out_spool: Path
    """`<astspooldir>/wildix-fax-out` as this host sees it (send/, done/)."""
    site: Site
    settings: DialSettings = DialSettings()
    copy_to: tuple[str, ...] = ()
    queue_root: Path | None = None
    clock: Callable[[], float] = now
    documents: Path | None = None
    """Where the sent documents are kept for the call history (documents.py); None: not
    kept."""

    def _records(self, tag: str) -> tuple[Path, Path]:
        done = self.out_spool / "done"
        return done / f"{tag}.call", done / f"{tag}.fax"

    def _cleanup(self, tag: str) -> None:
        for path in (*self._records(tag), self.out_spool / "send" / f"{tag}.tif"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    async def send_due(self, *, wait: bool = True) -> list[Job]:
        """Recover interrupted tries, then try every job that is due; the jobs touched."""
        touched: list[Job] = []
        with self.spool.sending():
            for job in self.spool.jobs():
                if job.state in ("calling", "dialing"):
                    job = await self._recover(job)
                    touched.append(job)
            for job in self.spool.jobs():
                if job.state == "queued" and job.next_try <= self.clock():
                    touched.append(await self._attempt(job))
        return touched

    def _checked(self, job: Job) -> tuple[str, bytes]:
        """The second check of a job before its call (the first is `fax poll`'s, which
        reads untrusted mail and whose user can write the job spool): the sender is a user,
        the number an admitted number their ACL group may call (the same `route` as the
        poller's), the pages a TIFF inside the spool. (the request, the pages); FaxError
        says what is wrong."""
        user = next((u for u in self.site.users if u.extension == job.extension), None)
        if user is None:
            raise FaxError(f"user {job.extension!r} does not exist (any more)")
        profile = next((p for p in self.site.mail2fax_profiles if p.name == job.profile),
                       None)
        if profile is None:
            raise FaxError(f"Mail2Fax profile {job.profile!r} does not exist (any more)")
        # the job's sender must be one who faxes as this user (their own address, or an
        # allowed sender of the profile sending as them): a job cannot borrow a user's group
        # without their address
        if sender_of_address(job.sender, self.site, profile).user != user:
            raise FaxError(f"{job.sender[:80]!r} may not fax as user {job.extension}")
        try:
            number = _DIALLED.validate_python(job.number)
            route(self.site, user, number)
        except ValidationError:
            raise FaxError(f"{job.number[:40]!r} is not a number") from None
        except Refused as e:
            raise FaxError(e.message) from None
        procedure = profile.procedure
        fields = (user.group, user.office_did or "", user.extension, procedure, number)
        if not all(_REQUEST_FIELD.fullmatch(f) for f in fields):
            raise FaxError("the call request has characters it may not")
        data = read_pages(self.spool.tiff(job.key))
        if tiff_pages(data) != job.pages:
            raise FaxError(f"the pages file holds {tiff_pages(data)} pages, the job says "
                           f"{job.pages}")
        return "|".join(fields), data

    async def _attempt(self, job: Job) -> Job:
        try:
            request, data = self._checked(job)
        except FaxError as e:
            log.error("fax job %s refused before its call: %s", job.key, e.message)
            return self._final(job, "failed", f"not sent: {e.message}")
        tag = uuid.uuid4().hex[:names.FAX_SEND_ID_DIGITS]
        send = self.out_spool / "send"
        target = send / f"{tag}.tif"
        target.write_bytes(data)
        os.chmod(target, 0o644)  # Asterisk reads it (the folder is the group's)
        job = job.moved(state="calling", call_tag=tag, call_started=self.clock(),
                        attempts=job.attempts + 1,
                        history=[*job.history, f"try {job.attempts + 1}: call {tag}"])
        self.spool.put(job)
        crash_point("fax-out-calling")
        try:
            await self.line.request(tag, request)
            job = job.moved(state="dialing")
            self.spool.put(job)
            crash_point("fax-out-dialing")
            await self.line.originate(tag)
        except (AmiError, FaxError) as e:
            with contextlib.suppress(AmiError, FaxError):
                await self.line.take_request(tag)
            self._cleanup(tag)
            log.error("fax job %s: cannot place the call: %s", job.key, e)
            return self._retry(job.moved(attempts=job.attempts - 1),
                               f"Asterisk refused the call: {e}", count=False)
        return await self._finish(job)

    async def _recover(self, job: Job) -> Job:
        call_record, _ = self._records(job.call_tag)
        if call_record.exists():
            return await self._finish(job)
        if job.state == "calling" or await self.line.take_request(job.call_tag):
            # no call was placed (or none can take the request any more): not a try
            self._cleanup(job.call_tag)
            return self._retry(job.moved(attempts=job.attempts - 1),
                               "interrupted before the call", count=False)
        return await self._finish(job)

    async def _finish(self, job: Job) -> Job:
        call_path, fax_path = self._records(job.call_tag)
        deadline = job.call_started + self.settings.call_limit(job.pages)
        while not call_path.exists() and not fax_path.exists() and self.clock() < deadline:
            await asyncio.sleep(0.5)
        other_deadline = time.monotonic() + self.settings.record_wait
        while not (call_path.exists() and fax_path.exists()) and \
                time.monotonic() < other_deadline and (call_path.exists() or fax_path.exists()):
            await asyncio.sleep(0.2)
        try:
            call = read_record(call_path, CALL_RECORD_FIELDS) if call_path.exists() else {}
            fax = read_record(fax_path, FAX_RECORD_FIELDS) if fax_path.exists() else {}
        except FaxError as e:
            log.error("fax job %s: %s", job.key, e)
            call, fax = {}, {}
        result = {**{f"call_{k}": v for k, v in call.items()}, **fax}
        job = job.moved(result=result)
        pages = int(fax.get("pages") or 0)
        if pages > 0:
            self._keep_document(job, fax.get("uid", ""))
        if fax.get("status") == "SUCCESS" and pages >= job.pages:
            job = self._final(job, "sent", f"{pages} pages sent in "
                              f"{fax.get('duration', '?')} s")
        elif call.get("cause") == "21" and not fax:
            job = self._final(job, "failed", "the routing procedure refused the call (the "
                              "sender's ACL group may not call this number)")
        elif not call and not fax:
            job = self._retry(job, "no outcome from Asterisk (the call never ended or "
                              "never started)")
        else:
            job = self._retry(job, _failure(call, fax, pages, job.pages))
        self._cleanup(job.call_tag)
        return job

    def _keep_document(self, job: Job, uid: str) -> None:
        """The PDF of what this try sent, named like the call history's record names it
        (the sender's extension, the fax channel's id): a failure is logged, never stops
        the job (the fax went, its report must follow)."""
        if self.documents is None or not uid:
            return
        try:  # the copy Asterisk sent (in its spool), not the job's: the poller's user
            # could have swapped that one for a link since it was checked
            pdf = tiff_to_pdf(self.out_spool / "send" / f"{job.call_tag}.tif")
            store_document(self.documents, job.extension, uid, pdf)
        except (OSError, ValueError, subprocess.SubprocessError) as e:
            log.error("fax job %s: the sent document is not kept: %s", job.key, e)

    def _retry(self, job: Job, reason: str, *, count: bool = True) -> Job:
        history = [*job.history, f"try {job.attempts}: {reason}" if count else reason]
        if count and job.attempts >= self.settings.attempts:
            return self._final(job.moved(history=history), "failed",
                               f"{reason} (after {job.attempts} tries)")
        wait = self.settings.backoff(job.attempts) if count else 0.0
        job = job.moved(state="queued", reason=reason, next_try=self.clock() + wait,
                        history=history)
        self.spool.put(job)
        return job

    def _final(self, job: Job, state: str, reason: str) -> Job:
        job = job.moved(state=state, reason=reason, finished_at=self.clock(),
                        history=[*job.history, f"{state}: {reason}"])
        self.spool.put(job)
        crash_point("fax-out-before-report")
        if state == "sent":
            subject = f"Fax to {job.number} sent: {job.result.get('pages', job.pages)} pages"
        else:
            subject = f"Fax to {job.number} not sent"
        queue_report(job, subject, _report_body(job), state, list(self.copy_to), self.queue_root)
        return job


def _failure(call: dict[str, str], fax: dict[str, str], pages: int, wanted: int) -> str:
    status = call.get("dialstatus", "")
    if not fax:
        if status == "BUSY":
            return "busy"
        if status == "NOANSWER":
            return "no answer"
        return f"not answered ({status or 'cause ' + call.get('cause', '?')})"
    if fax.get("status") == "SUCCESS":
        return f"only {pages} of {wanted} pages went through"
    detail = fax.get("statusstr") or fax.get("error") or fax.get("status") or "no fax"
    return f"the fax failed after {pages} of {wanted} pages: {detail}"


def _report_body(job: Job) -> str:
    result = job.result
    lines = [f"To: {job.number}", f"Outcome: {job.state}", f"Reason: {job.reason}",
             f"Pages: {result.get('pages') or '0'} of {job.pages}",
             f"Duration: {result.get('duration', '0')} s", f"Tries: {job.attempts}"]
    if result.get("remote"):
        lines.append(f"Remote station: {result['remote']}")
    if job.message_id:
        lines.append(f"Your mail: {job.message_id}")
    return "\n".join(lines) + "\n"
