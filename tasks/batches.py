"""`erpsync.send_batch`: POST one array body to the ERP and record every document's outcome.

`erpsync.send_batches` does the same for a few batches stored together (a big file's chunk), one after the
other, so that one Celery message serves several batches; a batch of it that must come back later comes back
alone, in a send_batch message.

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

An ERP that cannot be reached (connection refused, connect timeout, the body not sent whole: ConnectFailed)
received nothing. Waiting for it is not an attempt: the batch comes back with a backoff that grows with the
waits (up to ERPSYNC_RETRY_BACKOFF_CAP) for as long as the outage lasts, so an outage gives up no document;
the same holds for the look-ups of the reconcile phase. Attempts (ERPSYNC_RETRY_MAX_ATTEMPTS) count answers
of an ERP that is there and says "not now" (503, 500 before anything was saved, ...).

Only the attempt holding a batch may end it: `complete_batch` is fenced by the attempt, so a worker that outlived
its lease and was taken over writes nothing ("lease lost"). A look-up keeps its lease alive while it pages
through the ERP (_keep_lease): a busy day can take longer than a lease.

Observability: every line logged while a batch is handled carries its batch_id, tenant, target, kind, attempt
(and job_id when all its documents are of one job); each run that sends or looks up writes exactly one
`batch outcome` line (created/failed/unknown/reconciled/... or retrying/reconciling) with its counts, HTTP
status and duration. Batch outcomes and sizes are counted in the transaction that ends the batch, retries by
reason as they are scheduled (worker/metrics.py).
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import redis
from celery.exceptions import Retry

from schemas import DocumentKind
from worker import metrics, runtime
from worker.celery_app import app
from worker.connectors import LookupRequest
from worker.errors import (
    AmbiguousError,
    BatchRejected,
    ConfigurationError,
    ConnectFailed,
    ErpSyncError,
    PermanentError,
    TransientError,
    WaitingForRetryAfter,
)
from worker.failpoints import failpoint
from worker.inflight import Slot
from worker.logs import bind, fields, log_context
from worker.results import CREATED, FAILED, PENDING, UNKNOWN, BatchPlan, Record, ResultsStore
from worker.retry import backoff_seconds
from worker.settings import get_settings

log = logging.getLogger(__name__)

UNKNOWN_HINT = "the ERP may have created it: an operator must check before it is sent again"


class _Batch:
    """A stored batch: who is in it (job, position, ExternalId) and its body."""

    def __init__(self, batch_id: str, data: dict[str, str], started: float | None = None) -> None:
        self.id = batch_id
        self.data = data
        self.tenant = data["tenant"]
        self.kind = data["kind"]
        self.target = data.get("target", "softone")
        self.members: list[tuple[str, int]] = [(j, int(p)) for j, p in json.loads(data["members"])]
        self.external_ids: list[str] = json.loads(data["external_ids"])
        self.started = time.perf_counter() if started is None else started
        self.attempt: int | None = None  # the attempt holding the batch, once acquired: it fences the batch's end
        self._docs: list[dict[str, Any]] | None = None

    @property
    def docs(self) -> list[dict[str, Any]]:
        if self._docs is None:
            self._docs = json.loads(self.data["body"])
        return self._docs

    def owner(self, i: int) -> str:
        job_id, position = self.members[i]
        return f"{job_id}#{position}"

    def record(self, i: int, status: str, **fields: Any) -> tuple[str, int, Record]:
        job_id, position = self.members[i]
        fields.setdefault("batch_id", self.id)
        return job_id, position, Record(self.external_ids[i], status, **fields)

    def claim(self, i: int) -> tuple[str, str, str, str]:
        return self.tenant, self.kind, self.external_ids[i], self.owner(i)

    def dead_letter(self, i: int, status: str, reason: str, attempts: list[dict[str, Any]]) -> dict[str, Any]:
        job_id, position = self.members[i]
        return {
            "id": self.owner(i),
            "job_id": job_id,
            "position": position,
            "external_id": self.external_ids[i],
            "tenant": self.tenant,
            "kind": self.kind,
            "target": self.target,
            "status": status,
            "reason": reason,
            "batch_id": self.id,
            "document": self.docs[i],
            "attempts": attempts,
        }


class LeaseLost(Exception):
    """This attempt no longer holds its batch (it outlived its lease and another worker took it over)."""


def _write(operation: Any, attempts: int = 6) -> None:
    """Results must be written once the ERP has answered: retry Redis hiccups in-process for a while."""
    for attempt in range(1, attempts + 1):
        try:
            operation()
            return
        except (redis.ConnectionError, redis.TimeoutError):
            if attempt == attempts:
                raise
            time.sleep(min(10.0, 0.5 * 2**attempt))


def describe(
    tenant: str | None, target: str, kind: str | None, documents: int, *, phase: str = "send", batches: int = 1
) -> str:
    """The kwargsrepr of a send message (what Flower and Celery's log lines show): ids and counts only."""
    shown: dict[str, Any] = {"tenant": tenant, "target": target, "kind": kind}
    if batches > 1:
        shown["batches"] = batches
    return repr(shown | {"documents": documents, "phase": phase})


def _again(task: Any, batch_id: str, data: dict[str, str], countdown: float) -> Any:
    """Schedule this send again; the new message shows ids and counts like the first one."""
    shown = describe(data.get("tenant"), data.get("target", "softone"), data.get("kind"), int(data.get("size") or 0),
                     phase=data.get("phase") or "send")  # fmt: skip
    return task.retry(countdown=countdown, argsrepr=repr([batch_id]), kwargsrepr=shown)


def _jobs_of(batch: _Batch) -> dict[str, Any]:
    """job_id when every document of the batch is of one job (a big file), else how many jobs it serves."""
    jobs = {job_id for job_id, _ in batch.members}
    return {"job_id": next(iter(jobs))} if len(jobs) == 1 else {"jobs": len(jobs)}


def _log_outcome(
    batch: _Batch, outcome: str, level: int = logging.INFO, *, exc_info: bool = False, **values: Any
) -> None:
    """The one line per batch outcome (see the module docstring); the context adds batch_id, tenant, ...

    An error is named by its type and HTTP status, never its text: an ERP's message may quote the document
    (a customer number, a name). The text is in the documents' records, dead letters and the batch's log."""
    counts = {"created": 0, "failed": 0, "duplicate": 0, "unknown": 0}
    counts |= {k: values.pop(k) for k in list(counts) if k in values}
    log.log(
        level,
        "batch outcome",
        exc_info=exc_info,
        extra=fields(
            outcome=outcome,
            documents=len(batch.members),
            **counts,
            **values,
            duration_ms=round((time.perf_counter() - batch.started) * 1000),
        ),
    )


def _end(
    store: ResultsStore,
    batch: _Batch,
    outcome: str,
    *,
    created: dict[int, tuple[int, str | None]] | None = None,
    failed: dict[int, str] | None = None,
    unknown: dict[int, str] | None = None,
    resend: list[int] | None = None,
    attempt_log: dict[str, Any] | None = None,
    **log_fields: Any,
) -> None:
    """Write a batch's end in one transaction: Keys, failures (claims released), unknowns, dead letters for
    both, a follow-up batch for documents certainly not saved, and the batch's metrics; then its outcome line."""
    created, failed, unknown, resend = created or {}, failed or {}, unknown or {}, resend or []
    attempts = store.attempts(batch.id) if failed or unknown else []
    updates = [batch.record(i, CREATED, key=k, number=n) for i, (k, n) in created.items()]
    updates += [batch.record(i, FAILED, error=e) for i, e in failed.items()]
    updates += [batch.record(i, UNKNOWN, error=e) for i, e in unknown.items()]
    dead = [batch.dead_letter(i, FAILED, e, attempts) for i, e in failed.items()]
    dead += [batch.dead_letter(i, UNKNOWN, e, attempts) for i, e in unknown.items()]
    follow_up = []
    if resend:
        child_id = f"{batch.id}.r{batch.data.get('attempts', '0')}"
        follow_up.append(
            BatchPlan(
                batch_id=child_id,
                meta={
                    "tenant": batch.tenant,
                    "kind": batch.kind,
                    "target": batch.target,
                    "external_ids": json.dumps([batch.external_ids[i] for i in resend], ensure_ascii=False),
                    "high_water": batch.data.get("high_water", "0"),
                    "parent": batch.id,
                },
                members=[batch.members[i] for i in resend],
                body=json.dumps([batch.docs[i] for i in resend], ensure_ascii=False, separators=(",", ":")),
                records=[batch.record(i, PENDING, batch_id=child_id) for i in resend],
            )
        )
    held = metrics.take_held()  # the request's duration: written with the batch's end, or on its own below
    counters = [
        *metrics.count(store.p, metrics.BATCHES, (batch.tenant, batch.target, batch.kind, outcome.replace(" ", "_"))),
        *metrics.observe(store.p, metrics.BATCH_DOCUMENTS, (batch.target,), len(batch.members)),
        *held,
    ]
    written: list[bool] = []
    _write(
        lambda: written.append(
            store.complete_batch(
                batch.id,
                outcome,
                updates,
                created=[(*batch.claim(i)[:3], batch.owner(i), k, n) for i, (k, n) in created.items()],
                released=[batch.claim(i) for i in failed],
                dead=dead,
                follow_up=follow_up,
                counters=counters,
                attempt=batch.attempt,
                log=attempt_log,
            )
        )
    )
    if not written[-1]:
        _recorder(store).record(held)  # the request was made, whoever settles the batch
        if attempt_log is not None:  # what this attempt learnt stays in the batch's log for audits
            _write(lambda: store.log_attempt(batch.id, attempt_log))
        raise LeaseLost(batch.id)
    for plan in follow_up:
        from tasks.jobs import enqueue_send

        enqueue_send(plan.batch_id, batch.tenant, batch.kind, len(plan.members), target=batch.target)
    _log_outcome(
        batch,
        outcome.replace(" ", "_"),
        logging.WARNING if failed or unknown else logging.INFO,
        created=len(created),
        failed=len(failed),
        unknown=len(unknown),
        resent=len(resend),
        **log_fields,
    )


def _all(batch: _Batch, message: str) -> dict[int, str]:
    return dict.fromkeys(range(len(batch.members)), message)


@app.task(name="erpsync.send_batch", bind=True, max_retries=None)
def send_batch(self: Any, batch_id: str) -> dict[str, Any]:
    """Send (or reconcile) one batch; idempotent: a done batch is not sent again, one in flight elsewhere waits.

    Returns ids and counts only (Celery logs the return value)."""
    return _handle(self, batch_id)


@app.task(name="erpsync.send_batches", bind=True, max_retries=None)
def send_batches(self: Any, batch_ids: list[str]) -> dict[str, Any]:
    """Send several ready batches one after the other, in one message (ERPSYNC_SEND_GROUP_BATCHES): intake
    queues a big file's whole batches this way, because Celery's handling of a message costs as much CPU as
    sending a batch.

    Each batch is handled exactly as by send_batch, its state in Redis deciding what happens; one that must
    come back later (a retry, the reconcile delay, a lease held elsewhere) comes back alone, in a send_batch
    message of its own, and the group goes on. A redelivered group finds its done batches done."""
    outcomes: dict[str, int] = {}
    for n, batch_id in enumerate(batch_ids):
        try:
            outcome = _handle(_Alone(batch_id), batch_id)["outcome"]
        except Retry:
            outcome = "comes back alone"
        except BaseException:
            # An outage of our own (Redis gone while reading the batch): what follows in the group gets messages
            # of its own where the broker takes them; the recovery after reconnecting re-queues the rest.
            with contextlib.suppress(Exception):
                for rest in batch_ids[n + 1 :]:
                    send_batch.apply_async(args=[rest], argsrepr=repr([rest]))
            raise
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return {"batches": len(batch_ids), "outcomes": outcomes}


class _Alone:
    """The task a batch of a group answers to: `retry` queues that batch alone (send_batch), with the countdown
    and the ids-and-counts description a send_batch retry has, and returns the Retry for the group to catch."""

    def __init__(self, batch_id: str) -> None:
        self.batch_id = batch_id

    def retry(self, *, countdown: float, argsrepr: str, kwargsrepr: str) -> Retry:
        send_batch.apply_async(args=[self.batch_id], countdown=countdown, argsrepr=argsrepr, kwargsrepr=kwargsrepr)
        return Retry(f"batch {self.batch_id} comes back alone", when=countdown)


def _handle(task: Any, batch_id: str) -> dict[str, Any]:
    # Metrics recorded while handling the batch (its request's duration) ride on the transaction that ends it.
    with log_context(batch_id=batch_id), metrics.deferred(_recorder(runtime.store())):
        try:
            result = _run(task, batch_id, time.perf_counter())
        except LeaseLost:
            # The worker that took the batch over settles it; what this attempt found is dropped, unwritten.
            log.warning("the batch was taken over by another worker while this attempt finished; nothing written")
            result = {"batch_id": batch_id, "outcome": "lease lost"}
    failpoint("batch.finished")  # tests: the outcome is written, the message not yet acknowledged
    return result


def _run(task: Any, batch_id: str, started: float) -> dict[str, Any]:
    settings = get_settings()
    store = runtime.store()
    sender = runtime.sender_id()
    # One round trip: the lease, and the batch (body included) as it is once acquired.
    state, value, data = store.acquire_batch_data(batch_id, sender)
    if state == "missing":
        log.error("batch not found in the results store (expired?); nothing to do")
        return {"batch_id": batch_id, "outcome": "missing"}
    bind(tenant=data.get("tenant"), target=data.get("target", "softone"), kind=data.get("kind"))
    request_sent = False
    if state == "expired":
        state, value, request_sent = store.take_over_batch(batch_id, sender)
        if state == "moved":  # its holder finished it between our two calls
            state, value, data = store.acquire_batch_data(batch_id, sender)
        elif state == "taken over":
            data = store.batch(batch_id) or {}  # as the take-over left it (a new attempt)
    if state == "done":
        log.debug("batch already done; nothing to send")
        return {"batch_id": batch_id, "outcome": "already done"}
    if state == "busy":
        # Another worker holds the lease. Check again when it expires: if that worker died, we find out.
        log.debug("batch is being sent by another worker; checking again when its lease ends")
        _recorder(store).retry(data.get("target", "softone"), "lease_busy")
        raise _again(task, batch_id, data, countdown=min(value + 1.0, settings.retry_backoff_cap))
    if state not in ("acquired", "taken over"):
        # `missing` (expired meanwhile) or a lease that changed hands twice between two calls: look again soon.
        log.warning("batch changed while being acquired (%s); looking again", state)
        raise _again(task, batch_id, data, countdown=1.0)
    batch = _Batch(batch_id, data, started)
    bind(**_jobs_of(batch))
    attempt = int(value)
    batch.attempt = attempt
    bind(attempt=attempt)
    if state == "taken over":
        settled = _take_over(task, store, batch, attempt, request_sent)
        if settled is not None:
            return settled
    limit, wait, lease = _tenant_cap(batch.tenant), settings.tenant_slot_wait_seconds, settings.send_lease_seconds
    with runtime.inflight().slot(batch.tenant, f"{batch_id}:{attempt}", limit, lease, wait) as slot:
        if not slot:
            # The tenant has its cap of requests in flight: nothing was sent, so this turn is not an attempt.
            phase = data.get("phase") or "send"
            raise _not_sent(task, store, batch, phase, countdown=random.uniform(0.2, 1.0), reason="in_flight_cap")
        try:
            if data.get("phase") == "reconcile":
                return _reconcile(task, store, batch, attempt)
            return _send(task, store, batch, attempt, slot)
        except (Retry, LeaseLost):
            raise
        except Exception as exc:
            # A bug or an outage of our own while the batch is `sending`: the POST may have gone out. Come
            # back after the lease: the batch is then taken over like a dead worker's (reconciled if it was
            # marked sent), never resent blindly.
            countdown = settings.send_lease_seconds + 1
            _log_outcome(batch, "internal_error", logging.ERROR, retry_in_s=countdown, exc_info=True)
            with contextlib.suppress(Exception):  # Redis itself may be what failed
                store.log_attempt(batch_id, {"attempt": attempt, "outcome": "internal error",
                                             "error": repr(exc)[:300]})  # fmt: skip
            _recorder(store).retry(batch.target, "internal_error")
            raise _again(task, batch_id, data, countdown=countdown) from None


def _take_over(
    task: Any, store: ResultsStore, batch: _Batch, attempt: int, request_sent: bool
) -> dict[str, Any] | None:
    """The worker holding this batch stopped before finishing it (killed, its machine lost) and its lease ran out.

    A request it never marked sent never left: the batch is simply sent now (None: carry on), as is a look-up
    (it only reads). A request marked sent may have reached the ERP, whose answer nobody read: that is an
    ambiguous outcome, settled the same way — the ERP is asked what it holds after the reconcile delay — or,
    where the ERP cannot be asked, the documents are `unknown` dead letters."""
    settings = get_settings()
    phase = batch.data.get("phase") or "send"
    store.log_attempt(batch.id, {"attempt": attempt, "outcome": "lease expired", "phase": phase,
                                 "request_sent": request_sent})  # fmt: skip
    if phase == "reconcile" or not request_sent:
        extra = fields(phase=phase, request_sent=request_sent)
        log.warning("the worker holding this batch stopped before finishing it; taken over", extra=extra)
        return None
    kind = DocumentKind(batch.kind)
    try:
        can_look_up = runtime.connector(batch.tenant).can_look_up(kind)
    except ConfigurationError:
        can_look_up = False  # a tenant no longer configured: nobody can ask its ERP
    lost = "the worker sending this batch stopped while its request was in flight"
    if not can_look_up:
        _end(store, batch, "unknown",
             unknown=_all(batch, f"{lost} and {kind.value} documents cannot be looked up at the ERP; {UNKNOWN_HINT}"),
             reason="sender_lost")  # fmt: skip
        return {"batch_id": batch.id, "outcome": "unknown"}
    store.set_batch_state(batch.id, "waiting", phase="reconcile", reconcile_reason="lost", reconcile_error=lost)
    _log_outcome(batch, "reconciling", logging.WARNING, reason="sender_lost",
                 retry_in_s=settings.reconcile_delay_seconds)  # fmt: skip
    _recorder(store).retry(batch.target, "ambiguous")
    raise _again(task, batch.id, {**batch.data, "phase": "reconcile"}, countdown=settings.reconcile_delay_seconds)


def _recorder(store: ResultsStore) -> metrics.Recorder:
    """Metrics go where the store writes (its Redis client and key prefix)."""
    return metrics.Recorder(store.r, store.p)


def _tenant_cap(tenant: str) -> int:
    settings = get_settings()
    try:
        own = settings.tenant(tenant).max_in_flight
    except ConfigurationError:
        own = None  # the send itself reports the unknown tenant
    return settings.tenant_max_in_flight if own is None else own


def _not_sent(task: Any, store: ResultsStore, batch: _Batch, phase: str, countdown: float, reason: str) -> Any:
    """This turn sent nothing (a tenant pause, the in-flight cap): give the attempt back, come again."""
    store.uncount_attempt(batch.id)
    store.set_batch_state(batch.id, "waiting", phase=phase)
    log.debug("nothing sent (%s); trying again in %.1fs", reason, countdown)
    _recorder(store).retry(batch.target, reason)
    return _again(task, batch.id, batch.data, countdown=countdown)


def _retry_later(task: Any, store: ResultsStore, batch: _Batch, attempt: int, exc: TransientError, phase: str) -> Any:
    settings = get_settings()
    if isinstance(exc, WaitingForRetryAfter):  # nothing was sent: not an attempt
        countdown = (exc.retry_after or 0) + random.uniform(0.05, 0.5)
        return _not_sent(task, store, batch, phase, countdown=countdown, reason=metrics.retry_reason(exc))
    delay = backoff_seconds(
        attempt, base=settings.retry_backoff_base, cap=settings.retry_backoff_cap, retry_after=exc.retry_after
    )
    # `not_before` is when the ERP allowed us back (Retry-After); kept for audits.
    store.set_batch_state(batch.id, "waiting", phase=phase, not_before=f"{time.time() + delay:.3f}")
    reason = metrics.retry_reason(exc)
    _log_outcome(batch, "retrying", phase=phase, reason=reason, error_type=type(exc).__name__,
                 http_status=exc.status, retry_in_s=round(delay, 3))  # fmt: skip
    _recorder(store).retry(batch.target, reason)
    return _again(task, batch.id, batch.data, countdown=delay)


def _unreachable(task: Any, store: ResultsStore, batch: _Batch, attempt: int, exc: ConnectFailed, phase: str) -> Any:
    """Nothing reached the ERP: this turn was a wait for it to come back, not an attempt (see the module
    docstring). The backoff grows with the batch's consecutive waits, each logged as `unreachable`."""
    settings = get_settings()
    store.uncount_attempt(batch.id)
    waits = int(store.r.hincrby(store.batch_key(batch.id), "unreachable", 1))
    delay = backoff_seconds(waits, base=settings.retry_backoff_base, cap=settings.retry_backoff_cap)
    store.log_attempt(batch.id, {"attempt": attempt, "outcome": "unreachable", "phase": phase, "waits": waits,
                                 "error": str(exc)})  # fmt: skip
    store.set_batch_state(batch.id, "waiting", phase=phase, not_before=f"{time.time() + delay:.3f}")
    _log_outcome(batch, "retrying", phase=phase, reason="connection", error_type=type(exc).__name__,
                 counted=False, waits=waits, retry_in_s=round(delay, 3))  # fmt: skip
    _recorder(store).retry(batch.target, metrics.retry_reason(exc))
    return _again(task, batch.id, {**batch.data, "phase": phase}, countdown=delay)


def _send(task: Any, store: ResultsStore, batch: _Batch, attempt: int, slot: Slot) -> dict[str, Any]:
    """POST the batch and settle it by the answer. The tenant's slot is given back as soon as the ERP has
    answered (or the request failed): the cap counts requests in flight, and recording the outcome is ours."""
    settings = get_settings()
    kind = DocumentKind(batch.kind)
    started = time.perf_counter()
    try:
        connector = runtime.connector(batch.tenant)
        # From here on the request may be out: a worker dying now leaves the batch to be reconciled, not resent.
        # The lease restarts so that it covers the longest wait for a turn and the whole request.
        if not store.mark_sent(batch.id, attempt, settings.send_lease_seconds + settings.rate_limit_wait_seconds):
            log.warning("the batch was taken over by another worker (our lease ran out); not sending")
            return {"batch_id": batch.id, "outcome": "lease lost"}
        failpoint("post.sending")
        try:
            created = connector.post_documents(kind, batch.data["body"].encode(), batch.id)
        finally:
            slot.release()
        failpoint("post.answered")
    except TransientError as exc:
        if isinstance(exc, WaitingForRetryAfter):
            raise _retry_later(task, store, batch, attempt, exc, "send") from None
        if isinstance(exc, ConnectFailed):
            raise _unreachable(task, store, batch, attempt, exc, "send") from None
        store.log_attempt(batch.id, {"attempt": attempt, "outcome": "transient", "status": exc.status,
                                     "error": str(exc), "retry_after": exc.retry_after})  # fmt: skip
        if attempt >= settings.retry_max_attempts:
            _end(store, batch, "gave up", failed=_all(batch, f"gave up after {attempt} attempts; last error: {exc}"),
                 error_type=type(exc).__name__, http_status=exc.status)  # fmt: skip
            return {"batch_id": batch.id, "outcome": "gave up"}
        raise _retry_later(task, store, batch, attempt, exc, "send") from None
    except (AmbiguousError, BatchRejected) as exc:
        rejected = isinstance(exc, BatchRejected)
        store.log_attempt(batch.id, {"attempt": attempt, "outcome": "rejected" if rejected else "ambiguous",
                                     "status": exc.status, "error": str(exc)})  # fmt: skip
        why = {"error_type": type(exc).__name__, "http_status": exc.status}
        if rejected and len(batch.members) == 1:
            # The only document was the rejected one: nothing was saved.
            _end(store, batch, "rejected", failed={0: f"rejected by the ERP: {exc}"}, **why)
            return {"batch_id": batch.id, "outcome": "rejected"}
        if not connector.can_look_up(kind):
            what = "rejected this batch at an unidentified document" if rejected else "gave no usable answer"
            reason = f"the ERP {what} ({exc}) and {kind.value} documents cannot be looked up there; {UNKNOWN_HINT}"
            _end(store, batch, "unknown", unknown=_all(batch, reason), **why)
            return {"batch_id": batch.id, "outcome": "unknown"}
        store.set_batch_state(batch.id, "waiting", phase="reconcile", reconcile_reason="rejected" if rejected else
                              "ambiguous", reconcile_error=str(exc))  # fmt: skip
        retry_reason = metrics.retry_reason(exc)
        _log_outcome(batch, "reconciling", reason=retry_reason, retry_in_s=settings.reconcile_delay_seconds, **why)
        _recorder(store).retry(batch.target, retry_reason)
        raise _again(task, batch.id, {**batch.data, "phase": "reconcile"},
                     countdown=settings.reconcile_delay_seconds) from None  # fmt: skip
    except (PermanentError, ConfigurationError) as exc:
        status = exc.status if isinstance(exc, PermanentError) else None
        store.log_attempt(batch.id, {"attempt": attempt, "outcome": "permanent", "status": status, "error": str(exc)})
        _end(store, batch, "failed", failed=_all(batch, str(exc)), error_type=type(exc).__name__, http_status=status)
        return {"batch_id": batch.id, "outcome": "failed"}
    except ErpSyncError as exc:  # pragma: no cover - every branch of the hierarchy is handled above
        raise AssertionError(f"unhandled error type {type(exc).__name__}") from exc

    elapsed_ms = (time.perf_counter() - started) * 1000
    if len(created) != len(batch.members):
        store.log_attempt(batch.id, {"attempt": attempt, "outcome": "key mismatch", "keys": [c.key for c in created]})
        _end(store, batch, "unknown",
             unknown=_all(batch, f"the ERP reported success with {len(created)} Keys for {len(batch.members)} "
                                 f"documents; {UNKNOWN_HINT}"), keys=len(created))  # fmt: skip
        return {"batch_id": batch.id, "outcome": "unknown"}
    # The ERP created the documents: from here a Redis blip is waited out, never turned into an internal error.
    _end(store, batch, "created", created={i: (c.key, c.number) for i, c in enumerate(created)},
         attempt_log={"attempt": attempt, "outcome": "created", "keys": len(created), "ms": round(elapsed_ms)},
         request_ms=round(elapsed_ms))  # fmt: skip
    return {"batch_id": batch.id, "outcome": "created", "documents": len(created)}


@contextlib.contextmanager
def _keep_lease(store: ResultsStore, batch: _Batch, lease_seconds: float) -> Iterator[None]:
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
            except redis.RedisError:
                continue  # a Redis blip: try again at the next beat

    beat = threading.Thread(target=renew, name=f"lease-{batch.id}", daemon=True)
    beat.start()
    try:
        yield
    finally:
        stop.set()


def _reconcile(task: Any, store: ResultsStore, batch: _Batch, attempt: int) -> dict[str, Any]:
    """Ask the ERP what it saved of this batch and settle every document (see module docstring)."""
    settings = get_settings()
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
            with _keep_lease(store, batch, settings.send_lease_seconds):
                plan = runtime.connector(batch.tenant).look_up(request)
        except AmbiguousError as exc:
            # A look-up only reads: a lost answer to it is simply asked again.
            raise TransientError(str(exc), status=exc.status) from None
    except TransientError as exc:
        if isinstance(exc, WaitingForRetryAfter):
            raise _retry_later(task, store, batch, attempt, exc, "reconcile") from None
        if isinstance(exc, ConnectFailed):
            raise _unreachable(task, store, batch, attempt, exc, "reconcile") from None
        store.log_attempt(batch.id, {"attempt": attempt, "outcome": "lookup transient", "error": str(exc)})
        if attempt >= settings.retry_max_attempts:
            _end(store, batch, "unknown",
                 unknown=_all(batch, f"could not ask the ERP what it saved ({exc}); {UNKNOWN_HINT}"),
                 error_type=type(exc).__name__, http_status=exc.status)  # fmt: skip
            return {"batch_id": batch.id, "outcome": "unknown"}
        raise _retry_later(task, store, batch, attempt, exc, "reconcile") from None
    except ErpSyncError as exc:
        store.log_attempt(batch.id, {"attempt": attempt, "outcome": "lookup failed", "error": str(exc)})
        _end(store, batch, "unknown",
             unknown=_all(batch, f"could not ask the ERP what it saved ({exc}); {UNKNOWN_HINT}"),
             error_type=type(exc).__name__, http_status=getattr(exc, "status", None))  # fmt: skip
        return {"batch_id": batch.id, "outcome": "unknown"}

    created = {i: (key, None) for i, key in plan.created.items()}
    failed = {plan.rejected: f"rejected by the ERP: {erp_error}"} if plan.rejected is not None else {}
    unknown = dict.fromkeys(plan.doubtful, f"{plan.doubt}; {UNKNOWN_HINT}")
    resend = plan.resend
    store.log_attempt(batch.id, {"attempt": attempt, "outcome": "reconciled", "found": len(created),
                                 "failed": len(failed), "unknown": len(unknown), "resend": len(resend)})  # fmt: skip
    _end(store, batch, "reconciled", created=created, failed=failed, unknown=unknown, resend=resend)
    return {"batch_id": batch.id, "outcome": "reconciled", "found": len(created), "resend": len(resend)}
