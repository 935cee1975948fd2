"""Devices and users green or gray (WMS Devices and Users status), from the PJSIP contacts
Asterisk lists (`pjsip show contacts`): green = at least one registered contact that is
not unreachable, gray = none. Also what a registration tells of a device: its address and,
from its User-Agent header, its model and firmware (`device sync` records them).

Which contacts are a device's: those of its hot-desk endpoint `hd-<mac>` while it is
assigned to nobody; those of its user's endpoint while assigned (when a user has several
devices, only the contacts from the device's recorded address). The parsing is pure; the
questions go through Asterisk's root-only console (`pjsip show contacts`, and the
PJSIP_AOR/PJSIP_CONTACT functions for one contact's details): no AMI account of the project
may list contacts (`PJSIPShowContacts` is a `system` class action, which would also allow
GetConfig and module loading)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from wildix_ast.calls.handset_login import address_ip, hot_desk_endpoint
from wildix_ast.model.devices import Device
from wildix_ast.services.ami.overview import UNREACHABLE_CONTACTS

if TYPE_CHECKING:
    from wildix_ast.asterisk_cli import CliQueries

#: `pjsip show contacts` statuses of a contact that cannot be reached
UNREACHABLE = UNREACHABLE_CONTACTS | {"Unavail"}


@dataclass(frozen=True)
class Contact:
    endpoint: str
    uri: str
    status: str
    user_agent: str
    ip: str

    @property
    def reachable(self) -> bool:
        return self.status not in UNREACHABLE


def contact_of(event: Mapping[str, str]) -> Contact:
    """One `ContactList` event."""
    uri = event.get("Uri", "")
    via = event.get("ViaAddr", "")
    host = re.search(r"@([^;>]+)", uri)
    ip = via or (address_ip(host.group(1)) if host else "")
    return Contact(endpoint=event.get("Endpoint", ""), uri=uri,
                   status=event.get("Status", ""), user_agent=event.get("UserAgent", ""),
                   ip=ip)


# vendor user agents: "Yealink SIP-T54W 96.86.0.100", "snomD785/10.1.54.13",
# "Grandstream GXP2170 1.0.11.3", "PolycomVVX-VVX_450-UA/6.4.0.1234"
_AGENTS = (
    re.compile(r"Yealink\s+SIP[- ]?(?P<model>[\w-]+)\s+(?P<firmware>[\d.]+)", re.I),
    re.compile(r"snom(?P<model>[\w-]+)/(?P<firmware>[\d.]+)", re.I),
    re.compile(r"Grandstream\s+(?P<model>[\w-]+)\s+(?P<firmware>[\d.]+)", re.I),
    re.compile(r"Polycom\w*-(?P<model>[\w-]+?)-UA/(?P<firmware>[\d.]+)", re.I),
)
_TEXT = re.compile(r"[\w.+-]{1,40}")


def model_and_firmware(user_agent: str) -> tuple[str | None, str | None]:
    """The model and firmware a phone's User-Agent header names (None: not recognised).
    Only plain tokens are kept: a header is whatever a phone (or an attacker) sends."""
    for pattern in _AGENTS:
        found = pattern.search(user_agent)
        if found and _TEXT.fullmatch(found["model"]) and _TEXT.fullmatch(found["firmware"]):
            return found["model"], found["firmware"]
    return None, None


def device_contacts(device: Device, devices: Sequence[Device],
                    contacts: Sequence[Contact]) -> list[Contact]:
    """The contacts that are `device`'s (see the module's doc)."""
    if device.extension is None:
        return [c for c in contacts if c.endpoint == hot_desk_endpoint(device.mac)]
    mine = [c for c in contacts if c.endpoint == device.extension]
    sharing = [d for d in devices if d.extension == device.extension]
    if len(sharing) > 1:
        mine = [c for c in mine if device.ip and c.ip == device.ip]
    return mine


@dataclass(frozen=True)
class DeviceStatus:
    device: Device
    online: bool
    contact: Contact | None

    @property
    def colour(self) -> str:
        return "green" if self.online else "gray"


def device_statuses(devices: Sequence[Device],
                    contacts: Sequence[Contact]) -> list[DeviceStatus]:
    found = []
    for device in devices:
        mine = [c for c in device_contacts(device, devices, contacts) if c.reachable]
        found.append(DeviceStatus(device, bool(mine), mine[0] if mine else None))
    return found


def registered_endpoints(contacts: Sequence[Contact]) -> frozenset[str]:
    """Endpoints with at least one reachable contact (a user is green when theirs is)."""
    return frozenset(c.endpoint for c in contacts if c.reachable)


_LISTED = re.compile(r"^\s*Contact:\s+(?P<aor>[^/\s]+)/(?P<uri>\S+)\s+[0-9a-f]+\s+"
                     r"(?P<status>\w+)", re.M)


def listed_contacts(text: str) -> list[Contact]:
    """The contacts of `pjsip show contacts` (their URIs may be cut short there)."""
    return [Contact(endpoint=m["aor"], uri=m["uri"], status=m["status"], user_agent="",
                    ip="") for m in _LISTED.finditer(text)]


async def list_contacts(console: CliQueries) -> list[Contact]:
    """Every PJSIP contact Asterisk knows now (one console command)."""
    return listed_contacts(await console.command("pjsip show contacts"))


async def _evaluated(console: CliQueries, function: str) -> str:
    text = await console.command(f"dialplan eval function {function}")
    found = re.search(r"^Result: (.*)$", text, re.M)
    return found.group(1).strip() if found else ""


async def contact_details(console: CliQueries, aor: str) -> Contact | None:
    """The first contact of `aor` with its address and User-Agent (the PJSIP_AOR and
    PJSIP_CONTACT functions, through the console); None when it has none."""
    if not re.fullmatch(r"[\w-]{1,40}", aor):
        return None
    ids = (await _evaluated(console, f"PJSIP_AOR({aor},contact)")).split(",")
    first = ids[0].strip()
    if not re.fullmatch(r"[\w-]+;@[0-9a-f]+", first):
        return None
    fields = {}
    for name in ("uri", "status", "user_agent", "via_addr"):
        fields[name] = await _evaluated(console, f"PJSIP_CONTACT({first},{name})")
    return contact_of({"Endpoint": aor, "Uri": fields["uri"], "Status": fields["status"],
                       "UserAgent": fields["user_agent"], "ViaAddr": fields["via_addr"]})
