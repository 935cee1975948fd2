"""A throwaway OpenLDAP server for tests, from Debian's `slapd` package (2.5).

A test CA signs the server's certificate for 127.0.0.1 and "localhost"; the server listens on
loopback for LDAP (StartTLS) and LDAPS on free ports, with an mdb database under a temporary
folder. Large trees are loaded with `slapadd` before the server starts (10,000 entries in a
second or two instead of a minute of LDAP adds). Missing binaries fail the tests (no skip)."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import pytest

from wildix_ast.lab.allocator import free_port

SLAPD = Path("/usr/sbin/slapd")
SLAPADD = Path("/usr/sbin/slapadd")
MODULES = Path("/usr/lib/ldap")
SCHEMA = Path("/etc/ldap/schema")
INSTALL_HINT = "run .ci/install-system-packages (it installs Debian's slapd package)"
BASE_DN = "dc=example,dc=org"
ADMIN_DN = f"cn=admin,{BASE_DN}"
READER_DN = f"cn=pbx,ou=services,{BASE_DN}"
READER_PASSWORD = "Reader#secret1"


def _openssl(*argv: str, cwd: Path) -> None:
    subprocess.run(["openssl", *argv], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(folder: Path, name: str = "ca") -> tuple[Path, Path]:
    """A self-signed CA: (certificate, key)."""
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-days", "2", "-subj", f"/CN=wildix-ast test {name}",
             "-keyout", f"{name}.key", "-out", f"{name}.pem", cwd=folder)
    return folder / f"{name}.pem", folder / f"{name}.key"


def make_server_certificate(folder: Path, ca: tuple[Path, Path]) -> tuple[Path, Path]:
    """A server certificate for 127.0.0.1 and localhost signed by `ca`: (certificate, key)."""
    (folder / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out", "server.csr",
             cwd=folder)
    _openssl("x509", "-req", "-in", "server.csr", "-CA", str(ca[0]), "-CAkey", str(ca[1]),
             "-CAcreateserial", "-days", "2", "-extfile", "san.cnf", "-out", "server.pem",
             cwd=folder)
    return folder / "server.pem", folder / "server.key"


def person_ldif(uid: str, *, cn: str, number: str | None = None, mail: str | None = None,
                mobile: str | None = None, ou: str = "people",
                extra: Iterable[tuple[str, str]] = ()) -> str:
    lines = [f"dn: uid={uid},ou={ou},{BASE_DN}", "objectClass: inetOrgPerson", f"uid: {uid}",
             f"cn: {cn}", f"sn: {cn.split()[-1]}"]
    if number:
        lines.append(f"telephoneNumber: {number}")
    if mail:
        lines.append(f"mail: {mail}")
    if mobile:
        lines.append(f"mobile: {mobile}")
    lines += [f"{k}: {v}" for k, v in extra]
    return "\n".join(lines) + "\n\n"


def group_ldif(name: str, members: Iterable[str]) -> str:
    lines = [f"dn: cn={name},ou=groups,{BASE_DN}", "objectClass: groupOfNames", f"cn: {name}"]
    listed = list(members)
    lines += [f"member: {m}" for m in listed] or [f"member: {ADMIN_DN}"]
    return "\n".join(lines) + "\n\n"


def base_ldif() -> str:
    return (f"dn: {BASE_DN}\nobjectClass: dcObject\nobjectClass: organization\no: Example\n"
            "dc: example\n\n"
            + "".join(f"dn: ou={ou},{BASE_DN}\nobjectClass: organizationalUnit\nou: {ou}\n\n"
                      for ou in ("people", "groups", "services"))
            + f"dn: {READER_DN}\nobjectClass: organizationalRole\nobjectClass: "
              f"simpleSecurityObject\ncn: pbx\nuserPassword: {READER_PASSWORD}\n\n")


class SlapdServer:
    """One slapd in a temporary folder, loaded with `ldif` before it starts."""

    def __init__(self) -> None:
        if not SLAPD.exists() or not SLAPADD.exists():
            pytest.fail(f"slapd is not installed ({SLAPD} is missing): {INSTALL_HINT}",
                        pytrace=False)
        self.root = Path(tempfile.mkdtemp(prefix="wildix-ast-slapd-"))
        self.data = self.root / "data"
        self.data.mkdir()
        self.ca = make_ca(self.root)
        self.certificate = make_server_certificate(self.root, self.ca)
        self.admin_password = "Admin#secret1"
        self.ldap_port = 0
        self.ldaps_port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.config = self.root / "slapd.conf"
        self.config.write_text(self._config())

    @property
    def ca_file(self) -> Path:
        return self.ca[0]

    def _config(self) -> str:
        schemas = "".join(f"include {SCHEMA}/{name}.schema\n"
                          for name in ("core", "cosine", "inetorgperson", "nis"))
        return (f"{schemas}"
                f"pidfile {self.root}/slapd.pid\n"
                f"modulepath {MODULES}\nmoduleload back_mdb\n"
                f"TLSCACertificateFile {self.ca[0]}\n"
                f"TLSCertificateFile {self.certificate[0]}\n"
                f"TLSCertificateKeyFile {self.certificate[1]}\n"
                "sizelimit unlimited\n"
                "database mdb\n"
                f"suffix \"{BASE_DN}\"\nrootdn \"{ADMIN_DN}\"\nrootpw {self.admin_password}\n"
                f"directory {self.data}\nmaxsize 1073741824\n"
                "index objectClass eq\nindex uid,entryUUID eq\n"
                # the PBX reads; people authenticate against their own entry only
                f"access to attrs=userPassword by self write by anonymous auth by * none\n"
                f"access to * by dn.exact=\"{READER_DN}\" read by * none\n")

    def load(self, ldif: str) -> None:
        """Add entries offline (before `start`)."""
        assert self.process is None, "slapadd runs before the server starts"
        source = self.root / "load.ldif"
        source.write_text(ldif)
        result = subprocess.run([str(SLAPADD), "-q", "-f", str(self.config), "-l", str(source)],
                                capture_output=True, text=True, timeout=300, check=False)
        if result.returncode:
            raise RuntimeError(f"slapadd failed: {result.stderr[-2000:]}")

    def start(self) -> None:
        for attempt in range(3):
            self.ldap_port, self.ldaps_port = free_port(), free_port()
            urls = f"ldap://127.0.0.1:{self.ldap_port}/ ldaps://127.0.0.1:{self.ldaps_port}/"
            self.process = subprocess.Popen(
                [str(SLAPD), "-d", "0", "-f", str(self.config), "-h", urls],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    break
                try:
                    socket.create_connection(("127.0.0.1", self.ldaps_port), 0.2).close()
                    return
                except OSError:
                    time.sleep(0.05)
            error = b""
            if self.process.poll() is None:
                self.process.kill()
            else:
                error = self.process.stderr.read() if self.process.stderr else b""
            self.process.wait()
            self.process = None
            if attempt == 2:
                raise RuntimeError(f"slapd did not start: {error.decode(errors='replace')}")

    def stop(self) -> None:
        try:
            if self.process is not None and self.process.poll() is None:
                self.process.send_signal(signal.SIGINT)
                try:
                    self.process.wait(10)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
        finally:
            self.process = None
            shutil.rmtree(self.root, ignore_errors=True)

    def admin(self):  # type: ignore[no-untyped-def]
        """An ldap3 connection bound as the directory's administrator (to change entries)."""
        import ssl

        import ldap3

        tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(self.ca_file))
        server = ldap3.Server("127.0.0.1", port=self.ldaps_port, use_ssl=True, tls=tls)
        return ldap3.Connection(server, ADMIN_DN, self.admin_password, auto_bind=True)
