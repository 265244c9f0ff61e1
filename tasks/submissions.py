"""`erpsync.accept_submission`: one job message of a raw-Redis producer becomes a job, or a rejection.

The message itself stays in Redis (worker/submissions.py): the task carries its id only, so documents and
anything else a producer wrote never pass through the broker, the task's arguments or Flower.
"""

from __future__ import annotations

import logging
from typing import Any

from worker.celery_app import REDIS_OUTAGE_RETRY, app
from worker.errors import ConfigurationError
from worker.redis_client import get_redis
from worker.settings import get_settings
from worker.submissions import ACCEPTED, REJECTED, accept

log = logging.getLogger(__name__)

#: A worker whose tenants file cannot be read tries again this often (the file is re-read when it changes).
CONFIGURATION_RETRY_SECONDS = 30


def send_accept(submission_id: str, size: int) -> None:
    """Queue the task of a held message; what Flower and the logs show is its id and size only."""
    accept_submission.apply_async(args=[submission_id], argsrepr=f"({submission_id!r}, {size} bytes)")


@app.task(name="erpsync.accept_submission", bind=True, **REDIS_OUTAGE_RETRY)
def accept_submission(self: Any, submission_id: str) -> dict[str, Any]:
    """Check a held message and store it as a job or reject it (worker/submissions.py: `accept`); safe to
    run again: a settled message is gone, and the second run does nothing."""
    from tasks.jobs import request_intake

    settings = get_settings()
    try:
        outcome = accept(get_redis(settings), settings, submission_id)
    except ConfigurationError as exc:
        # Not the message's fault: it stays held and is tried again (and at every worker start).
        log.error("submission=%s cannot be checked: %s", submission_id, exc)
        raise self.retry(countdown=CONFIGURATION_RETRY_SECONDS) from None
    if outcome.status == ACCEPTED:
        for documents in outcome.chunks:
            request_intake(documents, job_id=outcome.job_id)
        log.info("submission=%s job=%s accepted documents=%d", submission_id, outcome.job_id, sum(outcome.chunks))
    elif outcome.status == REJECTED:
        # The reason names fields and rules only (never values), so it may be logged.
        log.warning("submission=%s job=%s rejected: %s", submission_id, outcome.job_id, outcome.reason)
    else:
        log.info("submission=%s already settled (a redelivered task); nothing to do", submission_id)
    return outcome.as_dict()
