"""WMS "Générer un appel" (`wildix-ast test-call`): the PBX itself places a call through a
chosen dialplan procedure, to a number, a user's phone or the echo test, and tells what
happened: answered (and how long it lasted), busy, no answer or failed, with Asterisk's cause.

It is an AMI `Originate` of a Local channel into the procedure's context (as if the `--from`
user had dialled: their ACL group and caller ID), whose own side waits `hold` seconds once
answered and hangs up. Both halves get Uniqueids we choose, so their events are recognised
among the PBX's others. `TestCallOutcome` is computed from those events by a pure function.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from wildix_ast.ami import AmiClient, AmiMessage
from wildix_ast.asterisk import names
from wildix_ast.errors import AmiError, WildixError
from wildix_ast.model.common import DEFAULT_PROCEDURE
from wildix_ast.model.site import Site

#: OriginateResponse `Reason` (Asterisk's AST_CONTROL_* of the last control frame).
_REASONS = {0: "failed", 1: "hung up", 3: "no answer", 4: "answered", 5: "busy",
            8: "congestion"}


class TestCallError(WildixError):
    """The test call could not be placed (an unknown user, procedure or number)."""


@dataclass(frozen=True)
class TestCallRequest:
    number: str
    context: str
    variables: Mapping[str, str]
    caller_id: str
    ring_timeout: float = 30.0
    hold: float = 3.0


@dataclass(frozen=True)
class TestCallOutcome:
    result: str            # answered | busy | no answer | failed
    reason: str            # OriginateResponse's reason, in words
    cause: int | None      # Q.850 cause of the called side's hang-up
    cause_text: str
    answered_after: float | None   # seconds from the originate to the answer
    duration: float | None         # seconds from the answer to the hang-up
    elapsed: float
    channels_left: int
    dial_status: str = ""          # the called side's last Dial (BUSY, NOANSWER, ...)
    application: str = ""          # the last application the called side ran (VoiceMail)

    @property
    def ok(self) -> bool:
        return self.result == "answered" and self.channels_left == 0

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, **asdict(self)}


def request_for(site: Site, number: str, *, caller: str | None, procedure: str | None,
                echo: bool, ring_timeout: float, hold: float) -> TestCallRequest:
    """The call to place, checked against the stored site (pure)."""
    users = {u.extension: u for u in site.users}
    user = None
    if caller is not None:
        user = users.get(caller)
        if user is None:
            raise TestCallError(f"--from {caller}: no user has this extension")
    chosen = procedure or (user.dialplan if user else DEFAULT_PROCEDURE)
    known = site.dialplan.procedure_names
    if chosen not in known:
        raise TestCallError(f"--procedure {chosen}: no such dialplan procedure "
                            f"({', '.join(sorted(known))})")
    if echo:
        number = site.dialplan.echo_test
    if not number:
        raise TestCallError("give the number to call (or --echo)")
    variables: dict[str, str] = {}
    caller_id = '"wildix-ast test call" <test>'
    if user is not None:
        variables["WILDIX_GROUP"] = user.group
        if user.office_did:
            variables["WILDIX_DID"] = user.office_did
        caller_id = f'"{user.name}" <{user.extension}>'
    return TestCallRequest(number=number, context=names.procedure_context(chosen),
                           variables=variables, caller_id=caller_id,
                           ring_timeout=ring_timeout, hold=hold)


def outcome(events: Sequence[tuple[float, AmiMessage]], ours: str, other: str,
            started: float, channels_left: int) -> TestCallOutcome:
    """What happened, from the AMI events (time received, event) of the call's two
    halves: `ours` (the Local;1 side that waits once answered) and `other` (;2, the dialplan
    side). `started` is when the originate was sent."""
    response = next((e for _, e in events if e.get("Event") == "OriginateResponse"), None)
    answered_at = next((t for t, e in events if e.get("Event") == "OriginateResponse"
                        and e.get("Response") == "Success"), None)
    hangups = {e.get("Uniqueid"): (t, e) for t, e in events if e.get("Event") == "Hangup"}
    called = hangups.get(other) or hangups.get(ours)
    cause = int(called[1].get("Cause", "0") or 0) if called else None
    cause_text = called[1].get("Cause-txt", "") if called else ""
    dial_status = next((e.get("DialStatus", "") for _, e in reversed(events)
                        if e.get("Event") == "DialEnd" and e.get("Uniqueid") == other), "")
    application = next((e.get("Application", "") for _, e in reversed(events)
                        if e.get("Event") == "Newexten" and e.get("Uniqueid") == other
                        and e.get("Application") not in (None, "", "Hangup", "Return")), "")
    reason_code = int(response.get("Reason", "0") or 0) if response else 0
    reason = _REASONS.get(reason_code, f"reason {reason_code}")
    if response is None:
        result, reason = "failed", "no OriginateResponse from Asterisk"
    elif response.get("Response") == "Success":
        result = "answered"
    elif reason_code == 5 or cause == 17 or dial_status == "BUSY":
        result = "busy"
    elif reason_code == 3 or cause in (18, 19) or dial_status == "NOANSWER":
        result = "no answer"
    else:
        result = "failed"
        if dial_status:
            reason = f"Dial: {dial_status}"
        elif called is not None:
            reason = "the dialplan ended the call without answering"
    ended = hangups.get(ours, called)
    duration = (ended[0] - answered_at) if (ended and answered_at is not None) else None
    last = max((t for t, _ in events), default=started)
    return TestCallOutcome(
        result=result, reason=reason, cause=cause, cause_text=cause_text,
        answered_after=None if answered_at is None else answered_at - started,
        duration=duration, elapsed=last - started, channels_left=channels_left,
        dial_status=dial_status, application=application)


async def place(client: AmiClient, request: TestCallRequest) -> TestCallOutcome:
    """Originate, follow its two halves until both hung up, then check no channel is left
    (of this call)."""
    ours, other = f"wxtest-{uuid.uuid4().hex[:16]}", f"wxtest-{uuid.uuid4().hex[:16]}"
    events: list[tuple[float, AmiMessage]] = []
    gone: set[str] = set()
    finished = asyncio.Event()

    channel = f"Local/{request.number}@{request.context}"
    responded = asyncio.Event()

    def seen(event: AmiMessage) -> None:
        mine = ours in (event.get("Uniqueid"), event.get("Linkedid")) or \
            other == event.get("Uniqueid") or \
            (event.get("Event") == "OriginateResponse" and event.get("Channel") == channel
             and event.get("Uniqueid", "<null>") in ("<null>", ""))
        if not mine:
            return
        events.append((time.monotonic(), event))
        if event.get("Event") == "Hangup":
            gone.add(event.get("Uniqueid", ""))
        if event.get("Event") == "OriginateResponse":
            responded.set()
        if {ours, other} <= gone:
            finished.set()

    client.on_event("*", seen)
    started = time.monotonic()
    try:
        await client.action(
            "Originate", Channel=channel,
            Application="Wait", Data=f"{request.hold:g}", CallerID=request.caller_id,
            Timeout=str(int(request.ring_timeout * 1000)), Async="true",
            ChannelId=ours, OtherChannelId=other,
            Variable=[f"{k}={v}" for k, v in request.variables.items()])
    except AmiError as e:
        raise TestCallError(f"Asterisk refused the test call: {e.message}") from None
    limit = request.ring_timeout + request.hold + 15
    try:
        async with asyncio.timeout(limit):
            await responded.wait()
            if any(e.get("Response") == "Success" for _, e in events
                   if e.get("Event") == "OriginateResponse"):
                await finished.wait()
            else:  # refused before or while ringing: its channels end at once, if any
                async with asyncio.timeout(2):
                    await finished.wait()
    except TimeoutError:
        pass  # reported: the outcome shows what was seen, channels_left what remains
    await asyncio.sleep(0.2)  # the last hang-up events of the ;2 side's own dials
    channels = await client.action_list("CoreShowChannels", "CoreShowChannelsComplete")
    left = sum(1 for c in channels if ours in (c.get("Uniqueid"), c.get("Linkedid")))
    return outcome(events, ours, other, started, left)
