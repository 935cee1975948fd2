"""The plan: what applying rendered files to a configuration folder would change.

An immutable value, as NAPALM's compare: made without writing anything, it gives the masked
unified diff, the problems found before Asterisk sees anything, the reloads the change needs
(each module once, the dialplan last), and whether a restart is needed. Every per-file rule
comes from the file's declaration in `wildix_ast.asterisk`.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from wildix_ast.apply.state import TargetState
from wildix_ast.asterisk import by_name
from wildix_ast.asterisk.base import ConfigFile, Reload, Restart, secret_keys
from wildix_ast.conf import (
    ITEM_LINE,
    SECTION_LINE,
    ConfigSyntaxError,
    Section,
    changed_region,
    chunk_changes,
    chunks_named,
    parse_chunks,
    sections,
    splittable,
)
from wildix_ast.errors import ApplyError, Problem
from wildix_ast.sounds.install import SoundFileChange, describe

MASK = "********"
# Files smaller than this are parsed whole; larger ones only where they changed.
WHOLE_PARSE_LIMIT = 64 * 1024
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")

ChangeKind = Literal["add", "change", "remove", "unchanged"]


@dataclass(frozen=True)
class FileChange:
    name: str
    kind: ChangeKind
    old: str | None
    new: str | None


@dataclass(frozen=True)
class ReloadStep:
    """One reload the plan needs, with the files that need it."""

    module: str
    cli: str
    files: tuple[str, ...]


def _rules(name: str) -> ConfigFile | None:
    return by_name().get(name)


_DEFAULT_RULES = {f.name: f.default for f in dataclasses.fields(ConfigFile)}


def declares(rules: ConfigFile, rule: str) -> bool:
    """Whether the file declares its own `rule` (checks, expects, restart_needed): the
    defaults find nothing, so the changed sections need not be parsed for them."""
    return getattr(rules, rule) is not _DEFAULT_RULES[rule]


def _mask(text_lines: list[str], name: str,
          reference: dict[tuple[str, str, int], str] | None = None,
          section: str = "") -> tuple[list[str], dict[tuple[str, str, int], str]]:
    """`text_lines` (starting inside `section`) with secret values replaced by MASK; a
    value that differs from the one at the same place in `reference` is shown as
    `MASK (changed)`."""
    rules = _rules(name)
    is_secret = rules.secret if rules is not None else secret_keys
    lines: list[str] = []
    values: dict[tuple[str, str, int], str] = {}
    seen: dict[tuple[str, str], int] = {}
    for raw in text_lines:
        stripped = raw.strip()
        if stripped.startswith("["):
            header = SECTION_LINE.match(stripped)
            if header:
                section = header["name"].strip()
            lines.append(raw)
            continue
        item = ITEM_LINE.match(stripped) if not stripped.startswith((";", "#")) else None
        secret = None
        if item is not None:
            secret = is_secret(section, item["key"].strip(), item["op"], item["value"])
        if item is None or secret is None:
            lines.append(raw)
            continue
        value, rest = secret
        key = item["key"].strip()
        n = seen.get((section, key), 0)
        seen[(section, key)] = n + 1
        values[(section, key, n)] = value
        marker = MASK
        if reference is not None and reference.get((section, key, n)) != value:
            marker = f"{MASK} (changed)"
        head = raw[:raw.index(item["op"], raw.index(key) + len(key)) + len(item["op"])]
        head += raw[len(head):len(raw) - len(raw[len(head):].lstrip())]
        lines.append(f"{head}{marker}{rest}")
    return lines, values


@dataclass(frozen=True)
class Plan:
    """What applying `changes` to `etc_dir` would do; nothing is written by making one."""

    etc_dir: Path
    changes: tuple[FileChange, ...]
    drifted: tuple[str, ...] = ()
    sound_files: tuple[SoundFileChange, ...] = ()
    """Sound files to write or remove under Asterisk's data folder (wildix_ast.sounds.install)."""
    sound_files_after: tuple[tuple[str, bytes], ...] | None = None
    """Every sound file the data folder holds once the plan is applied, (path, bytes) by
    path: what the generation records. None: the sound files are left alone."""

    def _names(self, kind: ChangeKind) -> list[str]:
        return [c.name for c in self.changes if c.kind == kind]

    @property
    def added(self) -> list[str]:
        return self._names("add")

    @property
    def changed(self) -> list[str]:
        return self._names("change")

    @property
    def removed(self) -> list[str]:
        return self._names("remove")

    @property
    def unchanged(self) -> list[str]:
        return self._names("unchanged")

    @property
    def touched(self) -> list[FileChange]:
        return [c for c in self.changes if c.kind != "unchanged"]

    @property
    def has_changes(self) -> bool:
        return bool(self.touched) or bool(self.sound_files)

    @property
    def new_files(self) -> dict[str, str]:
        """Every file the target holds once the plan is applied."""
        return {c.name: c.new for c in self.changes if c.new is not None}

    @property
    def new_sound_files(self) -> dict[str, bytes] | None:
        """Every sound file the data folder holds once the plan is applied (None: the plan
        leaves them alone)."""
        return None if self.sound_files_after is None else dict(self.sound_files_after)

    def file(self, name: str) -> FileChange | None:
        return next((c for c in self.changes if c.name == name), None)

    def diff(self) -> str:
        """Unified diff running → new of every touched file, secrets masked."""
        out: list[str] = []
        for change in self.touched:
            out.extend(_file_diff(change))
        if self.sound_files:
            out += ["sound files (under Asterisk's data folder):", *describe(self.sound_files)]
        return "\n".join(out) + ("\n" if out else "")

    def modules_to_reload(self) -> list[ReloadStep]:
        """The reloads the touched files need, each module once, in their declared order
        (the dialplan last). Files that need a restart are in `restart_reasons()`."""
        steps: dict[str, tuple[Reload, list[str]]] = {}
        for change in self.touched:
            rules = _rules(change.name)
            if rules is not None and isinstance(rules.applied_by, Reload):
                reload = rules.applied_by
                steps.setdefault(reload.module, (reload, []))[1].append(change.name)
        ordered = sorted(steps.values(), key=lambda s: (s[0].order, s[0].module))
        return [ReloadStep(r.module, r.cli, tuple(files)) for r, files in ordered]

    def restart_reasons(self) -> list[str]:
        """Why this change cannot be applied by reloads alone (empty: reloads suffice)."""
        reasons: list[str] = []
        for change in self.touched:
            rules = _rules(change.name)
            if rules is None:
                reasons.append(f"{change.name}: no known reload for this file")
            elif isinstance(rules.applied_by, Restart):
                reasons.append(f"{change.name}: {rules.applied_by.reason}")
            elif change.old is not None and change.new is not None \
                    and declares(rules, "restart_needed"):
                try:
                    old, new = changed_sections(change.old, change.new)
                    needed = rules.restart_needed(old, new)
                except ConfigSyntaxError:
                    continue  # reported by validate()
                reasons += [f"{change.name}: {reason}" for reason in needed]
        return reasons

    def transport_changes(self) -> list[str]:
        """PJSIP transports added, removed or changed (these need a restart)."""
        from wildix_ast.asterisk.pjsip import transport_changes

        change = self.file("pjsip.conf")
        if change is None or change.kind == "unchanged":
            return []
        try:
            return transport_changes(*changed_sections(change.old or "", change.new or ""))
        except ConfigSyntaxError:
            return []

    def validate(self) -> list[Problem]:
        """Problems in the new files found without Asterisk: syntax, then each file's own
        static checks (PJSIP references, dialplan lines...)."""
        problems: list[Problem] = []
        for change in self.touched:
            if change.new is None:
                continue
            rules = _rules(change.name)
            checked = rules is not None and declares(rules, "checks")
            try:
                parsed = _sections_to_check(change.old, change.new, referenced=checked)
            except ConfigSyntaxError as e:
                problems.append(Problem(f"{change.name} line {e.line}", e.message))
                continue
            if rules is not None and checked:
                problems += rules.checks(parsed)
        return problems

    def to_json(self) -> dict[str, object]:
        return {
            "changed": self.has_changes,
            "files": [{"name": c.name, "change": c.kind} for c in self.touched],
            "unchanged": len(self.unchanged),
            "drifted": list(self.drifted),
            "sounds": [{"path": c.path, "change": c.kind} for c in self.sound_files],
            "diff": self.diff(),
            "reloads": [r.cli for r in self.modules_to_reload()],
            "restart_needed": self.restart_reasons(),
        }


def _partial(old: str | None, new: str) -> bool:
    return (old is not None and len(new) > WHOLE_PARSE_LIMIT and splittable(old)
            and splittable(new))


def _items_by_name(parsed: list[Section]) -> dict[str, list[tuple[str, str]]]:
    # pjsip.conf gives one name to an endpoint and its AOR: compare all sections of a name
    out: dict[str, list[tuple[str, str]]] = {}
    for section in parsed:
        out.setdefault(section.name, []).extend(section.items)
    return out


def changed_sections(old: str, new: str) -> tuple[list[Section], list[Section]]:
    """The sections of `old` and of `new` that differ (whole files when they are small)."""
    before, after = _changed_sections(old, new)
    return list(before), list(after)


@functools.lru_cache(maxsize=8)
def _changed_sections(old: str, new: str) -> tuple[tuple[Section, ...], tuple[Section, ...]]:
    # An apply asks for the same file's changes several times (the plan shown, restart
    # reasons, transports, expected objects): on a 10,000-user pjsip.conf each look scans
    # megabytes. The sections are only read by the file rules.
    if not _partial(old, new):
        before, after = sections(old), sections(new)
        old_items, new_items = _items_by_name(before), _items_by_name(after)
        return (tuple(x for x in before if old_items[x.name] != new_items.get(x.name)),
                tuple(x for x in after if new_items[x.name] != old_items.get(x.name)))
    changes = chunk_changes(old, new)
    return (tuple(parse_chunks(list(changes.removed), old)),
            tuple(parse_chunks(list(changes.added), new)))


def _sections_to_check(old: str | None, new: str, *, referenced: bool = True,
                       ) -> list[Section]:
    """What the static checks look at: the whole new file when it is small or new; else its
    changed sections plus, if `referenced`, the sections they name (an endpoint's AOR and
    auth), so references are still checked (a file without checks needs only its syntax
    checked). A section removed while an unchanged one still names it is left to Asterisk
    and to the verification."""
    if old is None or not _partial(old, new):
        return sections(new)
    added = list(chunk_changes(old, new).added)
    changed = parse_chunks(added, new)
    if not referenced:
        return changed
    names = {token.strip() for s in changed for _, value in s.items
             for token in value.split(",")}
    # an endpoint and its AOR share a name: look for every section of a named name
    lines = {c.line for c in added}
    named = [c for c in chunks_named(new, {n for n in names if n and "[" not in n
                                           and "]" not in n and "\n" not in n})
             if c.line not in lines]
    return changed + (parse_chunks(named, new) if named else [])


def _section_of(text: str, at: int) -> str:
    """The section the line starting at `at` is inside ("" before the first header)."""
    header_at = text.rfind("\n[", 0, at)
    header = text[header_at + 1:text.find("\n", header_at + 1)] if header_at >= 0 else (
        text[:text.find("\n")] if text.startswith("[") and at > 0 else "")
    found = SECTION_LINE.match(header.strip()) if header else None
    return found["name"].strip() if found else ""


Opcode = tuple[str, int, int, int, int]


def _pieces(text: str) -> list[str]:
    """`text` cut before each line that starts with "[" (a section header), each piece
    keeping its line ends: plain string work on the whole text (fast at 9 MB)."""
    if not text:
        return []
    pieces = text.split("\n[")
    last = len(pieces) - 1
    return [("[" if i else "") + piece + ("\n" if i < last else "")
            for i, piece in enumerate(pieces)]


def _opcodes(old_pieces: list[str], new_pieces: list[str],
             old_lines: list[list[str]], new_lines: list[list[str]]) -> list[Opcode]:
    """Line opcodes (as difflib's) old -> new, found section by section: the sections
    (`_pieces`, and their lines) are matched whole first, then lines only inside the
    sections that differ. difflib on the lines alone matched the 10,000 copies of
    `context = default` of a 10,000-user file against each other (18 s for a rename's two
    rows); whole sections are nearly all unique, and an equal section still means equal
    lines. Sections are compared as strings: when both texts have as many, index by
    index (a rename, a new password: no matching at all)."""
    old_starts, new_starts = _starts(old_lines), _starts(new_lines)
    out: list[Opcode] = []

    def add(tag: str, i1: int, i2: int, j1: int, j2: int) -> None:
        if out and tag == "equal" and out[-1][0] == "equal":
            out[-1] = ("equal", out[-1][1], i2, out[-1][3], j2)
        elif i1 != i2 or j1 != j2:
            out.append((tag, i1, i2, j1, j2))

    for tag, a1, a2, b1, b2 in _piece_opcodes(old_pieces, new_pieces):
        i1, i2, j1, j2 = old_starts[a1], old_starts[a2], new_starts[b1], new_starts[b2]
        if tag == "equal":
            add("equal", i1, i2, j1, j2)
            continue
        old_part = [line for piece in old_lines[a1:a2] for line in piece]
        new_part = [line for piece in new_lines[b1:b2] for line in piece]
        lines = difflib.SequenceMatcher(None, old_part, new_part, autojunk=False)
        for sub, c1, c2, d1, d2 in lines.get_opcodes():
            add(sub, i1 + c1, i1 + c2, j1 + d1, j1 + d2)
    return out


def _starts(lines: list[list[str]]) -> list[int]:
    """The first line of each piece, and the line count at the end."""
    starts = [0]
    for piece in lines:
        starts.append(starts[-1] + len(piece))
    return starts


def _piece_opcodes(old: list[str], new: list[str]) -> list[Opcode]:
    """Opcodes over whole pieces: index by index when both have as many, else difflib's."""
    if len(old) != len(new):
        return list(difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes())
    out: list[Opcode] = []
    start = 0
    for i in [i for i, (a, b) in enumerate(zip(old, new, strict=True)) if a is not b
              and a != b]:
        if start < i:
            out.append(("equal", start, i, start, i))
        if out and out[-1][0] == "replace" and out[-1][2] == i:
            out[-1] = ("replace", out[-1][1], i + 1, out[-1][3], i + 1)
        else:
            out.append(("replace", i, i + 1, i, i + 1))
        start = i + 1
    if start < len(old):
        out.append(("equal", start, len(old), start, len(old)))
    return out


def _grouped(opcodes: list[Opcode], context: int = 3) -> list[list[Opcode]]:
    """The opcodes cut into hunks with `context` lines around each change (difflib's
    grouping)."""
    if not any(tag != "equal" for tag, *_ in opcodes):
        return []
    codes = list(opcodes)
    if codes[0][0] == "equal":
        _, i1, i2, j1, j2 = codes[0]
        codes[0] = ("equal", max(i1, i2 - context), i2, max(j1, j2 - context), j2)
    if codes[-1][0] == "equal":
        _, i1, i2, j1, j2 = codes[-1]
        codes[-1] = ("equal", i1, min(i2, i1 + context), j1, min(j2, j1 + context))
    groups: list[list[Opcode]] = []
    group: list[Opcode] = []
    for tag, i1, i2, j1, j2 in codes:
        if tag == "equal" and i2 - i1 > 2 * context:
            group.append((tag, i1, i1 + context, j1, j1 + context))
            groups.append(group)
            group = []
            i1, j1 = max(i1, i2 - context), max(j1, j2 - context)
        group.append((tag, i1, i2, j1, j2))
    if group and not (len(group) == 1 and group[0][0] == "equal"):
        groups.append(group)
    return groups


def _section_before(lines: list[str], at: int, section: str) -> str:
    """The section line `at` of `lines` is inside (`section`: the one before line 0)."""
    for k in range(at - 1, -1, -1):
        stripped = lines[k].strip()
        if stripped.startswith("["):
            found = SECTION_LINE.match(stripped)
            if found:
                return found["name"].strip()
    return section


def _range(start: int, stop: int, offset: int) -> str:
    """A unified diff hunk's range, as difflib writes it (1-based; empty: the line before)."""
    length = stop - start
    if length == 1:
        return f"{start + 1 + offset}"
    return f"{start + offset + (1 if length else 0)},{length}"


def _file_diff(change: FileChange) -> list[str]:
    """The unified diff of one file, computed and masked only around what changed: between
    the texts' common head and tail, and there only in the hunks (three lines of context)."""
    old, new = change.old or "", change.new or ""
    region = changed_region(old, new)
    start = region.start
    for _ in range(3):
        if start == 0:
            break
        start = old.rfind("\n", 0, start - 1) + 1
    old_end, new_end = region.old_end, region.new_end
    for _ in range(3):
        following = old.find("\n", old_end)
        if following < 0:
            break
        new_end += following + 1 - old_end
        old_end = following + 1
    section = _section_of(old, start)
    old_pieces, new_pieces = _pieces(old[start:old_end]), _pieces(new[start:new_end])
    old_split = [piece.splitlines() for piece in old_pieces]
    new_split = [piece.splitlines() for piece in new_pieces]
    opcodes = _opcodes(old_pieces, new_pieces, old_split, new_split)
    old_lines = [line for piece in old_split for line in piece]
    new_lines = [line for piece in new_split for line in piece]
    offset = old.count("\n", 0, start)
    out: list[str] = []
    for group in _grouped(opcodes):
        if not out:
            out += [f"--- running/{change.name}", f"+++ new/{change.name}"]
        i1, i2, j1, j2 = group[0][1], group[-1][2], group[0][3], group[-1][4]
        masked_old, values = _mask(old_lines[i1:i2], change.name,
                                   section=_section_before(old_lines, i1, section))
        masked_new, _ = _mask(new_lines[j1:j2], change.name, values,
                              section=_section_before(new_lines, j1, section))
        out.append(f"@@ -{_range(i1, i2, offset)} +{_range(j1, j2, offset)} @@")
        for tag, a1, a2, b1, b2 in group:
            if tag == "equal":
                out += [f" {line}" for line in masked_old[a1 - i1:a2 - i1]]
                continue
            if tag in ("replace", "delete"):
                out += [f"-{line}" for line in masked_old[a1 - i1:a2 - i1]]
            if tag in ("replace", "insert"):
                out += [f"+{line}" for line in masked_new[b1 - j1:b2 - j1]]
    return out


def make_plan(etc_dir: Path, files: Mapping[str, str]) -> Plan:
    """Compare `files` ({name: text}) with what `etc_dir` holds now."""
    state = TargetState(etc_dir)
    for name in files:
        if not _NAME.match(name) or state.reserved(name):
            raise ApplyError(f"refusing to manage a file named {name!r} "
                             "(plain file names inside the configuration folder only)")
    manifest = state.manifest()
    changes: list[FileChange] = []
    running: dict[str, str | None] = {}  # each running file read once (pjsip.conf: 8 MB)
    for name in sorted(files):
        old = running[name] = state.read(name)
        new = files[name]
        kind: ChangeKind = "add" if old is None else ("unchanged" if old == new else "change")
        changes.append(FileChange(name, kind, old, new))
    for name in sorted(set(manifest) - set(files)):
        old = running[name] = state.read(name)
        if old is not None:
            changes.append(FileChange(name, "remove", old, None))
    drifted = tuple(sorted(
        name for name, digest in manifest.items()
        if (text := running[name]) is not None and state.digest(text) != digest))
    return Plan(etc_dir=etc_dir, changes=tuple(changes), drifted=drifted)
