"""Outgoing calls as Asterisk objects: the dialplan of the `users` procedure's external
numbers and the PJSIP trunks. Shared by extensions.py and pjsip.py (not a generated file).

The call path, all in dialplan (no AGI: every decision is a pattern match, a variable test
or a counter, which the dialplan does natively and without a round trip per call):

0. `wildix-emergency`, included first by every procedure: the emergency numbers, from phones
   only, to `wildix-route,emergency`, whose trunks are every trunk group's
   (`wildix-emergency-trunks`: the class's group first).
1. `wildix-outgoing`: one extension per dialled form of each number-table row (national,
   `00<cc>`, `+<cc>`, with the outside-line prefix if any) normalises the number to E.164
   (`${EXTEN:n}` slices) and calls `wildix-route,<class>` with it. Unknown numbers get cause
   1 (SIP 404). Internal numbers never get here: the procedure includes the users' context
   first.
2. `wildix-route,<class>`: the caller's ACL group (the endpoint's `set_var variables.GROUP`,
   which a SIP client cannot set) must have the class in `acl-<group>`; emergency skips the
   check. Denied: cause 21 (SIP 403), no trunk is touched. Then the class counter
   (`wildix-class-limit`, also asked by a procedure's trunk dials): the call joins
   `GROUP(class)` first and counts after, so two calls racing for the last place both
   count each other and neither slips through (fail closed); over the limit: cause 34
   (SIP 503). GROUP()/GROUP_COUNT() live in Asterisk's memory and leave with the channel
   when it hangs up, so a crashed call never holds a place.
3. `wildix-tg-<group>`: the trunks in order; a trunk returns only to fail over.
4. `wildix-trunk-<trunk>`: its own counter (max_calls), caller ID (an anonymous trunk still
   shows the caller to emergency services) and name, number format, Dial.
   CHANUNAVAIL (unreachable: qualify found it so, 4xx/5xx the channel reports as
   unavailable), CONGESTION (503, 5xx congestion) and NOANSWER (no 180/183 within the
   trunk's setup_timeout; not on a group's last trunk) fail over, and the trunk's counter
   place is released; BUSY and other outcomes end the call.
"""

from __future__ import annotations

from dataclasses import dataclass

from wildix_ast.asterisk.dialplan_builder import (
    BUSY,
    CONGESTION,
    NO_ROUTE,
    REJECTED,
    UNALLOCATED,
    Context,
    Extension,
    Step,
    admission_context,
    admitted,
    extension,
    open_ended,
    var,
)
from wildix_ast.asterisk.names import (
    CLASS_LIMIT_CONTEXT,
    EMERGENCY_CONTEXT,
    EMERGENCY_TRUNKS_CONTEXT,
    EXTENSIONS_CONTEXT,
    OUTGOING_CONTEXT,
    ROUTE_CONTEXT,
    acl_context,
    transfer_context,
    trunk_context,
    trunk_endpoint,
    trunk_group_context,
    trunk_incoming_context,
)
from wildix_ast.calls import variables as v
from wildix_ast.calls.call_record import OVER_LIMIT_MARK, brake_check
from wildix_ast.model.call_classes import CallClass, NumberingPlan, asterisk_pattern
from wildix_ast.model.routing import numbering_plan, outgoing
from wildix_ast.model.site import Site
from wildix_ast.model.trunks import (
    CallerIdMode,
    CallerName,
    NumberFormat,
    Trunk,
    TrunkAuth,
    TrunkFax,
)


def _forms(plan: NumberingPlan) -> list[Extension]:
    """The dialled forms of every number and how each becomes the number routed."""
    out = plan.outside_line_prefix
    skip = len(out)
    cc, intl, nat = plan.country_code, plan.international_prefix, plan.national_prefix
    found: list[Extension] = []

    def route(pattern: str, call_class: CallClass, number: str) -> None:
        found.append(admitted(pattern, f"Gosub({ROUTE_CONTEXT},{call_class},1({number}))",
                              "Hangup()"))

    short = f"${{EXTEN:{skip}}}" if skip else "${EXTEN}"
    for rule in plan.short_numbers:
        route(asterisk_pattern(out + rule.pattern), rule.call_class, short)
    for rule in plan.number_rules:
        p = rule.pattern
        for prefix in (nat, intl + cc, "+" + cc):
            start = skip + len(prefix)
            route(f"_{out}{prefix}{p}", rule.call_class, f"+{cc}${{EXTEN:{start}}}")
    route(f"_{out}{intl}Z.", CallClass.INTERNATIONAL, f"+${{EXTEN:{skip + len(intl)}}}")
    route(f"_{out}+Z.", CallClass.INTERNATIONAL, f"+${{EXTEN:{skip + 1}}}")
    # Unknown numbers of the own country: refused rather than mistaken for international.
    unknown = [f"_{out}{intl}{cc}.", f"_{out}+{cc}."] + ([f"_{out}{nat}."] if nat else [])
    found += [admitted(p, f"Hangup({UNALLOCATED})") for p in unknown]
    return found


def _form_class(form: Extension) -> CallClass | None:
    """The class a `_forms` extension routes its number as (None: it refuses it)."""
    for _, step in form.steps:
        if step.startswith(f"Gosub({ROUTE_CONTEXT},"):
            return CallClass(step.split(",")[1])
    return None


TRANSFER_DIGITS = 17
"""How many digits an open-ended form's '.' stands for at most in a transfer context
(E.164 numbers have 15 at most, after the country code's first digit)."""


Box = tuple[frozenset[str], ...]
"""A fixed-length pattern: the characters each position matches."""
_SETS = {"X": "0123456789", "Z": "123456789", "N": "23456789"}


def _box(name: str) -> Box:
    """`_0[1-5]XX` -> ({0}, {1..5}, {0..9}, {0..9}); an exact number, one digit each."""
    text, found, i = name.removeprefix("_"), [], 0
    while i < len(text):
        if text[i] == "[":
            end = text.index("]", i)
            body, chars = text[i + 1:end], set()
            for j, c in enumerate(body):
                if c == "-" and 0 < j < len(body) - 1:
                    chars |= {chr(k) for k in range(ord(body[j - 1]), ord(body[j + 1]) + 1)}
                elif c != "-":
                    chars.add(c)
            found.append(frozenset(chars))
            i = end + 1
        else:
            found.append(frozenset(_SETS.get(text[i], text[i]) if name.startswith("_")
                                   else text[i]))
            i += 1
    return tuple(found)


def _char_class(chars: frozenset[str]) -> str:
    """`[124-9]`: runs of four or more as ranges (asterisklint's canonical form)."""
    runs: list[list[str]] = []
    for c in sorted(chars):
        if runs and ord(c) == ord(runs[-1][-1]) + 1:
            runs[-1].append(c)
        else:
            runs.append([c])
    return "[" + "".join(f"{r[0]}-{r[-1]}" if len(r) > 3 else "".join(r) for r in runs) + "]"


def _pattern(box: Box) -> str:
    named = {frozenset(chars): k for k, chars in _SETS.items()}
    parts = [next(iter(s)) if len(s) == 1 else named.get(s) or _char_class(s) for s in box]
    text = "".join(parts)
    return text if text.isdigit() else "_" + text


def _wins(box: Box, other: Box) -> bool:
    """Asterisk takes `box` over `other` for a number both match: at the first position
    where they differ, the one matching fewer characters is the more specific."""
    for mine, theirs in zip(box, other, strict=True):
        if mine != theirs:
            return len(mine) < len(theirs) or (len(mine) == len(theirs)
                                               and min(mine) < min(theirs))
    return False


def _minus(box: Box, other: Box) -> list[Box]:
    """The numbers of `box` that `other` does not match, as boxes."""
    if any(not (a & b) for a, b in zip(box, other, strict=True)):
        return [box]
    found = []
    for i, (a, b) in enumerate(zip(box, other, strict=True)):
        if a - b:
            same = (x & y for x, y in zip(box[:i], other[:i], strict=True))
            found.append((*same, a - b, *box[i + 1:]))
    return found


def _fixed(name: str) -> list[str]:
    """An open-ended form as digits only: `_00Z.` -> `_00ZX` ... `_00ZX{17}`."""
    if not open_ended(name):
        return [name]
    return [name[:-1] + "X" * k for k in range(1, TRANSFER_DIGITS + 1)]


def _transfer(plan: NumberingPlan, group: str, allowed: frozenset[CallClass]) -> Context:
    """A blind transfer by a phone of `group`: the users, and the outside numbers of the
    classes the group may call. res_pjsip_refer refuses a REFER whose number does not exist
    in the phone's TRANSFER_CONTEXT before anything moves (the phone gets the refusal, the
    caller stays with it), so only the numbers `wildix-outgoing` would route in an allowed
    class exist here: open-ended forms written as digits only (a number with anything else
    does not exist), less the numbers a more specific form of another class (or a refusal)
    takes there (Italy: `0XXXXX.` national, but `00Z.` international). The transferred
    caller (a trunk's channel has no group) then leaves with the group's rights."""
    steps = (f"Set({v.GROUP}={group})", f"Set({v.DID}=)",
             f"Goto({OUTGOING_CONTEXT},${{EXTEN}},1)")
    ok: list[Box] = []
    refused: list[Box] = []
    for form in _forms(plan):
        c = _form_class(form)
        keep = c is not None and (c in allowed or c is CallClass.EMERGENCY)
        (ok if keep else refused).extend(_box(n) for n in _fixed(form.name))
    kept: list[Box] = []
    for box in ok:
        pieces = [box]
        for other in refused:
            if len(other) == len(box) and _wins(other, box):
                pieces = [p for piece in pieces for p in _minus(piece, other)]
        kept += pieces
    names = list(dict.fromkeys(_pattern(b) for b in kept))
    return Context(transfer_context(group), tuple(extension(n, *steps) for n in names),
                   (EXTENSIONS_CONTEXT,))


def emergency_extensions(plan: NumberingPlan) -> list[Extension]:
    """`wildix-emergency`, included first by every procedure: an emergency number wins over
    the procedure's own numbers and over internal numbers it is a prefix of (15 before room
    150, which would otherwise answer 484), whatever the caller's procedure. Only phones
    call emergency services: a trunk's caller whose called number became one (a procedure's
    `correct_called_number`, a forward) is refused, never sent out as an emergency call."""
    found: list[Extension] = []
    out = plan.outside_line_prefix
    for number in plan.emergency_numbers:
        for dialled in (number, out + number) if out else (number,):
            found.append(extension(dialled,
                              f'GotoIf($["{var(v.CALL_TYPE)}" = "external"]?refused)',
                              f"Gosub({ROUTE_CONTEXT},{CallClass.EMERGENCY},1({number}))",
                              "Hangup()", ("refused", f"Hangup({UNALLOCATED})")))
    return found


def emergency_trunks(site: Site) -> list[str]:
    """Every trunk that can carry an emergency call, in the order they are tried: the
    emergency class's trunk group, then the trunks of every other trunk group. An emergency
    call that one group cannot place is not given up while another trunk might place it."""
    routes = outgoing(site)
    groups = sorted(site.trunk_groups,
                    key=lambda g: g.name != routes.get(CallClass.EMERGENCY))
    return list(dict.fromkeys(t for g in groups for t in g.trunks))


def class_limits(site: Site) -> dict[CallClass, int]:
    """The classes whose calls at once are limited (WMS "appels simultanés max")."""
    return {c.call_class: c.max_calls for c in site.dialplan.general.classes
            if c.max_calls is not None}


#: What `Gosub(wildix-class-limit,<class>,1)` returns when the class has no place left.
CLASS_FULL = "full"


def _class_limits(site: Site) -> list[Extension]:
    """One extension per limited class: the call joins the class's group, then counts
    (fail closed), and returns CLASS_FULL past the limit."""
    return [extension(str(call_class), f"Set(GROUP(class)={call_class})",
                 f"Return(${{IF($[${{GROUP_COUNT({call_class}@class)}} > {limit}]"
                 f"?{CLASS_FULL}:)}})")
            for call_class, limit in class_limits(site).items()]


def braked_classes(site: Site) -> frozenset[CallClass]:
    """The classes the call history's toll-fraud brake may refuse."""
    history = site.call_history
    return frozenset(t.call_class for t in history.limits) if history.enabled else frozenset()


def _route(site: Site) -> list[Extension]:
    routes = outgoing(site)
    limits = class_limits(site)
    braked = braked_classes(site)
    found: list[Extension] = []
    for call_class in CallClass:
        if call_class is CallClass.INTERNAL:
            continue
        steps: list[Step] = []
        if call_class is CallClass.EMERGENCY:  # trunks that hide callers show them here
            steps.append(f"Set({v.EMERGENCY}=1)")
        else:
            steps += [f"GotoIf(${{DIALPLAN_EXISTS({acl_context(var(v.GROUP))},"
                      f"{call_class},1)}}?allowed)",
                      f"Hangup({REJECTED})", ("allowed", "NoOp()")]
        if call_class in braked:  # the toll-fraud brake: 403, the record says over_limit
            steps.append(brake_check(str(call_class), "braked"))
        limit = limits.get(call_class)
        if limit is not None:
            steps += [f"Gosub({CLASS_LIMIT_CONTEXT},{call_class},1)",
                      f'GotoIf($["${{GOSUB_RETVAL}}" = "{CLASS_FULL}"]?full)']
        group = routes.get(call_class)
        context = trunk_group_context(group) if group else None
        if call_class is CallClass.EMERGENCY and emergency_trunks(site):
            context = EMERGENCY_TRUNKS_CONTEXT
        steps += [f"Gosub({context},s,1(${{ARG1}}))" if context
                  else f"Hangup({NO_ROUTE})", "Return()"]
        if limit is not None:
            steps += [("full", OVER_LIMIT_MARK), f"Hangup({CONGESTION})"]
        if call_class in braked:
            steps += [("braked", OVER_LIMIT_MARK), f"Hangup({REJECTED})"]
        found.append(extension(str(call_class), *steps))
    return found


def _format(plan: NumberingPlan, variable: str, label: str) -> list[Step]:
    """E.164 in `variable` -> the national format (own country) or international prefix."""
    cc = "+" + plan.country_code
    return [f'GotoIf($["${{{variable}:0:{len(cc)}}}" != "{cc}"]?{label})',
            f"Set({variable}={plan.national_prefix}${{{variable}:{len(cc)}}})",
            f"Goto({label}-done)",
            (label, f'GotoIf($["${{{variable}:0:1}}" != "+"]?{label}-done)'),
            f"Set({variable}={plan.international_prefix}${{{variable}:1}})",
            (f"{label}-done", "NoOp()")]


#: What a trunk group passes as ARG2 to its last trunk: nothing to fail over to, so the
#: provider is given all the time it takes (no setup timeout).
LAST_TRUNK = "last"


def _trunk(trunk: Trunk, plan: NumberingPlan) -> Extension:
    # digits and '+' only (admitted before; filtered again here so that no later change
    # of the path to this line can hand Dial() anything else)
    steps: list[Step] = ["Set(DEST=${FILTER(+0-9,${ARG1})})",
                                          f'ExecIf($["${{DEST}}" = ""]?Hangup({UNALLOCATED}))']
    if trunk.max_calls is not None:
        steps += [f"Set(GROUP(trunk)={trunk.name})",
                  f"GotoIf($[${{GROUP_COUNT({trunk.name}@trunk)}} > {trunk.max_calls}]?next)"]
    main = trunk.main_number
    if trunk.caller_id is CallerIdMode.ANONYMOUS:
        # hidden, except from emergency services, which must be able to call back
        steps += [f'GotoIf($["{var(v.EMERGENCY)}" = "1"]?cid-shown)',
                  "Set(CALLERID(pres)=prohib)", "Goto(cid-done)", ("cid-shown", "NoOp()")]
    steps.append("Set(CALLERID(pres)=allowed)")
    if trunk.caller_id is CallerIdMode.MAIN_NUMBER:
        steps.append(f"Set(CID={main})")
    else:  # the user's office DID, else the trunk's main number, else hidden
        steps.append(f"Set(CID={var(v.DID)})")
        fallback = f"Set(CID={main})" if main else "Set(CALLERID(pres)=prohib)"
        steps += ['GotoIf($["${CID}" != ""]?cid)', fallback, ("cid", "NoOp()")]
    if trunk.number_format is NumberFormat.NATIONAL:
        steps += _format(plan, "CID", "cidfmt")
    steps += ['ExecIf($["${CID}" != ""]?Set(CALLERID(num)=${CID}))', ("cid-done", "NoOp()")]
    caller_name = trunk.effective_caller_name
    if caller_name is CallerName.NONE:
        steps.append("Set(CALLERID(name)=)")
    elif caller_name is CallerName.TRUNK:  # an Identifier: nothing to escape
        steps.append(f"Set(CALLERID(name)={trunk.name})")
    if trunk.number_format is NumberFormat.NATIONAL:
        steps += _format(plan, "DEST", "destfmt")
    # variables.TRUNK_DIAL_OPTIONS: only a mobility leg sets it (its confirmation, services.py)
    # A bounded attempt: without progress (180/183) within setup_timeout, Dial gives up
    # (NOANSWER) and the next trunk is tried; the last trunk of a group is not cut.
    steps.append(f'Set({v.SETUP}=${{IF($["${{ARG2}}" = "{LAST_TRUNK}"]?:'
                 f'^{trunk.setup_timeout})}})')
    steps += [f"Dial(PJSIP/${{FILTER(+0-9,${{DEST}})}}@{trunk_endpoint(trunk.name)},"
              f"{var(v.SETUP)},"
              f"{var(v.TRUNK_DIAL_OPTIONS)})",
              'GotoIf($["${DIALSTATUS}" = "CHANUNAVAIL"]?next)',
              'GotoIf($["${DIALSTATUS}" = "NOANSWER"]?next)',
              'GotoIf($["${DIALSTATUS}" = "CONGESTION"]?next)',
              'GotoIf($["${DIALSTATUS}" = "BUSY"]?busy)',
              "Hangup()",
              ("busy", f"Hangup({BUSY})"),
              # the trunk's place (max_calls) goes with the call to the next trunk
              ("next", "Set(GROUP(trunk)=)"), "Return(next)"]
    return extension("s", *steps)


def dialplan_contexts(site: Site) -> list[Context]:
    """Every context of outgoing routing, in file order."""
    plan = numbering_plan(site)
    contexts = [admission_context(), Context(EMERGENCY_CONTEXT, tuple(emergency_extensions(plan))),
                Context(OUTGOING_CONTEXT, tuple(_forms(plan))),
                Context(ROUTE_CONTEXT, tuple(_route(site))),
                Context(CLASS_LIMIT_CONTEXT, tuple(_class_limits(site)))]
    for group in site.groups:
        contexts.append(Context(acl_context(group.name), tuple(
            extension(str(c), "NoOp()") for c in CallClass if c in group.allowed)))
        contexts.append(_transfer(plan, group.name, group.allowed))
    trunk_groups = [(trunk_group_context(g.name), g.trunks) for g in site.trunk_groups]
    if emergency_trunks(site):
        trunk_groups.append((EMERGENCY_TRUNKS_CONTEXT, emergency_trunks(site)))
    for name, trunks in trunk_groups:
        steps: list[Step] = []
        for k, member in enumerate(trunks):
            last = f",{LAST_TRUNK}" if k == len(trunks) - 1 else ""
            steps += [f"Gosub({trunk_context(member)},s,1(${{ARG1}}{last}))",
                      'GotoIf($["${GOSUB_RETVAL}" != "next"]?done)']
        steps += [f"Hangup({CONGESTION})", ("done", "Return()")]
        contexts.append(Context(name, (extension("s", *steps),)))
    for trunk in site.trunks:
        contexts.append(Context(trunk_context(trunk.name), (_trunk(trunk, plan),)))
    return contexts


# --- pjsip.conf ----------------------------------------------------------------------------

@dataclass(frozen=True)
class PjsipTrunk:
    endpoint: str
    codecs: str
    context: str
    contact: str
    auth: str | None
    username: str | None
    secret: str | None
    registration: str | None
    server_uri: str | None
    client_uri: str | None
    identify: str | None
    match: list[str]
    outbound_proxy: str | None
    anonymous: bool
    qualify_frequency: int
    #: T.38 over UDPTL: None (refused), else (error correction, max datagram) as PJSIP says
    t38: tuple[str, int] | None = None


def pjsip_trunks(site: Site) -> list[PjsipTrunk]:
    """The PJSIP objects of each trunk; incoming calls enter the trunk's own context."""
    out: list[PjsipTrunk] = []
    for t in site.trunks:
        endpoint = trunk_endpoint(t.name)
        hostport = f"{t.host}:{t.port}"
        registration = t.auth is TrunkAuth.REGISTRATION
        # A registration trunk's calls are told apart by the `line` parameter of the contact
        # it registered, never by address: its registrar may share an address with phones.
        match = [] if registration else t.identify_addresses
        out.append(PjsipTrunk(
            endpoint=endpoint, codecs=",".join(str(c) for c in t.codecs),
            context=trunk_incoming_context(t.name),
            contact=f"sip:{hostport}",
            auth=f"{endpoint}-auth" if registration else None,
            username=t.username if registration else None,
            secret=t.secret if registration else None,
            registration=f"{endpoint}-reg" if registration else None,
            server_uri=f"sip:{t.registrar or t.host}:{t.port}" if registration else None,
            client_uri=f"sip:{t.username}@{hostport}" if registration else None,
            identify=f"{endpoint}-identify" if match else None,
            match=match,
            outbound_proxy=f"sip:{t.outbound_proxy};lr" if t.outbound_proxy else None,
            anonymous=t.caller_id is CallerIdMode.ANONYMOUS,
            qualify_frequency=t.qualify_frequency,
            t38=(t.t38_error_correction.value, t.t38_max_datagram)
            if t.fax is TrunkFax.T38 else None))
    return out
