"""The mail sender: empties the mail queue (`wildix_ast.mail.queue`) through the SMTP
profiles, one connection per profile and pass, kept for every due message.

- the server unreachable, or a 4xx reply: the message stays queued, deferred with back-off
  (`retry_base` doubled each try up to `retry_max`); after `max_attempts` tries it fails;
- a 5xx reply, a message that cannot be built, a profile that does not exist: failed at once
  (kept in `failed/` with the reason; `mail retry` queues it again);
- on start, what a killed sender left in `sending/` is recovered (see the queue), never sent
  twice.

It runs unprivileged, as the owner of the queue and the store (`wildix-ast mail send`, once or
`--serve`)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from wildix_ast.errors import MailAuthError, MailError, MailRejectedError, MailTlsError
from wildix_ast.mail.queue import MailQueue, QueuedMail
from wildix_ast.model.smtp_client import DEFAULT_PROFILE, SmtpProfile
from wildix_ast.services.mail.smtp import SmtpSession, TemporaryFailure
from wildix_ast.testing.crash_points import crash_point

log = logging.getLogger(__name__)

PRUNE_EVERY = 3600.0
"""How often the serving sender deletes finished mails past the retention."""


@dataclass(frozen=True)
class Backoff:
    retry_base: float = 60.0
    retry_max: float = 3600.0
    max_attempts: int = 12
    """12 tries over about 7 hours with the defaults: a mail server down for a night still
    gets the mails in the morning, only then are they reported failed."""
    timeout: float = 30.0

    def delay(self, attempts: int) -> float:
        return float(min(self.retry_max, self.retry_base * 2 ** max(0, attempts - 1)))


@dataclass
class Counts:
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    recovered: int = 0
    errors: list[str] = field(default_factory=list)


class Sender:
    """One pass (`run_once`) or a loop (`serve`) over the queue."""

    def __init__(self, queue: MailQueue, profiles: Callable[[], dict[str, SmtpProfile]],
                 backoff: Backoff | None = None, *, drops: Sequence[Path] = (),
                 addresses: Callable[[], frozenset[str]] = frozenset) -> None:
        """`drops`: folders other programs drop whole messages in (Asterisk's voicemail);
        `addresses`: the users' addresses, the only recipients of a dropped message."""
        self.queue = queue
        self.profiles = profiles
        self.drops = tuple(drops)
        self.addresses = addresses
        self.backoff = backoff or Backoff()
        self._recovered = False
        self.heartbeat: Callable[[], object] = lambda: None
        self.keep_days: Callable[[], int] | None = None
        """The mail queue's retention (`mail_queue.keep_days`), read at each pruning;
        None: finished mails are kept."""
        self._pruned_at = 0.0
        self._bounces_at = 0.0

    def run_once(self, now: Callable[[], float] = time.time) -> Counts:
        """Send every due message; call inside `queue.serving()`."""
        counts = Counts()
        if not self._recovered:
            counts.recovered = len(self.queue.recover())
            self._recovered = True
        self._take_drops()
        due = self.queue.due(now())
        if not due:
            return counts
        profiles = self.profiles()
        by_profile: dict[str, list[str]] = {}
        for ident in due:
            try:
                mail = self.queue.load(ident)
            except FileNotFoundError:
                continue
            except (OSError, ValueError, KeyError, TypeError) as exc:
                self._fail(counts, ident, f"unreadable queue file: {exc}")
                continue
            by_profile.setdefault(mail.profile or DEFAULT_PROFILE, []).append(ident)
        for name, idents in by_profile.items():
            profile = profiles.get(name)
            if profile is None:
                for ident in idents:
                    self._defer(counts, ident, f"no SMTP profile {name!r} in the store",
                                now())
                continue
            self._send_all(profile, idents, counts, now)
        return counts

    def _take_drops(self) -> None:
        known: frozenset[str] | None = None

        def allowed(address: str) -> bool:
            nonlocal known
            if known is None:  # read once a pass, and only when something was dropped
                known = self.addresses()
            return address in known

        for drop in (None, *self.drops):
            self.queue.take_drops(drop, allowed)

    def _send_all(self, profile: SmtpProfile, idents: list[str], counts: Counts,
                  now: Callable[[], float]) -> None:
        session: SmtpSession | None = None
        try:
            for position, ident in enumerate(idents):
                self.heartbeat()
                if session is None:
                    try:
                        session = SmtpSession(profile, self.backoff.timeout)
                    except (MailTlsError, MailAuthError, MailError) as exc:
                        # the server, not the messages: every one of them waits
                        for waiting in idents[position:]:
                            self._defer(counts, waiting, exc.message, now())
                        return
                try:
                    mail = self.queue.load(ident)
                except FileNotFoundError:
                    continue
                try:
                    self._send(session, mail)
                except TemporaryFailure as exc:
                    self._defer(counts, ident, exc.message, now(), folder=self._at(ident))
                except MailRejectedError as exc:
                    self._fail(counts, ident, exc.message, folder=self._at(ident))
                except (ValueError, UnicodeError) as exc:
                    self._fail(counts, ident, f"cannot build the message: {exc}")
                except MailError as exc:
                    if self._at(ident) == "sending":
                        # the end of data went out and no reply came: the server may have
                        # it; counted sent, unconfirmed (sending it again could double it)
                        self.queue.recover()
                        counts.sent += 1
                    else:
                        self._defer(counts, ident, exc.message, now())
                    session.smtp.close()
                    session = None
                else:
                    counts.sent += 1
        finally:
            if session is not None:
                session.close()

    def _at(self, ident: str) -> str:
        return "sending" if (self.queue.folder("sending") / f"{ident}.json").exists() \
            else "new"

    def _send(self, session: SmtpSession, mail: QueuedMail) -> None:
        self.queue.arm(mail.id)
        crash_point("mail-before-commit")

        def committing() -> None:
            self.queue.committing(mail.id)
            crash_point("mail-committed")

        session.send(mail, committing)
        crash_point("mail-after-end-of-data")
        self.queue.sent(mail.id)
        crash_point("mail-after-sent")

    def _defer(self, counts: Counts, ident: str, error: str, at: float,
               folder: str = "new") -> None:
        attempts = self.queue.state(ident).attempts + 1
        if attempts >= self.backoff.max_attempts:
            self._fail(counts, ident, f"{error} (gave up after {attempts} tries)", folder=folder)
            return
        self.queue.defer(ident, error, at + self.backoff.delay(attempts), folder=folder)
        counts.deferred += 1
        counts.errors.append(error)

    def _fail(self, counts: Counts, ident: str, error: str, folder: str = "new") -> None:
        self.queue.fail(ident, error, folder=folder)
        counts.failed += 1
        counts.errors.append(error)

    def serve(self, stop: threading.Event, poll: float = 1.0,
              report: Callable[[Counts], None] = lambda counts: None) -> None:
        """Pass after pass until `stop` is set; a pass that sent or deferred reports."""
        from wildix_ast.services.sdnotify import notify

        self.heartbeat = lambda: notify("WATCHDOG=1")
        with self.queue.serving():
            notify("READY=1")
            while not stop.is_set():
                notify("WATCHDOG=1")
                self.prune_when_due()
                self.read_bounces_when_due()
                counts = self.run_once()
                if counts.sent or counts.deferred or counts.failed or counts.recovered:
                    report(counts)
                stop.wait(poll)

    def prune_when_due(self, now: float | None = None) -> int:
        """Every PRUNE_EVERY seconds: delete the sent and failed mails older than the
        retention (never a queued, deferred or sending one); how many. A failure to read the
        setting is logged and skipped: pruning never stops the sending."""
        moment = time.time() if now is None else now
        if self.keep_days is None or moment - self._pruned_at < PRUNE_EVERY:
            return 0
        self._pruned_at = moment
        try:
            gone = self.queue.prune(moment - self.keep_days() * 86400.0)
        except Exception as error:  # the store unreachable, a folder unreadable
            log.error("mail queue retention: %s: %s", type(error).__name__, error)
            return 0
        if gone:
            log.info("mail queue retention: %d finished mail(s) deleted", gone)
        return gone

    def read_bounces_when_due(self, now: float | None = None) -> int:
        """Every BOUNCE_EVERY seconds: read each profile's bounce mailbox
        (`bounce_reader`) and mark the bounced mails failed; how many."""
        from wildix_ast.services.mail.bounce_reader import BOUNCE_EVERY, read_bounces

        moment = time.time() if now is None else now
        if moment - self._bounces_at < BOUNCE_EVERY:
            return 0
        self._bounces_at = moment
        try:
            profiles = [p for p in self.profiles().values() if p.bounce_imap is not None]
        except Exception as error:  # the store unreachable: the next round tries again
            log.error("bounces: profiles not read: %s: %s", type(error).__name__, error)
            return 0
        marked = 0
        for profile in profiles:
            self.heartbeat()
            marked += len(read_bounces(profile, self.queue, self.backoff.timeout).bounced)
        return marked
