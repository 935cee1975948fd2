"""WMS "Notifier les appels manqués via e-mail": a missed call queues one mail message.

The queue is a spool folder with Maildir's discipline, so it survives crashes and needs no
schema: a message is written whole under `tmp/`, flushed, then renamed into `new/` (a reader
never sees half a message). Its file name is the call's Asterisk unique ID and the user's
extension, created exclusively: the same missed call reported twice (a retried AGI request,
two hang-up paths) queues one message. The mail issue's sender takes files from `new/`,
sends them and moves them to `cur/`.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

SPOOL_ENV = "WILDIX_AST_MAIL_SPOOL"
_UNIQUEID = re.compile(r"[0-9]{1,20}\.[0-9]{1,10}")


def default_spool() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return Path(os.environ.get(SPOOL_ENV) or Path(base) / "wildix-ast" / "mail-spool")


@dataclass(frozen=True)
class MissedCall:
    """One call a user did not answer."""

    uniqueid: str
    user_extension: str
    user_name: str
    user_email: str
    caller_number: str
    caller_name: str
    call_type: str  # internal / external
    at: datetime


@dataclass(frozen=True)
class MailMessage:
    """A message for the mail sender: plain text, UTF-8."""

    to: str
    subject: str
    body: str
    #: what the message is about, for the sender's log and for tests
    kind: str
    call: dict[str, str]


def message_for(call: MissedCall) -> MailMessage:
    caller = call.caller_number or "unknown number"
    if call.caller_name and call.caller_name != call.caller_number:
        caller = f"{call.caller_name} ({caller})"
    when = call.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return MailMessage(
        to=call.user_email,
        subject=f"Missed call from {caller}",
        body=(f"{call.user_name} ({call.user_extension}), you missed a call.\n\n"
              f"From: {caller}\nCall: {call.call_type or 'internal'}\nAt: {when}\n"),
        kind="missed_call",
        call={"uniqueid": call.uniqueid, "user": call.user_extension,
              "caller_number": call.caller_number, "caller_name": call.caller_name,
              "call_type": call.call_type or "internal", "at": call.at.isoformat()},
    )


class MailSpool:
    """The durable queue of messages to send (see the module's documentation)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _folders(self) -> tuple[Path, Path]:
        tmp, new = self.root / "tmp", self.root / "new"
        for folder in (tmp, new, self.root / "cur"):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        return tmp, new

    def queue_missed_call(self, call: MissedCall) -> bool:
        """Queue the message of `call`; False when that call already queued one."""
        if not _UNIQUEID.fullmatch(call.uniqueid):
            raise ValueError(f"not an Asterisk unique ID: {call.uniqueid!r}")
        if not call.user_extension.isdigit():
            raise ValueError(f"not an extension: {call.user_extension!r}")
        tmp, new = self._folders()
        name = f"{call.uniqueid}-{call.user_extension}.json"
        staged = tmp / f"{name}.{os.getpid()}.{uuid.uuid4().hex}"
        data = json.dumps(asdict(message_for(call)), ensure_ascii=False, indent=1)
        with staged.open("x", encoding="utf-8") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        try:
            # link() fails if the name exists: exactly one message per call and user
            os.link(staged, new / name)
        except FileExistsError:
            return False
        finally:
            staged.unlink()
        directory = os.open(new, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        return True

    def pending(self) -> list[MailMessage]:
        """The messages waiting in `new/`, oldest first."""
        _, new = self._folders()
        found = sorted(new.glob("*.json"), key=lambda p: p.stat().st_mtime_ns)
        return [MailMessage(**json.loads(p.read_text(encoding="utf-8"))) for p in found]
