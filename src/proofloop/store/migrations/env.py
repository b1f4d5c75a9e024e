"""Alembic's environment for the run store's schema (see store/migrate.py).

The store runs it with its own connection, inside the transaction that opens the store
(config.attributes["connection"]). From the command line, to write a new revision:

    alembic -c src/proofloop/store/migrations/alembic.ini -x url=sqlite:///scratch.db revision \\
        --autogenerate -m "what changes"
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from proofloop.store.schema import Base


def run(connection) -> None:
    # Batch mode: SQLite alters a table by copying it (its ALTER TABLE only adds columns).
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():  # a no-op inside the store's own transaction
        context.run_migrations()


def main(config) -> None:
    given = config.attributes.get("connection")
    if given is not None:
        run(given)
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    with create_engine(url).begin() as connection:
        run(connection)


config = getattr(context, "config", None)  # None when imported outside an Alembic run (say, by doctests)
if config is not None:
    main(config)
