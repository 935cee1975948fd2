"""Names that several generated files must agree on (a context the dialplan defines and
pjsip.conf points endpoints to, the voicemail context both use...)."""

from __future__ import annotations

from wildix_ast.users import User, UserType

VOICEMAIL_CONTEXT = "default"
VOICEMAIL_ZONE = "site"
CALL_USER_CONTEXT = "wildix-call-user"
VOICEMAIL_MAIN_CONTEXT = "wildix-voicemail-main"
EXTENSIONS_CONTEXT = "wildix-extensions"
DID_CONTEXT = "wildix-did"


def procedure_context(name: str) -> str:
    """The extensions.conf context of a dialplan procedure. A prefix, so no procedure can be
    named like Asterisk's reserved `[general]`/`[globals]` or one of our `wildix-*` helpers."""
    return f"proc-{name}"


def mailbox(extension: str) -> str:
    return f"{extension}@{VOICEMAIL_CONTEXT}"


def has_mailbox(user: User) -> bool:
    """People have a mailbox; fax machines, meeting rooms and park orbits do not."""
    return user.type in (UserType.ADMIN, UserType.USER)
