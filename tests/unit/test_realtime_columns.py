"""The realtime tables' columns made by `realtime setup` (issue 22): apply's PostgreSQL
account may not add a column, so the catalogue must hold every option the templates give a
user's endpoint, auth, AOR and mailbox."""

from __future__ import annotations

import re
from pathlib import Path

from wildix_ast.asterisk.realtime_tables import COLUMNS
from wildix_ast.asterisk.voicemail import _MAIL_OPTIONS

TEMPLATES = Path(__file__).resolve().parents[2] / "templates" / "asterisk"
_OPTION = re.compile(r"^([a-z_]+) = ", re.MULTILINE)


def _user_block(kind: str) -> str:
    """The text of the users' `[...]` section of `type = kind` in pjsip.conf.j2."""
    text = (TEMPLATES / "pjsip.conf.j2").read_text(encoding="utf-8")
    users = text[text.index("{% for e in endpoints %}"):text.index("{% for t in trunks %}")]
    return next(block for block in users.split("\n[") if f"type = {kind}\n" in block)


def test_every_option_of_a_users_objects_has_a_column() -> None:
    for kind, table in (("endpoint", "ps_endpoints"), ("auth", "ps_auths"),
                        ("aor", "ps_aors")):
        options = set(_OPTION.findall(_user_block(kind))) - {"type"}
        assert options, kind
        assert options <= COLUMNS[table], (table, options - COLUMNS[table])


def test_every_mailbox_option_has_a_column() -> None:
    options = {"tz", "language"} | {
        item.partition("=")[0] for text in _MAIL_OPTIONS.values()
        for item in text.split("|") if item}
    assert options <= COLUMNS["voicemail"]
    assert {"context", "mailbox", "password", "fullname", "email", "pager"} <= \
        COLUMNS["voicemail"]
