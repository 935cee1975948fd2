"""Reading bounces from a profile's mailbox (IMAP, implicit TLS, the standard library).

For each SMTP profile with `bounce_imap`, the mail sender logs in to that IMAP server with
the profile's user and password (the certificate checked as for SMTP: `verify_certificate`,
`ca_file`), looks at the unread messages of INBOX without marking them read
(`BODY.PEEK[]`, at most `MAX_MESSAGES` a pass, each at most `MAX_BYTES`), and for each one
`mail.bounces.parse_bounce` recognises as the failure report of a queued mail, moves that
mail from `sent/` to `failed/` with the reason (`MailQueue.bounced`) and only then flags the
DSN `\\Seen`: a crash in between reads it again, and marking an already failed mail is a
no-op. Every other message is left exactly as it was (unread): the mailbox may be a
person's too.

Runs in the sender's loop every `BOUNCE_EVERY` seconds; a server that is down, refuses the
login or times out is logged and tried at the next round, never stopping the sending."""

from __future__ import annotations

import imaplib
import logging
import ssl
from dataclasses import dataclass, field

from wildix_ast.mail.bounces import Bounce, parse_bounce
from wildix_ast.mail.queue import MailQueue
from wildix_ast.model.smtp_client import SmtpProfile

log = logging.getLogger(__name__)

BOUNCE_EVERY = 300.0
MAX_MESSAGES = 200
MAX_BYTES = 1024 * 1024
TIMEOUT = 30.0


@dataclass
class BounceRound:
    read: int = 0
    bounced: list[Bounce] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _context(profile: SmtpProfile) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=profile.ca_file)
    if not profile.verify_certificate:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def read_bounces(profile: SmtpProfile, queue: MailQueue,
                 timeout: float = TIMEOUT) -> BounceRound:
    """One round over the profile's mailbox (see the module); errors are in the result."""
    found = BounceRound()
    if profile.bounce_imap is None or profile.user is None:
        return found
    where = f"{profile.name}: IMAP {profile.bounce_imap}:{profile.bounce_imap_port}"
    try:
        with imaplib.IMAP4_SSL(profile.bounce_imap, profile.bounce_imap_port,
                               ssl_context=_context(profile), timeout=timeout) as imap:
            imap.login(profile.user, profile.password or "")
            status, _ = imap.select("INBOX")
            if status != "OK":
                raise imaplib.IMAP4.error("INBOX cannot be selected")
            status, data = imap.uid("SEARCH", "UNSEEN")
            uids = data[0].split()[:MAX_MESSAGES] if status == "OK" and data[0] else []
            for uid in uids:
                status, size = imap.uid("FETCH", uid, "(RFC822.SIZE)")
                if status != "OK" or not size or not isinstance(size[0], bytes):
                    continue
                if int(size[0].rsplit(b"RFC822.SIZE ", 1)[-1].rstrip(b")") or 0) > MAX_BYTES:
                    continue
                status, parts = imap.uid("FETCH", uid, "(BODY.PEEK[])")
                raw = next((p[1] for p in parts if isinstance(p, tuple)), None) \
                    if status == "OK" else None
                if not isinstance(raw, bytes):
                    continue
                found.read += 1
                bounce = parse_bounce(raw)
                if bounce is None:
                    continue
                if queue.bounced(bounce.queue_id, bounce.reason):
                    found.bounced.append(bounce)
                    log.warning("mail %s to %s bounced: %s", bounce.queue_id,
                                bounce.recipient, bounce.reason)
                elif not queue.has_failed(bounce.queue_id):
                    continue  # not about a mail of this queue: left unread for its owner
                imap.uid("STORE", uid, "+FLAGS", "(\\Seen)")
    except (OSError, ssl.SSLError, imaplib.IMAP4.error, ValueError) as error:
        message = f"{where}: {type(error).__name__}: {error}".splitlines()[0]
        log.error("bounces: %s", message)
        found.errors.append(message)
    return found
