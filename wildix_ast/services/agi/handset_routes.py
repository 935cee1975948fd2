"""The FastAGI route `handset-login` (WMS login feature code, 99 by default): a thin adapter
from the request to the pure decision (`wildix_ast.calls.handset_login`), the store's
compare-and-set assignment (`wildix_ast.store.handset`), the refusal counter (`LoginGuard`,
per device and per user) and the re-provisioning NOTIFY.

`handset-login ENDPOINT ADDRESS` (the code just dialled) answers `ask` or logs the phone
out; `handset-login ENDPOINT ADDRESS EXTENSION try` checks the PIN, which the route reads
with GET VARIABLE (never an AGI() argument: those are printed in Asterisk's verbose log).

After a change the dialplan tells the phone to fetch its configuration again (a SIP
NOTIFY `Event: check-sync` to the contact it called from, `PJSIPNotify()`: see
`asterisk.service_contexts`): no AMI account is needed for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from wildix_ast.calls import variables as v
from wildix_ast.calls.handset_login import (
    Attempt,
    HandsetDecision,
    Outcome,
    decide,
    identify,
)
from wildix_ast.errors import WildixError
from wildix_ast.services.agi.protocol import AgiRequest
from wildix_ast.services.agi.server import Decision, Route
from wildix_ast.services.agi.session import AgiSession
from wildix_ast.services.agi.voicemail_logins import LoginGuard
from wildix_ast.store import Store

log = logging.getLogger(__name__)
security_log = logging.getLogger("wildix_ast.security")

ROUTE_TIMEOUT = 3.0


def device_key(mac: str) -> str:
    return f"device:{mac}"


def user_key(extension: str) -> str:
    return f"user:{extension}"


def _arg(request: AgiRequest, index: int) -> str:
    return request.args[index] if index < len(request.args) else ""


def handset_answer(store: Store, guard: LoginGuard, endpoint: str, address: str,
                   attempt: Attempt | None) -> HandsetDecision:
    """The blocking part: read, decide, write (run in a worker thread)."""
    from wildix_ast.store.handset import devices_for_login, login_pin, swap_assignment

    device = identify(endpoint, address, devices_for_login(store))
    typed = attempt.extension if attempt is not None and attempt.extension.isdigit() else None
    device_locked = device is not None and guard.locked(device_key(device.mac)) is not None
    user_locked = typed is not None and guard.locked(user_key(typed)) is not None
    pin = login_pin(store, typed) if typed is not None and not (device_locked or user_locked) \
        else None
    decision = decide(device, attempt, stored_pin=pin, device_locked=device_locked,
                      user_locked=user_locked)
    if decision.counts_as_failure and decision.mac is not None:
        guard.failed(device_key(decision.mac), endpoint)
        if typed is not None:
            guard.failed(user_key(typed), endpoint)
    if decision.outcome is Outcome.LOCKED:
        security_log.warning('SecurityEvent="HandsetLoginRefusedLocked",Device="%s",Endpoint="%s",'
                             'User="%s"', decision.mac, endpoint, typed or "")
    if decision.outcome not in (Outcome.LOGGED_IN, Outcome.LOGGED_OUT) \
            or decision.mac is None or device is None:
        if device is None:
            log.info("handset login: no device found for endpoint %s at %s", endpoint,
                     address)
        return decision
    new_owner = decision.extension if decision.outcome is Outcome.LOGGED_IN else None
    try:
        swapped = swap_assignment(store, decision.mac, device.extension, new_owner)
    except WildixError as e:  # the user vanished meanwhile
        log.info("handset login on %s refused: %s", decision.mac, e)
        return HandsetDecision(Outcome.UNKNOWN, decision.mac)
    if not swapped:
        log.info("handset login on %s: the device changed meanwhile; nothing written",
                 decision.mac)
        return HandsetDecision(Outcome.UNKNOWN, decision.mac)
    # a success clears no counter: logging in as oneself between guesses must not reset
    # the count of a device or a user being guessed at
    security_log.warning('SecurityEvent="Handset%s",Device="%s",Endpoint="%s",User="%s"',
                         "Login" if new_owner else "Logout", decision.mac, endpoint,
                         decision.extension or "")
    return decision


class HandsetRoute:
    """The route: reads the PIN from the channel, then decides and writes in a worker
    thread (the store and the guard block)."""

    def __init__(self, store: Callable[[], Store], guard: LoginGuard) -> None:
        self.store, self.guard = store, guard

    async def __call__(self, session: AgiSession) -> Decision:
        request = session.request
        endpoint, address = _arg(request, 0), _arg(request, 1)
        attempt = None
        if _arg(request, 3) == "try":
            pin = await session.get_variable(v.HANDSET_PIN) or ""
            attempt = Attempt(_arg(request, 2), pin)
        decision = await asyncio.to_thread(handset_answer, self.store(), self.guard,
                                           endpoint, address, attempt)
        return Decision(decision.variables())


def handset_routes(store: Callable[[], Store], guard: LoginGuard) -> dict[str, Route]:
    from wildix_ast.calls.handset_login import ROUTE

    return {ROUTE: Route.session(HandsetRoute(store, guard), timeout=ROUTE_TIMEOUT)}
