"""What a starting worker does first: queue again whatever a dead worker may have been holding.

A worker killed outright (SIGKILL of the main process, a lost machine) keeps its unacknowledged messages
out of sight until the broker's visibility timeout (an hour) has passed. Rather than wait, a starting
worker asks for a flush of every buffer that holds documents, re-queues every unfinished job and a drain of the
intake queue,
places every batch not done that is in none of the dispatcher's places (worker/store/dispatch.py: a batch a
dead sender held comes back by itself when its lease runs out) and publishes send tickets. Each of those is
idempotent (buffer positions are pushed once, a batch is in one place at a time and has a state and a lease),
so the copies cost a few no-op tasks and nothing is done twice. Processes starting together (a deployment's
intake and sender workers) queue each piece of work once: a batch placed by one is left where it is by the
other, and a job goes back to intake only while some of its documents are nowhere yet (neither settled nor
buffered nor batched), not once per open job and process.

First it clears the flag that de-duplicates drain requests ("one is queued already"): the queued request it
stands for may be one of the dead worker's messages, and while the flag lives, documents queued after this
recovery would ask for no drain of their own and wait for the visibility timeout. Clearing it costs at most one
extra, idle task. (Flushes need no such care: their requests live in Redis with the dispatcher.)
"""

from __future__ import annotations

import logging

from worker.pipeline import runtime
from worker.pipeline.batch import request_flush
from worker.pipeline.intake import enqueue_job_again
from worker.pipeline.queue import Enqueue, Message, TaskName
from worker.pipeline.tickets import offer_tickets, place_all
from worker.settings import get_settings
from worker.store.records import JOB_FINAL, BatchState

__all__ = ["recover"]

log = logging.getLogger(__name__)


def recover(enqueue: Enqueue) -> dict[str, int]:
    """Re-queue the work of every buffer, open batch, open job and the intake queue; returns how much."""
    store, buffer, intake = runtime.store(), runtime.buffer(), runtime.intake()
    intake.drain_started()
    buffers = [(t, k) for t, k in buffer.buffers() if buffer.waiting(t, k)]
    for tenant, kind in buffers:
        request_flush(enqueue, tenant, kind, now=True)
    open_batches: list[tuple[str, str]] = []  # (batch id, tenant) of the batches not done
    batch_ids = sorted(store.open_batch_ids())
    for batch_id, head in zip(batch_ids, store.batch_heads(batch_ids), strict=True):  # one round trip, no bodies
        if head is None or head.state == BatchState.DONE:
            store.forget_open_batch(batch_id)
        else:
            open_batches.append((batch_id, head.tenant))
    batches = place_all(enqueue, open_batches, verify=True)
    open_jobs = []
    for job_id in store.open_job_ids():
        job = store.job(job_id)
        if job is None or job.get("status") in JOB_FINAL:
            store.forget_open_job(job_id)
            continue
        open_jobs.append((job_id, job))
    # A job whose documents are all settled, buffered or batched has nothing left for intake.
    jobs = 0
    for (job_id, job), needed in zip(open_jobs, store.needs_intake([j for j, _ in open_jobs]), strict=True):
        if needed:
            enqueue_job_again(enqueue, job_id, job)
            jobs += 1
    waiting = intake.waiting()
    if waiting:  # items whose producer died before asking for a drain, or whose drain was lost with a broker
        shown = repr({"intake_items": waiting, "recovery": True})
        enqueue(Message(TaskName.DRAIN_INTAKE, argsrepr="()", kwargsrepr=shown))
    tickets = offer_tickets(enqueue, get_settings().send_tickets)
    counts = {"buffers": len(buffers), "batches": batches, "jobs": jobs, "intake_items": waiting, "tickets": tickets}
    log.info("recovery on start: re-queued what a stopped worker may have held", extra=counts)
    return counts
