"""The archive's tables, as SQLAlchemy Core metadata: what the archiver writes and `erpsync history` reads.

    erpsync_outcomes      one row per outcome change of a document (created with Key and number, duplicate,
                          changed, updated, failed with its errors, unknown), keyed by its outbox entry: a row
                          written twice (an archiver killed after its commit) is written once. On PostgreSQL the
                          table is partitioned by month on `recorded_at` (worker/archive/retention.py).
    erpsync_jobs          one row per job: its last summary (status, counts, times); a job that finishes again
                          (a late outcome) is overwritten by the newer summary only
    erpsync_index         the duplicate index as Redis holds it, per deployment (key prefix): what
                          `erpsync archive restore-index` writes back when Redis has lost it
    erpsync_dead_letters  one row per dead letter (without the document unless bodies are archived)
    erpsync_meta          name -> value: the deployments' index epochs

Text columns have no length limit: a row the database refused would stop the archive (the archiver retries a batch
until it is written), so nothing a producer sends may be too long for it. Times are Redis's clock at the moment
the outcome was recorded (the outbox entry's id), in UTC. The migrations
(worker/archive/migrations/) create exactly these; `check_schema` (worker/archive/database.py) compares the
database's revision with the code's.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

__all__ = ["dead_letters", "index", "jobs", "meta", "metadata", "outcomes"]

metadata = MetaData()

outcomes = Table(
    "erpsync_outcomes",
    metadata,
    Column("event_id", String(32), nullable=False),  # the outbox entry and the row's place in it:
    # "<ms, 13 digits>-<seq, 6 digits>.<n, 5 digits>"
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("job_id", Text, nullable=False),
    Column("position", Integer, nullable=False),
    Column("tenant", Text, nullable=False),
    Column("target", String(40), nullable=False),
    Column("kind", String(40), nullable=False),
    Column("external_id", Text, nullable=False),
    Column("status", String(20), nullable=False),
    Column("erp_key", Text),  # SoftOne's Key, Fortnox's DocumentNumber, the invoice service's id
    Column("number", Text),
    Column("error", Text),
    Column("errors", JSON),  # [{"path": ..., "reason": ...}]: field paths and reasons, never values
    Column("batch_id", Text),
    Column("body", Text),  # the document as sent, masked; only with ERPSYNC_ARCHIVE_BODIES
    # The partition key belongs to the primary key on PostgreSQL; an entry's time never changes, so the event id
    # alone still makes a row unique.
    PrimaryKeyConstraint("event_id", "recorded_at", name="erpsync_outcomes_pkey"),
)
Index("erpsync_outcomes_external_id", outcomes.c.tenant, outcomes.c.external_id)
Index("erpsync_outcomes_job", outcomes.c.job_id, outcomes.c.position)
Index("erpsync_outcomes_recorded_at", outcomes.c.recorded_at)
Index("erpsync_outcomes_erp_key", outcomes.c.erp_key)

jobs = Table(
    "erpsync_jobs",
    metadata,
    Column("job_id", Text, primary_key=True),
    Column("tenant", Text, nullable=False),
    Column("target", String(40), nullable=False),
    Column("kind", String(40), nullable=False),
    Column("lane", String(20)),
    Column("operation", String(20)),
    Column("status", String(20), nullable=False),
    Column("total", Integer, nullable=False, default=0),
    Column("counts", JSON, nullable=False),  # {"created": n, "duplicate": n, ...}
    Column("reason", Text),  # a rejected job's reason
    Column("submitted_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Column("event_id", String(32), nullable=False),  # the summary's outbox entry: a newer one wins
)
Index("erpsync_jobs_tenant_finished", jobs.c.tenant, jobs.c.finished_at)
Index("erpsync_jobs_finished_at", jobs.c.finished_at)

index = Table(
    "erpsync_index",
    metadata,
    Column("deployment", Text, nullable=False),  # ERPSYNC_KEY_PREFIX
    Column("tenant", Text, nullable=False),
    Column("kind", String(40), nullable=False),
    Column("external_id", Text, nullable=False),
    Column("value", Text, nullable=False),  # "created|owner|key|number|fingerprint", as in Redis
    Column("erp_key", BigInteger),  # SoftOne's integer Key (reconciliation's known Keys); None for text ids
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("event_id", String(32), nullable=False),
    PrimaryKeyConstraint("deployment", "tenant", "kind", "external_id", name="erpsync_index_pkey"),
)

dead_letters = Table(
    "erpsync_dead_letters",
    metadata,
    Column("dead_id", Text, primary_key=True),
    Column("tenant", Text, nullable=False),
    Column("kind", String(40), nullable=False),
    Column("external_id", Text),
    Column("job_id", Text),
    Column("reason", Text),
    Column("entry", JSON, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
)
Index("erpsync_dead_letters_recorded_at", dead_letters.c.recorded_at)

meta = Table(
    "erpsync_meta",
    metadata,
    Column("name", Text, primary_key=True),
    Column("value", Text, nullable=False),
)
