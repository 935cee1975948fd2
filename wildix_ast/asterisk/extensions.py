"""extensions.conf: the dialplan (WMS Dialplan procedures, feature codes, inbound numbers).

The template only lays out the globals and the lines `dialplan_builder.lines()` writes;
every context is built in Python with `asterisk/dialplan_builder.py`, one module per concern:
`call_user_contexts.py` (calling a user, forwards), `user_contexts.py` (the users' numbers),
`procedure_contexts.py` (procedures, time frames, call groups, IVRs, trunks' incoming calls,
TLS gates), `outgoing.py` (outgoing routing) and `service_contexts.py` (WMS services).

A user's procedure is the context `proc-<name>` (its called numbers and applications:
`procedure_contexts.py`). Each procedure context includes, after its own numbers,
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
from typing import TYPE_CHECKING

from wildix_ast.asterisk import names
from wildix_ast.asterisk.base import (
    ConfigFile,
    ObjectKinds,
    Reload,
    RenderInput,
    View,
    static_modules,
)
from wildix_ast.asterisk.call_user_contexts import call_user_contexts
from wildix_ast.asterisk.dialplan_builder import Comment, Context, lines
from wildix_ast.asterisk.fastagi_key import KEY_FILE
from wildix_ast.asterisk.fax_contexts import fax_contexts
from wildix_ast.asterisk.fax_send_contexts import fax_send_contexts
from wildix_ast.asterisk.outgoing import dialplan_contexts as routing_contexts
from wildix_ast.asterisk.procedure_contexts import dialplan_contexts as procedure_contexts
from wildix_ast.asterisk.procedure_contexts import tls_gate_contexts
from wildix_ast.asterisk.service_contexts import service_contexts
from wildix_ast.asterisk.user_contexts import user_contexts
from wildix_ast.calls import variables as v
from wildix_ast.errors import Problem

if TYPE_CHECKING:
    from wildix_ast.conf import Section
    from wildix_ast.model.site import Site

_NOT_CONTEXTS = ("general", "globals")
_EXTEN = re.compile(r"^[^,]+,\s*(\d+|n|hint|n\+\d+)(\([^)]*\))?\s*,.*$")
_SAME = re.compile(r"^(n|\d+|n\+\d+)(\([^)]*\))?\s*,.*$")


def _other_nodes(site: Site) -> tuple[str, ...]:
    """The trunks' endpoints of the site's other nodes (none when this node is not known)."""
    here = names.local_node(site)
    if here is None:
        return ()
    return tuple(names.node_endpoint(n.name) for n in site.system.realtime.nodes
                 if n.name != here)


def dialplan(site: Site) -> list[Context | Comment]:
    """Every context of extensions.conf, in file order, a comment before each group."""
    return [
        *call_user_contexts(site.system.realtime.enabled, _other_nodes(site)),
        *user_contexts(site),
        *tls_gate_contexts(site),
        Comment(("Procedures (wildix_ast/asterisk/procedure_contexts.py): each includes its "
                 "called numbers in order,",
                 "then the users; time frames, call groups, IVRs; incoming calls from each "
                 "trunk.")),
        *procedure_contexts(site),
        Comment(("Outgoing calls (wildix_ast/asterisk/outgoing.py): classify and normalise "
                 "the dialled",
                 "number, check the caller's ACL group and the class limit, then the trunk "
                 "group's trunks."), spaced=True),
        *routing_contexts(site),
        Comment(("The WMS services (wildix_ast/asterisk/service_contexts.py): feature codes, "
                 "mobility, shared",
                 "voicemail, missed-call mail, call-waiting beep."), spaced=True),
        *service_contexts(site),
        Comment(("Fax2Mail (wildix_ast/asterisk/fax_contexts.py): receive, then drop the job "
                 "for the Fax2Mail service.",), spaced=True),
        *fax_contexts(),
        Comment(("Mail2Fax (wildix_ast/asterisk/fax_send_contexts.py): the fax call's two "
                 "halves, each with its record.",), spaced=True),
        *fax_send_contexts(),
    ]


def _view(given: RenderInput) -> View:
    site = given.site
    region = site.system.language_region
    fastagi = site.system.fastagi
    return {
        "globals": [("COUNTRY_CODE", region.country_code), ("TONE_ZONE", region.tone_zone),
                    ("RING_TIMEOUT", site.dialplan.ring_timeout),
                    (v.AGI_URL, f"agi://{fastagi.host}:{fastagi.port}"),
                    (v.AGI_KEY_FILE, given.paths.etc / KEY_FILE),
                    (v.FAX_SPOOL, given.paths.fax_spool),
                    (v.FAX_OUT_SPOOL, given.paths.fax_out_spool)],
        "dialplan": lines(dialplan(site)),
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
        "func_db.so", "func_cut.so", "res_fax.so", "res_fax_spandsp.so", "app_system.so",
        "func_env.so"),
    checks=_checks,
    expects=_expects,
)
