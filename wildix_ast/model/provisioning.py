"""WMS Devices > provisioning: how phones find the PBX and the network settings pushed to
them (VLAN voice/data, CoS, NTP, DNS), and how the provisioning server itself is reached
(docs/provisioning.md).

Devices themselves are inventory (`model.devices`, `wildix-ast device ...`); their
credentials are store secrets, never settings."""

from __future__ import annotations

from enum import StrEnum
from ipaddress import IPv4Address
from typing import Annotated

from pydantic import BaseModel, Field

from wildix_ast.model.common import STRICT
from wildix_ast.model.fields import Host, Port

VlanId = Annotated[int, Field(ge=1, le=4094)]
"""An 802.1Q VLAN (0 and 4095 are reserved)."""
Cos = Annotated[int, Field(ge=0, le=7)]
"""An 802.1p priority (class of service)."""


class SipTransport(StrEnum):
    """How the provisioned phones reach the PBX."""

    UDP = "udp"
    TCP = "tcp"
    TLS = "tls"


class ProvisioningSettings(BaseModel):
    """The provisioning server and what it pushes to every phone (the seed's device
    settings). Unset VLANs are left untagged; unset NTP and DNS are left to DHCP."""

    model_config = STRICT

    address: Host | None = None
    """How phones reach this PBX (its name or address on the LAN): the host of every
    provisioning link, and the SIP server unless `sip_server` says otherwise. Unset: the
    server is not configured (`provisioning serve` refuses to start)."""
    port: Port = 8443
    """The provisioning server's port (HTTPS; above 1024: the service is unprivileged)."""
    allow_http: bool = False
    """Serve plain HTTP instead of HTTPS (SIP passwords then cross the LAN readable): only
    for phones that cannot do HTTPS."""
    sip_server: Host | None = None
    sip_transport: SipTransport = SipTransport.UDP
    voice_vlan: VlanId | None = None
    """The phones' own VLAN (their internet/LAN port)."""
    voice_cos: Cos = 5
    data_vlan: VlanId | None = None
    """The VLAN of the computer behind the phone (its PC port)."""
    data_cos: Cos = 0
    ntp_server: Host | None = None
    dns_primary: IPv4Address | None = None
    dns_secondary: IPv4Address | None = None
    enrol_minutes: int = Field(default=30, ge=1, le=1440)
    """The default length of an enrolment window (`wildix-ast device enrol`)."""
    ban_after: int = Field(default=10, ge=1, le=1000)
    """Unknown or unauthorised configuration requests from one address (within an hour)
    that ban it through the SIP ban service."""

    def base_url(self) -> str | None:
        """`https://<address>:<port>` (http with `allow_http`); None without an address."""
        if self.address is None:
            return None
        return f"{'http' if self.allow_http else 'https'}://{self.address}:{self.port}"

    def link(self, credential: str) -> str | None:
        """A device's own provisioning link, as the admin types it into the phone."""
        base = self.base_url()
        return None if base is None else f"{base}/p/{credential}/"
