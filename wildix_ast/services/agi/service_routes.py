"""FastAGI routes of the WMS services: thin adapters from the request to the pure functions
(wildix_ast.model.feature_codes, wildix_ast.calls.mobility, wildix_ast.calls.missed_calls)
and the store.

`feature-code ENDPOINT SERVICE OPTION`: the caller is its PJSIP endpoint (authenticated by
SIP digest; a caller ID proves nothing); the change goes through
`Store.change_preferences` (one transaction), so the next call sees it and Asterisk is not
reloaded. A request that cannot apply (unknown option, a forward to the user's own
extension...) changes nothing and answers OK with the error prompts; only a store failure
answers FAILED (the dialplan then plays the same error prompts).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from wildix_ast.calls import variables as v
from wildix_ast.calls.missed_calls import MailSpool, MissedCall
from wildix_ast.calls.mobility import NO_LEG, mobility_leg_of
from wildix_ast.errors import SettingsError, UnknownUserError
from wildix_ast.model.feature_codes import FAILURE, Announcement, InvalidCode, Service, apply, parse
from wildix_ast.model.preferences import Preferences
from wildix_ast.services.agi.protocol import AgiRequest
from wildix_ast.services.agi.server import Decision, Route
from wildix_ast.services.agi.voicemail_logins import LoginGuard
from wildix_ast.store import Store

log = logging.getLogger(__name__)


def _arg(request: AgiRequest, index: int) -> str:
    return request.args[index] if index < len(request.args) else ""


def _said(announcement: Announcement, result: str) -> Decision:
    return Decision({v.FEATURE_CODE_PLAYBACK: announcement.playback,
                     v.FEATURE_CODE_DIGITS: announcement.digits, v.FEATURE_CODE_RESULT: result})


def feature_code(store: Store, request: AgiRequest) -> Decision:
    endpoint, service_name, option = (_arg(request, i) for i in range(3))
    try:
        if not endpoint.isdigit():
            raise InvalidCode(f"not a user's phone: {endpoint!r}")
        wanted = parse(Service(service_name), option)
    except (ValueError, InvalidCode) as e:
        log.info("feature code refused: %s", e)
        return _said(FAILURE, "invalid")
    heard: list[Announcement] = []

    def change(current: Preferences) -> Preferences:
        changed, announcement = apply(current, wanted)
        heard.append(announcement)
        return changed

    try:
        store.change_preferences(endpoint, change)
    except (InvalidCode, UnknownUserError, SettingsError) as e:
        log.info("feature code %s %s%s from %s refused: %s", service_name, service_name,
                 option, endpoint, e)
        return _said(FAILURE, "invalid")
    log.info("feature code from %s: %s %s", endpoint, wanted.service, wanted.action)
    return _said(heard[-1], "ok")


def mobility(store: Store, request: AgiRequest) -> Decision:
    """`mobility EXTENSION CALLTYPE`: the mobile leg's number, delay, confirmation and the
    user's ACL group (variables.MOBILE empty: no leg)."""
    extension, call_type = _arg(request, 0), _arg(request, 1)
    user = store.user_by_extension(extension) if extension.isdigit() else None
    preferences = store.preferences_of(extension) if user is not None else None
    if user is None or preferences is None:
        return Decision(NO_LEG)
    leg = mobility_leg_of(user, preferences, call_type)
    return Decision(leg.variables() if leg is not None else NO_LEG)


def missed_call(store: Store, spool: MailSpool, request: AgiRequest) -> Decision:
    """`missed-call EXTENSION CALLTYPE`, from the caller's hang-up handler when the user did
    not answer: queues the mail if the call's type asks for it and the user has an email.
    variables.MISSED_QUEUED: 1 queued, 0 not wanted or already queued for this call."""
    extension, call_type = _arg(request, 0), _arg(request, 1)
    user = store.user_by_extension(extension) if extension.isdigit() else None
    preferences = store.preferences_of(extension) if user is not None else None
    if user is None or preferences is None or user.email is None \
            or not preferences.of_call_type(call_type).missed_call_email:
        return Decision({v.MISSED_QUEUED: "0"})
    queued = spool.queue_missed_call(MissedCall(
        uniqueid=request.uniqueid, user_extension=user.extension, user_name=user.name,
        user_email=user.email, caller_number=request.callerid,
        caller_name=request.calleridname, call_type=call_type or "internal",
        at=datetime.now(UTC)))
    return Decision({v.MISSED_QUEUED: "1" if queued else "0"})


def hotline(store: Store, request: AgiRequest) -> Decision:
    """`hotline ENDPOINT`: the number the lifted phone calls and after how many seconds
    (variables.HOTLINE empty: the user has no hotline)."""
    endpoint = _arg(request, 0)
    preferences = store.preferences_of(endpoint) if endpoint.isdigit() else None
    line = preferences.hotline if preferences is not None else None
    if line is None:
        return Decision({v.HOTLINE: ""})
    return Decision({v.HOTLINE: line.number, v.HOTLINE_DELAY: str(line.delay)})


def _locked(locked: bool) -> Decision:
    return Decision({v.VOICEMAIL_LOCKED: "1" if locked else "0"})


def voicemail_login(guard: LoginGuard, request: AgiRequest) -> Decision:
    """`voicemail-login MAILBOX`, before the PIN is asked: variables.VOICEMAIL_LOCKED 1 while the
    mailbox is locked (too many wrong PINs lately, across calls)."""
    mailbox = _arg(request, 0)
    return _locked(not mailbox.isdigit() or guard.locked(mailbox) is not None)


def voicemail_failed(guard: LoginGuard, request: AgiRequest) -> Decision:
    """`voicemail-failed MAILBOX CALLER`, after a wrong PIN: counted (a security event),
    variables.VOICEMAIL_LOCKED 1 once the mailbox is locked."""
    mailbox, caller = _arg(request, 0), _arg(request, 1)
    if not mailbox.isdigit():
        return _locked(True)
    return _locked(guard.failed(mailbox, caller if caller.isdigit() else "?") is not None)


def service_routes(store: Callable[[], Store], spool: MailSpool,
                   guard: LoginGuard) -> dict[str, Route]:
    """The services' routes; `store()` gives the store (opened on first use)."""
    return {
        "voicemail-login": Route.blocking(lambda r: voicemail_login(guard, r), timeout=3.0),
        "voicemail-failed": Route.blocking(lambda r: voicemail_failed(guard, r), timeout=3.0),
        "feature-code": Route.blocking(lambda r: feature_code(store(), r), timeout=3.0),
        "mobility": Route.blocking(lambda r: mobility(store(), r)),
        "hotline": Route.blocking(lambda r: hotline(store(), r)),
        "missed-call": Route.blocking(lambda r: missed_call(store(), spool, r), timeout=3.0),
    }
