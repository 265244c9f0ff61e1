"""`erpsync.drain_intake` and `erpsync.process_job`: the intake step (worker/pipeline/intake.py) as tasks."""

from __future__ import annotations

from typing import Any

from worker.celery_app import REDIS_OUTAGE_RETRY, app
from worker.celery_app.enqueue import publish
from worker.pipeline import intake


@app.task(name="erpsync.drain_intake", bind=True, **REDIS_OUTAGE_RETRY)
def drain_intake(self: Any) -> dict[str, Any]:
    """Validate, claim and batch queued job ranges for a couple of seconds; what it held when it died is found
    again under its task id (redelivery)."""
    return intake.drain(publish, self.request.id)


@app.task(name="erpsync.process_job", bind=True, **REDIS_OUTAGE_RETRY)
def process_job(self: Any, job_id: str, start: int = 0, end: int | None = None) -> dict[str, Any]:
    """Validate, claim and batch a job's documents [start, end), or queue the whole job for intake again."""
    return intake.run_job(publish, job_id, start, end)
