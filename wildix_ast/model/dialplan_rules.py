"""What `validate` reports about procedures, call groups, IVRs and incoming calls beyond
names (names and references to them are declared in `references.py`): duplicate numbers, a
number an earlier one always takes, go-to loops between procedures, targets that cannot
take a call, DIDs two trunks claim."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from pydantic_core import InitErrorDetails, PydanticCustomError

from wildix_ast.model.call_classes import Shape
from wildix_ast.model.common import DEFAULT_PROCEDURE
from wildix_ast.model.ivrs import IvrTarget
from wildix_ast.model.procedures import (
    DialTrunk,
    DialTrunkGroup,
    DialUser,
    IvrApp,
    PlaySound,
    SetCallClass,
    VoicemailApp,
)
from wildix_ast.model.sounds import SoundKind
from wildix_ast.model.trunks import did_bounds

if TYPE_CHECKING:
    from wildix_ast.model.sections import Sections

Location = tuple[str | int, ...]


def _error(loc: Location, message: str) -> InitErrorDetails:
    return {"type": PydanticCustomError("dialplan", message), "loc": loc, "input": None}


def covers(wide: Shape, narrow: Shape) -> bool:
    """Every number `narrow` matches, `wide` matches too."""
    if not wide.open_end:
        return not narrow.open_end and len(narrow.positions) == len(wide.positions) \
            and all(n <= w for n, w in zip(narrow.positions, wide.positions, strict=True))
    if narrow.min_length < wide.min_length:
        return False
    # the positions `narrow` fixes beyond `wide`'s are taken by `wide`'s final '.'
    return all(n <= w for n, w in zip(narrow.positions, wide.positions, strict=False))


def _numbers(site: Sections) -> Iterator[InitErrorDetails]:
    for p, procedure in enumerate(site.dialplan.procedures):
        shapes: list[tuple[str, Shape]] = []
        for i, number in enumerate(procedure.numbers):
            at: Location = ("dialplan", "procedures", p, "numbers", i, "number")
            shape = Shape.parse(number.number)
            for j, (earlier, earlier_shape) in enumerate(shapes):
                if earlier == number.number:
                    yield _error(at, f"number {number.number!r} already listed at "
                                 f"numbers[{j}]")
                    break
                if covers(earlier_shape, shape):
                    yield _error(at, f"number {number.number!r} is never reached: "
                                 f"{earlier!r} (numbers[{j}]) takes every call it would")
                    break
            shapes.append((number.number, shape))


def _loops(site: Sections) -> Iterator[InitErrorDetails]:
    """A cycle of 'go to procedure' and 'check time frame' jumps would spin a call
    forever (at some hour, for a time frame)."""
    edges: dict[str, list[tuple[str, Location]]] = {}
    for p, procedure in enumerate(site.dialplan.procedures):
        edges[procedure.name] = [
            (target, ("dialplan", "procedures", p, "numbers", i, "applications", j))
            for i, j, target in procedure.goes_to()]
    reported: set[frozenset[str]] = set()

    def visit(name: str, path: list[str]) -> Iterator[InitErrorDetails]:
        for target, loc in edges.get(name, []):
            if target in path:
                cycle = path[path.index(target):]
                if frozenset(cycle) not in reported:
                    reported.add(frozenset(cycle))
                    yield _error(loc, "go-to loop between procedures: "
                                 + " -> ".join([*cycle, target]))
            else:
                yield from visit(target, [*path, target])

    for name in edges:
        yield from visit(name, [name])


def _targets(site: Sections) -> Iterator[InitErrorDetails]:
    users = {u.extension: u for u in site.users}
    sounds = {s.name: s for s in site.sounds}

    def mailbox(extension: str, loc: Location) -> Iterator[InitErrorDetails]:
        user = users.get(extension)
        if user is not None and user.type not in ("admin", "user"):
            yield _error(loc, f"user {extension} ({user.type}) has no mailbox")

    def phone(extension: str, loc: Location) -> Iterator[InitErrorDetails]:
        user = users.get(extension)
        if user is not None and not user.type.has_phone:
            yield _error(loc, f"user {extension} ({user.type}) has no phone to ring")

    def prompt(name: str, loc: Location) -> Iterator[InitErrorDetails]:
        sound = sounds.get(name)
        if sound is not None and sound.kind is not SoundKind.PROMPT:
            yield _error(loc, f"sound {name!r} is music on hold, not a prompt")

    for p, procedure in enumerate(site.dialplan.procedures):
        for i, number in enumerate(procedure.numbers):
            for j, app in enumerate(number.applications):
                at = ("dialplan", "procedures", p, "numbers", i, "applications", j)
                if isinstance(app, VoicemailApp):
                    yield from mailbox(app.user, (*at, "user"))
                elif isinstance(app, DialUser):
                    yield from phone(app.user, (*at, "user"))
                elif isinstance(app, PlaySound):
                    yield from prompt(app.sound, (*at, "sound"))
    for g, group in enumerate(site.call_groups):
        for m, member in enumerate(group.members):
            yield from phone(member, ("call_groups", g, "members", m))
    for v, ivr in enumerate(site.ivrs):
        yield from prompt(ivr.prompt, ("ivrs", v, "prompt"))
        targets: list[tuple[Location, IvrTarget]] = [
            (("ivrs", v, "options", k), o) for k, o in enumerate(ivr.options)]
        targets += [(("ivrs", v, name), t) for name in ("on_timeout", "on_invalid")
                    if (t := getattr(ivr, name)) is not None]
        for loc, target in targets:
            if target.voicemail is not None:
                yield from mailbox(target.voicemail, (*loc, "voicemail"))
            if target.user is not None:
                yield from phone(target.user, (*loc, "user"))


def _trunks(site: Sections) -> Iterator[InitErrorDetails]:
    claimed: list[tuple[int, int, int, str, str]] = []
    for t, trunk in enumerate(site.trunks):
        if trunk.procedure == DEFAULT_PROCEDURE:
            yield _error(("trunks", t, "procedure"), "incoming calls cannot enter the users' "
                         "procedure: it dials out (a caller could reach a trunk through it)")
        for d, did in enumerate(trunk.dids):
            first, last, digits = did_bounds(did)
            for low, high, n, other, where in claimed:
                if n == digits and first <= high and low <= last:
                    yield _error(("trunks", t, "dids", d), f"DIDs {did} overlap {other} "
                                 f"({where}): a call to them would have two trunks")
            claimed.append((first, last, digits, did, f"trunks[{t}].dids[{d}]"))


def incoming_procedures(site: Sections) -> set[str]:
    """The procedures an outside caller can reach: a trunk's, and every procedure they (or
    the IVRs they run) go to."""
    by_name = {p.name: p for p in site.dialplan.procedures}
    ivrs = {v.name: v for v in site.ivrs}
    reached: set[str] = set()
    todo = [t.procedure for t in site.trunks if t.procedure is not None]
    while todo:
        name = todo.pop()
        procedure = by_name.get(name)
        if name in reached or procedure is None:
            continue
        reached.add(name)
        todo += [target for _, _, target in procedure.goes_to()]
        for number in procedure.numbers:
            for app in number.applications:
                ivr = ivrs.get(app.ivr) if isinstance(app, IvrApp) else None
                if ivr is not None:
                    targets = [*ivr.options, ivr.on_timeout, ivr.on_invalid]
                    todo += [t.procedure for t in targets
                             if t is not None and t.procedure is not None]
    return reached


def _unclassed_trunk_dials(site: Sections) -> Iterator[InitErrorDetails]:
    """An outside caller has no ACL group: a trunk dial it can reach is checked only by the
    class a `set_call_class` gave the call before it (in the same called number: the one
    place the order is known whatever way the call came in)."""
    incoming = incoming_procedures(site)
    for p, procedure in enumerate(site.dialplan.procedures):
        if procedure.name not in incoming:
            continue
        for i, number in enumerate(procedure.numbers):
            classed = False
            for j, app in enumerate(number.applications):
                classed = classed or isinstance(app, SetCallClass)
                if isinstance(app, DialTrunk | DialTrunkGroup) and not classed:
                    yield _error(("dialplan", "procedures", p, "numbers", i, "applications", j),
                                 f"procedure {procedure.name!r} takes outside callers (from a "
                                 f"trunk) and dials a trunk without a class: put a "
                                 f"set_call_class before this {app.app}")


def dialplan_errors(site: Sections) -> Iterator[InitErrorDetails]:
    yield from _numbers(site)
    yield from _loops(site)
    yield from _targets(site)
    yield from _trunks(site)
    yield from _unclassed_trunk_dials(site)

