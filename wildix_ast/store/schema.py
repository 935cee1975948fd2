"""The schema revision of a current store, apart so that both the SQLite fast path (`store`)
and the engines and migrations (`database`) can read it without importing each other."""

SCHEMA_HEAD = "0030"
"""The newest migration (a test checks it is alembic's head): a store at this revision opens
without loading alembic (nor SQLAlchemy, for a SQLite file)."""
