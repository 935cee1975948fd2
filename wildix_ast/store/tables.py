"""The store's tables, one per model section, their columns derived from the pydantic models.

A `Section` says where a model lives in the site (`users`, `dialplan.procedures`, a list of
plain values such as `system.sip_rtp.lan_networks`), which columns identify a row among its
siblings, and the few things a model cannot say (a column renamed because its field name is
an SQL word, a nested model flattened into its parent's row, lower-cased copies that carry
a case-insensitive unique constraint). Every other column comes from the model's fields:
a new field of `User` is a new column of `users` without touching this file (only a
migration, which `tests/unit/test_store.py` checks against these tables).

Ordered lists keep a `position` column; a list inside a list item (the routing issue's
ordered applications of a procedure) is a child section whose rows carry their parent's
key, so its order survives too.

The schema is made by the alembic migrations in `migrations/versions/` only."""

from __future__ import annotations

import enum
import functools
import json
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from pydantic import BaseModel
from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.types import TypeEngine

from wildix_ast.model.dialplan import Dialplan, Procedure
from wildix_ast.model.fields import Width
from wildix_ast.model.groups import Group
from wildix_ast.model.preferences import Preferences
from wildix_ast.model.smtp_client import SmtpProfile
from wildix_ast.model.system import System
from wildix_ast.model.users import User

# MariaDB indexes at most 767 bytes on old row formats: 191 utf8mb4 characters.
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
    if issubclass(base, int):
        return Scalar(Integer(), nullable, None)
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


# --- the sections ----------------------------------------------------------------------------

SYSTEM = Section("system_settings", "system", System, key=("id",), many=False,
                 flatten={"language_region": "", "sip_rtp": "", "manager": "manager_",
                          "fastagi": "fastagi_"},
                 fixed={"id": 1})
LAN_NETWORKS = Section("lan_networks", "sip_rtp.lan_networks", None, key=("position",),
                       parent=SYSTEM, value=("network", Scalar(String(18), False, str)))
_CODEC = Scalar(String(ENUM), False, lambda codec: codec.value)
LAN_CODECS = Section("sip_codecs", "sip_rtp.lan_codecs", None, key=("position",),
                     parent=SYSTEM, fixed={"scope": "lan"}, value=("codec", _CODEC))
REMOTE_CODECS = Section("sip_codecs", "sip_rtp.remote_codecs", None, key=("position",),
                        parent=SYSTEM, fixed={"scope": "remote"}, value=("codec", _CODEC))
GROUPS = Section("acl_groups", "groups", Group, key=("name",))
DIALPLAN = Section("dialplan_settings", "dialplan", Dialplan, key=("id",), many=False,
                   fixed={"id": 1})
PROCEDURES = Section("dialplan_procedures", "procedures", Procedure, key=("name",),
                     parent=DIALPLAN)
USERS = Section("users", "users", User, key=("extension",),
                renames={"group": "group_name"},  # GROUP is an SQL word
                folded={"login_key": "login", "email_key": "email"})



def preferences_json(preferences: Preferences) -> str:
    return preferences.model_dump_json(exclude_defaults=True)


PREFERENCES = Section("user_preferences", "preferences", None, key=(), many=False,
                      parent=USERS, parent_key=(("extension", "extension"),),
                      value=("body", Scalar(Text(), False, preferences_json, json.loads)))
"""One row per user: its preferences as JSON (only what differs from the defaults), so a
preference added later needs no migration; read whole by the call-time look-up."""

SMTP_PROFILES = Section("smtp_profiles", "smtp_profiles", SmtpProfile, key=("name",),
                        renames={"user": "user_name"},  # USER is an SQL word
                        secrets=("password",))
"""WMS Client SMTP; each password lives in the vault (`vault.smtp_password_key`)."""

SECTIONS: tuple[Section, ...] = (SYSTEM, LAN_NETWORKS, LAN_CODECS, REMOTE_CODECS, GROUPS,
                                 DIALPLAN, PROCEDURES, USERS, PREFERENCES, SMTP_PROFILES)
"""Parents before children, referenced before referencing (users name groups)."""


def _single_row(section: Section) -> Table:
    """The table of a section with one item (settings): its one row has id 1."""
    name = section.table_name
    return Table(name, metadata, Column("id", Integer, primary_key=True, autoincrement=False),
                 *section.columns(), CheckConstraint("id = 1", name=f"ck_{name}_single_row"))


def _list(section: Section, *unique: str,
          constraints: tuple[ForeignKeyConstraint, ...] = ()) -> Table:
    """The table of a list section: rows in `position` order, `unique` columns unique."""
    name = section.table_name
    return Table(name, metadata, Column("id", Integer, primary_key=True),
                 Column("position", Integer, nullable=False), *section.columns(),
                 UniqueConstraint("position", name=f"uq_{name}_position"),
                 *(UniqueConstraint(column, name=f"uq_{name}_{column.removesuffix('_key')}")
                   for column in unique), *constraints)


site_state = Table(
    "site_state", metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("revision", Integer, nullable=False),
    Column("digest", String(DIGEST), nullable=True),
    CheckConstraint("id = 1", name="ck_site_state_single_row"),
)
"""One row, always present: every import updates it first, which serialises imports on
every database (row lock on PostgreSQL/MariaDB, write lock on SQLite). `revision` grows
with every import that changed something; `digest` is the stored site's (see
`Store.import_site`)."""

system_settings = _single_row(SYSTEM)
lan_networks = Table(
    "lan_networks", metadata,
    Column("position", Integer, primary_key=True, autoincrement=False),
    *LAN_NETWORKS.columns(),
)
sip_codecs = Table(
    "sip_codecs", metadata,
    Column("scope", String(6), primary_key=True),
    Column("position", Integer, primary_key=True, autoincrement=False),
    *LAN_CODECS.columns(),
    CheckConstraint("scope IN ('lan', 'remote')", name="ck_sip_codecs_scope"),
)
dialplan_settings = _single_row(DIALPLAN)
dialplan_procedures = _list(PROCEDURES, "name")
acl_groups = _list(GROUPS, "name")
users = _list(USERS, "extension", "email_key", "login_key", "office_did", "fax_did", constraints=(
    # A user's group must exist: enforced by the database too.
    ForeignKeyConstraint(["group_name"], ["acl_groups.name"], name="fk_users_group_name"),))
user_preferences = Table(
    "user_preferences", metadata,
    Column("extension", key_string(8), primary_key=True),
    *PREFERENCES.columns(),
    ForeignKeyConstraint(["extension"], ["users.extension"],
                         name="fk_user_preferences_extension"),
)
smtp_profiles = _list(SMTP_PROFILES, "name")
secrets = Table(
    "secrets", metadata,
    Column("key", key_string(SECRET_KEY), primary_key=True),
    Column("value", Text, nullable=False),
)
"""Generated secrets (see wildix_ast.store.vault): kept across imports."""
documents = Table(
    "documents", metadata,
    Column("name", key_string(64), primary_key=True),
    Column("body", Text, nullable=False),
)
"""Sections kept as one JSON document each until they get tables of their own (the
outgoing-routing settings: trunks, trunk groups, group ACLs, dialplan general settings):
stored whole and given back exactly, so nothing a settings file says is lost."""
def _blob() -> TypeEngine[bytes]:
    return LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")


sound_audio = Table(
    "sound_audio", metadata,
    Column("digest", key_string(64), primary_key=True),
    Column("wav", _blob(), nullable=False),
    Column("wav16", _blob(), nullable=False),
)
"""Converted sounds (wildix_ast.sounds.audio), by the digest of their source file."""
sound_files = Table(
    "sound_files", metadata,
    Column("sound", key_string(64), primary_key=True),
    Column("language", key_string(16), primary_key=True),
    Column("digest", key_string(64), ForeignKey("sound_audio.digest",
                                                name="fk_sound_files_digest"), nullable=False),
)
"""Which audio each file of the stored site's sounds is (replaced on every import that
brings the audio)."""
imports = Table(
    "imports", metadata,
    Column("id", Integer, primary_key=True),
    Column("imported_at", DateTime(timezone=True), nullable=False),
    Column("source_sha256", String(64), nullable=True),
    Column("users", Integer, nullable=False),
    Column("groups", Integer, nullable=False),
    Column("procedures", Integer, nullable=False),
    Column("added", Integer, nullable=False),
    Column("changed", Integer, nullable=False),
    Column("removed", Integer, nullable=False),
    Column("revision", Integer, nullable=True),
)
"""The history of imports: when, the SHA-256 of the text (never the text), what changed,
and the store revision it left."""

STORE_TABLES: tuple[Table, ...] = (
    site_state, system_settings, lan_networks, sip_codecs, dialplan_settings,
    dialplan_procedures, acl_groups, users, user_preferences, smtp_profiles, secrets, documents,
    sound_audio, sound_files, imports)
"""Every table of the store, parents before children."""

