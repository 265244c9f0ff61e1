"""Keeping the archive as long as bookkeeping asks and no longer (ERPSYNC_ARCHIVE_RETENTION_DAYS).

On PostgreSQL the outcomes are partitioned by month: the archiver creates this month's and the next month's
partitions ahead of time, and expiry drops a whole month's partition once all of it is older than the retention:
no row-by-row DELETE over years of data. What fell into the default partition (a month with no partition yet), the
jobs, dead letters and index entries (kept as long as the duplicate index keeps them) are deleted by date. SQLite
deletes by date throughout.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Engine, delete, text
from sqlalchemy.exc import SQLAlchemyError

from worker.archive import schema
from worker.errors import ArchiveError
from worker.settings import Settings

__all__ = ["Pruned", "ensure_partitions", "prune"]

log = logging.getLogger(__name__)

Pruned = dict[str, int]


def _month(day: datetime) -> datetime:
    return datetime(day.year, day.month, 1, tzinfo=UTC)


def _next_month(month: datetime) -> datetime:
    return datetime(month.year + month.month // 12, month.month % 12 + 1, 1, tzinfo=UTC)


def _partition(month: datetime) -> str:
    return f"erpsync_outcomes_{month:%Y%m}"


def ensure_partitions(engine: Engine, now: datetime | None = None) -> list[str]:
    """PostgreSQL: this month's and next month's partitions exist (created if not); the names created."""
    if engine.dialect.name != "postgresql":
        return []
    month = _month(now or datetime.now(UTC))
    created: list[str] = []
    try:
        with engine.begin() as connection:
            existing = set(
                connection.execute(
                    text("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                         "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'erpsync_outcomes'")
                ).scalars()
            )  # fmt: skip
            for start in (month, _next_month(month)):
                name = _partition(start)
                if name not in existing:
                    connection.execute(
                        text(f"CREATE TABLE {name} PARTITION OF erpsync_outcomes "
                             f"FOR VALUES FROM ('{start.isoformat()}') TO ('{_next_month(start).isoformat()}')")
                    )  # fmt: skip
                    created.append(name)
    except SQLAlchemyError as exc:
        # A month whose rows already went to the default partition cannot get its own: they stay there.
        log.warning("archive partitions not created: %s", str(getattr(exc, "orig", exc)).splitlines()[0])
        return []
    return created


def prune(engine: Engine, settings: Settings, now: datetime | None = None) -> Pruned:
    """Delete what is older than the retention (nothing when it is 0); counts per table (partitions dropped)."""
    if settings.archive_retention_days <= 0:
        return {}
    now = now or datetime.now(UTC)
    cutoff = now - timedelta(days=settings.archive_retention_days)
    index_cutoff = now - timedelta(seconds=settings.dedup_ttl_seconds)
    pruned: Pruned = {}
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                pruned["partitions"] = _drop_partitions(connection, cutoff)
            o, j, d, i = schema.outcomes, schema.jobs, schema.dead_letters, schema.index
            pruned["outcomes"] = connection.execute(delete(o).where(o.c.recorded_at < cutoff)).rowcount
            pruned["jobs"] = connection.execute(delete(j).where(j.c.finished_at < cutoff)).rowcount
            pruned["dead_letters"] = connection.execute(delete(d).where(d.c.recorded_at < cutoff)).rowcount
            pruned["index"] = connection.execute(delete(i).where(i.c.recorded_at < index_cutoff)).rowcount
    except SQLAlchemyError as exc:
        raise ArchiveError(f"cannot prune the archive: {str(getattr(exc, 'orig', exc)).splitlines()[0]}") from None
    return pruned


def _drop_partitions(connection: Connection, cutoff: datetime) -> int:
    """Drop the monthly partitions that end at or before `cutoff`."""
    names = connection.execute(
        text("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
             "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'erpsync_outcomes' "
             "AND c.relname ~ '^erpsync_outcomes_[0-9]{6}$'")
    ).scalars()  # fmt: skip
    dropped = 0
    for name in names:
        start = datetime.strptime(name[-6:], "%Y%m").replace(tzinfo=UTC)
        if _next_month(start) <= cutoff:
            connection.execute(text(f"DROP TABLE {name}"))
            dropped += 1
    return dropped
