"""Calling one user, as extensions.conf contexts: the call-user subroutine, its forwards
and the Alert-Info handler.

Not a generated file (extensions.py lays these out). The call-user subroutine acts on the
FastAGI service's decision (`wildix_ast.calls.call_user`); `wildix-forward` is what it dials
to forward; `wildix-alert-info` is the pre-dial handler that gives the called phone its
ringtone.

Every value the decision carries is filtered again here to the characters it may hold
before it reaches an argument.
"""

from __future__ import annotations

from wildix_ast.asterisk import names
from wildix_ast.asterisk.dialplan_builder import (
    REJECTED,
    Context,
    Step,
    admit,
    agi,
    extension,
    var,
)
from wildix_ast.calls import variables as v
from wildix_ast.calls.call_user import CALL_USER_ROUTE, MAX_FORWARDS

_BUSY_STATES = "INUSE|BUSY|RINGING|RINGINUSE|ONHOLD"
"""Device states in which a user without call waiting is busy."""
_IN_CALL_STATES = "INUSE|RINGINUSE|ONHOLD"
"""Device states in which a second call gets the call-waiting beep."""


def call_user(extension: str, mailbox: str) -> str:
    """The step that calls a user through the subroutine (`mailbox` empty: none)."""
    return f"Gosub({names.CALL_USER_CONTEXT},s,1({extension},{mailbox}))"


def mobility_leg(extension: str) -> str:
    """What the subroutine appends to its Dial string when mobility is on: the Local
    channel of `wildix-mobility` (service_contexts.py) for the user's mobile."""
    return f"&Local/{extension}@{names.MOBILITY_CONTEXT}/n"


def _device_state() -> str:
    return "${DEVICE_STATE(PJSIP/${ARG1})}"


def _unreachable(realtime: bool) -> str:
    """No phone of the user can ring: its device is UNAVAILABLE (`realtime`: and it has no
    registered contact either). Realtime endpoints (issue 22) need the second half:
    res_pjsip keeps a realtime endpoint it did not load at start `Unavailable` although
    its registered contact answers (measured in the lab: `pjsip show endpoint` said
    Unavailable beside an Avail contact), and every call to it went to voicemail. In
    realtime mode a registered phone that fails qualify is then dialled (its Dial fails:
    CHANUNAVAIL, or the ring timeout) before its unavailable forward; the file mode is
    unchanged."""
    unavailable = f'"{_device_state()}" = "UNAVAILABLE"'
    if not realtime:
        return unavailable
    return f'{unavailable} & "${{PJSIP_DIAL_CONTACTS(${{ARG1}})}}" = ""'


def _set_inherited(name: str, chars: str) -> str:
    """Copies a decision variable, filtered, to the forward's channel (`__`: inherited)."""
    return f"Set(__{name}=${{FILTER({chars},{var(name)})}})"


def _other_nodes(remote: tuple[str, ...]) -> list[Step]:
    """No local phone of the user can ring: try the other nodes of the site at once (their
    trunks' endpoints), where the user's phone may be registered (issue 22). The receiving
    node only rings its own phones (`wildix-from-nodes`): no loop."""
    if not remote:
        return []
    legs = "&".join(f"PJSIP/${{ARG1}}@{endpoint}" for endpoint in remote)
    return [f"Dial({legs},${{RING_TIMEOUT}})",
            'GotoIf($["${DIALSTATUS}" = "ANSWER" | "${DIALSTATUS}" = "CANCEL"]?done)']


def _call_user_steps(realtime: bool, remote: tuple[str, ...] = ()) -> list[Step]:
    action, tone, leg = "${action}", "${tone}", "${leg}"
    answered = '"${DIALSTATUS}" = "ANSWER"'
    return [
        *agi(CALL_USER_ROUTE, "${ARG1}", var(v.CALL_TYPE)),
        f'GotoIf($["{var(v.AGI_STATUS)}" != "OK"]?direct)',
        f"Set(LOCAL(action)=${{FILTER(a-z,{var(v.ACTION)})}})",
        f'GotoIf($["{action}" = "reject"]?reject)',
        f'GotoIf($["{action}" = "busy"]?busy)',
        f'GotoIf($["{action}" = "forward"]?always)',
        f'GotoIf($["{action}" != "ring"]?direct)',
        f'GotoIf($["{var(v.CALL_WAITING)}" = "1"]?ring)',
        f'GotoIf(${{REGEX("^({_BUSY_STATES})$" {_device_state()})}}?busy)',
        ("ring", f'GotoIf($["{var(v.MISSED_MAIL)}" != "1"]?reachable)'),
        f"Set(CHANNEL(hangup_handler_push)={names.MISSED_CALL_CONTEXT},s,1(${{ARG1}}))",
        ("reachable", f'GotoIf($[{_unreachable(realtime)} & '
                      f'"{var(v.MOBILITY)}" != "1"]?:online)'),
        *_other_nodes(remote),
        f"Set({v.USER_DIAL_STATUS}=CHANUNAVAIL)",
        "Goto(unavailable)",
        ("online", "NoOp()"),
        f"Set(LOCAL(t)=${{FILTER(0-9,{var(v.TIMEOUT)})}})",
        'Set(LOCAL(t)=${IF($["${t}" = ""]?${RING_TIMEOUT}:${t})})',
        f"Set(LOCAL(tone)=${{FILTER(0-9A-Za-z_-,{var(v.RINGTONE)})}})",
        f'Set(LOCAL(leg)=${{IF($["{var(v.MOBILITY)}" = "1"]?{mobility_leg("${ARG1}")})}})',
        f'GotoIf($["{var(v.POPUP_URL)}" = ""]?beep)',
        f"UserEvent(WildixPopup,Extension: ${{ARG1}},URL: {var(v.POPUP_URL)})",
        ("beep", f'GotoIf($["{var(v.CALL_WAITING_BEEP)}" != "1"]?dial)'),
        f'GotoIf(${{REGEX("^({_IN_CALL_STATES})$" {_device_state()})}}?:dial)',
        f"Originate(Local/${{ARG1}}@{names.CW_BEEP_CONTEXT}/n,exten,"
        f"{names.CW_BEEP_PLAY_CONTEXT},s,1,,a)",
        ("dial", f'GotoIf($["{tone}" = ""]?plain)'),
        f"Dial(PJSIP/${{ARG1}}{leg},${{t}},b({names.ALERT_INFO_CONTEXT}^s^1({tone})))",
        "Goto(dialled)",
        ("plain", f"Dial(PJSIP/${{ARG1}}{leg},${{t}})"),
        ("dialled", f"Set({v.USER_DIAL_STATUS}=${{DIALSTATUS}})"),
        f'GotoIf($[{answered} | "${{DIALSTATUS}}" = "CANCEL"]?done)',
        'GotoIf($["${DIALSTATUS}" = "BUSY"]?busy)',
        ("unavailable", f"Set(LOCAL(to)={var(v.FORWARD_UNAVAILABLE)})"),
        "Set(LOCAL(greeting)=u)",
        "Goto(forward)",
        ("busy", f"Set(LOCAL(to)={var(v.FORWARD_BUSY)})"),
        "Set(LOCAL(greeting)=b)",
        "Goto(forward)",
        ("always", f"Set(LOCAL(to)={var(v.FORWARD)})"),
        "Set(LOCAL(greeting)=u)",
        ("forward", 'GotoIf($["${to}" = "" | "${to}" = "VOICEMAIL"]?mailbox)'),
        f"Set(LOCAL(hops)=$[0${{FILTER(0-9,{var(v.FORWARDS)})}} + 1])",
        f"GotoIf($[${{hops}} > {MAX_FORWARDS}]?mailbox)",
        f"Set(__{v.FORWARDS}=${{hops}})",
        _set_inherited(v.FORWARD_GROUP, "0-9A-Za-z_-"),
        _set_inherited(v.FORWARD_PROCEDURE, "0-9A-Za-z_-"),
        _set_inherited(v.FORWARD_DID, "+0-9"),
        f"Dial(Local/${{FILTER(+0-9,${{to}})}}@{names.FORWARD_CONTEXT})",
        f'GotoIf($[{answered} | "${{DIALSTATUS}}" = "CANCEL" | '
        '"${DIALSTATUS}" = "BUSY"]?done)',
        "Goto(mailbox)",
        ("reject", f"Hangup({REJECTED})"),
        ("direct", f'GotoIf($[{_unreachable(realtime)}]?direct-unavailable)'),
        "Dial(PJSIP/${ARG1},${RING_TIMEOUT})",
        f"GotoIf($[{answered}]?done)",
        'Set(LOCAL(greeting)=${IF($["${DIALSTATUS}" = "BUSY"]?b:u)})',
        "Goto(mailbox)",
        ("direct-unavailable", "Set(LOCAL(greeting)=u)"),
        *_other_nodes(remote),
        ("mailbox", 'GotoIf($["${ARG2}" = ""]?done)'),
        f"VoiceMail(${{ARG2}}@{names.VOICEMAIL_CONTEXT},${{greeting}})",
        ("done", "Return()"),
    ]


def call_user_context(realtime: bool = False, remote: tuple[str, ...] = ()) -> Context:
    """The call-user subroutine: ARG1 the user's extension (its PJSIP endpoint), ARG2 its
    mailbox (empty: none); `realtime`: the users' endpoints are realtime objects;
    `remote`: the trunks' endpoints of the site's other nodes."""
    return Context(names.CALL_USER_CONTEXT,
                   (extension("s", *_call_user_steps(realtime, remote)),),
                   comment=(
        "Call a user: ARG1 is its extension (its PJSIP endpoint), ARG2 its mailbox "
        "(empty: none).",
        "The FastAGI service answers the user's preferences for this call's type "
        f"({v.CALL_TYPE}:",
        "empty = internal, `external` from trunks) and caller; only an OK answer is acted "
        "on. The",
        "service down, slow (it answers FAILED past its timeout) or answering garbage: the "
        "`direct`",
        "path rings the user as if there were no preferences (never a forward).",
        "Every value used as an argument is filtered to the characters it may hold.",
        "WMS services (wildix_ast/asterisk/service_contexts.py): "
        f"{v.MOBILITY} adds the mobile leg beside",
        "the phone (also when the phone is offline: then only the mobile rings); "
        f"{v.MISSED_MAIL}",
        "pushes a hang-up handler that queues the missed-call mail unless the user's own "
        "Dial was",
        "answered (an offline phone counts as missed); "
        f"{v.POPUP_URL} (expanded for this call) is",
        "published as the AMI UserEvent WildixPopup for the user's clients; "
        f"{v.CALL_WAITING_BEEP} beeps",
        "into the call the user is on when a second call rings (call waiting)."))


def forward_context() -> Context:
    """A forward, dialled by the call-user subroutine as `Local/<number>@wildix-forward`."""
    return Context(names.FORWARD_CONTEXT, (extension(
        "_[0-9+].", *admit(),
        f"Set({v.GROUP}={var(v.FORWARD_GROUP)})",
        f"Set({v.DID}={var(v.FORWARD_DID)})",
        f"Goto({names.PROCEDURE_PREFIX}{var(v.FORWARD_PROCEDURE)},${{EXTEN}},1)"),),
        comment=(
            "A forward leaves with the forwarding user's rights: its ACL group, its "
            "procedure (internal",
            "numbers, then its outgoing routing and class checks) and its office DID as "
            "caller ID. A",
            "forward that fails (refused by its class, unreachable; not busy) ends in the "
            "mailbox."))


def alert_info_context() -> Context:
    return Context(names.ALERT_INFO_CONTEXT, (extension(
        "s", "Set(PJSIP_HEADER(add,Alert-Info)=<http://127.0.0.1>\\;info=${ARG1})",
        "Return()"),),
        comment=("Pre-dial handler of the called phone's channel: the ringtone (ARG1) as "
                 "Alert-Info.",))


def from_nodes_context() -> Context:
    """Calls from the site's other nodes (their trunks, authenticated both ways): ring the
    called user's local phone only; no phone here: unavailable (cause 20)."""
    return Context(names.FROM_NODES_CONTEXT, (extension(
        "_X.", "Set(called=${FILTER(0-9,${EXTEN})})",  # not a Gosub: no LOCAL()
        'GotoIf($["${PJSIP_DIAL_CONTACTS(${called})}" = ""]?absent)',
        "Dial(PJSIP/${called},${RING_TIMEOUT})",
        "Hangup()",
        ("absent", "Hangup(20)")),),
        comment=("Calls from the other nodes of the site (issue 22): only this node's "
                 "phones ring, never another node.",))


def call_user_contexts(realtime: bool = False,
                       remote: tuple[str, ...] = ()) -> list[Context]:
    """The contexts of this module, in file order (`remote`: the other nodes' trunks)."""
    nodes = [from_nodes_context()] if remote else []
    return [call_user_context(realtime, remote), forward_context(), alert_info_context(),
            *nodes]
