"""Reconciliation: which documents of a batch did the ERP save, when its answer did not say?

Used after an ambiguous failure (no answer, 500) and after SoftOne rejected an array part-way (it saves
the documents before the rejected one and returns no Keys). The only way to look is the invoice Filter,
which returns no ExternalId, so documents are matched to invoices on their content.

The matching rule:
- signature of a document = customer number, invoice date (day), and the multiset of its product rows as
  (ProductNr, Quantity, unit price), where the unit price is `UnitPrice`, else `Amount`. Numbers compare by
  value (6 == 6.0, 11.9 == 11.9000). Two documents with one signature are *look-alikes*.
- details = what else the Filter echoes back and the document says: DueDate (day), Currency, BillingType,
  and every row's Text (text rows included). A detail the document leaves out is not compared (the ERP
  fills it in: a due date from its terms, SEK, the product's name). Details only choose between candidates
  (below); they never make a saved document look unsaved, as an ERP that trims or rewrites a text would.
- candidates = invoices in the batch's date range whose InvoiceId we have not recorded for any document
  already, and which are newer than the batch's high-water mark: the highest Key we knew when the batch took
  its look-alike hold (worker/store/lookalikes.py; earlier, the one known when it was planned).
- SoftOne saves an array in order and gives Keys in increasing order, so the saved documents are a prefix
  of the batch and their Keys increase along it: documents are matched in order, each to the lowest
  candidate with its signature above the previous match, preferring one whose details match too. The first
  document without a match is the end of the saved prefix (for a rejected array: the rejected document).
- A later document that could still match a candidate above the prefix is *doubtful*: the prefix rule
  says it was not saved, the ERP's content says it might have been. It is never resent: `unknown`.

Why this is exact for our own documents: no two look-alikes of a tenant are ever in flight at once (the send
step holds every signature of its batch before the POST and a batch that meets a held one leaves those
documents to a later batch: worker/pipeline/send.py). So when a batch is looked up, every earlier look-alike
of ours is settled and its Key known (excluded), and nothing of ours sent later can be among the candidates:
an invoice with a batch document's signature above the high-water mark is that batch's own. Look-alikes
inside one batch are told apart by SoftOne's save order.

Limits (what the rule cannot see):
- an invoice created by someone else (not through erpsync) after the high-water mark, in the same date range
  and with the same signature, can be taken for ours when its details do not tell them apart (the document is
  then recorded with that Key instead of being created), or make a later document doubtful;
- an earlier look-alike whose outcome stayed `unknown` (the ERP could not be asked) may have an invoice above
  the mark: the same;
- rounding by the ERP of quantities or prices beyond what it echoes back would prevent a match (the document
  is then resent, or — if rejected — treated as the rejected one).
Orders have no Filter: they are sent one per request (worker/connectors/softone.py), so an open outcome is
one order's.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

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


def lookalike_key(doc: Mapping[str, Any]) -> str:
    """A short, stable name of a document's signature (the look-alike hold's key in Redis). It runs for every
    document of every SoftOne invoice batch, so numbers are compared as floats, not Decimals: 6, 6.0 and "6.000"
    alike, which is how they compare in the wire form the batch body holds."""
    rows = []
    for row in doc.get("InvoiceRows") or ():
        if row.get("CustomerRowType") == 2:
            price = row.get("UnitPrice", row.get("Amount"))
            rows.append((str(row.get("ProductNr")), _by_value(row.get("Quantity")), _by_value(price)))
    rows.sort()
    signature = [str(doc.get("CustomerNr")), str(doc.get("InvoiceDate"))[:10], rows]
    try:
        text = orjson.dumps(signature)
    except TypeError:  # a lone surrogate in a text: the standard library writes it
        text = json.dumps(signature).encode()
    return hashlib.blake2b(text, digest_size=12).hexdigest()


def _by_value(value: Any) -> float | str:
    """A number as a float (6, 6.0 and "6.000" are 6.0); anything else as text."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def invoice_signature(inv: FilteredInvoice) -> Signature:
    """Signature of an invoice as the Filter returns it."""
    rows = [
        (str(r.product_nr), _dec(r.quantity), _dec(r.unit_price))
        for r in inv.invoice_rows
        if r.product_nr is not None and r.quantity is not None
    ]
    day = inv.invoice_date.isoformat()[:10] if inv.invoice_date is not None else ""
    return str(inv.customer_nr), day, tuple(sorted(rows))


def _same_day(sent: Any, found: Any) -> bool:
    found_day = found.isoformat()[:10] if hasattr(found, "isoformat") else str(found or "")[:10]
    return str(sent)[:10] == found_day


def details_match(doc: Mapping[str, Any], inv: FilteredInvoice) -> bool:
    """Whether what the document says beyond its signature (see the module docstring) is what the invoice shows."""
    if doc.get("DueDate") is not None and not _same_day(doc["DueDate"], inv.due_date):
        return False
    if doc.get("Currency") is not None and str(doc["Currency"]).upper() != str(inv.currency or "").upper():
        return False
    if doc.get("BillingType") is not None and inv.billing_type is not None and doc["BillingType"] != inv.billing_type:
        return False
    sent = sorted(str(row["Text"]).strip() for row in doc.get("InvoiceRows") or [] if row.get("Text") is not None)
    if not sent:
        return True
    shown = [str(r.text).strip() for r in inv.invoice_rows if r.text is not None]
    remaining = list(shown)
    for text in sent:  # each text the document sent is on a row of its own
        if text not in remaining:
            return False
        remaining.remove(text)
    return True


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
        candidates = [inv for inv in by_signature.get(document_signature(doc), []) if inv.invoice_id > last_id]
        pick = next((inv for inv in candidates if details_match(doc, inv)), None)
        if pick is None:
            pick = candidates[0] if candidates else None
        if pick is None:
            result.boundary = position
            break
        by_signature[document_signature(doc)].remove(pick)
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
