"""Reconciliation: which documents of a batch did the ERP save, when its answer did not say?

Used after an ambiguous failure (no answer, 500) and after SoftOne rejected an array part-way (it saves
the documents before the rejected one and returns no Keys). The only way to look is the invoice Filter,
which returns no ExternalId, so documents are matched to invoices on their content.

The matching rule:
- signature of a document = customer number, invoice date (day), and the multiset of its product rows as
  (ProductNr, Quantity, unit price), where the unit price is `UnitPrice`, else `Amount`; text rows are
  ignored. Numbers compare by value (6 == 6.0, 11.9 == 11.9000).
- candidates = invoices in the batch's date range whose InvoiceId we have not recorded for any document
  already, and which are newer than the highest Key we knew when the batch was planned.
- SoftOne saves an array in order and gives Keys in increasing order, so the saved documents are a prefix
  of the batch and their Keys increase along it: documents are matched in order, each to the lowest
  candidate with its signature above the previous match. The first document without a match is the end
  of the saved prefix (for a rejected array: the rejected document).
- A later document that could still match a candidate above the prefix is *doubtful*: the prefix rule
  says it was not saved, the ERP's content says it might have been. It is never resent: `unknown`.

Limits: an invoice created by someone else after the high-water mark, in the same date range and with
identical content, can be taken for ours (the document is then recorded with that Key instead of being
created). Rounding by the ERP of quantities or prices beyond what it echoes back would prevent a match
(the document is then resent, or — if rejected — treated as the rejected one). Orders have no Filter:
their uncertain outcomes stay `unknown` for an operator.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from schemas import FilteredInvoice

Signature = tuple[str, str, tuple[tuple[str, Decimal, Decimal], ...]]


def _dec(value: Any) -> Decimal:
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return Decimal("NaN")


def document_signature(doc: Mapping[str, Any]) -> Signature:
    """Signature of a document as we sent it (wire form)."""
    rows = []
    for row in doc.get("InvoiceRows") or []:
        if row.get("CustomerRowType") != 2:
            continue
        price = row.get("UnitPrice", row.get("Amount"))
        rows.append((str(row.get("ProductNr")), _dec(row.get("Quantity")), _dec(price)))
    return str(doc.get("CustomerNr")), str(doc.get("InvoiceDate"))[:10], tuple(sorted(rows))


def invoice_signature(inv: FilteredInvoice) -> Signature:
    """Signature of an invoice as the Filter returns it."""
    rows = [
        (str(r.product_nr), _dec(r.quantity), _dec(r.unit_price))
        for r in inv.invoice_rows
        if r.product_nr is not None and r.quantity is not None
    ]
    day = inv.invoice_date.isoformat()[:10] if inv.invoice_date is not None else ""
    return str(inv.customer_nr), day, tuple(sorted(rows))


@dataclass
class Reconciliation:
    """What the ERP holds of a batch: matched positions, where the saved prefix ends, doubtful positions."""

    matched: dict[int, FilteredInvoice] = field(default_factory=dict)
    boundary: int | None = None  # first position not saved; None: every document was found
    doubtful: list[int] = field(default_factory=list)

    def not_saved(self, size: int) -> list[int]:
        """Positions certainly not saved (from the boundary on, minus the doubtful)."""
        if self.boundary is None:
            return []
        return [i for i in range(self.boundary, size) if i not in set(self.doubtful)]


def reconcile(
    docs: Sequence[Mapping[str, Any]],
    invoices: Iterable[FilteredInvoice],
    known_keys: set[int],
    high_water: int = 0,
) -> Reconciliation:
    """Match a batch's documents (in body order) to invoices the ERP holds (see the module docstring)."""
    by_signature: dict[Signature, list[FilteredInvoice]] = defaultdict(list)
    for inv in sorted(invoices, key=lambda i: i.invoice_id):
        if inv.invoice_id > high_water and inv.invoice_id not in known_keys:
            by_signature[invoice_signature(inv)].append(inv)
    result = Reconciliation()
    last_id = high_water
    for position, doc in enumerate(docs):
        candidates = by_signature.get(document_signature(doc), [])
        pick = next((inv for inv in candidates if inv.invoice_id > last_id), None)
        if pick is None:
            result.boundary = position
            break
        candidates.remove(pick)
        result.matched[position] = pick
        last_id = pick.invoice_id
    if result.boundary is not None:
        for position in range(result.boundary + 1, len(docs)):
            candidates = by_signature.get(document_signature(docs[position]), [])
            if any(inv.invoice_id > last_id for inv in candidates):
                result.doubtful.append(position)
    return result


@dataclass
class Settlement:
    """What to do with each document of a reconciled batch."""

    created: dict[int, int | str]  # position -> Key found
    rejected: int | None  # position of the document the ERP rejected
    doubtful: list[int]  # positions to leave `unknown`
    resend: list[int]  # positions certainly not saved: send again
    doubt: str = ""  # why the doubtful ones cannot be settled (their records' reason), said by who found them


def settle(found: Reconciliation, size: int, *, rejected: bool) -> Settlement:
    """Turn a reconciliation into decisions. In a rejected array the first unsaved document is the one the
    ERP refused (it saves in order and stops there); after a lost answer nothing is known to be refused."""
    resend = found.not_saved(size)
    refused = found.boundary if rejected else None
    if refused is not None:
        resend = [i for i in resend if i != refused]
    created: dict[int, int | str] = {i: inv.invoice_id for i, inv in found.matched.items()}
    return Settlement(
        created=created,
        rejected=refused,
        doubtful=list(found.doubtful),
        resend=resend,
        doubt="an invoice with the same content exists in the ERP, but SoftOne's in-order saving says this "
        "document was not saved",
    )
