"""SIP-RTP: the `User-Agent`/`Server` header the PBX sends (issue 16), neutral by default.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("system_settings") as table:
        table.add_column(sa.Column("user_agent", sa.String(64), nullable=False,
                                   server_default="PBX"))


def downgrade() -> None:
    with op.batch_alter_table("system_settings") as table:
        table.drop_column("user_agent")
