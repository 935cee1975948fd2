"""WMS services in the dialplan: the feature codes (DND, forwards) and mobility.
Not a generated file: extensions.py lays these contexts out (like outgoing.py's).

Feature codes: the dialplan only collects digits. Each code is a handful of patterns of
digits, '*' and '+' (nothing else a phone sends can match, so nothing else reaches the
FastAGI route); `wildix-feature-code` asks the route `feature-code` with the caller's PJSIP
endpoint (never its caller ID: a phone can claim any) and plays what it answers. The route
writes the store, so the next call follows the change without any reload.

Mobility: the call-user subroutine adds `&Local/<extension>@wildix-mobility/n` to its Dial
when the call's type has mobility on. That leg asks the route `mobility` for the user's
mobile, delay, confirmation and ACL group, waits the delay unanswered (the caller's Dial
keeps ringing the phone), then takes the ordinary outgoing route of the mobile number (call
classes, the user's ACL group, class limits, trunk failover). With confirmation the trunk's
Dial runs `U(wildix-mobility-confirm)` on the mobile's channel once it answers: it says who
calls and waits for `*`. The Local leg is answered only when that subroutine returns, so
until `*` the caller's Dial still sees a ringing leg, and a mobile's voicemail (which answers
but presses nothing) is hung up (`GOSUB_RESULT=ABORT`) while the phone keeps ringing. A
mobility leg that fails (service down, class refused) only ends itself.
"""

from __future__ import annotations

from wildix_ast.asterisk.dialplan_builder import (
    ADMIT_CODE,
    REJECTED,
    UNALLOCATED,
    Context,
    Extension,
    Step,
    admitted,
    agi,
    extension,
    var,
)
from wildix_ast.asterisk.names import (
    CW_BEEP_CONTEXT,
    CW_BEEP_PLAY_CONTEXT,
    EMERGENCY_CONTEXT,
    FEATURE_CODE_CONTEXT,
    HANDSET_LOGIN_CONTEXT,
    HOT_DESK_CONTEXT,
    MISSED_CALL_CONTEXT,
    MOBILITY_CONFIRM_CONTEXT,
    MOBILITY_CONTEXT,
    NO_CALLS_CONTEXT,
    OUTGOING_CONTEXT,
    PROCEDURE_PREFIX,
    SERVICES_CONTEXT,
    SHARED_VOICEMAIL_CONTEXT,
    SHARED_VOICEMAIL_OF_CONTEXT,
    TEST_CALL_CONTEXT,
    TEST_CALL_FAMILY,
    TEST_CALL_ID_DIGITS,
    VOICEMAIL_CONTEXT,
    VOICEMAIL_PIN_CONTEXT,
    has_mailbox,
)
from wildix_ast.asterisk.pjsip_notify import CHECK_SYNC
from wildix_ast.calls import variables as v
from wildix_ast.model.preferences import VOICEMAIL
from wildix_ast.model.site import Site

CONFIRM_SECONDS = 5
CONFIRM_ATTEMPTS = 2


def feature_code_extensions(site: Site) -> list[tuple[str, str, str]]:
    """(extension or `_` pattern, service, option) of every feature code: the option is
    what follows the code (`${EXTEN:n}`), or the word VOICEMAIL for the code followed by
    `*2*` and the voicemail code (an exact extension, so it wins over the number pattern
    when the voicemail code is digits)."""
    found: list[tuple[str, str, str]] = []
    for service, code in site.dialplan.feature_codes.by_service().items():
        rest = f"${{EXTEN:{len(code)}}}"
        found += [(code, service, ""), (f"_{code}*X", service, rest)]
        if service.is_forward:
            found += [(f"_{code}*2*X.", service, rest), (f"_{code}*2*+X.", service, rest),
                      (f"{code}*2*{site.dialplan.voicemail}", service, f"*2*{VOICEMAIL}")]
    return found


def _services(site: Site) -> Context:
    return Context(SERVICES_CONTEXT, (*(
        admitted(exten, f"Gosub({FEATURE_CODE_CONTEXT},s,1({service},{option}))", "Hangup()",
                 kind=ADMIT_CODE)
        for exten, service, option in feature_code_extensions(site)),
        _shared_voicemail_code(site), _hotline(site), _login_code(site)))


#: refused logins one call may try before it is hung up (the lock counts across calls)
LOGIN_TRIES = 3


def _login_code(site: Site) -> Extension:
    return extension(site.dialplan.feature_codes.login,
                     f"Gosub({HANDSET_LOGIN_CONTEXT},s,1())", "Hangup()")


def _no_calls() -> Context:
    """NOTIFY_ENDPOINT's context: no call is taken."""
    return Context(NO_CALLS_CONTEXT, (extension("s", "Hangup()"),))


def _hot_desk(site: Site) -> Context:
    """What a device assigned to nobody may call (its own endpoint `hd-<mac>`): the login
    code, and the emergency numbers (included first, as in every procedure: an emergency
    call from any phone on the desk goes out). Nothing else matches (no catch-all here: it
    would win over the included emergency numbers), so anything else is refused."""
    return Context(HOT_DESK_CONTEXT, (_login_code(site),), (EMERGENCY_CONTEXT,))


def _handset_login() -> Context:
    """Handset login/logout (calls.handset_login). The first request identifies the phone
    and logs it out if it is logged in; otherwise the caller types an extension and a PIN
    (each ended by `#` or a pause). The PIN is read into a variable the route fetches
    itself (GET VARIABLE), never passed as an argument (arguments are in the verbose
    log), and cleared right after. The service down: nothing changes."""
    where = ("${CHANNEL(endpoint)}", "${CHANNEL(pjsip,remote_addr)}")
    failed = f'$["{var(v.AGI_STATUS)}" != "OK"]'
    typed = f"${{FILTER(0-9,{var(v.HANDSET_EXTENSION)})}}"
    return Context(HANDSET_LOGIN_CONTEXT, (extension(
        "s",
        "Answer()",
        f"Set({v.HANDSET_TRIES}=0)",
        f"Set({v.HANDSET_PROMPT}=agent-user)",
        *agi("handset-login", *where),
        f"GotoIf({failed}?failed)",
        f'GotoIf($["{var(v.HANDSET_RESULT)}" != "ask"]?said)',
        # DTMF interrupts the prompt (a retry's is "login incorrect, enter..."): no key lost
        ("ask", f"Read({v.HANDSET_EXTENSION},{var(v.HANDSET_PROMPT)},8,,1,10)"),
        f"Read({v.HANDSET_PIN},agent-pass,16,,1,10)",
        *agi("handset-login", *where, typed, "try"),
        f"Set({v.HANDSET_PIN}=)",
        f"GotoIf({failed}?failed)",
        f'GotoIf($["{var(v.HANDSET_RESULT)}" != "refused"]?said)',
        f"Set({v.HANDSET_TRIES}=$[{var(v.HANDSET_TRIES)} + 1])",
        f"GotoIf($[{var(v.HANDSET_TRIES)} >= {LOGIN_TRIES}]?said)",
        f"Set({v.HANDSET_PROMPT}={var(v.HANDSET_PLAYBACK)})",
        "Goto(ask)",
        ("said", f'ExecIf($["{var(v.HANDSET_PLAYBACK)}" != ""]?'
                 f"Playback({var(v.HANDSET_PLAYBACK)}))"),
        f'GotoIf($["{var(v.HANDSET_RESULT)}" != "logged_in" & '
        f'"{var(v.HANDSET_RESULT)}" != "logged_out"]?done)',
        # the phone fetches its configuration again: a NOTIFY to the contact it called
        # from (its endpoint has one: max_contacts = 1), sent from NOTIFY_ENDPOINT
        f"Set({v.HANDSET_CONTACT}=${{PJSIP_AOR(${{CHANNEL(endpoint)}},contact)}})",
        f"Set({v.HANDSET_CONTACT}="
        rf"${{PJSIP_CONTACT(${{CUT({v.HANDSET_CONTACT},\,,1)}},uri)}})",
        f'ExecIf($["{var(v.HANDSET_CONTACT)}" != ""]?'
        f"PJSIPNotify(<{var(v.HANDSET_CONTACT)}>,{CHECK_SYNC}))",
        ("done", "Return()"),
        ("failed", f"Set({v.HANDSET_PIN}=)"), "Playback(beeperr&invalid)", "Return()"),))


def _shared_voicemail_code(site: Site) -> Extension:
    """`<voicemail code>*<mailbox>` opens a mailbox (see `_shared_voicemail`)."""
    code = site.dialplan.voicemail
    return admitted(f"_{code}*X.", "Answer()",
                    f"Gosub({SHARED_VOICEMAIL_CONTEXT},s,1(${{EXTEN:{len(code) + 1}}}))",
                    "Hangup()", kind=ADMIT_CODE)


def _shared_voicemail(site: Site) -> list[Context]:
    """A mailbox opens without PIN for the user who shares it (the caller's endpoint,
    authenticated by SIP digest, is looked up in a rendered list: MWI needs a PJSIP render
    anyway), with the mailbox's PIN for anyone else."""
    boxes = {u.extension for u in site.users if has_mailbox(u)}
    pairs = [(u.extension, u.preferences.shared_voicemail) for u in site.users
             if u.type.has_phone and u.preferences.shared_voicemail in boxes]
    mailbox = f"${{ARG1}}@{VOICEMAIL_CONTEXT}"
    return [
        Context(SHARED_VOICEMAIL_CONTEXT, (extension(
            "s",
            f"GotoIf(${{DIALPLAN_EXISTS({SHARED_VOICEMAIL_OF_CONTEXT},"
            "${CHANNEL(endpoint)}*${ARG1},1)}?shared)",
            f"Gosub({VOICEMAIL_PIN_CONTEXT},s,1(${{ARG1}}))", "Return()",
            ("shared", f"VoiceMailMain({mailbox},s)"), "Return()"),)),
        # `s` keeps the context defined when nobody shares (it never matches `<user>*<box>`)
        Context(SHARED_VOICEMAIL_OF_CONTEXT, (extension("s", "NoOp()"), *(
            extension(f"{user}*{shared}", "NoOp()") for user, shared in pairs))),
    ]


#: Wrong PINs one call may try before it is hung up (Asterisk's `maxlogins`).
PIN_TRIES = 3


def _voicemail_pin() -> Context:
    """A mailbox opened with its PIN (`ARG1`): the PIN is asked here, not by VoiceMailMain,
    so that the FastAGI service counts wrong PINs across calls and locks the mailbox (a
    wrong PIN per call only, as VoiceMailMain counts them, let anyone guess on). The PIN is
    compared with the mailbox's own (`VM_INFO`) inside Asterisk: it never reaches the
    service. The service down or a locked mailbox: nothing opens (fail closed)."""
    mailbox = f"${{ARG1}}@{VOICEMAIL_CONTEXT}"
    locked = f'$["{var(v.AGI_STATUS)}" != "OK" | "{var(v.VOICEMAIL_LOCKED)}" != "0"]'
    return Context(VOICEMAIL_PIN_CONTEXT, (extension(
        "s",
        f"Set({v.VOICEMAIL_TRIES}=0)",
        f"Set({v.VOICEMAIL_PROMPT}=vm-password)",
        *agi("voicemail-login", "${ARG1}"),
        f"GotoIf({locked}?locked)",
        # DTMF interrupts the prompt (a retry plays vm-incorrect first): no key is lost
        ("ask", f"Read({v.VOICEMAIL_PIN},{var(v.VOICEMAIL_PROMPT)},20,,1,10)"),
        f'GotoIf($["{var(v.VOICEMAIL_PIN)}" != "" & '
        f'"{var(v.VOICEMAIL_PIN)}" = "${{VM_INFO({mailbox},password)}}"]?open)',
        *agi("voicemail-failed", "${ARG1}", "${CHANNEL(endpoint)}"),
        f"GotoIf({locked}?locked)",
        f"Set({v.VOICEMAIL_TRIES}=$[{var(v.VOICEMAIL_TRIES)} + 1])",
        f"Set({v.VOICEMAIL_PROMPT}=vm-incorrect&vm-password)",
        f"GotoIf($[{var(v.VOICEMAIL_TRIES)} < {PIN_TRIES}]?ask)",
        "Playback(vm-incorrect&vm-goodbye)", "Return()",
        ("open", f"Set({v.VOICEMAIL_PIN}=)"),
        f"VoiceMailMain({mailbox},s)", "Return()",
        ("locked", f"Set({v.VOICEMAIL_PIN}=)"), "Playback(vm-goodbye)", "Return()"),))


def _hotline(site: Site) -> Extension:
    """WMS hotline. A SIP phone sends nothing when it is lifted, so the phone is set to call
    the hotline code at once when lifted (its own hotline setting, delay 0); the PBX plays
    dial tone for the user's delay (early sound_files, unanswered): digits dialled meanwhile are
    called as usual, silence calls the hotline number. Both go through the user's own
    procedure (its PJSIP endpoint's context), so its call classes apply."""
    procedure = "${PJSIP_ENDPOINT(${CHANNEL(endpoint)},context)}"
    return extension(
        site.dialplan.feature_codes.hotline,
        *agi("hotline", "${CHANNEL(endpoint)}"),
        f'GotoIf($["{var(v.AGI_STATUS)}" != "OK" | "{var(v.HOTLINE)}" = ""]?off)',
        f"Set({v.DIALLED}=)",
        f'GotoIf($["{var(v.HOTLINE_DELAY)}" = "0"]?call)',
        "Progress()",
        f"Read({v.DIALLED},dial,20,in,1,{var(v.HOTLINE_DELAY)})",
        f'GotoIf($["{var(v.DIALLED)}" = ""]?call)',
        f"Goto({procedure},${{FILTER(0-9*#+,{var(v.DIALLED)})}},1)",
        ("call", f"Goto({procedure},{var(v.HOTLINE)},1)"),
        ("off", f"Hangup({UNALLOCATED})"))


def _feature_code() -> Context:
    steps: list[Step] = [
        "Answer()",
        *agi("feature-code", "${CHANNEL(endpoint)}", "${ARG1}", "${ARG2}"),
        f'GotoIf($["{var(v.AGI_STATUS)}" != "OK"]?failed)',
        f"Playback({var(v.FEATURE_CODE_PLAYBACK)})",
        f'ExecIf($["{var(v.FEATURE_CODE_DIGITS)}" != ""]?SayDigits({var(v.FEATURE_CODE_DIGITS)}))',
        "Return()",
        # the service is down: nothing changed, and the caller hears it
        ("failed", "Playback(beeperr&invalid)"),
        "Return()",
    ]
    return Context(FEATURE_CODE_CONTEXT, (extension("s", *steps),))


def _mobility() -> Context:
    steps: list[Step] = [
        *agi("mobility", "${EXTEN}", var(v.CALL_TYPE)),
        f'GotoIf($["{var(v.AGI_STATUS)}" != "OK"]?off)',
        f'GotoIf($["{var(v.MOBILE)}" = ""]?off)',
        # the user's own ACL group decides whether the mobile's class may be called
        f"Set({v.GROUP}={var(v.MOBILITY_GROUP)})",
        f"Set({v.DID}={var(v.MOBILITY_DID)})",
        # inherited by the mobile's channel: what the confirmation says (digits only)
        f"Set(_{v.MOBILITY_CALLER}=${{FILTER(0-9,${{CALLERID(num)}})}})",
        f'GotoIf($["{var(v.MOBILITY_CONFIRM)}" != "1"]?wait)',
        f"Set({v.TRUNK_DIAL_OPTIONS}=U({MOBILITY_CONFIRM_CONTEXT}))",
        ("wait", f"Wait({var(v.MOBILITY_DELAY)})"),
        f"Goto({OUTGOING_CONTEXT},${{FILTER(+0-9,{var(v.MOBILE)})}},1)",
        ("off", "Hangup()"),
    ]
    return Context(MOBILITY_CONTEXT, (admitted("_X.", *steps),))


def _confirm() -> Context:
    steps: list[Step] = [
        "Playback(followme/call-from)",
        f'ExecIf($["{var(v.MOBILITY_CALLER)}" != ""]?SayDigits({var(v.MOBILITY_CALLER)}))',
        f"Read({v.CONFIRM_KEY},vm-press&digits/star,1,,{CONFIRM_ATTEMPTS},{CONFIRM_SECONDS})",
        f'GotoIf($["{var(v.CONFIRM_KEY)}" = "*"]?accept)',
        # not accepted (a voicemail answered, or the person declined): end this leg only
        "Set(GOSUB_RESULT=ABORT)",
        ("accept", "Return()"),
    ]
    return Context(MOBILITY_CONFIRM_CONTEXT, (extension("s", *steps),))


def _missed_call() -> Context:
    """The caller's hang-up handler (ARG1: the user): the user's own Dial was not answered
    (variables.USER_DIAL_STATUS; empty when the caller hung up during it: then DIALSTATUS,
    CANCEL) -> the route queues the mail (once per call)."""
    status = (f'${{IF($["{var(v.USER_DIAL_STATUS)}" = ""]?${{DIALSTATUS}}'
              f':{var(v.USER_DIAL_STATUS)})}}')
    return Context(MISSED_CALL_CONTEXT, (extension(
        "s", f"Set(LOCAL(status)={status})",
        'GotoIf($["${status}" = "ANSWER"]?done)',
        *agi("missed-call", "${ARG1}", var(v.CALL_TYPE)),
        ("done", "Return()")),))


def _call_waiting_beep() -> list[Context]:
    """WMS "Bip de double appel". The call-user subroutine originates a Local channel when
    a second call rings a user already in a call: its ;2 side whispers (ChanSpy `W`, it
    cannot listen) into the user's *bridged* channel (`b`: never the new ringing one),
    what its ;1 side plays: a beep. Both end with the beep."""
    return [
        Context(CW_BEEP_CONTEXT, (admitted(
            "_X.", "UserEvent(WildixCallWaitingBeep,Extension: ${EXTEN})",
            "ChanSpy(PJSIP/${EXTEN}-,qbWES)", "Hangup()"),)),
        Context(CW_BEEP_PLAY_CONTEXT, (extension(
            "s", "Wait(0.6)", "Playback(beep)", "Hangup()"),)),
    ]


def _test_call() -> Context:
    """`test-call` originates `Local/<id>@wildix-test-call` through Asterisk's root-only
    console (no AMI account may originate): the request (group|DID|caller|procedure|number,
    admitted by `services.ami.originate.request_for`) waits in AstDB under a one-time id, taken
    and deleted here. The call can only enter a procedure's context (the prefix is fixed
    here), as that user's ACL group: the same class checks as a call from their phone."""
    def field(k: int) -> str:
        return f"${{CUT({v.TEST_CALL},|,{k})}}"

    return Context(TEST_CALL_CONTEXT, (extension(
        "_" + "[0-9a-f]" * TEST_CALL_ID_DIGITS,
        f"Set({v.TEST_CALL}=${{DB_DELETE({TEST_CALL_FAMILY}/${{EXTEN}})}})",
        f"GotoIf($[\"{var(v.TEST_CALL)}\" = \"\"]?refused)",
        f"Set({v.GROUP}={field(1)})", f"Set({v.DID}={field(2)})",
        f"Set(CALLERID(num)={field(3)})",
        f"Goto({PROCEDURE_PREFIX}{field(4)},{field(5)},1)",
        ("refused", f"Hangup({REJECTED})")),))


def service_contexts(site: Site) -> list[Context]:
    """Every context of the services, in file order."""
    return [_services(site), _hot_desk(site), _handset_login(), _no_calls(),
            *_shared_voicemail(site), _voicemail_pin(), _feature_code(),
            _mobility(), _confirm(), _missed_call(), *_call_waiting_beep(), _test_call()]

