"""Which model validates a document of each (target, kind), and which of its fields carries our id.

The id ("ExternalId" in the results store) is what the duplicate index is keyed on and, where the ERP can
filter on it, how we ask the ERP whether a document exists after an ambiguous failure:

| target         | kind             | field                      | filled in when missing |
|----------------|------------------|----------------------------|------------------------|
| softone        | customer_invoice | ExternalId                 | yes                    |
| softone        | order            | ExternalId                 | yes                    |
| fortnox        | customer_invoice | ExternalInvoiceReference1  | yes (the invoice list filters on it) |
| fortnox        | order            | ExternalInvoiceReference1  | yes (the order list filters on it)   |
| fortnox        | offer            | none: ids are per job      | -                      |
| fortnox        | article          | ArticleNumber              | no: Fortnox assigns one; ids are then per job |
| invoiceservice | customer_invoice | invoiceNumber (required)   | no                     |

"Filled in" means the producer writes a derived id (`<job id>#<position>`) into the document when the
field is empty, so the ERP holds it too. ArticleNumber and invoiceNumber are the customer's own numbers,
never invented by us.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Self

from schemas.actions import ActionDocument
from schemas.fortnox import FortnoxArticle, FortnoxInvoice, FortnoxOffer, FortnoxOrder
from schemas.invoice_service import ServiceInvoice
from schemas.kinds import DocumentKind, Target
from schemas.softone import INVOICE_WIRE, ORDER_WIRE, CustomerInvoice, Order
from schemas.wire import WireValidator


class DocumentModel(Protocol):
    """What the pipeline uses of a document model (a pydantic model of schemas/): validation by wire names, and
    the validated document as the ERP takes it. Every `DocumentType.model` is one."""

    @classmethod
    def model_validate(cls, obj: Any, *, by_alias: bool | None = None) -> Self: ...

    @classmethod
    def model_validate_json(cls, json_data: str | bytes | bytearray, *, by_alias: bool | None = None) -> Self: ...

    def to_wire_json(self) -> str:
        """The document as the ERP takes it (wire names, no nulls)."""
        ...


@dataclass(frozen=True, slots=True)
class DocumentType:
    """A (target, kind): its model, its id field and, where there is one, its wire validator (schemas/wire.py)."""

    model: type[DocumentModel]
    id_field: str | None
    fill_id: bool
    wire: WireValidator | None = None


DOCUMENT_TYPES: dict[tuple[Target, DocumentKind], DocumentType] = {
    (Target.SOFTONE, DocumentKind.CUSTOMER_INVOICE): DocumentType(CustomerInvoice, "ExternalId", True, INVOICE_WIRE),
    (Target.SOFTONE, DocumentKind.ORDER): DocumentType(Order, "ExternalId", True, ORDER_WIRE),
    (Target.FORTNOX, DocumentKind.CUSTOMER_INVOICE): DocumentType(FortnoxInvoice, "ExternalInvoiceReference1", True),
    (Target.FORTNOX, DocumentKind.ORDER): DocumentType(FortnoxOrder, "ExternalInvoiceReference1", True),
    (Target.FORTNOX, DocumentKind.OFFER): DocumentType(FortnoxOffer, None, False),
    (Target.FORTNOX, DocumentKind.ARTICLE): DocumentType(FortnoxArticle, "ArticleNumber", False),
    (Target.INVOICE_SERVICE, DocumentKind.CUSTOMER_INVOICE): DocumentType(ServiceInvoice, "invoiceNumber", False),
}


#: The documents of an `act` job: actions named by the id of the document they act on (schemas/actions.py).
ACTION_TYPE = DocumentType(ActionDocument, "ExternalId", False)


def job_document_type(target: Target | str, kind: DocumentKind | str, operation: str = "create") -> DocumentType:
    """The type of a job's documents: the target's documents of `kind`, or actions on them (operation `act`)."""
    return ACTION_TYPE if operation == "act" else document_type(target, kind)


#: What people call each target, in messages.
TARGET_NAMES: dict[Target, str] = {
    Target.SOFTONE: "SoftOne GO",
    Target.FORTNOX: "Fortnox",
    Target.INVOICE_SERVICE: "the invoice service",
}


def _and(words: list[str], last: str = "and") -> str:
    """`a`, `a and b`, `a, b and c`."""
    return f"{', '.join(words[:-1])} {last} {words[-1]}" if len(words) > 1 else "".join(words)


def kind_refusal(target: Target | str, kind: DocumentKind | str) -> str | None:
    """Why `target` does not take `kind`, to follow the target's name (TARGET_NAMES): "takes customer_invoice and
    order; article is for Fortnox". None when it does take it, or when either is no target or kind at all (the envelope
    says so then)."""
    try:
        target, kind = Target(target), DocumentKind(kind)
    except ValueError:
        return None
    takes = [k.value for t, k in DOCUMENT_TYPES if t is target]
    if kind.value in takes:
        return None
    others = [TARGET_NAMES[t] for t, k in DOCUMENT_TYPES if k is kind]
    elsewhere = f"{kind.value} is for {_and(others, 'or')}" if others else f"no target takes {kind.value}"
    return f"takes {_and(takes)}; {elsewhere}"


def check_supported(target: Target | str, kind: DocumentKind | str) -> None:
    """ValueError naming what the target does take, if it does not take `kind` (or is no target at all)."""
    try:
        target = Target(target)
    except ValueError:
        raise ValueError(f"unknown target {target!r}: one of {', '.join(t.value for t in Target)}") from None
    if (refusal := kind_refusal(target, kind)) is not None:
        raise ValueError(f"target {target.value} does not take {kind}: {TARGET_NAMES[target]} {refusal}")
    if kind not in [k for t, k in DOCUMENT_TYPES if t is target]:  # no kind at all
        raise ValueError(f"target {target.value} does not take {kind!r}: it is no document kind")


def document_type(target: Target | str, kind: DocumentKind | str) -> DocumentType:
    """The DocumentType of a supported (target, kind); KeyError otherwise (see check_supported)."""
    return DOCUMENT_TYPES[Target(target), DocumentKind(kind)]
