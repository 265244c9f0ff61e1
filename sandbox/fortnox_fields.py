"""The fields Fortnox accepts in a created invoice, order, offer and article, with their JSON types.

Read from the spec's payload schemas (``fortnox_InvoicePayloadV2``, ``fortnox_OrderPayloadV2``,
``fortnox_OfferPayloadV2``, ``fortnox_ArticleV2``): the type of a field is the type of its
example value ("string", 0.1 -> number, 0 / 1000 / 999 -> integer, true -> boolean,
"2019-08-24" -> date), with these decisions:

* Row quantities are "string" in the spec (``DeliveredQuantity``, ``OrderedQuantity``,
  ``ReservedQuantity``, the offer rows' ``Quantity``) and so are the rows' ``ContributionPercent``
  / ``ContributionValue`` (numbers on the document header). Fortnox takes both "2" and 2 there, so
  these are QUANTITY fields: a JSON number or a string holding a decimal number.
* ``VAT``, ``CurrencyUnit`` and ``TaxReduction`` are integers in one schema and numbers in
  another (invoice rows 0, order rows 0.1): numbers everywhere (a custom VAT rate may be 7.5).
* Fields with a single example value that looks like an enumeration ("ACCRUAL", "AMOUNT",
  "CONSTRUCTION", "INVOICE", "SV", "CASH", "none", "STOCK", "registration") are strings: the spec
  lists no other values, so the sandbox does not guess which ones Fortnox allows.
* Read-only fields the payload schema shows ("@url", Balance, Booked, Total, ...) are accepted
  (Fortnox ignores what it computes itself); the answer sets DocumentNumber/ArticleNumber and
  "@url" itself.

A shape maps a field name to a type name, to a nested shape (an object) or to ``[shape]`` (a
list of such objects).
"""

from __future__ import annotations

from typing import Union

STRING, NUMBER, INTEGER, BOOLEAN, DATE, QUANTITY = "string", "number", "integer", "boolean", "date", "quantity"

FieldType = Union[str, "Shape", list["Shape"]]  # a runtime alias: the forward references need Union
Shape = dict[str, FieldType]


def shape(
    string: str = "",
    number: str = "",
    integer: str = "",
    boolean: str = "",
    date: str = "",
    quantity: str = "",
    **nested: Shape | list[Shape],
) -> Shape:
    """A shape from space-separated field names per type, plus nested objects / lists by name."""
    out: Shape = {}
    for type_name, names in (
        (STRING, string),
        (NUMBER, number),
        (INTEGER, integer),
        (BOOLEAN, boolean),
        (DATE, date),
        (QUANTITY, quantity),
    ):
        out.update(dict.fromkeys(names.split(), type_name))
    out.update(nested)
    return out


EMAIL_INFORMATION = shape(
    string="EmailAddressBCC EmailAddressCC EmailAddressFrom EmailAddressTo EmailBody EmailSubject"
)
EDI_INFORMATION = shape(
    string="EDIGlobalLocationNumber EDIGlobalLocationNumberDelivery EDIInvoiceExtra1 EDIInvoiceExtra2 "
    "EDIOurElectronicReference EDIStatus EDIYourElectronicReference"
)
LABEL = shape(integer="Id")
BUNDLE_SUB_ITEM = shape(number="AmountInBundle SalesPriceInBundle", boolean="FixedPrice PriceAdjustment UserPrice")

_ROW_COMMON = dict(
    integer="AccountNumber HouseWorkHoursToReport RowId",
    number="Discount Price Total VAT",
    boolean="HouseWork",
)
_ROW_STRINGS = "ArticleNumber CostCenter Description DiscountType HouseWorkType Project Unit VATCode"


def _row(strings: str, quantities: str, numbers: str = "") -> Shape:
    """A document row (with its bundle of sub rows: the same fields, plus BundleSubItem)."""
    fields = {**_ROW_COMMON, "number": f"{_ROW_COMMON['number']} {numbers}", "string": f"{_ROW_STRINGS} {strings}"}
    sub_row = shape(**fields, quantity=quantities, BundleSubItem=BUNDLE_SUB_ITEM)
    return shape(**fields, quantity=quantities, Bundle=shape(integer="Revision", SubRows=[sub_row]))


INVOICE_ROW = _row(
    "StockPointCode", "ContributionPercent ContributionValue DeliveredQuantity", "PriceExcludingVAT TotalExcludingVAT"
)
ORDER_ROW = _row(
    "StockPointCode StockPointId",
    "ContributionPercent ContributionValue DeliveredQuantity OrderedQuantity ReservedQuantity",
)
OFFER_ROW = _row("", "ContributionPercent ContributionValue Quantity")

# Header fields all three documents share.
_HEADER_STRINGS = (
    "@url @urlTaxReductionList Address1 Address2 City Comments CostCenter Country Currency CustomerName "
    "CustomerNumber DeliveryAddress1 DeliveryAddress2 DeliveryCity DeliveryCountry DeliveryName DeliveryZipCode "
    "DocumentNumber Language OrganisationNumber OurReference Phone1 Phone2 PriceList PrintTemplate "
    "Project Remarks TaxReductionType TermsOfDelivery TermsOfPayment WayOfDelivery YourReference ZipCode"
)
_HEADER_NUMBERS = (
    "AdministrationFee AdministrationFeeVAT BasisTaxReduction ContributionPercent ContributionValue CurrencyRate "
    "CurrencyUnit Freight FreightVAT Gross Net RoundOff TaxReduction Total TotalToPay TotalVAT"
)
_HEADER_BOOLEANS = "Cancelled HouseWork NotCompleted Sent VATIncluded"

INVOICE = shape(
    string=f"{_HEADER_STRINGS} AccountingMethod Credit CreditInvoiceReference ExternalInvoiceReference1 "
    "ExternalInvoiceReference2 InvoicePeriodReference InvoiceType OCR OfferReference OrderReference PaymentWay "
    "VoucherSeries YourOrderNumber",
    number=f"{_HEADER_NUMBERS} Balance",
    integer="ContractReference Reminders TimeBasisReference VoucherNumber VoucherYear",
    boolean=f"{_HEADER_BOOLEANS} Booked EUQuarterlyReport NoxFinans WarehouseReady",
    date="DeliveryDate DueDate FinalPayDate InvoiceDate InvoicePeriodEnd InvoicePeriodStart LastRemindDate "
    "OutboundDate",
    EDIInformation=EDI_INFORMATION,
    EmailInformation=EMAIL_INFORMATION,
    InvoiceRows=[INVOICE_ROW],
    Labels=[LABEL],
)
ORDER = shape(
    string=f"{_HEADER_STRINGS} DeliveryState ExternalInvoiceReference1 ExternalInvoiceReference2 InvoiceReference "
    "OfferReference OrderType StockPointCode StockPointId YourOrderNumber",
    number=_HEADER_NUMBERS,
    integer="TimeBasisReference",
    boolean=f"{_HEADER_BOOLEANS} CopyRemarks WarehouseReady",
    date="DeliveryDate OrderDate OutboundDate",
    EmailInformation=EMAIL_INFORMATION,
    Labels=[LABEL],
    OrderRows=[ORDER_ROW],
)
OFFER = shape(
    string=f"{_HEADER_STRINGS} InvoiceReference OrderReference YourReferenceNumber",
    number=_HEADER_NUMBERS,
    boolean=f"{_HEADER_BOOLEANS} CopyRemarks",
    date="DeliveryDate ExpireDate OfferDate",
    EmailInformation=EMAIL_INFORMATION,
    Labels=[LABEL],
    OfferRows=[OFFER_ROW],
)
ARTICLE = shape(
    string="@url ArticleNumber CostCalculationMethod DefaultStockLocation DefaultStockPoint Description EAN "
    "HouseworkType Manufacturer ManufacturerArticleNumber Note StockPlace SupplierName SupplierNumber Type Unit",
    number="DirectCost DisposableQuantity FreightCost OtherCost PurchasePrice QuantityInStock ReservedQuantity "
    "SalesPrice StockValue StockWarning VAT",
    integer="ConstructionAccount Depth EUAccount EUVATAccount ExportAccount Height PurchaseAccount SalesAccount "
    "StockAccount StockChangeAccount Weight Width",
    boolean="Active Bulky BundleArticle Expired Housework StockGoods WebshopArticle",
    Bundle=shape(
        string="Comment",
        PriceAdjustmentRow=shape(
            integer="ConstructionAccount EUAccount EUVATAccount ExportAccount SalesAccount",
            string="Description",
            number="VAT",
        ),
        SubItems=[shape(string="ArticleNumber", boolean="FixedPrice", number="Quantity")],
    ),
)
