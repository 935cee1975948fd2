"""WMS Settings -> System -> Client SMTP: the profiles the PBX sends its mail through.

A profile is what the WMS form asks (sender address, server, port, user, password, HELO
domain defaulting to `localhost`, TLS, STARTTLS) plus what an office expects of a mail
client today: the server's certificate is checked unless the profile says otherwise, against
the system's authorities or a given file. The profile named `default` (WMS "Défaut") carries
every mail that names none. The password is a secret: the store keeps it in its vault
(`smtp:<profile>:password`), never in the profile's row, and exports leave it out unless
asked (`export --with-secrets`).
"""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import BaseModel, Field, model_validator

from wildix_ast.model.common import STRICT
from wildix_ast.model.fields import Email, Host, Identifier, Port, Width, pattern

DEFAULT_PROFILE = "default"
"""The profile of every mail that names none (WMS "Défaut")."""

SmtpUser = Annotated[str, Width(128), pattern(
    r"[!-~]{1,128}", "SMTP user (printable characters, no spaces, 128 at most)")]
SmtpPassword = Annotated[str, pattern(
    r"[ -~]{1,128}", "SMTP password (printable ASCII, 128 characters at most)")]
"""Printable ASCII only: SMTP AUTH PLAIN/LOGIN carry it base64-encoded, and a line break
in it could never reach the server intact."""
CaFile = Annotated[str, Width(255), pattern(
    r"/[A-Za-z0-9._/+-]{1,254}", "absolute path of a PEM file")]


class SmtpProfile(BaseModel):
    """One SMTP profile (WMS 'Client SMTP')."""

    model_config = STRICT

    name: Identifier = DEFAULT_PROFILE
    sender: Email
    """WMS 'E-mail de l'expéditeur': the From address and the envelope sender."""
    server: Host
    port: Port = 587
    user: SmtpUser | None = None
    password: SmtpPassword | None = Field(default=None, repr=False, exclude=True)
    """Never serialised (digests, JSON output); `dump_site` adds it back when asked."""
    helo_domain: Host = "localhost"
    """WMS 'Domaine HELO': what the PBX says in EHLO (anti-spam filters may want a real
    name)."""
    tls: bool = False
    """Implicit TLS from the first byte (SMTPS, usually port 465)."""
    starttls: bool = True
    """Upgrade a plain connection with STARTTLS; refused to send in clear when the server
    does not offer it."""
    verify_certificate: bool = True
    ca_file: CaFile | None = None
    """Authorities to trust instead of the system's (a private mail server's CA)."""
    bounce_imap: Host | None = None
    """The IMAP server (implicit TLS) of the sender's mailbox, where the bounces (DSNs) of
    mails the server accepted arrive: the mail sender reads them with this profile's user
    and password and marks each bounced mail failed with the reason. None: not read."""
    bounce_imap_port: Port = 993

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        if self.tls and self.starttls:
            raise ValueError("choose tls (implicit TLS, port 465) or starttls, not both")
        if self.password is not None and self.user is None:
            raise ValueError("a password needs a user")
        if self.bounce_imap is not None and self.user is None:
            raise ValueError("bounce_imap logs in with the profile's user and password: "
                             "give a user")
        return self


class MailQueueSettings(BaseModel):
    """The outgoing mail queue's housekeeping: how long a finished mail is kept."""

    model_config = STRICT

    keep_days: Annotated[int, Field(ge=1, le=3650)] = 30
    """Sent and failed mails (the queue's `sent/` and `failed/`) are deleted by the mail
    sender this many days after they were finished; queued, deferred and sending mails are
    never touched."""
