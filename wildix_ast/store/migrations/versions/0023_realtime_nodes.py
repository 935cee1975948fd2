"""Several Asterisk nodes on one PostgreSQL store (issue 22): `system.realtime.nodes`, the
nodes reading the same realtime tables, kept as JSON in `realtime_nodes` (none: `[]`).

Revision ID: 0023
Revises: 0020
The digests kept stay valid: `System.realtime` is left out of serialisation while it is
the default, and no nodes is the default.

Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision: str | None = "0020"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("system_settings") as table:
        table.add_column(sa.Column("realtime_nodes", sa.Text(), nullable=True,
                                   server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("system_settings") as table:
        table.drop_column("realtime_nodes")
