"""The store's tables: one table per model section, one column per field.

The schema is made by the alembic migrations in `migrations/versions/` only; these classes
describe it for queries (and for the test that checks the migrations match them).
Lists keep their order in a `position` column so a site reads back exactly as imported."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.types import TypeEngine
from sqlmodel import Field, SQLModel

# Lengths follow the field types of wildix_ast.fields (VARCHAR needs one on MariaDB).
FREE_TEXT = 80
IDENTIFIER = 40
EXTENSION = 8
PHONE = 21
EMAIL = 255
LOGIN = 64
LANGUAGE = 5
# MariaDB indexes at most 767 bytes on old row formats: 191 utf8mb4 characters.
SECRET_KEY = 191


def key_string(length: int) -> TypeEngine[str]:
    """A VARCHAR compared byte for byte everywhere: MariaDB's default collation would
    make 'Sales' and 'sales' (distinct groups in the model) collide in a unique index."""
    return String(length).with_variant(mysql.VARCHAR(length, collation="utf8mb4_bin"),
                                       "mysql", "mariadb")


class SiteState(SQLModel, table=True):
    """One row, always present: every import updates it first, which serialises imports
    on every database (row lock on PostgreSQL/MariaDB, write lock on SQLite)."""

    __tablename__ = "site_state"
    __table_args__ = (CheckConstraint("id = 1", name="ck_site_state_single_row"),)

    id: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    generation: int = Field(sa_column=Column(Integer, nullable=False))


class SystemSettings(SQLModel, table=True):
    """Settings -> PBX (one row when a site is stored)."""

    __tablename__ = "system_settings"
    __table_args__ = (CheckConstraint("id = 1", name="ck_system_settings_single_row"),)

    id: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    pbx_name: str = Field(sa_column=Column(key_string(IDENTIFIER), nullable=False))
    language: str = Field(sa_column=Column(String(LANGUAGE), nullable=False))
    tone_zone: str = Field(sa_column=Column(String(2), nullable=False))
    country_code: str = Field(sa_column=Column(String(4), nullable=False))
    timezone: str = Field(sa_column=Column(String(64), nullable=False))
    bind_address: str = Field(sa_column=Column(String(15), nullable=False))
    sip_port: int = Field(sa_column=Column(Integer, nullable=False))
    rtp_start: int = Field(sa_column=Column(Integer, nullable=False))
    rtp_end: int = Field(sa_column=Column(Integer, nullable=False))
    external_address: str | None = Field(sa_column=Column(String(15), nullable=True))
    media_address: str | None = Field(sa_column=Column(String(15), nullable=True))
    concurrent_calls: int | None = Field(sa_column=Column(Integer, nullable=True))
    rtp_timeout: int = Field(sa_column=Column(Integer, nullable=False))
    rtp_hold_timeout: int = Field(sa_column=Column(Integer, nullable=False))
    session_expires: int = Field(sa_column=Column(Integer, nullable=False))
    qualify_frequency: int = Field(sa_column=Column(Integer, nullable=False))
    tls_port: int = Field(sa_column=Column(Integer, nullable=False))
    tls_certificate: str | None = Field(sa_column=Column(String(255), nullable=True))
    tls_private_key: str | None = Field(sa_column=Column(String(255), nullable=True))
    manager_port: int = Field(sa_column=Column(Integer, nullable=False))
    manager_username: str = Field(sa_column=Column(key_string(IDENTIFIER), nullable=False))


class LanNetwork(SQLModel, table=True):
    """Settings -> PBX -> SIP-RTP: the networks treated as LAN, in order."""

    __tablename__ = "lan_networks"

    position: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    network: str = Field(sa_column=Column(String(18), nullable=False))


class SipCodec(SQLModel, table=True):
    """Settings -> PBX -> SIP-RTP: codecs offered on the LAN or remotely, in order."""

    __tablename__ = "sip_codecs"
    __table_args__ = (CheckConstraint("scope IN ('lan', 'remote')", name="ck_sip_codecs_scope"),)

    scope: str = Field(sa_column=Column(String(6), primary_key=True))
    position: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    codec: str = Field(sa_column=Column(String(16), nullable=False))


class DialplanSettings(SQLModel, table=True):
    """Dialplan -> general settings (one row when a site is stored)."""

    __tablename__ = "dialplan_settings"
    __table_args__ = (CheckConstraint("id = 1", name="ck_dialplan_settings_single_row"),)

    id: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    echo_test: str = Field(sa_column=Column(String(EXTENSION), nullable=False))
    voicemail: str = Field(sa_column=Column(String(EXTENSION), nullable=False))
    ring_timeout: int = Field(sa_column=Column(Integer, nullable=False))


class DialplanProcedure(SQLModel, table=True):
    __tablename__ = "dialplan_procedures"
    __table_args__ = (
        UniqueConstraint("name", name="uq_dialplan_procedures_name"),
        UniqueConstraint("position", name="uq_dialplan_procedures_position"),
    )

    id: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True))
    position: int = Field(sa_column=Column(Integer, nullable=False))
    name: str = Field(sa_column=Column(key_string(IDENTIFIER), nullable=False))
    description: str | None = Field(sa_column=Column(String(FREE_TEXT), nullable=True))


class AclGroup(SQLModel, table=True):
    """Users -> Groups ("groups" is a reserved word in MySQL 8, hence the prefix)."""

    __tablename__ = "acl_groups"
    __table_args__ = (
        UniqueConstraint("name", name="uq_acl_groups_name"),
        UniqueConstraint("position", name="uq_acl_groups_position"),
    )

    id: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True))
    position: int = Field(sa_column=Column(Integer, nullable=False))
    name: str = Field(sa_column=Column(key_string(IDENTIFIER), nullable=False))
    description: str | None = Field(sa_column=Column(String(FREE_TEXT), nullable=True))


class UserRow(SQLModel, table=True):
    """One WMS user, one column per field of wildix_ast.users.User.

    `email_key` and `login_key` hold the lower-cased email and login: their unique
    constraints enforce in the database the same case-insensitive rule as the model, on
    every backend whatever its collation."""

    __tablename__ = "users"
    __table_args__ = (
        UniqueConstraint("position", name="uq_users_position"),
        UniqueConstraint("extension", name="uq_users_extension"),
        UniqueConstraint("email_key", name="uq_users_email"),
        UniqueConstraint("login_key", name="uq_users_login"),
        UniqueConstraint("office_did", name="uq_users_office_did"),
        UniqueConstraint("fax_did", name="uq_users_fax_did"),
    )

    id: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True))
    position: int = Field(sa_column=Column(Integer, nullable=False))
    type: str = Field(sa_column=Column(String(16), nullable=False))
    name: str = Field(sa_column=Column(String(FREE_TEXT), nullable=False))
    login: str | None = Field(sa_column=Column(String(LOGIN), nullable=True))
    login_key: str | None = Field(sa_column=Column(key_string(LOGIN), nullable=True))
    extension: str = Field(sa_column=Column(key_string(EXTENSION), nullable=False))
    office_did: str | None = Field(sa_column=Column(key_string(PHONE), nullable=True))
    fax_did: str | None = Field(sa_column=Column(key_string(PHONE), nullable=True))
    email: str | None = Field(sa_column=Column(String(EMAIL), nullable=True))
    email_key: str | None = Field(sa_column=Column(key_string(EMAIL), nullable=True))
    mobile: str | None = Field(sa_column=Column(String(PHONE), nullable=True))
    language: str | None = Field(sa_column=Column(String(LANGUAGE), nullable=True))
    group_name: str = Field(sa_column=Column(
        key_string(IDENTIFIER), ForeignKey("acl_groups.name", name="fk_users_group_name"),
        nullable=False))
    department: str | None = Field(sa_column=Column(String(FREE_TEXT), nullable=True))
    dialplan: str = Field(sa_column=Column(String(IDENTIFIER), nullable=False))
    fax_dialplan: str = Field(sa_column=Column(String(IDENTIFIER), nullable=False))
    web_password: str | None = Field(sa_column=Column(Text, nullable=True))
    sip_password: str | None = Field(sa_column=Column(Text, nullable=True))


class StoredSecret(SQLModel, table=True):
    """Generated secrets (see wildix_ast.secrets_vault): kept across imports."""

    __tablename__ = "secrets"

    key: str = Field(sa_column=Column(key_string(SECRET_KEY), primary_key=True))
    value: str = Field(sa_column=Column(Text, nullable=False))


class ImportRecord(SQLModel, table=True):
    """The history of imports: when, what text (its SHA-256), and what changed."""

    __tablename__ = "imports"

    id: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True))
    imported_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    source_sha256: str | None = Field(sa_column=Column(String(64), nullable=True))
    users: int = Field(sa_column=Column(Integer, nullable=False))
    groups: int = Field(sa_column=Column(Integer, nullable=False))
    procedures: int = Field(sa_column=Column(Integer, nullable=False))
    added: int = Field(sa_column=Column(Integer, nullable=False))
    changed: int = Field(sa_column=Column(Integer, nullable=False))
    removed: int = Field(sa_column=Column(Integer, nullable=False))


def table(model: type[SQLModel]) -> Table:
    """The Core table of a table model (typed, for queries)."""
    result = model.__table__  # type: ignore[attr-defined]
    assert isinstance(result, Table)
    return result


site_state = table(SiteState)
system_settings = table(SystemSettings)
lan_networks = table(LanNetwork)
sip_codecs = table(SipCodec)
dialplan_settings = table(DialplanSettings)
dialplan_procedures = table(DialplanProcedure)
acl_groups = table(AclGroup)
users = table(UserRow)
secrets = table(StoredSecret)
imports = table(ImportRecord)

STORE_TABLES: tuple[Table, ...] = (
    site_state, system_settings, lan_networks, sip_codecs, dialplan_settings,
    dialplan_procedures, acl_groups, users, secrets, imports)
"""Every table of the store, parents before children."""

metadata = SQLModel.metadata
