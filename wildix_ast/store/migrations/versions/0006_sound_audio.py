"""Sounds: converted audio kept by content (sound_audio) and which audio each sound file of
the site is (sound_files).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None

_MYSQL: dict[str, Any] = {f"{dialect}_{option}": value
                          for dialect in ("mysql", "mariadb")
                          for option, value in (("charset", "utf8mb4"),
                                                ("collate", "utf8mb4_unicode_ci"),
                                                ("engine", "InnoDB"))}


def _key(length: int) -> sa.types.TypeEngine[str]:
    return sa.String(length).with_variant(mysql.VARCHAR(length, collation="utf8mb4_bin"),
                                          "mysql", "mariadb")


def _blob() -> sa.types.TypeEngine[bytes]:
    # MariaDB's BLOB stops at 64 KiB: a minute of 16 kHz audio is 2 MB
    return sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "sound_audio",
        sa.Column("digest", _key(64), primary_key=True),
        sa.Column("wav", _blob(), nullable=False),
        sa.Column("wav16", _blob(), nullable=False),
        **_MYSQL,
    )
    op.create_table(
        "sound_files",
        sa.Column("sound", _key(64), primary_key=True),
        sa.Column("language", _key(16), primary_key=True),
        sa.Column("digest", _key(64), sa.ForeignKey("sound_audio.digest",
                                                    name="fk_sound_files_digest"),
                  nullable=False),
        **_MYSQL,
    )


def downgrade() -> None:
    op.drop_table("sound_files")
    op.drop_table("sound_audio")
