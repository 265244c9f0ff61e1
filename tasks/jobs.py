"""`erpsync.process_job`: validate a job's documents, claim their ExternalIds, batch and enqueue them."""

from __future__ import annotations

import json
import logging
from typing import Any

import redis

from schemas import DocumentError, DocumentKind, validate_document
from worker import runtime
from worker.celery_app import app
from worker.errors import ConfigurationError
from worker.results import DUPLICATE, FAILED, PENDING, Record
from worker.settings import get_settings

log = logging.getLogger(__name__)


def owner_of(job_id: str, position: int) -> str:
    """Who claims an ExternalId in the duplicate index: one document of one job."""
    return f"{job_id}#{position}"


def push(job_id: str, tenant: str, kind: str, items: list[tuple[int, str, str]]) -> int:
    """Put (position, ExternalId, encoded document) into the tenant's coalescing buffer, ask for a flush.

    A position is pushed once whatever happens (the buffer remembers it), so a redelivered job never
    queues a document twice. Returns how many were pushed now.
    """
    from tasks.flush import request_flush

    settings = get_settings()
    buffer = runtime.buffer()
    pushed = 0
    for start in range(0, len(items), 500):
        chunk = [(job_id, pos, x, doc) for pos, x, doc in items[start : start + 500]]
        n, waiting, size = buffer.push(tenant, kind, chunk)
        pushed += n
        if waiting >= settings.batch_max_docs or size >= settings.batch_max_bytes:
            request_flush(tenant, kind, now=True)
    request_flush(tenant, kind, now=False)  # what is left goes at the latest after batch_max_wait_ms
    return pushed


def enqueue_send(batch_id: str, tenant: str, kind: str, size: int) -> None:
    from tasks.batches import send_batch

    send_batch.apply_async(args=[batch_id], kwargsrepr=repr({"tenant": tenant, "kind": kind, "documents": size}))


def _repeated(external_id: str, other: int) -> Record:
    """The record of a document whose ExternalId another document of the same job already uses."""
    return Record(
        external_id,
        FAILED,
        error=f"ExternalId {external_id!r} is also used by document {other} of this job; each document needs "
        "its own ExternalId",
    )


def enqueue_job_again(job_id: str, job: dict[str, str]) -> None:
    process_job.apply_async(
        args=[job_id], kwargsrepr=repr({"tenant": job.get("tenant"), "kind": job.get("kind"), "recovery": True})
    )


@app.task(
    name="erpsync.process_job",
    bind=True,
    autoretry_for=(redis.ConnectionError, redis.TimeoutError),
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=20,
)
def process_job(self: Any, job_id: str, start: int = 0, end: int | None = None) -> dict[str, Any]:
    """Validate, claim and buffer a job's documents [start, end); safe to run again (redelivery).

    A job larger than ERPSYNC_INTAKE_CHUNK_DOCS is split into chunk tasks, so that a POS end of day is
    validated by every worker process at once instead of by one.
    """
    store = runtime.store()
    settings = get_settings()
    job = store.job(job_id)
    if job is None:
        log.error("job=%s not found in the results store (expired or never stored); nothing to do", job_id)
        return {"job_id": job_id, "error": "job not found"}
    tenant, kind_name = job["tenant"], job["kind"]
    kind = DocumentKind(kind_name)
    store.mark_running(job_id)
    total = int(job.get("total", 0))
    chunk = settings.intake_chunk_docs
    if end is None and total > chunk:
        for first in range(0, total, chunk):
            bounds = {"start": first, "end": min(total, first + chunk)}
            process_job.apply_async(
                args=[job_id], kwargs=bounds, kwargsrepr=repr({"tenant": tenant, "kind": kind_name, **bounds})
            )
        return {"job_id": job_id, "chunks": -(-total // chunk)}
    end = total if end is None else end
    records = store.records_at(job_id, range(start, end))
    documents = store.documents(job_id, start, end)
    assigned = runtime.buffer().assigned(job_id)

    try:
        get_settings().tenant(tenant)
        tenant_error = None
    except ConfigurationError as exc:
        tenant_error = str(exc)

    updates: list[tuple[str, int, Record]] = []
    valid: list[tuple[int, str, str]] = []
    waiting: list[int] = []
    first_position: dict[str, int] = {}
    candidates: list[tuple[int, str, Any]] = []
    for position, raw in enumerate(documents, start=start):
        record = records[position - start]
        if record.status != PENDING:
            continue
        if position in assigned:  # pushed before a crash/redelivery: the buffer or its batch has it
            continue
        if tenant_error:
            updates.append((job_id, position, Record(record.external_id, FAILED, error=tenant_error)))
            continue
        result = validate_document(kind, json.loads(raw))
        if isinstance(result, DocumentError):
            updates.append(
                (
                    job_id,
                    position,
                    Record(
                        record.external_id, FAILED, error=result.summary(), errors=[e.as_dict() for e in result.errors]
                    ),
                )
            )
            continue
        external_id = record.external_id
        if external_id in first_position:
            updates.append((job_id, position, _repeated(external_id, first_position[external_id])))
            continue
        first_position[external_id] = position
        candidates.append((position, external_id, result))

    claims = store.claim_many(tenant, kind_name, [(x, owner_of(job_id, pos)) for pos, x, _ in candidates])
    for (position, external_id, model), claim in zip(candidates, claims, strict=True):
        if claim.state == "mine":
            encoded = json.dumps(model.to_wire(), ensure_ascii=False, separators=(",", ":"))
            valid.append((position, external_id, encoded))
        elif claim.state == "created":
            updates.append((job_id, position, Record(external_id, DUPLICATE, key=claim.key, number=claim.number)))
        elif claim.owner.startswith(f"{job_id}#"):  # the same ExternalId in another chunk of this job
            updates.append((job_id, position, _repeated(external_id, int(claim.owner.partition("#")[2]))))
        else:
            waiting.append(position)

    store.set_records(updates)
    pushed = push(job_id, tenant, kind_name, valid) if valid else 0
    if waiting:
        from tasks.duplicates import settle_duplicate

        settle_duplicate.apply_async(args=[job_id, waiting], countdown=2)
    failed = sum(1 for _, _, r in updates if r.status == FAILED)
    log.info(
        "job=%s tenant=%s kind=%s documents=%d invalid=%d duplicates=%d buffered=%d waiting=%d",
        job_id,
        tenant,
        kind_name,
        len(documents),
        failed,
        len(updates) - failed,
        pushed,
        len(waiting),
    )
    return {"job_id": job_id, "buffered": pushed, "failed": failed, "waiting": len(waiting)}
