"""The company directory (issue 21): its settings, its servers, the users it owns (by entry
UUID) and the state of the last sync; the devices (phones by MAC).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0010"
down_revision: str | None = "0009"
branch_labels: str | None = None
depends_on: str | None = None

# MariaDB: unicode text (names in DNs) needs utf8mb4, not the server's default.
_MYSQL: dict[str, Any] = {f"{dialect}_{option}": value
                          for dialect in ("mysql", "mariadb")
                          for option, value in (("charset", "utf8mb4"),
                                                ("collate", "utf8mb4_unicode_ci"),
                                                ("engine", "InnoDB"))}


def _key(length: int) -> sa.types.TypeEngine[str]:
    return sa.String(length).with_variant(mysql.VARCHAR(length, collation="utf8mb4_bin"),
                                          "mysql", "mariadb")


def upgrade() -> None:
    attributes = [sa.Column(f"attribute_{name}", sa.String(64), nullable=True)
                  for name in ("name", "login", "extension", "email", "mobile", "office_did",
                               "department", "language")]
    op.create_table(
        "directory_settings",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("enabled", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("security", sa.String(16), nullable=False),
        sa.Column("ca_file", sa.String(4096), nullable=True),
        sa.Column("bind_dn", sa.String(1024), nullable=True),
        sa.Column("base_dn", sa.String(1024), nullable=True),
        sa.Column("user_filter", sa.String(1024), nullable=True),
        sa.Column("group_filter", sa.String(1024), nullable=True),
        *attributes,
        sa.Column("acl_group", _key(40), nullable=False),
        sa.Column("extension_first", _key(8), nullable=False),
        sa.Column("extension_last", _key(8), nullable=False),
        sa.Column("page_size", sa.Integer, nullable=False),
        sa.Column("timeout", sa.Integer, nullable=False),
        sa.Column("digest", sa.String(32), nullable=True),
        sa.CheckConstraint("id = 1", name="ck_directory_settings_single_row"),
        **_MYSQL,
    )
    op.create_table(
        "directory_servers",
        sa.Column("position", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("server", sa.String(261), nullable=False),
        **_MYSQL,
    )
    op.create_table(
        "directory_users",
        sa.Column("extension", _key(8), primary_key=True),
        sa.Column("entry_uuid", _key(64), nullable=False),
        sa.Column("dn", sa.Text, nullable=False),
        sa.Column("change_mark", sa.String(128), nullable=True),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("entry_uuid", name="uq_directory_users_entry_uuid"),
        **_MYSQL,
    )
    op.create_table(
        "directory_state",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("server", sa.String(261), nullable=False),
        sa.Column("change_mark", sa.String(128), nullable=True),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("full", sa.Integer, nullable=False),
        sa.Column("users", sa.Integer, nullable=False),
        sa.Column("added", sa.Integer, nullable=False),
        sa.Column("changed", sa.Integer, nullable=False),
        sa.Column("removed", sa.Integer, nullable=False),
        sa.CheckConstraint("id = 1", name="ck_directory_state_single_row"),
        **_MYSQL,
    )
    op.create_table(
        "devices",
        sa.Column("mac", _key(12), primary_key=True),
        sa.Column("vendor", sa.String(16), nullable=False),
        sa.Column("model", sa.String(80), nullable=True),
        sa.Column("extension", _key(8), nullable=True),
        sa.Column("line", sa.Integer, nullable=False),
        sa.Column("ip", sa.String(45), nullable=True),
        sa.Column("firmware", sa.String(80), nullable=True),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=True),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        **_MYSQL,
    )
    # a stored site gets the default settings (directory off), as an import would write them
    op.execute("INSERT INTO directory_settings (id, enabled, kind, security, acl_group, "
               "extension_first, extension_last, page_size, timeout) SELECT 1, 0, 'openldap', "
               "'ldaps', 'default', '1000', '1999', 500, 10 FROM system_settings")


def downgrade() -> None:
    for table in ("devices", "directory_state", "directory_users", "directory_servers",
                  "directory_settings"):
        op.drop_table(table)
