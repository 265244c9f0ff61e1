"""Intake, the pipeline's first step: validate jobs' documents, claim their ExternalIds, hand them to batching.

    producer ──▶ intake queue ──▶ [intake: validate, claim] ──▶ batch.push ──▶ send ──▶ record

Work arrives as ranges of job documents on the intake queue (worker/store/intake.py); `drain` takes many at a
time and `process_items` settles each document: skipped if it already has an outcome or sits in the buffer or a
batch (a redelivery); failed with field paths if invalid, or if its ExternalId repeats one of the same job;
`duplicate` with the Key if the index says it was created; else claimed and pushed towards a batch.

No Celery here: follow-up work is a `Message` to the `Enqueue` the caller passes (worker/pipeline/queue.py), and
what Flower and the log lines show of it is ids and counts: job id, tenant, target, kind, how many documents.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from schemas import DocumentError, DocumentKind, Operation, Target
from schemas.actions import ActionDocument
from schemas.targets import check_supported
from schemas.validation import ValidDocument, validate_action, validate_document_json
from worker.errors import ConfigurationError, IndexLost
from worker.failpoints import failpoint
from worker.observability.logs import log_context
from worker.pipeline import runtime
from worker.pipeline.actions import resolve_action
from worker.pipeline.batch import push, send_again_if_stored
from worker.pipeline.queue import Enqueue, Message, TaskName
from worker.pipeline.updates import place_updates, resolve
from worker.settings import get_settings
from worker.store.intake import Item
from worker.store.records import (
    BatchPlan,
    ClaimRef,
    ClaimState,
    DocStatus,
    IntakeState,
    Ready,
    Record,
    RecordUpdate,
    Route,
    job_lane,
    owner_of,
)

__all__ = [
    "DRAIN_SECONDS",
    "JOB_IDS_SHOWN",
    "drain",
    "enqueue_job_again",
    "process_items",
    "request_intake",
    "run_job",
    "settle_message",
]

log = logging.getLogger(__name__)

#: Job ids named on an intake line that served many jobs (the count is always there).
JOB_IDS_SHOWN = 10
#: How long a drain runs before it hands over to a fresh task, so one backlog cannot hold a worker for long.
DRAIN_SECONDS = 2.0


def request_intake(enqueue: Enqueue, documents: int, job_id: str | None = None) -> None:
    """Make sure an intake task will drain the queue: at once for a big chunk (so the chunks of one file
    are spread over every worker process), else unless one is already queued (many small jobs, one task).
    """
    settings = get_settings()
    if documents >= settings.intake_chunk_docs // 2 or runtime.intake().ask_for_drain():
        shown = {"job_id": job_id, "documents": documents} if job_id else {"documents": documents}
        enqueue(Message(TaskName.DRAIN_INTAKE, argsrepr="()", kwargsrepr=repr(shown)))


def enqueue_job_again(enqueue: Enqueue, job_id: str, job: dict[str, str]) -> None:
    """Queue a whole job for intake again (recovery, an operator): a chunk per item, like the producer, under the
    job's tenant and lane (a job stored before lanes: sized)."""
    settings = get_settings()
    total, chunk = int(job.get("total", 0)), settings.intake_chunk_docs
    lane, tenant = job_lane(job, settings.interactive_max_documents), job.get("tenant", "")
    items = [Item(job_id, first, min(total, first + chunk), tenant, lane) for first in range(0, total, chunk)]
    runtime.intake().push(items)
    for item in items:
        request_intake(enqueue, item.size, job_id=job_id)


def drain(enqueue: Enqueue, worker_id: str) -> dict[str, Any]:
    """Take queued job ranges (about intake_chunk_docs documents at a time) and process them together.

    Each take is fair by itself (worker/store/intake.py): tenants in turn by weight, interactive ranges first and
    never with bulk ones, so a drain that goes on taking serves every tenant waiting as it goes.

    Runs for at most DRAIN_SECONDS, then returns, so one backlog cannot hold a worker process for long. Items
    it held when it died are found again under `worker_id` (the task's id: a redelivery has the same).
    """
    intake = runtime.intake()
    intake.drain_started()  # what arrives from now on asks for another task
    if not runtime.store().index_ready():
        # Redis has lost the duplicate index: what waits stays queued; `erpsync archive restore-index` asks for
        # intake again once the index is back (worker/archive/guard.py).
        log.error("intake waits: %s", IndexLost())
        return {"items": 0, "documents": 0, "waits": "index"}
    deadline = time.monotonic() + DRAIN_SECONDS
    items = documents = 0
    while True:
        taken = intake.take(worker_id)
        if not taken:
            break
        if intake.waiting():
            request_intake(enqueue, 0)  # more are waiting: let an idle worker process join in
        process_items(enqueue, [(i.job_id, i.start, i.end) for i in taken])
        intake.done(worker_id)
        items += len(taken)
        documents += sum(i.size for i in taken)
        if time.monotonic() > deadline:
            break  # what is still waiting was asked for above (or by its producer, after our flag went)
    return {"items": items, "documents": documents}


def run_job(enqueue: Enqueue, job_id: str, start: int = 0, end: int | None = None) -> dict[str, Any]:
    """Validate, claim and batch a job's documents [start, end); safe to run again (redelivery, recovery).

    Without `end`, the whole job is queued for intake a chunk per item (`enqueue_job_again`), so that it
    is validated by every worker process at once. Producers and recovery use the intake queue directly;
    this is how an operator (or a message from before the intake queue) runs a job again.
    """
    with log_context(job_id=job_id):
        if end is not None:
            return process_items(enqueue, [(job_id, start, end)])
        job = runtime.store().job(job_id)
        if job is None:
            log.error("job not found in the results store (expired or never stored); nothing to do")
            return {"job_id": job_id, "error": "job not found"}
        enqueue_job_again(enqueue, job_id, job)
        log.info("job queued for intake again", extra={"documents": int(job.get("total", 0))})
        return {"job_id": job_id, "queued": int(job.get("total", 0))}


class _Candidate(NamedTuple):
    """A valid document whose ExternalId is still to be claimed."""

    job_id: str
    position: int
    tenant: str
    kind: str
    external_id: str
    model: ValidDocument


@dataclass(slots=True)
class _Intake:
    """What one intake run decided so far, across all the jobs of its items."""

    updates: list[RecordUpdate] = field(default_factory=list)
    candidates: list[_Candidate] = field(default_factory=list)
    routes: dict[str, Route] = field(default_factory=dict)  # job -> where its documents go
    refusals: dict[Route, str | None] = field(default_factory=dict)  # why a route takes no documents, checked once
    first_position: dict[tuple[str, str], int] = field(default_factory=dict)  # (job, ExternalId) -> its first
    seen: int = 0
    upserts: set[str] = field(default_factory=set)  # jobs whose changed documents go as updates (operation upsert)
    to_update: list[BatchPlan] = field(default_factory=list)  # their update batches, and action batches
    actions: list[tuple[str, int, ActionDocument]] = field(default_factory=list)  # of `act` jobs, valid

    def refusal(self, route: Route) -> str | None:
        """Why documents of this route cannot go anywhere (`_route_error`), checked once per run."""
        if route not in self.refusals:
            self.refusals[route] = _route_error(route)
        return self.refusals[route]


def process_items(enqueue: Enqueue, items: list[tuple[str, int, int]]) -> dict[str, Any]:
    """Validate, claim and batch the documents of (job_id, start, end) ranges, of any jobs, together.

    A few round trips for all of them, whatever the number of jobs (see the module docstring).
    """
    store = runtime.store()
    states = store.intake_state(items)
    run = _Intake()
    for (job_id, start, _), state in zip(items, states, strict=True):
        _validate_range(run, job_id, start, state)
    send_again_if_stored(enqueue, states)
    to_push, waiting = _claim(run)
    _resolve_actions(run, waiting)
    place_updates(enqueue, run.to_update)
    store.set_records(run.updates)
    failpoint("intake.validated")  # tests: outcomes of the invalid written and ExternalIds claimed; none pushed
    pushed = sum(push(enqueue, tenant, kind, group) for (tenant, kind), group in to_push.items())
    for job_id, positions in waiting.items():
        enqueue(settle_message(job_id, positions, run.routes[job_id], countdown=2))
    failed = sum(1 for u in run.updates if u.record.status == DocStatus.FAILED)
    n_waiting = sum(len(v) for v in waiting.values())
    job_ids = sorted({j for j, _, _ in items})
    # One job (a chunk of a file): its id is the line's job_id; many small jobs: the first few ids.
    jobs: dict[str, Any] = {"job_id": job_ids[0]} if len(job_ids) == 1 else {"job_ids": job_ids[:JOB_IDS_SHOWN]}
    log.info(
        "intake",
        extra={
            **jobs,
            "jobs": len(job_ids),
            "documents": run.seen,
            "invalid": failed,
            "duplicates": len(run.updates) - failed,
            "buffered": pushed,
            "waiting": n_waiting,
        },
    )
    return {"jobs": len(items), "buffered": pushed, "failed": failed, "waiting": n_waiting}


def _validate_range(run: _Intake, job_id: str, start: int, state: IntakeState) -> None:
    """Validate the pending documents of one range: the invalid fail (with field paths), a repeated ExternalId
    of the same job fails, the rest become candidates for a claim."""
    if not state.job:
        log.error(
            "job not found in the results store (expired or never stored); nothing to do", extra={"job_id": job_id}
        )
        return
    route = Route(state.job["tenant"], state.job.get("target") or Target.SOFTONE.value, state.job["kind"])
    run.routes[job_id] = route
    if state.job.get("operation") == Operation.UPSERT:
        run.upserts.add(job_id)
    acts = state.job.get("operation") == Operation.ACT
    refused = run.refusal(route)
    max_rows = get_settings().max_document_rows
    first_position = run.first_position
    for position, (raw, record) in enumerate(zip(state.documents, state.records, strict=False), start=start):
        if record is None or record.status != DocStatus.PENDING or position in state.assigned:
            continue  # has its outcome, or was pushed before a crash/redelivery: the buffer or a batch has it
        run.seen += 1
        external_id = record.external_id
        if refused:
            run.updates.append(RecordUpdate(job_id, position, Record(external_id, DocStatus.FAILED, error=refused)))
            continue
        if acts:  # an action on a document created earlier (worker/pipeline/actions.py)
            action = validate_action(DocumentKind(route.kind), raw, Target(route.target))
            if isinstance(action, DocumentError):
                errors = [e.as_dict() for e in action.errors]
                failed = Record(external_id, DocStatus.FAILED, error=action.summary(), errors=errors)
                run.updates.append(RecordUpdate(job_id, position, failed))
            else:
                run.actions.append((job_id, position, action))
            continue
        result = validate_document_json(DocumentKind(route.kind), raw, Target(route.target), max_rows)
        if isinstance(result, DocumentError):
            errors = [e.as_dict() for e in result.errors]
            failed = Record(external_id, DocStatus.FAILED, error=result.summary(), errors=errors)
            run.updates.append(RecordUpdate(job_id, position, failed))
        elif (job_id, external_id) in first_position:
            first = first_position[job_id, external_id]
            run.updates.append(RecordUpdate(job_id, position, _repeated(external_id, first)))
        else:
            first_position[job_id, external_id] = position
            run.candidates.append(_Candidate(job_id, position, route.tenant, route.kind, external_id, result))


def _claim(run: _Intake) -> tuple[dict[tuple[str, str], list[Ready]], dict[str, list[int]]]:
    """Claim the candidates' ExternalIds: ours go to batching (per tenant and kind), those created before are
    `duplicate` with their Key, and those another job is sending wait (per job) for its outcome."""
    claims = runtime.store().claim_all(
        [ClaimRef(c.tenant, c.kind, c.external_id, owner_of(c.job_id, c.position)) for c in run.candidates]
    )
    to_push: dict[tuple[str, str], list[Ready]] = {}
    waiting: dict[str, list[int]] = {}
    for c, claim in zip(run.candidates, claims, strict=True):
        if claim.state == ClaimState.MINE:
            ready = Ready(c.job_id, c.position, c.external_id, c.model.to_wire_json())
            to_push.setdefault((c.tenant, c.kind), []).append(ready)
        elif claim.state in (ClaimState.CREATED, ClaimState.UPDATING):  # duplicate, changed, or an update to send
            upsert = c.job_id in run.upserts
            resolved = resolve(claim, c.job_id, c.position, c.external_id, run.routes[c.job_id],
                               c.model.to_wire_json(), upsert)  # fmt: skip
            if resolved.record is not None:
                run.updates.append(RecordUpdate(c.job_id, c.position, resolved.record))
            elif resolved.update is not None:
                run.to_update.append(resolved.update)
            else:
                waiting.setdefault(c.job_id, []).append(c.position)
        elif claim.owner.startswith(f"{c.job_id}#"):  # the same ExternalId in another chunk of this job
            other = int(claim.owner.partition("#")[2])
            run.updates.append(RecordUpdate(c.job_id, c.position, _repeated(c.external_id, other)))
        else:
            waiting.setdefault(c.job_id, []).append(c.position)
    return to_push, waiting


def _resolve_actions(run: _Intake, waiting: dict[str, list[int]]) -> None:
    """The valid actions of `act` jobs: their records, their action batches, or a wait for their document."""
    for job_id, position, action in run.actions:
        resolved = resolve_action(job_id, position, run.routes[job_id], action)
        if resolved.record is not None:
            run.updates.append(RecordUpdate(job_id, position, resolved.record))
        elif resolved.update is not None:
            run.to_update.append(resolved.update)
        else:
            waiting.setdefault(job_id, []).append(position)


def settle_message(job_id: str, positions: list[int], route: Route, *, countdown: float) -> Message:
    """The message that settles a job's documents waiting for another job's outcome (worker/pipeline/duplicates.py)."""
    shown = {"tenant": route.tenant, "target": route.target, "kind": route.kind, "documents": len(positions)}
    return Message(
        TaskName.SETTLE_DUPLICATE,
        args=[job_id, positions],
        countdown=countdown,
        argsrepr=repr([job_id]),
        kwargsrepr=repr(shown),
    )


def _repeated(external_id: str, other: int) -> Record:
    """The record of a document whose ExternalId another document of the same job already uses."""
    return Record(
        external_id,
        DocStatus.FAILED,
        # The record names its ExternalId; the error does not repeat it (errors quote no value of a document).
        error=f"its ExternalId is also used by document {other} of this job; each document needs its own ExternalId",
    )


def _route_error(route: Route) -> str | None:
    """Why documents of this job cannot go anywhere (unknown tenant, a target the tenant is not at, a kind the
    target does not take), or None. Checked again here: the configuration may have changed since submit."""
    try:
        config = get_settings().tenant(route.tenant)
        check_supported(route.target, route.kind)
    except (ConfigurationError, ValueError) as exc:
        return str(exc)
    if config.target.value != route.target:
        return f"the job is for {route.target}, but tenant {route.tenant!r} is configured for {config.target.value}"
    return None
