"""Validation of a Fortnox document posted to the sandbox, read from the spec independently of schemas/.

Checks, in this order (the first problem found is the answer, HTTP 400):

1. The body is ``{"<Wrapper>": {...}}`` ("Invoice", "Order", "Offer", "Article") and nothing else.
2. Every field is one the spec's payload schema has (sandbox.fortnox_fields), recursively through
   rows, bundles, EmailInformation, EDIInformation and Labels, and has its type: strings are
   strings, numbers JSON numbers (not "12"), integers whole numbers, booleans true/false, dates
   ``YYYY-MM-DD`` (a real day). ``null`` is accepted anywhere (as absent).
3. Invoices, orders and offers: ``CustomerNumber`` is present (a non-empty string) and a customer
   of the register (the same register as SoftOne's: by default every all-digit number exists).
   Articles: ``Description`` is present. A DocumentNumber sent by the client must be all digits.
4. EasyVat (an account setting, on by default): a row - or a bundle's sub row - whose VAT is not
   one of 25, 12, 6, 0 and that has no AccountNumber gives code 2004167 with the spec's text
   (followed, like every message here, by the field).

Codes: where Fortnox's published error list has one for the case, the sandbox uses it (2000106
not a string, 2000108 not numeric, 2000134 not a boolean, 2001392 no or wrong kind of data,
2001399 invalid field name, 2002115 JSON syntax, 2000588 invalid parameter, 2000311 missing or
invalid authorization, 1000003 system exception) and 2004167 is the spec's. For the cases that list
does not cover the sandbox uses its OWN codes 2099001-2099010 (see below; 2099006 is the 429's):
clients should show the Message and not act on those numbers. Every validation Message names the
field (``Fält: InvoiceRows[0].Price.``).

An update (PUT) is validated twice: its body alone by :func:`check_fields` (so an error names the
body's own paths), then the document it makes, merged with the stored one, as a created one. The
refusals of updates and actions (sandbox.fortnox_actions) use 2099007 (the body names another
document number), 2099008 (the document is locked: booked, sent, cancelled or invoiced),
2099009 (the action is not possible in the document's state) and 2099010 (an unknown RowId).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from sandbox.fortnox_fields import BOOLEAN, DATE, INTEGER, NUMBER, QUANTITY, STRING, FieldType, Shape

# From Fortnox's published error list.
CODE_NOT_ALPHANUMERIC = 2000106
CODE_NOT_NUMERIC = 2000108
CODE_NOT_BOOLEAN = 2000134
CODE_INVALID_LOGIN = 2000311
CODE_INVALID_PARAMETER = 2000588
CODE_NO_DATA = 2001392
CODE_INVALID_FIELD_NAME = 2001399
CODE_JSON_SYNTAX = 2002115
CODE_SYSTEM_EXCEPTION = 1000003
# From the spec (invoice, order and offer create endpoints).
CODE_EASY_VAT = 2004167
EASY_VAT_MESSAGE = "An account must be provided when using a custom VAT rate and EasyVat has been enabled."
# The sandbox's own codes (not in Fortnox's published list).
CODE_REQUIRED = 2099001
CODE_INVALID_DATE = 2099002
CODE_CUSTOMER_NOT_FOUND = 2099003
CODE_NUMBER_IN_USE = 2099004
CODE_NOT_FOUND = 2099005
CODE_NUMBER_MISMATCH = 2099007
CODE_LOCKED = 2099008
CODE_NOT_ALLOWED = 2099009
CODE_UNKNOWN_ROW = 2099010

STANDARD_VAT_RATES = frozenset({25, 12, 6, 0})
_DECIMAL_STRING = re.compile(r"-?\d+(\.\d+)?")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class FortnoxError:
    """An error answer: HTTP status, Fortnox code and message."""

    code: int
    message: str
    status: int = 400


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def field_error(code: int, text: str, path: str) -> FortnoxError:
    return FortnoxError(code, f"{text} Fält: {path}.")


def is_number(value: Any) -> bool:
    """A finite JSON number (booleans are not numbers here)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def is_whole(value: Any) -> bool:
    """An integer, or a float with no fractional part (1000.0)."""
    return is_number(value) and float(value).is_integer()


def is_date(value: Any) -> bool:
    """``YYYY-MM-DD`` naming a real day."""
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def is_quantity(value: Any) -> bool:
    """A JSON number or a string holding a decimal number ("2", "2.50")."""
    return is_number(value) or (isinstance(value, str) and _DECIMAL_STRING.fullmatch(value) is not None)


def _type_error(type_name: str, value: Any, path: str) -> FortnoxError | None:
    shown = _shown(value)
    if type_name == STRING and not isinstance(value, str):
        return field_error(CODE_NOT_ALPHANUMERIC, f"Värdet måste vara alfanumeriskt ({shown}).", path)
    if type_name == NUMBER and not is_number(value):
        return field_error(CODE_NOT_NUMERIC, f"Värdet måste vara numeriskt ({shown}).", path)
    if type_name == INTEGER and not is_whole(value):
        return field_error(CODE_NOT_NUMERIC, f"Värdet måste vara numeriskt, ett heltal ({shown}).", path)
    if type_name == QUANTITY and not is_quantity(value):
        return field_error(CODE_NOT_NUMERIC, f"Värdet måste vara numeriskt ({shown}).", path)
    if type_name == BOOLEAN and not isinstance(value, bool):
        return field_error(CODE_NOT_BOOLEAN, f"Värdet måste vara en boolean ({shown}).", path)
    if type_name == DATE and not is_date(value):
        return field_error(CODE_INVALID_DATE, f"Ogiltigt datum ({shown}), förväntade ÅÅÅÅ-MM-DD.", path)
    return None


def check_fields(obj: Mapping[str, Any], fields: Shape, prefix: str = "") -> FortnoxError | None:
    """The first unknown field or wrongly typed value in ``obj`` (recursively), or None."""
    for name, value in obj.items():
        path = f"{prefix}{name}"
        expected: FieldType | None = fields.get(name)
        if expected is None:
            return field_error(CODE_INVALID_FIELD_NAME, f"Felaktigt fältnamn ({name}).", path)
        if value is None:
            continue
        if isinstance(expected, str):
            error = _type_error(expected, value, path)
        elif isinstance(expected, dict):
            error = _check_object(value, expected, path)
        else:
            error = _check_list(value, expected[0], path)
        if error is not None:
            return error
    return None


def _check_object(value: Any, fields: Shape, path: str) -> FortnoxError | None:
    if not isinstance(value, Mapping):
        return field_error(
            CODE_NO_DATA, f"Ingen eller felaktig typ av data ({_shown(value)}), förväntade ett objekt.", path
        )
    return check_fields(value, fields, f"{path}.")


def _check_list(value: Any, item_fields: Shape, path: str) -> FortnoxError | None:
    if not isinstance(value, list):
        return field_error(
            CODE_NO_DATA, f"Ingen eller felaktig typ av data ({_shown(value)}), förväntade en lista.", path
        )
    for i, item in enumerate(value):
        error = _check_object(item, item_fields, f"{path}[{i}]")
        if error is not None:
            return error
    return None


def unwrap(body: Any, wrapper: str) -> dict[str, Any] | FortnoxError:
    """The document inside ``{"<wrapper>": {...}}``, or the error to answer."""
    if not isinstance(body, Mapping) or not isinstance(body.get(wrapper), Mapping):
        return FortnoxError(CODE_NO_DATA, f'Ingen eller felaktig typ av data. Förväntade {{"{wrapper}": {{...}}}}.')
    for name in body:
        if name != wrapper:
            return field_error(CODE_INVALID_FIELD_NAME, f"Felaktigt fältnamn ({name}).", name)
    return dict(body[wrapper])


def _required_str(doc: Mapping[str, Any], name: str) -> FortnoxError | None:
    value = doc.get(name)
    if not isinstance(value, str) or value.strip() == "":
        return field_error(CODE_REQUIRED, f"{name} måste anges.", name)
    return None


def _custom_vat_without_account(rows: Any, path: str) -> FortnoxError | None:
    """2004167 for the first row (or bundle sub row) with a non-standard VAT and no AccountNumber."""
    for i, row in enumerate(rows or []):
        vat = row.get("VAT")
        if vat is not None and float(vat) not in STANDARD_VAT_RATES and row.get("AccountNumber") is None:
            return field_error(CODE_EASY_VAT, EASY_VAT_MESSAGE, f"{path}[{i}].VAT")
        bundle = row.get("Bundle") or {}
        error = _custom_vat_without_account(bundle.get("SubRows"), f"{path}[{i}].Bundle.SubRows")
        if error is not None:
            return error
    return None


def validate_document(
    doc: Mapping[str, Any], fields: Shape, rows_field: str, customers: Mapping[str, str], easy_vat: bool
) -> FortnoxError | None:
    """None if an invoice / order / offer can be saved, else the first problem (see module docstring)."""
    error = check_fields(doc, fields) or _required_str(doc, "CustomerNumber")
    if error is not None:
        return error
    customer_nr = doc["CustomerNumber"]
    if customer_nr not in customers:
        return field_error(CODE_CUSTOMER_NOT_FOUND, f"Kunde inte hitta kund ({customer_nr}).", "CustomerNumber")
    number = doc.get("DocumentNumber")
    if number is not None and not (number.isascii() and number.isdigit()):
        return field_error(CODE_NOT_NUMERIC, f"Värdet måste vara numeriskt ({_shown(number)}).", "DocumentNumber")
    if easy_vat:
        return _custom_vat_without_account(doc.get(rows_field), rows_field)
    return None


def validate_article(doc: Mapping[str, Any], fields: Shape) -> FortnoxError | None:
    """None if an article can be saved (its number is checked against the register separately)."""
    return check_fields(doc, fields) or _required_str(doc, "Description")
