"""Call history (WMS "Historique des appels"): its settings, backends and toll limits (issue 19).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0011"
down_revision: str | None = "0010"
branch_labels: str | None = None
depends_on: str | None = None

# MariaDB: unicode text, names compared byte for byte (as in 0001).
_MYSQL: dict[str, Any] = {f"{dialect}_{option}": value
                          for dialect in ("mysql", "mariadb")
                          for option, value in (("charset", "utf8mb4"),
                                                ("collate", "utf8mb4_unicode_ci"),
                                                ("engine", "InnoDB"))}


def _exact(length: int) -> sa.types.TypeEngine[str]:
    return sa.String(length).with_variant(mysql.VARCHAR(length, collation="utf8mb4_bin"),
                                          "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "call_history_settings",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("enabled", sa.Integer, nullable=False),
        sa.Column("statistics", _exact(40), nullable=False),
        sa.Column("digest", sa.String(32), nullable=True),
        sa.CheckConstraint("id = 1", name="ck_call_history_settings_single_row"),
        **_MYSQL,
    )
    op.create_table(
        "call_history_backends",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("name", _exact(40), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("enabled", sa.Integer, nullable=False),
        sa.Column("host", sa.String(253), nullable=True),
        sa.Column("port", sa.Integer, nullable=True),
        sa.Column("database", sa.String(64), nullable=True),
        sa.Column("table_name", sa.String(64), nullable=False),
        sa.Column("user_name", sa.String(64), nullable=True),
        sa.Column("password", sa.Text, nullable=True),
        sa.Column("path", sa.String(255), nullable=True),
        sa.Column("folder", sa.String(255), nullable=True),
        sa.Column("rotation", sa.String(16), nullable=False),
        sa.Column("digest", sa.String(32), nullable=True),
        sa.UniqueConstraint("position", name="uq_call_history_backends_position"),
        sa.UniqueConstraint("name", name="uq_call_history_backends_name"),
        **_MYSQL,
    )
    op.create_table(
        "call_history_limits",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("call_class", sa.String(16), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("name", _exact(40), nullable=False),
        sa.Column("minutes", sa.Integer, nullable=True),
        sa.Column("calls", sa.Integer, nullable=True),
        sa.Column("window_minutes", sa.Integer, nullable=False),
        sa.Column("digest", sa.String(32), nullable=True),
        sa.UniqueConstraint("position", name="uq_call_history_limits_position"),
        **_MYSQL,
    )


def downgrade() -> None:
    op.drop_table("call_history_limits")
    op.drop_table("call_history_backends")
    op.drop_table("call_history_settings")
