"""`erpsync.flush_buffer`: turn a tenant's coalescing buffer into batches and queue their sends.

Flushes are asked for when a buffer holds a full batch (at once) and after every push (delayed by
`batch_max_wait_ms`, so that a lone document does not wait for company). Each kind of request is
de-duplicated by a short-lived flag; the flush clears its flag as it starts, so documents pushed while it
runs ask for another (and a starting worker clears them all: the flush a flag stands for may have died with
a worker, tasks/recovery.py). Batch ids derive from the flush task's id, so a redelivered flush finds the batches
it made before dying and queues their sends again instead of taking more documents under the same ids.
"""

from __future__ import annotations

import logging
from typing import Any

from worker import runtime
from worker.celery_app import REDIS_OUTAGE_RETRY, app
from worker.failpoints import failpoint
from worker.logs import log_context
from worker.settings import get_settings

log = logging.getLogger(__name__)


def flag_key(tenant: str, kind: str, now: bool) -> str:
    """The key that says a flush (`now`, or the delayed one) of this buffer is queued already."""
    return f"{get_settings().key_prefix}:flushq:{tenant}:{kind}:{'now' if now else 'timer'}"


def request_flush(tenant: str, kind: str, *, now: bool, delay: float | None = None) -> None:
    """Queue a flush (now, or after `delay`, by default batch_max_wait_ms) unless one is already queued."""
    settings = get_settings()
    delay = 0.0 if now else (settings.batch_max_wait_ms / 1000 if delay is None else delay)
    client = runtime.store().r
    if client.set(flag_key(tenant, kind, now), "1", nx=True, px=int(delay * 1000) + 5000):
        flag = "now" if now else "timer"
        flush_buffer.apply_async(
            args=[tenant, kind],
            kwargs={"flag": flag},
            countdown=delay or None,
            argsrepr=repr([tenant, kind]),
            kwargsrepr=repr({"flag": flag, "target": runtime.batch_shape(tenant, kind)[0]}),
        )


@app.task(
    name="erpsync.flush_buffer",
    bind=True,
    **REDIS_OUTAGE_RETRY,
)
def flush_buffer(self: Any, tenant: str, kind: str, flag: str | None = None) -> dict[str, Any]:
    """Make every batch the buffer can give now; come back for a partial one when it is old enough."""
    target = runtime.batch_shape(tenant, kind)[0]
    with log_context(tenant=tenant, target=target, kind=kind):
        return _flush(self, tenant, kind, flag)


def _flush(task: Any, tenant: str, kind: str, flag: str | None) -> dict[str, Any]:
    from tasks.jobs import enqueue_send

    store, buffer = runtime.store(), runtime.buffer()
    if flag:
        store.r.delete(flag_key(tenant, kind, flag == "now"))
    high_water = store.high_water(tenant, kind)
    target, max_docs = runtime.batch_shape(tenant, kind)
    made = 0
    for n in range(100_000):
        result = buffer.flush_one(tenant, kind, f"{task.request.id}.{n}", high_water, target=target, max_docs=max_docs)
        if result.status in ("created", "exists"):
            failpoint("flush.batched")  # tests: the batch is stored, its send not queued
            enqueue_send(result.batch_id, tenant, kind, result.size, target=target)
            made += 1
            continue
        if result.status == "young":
            request_flush(tenant, kind, now=False, delay=result.wait_s + 0.01)
        break
    if made:
        log.info("flush", extra={"batches": made, "waiting": buffer.waiting(tenant, kind)})
    return {"tenant": tenant, "kind": kind, "batches": made}
