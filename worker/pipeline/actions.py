"""Follow-up operations: the documents of an `act` job are actions on documents created earlier, named by their ids.

    intake ──(an action, validated: schemas/actions.py)──▶ [resolve: the ERP's number from the duplicate index]
        ──▶ an action batch of its own ──▶ send (the connector's `act`) ──▶ record

The addressed document is found in the duplicate index by its id. One that is still being created or changed by
another job (claimed, or an update or action in flight) is waited for, so actions on one id run in the order of
their jobs and never at once: the action claims the entry as an update does ("updating|<owner>|<created value>",
worker/store/results.py) and puts it back when it ends. One never created (or failed) fails the action; one whose
creation is `unknown` makes it `unknown` too.

The record: `created` with the new document's Key where the action creates one (a credit invoice, an invoice from
an order: the index learns it under the action's ResultExternalId, so a later job can address it), else `updated`
with the addressed document's Key; `duplicate` where that id was made by an earlier run of the action.

Exactly once: the connector reads the addressed document before every attempt and does not act again where the
action shows (a CreditInvoiceReference, an InvoiceReference, Booked, Sent, WarehouseReady): a lost answer is a reason
to try again, and the try finds the action done (worker/connectors/fortnox.py).
"""

from __future__ import annotations

import json

from schemas import DocumentKind
from schemas.actions import ActionDocument, actions_of, result_external_id
from worker.pipeline import runtime
from worker.pipeline.updates import Resolved
from worker.store.records import ACT, BatchPlan, ClaimState, DocStatus, Record, RecordUpdate, Route, owner_of

__all__ = ["resolve_action"]


def resolve_action(job_id: str, position: int, route: Route, action: ActionDocument) -> Resolved:
    """What becomes of one action now: its record, an action batch to send, or (both None) wait and look again."""
    store = runtime.store()
    owner = owner_of(job_id, position)
    xid = action.external_id
    makes = actions_of(route.target, route.kind)[action.action]
    if makes is not None:  # an earlier run of this action made its document already
        made = store.lookup(route.tenant, makes.value, result_external_id(action), owner)
        if made is not None and made.state == ClaimState.CREATED:
            return Resolved(Record(xid, DocStatus.DUPLICATE, key=made.key, number=made.number))
    addressed = store.lookup(route.tenant, route.kind, xid, owner)
    if addressed is None:
        return Resolved(_failed(xid, f"no {route.kind} with id {xid!r} was created through erpsync (the duplicate "
                                     "index has none, or it failed): create it first, or check the id"))  # fmt: skip
    if addressed.state == ClaimState.CLAIMED:
        return Resolved(_unknown(xid, addressed.owner) if _unknown_owner(addressed.owner) else None)
    if addressed.state == ClaimState.CREATED and not store.claim_update(
        route.tenant, route.kind, xid, owner, addressed
    ):
        return Resolved()  # another job took it meanwhile: wait for it
    return Resolved(update=_action_batch(job_id, position, route, action, addressed.key, addressed.number, makes))


def _action_batch(
    job_id: str,
    position: int,
    route: Route,
    action: ActionDocument,
    key: int | str | None,
    number: str | None,
    makes: DocumentKind | None,
) -> BatchPlan:
    batch_id = f"{job_id}@{position}.a"
    meta = {
        "tenant": route.tenant,
        "kind": route.kind,
        "target": route.target,
        "external_ids": json.dumps([action.external_id], ensure_ascii=False),
        "high_water": "0",
        "operation": ACT,
        "action": action.action.value,
        "erp_key": str(key),
        "result_kind": makes.value if makes is not None else "",
        "result_external_id": result_external_id(action) if makes is not None else "",
    }
    pending = Record(action.external_id, DocStatus.PENDING, key=key, number=number, batch_id=batch_id)
    body = f"[{action.to_wire_json()}]"
    return BatchPlan(batch_id, meta, [(job_id, position)], body, [RecordUpdate(job_id, position, pending)])


def _unknown_owner(owner: str) -> bool:
    """Whether the document holding a claim has an unknown outcome (or is gone): waiting cannot settle it."""
    job_id, _, position = owner.partition("#")
    record = runtime.store().record(job_id, int(position)) if position.isdigit() else None
    return record is None or record.status == DocStatus.UNKNOWN


def _failed(external_id: str, reason: str) -> Record:
    return Record(external_id, DocStatus.FAILED, error=reason)


def _unknown(external_id: str, owner: str) -> Record:
    return Record(
        external_id,
        DocStatus.UNKNOWN,
        error=f"the document {external_id!r} names (job {owner.partition('#')[0]}) has an unknown outcome: resolve it "
        "before acting on it",
    )
