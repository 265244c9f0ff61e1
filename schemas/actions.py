"""Follow-up operations: what a job with `"operation": "act"` asks of documents created earlier, named by their id.

Each document of such a job is an action on one document the ERP holds, addressed by the producer's own id (the
one it was created with: ExternalId, ExternalInvoiceReference1, ...; a Fortnox offer's is `<job id>#<position>` of
the job that created it, offers having no id field of ours)::

    {"ExternalId": "O-1001", "Action": "createinvoice", "ResultExternalId": "INV-O-1001"}

The job's `kind` is the kind of the addressed document. Bookkeep: the spec has one undescribed section where bookkeep
and cancel stand in Fortnox's path order (sandbox/fortnox_actions.py); bookkeep is taken as documented there. Which
actions each (target, kind) takes, and the kind of
the document an action creates (Fortnox's API documentation, https://api.fortnox.se/apidocs):

| target  | kind             | Action           | does                                           | creates          |
|---------|------------------|------------------|------------------------------------------------|------------------|
| fortnox | customer_invoice | `credit`         | a credit invoice (CreditInvoiceReference)      | customer_invoice |
| fortnox | customer_invoice | `bookkeep`       | books the invoice                              | -                |
| fortnox | customer_invoice | `externalprint`  | marks it sent, without sending it              | -                |
| fortnox | customer_invoice | `warehouseready` | marks it ready in the warehouse module         | -                |
| fortnox | order            | `createinvoice`  | an invoice from the order (InvoiceReference)   | customer_invoice |
| fortnox | order            | `externalprint`  | marks it sent                                  | -                |
| fortnox | offer            | `createorder`    | an order from the offer (OrderReference)       | order            |
| fortnox | offer            | `createinvoice`  | an invoice from the offer (InvoiceReference)   | customer_invoice |
| fortnox | offer            | `externalprint`  | marks it sent                                  | -                |

The document an action creates gets the id `ResultExternalId` in the duplicate index (by default
`<ExternalId>:<Action>`), so a later job can address it in turn (credit the invoice made from an order). SoftOne GO
and the invoice service document no operation beyond creating: a job of actions for them is refused.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from schemas.kinds import DocumentKind, Target
from schemas.types import ExternalId

__all__ = ["ACTIONS", "Action", "ActionDocument", "actions_of", "result_external_id"]


class Action(StrEnum):
    """An operation on a document the ERP holds: Fortnox's own name for it (the last part of its path)."""

    CREDIT = "credit"
    BOOKKEEP = "bookkeep"
    EXTERNALPRINT = "externalprint"
    WAREHOUSEREADY = "warehouseready"
    CREATEINVOICE = "createinvoice"
    CREATEORDER = "createorder"


_INVOICE, _ORDER, _OFFER = DocumentKind.CUSTOMER_INVOICE, DocumentKind.ORDER, DocumentKind.OFFER

#: Per (target, kind): the actions it takes, each with the kind of document it creates (None: it creates none).
ACTIONS: dict[tuple[Target, DocumentKind], dict[Action, DocumentKind | None]] = {
    (Target.FORTNOX, _INVOICE): {
        Action.CREDIT: _INVOICE,
        Action.BOOKKEEP: None,
        Action.EXTERNALPRINT: None,
        Action.WAREHOUSEREADY: None,
    },
    # The spec documents no warehouseready, cancel or retrieve of an order, nor cancel or retrieve of an offer.
    (Target.FORTNOX, _ORDER): {Action.CREATEINVOICE: _INVOICE, Action.EXTERNALPRINT: None},
    (Target.FORTNOX, _OFFER): {Action.CREATEORDER: _ORDER, Action.CREATEINVOICE: _INVOICE, Action.EXTERNALPRINT: None},
}


def actions_of(target: Target | str, kind: DocumentKind | str) -> dict[Action, DocumentKind | None]:
    """The actions documents of `kind` at `target` take (empty: none)."""
    return ACTIONS.get((Target(target), DocumentKind(kind)), {})


class ActionDocument(BaseModel):
    """One action of an `act` job (see the module docstring). Wire names as the producer writes them."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_by_alias=True, serialize_by_alias=True)

    external_id: ExternalId = Field(alias="ExternalId")
    action: Action = Field(alias="Action")
    result_external_id: ExternalId | None = Field(default=None, alias="ResultExternalId")

    def to_wire_json(self) -> str:
        """The action as stored and sent to the send step (no nulls)."""
        return self.model_dump_json(exclude_none=True)

    @classmethod
    def validate_for(cls, target: Target | str, kind: DocumentKind | str, raw: Any) -> ActionDocument:
        """Validated for `target` and `kind` (ValueError/ValidationError otherwise)."""
        action = cls.model_validate(raw)
        allowed = actions_of(target, kind)
        if action.action not in allowed:
            names = ", ".join(allowed) or "none"
            raise ValueError(
                f"Action: {action.action.value!r} is not an action on {DocumentKind(kind).value} documents at "
                f"{Target(target).value} (it takes: {names})"
            )
        if action.result_external_id is not None and allowed[action.action] is None:
            raise ValueError(f"ResultExternalId: {action.action.value!r} creates no document to name")
        if action.result_external_id == action.external_id:
            raise ValueError("ResultExternalId: must differ from ExternalId (it names the new document)")
        return action


def result_external_id(action: ActionDocument) -> str:
    """The id the document an action creates gets in the duplicate index."""
    return action.result_external_id or f"{action.external_id}:{action.action.value}"
