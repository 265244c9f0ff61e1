"""`erpsync.send_next`: a send ticket (worker/pipeline/dispatch.py) as a task; and the send messages of batches
queued by an earlier version, `erpsync.send_batch` and `erpsync.send_batches`, which place their batches with
the dispatcher."""

from __future__ import annotations

from typing import Any

from worker.celery_app import REDIS_OUTAGE_RETRY, app
from worker.celery_app.enqueue import publish
from worker.pipeline import dispatch, tickets


@app.task(name="erpsync.send_next", bind=True, **REDIS_OUTAGE_RETRY)
def send_next(self: Any, ticket: str) -> dict[str, Any]:
    """Send the batches that may go now, fairly across tenants, for a few seconds at most.
    Returns counts only (Celery logs the return value)."""
    return dispatch.serve(publish, ticket)


@app.task(name="erpsync.send_batch", bind=True, **REDIS_OUTAGE_RETRY)
def send_batch(self: Any, batch_id: str) -> dict[str, Any]:
    """A batch's send message of an earlier version: the batch is placed with the dispatcher."""
    return {"batch_id": batch_id, "placed": tickets.place_stored(publish, [batch_id])}


@app.task(name="erpsync.send_batches", bind=True, **REDIS_OUTAGE_RETRY)
def send_batches(self: Any, batch_ids: list[str]) -> dict[str, Any]:
    """Batches' send message of an earlier version: the batches are placed with the dispatcher."""
    return {"batches": len(batch_ids), "placed": tickets.place_stored(publish, batch_ids)}
