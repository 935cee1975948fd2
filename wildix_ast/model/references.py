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
import operator
import typing
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import InitErrorDetails, PydanticCustomError

from wildix_ast.model.common import DEFAULT_PROCEDURE

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
    report: bool = True
    """False: only gathers the names of a space whose repeats another rule reports."""


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
    Unique("number", "dialplan.feature_codes.status", "same feature code as {first}"),
    Unique("number", "dialplan.feature_codes.forward_busy", "same feature code as {first}"),
    Unique("number", "dialplan.feature_codes.forward_unavailable",
           "same feature code as {first}"),
    Unique("number", "dialplan.feature_codes.forward_all", "same feature code as {first}"),
    Unique("number", "dialplan.feature_codes.hotline", "same feature code as {first}"),
    Unique("number", "dialplan.feature_codes.login", "same feature code as {first}"),
    Unique("number", "users[].extension"),
    Unique("number", "users[].office_did"),
    Unique("number", "users[].fax_did"),
    Unique("trunk", "trunks[].name", "trunk {value!r} already defined at {first_item}"),
    Unique("trunk_group", "trunk_groups[].name",
           "trunk group {value!r} already defined at {first_item}"),
    Unique("sound", "sounds[].name", "sound {value!r} already defined at {first_item}"),
    Unique("time_frame", "time_frames[].name",
           "time frame {value!r} already defined at {first_item}"),
    Unique("call_group", "call_groups[].name",
           "call group {value!r} already defined at {first_item}"),
    Unique("ivr", "ivrs[].name", "IVR {value!r} already defined at {first_item}"),
    Unique("smtp_profile", "smtp_profiles[].name",
           "SMTP profile {value!r} already defined at {first_item}"),
    Unique("mail2fax_profile", "mail2fax_profiles[].name",
           "Mail2Fax profile {value!r} already defined at {first_item}"),
    Unique("user", "users[].extension", report=False),
    Unique("email", "users[].email", "already used by {first_item}", fold_case=True),
    Unique("login", "users[].login", "already used by {first_item}", fold_case=True),
)

_NO_PROCEDURE = "dialplan procedure {value!r} is not defined in dialplan.procedures"
_NAMED = (  # (field, the space of what it names, the message when it is not there)
    ("user", "user", "user {value!r} is not defined in users"),
    ("voicemail", "user", "user {value!r} is not defined in users"),
    ("call_group", "call_group", "call group {value!r} is not defined in call_groups"),
    ("procedure", "procedure", _NO_PROCEDURE),
    ("ivr", "ivr", "IVR {value!r} is not defined in ivrs"),
    ("trunk", "trunk", "trunk {value!r} is not defined in trunks"),
    ("trunk_group", "trunk_group", "trunk group {value!r} is not defined in trunk_groups"),
    ("sound", "sound", "sound {value!r} is not defined in sounds"),
    ("time_frame", "time_frame", "time frame {value!r} is not defined in time_frames"),
    ("if_match", "procedure", _NO_PROCEDURE),
    ("if_no_match", "procedure", _NO_PROCEDURE),
)

REFERENCES: tuple[Reference, ...] = (
    Reference("trunk_groups[].trunks[]", "trunk", "trunk {value!r} is not defined in trunks"),
    Reference("dialplan.general.trunk_group", "trunk_group",
              "trunk group {value!r} is not defined in trunk_groups"),
    Reference("dialplan.general.classes[].trunk_group", "trunk_group",
              "trunk group {value!r} is not defined in trunk_groups"),
    Reference("users[].group", "group", "group {value!r} is not defined in groups"),
    Reference("users[].dialplan", "procedure",
              "dialplan procedure {value!r} is not defined in dialplan.procedures"),
    Reference("users[].fax_dialplan", "procedure",
              "dialplan procedure {value!r} is not defined in dialplan.procedures"),
    # procedures' applications and IVR targets name users, call groups, procedures...
    *(Reference(f"dialplan.procedures[].numbers[].applications[].{field}", space, message)
      for field, space, message in _NAMED
      if field in ("user", "call_group", "procedure", "ivr", "trunk", "trunk_group", "sound",
                   "time_frame", "if_match", "if_no_match")),
    *(Reference(f"{where}.{field}", space, message)
      for where in ("ivrs[].options[]", "ivrs[].on_timeout", "ivrs[].on_invalid")
      for field, space, message in _NAMED
      if field in ("user", "voicemail", "call_group", "procedure")),
    Reference("ivrs[].prompt", "sound", "sound {value!r} is not defined in sounds"),
    Reference("call_groups[].members[]", "user", "user {value!r} is not defined in users"),
    Reference("trunks[].procedure", "procedure", _NO_PROCEDURE),
    Reference("mail2fax_profiles[].procedure", "procedure", _NO_PROCEDURE),
    Reference("mail2fax_profiles[].send_as", "user", "user {value!r} is not defined in users"),
)


# --- paths -----------------------------------------------------------------------------------

@functools.cache
def _split(path: str) -> tuple[str, tuple[str, ...]]:
    """'users[].email' -> ('users[]', ('email',)): the list holding the values (or '' for the
    top) and the path from one of its items to the value."""
    if path.endswith("[]"):  # 'a[].names[]': the items of the list are the values
        return (path, ())
    container, _, leaf = path.rpartition("[].")
    return (container + "[]" if container else "", tuple(leaf.split(".")))


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


_ABSENT = object()


def _child(value: object, model: type[BaseModel] | None, name: str) -> object:
    """`value.name` of a model object, or of raw input (a setting left out: its default)."""
    if isinstance(value, BaseModel):
        return getattr(value, name, _ABSENT)
    if not isinstance(value, dict):
        return _ABSENT
    if name in value:
        return value[name]
    info, _ = _field(model, name)
    return _ABSENT if info is None or info.is_required() \
        else info.get_default(call_default_factory=True)


Item = tuple[Location, object, "type[BaseModel] | None"]


def _items(root: object, model: type[BaseModel], container: str) -> list[Item]:
    """Every item of the list at `container` ('users[]', 'a[].b[]'; '' is the root itself)
    with its location and model, in document order."""
    found: list[Item] = [((), root, model)]
    for part in container.split(".") if container else ():
        name, many = part.removesuffix("[]"), part.endswith("[]")
        deeper: list[Item] = []
        for loc, value, current in found:
            child = _child(value, current, name)
            inner = _field(current, name)[1]
            if not many:
                deeper.append(((*loc, name), child, inner))
            elif isinstance(child, list):
                deeper.extend(((*loc, name, i), item, inner) for i, item in enumerate(child))
        found = deeper
    return found


def _leaf(item: object, model: type[BaseModel] | None, leaf: tuple[str, ...]) -> object:
    value = item
    for name in leaf:
        value, model = _child(value, model, name), _field(model, name)[1]
    return value


def values_at(root: object, model: type[BaseModel], path: str) -> Iterator[tuple[Location,
                                                                                  object]]:
    """Every (location, value) at `path` in a model object or in raw input for `model`."""
    container, leaf = _split(path)
    if not leaf:
        for loc, item, _ in _items(root, model, container):
            yield loc, item
        return
    get = operator.attrgetter(".".join(leaf))
    for loc, item, current in _items(root, model, container):
        try:
            value = get(item) if isinstance(item, BaseModel) else _leaf(item, current, leaf)
        except AttributeError:  # an optional model left out, or another member of a union
            value = _leaf(item, current, leaf)
        if value is not _ABSENT:
            yield (*loc, *leaf), value


# --- the walker ------------------------------------------------------------------------------

def _where(loc: Location) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _error(loc: Location, message: str) -> InitErrorDetails:
    return {"type": PydanticCustomError("reference", message), "loc": loc, "input": None}


def _plain_values(root: BaseModel, path: str) -> list[object]:
    """The values at `path` of a model object, in document order, without their locations
    (a valid site of 10,000 users: building every location tuple cost more than checking)."""
    container, leaf = _split(path)
    items: list[object] = [root]
    for part in container.split(".") if container else ():
        name, many = part.removesuffix("[]"), part.endswith("[]")
        children = [getattr(item, name) for item in items]
        items = [x for child in children for x in child] if many else children
    if not leaf:
        return items
    get = operator.attrgetter(".".join(leaf))
    return [get(item) for item in items]


def _names_if_distinct(root: BaseModel) -> dict[str, set[str]] | None:
    """Every space's names (built-in ones included) when no value repeats nor takes a
    built-in name; else None, and the walker below finds and locates the problems."""
    spaces: dict[str, set[str]] = {}
    for rule in UNIQUE:
        spaces.setdefault(rule.space, set()).update(rule.builtin)
    for rule in UNIQUE:
        seen = spaces[rule.space]
        values = [v for v in _plain_values(root, rule.path) if isinstance(v, str)]
        keys = [v.lower() for v in values] if rule.fold_case else values
        before = len(seen)
        seen.update(keys)
        if len(seen) != before + len(keys):
            return None
    return spaces


def _dangling_if_distinct(root: BaseModel, model: type[BaseModel]
                          ) -> list[InitErrorDetails] | None:
    """The problems of a model object whose unique values are distinct (located by the
    walker only for a reference that names something missing); None when some value
    repeats, or a path does not lead through model objects and lists."""
    try:
        names = _names_if_distinct(root)
        if names is None:
            return None
        problems: list[InitErrorDetails] = []
        for reference in REFERENCES:
            known = names[reference.space]
            if any(isinstance(v, str) and v not in known
                   for v in _plain_values(root, reference.path)):
                problems += [_error(loc, reference.message.format(value=value))
                             for loc, value in values_at(root, model, reference.path)
                             if isinstance(value, str) and value not in known]
    except (AttributeError, TypeError):
        return None
    return problems


def reference_errors(root: object, model: type[BaseModel]) -> Iterable[InitErrorDetails]:
    """Every repeated value and dangling reference of `root` (a `model` or raw input)."""
    if isinstance(root, BaseModel):
        found = _dangling_if_distinct(root, model)
        if found is not None:
            yield from found
            return
    # space -> value -> (the item holding it first, the path from that item to the value)
    spaces: dict[str, dict[str, tuple[Location, tuple[str, ...]]]] = {}
    for rule in UNIQUE:
        spaces.setdefault(rule.space, {}).update(dict.fromkeys(rule.builtin, ((), ())))
    by_container: dict[str, list[Unique]] = {}
    for rule in UNIQUE:
        by_container.setdefault(_split(rule.path)[0], []).append(rule)
    # Document order (item by item, fields as declared), so the first of two equal values
    # is the one a person reads first.
    for container, rules in by_container.items():
        leaves = [_split(rule.path)[1] for rule in rules]
        get = operator.attrgetter(*(".".join(leaf) for leaf in leaves))
        for item_loc, item, current in _items(root, model, container):
            values: Sequence[object]
            if isinstance(item, BaseModel):  # a valid site: one call reads every field
                values = get(item) if len(leaves) > 1 else (get(item),)
            else:
                values = [_leaf(item, current, leaf) for leaf in leaves]
            for rule, leaf, value in zip(rules, leaves, values, strict=True):
                if not isinstance(value, str):
                    continue
                seen = spaces[rule.space]
                key = value.lower() if rule.fold_case else value
                if not rule.report:
                    seen.setdefault(key, (item_loc, leaf))
                elif value in rule.builtin:
                    yield _error((*item_loc, *leaf), rule.builtin_message.format(value=value))
                elif key in seen:
                    first_item, first_leaf = seen[key]
                    yield _error((*item_loc, *leaf), rule.message.format(
                        value=value, first=_where((*first_item, *first_leaf)),
                        first_item=_where(first_item)))
                else:
                    seen[key] = (item_loc, leaf)
    for reference in REFERENCES:
        names = spaces[reference.space]
        for loc, value in values_at(root, model, reference.path):
            if isinstance(value, str) and value not in names:
                yield _error(loc, reference.message.format(value=value))
