"""A call's CDRs (its legs) -> one call record with the PBX's meaning.

Asterisk writes one CDR per pairing of party A with a party B (a forward tried two phones:
two CDRs; a transfer: more), all with the call's linked id. The record takes:

- its times from all legs: start the earliest start, end the latest end, answer the earliest
  answer of a leg that reached someone (a dialled channel), else the caller's own answer by
  an application (an IVR, voicemail); duration = end - start, billsec = end - answer;
- its disposition from the legs, best first: answered > busy > no answer > failed; an
  outgoing number no dialled channel was tried for, whose class the caller's ACL group may
  not call, is `refused_class`; a CDR variable `wms_refused` set by the dialplan wins;
- caller and callee from the channels' endpoints: a user's endpoint is its extension, a
  trunk's is `trunk-<name>` (`asterisk.names.trunk_endpoint`); the users' names and groups,
  and the call class of a dialled outside number, come from the site in the store;
- `handled_by`: the procedures, call groups and IVRs whose contexts the legs ended in;
- the fax fields, when the fax dialplan marked the call (`wms_fax*`): received or sent,
  status, pages, remote station, and the reference of the stored PDF (the fax service keeps
  it under that name) when pages went through; a received fax's callee is its fax user;
- direction: from a trunk -> incoming; from a user to a trunk (or an outside number) ->
  outgoing; else internal. Outside numbers are given in E.164 when the numbering plan
  knows them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from wildix_ast.asterisk.names import (
    PROCEDURE_PREFIX,
    call_group_context,
    ivr_context,
    number_context,
)
from wildix_ast.calls.call_record import (
    WMS_CALL_CLASS,
    WMS_DIRECTION,
    WMS_FAX,
    WMS_FAX_JOB,
    WMS_FAX_PAGES,
    WMS_FAX_REMOTE,
    WMS_FAX_STATUS,
    WMS_FAX_USER,
    WMS_HANDLED_BY,
    WMS_REFUSED,
    WMS_TRUNK,
)
from wildix_ast.model.call_classes import CallClass, NumberingPlan
from wildix_ast.model.site import Site
from wildix_ast.services.call_history.record import CallRecord, Direction, Disposition
from wildix_ast.services.fax.documents import document_reference

TRUNK_PREFIX = "trunk-"
_CHANNEL = re.compile(r"^(?:PJSIP|SIP|IAX2)/(?P<endpoint>.+)-[0-9a-f]{8}$")
_LOCAL = re.compile(r"^Local/(?P<exten>[^@]+)@(?P<context>[^-;]+)")
_RANK = {"ANSWERED": 4, "BUSY": 3, "NO ANSWER": 2, "FAILED": 1, "CONGESTION": 1}
_MEANING = {"ANSWERED": Disposition.ANSWERED, "BUSY": Disposition.BUSY,
            "NO ANSWER": Disposition.NO_ANSWER, "FAILED": Disposition.FAILED,
            "CONGESTION": Disposition.FAILED}


@dataclass(frozen=True)
class Party:
    user: str = ""
    trunk: str = ""
    number: str = ""


@dataclass
class Directory:
    """What the records need to know of the site (built once per site revision)."""

    users: dict[str, tuple[str, str]] = field(default_factory=dict)
    """extension -> (name, ACL group)."""
    allowed: dict[str, frozenset[CallClass]] = field(default_factory=dict)
    """ACL group -> the classes it may call."""
    plan: NumberingPlan | None = None
    country_code: str = ""
    national_prefix: str = "0"

    @classmethod
    def of(cls, site: Site | None) -> Directory:
        if site is None:
            return cls()
        country = site.system.language_region.country_code
        plan = NumberingPlan.of(site.dialplan.general, country)
        return cls(users={u.extension: (u.name, u.group) for u in site.users},
                   allowed={g.name: g.allowed for g in site.groups}, plan=plan,
                   country_code=country, national_prefix=plan.national_prefix)

    def e164(self, number: str) -> str:
        """An outside caller's number in E.164 when the numbering plan tells how."""
        digits = number.strip()
        if not digits or digits.startswith("+") or not digits.isdigit():
            return digits
        if self.plan is not None and digits.startswith(self.plan.international_prefix):
            return "+" + digits[len(self.plan.international_prefix):]
        if self.country_code and self.national_prefix and \
                digits.startswith(self.national_prefix) and len(digits) > 6:
            return f"+{self.country_code}{digits[len(self.national_prefix):]}"
        return digits


_CALL_GROUP = call_group_context("")
_IVR = ivr_context("")
_NUMBER = re.compile("^" + re.escape(number_context("@", 0)).replace("@", "(?P<name>.+)")
                     .replace("0", "[0-9]+") + "$")


def _handler(context: str) -> str:
    """What a dialplan context says handled the call: `procedure:<name>`,
    `call_group:<name>`, `ivr:<name>`, or '' for the PBX's own helpers."""
    if context.startswith(PROCEDURE_PREFIX):
        return f"procedure:{context[len(PROCEDURE_PREFIX):]}"
    if context.startswith(_CALL_GROUP):
        return f"call_group:{context[len(_CALL_GROUP):]}"
    if context.startswith(_IVR):
        return f"ivr:{context[len(_IVR):]}"
    number = _NUMBER.match(context)
    return f"procedure:{number.group('name')}" if number else ""


def handled_by(legs: Sequence[dict[str, Any]]) -> str:
    """The procedures, call groups and IVRs the call's legs went through, in order."""
    found: list[str] = []
    for leg in legs:
        handler = _handler(str(leg.get("dcontext") or ""))
        if handler and handler not in found:
            found.append(handler)
    return ",".join(found)


def endpoint(channel: str) -> str:
    found = _CHANNEL.match(channel or "")
    return found.group("endpoint") if found else ""


def _party(channel: str, directory: Directory) -> Party:
    name = endpoint(channel)
    if name.startswith(TRUNK_PREFIX):
        return Party(trunk=name[len(TRUNK_PREFIX):])
    if name in directory.users:
        return Party(user=name)
    local = _LOCAL.match(channel or "")
    if local and local.group("exten") in directory.users:
        return Party(user=local.group("exten"))
    return Party(number=name)


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def _sequence(leg: dict[str, Any]) -> tuple[float, int]:
    try:
        sequence = int(leg.get("sequence") or 0)
    except ValueError:
        sequence = 0
    return _number(leg.get("start")) or 0.0, sequence


def _variable(legs: Sequence[dict[str, Any]], name: str) -> str:
    """The last non-empty value a leg carries for a CDR variable."""
    found = ""
    for leg in legs:
        value = leg.get(name)
        if isinstance(value, str) and value:
            found = value
    return found


_FAX_VALUE = {WMS_FAX: r"received|sent", WMS_FAX_STATUS: r"[A-Z_]{0,20}",
              WMS_FAX_PAGES: r"[0-9]{0,4}", WMS_FAX_REMOTE: r"[0-9A-Za-z +.]{0,40}",
              WMS_FAX_JOB: r"[0-9.]{0,32}", WMS_FAX_USER: r"[0-9]{0,8}"}


_SENT_TO = re.compile(r"\+?[0-9]{2,20}")


def _fax(legs: Sequence[dict[str, Any]]) -> dict[str, str]:
    """The fax marks of a call (empty when it carried none). Each value is checked again
    here (the dialplan FILTERed them): a value outside its characters is dropped."""
    values = {name: _variable(legs, name) for name in _FAX_VALUE}
    values = {name: value if re.fullmatch(_FAX_VALUE[name], value) else ""
              for name, value in values.items()}
    if not values[WMS_FAX]:
        return {}
    found = {"fax": values[WMS_FAX], "status": values[WMS_FAX_STATUS],
             "pages": values[WMS_FAX_PAGES], "remote": values[WMS_FAX_REMOTE],
             "user": values[WMS_FAX_USER], "document": ""}
    if int(found["pages"] or 0) > 0:
        with contextlib.suppress(ValueError):  # no job or user: no document to name
            found["document"] = document_reference(values[WMS_FAX_USER], values[WMS_FAX_JOB])
    return found


def assemble(call_id: str, legs: Sequence[dict[str, Any]],
             directory: Directory) -> CallRecord:
    """The record of one call from its legs (at least one)."""
    ordered = sorted(legs, key=_sequence)
    origin = next((leg for leg in ordered if leg.get("uniqueid") == call_id), ordered[0])
    starts = [s for s in (_number(leg.get("start")) for leg in ordered) if s is not None]
    ends = [e for e in (_number(leg.get("end")) for leg in ordered) if e is not None]
    start = min(starts) if starts else 0.0
    end = max(ends) if ends else start
    reached = [leg for leg in ordered if leg.get("dstchannel")]
    answered = [leg for leg in reached if leg.get("disposition") == "ANSWERED"
                and _number(leg.get("answer")) is not None]
    answer_times = [a for a in (_number(leg.get("answer")) for leg in answered)
                    if a is not None]
    app_answer = _number(origin.get("answer")) \
        if origin.get("disposition") == "ANSWERED" else None
    answer = min(answer_times) if answer_times else app_answer
    best = max((str(leg.get("disposition") or "") for leg in (reached or ordered)),
               key=lambda d: _RANK.get(d, 0), default="FAILED")
    disposition = _MEANING.get(best, Disposition.FAILED)

    caller = _party(str(origin.get("channel") or ""), directory)
    fax = _fax(ordered)
    if fax.get("fax") == "sent" and not caller.user and fax["user"] in directory.users:
        caller = Party(user=fax["user"])  # Mail2Fax's call is originated: its sender's
    chosen = answered[0] if answered else (reached[-1] if reached else None)
    callee = _party(str(chosen.get("dstchannel") or ""), directory) if chosen else Party()
    dialled = str(origin.get("dst") or "")
    if fax.get("fax") == "sent":  # Mail2Fax's dialled half writes the number it dials there
        number = _variable(ordered, "userfield")
        dialled = number if _SENT_TO.fullmatch(number) else ""
    if not callee.user and not callee.trunk and dialled in directory.users:
        callee = Party(user=dialled)

    call_class = _variable(ordered, WMS_CALL_CLASS)
    callee_number = ""
    outside = None
    if caller.user and not callee.user and directory.plan is not None:
        outside = directory.plan.classify(dialled)
    if outside is not None:
        call_class = call_class or outside[0].value
        callee_number = outside[1]
    trunk = _variable(ordered, WMS_TRUNK) or callee.trunk or caller.trunk
    if caller.trunk:
        direction = Direction.INCOMING
    elif callee.trunk or outside is not None:
        direction = Direction.OUTGOING
    else:
        direction = Direction.INTERNAL
    direction = Direction(_variable(ordered, WMS_DIRECTION) or direction)

    caller_name, caller_group = directory.users.get(caller.user, ("", ""))
    callee_name, callee_group = directory.users.get(callee.user, ("", ""))
    refused = _variable(ordered, WMS_REFUSED)
    if refused == "class":
        disposition = Disposition.REFUSED_CLASS
    elif refused == "limit":
        disposition = Disposition.OVER_LIMIT
    elif (outside is not None and not reached and caller_group
          and outside[0] not in directory.allowed.get(caller_group, frozenset())):
        disposition = Disposition.REFUSED_CLASS
    if answer is None and disposition is Disposition.ANSWERED:
        disposition = Disposition.NO_ANSWER
    voicemail = callee.user or dialled \
        if any(leg.get("lastapp") == "VoiceMail" for leg in ordered) else ""
    caller_number = caller.user or directory.e164(str(origin.get("src") or ""))
    if fax.get("fax") == "received" and not callee.user and fax["user"] in directory.users:
        callee = Party(user=fax["user"])
        callee_name, callee_group = directory.users[callee.user]
    return CallRecord(
        call_id=call_id, start=round(start, 6),
        answer=round(answer, 6) if answer is not None else None, end=round(end, 6),
        duration=round(max(0.0, end - start), 3),
        billsec=round(max(0.0, end - answer), 3) if answer is not None else 0.0,
        disposition=disposition.value, direction=direction.value,
        day=dt.datetime.fromtimestamp(start, dt.UTC).strftime("%Y-%m-%d"),
        caller_user=caller.user, caller_name=caller_name, caller_number=caller_number,
        caller_group=caller_group, callee_user=callee.user, callee_name=callee_name,
        callee_number=callee_number or (callee.user or directory.e164(dialled)),
        callee_group=callee_group, dialled=dialled, call_class=call_class, trunk=trunk,
        handled_by=_variable(ordered, WMS_HANDLED_BY) or handled_by(ordered),
        voicemail=voicemail, fax=fax.get("fax", ""), fax_status=fax.get("status", ""),
        fax_pages=int(fax.get("pages") or 0), fax_remote=fax.get("remote", ""),
        fax_document=fax.get("document", ""),
        legs=json.dumps(ordered, separators=(",", ":"), sort_keys=True))
