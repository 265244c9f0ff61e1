"""Invoice-service models: the create-invoice body (`POST /invoices`) and the part of its answer the worker reads.

The invoice service's create-invoice API documentation gives the body as a field table ("all available
fields") and a minimal example request/response. Field names are the API's own camelCase names, used as the
Python names too; only `GLN` and `FMI` get aliases (Python `gln`, `fmi`).

Decisions where the spec is silent or contradicts itself (we accept what the service plainly accepts):
- `dates`, `debtor` and `totals` are not flagged required themselves, but each holds required fields and the
  example is the documented minimal body: we require them. `articleRows` and `vats` are flagged required.
- Article rows: the table lists no row fields. The example response echoes every row field, nulls included
  (accountNumber, articleNumber, description, discountType, price, quantity, total, totalDiscount,
  totalExclVat, totalVat, unit, vatPercentage, plus the service's own `id`), so those minus `id` are the row.
  We require price, quantity, vatPercentage, totalExclVat and totalVat: the arithmetic and the `vats`
  summary cannot be checked without them.
- Row `total`: the example row has price 100, quantity 2, totalExclVat 200, totalVat 50 and total 200, while
  `totals.total` (250) is "Total amount with VAT". So a row's `total` is NOT incl. VAT; we read it as the
  row's gross amount before discount and VAT, price * quantity, so that total - totalDiscount = totalExclVat
  (with no discount, as in the example, it equals totalExclVat).
- `totalDiscount` is the discount as an amount (like the other `total*` row fields, all amounts):
  totalExclVat = price * quantity - totalDiscount whatever `discountType` says; `discountType` only tells how
  the discount is presented. Only "PERCENTAGE" appears in the spec; "AMOUNT" is the other kind a discount
  can be, so both are accepted.
- `quantity`: the example sends the string "2,00" (decimal comma) where every other number is a JSON number,
  and the response echoes "2,00" as a string, so the service keeps quantities as text. We accept a number
  or a string with a decimal point or comma, and send it the way the example does: text with a decimal
  comma and at least two decimals ("2,00").
- Fees: the spec does not say that `fees` count in `totals` or `vats`, and the example has none; the service
  fills `fees.administration: 0` itself in the response. We check totals and vats against the rows only;
  fees are passed through unchecked.
- `totals.totalToPay` = total + totalRoundOff - taxReduction (example: 250 + 0 - 0 = 250): the round-off is
  added, a tax reduction (ROT/RUT) is paid by the tax agency, not the debtor.
- Dates: only invoiceDate <= expireDate. A delivery date may be before the invoice date (invoicing after
  delivery, the usual case) or after the expire date (invoicing in advance), so it is not ordered.
- `debtor.identificationNumber`: the example's "1234567890" fails the Luhn check Swedish organisation and
  personal numbers carry, and the example response shows it as null, so we cannot tell what the service
  does with it: any text is accepted.
- `type` (invoice type, "INVOICE" in the example), `invoiceCurrency`/`baseCurrency` ("one of supported
  currencies") are choice fields whose values the spec does not list: not enumerated here (currencies are
  checked to be three upper-case letters).
- Amounts must agree to the cent: every comparison allows +/-0.01 for rounding.
- Unknown fields are refused (`extra="forbid"`), as for SoftOne: a misspelt field silently dropped would
  produce a wrong invoice.
- Error bodies of the service are not documented: no model for them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, ClassVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from schemas.types import DateOrDateTime, ExternalId, Int, Money, NonEmptyStr

_WIRE = ConfigDict(validate_by_name=True, validate_by_alias=True, serialize_by_alias=True, extra="forbid")

#: Amounts are compared to the cent: a stated amount may differ from the computed one by rounding only.
CENT = Decimal("0.01")

#: The Swedish VAT rates, the only ones the spec allows ("Can be one of 0, 6, 12 or 25").
SWEDISH_VAT_RATES: frozenset[int] = frozenset({0, 6, 12, 25})

Loc = tuple[str | int, ...]


# --- field types -------------------------------------------------------------------------------------------


def _vat_rate(value: int) -> int:
    if value not in SWEDISH_VAT_RATES:
        raise ValueError("must be a Swedish VAT rate: one of 0, 6, 12 or 25")
    return value


VatRate = Annotated[Int, AfterValidator(_vat_rate)]
"""A VAT percentage: 0, 6, 12 or 25."""

_QUANTITY_TEXT = re.compile(r"[+-]?\d+(?:[.,]\d+)?")


def _parse_quantity(value: Any) -> Decimal:
    if isinstance(value, bool):
        raise ValueError("must be a number, not a boolean")
    if isinstance(value, Decimal):
        quantity = value
    elif isinstance(value, int):
        quantity = Decimal(value)
    elif isinstance(value, float):
        quantity = Decimal(repr(value))  # the float as written in the JSON, not its binary expansion
    elif isinstance(value, str):
        text = value.strip()
        if not _QUANTITY_TEXT.fullmatch(text):
            raise ValueError(
                'must be a quantity: a number, or text with a decimal comma or point such as "2,00"'
                " (no thousands separators)"
            )
        quantity = Decimal(text.replace(",", "."))
    else:
        raise ValueError('must be a number or a numeric string such as "2,00"')
    if not quantity.is_finite():
        raise ValueError("must be a finite number")
    return quantity


def _quantity_to_wire(value: Decimal) -> str:
    text = format(value, "f")
    whole, _, decimals = text.partition(".")
    return f"{whole},{decimals.ljust(2, '0')}"


Quantity = Annotated[
    Decimal,
    PlainValidator(_parse_quantity),
    # Sent as the spec's example sends it (and the service echoes it): text with a decimal comma, "2,00".
    PlainSerializer(_quantity_to_wire, return_type=str, when_used="json"),
    WithJsonSchema({"anyOf": [{"type": "number"}, {"type": "string", "pattern": r"^[+-]?\d+([.,]\d+)?$"}]}),
]
"""A row quantity: 2, 2.5, "2,00" or "2.00" in; "2,00" out."""

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _parse_date(value: Any) -> date:
    if isinstance(value, datetime):
        raise ValueError("must be a date (YYYY-MM-DD), not a date-time")
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not _ISO_DATE.fullmatch(value.strip()):
        raise ValueError("must be a date as YYYY-MM-DD")
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise ValueError("must be a calendar date (YYYY-MM-DD): a month 01-12 and a day that month has") from None


WireDate = Annotated[
    date,
    PlainValidator(_parse_date),
    PlainSerializer(date.isoformat, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date"}),
]
"""The spec's `Date`: exactly YYYY-MM-DD (no time, no timestamps)."""


def _country(value: str) -> str:
    if not re.fullmatch(r"[A-Z]{2}", value):
        raise ValueError("must be an ISO 3166-1 alpha-2 country code: two upper-case letters, e.g. SE")
    return value


CountryCode = Annotated[str, AfterValidator(_country)]


def _currency(value: str) -> str:
    if not re.fullmatch(r"[A-Z]{3}", value):
        raise ValueError("must be a currency code: three upper-case letters, e.g. SEK")
    return value


CurrencyCode = Annotated[str, AfterValidator(_currency)]


def _email(value: str) -> str:
    if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", value):
        raise ValueError("must be an e-mail address")
    return value


Email = Annotated[str, AfterValidator(_email)]


def _gln(value: str) -> str:
    # A GS1 Global Location Number: 13 digits, the last a mod-10 check digit (weights 1 and 3 from the left).
    if not re.fullmatch(r"\d{13}", value):
        raise ValueError("must be a GLN: 13 digits")
    check = (10 - sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(value[:12])) % 10) % 10
    if int(value[12]) != check:
        raise ValueError("must be a GLN: its last digit is not the check digit of the 12 before it (GS1)")
    return value


Gln = Annotated[str, AfterValidator(_gln)]


# --- enumerations ------------------------------------------------------------------------------------------


class ProductCode(StrEnum):
    """`productCode`: which of the service's products handles the invoice."""

    INVOICE_SERVICE = "INVOICE_SERVICE"
    REMINDER_SERVICE = "REMINDER_SERVICE"
    COLLECTION_SERVICE = "COLLECTION_SERVICE"
    INVOICE_FACTORING_LOAN = "INVOICE_FACTORING_LOAN"
    INVOICE_FACTORING_SELL = "INVOICE_FACTORING_SELL"


class DebtorType(StrEnum):
    """`debtor.type`."""

    COMPANY = "COMPANY"
    PERSON = "PERSON"


class DistributionCode(StrEnum):
    """`distributionCode`: how the invoice reaches the debtor ("NULL" is a value of its own, not JSON null)."""

    LETTER = "LETTER"
    EMAIL = "EMAIL"
    NULL = "NULL"


class DiscountType(StrEnum):
    """`articleRows[].discountType`: how a row's discount is presented (see the module docstring)."""

    PERCENTAGE = "PERCENTAGE"
    AMOUNT = "AMOUNT"


# --- business-check errors ---------------------------------------------------------------------------------


class _Problems:
    """Collects business-rule violations, each at its own field path, and raises them together."""

    def __init__(self) -> None:
        self._errors: list[tuple[str, Loc, str, Any]] = []

    def add(self, kind: str, loc: Loc, message: str, value: Any) -> None:
        self._errors.append((kind, loc, message, value))

    def raise_any(self, title: str) -> None:
        """Raise one ValidationError holding every problem; pydantic nests the paths under the caller's."""
        if self._errors:
            raise ValidationError.from_exception_data(
                title,
                [
                    {"type": PydanticCustomError(kind, message), "loc": loc, "input": value}
                    for kind, loc, message, value in self._errors
                ],
            )


def _off(stated: Decimal, expected: Decimal) -> bool:
    return abs(stated - expected) > CENT


# --- the create-invoice body -------------------------------------------------------------------------------


class Dates(BaseModel):
    """`dates`: invoice, expire (due) and delivery date."""

    model_config = _WIRE

    invoiceDate: WireDate
    expireDate: WireDate
    deliveryDate: WireDate | None = None

    @model_validator(mode="after")
    def _in_order(self) -> Dates:
        problems = _Problems()
        if self.expireDate < self.invoiceDate:
            problems.add(
                "date_order",
                ("expireDate",),
                "is before invoiceDate: an invoice expires on or after its date",
                self.expireDate.isoformat(),
            )
        problems.raise_any("Dates")
        return self


def _check_swedish_zip(address: InvoiceAddress | DeliveryAddress) -> None:
    # Only Swedish postcodes have a format we know (123 45); a foreign or country-less address is not checked.
    problems = _Problems()
    zip_code = address.zip
    if address.countryCode == "SE" and zip_code is not None and not re.fullmatch(r"\d{3} ?\d{2}", zip_code):
        problems.add("zip_code", ("zip",), "must be a Swedish postcode: five digits, e.g. 12345", zip_code)
    problems.raise_any(type(address).__name__)


class InvoiceAddress(BaseModel):
    """`debtor.invoiceAddress` (required): where the invoice is sent."""

    model_config = _WIRE

    name: NonEmptyStr
    address: NonEmptyStr
    address2: str | None = None
    address3: str | None = None
    zip: NonEmptyStr
    city: NonEmptyStr
    countryCode: CountryCode | None = None

    @model_validator(mode="after")
    def _zip_fits_country(self) -> InvoiceAddress:
        _check_swedish_zip(self)
        return self


class DeliveryAddress(BaseModel):
    """`debtor.deliveryAddress` (optional): where the goods went."""

    model_config = _WIRE

    name: str | None = None
    address: str | None = None
    address2: str | None = None
    address3: str | None = None
    zip: str | None = None
    city: str | None = None
    countryCode: CountryCode | None = None

    @model_validator(mode="after")
    def _zip_fits_country(self) -> DeliveryAddress:
        _check_swedish_zip(self)
        return self


class Debtor(BaseModel):
    """`debtor`: the customer who pays the invoice."""

    model_config = _WIRE

    customerNumber: NonEmptyStr
    name: NonEmptyStr
    type: DebtorType
    invoiceAddress: InvoiceAddress
    identificationNumber: str | None = None  # not Luhn-checked: see the module docstring
    gln: Gln | None = Field(default=None, alias="GLN")
    email: Email | None = None
    phone: str | None = None
    cellPhone: str | None = None
    deliveryAddress: DeliveryAddress | None = None
    vatNumber: str | None = None
    distributionChannelOverride: bool | None = None
    distributionChannel: str | None = None
    fmi: str | None = Field(default=None, alias="FMI")

    @field_validator("customerNumber", mode="before")
    @classmethod
    def _customer_number_is_text(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            raise ValueError('must be a string: customer numbers may have leading zeros ("013")')
        return value


class ArticleRow(BaseModel):
    """One of `articleRows`, with its arithmetic checked (see the module docstring for `total`)."""

    model_config = _WIRE

    price: Money
    quantity: Quantity  # a number, "2,00" or "2.00": see the module docstring
    vatPercentage: VatRate
    totalExclVat: Money
    totalVat: Money
    total: Money | None = None
    totalDiscount: Money | None = None
    discountType: DiscountType | None = None
    description: str | None = None
    unit: str | None = None
    articleNumber: str | None = None
    accountNumber: str | None = None

    @model_validator(mode="after")
    def _amounts_add_up(self) -> ArticleRow:
        problems = _Problems()
        gross = self.price * self.quantity
        discount = self.totalDiscount or Decimal(0)
        if self.total is not None and _off(self.total, gross):
            problems.add(
                "amount_mismatch",
                ("total",),
                "is not price * quantity: a row's total is its amount before discount and VAT",
                self.total,
            )
        excl = gross - discount
        if _off(self.totalExclVat, excl):
            problems.add(
                "amount_mismatch",
                ("totalExclVat",),
                "is not price * quantity - totalDiscount",
                self.totalExclVat,
            )
        vat = self.totalExclVat * self.vatPercentage / 100
        if _off(self.totalVat, vat):
            problems.add(
                "amount_mismatch",
                ("totalVat",),
                "is not totalExclVat * vatPercentage / 100",
                self.totalVat,
            )
        problems.raise_any("ArticleRow")
        return self


class VatSummary(BaseModel):
    """One of `vats`: the taxable amount and the VAT of all rows at one rate."""

    model_config = _WIRE

    percentage: VatRate
    totalTaxable: Money
    totalVat: Money


class Terms(BaseModel):
    """`terms`: payment and delivery terms, as text."""

    model_config = _WIRE

    payment: str | None = None
    delivery: str | None = None


class Fees(BaseModel):
    """`fees`: administration and freight fees with their VAT rates (not part of the totals checks)."""

    model_config = _WIRE

    administration: Money | None = None
    administrationVatPercentage: VatRate | None = None
    freight: Money | None = None
    freightVatPercentage: VatRate | None = None


class Totals(BaseModel):
    """`totals`: the invoice's amounts (checked against the rows by ServiceInvoice)."""

    model_config = _WIRE

    total: Money
    totalExclVat: Money
    totalVat: Money
    totalToPay: Money | None = None
    totalRoundOff: Money | None = None
    taxReduction: Money | None = None


class Currency(BaseModel):
    """`currency`: the invoice's (PDF) currency, its base (accounting) currency and the rate between them."""

    model_config = _WIRE

    invoiceCurrency: CurrencyCode | None = None
    baseCurrency: CurrencyCode | None = None
    exchangeRate: Annotated[Money, Field(gt=0)] | None = None


class ServiceInvoice(BaseModel):
    """The body of `POST /invoices`: an invoice whose rows, VAT summary and totals agree."""

    model_config = _WIRE

    #: The wire field holding the producer's own id for the document (the customer's invoice number).
    external_id_field: ClassVar[str | None] = "invoiceNumber"

    invoiceNumber: ExternalId
    dates: Dates
    debtor: Debtor
    articleRows: list[ArticleRow] = Field(min_length=1)
    vats: list[VatSummary]
    totals: Totals

    clientId: str | None = None
    productCode: ProductCode | None = None
    paymentReference: str | None = None
    debitInvoiceNumber: str | None = None
    distributionCode: DistributionCode | None = None
    documentTemplateCode: str | None = None
    type: str | None = None
    useRecourse: bool | None = None
    activatedDate: DateOrDateTime | None = None
    activatedById: str | None = None
    ourReference: str | None = None
    yourReference: str | None = None
    yourContactPerson: str | None = None
    ourOrderNumber: str | None = None
    yourOrderNumber: str | None = None
    remark: str | None = None
    terms: Terms | None = None
    fees: Fees | None = None
    reverseCharge: bool | None = None
    refund: bool | None = None
    currency: Currency | None = None
    serviceProviderCode: str | None = None

    @model_validator(mode="after")
    def _rows_vats_and_totals_agree(self) -> ServiceInvoice:
        problems = _Problems()
        self._check_vats(problems)
        self._check_totals(problems)
        problems.raise_any("ServiceInvoice")
        return self

    def _check_vats(self, problems: _Problems) -> None:
        taxable: dict[int, Decimal] = {}
        vat: dict[int, Decimal] = {}
        first_row: dict[int, int] = {}
        for index, row in enumerate(self.articleRows):
            rate = row.vatPercentage
            taxable[rate] = taxable.get(rate, Decimal(0)) + row.totalExclVat
            vat[rate] = vat.get(rate, Decimal(0)) + row.totalVat
            first_row.setdefault(rate, index)
        listed: set[int] = set()
        for index, entry in enumerate(self.vats):
            rate = entry.percentage
            if rate in listed:
                problems.add(
                    "vats_mismatch", ("vats", index, "percentage"), f"VAT {rate}% has more than one entry", rate
                )
                continue
            listed.add(rate)
            if rate not in taxable:
                problems.add(
                    "vats_mismatch",
                    ("vats", index, "percentage"),
                    f"no article row has VAT {rate}%: vats lists only the rates the rows use",
                    rate,
                )
                continue
            for field, stated, expected, what in (
                ("totalTaxable", entry.totalTaxable, taxable[rate], "totalExclVat"),
                ("totalVat", entry.totalVat, vat[rate], "totalVat"),
            ):
                if _off(stated, expected):
                    problems.add(
                        "vats_mismatch",
                        ("vats", index, field),
                        f"is not what the {what} of the rows at {rate}% VAT add up to",
                        stated,
                    )
        for rate in sorted(taxable.keys() - listed):
            problems.add(
                "vats_mismatch",
                ("vats",),
                f"has no entry for VAT {rate}%, used by articleRows[{first_row[rate]}]",
                [entry.percentage for entry in self.vats],
            )

    def _check_totals(self, problems: _Problems) -> None:
        totals = self.totals
        for field, stated, expected in (
            ("totalExclVat", totals.totalExclVat, _sum(row.totalExclVat for row in self.articleRows)),
            ("totalVat", totals.totalVat, _sum(row.totalVat for row in self.articleRows)),
        ):
            if _off(stated, expected):
                problems.add(
                    "amount_mismatch",
                    ("totals", field),
                    f"is not what the articleRows' {field} add up to",
                    stated,
                )
        with_vat = totals.totalExclVat + totals.totalVat
        if _off(totals.total, with_vat):
            problems.add(
                "amount_mismatch",
                ("totals", "total"),
                "is not totalExclVat + totalVat (the invoice total includes VAT)",
                totals.total,
            )
        if totals.totalToPay is not None:
            round_off = totals.totalRoundOff or Decimal(0)
            reduction = totals.taxReduction or Decimal(0)
            to_pay = totals.total + round_off - reduction
            if _off(totals.totalToPay, to_pay):
                problems.add(
                    "amount_mismatch",
                    ("totals", "totalToPay"),
                    "is not total + totalRoundOff - taxReduction",
                    totals.totalToPay,
                )

    def to_wire(self) -> dict[str, Any]:
        """The JSON object this invoice is sent as (wire names, no empty fields)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def to_wire_json(self) -> str:
        """`to_wire()` as compact JSON text, encoded by pydantic directly."""
        return self.model_dump_json(by_alias=True, exclude_none=True)


def _sum(amounts: Iterable[Decimal]) -> Decimal:
    return sum(amounts, Decimal(0))


# --- the answer --------------------------------------------------------------------------------------------


class InvoiceStatuses(BaseModel):
    """`statuses` of a created invoice; only `main` ("CREATED") is read."""

    model_config = ConfigDict(extra="ignore")

    main: str | None = None


class CreatedServiceInvoice(BaseModel):
    """What the worker keeps of a successful `POST /invoices` answer: the service's id and our number.

    Tolerant (extra fields ignored): it is read from the service, which echoes the whole invoice.
    """

    model_config = ConfigDict(extra="ignore")

    id: NonEmptyStr
    invoiceNumber: ExternalId
    statuses: InvoiceStatuses | None = None

    @property
    def status(self) -> str | None:
        """`statuses.main`, if the answer had one."""
        return self.statuses.main if self.statuses is not None else None
