"""extensions.conf: the dialplan (WMS Dialplan procedures, feature codes, inbound numbers).

A user's procedure is the context `proc-<name>` (its called numbers and applications:
`procedures.py`). Each procedure context includes, after its own numbers,
`wildix-extensions`, which holds one extension per user with a phone plus the feature codes,
so the list of users is written once whatever the number of procedures. Calling a user is the
shared subroutine `wildix-call-user`, which sends a user with no reachable phone to voicemail
at once (Dial would log errors first) and a user without a mailbox (fax, meeting room)
nowhere. Nothing typed by an administrator but digits
(extensions, DIDs, feature codes, called numbers), identifiers (procedure, call group, IVR,
time frame, sound names), time zones and checked caller names reaches this file: people's
names never do.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, NamedTuple

from wildix_ast.asterisk import names
from wildix_ast.asterisk.base import (
    ConfigFile,
    ObjectKinds,
    Reload,
    RenderInput,
    View,
    static_modules,
)
from wildix_ast.asterisk.outgoing import REJECTED, dialplan_contexts
from wildix_ast.asterisk.pjsip import tls_phone_groups
from wildix_ast.asterisk.procedure_contexts import dialplan_contexts as procedure_contexts
from wildix_ast.asterisk.res_parking import orbits
from wildix_ast.asterisk.service_contexts import KEY_FILE, agi_path, service_contexts
from wildix_ast.calls.call_user import CALL_USER_ROUTE, MAX_FORWARDS
from wildix_ast.errors import Problem
from wildix_ast.model.call_classes import NumberingPlan
from wildix_ast.model.routing import numbering_plan

if TYPE_CHECKING:
    from wildix_ast.conf import Section
    from wildix_ast.model.site import Site

_NOT_CONTEXTS = ("general", "globals")
_EXTEN = re.compile(r"^[^,]+,\s*(\d+|n|hint|n\+\d+)(\([^)]*\))?\s*,.*$")
_SAME = re.compile(r"^(n|\d+|n\+\d+)(\([^)]*\))?\s*,.*$")


class Call(NamedTuple):
    """A dialplan extension that calls a user through the shared subroutine (a named tuple:
    immutable, and cheap to build by the thousand)."""

    number: str
    extension: str
    #: the user's mailbox number, empty when it has none (fax, meeting room)
    mailbox: str


def e164(plan: NumberingPlan, number: str) -> str:
    """An office DID written nationally (`0140000101`) as trunks' calls carry it."""
    found = None if number.startswith("+") else plan.classify(number)
    return found[1] if found is not None and found[1].startswith("+") else number


class TlsGate(NamedTuple):
    name: str
    #: the procedure's context, where a call over TLS goes on
    target: str


#: every number a phone dials (digits, feature codes, E.164): one character, or more
_DIALLED = ("_[0-9#*+]", "_[0-9#*+].")


def _tls_gates(site: Site) -> list[TlsGate]:
    """One gate per procedure of a TLS phone (pjsip.tls_phone_groups)."""
    groups = tls_phone_groups(site)
    procedures = dict.fromkeys(u.dialplan for u in site.users
                               if u.type.has_phone and u.group in groups)
    return [TlsGate(names.tls_gate_context(p), names.procedure_context(p)) for p in procedures]


def _view(given: RenderInput) -> View:
    site = given.site
    plan = numbering_plan(site)
    region = site.system.language_region
    phones = [u for u in site.users if u.type.has_phone]
    box = {u.extension: u.extension if names.has_mailbox(u) else "" for u in phones}
    return {
        "country_code": region.country_code,
        "tone_zone": region.tone_zone,
        "ring_timeout": site.dialplan.ring_timeout,
        "echo_test": site.dialplan.echo_test,
        "voicemail_main": site.dialplan.voicemail,
        "admit_context": names.ADMIT_CONTEXT,
        "calls": [Call(u.extension, u.extension, box[u.extension]) for u in phones],
        # trunks' calls arrive with their DID in E.164 (procedures.to_e164)
        "dids": [Call(e164(plan, u.office_did), u.extension, box[u.extension]) for u in phones
                 if u.office_did is not None],
        # BLF: every user with a phone has a hint its colleagues' keys subscribe to
        "hints": [u.extension for u in phones],
        "orbits": orbits(site),
        "voicemail_context": names.VOICEMAIL_CONTEXT,
        "extensions_context": names.EXTENSIONS_CONTEXT,
        "call_user_context": names.CALL_USER_CONTEXT,
        "voicemail_main_context": names.VOICEMAIL_MAIN_CONTEXT,
        "did_context": names.DID_CONTEXT,
        "procedures": procedure_contexts(site),
        "fastagi": f"{site.system.fastagi.host}:{site.system.fastagi.port}",
        "fastagi_key_file": given.paths.etc / KEY_FILE,
        # signed for the arguments the template's AGI() line sends
        "call_user_route": agi_path(CALL_USER_ROUTE, "${ARG1}", "${WILDIX_CALLTYPE}"),
        "forward_context": names.FORWARD_CONTEXT,
        "alert_info_context": names.ALERT_INFO_CONTEXT,
        "procedure_prefix": names.PROCEDURE_PREFIX,
        "dialled_patterns": _DIALLED,
        "max_forwards": MAX_FORWARDS,
        "rejected_cause": REJECTED,
        "routing": dialplan_contexts(site),
        "mobility_context": names.MOBILITY_CONTEXT,
        "missed_call_context": names.MISSED_CALL_CONTEXT,
        "cw_beep_context": names.CW_BEEP_CONTEXT,
        "cw_beep_play_context": names.CW_BEEP_PLAY_CONTEXT,
        "services": service_contexts(site),
        "tls_gates": _tls_gates(site),
    }


def _checks(sections: list[Section]) -> list[Problem]:
    """Malformed `exten =>` and `same =>` lines (Asterisk would drop them with a warning)."""
    problems: list[Problem] = []
    for s in sections:
        if s.name in _NOT_CONTEXTS:
            continue
        for key, value in s.items:
            if key == "exten" and not _EXTEN.match(value):
                problems.append(Problem(f"extensions.conf [{s.name}]",
                                        f"malformed exten => {value}"))
            elif key == "same" and not _SAME.match(value):
                problems.append(Problem(f"extensions.conf [{s.name}]",
                                        f"malformed same => {value}"))
    return problems


def contexts(sections: list[Section]) -> set[str]:
    return {s.name for s in sections if s.name not in _NOT_CONTEXTS}


def _expects(sections: list[Section]) -> ObjectKinds:
    return {"context": contexts(sections)}


FILE = ConfigFile(
    name="extensions.conf",
    # last: the dialplan refers to endpoints, mailboxes and everything else
    applied_by=Reload("pbx_config.so", "dialplan reload", order=90),
    view=_view,
    modules=static_modules(
        "pbx_config.so", "app_dial.so", "app_stack.so", "app_echo.so", "app_playback.so",
        "app_exec.so", "func_groupcount.so", "func_dialplan.so",
        "app_verbose.so", "func_strings.so", "func_callerid.so", "func_channel.so",
        "func_logic.so", "func_global.so", "func_hangupcause.so", "func_devstate.so",
        "func_rand.so", "res_agi.so", "app_voicemail.so", "res_pjsip_header_funcs.so",
        "app_read.so", "app_userevent.so", "app_originate.so", "app_chanspy.so",
        "func_db.so", "func_cut.so"),
    checks=_checks,
    expects=_expects,
)
