"""store/realtime.py: the realtime rows of the example's users are what pjsip.conf and
voicemail.conf render for them, option for option, and say what the users' rows say."""

from __future__ import annotations

from pathlib import Path

from wildix_ast.apply.pipeline import render_to_folder
from wildix_ast.asterisk.names import VOICEMAIL_CONTEXT, has_mailbox, procedure_context
from wildix_ast.asterisk.pjsip import codecs
from wildix_ast.conf import parse_conf
from wildix_ast.model.settings_file import load_site
from wildix_ast.store.realtime import realtime_rows
from wildix_ast.store.vault import MemoryVault, user_secret_key, with_secrets

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "site.yaml"


def test_realtime_rows_are_what_pjsip_and_voicemail_render(tmp_path: Path) -> None:
    site = load_site(EXAMPLE)
    vault = MemoryVault()
    render_to_folder(site, vault, tmp_path)
    pjsip = parse_conf((tmp_path / "pjsip.conf").read_text(encoding="utf-8"))
    voicemail = parse_conf((tmp_path / "voicemail.conf").read_text(encoding="utf-8"))
    users = with_secrets(site, vault).users
    rows = realtime_rows(users, pjsip, voicemail, VOICEMAIL_CONTEXT)

    phones = [u for u in users if u.type.has_phone]
    assert [r["id"] for r in rows.ps_endpoints] == [u.extension for u in phones]
    # option for option the sections pjsip.conf renders (trunks' are not users')
    sections = {(s.name, s.get("type")): s for s in pjsip}
    for table, kind in ((rows.ps_endpoints, "endpoint"), (rows.ps_auths, "auth"),
                        (rows.ps_aors, "aor")):
        for row in table:
            section = sections[(str(row["id"]), kind)]
            flat = [(key, value) for key, values in row.items() if key != "id"
                    for value in (values if isinstance(values, tuple) else (values,))]
            assert sorted(flat) == sorted(i for i in section.items if i[0] != "type")
    # and what the users' rows and the system settings say
    allow = ",".join(str(c) for c in codecs(site))
    fax_allow = ",".join(str(c) for c in codecs(site) if c in ("alaw", "ulaw"))
    for user, endpoint, auth, aor in zip(phones, rows.ps_endpoints, rows.ps_auths,
                                         rows.ps_aors, strict=True):
        assert endpoint["context"] == procedure_context(user.dialplan)
        # a fax machine gets the site's G.711 codecs only (docs/fax.md, "Transport")
        assert endpoint["allow"] == (fax_allow if user.type == "fax" else allow)
        assert endpoint["language"] == (user.language or site.system.language_region.language)
        assert f"WILDIX_GROUP={user.group}" in endpoint["set_var"]
        assert (endpoint["auth"], endpoint["aors"]) == (auth["id"], aor["id"])
        assert auth["password"] == vault.get_secret(user_secret_key(user.extension, "sip"))
        assert aor["qualify_frequency"] == str(site.system.sip_rtp.qualify_frequency)
    people = [u for u in users if has_mailbox(u)]
    assert [r["mailbox"] for r in rows.voicemail] == [u.extension for u in people]
    for user, box in zip(people, rows.voicemail, strict=True):
        assert box["password"] == vault.get_secret(
            user_secret_key(user.extension, "voicemail_pin"))
        assert box["email"] == (user.email or "")
        assert box["context"] == VOICEMAIL_CONTEXT
        assert box["language"] == (user.language or site.system.language_region.language)
