"""Dispatch, between batching and sending: a send ticket serves the batches that may go now, fairly.

    batch ──place──▶ dispatcher ──take──▶ [dispatch: a ticket's loop] ──▶ send ──▶ record
                        ▲                      │ comes back later (RetryLater): delayed in Redis
                        └──────────────────────┘

`serve` runs one ticket (the task `erpsync.send_next`): it flushes the coalescing buffers whose flush is due, asks
the dispatcher (worker/store/dispatch.py) for the
next batch that may go now — the fairest tenant's, its slot and rate turn taken — sends it (worker/pipeline/send.py)
and settles it with the dispatcher (done, or delayed by the RetryLater it raised), then asks again, until nothing
may go now or ERPSYNC_SEND_SERVE_SECONDS have passed (then a new ticket takes over, so that one message never runs
for long). When nothing may go now, it asks for a wake at the moment something may. No thread waits for a
tenant: a tenant at its rate limit or cap is parked by the dispatcher while the ticket serves other tenants. Only
when nothing at all may go and this process has requests in flight does an idle ticket wait a moment (50 ms at a
time, 2 s at most) for one of them to give its slot back in the same process: the freed slot is then taken at
once, without a ticket message per request (worker/pipeline/tickets.py, `slot_freed`).

The batches a process holds are renewed by its heartbeat (`heartbeat`, every third of ERPSYNC_SEND_LEASE_SECONDS,
from a thread the sender worker starts: worker/celery_app/bootsteps.py): the dispatcher's lease, the tenant's
in-flight slot and the batch's own lease. A killed process stops renewing, and within a lease its batches go
back to their lanes and its slots are free. The heartbeat also offers a ticket when work is due and no ticket
is counted (a wake lost with a killed worker).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

from worker.errors import RetryLater
from worker.observability.logs import log_context
from worker.pipeline import batch, runtime, send
from worker.pipeline.queue import Enqueue
from worker.pipeline.tickets import offer_tickets, wait_for_a_freed_slot, wake_at
from worker.settings import get_settings
from worker.store.dispatch import Grant, Settle
from worker.store.errors import REDIS_ERRORS

__all__ = ["heartbeat", "held", "serve"]

log = logging.getLogger(__name__)

#: Batch ids a ticket's result names at most (Flower and Celery's log line show it).
BATCH_IDS_SHOWN = 50
#: Times in a row an idle ticket waits for a slot given back in its process (tickets.SLOT_WAIT_S each) before it
#: ends: a freed slot is then taken at once, without a ticket message per request.
MAX_IDLE_WAITS = 40

_held: dict[str, Grant] = {}  # grant token -> grant, of the batches this process holds
_held_lock = threading.Lock()


def held() -> list[Grant]:
    """The grants of the batches this process holds now."""
    with _held_lock:
        return list(_held.values())


@contextlib.contextmanager
def _holding(grant: Grant) -> Iterator[None]:
    with _held_lock:
        _held[grant.token] = grant
    try:
        yield
    finally:
        with _held_lock:
            _held.pop(grant.token, None)


def serve(enqueue: Enqueue, ticket: str) -> dict[str, Any]:
    """Send what may go now, fairly across tenants, until nothing may or the ticket's time is up."""
    dispatcher = runtime.dispatcher()
    deadline = time.monotonic() + get_settings().send_serve_seconds
    outcomes: dict[str, int] = {}
    served: list[str] = []
    handed_over = False
    idle = 0  # waits in a row for a slot given back in this process
    flushes = True  # the first time, and whenever the last take said a flush is due
    try:
        while True:
            if flushes:
                _flush_due(enqueue)
            found = dispatcher.take(ticket)
            flushes = found.flush_due
            for reaped in found.reaped:
                log.warning(
                    "batch taken back from a sender that stopped renewing its lease (killed?); its in-flight slot is "
                    "free again and the batch goes next",
                    extra={"batch_id": reaped.batch_id, "tenant": reaped.tenant, "sender": reaped.sender},
                )
            if found.grant is None:
                if held() and idle < MAX_IDLE_WAITS and wait_for_a_freed_slot():
                    idle += 1  # a request of this process was answered: its slot may let its tenant go on
                    continue
                if found.due is not None:
                    wake_at(enqueue, found.due)
                break
            idle = 0
            outcome = _serve_one(enqueue, found.grant)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            served.append(found.grant.batch_id)
            if time.monotonic() > deadline:
                handed_over = True
                break
    finally:
        with contextlib.suppress(*REDIS_ERRORS):
            dispatcher.ticket_done(ticket)
    if handed_over:
        offer_tickets(enqueue, 1)
    # Ids and counts only (Celery logs the return value, Flower shows it): which batches this ticket served.
    return {
        "ticket": ticket,
        "batches": len(served),
        "outcomes": outcomes,
        "batch_ids": served[:BATCH_IDS_SHOWN],
    }


def _flush_due(enqueue: Enqueue) -> None:
    """Flush the coalescing buffers whose flush is due (worker/pipeline/batch.py): their batches join the lanes
    before the next take."""
    claimed = runtime.dispatcher().claim_flushes()
    for tenant, kind in claimed.buffers:
        with log_context(tenant=tenant, target=runtime.batch_shape(tenant, kind).target, kind=kind):
            batch.flush(enqueue, str(uuid.uuid4()), tenant, kind, claimed_at=claimed.claimed_at)


def _serve_one(enqueue: Enqueue, grant: Grant) -> str:
    """Send one batch handed out, and settle it with the dispatcher: done, or delayed as its RetryLater says."""
    dispatcher = runtime.dispatcher()
    with _holding(grant):
        try:
            outcome = str(send.send(enqueue, grant.batch_id, grant)["outcome"])
        except RetryLater as later:
            due = time.time() + later.countdown  # not after the dispatcher's due: the wake asked at the end is this
            if dispatcher.settle(grant, Settle.DELAY, delay_s=later.countdown, reason=later.reason):
                offer_tickets(enqueue, 1)
            else:
                wake_at(enqueue, due)
            return "comes back"
    if dispatcher.settle(grant, Settle.DONE):
        offer_tickets(enqueue, 1)
    return outcome


def heartbeat(enqueue: Enqueue) -> int:
    """Renew the leases of the batches this process holds, and offer a ticket if work is due with none counted.
    Returns how many batches were renewed."""
    dispatcher = runtime.dispatcher()
    holding = held()
    renewed = dispatcher.renew(holding, runtime.sender_id()) if holding else 0
    offer_tickets(enqueue, 1)
    return renewed
