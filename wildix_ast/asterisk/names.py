"""Names that several generated files must agree on (a context the dialplan defines and
pjsip.conf points endpoints to, the voicemail context both use...)."""

from __future__ import annotations

from wildix_ast.model.site import Site
from wildix_ast.model.users import User, UserType
from wildix_ast.sounds.install import SOUND_FOLDER

VOICEMAIL_CONTEXT = "default"
VOICEMAIL_ZONE = "site"
CALL_USER_CONTEXT = "wildix-call-user"
VOICEMAIL_MAIN_CONTEXT = "wildix-voicemail-main"
EXTENSIONS_CONTEXT = "wildix-extensions"
DID_CONTEXT = "wildix-did"
FORWARD_CONTEXT = "wildix-forward"
ALERT_INFO_CONTEXT = "wildix-alert-info"
FAX_RECEIVE_CONTEXT = "wildix-fax-receive"
FAX_DONE_CONTEXT = "wildix-fax-done"
PROCEDURE_PREFIX = "proc-"
TLS_GATE_PREFIX = "wildix-tls-"


def sound_file(name: str) -> str:
    """What Playback() and Background() take for a site sound: Asterisk adds the language
    and the format."""
    return f"{SOUND_FOLDER}/{name}"


def procedure_context(name: str) -> str:
    """The extensions.conf context of a dialplan procedure. A prefix, so no procedure can be
    named like Asterisk's reserved `[general]`/`[globals]` or one of our `wildix-*` helpers."""
    return f"{PROCEDURE_PREFIX}{name}"


def tls_gate_context(procedure: str) -> str:
    """The context TLS phones of a procedure enter first: their calls over UDP or TCP end
    there, the others go on to `procedure_context(procedure)`."""
    return f"{TLS_GATE_PREFIX}{procedure}"


def mailbox(extension: str) -> str:
    return f"{extension}@{VOICEMAIL_CONTEXT}"


_WITH_MAILBOX = frozenset({UserType.ADMIN, UserType.USER})


def has_mailbox(user: User) -> bool:
    """People have a mailbox; fax machines, meeting rooms and park orbits do not."""
    return user.type in _WITH_MAILBOX


def subscribed_mailboxes(user: User, mailboxes: set[str]) -> str:
    """The mailboxes a user's phone shows (MWI): its own, then the one it shares (WMS
    "Boîte vocale partagée"), when that is a mailbox (`mailboxes`: extensions having one)."""
    found = [mailbox(user.extension)] if has_mailbox(user) else []
    shared = user.preferences.shared_voicemail
    if shared is not None and shared in mailboxes and shared != user.extension:
        found.append(mailbox(shared))
    return ",".join(found)


ADMIT_CONTEXT = "wildix-admit"
"""The one admission point of a dialled number (asterisk/dialplan_builder.py): `number`
admits digits after an optional '+', `code` also '*' and '#' (feature codes); anything else
ends the call, 404."""
OUTGOING_CONTEXT = "wildix-outgoing"
ROUTE_CONTEXT = "wildix-route"
CLASS_LIMIT_CONTEXT = "wildix-class-limit"
EMERGENCY_CONTEXT = "wildix-emergency"
"""The emergency numbers; every procedure includes it first."""
EMERGENCY_TRUNKS_CONTEXT = "wildix-emergency-trunks"
"""Every trunk that can carry an emergency call, tried in order (like a trunk group's
`wildix-tg-<name>`, which it cannot collide with)."""


def acl_context(group: str) -> str:
    """Holds one extension per call class the ACL group may call."""
    return f"acl-{group}"


def transfer_context(group: str) -> str:
    """Where a phone of ACL group `group` blind-transfers a call (its endpoint's
    TRANSFER_CONTEXT): only the numbers that group may call exist there."""
    return f"wildix-transfer-{group}"


def trunk_endpoint(trunk: str) -> str:
    """The PJSIP endpoint (and AOR) of a trunk; a prefix keeps trunks apart from users."""
    return f"trunk-{trunk}"


def trunk_context(trunk: str) -> str:
    return f"wildix-trunk-{trunk}"


def trunk_group_context(group: str) -> str:
    return f"wildix-tg-{group}"


# --- procedures and incoming calls (asterisk/procedure_contexts.py) ------------------------

def number_context(procedure: str, index: int) -> str:
    """One called number of a procedure: the procedure context includes them in order, so
    the first number that matches wins (in one context Asterisk prefers the most specific
    pattern). A name ends with '-<digits>', so splitting at the last '-' gives it back."""
    return f"wildix-pn-{procedure}-{index}"


def time_frame_context(name: str) -> str:
    return f"wildix-tf-{name}"


def call_group_context(name: str) -> str:
    return f"wildix-cg-{name}"


def ivr_context(name: str) -> str:
    return f"wildix-ivr-{name}"


def trunk_incoming_context(trunk: str) -> str:
    """Where a trunk's calls enter (its PJSIP endpoint's context)."""
    return f"wildix-in-{trunk}"


def trunk_did_context(trunk: str) -> str:
    """The DIDs a trunk's calls may reach: users' office DIDs, then its ranges."""
    return f"wildix-indid-{trunk}"


def trunk_range_context(trunk: str) -> str:
    return f"wildix-inrange-{trunk}"


# WMS services (wildix_ast/asterisk/service_contexts.py)
SERVICES_CONTEXT = "wildix-services"
#: Calls from the other nodes of the site (issue 22): they ring local phones only.
FROM_NODES_CONTEXT = "wildix-from-nodes"


def node_endpoint(node: str) -> str:
    """The PJSIP endpoint (and AOR) of the trunk to another node of the site."""
    return f"node-{node}"


def local_node(site: Site) -> str | None:
    """The node of `site.system.realtime.nodes` this configuration is for: the one whose
    SIP and AMI ports are the site's (as the target adapted them); None when none or
    several match (then no trunk between nodes is rendered)."""
    sip, ami = site.system.sip_rtp.sip_port, site.system.manager.port
    found = [n.name for n in site.system.realtime.nodes
             if n.sip_port == sip and n.ami_port == ami]
    return found[0] if len(found) == 1 else None
"""The feature codes' extensions; every procedure includes it."""
FEATURE_CODE_CONTEXT = "wildix-feature-code"
MOBILITY_CONTEXT = "wildix-mobility"
MOBILITY_CONFIRM_CONTEXT = "wildix-mobility-confirm"
CW_BEEP_CONTEXT = "wildix-cw-beep"
CW_BEEP_PLAY_CONTEXT = "wildix-cw-beep-play"
MISSED_CALL_CONTEXT = "wildix-missed-call"
"""A hang-up handler of the caller's channel: the missed-call mail."""
SHARED_VOICEMAIL_CONTEXT = "wildix-shared-voicemail"
VOICEMAIL_PIN_CONTEXT = "wildix-voicemail-pin"
HANDSET_LOGIN_CONTEXT = "wildix-handset-login"
"""Handset login/logout (the login feature code): asks the FastAGI route `handset-login`."""
NOTIFY_ENDPOINT = "wildix-notify"
"""pjsip.conf's `default_outbound_endpoint`: the endpoint `PJSIPNotify()` sends a NOTIFY to a
contact's URI from. No auth, identified by address only with no address given: no request
can ever be taken as coming from it; its context has no extension."""
NO_CALLS_CONTEXT = "wildix-no-calls"
"""A context that takes no call (NOTIFY_ENDPOINT's)."""
HOT_DESK_CONTEXT = "wildix-hot-desk"
"""The context of a device's own hot-desk endpoint (assigned to nobody): the login code and
the emergency numbers, nothing else."""
"""A mailbox opened with its PIN, wrong PINs counted across calls by the FastAGI service."""
SHARED_VOICEMAIL_OF_CONTEXT = "wildix-shared-voicemail-of"
"""One extension `<user>*<shared mailbox>` per user that shares another's mailbox."""
TEST_CALL_CONTEXT = "wildix-test-call"
"""Where `test-call` originates (through the console): a one-time request, then a
procedure's context as the caller's group."""
TEST_CALL_FAMILY = "wildix-test-call"
"""The AstDB family of test-call requests (written by root through the console only)."""
TEST_CALL_ID_DIGITS = 16
"""A test-call request's one-time id: this many lower-case hex digits, and nothing else
enters the test-call context (its extension pattern is exactly that)."""
FAX_SEND_CALL_CONTEXT = "wildix-fax-send-call"
"""Mail2Fax: where the fax sender originates (through the console) the dialled half of a
fax call: a one-time request from AstDB, then the routing procedure as the sender's group."""
FAX_SEND_CONTEXT = "wildix-fax-send"
"""Mail2Fax: the half of the fax call that runs SendFAX once the callee answers."""
FAX_SEND_CALL_DONE_CONTEXT = "wildix-fax-send-call-done"
"""Hang-up handler of the dialled half: the dial's outcome record."""
FAX_SEND_DONE_CONTEXT = "wildix-fax-send-done"
"""Hang-up handler of the SendFAX half: the fax's outcome record (FAXOPT values)."""
FAX_SEND_FAMILY = "wildix-fax-send"
"""The AstDB family of fax-call requests (written through the console only)."""
FAX_SEND_ID_DIGITS = 16
"""A fax call's one-time id: this many lower-case hex digits."""
