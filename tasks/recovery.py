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

from worker import runtime
from worker.results import JOB_FINAL

log = logging.getLogger(__name__)


def recover() -> dict[str, int]:
    from tasks.flush import flag_key, flush_buffer
    from tasks.jobs import INTAKE_FLAG, drain_intake, enqueue_job_again, enqueue_send

    store, buffer = runtime.store(), runtime.buffer()
    p = store.p
    in_use = buffer.buffers()
    flags = [flag_key(t, k, now) for t, k in in_use for now in (True, False)]
    store.r.delete(INTAKE_FLAG.format(prefix=p), *flags)
    buffers = [(t, k) for t, k in in_use if buffer.waiting(t, k)]
    for tenant, kind in buffers:
        flush_buffer.apply_async(
            args=[tenant, kind],
            argsrepr=repr([tenant, kind]),
            kwargsrepr=repr({"target": runtime.batch_shape(tenant, kind)[0], "recovery": True}),
        )
    batches = 0
    for batch_id in store.r.smembers(f"{p}:open_batches"):
        batch = store.batch(batch_id)
        if batch is None or batch.get("state") == "done":
            store.r.srem(f"{p}:open_batches", batch_id)
            continue
        enqueue_send(batch_id, batch["tenant"], batch["kind"], int(batch.get("size", 0)), target=batch.get("target"))
        batches += 1
    jobs = 0
    for job_id in store.r.smembers(f"{p}:open_jobs"):
        job = store.job(job_id)
        if job is None or job.get("status") in JOB_FINAL:
            store.r.srem(f"{p}:open_jobs", job_id)
            continue
        enqueue_job_again(job_id, job)
        jobs += 1
    intake = runtime.intake().waiting()
    if intake:  # items whose producer died before asking for a drain, or whose drain was lost with a broker
        drain_intake.apply_async(argsrepr="()", kwargsrepr=repr({"intake_items": intake, "recovery": True}))
    counts = {"buffers": len(buffers), "batches": batches, "jobs": jobs, "intake_items": intake}
    log.info("recovery on start: re-queued what a stopped worker may have held", extra=counts)
    return counts
