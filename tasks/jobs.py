"""`erpsync.process_job`: validate a job's documents, claim their ExternalIds, batch and enqueue them."""

from __future__ import annotations

import json
import logging
from typing import Any

import redis

from schemas import DocumentError, DocumentKind, validate_document
from worker import runtime
from worker.batching import array_body, plan_batches
from worker.celery_app import app
from worker.errors import ConfigurationError
from worker.results import DUPLICATE, FAILED, PENDING, BatchPlan, Record
from worker.settings import get_settings

log = logging.getLogger(__name__)


def owner_of(job_id: str, position: int) -> str:
    """Who claims an ExternalId in the duplicate index: one document of one job."""
    return f"{job_id}#{position}"


def dispatch(job_id: str, tenant: str, kind: str, items: list[tuple[int, str, str]]) -> list[str]:
    """Group (position, external_id, encoded document) into batches, store them, enqueue their sends.

    Batch ids derive from the job and the first member's position, so a job redelivered after a crash
    never stores a second batch for the same documents (members and ids are committed in one transaction).
    """
    settings = get_settings()
    store = runtime.store()
    groups = plan_batches([len(doc.encode()) for _, _, doc in items], settings.batch_max_docs, settings.batch_max_bytes)
    high_water = str(store.high_water(tenant, kind))  # reconciliation ignores older ERP Keys
    plans = []
    for group in groups:
        members = [items[i] for i in group]
        batch_id = f"{job_id}.{members[0][0]}"
        plans.append(
            BatchPlan(
                batch_id=batch_id,
                meta={
                    "tenant": tenant,
                    "kind": kind,
                    "target": "softone",
                    "external_ids": json.dumps([x for _, x, _ in members], ensure_ascii=False),
                    "high_water": high_water,
                },
                members=[(job_id, pos) for pos, _, _ in members],
                body=array_body([doc for _, _, doc in members]),
                records=[
                    (job_id, pos, Record(external_id=x, status=PENDING, batch_id=batch_id)) for pos, x, _ in members
                ],
            )
        )
    store.commit_batches(plans)
    for plan in plans:
        enqueue_send(plan.batch_id, tenant, kind, len(plan.members))
    return [p.batch_id for p in plans]


def enqueue_send(batch_id: str, tenant: str, kind: str, size: int) -> None:
    from tasks.batches import send_batch

    send_batch.apply_async(args=[batch_id], kwargsrepr=repr({"tenant": tenant, "kind": kind, "documents": size}))


@app.task(
    name="erpsync.process_job",
    bind=True,
    autoretry_for=(redis.ConnectionError, redis.TimeoutError),
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=20,
)
def process_job(self: Any, job_id: str) -> dict[str, Any]:
    """Turn a stored job into batches; safe to run again for the same job (redelivery)."""
    store = runtime.store()
    job = store.job(job_id)
    if job is None:
        log.error("job=%s not found in the results store (expired or never stored); nothing to do", job_id)
        return {"job_id": job_id, "error": "job not found"}
    tenant, kind_name = job["tenant"], job["kind"]
    kind = DocumentKind(kind_name)
    store.mark_running(job_id)
    records = store.records(job_id)
    documents = store.documents(job_id)

    try:
        get_settings().tenant(tenant)
        tenant_error = None
    except ConfigurationError as exc:
        tenant_error = str(exc)

    updates: list[tuple[str, int, Record]] = []
    valid: list[tuple[int, str, str]] = []
    waiting: list[int] = []
    resend: set[str] = set()
    first_position: dict[str, int] = {}
    candidates: list[tuple[int, str, Any]] = []
    for position, raw in enumerate(documents):
        record = records[position]
        if record.status != PENDING:
            continue
        if record.batch_id:  # planned before a crash/redelivery: make sure its send is queued
            resend.add(record.batch_id)
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
            other = first_position[external_id]
            updates.append(
                (
                    job_id,
                    position,
                    Record(
                        external_id,
                        FAILED,
                        error=f"ExternalId {external_id!r} is also used by document {other} of "
                        "this job; each document needs its own ExternalId",
                    ),
                )
            )
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
        else:
            waiting.append(position)

    store.set_records(updates)
    batch_ids = dispatch(job_id, tenant, kind_name, valid) if valid else []
    for batch_id in sorted(resend):
        batch = store.batch(batch_id)
        if batch and batch.get("state") != "done":
            enqueue_send(batch_id, tenant, kind_name, int(batch.get("size", 0)))
    if waiting:
        from tasks.duplicates import settle_duplicate

        settle_duplicate.apply_async(args=[job_id, waiting], countdown=2)
    failed = sum(1 for _, _, r in updates if r.status == FAILED)
    log.info(
        "job=%s tenant=%s kind=%s documents=%d invalid=%d duplicates=%d batches=%d waiting=%d",
        job_id,
        tenant,
        kind_name,
        len(documents),
        failed,
        len(updates) - failed,
        len(batch_ids),
        len(waiting),
    )
    return {"job_id": job_id, "batches": len(batch_ids), "failed": failed, "waiting": len(waiting)}
