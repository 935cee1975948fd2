"""The history of imports: what each import changed, when, the SHA-256 of its text (never
the text) and the store revision it left."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, insert, select

from wildix_ast.store.tables import imports


@dataclass(frozen=True)
class ImportReport:
    """What an import changed. Users are matched by extension; a user that only moved in
    the list is not counted as changed (the new order is stored all the same)."""

    users: int
    groups: int
    procedures: int
    added: int
    changed: int
    removed: int
    imported_at: datetime
    source_sha256: str | None = None
    """The SHA-256 of the settings text: the history keeps this digest, never the text."""
    revision: int = 0
    """The store revision after this import (see `Store.revision`)."""

    @property
    def unchanged(self) -> int:
        return self.users - self.added - self.changed

    def __str__(self) -> str:
        return (f"{self.users} users ({self.added} added, {self.changed} changed, "
                f"{self.removed} removed), {self.groups} groups, "
                f"{self.procedures} dialplan procedures")


def _aware(moment: datetime) -> datetime:
    """SQLite and MariaDB give back the UTC time without its zone."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def record(connection: Connection, report: ImportReport) -> None:
    """Add `report` to the history (in the import's own transaction)."""
    connection.execute(insert(imports).values(
        imported_at=report.imported_at, source_sha256=report.source_sha256,
        users=report.users, groups=report.groups, procedures=report.procedures,
        added=report.added, changed=report.changed, removed=report.removed,
        revision=report.revision))


def import_history(connection: Connection) -> list[ImportReport]:
    """Every import, oldest first."""
    return [ImportReport(users=r.users, groups=r.groups, procedures=r.procedures,
                         added=r.added, changed=r.changed, removed=r.removed,
                         imported_at=_aware(r.imported_at),
                         source_sha256=r.source_sha256, revision=r.revision or 0)
            for r in connection.execute(select(imports).order_by(imports.c.id))]
