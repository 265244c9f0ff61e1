"""Fortnox models: invoices, orders, offers and articles as producers send them, and Fortnox's error answer.

Source: Fortnox's API documentation (https://api.fortnox.se/apidocs), payload schemas `fortnox_InvoicePayloadV2`,
`fortnox_OrderPayloadV2`, `fortnox_OfferPayloadV2` and `fortnox_ArticleV2`. Each model is the object *inside*
Fortnox's wrapper: the producer sends the fields of `{"Invoice": {...}}`, the connector wraps them under
`wrapper`. Python field names are Fortnox's own PascalCase wire names (an alias only for "@url"-style names).

The spec shows every property in its request examples, with placeholder values ("string", 0.1, 0) and no
descriptions, so what it does not say we decided as follows:

- Read-only fields. The examples include what Fortnox computes or changes only through actions: totals,
  balances, vouchers, "@url"... We refuse those with "is set by Fortnox (read-only); leave it out" rather than
  silently dropping them (a producer setting `Total` believes it set the total). Which ones: the fields that
  Fortnox's stable API leaves out of its invoice write schema (`InvoicePayload`) and documents as read-only,
  the same fields of orders and offers, and what the spec's own text says is changed by an action (Booked,
  Cancelled, Sent, WarehouseReady; CreditInvoiceReference stays writable: the stable write schema has it).
  `null` for a read-only field is accepted as "absent". `AccountingMethod` (ACCRUAL/CASH) is one of them: it
  comes from the company's accounting settings and is not in the write schema. Row `RowId`s are generated
  by Fortnox ("new RowIds are generated for all rows every time an invoice is updated") and only identify
  rows of an existing document in an update; we create documents, so they are refused too.
- `DocumentNumber` stays writable and optional: Fortnox takes the next number of the series when it is absent.
- Maximum lengths: the spec gives none, so we use those of Fortnox's stable OpenAPI invoice schema for the
  fields the three document types share (Fortnox keeps offers, orders and invoices in one structure and copies
  offer -> order -> invoice, so a value the invoice cannot hold is a latent error on an order too), e.g.
  ExternalInvoiceReference1/2 80, OurReference 50, YourOrderNumber 75, row Description 255.
- Quantities (`DeliveredQuantity`, `OrderedQuantity`, `Quantity`) are typed "string" in the spec, but they are
  numbers (Fortnox answers "1.00"; the spec's own bundle example posts `"Quantity": 4`): they are `Money` here and
  go out as JSON numbers. Likewise `VAT` (integer on invoice rows, decimal on order rows) and `CurrencyUnit`
  (integer on invoices, decimal on orders) are decimals everywhere.
- Row `AccountNumber`: the invoice rows' example shows the schema minimum 1000, order and offer rows show 0;
  Fortnox account numbers are four digits (1000-9999) everywhere, so that range applies to all rows.
  `HouseWorkHoursToReport` is at most 999 on invoice and offer rows; order rows show no limit, but they become
  invoice rows, so 999 applies to all.
- `Language` is an enumeration (SV, EN) on invoices and free text on orders and offers: Fortnox prints
  documents in those two languages only, so SV/EN applies to all three.
- EasyVat (error 2004167: a row with a custom VAT rate needs an AccountNumber when EasyVat is enabled) is not
  enforced here: whether a company has EasyVat on is Fortnox's knowledge, not ours. The ERP answers 2004167.
- The article endpoints type the `{ArticleNumber}` path parameter as an integer while the article itself
  types ArticleNumber as a string: article numbers are text ("A-100" is a valid one), so text it is.
- Unknown fields are refused (`extra="forbid"`): a misspelt field silently dropped makes a wrong document.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import date, datetime
from typing import Annotated, Any, ClassVar, Generic, Literal, TypeAlias, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from schemas.types import Int, Money

# ----- enumerations (the spec's example shows the first value; the rest are Fortnox's documented values)

DiscountTypeValue = Literal["AMOUNT", "PERCENT"]
HouseWorkTypeValue = Literal[
    "CONSTRUCTION",
    "ELECTRICITY",
    "GLASSMETALWORK",
    "GROUNDDRAINAGEWORK",
    "MASONRY",
    "PAINTINGWALLPAPERING",
    "HVAC",
    "MAJORAPPLIANCEREPAIR",
    "MOVINGSERVICES",
    "ITSERVICES",
    "CLEANING",
    "TEXTILECLOTHING",
    "SNOWPLOWING",
    "GARDENING",
    "BABYSITTING",
    "OTHERCARE",
    "OTHERCOSTS",
    "SOLARCELLS",
    "STORAGESELFPRODUCEDELECTRICITY",
    "CHARGINGSTATIONELECTRICVEHICLE",
    "HOMEMAINTENANCE",
    "FURNISHING",
    "TRANSPORTATIONSERVICES",
    "WASHINGANDCAREOFCLOTHING",
]
# An article may still carry the retired types (COOKING, TUTORING) and the "no housework" marker.
ArticleHouseworkTypeValue = Literal[HouseWorkTypeValue, "COOKING", "TUTORING", "EMPTYHOUSEWORK"]
InvoiceTypeValue = Literal["INVOICE", "AGREEMENTINVOICE", "INTRESTINVOICE", "SUMMARYINVOICE", "CASHINVOICE"]
LanguageValue = Literal["SV", "EN"]
PaymentWayValue = Literal["CASH", "CARD", "AG"]
TaxReductionTypeValue = Literal["none", "rot", "rut", "green"]
DeliveryStateValue = Literal["registration", "reservation", "delivery"]
ArticleTypeValue = Literal["STOCK", "SERVICE"]

# ----- field types


def _parse_date(value: Any) -> date:
    """Fortnox dates are plain calendar dates: "2026-02-18", never a date-time."""
    if isinstance(value, datetime):
        raise ValueError("must be a date (YYYY-MM-DD), not a date-time")
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        raise ValueError("must be a date in the form YYYY-MM-DD")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError("must be a calendar date (YYYY-MM-DD): a month 01-12 and a day that month has") from None


FortnoxDate = Annotated[
    date,
    PlainValidator(_parse_date),
    PlainSerializer(date.isoformat, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date"}),
]
"""A calendar date, YYYY-MM-DD on the wire."""


def _int_as_text(value: Any) -> Any:
    # An integer is unambiguous as text (no leading zeros to lose); a float or a boolean is not.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def _strip(value: Any) -> Any:
    value = _int_as_text(value)
    return value.strip() if isinstance(value, str) else value


def _customer_number(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError("must be a string: customer numbers may have leading zeros")
    return value.strip() if isinstance(value, str) else value


def _currency(value: Any) -> Any:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Z]{3}", value):
        raise ValueError("must be a three-letter currency code in capitals (ISO 4217), e.g. SEK")
    return value


def _digits(value: str) -> str:
    if not re.fullmatch(r"[0-9]+", value):
        raise ValueError("must be a Fortnox document number (digits only)")
    return value


def _article_number_chars(value: str) -> str:
    # Fortnox: "Only alpha numeric characters, with the addition of - + / . and _, are allowed."
    if not all(ch.isalnum() or ch in "-+/._" for ch in value):
        raise ValueError("may only contain letters, digits and - + / . _")
    return value


CustomerNumberText = Annotated[str, Field(min_length=1, max_length=1024), BeforeValidator(_customer_number)]
"""A customer number: text (leading zeros matter), not empty."""

CurrencyCode = Annotated[str, BeforeValidator(_currency)]
"""SEK, EUR, ... (the currency must exist in the Fortnox company)."""

DocumentNumberText = Annotated[str, Field(min_length=1), AfterValidator(_digits), BeforeValidator(_int_as_text)]
"""A Fortnox document number: digits, an integer accepted as text."""

ExternalReference = Annotated[str, Field(min_length=1, max_length=80), BeforeValidator(_strip)]
"""ExternalInvoiceReference1: our idempotency id; text, integers accepted as text, at most 80 characters."""

ArticleNumberText = Annotated[
    str, Field(min_length=1, max_length=50), AfterValidator(_article_number_chars), BeforeValidator(_strip)
]
"""An article number: 1-50 letters, digits and - + / . _ (an integer is accepted as text)."""

RowAccountNumber = Annotated[Int, Field(ge=1000, le=9999)]
"""A bookkeeping account on a document row: four digits."""

ArticleAccountNumber = Annotated[Int, Field(ge=1000, le=99999)]
"""An account on an article (Fortnox's article schema allows 1000-99999)."""

VatPercent = Annotated[Money, Field(ge=0, le=100)]
"""A VAT rate in percent."""

Dimension = Annotated[Int, Field(ge=0, le=999_999_999)]
"""Millimetres or grams of an article."""

_READ_ONLY = "is set by Fortnox (read-only); leave it out"


def _refused(message: str = _READ_ONLY) -> BeforeValidator:
    """The check of a read-only field: any value but null is refused with `message`."""

    def reject(value: Any) -> None:
        if value is not None:
            raise PydanticCustomError("read_only", message)

    return BeforeValidator(reject)


def _never_sent() -> FieldInfo:
    """Left out of the wire JSON, and marked readOnly in the JSON Schema (`READ_ONLY_FIELDS` collects them)."""
    info: FieldInfo = Field(exclude=True, json_schema_extra={"readOnly": True})
    return info


ReadOnly: TypeAlias = Annotated[None, _refused(), _never_sent()]
"""A field Fortnox computes: refused when given (null is accepted as absent), never sent."""
ReadOnlyRowId: TypeAlias = Annotated[
    None,
    _refused(f"{_READ_ONLY}: Fortnox numbers the rows of a document that exists, and these documents are created"),
    _never_sent(),
]
ReadOnlyBooked: TypeAlias = Annotated[None, _refused(f"{_READ_ONLY}: the bookkeep action sets it"), _never_sent()]
ReadOnlyCancelled: TypeAlias = Annotated[None, _refused(f"{_READ_ONLY}: the cancel action sets it"), _never_sent()]
ReadOnlySent: TypeAlias = Annotated[
    None, _refused(f"{_READ_ONLY}: printing, e-mailing or the 'sent' action sets it"), _never_sent()
]
ReadOnlyWarehouseReady: TypeAlias = Annotated[
    None, _refused(f"{_READ_ONLY}: the warehouseready action sets it"), _never_sent()
]
ReadOnlySalesPrice: TypeAlias = Annotated[
    None, _refused(f"{_READ_ONLY}: sales prices are set in price lists (/3/prices)"), _never_sent()
]


# ----- shared parts

_WIRE = ConfigDict(validate_by_name=True, validate_by_alias=True, serialize_by_alias=True, extra="forbid")


class _FortnoxModel(BaseModel):
    """Base of every Fortnox object we send: wire names, no unknown fields, read-only fields listed."""

    model_config = _WIRE

    #: Wire names of the fields Fortnox sets itself (refused when given).
    READ_ONLY_FIELDS: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls.READ_ONLY_FIELDS = frozenset(
            info.alias or name
            for name, info in cls.model_fields.items()
            if isinstance(info.json_schema_extra, dict) and info.json_schema_extra.get("readOnly")
        )


class FortnoxLabel(_FortnoxModel):
    """One entry of `Labels`: the id of an existing label."""

    Id: Int = Field(ge=0)


class FortnoxEmailInformation(_FortnoxModel):
    """`EmailInformation`: how Fortnox e-mails the document."""

    EmailAddressBCC: str | None = None
    EmailAddressCC: str | None = None
    EmailAddressFrom: str | None = None
    EmailAddressTo: str | None = None
    EmailBody: str | None = Field(default=None, max_length=20000)
    EmailSubject: str | None = Field(default=None, max_length=100)


class FortnoxEDIInformation(_FortnoxModel):
    """`EDIInformation` of an invoice: references for electronic invoicing."""

    EDIGlobalLocationNumber: str | None = Field(default=None, max_length=13)
    EDIGlobalLocationNumberDelivery: str | None = Field(default=None, max_length=13)
    EDIInvoiceExtra1: str | None = None
    EDIInvoiceExtra2: str | None = None
    EDIOurElectronicReference: str | None = None
    EDIYourElectronicReference: str | None = None
    EDIStatus: ReadOnly = None  # how far the electronic delivery has got


class FortnoxBundleSubItem(_FortnoxModel):
    """`BundleSubItem` of a bundle sub-row: how the sub-article sits in its bundle."""

    AmountInBundle: Money | None = None
    FixedPrice: bool | None = None
    PriceAdjustment: bool | None = None
    SalesPriceInBundle: Money | None = None
    UserPrice: bool | None = None


class _RowFields(_FortnoxModel):
    """What rows and bundle sub-rows of all three document types share."""

    AccountNumber: RowAccountNumber | None = None
    ArticleNumber: ArticleNumberText | None = None
    CostCenter: str | None = None
    Description: str | None = Field(default=None, max_length=255)
    DiscountType: DiscountTypeValue | None = None  # before Discount: its check reads it
    Discount: Money | None = None
    HouseWork: bool | None = None
    HouseWorkHoursToReport: Int | None = Field(default=None, ge=0, le=999)
    HouseWorkType: HouseWorkTypeValue | None = None
    Price: Money | None = None
    Project: str | None = None
    Unit: str | None = None
    # An own VAT rate may need an AccountNumber (EasyVat, error 2004167): Fortnox's check, see module docstring.
    VAT: VatPercent | None = None
    VATCode: str | None = None

    ContributionPercent: ReadOnly = None
    ContributionValue: ReadOnly = None
    RowId: ReadOnlyRowId = None
    Total: ReadOnly = None

    @field_validator("Discount")
    @classmethod
    def _percent_discount_is_a_percentage(cls, value: Any, info: ValidationInfo) -> Any:
        if value is not None and info.data.get("DiscountType") == "PERCENT" and not 0 <= value <= 100:
            raise ValueError("a PERCENT discount must be between 0 and 100")
        return value


SubRowT = TypeVar("SubRowT", bound=_RowFields)


class FortnoxRowBundle(_FortnoxModel, Generic[SubRowT]):
    """`Bundle` of a row: the sub-rows of a bundle article (see the spec's bundle price calculation)."""

    Revision: Int | None = None
    SubRows: list[SubRowT] | None = None


class _InvoiceRowFields(_RowFields):
    DeliveredQuantity: Money | None = None
    StockPointCode: str | None = None

    PriceExcludingVAT: ReadOnly = None
    TotalExcludingVAT: ReadOnly = None


class FortnoxInvoiceBundleSubRow(_InvoiceRowFields):
    """A sub-row of a bundle on an invoice row."""

    BundleSubItem: FortnoxBundleSubItem | None = None


class FortnoxInvoiceRow(_InvoiceRowFields):
    """One entry of `InvoiceRows`."""

    Bundle: FortnoxRowBundle[FortnoxInvoiceBundleSubRow] | None = None


class _OrderRowFields(_RowFields):
    DeliveredQuantity: Money | None = None
    OrderedQuantity: Money | None = None
    StockPointCode: str | None = None
    StockPointId: str | None = None

    ReservedQuantity: ReadOnly = None  # the warehouse reserves stock, not the producer


class FortnoxOrderBundleSubRow(_OrderRowFields):
    """A sub-row of a bundle on an order row."""

    BundleSubItem: FortnoxBundleSubItem | None = None


class FortnoxOrderRow(_OrderRowFields):
    """One entry of `OrderRows`."""

    Bundle: FortnoxRowBundle[FortnoxOrderBundleSubRow] | None = None


class _OfferRowFields(_RowFields):
    Quantity: Money | None = None


class FortnoxOfferBundleSubRow(_OfferRowFields):
    """A sub-row of a bundle on an offer row."""

    BundleSubItem: FortnoxBundleSubItem | None = None


class FortnoxOfferRow(_OfferRowFields):
    """One entry of `OfferRows`."""

    Bundle: FortnoxRowBundle[FortnoxOfferBundleSubRow] | None = None


class _Document(_FortnoxModel):
    """A document we POST: the object inside `{wrapper: {...}}`."""

    #: The key Fortnox wraps this object in: `{"Invoice": {...}}`.
    wrapper: ClassVar[str]
    #: The wire field carrying our idempotency id (filled in by the producer when missing, used by the
    #: worker to look a document up), or None when Fortnox cannot be searched by any of our fields.
    external_id_field: ClassVar[str | None]

    def to_wire(self) -> dict[str, Any]:
        """The JSON object this document is sent as, inside its wrapper (wire names, no empty fields)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def to_wire_json(self) -> str:
        """`to_wire()` as compact JSON text, encoded by pydantic directly."""
        return self.model_dump_json(by_alias=True, exclude_none=True)


class _SalesDocument(_Document):
    """What invoices, orders and offers share."""

    CustomerNumber: CustomerNumberText

    Address1: str | None = Field(default=None, max_length=1024)
    Address2: str | None = Field(default=None, max_length=1024)
    AdministrationFee: Money | None = None
    City: str | None = Field(default=None, max_length=1024)
    Comments: str | None = Field(default=None, max_length=1024)
    CostCenter: str | None = None
    Country: str | None = None
    Currency: CurrencyCode | None = None
    CurrencyRate: Money | None = Field(default=None, gt=0)
    CurrencyUnit: Money | None = Field(default=None, gt=0)
    CustomerName: str | None = Field(default=None, max_length=1024)
    DeliveryAddress1: str | None = Field(default=None, max_length=1024)
    DeliveryAddress2: str | None = Field(default=None, max_length=1024)
    DeliveryCity: str | None = Field(default=None, max_length=1024)
    DeliveryCountry: str | None = None
    DeliveryDate: FortnoxDate | None = None
    DeliveryName: str | None = Field(default=None, max_length=1024)
    DeliveryZipCode: str | None = Field(default=None, max_length=1024)
    DocumentNumber: DocumentNumberText | None = None
    EmailInformation: FortnoxEmailInformation | None = None
    Freight: Money | None = None
    Labels: list[FortnoxLabel] | None = None
    Language: LanguageValue | None = None
    NotCompleted: bool | None = None
    OurReference: str | None = Field(default=None, max_length=50)
    Phone1: str | None = Field(default=None, max_length=1024)
    Phone2: str | None = Field(default=None, max_length=1024)
    PriceList: str | None = None
    PrintTemplate: str | None = None
    Project: str | None = None
    Remarks: str | None = Field(default=None, max_length=1024)
    TaxReductionType: TaxReductionTypeValue | None = None
    TermsOfDelivery: str | None = None
    TermsOfPayment: str | None = None
    VATIncluded: bool | None = None
    WayOfDelivery: str | None = None
    YourReference: str | None = Field(default=None, max_length=50)
    ZipCode: str | None = Field(default=None, max_length=1024)

    url: ReadOnly = Field(default=None, alias="@url")
    url_tax_reduction_list: ReadOnly = Field(default=None, alias="@urlTaxReductionList")
    AdministrationFeeVAT: ReadOnly = None
    BasisTaxReduction: ReadOnly = None
    Cancelled: ReadOnlyCancelled = None
    ContributionPercent: ReadOnly = None
    ContributionValue: ReadOnly = None
    FreightVAT: ReadOnly = None
    Gross: ReadOnly = None
    HouseWork: ReadOnly = None  # true when a row is housework
    Net: ReadOnly = None
    RoundOff: ReadOnly = None
    Sent: ReadOnlySent = None
    TaxReduction: ReadOnly = None
    Total: ReadOnly = None
    TotalToPay: ReadOnly = None
    TotalVAT: ReadOnly = None


class FortnoxInvoice(_SalesDocument):
    """An invoice for `POST /3/invoices` (fortnox_InvoicePayloadV2)."""

    wrapper: ClassVar[str] = "Invoice"
    # The invoice list filters on `externalinvoicereference1`.
    external_id_field: ClassVar[str | None] = "ExternalInvoiceReference1"

    CreditInvoiceReference: DocumentNumberText | None = None
    DueDate: FortnoxDate | None = None
    EDIInformation: FortnoxEDIInformation | None = None
    # Obsolete since 2021-12-01 (the spec: no effect on invoices created since); passed through.
    EUQuarterlyReport: bool | None = None
    ExternalInvoiceReference1: ExternalReference | None = None
    ExternalInvoiceReference2: str | None = Field(default=None, max_length=80)
    InvoiceDate: FortnoxDate | None = None
    InvoiceRows: list[FortnoxInvoiceRow] | None = None
    InvoiceType: InvoiceTypeValue | None = None
    OCR: str | None = None
    OutboundDate: FortnoxDate | None = None
    PaymentWay: PaymentWayValue | None = None
    YourOrderNumber: str | None = Field(default=None, max_length=75)

    AccountingMethod: ReadOnly = None
    Balance: ReadOnly = None
    Booked: ReadOnlyBooked = None
    ContractReference: ReadOnly = None
    Credit: ReadOnly = None
    FinalPayDate: ReadOnly = None
    InvoicePeriodEnd: ReadOnly = None
    InvoicePeriodReference: ReadOnly = None
    InvoicePeriodStart: ReadOnly = None
    LastRemindDate: ReadOnly = None
    NoxFinans: ReadOnly = None
    OfferReference: ReadOnly = None
    OrderReference: ReadOnly = None
    OrganisationNumber: ReadOnly = None  # copied from the customer
    Reminders: ReadOnly = None
    TimeBasisReference: ReadOnly = None
    VoucherNumber: ReadOnly = None
    VoucherSeries: ReadOnly = None
    VoucherYear: ReadOnly = None
    WarehouseReady: ReadOnlyWarehouseReady = None


class FortnoxOrder(_SalesDocument):
    """An order for `POST /3/orders` (fortnox_OrderPayloadV2)."""

    wrapper: ClassVar[str] = "Order"
    # The order payload has ExternalInvoiceReference1 and the order list filters on it.
    external_id_field: ClassVar[str | None] = "ExternalInvoiceReference1"

    CopyRemarks: bool | None = None
    DeliveryState: DeliveryStateValue | None = None
    # Carried over to the invoice made from the order, where the limit is 80.
    ExternalInvoiceReference1: ExternalReference | None = None
    ExternalInvoiceReference2: str | None = Field(default=None, max_length=80)
    OrderDate: FortnoxDate | None = None
    OrderRows: list[FortnoxOrderRow] | None = None
    OutboundDate: FortnoxDate | None = None
    StockPointCode: str | None = None
    StockPointId: str | None = None
    YourOrderNumber: str | None = Field(default=None, max_length=75)

    InvoiceReference: ReadOnly = None
    OfferReference: ReadOnly = None
    OrderType: ReadOnly = None  # order or back order: Fortnox decides
    OrganisationNumber: ReadOnly = None  # copied from the customer
    TimeBasisReference: ReadOnly = None
    WarehouseReady: ReadOnlyWarehouseReady = None


class FortnoxOffer(_SalesDocument):
    """An offer for `POST /3/offers` (fortnox_OfferPayloadV2)."""

    wrapper: ClassVar[str] = "Offer"
    # The offer list has no filter on any field we could fill in: offers cannot be looked up by our id.
    external_id_field: ClassVar[str | None] = None

    CopyRemarks: bool | None = None
    ExpireDate: FortnoxDate | None = None
    OfferDate: FortnoxDate | None = None
    OfferRows: list[FortnoxOfferRow] | None = None
    # Writable on offers (Fortnox's offer documentation), unlike on orders and invoices.
    OrganisationNumber: str | None = None
    YourReferenceNumber: str | None = None

    InvoiceReference: ReadOnly = None
    OrderReference: ReadOnly = None


class FortnoxArticleBundlePriceAdjustmentRow(_FortnoxModel):
    """`PriceAdjustmentRow` of an article bundle: where rounding differences of the bundle price go."""

    ConstructionAccount: ArticleAccountNumber | None = None
    Description: str | None = None
    EUAccount: ArticleAccountNumber | None = None
    EUVATAccount: ArticleAccountNumber | None = None
    ExportAccount: ArticleAccountNumber | None = None
    SalesAccount: ArticleAccountNumber | None = None
    VAT: VatPercent | None = None


class FortnoxArticleBundleSubItem(_FortnoxModel):
    """One entry of a bundle's `SubItems`: an article and how many of it a bundle holds."""

    ArticleNumber: ArticleNumberText | None = None
    FixedPrice: bool | None = None
    Quantity: Money | None = None


class FortnoxArticleBundle(_FortnoxModel):
    """`Bundle` of an article."""

    Comment: str | None = None
    PriceAdjustmentRow: FortnoxArticleBundlePriceAdjustmentRow | None = None
    SubItems: list[FortnoxArticleBundleSubItem] | None = None


class FortnoxArticle(_Document):
    """An article for `POST /3/articles` (fortnox_ArticleV2)."""

    wrapper: ClassVar[str] = "Article"
    # The customer's own number; Fortnox assigns the next one of its series when it is absent.
    external_id_field: ClassVar[str | None] = "ArticleNumber"

    Description: str = Field(min_length=1, max_length=200)

    Active: bool | None = None
    ArticleNumber: ArticleNumberText | None = None
    Bulky: bool | None = None
    Bundle: FortnoxArticleBundle | None = None
    BundleArticle: bool | None = None
    ConstructionAccount: ArticleAccountNumber | None = None
    CostCalculationMethod: str | None = None
    DefaultStockLocation: str | None = None
    DefaultStockPoint: str | None = None
    Depth: Dimension | None = None
    DirectCost: Money | None = None
    EAN: str | None = Field(default=None, max_length=30)
    EUAccount: ArticleAccountNumber | None = None
    EUVATAccount: ArticleAccountNumber | None = None
    Expired: bool | None = None
    ExportAccount: ArticleAccountNumber | None = None
    FreightCost: Money | None = None
    Height: Dimension | None = None
    Housework: bool | None = None
    HouseworkType: ArticleHouseworkTypeValue | None = None
    Manufacturer: str | None = Field(default=None, max_length=50)
    ManufacturerArticleNumber: str | None = Field(default=None, max_length=50)
    Note: str | None = Field(default=None, max_length=10000)
    OtherCost: Money | None = None
    PurchaseAccount: ArticleAccountNumber | None = None
    PurchasePrice: Money | None = None
    QuantityInStock: Money | None = None
    SalesAccount: ArticleAccountNumber | None = None
    StockAccount: Int | None = None
    StockChangeAccount: Int | None = None
    StockGoods: bool | None = None
    StockPlace: str | None = Field(default=None, max_length=100)
    StockWarning: Money | None = None
    SupplierNumber: str | None = None
    Type: ArticleTypeValue | None = None
    Unit: str | None = None
    VAT: VatPercent | None = None
    WebshopArticle: bool | None = None
    Weight: Dimension | None = None
    Width: Dimension | None = None

    url: ReadOnly = Field(default=None, alias="@url")
    DisposableQuantity: ReadOnly = None
    ReservedQuantity: ReadOnly = None
    SalesPrice: ReadOnlySalesPrice = None
    StockValue: ReadOnly = None
    SupplierName: ReadOnly = None  # from the supplier register, via SupplierNumber

    @field_validator("Description", mode="before")
    @classmethod
    def _description_not_blank(cls, value: Any) -> Any:
        return value.strip() if isinstance(value, str) else value


# ----- Fortnox's answers

#: The error codes the spec documents, with its description.
ERROR_CODES: dict[int, str] = {
    2004167: "An account must be provided when using a custom VAT rate and EasyVat has been enabled.",
}


class FortnoxError(BaseModel):
    """Fortnox's error body `{"ErrorInformation": {"Error": 1, "Message": "...", "Code": 2000359}}`, read.

    Build it with `parse_error`, which accepts both casings of every key.
    """

    model_config = ConfigDict(frozen=True)

    error: int | None = None
    message: str = ""
    code: int | None = None

    @property
    def description(self) -> str | None:
        """The spec's description of `code`, when it documents that code."""
        return None if self.code is None else ERROR_CODES.get(self.code)


def _key(mapping: Mapping[Any, Any], name: str) -> Any:
    """`mapping[name]` with the key matched case-insensitively (Fortnox sends "Error" and "error")."""
    if name in mapping:
        return mapping[name]
    wanted = name.lower()
    return next((value for key, value in mapping.items() if isinstance(key, str) and key.lower() == wanted), None)


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*-?[0-9]+\s*", value):
        return int(value)
    return None


def parse_error(body: Any) -> FortnoxError | None:
    """The FortnoxError in a response body (a parsed JSON value, or JSON text/bytes); None if there is none.

    Never raises: an error path must not fail on an odd body.
    """
    if isinstance(body, str | bytes | bytearray):
        try:
            body = json.loads(body)
        except ValueError:
            return None
    if not isinstance(body, Mapping):
        return None
    info = _key(body, "ErrorInformation")
    if not isinstance(info, Mapping):
        return None
    message = _key(info, "Message")
    return FortnoxError(
        error=_as_int(_key(info, "Error")),
        message="" if message is None else str(message),
        code=_as_int(_key(info, "Code")),
    )
