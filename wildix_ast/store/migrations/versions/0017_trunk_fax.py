"""Trunks: how faxes cross them (issue 20: fax over SIP, G.711 or T.38).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision: str | None = "0016"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("trunks") as table:
        table.add_column(sa.Column("fax", sa.String(16), nullable=False,
                                   server_default="none"))
        table.add_column(sa.Column("t38_error_correction", sa.String(16), nullable=False,
                                   server_default="redundancy"))
        table.add_column(sa.Column("t38_max_datagram", sa.Integer, nullable=False,
                                   server_default="400"))


def downgrade() -> None:
    with op.batch_alter_table("trunks") as table:
        table.drop_column("t38_max_datagram")
        table.drop_column("t38_error_correction")
        table.drop_column("fax")
