"""What a deployed host was deployed with, as the testinfra suite reads it from the host: its
settings file, read through wildix-ast's own model (so defaults are the model's)."""

from __future__ import annotations

from dataclasses import dataclass

from wildix_ast.model.site import Site


@dataclass(frozen=True)
class Deployed:
    """The site the host runs, and where the suite finds things on the host."""

    site: Site
    settings_path: str
    home: str
    db: str
    sip_host: str
    local_ip: str
    services: list[str]
    mail_spool: str  # where the FastAGI service queues missed-call mails

    @property
    def agi(self) -> str:
        """host:port of the FastAGI service: where the site's dialplan asks it."""
        fastagi = self.site.system.fastagi
        return f"{fastagi.host}:{fastagi.port}"

    @property
    def store_folder(self) -> str:
        return self.db.rpartition("/")[0]

    @property
    def bind_address(self) -> str:
        return str(self.site.system.sip_rtp.bind_address)

    @property
    def sip_port(self) -> int:
        return self.site.system.sip_rtp.sip_port

    @property
    def ami_port(self) -> int:
        return self.site.system.manager.port

    @property
    def language(self) -> str:
        return self.site.system.language_region.language

    @property
    def wildix_ast(self) -> str:
        return f"{self.home}/venv/bin/wildix-ast"
