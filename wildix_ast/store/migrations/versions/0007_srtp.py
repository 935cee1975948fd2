"""SRTP per site (system.sip_rtp.srtp) and per ACL group (groups[].srtp, empty: the site's).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # not what a stored site with TLS had (SDES offered to every phone, over UDP too: its
    # keys went in clear) but off, the fail-closed default: TLS phones need a group with SRTP
    with op.batch_alter_table("system_settings") as table:
        table.add_column(sa.Column("srtp", sa.String(16), nullable=False,
                                   server_default="off"))
    with op.batch_alter_table("acl_groups") as table:
        table.add_column(sa.Column("srtp", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("acl_groups") as table:
        table.drop_column("srtp")
    with op.batch_alter_table("system_settings") as table:
        table.drop_column("srtp")
