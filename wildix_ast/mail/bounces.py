"""Bounces: a delivery status notification (RFC 3464 DSN) that names a mail of the queue.

A server that accepted a mail (250) may fail to deliver it later and send a DSN to the
envelope sender: a `multipart/report; report-type=delivery-status` whose
`message/delivery-status` part says, per recipient, `Action: failed`, `Status: 5.x.x` and
often a `Diagnostic-Code`, and whose third part returns the original's headers
(`text/rfc822-headers` or `message/rfc822`). The sender sets every queued mail's
Message-ID to `<queue id@helo domain>` (services/mail/smtp.py), so the returned
Message-ID names the queue id.

`parse_bounce` reads one DSN strictly: anything else (a reply, a vacation notice, a
delayed-delivery DSN with `Action: delayed`, a Message-ID that is not a queue id) is None:
never a mail marked failed by a message that is not a failure report. The mailbox is
read by the mail sender (services/mail/bounce_reader.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import Message

_QUEUE_ID = re.compile(r"<([A-Za-z0-9_.-]{1,200})@[A-Za-z0-9.-]{1,253}>")
MAX_REASON = 300


@dataclass(frozen=True)
class Bounce:
    queue_id: str
    recipient: str
    reason: str


def _fields(text: str) -> list[dict[str, str]]:
    """The groups of `Name: value` lines of a delivery-status body (per-message first)."""
    groups: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            if current:
                groups.append(current)
                current = {}
            continue
        if line[0] in " \t" and current:  # folded
            last = next(reversed(current))
            current[last] += " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        if sep:
            current[name.strip().lower()] = value.strip()
    if current:
        groups.append(current)
    return groups


def _part_text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        return payload.decode("utf-8", errors="replace")
    # message/* parts are parsed into sub-messages: their text is what they hold
    inner = part.get_payload()
    if isinstance(inner, list):
        return "\n\n".join(m.as_string() for m in inner if isinstance(m, Message))
    return str(inner or "")


def parse_bounce(raw: bytes) -> Bounce | None:
    """The failed queue mail a DSN reports, or None for anything that is not one."""
    message = message_from_bytes(raw, policy=policy.compat32)
    report_type = message.get_param("report-type")
    if message.get_content_type() != "multipart/report" or \
            not isinstance(report_type, str) or report_type.lower() != "delivery-status":
        return None
    status_text, returned = "", ""
    for part in message.walk():
        kind = part.get_content_type()
        if kind == "message/delivery-status":
            status_text = _part_text(part)
        elif kind in ("text/rfc822-headers", "message/rfc822"):
            returned = _part_text(part)
    failed = [g for g in _fields(status_text)[1:] if g.get("action", "").lower() == "failed"]
    found = re.search(r"(?im)^message-id:\s*(<[^>\r\n]{1,500}>)", returned)
    if not failed or found is None:
        return None
    ident = _QUEUE_ID.fullmatch(found.group(1))
    if ident is None:
        return None
    first = failed[0]
    recipient = first.get("final-recipient", first.get("original-recipient", ""))
    recipient = recipient.split(";", 1)[-1].strip()
    reason = " ".join(filter(None, (first.get("status", ""),
                                    first.get("diagnostic-code", "").split(";", 1)[-1].strip())))
    printable = "".join(c if c.isprintable() else " " for c in reason)[:MAX_REASON]
    return Bounce(ident.group(1), recipient[:254], printable or "bounced")

