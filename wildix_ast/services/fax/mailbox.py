"""Mail2Fax's mailbox: the mails of one profile's IMAP or POP3 mailbox, read with the
standard library (imaplib, poplib), over implicit TLS or STARTTLS with the server's
certificate checked (or in clear for a server on this host, `security: none`).

`Mailbox.pending()` lists what is waiting (IMAP: the INBOX's mails without the
`$WildixFaxed` keyword and not deleted; POP3: every UIDL), `fetch(ref)` gives one whole
mail, `acknowledge(ref)` removes it from the waiting ones: deleted and expunged, or with
`keep_on_server` flagged `\\Seen $WildixFaxed` (IMAP) / left (POP3: the job spool knows its
key, so it is acknowledged again without a second fax). The caller acknowledges a mail
only once its job is on disk (services/fax/outbound.py): a connection cut at any point
leaves the mail waiting, never lost.

Every failure becomes a MailError (11: unreachable, broken off), MailTlsError (12) or
MailAuthError (13) naming the server: never a traceback.
"""

from __future__ import annotations

import imaplib
import poplib
import re
import socket
import ssl
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass

from wildix_ast.errors import MailAuthError, MailError, MailTlsError
from wildix_ast.model.mail2fax import Mail2FaxProfile, MailProtocol, MailSecurity
from wildix_ast.services.mail.smtp import tls_context

KEYWORD = "$WildixFaxed"
TIMEOUT = 30.0
MAX_MAIL = 30 * 1024 * 1024
"""A mail larger than this is not fetched (a fax of hundreds of pages is a few MiB)."""


@dataclass(frozen=True)
class Pending:
    ref: str
    """IMAP UID or POP3 UIDL."""
    size: int


def _tls_context(profile: Mail2FaxProfile) -> ssl.SSLContext:
    return tls_context(profile.ca_file, profile.verify_certificate)


def _where(profile: Mail2FaxProfile) -> str:
    return f"{profile.protocol} {profile.server}:{profile.effective_port}"


class Mailbox:
    """One open session (use `open_mailbox`)."""

    def pending(self) -> list[Pending]:
        raise NotImplementedError

    def fetch(self, ref: str) -> bytes:
        raise NotImplementedError

    def acknowledge(self, ref: str, *, keep: bool = False) -> None:
        """Taken: deleted, or flagged (`keep`, or the profile's keep_on_server)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class _Imap(Mailbox):
    def __init__(self, client: imaplib.IMAP4, profile: Mail2FaxProfile) -> None:
        self.client = client
        self.keep = profile.keep_on_server
        self.where = _where(profile)
        self._ok(self.client.select("INBOX"), "SELECT INBOX")

    def _ok(self, answer: tuple[str, Sequence[object]], what: str) -> Sequence[object]:
        kind, data = answer
        if kind != "OK":
            raise MailError(f"{self.where}: {what} refused: {data!r:.200}")
        return data

    def pending(self) -> list[Pending]:
        data = self._ok(self.client.uid("SEARCH", "UNDELETED", "UNKEYWORD", KEYWORD),
                        "SEARCH")
        raw = data[0] if data and isinstance(data[0], bytes) else b""
        uids = [u.decode() for u in raw.split() if u.isdigit()]
        found: list[Pending] = []
        for start in range(0, len(uids), 200):
            batch = ",".join(uids[start:start + 200])
            for item in self._ok(self.client.uid("FETCH", batch, "(RFC822.SIZE)"), "FETCH"):
                if not isinstance(item, bytes):
                    continue
                match = re.search(rb"UID (\d+).*RFC822\.SIZE (\d+)|RFC822\.SIZE (\d+).*UID "
                                  rb"(\d+)", item)
                if match:
                    uid = match[1] or match[4]
                    size = match[2] or match[3]
                    found.append(Pending(uid.decode(), int(size)))
        return sorted(found, key=lambda p: int(p.ref))

    def fetch(self, ref: str) -> bytes:
        data = self._ok(self.client.uid("FETCH", ref, "(BODY.PEEK[])"), "FETCH")
        for item in data:
            if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], bytes):
                return item[1]
        raise MailError(f"{self.where}: mail {ref} is gone")

    def acknowledge(self, ref: str, *, keep: bool = False) -> None:
        if self.keep or keep:
            self._ok(self.client.uid("STORE", ref, "+FLAGS", f"(\\Seen {KEYWORD})"), "STORE")
            return
        self._ok(self.client.uid("STORE", ref, "+FLAGS", "(\\Deleted)"), "STORE")
        self._ok(self.client.expunge(), "EXPUNGE")

    def close(self) -> None:
        with suppress(OSError, imaplib.IMAP4.error):
            self.client.logout()


class _Pop3(Mailbox):
    def __init__(self, client: poplib.POP3, profile: Mail2FaxProfile) -> None:
        self.client = client
        self.keep = profile.keep_on_server
        self.where = _where(profile)
        self._numbers: dict[str, int] = {}

    def pending(self) -> list[Pending]:
        _, lines, _ = self.client.uidl()
        sizes = {}
        _, listed, _ = self.client.list()
        for line in listed:
            number, _, size = line.decode().partition(" ")
            sizes[number] = int(size or 0)
        found = []
        for line in lines:
            number, _, uidl = line.decode().partition(" ")
            if re.fullmatch(r"[!-~]{1,70}", uidl):
                self._numbers[uidl] = int(number)
                found.append(Pending(uidl, sizes.get(number, 0)))
        return found

    def fetch(self, ref: str) -> bytes:
        number = self._numbers.get(ref)
        if number is None:
            raise MailError(f"{self.where}: mail {ref} is gone")
        _, lines, _ = self.client.retr(number)
        return b"\r\n".join(lines) + b"\r\n"

    def acknowledge(self, ref: str, *, keep: bool = False) -> None:
        if not (self.keep or keep) and ref in self._numbers:
            self.client.dele(self._numbers[ref])

    def close(self) -> None:
        with suppress(OSError, poplib.error_proto):
            self.client.quit()  # deletions take effect here (UPDATE state)


def _connect(profile: Mail2FaxProfile) -> Mailbox:
    host, port = profile.server, profile.effective_port
    password = profile.password or ""
    if profile.protocol is MailProtocol.IMAP:
        if profile.security is MailSecurity.SSL:
            imap: imaplib.IMAP4 = imaplib.IMAP4_SSL(host, port, ssl_context=_tls_context(
                profile), timeout=TIMEOUT)
        else:
            imap = imaplib.IMAP4(host, port, timeout=TIMEOUT)
            if profile.security is MailSecurity.STARTTLS:
                if "STARTTLS" not in imap.capabilities:
                    raise MailTlsError(f"{_where(profile)}: STARTTLS is not offered")
                imap.starttls(ssl_context=_tls_context(profile))
        try:
            imap.login(profile.user, password)
        except imaplib.IMAP4.error as e:
            raise MailAuthError(f"{_where(profile)}: login refused: {e}") from None
        return _Imap(imap, profile)
    if profile.security is MailSecurity.SSL:
        pop: poplib.POP3 = poplib.POP3_SSL(host, port, context=_tls_context(profile),
                                           timeout=TIMEOUT)
    else:
        pop = poplib.POP3(host, port, timeout=TIMEOUT)
        if profile.security is MailSecurity.STARTTLS:
            if "STLS" not in pop.capa():
                raise MailTlsError(f"{_where(profile)}: STLS (STARTTLS) is not offered")
            pop.stls(context=_tls_context(profile))
    try:
        pop.user(profile.user)
        pop.pass_(password)
    except poplib.error_proto as e:
        raise MailAuthError(f"{_where(profile)}: login refused: {e!s:.200}") from None
    return _Pop3(pop, profile)


@contextmanager
def open_mailbox(profile: Mail2FaxProfile) -> Iterator[Mailbox]:
    """A logged-in session; any failure, now or while it is used, as a MailError."""
    where = _where(profile)
    try:
        box = _connect(profile)
    except MailError:
        raise
    except ssl.SSLError as e:
        raise MailTlsError(f"{where}: TLS failed: {e.reason or e}") from None
    except (socket.gaierror, TimeoutError, ConnectionError, OSError) as e:
        raise MailError(f"{where}: cannot connect: {e}") from None
    except (imaplib.IMAP4.error, poplib.error_proto) as e:
        raise MailError(f"{where}: {e!s:.200}") from None
    try:
        yield box
    except ssl.SSLError as e:
        raise MailTlsError(f"{where}: TLS failed: {e.reason or e}") from None
    except (imaplib.IMAP4.abort, poplib.error_proto, OSError, EOFError) as e:
        raise MailError(f"{where}: connection broken: {e!s:.200}") from None
    except imaplib.IMAP4.error as e:
        raise MailError(f"{where}: {e!s:.200}") from None
    finally:
        box.close()
