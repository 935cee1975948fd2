"""The users' numbers as extensions.conf contexts: extensions, office DIDs, own mailbox.

Not a generated file (extensions.py lays these out): `wildix-extensions` (one extension per
user with a phone, its BLF hint, the echo test and voicemail codes, the park orbits),
`wildix-did` (the users' office DIDs) and `wildix-voicemail-main` (the caller's own mailbox).
Every procedure includes `wildix-extensions`, so the list of users is written once whatever
the number of procedures.
"""

from __future__ import annotations

from typing import NamedTuple

from wildix_ast.asterisk import names
from wildix_ast.asterisk.call_user_contexts import call_user
from wildix_ast.asterisk.dialplan_builder import Comment, Context, Extension, extension
from wildix_ast.asterisk.fax_contexts import fax_extension
from wildix_ast.asterisk.res_parking import orbits
from wildix_ast.model.call_classes import NumberingPlan
from wildix_ast.model.routing import numbering_plan
from wildix_ast.model.site import Site
from wildix_ast.model.users import UserType


class Call(NamedTuple):
    """A number that calls a user through the call-user subroutine (a named tuple:
    immutable, and cheap to build by the thousand)."""

    number: str
    extension: str
    #: the user's mailbox number, empty when it has none (fax, meeting room)
    mailbox: str

    def as_extension(self) -> Extension:
        return extension(self.number, call_user(self.extension, self.mailbox), "Hangup()")


def e164(plan: NumberingPlan, number: str) -> str:
    """An office DID written nationally (`0140000101`) as trunks' calls carry it."""
    found = None if number.startswith("+") else plan.classify(number)
    return found[1] if found is not None and found[1].startswith("+") else number


def _calls(site: Site) -> tuple[list[Call], list[Call]]:
    """(each user's extension, each user's office DID), users with a phone only."""
    plan = numbering_plan(site)
    # a fax user is the fax server's mailbox (Fax2Mail): its extension receives the fax
    phones = [u for u in site.users if u.type.has_phone and u.type is not UserType.FAX]
    box = {u.extension: u.extension if names.has_mailbox(u) else "" for u in phones}
    calls = [Call(u.extension, u.extension, box[u.extension]) for u in phones]
    # trunks' calls arrive with their DID in E.164 (procedure_contexts.to_e164)
    dids = [Call(e164(plan, u.office_did), u.extension, box[u.extension]) for u in phones
            if u.office_did is not None]
    return calls, dids


def _fax_numbers(site: Site) -> tuple[list[Extension], list[Extension]]:
    """(fax users' extensions, every user's fax DID), each receiving a fax (Fax2Mail)."""
    plan = numbering_plan(site)
    internal = [fax_extension(u.extension, u.extension) for u in site.users
                if u.type is UserType.FAX]
    dids = [fax_extension(e164(plan, u.fax_did), u.extension, e164(plan, u.fax_did))
            for u in site.users if u.fax_did is not None]
    return internal, dids


def voicemail_main_context() -> Context:
    return Context(names.VOICEMAIL_MAIN_CONTEXT, (extension(
        "s", 'GotoIf($["${CHANNEL(channeltype)}" != "PJSIP"]?refuse)',
        "Set(MAILBOX=${CHANNEL(endpoint)})",
        'GotoIf($["${MAILBOX}" = ""]?refuse)',
        f"VoiceMailMain(${{MAILBOX}}@{names.VOICEMAIL_CONTEXT},s)",
        "Return()", ("refuse", "Return()")),),
        comment=("The caller's own mailbox, without PIN: the endpoint is authenticated by "
                 "SIP digest.",))


def extensions_context(site: Site) -> Context:
    calls, _ = _calls(site)
    codes = site.dialplan
    found: list[Extension | Comment] = [
        extension(codes.echo_test, "Answer()", "Echo()", "Hangup()"),
        extension(codes.voicemail, "Answer()",
                  f"Gosub({names.VOICEMAIL_MAIN_CONTEXT},s,1)", "Hangup()"),
        *(c.as_extension() for c in calls),
        *_fax_numbers(site)[0],
        Comment(("BLF: a phone's busy lamp field key subscribes to these.",)),
        # every user with a phone has a hint its colleagues' keys subscribe to
        *(Extension(c.extension, (), hint=f"PJSIP/{c.extension}") for c in calls),
        Comment(("Park orbits (wildix_ast/asterisk/res_parking.py): a call blind-transferred "
                 "to the orbit",
                 "is parked there; dialling the orbit takes the call parked there.")),
    ]
    found += [extension(o.number, 'GotoIf($["${BLINDTRANSFER}" != ""]?park)',
                        f"ParkedCall({o.lot},{o.number})", "Hangup()",
                        ("park", f"Park({o.lot},s)"), "Hangup()", hint=o.device)
              for o in orbits(site)]
    return Context(names.EXTENSIONS_CONTEXT, tuple(found),
                   comment=("Every user with a phone, and the feature codes.",))


def did_context(site: Site) -> Context:
    _, dids = _calls(site)
    found = [c.as_extension() for c in dids] + _fax_numbers(site)[1]
    return Context(names.DID_CONTEXT, tuple(found), comment=(
        "Users' office and fax DIDs (a trunk's calls reach them first, marked external by the "
        "trunk's",
        "entry context: the users' preferences for external calls apply)."))


def user_contexts(site: Site) -> list[Context]:
    """The contexts of this module, in file order."""
    return [voicemail_main_context(), extensions_context(site), did_context(site)]
