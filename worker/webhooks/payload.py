"""What a job webhook says: the job's summary, from a whitelist of its fields — never a document, a record or a
credential — serialized compactly and stably (sorted keys, no spaces), so that the body signed is the body sent.

    {"counts":{"changed":0,"created":48,"duplicate":2,"failed":0,"pending":0,"unknown":0,"updated":0},
     "event":"job.finished","finished_at":"2026-11-20T23:16:09.412Z","job_id":"pos-2026-11-20","kind":"customer_invoice",
     "lane":"bulk","operation":"create","status":"succeeded","submitted_at":"2026-11-20T23:16:07.101Z",
     "target":"softone","tenant":"acme","total":50}

`status` and `finished_at` are the event's (the job as it finished), `reason` is there for a rejected job only, and
`source_error` (`{"line": 1501, "reason": "not valid JSON (Expecting value)"}`, line null when unknown) for an
`incomplete` one: its source broke part-way and the job holds the documents read before that line.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from worker.redaction import redact
from worker.store.records import DOC_STATUSES
from worker.webhooks.signing import EVENT

__all__ = ["JOB_FIELDS", "REASON_MAX_CHARS", "job_payload", "serialize"]

#: The job hash's text fields a payload carries as they are (counts and the total are numbers of their own).
JOB_FIELDS = ("tenant", "target", "kind", "lane", "operation", "submitted_at")
REASON_MAX_CHARS = 500


def job_payload(job_id: str, tenant: str, status: str, at: str, job: Mapping[str, str] | None) -> dict[str, Any]:
    """The summary of job `job_id` that reached `status` at `at`, from its hash `job` (None: gone already, and
    only the event's fields are known)."""
    job = job or {}
    payload: dict[str, Any] = {field: job.get(field) or None for field in JOB_FIELDS}
    payload.update(
        event=EVENT,
        job_id=job_id,
        tenant=tenant or job.get("tenant"),
        status=status or job.get("status"),
        finished_at=at or job.get("finished_at"),
        total=_int(job.get("total")),
        counts={str(s): _int(job.get(f"n_{s}")) for s in DOC_STATUSES},
    )
    if payload["status"] == "rejected":
        payload["reason"] = redact(job.get("reason") or "")[:REASON_MAX_CHARS] or None
    if payload["status"] == "incomplete":
        line = job.get("source_error_line")
        payload["source_error"] = {
            "line": _int(line) if line else None,
            "reason": redact(job.get("source_error") or "")[:REASON_MAX_CHARS] or None,
        }
    return payload


def serialize(payload: Mapping[str, Any]) -> str:
    """The body as sent and signed: compact, keys sorted, UTF-8 text."""
    return json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0
