"""`erpsync.settle_duplicate`: documents whose ExternalId another job is sending right now.

They wait (as `pending`) until the other document's fate is known: created → this one is a `duplicate`
with that Key; not created (claim released) → this one is claimed and sent; unknown → this one is
`unknown` too, since sending it could create the document twice.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from schemas import DocumentKind, Target, validate_document
from worker import runtime
from worker.celery_app import app
from worker.logs import bind, log_context
from worker.results import DUPLICATE, PENDING, UNKNOWN, Record
from worker.settings import get_settings

log = logging.getLogger(__name__)

#: Check every 5 s for up to 6 hours: long enough for the other job's retries to run their course.
CHECK_EVERY_S = 5
MAX_CHECKS = 6 * 3600 // CHECK_EVERY_S


@app.task(name="erpsync.settle_duplicate", bind=True, max_retries=MAX_CHECKS)
def settle_duplicate(self: Any, job_id: str, positions: list[int]) -> dict[str, Any]:
    with log_context(job_id=job_id):
        return _settle(self, job_id, positions)


def _settle(task: Any, job_id: str, positions: list[int]) -> dict[str, Any]:
    from tasks.jobs import owner_of, push

    store = runtime.store()
    job = store.job(job_id)
    if job is None:
        log.error("job not found in the results store (expired?); its waiting documents are left as they are")
        return {"job_id": job_id, "error": "job not found"}
    tenant, kind = job["tenant"], job["kind"]
    target = Target(job.get("target") or Target.SOFTONE.value)
    bind(tenant=tenant, target=target.value, kind=kind)
    documents = store.documents(job_id)
    assigned = runtime.buffer().assigned(job_id)
    updates: list[tuple[str, int, Record]] = []
    to_send: list[tuple[int, str, str]] = []
    still_waiting: list[int] = []
    for position in positions:
        record = store.record(job_id, position)
        if record is None or record.status != PENDING or position in assigned:
            continue
        claim = store.claim(tenant, kind, record.external_id, owner_of(job_id, position))
        if claim.state == "created":
            updates.append(
                (job_id, position, Record(record.external_id, DUPLICATE, key=claim.key, number=claim.number))
            )
        elif claim.state == "mine":
            model = validate_document(
                DocumentKind(kind), json.loads(documents[position]), target, get_settings().max_document_rows
            )
            to_send.append((position, record.external_id, model.to_wire_json()))  # type: ignore[union-attr]
        else:
            other_job, _, other_pos = claim.owner.partition("#")
            other = store.record(other_job, int(other_pos)) if other_pos.isdigit() else None
            if other is None or other.status == UNKNOWN:
                updates.append(
                    (
                        job_id,
                        position,
                        Record(
                            record.external_id,
                            UNKNOWN,
                            error=f"an earlier submission of ExternalId {record.external_id!r} (job {other_job}) "
                            "has an unknown outcome; resolve it before this document can be sent",
                        ),
                    )
                )
            else:
                still_waiting.append(position)
    store.set_records(updates)
    if to_send:
        push(tenant, kind, [(job_id, position, external_id, doc) for position, external_id, doc in to_send])
    settled = len(updates) + len(to_send)
    if settled:
        log.info(
            "duplicates settled", extra={"settled": settled, "to_send": len(to_send), "waiting": len(still_waiting)}
        )
    if still_waiting:
        shown = {"tenant": tenant, "target": target.value, "kind": kind, "documents": len(still_waiting)}
        raise task.retry(
            args=[job_id, still_waiting], countdown=CHECK_EVERY_S, argsrepr=repr([job_id]), kwargsrepr=repr(shown)
        )
    return {"job_id": job_id, "settled": settled}
