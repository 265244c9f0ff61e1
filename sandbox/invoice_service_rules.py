"""Validation of an invoice posted to the invoice service's ``POST /invoices``, read from the spec
(invoice-service-create-invoice.txt) independently of schemas/.

Every problem is reported (not only the first), each with the path of its field
(``articleRows[0].vatPercentage``, ``totals.totalExclVat``, ``vats[1].totalVat``, or None for the
body as a whole). Decisions where the spec is silent or contradicts itself:

* Fields: the spec's "all available fields" list is complete ("a list of all possible fields"),
  so a field not in it is rejected, at the top level and in every object it describes (dates,
  debtor, its addresses, terms, fees, totals, currency). It does not describe ``articleRows``
  and ``vats`` items: their fields are taken from the examples (request and response), checked
  when present, and other fields there are accepted.
* Required: the fields marked ``"required": true``, and the objects that hold them (dates, debtor,
  debtor.invoiceAddress, totals). ``articleRows`` must have at least one row. A row must have
  ``vatPercentage``, ``totalExclVat`` and ``totalVat`` (the VAT arithmetic below is built from
  them; the spec lists no row fields at all). ``clientId`` is needed only for non-client users;
  API tokens belong to a client, so it is optional, but if given it must be that client's id.
* Types: String -> string, Date -> ``YYYY-MM-DD``, DateTime -> ISO date and time, Money / Float ->
  a JSON number, Boolean -> true/false, Country -> two upper-case letters (ISO 3166-1 alpha-2),
  Email -> ``local@domain``, GLN -> 13 digits, ChoiceString / ChoiceInteger -> one of the values
  the description lists (productCode, debtor.type, distributionCode, the fees' VAT percentages);
  a ChoiceString whose values are not listed (``type``, the currencies) is a string (currencies:
  three upper-case letters). ``quantity`` may be a number or a string with a decimal point or
  comma: the example sends ``"2,00"``.
* VAT percentages (rows, vats, fees) are 0, 6, 12 or 25: the fees' description lists them and
  they are the Swedish rates.
* Arithmetic (to the cent, one öre of rounding allowed): a row's ``totalVat`` is its
  ``totalExclVat`` x ``vatPercentage`` / 100; ``totals.totalExclVat`` and ``totals.totalVat``
  are the sums of the rows'; ``totals.total`` = ``totalExclVat`` + ``totalVat``; ``vats`` has one
  entry per VAT percentage the rows use, with ``totalTaxable`` / ``totalVat`` the sums of those
  rows (an entry for a percentage no row uses must be zero). The spec does not say whether the
  fees (administration, freight, at their own VAT percentage) are part of the totals and vats:
  both readings are accepted. A row's ``total`` is not checked: the example's row has total 200
  with totalExclVat 200 and totalVat 50, so it is not the amount with VAT, and the spec does not
  say what it is. ``totalToPay`` is not checked either (no formula is documented).
* ``dates.invoiceDate`` must not be after ``dates.expireDate``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

VAT_RATES = (0, 6, 12, 25)
TOLERANCE = Decimal("0.01")
CENT = Decimal("0.01")

STRING, DATE, DATETIME, MONEY, FLOAT, INTEGER, BOOLEAN = (
    "String",
    "Date",
    "DateTime",
    "Money",
    "Float",
    "Integer",
    "Boolean",
)
COUNTRY, EMAIL, GLN, ZIP, CURRENCY, QUANTITY, ACCOUNT = (
    "Country",
    "Email",
    "GLN",
    "ZipCode",
    "Currency",
    "Quantity",
    "Account",
)

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})?")
_QUANTITY = re.compile(r"-?\d+([.,]\d+)?")
_PATTERNS = {
    COUNTRY: (re.compile(r"[A-Z]{2}"), "an ISO 3166-1 alpha-2 country code (two upper-case letters)"),
    EMAIL: (re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+"), "an e-mail address"),
    GLN: (re.compile(r"\d{13}"), "a GLN (13 digits)"),
    CURRENCY: (re.compile(r"[A-Z]{3}"), "a currency code (three upper-case letters)"),
}


@dataclass(frozen=True)
class Choice:
    """One of the listed values (ChoiceString / ChoiceInteger)."""

    values: tuple[Any, ...]


@dataclass(frozen=True)
class Obj:
    """A nested object: its fields, the required ones, and whether other fields are allowed."""

    fields: Mapping[str, FieldType]
    required: tuple[str, ...] = ()
    open: bool = False


@dataclass(frozen=True)
class ListOf:
    item: Obj
    min_items: int = 0


FieldType = str | Choice | Obj | ListOf

VAT_PERCENTAGE = Choice(VAT_RATES)
ADDRESS_FIELDS = {
    "name": STRING,
    "address": STRING,
    "address2": STRING,
    "address3": STRING,
    "zip": ZIP,
    "city": STRING,
    "countryCode": COUNTRY,
}
DEBTOR = Obj(
    {
        "customerNumber": STRING,
        "name": STRING,
        "identificationNumber": STRING,
        "type": Choice(("COMPANY", "PERSON")),
        "GLN": GLN,
        "email": EMAIL,
        "phone": STRING,
        "cellPhone": STRING,
        "invoiceAddress": Obj(ADDRESS_FIELDS, required=("name", "address", "zip", "city")),
        "deliveryAddress": Obj(ADDRESS_FIELDS),
        "vatNumber": STRING,
        "distributionChannelOverride": BOOLEAN,
        "distributionChannel": STRING,
        "FMI": STRING,
    },
    required=("customerNumber", "name", "type", "invoiceAddress"),
)
ARTICLE_ROW = Obj(
    {
        "articleNumber": STRING,
        "accountNumber": ACCOUNT,
        "description": STRING,
        "discountType": STRING,
        "price": MONEY,
        "quantity": QUANTITY,
        "total": MONEY,
        "totalDiscount": MONEY,
        "totalExclVat": MONEY,
        "totalVat": MONEY,
        "unit": STRING,
        "vatPercentage": VAT_PERCENTAGE,
    },
    required=("vatPercentage", "totalExclVat", "totalVat"),
    open=True,
)
VAT = Obj(
    {"percentage": VAT_PERCENTAGE, "totalTaxable": MONEY, "totalVat": MONEY},
    required=("percentage", "totalTaxable", "totalVat"),
    open=True,
)
INVOICE = Obj(
    {
        "clientId": STRING,
        "productCode": Choice(
            (
                "INVOICE_SERVICE",
                "REMINDER_SERVICE",
                "COLLECTION_SERVICE",
                "INVOICE_FACTORING_LOAN",
                "INVOICE_FACTORING_SELL",
            )
        ),
        "invoiceNumber": STRING,
        "paymentReference": STRING,
        "debitInvoiceNumber": STRING,
        "dates": Obj({"invoiceDate": DATE, "expireDate": DATE, "deliveryDate": DATE}, ("invoiceDate", "expireDate")),
        "debtor": DEBTOR,
        "distributionCode": Choice(("LETTER", "EMAIL", "NULL")),
        "documentTemplateCode": STRING,
        "type": STRING,
        "useRecourse": BOOLEAN,
        "activatedDate": DATETIME,
        "activatedById": STRING,
        "ourReference": STRING,
        "yourReference": STRING,
        "yourContactPerson": STRING,
        "ourOrderNumber": STRING,
        "yourOrderNumber": STRING,
        "articleRows": ListOf(ARTICLE_ROW, min_items=1),
        "vats": ListOf(VAT),
        "remark": STRING,
        "terms": Obj({"payment": STRING, "delivery": STRING}),
        "fees": Obj(
            {
                "administration": MONEY,
                "administrationVatPercentage": VAT_PERCENTAGE,
                "freight": MONEY,
                "freightVatPercentage": VAT_PERCENTAGE,
            }
        ),
        "reverseCharge": BOOLEAN,
        "refund": BOOLEAN,
        "totals": Obj(
            {
                "totalToPay": MONEY,
                "total": MONEY,
                "totalRoundOff": MONEY,
                "totalExclVat": MONEY,
                "totalVat": MONEY,
                "taxReduction": MONEY,
            },
            required=("total", "totalExclVat", "totalVat"),
        ),
        "currency": Obj({"invoiceCurrency": CURRENCY, "baseCurrency": CURRENCY, "exchangeRate": FLOAT}),
        "serviceProviderCode": STRING,
    },
    required=("invoiceNumber", "dates", "debtor", "articleRows", "vats", "totals"),
)


@dataclass(frozen=True)
class FieldError:
    """One problem: the field's path (None: the body) and what is wrong."""

    field: str | None
    message: str

    def as_json(self) -> dict[str, Any]:
        return {"field": self.field, "message": self.message}


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _valid_day(value: str) -> bool:
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _valid_datetime(value: str) -> bool:
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _type_problem(expected: str | Choice, value: Any) -> str | None:
    """Why ``value`` is not of the ``expected`` type, or None."""
    if isinstance(expected, Choice):
        ok = not isinstance(value, bool) and value in expected.values
        return None if ok else f"must be one of {', '.join(map(str, expected.values))}"
    if expected in (MONEY, FLOAT, INTEGER):
        if expected == INTEGER and not (is_number(value) and float(value).is_integer()):
            return "must be an integer"
        return None if is_number(value) else "must be a number"
    if expected == BOOLEAN:
        return None if isinstance(value, bool) else "must be true or false"
    if expected == QUANTITY:
        ok = is_number(value) or (isinstance(value, str) and _QUANTITY.fullmatch(value.strip()) is not None)
        return None if ok else 'must be a number or a decimal number in a string ("2,00")'
    if expected == ACCOUNT:
        ok = isinstance(value, str) or (is_number(value) and float(value).is_integer())
        return None if ok else "must be a string"
    if not isinstance(value, str):
        return "must be a string"
    if expected == DATE and not (_DATE.fullmatch(value) and _valid_day(value)):
        return "must be a date YYYY-MM-DD"
    if expected == DATETIME and not (_DATETIME.fullmatch(value) and _valid_datetime(value)):
        return "must be a date and time YYYY-MM-DDTHH:MM:SS"
    if expected in _PATTERNS:
        pattern, what = _PATTERNS[expected]
        return None if pattern.fullmatch(value) else f"must be {what}"
    return None


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")


def check_object(obj: Any, spec: Obj, path: str | None, errors: list[FieldError]) -> None:
    """Add every structural problem of ``obj`` (and what it contains) to ``errors``."""
    if not isinstance(obj, Mapping):
        errors.append(FieldError(path, "must be an object"))
        return
    prefix = f"{path}." if path else ""
    for name in spec.required:
        if _blank(obj.get(name)):
            errors.append(FieldError(prefix + name, "is required"))
    for name, value in obj.items():
        expected = spec.fields.get(name)
        if expected is None:
            if not spec.open:
                errors.append(FieldError(prefix + name, "is not a field of this object"))
        elif value is not None:
            _check_value(value, expected, prefix + name, errors)


def _check_value(value: Any, expected: FieldType, where: str, errors: list[FieldError]) -> None:
    """Add the problems of one field's value (not null) to ``errors``."""
    if isinstance(expected, Obj):
        check_object(value, expected, where, errors)
    elif isinstance(expected, ListOf):
        _check_list(value, expected, where, errors)
    else:
        problem = _type_problem(expected, value)
        if problem is not None:
            errors.append(FieldError(where, problem))


def _check_list(value: Any, spec: ListOf, where: str, errors: list[FieldError]) -> None:
    if not isinstance(value, list):
        errors.append(FieldError(where, "must be a list"))
        return
    if len(value) < spec.min_items:
        errors.append(FieldError(where, f"must have at least {spec.min_items} item(s)"))
    for i, item in enumerate(value):
        check_object(item, spec.item, f"{where}[{i}]", errors)


def money(value: Any) -> Decimal:
    """A validated JSON number as Decimal (via its shortest repr); None -> 0."""
    return Decimal(0) if value is None else Decimal(str(value))


def _near(a: Decimal, b: Decimal) -> bool:
    return abs(a - b) <= TOLERANCE


def _amount(value: Decimal) -> str:
    return str(value.quantize(CENT, ROUND_HALF_UP))


@dataclass
class _Sums:
    """What the totals and vats should say: sums over the rows (and maybe the fees)."""

    excl_vat: Decimal = Decimal(0)
    vat: Decimal = Decimal(0)
    by_rate: dict[int, tuple[Decimal, Decimal]] = field(default_factory=dict)

    def add(self, rate: int, excl_vat: Decimal, vat: Decimal) -> None:
        self.excl_vat += excl_vat
        self.vat += vat
        taxable, total_vat = self.by_rate.get(rate, (Decimal(0), Decimal(0)))
        self.by_rate[rate] = (taxable + excl_vat, total_vat + vat)


def _sums(body: Mapping[str, Any], with_fees: bool) -> _Sums:
    sums = _Sums()
    for row in body["articleRows"]:
        sums.add(int(row["vatPercentage"]), money(row["totalExclVat"]), money(row["totalVat"]))
    fees = body.get("fees") or {}
    if with_fees:
        for fee, rate_field in (("administration", "administrationVatPercentage"), ("freight", "freightVatPercentage")):
            amount, rate = money(fees.get(fee)), fees.get(rate_field)
            if amount:
                vat = (amount * (rate or 0) / 100).quantize(CENT, ROUND_HALF_UP)
                sums.add(int(rate or 0), amount, vat)
    return sums


def _totals_problems(body: Mapping[str, Any], candidates: list[_Sums]) -> list[FieldError]:
    totals, errors = body["totals"], []
    for name, expected in (
        ("totalExclVat", [s.excl_vat for s in candidates]),
        ("totalVat", [s.vat for s in candidates]),
    ):
        if not any(_near(money(totals[name]), e) for e in expected):
            alternative = f" (or {_amount(expected[1])} with the fees)" if len(expected) > 1 else ""
            message = f"must be the sum of the rows' {name}, {_amount(expected[0])}{alternative}"
            errors.append(FieldError(f"totals.{name}", message))
    total = money(totals["totalExclVat"]) + money(totals["totalVat"])
    if not _near(money(totals["total"]), total):
        errors.append(FieldError("totals.total", f"must be totals.totalExclVat + totals.totalVat, {_amount(total)}"))
    return errors


def _vats_problems(vats: list[Mapping[str, Any]], sums: _Sums) -> list[FieldError]:
    errors, seen = [], set()
    for i, entry in enumerate(vats):
        rate = int(entry["percentage"])
        if rate in seen:
            errors.append(FieldError(f"vats[{i}].percentage", f"there is already an entry for {rate} %"))
            continue
        seen.add(rate)
        taxable, vat = sums.by_rate.get(rate, (Decimal(0), Decimal(0)))
        which = f"the rows at {rate} % VAT" if rate in sums.by_rate else f"no row has {rate} % VAT"
        for name, expected in (("totalTaxable", taxable), ("totalVat", vat)):
            if not _near(money(entry[name]), expected):
                errors.append(FieldError(f"vats[{i}].{name}", f"must be {_amount(expected)} ({which})"))
    for rate in sorted(set(sums.by_rate) - seen):
        errors.append(FieldError("vats", f"needs an entry for {rate} % (used by the rows)"))
    return errors


def business_problems(body: Mapping[str, Any]) -> list[FieldError]:
    """The arithmetic and date checks of a structurally valid invoice (see the module docstring)."""
    errors: list[FieldError] = []
    dates = body["dates"]
    if dates["invoiceDate"] > dates["expireDate"]:
        errors.append(FieldError("dates.expireDate", f"must not be before dates.invoiceDate ({dates['invoiceDate']})"))
    for i, row in enumerate(body["articleRows"]):
        expected = (money(row["totalExclVat"]) * int(row["vatPercentage"]) / 100).quantize(CENT, ROUND_HALF_UP)
        if not _near(money(row["totalVat"]), expected):
            message = f"must be totalExclVat x vatPercentage / 100, {_amount(expected)}"
            errors.append(FieldError(f"articleRows[{i}].totalVat", message))
    fees = body.get("fees") or {}
    candidates = [_sums(body, with_fees=False)]
    if money(fees.get("administration")) or money(fees.get("freight")):
        candidates.append(_sums(body, with_fees=True))
    errors += _totals_problems(body, candidates)
    vats_errors = min((_vats_problems(body["vats"], s) for s in candidates), key=len)
    return errors + vats_errors


def validate_invoice(body: Any, client_id: str) -> list[FieldError]:
    """Every problem of a posted invoice for the client whose id is ``client_id`` ("C.100123")."""
    errors: list[FieldError] = []
    check_object(body, INVOICE, None, errors)
    if errors:
        return errors
    if body.get("clientId") is not None and body["clientId"] != client_id:
        errors.append(FieldError("clientId", f"is not the client of this API token ({client_id})"))
    return errors + business_problems(body)
