"""A throwaway IMAP/POP3 server for the Mail2Fax tests, from Debian's dovecot (2.3,
dovecot-imapd and dovecot-pop3d).

It runs unprivileged (as the `dovecot` account when the tests run as root, else as the
tests' own user) from a private folder: its own configuration (no /etc/dovecot), one
passwd-file user with a Maildir, IMAP (STARTTLS) and IMAPS, POP3 (STLS) and POP3S on free
loopback ports, with a server certificate signed by a test CA. `stop()` / `start()` cut
every connection and bring it back on the same ports (a server that went away). Mails are
put in with IMAP APPEND, as a mail client would."""

from __future__ import annotations

import imaplib
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from support.slapd_server import make_ca, make_server_certificate
from wildix_ast.lab.allocator import free_port

DOVECOT = Path("/usr/sbin/dovecot")
INSTALL_HINT = "run .ci/install-system-packages (dovecot-imapd, dovecot-pop3d)"
USER = "fax@example.com"
PASSWORD = "Fax-box#secret1"


class DovecotServer:
    def __init__(self) -> None:
        if not DOVECOT.exists():
            pytest.fail(f"dovecot is missing: {INSTALL_HINT}", pytrace=False)
        self.folder = Path(tempfile.mkdtemp(prefix="wildix-dovecot-"))
        self.run_as = "dovecot" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
        account = pwd.getpwnam(self.run_as)
        self.uid, self.gid = account.pw_uid, account.pw_gid
        self.ca, ca_key = make_ca(self.folder, "mailca")
        self.cert, self.key = make_server_certificate(self.folder, (self.ca, ca_key))
        self.ports = {name: free_port() for name in ("imap", "imaps", "pop3", "pop3s")}
        self.process: subprocess.Popen[bytes] | None = None
        self._configure()

    def _configure(self) -> None:
        f = self.folder
        for sub in ("run", "state", "home"):
            (f / sub).mkdir(exist_ok=True)
        (f / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}:::::\n")
        p = self.ports
        (f / "dovecot.conf").write_text(f"""
protocols = imap pop3
listen = 127.0.0.1
base_dir = {f}/run
state_dir = {f}/state
log_path = {f}/dovecot.log
instance_name = wildix-test-{p['imap']}
default_internal_user = {self.run_as}
default_internal_group = {self.run_as}
default_login_user = {self.run_as}
ssl = yes
ssl_cert = <{self.cert}
ssl_key = <{self.key}
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:~/Maildir
pop3_uidl_format = %08Xu%08Xv
first_valid_uid = {self.uid}
first_valid_gid = {self.gid}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {f}/passwd
}}
userdb {{
  driver = static
  args = uid={self.uid} gid={self.gid} home={f}/home/%u
}}
service imap-login {{
  chroot =
  user = {self.run_as}
  inet_listener imap {{
    address = 127.0.0.1
    port = {p['imap']}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {p['imaps']}
    ssl = yes
  }}
}}
service pop3-login {{
  chroot =
  user = {self.run_as}
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {p['pop3']}
  }}
  inet_listener pop3s {{
    address = 127.0.0.1
    port = {p['pop3s']}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
service auth {{
  user = {self.run_as}
}}
service auth-worker {{
  user = {self.run_as}
}}
""")
        if os.geteuid() == 0:
            for path in [f, *f.rglob("*")]:
                os.chown(path, self.uid, self.gid)

    def start(self) -> None:
        argv = [str(DOVECOT), "-F", "-c", str(self.folder / "dovecot.conf")]
        if os.geteuid() == 0:
            argv = ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}",
                    "--clear-groups", *argv]
        self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                output = self.process.stdout.read().decode() if self.process.stdout else ""
                log = (self.folder / "dovecot.log")
                pytest.fail(f"dovecot exited: {output}\n"
                            f"{log.read_text() if log.exists() else ''}", pytrace=False)
            try:
                with socket.create_connection(("127.0.0.1", self.ports["imap"]), 0.5), \
                        socket.create_connection(("127.0.0.1", self.ports["pop3s"]), 0.5):
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        pytest.fail("dovecot did not listen within 20 s", pytrace=False)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def cut_connections(self) -> int:
        """SIGKILL this server's IMAP and POP3 session processes (the master stays): every
        client connection breaks mid-session, as when a server dies. How many were cut."""
        assert self.process is not None
        ours = {self.process.pid}
        cut = 0
        for _ in range(3):  # children of children (the master's services)
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                fields = stat.rsplit(")", 1)[1].split()
                if int(fields[1]) in ours:
                    ours.add(int(entry.name))
        for pid in ours - {self.process.pid}:
            try:
                name = Path(f"/proc/{pid}/comm").read_text().strip()
            except OSError:
                continue
            if name in ("imap", "pop3"):
                os.kill(pid, signal.SIGKILL)
                cut += 1
        return cut

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def log(self) -> str:
        path = self.folder / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _client(self) -> imaplib.IMAP4:
        context = ssl.create_default_context(cafile=str(self.ca))
        client = imaplib.IMAP4_SSL("127.0.0.1", self.ports["imaps"], ssl_context=context,
                                   timeout=10)
        client.login(USER, PASSWORD)
        return client

    def append(self, raw: bytes) -> None:
        """Put one mail in the INBOX (IMAP APPEND)."""
        client = self._client()
        try:
            kind, data = client.append("INBOX", "", None, raw)
            assert kind == "OK", data
        finally:
            client.logout()

    def inbox(self) -> list[tuple[str, str]]:
        """(UID, flags) of every mail in the INBOX, deleted ones included."""
        client = self._client()
        try:
            client.select("INBOX", readonly=True)
            _kind, data = client.uid("FETCH", "1:*", "(FLAGS)")
            found = []
            for item in data:
                if isinstance(item, bytes) and b"UID" in item:
                    text = item.decode()
                    uid = text.split("UID ")[1].split()[0].rstrip(")")
                    flags = text.split("FLAGS (")[1].split(")")[0]
                    found.append((uid, flags))
            return found
        finally:
            client.logout()

    def profile(self, **changes: Any) -> dict[str, Any]:
        """The settings-file data of a Mail2Fax profile for this server (IMAPS, CA file)."""
        data: dict[str, Any] = {
            "name": "invoices", "protocol": "imap", "server": "127.0.0.1",
            "port": self.ports["imaps"], "security": "ssl", "user": USER,
            "password": PASSWORD, "ca_file": str(self.ca)}
        data.update(changes)
        return data
