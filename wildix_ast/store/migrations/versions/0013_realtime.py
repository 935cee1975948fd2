"""Realtime objects (issue 22): `system.realtime` (file or realtime mode, the engine, and
the account Asterisk reads the realtime tables with).

Revision ID: 0013
Revises: 0012
The digests kept stay valid: `System.realtime` is left out of serialisation while it is
the default (the file mode every earlier site had).

Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision: str | None = "0012"
branch_labels: str | None = None
depends_on: str | None = None

_COLUMNS = (
    ("realtime_mode", sa.String(16), "file"),
    ("realtime_engine", sa.String(16), "sqlite"),
    ("realtime_host", sa.String(15), "127.0.0.1"),
    ("realtime_port", sa.Integer(), "5432"),
    ("realtime_database", sa.String(40), "asterisk"),
    ("realtime_username", sa.String(40), "asterisk"),
)


def upgrade() -> None:
    with op.batch_alter_table("system_settings") as table:
        for name, kind, default in _COLUMNS:
            table.add_column(sa.Column(name, kind, nullable=False, server_default=default))


def downgrade() -> None:
    with op.batch_alter_table("system_settings") as table:
        for name, _kind, _default in reversed(_COLUMNS):
            table.drop_column(name)
