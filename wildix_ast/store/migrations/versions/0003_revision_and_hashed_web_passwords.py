"""The store revision (grows only with imports that change something), a digest per stored
item (a re-import compares it instead of every column), and WEB passwords kept as argon2id
hashes only.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27

0001 kept WEB passwords as text: in `users.web_password` when the settings file gave one,
in `secrets` (`user:EXT:web`) when it was generated. Both become the hash in
`users.web_password` (the same password still logs in), and the generated texts are deleted.
A downgrade keeps the hashes: the texts are gone for good.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import sqlalchemy as sa
from alembic import op

from wildix_ast.model.passwords import hash_password, is_password_hash

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

_users = sa.table("users", sa.column("id", sa.Integer), sa.column("extension", sa.String),
                  sa.column("web_password", sa.Text))
_secrets = sa.table("secrets", sa.column("key", sa.String), sa.column("value", sa.Text))
_GENERATED_WEB = "user:%:web"
# The tables that get a digest: the whole site's, and each model item's (see
# wildix_ast.store.tables.Section.columns). Rows from 0001 have none yet: the next import
# compares them as changed and fills them.
_ITEMS = ("site_state", "system_settings", "dialplan_settings", "dialplan_procedures",
          "acl_groups", "users")


def upgrade() -> None:
    op.execute("ALTER TABLE site_state RENAME COLUMN generation TO revision")
    op.add_column("imports", sa.Column("revision", sa.Integer, nullable=True))
    for table in _ITEMS:
        op.add_column(table, sa.Column("digest", sa.String(32), nullable=True))
    if op.get_context().as_sql:
        return  # `--sql` prints the schema change; hashing the passwords needs this code
    bind = op.get_bind()
    generated = {str(key): str(value) for key, value in bind.execute(
        sa.select(_secrets.c.key, _secrets.c.value).where(
            _secrets.c.key.like(_GENERATED_WEB)))}
    texts: dict[int, str] = {}
    for row_id, extension, password in bind.execute(
            sa.select(_users.c.id, _users.c.extension, _users.c.web_password)):
        text = password if password is not None else generated.get(f"user:{extension}:web")
        if text is not None and not is_password_hash(text):
            texts[row_id] = text
    # argon2 releases the GIL: hash on every core (about 40 ms a password on one).
    with ThreadPoolExecutor() as pool:
        hashes = dict(zip(texts, pool.map(hash_password, texts.values()), strict=True))
    if hashes:
        bind.execute(sa.update(_users).where(_users.c.id == sa.bindparam("row_id"))
                     .values(web_password=sa.bindparam("hashed")),
                     [{"row_id": row_id, "hashed": hashed} for row_id, hashed in hashes.items()])
    bind.execute(sa.delete(_secrets).where(_secrets.c.key.like(_GENERATED_WEB)))


def downgrade() -> None:
    for table in _ITEMS:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("digest")
    op.drop_column("imports", "revision")
    op.execute("ALTER TABLE site_state RENAME COLUMN revision TO generation")
