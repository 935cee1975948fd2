"""voicemail.conf: one mailbox per person (admin and user types; WMS Voicemail).

Each PIN is random, generated once and kept in the vault like SIP passwords
(`secrets_vault.voicemail_pins`); `*97` opens the caller's own mailbox without asking it
(the caller is a PJSIP endpoint authenticated by SIP digest), and
`passwordlocation=spooldir` keeps a PIN a user changes out of our file. Commas in a name would
shift voicemail.conf fields, so the mailbox's full name has them replaced by spaces.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import NamedTuple

from wildix_ast.asterisk.base import ConfigFile, Reload, RenderInput, View, static_modules
from wildix_ast.asterisk.names import VOICEMAIL_CONTEXT, VOICEMAIL_ZONE, has_mailbox
from wildix_ast.store.vault import VOICEMAIL_PIN_DIGITS


class Mailbox(NamedTuple):
    """One per person: a named tuple, immutable and cheap to build by the thousand."""

    number: str
    pin: str
    fullname: str
    email: str
    options: str


def _derived_pin(manager_secret: str, extension: str) -> str:
    # Renders without a vault (tests, benchmarks): a PIN nobody can guess from the
    # extension, the same on every render of the same site.
    digest = hmac.new(manager_secret.encode(), f"voicemail:{extension}".encode(),
                      hashlib.sha256).digest()
    number = int.from_bytes(digest[:8], "big") % 10**VOICEMAIL_PIN_DIGITS
    return str(number).zfill(VOICEMAIL_PIN_DIGITS)


def _view(given: RenderInput) -> View:
    site = given.site
    region = site.system.language_region
    pins, default_language = given.voicemail_pins, region.language
    mailboxes: list[Mailbox] = []
    # realtime mode: the mailboxes are rows of the realtime `voicemail` table instead
    for user in site.users if given.realtime_rows is None else ():
        if not has_mailbox(user):
            continue
        options = f"tz={VOICEMAIL_ZONE}|language={user.language or default_language}"
        if user.email is not None:
            options += "|attach=yes"
        mailboxes.append(Mailbox(
            number=user.extension,
            pin=pins.get(user.extension) or _derived_pin(given.manager_secret, user.extension),
            fullname=" ".join(user.name.replace(",", " ").split()),
            email=user.email or "", options=options))
    return {"pbx_name": site.system.pbx_name, "timezone": region.timezone,
            "serveremail": f"{site.system.pbx_name}@localhost",
            "voicemail_context": VOICEMAIL_CONTEXT, "voicemail_zone": VOICEMAIL_ZONE,
            "mailboxes": mailboxes, "min_pin": VOICEMAIL_PIN_DIGITS}


def _secret(section: str, key: str, op: str, value: str) -> tuple[str, str] | None:
    # `mailbox => pin,name,email,...` in every mailbox context: the PIN is the secret
    if section in ("general", "zonemessages", ""):
        return None
    pin, sep, rest = value.partition(",")
    return pin, sep + rest


FILE = ConfigFile(
    name="voicemail.conf",
    applied_by=Reload("app_voicemail.so", "module reload app_voicemail.so", order=20),
    view=_view,
    modules=static_modules("app_voicemail.so"),
    secret=_secret,
)
