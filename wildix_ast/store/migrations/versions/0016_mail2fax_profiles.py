"""WMS Serveur FAX/SMS, Mail2Fax: the mailboxes faxes to send are read from (issue 20);
their password and protection password live in the vault (`secrets`), not here.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0016"
down_revision: str | None = "0015"
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
        "mail2fax_profiles",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("name", sa.String(40).with_variant(
            mysql.VARCHAR(40, collation="utf8mb4_bin"), "mysql", "mariadb"),
            nullable=False),
        sa.Column("protocol", sa.String(16), nullable=False),
        sa.Column("server", sa.Text, nullable=False),
        sa.Column("port", sa.Integer, nullable=True),
        sa.Column("security", sa.String(16), nullable=False),
        sa.Column("verify_certificate", sa.Integer, nullable=False),
        sa.Column("ca_file", sa.String(255), nullable=True),
        sa.Column("user_name", sa.String(128), nullable=False),
        sa.Column("keep_on_server", sa.Integer, nullable=False),
        sa.Column("procedure", sa.String(40), nullable=False),
        sa.Column("allowed_senders", sa.Text, nullable=True),
        sa.Column("send_as", sa.String(8), nullable=True),
        sa.Column("digest", sa.String(32), nullable=True),
        sa.UniqueConstraint("position", name="uq_mail2fax_profiles_position"),
        sa.UniqueConstraint("name", name="uq_mail2fax_profiles_name"),
        **_MYSQL,
    )


def downgrade() -> None:
    op.drop_table("mail2fax_profiles")
