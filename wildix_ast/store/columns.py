"""How a model section becomes a table: its columns derived from the pydantic model's fields.

A `Section` says where a model lives in the site (`users`, `dialplan.procedures`, a list of
plain values such as `system.sip_rtp.lan_networks`), which columns identify a row among its
siblings, and the few things a model cannot say (a column renamed because its field name is
an SQL word, a nested model flattened into its parent's row, a value kept as JSON text,
lower-cased copies that carry a case-insensitive unique constraint). Every other column
comes from the model's fields: a new field of `User` is a new column of `users` without
touching the store (only a migration, which `tests/unit/test_store.py` checks against the
tables).

Ordered lists keep a `position` column; a list inside a list item (a procedure's called
numbers, a trunk's addresses, a call group's members) is a child section whose rows carry
their parent's key, so its order survives too. `tables` declares the sections and tables."""

from __future__ import annotations

import datetime as dt
import enum
import functools
import json
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from pydantic import BaseModel, TypeAdapter
from sqlalchemy import (
    CheckConstraint,
    Column,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.types import TypeEngine

from wildix_ast.model.fields import Width

SECRET_KEY = 191
ENUM = 16
DIGEST = 32
_ADDRESS = {IPv4Address: 15, IPv4Network: 18}

metadata = MetaData()


def key_string(length: int) -> TypeEngine[str]:
    """A VARCHAR compared byte for byte everywhere: MariaDB's default collation would
    make 'Sales' and 'sales' (distinct groups in the model) collide in a unique index."""
    return String(length).with_variant(mysql.VARCHAR(length, collation="utf8mb4_bin"),
                                       "mysql", "mariadb")


# --- model fields -> columns -----------------------------------------------------------------

@dataclass(frozen=True)
class Scalar:
    """A model field stored in one column."""

    type: TypeEngine[Any]
    nullable: bool
    convert: Callable[[Any], Any] | None
    """Model value -> column value, when the column holds another type (enums, addresses)."""
    restore: Callable[[Any], Any] | None = None
    """Column value -> the data the model validates, when `convert` is not undone by the
    model itself (a nested model kept as JSON text)."""


def _width(annotation: Any, extra: list[Any]) -> Width | None:
    found = [m for m in extra if isinstance(m, Width)]
    if typing.get_origin(annotation) is typing.Annotated:
        found += [m for m in typing.get_args(annotation)[1:] if isinstance(m, Width)]
    return found[0] if found else None


def scalar(annotation: Any, extra: list[Any]) -> Scalar | None:
    """How a field of this annotation is stored; None for lists and nested models."""
    nullable = False
    arguments = typing.get_args(annotation)
    if type(None) in arguments and typing.get_origin(annotation) is not typing.Annotated:
        nullable = True
        (annotation,) = [a for a in arguments if a is not type(None)]
    base = typing.get_args(annotation)[0] \
        if typing.get_origin(annotation) is typing.Annotated else annotation
    if not isinstance(base, type) or issubclass(base, BaseModel | list):
        return None
    if issubclass(base, enum.Enum):
        return Scalar(String(ENUM), nullable, lambda value: value.value)
    if base in _ADDRESS:
        return Scalar(String(_ADDRESS[base]), nullable, str)
    if issubclass(base, bool):
        # PostgreSQL refuses a Python bool in an INTEGER column: stored as 0/1 everywhere
        return Scalar(Integer(), nullable, int)
    if issubclass(base, int):
        return Scalar(Integer(), nullable, None)
    if issubclass(base, dt.date):
        return Scalar(String(10), nullable, dt.date.isoformat)
    width = _width(annotation, extra)
    if width is None:
        return Scalar(Text(), nullable, None)
    return Scalar(key_string(width.chars) if width.exact else String(width.chars), nullable,
                  None)


@dataclass(frozen=True)
class FieldColumn:
    """One stored field: where it is in the item (a path through flattened models)."""

    column: str
    path: tuple[str, ...]
    scalar: Scalar


@dataclass(frozen=True, eq=False)
class Section:
    """Where one model section lives in the site and in the store."""

    table_name: str
    path: str
    """In the parent section's item (or the site): dotted through nested models."""
    model: type[BaseModel] | None
    """The model of one item; None for a list of plain values (`value` says its column)."""
    key: tuple[str, ...]
    """The columns that identify a row among its siblings (compared on re-import)."""
    many: bool = True
    parent: Section | None = None
    parent_key: tuple[tuple[str, str], ...] = ()
    """(this table's column, the parent's key column): the parent item a row belongs to."""
    flatten: Mapping[str, str] = field(default_factory=dict)
    """A nested model's fields stored in this row: field -> column prefix."""
    renames: Mapping[str, str] = field(default_factory=dict)
    fixed: Mapping[str, Any] = field(default_factory=dict)
    """Columns with one value for the whole section (single rows, a shared table's scope)."""
    folded: Mapping[str, str] = field(default_factory=dict)
    """column -> the column it holds lower-cased (case-insensitive unique constraints)."""
    value: tuple[str, Scalar] | None = None
    secrets: tuple[str, ...] = ()
    """Fields the vault keeps instead of this table (no column; the model leaves them out of
    its serialisation, hence of every digest)."""
    as_json: Mapping[str, str] = field(default_factory=dict)
    """Fields kept whole as JSON text (field -> column): values nested too deep, or
    whose absence means something else than an empty list (see docs/store.md)."""
    schema: MetaData = field(default_factory=lambda: metadata)
    """The metadata holding the section's table (the store's, unless a test makes its own)."""

    @functools.cached_property
    def fields(self) -> tuple[FieldColumn, ...]:
        if self.model is None:
            assert self.value is not None
            return (FieldColumn(self.value[0], (), self.value[1]),)
        return tuple(self._fields(self.model, (), ""))

    def _fields(self, model: type[BaseModel], at: tuple[str, ...],
                prefix: str) -> Iterator[FieldColumn]:
        for name, info in model.model_fields.items():
            dotted = ".".join((*at, name))
            if dotted in self.as_json:
                yield FieldColumn(self.as_json[dotted], (*at, name),
                                  json_scalar(info.annotation, nullable=not info.is_required()))
                continue
            if dotted in self.flatten:
                nested = next(a for a in (info.annotation, *typing.get_args(info.annotation))
                              if isinstance(a, type) and issubclass(a, BaseModel))
                yield from self._fields(nested, (*at, name), self.flatten[dotted])
                continue
            stored = scalar(info.annotation, list(info.metadata))
            if stored is not None and dotted not in self.secrets:
                column = self.renames.get(dotted, prefix + name)
                yield FieldColumn(column, (*at, name), stored)

    def columns(self) -> list[Column[Any]]:
        """The derived columns: the model's fields, the lower-cased copies, and for model
        items the digest of the item (what a re-import compares instead of every column)."""
        made: list[Column[Any]] = [Column(f.column, f.scalar.type, nullable=f.scalar.nullable)
                                   for f in self.fields]
        by_name = {f.column: f for f in self.fields}
        for column, source in self.folded.items():
            length = getattr(by_name[source].scalar.type, "length", None)
            assert isinstance(length, int), f"{column}: {source} needs a Width"
            made.append(Column(column, key_string(length), nullable=True))
        if self.model is not None:
            made.append(Column("digest", String(DIGEST), nullable=True))
        return made

    @property
    def table(self) -> Table:
        return self.schema.tables[self.table_name]




def json_scalar(annotation: Any, *, nullable: bool) -> Scalar:
    """A value kept as JSON text: what a settings file would say (defaults left out)."""
    adapter: TypeAdapter[Any] = TypeAdapter(annotation)

    def convert(value: Any) -> str:
        return adapter.dump_json(value, exclude_defaults=True).decode()

    return Scalar(Text(), nullable, convert, json.loads)


# --- tables ----------------------------------------------------------------------------------

def single_row(section: Section) -> Table:
    """The table of a section with one item (settings): its one row has id 1."""
    name = section.table_name
    return Table(name, section.schema,
                 Column("id", Integer, primary_key=True, autoincrement=False),
                 *section.columns(), CheckConstraint("id = 1", name=f"ck_{name}_single_row"))


def top_list(section: Section, *unique: str,
             constraints: tuple[ForeignKeyConstraint, ...] = ()) -> Table:
    """The table of a top-level list section: rows in `position` order, `unique` columns
    unique."""
    name = section.table_name
    return Table(name, section.schema, Column("id", Integer, primary_key=True),
                 Column("position", Integer, nullable=False), *section.columns(),
                 UniqueConstraint("position", name=f"uq_{name}_position"),
                 *(UniqueConstraint(column, name=f"uq_{name}_{column.removesuffix('_key')}")
                   for column in unique), *constraints)


def child_list(section: Section, parent: str, *parent_columns: tuple[str, TypeEngine[Any]],
               scope: tuple[str, int] | None = None, index: str | None = None) -> Table:
    """The table of a list inside a list item: keyed by its parent's key columns
    (name, type) that reference `parent`'s, its `scope` (a table shared by two sections,
    told apart by a fixed value) and its position; `index`: a column a lookup searches."""
    name = section.table_name
    keys = [c for c, _ in parent_columns]
    referenced = [column for _, column in section.parent_key]
    scoped = [Column(scope[0], String(scope[1]), primary_key=True)] if scope else []
    return Table(name, section.schema,
                 *(Column(c, kind, primary_key=True) for c, kind in parent_columns),
                 *scoped, Column("position", Integer, primary_key=True, autoincrement=False),
                 *section.columns(),
                 ForeignKeyConstraint(keys, [f"{parent}.{c}" for c in referenced],
                                      name=f"fk_{name}_{keys[-1]}"),
                 *([Index(f"ix_{name}_{index}", index)] if index else []))
