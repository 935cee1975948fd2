"""Call history: the address the toll-fraud brake mails its alert to (issue 19).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision: str | None = "0014"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("call_history_settings") as table:
        table.add_column(sa.Column("alert_email", sa.String(255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("call_history_settings") as table:
        table.drop_column("alert_email")
