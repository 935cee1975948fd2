"""WMS services from the handset: the feature codes that change a user's own preferences.

WMS (Dialplan -> Feature codes) gives each service one code and options after a star; the
defaults are WMS's own:

| dialled | service |
|---|---|
| `60` | says the do-not-disturb state |
| `60*1` / `60*0` | do not disturb on / off (WMS "Status": 1 DND, 0 available) |
| `63` | says the forward-all state and its destination |
| `63*1` / `63*0` | forward all calls on (to the destination kept) / off |
| `63*2*NUMBER` | forward all calls to NUMBER, on |
| `63*2*` + the voicemail code (`63*2**97`) | forward all calls to voicemail, on |

`61` (forward when busy) and `62` (forward when unavailable) take the same options. The
dialplan only collects the digits (patterns of digits, '*' and '+': nothing else can reach
the FastAGI route); this module parses them into a `ServiceRequest` and decides what the
caller hears. Changing the store is the AGI route's job (`wildix_ast.services.agi.routes`), so a
change is visible on the next call without any Asterisk reload.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel

from wildix_ast.errors import WildixError
from wildix_ast.model.common import STRICT
from wildix_ast.model.fields import Width, pattern
from wildix_ast.model.preferences import VOICEMAIL, Preferences

FeatureCode = Annotated[str, Width(8), pattern(
    r"\*[0-9]{1,4}|[0-9]{2,8}", "feature code ('*' and up to 4 digits, or 2 to 8 digits)")]


class Service(StrEnum):
    DND = "dnd"
    FORWARD_ALL = "forward_all"
    FORWARD_BUSY = "forward_busy"
    FORWARD_UNAVAILABLE = "forward_unavailable"

    @property
    def is_forward(self) -> bool:
        return self is not Service.DND


class Action(StrEnum):
    STATUS = "status"
    OFF = "off"
    ON = "on"
    SET = "set"  # a forward to a new destination, switched on


class FeatureCodes(BaseModel):
    """The `dialplan.feature_codes` section: the services' codes (WMS defaults)."""

    model_config = STRICT

    status: FeatureCode = "60"
    forward_busy: FeatureCode = "61"
    forward_unavailable: FeatureCode = "62"
    forward_all: FeatureCode = "63"
    hotline: FeatureCode = "*50"
    """What a hotline phone calls the moment it is lifted (WMS has no code of its own: its
    phones are provisioned with the number); the PBX then waits the user's delay."""
    login: FeatureCode = "99"
    """WMS "Login": handset login and logout (wildix_ast.calls.handset_login)."""

    def by_service(self) -> dict[Service, str]:
        return {Service.DND: self.status, Service.FORWARD_BUSY: self.forward_busy,
                Service.FORWARD_UNAVAILABLE: self.forward_unavailable,
                Service.FORWARD_ALL: self.forward_all}


@dataclass(frozen=True)
class ServiceRequest:
    service: Service
    action: Action
    #: for SET: a number (digits, optionally after '+') or VOICEMAIL
    destination: str | None = None


class InvalidCode(WildixError):
    """Dialled digits that are no service request, or one that cannot apply (the caller
    hears an error; a store change it was part of is rolled back)."""

    exit_code = 2


_NUMBER = re.compile(r"\+?[0-9]{2,20}")


def parse(service: Service, option: str) -> ServiceRequest:
    """What the digits dialled after a service's code ask: '' (status), `*0`, `*1`,
    `*2*NUMBER` or `*2*VOICEMAIL` (the dialplan writes that word for the voicemail code);
    InvalidCode for anything else."""
    if option == "":
        return ServiceRequest(service, Action.STATUS)
    if option == "*0":
        return ServiceRequest(service, Action.OFF)
    if option == "*1":
        return ServiceRequest(service, Action.ON)
    if service.is_forward and option.startswith("*2*"):
        target = option[3:]
        if target == VOICEMAIL or _NUMBER.fullmatch(target):
            return ServiceRequest(service, Action.SET, target)
        raise InvalidCode(f"{service}: {target!r} is not a number to forward to")
    raise InvalidCode(f"{service}: unknown option {option!r}")


@dataclass(frozen=True)
class ServiceState:
    """One service's state as the caller hears it: on or off, and a forward's
    destination (kept while off, so `*1` switches the same forward back on)."""

    active: bool
    destination: str | None = None


def change(state: ServiceState, request: ServiceRequest) -> ServiceState:
    """The state after `request`; InvalidCode when it cannot apply (a forward switched on
    with no destination ever given)."""
    if request.action is Action.STATUS:
        return state
    if request.action is Action.OFF:
        return ServiceState(False, state.destination)
    if request.action is Action.SET:
        return ServiceState(True, request.destination)
    if request.service.is_forward and not state.destination:
        raise InvalidCode(f"{request.service}: no destination to forward to yet "
                          "(dial the code, *2*, then the number)")
    return ServiceState(True, state.destination)


_SERVICE_PROMPT = {
    Service.DND: "do-not-disturb",
    Service.FORWARD_ALL: "call-fwd-unconditional",
    Service.FORWARD_BUSY: "call-fwd-on-busy",
    Service.FORWARD_UNAVAILABLE: "call-fwd-no-ans",
}


@dataclass(frozen=True)
class Announcement:
    """What the caller hears: Asterisk's own prompts (played in the channel's language),
    then digits said one by one."""

    prompts: tuple[str, ...]
    digits: str = ""

    @property
    def playback(self) -> str:
        """Playback()'s argument: the prompts joined by '&'."""
        return "&".join(self.prompts)


def announce(service: Service, state: ServiceState) -> Announcement:
    """"Call forwarding unconditional activated, to extension 1 0 3" and the like."""
    prompts = [_SERVICE_PROMPT[service], "activated" if state.active else "de-activated"]
    if not service.is_forward or not state.active or not state.destination:
        return Announcement(tuple(prompts))
    if state.destination == VOICEMAIL:
        return Announcement((*prompts, "vm-messages"))  # "... activated: messages"
    # digits only: '+' is not said (SayDigits would skip it anyway)
    return Announcement((*prompts, "to-extension"), state.destination.lstrip("+"))


FAILURE = Announcement(("beeperr", "invalid"))


# --- the preferences a service reads and writes -----------------------------------------------

_FORWARD_FIELD = {Service.FORWARD_ALL: "forward_always", Service.FORWARD_BUSY: "forward_busy",
                  Service.FORWARD_UNAVAILABLE: "forward_unavailable"}
_CLASSES = ("internal", "external")
"""A code sets a forward for both call classes, as WMS's codes do without a class option."""


def state_of(preferences: Preferences, service: Service) -> ServiceState:
    if service is Service.DND:
        return ServiceState(preferences.dnd)
    field = _FORWARD_FIELD[service]
    found = [getattr(getattr(preferences, c), field) for c in _CLASSES]
    destination = next((d for d in found if d is not None), None)
    return ServiceState(destination is not None, destination)


def with_state(preferences: Preferences, service: Service, state: ServiceState) -> Preferences:
    """`preferences` with `service` in `state`. A forward switched off is cleared (the
    model keeps no destination apart from its on/off state)."""
    if service is Service.DND:
        return preferences.model_copy(update={"dnd": state.active})
    field = _FORWARD_FIELD[service]
    destination = state.destination if state.active else None
    return preferences.model_copy(update={
        c: getattr(preferences, c).model_copy(update={field: destination}) for c in _CLASSES})


def apply(preferences: Preferences, request: ServiceRequest) -> tuple[Preferences, Announcement]:
    """The preferences after `request` and what the caller hears; InvalidCode if it
    cannot apply."""
    state = change(state_of(preferences, request.service), request)
    return with_state(preferences, request.service, state), announce(request.service, state)
