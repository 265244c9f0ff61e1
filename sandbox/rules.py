"""Validation of one posted document (customer invoice or order), mirroring the spec tables.

Both POST endpoints take the same invoice-shaped body (the order spec says so explicitly).
Where the spec's tables and its examples disagree, the sandbox accepts what the examples send,
because the real service plainly accepted those requests:

* ``OriginType``: the table says "Always 6", the order example sends 6 and the invoice example
  sends 2 -> any positive integer is accepted.
* Row price: the table makes ``Amount`` ("Price for the row") mandatory, the order example
  sends ``Amount`` but the invoice example sends ``UnitPrice`` and no ``Amount`` -> a product
  row needs one of the two (``UnitPrice`` wins when both are present).
* ``ProductNr``/``Quantity``/price are mandatory only on product rows (CustomerRowType 2);
  a text row (3) is free text and needs ``Text`` instead.
* ``InvoiceDate`` is "string (date-time)" in the table but both examples send a plain date
  -> ``YYYY-MM-DD`` and ISO date-times are both accepted.
* Unknown fields (e.g. ``BillingType`` in the invoice example, absent from the table) are
  ignored, as a .NET JSON binder does.

Error messages are human readable, in the service's Swedish style, and name the field
(``InvoiceRows[0].Quantity saknas (obligatoriskt fält).``). They never say WHICH document of
the posted array failed: the real service does not tell, the caller has to work it out.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# ErrorNumber values of the operation result (the spec calls them implementation-specific).
ERROR_INVALID_BODY = 1  # body is not JSON / not an array of objects (HTTP 400)
ERROR_VALIDATION = 8  # a field is missing or has the wrong type/format (HTTP 200, Success false)
ERROR_UNKNOWN_CUSTOMER = 10  # CustomerNr is not a customer of the company (HTTP 200, Success false)

PRODUCT_ROW, TEXT_ROW = 2, 3
EXPECTED_DATE = "förväntade ett datum (ÅÅÅÅ-MM-DD) eller datum och tid"

HEADER_DATE_FIELDS = ("DueDate", "DeliveryDate", "VoucherDate", "OrderDate", "Created", "Modified")
ROW_DATE_FIELDS = ("Created", "Modified")
ROW_NUMBER_FIELDS = (
    "Quantity",
    "Amount",
    "UnitPrice",
    "Discount",
    "VatRate",
    "PurchasePrice",
    "VatAmount",
    "SumAmount",
)
HEADER_INT_FIELDS = ("BillingType", "OriginStatus", "RegistrationType", "OrderType")
HEADER_STR_FIELDS = ("ExternalId", "Currency", "CustomerName", "OrderNr", "CustomerInvoiceNr")
ROW_STR_FIELDS = ("Text", "ProductNr", "ExternalId", "Unit")

# YYYY-MM-DD, optionally followed by a time (.NET-style: up to 7 fraction digits, Z or offset).
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,7})?)?(Z|[+-]\d{2}:\d{2})?)?")


@dataclass(frozen=True)
class RuleError:
    """Why a document was rejected: ErrorNumber + ErrorMessage of the operation result."""

    number: int
    message: str


def parse_date(value: Any) -> datetime | None:
    """A naive datetime for a ``YYYY-MM-DD`` or ISO date-time string, else None.

    A UTC offset is dropped (the wall-clock value is kept): the service works with dates.
    """
    if not isinstance(value, str) or not _DATE_RE.fullmatch(value):
        return None
    try:
        return datetime.fromisoformat(value.replace(" ", "T")).replace(tzinfo=None)
    except ValueError:
        return None


def is_number(value: Any) -> bool:
    """A finite JSON number (booleans are not numbers here)."""
    kind = type(value)
    if kind is float or kind is int:  # what parsed JSON holds: the common case without the ABC-aware checks
        return math.isfinite(value)
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _missing(field: str) -> RuleError:
    return RuleError(ERROR_VALIDATION, f"{field} saknas (obligatoriskt fält).")


def _invalid(field: str, value: Any, expected: str) -> RuleError:
    shown = json.dumps(value, ensure_ascii=False, default=str)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return RuleError(ERROR_VALIDATION, f"{field} har ett ogiltigt värde ({shown}): {expected}.")


def _is_date(value: Any) -> bool:
    return parse_date(value) is not None


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _non_empty_str(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


def _is_positive_int(value: Any) -> bool:
    return is_int(value) and value > 0


def _is_row_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value)


#: A field's type check and what the error says it expected.
_TypeCheck = tuple[Callable[[Any], bool], str]

_DATE: _TypeCheck = (_is_date, EXPECTED_DATE)
_NUMBER: _TypeCheck = (is_number, "förväntade ett tal")
_INT: _TypeCheck = (is_int, "förväntade ett heltal")
_STR: _TypeCheck = (_is_str, "förväntade en sträng")
_NON_EMPTY_STR: _TypeCheck = (_non_empty_str, "förväntade en icke-tom sträng")
_POSITIVE_INT: _TypeCheck = (_is_positive_int, "förväntade ett positivt heltal")
_ROWS: _TypeCheck = (_is_row_list, "minst en fakturarad krävs")


def _type_checks(
    dates: tuple[str, ...], numbers: tuple[str, ...] = (), ints: tuple[str, ...] = (), strings: tuple[str, ...] = ()
) -> dict[str, _TypeCheck]:
    """The type checks of optional fields by name, in the order they are made: dates, numbers, integers, strings."""
    checks: dict[str, _TypeCheck] = {}
    for names, check in ((dates, _DATE), (numbers, _NUMBER), (ints, _INT), (strings, _STR)):
        for name in names:
            assert name not in checks, f"{name} has two types"
            checks[name] = check
    return checks


def _check_optional(obj: Mapping[str, Any], prefix: str, checks: Mapping[str, _TypeCheck]) -> RuleError | None:
    """Type checks for optional fields; ``null`` counts as absent.

    First only the fields the object has are checked (a row carries 8 of the 14), without building a message; an
    object that is not clear is then walked in the order of `checks`, so the first problem named is the same
    whatever order its fields came in."""
    for name, value in obj.items():
        check = checks.get(name)
        if check is not None and value is not None and not check[0](value):
            break
    else:
        return None
    for name, (is_valid, expected) in checks.items():
        value = obj.get(name)
        if value is not None and not is_valid(value):
            return _invalid(prefix + name, value, expected)
    return None  # pragma: no cover - the first loop found a field that fails its check


def _required(obj: Mapping[str, Any], prefix: str, name: str, check: _TypeCheck) -> RuleError | None:
    """A mandatory field: missing (absent or ``null``), or not what `check` expects."""
    value = obj.get(name)
    if value is None:
        return _missing(prefix + name)
    is_valid, expected = check
    return None if is_valid(value) else _invalid(prefix + name, value, expected)


def validate_row(row: Any, index: int, seen_row_nrs: set[int]) -> RuleError | None:
    """Check one InvoiceRows item; ``seen_row_nrs`` collects RowNr for the uniqueness check.

    It runs for every row of every posted document: its checks are written out (no `_required`) to stay cheap."""
    p = f"InvoiceRows[{index}]."
    if not isinstance(row, dict):  # parsed JSON: dict is exact, and cheaper to test than the Mapping ABC
        return _invalid(f"InvoiceRows[{index}]", row, "förväntade ett objekt")
    row_type = row.get("CustomerRowType")
    if row_type is None:
        return _missing(p + "CustomerRowType")
    if not is_int(row_type) or row_type not in (PRODUCT_ROW, TEXT_ROW):
        return _invalid(p + "CustomerRowType", row_type, "tillåtna värden är 2 (ProductRow) och 3 (TextRow)")
    row_nr = row.get("RowNr")
    if row_nr is None:
        return _missing(p + "RowNr")
    if not is_int(row_nr):
        return _invalid(p + "RowNr", row_nr, "förväntade ett heltal")
    if row_nr in seen_row_nrs:
        return RuleError(ERROR_VALIDATION, f"{p}RowNr {row_nr} förekommer flera gånger i samma dokument.")
    seen_row_nrs.add(row_nr)
    error = _product_row_error(row, p) if row_type == PRODUCT_ROW else _text_row_error(row, p)
    return error or _check_optional(row, p, _ROW_CHECKS)


def _product_row_error(row: Mapping[str, Any], p: str) -> RuleError | None:
    """A product row names its product and has a quantity and a price (UnitPrice or Amount)."""
    if error := _required_text(row, "ProductNr", p):
        return error
    if row.get("Quantity") is None:
        return _missing(p + "Quantity")
    if row.get("UnitPrice") is None and row.get("Amount") is None:
        return RuleError(ERROR_VALIDATION, f"{p}UnitPrice/{p}Amount saknas (pris är obligatoriskt).")
    return None


def _text_row_error(row: Mapping[str, Any], p: str) -> RuleError | None:
    """A text row is free text: it needs a Text."""
    return _required_text(row, "Text", p)


def _required_text(row: Mapping[str, Any], name: str, p: str) -> RuleError | None:
    """The row's `name` is there and a non-empty string."""
    value = row.get(name)
    if value is None:
        return _missing(p + name)
    if not _non_empty_str(value):
        return _invalid(p + name, value, "förväntade en icke-tom sträng")
    return None


def _rows_error(rows: list[Any]) -> RuleError | None:
    """The first problem of the first row that has one."""
    seen: set[int] = set()
    for i, row in enumerate(rows):
        error = validate_row(row, i, seen)
        if error:
            return error
    return None


def validate_document(doc: Mapping[str, Any], customers: Mapping[str, str]) -> RuleError | None:
    """None if the document can be saved, else the first problem found (a RuleError is always true)."""
    error = (
        _required(doc, "", "CustomerNr", _NON_EMPTY_STR)
        or _required(doc, "", "InvoiceDate", _DATE)
        or _required(doc, "", "OriginType", _POSITIVE_INT)
        or _required(doc, "", "InvoiceRows", _ROWS)
        or _rows_error(doc["InvoiceRows"])
        or _check_optional(doc, "", _HEADER_CHECKS)
    )
    if error:
        return error
    # Business rule, checked last like a lookup after model binding: the customer must exist.
    customer_nr = doc["CustomerNr"]
    if customer_nr not in customers:
        return RuleError(ERROR_UNKNOWN_CUSTOMER, f"Kund med kundnummer '{customer_nr}' hittades inte.")
    return None


_ROW_CHECKS = _type_checks(ROW_DATE_FIELDS, ROW_NUMBER_FIELDS, strings=ROW_STR_FIELDS)
_HEADER_CHECKS = _type_checks(HEADER_DATE_FIELDS, ints=HEADER_INT_FIELDS, strings=HEADER_STR_FIELDS)
