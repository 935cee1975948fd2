"""The one-way pipeline: settings → model (+ kept secrets) → rendered files → a target Asterisk.

The CLI and the tests both go through here, so what is tested is what a person runs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from wildix_ast.asterisk_paths import AsteriskPaths
from wildix_ast.secrets_vault import SecretVault, manager_secret, voicemail_pins, with_secrets
from wildix_ast.site import Site

if TYPE_CHECKING:
    from wildix_ast.ami import AmiClient
    from wildix_ast.apply import ApplyReport, Plan
    from wildix_ast.lab.instance import Lab

Progress = Callable[[str, str], None]


class Ports(Protocol):
    @property
    def sip(self) -> int: ...
    @property
    def ami(self) -> int: ...
    @property
    def rtp_start(self) -> int: ...
    @property
    def rtp_end(self) -> int: ...
    @property
    def tls(self) -> int: ...


@dataclass(frozen=True)
class Target:
    """Where a configuration goes: the lab, or the Asterisk of this host."""

    name: str
    etc_dir: Path
    paths: AsteriskPaths
    ports: Ports | None = None  # None: listen where the site says
    ami_host: str = "127.0.0.1"

    @classmethod
    def host(cls, etc_dir: Path = Path("/etc/asterisk")) -> Target:
        return cls(name="host", etc_dir=etc_dir, paths=AsteriskPaths())

    @classmethod
    def lab(cls, lab: Lab) -> Target:
        return cls(name=f"lab {lab.name}", etc_dir=lab.etc_dir, paths=lab.paths,
                   ports=lab.ports)

    def adapt(self, site: Site) -> Site:
        if self.ports is None:
            return site
        return site.with_ports(sip=self.ports.sip, rtp_start=self.ports.rtp_start,
                               rtp_end=self.ports.rtp_end, ami=self.ports.ami,
                               tls=self.ports.tls)


@dataclass(frozen=True)
class Compiled:
    """Everything a target needs: the site as it will run, its files, and the AMI login."""

    site: Site
    files: dict[str, str]
    ami_host: str
    ami_port: int
    ami_username: str
    ami_secret: str

    def ami(self, timeout: float = 5.0) -> AmiClient:
        from wildix_ast.ami import AmiClient

        return AmiClient(self.ami_host, self.ami_port, self.ami_username, self.ami_secret,
                         timeout=timeout)


def compile_site(site: Site, vault: SecretVault, target: Target,
                 templates: Path | None = None) -> Compiled:
    """The files `site` renders to on `target`; generated secrets are kept in `vault`."""
    from wildix_ast.render import render_site

    running = target.adapt(with_secrets(site, vault))
    manager = running.system.manager
    secret = manager_secret(vault, manager.username)
    files = render_site(running, manager_secret=secret, paths=target.paths,
                        templates=templates, voicemail_pins=voicemail_pins(running, vault))
    return Compiled(site=running, files=files, ami_host=target.ami_host, ami_port=manager.port,
                    ami_username=manager.username, ami_secret=secret)


def plan_for(compiled: Compiled, target: Target) -> Plan:
    from wildix_ast.apply import plan

    return plan(target.etc_dir, compiled.files)


async def commit_plan(compiled: Compiled, change: Plan, *, progress: Progress | None = None,
                      allow_restart: bool = False) -> ApplyReport:
    """Write, reload what changed, verify through AMI, roll back on failure."""
    from wildix_ast.apply import Expectation, commit

    expected = Expectation.from_files(compiled.files)
    async with compiled.ami() as ami:
        return await commit(change, ami, expected, progress=progress,
                            allow_restart=allow_restart)
