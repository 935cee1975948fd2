"""The directory sync's parts that need no server: Active Directory's range retrieval (slapd
never splits a value list, so AD's answers are played here exactly as AD shapes them), the
settings' defaults per server kind, and the merge rules a sync relies on."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from wildix_ast.errors import DirectoryError, SettingsError
from wildix_ast.model import fields
from wildix_ast.model.directory import DirectoryKind, DirectorySettings
from wildix_ast.model.settings_file import parse_site
from wildix_ast.model.user_merge import Incoming, merge_users
from wildix_ast.services.directory.ldap import normal_dn, ranged_values


def _ad_group(members: list[str], step: int = 1500) -> tuple[dict[str, Any], list[str]]:
    """What AD answers for a group of `members`: the first range with the entry, the rest
    when asked for `member;range=LOW-*`; and the attributes asked for."""
    asked: list[str] = []

    def answer(low: int) -> dict[str, Any]:
        high = low + step - 1
        if high >= len(members) - 1:
            return {f"member;range={low}-*": members[low:]}
        return {f"member;range={low}-{high}": members[low:high + 1]}

    def fetch(attribute: str) -> Mapping[str, Any]:
        asked.append(attribute)
        low = int(attribute.split("=")[1].split("-")[0])
        return answer(low)

    first = answer(0) if len(members) > step else {"member": members}
    return {"cn": ["big"], **first, "fetch": fetch}, asked


def test_range_retrieval_reads_every_member_of_a_large_group() -> None:
    members = [f"CN=User {i},OU=Staff,DC=corp,DC=example" for i in range(5000)]
    attributes, asked = _ad_group(members)
    fetch = attributes.pop("fetch")
    found = ranged_values(attributes, "member", fetch)
    assert found == members
    assert asked == ["member;range=1500-*", "member;range=3000-*", "member;range=4500-*"]


def test_range_retrieval_exact_multiple_and_small_groups() -> None:
    members = [f"CN=U{i},DC=x" for i in range(3000)]
    attributes, asked = _ad_group(members)
    assert ranged_values(attributes, "member", attributes.pop("fetch")) == members
    assert asked == ["member;range=1500-*"]
    small, asked = _ad_group(["CN=A,DC=x"])
    assert ranged_values(small, "member", small.pop("fetch")) == ["CN=A,DC=x"]
    assert asked == []
    assert ranged_values({"cn": ["empty"]}, "member", lambda a: {}) == []


def test_range_retrieval_stops_when_the_server_stops_answering() -> None:
    # a range the server no longer returns (the group shrank meanwhile) ends the list
    first = {"member;range=0-1499": ["CN=A,DC=x"]}
    assert ranged_values(first, "member", lambda attribute: {}) == ["CN=A,DC=x"]


def test_defaults_per_kind() -> None:
    ldap = DirectorySettings()
    assert ldap.attributes_for()["login"] == "uid"
    assert ldap.identity_attribute == "entryUUID" and ldap.change_attribute == "modifyTimestamp"
    ad = DirectorySettings(kind=DirectoryKind.ACTIVE_DIRECTORY,
                           attributes={"extension": "telephoneNumber"})
    assert ad.attributes_for()["login"] == "sAMAccountName"
    assert ad.attributes_for()["extension"] == "telephoneNumber"
    assert ad.identity_attribute == "objectGUID" and ad.change_attribute == "uSNChanged"
    assert "userAccountControl:1.2.840.113556.1.4.803:=2" in ad.effective_user_filter


@pytest.mark.parametrize(("settings", "message"), [
    ({"enabled": True, "base_dn": "dc=x"}, "at least one server"),
    ({"enabled": True, "servers": ["ldap.example.org"]}, "needs a base DN"),
    ({"servers": ["ldaps://ldap.example.org"]}, "not a valid server"),
    ({"servers": ["user:pw@ldap.example.org"]}, "not a valid server"),
    ({"user_filter": "objectClass=*"}, "LDAP filter"),
    ({"bind_dn": "cn=a\ncn=b"}, "distinguished name"),
    ({"ca_file": "relative.pem"}, "absolute path"),
    ({"extension_first": "2000", "extension_last": "1000"}, "must not be after"),
    ({"security": "plain"}, "ldaps"),
    ({"bind_dn": "c" * 1025}, "at most 1024 characters"),
    ({"user_filter": "(" + "c" * 1023 + ")"}, "at most 1024 characters"),
    ({"ca_file": "/" + "c" * 4096}, "at most 4096 characters"),
    ({"bind_dn": ""}, "distinguished name"),
    ({"group_filter": "()"}, "LDAP filter"),
])
def test_settings_refused(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        DirectorySettings.model_validate(settings)
    said = " ".join(fields.message(e) for e in caught.value.errors(include_url=False))
    assert message in said, said


def test_the_longest_values_are_accepted() -> None:
    settings = DirectorySettings(bind_dn="c" * 1024, base_dn="dc=é,dc=org",
                                 user_filter="(" + "c" * 1022 + ")", ca_file="/" + "c" * 4095)
    assert len(settings.bind_dn or "") == 1024 and len(settings.ca_file or "") == 4096


def test_settings_file_section_round_trips() -> None:
    site = parse_site("directory:\n  enabled: true\n  servers: [ldap1.example.org:636, "
                      "ldap2.example.org]\n  base_dn: dc=example,dc=org\n")
    assert site.directory.servers == ["ldap1.example.org:636", "ldap2.example.org"]


def test_normal_dn() -> None:
    assert normal_dn("CN=Jo Smith, OU=Staff,DC=Corp") == "cn=jo smith,ou=staff,dc=corp"


SITE = """
groups: [{name: default}, {name: sales}]
users:
  - {name: A, extension: "101", group: sales}
  - {name: B, extension: "102"}
  - {name: C, extension: "103"}
  - {name: D, extension: "104"}
"""


def test_merge_keeps_what_the_source_does_not_give_and_fills_holes() -> None:
    site = parse_site(SITE)
    merged, changes = merge_users(
        site, [Incoming("uid=a", {"name": "A2", "extension": "101", "group": "default"})],
        remove=["102"], keep=("group",), fill_holes=True)
    assert [u.extension for u in merged.users] == ["101", "104", "103"]
    assert merged.users[0].name == "A2" and merged.users[0].group == "sales"
    assert [u.extension for u in changes.removed] == ["102"]
    assert [a.extension for _, a in changes.changed] == ["101"]


def test_merge_locates_problems_at_their_source() -> None:
    site = parse_site(SITE)
    with pytest.raises(SettingsError) as caught:
        merge_users(site, [Incoming("uid=x,dc=example", {"name": "X", "extension": "1"}),
                           Incoming("uid=y,dc=example", {"name": "Y", "extension": "105",
                                                         "group": "nosuch"})])
    where = {p.location for p in caught.value.problems}
    assert "uid=x,dc=example: extension" in where
    assert any(w.startswith("uid=y,dc=example") for w in where)


def test_directory_error_has_its_own_exit_code() -> None:
    assert DirectoryError.exit_code == 10


def test_a_missing_ca_file_is_a_clear_error() -> None:
    from wildix_ast.services.directory.ldap import DirectoryConnection

    settings = DirectorySettings(enabled=True, servers=["127.0.0.1:1"], base_dn="dc=x",
                                 ca_file="/nonexistent/ca.pem")
    with pytest.raises(DirectoryError, match=r"ca_file /nonexistent/ca\.pem: cannot be used"):
        DirectoryConnection(settings, None)


def test_a_stale_merge_is_not_written(tmp_path: Path) -> None:
    """A CSV import or a sync builds its site from the store as read; if another writer
    changed the store meanwhile, writing it would undo that change: it is refused."""
    from wildix_ast.errors import StoreError
    from wildix_ast.store import open_store
    from wildix_ast.store.directory import import_unless_changed

    with open_store(str(tmp_path / "s.sqlite3")) as store:
        store.import_site(parse_site(SITE))
        read_at = store.revision()
        stale, _ = merge_users(store.export_site(),
                               [Incoming("line 2", {"name": "Z", "extension": "109"})])
        other, _ = merge_users(store.export_site(),
                               [Incoming("elsewhere", {"name": "B2", "extension": "102"})])
        store.import_site(other)
        with pytest.raises(StoreError, match="changed while this command was reading"):
            import_unless_changed(store, stale, read_at)
        users = {u.extension: u.name for u in store.export_site().users}
        assert users["102"] == "B2" and "109" not in users
        assert import_unless_changed(store, other, store.revision()).changed == 0


# --- Active Directory's answers (no AD server here: constructed as ldap3 returns them) ------

# What ldap3 hands over for one AD user (raw attribute values, as bytes): objectGUID is 16
# binary bytes in AD's mixed byte order; uSNChanged a decimal counter.
_AD_GUID = bytes.fromhex("3f2504e04f8941d39a0c0305e82c3301")
_AD_USER = {
    "objectGUID": [_AD_GUID],
    "uSNChanged": [b"123456"],
    "displayName": [b"Jo Smith"],
    "sAMAccountName": [b"jsmith"],
    "ipPhone": [b"2042"],
    "telephoneNumber": [b"+33 1 44 55 66 77"],
    "mail": [b"jo.smith@corp.example"],
    "mobile": [b"+33 (6) 12-34-56-78"],
    "department": ["R&D Équipe".encode()],
}


def test_an_active_directory_user_becomes_a_pbx_user() -> None:
    from wildix_ast.services.directory.ldap import entry_of, guid_text
    from wildix_ast.services.directory.sync import _extension, _user_data

    # AD tools show this GUID as {e004253f-894f-d341-9a0c-0305e82c3301}: the first three
    # groups little-endian
    assert guid_text(_AD_GUID) == "{e004253f-894f-d341-9a0c-0305e82c3301}"
    ad = DirectorySettings(kind=DirectoryKind.ACTIVE_DIRECTORY, acl_group="staff")
    entry = entry_of("CN=Jo Smith,OU=Staff,DC=corp,DC=example", _AD_USER)
    assert entry.first(ad.identity_attribute) == "{e004253f-894f-d341-9a0c-0305e82c3301}"
    assert entry.first(ad.change_attribute) == "123456"
    mapping = ad.attributes_for()
    data = _user_data(entry, ad, mapping)
    assert data == {"group": "staff", "name": "Jo Smith", "login": "jsmith",
                    "email": "jo.smith@corp.example", "mobile": "+33612345678",
                    "office_did": "+33144556677", "department": "R&D Équipe"}
    assert _extension(entry, mapping.get("extension")) == "2042"  # ipPhone, not the DID
    # a number that is no extension (a DID in ipPhone) is not used
    other = entry_of("CN=X,DC=corp", {**_AD_USER, "ipPhone": [b"+33 1 44 55 66 00"]})
    assert _extension(other, mapping.get("extension")) is None


def test_active_directory_defaults_disabled_accounts_and_change_mark() -> None:
    ad = DirectorySettings(kind=DirectoryKind.ACTIVE_DIRECTORY)
    # the userAccountControl bit 2 (ACCOUNTDISABLE), by the bitwise-AND matching rule: a
    # disabled account is filtered out, so it leaves the PBX like a deleted one
    assert ad.effective_user_filter == (
        "(&(objectCategory=person)(objectClass=user)"
        "(!(userAccountControl:1.2.840.113556.1.4.803:=2)))")
    assert ad.change_attribute == "uSNChanged"
    assert ad.attributes_for() == {
        "name": "displayName", "login": "sAMAccountName", "extension": "ipPhone",
        "email": "mail", "mobile": "mobile", "office_did": "telephoneNumber",
        "department": "department"}
    # the filter a person writes replaces the default, the identity stays objectGUID
    own = DirectorySettings(kind=DirectoryKind.ACTIVE_DIRECTORY,
                            user_filter="(memberOf=CN=PBX,DC=corp)")
    assert own.effective_user_filter == "(memberOf=CN=PBX,DC=corp)"
    assert own.identity_attribute == "objectGUID"


def test_range_retrieval_as_active_directory_names_it_with_other_attributes() -> None:
    # AD answers the first read with the group's other attributes and `member;range=0-1499`
    # (never plain `member`), in any letter case
    members = [f"CN=U{i},DC=x" for i in range(1600)]
    first = {"cn": ["big"], "Member;Range=0-1499": members[:1500]}
    asked: list[str] = []

    def fetch(attribute: str) -> Mapping[str, Any]:
        asked.append(attribute)
        return {"member;range=1500-*": members[1500:]}

    assert ranged_values(first, "member", fetch) == members
    assert asked == ["member;range=1500-*"]
