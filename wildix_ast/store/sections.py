"""Site <-> rows, section by section, driven by the `Section` declarations of `tables`.

`entries` lists a site's items with their row keys and digests, `compare` finds which differ
from the stored rows (building rows only for those), `write_changes` writes just that, and
`site_data` turns stored rows back into the data of a `Site`."""

from __future__ import annotations

import functools
import hashlib
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Connection, Table, and_, bindparam, delete, insert, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.schema import UniqueConstraint

from wildix_ast.store.columns import Section
from wildix_ast.store.tables import SECTIONS

# Rows per statement: bounded memory and statement size for 50,000 users.
BATCH = 1000
Row = dict[str, Any]


# --- site -> rows ----------------------------------------------------------------------------

@functools.cache
def _reader(section: Section) -> Callable[[Any], Row]:
    """A fast item -> row function (one attrgetter call for every field)."""
    fields = section.fields
    columns = [f.column for f in fields]
    converters = [(i, f.scalar.convert) for i, f in enumerate(fields) if f.scalar.convert]
    if section.model is None:
        (convert,) = [f.scalar.convert for f in fields]
        column = columns[0]
        return lambda item: {column: convert(item) if convert else item}
    get = operator.attrgetter(*(".".join(f.path) for f in fields))
    folded = list(section.folded.items())
    fixed = dict(section.fixed)

    def read(item: Any) -> Row:
        got = get(item)
        values: list[Any] = list(got) if len(fields) > 1 else [got]
        for i, convert in converters:
            if values[i] is not None:
                values[i] = convert(values[i])
        row = dict(zip(columns, values, strict=True))
        for column, source in folded:
            row[column] = row[source].lower() if row[source] is not None else None
        row.update(fixed)
        return row

    return read


def parent_columns(section: Section) -> tuple[str, ...]:
    return tuple(child for child, _ in section.parent_key)


def row_key(section: Section) -> tuple[str, ...]:
    """The columns that identify a row in its table (tables shared by two sections tell
    them apart by their fixed values)."""
    columns = (*parent_columns(section), *section.fixed, *section.key)
    return tuple(dict.fromkeys(columns))


def digest(item: BaseModel) -> str:
    """A digest of everything an item says (pydantic's own JSON, made in Rust): equal
    digests, equal rows, without building the row."""
    return hashlib.blake2b(item.__pydantic_serializer__.to_json(item),
                           digest_size=16).hexdigest()


@dataclass
class Entry:
    """One item of a section in the new site: its row key, and what its row needs beside
    the item's own fields (its parent's key, its position, the section's fixed values)."""

    item: Any
    extra: Row
    ident: Row
    """The row key's columns and values."""
    digest: str | None
    """None for lists of plain values (compared row by row)."""
    key: tuple[Any, ...] = ()
    owner: Entry | None = None
    """The parent section's entry this item belongs to (None: a top section)."""
    unchanged: bool = False
    """Set by `compare`: the stored row has this entry's digest (what it says is stored)."""

    def __post_init__(self) -> None:
        self.key = tuple(self.ident.values())


@functools.cache
def _key_reader(section: Section) -> Callable[[Any, Row], Row]:
    """(item, extra) -> the row key's columns: from the item's fields, else from `extra`
    (parent key, position, fixed values)."""
    by_column = {f.column: f for f in section.fields}
    getters: list[tuple[str, Callable[[Any], Any] | None, Callable[[Any], Any] | None]] = []
    for column in row_key(section):
        f = by_column.get(column)
        if f is None:
            getters.append((column, None, None))
        elif not f.path:  # a list of plain values: the item is the value
            getters.append((column, lambda item: item, f.scalar.convert))
        else:
            getters.append((column, operator.attrgetter(".".join(f.path)), f.scalar.convert))

    def read(item: Any, extra: Row) -> Row:
        ident = {}
        for column, get, convert in getters:
            value = extra[column] if get is None else get(item)
            ident[column] = convert(value) if convert is not None and value is not None \
                else value
        return ident

    return read


def entries(site: BaseModel,
            sections: Sequence[Section] = SECTIONS) -> dict[Section, list[Entry]]:
    """Every section's items, parents before children, with their row keys."""
    found: dict[Section, list[Entry]] = {}
    for section in sections:
        key_of = _key_reader(section)
        owners: Iterable[tuple[Any, Row, Entry | None]] = [(site, {}, None)] \
            if section.parent is None else (
                (entry.item, {child: entry.ident[column]
                              for child, column in section.parent_key}, entry)
                for entry in found[section.parent])
        made: list[Entry] = []
        for owner, keys, owner_entry in owners:
            items = operator.attrgetter(section.path)(owner)
            for position, item in enumerate(items if section.many else [items]):
                extra = {**keys, **section.fixed}
                if section.many:
                    extra["position"] = position
                made.append(Entry(item, extra, key_of(item, extra),
                                  None if section.model is None else digest(item),
                                  owner=owner_entry))
        found[section] = made
    return found


def row_of(section: Section, entry: Entry) -> Row:
    """The whole row of an entry."""
    row = _reader(section)(entry.item)
    row.update(entry.extra)
    if entry.digest is not None:
        row["digest"] = entry.digest
    return row


# --- rows -> site ----------------------------------------------------------------------------

def _put(data: dict[str, Any], dotted: str, value: Any) -> None:
    *inner, last = dotted.split(".")
    for part in inner:
        data = data.setdefault(part, {})
    data[last] = value


@functools.cache
def _layout(section: Section) -> tuple[list[tuple[str, str]], list[tuple[str, str]],
                                       list[tuple[str, str, Callable[[Any], Any]]]]:
    """(column, field) of the top-level fields, (column, dotted path) of nested ones, and
    (column, dotted path, restore) of those kept in another form (JSON text)."""
    plain = [f for f in section.fields if f.scalar.restore is None]
    top = [(f.column, f.path[0]) for f in plain if len(f.path) == 1]
    nested = [(f.column, ".".join(f.path)) for f in plain if len(f.path) > 1]
    restored = [(f.column, ".".join(f.path), f.scalar.restore) for f in section.fields
                if f.scalar.restore is not None]
    return top, nested, restored


def item_data(section: Section, row: RowMapping | Row) -> Any:
    """One item's data (for `model_validate`) from its row; NULL columns are left out."""
    if section.model is None:
        (stored,) = section.fields
        value = row[stored.column]
        restore = stored.scalar.restore
        return restore(value) if restore is not None and value is not None else value
    top, nested, restored = _layout(section)
    data = {name: value for column, name in top if (value := row[column]) is not None}
    for column, dotted in nested:
        if (value := row[column]) is not None:
            _put(data, dotted, value)
    for column, dotted, restore in restored:
        if (value := row[column]) is not None:
            _put(data, dotted, restore(value))
    return data


def read_rows(connection: Connection, section: Section,
              where: Any = None) -> list[RowMapping]:
    """A section's rows in their order (by parent, then position)."""
    table = section.table
    query = select(table)
    for column, value in section.fixed.items():
        query = query.where(table.c[column] == value)
    if where is not None:
        query = query.where(where)
    order = [table.c[c] for c in parent_columns(section)]
    if section.many:
        order.append(table.c.position)
    result = connection.execute(query.order_by(*order))
    return [row._mapping for row in result.all()]


def site_data(rows: Mapping[Section, Sequence[RowMapping]],
              sections: Sequence[Section] = SECTIONS) -> dict[str, Any]:
    """The data of a `Site` from every section's rows (as `read_rows` orders them)."""
    root: dict[str, Any] = {}
    placed: dict[Section, list[tuple[Any, RowMapping]]] = {}
    for section in sections:
        owners: list[tuple[Any, tuple[Any, ...]]]
        if section.parent is None or section.parent not in placed:  # a subtree's root
            owners = [(root, ())]
        else:
            parent_key = [column for _, column in section.parent_key]
            owners = [(data, tuple(row[c] for c in parent_key))
                      for data, row in placed[section.parent]]
        children: dict[tuple[Any, ...], list[tuple[Any, RowMapping]]] = {}
        mine = parent_columns(section)
        for row in rows[section]:
            children.setdefault(tuple(row[c] for c in mine), []).append(
                (item_data(section, row), row))
        placed[section] = []
        for owner, key in owners:
            found = children.get(key, [])
            placed[section].extend(found)
            if section.many:
                _put(owner, section.path, [data for data, _ in found])
            elif found:
                _put(owner, section.path, found[0][0])
    return root


# --- writing only the differences ------------------------------------------------------------

@dataclass
class Changes:
    """What `sync` found for one section, by row key."""

    added: list[tuple[Any, ...]] = field(default_factory=list)
    changed: list[tuple[Any, ...]] = field(default_factory=list)
    """Rows whose content changed (a move alone is not a change)."""
    moved: list[tuple[Any, ...]] = field(default_factory=list)
    removed: list[tuple[Any, ...]] = field(default_factory=list)

    @property
    def any(self) -> bool:
        return bool(self.added or self.changed or self.moved or self.removed)


def _unique_columns(table: Table, key: tuple[str, ...]) -> list[str]:
    """Columns under a unique constraint other than the row key: they must be cleared before
    rows trade values (two users swapping emails, every user moving one place up)."""
    found: list[str] = []
    for constraint in table.constraints:
        if isinstance(constraint, UniqueConstraint):
            names = [c.name for c in constraint.columns]
            if tuple(names) != key:
                found += [n for n in names if n not in found]
    return found


def insert_rows(connection: Connection, table: Table, rows: Sequence[Row]) -> None:
    """INSERT `rows` into `table`, in batches."""
    for start in range(0, len(rows), BATCH):
        connection.execute(insert(table), list(rows[start:start + BATCH]))


def _update(connection: Connection, table: Table, key: tuple[str, ...],
            rows: Sequence[Row]) -> None:
    """UPDATE each row (found by its `key` columns) to the other values it carries."""
    if not rows:
        return
    columns = [c for c in rows[0] if c not in key]
    statement = update(table).where(and_(*(table.c[k] == bindparam(f"k_{k}") for k in key))) \
        .values({c: bindparam(f"v_{c}") for c in columns})
    params = [{**{f"k_{k}": row[k] for k in key}, **{f"v_{c}": row[c] for c in columns}}
              for row in rows]
    for start in range(0, len(params), BATCH):
        connection.execute(statement, params[start:start + BATCH])


def _delete(connection: Connection, section: Section, keys: Sequence[tuple[Any, ...]]) -> None:
    table, key = section.table, row_key(section)
    fixed = [table.c[c] == v for c, v in section.fixed.items()]
    if len(key) == 1:
        for start in range(0, len(keys), BATCH):
            connection.execute(delete(table).where(
                table.c[key[0]].in_([k[0] for k in keys[start:start + BATCH]]), *fixed))
        return
    statement = delete(table).where(*(table.c[k] == bindparam(f"k_{k}") for k in key), *fixed)
    connection.execute(statement, [{f"k_{k}": v for k, v in zip(key, values, strict=True)}
                                   for values in keys])


@dataclass
class Sync:
    """One section's pending write: the old rows, the new ones, and what differs."""

    section: Section
    old: dict[tuple[Any, ...], Row]
    new: dict[tuple[Any, ...], Row]
    changes: Changes


def stored_rows(connection: Connection, section: Section,
                where: Any = None) -> dict[tuple[Any, ...], Row]:
    """A section's stored rows by row key: for model sections only the key, the position
    and the digest (all a comparison needs); whole rows for lists of plain values.
    `where`: only the rows it selects."""
    table, key = section.table, row_key(section)
    if section.model is None:
        columns = [c for c in table.c if c.name != "id"]
    else:
        # The unique columns too: a write clears them first only if they change.
        names = [*key, *(["position"] if section.many else []), "digest",
                 *_unique_columns(table, key)]
        columns = [table.c[name] for name in dict.fromkeys(names)]
    query = select(*columns).where(*(table.c[c] == v for c, v in section.fixed.items()))
    if where is not None:
        query = query.where(where)
    names = [c.name for c in columns]
    rows = (dict(zip(names, values, strict=True))
            for values in connection.execute(query).all())
    return {tuple(row[k] for k in key): row for row in rows}


def compare(section: Section, old: dict[tuple[Any, ...], Row],
            new_entries: Sequence[Entry], *, follows_owner: bool = False) -> Sync:
    """The section's stored rows against its new entries. Rows are built only for the
    entries that differ (equal digest and position: nothing to write). `follows_owner`:
    the section's rows are written whenever their owner's digest changes, so an entry
    whose owner is stored unchanged is unchanged too (not built nor compared: a user's
    preferences at 10,000 users)."""
    new: dict[tuple[Any, ...], Row] = {}
    changes = Changes()
    for entry in new_entries:
        k = entry.key
        before = old.get(k)
        if entry.digest is not None and before is not None \
                and before["digest"] == entry.digest:
            entry.unchanged = True
            if before.get("position") == entry.extra.get("position"):
                continue
        elif follows_owner and before is not None and entry.owner is not None \
                and entry.owner.unchanged:
            continue
        row = new[k] = row_of(section, entry)
        if before is None:
            changes.added.append(k)
        elif entry.digest is not None:
            (changes.moved if before["digest"] == entry.digest else changes.changed).append(k)
        elif before != row:
            differs = {c for c in row if row[c] != before.get(c)}
            (changes.moved if differs == {"position"} else changes.changed).append(k)
        else:
            del new[k]
    kept = {entry.key for entry in new_entries}
    changes.removed = [k for k in old if k not in kept]
    return Sync(section, old, new, changes)


def write_changes(connection: Connection, syncs: Sequence[Sync],
                  insert: Callable[[Connection, Table, Sequence[Row]], None]) -> None:
    """Write every section's differences: parents' new rows before their children's, the
    children's removals before their parents'. Untouched rows are not written."""
    for sync in syncs:
        section, changes = sync.section, sync.changes
        table, key = section.table, row_key(section)
        unique = _unique_columns(table, key)
        leaving = [k for k in (*changes.removed, *changes.changed, *changes.moved)
                   if any(sync.old[k].get(c) != sync.new.get(k, {}).get(c) for c in unique)]
        if leaving and unique:
            cleared = []
            for i, k in enumerate(leaving):
                row = {**dict(zip(key, k, strict=True))}
                for c in unique:  # positions become negative, other values NULL meanwhile
                    row[c] = -1 - i if c == "position" else None
                cleared.append(row)
            _update(connection, table, key, cleared)
        _update(connection, table, key,
                [sync.new[k] for k in (*changes.changed, *changes.moved)])
        insert(connection, table, [sync.new[k] for k in changes.added])
    for sync in reversed(syncs):
        if sync.changes.removed:
            _delete(connection, sync.section, sync.changes.removed)
