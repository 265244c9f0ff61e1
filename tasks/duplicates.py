"""`erpsync.settle_duplicate`: documents waiting for another job's outcome (worker/pipeline/duplicates.py)."""

from __future__ import annotations

from typing import Any

from worker.celery_app import app
from worker.celery_app.adapter import retried
from worker.celery_app.enqueue import publish
from worker.pipeline import duplicates


@app.task(name="erpsync.settle_duplicate", bind=True, max_retries=duplicates.MAX_CHECKS)
def settle_duplicate(self: Any, job_id: str, positions: list[int]) -> dict[str, Any]:
    """Settle what can be settled; the documents still waiting come back in CHECK_EVERY_S."""
    with retried(self):
        return duplicates.settle(publish, job_id, positions)
