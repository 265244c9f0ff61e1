"""`erpsync.send_batch`: POST one array body to the ERP and record every document's outcome.

The batch's state in Redis is the truth about what happened to the request, whatever Celery redelivers:

    queued/waiting ──acquire──▶ sending (lease) ──answer──▶ done
                                   │
                                   └─ lease expired: the sender died with the request in flight, the
                                      ERP may have created the documents → `unknown`, never resent blindly

`sending` is written before the POST and `done` (with the Keys) in the same transaction as the results,
so a crash at any point either leaves the request unsent or makes its outcome known to be uncertain.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from typing import Any

import redis
from celery.exceptions import Retry

from schemas import DocumentKind
from worker import runtime
from worker.celery_app import app
from worker.errors import (
    AmbiguousError,
    BatchRejected,
    ConfigurationError,
    ErpSyncError,
    PermanentError,
    TransientError,
)
from worker.results import CREATED, FAILED, UNKNOWN, Record, ResultsStore
from worker.retry import backoff_seconds
from worker.settings import get_settings

log = logging.getLogger(__name__)

RECONCILE_HINT = "the ERP may have created it: check before re-sending (reconciliation)"


class _Batch:
    """A stored batch: who is in it (job, position, ExternalId)."""

    def __init__(self, batch_id: str, data: dict[str, str]) -> None:
        self.id = batch_id
        self.tenant = data["tenant"]
        self.kind = data["kind"]
        self.members: list[tuple[str, int]] = [(j, int(p)) for j, p in json.loads(data["members"])]
        self.external_ids: list[str] = json.loads(data["external_ids"])

    def records(self, status: str, *, error: str | None = None) -> list[tuple[str, int, Record]]:
        return [
            (job_id, pos, Record(x, status, error=error, batch_id=self.id))
            for (job_id, pos), x in zip(self.members, self.external_ids, strict=True)
        ]

    def claims(self) -> list[tuple[str, str, str, str]]:
        return [
            (self.tenant, self.kind, x, f"{j}#{p}") for (j, p), x in zip(self.members, self.external_ids, strict=True)
        ]


def _finish(store: ResultsStore, batch: _Batch, outcome: str, status: str, error: str | None) -> None:
    """End a batch in which no document was created (failed: claims released) or whose fate is unknown."""
    released = batch.claims() if status == FAILED else []
    _write(lambda: store.complete_batch(batch.id, outcome, batch.records(status, error=error), released=released))
    log.warning(
        "batch=%s tenant=%s kind=%s documents=%d outcome=%s error=%s",
        batch.id,
        batch.tenant,
        batch.kind,
        len(batch.members),
        outcome,
        error,
    )


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


@app.task(name="erpsync.send_batch", bind=True, max_retries=None)
def send_batch(self: Any, batch_id: str) -> dict[str, Any]:
    """Send one batch (idempotent: a done batch is not sent again, a batch in flight elsewhere waits)."""
    settings = get_settings()
    store = runtime.store()
    data = store.batch(batch_id)
    if data is None:
        log.error("batch=%s not found in the results store (expired?); nothing to do", batch_id)
        return {"batch_id": batch_id, "outcome": "missing"}
    state, value = store.acquire_batch(batch_id, runtime.sender_id())
    if state == "done":
        return {"batch_id": batch_id, "outcome": "already done"}
    if state == "busy":
        # Another worker holds the lease. Check again when it expires: if that worker died, we find out.
        raise self.retry(countdown=min(value + 1.0, settings.retry_backoff_cap))
    batch = _Batch(batch_id, data)
    if state == "expired":
        store.log_attempt(batch_id, {"outcome": "lease expired"})
        _finish(
            store,
            batch,
            "unknown",
            UNKNOWN,
            f"the worker sending this batch stopped while the request was in flight; {RECONCILE_HINT}",
        )
        return {"batch_id": batch_id, "outcome": "unknown"}

    try:
        return _send(self, store, batch, data["body"], attempt=int(value))
    except Retry:
        raise
    except Exception as exc:
        # A bug or an outage of our own while the batch is `sending`: the POST may have gone out. Come back
        # after the lease: the batch is then found `expired` and its documents `unknown`, never resent.
        log.exception("batch=%s internal error while sending; will be settled after the lease", batch_id)
        with contextlib.suppress(Exception):  # Redis itself may be what failed
            store.log_attempt(batch_id, {"attempt": int(value), "outcome": "internal error", "error": repr(exc)[:300]})
        raise self.retry(countdown=settings.send_lease_seconds + 1) from None


def _send(task: Any, store: ResultsStore, batch: _Batch, body: str, *, attempt: int) -> dict[str, Any]:
    settings = get_settings()
    batch_id = batch.id
    kind = DocumentKind(batch.kind)
    started = time.perf_counter()
    try:
        result = runtime.connector(batch.tenant).post_documents(kind, body.encode())
    except TransientError as exc:
        store.log_attempt(
            batch_id, {"attempt": attempt, "outcome": "transient", "status": exc.status, "error": str(exc)}
        )
        if attempt >= settings.retry_max_attempts:
            _finish(store, batch, "gave up", FAILED, f"gave up after {attempt} attempts; last error: {exc}")
            return {"batch_id": batch_id, "outcome": "gave up"}
        delay = backoff_seconds(
            attempt, base=settings.retry_backoff_base, cap=settings.retry_backoff_cap, retry_after=exc.retry_after
        )
        store.set_batch_state(batch_id, "waiting")
        log.info("batch=%s attempt=%d transient error, retry in %.1fs: %s", batch_id, attempt, delay, exc)
        raise task.retry(countdown=delay) from None
    except AmbiguousError as exc:
        store.log_attempt(
            batch_id, {"attempt": attempt, "outcome": "ambiguous", "status": exc.status, "error": str(exc)}
        )
        _finish(store, batch, "unknown", UNKNOWN, f"{exc}; {RECONCILE_HINT}")
        return {"batch_id": batch_id, "outcome": "unknown"}
    except BatchRejected as exc:
        store.log_attempt(
            batch_id, {"attempt": attempt, "outcome": "rejected", "error": str(exc), "error_number": exc.error_number}
        )
        if len(batch.members) == 1:
            # The only document was the rejected one: nothing was saved.
            _finish(store, batch, "rejected", FAILED, f"rejected by the ERP: {exc}")
        else:
            # SoftOne saves an array in order up to the rejected document and does not say which one
            # that was: some of these documents exist now. Neither "created" nor "failed" is true.
            _finish(
                store,
                batch,
                "rejected",
                UNKNOWN,
                f"the ERP rejected this batch of {len(batch.members)} at an unidentified document "
                f"({exc}); documents before it were saved; {RECONCILE_HINT}",
            )
        return {"batch_id": batch_id, "outcome": "rejected"}
    except (PermanentError, ConfigurationError) as exc:
        status = exc.status if isinstance(exc, PermanentError) else None
        store.log_attempt(batch_id, {"attempt": attempt, "outcome": "permanent", "status": status, "error": str(exc)})
        _finish(store, batch, "failed", FAILED, str(exc))
        return {"batch_id": batch_id, "outcome": "failed"}
    except ErpSyncError as exc:  # pragma: no cover - every branch of the hierarchy is handled above
        raise AssertionError(f"unhandled error type {type(exc).__name__}") from exc

    elapsed_ms = (time.perf_counter() - started) * 1000
    keys, numbers = result.keys, result.strings
    if len(keys) != len(batch.members):
        store.log_attempt(batch_id, {"attempt": attempt, "outcome": "key mismatch", "keys": keys})
        _finish(
            store,
            batch,
            "unknown",
            UNKNOWN,
            f"the ERP reported success with {len(keys)} Keys for {len(batch.members)} documents; {RECONCILE_HINT}",
        )
        return {"batch_id": batch_id, "outcome": "unknown"}
    if len(numbers) != len(keys):
        numbers = [None] * len(keys)  # invoices come back with Strings: [] (spec example)
    updates, created = [], []
    for (job_id, pos), external_id, key, number in zip(batch.members, batch.external_ids, keys, numbers, strict=True):
        updates.append((job_id, pos, Record(external_id, CREATED, key=key, number=number, batch_id=batch_id)))
        created.append((batch.tenant, batch.kind, external_id, f"{job_id}#{pos}", key, number))
    store.log_attempt(batch_id, {"attempt": attempt, "outcome": "created", "keys": len(keys), "ms": round(elapsed_ms)})
    _write(lambda: store.complete_batch(batch_id, "created", updates, created=created))
    log.info(
        "batch=%s tenant=%s kind=%s documents=%d outcome=created attempt=%d ms=%.0f",
        batch_id,
        batch.tenant,
        batch.kind,
        len(keys),
        attempt,
        elapsed_ms,
    )
    return {"batch_id": batch_id, "outcome": "created", "documents": len(keys)}
