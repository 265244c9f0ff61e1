"""Outbox entries (worker/store/outbox.py) turned into the archive's rows: pure, no I/O.

A docs entry becomes outcome rows (one per document of the script call that wrote it); an idxs entry the
deployment's index rows; a dead entry a dead-letter row; a job entry the job's summary. A row's `event_id` is its
entry's id and its place in the entry. Within one batch of entries the newest index and job rows win (the database keeps
the newest across batches: worker/archive/writer.py). An entry this code cannot read is skipped with its reason,
never retried forever: the stream must keep moving.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from worker.store.outbox import Entry
from worker.store.records import DOC_STATUSES

__all__ = ["Rows", "rows_of"]

_COUNTED = tuple(status.value for status in DOC_STATUSES)


@dataclass
class Rows:
    """What one batch of entries writes, table by table, and the entries it could not read."""

    outcomes: list[dict[str, Any]] = field(default_factory=list)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    index: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    dead_letters: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (entry id, why)
    bodies_wanted: list[tuple[int, str, int]] = field(default_factory=list)  # (outcome row, job, position)

    def __len__(self) -> int:
        return len(self.outcomes) + len(self.jobs) + len(self.index) + len(self.dead_letters)


def _time(entry: Entry) -> datetime:
    return datetime.fromtimestamp(entry.ms / 1000, tz=UTC)


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def rows_of(entries: list[Entry], deployment: str, *, bodies: bool = False) -> Rows:
    """The rows of `entries` (in stream order) for the deployment `deployment` (its key prefix)."""
    rows = Rows()
    for entry in entries:
        try:
            _add(rows, entry, deployment, bodies)
        except (
            KeyError,
            ValueError,
            TypeError,
            AttributeError,
        ) as exc:  # orjson's error is a ValueError  # AttributeError: JSON that is no object
            rows.skipped.append((entry.id, f"{type(exc).__name__}: {exc}"))
    return rows


def _add(rows: Rows, entry: Entry, deployment: str, bodies: bool) -> None:
    f = entry.fields
    kind = f["e"]
    if kind == "docs":
        base, at = entry.sort_key, _time(entry)
        for n, item in enumerate(orjson.loads(f["d"])):
            _add_outcome(rows, entry, _event_id(base, n), at, item, bodies)
    elif kind == "idxs":
        base, at = entry.sort_key, _time(entry)
        for n, (tenant, doc_kind, external_id, value) in enumerate(orjson.loads(f["d"])):
            where = (str(tenant), str(doc_kind), str(external_id))
            _add_index(rows, _event_id(base, n), at, deployment, where, str(value))
    elif kind == "dead":
        data = orjson.loads(f["d"])
        rows.dead_letters[f["id"]] = {
            "dead_id": f["id"],
            "tenant": str(data.get("tenant") or ""),
            "kind": str(data.get("kind") or ""),
            "external_id": data.get("external_id"),
            "job_id": data.get("job_id"),
            "reason": data.get("reason") or data.get("error"),
            "entry": data,
            "recorded_at": _time(entry),
        }
    elif kind == "job":
        _add_job(rows, entry)
    else:
        raise ValueError(f"unknown entry kind {kind!r}")


def _event_id(base: str, n: int) -> str:
    """The row's id: its entry's (`base`, Entry.sort_key), and its place in the entry (an entry holds a call's rows)."""
    return f"{base}.{n:05d}"


def _add_index(
    rows: Rows, event_id: str, at: datetime, deployment: str, where: tuple[str, str, str], value: str
) -> None:
    tenant, kind, xid = where
    parts = value.split("|")
    erp_key = int(parts[2]) if len(parts) > 2 and parts[2].lstrip("-").isdigit() else None
    rows.index[(tenant, kind, xid)] = {
        "deployment": deployment,
        "tenant": tenant,
        "kind": kind,
        "external_id": xid,
        "value": value,
        "erp_key": erp_key,
        "recorded_at": at,
        "event_id": event_id,
    }


def _add_outcome(rows: Rows, entry: Entry, event_id: str, at: datetime, item: dict[str, Any], bodies: bool) -> None:
    f = entry.fields
    record, status, position = item["r"], str(item["s"]), int(item["p"])
    key = record.get("key")
    rows.outcomes.append(
        {
            "event_id": event_id,
            "recorded_at": at,
            "job_id": f["j"],
            "position": position,
            "tenant": f["t"],
            "target": f.get("g") or "softone",
            "kind": f["k"],
            "external_id": str(record.get("external_id") or ""),
            "status": status,
            "erp_key": None if key is None else str(key),
            "number": record.get("number"),
            "error": record.get("error"),
            "errors": record.get("errors") or [],
            "batch_id": record.get("batch_id"),
            "body": None,
        }
    )
    if bodies and status in ("created", "updated"):
        rows.bodies_wanted.append((len(rows.outcomes) - 1, f["j"], position))


def _add_job(rows: Rows, entry: Entry) -> None:
    f = entry.fields
    job = orjson.loads(f["d"])
    rows.jobs[f["j"]] = {
        "job_id": f["j"],
        "tenant": str(job.get("tenant") or ""),
        "target": str(job.get("target") or "softone"),
        "kind": str(job.get("kind") or ""),
        "lane": job.get("lane"),
        "operation": job.get("operation"),
        "status": str(job.get("status") or ""),
        "total": int(job.get("total") or 0),
        "counts": {status: int(job.get(f"n_{status}") or 0) for status in _COUNTED},
        "reason": job.get("reason") or _source_error(job),
        "submitted_at": _parse_time(job.get("submitted_at")),
        "finished_at": _parse_time(job.get("finished_at") or f.get("at")),
        "event_id": _event_id(entry.sort_key, 0),
    }


def _source_error(job: dict[str, Any]) -> str | None:
    """An `incomplete` job's reason in the archive: where its source broke and why (worker/store/jobs.py)."""
    if not job.get("source_error"):
        return None
    line = job.get("source_error_line")
    return f"the source broke{f' at line {line}' if line else ''}: {job['source_error']}"
