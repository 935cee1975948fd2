"""A throwaway IMAP server for tests, from Debian's `dovecot-imapd` (2.3): implicit TLS
(IMAPS) on a free loopback port with a self-signed certificate, one user (a passwd file,
plain password), its mailbox a Maildir that tests fill by writing files into `new/`
(exactly what a delivery agent does). Never the packaged service; a missing binary fails
the test (no skip)."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from support.smtp_server import PASSWORD as SMTP_PASSWORD
from support.smtp_server import USER as SMTP_USER
from wildix_ast.lab.allocator import free_port

DOVECOT = Path("/usr/sbin/dovecot")
USER = SMTP_USER
PASSWORD = SMTP_PASSWORD
"""The PBX's mailbox: the SMTP login also reads its IMAP mailbox (one account)."""
MAIL_OWNER = "nobody"
"""Dovecot refuses root as a mailbox owner: the Maildir belongs to `nobody`."""


class ImapServer:
    def __init__(self, work: Path, cert: Path, key: Path) -> None:
        """`cert`, `key`: the server's certificate (the SMTP test server's, so that one
        profile's `ca_file` trusts both)."""
        if not DOVECOT.exists():
            pytest.fail("dovecot is missing: run .ci/install-system-packages "
                        "(dovecot-imapd)", pytrace=False)
        self.work = work
        self.cert, self.key = cert, key
        self.port = free_port("127.0.0.1")
        # the mailbox's owner must reach it: a folder of its own outside pytest's 0700 tree
        self.home = Path(tempfile.mkdtemp(prefix="wildix-imap-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def maildir(self) -> Path:
        return self.home / "Maildir"

    def start(self) -> None:
        cert, key = self.cert, self.key
        owner = pwd.getpwnam(MAIL_OWNER)
        for sub in ("", "new", "cur", "tmp"):
            (self.maildir / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(self.home, 0o755)
        for root, folders, _ in os.walk(self.home):
            os.chown(root, owner.pw_uid, owner.pw_gid)
            for folder in folders:
                os.chown(Path(root) / folder, owner.pw_uid, owner.pw_gid)
        # read by dovecot's auth process (user dovecot), which cannot enter pytest's folder
        passwd = self.home / "passwd"
        passwd.write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n", encoding="utf-8")
        os.chown(passwd, 0, pwd.getpwnam("dovecot").pw_gid)
        passwd.chmod(0o640)
        config = self.work / "dovecot.conf"
        config.write_text(f"""
protocols = imap
listen = 127.0.0.1
base_dir = {self.work}/run
state_dir = {self.work}/state
log_path = {self.work}/dovecot.log
ssl = required
ssl_cert = <{cert}
ssl_key = <{key}
auth_mechanisms = plain login
first_valid_uid = {owner.pw_uid}
mail_location = maildir:{self.maildir}
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    port = {self.port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
passdb {{
  driver = passwd-file
  args = {passwd}
}}
userdb {{
  driver = static
  args = uid={owner.pw_uid} gid={owner.pw_gid} home={self.home}
}}
""", encoding="utf-8")
        self.process = subprocess.Popen([str(DOVECOT), "-F", "-c", str(config)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                error = self.process.stderr.read().decode() if self.process.stderr else ""
                log = (self.work / "dovecot.log").read_text() \
                    if (self.work / "dovecot.log").exists() else ""
                pytest.fail(f"dovecot stopped: {error}{log}", pytrace=False)
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.1)
        pytest.fail("dovecot did not listen in 20 s", pytrace=False)

    def deliver(self, raw: bytes) -> Path:
        """Put a message in the mailbox as a delivery agent does (tmp/, then new/)."""
        name = f"{time.time_ns()}.{uuid.uuid4().hex}.test"
        staged = self.maildir / "tmp" / name
        staged.write_bytes(raw)
        owner = pwd.getpwnam(MAIL_OWNER)
        os.chown(staged, owner.pw_uid, owner.pw_gid)
        return staged.rename(self.maildir / "new" / name)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None
        shutil.rmtree(self.home, ignore_errors=True)
