"""How a Fortnox update merges into a stored document, and how an action derives one document from another.

Pure functions on plain dicts (the documents as stored in the ledger); sandbox.fortnox_actions
decides when they apply.

Update (the spec's update sections of invoices, orders, offers and articles):

* "Any property not provided will be left unchanged": a field absent from the body, or ``null``
  (the sandbox reads null as absent everywhere), keeps its stored value. A nested object
  (EmailInformation, EDIInformation) is merged the same way; a list other than the rows
  (Labels) is replaced as a whole.
* The fields Fortnox's actions manage (MANAGED_FIELDS: Booked, Cancelled, Sent, WarehouseReady,
  Credit, CreditInvoiceReference, InvoiceReference, OrderReference, OfferReference) are read-only
  on update: a value in the body is ignored and the stored one kept, so that a PUT cannot un-book,
  un-send or un-credit a document. (They are accepted on create, as the spec's schema shows them.)
* Rows - the spec: "If RowId is not specified on any row, the rows will be mapped and updated in
  the order in which they are set in the array. All rows that should remain on the invoice needs
  to be provided. If RowId is specified on one or more rows: Corresponding row with that id will
  be updated. The rows without RowId will be interpreted as new rows. If a row should not be
  updated but remain on the invoice then specify only RowId like { "RowId": 123 }, otherwise it
  will be removed." So: without RowIds, row i of the body updates stored row i (its fields
  merged like the header's), body rows beyond the stored ones are new, stored rows beyond the
  body's are removed; with RowIds, the new list is the body's rows in the body's order - a row
  with a RowId is that stored row updated, one without is new - and stored rows not named are
  removed. A RowId that is not one of the document's rows, or is named twice, is refused
  (2099010). A body without the rows field leaves the rows as they are. Every update then gives
  every row a new RowId ("new RowIds are generated for all rows every time an invoice is
  updated").

Derived documents:

* A credit invoice (:func:`credit_copy`) is the invoice's content with every row's
  DeliveredQuantity negated (bundle sub rows too), ``Credit`` "true", ``CreditInvoiceReference``
  the original's number and today's InvoiceDate; it leaves out the original's number, state
  (Booked, Sent, Cancelled, WarehouseReady), dates that follow from the invoice date (DueDate,
  FinalPayDate), OCR, voucher, ExternalInvoiceReference1 (the client's id for the original, so
  that a look-up by it finds the original only) and the computed sums.
* Order -> invoice, offer -> invoice, offer -> order (:func:`converted`): the source's header
  fields the target schema has (customer, addresses, references, ExternalInvoiceReference1/2,
  EmailInformation, Labels, ...) and its rows with the fields the target's rows have; the row
  quantity becomes the target's (order rows' DeliveredQuantity - or, if they have none, their
  OrderedQuantity - and offer rows' Quantity become an invoice row's DeliveredQuantity; offer rows'
  Quantity an order row's OrderedQuantity). State, number, computed sums and the source's own
  conversion references are left out; the caller sets the date and the reference back.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sandbox.fortnox_fields import INVOICE, INVOICE_ROW, ORDER, ORDER_ROW, Shape
from sandbox.fortnox_rules import CODE_UNKNOWN_ROW, FortnoxError, field_error


def _names(text: str) -> frozenset[str]:
    """Field names, space-separated."""
    return frozenset(text.split())


MANAGED_FIELDS = _names(
    "Booked Cancelled Sent WarehouseReady Credit CreditInvoiceReference InvoiceReference OrderReference OfferReference"
)
COMPUTED_FIELDS = _names("@url Balance Gross Net Total TotalToPay TotalVAT")
COMPUTED_ROW_FIELDS = _names("RowId Total TotalExcludingVAT")
STATE_FIELDS = _names("DocumentNumber Booked Cancelled Sent WarehouseReady")
CREDIT_LEAVES_OUT = (
    STATE_FIELDS
    | COMPUTED_FIELDS
    | _names(
        "Credit CreditInvoiceReference DueDate ExternalInvoiceReference1 FinalPayDate InvoiceDate LastRemindDate OCR "
        "OutboundDate Reminders VoucherNumber VoucherSeries VoucherYear"
    )
)
CONVERSION_LEAVES_OUT = STATE_FIELDS | COMPUTED_FIELDS | _names("Credit CreditInvoiceReference")


def is_set(reference: Any) -> bool:
    """A document reference that names a document (Fortnox shows "0" or nothing for none)."""
    return reference not in (None, "", "0")


def merge_fields(stored: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """``stored`` with the non-null fields of ``given`` put in (objects merged recursively)."""
    out = copy.deepcopy(dict(stored))
    for name, value in given.items():
        if value is None:
            continue
        if isinstance(value, Mapping) and isinstance(out.get(name), Mapping):
            out[name] = merge_fields(out[name], value)
        else:
            out[name] = copy.deepcopy(value)
    return out


def merge_rows(
    stored: list[dict[str, Any]], given: list[dict[str, Any]], rows_field: str
) -> list[dict[str, Any]] | FortnoxError:
    """The rows after an update that sends ``given`` (see the module docstring), or the RowId error."""
    if all(row.get("RowId") is None for row in given):
        return [merge_fields(stored[i], row) if i < len(stored) else copy.deepcopy(row) for i, row in enumerate(given)]
    by_id = {int(row["RowId"]): row for row in stored if row.get("RowId") is not None}
    named: set[int] = set()
    out: list[dict[str, Any]] = []
    for i, row in enumerate(given):
        if row.get("RowId") is None:
            out.append(copy.deepcopy(row))
            continue
        row_id = int(row["RowId"])
        path = f"{rows_field}[{i}].RowId"
        if row_id not in by_id:
            return field_error(CODE_UNKNOWN_ROW, f"Kan inte hitta raden med RowId {row_id}.", path)
        if row_id in named:
            return field_error(CODE_UNKNOWN_ROW, f"Raden med RowId {row_id} anges flera gånger.", path)
        named.add(row_id)
        out.append(merge_fields(by_id[row_id], row))
    return out


def merge_update(
    stored: Mapping[str, Any], given: Mapping[str, Any], rows_field: str | None
) -> dict[str, Any] | FortnoxError:
    """The document an update with body ``given`` makes of ``stored`` (RowIds not yet renewed)."""
    header = {name: value for name, value in given.items() if name not in MANAGED_FIELDS and name != rows_field}
    merged = merge_fields(stored, header)
    if rows_field is not None and given.get(rows_field) is not None:
        rows = merge_rows(list(stored.get(rows_field) or []), list(given[rows_field]), rows_field)
        if isinstance(rows, FortnoxError):
            return rows
        merged[rows_field] = rows
    return merged


def negated(quantity: Any) -> Any:
    """``-quantity`` in the same JSON type ("2" -> "-2", 2.5 -> -2.5; zero stays as it is)."""
    if isinstance(quantity, str):
        number = Decimal(quantity)
        return quantity if number == 0 else str(-number)
    if isinstance(quantity, int | float) and not isinstance(quantity, bool) and quantity != 0:
        return -quantity
    return quantity


def _credit_row(row: Mapping[str, Any]) -> dict[str, Any]:
    out = {name: copy.deepcopy(value) for name, value in row.items() if name not in COMPUTED_ROW_FIELDS}
    if "DeliveredQuantity" in out:
        out["DeliveredQuantity"] = negated(out["DeliveredQuantity"])
    bundle = out.get("Bundle")
    if isinstance(bundle, dict) and isinstance(bundle.get("SubRows"), list):
        bundle["SubRows"] = [_credit_row(sub) for sub in bundle["SubRows"]]
    return out


def credit_copy(invoice: Mapping[str, Any], original_number: str, day: str) -> dict[str, Any]:
    """The credit invoice of ``invoice`` (see the module docstring); RowIds are given when it is saved."""
    out = {name: copy.deepcopy(value) for name, value in invoice.items() if name not in CREDIT_LEAVES_OUT}
    out["InvoiceRows"] = [_credit_row(row) for row in invoice.get("InvoiceRows") or []]
    out |= {"Credit": "true", "CreditInvoiceReference": original_number, "InvoiceDate": day}
    return out


@dataclass(frozen=True)
class Conversion:
    """How one kind of document becomes another: the rows' fields and the quantity's name on each side."""

    header: Shape  # the target's fields
    rows_from: str
    rows_to: str
    row: Shape  # the target's row fields
    quantity_to: str
    quantity_from: tuple[str, ...]  # the first of these the source row has


ORDER_TO_INVOICE = Conversion(INVOICE, "OrderRows", "InvoiceRows", INVOICE_ROW, "DeliveredQuantity",
                              ("DeliveredQuantity", "OrderedQuantity"))  # fmt: skip
OFFER_TO_INVOICE = Conversion(INVOICE, "OfferRows", "InvoiceRows", INVOICE_ROW, "DeliveredQuantity", ("Quantity",))
OFFER_TO_ORDER = Conversion(ORDER, "OfferRows", "OrderRows", ORDER_ROW, "OrderedQuantity", ("Quantity",))


def _converted_row(row: Mapping[str, Any], conversion: Conversion) -> dict[str, Any]:
    out = {
        name: copy.deepcopy(value)
        for name, value in row.items()
        if name in conversion.row and name not in COMPUTED_ROW_FIELDS and value is not None
    }
    quantity = next((row[name] for name in conversion.quantity_from if row.get(name) is not None), None)
    if quantity is not None:
        out[conversion.quantity_to] = quantity
    return out


def converted(source: Mapping[str, Any], conversion: Conversion) -> dict[str, Any]:
    """A new document of the conversion's target kind made from ``source`` (without date and references)."""
    out = {
        name: copy.deepcopy(value)
        for name, value in source.items()
        if name in conversion.header and name not in CONVERSION_LEAVES_OUT and name != conversion.rows_from
    }
    for name in ("InvoiceReference", "OrderReference"):
        out.pop(name, None)  # the source's own conversions
    out[conversion.rows_to] = [_converted_row(row, conversion) for row in source.get(conversion.rows_from) or []]
    return out
