"""Read-only queries over the archive: what `erpsync history` lists, and what `erpsync results` shows of a job
once Redis has expired it.

    history(engine, ...)      outcome changes (every one: a document that failed and then was created is two
                              rows), newest first, filtered by document, job, tenant, kind, status, time, ERP Key
    job(engine, job_id)       the job's last summary (its row of erpsync_jobs), or None
    job_records(engine, id)   the job's latest outcome per position, in position order: its `erpsync results`

Plain SQLAlchemy Core, the same SQL on PostgreSQL and SQLite (the latest outcome per position is a window
function, which both have). Times come back in UTC, timezone-aware (SQLite stores them without a zone: they were
written in UTC). Never reads a document's body. A database error is an ArchiveError in one line, without SQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import SQLAlchemyError

from worker.archive import schema
from worker.errors import ArchiveError
from worker.redaction import redact_url

__all__ = ["HistoryRow", "history", "job", "job_records"]

#: The outcome columns history reads: everything but the document's body and the outbox bookkeeping.
_COLUMNS = (
    "recorded_at",
    "tenant",
    "target",
    "kind",
    "job_id",
    "position",
    "external_id",
    "status",
    "erp_key",
    "number",
    "error",
    "errors",
)


@dataclass(frozen=True, slots=True)
class HistoryRow:
    """One outcome change of one document, as the archive recorded it."""

    recorded_at: datetime
    tenant: str
    target: str
    kind: str
    job_id: str
    position: int
    external_id: str
    status: str
    erp_key: str | None = None
    number: str | None = None
    error: str | None = None
    errors: list[dict[str, str]] = field(default_factory=list)

    @property
    def key(self) -> int | str | None:
        """The ERP's id as `erpsync results` shows it: SoftOne's Key is an integer, other ERPs' ids are text."""
        if self.erp_key is not None and self.target == "softone" and self.erp_key.lstrip("-").isdigit():
            return int(self.erp_key)
        return self.erp_key

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the time in ISO-8601 UTC (`...Z`), the Key as `key`."""
        return {
            "recorded_at": self.recorded_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "tenant": self.tenant,
            "target": self.target,
            "kind": self.kind,
            "job_id": self.job_id,
            "position": self.position,
            "external_id": self.external_id,
            "status": self.status,
            "key": self.key,
            "number": self.number,
            "error": self.error,
            "errors": self.errors,
        }


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _row(mapping: Any) -> HistoryRow:
    values = {name: mapping[name] for name in _COLUMNS}
    values["recorded_at"] = _utc(values["recorded_at"])
    values["errors"] = list(values["errors"] or [])
    return HistoryRow(**values)


@contextmanager
def _reading(what: str) -> Iterator[None]:
    """A database error as an ArchiveError: one line, no SQL or parameters (they may hold document content)."""
    try:
        yield
    except SQLAlchemyError as exc:
        original = getattr(exc, "orig", None)
        lines = str(original if original is not None else exc).strip().splitlines()
        reason = redact_url(lines[0]) if lines else type(exc).__name__
        raise ArchiveError(f"cannot read {what} from the archive: {reason}") from None


def history(
    engine: Engine,
    *,
    external_id: str | None = None,
    job_id: str | None = None,
    tenant: str | None = None,
    kind: str | None = None,
    status: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    key: str | None = None,
    limit: int = 1000,
) -> list[HistoryRow]:
    """Outcome changes matching every criterion given, newest first, at most `limit`.

    `since` and `until` bound the time recorded (since <= recorded_at < until; a naive datetime is UTC); `key` is
    the ERP's id as text (SoftOne's Key, Fortnox's DocumentNumber, the invoice service's id)."""
    if limit < 1:
        raise ValueError(f"limit {limit}: must be at least 1")
    t = schema.outcomes
    query = select(*(t.c[name] for name in _COLUMNS))
    for column, value in (
        (t.c.external_id, external_id),
        (t.c.job_id, job_id),
        (t.c.tenant, tenant),
        (t.c.kind, kind),
        (t.c.status, status),
        (t.c.erp_key, key),
    ):
        if value is not None:
            query = query.where(column == value)
    if since is not None:
        query = query.where(t.c.recorded_at >= _utc(since))
    if until is not None:
        query = query.where(t.c.recorded_at < _utc(until))
    query = query.order_by(t.c.recorded_at.desc(), t.c.event_id.desc()).limit(limit)
    with _reading("the history"), engine.connect() as connection:
        return [_row(r) for r in connection.execute(query).mappings()]


def job(engine: Engine, job_id: str) -> dict[str, Any] | None:
    """The job's last summary as archived (the columns of erpsync_jobs; times in UTC), or None."""
    t = schema.jobs
    with _reading(f"job {job_id!r}"), engine.connect() as connection:
        found = connection.execute(select(t).where(t.c.job_id == job_id)).mappings().first()
    if found is None:
        return None
    row = dict(found)
    for name in ("submitted_at", "finished_at"):
        row[name] = _utc(row[name])
    row["counts"] = dict(row["counts"] or {})
    return row


def job_records(engine: Engine, job_id: str) -> list[HistoryRow]:
    """The job's latest outcome per position (the newest outbox entry of each), ordered by position. A position
    with no outcome archived (still pending when the job was summarized) has no row."""
    t = schema.outcomes
    newest_first = func.row_number().over(partition_by=t.c.position, order_by=t.c.event_id.desc())
    ranked = select(*(t.c[name] for name in _COLUMNS), newest_first.label("rank")).where(t.c.job_id == job_id)
    latest = ranked.subquery("ranked")
    query = select(*(latest.c[name] for name in _COLUMNS)).where(latest.c.rank == 1).order_by(latest.c.position)
    with _reading(f"the records of job {job_id!r}"), engine.connect() as connection:
        return [_row(r) for r in connection.execute(query).mappings()]
