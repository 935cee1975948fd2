"""The PBX's one durable outgoing mail queue: every mail it sends (missed calls, voicemail,
welcome mails, the CDR's fraud alerts) is a file here before anything tries to send it.

The queue is a folder with Maildir's discipline, so it survives crashes and needs no
database (a mail must be queued while the store or the network is down):

- `tmp/`: a message is written whole here, flushed, then hard-linked into `new/` (a reader
  never sees half of one; a link that exists already means the same mail was queued before);
- `new/`: queued, waiting for the sender or deferred (its `state/` file then says the next
  try and the last error);
- `sending/`: the sender moved it here, durably, just before sending SMTP's end of data (the
  final `.`); `sent/` once the server answered 250; `failed/` after a 5xx, too many tries,
  or a file nobody can read;
- `drop/new/` (and the drop folders the sender is given, such as Asterisk's, where
  voicemail's `mailcmd` writes: `wildix_ast.asterisk.voicemail.mail_command`): whole
  RFC 5322 messages another program dropped; the sender takes them into `new/` first.

Exactly once, and what remains. Before its SMTP transaction a mail is *armed*: `intent/<id>`
holding the kernel's boot id, fsync'd (the slow part). Right before the final `.`, the mail
is renamed from `new/` to `sending/` (no fsync: a killed process loses nothing it gave the
kernel), then the `.` is written. After a crash (`recover`):

- in `new/`, armed in this boot: the `.` never left (RFC 5321 4.1.4: a server drops a
  transaction whose connection closes before it), so it is sent again;
- in `sending/`: the `.` was handed to the kernel, which delivers what a killed process
  wrote, so the server has it: marked sent, flagged `unconfirmed` (visible in `mail queue`,
  resent by hand with `mail retry`);
- armed in an earlier boot (a power cut may have lost the rename): as `sending/`.

No path sends a mail twice. The window where a mail can be lost (flagged unconfirmed,
never silently) starts at the rename to `sending/` and ends when the server has processed
the `.`: for a server that handles what it received before the client's close (Postfix,
Exim) that is the `send()` of the `.`, two system calls after the rename; a server that
abandons a transaction when the client closes (aiosmtpd, the tests' server, cancels its
handler on EOF) widens it to its own handling of the `.`, well under a millisecond on
loopback. The server's reply to that `.` (a late 4xx/5xx) is never seen for an unconfirmed
mail.

Folders are 0770 and files 0660: the services that queue mails (FastAGI, CDR, directory
import) and the sender each run as their own user in the `wildix-ast` group; nobody else
reads a mail (a welcome mail's setup link, a voicemail).

`enqueue_mail` is the one function other features call.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from wildix_ast.errors import WildixError
from wildix_ast.files import fsync_dir, write_atomic

SPOOL_ENV = "WILDIX_AST_MAIL_SPOOL"
FOLDERS = ("tmp", "new", "intent", "sending", "sent", "failed", "state", "drop/tmp",
           "drop/new")
STATUSES = ("queued", "deferred", "sending", "sent", "failed")
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_ADDRESS = re.compile(r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})+")
MAX_MESSAGE = 25 * 1024 * 1024
"""A message (attachments included) larger than this is refused when queued: most servers
refuse it anyway, and the sender reads a message whole."""


def default_root() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return Path(os.environ.get(SPOOL_ENV) or Path(base) / "wildix-ast" / "mail-spool")


class MailQueueError(WildixError):
    """A mail that cannot be queued (bad address, too large) or a queue already served."""


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class QueuedMail:
    """One message of the queue. `raw`, when given, is a whole RFC 5322 message sent as it
    is (but for its envelope): what Asterisk's voicemail writes."""

    id: str
    to: str
    subject: str
    body: str
    kind: str
    profile: str | None = None
    details: dict[str, str] = field(default_factory=dict)
    attachments: tuple[Attachment, ...] = ()
    raw: bytes | None = None

    def to_json(self) -> str:
        data: dict[str, object] = {
            "to": self.to, "subject": self.subject, "body": self.body, "kind": self.kind,
            "details": self.details}
        if self.profile:
            data["profile"] = self.profile
        if self.attachments:
            data["attachments"] = [
                {"filename": a.filename, "content_type": a.content_type,
                 "data": base64.b64encode(a.data).decode()} for a in self.attachments]
        if self.raw is not None:
            data["raw"] = base64.b64encode(self.raw).decode()
        return json.dumps(data, ensure_ascii=False)

    @classmethod
    def from_json(cls, ident: str, text: str) -> QueuedMail:
        """Raises ValueError (or KeyError/TypeError) on anything but a queue message."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        details = data.get("details", data.get("call")) or {}  # `call`: the first spool's
        attachments = tuple(
            Attachment(str(a["filename"]), str(a["content_type"]),
                       base64.b64decode(a["data"], validate=True))
            for a in data.get("attachments", []))
        raw = data.get("raw")
        return cls(id=ident, to=str(data["to"]), subject=str(data.get("subject", "")),
                   body=str(data.get("body", "")), kind=str(data.get("kind", "mail")),
                   profile=data.get("profile") or None,
                   details={str(k): str(v) for k, v in dict(details).items()},
                   attachments=attachments,
                   raw=base64.b64decode(raw, validate=True) if raw is not None else None)


@dataclass
class Delivery:
    """What the sender knows of one message's tries (`state/<id>.json`)."""

    attempts: int = 0
    next_try: float = 0.0
    last_error: str | None = None
    unconfirmed: bool = False


@dataclass(frozen=True)
class Entry:
    """One line of `mail queue`."""

    id: str
    status: str
    kind: str
    to: str
    subject: str
    queued_at: float
    attempts: int
    next_try: float | None
    last_error: str | None
    finished_at: float | None
    unconfirmed: bool


def valid_address(address: str) -> bool:
    return _ADDRESS.fullmatch(address) is not None


def _new_id(kind: str) -> str:
    return f"{time.time_ns():020d}.{uuid.uuid4().hex[:12]}.{kind}"


class MailQueue:
    """The queue folder (see the module's documentation)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._made = False

    def folder(self, name: str) -> Path:
        if not self._made:
            for sub in ("", *FOLDERS):
                path = self.root / sub
                try:
                    path.mkdir(parents=True, mode=0o770)
                except FileExistsError:
                    continue
                # the group's whatever the umask: the services that queue mails are others
                path.chmod(0o770)
            self._made = True
        return self.root / name

    # --- queueing ------------------------------------------------------------------------

    def put(self, mail: QueuedMail) -> bool:
        """Queue `mail` under its id; False when a mail of that id was queued before (the
        same missed call reported twice, the same welcome mail asked twice)."""
        if not _ID.fullmatch(mail.id):
            raise MailQueueError(f"not a queue id: {mail.id!r}")
        if not valid_address(mail.to):
            raise MailQueueError(f"not an email address: {mail.to!r}")
        data = mail.to_json().encode()
        if len(data) > MAX_MESSAGE * 4 // 3 + 4096:
            raise MailQueueError(f"mail {mail.id} is larger than "
                                 f"{MAX_MESSAGE // (1024 * 1024)} MiB")
        name = f"{mail.id}.json"
        if any((self.folder(f) / name).exists() for f in ("sending", "sent", "failed")):
            return False
        return self._link_in(self.folder("new"), name, data)

    def _link_in(self, folder: Path, name: str, data: bytes) -> bool:
        staged = self.folder("tmp") / f"{name}.{os.getpid()}.{uuid.uuid4().hex}"
        descriptor = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o660)
        try:
            os.write(descriptor, data)
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        try:
            # link() fails if the name exists: one message per id, whoever comes second
            os.link(staged, folder / name)
        except FileExistsError:
            return False
        finally:
            staged.unlink()
        fsync_dir(folder)
        return True

    # --- the sender's steps --------------------------------------------------------------

    @contextlib.contextmanager
    def serving(self) -> Iterator[None]:
        """One sender per queue at a time (a lock the kernel drops with its holder)."""
        descriptor = os.open(self.folder(".") / ".sender.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise MailQueueError(f"another mail sender is running on {self.root}") from None
            yield
        finally:
            os.close(descriptor)

    def take_drops(self, drop: Path | None = None,
                   allowed: Callable[[str], bool] = lambda address: True) -> list[str]:
        """Whole messages dropped in `<drop>/new/` (default: the queue's own `drop/`)
        become queued mails, their To header the recipient. One with no single valid To,
        a To that `allowed` refuses (a dropped message may only go to a user of the PBX:
        a program that can write the drop folder must not be a relay), or too large, goes
        to `failed/` with its reason."""
        from email import message_from_bytes, policy
        from email.utils import getaddresses

        folder = (drop or self.folder("drop")) / "new"
        taken: list[str] = []
        for path in sorted(folder.iterdir()) if folder.is_dir() else []:
            if not _ID.fullmatch(path.name):
                continue
            ident = f"drop.{path.name}"
            raw = path.read_bytes()
            message = message_from_bytes(raw, policy=policy.default)
            addresses = [a for _, a in getaddresses([str(v) for v in
                                                     message.get_all("To", [])])]
            subject = str(message.get("Subject", ""))[:200]
            to = addresses[0] if len(addresses) == 1 else ", ".join(addresses)
            mail = QueuedMail(id=ident, to=to, subject=subject, body="", kind="voicemail",
                              raw=raw)
            problem = None
            if len(addresses) != 1 or not valid_address(to):
                problem = f"dropped message without one valid To address: {addresses!r}"
            elif not allowed(to.lower()):
                problem = f"dropped message to {to}, not a user's address: refused"
            elif len(raw) > MAX_MESSAGE:
                problem = f"dropped message larger than {MAX_MESSAGE // (1024 * 1024)} MiB"
            if problem is None:
                self.put(mail)
            else:
                self._link_in(self.folder("failed"), f"{ident}.json", mail.to_json().encode())
                self.write_state(ident, Delivery(attempts=0, last_error=problem))
            path.unlink()
            taken.append(ident)
        if taken:
            fsync_dir(folder)
        return taken

    def due(self, now: float) -> list[str]:
        """Ids in `new/` whose next try has come, oldest first."""
        found: list[tuple[int, str]] = []
        for path in self.folder("new").iterdir():
            if path.suffix != ".json":
                continue
            ident = path.stem
            if self.state(ident).next_try <= now:
                with contextlib.suppress(FileNotFoundError):
                    found.append((path.stat().st_mtime_ns, ident))
        return [ident for _, ident in sorted(found)]

    def load(self, ident: str, folder: str = "new") -> QueuedMail:
        path = self.folder(folder) / f"{ident}.json"
        return QueuedMail.from_json(ident, path.read_text(encoding="utf-8"))

    def state(self, ident: str) -> Delivery:
        try:
            data = json.loads((self.folder("state") / f"{ident}.json").read_text())
            return Delivery(**data)
        except (FileNotFoundError, ValueError, TypeError):
            return Delivery()

    def write_state(self, ident: str, delivery: Delivery) -> None:
        write_atomic(self.folder("state") / f"{ident}.json", json.dumps(asdict(delivery)),
                     mode=0o660)

    def _move(self, ident: str, source: str, target: str, *, durable: bool = True) -> None:
        os.rename(self.folder(source) / f"{ident}.json", self.folder(target) / f"{ident}.json")
        if durable:
            # a journaling file system (ext4, xfs) commits both folders' entries of one
            # rename in one transaction: syncing the target's makes the move durable
            fsync_dir(self.folder(target))

    def arm(self, ident: str) -> None:
        """Durably, before the SMTP transaction: `intent/<id>` holds this boot's id (the
        slow fsync happens here, outside the window)."""
        path = self.folder("intent") / ident
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o660)
        try:
            # the content is not synced: an intent a power cut left empty reads as armed in
            # another boot, the side that never sends twice
            os.write(descriptor, _boot_id().encode())
        finally:
            os.close(descriptor)
        fsync_dir(path.parent)

    def disarm(self, ident: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.folder("intent") / ident).unlink()

    def committing(self, ident: str) -> None:
        """The end of data is about to be sent: one rename, no fsync (a killed process
        loses nothing the kernel was given; `arm` covers a power cut)."""
        self._move(ident, "new", "sending", durable=False)

    def sent(self, ident: str) -> None:
        """Not synced: a power cut that loses this move leaves the mail in `sending/` or
        armed in `new/`, which `recover` counts as sent (unconfirmed), never sends again."""
        self._move(ident, "sending", "sent", durable=False)
        self.disarm(ident)

    def defer(self, ident: str, error: str, next_try: float, *, folder: str = "new") -> None:
        self.disarm(ident)
        delivery = self.state(ident)
        delivery.attempts += 1
        delivery.last_error, delivery.next_try = error, next_try
        self.write_state(ident, delivery)
        if folder != "new":
            self._move(ident, folder, "new")

    def fail(self, ident: str, error: str, *, folder: str = "new") -> None:
        self.disarm(ident)
        delivery = self.state(ident)
        delivery.attempts += 1
        delivery.last_error, delivery.next_try = error, 0.0
        self.write_state(ident, delivery)
        self._move(ident, folder, "failed")

    def bounced(self, ident: str, reason: str) -> bool:
        """A sent mail that bounced later (a DSN, `mail.bounces`): moved to `failed/` with
        `bounced: <reason>`; False when no sent mail has that id (already marked, pruned,
        or never ours), so reading the same DSN twice changes nothing."""
        if not _ID.fullmatch(ident) or not (self.folder("sent") / f"{ident}.json").exists():
            return False
        delivery = self.state(ident)
        delivery.last_error, delivery.next_try = f"bounced: {reason}", 0.0
        self.write_state(ident, delivery)
        self._move(ident, "sent", "failed")
        return True

    def has_failed(self, ident: str) -> bool:
        return bool(_ID.fullmatch(ident)) and \
            (self.folder("failed") / f"{ident}.json").exists()

    def recover(self) -> list[str]:
        """After a crash (see the module's documentation): a mail in `sending/` had its end
        of data handed to the kernel, or was microseconds from it: marked sent, flagged
        unconfirmed. A mail armed in this boot but still in `new/` never reached its end
        of data: disarmed, sent again normally. One armed before a reboot (a power cut may
        have lost the move to `sending/`): treated as the first kind. Returns the ids
        marked unconfirmed."""
        unconfirmed = [p.stem for p in self.folder("sending").glob("*.json")]
        boot = _boot_id()
        for intent in self.folder("intent").iterdir():
            ident = intent.name
            queued = (self.folder("new") / f"{ident}.json").exists()
            armed_in = intent.read_text(errors="replace")
            if queued and armed_in != boot:
                self._move(ident, "new", "sending")
                unconfirmed.append(ident)
            elif not (self.folder("sending") / f"{ident}.json").exists():
                intent.unlink()
        for ident in unconfirmed:
            delivery = self.state(ident)
            delivery.unconfirmed = True
            delivery.last_error = ("the sender stopped after the end of data was sent (or "
                                   "about to be), before the server's reply: counted as "
                                   "sent, not confirmed")
            self.write_state(ident, delivery)
            self.sent(ident)
        return unconfirmed

    def retry(self, ident: str) -> None:
        """A failed (or unconfirmed sent) message back in the queue, its tries reset."""
        for folder in ("failed", "sent"):
            if (self.folder(folder) / f"{ident}.json").exists():
                self.write_state(ident, Delivery())
                self._move(ident, folder, "new")
                return
        raise MailQueueError(f"no failed or sent message {ident!r} in {self.root}")

    def prune(self, older_than: float) -> int:
        """Delete the sent and failed mails finished before `older_than` (epoch seconds,
        the time they entered `sent/` or `failed/`) with their state files; how many.
        `new/` (queued, deferred) and `sending/` are never touched. A key is queued once
        only while its mail is kept: after the mail is pruned, the same key queues again."""
        gone = 0
        for folder in ("sent", "failed"):
            for path in self.folder(folder).glob("*.json"):
                try:
                    finished = path.lstat().st_ctime
                except FileNotFoundError:
                    continue
                if finished >= older_than:
                    continue
                path.unlink(missing_ok=True)
                (self.folder("state") / path.name).unlink(missing_ok=True)
                gone += 1
        return gone

    # --- reading -------------------------------------------------------------------------

    def entries(self, statuses: Sequence[str] = STATUSES) -> list[Entry]:
        found: list[Entry] = []
        for folder in ("new", "sending", "sent", "failed"):
            for path in self.folder(folder).glob("*.json"):
                ident = path.stem
                delivery = self.state(ident)
                status = folder
                if folder == "new":
                    status = "deferred" if delivery.attempts else "queued"
                if status not in statuses:
                    continue
                try:
                    mail = self.load(ident, folder)
                    kind, to, subject = mail.kind, mail.to, mail.subject
                    stat = path.stat()
                except (OSError, ValueError, KeyError, TypeError):
                    continue
                found.append(Entry(
                    id=ident, status=status, kind=kind, to=to, subject=subject,
                    queued_at=_queued_at(ident, stat.st_mtime),
                    attempts=delivery.attempts,
                    next_try=delivery.next_try if status == "deferred" else None,
                    last_error=delivery.last_error,
                    finished_at=stat.st_ctime if folder in ("sent", "failed") else None,
                    unconfirmed=delivery.unconfirmed))
        return sorted(found, key=lambda e: (e.queued_at, e.id))


def _boot_id() -> str:
    """This boot of the kernel: an intent armed in another boot survived a reboot."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def _queued_at(ident: str, fallback: float) -> float:
    head = ident.split(".", 1)[0]
    return int(head) / 1e9 if len(head) == 20 and head.isdigit() else fallback


def enqueue_mail(to: str, subject: str, body: str, *, kind: str,
                 attachments: Sequence[Attachment] = (), profile: str | None = None,
                 key: str | None = None, details: dict[str, str] | None = None,
                 root: Path | None = None) -> str | None:
    """Queue one plain-text UTF-8 mail for the sender; the public way in for every feature
    (the CDR's fraud alerts, directory import's welcome mails...).

    Returns the mail's queue id, or None when `key` was queued before: give a key that
    names the event (`fraud-<cdr id>`, `welcome-<extension>-<date>`) and a retried caller
    queues it once. It returns once the mail is on disk (fsync'd): from then on it is the
    sender's, delivered or recorded failed, never lost. `profile` names an SMTP profile
    (default: `default`). Raises MailQueueError on a bad address or a mail too large."""
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", kind):
        raise MailQueueError(f"not a mail kind: {kind!r}")
    if key is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,90}", key):
        raise MailQueueError(f"not a queue key: {key!r}")
    ident = f"{kind}.{key}" if key is not None else _new_id(kind)
    mail = QueuedMail(id=ident, to=to, subject=subject, body=body, kind=kind,
                      profile=profile, details=dict(details or {}),
                      attachments=tuple(attachments))
    return ident if MailQueue(root or default_root()).put(mail) else None
