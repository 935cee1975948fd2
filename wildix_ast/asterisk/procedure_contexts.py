"""Dialplan procedures, time frames, call groups, IVRs and incoming trunk calls as
extensions.conf contexts (used by extensions.py; not a generated file). All in dialplan, no
AGI: every step is a pattern match, a clock test or a Dial, which the dialplan does natively.

- `proc-<name>` includes one context per called number (`wildix-pn-<name>-<i>`) in order,
  then the users' extensions: Asterisk searches includes in order, so the first number that
  matches wins, as in WMS (within one context it would prefer the most specific pattern).
  Each number's applications are steps of one extension; one that fails or times out falls
  through to the next; an answered call ends at `end`. `variables.CALLED` holds the called
  number ('correct called number' edits it; 'go to procedure' and trunks take it).
- `wildix-tf-<name>`: a subroutine returning 1 when its time frame matches now in the PBX
  time zone (holidays by date with STRFTIME, since GotoIfTime has no year; weekly rules
  with GotoIfTime and the time zone).
- `wildix-cg-<name>`: a call group (members rung by Dial on their PJSIP endpoints, skipping
  unreachable ones, which Dial would log as errors); DIALSTATUS tells the caller the outcome.
- `wildix-ivr-<name>`: prompt, digit, target; timeout and invalid keys replay the prompt.
- `wildix-in-<trunk>`: a trunk's calls: call type `external`, caller number and DID to
  E.164, then `wildix-indid-<trunk>` (users' office DIDs, then the trunk's DID ranges, which
  enter its procedure). Anything else: 404.

Only digits, identifiers, time zones and checked names reach these lines."""

from __future__ import annotations

from wildix_ast.asterisk import names
from wildix_ast.asterisk.call_user_contexts import call_user
from wildix_ast.asterisk.dialplan_builder import (
    REJECTED,
    UNALLOCATED,
    Context,
    Step,
    admitted,
    extension,
    var,
)
from wildix_ast.asterisk.outgoing import CLASS_FULL
from wildix_ast.asterisk.pjsip import tls_phone_groups
from wildix_ast.calls import variables as v
from wildix_ast.model.call_classes import NumberingPlan
from wildix_ast.model.call_groups import CallGroup, Strategy
from wildix_ast.model.common import DEFAULT_PROCEDURE
from wildix_ast.model.ivrs import Ivr, IvrTarget
from wildix_ast.model.procedures import (
    Answer,
    Application,
    CallGroupApp,
    CheckTimeFrame,
    CorrectCalledNumber,
    DialTrunk,
    DialTrunkGroup,
    DialUser,
    GotoProcedure,
    Greeting,
    Hangup,
    IvrApp,
    PlaySound,
    Procedure,
    SetCallClass,
    SetCallerName,
    SetCallerNumber,
    SetLanguage,
    VoicemailApp,
    Wait,
    is_pattern,
)
from wildix_ast.model.routing import numbering_plan
from wildix_ast.model.site import Site
from wildix_ast.model.time_frames import TimeFrame
from wildix_ast.model.trunks import Trunk, TrunkAuth, did_bounds

ANSWERED = '$["${DIALSTATUS}" = "ANSWER"]'
_GREETING = {Greeting.UNAVAILABLE: "u", Greeting.BUSY: "b", Greeting.NONE: ""}


def extension_name(number: str) -> str:
    """A called number as Asterisk writes it: patterns start with '_'."""
    return "_" + number if is_pattern(number) else number


def _enter(procedure: str, condition: str = "") -> str:
    """Continue in `procedure` with the called number, when it has that number (a jump to a
    missing extension would be a warning and a hang-up); otherwise the next step runs."""
    context = names.procedure_context(procedure)
    exists = f"${{DIALPLAN_EXISTS({context},{var(v.CALLED)},1)}}"
    test = f"$[{condition} & {exists}]" if condition else exists
    return f"GotoIf({test}?{context},{var(v.CALLED)},1)"


def _call_user(site: Site, extension: str) -> str:
    user = site.user_by_extension(extension)
    box = extension if user is not None and names.has_mailbox(user) else ""
    return call_user(extension, box)


def _voicemail(extension: str, greeting: Greeting = Greeting.UNAVAILABLE) -> str:
    return f"VoiceMail({names.mailbox(extension)},{_GREETING[greeting]})"


def application_steps(site: Site, app: Application, j: int) -> list[Step]:
    """The dialplan steps of one application, the `j`th of its number (labels inside one
    extension must be distinct)."""
    match app:
        case Answer():
            return ["Answer()"]
        case SetCallClass():
            return [f"Set({v.CALL_CLASS}={app.call_class})"]
        case CheckTimeFrame():
            steps: list[Step] = [f"Gosub({names.time_frame_context(app.time_frame)},s,1)"]
            for procedure, value in ((app.if_match, "1"), (app.if_no_match, "0")):
                if procedure is not None:
                    steps.append(_enter(procedure, f'"${{GOSUB_RETVAL}}" = "{value}"'))
            return steps
        case DialUser():
            return [_call_user(site, app.user), f"GotoIf({ANSWERED}?end)"]
        case CallGroupApp():
            # an IVR just before rang this group (its timeout action, say): not twice
            return [f'GotoIf($["{var(v.IVR_CALL_GROUP)}" = "{app.call_group}"]?cg-{j})',
                    f"Gosub({names.call_group_context(app.call_group)},s,1)",
                    f"GotoIf({ANSWERED}?end)", (f"cg-{j}", f"Set({v.IVR_CALL_GROUP}=)")]
        case IvrApp():
            return [f"Set({v.IVR_CALL_GROUP}=)", f"Gosub({names.ivr_context(app.ivr)},s,1)",
                    f"GotoIf({ANSWERED}?end)"]
        case VoicemailApp():
            return [_voicemail(app.user, app.greeting),
                    'GotoIf($["${VMSTATUS}" = "SUCCESS"]?end)']
        case DialTrunk() | DialTrunkGroup():
            trunks = [app.trunk] if isinstance(app, DialTrunk) else next(
                g.trunks for g in site.trunk_groups if g.name == app.trunk_group)
            # A class set earlier must be one the caller's ACL group allows (a trunk's
            # caller has no group: refused) and must have a place left under its limit
            # (the class counter outgoing routing uses); a trunk returns only to fail over.
            acl = names.acl_context(var(v.GROUP))
            limited = f"${{DIALPLAN_EXISTS({names.CLASS_LIMIT_CONTEXT},{var(v.CALL_CLASS)},1)}}"
            # A caller without a group nor a class (a trunk's: `validate` refuses such a
            # procedure) never reaches the trunk.
            return [f'GotoIf($["{var(v.CALL_CLASS)}{var(v.GROUP)}" = ""]?skip-{j})',
                    f'GotoIf($["{var(v.CALL_CLASS)}" != "" & '
                    f'"${{DIALPLAN_EXISTS({acl},{var(v.CALL_CLASS)},1)}}" = "0"]?skip-{j})',
                    f'GotoIf($["{var(v.CALL_CLASS)}" = "" | "{limited}" = "0"]?dial-{j})',
                    f"Gosub({names.CLASS_LIMIT_CONTEXT},{var(v.CALL_CLASS)},1)",
                    f'GotoIf($["${{GOSUB_RETVAL}}" = "{CLASS_FULL}"]?skip-{j})',
                    (f"dial-{j}", "NoOp()"),
                    *(f"Gosub({names.trunk_context(t)},s,1({var(v.CALLED)}))"
                      for t in trunks),
                    (f"skip-{j}", "NoOp()")]
        case SetCallerNumber():
            return [f"Set(CALLERID(num)={app.number})"]
        case SetCallerName():
            return [f"Set(CALLERID(name)={app.name})"]
        case CorrectCalledNumber():
            return [f"Set({v.CALLED}={app.prepend}${{{v.CALLED}:{app.remove}}})"]
        case SetLanguage():
            return [f"Set(CHANNEL(language)={app.language})"]
        case PlaySound():
            return [f"Playback({names.sound_file(app.sound)})"]
        case Wait():
            return [f"Wait({app.seconds})"]
        case GotoProcedure():
            return [_enter(app.procedure)]
        case Hangup():
            return [f"Hangup({app.cause if app.cause is not None else ''})"]
    raise AssertionError(app)  # pragma: no cover - the union is matched above


def _procedure(site: Site, procedure: Procedure) -> list[Context]:
    found: list[Context] = []
    for i, number in enumerate(procedure.numbers):
        steps: list[Step] = [f"Set({v.CALLED}=${{EXTEN}})"]
        for j, app in enumerate(number.applications):
            steps += application_steps(site, app, j)
        steps.append(("end", "Hangup()"))
        # an administrator's open-ended pattern (`9.`) sees admitted numbers only
        found.append(Context(names.number_context(procedure.name, i),
                             (admitted(extension_name(number.number), *steps),)))
    return found


def procedure_contexts(site: Site) -> list[Context]:
    """Every procedure (the built-in `users` too): its numbers first, then the users'
    extensions and feature codes (and, for `users`, the outgoing routes)."""
    contexts: list[Context] = []
    for procedure in [Procedure(name=DEFAULT_PROCEDURE), *site.dialplan.procedures]:
        numbers = _procedure(site, procedure)
        # emergency first: it wins over the procedure's numbers and internal prefixes
        includes = [names.EMERGENCY_CONTEXT] + [c.name for c in numbers] + [
            names.EXTENSIONS_CONTEXT, names.SERVICES_CONTEXT]
        if procedure.name == DEFAULT_PROCEDURE:
            includes.append(names.OUTGOING_CONTEXT)
        contexts.append(Context(names.procedure_context(procedure.name), (),
                                tuple(includes)))
        contexts += numbers
    return contexts


def _time_frame(frame: TimeFrame, timezone: str) -> Context:
    steps: list[Step] = [f"Set({v.TODAY}=${{STRFTIME(${{EPOCH}},{timezone},%Y%m%d)}})"]
    for holiday in frame.holidays:
        first, last = (d.strftime("%Y%m%d") for d in (holiday.date, holiday.last))
        steps.append(f"GotoIf($[{var(v.TODAY)} >= {first} & {var(v.TODAY)} <= {last}]"
                     "?closed)")
    for rule in frame.weekly:
        days = "&".join(str(d) for d in rule.days)
        steps.append(f"GotoIfTime({rule.start}-{rule.end},{days},*,*,{timezone}?open)")
    steps += [("closed", "Return(0)"), ("open", "Return(1)")]
    return Context(names.time_frame_context(frame.name), (extension("s", *steps),))


def _device_up(extension: str) -> str:
    return f'"${{DEVICE_STATE(PJSIP/{extension})}}" != "UNAVAILABLE"'


def _not_caller(extension: str) -> str:
    """The calling channel is not `extension`'s phone: a PJSIP channel is named
    `PJSIP/<endpoint>-<sequence>` (extensions hold no '-'), so its name starts with
    `PJSIP/<extension>-`. A call group never rings the caller's own phone."""
    prefix = f"PJSIP/{extension}-"
    return f'"${{CHANNEL(name):0:{len(prefix)}}}" != "{prefix}"'


def _call_group(group: CallGroup) -> Context:
    steps: list[Step] = ["Set(DIALSTATUS=CHANUNAVAIL)"]
    if group.strategy is Strategy.RING_ALL:
        steps.append(f"Set({v.CALL_GROUP_DIAL}=)")
        steps += [f"ExecIf($[{_device_up(m)} & {_not_caller(m)}]"
                  f"?Set({v.CALL_GROUP_DIAL}={var(v.CALL_GROUP_DIAL)}&PJSIP/{m}))"
                  for m in group.members]
        steps += [f'GotoIf($["{var(v.CALL_GROUP_DIAL)}" = ""]?done)',
                  f"Dial(${{{v.CALL_GROUP_DIAL}:1}},{group.timeout})", ("done", "Return()")]
        return Context(names.call_group_context(group.name), (extension("s", *steps),))
    n = len(group.members)
    # Hunt from member `variables.CALL_GROUP_INDEX` through the list and round to it again:
    # the members are written twice so every start runs n slots forward.
    next_start = f"{v.ROUND_ROBIN_PREFIX}{group.name}"
    index = var(v.CALL_GROUP_INDEX)
    start = {Strategy.HUNT: "0", Strategy.RANDOM: f"${{RAND(0,{n - 1})}}",
             Strategy.ROUND_ROBIN: f"$[0${{GLOBAL({next_start})}} % {n}]"}
    steps += [f"Set({v.CALL_GROUP_END}=$[${{EPOCH}} + {group.timeout}])",
              f"Set({v.CALL_GROUP_INDEX}={start[group.strategy]})",
              f"Set({v.CALL_GROUP_LEFT_MEMBERS}={n})"]
    if group.strategy is Strategy.ROUND_ROBIN:  # the next call starts one further
        steps.append(f"Set(GLOBAL({next_start})=$[({index} + 1) % {n}])")
    steps.append(f"Goto(m{index})")
    for k in range(2 * n):
        member = group.members[k % n]
        after = f"m{k + 1}" if k + 1 < 2 * n else "done"
        left = var(v.CALL_GROUP_LEFT_SECONDS)
        steps += [(f"m{k}", f"GotoIf($[{var(v.CALL_GROUP_LEFT_MEMBERS)} <= 0]?done)"),
                  f"Set({v.CALL_GROUP_LEFT_MEMBERS}=$[{var(v.CALL_GROUP_LEFT_MEMBERS)} - 1])",
                  f"Set({v.CALL_GROUP_LEFT_SECONDS}=$[{var(v.CALL_GROUP_END)} - ${{EPOCH}}])",
                  f"GotoIf($[{left} <= 0]?done)",
                  f'GotoIf($[!({_device_up(member)} & {_not_caller(member)})]?{after})',
                  f"Dial(PJSIP/{member},${{IF($[{left} < {group.member_timeout}]?{left}:"
                  f"{group.member_timeout})}})",
                  f"GotoIf({ANSWERED}?done)"]
    steps.append(("done", "Return()"))
    return Context(names.call_group_context(group.name), (extension("s", *steps),))


def _target(site: Site, target: IvrTarget) -> list[Step]:
    if target.user is not None:
        return [_call_user(site, target.user)]
    if target.call_group is not None:
        return [f"Gosub({names.call_group_context(target.call_group)},s,1)",
                f"Set({v.IVR_CALL_GROUP}={target.call_group})"]
    if target.procedure is not None:
        return [_enter(target.procedure)]
    assert target.voicemail is not None
    return [_voicemail(target.voicemail)]


def _ivr(site: Site, ivr: Ivr) -> Context:
    extensions = [extension("s", f"Set({v.IVR_TRIES}=0)", "Answer()",
                       ("prompt", f"Background({names.sound_file(ivr.prompt)})"),
                       # last: with a priority after it, WaitExten would continue there
                       # on timeout instead of going to `t`
                       f"WaitExten({ivr.timeout})")]
    extensions += [extension(o.digit, *_target(site, o), "Return()") for o in ivr.options]
    for name, target in (("t", ivr.on_timeout), ("i", ivr.on_invalid)):
        extensions.append(extension(
            name, f"Set({v.IVR_TRIES}=$[{var(v.IVR_TRIES)} + 1])",
            f"GotoIf($[{var(v.IVR_TRIES)} <= {ivr.repeat}]?s,prompt)",
            *(_target(site, target) if target is not None else []), "Return()"))
    return Context(names.ivr_context(ivr.name), tuple(extensions))


def to_e164(plan: NumberingPlan, variable: str, label: str) -> list[Step]:
    """A number as the provider sent it (national, 00-international) -> E.164. Only
    numbers of digits alone, 6 or more, are touched (short and anonymous ones are not)."""
    intl, nat, cc = plan.international_prefix, plan.national_prefix, plan.country_code
    value = f"${{{variable}}}"
    steps: list[Step] = [
        f'GotoIf($[${{REGEX("^[0-9]{{6,}}$" {value})}} = 0]?{label}-done)',
        f'GotoIf($["${{{variable}:0:{len(intl)}}}" != "{intl}"]?{label}-nat)',
        f"Set({variable}=+${{{variable}:{len(intl)}}})", f"Goto({label}-done)"]
    if nat:
        steps += [(f"{label}-nat",
                   f'GotoIf($["${{{variable}:0:{len(nat)}}}" != "{nat}"]?{label}-done)'),
                  f"Set({variable}=+{cc}${{{variable}:{len(nat)}}})"]
    else:  # no national prefix (Italy): every other number is national; same steps
        steps += [(f"{label}-nat", f'GotoIf($["{value}" = ""]?{label}-done)'),
                  f"Set({variable}=+{cc}{value})"]
    steps.append((f"{label}-done", "NoOp()"))
    return steps


def did_patterns(first: int, last: int, digits: int) -> list[str]:
    """The fewest aligned patterns (digits, then X) covering first..last, numbers of
    `digits` digits: 100-199 -> 1XX; 105-123 -> 105..109, 11X, 120..123."""
    found: list[str] = []
    start = first
    while start <= last:
        size, wild = 1, 0  # the largest aligned block from `start` inside the range
        while start % (size * 10) == 0 and start + size * 10 - 1 <= last:
            size, wild = size * 10, wild + 1
        text = str(start).zfill(digits)
        found.append(text[:digits - wild] + "X" * wild)
        start += size
    return found


def _from_provider(trunk: Trunk) -> list[Step]:
    """A registration trunk's calls are recognised by the `line` token of its registration,
    which travels in clear: a call carrying it from anywhere but the provider's addresses
    is refused (403). IP trunks are matched by address already (PJSIP `identify`)."""
    if trunk.auth is not TrunkAuth.REGISTRATION:
        return []
    source = "${CUT(CHANNEL(pjsip,remote_addr),:,1)}"
    known = " | ".join(f'"{var(v.SOURCE)}" = "{a}"' for a in trunk.identify_addresses)
    return [f"Set({v.SOURCE}={source})",
            f"ExecIf($[!({known or '0'})]?Hangup({REJECTED}))"]


def _incoming(site: Site, trunk: Trunk, plan: NumberingPlan) -> list[Context]:
    entry = names.trunk_incoming_context(trunk.name)
    dids = names.trunk_did_context(trunk.name)
    ranges = names.trunk_range_context(trunk.name)
    steps: list[Step] = [*_from_provider(trunk),
        f"Set(__{v.CALL_TYPE}=external)",
        f"Set({v.CALLER_NUMBER}=${{FILTER(0123456789+,${{CALLERID(num)}})}})",
        *to_e164(plan, v.CALLER_NUMBER, "cid"),
        f'ExecIf($["{var(v.CALLER_NUMBER)}" != ""]?Set(CALLERID(num)={var(v.CALLER_NUMBER)}))',
        f"Set({v.INCOMING}=${{FILTER(0123456789+,{var(v.INCOMING)})}})",
        f"Set({v.INCOMING_GIVEN}={var(v.INCOMING)})",
        *to_e164(plan, v.INCOMING, "did"),
        f"GotoIf(${{DIALPLAN_EXISTS({dids},{var(v.INCOMING)},1)}}?{dids},{var(v.INCOMING)},1)",
        # E.164 without its '+' (33140000101), as some providers send it: tried after the
        # national reading, which wins where both exist (Italian numbers have no prefix)
        f'GotoIf($[${{REGEX("^[1-9][0-9]{{7,}}$" {var(v.INCOMING_GIVEN)})}} = 0]?unknown)',
        f"Set({v.INCOMING}=+{var(v.INCOMING_GIVEN)})",
        f"GotoIf(${{DIALPLAN_EXISTS({dids},{var(v.INCOMING)},1)}}?{dids},{var(v.INCOMING)},1)",
        ("unknown", f"Hangup({UNALLOCATED})")]
    contexts = [Context(entry, (
        admitted("_X.", f"Set({v.INCOMING}=${{EXTEN}})", "Goto(in,1)"),
        admitted("_+X.", f"Set({v.INCOMING}=${{EXTEN}})", "Goto(in,1)"),
        extension("in", *steps)))]
    includes = [names.DID_CONTEXT]
    if trunk.procedure is not None:
        includes.append(ranges)
        patterns = [f"_+{p}" if "X" in p else f"+{p}"
                    for did in trunk.dids for p in did_patterns(*did_bounds(did))] \
            if trunk.dids else ["_+X."]
        procedure = names.procedure_context(trunk.procedure)
        # variables.INCOMING is this extension (the DID): guarded by DIALPLAN_EXISTS, which
        # asterisklint cannot evaluate (it would check ${EXTEN} against a sample number)
        enter = (f"GotoIf(${{DIALPLAN_EXISTS({procedure},{var(v.INCOMING)},1)}}"
                 f"?{procedure},{var(v.INCOMING)},1)")
        contexts.append(Context(ranges, tuple(
            admitted(p, enter, f"Hangup({UNALLOCATED})") for p in patterns)))
    contexts.append(Context(dids, (), tuple(includes)))
    return contexts


def dialplan_contexts(site: Site) -> list[Context]:
    """Procedures, then what they call, then incoming trunk calls, in file order."""
    timezone = site.system.language_region.timezone
    plan = numbering_plan(site)
    contexts = procedure_contexts(site)
    contexts += [_time_frame(f, timezone) for f in site.time_frames]
    contexts += [_call_group(g) for g in site.call_groups]
    contexts += [_ivr(site, ivr) for ivr in site.ivrs]
    for trunk in site.trunks:
        contexts += _incoming(site, trunk, plan)
    return contexts




#: every number a phone dials (digits, feature codes, E.164): one character, or more
_DIALLED = ("_[0-9#*+]", "_[0-9#*+].")
#: Q.850 cause of a call refused for its transport (chan_pjsip answers SIP 488)
_NOT_ACCEPTABLE = 58


def _tls_gate(procedure: str) -> Context:
    target = names.procedure_context(procedure)
    return Context(names.tls_gate_context(procedure), tuple(
        extension(pattern, 'GotoIf($["${CHANNEL(pjsip,secure)}" != "1"]?insecure)',
                  f"GotoIf(${{DIALPLAN_EXISTS({target},${{EXTEN}},1)}}?{target},${{EXTEN}},1)",
                  f"Hangup({UNALLOCATED})", ("insecure", f"Hangup({_NOT_ACCEPTABLE})"))
        for pattern in _DIALLED), comment=(
        f"TLS phones (SRTP) of procedure {target}: a call over UDP or TCP is refused here,",
        "before anything is answered, so no SDP (no SDES key) goes back in clear (58: SIP 488);",
        "over TLS it goes on to the procedure (a number it does not have: 1, SIP 404)."))


def tls_gate_contexts(site: Site) -> list[Context]:
    """One gate per procedure of a TLS phone (pjsip.tls_phone_groups), which the phone's
    endpoint enters instead of the procedure."""
    groups = tls_phone_groups(site)
    procedures = dict.fromkeys(u.dialplan for u in site.users
                               if u.type.has_phone and u.group in groups)
    return [_tls_gate(p) for p in procedures]
