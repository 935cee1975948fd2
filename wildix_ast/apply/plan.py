"""The plan: what applying rendered files to a configuration folder would change.

An immutable value, as NAPALM's compare: made without writing anything, it gives the masked
unified diff, the problems found before Asterisk sees anything, the reloads the change needs
(each module once, the dialplan last), and whether a restart is needed. Every per-file rule
comes from the file's declaration in `wildix_ast.asterisk`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from wildix_ast.apply.state import TargetState
from wildix_ast.asterisk import by_name
from wildix_ast.asterisk.base import ConfigFile, Reload, Restart, secret_keys
from wildix_ast.conf import ITEM_LINE, SECTION_LINE, ConfigSyntaxError, sections
from wildix_ast.errors import ApplyError, Problem

MASK = "********"
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


def _mask(text: str, name: str, reference: dict[tuple[str, str, int], str] | None = None,
          ) -> tuple[list[str], dict[tuple[str, str, int], str]]:
    """Lines of `text` with secret values replaced by MASK; a value that differs from the
    one at the same place in `reference` is shown as `MASK (changed)`."""
    rules = _rules(name)
    is_secret = rules.secret if rules is not None else secret_keys
    lines: list[str] = []
    values: dict[tuple[str, str, int], str] = {}
    seen: dict[tuple[str, str], int] = {}
    section = ""
    for raw in text.splitlines():
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
        return bool(self.touched)

    @property
    def new_files(self) -> dict[str, str]:
        """Every file the target holds once the plan is applied."""
        return {c.name: c.new for c in self.changes if c.new is not None}

    def file(self, name: str) -> FileChange | None:
        return next((c for c in self.changes if c.name == name), None)

    def diff(self) -> str:
        """Unified diff running → new of every touched file, secrets masked."""
        chunks: list[str] = []
        for change in self.touched:
            old_lines, old_values = _mask(change.old or "", change.name)
            new_lines, _ = _mask(change.new or "", change.name, old_values)
            chunks.extend(difflib.unified_diff(
                old_lines, new_lines, fromfile=f"running/{change.name}",
                tofile=f"new/{change.name}", lineterm=""))
        return "\n".join(chunks) + ("\n" if chunks else "")

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
            elif change.old is not None and change.new is not None:
                try:
                    needed = rules.restart_needed(sections(change.old), sections(change.new))
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
            return transport_changes(sections(change.old or ""), sections(change.new or ""))
        except ConfigSyntaxError:
            return []

    def validate(self) -> list[Problem]:
        """Problems in the new files found without Asterisk: syntax, then each file's own
        static checks (PJSIP references, dialplan lines...)."""
        problems: list[Problem] = []
        for change in self.touched:
            if change.new is None:
                continue
            try:
                parsed = sections(change.new)
            except ConfigSyntaxError as e:
                problems.append(Problem(f"{change.name} line {e.line}", e.message))
                continue
            rules = _rules(change.name)
            if rules is not None:
                problems += rules.checks(parsed)
        return problems

    def to_json(self) -> dict[str, object]:
        return {
            "changed": self.has_changes,
            "files": [{"name": c.name, "change": c.kind} for c in self.touched],
            "unchanged": len(self.unchanged),
            "drifted": list(self.drifted),
            "diff": self.diff(),
            "reloads": [r.cli for r in self.modules_to_reload()],
            "restart_needed": self.restart_reasons(),
        }


def make_plan(etc_dir: Path, files: Mapping[str, str]) -> Plan:
    """Compare `files` ({name: text}) with what `etc_dir` holds now."""
    state = TargetState(etc_dir)
    for name in files:
        if not _NAME.match(name) or state.reserved(name):
            raise ApplyError(f"refusing to manage a file named {name!r} "
                             "(plain file names inside the configuration folder only)")
    manifest = state.manifest()
    changes: list[FileChange] = []
    for name in sorted(files):
        old = state.read(name)
        new = files[name]
        kind: ChangeKind = "add" if old is None else ("unchanged" if old == new else "change")
        changes.append(FileChange(name, kind, old, new))
    for name in sorted(set(manifest) - set(files)):
        old = state.read(name)
        if old is not None:
            changes.append(FileChange(name, "remove", old, None))
    drifted = tuple(sorted(
        name for name, digest in manifest.items()
        if (text := state.read(name)) is not None and state.digest(text) != digest))
    return Plan(etc_dir=etc_dir, changes=tuple(changes), drifted=drifted)
