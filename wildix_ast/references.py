"""The rules that span settings sections, declared once and checked by one walker.

`UNIQUE` lists the values that must be distinct within a space (group names, dialplan numbers,
emails...); `REFERENCES` lists the fields that must name a value of a space (a user's group,
its procedure). Paths read like locations: `users[].group` is the `group` of every user.
Adding a section that others reference (trunks, time frames, IVRs) is one `Unique` line for
its names and one `Reference` line per field that names it.

The walker reads a valid `Site` or the raw, partly invalid mapping a settings file gave
(settings left out take the model's own defaults; values that are not strings are left to
the field validators), so a person gets every problem in one pass."""

from __future__ import annotations

import functools
import typing
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import InitErrorDetails, PydanticCustomError

from wildix_ast.model import DEFAULT_PROCEDURE

Location = tuple[str | int, ...]


@dataclass(frozen=True)
class Unique:
    """Values at `path` must be distinct within `space` (shared by several paths)."""

    space: str
    path: str
    message: str = "{value} already used by {first}"
    """For a repeat: {value}, {first} (the first field holding it), {first_item} (its list
    item)."""
    fold_case: bool = False
    builtin: tuple[str, ...] = ()
    """Names the space holds without a declaration: valid targets, refused as new names."""
    builtin_message: str = "{value!r} is built in; choose another name"


@dataclass(frozen=True)
class Reference:
    """Values at `path` must name a value of `space`."""

    path: str
    space: str
    message: str


UNIQUE: tuple[Unique, ...] = (
    Unique("group", "groups[].name", "group {value!r} already defined at {first_item}"),
    Unique("procedure", "dialplan.procedures[].name",
           "procedure {value!r} already defined at {first_item}", builtin=(DEFAULT_PROCEDURE,),
           builtin_message="{value!r} is the built-in procedure; choose another name"),
    Unique("number", "dialplan.echo_test"),
    Unique("number", "dialplan.voicemail", "same feature code as {first}"),
    Unique("number", "users[].extension"),
    Unique("number", "users[].office_did"),
    Unique("number", "users[].fax_did"),
    Unique("email", "users[].email", "already used by {first_item}", fold_case=True),
    Unique("login", "users[].login", "already used by {first_item}", fold_case=True),
)

REFERENCES: tuple[Reference, ...] = (
    Reference("users[].group", "group", "group {value!r} is not defined in groups"),
    Reference("users[].dialplan", "procedure",
              "dialplan procedure {value!r} is not defined in dialplan.procedures"),
    Reference("users[].fax_dialplan", "procedure",
              "dialplan procedure {value!r} is not defined in dialplan.procedures"),
)


# --- paths -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Step:
    name: str
    many: bool


@functools.cache
def _steps(path: str) -> tuple[_Step, ...]:
    return tuple(_Step(part.removesuffix("[]"), part.endswith("[]"))
                 for part in path.split("."))


def _container(path: str) -> str:
    """The list a path's values belong to ('users[]' for 'users[].email'; '' at the top)."""
    head, _, _ = path.rpartition("[]")
    return head + "[]" if head else ""


def _models_in(annotation: Any) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for argument in typing.get_args(annotation):  # list[X], X | None, Annotated[X, ...]
        yield from _models_in(argument)


@functools.cache
def _field(model: type[BaseModel] | None, name: str) -> tuple[FieldInfo | None,
                                                               type[BaseModel] | None]:
    """A field of `model` and the model its values are (or hold), when there is one."""
    info = model.model_fields.get(name) if model is not None else None
    if info is None:
        return None, None
    return info, next(_models_in(info.annotation), None)


def values_at(root: object, model: type[BaseModel], path: str) -> Iterator[tuple[Location,
                                                                                  object]]:
    """Every (location, value) at `path` in a model object or in raw input for `model`."""
    steps = _steps(path)

    def walk(value: object, model: type[BaseModel] | None, depth: int,
             loc: Location) -> Iterator[tuple[Location, object]]:
        if depth == len(steps):
            yield loc, value
            return
        step = steps[depth]
        info, inner = _field(model, step.name)
        if isinstance(value, BaseModel):
            child = getattr(value, step.name, None)
        elif isinstance(value, dict):
            if step.name in value:
                child = value[step.name]
            elif info is not None and not info.is_required():
                child = info.get_default(call_default_factory=True)
            else:
                return
        else:
            return
        if not step.many:
            yield from walk(child, inner, depth + 1, (*loc, step.name))
        elif isinstance(child, list):
            for i, item in enumerate(child):
                yield from walk(item, inner, depth + 1, (*loc, step.name, i))

    return walk(root, model, 0, ())


# --- the walker ------------------------------------------------------------------------------

def _where(loc: Location) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _error(loc: Location, message: str) -> InitErrorDetails:
    return {"type": PydanticCustomError("reference", message), "loc": loc, "input": None}


def reference_errors(root: object, model: type[BaseModel]) -> Iterable[InitErrorDetails]:
    """Every repeated value and dangling reference of `root` (a `model` or raw input)."""
    ranks: dict[str, int] = {}
    found: list[tuple[tuple[int, tuple[int, ...], int], Location, str, Unique]] = []
    for rank, rule in enumerate(UNIQUE):
        container = ranks.setdefault(_container(rule.path), rank)
        for loc, value in values_at(root, model, rule.path):
            if isinstance(value, str):
                indices = tuple(part for part in loc if isinstance(part, int))
                found.append(((container, indices, rank), loc, value, rule))
    # Document order, so the first of two equal values is the one a person reads first.
    found.sort(key=lambda entry: entry[0])
    spaces: dict[str, dict[str, Location]] = {}
    for rule in UNIQUE:
        spaces.setdefault(rule.space, {}).update(dict.fromkeys(rule.builtin, ()))
    for _, loc, value, rule in found:
        seen = spaces[rule.space]
        key = value.lower() if rule.fold_case else value
        if value in rule.builtin:
            yield _error(loc, rule.builtin_message.format(value=value))
        elif key in seen:
            first = seen[key]
            item = first[:max(i for i, part in enumerate(first) if isinstance(part, int)) + 1] \
                if any(isinstance(part, int) for part in first) else first
            yield _error(loc, rule.message.format(value=value, first=_where(first),
                                                  first_item=_where(item)))
        else:
            seen[key] = loc
    for reference in REFERENCES:
        names = spaces[reference.space]
        for loc, value in values_at(root, model, reference.path):
            if isinstance(value, str) and value not in names:
                yield _error(loc, reference.message.format(value=value))
