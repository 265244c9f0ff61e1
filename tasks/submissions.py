"""`erpsync.accept_submission`: a raw producer's job message becomes a job, or a rejection.

The message itself stays in Redis (worker/producer/submissions.py): the task carries its id only, so documents
and anything else a producer wrote never pass through the broker, the task's arguments or Flower.
"""

from __future__ import annotations

from typing import Any

from worker.celery_app import REDIS_OUTAGE_RETRY, app
from worker.celery_app.adapter import retried
from worker.celery_app.enqueue import publish
from worker.producer import submissions


@app.task(name="erpsync.accept_submission", bind=True, **REDIS_OUTAGE_RETRY)
def accept_submission(self: Any, submission_id: str) -> dict[str, Any]:
    """Check a held message and store it as a job or reject it; safe to run again: a settled message is gone,
    and the second run does nothing."""
    with retried(self):
        return submissions.settle_message(publish, submission_id)
