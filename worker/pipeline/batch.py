"""Batching, the pipeline's second step: claimed documents into array bodies, placed with the dispatcher.

    intake ──▶ [batch: push → whole batches at once, the rest via the tenant's buffer → flush] ──▶ dispatch ──▶ send

Documents that fill whole batches (a big file's chunk, a drain of many small jobs) are stored as batches at
once and placed with the dispatcher (worker/pipeline/tickets.py), which hands them to senders; the rest go into
the tenant's coalescing buffer (worker/store/buffer.py), which a flush cuts into batches when it holds a full one
(at once) or when its oldest document has waited `batch_max_wait_ms`. A flush is asked for with the dispatcher
(the earliest time asked stands) and done by a send ticket as it comes due; a ticket that dies mid-flush leaves
its claim, which another ticket takes up after a while (worker/store/dispatch.py). A batch stored by a flush that
died before placing it is placed by the next worker's recovery (worker/pipeline/recovery.py).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from worker.failpoints import failpoint
from worker.pipeline import runtime
from worker.pipeline.queue import Enqueue
from worker.pipeline.tickets import offer_tickets, place, wake_at
from worker.settings import get_settings
from worker.store.buffer import FlushStatus, full_batches
from worker.store.records import BatchState, IntakeState, Ready

__all__ = [
    "MAX_BATCHES_PER_FLUSH",
    "PUSH_CHUNK",
    "flush",
    "push",
    "request_flush",
    "send_again_if_stored",
]

log = logging.getLogger(__name__)

#: Items per buffer push (one script call each).
PUSH_CHUNK = 500
#: A flush makes at most this many batches in one run.
MAX_BATCHES_PER_FLUSH = 100_000


def push(enqueue: Enqueue, tenant: str, kind: str, items: list[Ready]) -> int:
    """Put documents into batches: those that fill whole batches are stored as batches and their sends queued
    at once; the rest go into the tenant's buffer, with a flush asked for.

    A position is assigned once whatever happens (the buffer and the batch script remember it), so a redelivered
    job never queues a document twice. Returns how many were assigned now.
    """
    settings = get_settings()
    buffer = runtime.buffer()
    target, max_docs = runtime.batch_shape(tenant, kind)
    whole, rest = full_batches([len(item.body.encode()) for item in items], max_docs, settings.batch_max_bytes)
    high_water = runtime.store().high_water(tenant, kind) if whole else 0
    pushed = 0
    leftover: list[Ready] = []
    stored: list[str] = []  # batches not placed with the dispatcher yet
    for span in whole:
        group = items[span.start : span.stop]
        batch_id = f"{group[0].job_id}@{group[0].position}"  # its first document's job@position: "@" is in no job id
        size = buffer.make_batch(tenant, kind, batch_id, group, high_water, target=target)
        if size < 0:  # made by a run of the same documents that was not ours: what it left free goes the slow way
            leftover += group
            size = 0
        failpoint("intake.batched")  # tests: the batch is stored, not placed with the dispatcher
        if size:
            stored.append(batch_id)
        if len(stored) == settings.send_group_batches:
            # A redelivered intake places stored batches still `queued` (send_again_if_stored).
            place(enqueue, tenant, stored)
            stored = []
        pushed += size
    if stored:
        place(enqueue, tenant, stored)
    leftover += items[rest:]
    for start in range(0, len(leftover), PUSH_CHUNK):
        n, waiting, size = buffer.push(tenant, kind, leftover[start : start + PUSH_CHUNK])
        failpoint("intake.buffered")  # tests: in the buffer, no flush asked for
        pushed += n
        if waiting >= max_docs or size >= settings.batch_max_bytes:
            request_flush(enqueue, tenant, kind, now=True)
    if leftover:
        request_flush(enqueue, tenant, kind, now=False)  # what is left goes at the latest after batch_max_wait_ms
    return pushed


def send_again_if_stored(enqueue: Enqueue, states: list[IntakeState]) -> None:
    """Place every batch an earlier run of these documents stored and may not have placed (it failed or died in
    between: intake.batched). Such documents are skipped by intake as assigned; placing a batch placed already
    leaves it where it is (worker/store/dispatch.py)."""
    batch_ids = sorted({where for state in states for where in state.assigned.values() if where != "buffer"})
    for batch_id, head in zip(batch_ids, runtime.store().batch_heads(batch_ids), strict=True):
        if head is not None and head.state == BatchState.QUEUED:
            place(enqueue, head.tenant, [batch_id])


def request_flush(enqueue: Enqueue, tenant: str, kind: str, *, now: bool, delay: float | None = None) -> None:
    """Ask for a flush of a tenant's buffer, now or after `delay` (by default batch_max_wait_ms), unless one is due
    by then already: the dispatcher keeps the request and a send ticket does the flush as it comes due
    (worker/pipeline/dispatch.py), so a flush never waits behind sends for a thread."""
    settings = get_settings()
    delay = 0.0 if now else (settings.batch_max_wait_ms / 1000 if delay is None else delay)
    due = time.time() + delay
    if runtime.dispatcher().flush_at(tenant, kind, due):
        if delay:
            wake_at(enqueue, due)
        else:
            offer_tickets(enqueue, 1)


def flush(enqueue: Enqueue, flush_id: str, tenant: str, kind: str, claimed_at: float | None = None) -> dict[str, Any]:
    """Make every batch the buffer can give now (ids `<flush_id>.<n>`) and place them; ask again for a partial one
    when it will be old enough. `claimed_at`: the dispatcher's claim this flush answers, forgotten once the buffer
    is empty."""
    store, buffer = runtime.store(), runtime.buffer()
    high_water = store.high_water(tenant, kind)
    target, max_docs = runtime.batch_shape(tenant, kind)
    made = 0
    for n in range(MAX_BATCHES_PER_FLUSH):
        result = buffer.flush_one(tenant, kind, f"{flush_id}.{n}", high_water, target=target, max_docs=max_docs)
        if result.status in (FlushStatus.CREATED, FlushStatus.EXISTS):
            failpoint("flush.batched")  # tests: the batch is stored, not placed with the dispatcher
            place(enqueue, tenant, [result.batch_id])
            made += 1
            continue
        if result.status == FlushStatus.YOUNG:
            request_flush(enqueue, tenant, kind, now=False, delay=result.wait_s + 0.01)
        elif claimed_at is not None:
            runtime.dispatcher().flush_done(tenant, kind, claimed_at)
        break
    if made:
        log.info("flush", extra={"batches": made, "waiting": buffer.waiting(tenant, kind)})
    return {"tenant": tenant, "kind": kind, "batches": made}
