"""SIP-RTP settings for real phones (issue 6): media address, concurrent calls, RTP and
session timeouts, qualify frequency, TLS transport. G.729 and iLBC leave the stored codec
lists: Asterisk cannot carry them, and a site naming them no longer validates.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

# (column, type, default for the rows already stored); None: nullable, no default
_COLUMNS: tuple[tuple[str, sa.types.TypeEngine[Any], str | None], ...] = (
    ("media_address", sa.String(15), None),
    ("concurrent_calls", sa.Integer(), None),
    ("rtp_timeout", sa.Integer(), "60"),
    ("rtp_hold_timeout", sa.Integer(), "600"),
    ("session_expires", sa.Integer(), "1800"),
    ("qualify_frequency", sa.Integer(), "60"),
    ("tls_port", sa.Integer(), "5061"),
    ("tls_certificate", sa.String(255), None),
    ("tls_private_key", sa.String(255), None),
)


def upgrade() -> None:
    with op.batch_alter_table("system_settings") as table:
        for name, kind, default in _COLUMNS:
            table.add_column(sa.Column(name, kind, nullable=default is None,
                                       server_default=default))
    codecs = sa.table("sip_codecs", sa.column("scope", sa.String), sa.column("position",
                      sa.Integer), sa.column("codec", sa.String))
    op.execute(codecs.delete().where(codecs.c.codec.in_(("g729", "ilbc"))))
    for scope in ("lan", "remote"):  # a list left empty gets G.711 A-law
        op.execute(sa.text(
            "INSERT INTO sip_codecs (scope, position, codec) SELECT :scope, 0, 'alaw' "
            "FROM system_settings WHERE NOT EXISTS "
            "(SELECT 1 FROM sip_codecs WHERE scope = :scope)").bindparams(scope=scope))


def downgrade() -> None:
    with op.batch_alter_table("system_settings") as table:
        for name, _, _ in reversed(_COLUMNS):
            table.drop_column(name)
