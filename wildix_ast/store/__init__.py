"""The store: tables derived from the models, alembic migrations, import/export, lookups.

Layer 3: imports the model and the sounds. `Store` (store.py) is the front door; each room
behind it is a module of its own (see docs/architecture.md)."""

from wildix_ast.store.store import Store, default_location, open_store, open_store_for_plan

__all__ = ["Store", "default_location", "open_store", "open_store_for_plan"]
