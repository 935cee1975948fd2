"""Devices and users green or gray (WMS Devices and Users status), from the PJSIP contacts
Asterisk lists (AMI `PJSIPShowContacts`): green = at least one registered contact that is
not unreachable, gray = none. Also what a registration tells of a device: its address and,
from its User-Agent header, its model and firmware (`device sync` records them).

Which contacts are a device's: those of its hot-desk endpoint `hd-<mac>` while it is
assigned to nobody; those of its user's endpoint while assigned (when a user has several
devices, only the contacts from the device's recorded address). The parsing is pure; one
function asks AMI, with the handset login's account (the only one allowed
`PJSIPShowContacts`, a `system` class action)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from wildix_ast.calls.handset_login import address_ip, hot_desk_endpoint
from wildix_ast.errors import ServiceError
from wildix_ast.model.devices import Device
from wildix_ast.services.ami.overview import UNREACHABLE_CONTACTS

if TYPE_CHECKING:
    from wildix_ast.store import Store


@dataclass(frozen=True)
class DevicesAccount:
    """The AMI account of the handset login and the devices' status
    (`asterisk.manager.notify_account`)."""

    host: str
    port: int
    username: str
    secret: str


def devices_account(store: Store, port: int | None = None,
                    host: str = "127.0.0.1") -> DevicesAccount:
    """The account of the stored site (its secret derived from wildix-ast's own, kept in
    the vault); `port`: the AMI port when the target's differs from the site's (a lab)."""
    from wildix_ast.asterisk.manager import notify_account, notify_secret

    manager = store.export_site().system.manager
    secret = store.get_secret(f"manager:{manager.username}")
    if secret is None:
        raise ServiceError("no AMI secret in the store: apply the site first")
    return DevicesAccount(host, port or manager.port, notify_account(manager.username),
                          notify_secret(secret))


@dataclass(frozen=True)
class Contact:
    endpoint: str
    uri: str
    status: str
    user_agent: str
    ip: str

    @property
    def reachable(self) -> bool:
        return self.status not in UNREACHABLE_CONTACTS


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


async def list_contacts(account: DevicesAccount, timeout: float = 5.0) -> list[Contact]:
    """Every PJSIP contact Asterisk knows now."""
    from wildix_ast.ami import AmiClient

    client = AmiClient(account.host, account.port, account.username, account.secret,
                       timeout=timeout, heartbeat=None)
    await client.connect()
    try:
        events = await client.action_list("PJSIPShowContacts", "ContactListComplete",
                                          empty_messages=("No Contacts found",))
    finally:
        await client.close()
    return [contact_of(e) for e in events if e.get("Event") == "ContactList"]
