"""voicemail.conf: one mailbox per person (admin and user types; WMS Voicemail).

Each PIN is random, generated once and kept in the vault like SIP passwords
(`secrets_vault.voicemail_pins`); `*97` opens the caller's own mailbox without asking it
(the caller is a PJSIP endpoint authenticated by SIP digest), and
`passwordlocation=spooldir` keeps a PIN a user changes out of our file. Commas in a name would
shift voicemail.conf fields, so the mailbox's full name has them replaced by spaces.

A new message is mailed to its owner (WMS: attach, notify only, or attach and delete, per
user) through the PBX's mail queue: `mailcmd` drops the whole message Asterisk wrote into
a folder of Asterisk's spool (`mail_command`), and the mail sender takes it from there
(`wildix-ast mail send --drop`), so voicemail never talks SMTP itself. The attachment is the
PCM WAV recording (the mailbox's `attachfmt`),
which every mail client plays.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from pathlib import PurePosixPath
from typing import NamedTuple

from wildix_ast.asterisk.base import ConfigFile, Reload, RenderInput, View, static_modules
from wildix_ast.asterisk.names import VOICEMAIL_CONTEXT, VOICEMAIL_ZONE, has_mailbox
from wildix_ast.errors import RenderError
from wildix_ast.model.users import VoicemailEmail
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


# attachfmt is a mailbox option only: the PCM WAV, not the first stored format (wav49)
_MAIL_OPTIONS = {VoicemailEmail.ATTACH: "|attach=yes|attachfmt=wav",
                 VoicemailEmail.NOTIFY: "|attach=no",
                 VoicemailEmail.ATTACH_AND_DELETE: "|attach=yes|attachfmt=wav|delete=yes"}
_MAILCMD_MAX = 159  # app_voicemail's mailcmd buffer (160 bytes with its NUL)
_SAFE_PATH = re.compile(r"/[A-Za-z0-9/._-]+")


def mail_command(drop: PurePosixPath) -> str:
    """app_voicemail's `mailcmd`: it runs `( mailcmd < message ; rm -f message ) &` through
    /bin/sh, so one `sh -c` reads the whole message and drops it into the mail queue's drop
    folder as Maildir does (written under tmp/, synced, renamed into new/, the folder
    synced): the sender never sees half a message, and nothing waits on the network while a
    caller is recording. No `;` (voicemail.conf's comment character)."""
    if not _SAFE_PATH.fullmatch(str(drop)):
        raise RenderError(f"voicemail mail drop folder {drop}: only letters, digits, '/', "
                          "'.', '_', '-' may reach the shell")
    command = (f"sh -c 'd={drop}&&f=$(date +%s).$$&&cat>$d/tmp/$f&&sync $d/tmp/$f"
               "&&mv $d/tmp/$f $d/new/$f&&sync $d/new'")
    if len(command) > _MAILCMD_MAX:
        raise RenderError(f"voicemail mailcmd for {drop} is longer than app_voicemail "
                          f"takes ({len(command)} > {_MAILCMD_MAX}): use a shorter spool "
                          "folder")
    return command


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
            options += _MAIL_OPTIONS[user.voicemail_email]
        mailboxes.append(Mailbox(
            number=user.extension,
            pin=pins.get(user.extension) or _derived_pin(given.manager_secret, user.extension),
            fullname=" ".join(user.name.replace(",", " ").split()),
            email=user.email or "", options=options))
    return {"pbx_name": site.system.pbx_name, "timezone": region.timezone,
            "mailcmd": mail_command(given.paths.mail_drop),
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
