"""`erpsync.send_batch`: POST one array body to the ERP and record every document's outcome.

The batch's state in Redis is the truth about its request, whatever Celery redelivers:

    queued/waiting ──acquire──▶ sending (lease) ──answer──▶ done
                                   │
                                   └─ lease expired: the sender died with the request in flight, the
                                      ERP may have created the documents → `unknown`, never resent blindly

`sending` is written before the POST and `done` (with the Keys) in the same transaction as the results,
so a crash at any point either leaves the request unsent or makes its outcome known to be uncertain.

When the ERP's answer leaves the outcome open — no answer, a 500, or SoftOne rejecting an array part-way
(it saves the documents before the rejected one and returns no Keys) — the batch goes to its `reconcile`
phase: after a short delay the ERP is asked what it holds (the connector's `look_up`); found documents get
the Key found, the rejected one fails with the ERP's message, documents certainly not saved go on in a new
batch, and anything doubtful is `unknown` and kept as a dead letter, with the connector's reason. Kinds
their ERP cannot be asked about (SoftOne orders, Fortnox offers, the invoice service) have their open
outcomes `unknown` dead letters at once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import time
from typing import Any

import redis
from celery.exceptions import Retry

from schemas import DocumentKind
from worker import runtime
from worker.celery_app import app
from worker.connectors import LookupRequest
from worker.errors import (
    AmbiguousError,
    BatchRejected,
    ConfigurationError,
    ErpSyncError,
    PermanentError,
    TransientError,
    WaitingForRetryAfter,
)
from worker.results import CREATED, FAILED, PENDING, UNKNOWN, BatchPlan, Record, ResultsStore
from worker.retry import backoff_seconds
from worker.settings import get_settings

log = logging.getLogger(__name__)

UNKNOWN_HINT = "the ERP may have created it: an operator must check before it is sent again"


class _Batch:
    """A stored batch: who is in it (job, position, ExternalId) and its body."""

    def __init__(self, batch_id: str, data: dict[str, str]) -> None:
        self.id = batch_id
        self.data = data
        self.tenant = data["tenant"]
        self.kind = data["kind"]
        self.members: list[tuple[str, int]] = [(j, int(p)) for j, p in json.loads(data["members"])]
        self.external_ids: list[str] = json.loads(data["external_ids"])
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
            "target": self.data.get("target", "softone"),
            "status": status,
            "reason": reason,
            "batch_id": self.id,
            "document": self.docs[i],
            "attempts": attempts,
        }


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


def _end(
    store: ResultsStore,
    batch: _Batch,
    outcome: str,
    *,
    created: dict[int, tuple[int, str | None]] | None = None,
    failed: dict[int, str] | None = None,
    unknown: dict[int, str] | None = None,
    resend: list[int] | None = None,
) -> None:
    """Write a batch's end in one transaction: Keys, failures (claims released), unknowns, dead letters for
    both, and a follow-up batch for documents certainly not saved."""
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
                    "target": batch.data.get("target", "softone"),
                    "external_ids": json.dumps([batch.external_ids[i] for i in resend], ensure_ascii=False),
                    "high_water": batch.data.get("high_water", "0"),
                    "parent": batch.id,
                },
                members=[batch.members[i] for i in resend],
                body=json.dumps([batch.docs[i] for i in resend], ensure_ascii=False, separators=(",", ":")),
                records=[batch.record(i, PENDING, batch_id=child_id) for i in resend],
            )
        )
    _write(
        lambda: store.complete_batch(
            batch.id,
            outcome,
            updates,
            created=[(*batch.claim(i)[:3], batch.owner(i), k, n) for i, (k, n) in created.items()],
            released=[batch.claim(i) for i in failed],
            dead=dead,
            follow_up=follow_up,
        )
    )
    for plan in follow_up:
        from tasks.jobs import enqueue_send

        enqueue_send(plan.batch_id, batch.tenant, batch.kind, len(plan.members))
    log.log(
        logging.INFO if not (failed or unknown) else logging.WARNING,
        "batch=%s tenant=%s kind=%s documents=%d outcome=%s created=%d failed=%d unknown=%d resent=%d",
        batch.id, batch.tenant, batch.kind, len(batch.members), outcome, len(created), len(failed), len(unknown),
        len(resend),
    )  # fmt: skip


def _all(batch: _Batch, message: str) -> dict[int, str]:
    return dict.fromkeys(range(len(batch.members)), message)


@app.task(name="erpsync.send_batch", bind=True, max_retries=None)
def send_batch(self: Any, batch_id: str) -> dict[str, Any]:
    """Send (or reconcile) one batch; idempotent: a done batch is not sent again, one in flight elsewhere waits."""
    settings = get_settings()
    store = runtime.store()
    if store.batch(batch_id) is None:
        log.error("batch=%s not found in the results store (expired?); nothing to do", batch_id)
        return {"batch_id": batch_id, "outcome": "missing"}
    state, value = store.acquire_batch(batch_id, runtime.sender_id())
    if state == "done":
        return {"batch_id": batch_id, "outcome": "already done"}
    if state == "busy":
        # Another worker holds the lease. Check again when it expires: if that worker died, we find out.
        raise self.retry(countdown=min(value + 1.0, settings.retry_backoff_cap))
    data = store.batch(batch_id) or {}
    batch = _Batch(batch_id, data)
    if state == "expired":
        store.log_attempt(batch_id, {"outcome": "lease expired"})
        _end(store, batch, "unknown",
             unknown=_all(batch, f"the worker sending this batch stopped while its request was in flight; "
                                 f"{UNKNOWN_HINT}"))  # fmt: skip
        return {"batch_id": batch_id, "outcome": "unknown"}

    attempt = int(value)
    limit, wait = _tenant_cap(batch.tenant), settings.tenant_slot_wait_seconds
    with runtime.inflight().slot(batch.tenant, f"{batch_id}:{attempt}", limit, settings.send_lease_seconds, wait) as ok:
        if not ok:
            # The tenant has its cap of requests in flight: nothing was sent, so this turn is not an attempt.
            raise _not_sent(self, store, batch, data.get("phase") or "send", countdown=random.uniform(0.2, 1.0))
        try:
            if data.get("phase") == "reconcile":
                return _reconcile(self, store, batch, attempt)
            return _send(self, store, batch, attempt)
        except Retry:
            raise
        except Exception as exc:
            # A bug or an outage of our own while the batch is `sending`: the POST may have gone out. Come
            # back after the lease: the batch is then found `expired` and its documents `unknown`, never resent.
            log.exception("batch=%s internal error while sending; will be settled after the lease", batch_id)
            with contextlib.suppress(Exception):  # Redis itself may be what failed
                store.log_attempt(batch_id, {"attempt": attempt, "outcome": "internal error",
                                             "error": repr(exc)[:300]})  # fmt: skip
            raise self.retry(countdown=settings.send_lease_seconds + 1) from None


def _tenant_cap(tenant: str) -> int:
    settings = get_settings()
    try:
        own = settings.tenant(tenant).max_in_flight
    except ConfigurationError:
        own = None  # the send itself reports the unknown tenant
    return settings.tenant_max_in_flight if own is None else own


def _not_sent(task: Any, store: ResultsStore, batch: _Batch, phase: str, countdown: float) -> Any:
    """This turn sent nothing (a tenant pause, the in-flight cap): give the attempt back, come again."""
    store.uncount_attempt(batch.id)
    store.set_batch_state(batch.id, "waiting", phase=phase)
    return task.retry(countdown=countdown)


def _retry_later(task: Any, store: ResultsStore, batch: _Batch, attempt: int, exc: TransientError, phase: str) -> Any:
    settings = get_settings()
    if isinstance(exc, WaitingForRetryAfter):  # nothing was sent: not an attempt
        return _not_sent(task, store, batch, phase, countdown=(exc.retry_after or 0) + random.uniform(0.05, 0.5))
    delay = backoff_seconds(
        attempt, base=settings.retry_backoff_base, cap=settings.retry_backoff_cap, retry_after=exc.retry_after
    )
    # `not_before` is when the ERP allowed us back (Retry-After); kept for audits.
    store.set_batch_state(batch.id, "waiting", phase=phase, not_before=f"{time.time() + delay:.3f}")
    log.info("batch=%s attempt=%d %s, retry in %.1fs: %s", batch.id, attempt, type(exc).__name__, delay, exc)
    return task.retry(countdown=delay)


def _send(task: Any, store: ResultsStore, batch: _Batch, attempt: int) -> dict[str, Any]:
    settings = get_settings()
    kind = DocumentKind(batch.kind)
    started = time.perf_counter()
    try:
        connector = runtime.connector(batch.tenant)
        created = connector.post_documents(kind, batch.data["body"].encode(), batch.id)
    except TransientError as exc:
        if isinstance(exc, WaitingForRetryAfter):
            raise _retry_later(task, store, batch, attempt, exc, "send") from None
        store.log_attempt(batch.id, {"attempt": attempt, "outcome": "transient", "status": exc.status,
                                     "error": str(exc), "retry_after": exc.retry_after})  # fmt: skip
        if attempt >= settings.retry_max_attempts:
            _end(store, batch, "gave up", failed=_all(batch, f"gave up after {attempt} attempts; last error: {exc}"))
            return {"batch_id": batch.id, "outcome": "gave up"}
        raise _retry_later(task, store, batch, attempt, exc, "send") from None
    except (AmbiguousError, BatchRejected) as exc:
        rejected = isinstance(exc, BatchRejected)
        store.log_attempt(batch.id, {"attempt": attempt, "outcome": "rejected" if rejected else "ambiguous",
                                     "status": exc.status, "error": str(exc)})  # fmt: skip
        if rejected and len(batch.members) == 1:
            # The only document was the rejected one: nothing was saved.
            _end(store, batch, "rejected", failed={0: f"rejected by the ERP: {exc}"})
            return {"batch_id": batch.id, "outcome": "rejected"}
        if not connector.can_look_up(kind):
            what = "rejected this batch at an unidentified document" if rejected else "gave no usable answer"
            reason = f"the ERP {what} ({exc}) and {kind.value} documents cannot be looked up there; {UNKNOWN_HINT}"
            _end(store, batch, "unknown", unknown=_all(batch, reason))
            return {"batch_id": batch.id, "outcome": "unknown"}
        store.set_batch_state(batch.id, "waiting", phase="reconcile", reconcile_reason="rejected" if rejected else
                              "ambiguous", reconcile_error=str(exc))  # fmt: skip
        raise task.retry(countdown=settings.reconcile_delay_seconds) from None
    except (PermanentError, ConfigurationError) as exc:
        status = exc.status if isinstance(exc, PermanentError) else None
        store.log_attempt(batch.id, {"attempt": attempt, "outcome": "permanent", "status": status, "error": str(exc)})
        _end(store, batch, "failed", failed=_all(batch, str(exc)))
        return {"batch_id": batch.id, "outcome": "failed"}
    except ErpSyncError as exc:  # pragma: no cover - every branch of the hierarchy is handled above
        raise AssertionError(f"unhandled error type {type(exc).__name__}") from exc

    elapsed_ms = (time.perf_counter() - started) * 1000
    if len(created) != len(batch.members):
        store.log_attempt(batch.id, {"attempt": attempt, "outcome": "key mismatch", "keys": [c.key for c in created]})
        _end(store, batch, "unknown",
             unknown=_all(batch, f"the ERP reported success with {len(created)} Keys for {len(batch.members)} "
                                 f"documents; {UNKNOWN_HINT}"))  # fmt: skip
        return {"batch_id": batch.id, "outcome": "unknown"}
    store.log_attempt(batch.id, {"attempt": attempt, "outcome": "created", "keys": len(created),
                                 "ms": round(elapsed_ms)})  # fmt: skip
    _end(store, batch, "created", created={i: (c.key, c.number) for i, c in enumerate(created)})
    return {"batch_id": batch.id, "outcome": "created", "documents": len(created)}


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
            plan = runtime.connector(batch.tenant).look_up(request)
        except AmbiguousError as exc:
            # A look-up only reads: a lost answer to it is simply asked again.
            raise TransientError(str(exc), status=exc.status) from None
    except TransientError as exc:
        if isinstance(exc, WaitingForRetryAfter):
            raise _retry_later(task, store, batch, attempt, exc, "reconcile") from None
        store.log_attempt(batch.id, {"attempt": attempt, "outcome": "lookup transient", "error": str(exc)})
        if attempt >= settings.retry_max_attempts:
            _end(store, batch, "unknown",
                 unknown=_all(batch, f"could not ask the ERP what it saved ({exc}); {UNKNOWN_HINT}"))  # fmt: skip
            return {"batch_id": batch.id, "outcome": "unknown"}
        raise _retry_later(task, store, batch, attempt, exc, "reconcile") from None
    except ErpSyncError as exc:
        store.log_attempt(batch.id, {"attempt": attempt, "outcome": "lookup failed", "error": str(exc)})
        _end(
            store, batch, "unknown", unknown=_all(batch, f"could not ask the ERP what it saved ({exc}); {UNKNOWN_HINT}")
        )
        return {"batch_id": batch.id, "outcome": "unknown"}

    created = {i: (key, None) for i, key in plan.created.items()}
    failed = {plan.rejected: f"rejected by the ERP: {erp_error}"} if plan.rejected is not None else {}
    unknown = dict.fromkeys(plan.doubtful, f"{plan.doubt}; {UNKNOWN_HINT}")
    resend = plan.resend
    store.log_attempt(batch.id, {"attempt": attempt, "outcome": "reconciled", "found": len(created),
                                 "failed": len(failed), "unknown": len(unknown), "resend": len(resend)})  # fmt: skip
    _end(store, batch, "reconciled", created=created, failed=failed, unknown=unknown, resend=resend)
    return {"batch_id": batch.id, "outcome": "reconciled", "found": len(created), "resend": len(resend)}
