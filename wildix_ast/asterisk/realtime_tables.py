"""wildix-realtime.conf (realtime mode, issue 22): the rows of Asterisk's realtime tables,
one section per row, as apply writes them into the realtime database.

Asterisk does not read this file: it is what the tables must hold, kept beside the other
files so that everything apply guarantees for a file holds for the rows too. The plan diffs
it (passwords masked) and shows which rows change; the journal keeps the previous version,
so a failed or killed apply puts the previous rows back; each generation keeps it, so a
rollback restores the rows. Applying it (`SyncRows`) writes only the rows that changed, in
one transaction, then expires them from Asterisk's sorcery cache: no module reload.

A section is `[id]` with `table = <table>` first, then the row's columns as pjsip.conf and
voicemail.conf say them (`store/realtime.py` derives the rows from those rendered files); an
option given several times (`set_var`) keeps one line per value. A `[database]` section
first says where the rows go."""

from __future__ import annotations

from typing import TYPE_CHECKING

from wildix_ast.asterisk.base import ConfigFile, ObjectKinds, RenderInput, SyncRows, View
from wildix_ast.asterisk.res_config_sqlite3 import REALTIME_SQLITE_FILE
from wildix_ast.asterisk.sorcery import realtime_enabled
from wildix_ast.errors import RenderError
from wildix_ast.store.realtime import Row

if TYPE_CHECKING:
    from wildix_ast.conf import Section

FILE_NAME = "wildix-realtime.conf"
VOICEMAIL_KEY = "uniqueid"

#: Every column a user's rows can have (the options pjsip.conf.j2 gives a user's endpoint,
#: auth and AOR, and voicemail's mailbox fields and options): `realtime setup` makes them
#: all, since apply's PostgreSQL account may not change a table's shape
#: (`tests/unit/test_realtime_columns.py` checks this list against the template).
COLUMNS: dict[str, frozenset[str]] = {
    "ps_endpoints": frozenset({
        "context", "disallow", "allow", "auth", "aors", "callerid", "send_pai",
        "send_connected_line", "language", "mailboxes", "set_var", "direct_media",
        "rtp_symmetric", "force_rport", "rewrite_contact", "media_address",
        "bind_rtp_to_media_address", "rtp_timeout", "rtp_timeout_hold", "timers",
        "timers_sess_expires", "media_encryption", "media_encryption_optimistic",
        "transport", "subscribe_context", "deny", "permit"}),
    "ps_auths": frozenset({"auth_type", "username", "password"}),
    "ps_aors": frozenset({"max_contacts", "remove_existing", "qualify_frequency"}),
    "voicemail": frozenset({"context", "mailbox", "password", "fullname", "email", "pager",
                            "tz", "language", "attach", "attachfmt", "delete"}),
}


def _items(row: Row, skip: str) -> list[tuple[str, str]]:
    items: list[tuple[str, str]] = []
    for key, value in row.items():
        if key == skip:
            continue
        for one in (value,) if isinstance(value, str) else value:
            if "\n" in one or "\r" in one:
                raise RenderError(f"a realtime value of {key} holds a line break")
            items.append((key, one))
    return items


def _view(given: RenderInput) -> View:
    realtime = given.site.system.realtime
    rows = given.realtime_rows
    sections: list[tuple[str, str, list[tuple[str, str]]]] = []
    if rows is not None:
        for table, found in (("ps_endpoints", rows.ps_endpoints), ("ps_auths", rows.ps_auths),
                             ("ps_aors", rows.ps_aors)):
            sections += [(str(r["id"]), table, _items(r, "id")) for r in found]
        sections += [(f"{r['mailbox']}@{r['context']}", "voicemail", _items(r, ""))
                     for r in rows.voicemail]
    database = [("engine", realtime.engine.value)]
    if realtime.engine.value == "sqlite":
        database.append(("dbfile", REALTIME_SQLITE_FILE))
    else:
        database += [("host", str(realtime.host)), ("port", str(realtime.port)),
                     ("database", realtime.database)]
    if realtime.nodes:
        # several nodes: each row change is logged for the other nodes' followers, in the
        # rows' own transaction (store.expiry_log); said here, so that every write of these
        # rows (apply, undo, discard, recovery) knows it from the file it writes
        database.append(("expiry_log", "yes"))
    return {"database": database, "rows": sections}


def _expects(sections: list[Section]) -> ObjectKinds:
    """The endpoints and AORs Asterisk must show once the rows are written (and, for rows
    removed, no longer show): asked one by one, through sorcery, so from the table or the
    cache the apply just expired."""
    return {"endpoint": {s.name for s in sections if s.get("table") == "ps_endpoints"},
            "aor": {s.name for s in sections if s.get("table") == "ps_aors"}}


FILE = ConfigFile(
    name=FILE_NAME,
    applied_by=SyncRows("the rows that changed, written into the realtime tables"),
    view=_view,
    wanted=realtime_enabled,
    expects=_expects,
)
