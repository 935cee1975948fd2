"""WMS handset login (feature code 99 by default): which phone is calling, and what dialling
the code does to it, as pure functions; the FastAGI route `handset-login`
(`services/agi/handset_routes.py`) reads the store, asks these, writes the assignment.

- **Which device calls.** The channel's PJSIP endpoint (authenticated by SIP digest; a
  caller ID proves nothing). A device nobody is assigned to registers with its own hot-desk
  endpoint `hd-<mac>`: the MAC is in the endpoint's name. A device assigned to a user
  registers as that user: the devices assigned to that extension, and when there are
  several, the one whose recorded address (`device sync`) is the channel's source address.
  Anything else is an unknown device: nothing changes.
- **Logged in → logout.** Dialling the code from an assigned device unassigns it (no PIN:
  the person holding the phone is the one logged in).
- **Unassigned → login.** The caller types an extension and that user's PIN. The PIN, not
  the WEB password: the WEB password policy needs upper- and lower-case letters and a
  special character, which a keypad cannot send as DTMF (docs/devices.md).
- **Refusals.** A wrong extension and a wrong PIN get the same answer (nobody learns which
  extensions exist); the route counts each refusal against the device and against the
  user, and either one locked refuses without checking anything.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from wildix_ast.calls import variables as v
from wildix_ast.model.devices import Device

#: the endpoint of a device that is assigned to nobody: `hd-` and its MAC (12 hex digits)
HOT_DESK_PREFIX = "hd-"
ROUTE = "handset-login"
_MAC = re.compile(r"[0-9a-f]{12}")
_DIGITS = re.compile(r"[0-9]{1,16}")


def hot_desk_endpoint(mac: str) -> str:
    return f"{HOT_DESK_PREFIX}{mac}"


def address_ip(address: str) -> str:
    """The IP of `CHANNEL(pjsip,remote_addr)`: '192.0.2.7:5060' or '[2001:db8::1]:5060'."""
    if address.startswith("["):
        return address[1:].split("]", 1)[0]
    return address.rsplit(":", 1)[0] if address.count(":") == 1 else address


def identify(endpoint: str, address: str, devices: Sequence[Device]) -> Device | None:
    """The device that placed the call from `endpoint` (the channel's PJSIP endpoint) and
    `address` (its source), among `devices`; None when it cannot be told."""
    if endpoint.startswith(HOT_DESK_PREFIX):
        mac = endpoint.removeprefix(HOT_DESK_PREFIX)
        if not _MAC.fullmatch(mac):
            return None
        return next((d for d in devices if d.mac == mac), None)
    if not endpoint.isdigit():
        return None
    assigned = [d for d in devices if d.extension == endpoint]
    if len(assigned) == 1:
        return assigned[0]
    ip = address_ip(address)
    at_address = [d for d in assigned if ip and d.ip == ip]
    return at_address[0] if len(at_address) == 1 else None


class Outcome(StrEnum):
    ASK = "ask"                # an unassigned device: ask for the extension and PIN
    LOGGED_IN = "logged_in"
    LOGGED_OUT = "logged_out"
    REFUSED = "refused"        # wrong extension or PIN (counted)
    LOCKED = "locked"          # too many refusals lately, for this device or this user
    UNKNOWN = "unknown"        # the calling device cannot be told: nothing changes


_PROMPTS = {
    Outcome.ASK: "",
    Outcome.LOGGED_IN: "agent-loginok",
    Outcome.LOGGED_OUT: "agent-loggedoff",
    Outcome.REFUSED: "agent-incorrect",
    Outcome.LOCKED: "beeperr&vm-goodbye",
    Outcome.UNKNOWN: "beeperr&invalid",
}


@dataclass(frozen=True)
class Attempt:
    """What the caller typed: an extension and a PIN (digits; anything else is refused)."""

    extension: str
    pin: str


@dataclass(frozen=True)
class HandsetDecision:
    outcome: Outcome
    mac: str | None = None
    #: the user logged in (LOGGED_IN), logged out (LOGGED_OUT) or tried (REFUSED)
    extension: str | None = None

    @property
    def counts_as_failure(self) -> bool:
        return self.outcome is Outcome.REFUSED

    def variables(self) -> dict[str, str]:
        return {v.HANDSET_RESULT: self.outcome.value,
                v.HANDSET_PLAYBACK: _PROMPTS[self.outcome]}


def decide(device: Device | None, attempt: Attempt | None, *, stored_pin: str | None,
           device_locked: bool, user_locked: bool) -> HandsetDecision:
    """What dialling the login code does. `attempt` None: the first look (the code just
    dialled); `stored_pin`: the PIN of the user `attempt` names (None: no such user with a
    phone); the locks: too many refusals lately (`LoginGuard`)."""
    if device is None:
        return HandsetDecision(Outcome.UNKNOWN)
    if attempt is None:
        if device.extension is not None:
            return HandsetDecision(Outcome.LOGGED_OUT, device.mac, device.extension)
        return HandsetDecision(Outcome.LOCKED if device_locked else Outcome.ASK, device.mac)
    if device_locked or user_locked:
        return HandsetDecision(Outcome.LOCKED, device.mac)
    wanted = attempt.extension if _DIGITS.fullmatch(attempt.extension) else None
    matches = (stored_pin is not None and wanted is not None
               and _DIGITS.fullmatch(attempt.pin) is not None
               and hmac.compare_digest(attempt.pin.encode(), stored_pin.encode()))
    if not matches:
        return HandsetDecision(Outcome.REFUSED, device.mac, wanted)
    return HandsetDecision(Outcome.LOGGED_IN, device.mac, wanted)
