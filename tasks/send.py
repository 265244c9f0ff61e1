"""`erpsync.send_batch` and `erpsync.send_batches`: the send step (worker/pipeline/send.py) as tasks."""

from __future__ import annotations

from typing import Any

from worker.celery_app import app
from worker.celery_app.adapter import retried
from worker.celery_app.enqueue import publish
from worker.pipeline import send


@app.task(name="erpsync.send_batch", bind=True, max_retries=None)
def send_batch(self: Any, batch_id: str) -> dict[str, Any]:
    """Send (or reconcile) one batch; idempotent: a done batch is not sent again, one in flight elsewhere waits.
    Returns ids and counts only (Celery logs the return value)."""
    with retried(self):
        return send.send(publish, batch_id)


@app.task(name="erpsync.send_batches", bind=True, max_retries=None)
def send_batches(self: Any, batch_ids: list[str]) -> dict[str, Any]:
    """Send several ready batches one after the other; one that must come back later comes back alone."""
    return send.send_group(publish, batch_ids)
