"""Alembic's environment for the archive: migrations run on the engine worker/archive/database.py hands over."""

from __future__ import annotations

from alembic import context

from worker.archive.schema import metadata

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    context.configure(connection=connection, target_metadata=metadata, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()
