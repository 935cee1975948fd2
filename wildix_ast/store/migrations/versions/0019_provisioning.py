"""Provisioning (issue 21): the provisioning settings row, the enrolment window, and the
devices' provisioning credentials kept hashed instead of as text.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import sqlalchemy as sa
from alembic import context, op

revision = "0019"
down_revision: str | None = "0018"
branch_labels: str | None = None
depends_on: str | None = None

# MariaDB: unicode text (as in 0001).
_MYSQL: dict[str, Any] = {f"{dialect}_{option}": value
                          for dialect in ("mysql", "mariadb")
                          for option, value in (("charset", "utf8mb4"),
                                                ("collate", "utf8mb4_unicode_ci"),
                                                ("engine", "InnoDB"))}

# Frozen copy of store.devices.credential_hash as of this revision (a migration must not
# change meaning when the code does).
_LABEL = b"wildix-ast provisioning credential v1"
_PREFIX = "h1:"


def _hashed(mac: str, credential: str) -> str:
    message = f"{mac}\0{credential}".encode()
    return _PREFIX + hmac.new(_LABEL, message, hashlib.sha256).hexdigest()


def upgrade() -> None:
    op.create_table(
        "provisioning_settings",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("address", sa.Text, nullable=True),
        sa.Column("port", sa.Integer, nullable=False),
        sa.Column("allow_http", sa.Integer, nullable=False),
        sa.Column("sip_server", sa.Text, nullable=True),
        sa.Column("sip_transport", sa.String(16), nullable=False),
        sa.Column("voice_vlan", sa.Integer, nullable=True),
        sa.Column("voice_cos", sa.Integer, nullable=False),
        sa.Column("data_vlan", sa.Integer, nullable=True),
        sa.Column("data_cos", sa.Integer, nullable=False),
        sa.Column("ntp_server", sa.Text, nullable=True),
        sa.Column("dns_primary", sa.String(15), nullable=True),
        sa.Column("dns_secondary", sa.String(15), nullable=True),
        sa.Column("enrol_minutes", sa.Integer, nullable=False),
        sa.Column("ban_after", sa.Integer, nullable=False),
        sa.Column("digest", sa.String(32), nullable=True),
        sa.CheckConstraint("id = 1", name="ck_provisioning_settings_single_row"),
        **_MYSQL,
    )
    op.create_table(
        "provisioning_state",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("enrol_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("enrol_vendors", sa.String(80), nullable=False),
        sa.CheckConstraint("id = 1", name="ck_provisioning_state_single_row"),
        **_MYSQL,
    )
    # credentials made before this revision were kept as text: keep only their hash (a
    # computed value: nothing to write in offline SQL mode, where no row can be read)
    if context.is_offline_mode():
        return
    secrets = sa.table("secrets", sa.column("key", sa.String), sa.column("value", sa.Text))
    connection = op.get_bind()
    rows = connection.execute(sa.select(secrets.c.key, secrets.c.value).where(
        secrets.c.key.like("device:%:provisioning"))).all()
    for key, value in rows:
        if not value.startswith(_PREFIX):
            mac = key.split(":")[1]
            connection.execute(secrets.update().where(secrets.c.key == key).values(
                value=_hashed(mac, value)))


def downgrade() -> None:
    op.drop_table("provisioning_state")
    op.drop_table("provisioning_settings")
