"""What Asterisk will read from tables through realtime (issue 22): the `ps_endpoints`,
`ps_auths`, `ps_aors` and `voicemail` rows of the users, derived from the users' rows and the
system settings in one place.

That one place is the generated configuration: a user's SIP objects and mailbox are what
`asterisk/pjsip.py` and `asterisk/voicemail.py` (their views and templates) make of the
stored users, system settings and vault. These rows are those sections, option for option
(Asterisk's realtime columns are named like its configuration options); nothing about a
user's phone is written twice, here and in a template. The store sits below the Asterisk
layer and cannot render: the caller (apply, when issue 22 wires realtime) renders the
stored site and hands in the parsed files and the users whose objects they are."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from wildix_ast.conf import Section
from wildix_ast.model.users import User

Row = dict[str, str | tuple[str, ...]]
"""Column -> value; an option the file gives several times (`set_var`) holds them all, in
order (issue 22 decides how Asterisk's one column takes them)."""


@dataclass(frozen=True)
class RealtimeRows:
    """The rows of each realtime table, in the users' order."""

    ps_endpoints: list[Row] = field(default_factory=list)
    ps_auths: list[Row] = field(default_factory=list)
    ps_aors: list[Row] = field(default_factory=list)
    voicemail: list[Row] = field(default_factory=list)


def _row(section: Section) -> Row:
    """A section as a realtime row: `id` is its name; `type` is the table."""
    values: dict[str, list[str]] = {}
    for key, value in section.items:
        if key != "type":
            values.setdefault(key, []).append(value)
    return {"id": section.name, **{key: found[0] if len(found) == 1 else tuple(found)
                                   for key, found in values.items()}}


def _mailbox(context: str, mailbox: str, entry: str) -> Row:
    """`mailbox => pin,fullname,email,pager,option=value|...` as voicemail's realtime row."""
    pin, fullname, email, pager, options = (entry.split(",", 4) + [""] * 5)[:5]
    row: Row = {"context": context, "mailbox": mailbox, "password": pin,
                "fullname": fullname, "email": email, "pager": pager}
    for option in filter(None, options.split("|")):
        name, _, value = option.partition("=")
        row[name] = value
    return row


def user_rows(users: Iterable[User], pjsip: list[Section], voicemail: list[Section],
              voicemail_context: str) -> list[tuple[Row | None, Row | None, Row | None,
                                                   Row | None]]:
    """Each of `users`' endpoint, auth, AOR and mailbox rows (None: it has none), from the
    parsed pjsip.conf and voicemail.conf they render to (trunks and other objects are not a
    user's)."""
    by_type: dict[tuple[str, str | None], Section] = {
        (s.name, s.get("type")): s for s in pjsip}
    entries = {key: value for s in voicemail if s.name == voicemail_context
               for key, value in s.items}
    out: list[tuple[Row | None, Row | None, Row | None, Row | None]] = []
    for user in users:
        endpoint = by_type.get((user.extension, "endpoint"))
        phone: tuple[Row | None, Row | None, Row | None] = (None, None, None)
        if endpoint is not None:
            phone = (_row(endpoint),
                     _row(by_type[(endpoint.get("auth") or "", "auth")]),
                     _row(by_type[(endpoint.get("aors") or "", "aor")]))
        mailbox = (_mailbox(voicemail_context, user.extension, entries[user.extension])
                   if user.extension in entries else None)
        out.append((*phone, mailbox))
    return out


def realtime_rows(users: Iterable[User], pjsip: list[Section],
                  voicemail: list[Section], voicemail_context: str) -> RealtimeRows:
    """The realtime rows of `users`' phones and mailboxes (`user_rows`), table by table."""
    rows = RealtimeRows()
    for endpoint, auth, aor, mailbox in user_rows(users, pjsip, voicemail, voicemail_context):
        for table, row in ((rows.ps_endpoints, endpoint), (rows.ps_auths, auth),
                           (rows.ps_aors, aor), (rows.voicemail, mailbox)):
            if row is not None:
                table.append(row)
    return rows
