"""WMS "Générer un appel" (`wildix-ast test-call`): the PBX itself places a call through a
chosen dialplan procedure, to a number, a user's phone or the echo test, and tells what
happened: answered (and how long it lasted), busy, no answer or failed, with Asterisk's cause.

No AMI account may originate (it could reach any channel, a trunk past every class check):
the request is put in AstDB under a one-time id and `Local/<id>@wildix-test-call` is
originated through Asterisk's root-only console (`asterisk_cli`); that guarded context takes
the request and enters the procedure's context as the `--from` user (their ACL group and
number: the class checks of a call from their phone). The Local channel's own side waits
`hold` seconds once answered and hangs up. Both halves are recognised among the PBX's events
(read with the AMI service's account) by the id in their name; `TestCallOutcome` is computed
from those events by a pure function.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from wildix_ast.ami import AmiClient, AmiMessage
from wildix_ast.asterisk import names
from wildix_ast.asterisk_cli import CliQueries
from wildix_ast.calls import variables as v
from wildix_ast.errors import AmiError, WildixError
from wildix_ast.model.common import DEFAULT_PROCEDURE
from wildix_ast.model.site import Site

#: OriginateResponse `Reason` (Asterisk's AST_CONTROL_* of the last control frame).
_REASONS = {0: "failed", 1: "hung up", 3: "no answer", 4: "answered", 5: "busy",
            8: "congestion"}


class TestCallError(WildixError):
    """The test call could not be placed (an unknown user, procedure or number)."""


#: what a test call may dial: a number or a feature code, nothing that reads as syntax
_DIALLED = re.compile(r"[0-9*#+]{1,40}")


@dataclass(frozen=True)
class TestCallRequest:
    number: str
    context: str
    variables: Mapping[str, str]
    caller_id: str
    ring_timeout: float = 30.0
    hold: float = 3.0
    procedure: str = ""
    caller: str = "test"

    def astdb_value(self) -> str:
        """group|DID|caller number|procedure|number, as the guarded context reads it (each
        admitted by the model or `_DIALLED`: no `|`, space or quote)."""
        return "|".join((self.variables.get(v.GROUP, ""),
                         self.variables.get(v.DID, ""), self.caller, self.procedure,
                         self.number))


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
    if not _DIALLED.fullmatch(number):
        raise TestCallError(f"{number!r}: a test call dials digits, * # and + only")
    variables: dict[str, str] = {}
    caller_id = '"wildix-ast test call" <test>'
    if user is not None:
        variables[v.GROUP] = user.group
        if user.office_did:
            variables[v.DID] = user.office_did
        caller_id = f'"{user.name}" <{user.extension}>'
    return TestCallRequest(number=number, context=names.procedure_context(chosen),
                           variables=variables, caller_id=caller_id,
                           ring_timeout=ring_timeout, hold=hold, procedure=chosen,
                           caller=user.extension if user is not None else "test")


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


def _synthetic_response(success: bool, cause: int) -> AmiMessage:
    """The OriginateResponse an AMI Originate would have had (a console originate has
    none): answered, or failed with the reason its cause tells."""
    if success:
        return {"Event": "OriginateResponse", "Response": "Success", "Reason": "4"}
    reason = {17: "5", 18: "3", 19: "3"}.get(cause, "0")
    return {"Event": "OriginateResponse", "Response": "Failure", "Reason": reason}


async def place(client: AmiClient, console: CliQueries,
                request: TestCallRequest) -> TestCallOutcome:
    """Put the request in AstDB, originate through the console, follow its two halves (the
    AMI service's account: events only) until both hung up, then check no channel is left
    (of this call)."""
    tag = uuid.uuid4().hex[:names.TEST_CALL_ID_DIGITS]
    prefix = f"Local/{tag}@{names.TEST_CALL_CONTEXT}-"
    sides: dict[str, str] = {}  # ";1" / ";2" -> Uniqueid
    events: list[tuple[float, AmiMessage]] = []
    gone: set[str] = set()
    finished = asyncio.Event()
    responded = asyncio.Event()

    def respond(success: bool, cause: int) -> None:
        if not responded.is_set():
            events.append((time.monotonic(), _synthetic_response(success, cause)))
            responded.set()

    def seen(event: AmiMessage) -> None:
        name = event.get("Channel", "")
        if name.startswith(prefix) and name[-2:] in (";1", ";2"):
            sides.setdefault(name[-2:], event.get("Uniqueid", ""))
        ours = set(sides.values())
        if not ours or not ({event.get("Uniqueid"), event.get("Linkedid")} & ours):
            return
        events.append((time.monotonic(), event))
        first = sides.get(";1")
        if event.get("Uniqueid") == first and event.get("Event") == "Newstate" and \
                event.get("ChannelStateDesc") == "Up":
            respond(True, 0)
        if event.get("Event") == "Hangup":
            gone.add(event.get("Uniqueid", ""))
            if event.get("Uniqueid") == first:
                respond(False, int(event.get("Cause", "0") or 0))
        if len(sides) == 2 and set(sides.values()) <= gone:
            finished.set()

    client.on_event("*", seen)
    started = time.monotonic()
    try:
        await console.command(f"database put {names.TEST_CALL_FAMILY} {tag} "
                              f"{request.astdb_value()}")
        output = await console.command(
            f"channel originate Local/{tag}@{names.TEST_CALL_CONTEXT} application Wait "
            f"{request.hold:g}")
    except AmiError as e:
        raise TestCallError(f"Asterisk refused the test call: {e.message}") from None
    if output.strip():
        raise TestCallError(f"Asterisk refused the test call: {output.strip()}")
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
    finally:
        # a request never taken (the originate failed) must not wait in AstDB
        with contextlib.suppress(AmiError):
            await console.command(f"database del {names.TEST_CALL_FAMILY} {tag}")
    await asyncio.sleep(0.2)  # the last hang-up events of the ;2 side's own dials
    channels = await client.action_list("CoreShowChannels", "CoreShowChannelsComplete")
    ours_ids = set(sides.values())
    left = sum(1 for c in channels if {c.get("Uniqueid"), c.get("Linkedid")} & ours_ids)
    return outcome(events, sides.get(";1", ""), sides.get(";2", ""), started, left)
