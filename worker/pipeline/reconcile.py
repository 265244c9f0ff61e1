"""Reconciliation: ask the ERP what it saved of a batch whose answer left that open, and settle each document.

    send ──(no answer, a 500, an array rejected part-way)──▶ [reconcile after a delay] ──▶ record

Found documents get the Key found, the rejected one fails with the ERP's message, documents certainly not saved go
on in a new batch, and anything doubtful is `unknown` and kept as a dead letter, with the connector's reason. An
ERP that cannot be reached is waited for (worker/pipeline/retry.py). A look-up keeps its lease alive while it
pages through the ERP (`keep_lease`): a busy day can take longer than a lease.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

from schemas import DocumentKind
from worker.connectors import Created, LookupRequest
from worker.errors import (
    AmbiguousError,
    AuthorizationRefused,
    ConnectFailed,
    ErpSyncError,
    TransientError,
    WaitingForRetryAfter,
)
from worker.pipeline import runtime
from worker.pipeline.queue import Enqueue
from worker.pipeline.record import UNKNOWN_HINT, StoredBatch, end_all, end_batch
from worker.pipeline.retry import refused, retry_later, unreachable
from worker.settings import get_settings
from worker.store.errors import REDIS_ERRORS
from worker.store.records import BatchOutcome
from worker.store.results import ResultsStore

__all__ = ["keep_lease", "reconcile"]


@contextlib.contextmanager
def keep_lease(store: ResultsStore, batch: StoredBatch, lease_seconds: float) -> Iterator[None]:
    """Renew this attempt's lease every third of it while the block runs (a look-up pages through the ERP for as
    long as the day is big), so that no other worker takes the batch over from a live attempt."""
    if batch.attempt is None:
        yield
        return
    attempt, stop = batch.attempt, threading.Event()

    def renew() -> None:
        while not stop.wait(lease_seconds / 3):
            try:
                if not store.extend_lease(batch.id, attempt, lease_seconds):
                    return  # taken over after all: the fence in complete_batch keeps this attempt from writing
            except REDIS_ERRORS:
                continue  # a Redis blip: try again at the next beat

    beat = threading.Thread(target=renew, name=f"lease-{batch.id}", daemon=True)
    beat.start()
    try:
        yield
    finally:
        stop.set()


def reconcile(enqueue: Enqueue, store: ResultsStore, batch: StoredBatch, attempt: int) -> dict[str, Any]:
    """Ask the ERP what it saved of this batch and settle every document (see module docstring)."""
    settings = get_settings()
    started_at = time.time()
    rejected = batch.data.get("reconcile_reason") == "rejected"
    erp_error = batch.data.get("reconcile_error", "")
    request = LookupRequest(
        kind=DocumentKind(batch.kind),
        docs=batch.docs,
        external_ids=batch.external_ids,
        rejected=rejected,
        high_water=int(batch.data.get("high_water", "0") or 0),
        known_keys=lambda keys: store.known_keys(batch.tenant, batch.kind, keys),
        request_id=batch.id,
    )
    try:
        try:
            with keep_lease(store, batch, settings.send_lease_seconds):
                plan = runtime.connector(batch.tenant).look_up(request)
        except AmbiguousError as exc:
            # A look-up only reads: a lost answer to it is simply asked again.
            raise TransientError(str(exc), status=exc.status) from None
    except TransientError as exc:
        if isinstance(exc, WaitingForRetryAfter):
            raise retry_later(store, batch, attempt, exc, "reconcile") from None
        if isinstance(exc, ConnectFailed):
            raise unreachable(store, batch, attempt, exc, "reconcile") from None
        store.log_attempt(batch.id, {"attempt": attempt, "outcome": "lookup transient", "error": str(exc)})
        if attempt >= settings.retry_max_attempts:
            return _could_not_ask(enqueue, store, batch, exc)
        raise retry_later(store, batch, attempt, exc, "reconcile") from None
    except AuthorizationRefused as exc:  # the tenant is paused; the look-up waits for it (worker/pipeline/retry.py)
        raise refused(store, batch, attempt, exc, "reconcile", started_at=started_at) from None
    except ErpSyncError as exc:
        store.log_attempt(batch.id, {"attempt": attempt, "outcome": "lookup failed", "error": str(exc)})
        return _could_not_ask(enqueue, store, batch, exc)

    created = {i: Created(key) for i, key in plan.created.items()}
    failed = {plan.rejected: f"rejected by the ERP: {erp_error}"} if plan.rejected is not None else {}
    unknown = dict.fromkeys(plan.doubtful, f"{plan.doubt}; {UNKNOWN_HINT}")
    resend = plan.resend
    store.log_attempt(
        batch.id,
        {
            "attempt": attempt,
            "outcome": BatchOutcome.RECONCILED.value,
            "found": len(created),
            "failed": len(failed),
            "unknown": len(unknown),
            "resend": len(resend),
        },
    )
    end_batch(
        enqueue, store, batch, BatchOutcome.RECONCILED, created=created, failed=failed, unknown=unknown, resend=resend
    )
    return {
        "batch_id": batch.id,
        "outcome": BatchOutcome.RECONCILED.value,
        "found": len(created),
        "resend": len(resend),
    }


def _could_not_ask(enqueue: Enqueue, store: ResultsStore, batch: StoredBatch, exc: ErpSyncError) -> dict[str, Any]:
    """The ERP could not be asked (it kept failing, or refused the look-up): every document is `unknown`."""
    reason = f"could not ask the ERP what it saved ({exc}); {UNKNOWN_HINT}"
    return end_all(enqueue, store, batch, BatchOutcome.UNKNOWN, reason, exc, unknown=True)
