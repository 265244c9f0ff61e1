"""Documents whose ExternalId another job is sending right now: they wait for that document's fate.

They stay `pending` until the other document's outcome is known: created → this one is a `duplicate` with that
Key (`changed` if its content differs: worker/pipeline/resubmitted.py; sent as an update in an upsert job:
worker/pipeline/updates.py); not created (claim released) → this one is
claimed and goes to batching; unknown → this one is `unknown` too, since sending it could create the document twice.
Those still waiting come back after CHECK_EVERY_S.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from schemas import DocumentKind, Operation, Target, validate_document
from schemas.validation import DocumentError, validate_action
from worker.errors import RetryLater
from worker.observability.logs import bind, log_context
from worker.pipeline import runtime
from worker.pipeline.actions import resolve_action
from worker.pipeline.batch import push
from worker.pipeline.intake import settle_message
from worker.pipeline.queue import Enqueue
from worker.pipeline.updates import Resolved, place_updates, resolve
from worker.settings import get_settings
from worker.store.records import BatchPlan, Claim, ClaimState, DocStatus, Ready, Record, RecordUpdate, Route, owner_of

__all__ = ["CHECK_EVERY_S", "MAX_CHECKS", "settle"]

log = logging.getLogger(__name__)

#: Check every 5 s for up to 6 hours: long enough for the other job's retries to run their course.
CHECK_EVERY_S = 5
MAX_CHECKS = 6 * 3600 // CHECK_EVERY_S


def settle(enqueue: Enqueue, job_id: str, positions: list[int]) -> dict[str, Any]:
    """Settle what can be settled of a job's waiting documents; RetryLater (with the rest) if some still wait."""
    with log_context(job_id=job_id):
        return _settle(enqueue, job_id, positions)


def _settle(enqueue: Enqueue, job_id: str, positions: list[int]) -> dict[str, Any]:
    store = runtime.store()
    job = store.job(job_id)
    if job is None:
        log.error("job not found in the results store (expired?); its waiting documents are left as they are")
        return {"job_id": job_id, "error": "job not found"}
    route = Route(job["tenant"], job.get("target") or Target.SOFTONE.value, job["kind"])
    bind(tenant=route.tenant, target=route.target, kind=route.kind)
    documents = store.documents(job_id)
    assigned = runtime.buffer().assigned(job_id)
    updates: list[RecordUpdate] = []
    to_send: list[Ready] = []
    to_update: list[BatchPlan] = []
    still_waiting: list[int] = []
    operation = job.get("operation") or Operation.CREATE
    for position in positions:
        record = store.record(job_id, position)
        if record is None or record.status != DocStatus.PENDING or position in assigned:
            continue
        now = _look_again(job_id, position, record.external_id, route, documents[position], operation)
        if isinstance(now, Ready):
            to_send.append(now)
        elif now.record is not None:
            updates.append(RecordUpdate(job_id, position, now.record))
        elif now.update is not None:
            to_update.append(now.update)
        else:
            still_waiting.append(position)
    place_updates(enqueue, to_update)
    store.set_records(updates)
    if to_send:
        push(enqueue, route.tenant, route.kind, to_send)
    settled = len(updates) + len(to_send) + len(to_update)
    if settled:
        log.info(
            "duplicates settled", extra={"settled": settled, "to_send": len(to_send), "waiting": len(still_waiting)}
        )
    if still_waiting:
        later = settle_message(job_id, still_waiting, route, countdown=CHECK_EVERY_S)
        raise RetryLater(
            CHECK_EVERY_S, args=[job_id, still_waiting], argsrepr=later.argsrepr, kwargsrepr=later.kwargsrepr
        )
    return {"job_id": job_id, "settled": settled}


def _look_again(
    job_id: str, position: int, external_id: str, route: Route, raw: str, operation: str
) -> Resolved | Ready:
    """What a waiting document is now: to send (its claim is ours), settled (its record), an update or action batch
    to send, or still waiting (an empty Resolved)."""
    if operation == Operation.ACT:  # an action waiting for the document it names (worker/pipeline/actions.py)
        action = validate_action(DocumentKind(route.kind), raw, Target(route.target))
        if isinstance(action, DocumentError):  # the rules changed since its intake (a new release)
            return Resolved(Record(external_id, DocStatus.FAILED, error=action.summary()))
        return resolve_action(job_id, position, route, action)
    claim = runtime.store().claim(route.tenant, route.kind, external_id, owner_of(job_id, position))
    if claim.state in (ClaimState.CREATED, ClaimState.UPDATING):  # duplicate, changed, or an update to send
        return resolve(
            claim, job_id, position, external_id, route, _wire_body(route, raw), operation == Operation.UPSERT
        )
    if claim.state == ClaimState.MINE:
        return Ready(job_id, position, external_id, _wire_body(route, raw))
    if _other_unknown(claim):
        return Resolved(_unknown_as_the_other(external_id, claim))
    return Resolved()


def _wire_body(route: Route, raw: str) -> str:
    """The document as the ERP takes it; it was valid at intake (only valid documents claim an ExternalId)."""
    model = validate_document(
        DocumentKind(route.kind), json.loads(raw), Target(route.target), get_settings().max_document_rows
    )
    if isinstance(model, DocumentError):  # the rules changed since its intake (a new release): say so, loudly
        raise ValueError(f"a document that passed intake is invalid now: {model.summary()}")
    return model.to_wire_json()


def _other_unknown(claim: Claim) -> bool:
    """Whether the document holding the claim has an unknown outcome (or is gone): waiting cannot settle it."""
    other_job, _, other_pos = claim.owner.partition("#")
    other = runtime.store().record(other_job, int(other_pos)) if other_pos.isdigit() else None
    return other is None or other.status == DocStatus.UNKNOWN


def _unknown_as_the_other(external_id: str, claim: Claim) -> Record:
    other_job = claim.owner.partition("#")[0]
    return Record(
        external_id,
        DocStatus.UNKNOWN,
        error=f"an earlier submission of ExternalId {external_id!r} (job {other_job}) has an unknown outcome; "
        "resolve it before this document can be sent",
    )
