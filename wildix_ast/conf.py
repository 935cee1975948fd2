"""Asterisk's .conf syntax: the one parser wildix-ast has, used by apply (checks, diffs,
verification) and by the lab (asterisk.conf's [directories]).

Asterisk's own parser (main/config.c) is the reference: `[name](options)` sections with `!`
templates, inheritance and `(+)` additions; `name = value` / `name => value` items; `;`
comments, `\\;` escapes and `;-- ... --;` block comments; `#include`/`#exec` directives.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field


class ConfigSyntaxError(ValueError):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.message = message


@dataclass
class Section:
    """One `[name](options)` section of an Asterisk .conf file."""

    name: str
    line: int
    template: bool = False
    append: bool = False
    inherits: list[str] = field(default_factory=list)
    items: list[tuple[str, str]] = field(default_factory=list)

    def get(self, key: str) -> str | None:
        return next((v for k, v in reversed(self.items) if k == key), None)


SECTION_LINE = re.compile(r"^\[(?P<name>[^\]]+)\]\s*(?:\((?P<options>[^)]*)\))?\s*$")
ITEM_LINE = re.compile(r"^(?P<key>[^=\s][^=]*?)\s*(?P<op>=>|\+=|=)\s*(?P<value>.*)$")


def _strip_comment(line: str, in_block: bool) -> tuple[str, bool]:
    """The line without comments (`;` to the end, `;-- ... --;` blocks, `\\;` escaped)."""
    if not in_block and ";" not in line:
        return line, False  # most lines: nothing to strip
    out: list[str] = []
    i = 0
    while i < len(line):
        if in_block:
            end = line.find("--;", i)
            if end < 0:
                return "".join(out), True
            i, in_block = end + 3, False
            continue
        ch = line[i]
        if ch == "\\" and line[i + 1:i + 2] == ";":
            out.append(";")
            i += 2
        elif line.startswith(";--", i):
            in_block = True
            i += 3
        elif ch == ";":
            break
        else:
            out.append(ch)
            i += 1
    return "".join(out), in_block


def parse_conf(text: str) -> list[Section]:
    """Sections of an Asterisk .conf text; `#include` and `#exec` lines are kept as items
    named `#include`/`#exec` of the current section. Raises ConfigSyntaxError."""
    return list(_parse_conf_cached(text))


@functools.lru_cache(maxsize=16)
def _parse_conf_cached(text: str) -> tuple[Section, ...]:
    # One apply looks at the same old and new texts several times (validation, transports,
    # expected and stale objects): a 10,000-user pjsip.conf is parsed once, not five times.
    return tuple(_parse_conf(text))


def _parse_conf(text: str) -> list[Section]:
    sections: list[Section] = []
    current: Section | None = None
    in_block = False
    for number, raw in enumerate(text.splitlines(), start=1):
        line, in_block = _strip_comment(raw, in_block)
        line = line.strip()
        if not line:
            continue
        if line.startswith("#"):
            directive, _, argument = line.partition(" ")
            if directive not in ("#include", "#tryinclude", "#exec", "#tryexec"):
                raise ConfigSyntaxError(number, f"unknown directive {directive}")
            if current is not None:
                current.items.append((directive, argument.strip()))
            continue
        header = SECTION_LINE.match(line) if line[0] == "[" else None
        if header:
            options = [o.strip() for o in (header["options"] or "").split(",") if o.strip()]
            current = Section(name=header["name"].strip(), line=number,
                              template="!" in options, append="+" in options,
                              inherits=[o for o in options if o not in ("!", "+")])
            sections.append(current)
            continue
        if line.startswith("["):
            raise ConfigSyntaxError(number, f"malformed section header {line!r}")
        item = ITEM_LINE.match(line)
        if item is None:
            raise ConfigSyntaxError(number, f"expected 'name = value', got {line!r}")
        if current is None:
            raise ConfigSyntaxError(number, "setting outside of any [section]")
        current.items.append((item["key"].strip(), item["value"].strip()))
    if in_block:
        raise ConfigSyntaxError(len(text.splitlines()), "unterminated ;-- block comment --;")
    return sections


def resolve_sections(sections: list[Section]) -> list[Section]:
    """Concrete (non-template) sections with inherited items first, `(+)` sections merged
    into the section they extend. Raises ConfigSyntaxError for an unknown template."""
    templates: dict[str, Section] = {}
    concrete: list[Section] = []
    for section in sections:
        if section.append:
            target = next((s for s in reversed(concrete) if s.name == section.name), None)
            if target is None:
                target = templates.get(section.name)
            if target is None:
                raise ConfigSyntaxError(section.line,
                                        f"[{section.name}](+) extends no earlier section")
            target.items.extend(section.items)
            continue
        items: list[tuple[str, str]] = []
        for parent in section.inherits:
            if parent not in templates:
                raise ConfigSyntaxError(section.line, f"[{section.name}] inherits unknown "
                                        f"template {parent!r}")
            items.extend(templates[parent].items)
        resolved = Section(section.name, section.line, section.template, False,
                           list(section.inherits), items + section.items)
        # a non-template section can also serve as a template in Asterisk
        templates[section.name] = resolved
        if not section.template:
            concrete.append(resolved)
    return concrete


def directories(text: str) -> dict[str, str]:
    """The `[directories]` of an asterisk.conf text (`astetcdir => /etc/asterisk`...).
    A `[directories](!)` template is ignored, as Asterisk ignores it."""
    found: dict[str, str] = {}
    for section in resolve_sections(parse_conf(text)):
        if section.name == "directories":
            found.update((key, value.lstrip(">").strip()) for key, value in section.items)
    return found


def sections(text: str) -> list[Section]:
    """The concrete sections of `text` as Asterisk sees them (templates applied)."""
    return list(_sections_cached(text))


@functools.lru_cache(maxsize=16)
def _sections_cached(text: str) -> tuple[Section, ...]:
    # One apply looks at the same old and new texts several times (checks, transports,
    # expected objects): a 10,000-user pjsip.conf is parsed once, not five times.
    return tuple(resolve_sections(parse_conf(text)))
