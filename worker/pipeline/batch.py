"""Batching, the pipeline's second step: claimed documents into array bodies, and those into send messages.

    intake ──▶ [batch: push → whole batches at once, the rest via the tenant's buffer → flush] ──▶ send

Documents that fill whole batches (a big file's chunk, a drain of many small jobs) are stored as batches at
once and their sends queued; the rest go into the tenant's coalescing buffer (worker/store/buffer.py), which a
flush cuts into batches when it holds a full one (at once) or when its oldest document has waited
`batch_max_wait_ms`. Each kind of flush request is de-duplicated by a short-lived flag; the flush clears its
flag as it starts, so documents pushed while it runs ask for another (and a starting worker clears them all:
the flush a flag stands for may have died with a worker, worker/pipeline/recovery.py). Batch ids derive from
the flush task's id, so a redelivered flush finds the batches it made before dying and queues their sends
again instead of taking more documents under the same ids.
"""

from __future__ import annotations

import logging
from typing import Any

from worker.failpoints import failpoint
from worker.pipeline import runtime
from worker.pipeline.queue import Enqueue, Message, TaskName, describe_send
from worker.settings import get_settings
from worker.store.buffer import FlushStatus, full_batches
from worker.store.records import BatchState, IntakeState, Ready

__all__ = [
    "MAX_BATCHES_PER_FLUSH",
    "PUSH_CHUNK",
    "enqueue_send",
    "enqueue_sends",
    "flush",
    "flush_message",
    "push",
    "request_flush",
    "send_again_if_stored",
    "send_message",
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
    stored: list[tuple[str, int]] = []  # (batch id, documents) whose sends are not queued yet
    for span in whole:
        group = items[span.start : span.stop]
        batch_id = f"{group[0].job_id}@{group[0].position}"  # its first document's job@position: "@" is in no job id
        size = buffer.make_batch(tenant, kind, batch_id, group, high_water, target=target)
        if size < 0:  # made by a run of the same documents that was not ours: what it left free goes the slow way
            leftover += group
            size = 0
        failpoint("intake.batched")  # tests: the batch is stored, its send not queued
        if size:
            stored.append((batch_id, size))
        if len(stored) == settings.send_group_batches:
            # A redelivered intake queues the sends of stored batches still `queued` (send_again_if_stored).
            enqueue_sends(enqueue, stored, tenant, kind, target=target)
            stored = []
        pushed += size
    if stored:
        enqueue_sends(enqueue, stored, tenant, kind, target=target)
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


def send_message(batch_id: str, tenant: str, kind: str, size: int, *, target: str | None = None) -> Message:
    """The send_batch message of a stored batch."""
    target = target or runtime.batch_shape(tenant, kind).target
    return Message(
        TaskName.SEND_BATCH,
        args=[batch_id],
        argsrepr=repr([batch_id]),
        kwargsrepr=describe_send(tenant, target, kind, size),
    )


def enqueue_send(enqueue: Enqueue, batch_id: str, tenant: str, kind: str, size: int, *, target: str | None) -> None:
    """Queue the send of a stored batch."""
    enqueue(send_message(batch_id, tenant, kind, size, target=target))


def enqueue_sends(enqueue: Enqueue, batches: list[tuple[str, int]], tenant: str, kind: str, *, target: str) -> None:
    """Queue the sends of (batch id, documents) stored together: one send_batches message for them all (one
    send_batch for a single one). Flower and the log lines see their ids and counts."""
    if len(batches) == 1:
        batch_id, size = batches[0]
        enqueue_send(enqueue, batch_id, tenant, kind, size, target=target)
        return
    ids = [batch_id for batch_id, _ in batches]
    shown = describe_send(tenant, target, kind, sum(size for _, size in batches), batches=len(ids))
    enqueue(Message(TaskName.SEND_BATCHES, args=[ids], argsrepr=repr([ids]), kwargsrepr=shown))


def send_again_if_stored(enqueue: Enqueue, states: list[IntakeState]) -> None:
    """Queue the send of every batch an earlier run of these documents stored and whose send it may not have
    queued (it failed or died in between: intake.batched). Such documents are skipped by intake as assigned; a
    second send message of a batch is harmless (a batch has one state, see worker/pipeline/send.py)."""
    batch_ids = sorted({where for state in states for where in state.assigned.values() if where != "buffer"})
    for batch_id, head in zip(batch_ids, runtime.store().batch_heads(batch_ids), strict=True):
        if head is not None and head.state == BatchState.QUEUED:
            enqueue_send(enqueue, batch_id, head.tenant, head.kind, head.size, target=head.target)


def flush_message(
    tenant: str, kind: str, *, now: bool, countdown: float | None = None, recovery: bool = False
) -> Message:
    """The flush_buffer message of a tenant's buffer (`now`, or the delayed one; no flag for recovery's)."""
    shown: dict[str, Any] = {"target": runtime.batch_shape(tenant, kind).target}
    kwargs: dict[str, Any] = {}
    if recovery:
        shown["recovery"] = True
    else:
        kwargs["flag"] = "now" if now else "timer"
        shown = {"flag": kwargs["flag"], **shown}
    return Message(
        TaskName.FLUSH_BUFFER,
        args=[tenant, kind],
        kwargs=kwargs,
        countdown=countdown,
        argsrepr=repr([tenant, kind]),
        kwargsrepr=repr(shown),
    )


def request_flush(enqueue: Enqueue, tenant: str, kind: str, *, now: bool, delay: float | None = None) -> None:
    """Queue a flush (now, or after `delay`, by default batch_max_wait_ms) unless one is already queued."""
    settings = get_settings()
    delay = 0.0 if now else (settings.batch_max_wait_ms / 1000 if delay is None else delay)
    if runtime.buffer().ask_for_flush(tenant, kind, now=now, ttl_ms=int(delay * 1000) + 5000):
        enqueue(flush_message(tenant, kind, now=now, countdown=delay or None))


def flush(enqueue: Enqueue, flush_id: str, tenant: str, kind: str, flag: str | None) -> dict[str, Any]:
    """Make every batch the buffer can give now (ids `<flush_id>.<n>`); come back for a partial one when it is
    old enough. `flag` names the request this flush answers, cleared as it starts."""
    store, buffer = runtime.store(), runtime.buffer()
    if flag:
        buffer.flush_started(tenant, kind, now=flag == "now")
    high_water = store.high_water(tenant, kind)
    target, max_docs = runtime.batch_shape(tenant, kind)
    made = 0
    for n in range(MAX_BATCHES_PER_FLUSH):
        result = buffer.flush_one(tenant, kind, f"{flush_id}.{n}", high_water, target=target, max_docs=max_docs)
        if result.status in (FlushStatus.CREATED, FlushStatus.EXISTS):
            failpoint("flush.batched")  # tests: the batch is stored, its send not queued
            enqueue_send(enqueue, result.batch_id, tenant, kind, result.size, target=target)
            made += 1
            continue
        if result.status == FlushStatus.YOUNG:
            request_flush(enqueue, tenant, kind, now=False, delay=result.wait_s + 0.01)
        break
    if made:
        log.info("flush", extra={"batches": made, "waiting": buffer.waiting(tenant, kind)})
    return {"tenant": tenant, "kind": kind, "batches": made}
