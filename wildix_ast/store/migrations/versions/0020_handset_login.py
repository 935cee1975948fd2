"""Handset login: the WMS "Login" feature code (99 by default) in the dialplan settings
(issue 21).

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision: str | None = "0019"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("dialplan_settings") as table:
        table.add_column(sa.Column("feature_code_login", sa.String(8), nullable=False,
                                   server_default="99"))


def downgrade() -> None:
    with op.batch_alter_table("dialplan_settings") as table:
        table.drop_column("feature_code_login")
