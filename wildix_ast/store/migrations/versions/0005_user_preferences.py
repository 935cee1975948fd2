"""User preferences (WMS "Préférences utilisateur"): one row per user, the preferences as JSON;
where the FastAGI service that reads them listens (system.fastagi).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


# MariaDB: unicode text, extensions compared byte for byte (as in 0001).
_MYSQL: dict[str, Any] = {f"{dialect}_{option}": value
                          for dialect in ("mysql", "mariadb")
                          for option, value in (("charset", "utf8mb4"),
                                                ("collate", "utf8mb4_unicode_ci"),
                                                ("engine", "InnoDB"))}


def upgrade() -> None:
    op.create_table(
        "user_preferences",
        sa.Column("extension", sa.String(8).with_variant(
            mysql.VARCHAR(8, collation="utf8mb4_bin"), "mysql", "mariadb"), primary_key=True),
        sa.Column("body", sa.Text, nullable=False),
        sa.ForeignKeyConstraint(["extension"], ["users.extension"],
                                name="fk_user_preferences_extension"),
        **_MYSQL,
    )
    # Users already stored have the default preferences.
    op.execute("INSERT INTO user_preferences (extension, body) SELECT extension, '{}' FROM users")
    with op.batch_alter_table("system_settings") as table:
        table.add_column(sa.Column("fastagi_host", sa.String(15), nullable=False,
                                   server_default="127.0.0.1"))
        table.add_column(sa.Column("fastagi_port", sa.Integer, nullable=False,
                                   server_default="4573"))


def downgrade() -> None:
    with op.batch_alter_table("system_settings") as table:
        table.drop_column("fastagi_port")
        table.drop_column("fastagi_host")
    op.drop_table("user_preferences")
