"""Upserts: a document of an "upsert" job whose ExternalId the ERP holds with other content is sent as an update.

    intake / duplicates ──(created before, content changed, operation upsert)──▶ [claim the entry to update]
        ──▶ an update batch of its own ──▶ send (PUT) ──▶ record `updated`, the index learns the new content

The duplicate index entry is claimed for the update ("updating|<owner>|<created value>", worker/store/results.py) only
while it still says what was read, so two jobs never update one document at once and a later job waits for the
update in flight, then compares with what it made. The update batch (`<job>@<position>.u`) carries the Key to update;
the ERP's answer records `updated` with the Key and the new fingerprint; a refusal fails the document and puts the
entry back as it was (the ERP still holds the earlier content). Where the target has no update (SoftOne GO, the
invoice service), the document fails with what to do instead (Connector.no_update).

Exactly once: an update is sent whole (every row, no RowIds: worker/connectors/fortnox.py), so sending it again
leaves the same document, and one whose answer was lost is sent again rather than looked up.
"""

from __future__ import annotations

import json
from typing import NamedTuple

from schemas import DocumentKind
from schemas.fingerprint import parse
from worker.connectors import CONNECTORS
from worker.pipeline import runtime
from worker.pipeline.queue import Enqueue
from worker.pipeline.resubmitted import outcome
from worker.pipeline.tickets import place
from worker.store.records import UPDATE, BatchPlan, Claim, ClaimState, DocStatus, Record, RecordUpdate, Route, owner_of

__all__ = ["Resolved", "place_updates", "resolve"]


class Resolved(NamedTuple):
    """What becomes of a document whose ExternalId the index knows: its record now, an update to send, or (both
    None) wait for another document's update in flight."""

    record: Record | None = None
    update: BatchPlan | None = None


def resolve(
    claim: Claim, job_id: str, position: int, external_id: str, route: Route, wire_json: str, upsert: bool
) -> Resolved:
    """The outcome of a document whose ExternalId was created (`claim`: CREATED, or UPDATING by this document)."""
    if claim.state == ClaimState.UPDATING:  # ours already (a run that stopped before its batch was stored)
        return Resolved(update=_update_batch(claim, job_id, position, external_id, route, wire_json))
    record = outcome(claim, external_id, route.target, route.kind, parse(wire_json))
    if record.status != DocStatus.CHANGED or not upsert:
        return Resolved(record)
    kind = DocumentKind(route.kind)
    connector = CONNECTORS[route.target]
    if not connector.can_update(kind):
        what = (record.error or "").split(";", 1)[0]
        return Resolved(Record(external_id, DocStatus.FAILED, key=claim.key, number=claim.number,
                               error=f"{what}; {connector.no_update(kind)}", errors=record.errors))  # fmt: skip
    owner = owner_of(job_id, position)
    if not runtime.store().claim_update(route.tenant, route.kind, external_id, owner, claim):
        return Resolved()  # the entry changed since it was read: another job's update; wait and look again
    return Resolved(update=_update_batch(claim, job_id, position, external_id, route, wire_json))


def _update_batch(
    claim: Claim, job_id: str, position: int, external_id: str, route: Route, wire_json: str
) -> BatchPlan:
    batch_id = f"{job_id}@{position}.u"
    meta = {
        "tenant": route.tenant,
        "kind": route.kind,
        "target": route.target,
        "external_ids": json.dumps([external_id], ensure_ascii=False),
        "high_water": "0",
        "operation": UPDATE,
        "erp_key": str(claim.key),
    }
    pending = Record(external_id, DocStatus.PENDING, key=claim.key, number=claim.number, batch_id=batch_id)
    return BatchPlan(batch_id, meta, [(job_id, position)], f"[{wire_json}]", [RecordUpdate(job_id, position, pending)])


def place_updates(enqueue: Enqueue, plans: list[BatchPlan]) -> None:
    """Store the update batches (those not stored by an earlier run) and place them with the dispatcher."""
    if not plans:
        return
    store = runtime.store()
    heads = store.batch_heads([plan.batch_id for plan in plans])
    store.commit_batches([plan for plan, head in zip(plans, heads, strict=True) if head is None])
    by_tenant: dict[str, list[str]] = {}
    for plan in plans:
        by_tenant.setdefault(plan.meta["tenant"], []).append(plan.batch_id)
    for tenant, batch_ids in by_tenant.items():
        place(enqueue, tenant, batch_ids)
