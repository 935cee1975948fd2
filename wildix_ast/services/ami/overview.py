"""`wildix-ast status`: the PBX at a glance, as pure functions over what the services report.

Inputs: the stored site's users, the AMI service's status (its `status.json`, or why it is
not there) and the FastAGI service's health (or why it does not answer). Output: each user
green (its phone can be called: registered, device state known and not unavailable) or
gray, the calls in progress, and each service's health. No I/O here: the CLI gathers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from wildix_ast.model.users import User

#: Device states of a phone that cannot be called (Asterisk's ast_devstate names).
OFFLINE_STATES = frozenset({"UNAVAILABLE", "INVALID", "UNKNOWN", ""})
#: A registered contact's statuses that still mean "cannot be reached".
UNREACHABLE_CONTACTS = frozenset({"Unreachable", "Removed", "NonQualified-Unreachable"})


@dataclass(frozen=True)
class UserStatus:
    extension: str
    name: str
    device_state: str        # "" when the AMI service does not know the device
    registered: bool | None  # None: no contact information (not listed to this account)
    online: bool             # green

    @property
    def colour(self) -> str:
        return "green" if self.online else "gray"


@dataclass(frozen=True)
class CallStatus:
    call: str                # the Linkedid shared by the call's channels
    channels: tuple[str, ...]
    caller: str
    callee: str
    state: str


@dataclass(frozen=True)
class ServiceHealth:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class Overview:
    users: tuple[UserStatus, ...]
    calls: tuple[CallStatus, ...]
    services: tuple[ServiceHealth, ...]
    bans: tuple[Mapping[str, Any], ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.services)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "users": [{**asdict(u), "colour": u.colour} for u in self.users],
            "calls": [asdict(c) for c in self.calls],
            "services": [asdict(s) for s in self.services],
            "bans": [dict(b) for b in self.bans],
        }


def _registered(extension: str, contacts: Mapping[str, str]) -> bool | None:
    if not contacts:
        return None
    mine = [status for key, status in contacts.items() if key.split("/", 1)[0] == extension]
    return any(status not in UNREACHABLE_CONTACTS for status in mine)


def user_statuses(users: Sequence[User], pbx: Mapping[str, Any] | None) -> list[UserStatus]:
    """Every user with a phone; all gray when the PBX state is unknown (`pbx` None)."""
    devices: Mapping[str, str] = (pbx or {}).get("devices", {})
    contacts: Mapping[str, str] = (pbx or {}).get("contacts", {})
    found = []
    for user in users:
        if not user.type.has_phone:
            continue
        state = devices.get(f"PJSIP/{user.extension}", "")
        registered = _registered(user.extension, contacts) if pbx is not None else None
        online = pbx is not None and state not in OFFLINE_STATES and registered is not False
        found.append(UserStatus(user.extension, user.name, state, registered, online))
    return found


def call_statuses(pbx: Mapping[str, Any] | None) -> list[CallStatus]:
    """Channels in progress grouped into calls (by Linkedid), oldest first."""
    grouped: dict[str, list[Mapping[str, str]]] = {}
    for channel in (pbx or {}).get("channels", []):
        grouped.setdefault(channel.get("linkedid") or channel.get("uniqueid", ""),
                           []).append(channel)
    calls = []
    for call, channels in sorted(grouped.items()):
        first = channels[0]
        calls.append(CallStatus(
            call=call, channels=tuple(c.get("name", "") for c in channels),
            caller=first.get("caller", ""), callee=first.get("exten", ""),
            state="Up" if any(c.get("state") == "Up" for c in channels)
            else first.get("state", "")))
    return calls


def build(users: Sequence[User], runtime: Mapping[str, Any] | str,
          agi: Mapping[str, str] | str) -> Overview:
    """`runtime`: the AMI service's status, or the reason there is none; `agi`: the FastAGI
    service's health variables, or the reason it did not answer."""
    services = []
    pbx: Mapping[str, Any] | None = None
    bans: tuple[Mapping[str, Any], ...] = ()
    if isinstance(runtime, str):
        services.append(ServiceHealth("AMI service", False, runtime))
        services.append(ServiceHealth("Asterisk", False, "unknown (no AMI service)"))
    else:
        ami = runtime["ami"]
        services.append(ServiceHealth("AMI service", True,
                                      f"pid {runtime.get('pid')}, {runtime.get('events', 0)} "
                                      "events"))
        if ami["connected"]:
            pbx = runtime["pbx"]
            services.append(ServiceHealth(
                "Asterisk", True, f"{pbx.get('version') or '?'} at {ami['address']}"))
        else:
            services.append(ServiceHealth("Asterisk", False, f"not connected at "
                                          f"{ami['address']}: {ami['last_error']}"))
        bans = tuple(runtime.get("bans", ()))
        enforcement = runtime.get("enforcement", {})
        if enforcement.get("kind") == "iptables":
            error = enforcement.get("error", "")
            services.append(ServiceHealth(
                "SIP bans", not error, error or f"{len(bans)} banned, enforced by iptables "
                f"chain {enforcement.get('chain')}"))
    if isinstance(agi, str):
        services.append(ServiceHealth("FastAGI service", False, agi))
    else:
        services.append(ServiceHealth(
            "FastAGI service", True,
            f"{agi.get('{v.AGI_ANSWERED}', '?')} answered, "
            f"{agi.get('{v.AGI_FAILED}', '?')} failed, p99 "
            f"{agi.get('{v.AGI_P99_MS}') or '-'} ms"))
    return Overview(users=tuple(user_statuses(users, pbx)), calls=tuple(call_statuses(pbx)),
                    services=tuple(services), bans=bans)
