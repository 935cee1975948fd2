"""The top-level Vagrantfile: `vagrant validate` accepts it (with the libvirt provider's own
checks), and it refuses a settings file whose RTP range is too wide to forward port by port.
Booting the VM is not part of CI (see docs/deploy.md, "Test with Vagrant")."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.deploy

REPO = Path(__file__).resolve().parents[2]


def vagrant(*args: str, site: Path | None = None) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("vagrant")
    assert binary, "vagrant is not installed (Debian package vagrant; .ci/install-system-packages)"
    env = {**os.environ, "VAGRANT_CHECKPOINT_DISABLE": "1"}
    if site is not None:
        env["WILDIX_AST_SITE"] = str(site)
    return subprocess.run([binary, *args], cwd=REPO, env=env, capture_output=True, text=True,
                          check=False, stdin=subprocess.DEVNULL, timeout=120)


def test_vagrantfile_validates() -> None:
    result = vagrant("validate")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "validated successfully" in result.stdout


def test_wide_rtp_range_is_refused_with_a_message(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text("system:\n  sip_rtp:\n    rtp_start: 10000\n    rtp_end: 20000\n",
                    encoding="utf-8")
    result = vagrant("validate", site=site)
    assert result.returncode != 0
    assert "narrow system.sip_rtp.rtp_start/rtp_end" in result.stdout + result.stderr
