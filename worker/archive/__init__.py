"""The archive: every outcome, job summary, dead letter and duplicate-index entry, kept in a relational database
beyond Redis's retention (PostgreSQL in production, an SQLite file by default; ERPSYNC_ARCHIVE_URL).

    worker/store/outbox.py   the Redis side: the stream the store's scripts append to, the index's epoch
    schema.py                the tables;  migrations/  their Alembic revisions;  database.py  engine, migrate, check
    events.py                stream entries → rows;  writer.py  one idempotent transaction per batch
    archiver.py              the loop (`erpsync archive run`, a Procfile process)
    guard.py                 has Redis lost the duplicate index?  restore.py  rebuild it from the archive
    history.py               what `erpsync history` and `erpsync results` (after Redis's retention) read
    retention.py             monthly partitions ahead, and expiry

No Redis client here: Redis state is worker/store's. Nothing of the pipeline waits for the database.
"""

from worker.archive.archiver import Archiver
from worker.archive.database import check_schema, engine_for, migrate, ready_engine
from worker.archive.guard import IndexState, check_index
from worker.archive.restore import restore_index

__all__ = [
    "Archiver",
    "IndexState",
    "check_index",
    "check_schema",
    "engine_for",
    "migrate",
    "ready_engine",
    "restore_index",
]
