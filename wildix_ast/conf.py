"""Asterisk's .conf syntax: the one parser wildix-ast has, used by apply (checks, diffs,
verification) and by the lab (asterisk.conf's [directories]).

Asterisk's own parser (main/config.c) is the reference: `[name](options)` sections with `!`
templates, inheritance and `(+)` additions; `name = value` / `name => value` items; `;`
comments, `\\;` escapes and `;-- ... --;` block comments; `#include`/`#exec` directives.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
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


def _item(line: str) -> tuple[str, str] | None:
    """(key, value) of a stripped `key = value`, `key => value` or `key += value` line, as
    ITEM_LINE finds them, with string operations: a 10,000-user pjsip.conf has 400,000
    such lines, and the regular expression was most of its parse."""
    key, equals, value = line.partition("=")
    if not equals or not key:
        return None
    if key[-1] == "+" and len(key) > 1:
        key = key[:-1]  # `+=`: the value keeps a leading ">"
    elif value.startswith(">"):
        value = value[1:]  # `=>`
    key = key.strip()
    if not key:
        return None
    return key, value.strip()


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
        found = _item(line)
        if found is None:
            raise ConfigSyntaxError(number, f"expected 'name = value', got {line!r}")
        if current is None:
            raise ConfigSyntaxError(number, "setting outside of any [section]")
        current.items.append(found)
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


# -- what changed between two versions, without parsing all of them ---------------------------
#
# A one-user change on a 10,000-user site touches a few sections of a 260,000-line pjsip.conf.
# Parsing both versions whole costs seconds; splitting them at section headers (plain string
# work) and parsing only the sections that differ costs milliseconds.

@dataclass(frozen=True)
class Chunk:
    """The text of one section (from its header line to the next header), or the preamble."""

    name: str  # the section name ("" for the preamble)
    header: str  # the header line, stripped
    line: int  # 1-based line of the header in the whole text
    text: str

    @property
    def is_template(self) -> bool:
        options = self.header.partition("]")[2]
        return "!" in options


def chunks(text: str) -> list[Chunk]:
    return list(_chunks_cached(text))


@functools.lru_cache(maxsize=16)
def _chunks_cached(text: str) -> tuple[Chunk, ...]:
    # Split where a line starts with "[" (plain string work: fast). A header indented by
    # blanks stays inside the chunk before it: a chunk may hold several sections, which only
    # makes it coarser, never wrong.
    out: list[Chunk] = []
    line = 1
    pieces = text.split("\n[")
    for i, piece in enumerate(pieces):
        if i > 0:
            piece = "[" + piece
        if i < len(pieces) - 1:
            piece += "\n"
        if not piece:
            continue
        end = piece.find("\n")
        first = (piece if end < 0 else piece[:end]).strip()
        name = first[1:].partition("]")[0].strip() if first.startswith("[") else ""
        out.append(Chunk(name, first if name else "", line, piece))
        line += piece.count("\n")
    return tuple(out)


@functools.lru_cache(maxsize=16)
def splittable(text: str) -> bool:
    """Whether chunks can be parsed one by one: no block comment may span sections."""
    # cached: in a 10,000-user pjsip.conf (8 MB, ";" and "-" everywhere) one search takes
    # ~25 ms, and an apply asks about the same texts several times
    return ";--" not in text


# Compared a block at a time: equal blocks cost a memcmp; only the first differing block is
# searched (binary search of slices of the whole text would copy megabytes each step).
_BLOCK = 64 * 1024


def _common_prefix(a: str, b: str) -> int:
    """Length of the longest common prefix."""
    n = min(len(a), len(b))
    start = 0
    while start < n:
        end = min(start + _BLOCK, n)
        if a[start:end] != b[start:end]:
            low, high = start, end - 1
            while low < high:
                mid = (low + high + 1) // 2
                if a[start:mid] == b[start:mid]:
                    low = mid
                else:
                    high = mid - 1
            return low
        start = end
    return n


def _common_suffix(a: str, b: str, limit: int) -> int:
    """Length of the longest common suffix not reaching into the first `limit` characters."""
    n = min(len(a), len(b)) - limit
    la, lb = len(a), len(b)
    done = 0
    while done < n:
        end = min(done + _BLOCK, n)
        if a[la - end:la - done] != b[lb - end:lb - done]:
            low, high = done, end - 1
            while low < high:
                mid = (low + high + 1) // 2
                if a[la - mid:la - done] == b[lb - mid:lb - done]:
                    low = mid
                else:
                    high = mid - 1
            return low
        done = end
    return n


@dataclass(frozen=True)
class Region:
    """Where two texts differ: `old[start:old_end]` became `new[start:new_end]`; what is
    before and after is identical. Bounds fall on line starts (or section headers)."""

    start: int
    old_end: int
    new_end: int


def changed_region(old: str, new: str, *, at_headers: bool = False) -> Region:
    prefix = _common_prefix(old, new)
    suffix = _common_suffix(old, new, prefix)
    mark = "\n[" if at_headers else "\n"
    # back to the start of the line (or section) the first difference is in: inside the
    # common prefix, so the same place in both texts
    start = old.rfind(mark, 0, prefix) + 1 if prefix else 0
    # on to the next line (or section) start after the last difference: inside the common
    # suffix, so the same distance from the end in both texts
    after = old.find(mark, len(old) - suffix)
    cut = len(old) - (after + 1) if after >= 0 else 0
    return Region(start, len(old) - cut, len(new) - cut)


@dataclass(frozen=True)
class ChunkChanges:
    added: tuple[Chunk, ...]  # in the new text: sections added or changed
    removed: tuple[Chunk, ...]  # in the old text: sections removed or changed


def _offset(found: tuple[Chunk, ...], lines_before: int) -> list[Chunk]:
    return [Chunk(c.name, c.header, c.line + lines_before, c.text) for c in found]


def chunk_changes(old: str, new: str) -> ChunkChanges:
    """Sections that differ, matched by header and rank among same headers. Only the region
    where the texts differ is split into sections, as strings: a `Chunk` is made only for
    the sections that differ (at 10,000 users a rename's region is 30,000 sections of
    the rows file, two of them changed)."""
    region = changed_region(old, new, at_headers=True)
    lines_before = old.count("\n", 0, region.start)
    before = _keyed_pieces(old[region.start:region.old_end])
    after = _keyed_pieces(new[region.start:region.new_end])
    added = [k for k, (_, piece) in after.items()
             if k not in before or before[k][1].rstrip() != piece.rstrip()]
    removed = [k for k, (_, piece) in before.items()
               if k not in after or after[k][1].rstrip() != piece.rstrip()]
    return ChunkChanges(_chunks_at(new[region.start:region.new_end], after, added,
                                   lines_before),
                        _chunks_at(old[region.start:region.old_end], before, removed,
                                   lines_before))


def _piece_header(piece: str) -> tuple[str, str]:
    """(name, header) of a piece of `_chunks_cached`: as its `Chunk` has them."""
    end = piece.find("\n")
    first = (piece if end < 0 else piece[:end]).strip()
    name = first[1:].partition("]")[0].strip() if first.startswith("[") else ""
    return name, first if name else ""


def _keyed_pieces(text: str) -> dict[tuple[str, int], tuple[int, str]]:
    """`text` cut as `_chunks_cached` cuts it, each piece (its offset, its text) under
    (header, rank among the same headers)."""
    seen: dict[str, int] = {}
    out: dict[tuple[str, int], tuple[int, str]] = {}
    at = 0
    pieces = text.split("\n[")
    last = len(pieces) - 1
    for i, piece in enumerate(pieces):
        if i > 0:
            piece = "[" + piece
        if i < last:
            piece += "\n"
        if piece:
            header = _piece_header(piece)[1]
            n = seen.get(header, 0)
            seen[header] = n + 1
            out[(header, n)] = (at, piece)
        at += len(piece)
    return out


def _chunks_at(text: str, keyed: dict[tuple[str, int], tuple[int, str]],
               keys: list[tuple[str, int]], lines_before: int) -> tuple[Chunk, ...]:
    """The chunks of `keys` (in `text`'s order), with the line numbers of the whole text."""
    out: list[Chunk] = []
    for key in sorted(keys, key=lambda k: keyed[k][0]):
        at, piece = keyed[key]
        name, header = _piece_header(piece)
        out.append(Chunk(name, header, lines_before + text.count("\n", 0, at) + 1, piece))
    return tuple(out)


# Template headers (`[name](!...)`, the options may follow on a later line) found from
# their "]": a literal the regex engine skips to, where `(?m)^\[[^\]\n]*\]...` tried every
# position of a 2 MB file. `_template_starts` keeps the "]" that closes a "[" at the start
# of its line.
_TEMPLATE_OPTIONS = re.compile(r"\]\s*\([^)\n]*!")


def _template_starts(text: str) -> Iterator[int]:
    for match in _TEMPLATE_OPTIONS.finditer(text):
        start = text.rfind("\n", 0, match.start()) + 1
        if text.startswith("[", start) and text.find("]", start) == match.start():
            yield start


@functools.lru_cache(maxsize=16)
def _template_chunks(text: str) -> tuple[Chunk, ...]:
    found: list[Chunk] = []
    for start in _template_starts(text):
        end = text.find("\n[", start)
        piece = text[start:end + 1 if end >= 0 else len(text)]
        first = piece.split("\n", 1)[0].strip()
        found.append(Chunk(first[1:].partition("]")[0].strip(), first,
                           text.count("\n", 0, start) + 1, piece))
    return tuple(found)


# `[name]` anywhere: the engine skips to each "[" (anchored at line starts, the pattern was
# tried at every position); `_header_index` keeps those at the start of a line.
_HEADER_NAME = re.compile(r"\[([^\]\n]+)\]")


@functools.lru_cache(maxsize=16)
def _header_index(text: str) -> dict[str, tuple[int, ...]]:
    """Section name -> offsets of its header lines (one regex pass, cached per text)."""
    index: dict[str, list[int]] = {}
    for found in _HEADER_NAME.finditer(text):
        start = found.start()
        if start == 0 or text[start - 1] == "\n":
            index.setdefault(found[1].strip(), []).append(start)
    return {name: tuple(offsets) for name, offsets in index.items()}


# Up to this many names are looked for directly (one regex of the names: ~7 ms on an 8 MB
# pjsip.conf, against ~60 ms for indexing every header); more take the index.
_FEW_NAMES = 64


def _headers_of(text: str, names: set[str]) -> dict[str, tuple[int, ...]]:
    """`_header_index(text)` restricted to `names` (names without "[", "]" or a line break),
    found by searching for those headers only: `[`, blanks, the name, blanks, `]` at the
    start of a line is exactly a header line whose stripped name it is."""
    pattern = re.compile(r"\[[^\S\n]*(" + "|".join(re.escape(n) for n in sorted(names))
                         + r")[^\S\n]*\]")
    index: dict[str, list[int]] = {}
    for found in pattern.finditer(text):
        start = found.start()
        if start == 0 or text[start - 1] == "\n":
            index.setdefault(found[1], []).append(start)
    return {name: tuple(offsets) for name, offsets in index.items()}


def chunks_named(text: str, names: set[str]) -> list[Chunk]:
    """The sections of `text` whose name is in `names` (names that are no section are
    ignored): a few names are searched for, many through an index of the header lines."""
    plain = {n for n in names if n and n == n.strip() and not any(c in n for c in "[]\n")}
    index = _headers_of(text, plain) if len(names) <= _FEW_NAMES and plain == names \
        else _header_index(text)
    found: list[Chunk] = []
    for name in sorted(names & index.keys()):
        for start in index[name]:
            end = text.find("\n[", start)
            piece = text[start:end + 1 if end >= 0 else len(text)]
            found.append(Chunk(name, piece.split("\n", 1)[0].strip(),
                               text.count("\n", 0, start) + 1, piece))
    return found


@functools.lru_cache(maxsize=64)
def _parsed_chunk(text: str) -> tuple[Section, ...]:
    # One apply parses the same changed chunks several times (restart rules, static
    # checks, expected objects); in voicemail.conf one chunk is the context of every
    # mailbox. Callers get copies (`_copy`): these stay as parsed.
    return tuple(_parse_conf(text))


def _copy(section: Section) -> Section:
    return Section(section.name, section.line, section.template, section.append,
                   list(section.inherits), list(section.items))


def parse_chunks(selected: list[Chunk], whole: str) -> list[Section]:
    """The concrete sections of `selected` chunks of `whole`, templates applied (every
    template chunk of `whole` is parsed too, so inheritance resolves). Line numbers are those
    of `whole`. Raises ConfigSyntaxError."""
    lines = {c.line for c in selected}
    templates = [c for c in _template_chunks(whole) if c.line not in lines]
    wanted = {id(c) for c in selected}
    parsed: list[Section] = []
    own: set[int] = set()
    for chunk in sorted([*templates, *selected], key=lambda c: c.line):
        try:
            found = [_copy(s) for s in _parsed_chunk(chunk.text)]
        except ConfigSyntaxError as e:
            raise ConfigSyntaxError(e.line + chunk.line - 1, e.message) from None
        for section in found:
            section.line += chunk.line - 1
            if id(chunk) in wanted:
                own.add(id(section))
        parsed.extend(found)
    keep_names = {s.name for s in parsed if id(s) in own}
    return [s for s in resolve_sections(parsed) if s.name in keep_names and not s.template]
