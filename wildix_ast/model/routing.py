"""Outgoing routing across sections: numbering plan, ACL groups, trunks and trunk groups.

`routing_errors` is what `validate` reports about them (each problem located); `outgoing`
resolves, for the renderers, which trunk group each external call class leaves on."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from pydantic_core import InitErrorDetails, PydanticCustomError

from wildix_ast.model.call_classes import CallClass, NumberingPlan, NumberRule, Shape, matches
from wildix_ast.model.trunks import TrunkAuth

if TYPE_CHECKING:
    from wildix_ast.model.sections import Sections

Location = tuple[str | int, ...]


def _error(loc: Location, message: str) -> InitErrorDetails:
    return {"type": PydanticCustomError("reference", message), "loc": loc, "input": None}


def numbering_plan(site: Sections) -> NumberingPlan:
    return NumberingPlan.of(site.dialplan.general, site.system.language_region.country_code)


def outgoing(site: Sections) -> dict[CallClass, str]:
    """External class -> the trunk group its calls leave on (classes without one: refused)."""
    general = site.dialplan.general
    routes: dict[CallClass, str] = {}
    for call_class in CallClass:
        if call_class is CallClass.INTERNAL:
            continue
        group = next((c.trunk_group for c in general.classes
                      if c.call_class is call_class and c.trunk_group), general.trunk_group)
        if group is not None:
            routes[call_class] = group
    return routes


def _overlaps(rules: list[NumberRule], where: Location) -> Iterator[InitErrorDetails]:
    shapes = [Shape.parse(r.pattern) for r in rules]
    for i, shape in enumerate(shapes):
        for j in range(i):
            if shape.overlaps(shapes[j]):
                yield _error((*where, i, "pattern"),
                             f"pattern {rules[i].pattern!r} overlaps {rules[j].pattern!r} "
                             f"({'.'.join(map(str, where))}[{j}]): a number would have two "
                             "classes")


def routing_errors(site: Sections) -> Iterator[InitErrorDetails]:
    general = site.dialplan.general
    here: Location = ("dialplan", "general")

    for i, group in enumerate(site.groups):
        for call_class in sorted(set(group.allow) & set(group.deny)):
            yield _error(("groups", i, "deny"), f"{call_class} is both allowed and denied")
        if CallClass.EMERGENCY in group.deny:
            yield _error(("groups", i, "deny"), "emergency calls always go out; they cannot "
                         "be denied")

    # Names (unique trunks and trunk groups, references to them) are declared in
    # wildix_ast/model/references.py; here the rules that need the routing's meaning.
    addresses: dict[str, str] = {}
    for i, trunk in enumerate(site.trunks):
        if trunk.auth is TrunkAuth.IP:
            for address in trunk.identify_addresses:
                if address in addresses:
                    yield _error(("trunks", i, "addresses"), f"{address} already identifies "
                                 f"{addresses[address]}: calls from it would match two trunks")
                addresses.setdefault(address, f"trunks[{i}]")
    for i, trunk_group in enumerate(site.trunk_groups):
        for j, name in enumerate(trunk_group.trunks):
            if name in trunk_group.trunks[:j]:
                yield _error(("trunk_groups", i, "trunks", j), f"trunk {name!r} listed twice")

    seen_classes: dict[CallClass, int] = {}
    for i, settings in enumerate(general.classes):
        at = (*here, "classes", i)
        call_class = settings.call_class
        if call_class in seen_classes:
            yield _error((*at, "call_class"), f"{call_class} already set at dialplan.general."
                         f"classes[{seen_classes[call_class]}]")
        seen_classes.setdefault(call_class, i)
        if call_class is CallClass.INTERNAL:
            yield _error((*at, "call_class"), "internal calls never leave on a trunk")
        if settings.max_calls is not None and call_class is CallClass.EMERGENCY:
            yield _error((*at, "max_calls"), "emergency calls are never limited")
    routes = outgoing(site)
    if routes and CallClass.EMERGENCY not in routes:
        yield _error((*here, "trunk_group"), "emergency calls have no trunk group while other "
                     "classes do: set trunk_group, or one for emergency in classes")
    if general.number_rules is not None:
        yield from _overlaps(general.number_rules, (*here, "number_rules"))
    if general.short_numbers is not None:
        yield from _overlaps(general.short_numbers, (*here, "short_numbers"))
    plan = numbering_plan(site)
    for i, number in enumerate(plan.emergency_numbers):
        for rule in plan.short_numbers:
            if matches(rule.pattern, number):
                loc = (*here, "emergency_numbers", i) if general.emergency_numbers is not None \
                    else (*here, "short_numbers")
                yield _error(loc, f"emergency number {number} also matches short number "
                             f"pattern {rule.pattern!r}")
    # Dialled as-is, short numbers must not look like a national number (Italy has no
    # national prefix: a short '3XXX.' would shadow mobiles '3XXXXXXXX.').
    national_forms = [(r, Shape.parse(plan.national_prefix + r.pattern))
                      for r in plan.number_rules]
    for i, short in enumerate(plan.short_numbers):
        for rule, form in national_forms:
            if Shape.parse(short.pattern).overlaps(form):
                yield _error((*here, "short_numbers", i, "pattern") if general.short_numbers
                             is not None else (*here, "short_numbers"),
                             f"short number pattern {short.pattern!r} also matches national "
                             f"numbers dialled as {plan.national_prefix}{rule.pattern}")
    internal: dict[str, Location] = {site.dialplan.echo_test: ("dialplan", "echo_test"),
                site.dialplan.voicemail: ("dialplan", "voicemail")}
    for i, user in enumerate(site.users):
        internal.setdefault(user.extension, ("users", i, "extension"))
    for number, loc in internal.items():
        found = plan.classify(number)
        if found is not None:
            yield _error(loc, f"{number} is also an external number ({found[0]} in the "
                         "numbering plan): change one of them")
