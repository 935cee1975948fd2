"""The settings model and its YAML file: what is accepted, and how refusals read."""

from __future__ import annotations

from pathlib import Path

import pytest

from wildix_ast.errors import SettingsError
from wildix_ast.model.passwords import generate_password, password_problems
from wildix_ast.model.settings_file import dump_site, load_site, parse_site
from wildix_ast.store.vault import MemoryVault, manager_secret, with_secrets

GOOD = """\
system:
  pbx_name: acme
  language_region: {language: fr, tone_zone: fr, country_code: "33", timezone: Europe/Paris}
groups:
  - name: default
  - name: sales
users:
  - {name: Alice Martin, extension: "101", email: alice@acme.fr, office_did: "+33140000101"}
  - {name: Bob, extension: "102", email: bob@acme.fr, group: sales, type: admin}
  - {name: Parking, extension: "700", type: park_orbit}
"""


def problems(text: str) -> list[str]:
    with pytest.raises(SettingsError) as caught:
        parse_site(text, "site.yaml")
    return [str(p) for p in caught.value.problems]


def test_good_site_loads() -> None:
    site = parse_site(GOOD)
    assert site.system.language_region.timezone == "Europe/Paris"
    assert [u.extension for u in site.users] == ["101", "102", "700"]
    assert site.users[0].dialplan == "users"
    assert site.users[0].group == "default"
    assert not site.users[2].type.has_phone


def test_bad_extension_is_located_with_its_line() -> None:
    found = problems(GOOD.replace('extension: "102"', 'extension: "1x2"'))
    assert found == ["users[1].extension (site.yaml line 9): '1x2' is not a valid extension "
                     "(2 to 8 digits)"]


def test_duplicates_and_dangling_references_are_all_reported() -> None:
    text = GOOD.replace('extension: "102", email: bob@acme.fr, group: sales',
                        'extension: "101", email: ALICE@acme.fr, group: nope')
    found = problems(text)
    assert any(p.startswith("users[1].extension") and "already used by users[0].extension" in p
               for p in found)
    assert any(p.startswith("users[1].email") and "already used by users[0]" in p for p in found)
    assert any(p.startswith("users[1].group") and "'nope' is not defined" in p for p in found)


def test_did_cannot_be_another_users_extension() -> None:
    found = problems(GOOD.replace('office_did: "+33140000101"', 'office_did: "102"'))
    assert any("users[1].extension" in p and "already used by users[0].office_did" in p
               for p in found)


def test_unknown_key_wrong_type_and_missing_field() -> None:
    found = problems(GOOD.replace("pbx_name: acme", "pbx_name: acme\n  colour: blue")
                     .replace("name: Bob, ", "")
                     .replace('extension: "700"', "extension: [7]"))
    assert any(p.startswith("system.colour") and "unknown setting" in p for p in found)
    assert any(p.startswith("users[1].name") and "is required" in p for p in found)
    assert any(p.startswith("users[2].extension") for p in found)


def test_duplicate_yaml_key_and_syntax_errors() -> None:
    found = problems("system:\n  pbx_name: a\n  pbx_name: b\n")
    assert found and "duplicate key 'pbx_name'" in found[0] and "site.yaml:3" in found[0]
    found = problems("users: [\n")
    assert found and found[0].startswith("site.yaml:")
    with pytest.raises(SettingsError, match="mapping of sections"):
        parse_site("- just\n- a list\n")


@pytest.mark.parametrize("weak", ["wildix", "admin", "Wildix123!", "MyAdmin#2024", "Sh0rt!A",
                                  "alllower1!", "NoDigits!!", "NoSpecial12", "Semi;colon1A"])
def test_weak_passwords_are_refused(weak: str) -> None:
    found = problems(GOOD.replace("name: Alice Martin,", f"name: Alice Martin, "
                                  f"sip_password: '{weak}',"))
    assert len(found) == 1 and found[0].startswith("users[0].sip_password")


def test_eight_characters_with_every_class_is_enough() -> None:
    assert password_problems("short1!A") == []
    site = parse_site(GOOD.replace("name: Alice Martin,", "name: Alice Martin, "
                                   "web_password: 'short1!A',"))
    assert site.users[0].web_password == "short1!A"


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="no such file"):
        load_site(tmp_path / "missing.yaml")
    with pytest.raises(SettingsError, match="is a directory"):
        load_site(tmp_path)
    binary = tmp_path / "site.yaml"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(SettingsError, match="not UTF-8"):
        load_site(binary)


def test_generated_passwords_comply_and_differ() -> None:
    passwords = {generate_password() for _ in range(200)}
    assert len(passwords) == 200
    assert all(password_problems(p) == [] for p in passwords)


def test_vault_fills_missing_passwords_once() -> None:
    site = parse_site(GOOD)
    vault = MemoryVault()
    first = with_secrets(site, vault)
    second = with_secrets(site, vault)
    assert first == second
    phones = [u for u in first.users if u.type.has_phone]
    assert phones and all(u.sip_password for u in phones)
    # WEB passwords are never generated: only their hash is kept, nobody could be told one.
    assert all(u.web_password is None for u in first.users)
    assert all(u.sip_password is None for u in first.users if not u.type.has_phone)
    assert manager_secret(vault, "wildix-ast") == manager_secret(vault, "wildix-ast")


def test_dump_round_trips_and_hides_secrets() -> None:
    site = with_secrets(parse_site(GOOD), MemoryVault())
    with_pw = dump_site(site, include_secrets=True)
    assert parse_site(with_pw) == site
    without = dump_site(site, include_secrets=False)
    assert "password" not in without
    assert parse_site(without) == parse_site(GOOD)


def test_unquoted_numbers_get_a_hint() -> None:
    found = problems(GOOD.replace('extension: "101"', "extension: 101"))
    assert found == ['users[0].extension (site.yaml line 8): write 101 in quotes ("101"): '
                     "unquoted, YAML reads it as a number and drops leading zeros and '+'"]


def test_procedure_names_are_unique_and_not_the_builtin() -> None:
    found = problems(GOOD + "dialplan:\n  procedures:\n    - name: users\n    - name: night\n"
                     "    - name: night\n")
    assert found == [
        "dialplan.procedures[0].name (site.yaml line 13): 'users' is the built-in procedure; "
        "choose another name",
        "dialplan.procedures[2].name (site.yaml line 15): procedure 'night' already defined "
        "at dialplan.procedures[1]"]


def test_web_password_may_be_its_hash_and_the_policy_checks_only_text() -> None:
    from wildix_ast.model.passwords import hash_password, is_password_hash, password_matches

    hashed = hash_password("short1!A")
    assert is_password_hash(hashed) and "short1!A" not in hashed
    assert password_matches(hashed, "short1!A") and not password_matches(hashed, "short1!B")
    site = parse_site(GOOD.replace("name: Alice Martin,", f"name: Alice Martin, "
                                   f"web_password: '{hashed}',"))
    assert site.users[0].web_password == hashed
    # A hash is no SIP password, and a malformed hash is checked as a password.
    malformed = hashed.replace("argon2id", "argon2i")
    found = problems(GOOD.replace("name: Alice Martin,", f"name: Alice Martin, "
                                  f"sip_password: '{hashed}', web_password: '{malformed}',"))
    assert sorted(p.split(" (")[0] for p in found) == ["users[0].sip_password",
                                                       "users[0].web_password"]


def test_defaults_count_in_raw_input_with_other_errors() -> None:
    """The one walker reads partly invalid input with the model's defaults: a user without
    a group is in 'default' (defined here), a left-out dialplan keeps echo_test *43."""
    text = GOOD.replace("  - name: default\n", "") \
        .replace('extension: "700"', 'extension: "*43x"')
    found = problems(text + "dialplan:\n  procedures: [{name: night}, {name: 5}]\n")
    assert any(p.startswith("users[0].group") and "'default' is not defined" in p
               for p in found)
    assert any(p.startswith("users[2].extension") for p in found)
    assert any(p.startswith("dialplan.procedures[1].name") for p in found)
    assert not any(p.startswith("users[1].group") for p in found)  # sales is defined


def test_a_reference_is_one_declaration() -> None:
    """The walker is driven by the declarations: a new referenced section needs no code."""
    from wildix_ast.model import references

    assert {r.path for r in references.REFERENCES} >= {"users[].group", "users[].dialplan",
                                                        "users[].fax_dialplan"}
    site = parse_site(GOOD)
    assert [(loc, v) for loc, v in references.values_at(site, type(site), "users[].group")] \
        == [(("users", 0, "group"), "default"), (("users", 1, "group"), "sales"),
            (("users", 2, "group"), "default")]
