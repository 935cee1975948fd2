"""The initial store: system and dialplan settings, groups, procedures, users, secrets,
import history.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


# MariaDB: unicode text (names, departments) needs utf8mb4, not the server's default.
_MYSQL: dict[str, Any] = {f"{dialect}_{option}": value
                          for dialect in ("mysql", "mariadb")
                          for option, value in (("charset", "utf8mb4"),
                                                ("collate", "utf8mb4_unicode_ci"),
                                                ("engine", "InnoDB"))}


def _key(length: int) -> sa.types.TypeEngine[str]:
    """Compared byte for byte on MariaDB too (its default collation ignores case)."""
    return sa.String(length).with_variant(mysql.VARCHAR(length, collation="utf8mb4_bin"),
                                          "mysql", "mariadb")


def upgrade() -> None:
    site_state = op.create_table(
        "site_state",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.CheckConstraint("id = 1", name="ck_site_state_single_row"),
        **_MYSQL,
    )
    op.bulk_insert(site_state, [{"id": 1, "generation": 0}])
    op.create_table(
        "system_settings",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("pbx_name", sa.String(40), nullable=False),
        sa.Column("language", sa.String(5), nullable=False),
        sa.Column("tone_zone", sa.String(2), nullable=False),
        sa.Column("country_code", sa.String(4), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("bind_address", sa.String(15), nullable=False),
        sa.Column("sip_port", sa.Integer, nullable=False),
        sa.Column("rtp_start", sa.Integer, nullable=False),
        sa.Column("rtp_end", sa.Integer, nullable=False),
        sa.Column("external_address", sa.String(15), nullable=True),
        sa.Column("manager_port", sa.Integer, nullable=False),
        sa.Column("manager_username", sa.String(40), nullable=False),
        sa.CheckConstraint("id = 1", name="ck_system_settings_single_row"),
        **_MYSQL,
    )
    op.create_table(
        "lan_networks",
        sa.Column("position", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("network", sa.String(18), nullable=False),
        **_MYSQL,
    )
    op.create_table(
        "sip_codecs",
        sa.Column("scope", sa.String(6), primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("codec", sa.String(16), nullable=False),
        sa.CheckConstraint("scope IN ('lan', 'remote')", name="ck_sip_codecs_scope"),
        **_MYSQL,
    )
    op.create_table(
        "dialplan_settings",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("echo_test", sa.String(8), nullable=False),
        sa.Column("voicemail", sa.String(8), nullable=False),
        sa.Column("ring_timeout", sa.Integer, nullable=False),
        sa.CheckConstraint("id = 1", name="ck_dialplan_settings_single_row"),
        **_MYSQL,
    )
    op.create_table(
        "dialplan_procedures",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("name", _key(40), nullable=False),
        sa.Column("description", sa.String(80), nullable=True),
        sa.UniqueConstraint("name", name="uq_dialplan_procedures_name"),
        sa.UniqueConstraint("position", name="uq_dialplan_procedures_position"),
        **_MYSQL,
    )
    op.create_table(
        "acl_groups",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("name", _key(40), nullable=False),
        sa.Column("description", sa.String(80), nullable=True),
        sa.UniqueConstraint("name", name="uq_acl_groups_name"),
        sa.UniqueConstraint("position", name="uq_acl_groups_position"),
        **_MYSQL,
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("name", sa.String(80), nullable=False),
        sa.Column("login", sa.String(64), nullable=True),
        sa.Column("login_key", _key(64), nullable=True),
        sa.Column("extension", _key(8), nullable=False),
        sa.Column("office_did", _key(21), nullable=True),
        sa.Column("fax_did", _key(21), nullable=True),
        sa.Column("email", sa.String(255), nullable=True),
        sa.Column("email_key", _key(255), nullable=True),
        sa.Column("mobile", sa.String(21), nullable=True),
        sa.Column("language", sa.String(5), nullable=True),
        sa.Column("group_name", _key(40),
                  sa.ForeignKey("acl_groups.name", name="fk_users_group_name"),
                  nullable=False),
        sa.Column("department", sa.String(80), nullable=True),
        sa.Column("dialplan", sa.String(40), nullable=False),
        sa.Column("fax_dialplan", sa.String(40), nullable=False),
        sa.Column("web_password", sa.Text, nullable=True),
        sa.Column("sip_password", sa.Text, nullable=True),
        sa.UniqueConstraint("position", name="uq_users_position"),
        sa.UniqueConstraint("extension", name="uq_users_extension"),
        sa.UniqueConstraint("email_key", name="uq_users_email"),
        sa.UniqueConstraint("login_key", name="uq_users_login"),
        sa.UniqueConstraint("office_did", name="uq_users_office_did"),
        sa.UniqueConstraint("fax_did", name="uq_users_fax_did"),
        **_MYSQL,
    )
    op.create_table(
        "secrets",
        sa.Column("key", _key(191), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        **_MYSQL,
    )
    op.create_table(
        "imports",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source_sha256", sa.String(64), nullable=True),
        sa.Column("users", sa.Integer, nullable=False),
        sa.Column("groups", sa.Integer, nullable=False),
        sa.Column("procedures", sa.Integer, nullable=False),
        sa.Column("added", sa.Integer, nullable=False),
        sa.Column("changed", sa.Integer, nullable=False),
        sa.Column("removed", sa.Integer, nullable=False),
        **_MYSQL,
    )


def downgrade() -> None:
    for name in ("imports", "secrets", "users", "acl_groups", "dialplan_procedures",
                 "dialplan_settings", "sip_codecs", "lan_networks", "system_settings",
                 "site_state"):
        op.drop_table(name)
