"""A self-signed TLS certificate for a lab instance's SIP TLS transport.

A real site names the certificate its administrator installed (`sip_rtp.tls_certificate`
and `tls_private_key`); the lab makes its own, once, in the instance's keys folder."""

from __future__ import annotations

import subprocess
from pathlib import PurePosixPath

from wildix_ast.errors import LabError
from wildix_ast.lab.instance import Lab
from wildix_ast.lab.rootfs import require_tool

CERTIFICATE = "sip-tls.crt"
PRIVATE_KEY = "sip-tls.key"


def lab_certificate(lab: Lab, common_name: str = "wildix-ast-lab") -> tuple[PurePosixPath,
                                                                             PurePosixPath]:
    """(certificate, private key) as the lab's Asterisk sees them; made if missing."""
    openssl = require_tool("openssl", "openssl")
    lab.prepare()
    folder = lab.host_path(lab.paths.key)
    cert, key = folder / CERTIFICATE, folder / PRIVATE_KEY
    if not (cert.is_file() and key.is_file()):
        result = subprocess.run(
            [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "825",
             "-subj", f"/CN={common_name}", "-addext", "subjectAltName=IP:127.0.0.1",
             "-keyout", str(key), "-out", str(cert)],
            capture_output=True, text=True, timeout=60, check=False)
        if result.returncode != 0:
            raise LabError(f"openssl could not make the lab's TLS certificate: "
                           f"{result.stderr.strip() or result.stdout.strip()}")
        key.chmod(0o600)
    return lab.paths.key / CERTIFICATE, lab.paths.key / PRIVATE_KEY
