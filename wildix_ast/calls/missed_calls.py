"""WMS "Notifier les appels manqués via e-mail": a missed call queues one mail message.

The message goes into the PBX's one mail queue (`wildix_ast.mail.queue`: a folder with
Maildir's discipline, sent by `wildix-ast mail send`), under an id made of the call's Asterisk
unique ID and the user's extension, created exclusively: the same missed call reported twice
queues one message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from wildix_ast.mail.queue import SPOOL_ENV, MailQueue, QueuedMail, default_root

__all__ = ["SPOOL_ENV", "MailSpool", "MissedCall", "default_spool"]
_UNIQUEID = re.compile(r"[0-9]{1,20}\.[0-9]{1,10}")


def default_spool() -> Path:
    return default_root()


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
    """The missed-call door of the mail queue (`wildix_ast.mail.queue`, one folder for
    every mail the PBX sends)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.queue = MailQueue(root)

    def queue_missed_call(self, call: MissedCall) -> bool:
        """Queue the message of `call`; False when that call already queued one."""
        if not _UNIQUEID.fullmatch(call.uniqueid):
            raise ValueError(f"not an Asterisk unique ID: {call.uniqueid!r}")
        if not call.user_extension.isdigit():
            raise ValueError(f"not an extension: {call.user_extension!r}")
        message = message_for(call)
        # the queue id names the call and the user: the same call reported twice (a
        # retried AGI request, two hang-up paths) is queued once
        return self.queue.put(QueuedMail(
            id=f"missed_call.{call.uniqueid}-{call.user_extension}", to=message.to,
            subject=message.subject, body=message.body, kind=message.kind,
            details=message.call))

    def pending(self) -> list[MailMessage]:
        """The messages waiting in the queue (`new/`), oldest first."""
        messages = []
        for ident in self.queue.due(float("inf")):
            mail = self.queue.load(ident)
            messages.append(MailMessage(to=mail.to, subject=mail.subject, body=mail.body,
                                        kind=mail.kind, call=mail.details))
        return messages
