"""Mail2Fax, intake: each mail of a Mail2Fax mailbox becomes one fax job (or one refusal),
exactly once.

Per mail (`poll`):

1. the key (services/fax/jobs.py: Message-ID + digest of the content). Known: the mail was
   taken before and not acknowledged (a cut connection, a SIGKILL): acknowledged now,
   nothing else;
2. the sender: the From address must be a user's `email` (the fax goes as that user: their
   ACL group and extension) or one of the profile's `allowed_senders` (sent as the
   profile's `send_as` user). Anyone else: a logged error, no report (a forged From would
   turn the PBX into a mail cannon), the mail kept on the server (flagged, never deleted);
3. the protection password, when the profile has one: a word of the subject (after the
   number), or a line `password: <it>` in the plain-text body (compared in constant time);
4. the number: the subject's first word (spaces, dots, dashes and brackets inside a number
   are dropped: `+33 1 40 00 01 90`, `01.40.00.01.90`), else the local part of the address
   the mail was sent to (`0140000190@fax.acme.fr`);
5. routing with the sender's ACL group (`route`): the number is classified by the same
   numbering plan as the dialplan's; a class the group may not call, a number the plan does
   not know, or a class with no trunk group is refused before any call (the dialplan of the
   call checks again: the call enters the routing procedure as the sender's group);
6. the PDF attachments (every one, in order) become one fax TIFF (ghostscript `tiffg4`,
   204x196 dpi, pages fitted to 1728x2156 pixels, `-dSAFER`, `-dPDFSTOPONERROR`, an
   argument list and a timeout; the PDF is a file in a private folder, never on a command
   line of a shell). No attachment, not a PDF, a corrupt or an encrypted one: refused;
7. the job (or the refusal, with its report mail queued through the mail queue) is on disk,
   synced; only then is the mail acknowledged (deleted, or flagged with keep_on_server).

Refusals are reported to the sender (kind `fax_report`); every outcome is in the job spool
(`wildix-ast fax jobs`).
"""

from __future__ import annotations

import email
import email.policy
import hmac
import logging
import re
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import getaddresses, parseaddr
from pathlib import Path

from wildix_ast.errors import MailError
from wildix_ast.mail.queue import enqueue_mail
from wildix_ast.model.call_classes import CallClass
from wildix_ast.model.mail2fax import Mail2FaxProfile
from wildix_ast.model.routing import numbering_plan, outgoing
from wildix_ast.model.site import Site
from wildix_ast.model.users import User
from wildix_ast.services.fax.jobs import Job, JobSpool, mail_key, now
from wildix_ast.services.fax.mailbox import MAX_MAIL, open_mailbox
from wildix_ast.testing.crash_points import crash_point

log = logging.getLogger(__name__)

GS_SECONDS = 120.0
MAX_PAGES = 200
MAX_PDF = 25 * 1024 * 1024
_NUMBER = re.compile(r"\+?[0-9]{2,20}")
_SEPARATORS = re.compile(r"[ .()\-/]")
_PASSWORD_LINE = re.compile(r"^\s*(?:password|mot de passe|pwd)\s*[:=]\s*(\S+)\s*$",
                            re.IGNORECASE | re.MULTILINE)
_MESSAGE_ID = re.compile(r"[!-~]{1,250}")


class Refused(Exception):
    """A mail that cannot become a fax; `code` names the case, the message says it to the
    sender."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Route:
    call_class: CallClass
    number: str
    """What is dialled in the procedure: the number as the sender wrote it (digits, '+')."""


def route(site: Site, user: User, number: str) -> Route:
    """The class of `number` as `user` would dial it, refused (Refused) as the dialplan
    would: an unknown number, a class their ACL group may not call, a class no trunk group
    carries. Internal numbers (a user's extension) are allowed to every group."""
    if any(u.extension == number for u in site.users):
        return Route(CallClass.INTERNAL, number)
    found = numbering_plan(site).classify(number)
    if found is None:
        raise Refused("unknown_number", f"{number} is not a number this PBX can call "
                      "(not in its numbering plan)")
    call_class, _ = found
    if call_class is CallClass.EMERGENCY:
        raise Refused("forbidden_number", f"{number} is an emergency number: it cannot be "
                      "faxed")
    group = next((g for g in site.groups if g.name == user.group), None)
    if group is None or call_class not in group.allowed:
        raise Refused("forbidden_number", f"{number} is a {call_class} number, which your "
                      f"ACL group ({user.group}) may not call")
    if call_class not in outgoing(site):
        raise Refused("no_route", f"{call_class} numbers have no trunk group on this PBX")
    return Route(call_class, number)


def _text_body(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    if part is None:
        return ""
    try:
        content = part.get_content()
    except (LookupError, ValueError):
        return ""
    return content if isinstance(content, str) else ""


def _subject_words(message: EmailMessage) -> list[str]:
    return str(message.get("Subject", "") or "").split()


def _is_password(word: str, password: str | None) -> bool:
    return password is not None and hmac.compare_digest(
        word.encode("utf-8", "replace"), password.encode())


def number_of(message: EmailMessage, password: str | None = None) -> str:
    """The number to fax to (see the module's docstring); Refused when there is none. The
    protection password's word is left out first (a password of digits must not join the
    number)."""
    words = [w for w in _subject_words(message) if not _is_password(w, password)]
    # the subject's leading words that make a number (`+33 1 40 00 01 90`)
    digits = ""
    for word in words:
        candidate = digits + _SEPARATORS.sub("", word)
        if not re.fullmatch(r"\+?[0-9]*", candidate):
            break
        digits = candidate
    if _NUMBER.fullmatch(digits):
        return digits
    for _, address in getaddresses([str(v) for v in message.get_all("To", [])]):
        local = address.partition("@")[0]
        local = local.rpartition("+")[2] if not local.startswith("+") else local
        if _NUMBER.fullmatch(local):
            return local
    raise Refused("no_number", "no number to fax to: write it as the subject (or send to "
                  "<number>@ the fax address)")


def check_password(message: EmailMessage, expected: str | None) -> None:
    """The protection password must be a word of the subject or a `password:` line of the
    plain-text body (constant-time comparisons)."""
    if expected is None:
        return
    given = [*_subject_words(message), *_PASSWORD_LINE.findall(_text_body(message))]
    if not any(_is_password(g, expected) for g in given):
        raise Refused("wrong_password", "the protection password is missing or wrong")


def pdf_attachments(message: EmailMessage) -> list[bytes]:
    """Every attachment, which must all be PDFs; Refused if there is none or one is not."""
    found: list[bytes] = []
    others: list[str] = []
    for part in message.iter_attachments():
        if not isinstance(part, EmailMessage):
            continue
        name = part.get_filename() or ""
        try:
            data = part.get_content()
        except (LookupError, ValueError):
            data = b""
        if isinstance(data, str):
            data = data.encode("utf-8", "replace")
        if not isinstance(data, bytes):
            others.append(name or part.get_content_type())
            continue
        is_pdf = part.get_content_type() == "application/pdf" or name.lower().endswith(".pdf")
        if not is_pdf:
            others.append(name or part.get_content_type())
            continue
        if not data.lstrip()[:1024].startswith(b"%PDF-") and b"%PDF-" not in data[:1024]:
            raise Refused("not_pdf", f"{name or 'the attachment'} is not a PDF")
        found.append(data)
    if others and not found:
        raise Refused("not_pdf", "only PDF attachments can be faxed; got "
                      + ", ".join(o[:60] for o in others))
    if not found:
        raise Refused("no_attachment", "no PDF attached: attach the document to fax")
    if sum(len(d) for d in found) > MAX_PDF:
        raise Refused("too_large", "the PDFs are over 25 MiB")
    return found


def tiff_pages(data: bytes) -> int:
    """How many pages (IFDs) a TIFF holds; 0 if it is not one."""
    if len(data) < 8 or data[:2] not in (b"II", b"MM"):
        return 0
    order = "<" if data[:2] == b"II" else ">"
    (offset,) = struct.unpack(order + "I", data[4:8])
    pages = 0
    seen: set[int] = set()
    while offset and offset + 2 <= len(data) and offset not in seen and pages < 10000:
        seen.add(offset)
        (count,) = struct.unpack(order + "H", data[offset:offset + 2])
        pages += 1
        end = offset + 2 + 12 * count
        if end + 4 > len(data):
            break
        (offset,) = struct.unpack(order + "I", data[end:end + 4])
    return pages


def pdf_to_fax_tiff(pdfs: list[bytes]) -> tuple[bytes, int]:
    """The PDFs as one fax TIFF (G4, 204x196 dpi, 1728 px wide) and its page count;
    Refused if one is encrypted, corrupt, or has no page."""
    for data in pdfs:
        if b"/Encrypt" in data:
            raise Refused("encrypted_pdf", "the PDF is password-protected (encrypted): "
                          "send it without protection")
    gs = shutil.which("gs")
    if gs is None:
        raise MailError("ghostscript (gs) is not installed: cannot convert PDFs")
    with tempfile.TemporaryDirectory(prefix="wildix-fax-out-") as folder:
        inputs = []
        for n, data in enumerate(pdfs):
            path = Path(folder) / f"in{n}.pdf"
            path.write_bytes(data)
            inputs.append(str(path))
        output = Path(folder) / "fax.tif"
        argv = [gs, "-q", "-dNOPAUSE", "-dBATCH", "-dSAFER", "-dPDFSTOPONERROR",
                "-sDEVICE=tiffg4", "-r204x196", "-g1728x2156", "-dFIXEDMEDIA",
                "-dPDFFitPage", f"-dLastPage={MAX_PAGES}", f"-sOutputFile={output}",
                *(a for i in inputs for a in ("-f", i))]
        try:
            done = subprocess.run(argv, capture_output=True, timeout=GS_SECONDS,
                                  stdin=subprocess.DEVNULL, cwd=folder)
        except subprocess.TimeoutExpired:
            raise Refused("corrupt_pdf", "the PDF took too long to convert") from None
        text = (done.stderr + done.stdout).decode("utf-8", "replace")
        if "password" in text.lower() or "encrypt" in text.lower():
            raise Refused("encrypted_pdf", "the PDF is password-protected (encrypted)")
        if done.returncode != 0 or not output.is_file():
            log.info("ghostscript refused a PDF: %s", text.strip()[-300:])
            raise Refused("corrupt_pdf", "the PDF is damaged: it could not be read")
        tiff = output.read_bytes()
    pages = tiff_pages(tiff)
    if pages == 0:
        raise Refused("corrupt_pdf", "the PDF has no page to fax")
    return tiff, pages


@dataclass(frozen=True)
class Sender:
    address: str
    user: User | None
    """The user the fax goes as (their group and number); None: not allowed."""


def sender_of(message: EmailMessage, site: Site, profile: Mail2FaxProfile) -> Sender:
    _, address = parseaddr(str(message.get("From", "") or ""))
    return sender_of_address(address, site, profile)


def sender_of_address(address: str, site: Site, profile: Mail2FaxProfile) -> Sender:
    """Who a From address faxes as: a user (their own address) or a profile's allowed
    sender (as its `send_as` user); the dialer asks it again of each job."""
    address = address.strip().lower()
    if not re.fullmatch(r"[a-z0-9._%+-]{1,64}@[a-z0-9.-]{1,253}", address):
        return Sender("", None)
    users = {u.email.lower(): u for u in site.users if u.email}
    if address in users:
        return Sender(address, users[address])
    if address in {a.lower() for a in profile.allowed_senders} and profile.send_as:
        user = next((u for u in site.users if u.extension == profile.send_as), None)
        return Sender(address, user)
    return Sender(address, None)


def report_refusal(job: Job, copy_to: list[str], queue_root: Path | None) -> None:
    subject = f"Fax to {job.number or 'unknown number'} refused"
    body = (f"Your mail {job.message_id or ''} was not faxed.\n\nReason: {job.reason}\n")
    queue_report(job, subject, body, "refused", copy_to, queue_root)


def queue_report(job: Job, subject: str, body: str, outcome: str, copy_to: list[str],
            queue_root: Path | None) -> None:
    """The report of `job` to its sender (unless unknown) and to `copy_to`, queued once
    per job and outcome."""
    recipients = ([job.sender] if job.report and job.sender else []) + copy_to
    for n, to in enumerate(dict.fromkeys(recipients)):
        enqueue_mail(to, subject, body, kind="fax_report",
                     key=f"faxout-{job.key}-{outcome}-{n}", root=queue_root)


@dataclass(frozen=True)
class Polled:
    profile: str
    key: str
    state: str
    reason: str
    new: bool


def intake(raw: bytes, profile: Mail2FaxProfile, site: Site, spool: JobSpool,
           copy_to: list[str], queue_root: Path | None) -> tuple[Job, bool]:
    """The job of one mail (made now, or found from an earlier poll), on disk; True when
    made now."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    message_id = str(message.get("Message-ID", "") or "").strip()
    if not _MESSAGE_ID.fullmatch(message_id):
        message_id = ""
    key = mail_key(message_id, raw)
    found = spool.get(key)
    if found is not None:
        return found, False
    sender = sender_of(message, site, profile)
    job = Job(key=key, profile=profile.name, message_id=message_id[:250],
              sender=sender.address, state="queued", accepted_at=now())
    try:
        if sender.user is None:
            job = job.moved(report=False, keep_mail=True)
            raise Refused("unknown_sender", f"{sender.address or 'no usable From address'}"
                          " is neither a user's address nor an allowed sender")
        number = number_of(message, profile.protection_password)
        job = job.moved(number=number, extension=sender.user.extension)
        check_password(message, profile.protection_password)
        found_route = route(site, sender.user, number)
        job = job.moved(call_class=str(found_route.call_class))
        tiff, pages = pdf_to_fax_tiff(pdf_attachments(message))
    except Refused as refusal:
        job = job.moved(state="refused", reason=f"{refusal.code}: {refusal.message}",
                        finished_at=now(), history=[f"refused: {refusal.code}"])
        spool.put(job)
        if refusal.code == "unknown_sender":
            log.error("Mail2Fax %s: mail %s refused: %s", profile.name, message_id or key,
                      refusal.message)
        else:
            report_refusal(job, copy_to, queue_root)
        return job, True
    job = job.moved(pages=pages, history=[f"accepted: {pages} pages to {job.number}"])
    crash_point("fax-out-before-job")
    spool.put(job, tiff)
    return job, True


def poll(profile: Mail2FaxProfile, site: Site, spool: JobSpool, *,
         copy_to: list[str] | None = None, queue_root: Path | None = None) -> list[Polled]:
    """Every waiting mail of the profile's mailbox made a job (or a refusal), then
    acknowledged. MailError when the server cannot be reached or breaks off: what was
    acknowledged before stays done, the rest waits for the next poll."""
    done: list[Polled] = []
    with open_mailbox(profile) as box:
        for pending in box.pending():
            if pending.size > MAX_MAIL:  # never read into memory; kept for a person to see
                log.error("Mail2Fax %s: mail %s is %d bytes, over %d: left on the server "
                          "(flagged)", profile.name, pending.ref, pending.size, MAX_MAIL)
                box.acknowledge(pending.ref, keep=True)
                continue
            raw = box.fetch(pending.ref)
            job, new = intake(raw, profile, site, spool, list(copy_to or []), queue_root)
            crash_point("fax-out-before-acknowledge")
            box.acknowledge(pending.ref, keep=job.keep_mail)
            done.append(Polled(profile.name, job.key, job.state, job.reason, new))
    return done
