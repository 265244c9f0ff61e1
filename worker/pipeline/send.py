"""Sending, the pipeline's third step: POST one batch's array body to the ERP and record every document's outcome.

    batch ──▶ [send: lease, in-flight slot, POST, answer] ──▶ record   (or ──▶ reconcile ──▶ record)

`send` handles one batch the dispatcher handed out (worker/pipeline/dispatch.py, with its tenant's in-flight slot
and rate turn taken: a `Grant`); a batch that must come back later raises RetryLater, and the dispatcher delays it.

The batch's state in Redis is the truth about its request, whatever Celery redelivers:

    queued/waiting ──acquire──▶ sending (lease) ──mark sent──▶ POST ──answer──▶ done
                                   │
                                   └─ lease expired: the sender died (killed, lost machine) → taken over:
                                      request never marked sent → sent now; marked sent → the ERP may
                                      have created the documents: reconciled like an ambiguous answer
                                      (`unknown` where the ERP cannot be asked), never resent blindly

`sending` is written before anything is sent, `request: <attempt>:sent` just before the POST (restarting
the lease, so that it covers the whole request), and `done` (with the Keys) in the same transaction as the
results, so a crash at any point either leaves the request certainly unsent or makes its outcome a question
for the ERP.

When the ERP's answer leaves the outcome open — no answer, a 500, or SoftOne rejecting an array part-way
(it saves the documents before the rejected one and returns no Keys) — the batch goes to its `reconcile`
phase: after a short delay the ERP is asked what it holds (the connector's `look_up`); found documents get
the Key found, the rejected one fails with the ERP's message, documents certainly not saved go on in a new
batch, and anything doubtful is `unknown` and kept as a dead letter, with the connector's reason. Kinds
their ERP cannot be asked about (SoftOne orders, Fortnox offers, the invoice service) have their open
outcomes `unknown` dead letters at once.

Before the POST the batch holds the content signatures of its documents where its ERP finds documents by content
(worker/pipeline/lookalikes.py): look-alikes in flight elsewhere are split off into a batch of their own.

An authorisation the ERP refuses (AuthorizationRefused: a spent Fortnox refresh token, refused keys, a 401 after
renewal) pauses the tenant instead of failing the batch: the batch gives its attempt back and waits in its lane until
an operator authorises again (`erpsync tenants reauth`) or resumes the tenant (worker/pipeline/retry.py, `refused`).

An ERP that cannot be reached (connection refused, connect timeout, the body not sent whole: ConnectFailed)
received nothing. Waiting for it is not an attempt: the batch comes back with a backoff that grows with the
waits (up to ERPSYNC_RETRY_BACKOFF_CAP) for as long as the outage lasts, so an outage gives up no document;
the same holds for the look-ups of the reconcile phase. Attempts (ERPSYNC_RETRY_MAX_ATTEMPTS) count answers
of an ERP that is there and says "not now" (503, 500 before anything was saved, ...).

Only the attempt holding a batch may end it: `complete_batch` is fenced by the attempt, so a worker that outlived
its lease and was taken over writes nothing ("lease lost"). A look-up keeps its lease alive while it pages
through the ERP (worker/pipeline/reconcile.py's `keep_lease`): a busy day can take longer than a lease.

Observability: every line logged while a batch is handled carries its batch_id, tenant, target, kind, attempt
(and job_id when all its documents are of one job); each run that sends or looks up writes exactly one
`batch outcome` line (created/failed/unknown/reconciled/... or retrying/reconciling) with its counts, HTTP
status and duration. Batch outcomes and sizes are counted in the transaction that ends the batch, retries by
reason as they are scheduled (worker/observability/metrics.py).
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any, NamedTuple

from schemas import DocumentKind
from worker.connectors import Connector, Created
from worker.connectors.base import turn_taken
from worker.errors import (
    AmbiguousError,
    AuthorizationRefused,
    BatchRejected,
    ConfigurationError,
    ConnectFailed,
    ErpSyncError,
    LeaseLost,
    PermanentError,
    RetryLater,
    TransientError,
    UpdateAnswerLost,
    WaitingForRetryAfter,
)
from worker.failpoints import failpoint
from worker.observability import metrics
from worker.observability.logs import bind, fields, log_context
from worker.pipeline import runtime
from worker.pipeline.lookalikes import hold
from worker.pipeline.queue import Enqueue
from worker.pipeline.reconcile import reconcile
from worker.pipeline.record import (
    UNKNOWN_HINT,
    StoredBatch,
    end_all,
    end_batch,
    for_all,
    jobs_of,
    log_outcome,
    recorder_for,
)
from worker.pipeline.retry import reconcile_later, refused, retry_later, unreachable
from worker.pipeline.tickets import slot_freed
from worker.settings import get_settings
from worker.store.dispatch import Grant, Settle
from worker.store.errors import REDIS_ERRORS
from worker.store.records import ACT, UPDATE, BatchOutcome, LeaseState
from worker.store.results import ResultsStore

__all__ = ["send"]

log = logging.getLogger(__name__)


def send(enqueue: Enqueue, batch_id: str, grant: Grant | None = None) -> dict[str, Any]:
    """Send (or reconcile) one batch; idempotent: a done batch is not sent again, one in flight elsewhere waits.

    `grant`: what the dispatcher took for it (its tenant's in-flight slot, given back as soon as the ERP has
    answered, and its rate turn); without one (a test, an operator) the batch is sent outside the tenant's limits.
    Raises RetryLater when the batch must come back (a retry, the reconcile delay, a lease held elsewhere).
    Returns ids and counts only."""
    # Metrics recorded while handling the batch (its wait in its lane, its request's duration) ride on the
    # transaction that ends it.
    recorder = recorder_for(runtime.store())
    with log_context(batch_id=batch_id), metrics.deferred(recorder):
        if grant is not None and grant.ready_at is not None:
            recorder.observe(metrics.DISPATCH_WAIT, [grant.lane.value], max(0.0, time.time() - grant.ready_at))
        try:
            result = _run(enqueue, batch_id, time.perf_counter(), grant)
        except LeaseLost:
            # The worker that took the batch over settles it; what this attempt found is dropped, unwritten.
            log.warning("the batch was taken over by another worker while this attempt finished; nothing written")
            result = {"batch_id": batch_id, "outcome": BatchOutcome.LEASE_LOST.value}
    failpoint("batch.finished")  # tests: the outcome is written, the message not yet acknowledged
    return result


class _Lease(NamedTuple):
    """What taking a batch's lease found: its state, the value that goes with it (the attempt number once the
    batch is ours, the seconds another worker's lease still runs while it is busy) and the batch's fields."""

    state: LeaseState
    value: float
    data: dict[str, str]
    request_sent: bool = False  # taken over: whether the stopped attempt had marked its request sent


def _run(enqueue: Enqueue, batch_id: str, started: float, grant: Grant | None) -> dict[str, Any]:
    """Take the batch's lease (taking over one whose holder stopped), then send it or look it up under the
    dispatcher's grant."""
    store = runtime.store()
    sender = runtime.sender_id()
    # One round trip: the lease, and the batch (body included) as it is once acquired.
    lease = _Lease(*store.acquire_batch_data(batch_id, sender))
    if lease.state == LeaseState.MISSING:
        log.error("batch not found in the results store (expired?); nothing to do")
        return {"batch_id": batch_id, "outcome": BatchOutcome.MISSING.value}
    bind(tenant=lease.data.get("tenant"), target=lease.data.get("target", "softone"), kind=lease.data.get("kind"))
    if lease.state == LeaseState.EXPIRED:
        lease = _take_over_expired(store, batch_id, sender, lease.data)
    if lease.state == LeaseState.DONE:
        log.debug("batch already done; nothing to send")
        return {"batch_id": batch_id, "outcome": BatchOutcome.ALREADY_DONE.value}
    _come_back_unless_ours(store, lease)
    batch = StoredBatch(batch_id, lease.data, started)
    bind(**jobs_of(batch))
    attempt = int(lease.value)
    batch.attempt = attempt
    bind(attempt=attempt)
    if lease.state == LeaseState.TAKEN_OVER:
        settled = _take_over(enqueue, store, batch, attempt, lease.request_sent)
        if settled is not None:
            return settled
    return _in_flight(enqueue, store, batch, attempt, grant)


def _take_over_expired(store: ResultsStore, batch_id: str, sender: str, data: dict[str, str]) -> _Lease:
    """Take over a batch whose sender's lease ran out; if its holder finished it between our two calls, acquire
    it the usual way."""
    state, value, request_sent = store.take_over_batch(batch_id, sender)
    if state == LeaseState.MOVED:  # its holder finished it between our two calls
        state, value, data = store.acquire_batch_data(batch_id, sender)
    elif state == LeaseState.TAKEN_OVER:
        data = store.batch(batch_id) or {}  # as the take-over left it (a new attempt)
    return _Lease(state, value, data, request_sent)


def _come_back_unless_ours(store: ResultsStore, lease: _Lease) -> None:
    """RetryLater unless the batch is ours now (acquired, or taken over)."""
    if lease.state == LeaseState.BUSY:
        # Another worker holds the lease. Check again when it expires: if that worker died, we find out.
        log.debug("batch is being sent by another worker; checking again when its lease ends")
        recorder_for(store).retry(lease.data.get("target", "softone"), "lease_busy")
        countdown = min(lease.value + 1.0, get_settings().retry_backoff_cap)
        raise RetryLater(countdown, reason="lease")
    if lease.state not in (LeaseState.ACQUIRED, LeaseState.TAKEN_OVER):
        # `missing` (expired meanwhile) or a lease that changed hands twice between two calls: look again soon.
        log.warning("batch changed while being acquired (%s); looking again", lease.state)
        raise RetryLater(1.0, reason="lease")


class _Slot:
    """The tenant's in-flight slot the dispatcher took for this batch: given back (once) as soon as the ERP has
    answered, waking a tenant parked for one (handed to an idle ticket of this process, or a ticket is offered)."""

    def __init__(self, enqueue: Enqueue, grant: Grant | None) -> None:
        self.enqueue, self.grant = enqueue, grant

    def release(self) -> None:
        grant, self.grant = self.grant, None
        if grant is None:
            return
        try:
            if runtime.dispatcher().settle(grant, Settle.SLOT):
                slot_freed(self.enqueue)
        except REDIS_ERRORS:
            log.warning("could not give back the ERP slot of batch %s; its lease will end it", grant.batch_id)


def _in_flight(
    enqueue: Enqueue, store: ResultsStore, batch: StoredBatch, attempt: int, grant: Grant | None
) -> dict[str, Any]:
    """Send or look up the batch (its phase says which) under the dispatcher's grant: its slot, its rate turn."""
    slot = _Slot(enqueue, grant)
    try:
        with turn_taken(grant.turn_in if grant is not None else None):
            if batch.data.get("phase") == "reconcile":
                return reconcile(enqueue, store, batch, attempt)
            batch = hold(enqueue, store, batch, attempt)  # no look-alikes in flight: maybe only part of it
            return _send(enqueue, store, batch, attempt, slot)
    except (RetryLater, LeaseLost):
        raise
    except Exception as exc:
        raise _internal_error(store, batch, attempt, exc) from None
    finally:
        slot.release()


def _internal_error(store: ResultsStore, batch: StoredBatch, attempt: int, exc: Exception) -> RetryLater:
    """A bug or an outage of our own while the batch is `sending`: the POST may have gone out. Come back after
    the lease: the batch is then taken over like a dead worker's (reconciled if it was marked sent), never resent
    blindly. Called while `exc` is being handled (its traceback goes to the outcome line)."""
    countdown = get_settings().send_lease_seconds + 1
    log_outcome(batch, "internal_error", logging.ERROR, retry_in_s=countdown, exc_info=True)
    with contextlib.suppress(Exception):  # Redis itself may be what failed
        store.log_attempt(batch.id, {"attempt": attempt, "outcome": "internal error", "error": repr(exc)[:300]})
    recorder_for(store).retry(batch.target, "internal_error")
    return RetryLater(countdown, reason="lease")


def _take_over(
    enqueue: Enqueue, store: ResultsStore, batch: StoredBatch, attempt: int, request_sent: bool
) -> dict[str, Any] | None:
    """The worker holding this batch stopped before finishing it (killed, its machine lost) and its lease ran out.

    A request it never marked sent never left: the batch is simply sent now (None: carry on), as is a look-up
    (it only reads). A request marked sent may have reached the ERP, whose answer nobody read: that is an
    ambiguous outcome, settled the same way — the ERP is asked what it holds after the reconcile delay — or,
    where the ERP cannot be asked, the documents are `unknown` dead letters."""
    phase = batch.data.get("phase") or "send"
    store.log_attempt(
        batch.id, {"attempt": attempt, "outcome": "lease expired", "phase": phase, "request_sent": request_sent}
    )
    kind = DocumentKind(batch.kind)
    if phase == "reconcile" or not request_sent or _repeatable(batch, kind):
        extra = fields(phase=phase, request_sent=request_sent)
        log.warning("the worker holding this batch stopped before finishing it; taken over", extra=extra)
        return None
    try:
        can_look_up = runtime.connector(batch.tenant).can_look_up(kind) and batch.data.get("operation") != ACT
    except ConfigurationError:
        can_look_up = False  # a tenant no longer configured: nobody can ask its ERP
    lost = "the worker sending this batch stopped while its request was in flight"
    if not can_look_up:
        end_batch(
            enqueue,
            store,
            batch,
            BatchOutcome.UNKNOWN,
            unknown=for_all(batch, f"{lost} and {kind.value} documents cannot be looked up at the ERP; {UNKNOWN_HINT}"),
            reason="sender_lost",
        )
        return {"batch_id": batch.id, "outcome": BatchOutcome.UNKNOWN.value}
    raise reconcile_later(
        store, batch, why="lost", error=lost, reason="sender_lost", metric_reason="ambiguous", level=logging.WARNING
    )


def _post(connector: Connector, kind: DocumentKind, batch: StoredBatch) -> list[Created]:
    """Send the batch's request: a POST of its documents, or the update of the one document it carries (an upsert's:
    worker/pipeline/updates.py), whose lost answer is a reason to send it again, not to look it up."""
    body, operation = batch.data["body"].encode(), batch.data.get("operation")
    if operation == ACT:  # an action (worker/pipeline/actions.py): done unless the document shows it done
        action = batch.data["action"]
        try:
            return [connector.act(kind, batch.data["erp_key"], action, batch.external_ids[0], batch.id)]
        except AmbiguousError as exc:
            if not connector.can_verify(kind, action):
                raise
            raise UpdateAnswerLost(
                f"{exc}; asked again, after reading whether it was done", status=exc.status
            ) from None
    if operation != UPDATE:
        return connector.post_documents(kind, body, batch.id)
    try:
        return [connector.update_document(kind, batch.data["erp_key"], body, batch.id)]
    except AmbiguousError as exc:
        raise UpdateAnswerLost(f"{exc}; the update is sent again whole", status=exc.status) from None


def _repeatable(batch: StoredBatch, kind: DocumentKind) -> bool:
    """Whether the batch's request may be sent again after its answer was lost: an update (sent whole), or an action
    whose doing the ERP shows (it is read before the action is asked again)."""
    operation = batch.data.get("operation")
    if operation == UPDATE:
        return True
    if operation != ACT:
        return False
    try:
        return runtime.connector(batch.tenant).can_verify(kind, batch.data.get("action", ""))
    except ConfigurationError:
        return False


def _not_now(
    enqueue: Enqueue, store: ResultsStore, batch: StoredBatch, attempt: int, exc: TransientError
) -> dict[str, Any]:
    """The ERP said "not now" (or could not be reached, or an update's answer was lost): the batch comes back later
    (RetryLater), or ends after ERPSYNC_RETRY_MAX_ATTEMPTS attempts — failed, or `unknown` if an update may have been
    applied."""
    if isinstance(exc, WaitingForRetryAfter):
        raise retry_later(store, batch, attempt, exc, "send") from None
    if isinstance(exc, ConnectFailed):
        raise unreachable(store, batch, attempt, exc, "send") from None
    store.log_attempt(
        batch.id,
        {
            "attempt": attempt,
            "outcome": "transient",
            "status": exc.status,
            "error": str(exc),
            "retry_after": exc.retry_after,
        },
    )
    if attempt >= get_settings().retry_max_attempts:
        reason = f"gave up after {attempt} attempts; last error: {exc}"
        lost = isinstance(exc, UpdateAnswerLost)  # the update may have been applied
        if lost:
            reason += f"; {UNKNOWN_HINT}"
        return end_all(enqueue, store, batch, BatchOutcome.GAVE_UP, reason, exc, unknown=lost)
    raise retry_later(store, batch, attempt, exc, "send") from None


def _send(enqueue: Enqueue, store: ResultsStore, batch: StoredBatch, attempt: int, slot: _Slot) -> dict[str, Any]:
    """POST the batch and settle it by the answer. The tenant's slot is given back as soon as the ERP has
    answered (or the request failed): the cap counts requests in flight, and recording the outcome is ours."""
    settings = get_settings()
    kind = DocumentKind(batch.kind)
    started, started_at = time.perf_counter(), time.time()
    try:
        connector = runtime.connector(batch.tenant)
        # From here on the request may be out: a worker dying now leaves the batch to be reconciled, not resent.
        # The lease restarts (the process renews it while the request runs: worker/pipeline/dispatch.py).
        if not store.mark_sent(batch.id, attempt, settings.send_lease_seconds):
            log.warning("the batch was taken over by another worker (our lease ran out); not sending")
            return {"batch_id": batch.id, "outcome": BatchOutcome.LEASE_LOST.value}
        failpoint("post.sending")
        try:
            created = _post(connector, kind, batch)
        finally:
            slot.release()
        failpoint("post.answered")
    except TransientError as exc:
        return _not_now(enqueue, store, batch, attempt, exc)
    except (AmbiguousError, BatchRejected) as exc:
        rejected = isinstance(exc, BatchRejected)
        store.log_attempt(
            batch.id,
            {
                "attempt": attempt,
                "outcome": "rejected" if rejected else "ambiguous",
                "status": exc.status,
                "error": str(exc),
            },
        )
        error_type, status = type(exc).__name__, exc.status
        if rejected and len(batch.members) == 1:
            # The only document was the rejected one: nothing was saved.
            failed = {0: f"rejected by the ERP: {exc}"}
            end_batch(
                enqueue, store, batch, BatchOutcome.REJECTED, failed=failed, error_type=error_type, http_status=status
            )
            return {"batch_id": batch.id, "outcome": BatchOutcome.REJECTED.value}
        if batch.data.get("operation") == ACT or not connector.can_look_up(kind):
            what = "rejected this batch at an unidentified document" if rejected else "gave no usable answer"
            cannot = f"{kind.value} documents cannot be looked up there"
            if batch.data.get("operation") == ACT:
                cannot = f"whether it did {batch.data.get('action')} cannot be read from the {kind.value}"
            reason = f"the ERP {what} ({exc}) and {cannot}; {UNKNOWN_HINT}"
            return end_all(enqueue, store, batch, BatchOutcome.UNKNOWN, reason, exc, unknown=True)
        retry_reason = metrics.retry_reason(exc)
        raise reconcile_later(
            store,
            batch,
            why="rejected" if rejected else "ambiguous",
            error=str(exc),
            reason=retry_reason,
            metric_reason=retry_reason,
            error_type=error_type,
            http_status=status,
        ) from None
    except AuthorizationRefused as exc:  # nothing was created: the tenant waits for an operator, its documents too
        raise refused(store, batch, attempt, exc, "send", started_at=started_at) from None
    except (PermanentError, ConfigurationError) as exc:
        status = exc.status if isinstance(exc, PermanentError) else None
        store.log_attempt(batch.id, {"attempt": attempt, "outcome": "permanent", "status": status, "error": str(exc)})
        return end_all(enqueue, store, batch, BatchOutcome.FAILED, str(exc), exc)
    except ErpSyncError as exc:  # pragma: no cover - every branch of the hierarchy is handled above
        raise AssertionError(f"unhandled error type {type(exc).__name__}") from exc

    elapsed_ms = (time.perf_counter() - started) * 1000
    if len(created) != len(batch.members):
        store.log_attempt(batch.id, {"attempt": attempt, "outcome": "key mismatch", "keys": [c.key for c in created]})
        end_batch(
            enqueue,
            store,
            batch,
            BatchOutcome.UNKNOWN,
            unknown=for_all(
                batch,
                f"the ERP reported success with {len(created)} Keys for {len(batch.members)} documents; {UNKNOWN_HINT}",
            ),
            keys=len(created),
        )
        return {"batch_id": batch.id, "outcome": BatchOutcome.UNKNOWN.value}
    # The ERP created the documents: from here a Redis blip is waited out, never turned into an internal error.
    end_batch(
        enqueue,
        store,
        batch,
        BatchOutcome.CREATED,
        created=dict(enumerate(created)),
        attempt_log={"attempt": attempt, "outcome": "created", "keys": len(created), "ms": round(elapsed_ms)},
        request_ms=round(elapsed_ms),
    )
    return {"batch_id": batch.id, "outcome": BatchOutcome.CREATED.value, "documents": len(created)}
