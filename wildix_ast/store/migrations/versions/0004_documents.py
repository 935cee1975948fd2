"""Sections kept as JSON documents (trunks, trunk groups, group ACLs, dialplan general
settings) until they get tables of their own.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


# MariaDB: unicode text, names compared byte for byte (as in 0001).
_MYSQL: dict[str, Any] = {f"{dialect}_{option}": value
                          for dialect in ("mysql", "mariadb")
                          for option, value in (("charset", "utf8mb4"),
                                                ("collate", "utf8mb4_unicode_ci"),
                                                ("engine", "InnoDB"))}


def upgrade() -> None:
    op.create_table(
        "documents",
        sa.Column("name", sa.String(64).with_variant(
            mysql.VARCHAR(64, collation="utf8mb4_bin"), "mysql", "mariadb"), primary_key=True),
        sa.Column("body", sa.Text, nullable=False),
        **_MYSQL,
    )


def downgrade() -> None:
    op.drop_table("documents")
