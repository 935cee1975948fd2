"""A real SMTP server for the mail tests: aiosmtpd (a maintained server, PyPI) on loopback,
with STARTTLS (required before AUTH), AUTH PLAIN/LOGIN against one user, and a throwaway
self-signed certificate made by openssl. It records every message it accepted; it can be
stopped and started again on the same port (a server down for a while) and told to answer
4xx or 5xx to recipients of a given local part (`defer-...@`, `reject-...@`)."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import threading
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from wildix_ast.lab.allocator import free_port

USER = "pbx@example.com"
PASSWORD = "s3cret-Pass!"


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """(certificate, key) for CN=localhost, IP 127.0.0.1; the certificate is its own CA."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl is missing: run .ci/install-system-packages", pytrace=False)
    cert, key = folder / "smtp.crt", folder / "smtp.key"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


@dataclass(frozen=True)
class Received:
    sender: str
    recipients: tuple[str, ...]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = message_from_bytes(self.data, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"])


class _Handler:
    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        local = address.partition("@")[0]
        if local.startswith("defer-"):
            return "451 4.3.0 try again later"
        if local.startswith("reject-"):
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.server.lock:
            self.server.received.append(Received(
                envelope.mail_from, tuple(envelope.rcpt_tos), bytes(envelope.original_content
                                                                    or envelope.content)))
        return "250 OK queued"


def _authenticator(server: Any, session: Any, envelope: Any, mechanism: str,
                   auth_data: Any) -> AuthResult:
    ok = (isinstance(auth_data, LoginPassword) and auth_data.login == USER.encode()
          and auth_data.password == PASSWORD.encode())
    return AuthResult(success=ok, handled=False)


class SmtpServer:
    """aiosmtpd with STARTTLS + AUTH on 127.0.0.1:`port` (see the module)."""

    def __init__(self, folder: Path, *, implicit_tls: bool = False) -> None:
        self.cert, self.key = make_certificate(folder)
        self.port = free_port()
        self.implicit_tls = implicit_tls
        self.received: list[Received] = []
        self.lock = threading.Lock()
        self.controller: Controller | None = None

    def _context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context

    def start(self) -> None:
        context = self._context()
        tls: dict[str, Any] = ({"ssl_context": context} if self.implicit_tls else
                               {"tls_context": context, "require_starttls": True})
        self.controller = Controller(
            _Handler(self), hostname="127.0.0.1", port=self.port,
            authenticator=_authenticator, auth_require_tls=True, **tls)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def messages(self) -> list[Received]:
        with self.lock:
            return list(self.received)

    def profile(self, **changes: Any) -> dict[str, Any]:
        """The settings-file data of an SMTP profile for this server."""
        data: dict[str, Any] = {
            "name": "default", "sender": "pbx@example.com", "server": "127.0.0.1",
            "port": self.port, "user": USER, "password": PASSWORD,
            "helo_domain": "pbx.example.com", "starttls": not self.implicit_tls,
            "tls": self.implicit_tls, "ca_file": str(self.cert)}
        data.update(changes)
        return data
