"""The store: sqlmodel tables, alembic migrations, import/export of the site."""

from wildix_ast.store.store import ImportReport, Store, default_location, open_store

__all__ = ["ImportReport", "Store", "default_location", "open_store"]
