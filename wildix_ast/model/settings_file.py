"""Reading and writing the declarative settings file (YAML)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml_rs
from pydantic import ValidationError

from wildix_ast.errors import Problem, SettingsError
from wildix_ast.model import fields
from wildix_ast.model.site import Site

if TYPE_CHECKING:
    import yaml

MAX_SIZE = 64 * 1024 * 1024


# PyYAML (a fifth of a short command's imports) is loaded only to explain a problem or to
# write a settings file: yaml-rs reads them.
@functools.cache
def _strict_loader() -> type[yaml.SafeLoader]:
    """The safe loader (libyaml's when present: 50,000 users parse in seconds, not minutes)
    that refuses duplicate keys instead of silently keeping the last one."""
    import yaml

    base: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class StrictLoader(base):  # type: ignore[valid-type,misc]
        pass

    def construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode,
                          deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first at line {seen[key] + 1})",
                    key_node.start_mark)
            seen[key] = key_node.start_mark.line
        mapping: dict[Any, Any] = loader.construct_mapping(node, deep=deep)
        return mapping

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                                 construct_mapping)
    return StrictLoader


def location(loc: tuple[str | int, ...]) -> str:
    """('users', 3, 'extension') -> 'users[3].extension'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _line_of(root: yaml.Node | None, loc: tuple[str | int, ...]) -> int | None:
    import yaml

    node = root
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == part), None)
            if match is None:
                key = next((k for k, _ in node.value if k.value == part), None)
                return key.start_mark.line + 1 if key is not None else line
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) \
                and 0 <= part < len(node.value):
            node = node.value[part]
        else:
            break
        line = node.start_mark.line + 1
    return line


def problems_from(error: ValidationError, root: yaml.Node | None = None,
                  source: str = "") -> list[Problem]:
    """pydantic's errors as located problems, with the YAML line where there is one."""
    problems = []
    for err in error.errors(include_url=False):
        loc = tuple(err["loc"])
        message = fields.message(err)
        where = location(loc)
        line = _line_of(root, loc) if root is not None else None
        if line is not None:
            where = f"{where} ({source}line {line})" if where else f"{source}line {line}"
        problems.append(Problem(where, message))
    return problems


def _located_yaml_problem(text: str, source: str, fast_error: Exception) -> Problem:
    import yaml

    try:
        yaml.load(text, Loader=_strict_loader())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        detail = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        message = f"{context}, {detail}" if context and context not in detail else str(detail)
        return Problem(where, message)
    return Problem(source, str(fast_error).replace("\n", " "))


def parse_site(text: str, source: str = "<settings>") -> Site:
    """A validated Site from YAML text, or a SettingsError listing every problem."""
    try:
        # yaml-rs parses 50,000 users in a fraction of PyYAML's time; PyYAML, slower but
        # precise about positions, explains the failures.
        data = yaml_rs.loads(text, parse_datetime=False)
    except yaml_rs.YAMLDecodeError as exc:
        problem = _located_yaml_problem(text, source, exc)
        raise SettingsError(f"{source} is not valid YAML", [problem]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SettingsError(f"{source} must hold a mapping of sections (system, groups, "
                            f"dialplan, users), not a {type(data).__name__}")
    try:
        return Site.model_validate(data)
    except ValidationError as exc:
        # Line numbers cost a second parse, paid only when there is something to report.
        # PyYAML (YAML 1.1) refuses a few texts yaml-rs (YAML 1.2) reads: then no lines.
        import yaml

        root: yaml.Node | None
        try:
            root = yaml.compose(text, Loader=_strict_loader())
        except yaml.YAMLError:
            root = None
        problems = problems_from(exc, root, f"{Path(source).name} ")
        raise SettingsError(f"{source} has {len(problems)} problem(s)", problems) from None


def load_site(path: Path) -> Site:
    """Read and validate a settings file."""
    try:
        if path.stat().st_size > MAX_SIZE:
            raise SettingsError(f"{path} is larger than {MAX_SIZE // (1024 * 1024)} MiB")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SettingsError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise SettingsError(f"{path} is a directory, not a settings file") from None
    except PermissionError:
        raise SettingsError(f"{path}: permission denied") from None
    except UnicodeDecodeError as exc:
        raise SettingsError(f"{path} is not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise SettingsError(f"{path}: {exc.strerror}") from None
    return parse_site(text, str(path))


def dump_site(site: Site, *, include_secrets: bool) -> str:
    """The settings file for `site`: defaults left out, so it reads like what a person wrote."""
    import yaml

    data = site.model_dump(mode="json", exclude_defaults=True)
    data.setdefault("users", [])
    if include_secrets:  # never serialised by the model itself (see SmtpProfile.password)
        for profile, given in zip(data.get("smtp_profiles", []), site.smtp_profiles,
                                  strict=True):
            if given.password is not None:
                profile["password"] = given.password
        for item, m2f in zip(data.get("mail2fax_profiles", []), site.mail2fax_profiles,
                             strict=True):
            if m2f.password is not None:
                item["password"] = m2f.password
            if m2f.protection_password is not None:
                item["protection_password"] = m2f.protection_password
        # (the backends are left out when they are the default one)
        passwords = {b.name: b.password for b in site.call_history.backends if b.password}
        for backend in data.get("call_history", {}).get("backends", []):
            if backend.get("name", "local") in passwords:
                backend["password"] = passwords[backend.get("name", "local")]
    if not include_secrets:
        for user in data["users"]:
            user.pop("web_password", None)
            user.pop("sip_password", None)
        for trunk in data.get("trunks", []):
            trunk.pop("secret", None)
        for backend in data.get("call_history", {}).get("backends", []):
            backend.pop("password", None)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


def locator(path: Path) -> Callable[[tuple[str | int, ...]], str]:
    """Names a place in the settings file at `path` like a validation problem
    (`sounds[0].files.fr (site.yaml line 12)`); the file is parsed again only when a place
    is asked for (something went wrong)."""
    root: list[yaml.Node | None] = []

    def locate(loc: tuple[str | int, ...]) -> str:
        import yaml

        if not root:
            try:
                root.append(yaml.compose(path.read_text(encoding="utf-8"),
                                         Loader=_strict_loader()))
            except (OSError, UnicodeDecodeError, yaml.YAMLError):
                root.append(None)
        line = _line_of(root[0], loc)
        where = location(loc)
        return f"{where} ({path.name} line {line})" if line is not None else where

    return locate
