"""Retention (issue 20): how long finished fax jobs, fax documents and finished mails are
kept: `fax_server_settings.keep_days`, `call_history_settings.retention_days` and the mail
queue's own settings row `mail_queue_settings`; the SMTP profiles' bounce mailbox
(`bounce_imap`, `bounce_imap_port`); the call history backends' passwords move into the
vault (the `secrets` table, key `cdr:<backend>:password`) and their column goes.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision: str | None = "0017"
branch_labels: str | None = None
depends_on: str | None = None

# MariaDB: unicode text (as in 0001).
_MYSQL: dict[str, Any] = {f"{dialect}_{option}": value
                          for dialect in ("mysql", "mariadb")
                          for option, value in (("charset", "utf8mb4"),
                                                ("collate", "utf8mb4_unicode_ci"),
                                                ("engine", "InnoDB"))}


_SECRETS = sa.table("secrets", sa.column("key", sa.String), sa.column("value", sa.Text))
_BACKENDS = sa.table("call_history_backends", sa.column("name", sa.String),
                     sa.column("password", sa.Text))


def _key(name: str) -> str:
    return f"cdr:{name}:password"  # store.vault.cdr_password_key


def upgrade() -> None:
    # the call history backends' passwords move from their rows into the vault (not in
    # offline SQL, which makes new, empty databases: there is nothing to move)
    bind = op.get_bind()
    offline = op.get_context().as_sql
    given = sa.select(_BACKENDS.c.name, _BACKENDS.c.password) \
        .where(_BACKENDS.c.password.is_not(None))
    for name, password in [] if offline else bind.execute(given).all():
        bind.execute(_SECRETS.delete().where(_SECRETS.c.key == _key(name)))
        bind.execute(_SECRETS.insert().values(key=_key(name), value=password))
    with op.batch_alter_table("call_history_backends") as table:
        table.drop_column("password")
    with op.batch_alter_table("fax_server_settings") as table:
        table.add_column(sa.Column("keep_days", sa.Integer, nullable=False,
                                   server_default="30"))
    with op.batch_alter_table("call_history_settings") as table:
        table.add_column(sa.Column("retention_days", sa.Integer, nullable=False,
                                   server_default="365"))
    with op.batch_alter_table("smtp_profiles") as table:
        table.add_column(sa.Column("bounce_imap", sa.Text, nullable=True))
        table.add_column(sa.Column("bounce_imap_port", sa.Integer, nullable=False,
                                   server_default="993"))
    op.create_table(
        "mail_queue_settings",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("keep_days", sa.Integer, nullable=False),
        sa.Column("digest", sa.String(32), nullable=True),
        sa.CheckConstraint("id = 1", name="ck_mail_queue_settings_single_row"),
        **_MYSQL,
    )


def downgrade() -> None:
    with op.batch_alter_table("call_history_backends") as table:
        table.add_column(sa.Column("password", sa.Text, nullable=True))
    bind = op.get_bind()
    offline = op.get_context().as_sql
    for (name,) in [] if offline else bind.execute(sa.select(_BACKENDS.c.name)).all():
        kept = bind.execute(sa.select(_SECRETS.c.value)
                            .where(_SECRETS.c.key == _key(name))).scalar()
        if kept is not None:
            bind.execute(_BACKENDS.update().where(_BACKENDS.c.name == name)
                         .values(password=kept))
            bind.execute(_SECRETS.delete().where(_SECRETS.c.key == _key(name)))
    op.drop_table("mail_queue_settings")
    with op.batch_alter_table("smtp_profiles") as table:
        table.drop_column("bounce_imap_port")
        table.drop_column("bounce_imap")
    with op.batch_alter_table("call_history_settings") as table:
        table.drop_column("retention_days")
    with op.batch_alter_table("fax_server_settings") as table:
        table.drop_column("keep_days")
