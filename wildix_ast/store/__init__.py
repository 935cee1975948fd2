"""The store: tables derived from the models, alembic migrations, import/export, lookups.

Layer 3: imports the model and the sounds.
"""

from wildix_ast.store.store import ImportReport, Store, default_location, open_store

__all__ = ["ImportReport", "Store", "default_location", "open_store"]
