"""The FastAGI route `handset-login` (WMS login feature code, 99 by default): a thin adapter
from the request to the pure decision (`wildix_ast.calls.handset_login`), the store's
compare-and-set assignment (`wildix_ast.store.handset`), the refusal counter (`LoginGuard`,
per device and per user) and the re-provisioning NOTIFY.

`handset-login ENDPOINT ADDRESS` (the code just dialled) answers `ask` or logs the phone
out; `handset-login ENDPOINT ADDRESS EXTENSION try` checks the PIN, which the route reads
with GET VARIABLE (never an AGI() argument: those are printed in Asterisk's verbose log).

After a change the phone is told to fetch its configuration again: a SIP NOTIFY with
`Event: check-sync` to the endpoint it called from (AMI `PJSIPNotify`), sent a few seconds
later (the caller hears the confirmation first) by a task of its own: the call never waits
on the AMI, and a NOTIFY that fails is logged (the phone gets the new configuration at its
next periodic check or reboot).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

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

#: seconds between the answer and the NOTIFY: the caller hears "logged in" first
NOTIFY_DELAY = 2.0
ROUTE_TIMEOUT = 3.0
Notifier = Callable[[str], Awaitable[None]]
"""Sends `Event: check-sync` to the phones registered on an endpoint."""


def device_key(mac: str) -> str:
    return f"device:{mac}"


def user_key(extension: str) -> str:
    return f"user:{extension}"


@dataclass(frozen=True)
class Answer:
    decision: HandsetDecision
    #: the endpoint to send the check-sync NOTIFY to (None: nothing changed)
    notify: str | None = None


def _arg(request: AgiRequest, index: int) -> str:
    return request.args[index] if index < len(request.args) else ""


def handset_answer(store: Store, guard: LoginGuard, endpoint: str, address: str,
                   attempt: Attempt | None) -> Answer:
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
        return Answer(decision)
    new_owner = decision.extension if decision.outcome is Outcome.LOGGED_IN else None
    try:
        swapped = swap_assignment(store, decision.mac, device.extension, new_owner)
    except WildixError as e:  # the user vanished meanwhile
        log.info("handset login on %s refused: %s", decision.mac, e)
        return Answer(HandsetDecision(Outcome.UNKNOWN, decision.mac))
    if not swapped:
        log.info("handset login on %s: the device changed meanwhile; nothing written",
                 decision.mac)
        return Answer(HandsetDecision(Outcome.UNKNOWN, decision.mac))
    # a success clears no counter: logging in as oneself between guesses must not reset
    # the count of a device or a user being guessed at
    security_log.warning('SecurityEvent="Handset%s",Device="%s",Endpoint="%s",User="%s"',
                         "Login" if new_owner else "Logout", decision.mac, endpoint,
                         decision.extension or "")
    return Answer(decision, notify=endpoint)


class HandsetRoute:
    """The route's state: the store, the guard, the notifier and its pending tasks."""

    def __init__(self, store: Callable[[], Store], guard: LoginGuard,
                 notifier: Notifier | None, notify_delay: float = NOTIFY_DELAY) -> None:
        self.store, self.guard, self.notifier = store, guard, notifier
        self.notify_delay = notify_delay
        self._tasks: set[asyncio.Task[None]] = set()

    async def __call__(self, session: AgiSession) -> Decision:
        request = session.request
        endpoint, address = _arg(request, 0), _arg(request, 1)
        attempt = None
        if _arg(request, 3) == "try":
            pin = await session.get_variable(v.HANDSET_PIN) or ""
            attempt = Attempt(_arg(request, 2), pin)
        answer = await asyncio.to_thread(handset_answer, self.store(), self.guard, endpoint,
                                         address, attempt)
        if answer.notify is not None:
            task = asyncio.create_task(self._notify(answer.notify))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return Decision(answer.decision.variables())

    async def _notify(self, endpoint: str) -> None:
        if self.notifier is None:
            log.warning("handset login: no AMI account to notify %s; the phone takes its "
                        "new configuration at its next check", endpoint)
            return
        await asyncio.sleep(self.notify_delay)
        try:
            await self.notifier(endpoint)
            log.info("handset login: check-sync NOTIFY sent to %s", endpoint)
        except Exception as e:  # logged, never raised into the loop
            log.error("handset login: the check-sync NOTIFY to %s failed: %s", endpoint, e)

    async def drain(self) -> None:
        """Wait for the pending NOTIFYs (tests, shutdown)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def ami_notifier(host: str, port: int, username: str, secret: str,
                 timeout: float = 3.0) -> Notifier:
    """A Notifier through AMI `PJSIPNotify` (`Event: check-sync`), one short session each
    (logins are rare: no connection is kept)."""
    from wildix_ast.ami import AmiClient
    from wildix_ast.asterisk.pjsip_notify import CHECK_SYNC

    async def notify(endpoint: str) -> None:
        client = AmiClient(host, port, username, secret, timeout=timeout, heartbeat=None)
        await client.connect()
        try:
            await client.action("PJSIPNotify", Endpoint=endpoint, Option=CHECK_SYNC)
        finally:
            await client.close()

    return notify


def stored_notifier(store: Callable[[], Store], host: str = "127.0.0.1",
                    port: int | None = None) -> Notifier:
    """A Notifier with the handset login's AMI account (`asterisk.manager.notify_account`)
    of the stored site, looked up when a NOTIFY is sent; `port`: the AMI port when the
    target's differs from the site's (a lab)."""
    from wildix_ast.services.ami.registrations import devices_account

    async def notify(endpoint: str) -> None:
        account = await asyncio.to_thread(devices_account, store(), port, host)
        await ami_notifier(account.host, account.port, account.username,
                           account.secret)(endpoint)

    return notify


def handset_routes(store: Callable[[], Store], guard: LoginGuard,
                   notifier: Notifier | None) -> dict[str, Route]:
    from wildix_ast.calls.handset_login import ROUTE

    return {ROUTE: Route.session(HandsetRoute(store, guard, notifier), timeout=ROUTE_TIMEOUT)}
