"""`erpsync.flush_buffer`: a flush message of an earlier version (flushes are now asked for with the dispatcher and
done by send tickets, worker/pipeline/dispatch.py): the tenant's buffer flushed now (worker/pipeline/batch.py)."""

from __future__ import annotations

from typing import Any

from worker.celery_app import REDIS_OUTAGE_RETRY, app
from worker.celery_app.enqueue import publish
from worker.observability.logs import log_context
from worker.pipeline import batch, runtime


@app.task(name="erpsync.flush_buffer", bind=True, **REDIS_OUTAGE_RETRY)
def flush_buffer(self: Any, tenant: str, kind: str, flag: str | None = None) -> dict[str, Any]:
    """Make every batch the buffer can give now (ids from this task's id, so a redelivery finds its own)."""
    with log_context(tenant=tenant, target=runtime.batch_shape(tenant, kind).target, kind=kind):
        return batch.flush(publish, self.request.id, tenant, kind)
