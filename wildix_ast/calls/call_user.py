"""What happens to one call to one user, from the user's preferences: the pure decision the
FastAGI route `call-user` answers (wildix_ast.services.agi.routes) and the call-user dialplan
subroutine acts on (wildix_ast/asterisk/call_user_contexts.py).

The decision is a set of channel variables, always all of them (a channel that calls two
users in turn never acts on the first one's answer). Every value is a fixed word, digits,
a number (`+` and digits), VOICEMAIL or an identifier: the dialplan uses them as Dial and
Goto arguments, so nothing else may reach it (a property test checks it).

Order of the rules (WMS): a blacklisted caller is refused; a whitelisted caller skips
"reject all" and do-not-disturb; then the call type's reject, do-not-disturb (busy path),
forward always; otherwise the phone rings, with the call type's timeout, ringtone and call
waiting, and busy / no answer take the call type's forwards (empty: the user's mailbox, as
without preferences). The call type is internal or external (`model.preferences`); "call
class" is only ever one of the seven classes of a dialled number (`model.call_classes`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from wildix_ast.calls import variables as v
from wildix_ast.calls.mobility import mobility_leg_of
from wildix_ast.calls.popup_url import PopupCall, published
from wildix_ast.model.preferences import Preferences, caller_matches
from wildix_ast.model.users import User

CALL_USER_ROUTE = "call-user"
"""The FastAGI route the call-user subroutine asks."""
MAX_FORWARDS = 3
"""Forwards one call may follow (A to B to A... stops there, in the last user's mailbox)."""
EXTERNAL = "external"
"""`variables.CALL_TYPE` of calls from trunks; anything else is internal."""


class Action(StrEnum):
    RING = "ring"
    REJECT = "reject"
    BUSY = "busy"
    """Do-not-disturb: straight to the busy path (forward-busy, else the busy mailbox)."""
    FORWARD = "forward"
    """Forward always: to variables.FORWARD."""
    DIRECT = "direct"
    """No preferences apply (unknown user): the dialplan's own path, as without the
    service."""


@dataclass(frozen=True)
class IncomingCall:
    """What the dialplan says about the call: its call type and the caller's number (E.164 for
    trunk calls, the extension for internal ones)."""

    call_type: str
    caller: str
    caller_name: str = ""

    @property
    def external(self) -> bool:
        return self.call_type == EXTERNAL


def _listed(patterns: list[str], caller: str) -> bool:
    return bool(caller) and any(caller_matches(p, caller) for p in patterns)


def action_for(preferences: Preferences, call: IncomingCall) -> tuple[Action, str]:
    """(what to do, the forward-always destination when forwarding)."""
    if _listed(preferences.blacklist, call.caller):
        return Action.REJECT, ""
    functions = preferences.of_call_type(call.call_type)
    trusted = _listed(preferences.whitelist, call.caller)
    if functions.reject and not trusted:
        return Action.REJECT, ""
    if preferences.dnd and not trusted:
        return Action.BUSY, ""
    if functions.forward_always is not None:
        return Action.FORWARD, functions.forward_always
    return Action.RING, ""


def decide(user: User | None, call: IncomingCall) -> dict[str, str]:
    """The channel variables for this call to `user` (None: no such user, the dialplan's
    own path)."""
    decision = dict.fromkeys(v.CALL_USER_DECISION, "")
    if user is None:
        decision[v.ACTION] = Action.DIRECT
        return decision
    preferences = user.preferences
    functions = preferences.of_call_type(call.call_type)
    action, forward = action_for(preferences, call)
    decision.update({
        v.ACTION: action.value,
        v.FORWARD: forward,
        v.FORWARD_BUSY: functions.forward_busy or "",
        v.FORWARD_UNAVAILABLE: functions.forward_unavailable or "",
        v.TIMEOUT: "" if functions.call_timeout is None else str(functions.call_timeout),
        v.CALL_WAITING: "1" if functions.call_waiting else "0",
        v.RINGTONE: functions.ringtone or "",
        # A forward is dialled with the forwarding user's rights (its ACL group and its
        # procedure's outgoing routing) and caller ID (its office DID), not the caller's.
        v.FORWARD_GROUP: user.group,
        v.FORWARD_PROCEDURE: user.dialplan,
        v.FORWARD_DID: user.office_did or "",
        v.MOBILITY: "1" if mobility_leg_of(user, preferences, call.call_type) else "",
        v.MISSED_MAIL: "1" if functions.missed_call_email and user.email else "",
        v.POPUP_URL: popup_url_of(user, call),
        v.CALL_WAITING_BEEP: "1" if preferences.call_waiting_beep else "",
    })
    return decision


def popup_url_of(user: User, call: IncomingCall) -> str:
    """The user's popup URL expanded for this call ('' without one)."""
    template = user.preferences.popup_url
    if template is None:
        return ""
    return published(template, PopupCall(
        caller_number=call.caller, caller_name=call.caller_name,
        user_number=user.extension, user_name=user.name,
        call_type="external" if call.external else "internal"))
