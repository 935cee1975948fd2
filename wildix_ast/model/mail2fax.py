"""WMS Serveur FAX/SMS -> Mail2Fax: the mailboxes the fax server reads faxes to send from.

A profile is what the WMS form asks (POP3 or IMAP, server, port, SSL, user, password, keep
on server, routing procedure, protection password) plus what an office expects of a mail
client today: implicit TLS or STARTTLS with the server's certificate checked (against the
system's authorities or a given file), and the addresses allowed to send faxes besides the
known users'. Both passwords are secrets: the store keeps them in its vault
(`mail2fax:<profile>:password`, `mail2fax:<profile>:protection`), never in the profile's row;
exports leave them out unless asked (`export --with-secrets`).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Self

from pydantic import BaseModel, Field, model_validator

from wildix_ast.model.common import DEFAULT_PROCEDURE, STRICT, empty_list
from wildix_ast.model.fields import Email, Host, Identifier, Port, Width, pattern
from wildix_ast.model.smtp_client import CaFile

MailUser = Annotated[str, Width(128), pattern(
    r"[!-~]{1,128}", "mailbox user (printable characters, no spaces, 128 at most)")]
MailPassword = Annotated[str, pattern(
    r"[ -~]{1,128}", "mailbox password (printable ASCII, 128 characters at most)")]
"""Printable ASCII: IMAP LOGIN and POP3 PASS carry it on one line."""
ProtectionPassword = Annotated[str, pattern(
    r"[!-~]{4,64}", "protection password (4 to 64 printable characters, no spaces)")]
"""No spaces: it is one word of the mail's subject or body (docs/fax.md)."""


class MailProtocol(StrEnum):
    IMAP = "imap"
    POP3 = "pop3"


class MailSecurity(StrEnum):
    SSL = "ssl"            # implicit TLS (IMAPS 993, POP3S 995)
    STARTTLS = "starttls"  # upgraded plain connection; refused if the server does not offer it
    NONE = "none"          # only for a server on this host (the tests' loopback)


_DEFAULT_PORTS = {(MailProtocol.IMAP, MailSecurity.SSL): 993,
                  (MailProtocol.POP3, MailSecurity.SSL): 995,
                  (MailProtocol.IMAP, MailSecurity.STARTTLS): 143,
                  (MailProtocol.POP3, MailSecurity.STARTTLS): 110,
                  (MailProtocol.IMAP, MailSecurity.NONE): 143,
                  (MailProtocol.POP3, MailSecurity.NONE): 110}


class Mail2FaxProfile(BaseModel):
    """One Mail2Fax mailbox (WMS 'Serveur FAX/SMS', Mail2Fax)."""

    model_config = STRICT

    name: Identifier
    protocol: MailProtocol = MailProtocol.IMAP
    server: Host
    port: Port | None = None
    """None: the protocol's and security's usual port (993, 995, 143, 110)."""
    security: MailSecurity = MailSecurity.SSL
    verify_certificate: bool = True
    ca_file: CaFile | None = None
    user: MailUser
    password: MailPassword | None = Field(default=None, repr=False, exclude=True)
    """Never serialised (digests, JSON output); `dump_site` adds it back when asked."""
    keep_on_server: bool = False
    """WMS 'Garder sur le serveur': a processed mail is flagged (IMAP \\Seen + a keyword)
    instead of deleted; POP3 remembers its UIDL."""
    procedure: Identifier = DEFAULT_PROCEDURE
    """WMS 'Procédure de routage': the dialplan procedure the fax is dialled through."""
    protection_password: ProtectionPassword | None = Field(default=None, repr=False,
                                                            exclude=True)
    """When set, a mail must carry it (docs/fax.md says where) or it is refused."""
    allowed_senders: list[Email] = Field(default_factory=empty_list)
    """Addresses allowed to send faxes besides the users' own; they send as `send_as`."""
    send_as: Annotated[str, Width(8), pattern(
        r"[0-9]{2,8}", "extension (2 to 8 digits)")] | None = None
    """The user whose ACL group, number and procedure an allowed (non-user) sender's fax
    takes; without it, only known users may send."""

    @property
    def effective_port(self) -> int:
        return self.port or _DEFAULT_PORTS[(self.protocol, self.security)]

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        if self.allowed_senders and self.send_as is None:
            raise ValueError("allowed_senders need send_as: the user whose ACL group their "
                             "faxes are routed with")
        return self
