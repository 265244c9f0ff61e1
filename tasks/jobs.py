"""Intake: validate jobs' documents, claim their ExternalIds, push them into the coalescing buffer.

Task messages carry ids only, and what Flower and Celery's log lines show of them (argsrepr/kwargsrepr) is ids
and counts: job id, tenant, target, kind, how many documents. Documents stay in Redis.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from schemas import DocumentError, DocumentKind, Target
from schemas.targets import check_supported
from schemas.validation import validate_document_json
from worker import runtime
from worker.buffer import full_batches
from worker.celery_app import REDIS_OUTAGE_RETRY, app
from worker.errors import ConfigurationError
from worker.failpoints import failpoint
from worker.intake import Item
from worker.logs import log_context
from worker.results import DUPLICATE, FAILED, PENDING, IntakeState, Record, ResultsStore
from worker.settings import get_settings

log = logging.getLogger(__name__)

#: Job ids named on an intake line that served many jobs (the count is always there).
JOB_IDS_SHOWN = 10
#: Set while a drain_intake task is queued (see request_intake); a drain clears it as it starts.
INTAKE_FLAG = "{prefix}:intakeq"


def owner_of(job_id: str, position: int) -> str:
    """Who claims an ExternalId in the duplicate index: one document of one job."""
    return f"{job_id}#{position}"


def push(tenant: str, kind: str, items: list[tuple[str, int, str, str]]) -> int:
    """Put (job, position, ExternalId, encoded document) into batches: those that fill whole batches are stored
    as batches and their sends queued at once; the rest go into the tenant's buffer, with a flush asked for.

    A position is assigned once whatever happens (the buffer and the batch script remember it), so a redelivered
    job never queues a document twice. Returns how many were assigned now.
    """
    from tasks.flush import request_flush

    settings = get_settings()
    buffer = runtime.buffer()
    target, max_docs = runtime.batch_shape(tenant, kind)
    whole, rest = full_batches([len(doc.encode()) for *_, doc in items], max_docs, settings.batch_max_bytes)
    high_water = runtime.store().high_water(tenant, kind) if whole else 0
    pushed = 0
    leftover: list[tuple[str, int, str, str]] = []
    stored: list[tuple[str, int]] = []  # (batch id, documents) whose sends are not queued yet
    for span in whole:
        group = items[span.start : span.stop]
        batch_id = f"{group[0][0]}@{group[0][1]}"  # its first document's job@position: "@" is in no job id
        size = buffer.make_batch(tenant, kind, batch_id, group, high_water, target=target)
        if size < 0:  # made by a run of the same documents that was not ours: what it left free goes the slow way
            leftover += group
            size = 0
        failpoint("intake.batched")  # tests: the batch is stored, its send not queued
        if size:
            stored.append((batch_id, size))
        if len(stored) == settings.send_group_batches:
            # A redelivered intake queues the sends of stored batches still `queued` (_send_again_if_stored).
            enqueue_sends(stored, tenant, kind, target=target)
            stored = []
        pushed += size
    if stored:
        enqueue_sends(stored, tenant, kind, target=target)
    leftover += items[rest:]
    for start in range(0, len(leftover), 500):
        n, waiting, size = buffer.push(tenant, kind, leftover[start : start + 500])
        failpoint("intake.buffered")  # tests: in the buffer, no flush asked for
        pushed += n
        if waiting >= max_docs or size >= settings.batch_max_bytes:
            request_flush(tenant, kind, now=True)
    if leftover:
        request_flush(tenant, kind, now=False)  # what is left goes at the latest after batch_max_wait_ms
    return pushed


def enqueue_send(batch_id: str, tenant: str, kind: str, size: int, *, target: str | None = None) -> None:
    from tasks.batches import describe, send_batch

    target = target or runtime.batch_shape(tenant, kind)[0]
    send_batch.apply_async(args=[batch_id], argsrepr=repr([batch_id]), kwargsrepr=describe(tenant, target, kind, size))


def enqueue_sends(batches: list[tuple[str, int]], tenant: str, kind: str, *, target: str) -> None:
    """Queue the sends of (batch id, documents) stored together: one send_batches message for them all (one
    send_batch for a single one). Flower and the log lines see their ids and counts."""
    from tasks.batches import describe, send_batches

    if len(batches) == 1:
        batch_id, size = batches[0]
        enqueue_send(batch_id, tenant, kind, size, target=target)
        return
    ids = [batch_id for batch_id, _ in batches]
    shown = describe(tenant, target, kind, sum(size for _, size in batches), batches=len(ids))
    send_batches.apply_async(args=[ids], argsrepr=repr([ids]), kwargsrepr=shown)


def _repeated(external_id: str, other: int) -> Record:
    """The record of a document whose ExternalId another document of the same job already uses."""
    return Record(
        external_id,
        FAILED,
        error=f"ExternalId {external_id!r} is also used by document {other} of this job; each document needs "
        "its own ExternalId",
    )


def enqueue_job_again(job_id: str, job: dict[str, str]) -> None:
    """Queue a whole job for intake again (recovery, an operator): a chunk per item, like the producer."""
    total, chunk = int(job.get("total", 0)), get_settings().intake_chunk_docs
    items = [Item(job_id, first, min(total, first + chunk)) for first in range(0, total, chunk)]
    runtime.intake().push(items)
    for item in items:
        request_intake(item.size, job_id=job_id)


def request_intake(documents: int, job_id: str | None = None) -> None:
    """Make sure an intake task will drain the queue: at once for a big chunk (so the chunks of one file
    are spread over every worker process), else unless one is already queued (many small jobs, one task).
    """
    settings = get_settings()
    flag = INTAKE_FLAG.format(prefix=settings.key_prefix)
    if documents >= settings.intake_chunk_docs // 2 or runtime.store().r.set(flag, "1", nx=True, px=30_000):
        shown = {"job_id": job_id, "documents": documents} if job_id else {"documents": documents}
        drain_intake.apply_async(argsrepr="()", kwargsrepr=repr(shown))


@app.task(
    name="erpsync.drain_intake",
    bind=True,
    **REDIS_OUTAGE_RETRY,
)
def drain_intake(self: Any) -> dict[str, Any]:
    """Take queued job ranges (about intake_chunk_docs documents at a time) and process them together.

    Runs for at most a couple of seconds, then hands over to a fresh task, so one backlog cannot hold a
    worker process for long. Items it held when it died are found again under its task id (redelivery).
    """
    settings = get_settings()
    intake = runtime.intake()
    intake.r.delete(INTAKE_FLAG.format(prefix=settings.key_prefix))  # what arrives from now on asks for another task
    deadline = time.monotonic() + 2.0
    items = documents = 0
    while True:
        taken = intake.take(self.request.id)
        if not taken:
            break
        if intake.waiting():
            request_intake(0)  # more are waiting: let an idle worker process join in
        process_items([(i.job_id, i.start, i.end) for i in taken])
        intake.done(self.request.id)
        items += len(taken)
        documents += sum(i.size for i in taken)
        if time.monotonic() > deadline:
            break  # what is still waiting was asked for above (or by its producer, after our flag went)
    return {"items": items, "documents": documents}


@app.task(
    name="erpsync.process_job",
    bind=True,
    **REDIS_OUTAGE_RETRY,
)
def process_job(self: Any, job_id: str, start: int = 0, end: int | None = None) -> dict[str, Any]:
    """Validate, claim and buffer a job's documents [start, end); safe to run again (redelivery, recovery).

    Without `end`, the whole job is queued for intake a chunk per item (`enqueue_job_again`), so that it
    is validated by every worker process at once. Producers and recovery use the intake queue directly;
    this task is how an operator (or a message from before the intake queue) runs a job again.
    """
    with log_context(job_id=job_id):
        if end is not None:
            return process_items([(job_id, start, end)])
        job = runtime.store().job(job_id)
        if job is None:
            log.error("job not found in the results store (expired or never stored); nothing to do")
            return {"job_id": job_id, "error": "job not found"}
        enqueue_job_again(job_id, job)
        log.info("job queued for intake again", extra={"documents": int(job.get("total", 0))})
        return {"job_id": job_id, "queued": int(job.get("total", 0))}


def process_items(items: list[tuple[str, int, int]]) -> dict[str, Any]:
    """Validate, claim and buffer the documents of (job_id, start, end) ranges, of any jobs, together.

    Per document: skipped if it already has an outcome or sits in the buffer/a batch (a redelivery);
    failed with field paths if invalid, or if its ExternalId repeats one of the same job; `duplicate` with
    the Key if the index says it was created; else claimed and pushed into its tenant's coalescing buffer.
    A few round trips for all of them, whatever the number of jobs.
    """
    store = runtime.store()
    max_rows = get_settings().max_document_rows
    states = store.intake_state(items)

    updates: list[tuple[str, int, Record]] = []
    candidates: list[tuple[str, int, str, str, str, Any]] = []  # job, position, tenant, kind, ExternalId, model
    first_position: dict[tuple[str, str], int] = {}
    tenant_errors: dict[tuple[str, str, str], str | None] = {}
    routes: dict[str, tuple[str, str, str]] = {}  # job -> (tenant, target, kind)
    seen = 0
    for (job_id, start, _), state in zip(items, states, strict=True):
        if not state.job:
            log.error("job not found in the results store (expired or never stored); nothing to do",
                      extra={"job_id": job_id})  # fmt: skip
            continue
        tenant, kind_name = state.job["tenant"], state.job["kind"]
        target = state.job.get("target") or Target.SOFTONE.value
        route = (tenant, target, kind_name)
        routes[job_id] = route
        if route not in tenant_errors:
            tenant_errors[route] = _route_error(*route)
        doc_type = None if tenant_errors[route] else (DocumentKind(kind_name), Target(target))
        for position, (raw, record) in enumerate(zip(state.documents, state.records, strict=False), start=start):
            if record is None or record.status != PENDING or position in state.assigned:
                continue  # has its outcome, or was pushed before a crash/redelivery: the buffer or a batch has it
            seen += 1
            if doc_type is None:
                updates.append((job_id, position, Record(record.external_id, FAILED, error=tenant_errors[route])))
                continue
            result = validate_document_json(doc_type[0], raw, doc_type[1], max_rows)
            if isinstance(result, DocumentError):
                errors = [e.as_dict() for e in result.errors]
                updates.append(
                    (job_id, position, Record(record.external_id, FAILED, error=result.summary(), errors=errors))
                )
                continue
            external_id = record.external_id
            if (job_id, external_id) in first_position:
                updates.append((job_id, position, _repeated(external_id, first_position[job_id, external_id])))
                continue
            first_position[job_id, external_id] = position
            candidates.append((job_id, position, tenant, kind_name, external_id, result))

    _send_again_if_stored(store, states)
    claims = store.claim_all([(t, k, x, owner_of(j, pos)) for j, pos, t, k, x, _ in candidates])
    to_push: dict[tuple[str, str], list[tuple[str, int, str, str]]] = {}
    waiting: dict[str, list[int]] = {}
    for (job_id, position, tenant, kind_name, external_id, model), claim in zip(candidates, claims, strict=True):
        if claim.state == "mine":
            encoded = model.to_wire_json()
            to_push.setdefault((tenant, kind_name), []).append((job_id, position, external_id, encoded))
        elif claim.state == "created":
            updates.append((job_id, position, Record(external_id, DUPLICATE, key=claim.key, number=claim.number)))
        elif claim.owner.startswith(f"{job_id}#"):  # the same ExternalId in another chunk of this job
            updates.append((job_id, position, _repeated(external_id, int(claim.owner.partition("#")[2]))))
        else:
            waiting.setdefault(job_id, []).append(position)

    store.set_records(updates)
    failpoint("intake.validated")  # tests: outcomes of the invalid written and ExternalIds claimed; none pushed
    pushed = sum(push(tenant, kind_name, group) for (tenant, kind_name), group in to_push.items())
    if waiting:
        from tasks.duplicates import settle_duplicate

        for job_id, positions in waiting.items():
            tenant, target, kind_name = routes[job_id]
            shown = {"tenant": tenant, "target": target, "kind": kind_name, "documents": len(positions)}
            settle_duplicate.apply_async(
                args=[job_id, positions], countdown=2, argsrepr=repr([job_id]), kwargsrepr=repr(shown)
            )
    failed = sum(1 for _, _, r in updates if r.status == FAILED)
    n_waiting = sum(len(v) for v in waiting.values())
    job_ids = sorted({j for j, _, _ in items})
    # One job (a chunk of a file): its id is the line's job_id; many small jobs: the first few ids.
    jobs: dict[str, Any] = {"job_id": job_ids[0]} if len(job_ids) == 1 else {"job_ids": job_ids[:JOB_IDS_SHOWN]}
    log.info(
        "intake",
        extra={
            **jobs,
            "jobs": len(job_ids),
            "documents": seen,
            "invalid": failed,
            "duplicates": len(updates) - failed,
            "buffered": pushed,
            "waiting": n_waiting,
        },
    )
    return {"jobs": len(items), "buffered": pushed, "failed": failed, "waiting": n_waiting}


def _send_again_if_stored(store: ResultsStore, states: list[IntakeState]) -> None:
    """Queue the send of every batch an earlier run of these documents stored and whose send it may not have
    queued (it failed or died in between: intake.batched). Such documents are skipped above as assigned; a
    second send message of a batch is harmless (a batch has one state, see tasks/batches.py)."""
    batch_ids = sorted({where for state in states for where in state.assigned.values() if where != "buffer"})
    if not batch_ids:
        return
    pipe = store.r.pipeline(transaction=False)
    for batch_id in batch_ids:
        pipe.hmget(store.batch_key(batch_id), "state", "tenant", "kind", "target", "size")
    for batch_id, (state, tenant, kind, target, size) in zip(batch_ids, pipe.execute(), strict=True):
        if state == "queued":
            enqueue_send(batch_id, tenant, kind, int(size or 0), target=target)


def _route_error(tenant: str, target: str, kind: str) -> str | None:
    """Why documents of this job cannot go anywhere (unknown tenant, a target the tenant is not at, a kind the
    target does not take), or None. Checked again here: the configuration may have changed since submit."""
    try:
        config = get_settings().tenant(tenant)
        check_supported(target, kind)
    except (ConfigurationError, ValueError) as exc:
        return str(exc)
    if config.target.value != target:
        return f"the job is for {target}, but tenant {tenant!r} is configured for {config.target.value}"
    return None
