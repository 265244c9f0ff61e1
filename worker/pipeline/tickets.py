"""Placing batches with the dispatcher, and the send tickets that serve them (worker/store/dispatch.py).

    batch ──place──▶ dispatcher (per tenant and lane, in Redis) ◀──take── send ticket (worker/pipeline/dispatch.py)

Every stored batch that is to be sent is *placed*: queued in its tenant's lane with the tenant's limits from the
tenants file (its in-flight cap, its rate, its weight). A placement offers send tickets: `send_next` messages
that name no batch, each serving whatever batch of whatever tenant is due, so that a tenant's big file queues
batches, not messages in front of everyone else's. A ticket that finds nothing it may send now asks for one
delayed ticket (a *wake*) for the moment the first parked tenant or delayed batch may go.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable, Sequence

from worker.errors import ConfigurationError
from worker.pipeline import runtime
from worker.pipeline.queue import Enqueue, Message, TaskName
from worker.settings import get_settings
from worker.store.dispatch import Limits

__all__ = [
    "limits_of",
    "offer_tickets",
    "place",
    "place_all",
    "place_stored",
    "slot_freed",
    "ticket_message",
    "wait_for_a_freed_slot",
    "wake_at",
]

#: How long an idle ticket of a process waits for a slot given back in the same process before it ends.
SLOT_WAIT_S = 0.05


class _Freed:
    """Tickets of this process waiting for a slot to be given back, and the condition they wait on."""

    def __init__(self) -> None:
        self.condition = threading.Condition()
        self.waiting = 0
        self.freed = 0


_freed = _Freed()


def limits_of(tenant: str) -> Limits:
    """A tenant's limits from the tenants file (the defaults for a tenant that is no longer configured: its send
    reports it)."""
    settings = get_settings()
    try:
        config = settings.tenant(tenant)
    except ConfigurationError:
        return Limits(settings.tenant_max_in_flight, 0.0)
    cap = settings.tenant_max_in_flight if config.max_in_flight is None else config.max_in_flight
    rate = config.rate(settings)
    interval = runtime.limiter().interval(rate) if rate is not None else 0.0
    return Limits(cap, interval, config.weight)


def place(enqueue: Enqueue, tenant: str, batch_ids: Sequence[str], *, verify: bool = False) -> int:
    """Queue a tenant's stored batches with the dispatcher and offer a ticket for each; a batch placed already
    stays where it is (so placing again is harmless). Returns how many were queued now."""
    added = runtime.dispatcher().add(limits_of(tenant), batch_ids, verify=verify)
    if added:
        offer_tickets(enqueue, added)
    return added


def place_all(enqueue: Enqueue, batches: Iterable[tuple[str, str]], *, verify: bool = False) -> int:
    """Place (batch id, tenant) pairs of any tenants, each tenant's together. Returns how many were queued now."""
    tenants: dict[str, list[str]] = {}
    for batch_id, tenant in batches:
        tenants.setdefault(tenant, []).append(batch_id)
    return sum(place(enqueue, tenant, ids, verify=verify) for tenant, ids in tenants.items())


def place_stored(enqueue: Enqueue, batch_ids: Sequence[str]) -> int:
    """Place stored batches known by id only (a send message of an earlier version, an operator): each with its
    tenant. Returns how many were queued now."""
    heads = runtime.store().batch_heads(batch_ids)
    return place_all(enqueue, ((b, h.tenant) for b, h in zip(batch_ids, heads, strict=True) if h is not None))


def ticket_message(ticket: str, *, countdown: float | None = None) -> Message:
    """The send_next message of a ticket (a wake when it has a countdown)."""
    shown = repr({"wake_in_s": round(countdown, 3)} if countdown else {})
    return Message(TaskName.SEND_NEXT, args=[ticket], countdown=countdown, argsrepr=repr([ticket]), kwargsrepr=shown)


def offer_tickets(enqueue: Enqueue, want: int) -> int:
    """Publish up to `want` send tickets, as many as ERPSYNC_SEND_TICKETS leaves room for while work is queued or
    due. Returns how many were published."""
    want = min(want, get_settings().send_tickets)
    issued = runtime.dispatcher().issue_tickets([_ticket_id() for _ in range(max(0, want))])
    for ticket in issued:
        enqueue(ticket_message(ticket))
    return len(issued)


def slot_freed(enqueue: Enqueue) -> None:
    """A slot was given back and woke its tenant (it may send again): hand it to a ticket of this process that waits
    for one (`wait_for_a_freed_slot`), or else offer a new ticket. In-process, the hand-off costs no message: with a
    tenant at its cap, a sender's spare threads take its freed slots at once, as they did when threads waited for
    slots, without a ticket published and delivered for every request."""
    with _freed.condition:
        if _freed.waiting:
            _freed.freed += 1
            _freed.condition.notify()
            return
    offer_tickets(enqueue, 1)


def wait_for_a_freed_slot(timeout: float = SLOT_WAIT_S) -> bool:
    """An idle ticket (nothing may go now, and this process has requests in flight) waits a moment for one of them
    to give its slot back: True when one did (the ticket asks for a batch again), False after `timeout`. Never long:
    work of another tenant that arrives meanwhile waits at most this."""
    with _freed.condition:
        _freed.waiting += 1
        try:
            if not _freed.freed:
                _freed.condition.wait(timeout)
            if _freed.freed:
                _freed.freed -= 1
                return True
            return False
        finally:
            _freed.waiting -= 1


def wake_at(enqueue: Enqueue, due: float) -> None:
    """Make sure a ticket runs at `due` (epoch s): publish a delayed one unless one is scheduled for then already."""
    if runtime.dispatcher().schedule_wake(due):
        enqueue(ticket_message(_ticket_id(), countdown=max(0.0, due - time.time()) + 0.005))


def _ticket_id() -> str:
    return f"ticket-{uuid.uuid4().hex[:20]}"
