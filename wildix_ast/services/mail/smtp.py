"""One SMTP session through a profile (WMS Client SMTP): connect (implicit TLS or STARTTLS,
certificate checked unless the profile says otherwise), log in, send messages, and every
failure turned into an error a person can act on, temporary or not.

A message's end of data (the final `.`) is sent apart from the rest, after a callback: the
queue records the message as `sending` durably in between (see `wildix_ast.mail.queue`)."""

from __future__ import annotations

import re
import smtplib
import socket
import ssl
from collections.abc import Callable
from email.encoders import encode_base64
from email.header import Header
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import SMTP as SMTP_POLICY
from email.utils import formatdate

from wildix_ast.errors import MailAuthError, MailError, MailRejectedError, MailTlsError
from wildix_ast.mail.queue import QueuedMail
from wildix_ast.model.smtp_client import SmtpProfile


class TemporaryFailure(MailError):
    """A 4xx reply: try again later."""


def tls_context(ca_file: str | None, verify: bool) -> ssl.SSLContext:
    """A client's TLS context: the system's authorities (or `ca_file`'s), the server's
    certificate and name checked unless `verify` is off. Mail2Fax's mailboxes use it too."""
    context = ssl.create_default_context(cafile=ca_file)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _tls_context(profile: SmtpProfile) -> ssl.SSLContext:
    return tls_context(profile.ca_file, profile.verify_certificate)


def _where(profile: SmtpProfile) -> str:
    return f"SMTP server {profile.server}:{profile.port} (profile {profile.name!r})"


class SmtpSession:
    """A logged-in connection to a profile's server; `close()` says QUIT."""

    def __init__(self, profile: SmtpProfile, timeout: float = 30.0) -> None:
        self.profile = profile
        where = _where(profile)
        try:
            context = _tls_context(profile)
        except (OSError, ssl.SSLError) as exc:
            raise MailTlsError(f"{where}: cannot read the CA file {profile.ca_file}: "
                               f"{exc}") from None
        try:
            if profile.tls:
                self.smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    profile.server, profile.port, local_hostname=profile.helo_domain,
                    timeout=timeout, context=context)
            else:
                self.smtp = smtplib.SMTP(profile.server, profile.port,
                                         local_hostname=profile.helo_domain, timeout=timeout)
            # the end of data goes in its own write right after the message (see `send`):
            # with Nagle's algorithm it would wait for the server's delayed ACK (40 ms)
            if self.smtp.sock is not None:
                self.smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.smtp.ehlo()
            if profile.starttls:
                if not self.smtp.has_extn("starttls"):
                    self.smtp.close()
                    raise MailTlsError(f"{where} does not offer STARTTLS: refusing to send "
                                       "the password and mails in clear (set starttls: false "
                                       "to allow it)")
                self.smtp.starttls(context=context)
                self.smtp.ehlo()
            if profile.user is not None:
                self.smtp.login(profile.user, profile.password or "")
        except MailError:
            raise
        except ssl.SSLCertVerificationError as exc:
            raise MailTlsError(f"{where}: its certificate is not trusted: "
                               f"{exc.verify_message}") from None
        except ssl.SSLError as exc:
            raise MailTlsError(f"{where}: TLS failed: {exc.reason or exc}") from None
        except smtplib.SMTPAuthenticationError as exc:
            raise MailAuthError(f"{where} refused user {profile.user!r}: {exc.smtp_code} "
                                f"{_text(exc.smtp_error)}") from None
        except smtplib.SMTPNotSupportedError:
            raise MailAuthError(f"{where} offers no login (AUTH) but the profile has a "
                                "user") from None
        except smtplib.SMTPResponseException as exc:
            raise _reply_error(where, exc.smtp_code, exc.smtp_error) from None
        except ConnectionRefusedError:
            raise MailError(f"{where}: connection refused (is the server up, the port "
                            "right?)") from None
        except socket.gaierror as exc:
            raise MailError(f"{where}: unknown host ({exc.strerror})") from None
        except TimeoutError:
            raise MailError(f"{where}: no answer within {timeout:g} s") from None
        except smtplib.SMTPServerDisconnected as exc:
            raise MailError(f"{where} closed the connection: {exc}") from None
        except OSError as exc:
            raise MailError(f"{where}: {exc.strerror or exc}") from None

    def send(self, mail: QueuedMail, committing: Callable[[], None] = lambda: None) -> None:
        """Send one message; `committing()` runs just before its end of data. Raises
        TemporaryFailure (4xx), MailRejectedError (5xx) or MailError (connection lost)."""
        where = _where(self.profile)
        data = message_bytes(mail, self.profile)
        smtp = self.smtp
        try:
            code, reply = smtp.mail(self.profile.sender)
            if code == 250:
                code, reply = smtp.rcpt(mail.to)
            if code in (250, 251):
                code, reply = smtp.docmd("DATA")
            if code != 354:
                smtp.rset()
                raise _reply_error(where, code, reply)
            smtp.send(_dot_stuffed(data))
            committing()
            smtp.send(b".\r\n")
            code, reply = smtp.getreply()
        except smtplib.SMTPServerDisconnected as exc:
            raise MailError(f"{where} closed the connection: {exc}") from None
        except OSError as exc:
            raise MailError(f"{where}: {exc.strerror or exc}") from None
        if code != 250:
            raise _reply_error(where, code, reply)

    def close(self) -> None:
        try:
            self.smtp.quit()
        except (smtplib.SMTPException, OSError):
            self.smtp.close()


def _text(reply: bytes | str) -> str:
    return (reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply)[:300]


def _reply_error(where: str, code: int, reply: bytes | str) -> MailError:
    text = f"{where} answered {code} {_text(reply)}"
    if 400 <= code < 500:
        return TemporaryFailure(text)
    if 500 <= code < 600:
        return MailRejectedError(text)
    return MailError(text)


def _dot_stuffed(data: bytes) -> bytes:
    data = re.sub(rb"\r\n|\n|\r", b"\r\n", data)
    data = re.sub(rb"(?m)^\.", b"..", data)
    return data if data.endswith(b"\r\n") else data + b"\r\n"


def message_bytes(mail: QueuedMail, profile: SmtpProfile) -> bytes:
    """The RFC 5322 message of a queued mail: From is the profile's sender, the Message-ID
    is made from the queue id (a mail sent again by hand keeps it, so a reader's client can
    tell it is the same). Raises ValueError for a header that would carry a line break."""
    message_id = f"<{mail.id}@{profile.helo_domain}>"
    if mail.raw is not None:
        from email import message_from_bytes, policy

        parsed = message_from_bytes(mail.raw, policy=policy.SMTP)
        del parsed["From"]
        parsed["From"] = profile.sender
        if parsed["Message-ID"] is None:
            parsed["Message-ID"] = message_id
        return parsed.as_bytes(policy=SMTP_POLICY)
    # compat32's MIME classes: a tenth of the time of EmailMessage's header registry
    for field_name, value in (("To", mail.to), ("Subject", mail.subject)):
        if "\r" in value or "\n" in value:
            raise ValueError(f"{field_name} holds a line break")
    text = MIMEText(mail.body, "plain", "utf-8")
    message: MIMEText | MIMEMultipart = text
    if mail.attachments:
        message = MIMEMultipart()
        message.attach(text)
        for attachment in mail.attachments:
            main, _, sub = attachment.content_type.partition("/")
            part = MIMEBase(main, sub or "octet-stream")
            part.set_payload(attachment.data)
            encode_base64(part)
            part.add_header("Content-Disposition", "attachment", filename=attachment.filename)
            message.attach(part)
    message["From"] = profile.sender
    message["To"] = mail.to
    message["Subject"] = mail.subject if mail.subject.isascii() \
        else Header(mail.subject, "utf-8").encode()
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = message_id
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to the PBX
    return message.as_bytes()
