"""When a batch comes back later, and why: the pipeline's retry policy for sends and look-ups.

- An answer that says "not now" (503, a 500 before anything was saved, a timeout before sending) is an attempt:
  the batch comes back with exponential backoff (full jitter, capped, never before Retry-After) until
  ERPSYNC_RETRY_MAX_ATTEMPTS.
- An ERP that cannot be reached (ConnectFailed) received nothing: waiting for it is not an attempt, and the
  backoff grows with the batch's consecutive waits for as long as the outage lasts.
- A turn that sent nothing (a tenant's Retry-After pause, no rate-limit turn soon enough) gives its attempt back.
- An authorisation the ERP refuses (AuthorizationRefused: a spent Fortnox refresh token, refused keys, a 401 after
  renewal) created nothing and will be refused again until an operator authorises again: the tenant is paused
  (worker/store/tenants.py), the batch gives its attempt back and waits in its lane with the tenant's backlog, which
  the dispatcher holds while the pause lasts; no document fails (`refused`).

Each is raised as RetryLater (worker/errors.py), with what the batch waits for (outage, retry, pause, reconcile:
what `erpsync status` shows); the dispatcher delays the batch by it (worker/pipeline/dispatch.py).
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any

from worker.backoff import backoff_seconds
from worker.errors import AuthorizationRefused, ConnectFailed, RetryLater, TransientError, WaitingForRetryAfter
from worker.observability import metrics
from worker.pipeline.record import StoredBatch, log_outcome, recorder_for
from worker.settings import get_settings
from worker.store.records import BatchState
from worker.store.results import ResultsStore
from worker.store.tenants import TenantControls

__all__ = ["not_sent", "reconcile_later", "refused", "retry_later", "unreachable"]

log = logging.getLogger(__name__)


def reconcile_later(
    store: ResultsStore,
    batch: StoredBatch,
    *,
    why: str,
    error: str,
    reason: str,
    metric_reason: str,
    level: int = logging.INFO,
    **log_fields: Any,
) -> RetryLater:
    """The ERP may hold some of the batch's documents: look them up after the reconcile delay. `why` and `error`
    are what the look-up reads back (reconcile_reason, reconcile_error); `reason` goes to the outcome line,
    `metric_reason` to the retries metric."""
    delay = get_settings().reconcile_delay_seconds
    store.set_batch_state(batch.id, BatchState.WAITING, phase="reconcile", reconcile_reason=why, reconcile_error=error)
    log_outcome(batch, "reconciling", level, reason=reason, retry_in_s=delay, **log_fields)
    recorder_for(store).retry(batch.target, metric_reason)
    return RetryLater(delay, reason="reconcile")


def not_sent(
    store: ResultsStore, batch: StoredBatch, phase: str, countdown: float, reason: str, *, waits_for: str = "pause"
) -> RetryLater:
    """This turn sent nothing (the tenant's pause after a Retry-After, no rate-limit turn soon enough, its
    look-alikes in flight): give the attempt back, come again. `waits_for`: what operators are shown."""
    store.uncount_attempt(batch.id)
    store.set_batch_state(batch.id, BatchState.WAITING, phase=phase)
    log.debug("nothing sent (%s); trying again in %.1fs", reason, countdown)
    recorder_for(store).retry(batch.target, reason)
    return RetryLater(countdown, reason=waits_for)


def retry_later(store: ResultsStore, batch: StoredBatch, attempt: int, exc: TransientError, phase: str) -> RetryLater:
    settings = get_settings()
    if isinstance(exc, WaitingForRetryAfter):  # nothing was sent: not an attempt
        countdown = (exc.retry_after or 0) + random.uniform(0.05, 0.5)
        return not_sent(store, batch, phase, countdown=countdown, reason=metrics.retry_reason(exc))
    delay = backoff_seconds(
        attempt, base=settings.retry_backoff_base, cap=settings.retry_backoff_cap, retry_after=exc.retry_after
    )
    # `not_before` is when the ERP allowed us back (Retry-After); kept for audits.
    store.set_batch_state(batch.id, BatchState.WAITING, phase=phase, not_before=f"{time.time() + delay:.3f}")
    reason = metrics.retry_reason(exc)
    log_outcome(
        batch,
        "retrying",
        phase=phase,
        reason=reason,
        error_type=type(exc).__name__,
        http_status=exc.status,
        retry_in_s=round(delay, 3),
    )
    recorder_for(store).retry(batch.target, reason)
    return RetryLater(delay, reason="retry")


def unreachable(store: ResultsStore, batch: StoredBatch, attempt: int, exc: ConnectFailed, phase: str) -> RetryLater:
    """Nothing reached the ERP: this turn was a wait for it to come back, not an attempt (see the module
    docstring). The backoff grows with the batch's consecutive waits, each logged as `unreachable`."""
    settings = get_settings()
    store.uncount_attempt(batch.id)
    waits = store.count_unreachable(batch.id)
    delay = backoff_seconds(waits, base=settings.retry_backoff_base, cap=settings.retry_backoff_cap)
    store.log_attempt(
        batch.id, {"attempt": attempt, "outcome": "unreachable", "phase": phase, "waits": waits, "error": str(exc)}
    )
    store.set_batch_state(batch.id, BatchState.WAITING, phase=phase, not_before=f"{time.time() + delay:.3f}")
    log_outcome(
        batch,
        "retrying",
        phase=phase,
        reason="connection",
        error_type=type(exc).__name__,
        counted=False,
        waits=waits,
        retry_in_s=round(delay, 3),
    )
    recorder_for(store).retry(batch.target, metrics.retry_reason(exc))
    return RetryLater(delay, reason="outage")


def refused(
    store: ResultsStore, batch: StoredBatch, attempt: int, exc: AuthorizationRefused, phase: str, *, started_at: float
) -> RetryLater:
    """The ERP refused the tenant's authorisation (see the module docstring): pause the tenant by `auth` with the
    error's short reason (unless an operator gave new credentials after this attempt started at `started_at`, epoch
    s), give the attempt back and put the batch back in its lane at once: the dispatcher holds it there while the
    tenant is paused, shown as what it waits for (`paused`)."""
    settings = get_settings()
    recorded = TenantControls(store.r, settings.key_prefix).refused(batch.tenant, exc.reason, started_at=started_at)
    store.log_attempt(
        batch.id,
        {"attempt": attempt, "outcome": "auth refused", "phase": phase, "status": exc.status, "error": str(exc)},
    )
    log_outcome(
        batch,
        "paused",
        logging.WARNING,
        phase=phase,
        reason="auth",
        error_type=type(exc).__name__,
        http_status=exc.status,
        tenant_paused=recorded,
    )
    return not_sent(store, batch, phase, countdown=0.0, reason=metrics.retry_reason(exc), waits_for="paused")
