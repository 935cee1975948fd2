"""The store: tables derived from the models, alembic migrations, import/export, lookups."""

from wildix_ast.store.store import ImportReport, Store, default_location, open_store

__all__ = ["ImportReport", "Store", "default_location", "open_store"]
