"""WMS Client SMTP: the SMTP profiles the mail queue's sender uses (issue 20); their
passwords live in the vault (`secrets`), not here. Users: what a voicemail does to the
owner's email (attach, notify, attach_and_delete).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0012"
down_revision: str | None = "0011"
branch_labels: str | None = None
depends_on: str | None = None

# MariaDB: unicode text needs utf8mb4, not the server's default.
_MYSQL: dict[str, Any] = {f"{dialect}_{option}": value
                          for dialect in ("mysql", "mariadb")
                          for option, value in (("charset", "utf8mb4"),
                                                ("collate", "utf8mb4_unicode_ci"),
                                                ("engine", "InnoDB"))}


def upgrade() -> None:
    op.create_table(
        "smtp_profiles",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("name", sa.String(40).with_variant(
            mysql.VARCHAR(40, collation="utf8mb4_bin"), "mysql", "mariadb"),
            nullable=False),
        sa.Column("sender", sa.String(255), nullable=False),
        sa.Column("server", sa.Text, nullable=False),
        sa.Column("port", sa.Integer, nullable=False),
        sa.Column("user_name", sa.String(128), nullable=True),
        sa.Column("helo_domain", sa.Text, nullable=False),
        sa.Column("tls", sa.Integer, nullable=False),
        sa.Column("starttls", sa.Integer, nullable=False),
        sa.Column("verify_certificate", sa.Integer, nullable=False),
        sa.Column("ca_file", sa.String(255), nullable=True),
        sa.Column("digest", sa.String(32), nullable=True),
        sa.UniqueConstraint("position", name="uq_smtp_profiles_position"),
        sa.UniqueConstraint("name", name="uq_smtp_profiles_name"),
        **_MYSQL,
    )
    with op.batch_alter_table("users") as table:
        table.add_column(sa.Column("voicemail_email", sa.String(16), nullable=False,
                                   server_default="attach"))


def downgrade() -> None:
    with op.batch_alter_table("users") as table:
        table.drop_column("voicemail_email")
    op.drop_table("smtp_profiles")
