"""The archive's first schema: outcomes (partitioned by month on PostgreSQL), jobs, the index copy, dead letters.

Revision ID: 0001
Revises:
Create Date: 2026-12-07

This first revision creates the tables as worker/archive/schema.py defines them today; a later revision spells
out its own changes (op.add_column, ...) rather than reading the schema module, which will have moved on.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.schema import CreateIndex, CreateTable

from worker.archive import schema

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        # Monthly partitions (worker/archive/retention.py adds them ahead and drops expired ones); the default
        # partition takes a row no monthly one covers, so an insert never fails for want of a partition.
        ddl = str(CreateTable(schema.outcomes).compile(dialect=bind.dialect)).rstrip().rstrip(";")
        op.execute(sa.text(ddl + " PARTITION BY RANGE (recorded_at)"))
        op.execute(sa.text("CREATE TABLE erpsync_outcomes_default PARTITION OF erpsync_outcomes DEFAULT"))
        for index in schema.outcomes.indexes:
            op.execute(sa.text(str(CreateIndex(index).compile(dialect=bind.dialect))))
        tables = [t for t in schema.metadata.sorted_tables if t is not schema.outcomes]
    else:
        tables = list(schema.metadata.sorted_tables)
    schema.metadata.create_all(bind, tables=tables)


def downgrade() -> None:
    for table in reversed(schema.metadata.sorted_tables):
        op.drop_table(table.name)
