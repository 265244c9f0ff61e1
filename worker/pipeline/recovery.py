"""What a starting worker does first: queue again whatever a dead worker may have been holding.

A worker killed outright (SIGKILL of the main process, a lost machine) keeps its unacknowledged messages
out of sight until the broker's visibility timeout (an hour) has passed. Rather than wait, a starting
worker re-queues a flush for every buffer, a send for every batch not done, a run of every unfinished
job and a drain of the intake queue. Each of those is idempotent (buffer positions are pushed once,
batches have a state and a lease), so the copies cost a few no-op tasks and nothing is done twice.

First it clears the flags that de-duplicate flush and intake requests ("one is queued already"): the
queued request a flag stands for may be one of the dead worker's messages, and while the flag lives,
documents pushed after this recovery would ask for no flush or drain of their own and wait for the
visibility timeout. Clearing them costs at most one extra, idle task.
"""

from __future__ import annotations

import logging

from worker.pipeline import runtime
from worker.pipeline.batch import enqueue_send, flush_message
from worker.pipeline.intake import enqueue_job_again
from worker.pipeline.queue import Enqueue, Message, TaskName
from worker.store.records import JOB_FINAL, BatchState

__all__ = ["recover"]

log = logging.getLogger(__name__)


def recover(enqueue: Enqueue) -> dict[str, int]:
    """Re-queue the work of every buffer, open batch, open job and the intake queue; returns how much."""
    store, buffer, intake = runtime.store(), runtime.buffer(), runtime.intake()
    in_use = buffer.buffers()
    intake.drain_started()
    buffer.clear_flush_flags(in_use)
    buffers = [(t, k) for t, k in in_use if buffer.waiting(t, k)]
    for tenant, kind in buffers:
        enqueue(flush_message(tenant, kind, now=True, recovery=True))
    batches = 0
    for batch_id in store.open_batch_ids():
        batch = store.batch(batch_id)
        if batch is None or batch.get("state") == BatchState.DONE:
            store.forget_open_batch(batch_id)
            continue
        size = int(batch.get("size", 0))
        enqueue_send(enqueue, batch_id, batch["tenant"], batch["kind"], size, target=batch.get("target"))
        batches += 1
    jobs = 0
    for job_id in store.open_job_ids():
        job = store.job(job_id)
        if job is None or job.get("status") in JOB_FINAL:
            store.forget_open_job(job_id)
            continue
        enqueue_job_again(enqueue, job_id, job)
        jobs += 1
    waiting = intake.waiting()
    if waiting:  # items whose producer died before asking for a drain, or whose drain was lost with a broker
        shown = repr({"intake_items": waiting, "recovery": True})
        enqueue(Message(TaskName.DRAIN_INTAKE, argsrepr="()", kwargsrepr=shown))
    counts = {"buffers": len(buffers), "batches": batches, "jobs": jobs, "intake_items": waiting}
    log.info("recovery on start: re-queued what a stopped worker may have held", extra=counts)
    return counts
