"""Did Asterisk take it? The objects the changed files define, asked for through AMI.

What each file defines comes from its declaration (`ConfigFile.expects`: endpoints, AORs,
dialplan contexts). Only what a plan changes is checked: a one-user change on a
10,000-user site asks for one endpoint, not a listing of 10,000. A few objects are asked for
one by one; many are compared against one listing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from wildix_ast.asterisk import by_name
from wildix_ast.asterisk_cli import CliQueries
from wildix_ast.conf import ConfigSyntaxError, chunks_named, parse_chunks, sections
from wildix_ast.errors import AmiError

# Above this many objects of a kind, one listing is cheaper than one action each.
_ONE_BY_ONE = 20


@dataclass
class Expectation:
    """Objects Asterisk must show (or, as `absent`, must no longer show)."""

    endpoints: set[str] = field(default_factory=set)
    aors: set[str] = field(default_factory=set)
    contexts: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.endpoints or self.aors or self.contexts)

    def add(self, kinds: Mapping[str, Iterable[str]]) -> None:
        self.endpoints.update(kinds.get("endpoint", ()))
        self.aors.update(kinds.get("aor", ()))
        self.contexts.update(kinds.get("context", ()))

    def update(self, other: Expectation) -> None:
        self.endpoints |= other.endpoints
        self.aors |= other.aors
        self.contexts |= other.contexts

    @classmethod
    def from_files(cls, files: Mapping[str, str]) -> Expectation:
        """Everything the given files define."""
        out = cls()
        rules = by_name()
        for name, text in files.items():
            if name in rules:
                out.add(rules[name].expects(sections(text)))
        return out

    @classmethod
    def of_change(cls, name: str, old: str | None, new: str | None,
                  ) -> tuple[Expectation, Expectation]:
        """(objects to check, objects that must be gone) for one file going old → new:
        objects added or whose section changed, and objects removed. Only the sections that
        differ are parsed (a one-user change on a 10,000-user file parses a few)."""
        from wildix_ast.apply.plan import changed_sections, declares

        rules = by_name().get(name)
        present, gone = cls(), cls()
        if rules is None or not declares(rules, "expects"):
            return present, gone
        try:
            before, after = changed_sections(old or "", new or "")
            present.add(rules.expects(after))
            candidates = rules.expects(before)
            names = {n for kind in candidates.values() for n in kind}
            # a section that changed is in both; one removed is only in `before`
            still = rules.expects(parse_chunks(chunks_named(new or "", names), new or "")) \
                if names and new else {}
        except ConfigSyntaxError:
            return present, gone
        gone.add({kind: set(found) - set(still.get(kind, ()))
                  for kind, found in candidates.items()})
        return present, gone


async def _endpoint(ami: CliQueries, name: str) -> tuple[bool, set[str]]:
    """Whether endpoint `name` exists, and the AORs Asterisk attached to it (through the
    CLI: PJSIPShowEndpoint needs the AMI class `system`, which allows GetConfig too)."""
    try:
        aors = await ami.endpoint_aors(name)
    except AmiError:
        return False, set()
    return aors is not None, aors or set()


async def _context(ami: CliQueries, name: str) -> bool:
    try:
        return await ami.has_context(name)
    except AmiError:
        return False


async def _present(ami: CliQueries, expected: Expectation, absent: Expectation,
                   ) -> tuple[set[str], set[str], set[str]]:
    """(endpoints, AORs, contexts) among the asked-for ones that Asterisk has."""
    endpoints_asked = expected.endpoints | absent.endpoints
    aors_asked = expected.aors | absent.aors
    contexts_asked = expected.contexts | absent.contexts
    endpoints: set[str] = set()
    aors: set[str] = set()
    contexts: set[str] = set()
    if len(endpoints_asked) > _ONE_BY_ONE:
        endpoints = await ami.endpoints()
    else:
        for name in sorted(endpoints_asked):
            exists, attached = await _endpoint(ami, name)
            if exists:
                endpoints.add(name)
            aors |= attached
    # AORs not seen through their endpoint need the listing
    if aors_asked - aors:
        aors = await ami.aors()
    if len(contexts_asked) > _ONE_BY_ONE:
        contexts = await ami.contexts()
    else:
        contexts = {name for name in sorted(contexts_asked) if await _context(ami, name)}
    return endpoints, aors, contexts


async def check(ami: CliQueries, expected: Expectation, absent: Expectation) -> list[str]:
    endpoints, aors, contexts = await _present(ami, expected, absent)
    problems = [f"endpoint {n} missing" for n in sorted(expected.endpoints - endpoints)]
    problems += [f"removed endpoint {n} still present"
                 for n in sorted(absent.endpoints & endpoints)]
    problems += [f"AOR {n} missing" for n in sorted(expected.aors - aors)]
    problems += [f"removed AOR {n} still present" for n in sorted(absent.aors & aors)]
    problems += [f"dialplan context {n} missing" for n in sorted(expected.contexts - contexts)]
    problems += [f"removed dialplan context {n} still present"
                 for n in sorted(absent.contexts & contexts)]
    return problems


async def verify(ami: CliQueries, expected: Expectation, absent: Expectation | None = None, *,
                 timeout: float = 5.0) -> tuple[list[str], int, float]:
    """Check (again, with a growing pause, until `timeout`) that Asterisk shows `expected`
    and none of `absent`. Returns (problems left, attempts, seconds)."""
    start = time.monotonic()
    absent = absent or Expectation()
    pause, attempts = 0.02, 0
    while True:
        attempts += 1
        problems = await check(ami, expected, absent)
        elapsed = time.monotonic() - start
        if not problems or elapsed + pause > timeout:
            return problems, attempts, elapsed
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.5)
