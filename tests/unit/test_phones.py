"""Issue 6 without Asterisk: the SIP-RTP settings for real phones, how they render, that the
store keeps them, and the voicemail PINs the vault keeps."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from pydantic import ValidationError
from test_render_injection import parse_conf

from wildix_ast.asterisk.render import render_site
from wildix_ast.errors import SettingsError
from wildix_ast.model.common import Srtp
from wildix_ast.model.settings_file import load_site, parse_site
from wildix_ast.model.site import Site
from wildix_ast.model.system import SipRtp
from wildix_ast.store import open_store
from wildix_ast.store.vault import MemoryVault, voicemail_pins, with_secrets

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "site.yaml"
SECRET = "Manager#Secret42"


def with_sip(site: Site, **changes: object) -> Site:
    sip = SipRtp.model_validate({**site.system.sip_rtp.model_dump(), **changes})
    return site.model_copy(update={"system": site.system.model_copy(update={"sip_rtp": sip})})


def pjsip(files: dict[str, str], name: str, kind: str) -> dict[str, list[str]]:
    for section in parse_conf(files["pjsip.conf"]):
        if section.name == name and ("type", "=", kind) in section.entries:
            found: dict[str, list[str]] = {}
            for key, _, value in section.entries:
                found.setdefault(key, []).append(value)
            return found
    raise AssertionError(f"no [{name}] of type {kind}")


def test_g729_and_ilbc_are_refused_with_a_reason() -> None:
    with pytest.raises(SettingsError) as error:
        parse_site("system: {sip_rtp: {remote_codecs: [opus, g729]}}\nusers: []\n")
    assert any("g729 cannot be carried" in p.message for p in error.value.problems)
    with pytest.raises(ValidationError, match="ilbc cannot be carried"):
        SipRtp.model_validate({"lan_codecs": ["ilbc"]})


def test_rtp_range_must_hold_the_concurrent_calls() -> None:
    SipRtp(rtp_start=10000, rtp_end=10799, concurrent_calls=200)
    with pytest.raises(ValidationError, match="200 concurrent calls need 800"):
        SipRtp(rtp_start=10000, rtp_end=10798, concurrent_calls=200)


def test_tls_needs_certificate_and_key_and_its_own_port() -> None:
    with pytest.raises(ValidationError, match="go together"):
        SipRtp(tls_certificate="/etc/asterisk/keys/pbx.crt")
    with pytest.raises(ValidationError, match="collides"):
        SipRtp(tls_certificate="/k/a.crt", tls_private_key="/k/a.key", tls_port=5060)
    with pytest.raises(ValidationError):
        SipRtp(tls_certificate="relative.crt", tls_private_key="/k/a.key")


TLS_FILES = {"tls_certificate": "/k/a.crt", "tls_private_key": "/k/a.key"}


def test_tls_needs_an_external_address_and_srtp_required_needs_tls() -> None:
    # Before: TLS rendered without external address (remote phones got private SDP), and
    # nothing stopped SRTP being asked for where no transport could carry its keys.
    with pytest.raises(ValidationError, match="external_address is required with TLS"):
        SipRtp(**TLS_FILES)
    with pytest.raises(ValidationError, match="srtp: required needs TLS"):
        SipRtp(srtp="required")
    SipRtp(**TLS_FILES, external_address="203.0.113.7", srtp="required")
    with pytest.raises(SettingsError) as error:
        parse_site("system: {sip_rtp: {tls_certificate: /k/a.crt, tls_private_key: /k/a.key}}"
                   "\nusers: []\n")
    assert any(p.location.startswith("system.sip_rtp") and "external_address" in p.message
               for p in error.value.problems)
    with pytest.raises(SettingsError) as error:
        parse_site("groups:\n  - {name: default}\n  - {name: remote, srtp: required}\n"
                   "users: []\n")
    assert [p.location for p in error.value.problems if "srtp" in p.message] == \
        ["groups[1].srtp (<settings> line 3)"]


def test_srtp_per_site_and_group_renders() -> None:
    site = with_secrets(load_site(EXAMPLE), MemoryVault())
    site = with_sip(site, **TLS_FILES, external_address="203.0.113.7", srtp="required")
    users = {u.extension: u.group for u in site.users}
    other = next(g for g in site.groups if g.name != users["101"])
    groups = [g.model_copy(update={"srtp": Srtp.OFF}) if g.name == other.name else g
              for g in site.groups]
    files = render_site(site.model_copy(update={"groups": groups}), manager_secret=SECRET)
    tls = pjsip(files, "transport-tls", "transport")
    assert tls["method"] == ["sslv23"]
    assert set(tls["cipher"][0].split(",")) >= {"TLS_AES_128_GCM_SHA256",
                                                  "ECDHE-RSA-AES128-GCM-SHA256"}
    assert not [c for c in tls["cipher"][0].split(",") if "CBC" in c or c.endswith("-SHA")]
    for extension, group in users.items():
        if extension not in ("101", "102", "100"):
            continue
        endpoint = pjsip(files, extension, "endpoint")
        if group == other.name:  # a LAN phone: no SRTP, lan_networks only, any transport
            assert "media_encryption" not in endpoint, extension
            assert "transport" not in endpoint
            assert endpoint["context"][0].startswith("proc-")
            assert endpoint["permit"] == ["192.168.1.0/24,10.20.0.0/16"]
        else:  # a TLS phone: SRTP required, reached over TLS only, its calls gated
            assert endpoint["media_encryption"] == ["sdes"], extension
            assert endpoint["media_encryption_optimistic"] == ["no"], extension
            assert endpoint["transport"] == ["transport-tls"]
            assert endpoint["context"] == ["wildix-tls-users"]
            assert endpoint["subscribe_context"] == ["proc-users"]
            assert "permit" not in endpoint and "deny" not in endpoint
    assert other.name in {users[e] for e in ("100", "101", "102")}
    gate = next(s for s in parse_conf(files["extensions.conf"])
                if s.name == "wildix-tls-users")
    assert next(v for k, _, v in gate.entries if k == "exten").startswith(
        '_[0-9#*+],1,GotoIf($["${CHANNEL(pjsip,secure)}" != "1"]?insecure)')
    # without TLS: no gate, no ACL, no SRTP (srtp required is refused by validation)
    plain = render_site(with_sip(site, srtp="off", tls_certificate=None, tls_private_key=None),
                        manager_secret=SECRET)
    assert "wildix-tls-" not in plain["extensions.conf"]
    assert "permit" not in pjsip(plain, "101", "endpoint")


def test_phone_settings_render() -> None:
    site = with_secrets(load_site(EXAMPLE), MemoryVault())
    plain = render_site(site, manager_secret=SECRET)
    endpoint = pjsip(plain, "101", "endpoint")
    # bound to 0.0.0.0: no media address to bind RTP to
    assert "media_address" not in endpoint and "bind_rtp_to_media_address" not in endpoint
    assert endpoint["rtp_timeout"] == ["60"] and endpoint["rtp_timeout_hold"] == ["600"]
    assert endpoint["timers_sess_expires"] == ["1800"] and endpoint["send_pai"] == ["yes"]
    assert "media_encryption" not in endpoint
    assert pjsip(plain, "101", "aor")["qualify_frequency"] == ["60"]
    assert "transport-tls" not in plain["pjsip.conf"]
    assert "mailboxes" not in pjsip(plain, "150", "endpoint")  # a meeting room
    assert "icesupport = no" in plain["rtp.conf"]
    # the call history (on by default): every CDR written at once, never batched in memory
    assert "enable = yes" in plain["cdr.conf"] and "batch = no" in plain["cdr.conf"]
    assert "serveremail = acme-paris@localhost" in plain["voicemail.conf"]

    tuned = with_sip(site, bind_address="192.168.1.10", rtp_timeout=30, qualify_frequency=20,
                     tls_certificate="/etc/asterisk/keys/pbx.crt",
                     tls_private_key="/etc/asterisk/keys/pbx.key", tls_port=5161,
                     external_address="203.0.113.7")
    files = render_site(tuned, manager_secret=SECRET)
    endpoint = pjsip(files, "101", "endpoint")
    assert endpoint["media_address"] == ["192.168.1.10"]
    assert endpoint["bind_rtp_to_media_address"] == ["yes"]
    assert endpoint["rtp_timeout"] == ["30"]
    # SRTP off (the default): a LAN phone, held to lan_networks, no SDES
    assert "media_encryption" not in endpoint and "transport" not in endpoint
    assert endpoint["deny"] == ["0.0.0.0/0.0.0.0"]
    assert endpoint["permit"] == ["192.168.1.0/24,10.20.0.0/16"]
    assert pjsip(files, "101", "aor")["qualify_frequency"] == ["20"]
    tls = pjsip(files, "transport-tls", "transport")
    assert tls["protocol"] == ["tls"] and tls["bind"] == ["192.168.1.10:5161"]
    assert tls["cert_file"] == ["/etc/asterisk/keys/pbx.crt"]
    assert tls["priv_key_file"] == ["/etc/asterisk/keys/pbx.key"]
    assert tls["external_media_address"] == ["203.0.113.7"]
    # an explicit media address wins over the bind address
    other = render_site(with_sip(site, media_address="10.20.0.5"), manager_secret=SECRET)
    assert pjsip(other, "101", "endpoint")["media_address"] == ["10.20.0.5"]


def test_voicemail_pins_are_random_and_kept() -> None:
    site = load_site(EXAMPLE)
    vault = MemoryVault()
    pins = voicemail_pins(site, vault)
    assert set(pins) == {"100", "101", "102", "150", "190"}
    assert all(len(pin) == 6 and pin.isdigit() for pin in pins.values())
    assert voicemail_pins(site, vault) == pins  # kept, not regenerated
    assert vault.secrets["user:101:voicemail_pin"] == pins["101"]
    files = render_site(with_secrets(site, vault), manager_secret=SECRET, voicemail_pins=pins)
    assert f"101 => {pins['101']},Alice Martin," in files["voicemail.conf"]


def test_store_keeps_phone_settings(tmp_path: Path) -> None:
    site = with_sip(load_site(EXAMPLE), media_address="10.20.0.5", concurrent_calls=100,
                    rtp_timeout=45, rtp_hold_timeout=900, session_expires=600,
                    qualify_frequency=30, tls_port=5161,
                    tls_certificate="/etc/asterisk/keys/pbx.crt",
                    tls_private_key="/etc/asterisk/keys/pbx.key",
                    external_address="203.0.113.7", srtp="required")
    groups = [g.model_copy(update={"srtp": Srtp.OFF}) if i == 0 else g
              for i, g in enumerate(site.groups)]
    site = site.model_copy(update={"groups": groups})
    with open_store(str(tmp_path / "s.sqlite3")) as store:
        store.import_site(site)
        exported = store.export_site()
        assert exported.system.sip_rtp == site.system.sip_rtp
        assert exported.system.sip_rtp.srtp is Srtp.REQUIRED
        assert exported.groups == site.groups and exported.groups[0].srtp is Srtp.OFF
        assert all(g.srtp is None for g in exported.groups[1:])


def test_stored_g729_is_dropped_by_the_migration(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    with open_store(str(path)) as store:
        store.import_site(load_site(EXAMPLE))
    from alembic import command
    from sqlalchemy import create_engine

    from wildix_ast.store.database import _alembic_config

    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as connection:  # the later migrations undone first
        command.downgrade(_alembic_config(connection), "0002")
    engine.dispose()
    with sqlite3.connect(path) as db:  # a store written before issue 6
        db.execute("DELETE FROM sip_codecs WHERE scope = 'remote'")
        db.execute("INSERT INTO sip_codecs VALUES ('remote', 0, 'g729')")
        db.execute("UPDATE alembic_version SET version_num = '0001'")
        for column in ("media_address", "concurrent_calls", "rtp_timeout", "rtp_hold_timeout",
                       "session_expires", "qualify_frequency", "tls_port", "tls_certificate",
                       "tls_private_key"):
            db.execute(f"ALTER TABLE system_settings DROP COLUMN {column}")
    with open_store(str(path)) as store:
        sip = store.export_site().system.sip_rtp
    assert [str(c) for c in sip.remote_codecs] == ["alaw"]
    assert sip.rtp_timeout == 60 and sip.tls_certificate is None
