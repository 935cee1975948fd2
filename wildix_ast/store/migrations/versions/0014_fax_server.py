"""Fax server (WMS "Serveur FAX/SMS"): its settings row, Fax2Mail's copy address (issue 20).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision: str | None = "0013"
branch_labels: str | None = None
depends_on: str | None = None

# MariaDB: unicode text (as in 0001).
_MYSQL: dict[str, Any] = {f"{dialect}_{option}": value
                          for dialect in ("mysql", "mariadb")
                          for option, value in (("charset", "utf8mb4"),
                                                ("collate", "utf8mb4_unicode_ci"),
                                                ("engine", "InnoDB"))}


def upgrade() -> None:
    op.create_table(
        "fax_server_settings",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("copy_address", sa.String(255), nullable=True),
        sa.Column("digest", sa.String(32), nullable=True),
        sa.CheckConstraint("id = 1", name="ck_fax_server_settings_single_row"),
        **_MYSQL,
    )


def downgrade() -> None:
    op.drop_table("fax_server_settings")
