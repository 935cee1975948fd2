"""Alembic environment of the store.

wildix-ast runs the migrations itself (wildix_ast.store.store.migrate) and hands over its
open connection in `config.attributes["connection"]`. Developers can also run the alembic
command with `-c wildix_ast/store/alembic.ini -x url=...` to write a new revision."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine, pool

from wildix_ast.store.columns import metadata
from wildix_ast.store.tables import STORE_TABLES

config = context.config
_OURS = {t.name for t in STORE_TABLES}


def _include_object(obj: object, name: str | None, type_: str, reflected: bool,
                    compare_to: object) -> bool:
    # Only the store's tables are migrated here, whatever else a database holds.
    return type_ != "table" or name in _OURS


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        include_object=_include_object,
        render_as_batch=True,  # SQLite alters tables by copying them
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
elif context.is_offline_mode():  # `alembic ... upgrade head --sql`: print the SQL
    context.configure(url=context.get_x_argument(as_dictionary=True).get("url")
                      or config.get_main_option("sqlalchemy.url"),
                      target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    url = context.get_x_argument(as_dictionary=True).get("url") \
        or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("give the database: alembic -x url=sqlite:///path ...")
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()
