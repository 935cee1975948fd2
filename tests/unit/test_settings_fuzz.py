"""Whatever the settings file holds, the loader answers with a Site or a SettingsError whose
problems are located, never another exception (which the CLI would show as a crash)."""

from __future__ import annotations

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from support.examples import examples

from wildix_ast.errors import SettingsError
from wildix_ast.model.settings_file import parse_site
from wildix_ast.model.site import Site

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                    st.text(max_size=12), st.sampled_from(["101", "fr", "default", "users",
                                                           "a@b.io", "+33140000101", "admin"]))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.sampled_from(["name", "extension", "email", "group", "type", "users",
                                     "system", "groups", "dialplan", "x"]), inner, max_size=4)),
    max_leaves=12)
sites = st.fixed_dictionaries({}, optional={
    "system": values, "groups": values, "dialplan": values,
    "users": st.lists(st.dictionaries(st.sampled_from(
        ["name", "extension", "email", "group", "type", "login", "office_did", "dialplan",
         "sip_password", "colour"]), scalars, max_size=6), max_size=4)})


def check(text: str) -> None:
    try:
        site = parse_site(text, "fuzz.yaml")
    except SettingsError as error:
        assert error.message
        assert all(p.message for p in error.problems)
    else:
        assert isinstance(site, Site)


@settings(max_examples=examples(300), suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(sites)
def test_any_structure_is_a_site_or_located_problems(data: dict[str, object]) -> None:
    check(yaml.safe_dump(data))


@settings(max_examples=examples(300), deadline=None)
@given(st.text(max_size=200))
@example(":")  # yaml-rs reads {None: None}; PyYAML cannot compose it to locate the problem
@example("\x1f:")  # a control character yaml-rs accepts and PyYAML refuses
def test_any_text_is_a_site_or_a_settings_error(text: str) -> None:
    check(text)
