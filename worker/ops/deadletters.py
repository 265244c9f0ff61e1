"""Dead letters: documents the pipeline could not create, kept with everything an operator needs.

Entries are written when a batch's end is recorded (worker/pipeline/record.py; worker/store/results.py stores
them) for ERP rejections, exhausted retries and unknown outcomes. Replaying submits the document again as a new
job, so it goes through validation and the duplicate index: replaying twice never creates twice. For an
`unknown` entry, replay is the operator's statement that the document is not in the ERP: the old claim on its
ExternalId is released first (only if it is still that old claim; a created or newer claim is never touched).
"""

from __future__ import annotations

from typing import Any

from worker.producer.submit import submit
from worker.store.records import now_iso
from worker.store.results import ResultsStore


def replay(store: ResultsStore, entry: dict[str, Any]) -> str:
    """Submit a dead letter's document again; returns the new job id and records it on the entry."""
    if entry["status"] == "unknown":
        store.release(entry["tenant"], entry["kind"], entry["external_id"], entry["id"])
    job_id = submit(
        [entry["document"]],
        kind=entry["kind"],
        tenant=entry["tenant"],
        source=f"replay of {entry['id']}",
        settings=store.s,
    )
    entry.setdefault("replays", []).append({"job_id": job_id, "at": now_iso()})
    store.update_dead_letter(entry)
    return job_id


def summary(entry: dict[str, Any]) -> dict[str, Any]:
    """An entry without its document and attempts (for listings)."""
    return {
        k: entry.get(k) for k in ("id", "status", "tenant", "kind", "external_id", "job_id", "reason", "created_at")
    } | {"replays": len(entry.get("replays", []))}
