"""A user's stored digest now also vouches for its preferences row (issue 22): an import
compares the preferences of the users whose digest changed only (`site_rows.FOLLOW_OWNER`),
and `users set` drops the user's digest with its change. A store changed by `users set`
before this version, and not imported since (its site digest is then NULL), has users
whose digest says preferences the store no longer holds: their digests are dropped here,
so the next import compares them all once.

Revision ID: 0030
Revises: 0023
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0030"
down_revision: str | None = "0023"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # one statement (also for the SQL a MariaDB/PostgreSQL administrator runs by hand)
    op.execute(sa.text("UPDATE users SET digest = NULL WHERE EXISTS "
                       "(SELECT 1 FROM site_state WHERE site_state.digest IS NULL)"))


def downgrade() -> None:
    pass  # a dropped digest only costs one comparison
