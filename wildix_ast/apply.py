"""Apply a rendered configuration to a running Asterisk: plan, write, reload, verify, roll back.

Modelled on NAPALM's compare/commit/rollback and Ansible's check/diff modes:

* `plan(etc_dir, files)` compares the rendered files with the running ones (nothing is
  written); `Plan.diff()` is the unified diff with secrets masked, `Plan.validate()` the
  problems found before anything touches Asterisk, `Plan.modules_to_reload()` and
  `Plan.restart_reasons()` what the change needs.
* `commit(plan, ami, expected)` keeps the previous generation in `.wildix-ast-previous/`,
  writes each file atomically, reloads only the modules whose files changed, checks through
  AMI that Asterisk really has the expected endpoints, AORs and dialplan contexts (and no
  longer has the ones removed), and on any failure puts the previous files back, reloads
  again and raises `ApplyError`.

Files wildix-ast owns are listed (with their SHA-256) in `.wildix-ast-manifest.json`; only
those are ever removed, and a hand edit since the last apply shows up as `Plan.drifted`.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import functools
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from wildix_ast.ami import AmiClient
from wildix_ast.errors import AmiError, ApplyError, Problem
from wildix_ast.files import fsync_dir, write_atomic

MANIFEST = ".wildix-ast-manifest.json"
PREVIOUS_DIR = ".wildix-ast-previous"
PREVIOUS_INDEX = ".previous.json"
MASK = "********"

ProgressCallback = Callable[[str, str], None]
"""progress(step, message); steps: check, validate, backup, write, reload, restart, verify,
rollback, done."""

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")


# -- Asterisk configuration syntax ------------------------------------------------------

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


_SECTION = re.compile(r"^\[(?P<name>[^\]]+)\]\s*(?:\((?P<options>[^)]*)\))?\s*$")
_ITEM = re.compile(r"^(?P<key>[^=\s][^=]*?)\s*(?P<op>=>|\+=|=)\s*(?P<value>.*)$")


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
        header = _SECTION.match(line) if line[0] == "[" else None
        if header:
            options = [o.strip() for o in (header["options"] or "").split(",") if o.strip()]
            current = Section(name=header["name"].strip(), line=number,
                              template="!" in options, append="+" in options,
                              inherits=[o for o in options if o not in ("!", "+")])
            sections.append(current)
            continue
        if line.startswith("["):
            raise ConfigSyntaxError(number, f"malformed section header {line!r}")
        item = _ITEM.match(line)
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


def pjsip_objects(text: str) -> dict[str, dict[str, tuple[tuple[str, str], ...]]]:
    """{type: {name: items}} for a pjsip.conf text."""
    objects: dict[str, dict[str, tuple[tuple[str, str], ...]]] = {}
    for section in resolve_sections(parse_conf(text)):
        kind = section.get("type")
        if kind is not None:
            objects.setdefault(kind, {})[section.name] = tuple(section.items)
    return objects


def dialplan_contexts(text: str) -> set[str]:
    """Context names an extensions.conf text defines."""
    return {s.name for s in resolve_sections(parse_conf(text))
            if s.name not in ("general", "globals")}


# -- what a changed file needs ----------------------------------------------------------

@dataclass(frozen=True)
class Reload:
    """One reload: `module` is the name for AMI `Reload` (a .so or a built-in such as
    `manager`), `cli` the equivalent console command."""

    module: str
    cli: str
    files: tuple[str, ...]


# file -> (AMI Reload module, CLI command); order here is the order of the reloads
RELOADS: dict[str, tuple[str, str]] = {
    "logger.conf": ("logger", "logger reload"),
    "manager.conf": ("manager", "manager reload"),
    "indications.conf": ("indications", "module reload indications"),
    "rtp.conf": ("res_rtp_asterisk.so", "module reload res_rtp_asterisk.so"),
    "pjsip.conf": ("res_pjsip.so", "module reload res_pjsip.so"),
    "pjsip_wizard.conf": ("res_pjsip.so", "module reload res_pjsip.so"),
    "voicemail.conf": ("app_voicemail.so", "module reload app_voicemail.so"),
    "musiconhold.conf": ("res_musiconhold.so", "module reload res_musiconhold.so"),
    "features.conf": ("features", "module reload features"),
    "cdr.conf": ("cdr", "module reload cdr"),
    "cel.conf": ("cel", "module reload cel"),
    "res_fax.conf": ("res_fax.so", "module reload res_fax.so"),
    "queues.conf": ("app_queue.so", "module reload app_queue.so"),
    "confbridge.conf": ("app_confbridge.so", "module reload app_confbridge.so"),
    "extensions.conf": ("pbx_config.so", "dialplan reload"),
}
RESTART_FILES = {
    "asterisk.conf": "asterisk.conf is read only at startup",
    "modules.conf": "modules.conf decides which modules load at startup",
    "sorcery.conf": "sorcery mappings are read only when the modules load",
}


def _secret_key(filename: str, section: str, key: str) -> bool:
    low = key.lower()
    if low in ("password", "secret", "md5_cred", "auth_secret", "outboundpass"):
        return True
    # voicemail.conf: mailbox => pin,name,email,... in every context but these
    return filename == "voicemail.conf" and section not in ("general", "zonemessages", "")


def _mask(text: str, filename: str,
          reference: dict[tuple[str, str, int], str] | None = None,
          ) -> tuple[list[str], dict[tuple[str, str, int], str]]:
    """Lines of `text` with secret values replaced by MASK; a value that differs from the
    one at the same place in `reference` is shown as `MASK (changed)`."""
    lines: list[str] = []
    values: dict[tuple[str, str, int], str] = {}
    seen: dict[tuple[str, str], int] = {}
    section = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        header = _SECTION.match(stripped)
        if header:
            section = header["name"].strip()
        item = _ITEM.match(stripped) if not stripped.startswith((";", "#", "[")) else None
        if item is None or not _secret_key(filename, section, item["key"].strip()):
            lines.append(raw)
            continue
        key = item["key"].strip()
        value = item["value"]
        secret, sep, rest = (value.partition(",") if filename == "voicemail.conf"
                             and item["op"] == "=>" else (value, "", ""))
        n = seen.get((section, key), 0)
        seen[(section, key)] = n + 1
        values[(section, key, n)] = secret
        marker = MASK
        if reference is not None and reference.get((section, key, n)) != secret:
            marker = f"{MASK} (changed)"
        head = raw[:raw.index(item["op"], raw.index(key) + len(key)) + len(item["op"])]
        head += raw[len(head):len(raw) - len(raw[len(head):].lstrip())]
        lines.append(f"{head}{marker}{sep}{rest}")
    return lines, values


# -- the plan -----------------------------------------------------------------------------

ChangeKind = Literal["add", "change", "remove", "unchanged"]


@dataclass(frozen=True)
class FileChange:
    name: str
    kind: ChangeKind
    old: str | None
    new: str | None


@dataclass(frozen=True)
class Plan:
    """What applying `files` to `etc_dir` would do; nothing is written by making one."""

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

    def modules_to_reload(self) -> list[Reload]:
        """The reloads the touched files need, each module once, in a safe order
        (the dialplan last). Files with no known reload are in `restart_reasons()`."""
        touched = {c.name for c in self.touched}
        out: list[Reload] = []
        for name, (module, cli) in RELOADS.items():
            if name not in touched:
                continue
            existing = next((r for r in out if r.module == module), None)
            if existing is not None:
                out[out.index(existing)] = Reload(module, cli, (*existing.files, name))
            else:
                out.append(Reload(module, cli, (name,)))
        return out

    def transport_changes(self) -> list[str]:
        """PJSIP transports added, removed or changed (these need a restart)."""
        change = self.file("pjsip.conf")
        if change is None or change.kind == "unchanged":
            return []
        try:
            old = pjsip_objects(change.old or "").get("transport", {})
            new = pjsip_objects(change.new or "").get("transport", {})
        except ConfigSyntaxError:
            return []  # reported by validate()
        out = [f"transport {n!r} added" for n in sorted(new.keys() - old.keys())]
        out += [f"transport {n!r} removed" for n in sorted(old.keys() - new.keys())]
        out += [f"transport {n!r} changed" for n in sorted(old.keys() & new.keys())
                if sorted(old[n]) != sorted(new[n])]
        return out

    def restart_reasons(self) -> list[str]:
        """Why this change cannot be applied by reloads alone (empty: reloads suffice)."""
        reasons: list[str] = []
        for change in self.touched:
            if change.name in RESTART_FILES:
                reasons.append(f"{change.name}: {RESTART_FILES[change.name]}")
            elif change.name not in RELOADS:
                reasons.append(f"{change.name}: no known reload for this file")
        transports = self.transport_changes()
        if transports:
            reasons.append("pjsip.conf: " + ", ".join(transports) + " (PJSIP transports do "
                           "not change on reload, and reloading after a transport change "
                           "can deadlock PJSIP, asterisk issue #436)")
        return reasons

    def validate(self) -> list[Problem]:
        """Problems in the new files found without Asterisk: syntax, PJSIP sections without
        a type or referring to objects that do not exist, malformed dialplan lines."""
        problems: list[Problem] = []
        for change in self.touched:
            if change.new is None:
                continue
            try:
                sections = parse_conf(change.new)
                concrete = resolve_sections(sections)
            except ConfigSyntaxError as e:
                problems.append(Problem(f"{change.name} line {e.line}", e.message))
                continue
            if change.name == "pjsip.conf":
                problems += _pjsip_problems(concrete)
            elif change.name == "extensions.conf":
                problems += _dialplan_problems(concrete)
        return problems


_PJSIP_TYPES = {"endpoint", "aor", "auth", "transport", "identify", "registration",
                "contact", "domain_alias", "global", "system", "acl", "outbound-publish",
                "inbound-publishment", "asterisk-publication", "resource_list", "phoneprov"}


def _pjsip_problems(sections: list[Section]) -> list[Problem]:
    problems: list[Problem] = []
    by_type: dict[str, set[str]] = {}
    for s in sections:
        kind = s.get("type")
        if kind is None:
            problems.append(Problem(f"pjsip.conf line {s.line}", f"[{s.name}] has no type="))
        elif kind not in _PJSIP_TYPES:
            problems.append(Problem(f"pjsip.conf line {s.line}",
                                    f"[{s.name}] has unknown type={kind}"))
        else:
            by_type.setdefault(kind, set()).add(s.name)
    refs = (("aors", "aor"), ("auth", "auth"), ("outbound_auth", "auth"),
            ("transport", "transport"), ("endpoint", "endpoint"))
    for s in sections:
        kind = s.get("type")
        if kind not in ("endpoint", "identify", "registration"):
            continue
        for key, target in refs:
            value = s.get(key)
            if not value or (kind == "endpoint" and key == "endpoint"):
                continue
            for name in (v.strip() for v in value.split(",") if v.strip()):
                if name not in by_type.get(target, set()):
                    problems.append(Problem(f"pjsip.conf line {s.line}",
                                            f"[{s.name}] {key}={name}: no {target} {name!r}"))
    return problems


_EXTEN = re.compile(r"^[^,]+,\s*(\d+|n|hint|n\+\d+)(\([^)]*\))?\s*,.*$")
_SAME = re.compile(r"^(n|\d+|n\+\d+)(\([^)]*\))?\s*,.*$")


def _dialplan_problems(sections: list[Section]) -> list[Problem]:
    problems: list[Problem] = []
    for s in sections:
        if s.name in ("general", "globals"):
            continue
        for key, value in s.items:
            if key == "exten" and not _EXTEN.match(value):
                problems.append(Problem(f"extensions.conf [{s.name}]",
                                        f"malformed exten => {value}"))
            elif key == "same" and not _SAME.match(value):
                problems.append(Problem(f"extensions.conf [{s.name}]",
                                        f"malformed same => {value}"))
    return problems


def _read(path: Path) -> str | None:
    try:
        return path.read_bytes().decode("utf-8", "surrogateescape")
    except FileNotFoundError:
        return None


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def _load_manifest(etc_dir: Path) -> dict[str, str]:
    text = _read(etc_dir / MANIFEST)
    if text is None:
        return {}
    try:
        data = json.loads(text)
        files = data["files"]
        return {str(k): str(v) for k, v in files.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ApplyError(f"{etc_dir / MANIFEST} is unreadable ({e}); move it away to let "
                         "wildix-ast take ownership again") from None


def plan(etc_dir: Path, files: Mapping[str, str]) -> Plan:
    """Compare `files` ({name: text}) with what `etc_dir` holds now."""
    for name in files:
        if not _NAME.match(name) or name in (MANIFEST, PREVIOUS_DIR):
            raise ApplyError(f"refusing to manage a file named {name!r} "
                             "(plain file names inside the configuration folder only)")
    manifest = _load_manifest(etc_dir)
    changes: list[FileChange] = []
    for name in sorted(files):
        old = _read(etc_dir / name)
        new = files[name]
        kind: ChangeKind = "add" if old is None else ("unchanged" if old == new else "change")
        changes.append(FileChange(name, kind, old, new))
    for name in sorted(set(manifest) - set(files)):
        old = _read(etc_dir / name)
        if old is not None:
            changes.append(FileChange(name, "remove", old, None))
    drifted = tuple(sorted(
        name for name, digest in manifest.items()
        if (text := _read(etc_dir / name)) is not None and _sha(text) != digest))
    return Plan(etc_dir=etc_dir, changes=tuple(changes), drifted=drifted)


# -- writing --------------------------------------------------------------------------------

def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    fsync_dir(path.parent)


def _backup(plan_: Plan) -> Path:
    """Keep the running version of every file the plan touches in PREVIOUS_DIR (the
    previous generation replaces the one before it)."""
    etc = plan_.etc_dir
    final = etc / PREVIOUS_DIR
    staging = Path(tempfile.mkdtemp(dir=etc, prefix=f"{PREVIOUS_DIR}."))
    try:
        os.chmod(staging, 0o750)
        absent: list[str] = []
        for change in plan_.touched:
            if change.old is None:
                absent.append(change.name)
            else:
                write_atomic(staging / change.name, change.old)
        manifest = _read(etc / MANIFEST)
        if manifest is not None:
            write_atomic(staging / MANIFEST, manifest)
        index = {"saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                 "files": sorted(c.name for c in plan_.touched if c.old is not None),
                 "absent": sorted(absent)}
        write_atomic(staging / PREVIOUS_INDEX, json.dumps(index, indent=2) + "\n")
        if final.exists():
            old = etc / f"{PREVIOUS_DIR}.old"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            os.replace(staging, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, final)
        fsync_dir(etc)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def _put(etc: Path, contents: Iterable[tuple[str, str | None]]) -> list[str]:
    done: list[str] = []
    for name, text in contents:
        if text is None:
            _remove(etc / name)
        else:
            write_atomic(etc / name, text)
        done.append(name)
    return done


def _write_manifest(etc: Path, files: Mapping[str, str]) -> None:
    data = {"version": 1, "files": {n: _sha(t) for n, t in sorted(files.items())}}
    write_atomic(etc / MANIFEST, json.dumps(data, indent=2) + "\n")


def install(plan_: Plan) -> list[str]:
    """Write the plan's files for an Asterisk that is not running yet (its first start):
    nothing to reload or verify, but the same atomic writes and manifest as `commit`."""
    problems = plan_.validate()
    if problems:
        raise ApplyError("the new configuration is invalid; nothing was written", problems)
    written = _put(plan_.etc_dir, [(c.name, c.new) for c in plan_.touched])
    _write_manifest(plan_.etc_dir, {c.name: c.new for c in plan_.changes if c.new is not None})
    return written


# -- commit ---------------------------------------------------------------------------------

@dataclass
class Expectation:
    """What Asterisk must show after the apply."""

    endpoints: set[str] = field(default_factory=set)
    aors: set[str] = field(default_factory=set)
    contexts: set[str] = field(default_factory=set)

    @classmethod
    def from_files(cls, files: Mapping[str, str]) -> Expectation:
        """What the rendered pjsip.conf and extensions.conf define."""
        objects = pjsip_objects(files.get("pjsip.conf", ""))
        return cls(endpoints=set(objects.get("endpoint", {})),
                   aors=set(objects.get("aor", {})),
                   contexts=dialplan_contexts(files.get("extensions.conf", "")))


@dataclass
class ReloadResult:
    module: str
    cli: str
    seconds: float
    status: Literal["reloaded", "not loaded"]


@dataclass
class ApplyReport:
    files_written: list[str] = field(default_factory=list)
    files_removed: list[str] = field(default_factory=list)
    reloads: list[ReloadResult] = field(default_factory=list)
    restarted: bool = False
    verify_seconds: float = 0.0
    verify_attempts: int = 0
    total_seconds: float = 0.0
    backup_dir: Path | None = None


def _stale(plan_: Plan) -> Expectation:
    """Objects the running files define and the new ones no longer do."""
    def objects(change: FileChange | None) -> tuple[Expectation, Expectation]:
        old, new = Expectation(), Expectation()
        if change is not None:
            with contextlib.suppress(ConfigSyntaxError):
                old = Expectation.from_files({change.name: change.old or ""})
                new = Expectation.from_files({change.name: change.new or ""})
        return old, new

    pj_old, pj_new = objects(plan_.file("pjsip.conf"))
    dp_old, dp_new = objects(plan_.file("extensions.conf"))
    return Expectation(endpoints=pj_old.endpoints - pj_new.endpoints,
                       aors=pj_old.aors - pj_new.aors,
                       contexts=dp_old.contexts - dp_new.contexts)


async def _check(ami: AmiClient, expected: Expectation, absent: Expectation) -> list[str]:
    problems: list[str] = []
    if expected.endpoints or absent.endpoints:
        have = await ami.endpoints()
        problems += [f"endpoint {n} missing" for n in sorted(expected.endpoints - have)]
        problems += [f"removed endpoint {n} still present" for n in sorted(absent.endpoints & have)]
    if expected.aors or absent.aors:
        have = await ami.aors()
        problems += [f"AOR {n} missing" for n in sorted(expected.aors - have)]
        problems += [f"removed AOR {n} still present" for n in sorted(absent.aors & have)]
    if expected.contexts or absent.contexts:
        have = await ami.contexts()
        problems += [f"dialplan context {n} missing" for n in sorted(expected.contexts - have)]
        problems += [f"removed dialplan context {n} still present"
                     for n in sorted(absent.contexts & have)]
    return problems


async def verify(ami: AmiClient, expected: Expectation, absent: Expectation | None = None, *,
                 timeout: float = 5.0) -> tuple[list[str], int, float]:
    """Check (again, with a growing pause, until `timeout`) that Asterisk shows `expected`
    and none of `absent`. Returns (problems left, attempts, seconds)."""
    start = time.monotonic()
    absent = absent or Expectation()
    pause, attempts = 0.02, 0
    while True:
        attempts += 1
        problems = await _check(ami, expected, absent)
        elapsed = time.monotonic() - start
        if not problems or elapsed + pause > timeout:
            return problems, attempts, elapsed
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.5)


async def _reload_all(ami: AmiClient, reloads: list[Reload], say: ProgressCallback,
                      ) -> list[ReloadResult]:
    results: list[ReloadResult] = []
    for step in reloads:
        start = time.monotonic()
        if step.module.endswith(".so") and not await ami.module_loaded(step.module):
            say("reload", f"{step.module} is not loaded: nothing to reload")
            results.append(ReloadResult(step.module, step.cli, 0.0, "not loaded"))
            continue
        say("reload", step.cli)
        await ami.reload_module(step.module)
        results.append(ReloadResult(step.module, step.cli, time.monotonic() - start, "reloaded"))
    return results


async def _restart(ami: AmiClient, say: ProgressCallback, timeout: float) -> None:
    """`core restart gracefully` (Asterisk waits for the calls in progress to end), then
    reconnect to the new process (told apart from the old one by its startup time)."""
    before = await ami.action("CoreStatus")
    say("restart", "core restart gracefully")
    with contextlib.suppress(AmiError):
        await ami.command("core restart gracefully")
    await ami.close()
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        try:
            await ami.connect()
            now = await ami.action("CoreStatus")
        except AmiError as e:
            last = e.message
            continue
        started = ("CoreStartupDate", "CoreStartupTime")
        if any(now.get(k) != before.get(k) for k in started):
            # The AMI takes logins while modules still load: PJSIP may not be there yet.
            try:
                await ami.action("Command", Command="core waitfullybooted",
                                 timeout=max(1.0, deadline - time.monotonic()))
            except AmiError as e:
                last = e.message
                continue
            return
        await ami.close()
        last = "the old Asterisk process is still running"
    raise AmiError(f"Asterisk did not come back within {timeout:g} s of the restart: {last}")


async def commit(plan_: Plan, ami: AmiClient, expected: Expectation, *,
                 progress: ProgressCallback | None = None, allow_restart: bool = False,
                 verify_timeout: float = 5.0, restart_timeout: float = 60.0) -> ApplyReport:
    """Apply `plan_` to the Asterisk behind `ami`; see the module documentation."""
    say: ProgressCallback = progress or (lambda step, message: None)
    started = time.monotonic()
    report = ApplyReport()
    etc = plan_.etc_dir

    say("check", "comparing with the running files")
    moved = [c.name for c in plan_.changes if _read(etc / c.name) != c.old]
    if moved:
        raise ApplyError("the running configuration changed since the plan was made: "
                         + ", ".join(moved) + "; make a new plan")
    say("validate", "checking the new files")
    problems = plan_.validate()
    if problems:
        raise ApplyError("the new configuration is invalid, nothing was written: "
                         + "; ".join(str(p) for p in problems), problems=problems)
    restart = plan_.restart_reasons()
    if restart and not allow_restart:
        kind = "transport changed: " if plan_.transport_changes() else ""
        raise ApplyError(f"{kind}restart required, refused without allow_restart; nothing "
                         "was written: " + "; ".join(restart))
    reloads = plan_.modules_to_reload()
    absent = _stale(plan_)
    new_files = {c.name: c.new for c in plan_.changes if c.new is not None}

    if plan_.has_changes:
        report.backup_dir = _backup(plan_)
        say("backup", f"previous files kept in {report.backup_dir}")
        for change in plan_.touched:
            say("write", f"{change.kind} {change.name}")
        _put(etc, ((c.name, c.new) for c in plan_.touched))
        report.files_written = [c.name for c in plan_.touched if c.new is not None]
        report.files_removed = plan_.removed

    failure: str | None = None
    try:
        if restart:
            await _restart(ami, say, restart_timeout)
            report.restarted = True
        else:
            report.reloads = await _reload_all(ami, reloads, say)
        say("verify", "asking Asterisk for endpoints, AORs and dialplan contexts")
        missing, report.verify_attempts, report.verify_seconds = await verify(
            ami, expected, absent, timeout=verify_timeout)
        if missing:
            failure = "verification failed: " + ", ".join(missing)
    except AmiError as e:
        failure = f"{'restart' if restart else 'reload'} failed: {e.message}"

    if failure is None:
        _write_manifest(etc, new_files)
        report.total_seconds = time.monotonic() - started
        say("done", f"applied in {report.total_seconds:.2f} s")
        return report

    say("rollback", failure)
    restored = await _rollback(plan_, ami, reloads, restart, say, restart_timeout)
    raise ApplyError(f"{failure}; {restored}")


async def _rollback(plan_: Plan, ami: AmiClient, reloads: list[Reload], restart: list[str],
                    say: ProgressCallback, restart_timeout: float) -> str:
    etc = plan_.etc_dir
    try:
        _put(etc, ((c.name, c.old) for c in plan_.touched))
    except OSError as e:
        return (f"RESTORING THE PREVIOUS FILES FAILED ({e}); they are kept in "
                f"{etc / PREVIOUS_DIR}")
    names = ", ".join(c.name for c in plan_.touched)
    try:
        if restart:
            await _restart(ami, say, restart_timeout)
        else:
            await _reload_all(ami, reloads, say)
    except AmiError as e:
        return (f"the previous files were restored ({names}) but reloading them failed: "
                f"{e.message}")
    old = Expectation()
    pj, dp = plan_.file("pjsip.conf"), plan_.file("extensions.conf")
    with contextlib.suppress(ConfigSyntaxError):
        old = Expectation.from_files({n: c.old or "" for n, c in
                                      (("pjsip.conf", pj), ("extensions.conf", dp))
                                      if c is not None})
    try:
        missing, _, _ = await verify(ami, old, timeout=2.0)
    except AmiError as e:
        missing = [f"(could not check: {e.message})"]
    if missing:
        return (f"the previous files were restored ({names}) and reloaded, but Asterisk "
                f"does not show all of them again: {', '.join(missing)}")
    return f"the previous configuration was restored ({names}) and reloaded"
