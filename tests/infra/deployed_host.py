"""What a deployed host was deployed with, as the testinfra suite reads it from the host."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Deployed:
    """What the host was deployed with, read from the host."""

    settings: dict[str, Any]
    settings_path: str
    home: str
    db: str
    sip_host: str
    local_ip: str
    services: list[str]

    @property
    def sip_rtp(self) -> dict[str, Any]:
        return dict(self.settings.get("system", {}).get("sip_rtp", {}))

    @property
    def bind_address(self) -> str:
        return str(self.sip_rtp.get("bind_address", "0.0.0.0"))

    @property
    def sip_port(self) -> int:
        return int(self.sip_rtp.get("sip_port", 5060))

    @property
    def ami_port(self) -> int:
        return int(self.settings.get("system", {}).get("manager", {}).get("port", 5038))

    @property
    def wildix_ast(self) -> str:
        return f"{self.home}/venv/bin/wildix-ast"
