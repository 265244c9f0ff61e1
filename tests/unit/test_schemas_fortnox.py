"""Fortnox models: the spec's examples validate, read-only and unknown fields are refused, errors name fields."""

from __future__ import annotations

import copy
import json
import typing
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from schemas.fortnox import (
    ERROR_CODES,
    FortnoxArticle,
    FortnoxError,
    FortnoxInvoice,
    FortnoxOffer,
    FortnoxOrder,
    HouseWorkTypeValue,
    parse_error,
)

# ----- the request examples of fortnox-alpha-beta-api.txt, the object inside the wrapper, as printed there
# (create endpoints; the update and response examples of each resource are the same objects).

SPEC_INVOICE: dict[str, Any] = {
    "@url": "string",
    "@urlTaxReductionList": "string",
    "AccountingMethod": "ACCRUAL",
    "Address1": "string",
    "Address2": "string",
    "AdministrationFee": 0.1,
    "AdministrationFeeVAT": 0.1,
    "Balance": 0.1,
    "BasisTaxReduction": 0.1,
    "Booked": True,
    "Cancelled": True,
    "City": "string",
    "Comments": "string",
    "ContractReference": 0,
    "ContributionPercent": 0.1,
    "ContributionValue": 0.1,
    "CostCenter": "string",
    "Country": "string",
    "Credit": "string",
    "CreditInvoiceReference": "string",
    "Currency": "string",
    "CurrencyRate": 0.1,
    "CurrencyUnit": 0,
    "CustomerName": "string",
    "CustomerNumber": "string",
    "DeliveryAddress1": "string",
    "DeliveryAddress2": "string",
    "DeliveryCity": "string",
    "DeliveryCountry": "string",
    "DeliveryDate": "2019-08-24",
    "DeliveryName": "string",
    "DeliveryZipCode": "string",
    "DocumentNumber": "string",
    "DueDate": "2019-08-24",
    "EDIInformation": {
        "EDIGlobalLocationNumber": "string",
        "EDIGlobalLocationNumberDelivery": "string",
        "EDIInvoiceExtra1": "string",
        "EDIInvoiceExtra2": "string",
        "EDIOurElectronicReference": "string",
        "EDIStatus": "string",
        "EDIYourElectronicReference": "string",
    },
    "EUQuarterlyReport": True,
    "EmailInformation": {
        "EmailAddressBCC": "string",
        "EmailAddressCC": "string",
        "EmailAddressFrom": "string",
        "EmailAddressTo": "string",
        "EmailBody": "string",
        "EmailSubject": "string",
    },
    "ExternalInvoiceReference1": "string",
    "ExternalInvoiceReference2": "string",
    "FinalPayDate": "2019-08-24",
    "Freight": 0.1,
    "FreightVAT": 0.1,
    "Gross": 0.1,
    "HouseWork": True,
    "InvoiceDate": "2019-08-24",
    "InvoicePeriodEnd": "2019-08-24",
    "InvoicePeriodReference": "string",
    "InvoicePeriodStart": "2019-08-24",
    "InvoiceRows": [
        {
            "AccountNumber": 1000,
            "ArticleNumber": "string",
            "Bundle": {
                "Revision": 0,
                "SubRows": [
                    {
                        "AccountNumber": 1000,
                        "ArticleNumber": "string",
                        "BundleSubItem": {
                            "AmountInBundle": 0.1,
                            "FixedPrice": True,
                            "PriceAdjustment": True,
                            "SalesPriceInBundle": 0.1,
                            "UserPrice": True,
                        },
                        "ContributionPercent": "string",
                        "ContributionValue": "string",
                        "CostCenter": "string",
                        "DeliveredQuantity": "string",
                        "Description": "string",
                        "Discount": 0.1,
                        "DiscountType": "AMOUNT",
                        "HouseWork": True,
                        "HouseWorkHoursToReport": 999,
                        "HouseWorkType": "CONSTRUCTION",
                        "Price": 0.1,
                        "PriceExcludingVAT": 0.1,
                        "Project": "string",
                        "RowId": 0,
                        "StockPointCode": "string",
                        "Total": 0.1,
                        "TotalExcludingVAT": 0.1,
                        "Unit": "string",
                        "VAT": 0,
                        "VATCode": "string",
                    }
                ],
            },
            "ContributionPercent": "string",
            "ContributionValue": "string",
            "CostCenter": "string",
            "DeliveredQuantity": "string",
            "Description": "string",
            "Discount": 0.1,
            "DiscountType": "AMOUNT",
            "HouseWork": True,
            "HouseWorkHoursToReport": 999,
            "HouseWorkType": "CONSTRUCTION",
            "Price": 0.1,
            "PriceExcludingVAT": 0.1,
            "Project": "string",
            "RowId": 0,
            "StockPointCode": "string",
            "Total": 0.1,
            "TotalExcludingVAT": 0.1,
            "Unit": "string",
            "VAT": 0,
            "VATCode": "string",
        }
    ],
    "InvoiceType": "INVOICE",
    "Labels": [{"Id": 0}],
    "Language": "SV",
    "LastRemindDate": "2019-08-24",
    "Net": 0.1,
    "NotCompleted": True,
    "NoxFinans": True,
    "OCR": "string",
    "OfferReference": "string",
    "OrderReference": "string",
    "OrganisationNumber": "string",
    "OurReference": "string",
    "OutboundDate": "2019-08-24",
    "PaymentWay": "CASH",
    "Phone1": "string",
    "Phone2": "string",
    "PriceList": "string",
    "PrintTemplate": "string",
    "Project": "string",
    "Remarks": "string",
    "Reminders": 0,
    "RoundOff": 0.1,
    "Sent": True,
    "TaxReduction": 0,
    "TaxReductionType": "none",
    "TermsOfDelivery": "string",
    "TermsOfPayment": "string",
    "TimeBasisReference": 0,
    "Total": 0.1,
    "TotalToPay": 0.1,
    "TotalVAT": 0.1,
    "VATIncluded": True,
    "VoucherNumber": 0,
    "VoucherSeries": "string",
    "VoucherYear": 0,
    "WarehouseReady": True,
    "WayOfDelivery": "string",
    "YourOrderNumber": "string",
    "YourReference": "string",
    "ZipCode": "string",
}

SPEC_ORDER: dict[str, Any] = {
    "@url": "string",
    "@urlTaxReductionList": "string",
    "Address1": "string",
    "Address2": "string",
    "AdministrationFee": 0.1,
    "AdministrationFeeVAT": 0.1,
    "BasisTaxReduction": 0.1,
    "Cancelled": True,
    "City": "string",
    "Comments": "string",
    "ContributionPercent": 0.1,
    "ContributionValue": 0.1,
    "CopyRemarks": True,
    "CostCenter": "string",
    "Country": "string",
    "Currency": "str",
    "CurrencyRate": 0.1,
    "CurrencyUnit": 0.1,
    "CustomerName": "string",
    "CustomerNumber": "string",
    "DeliveryAddress1": "string",
    "DeliveryAddress2": "string",
    "DeliveryCity": "string",
    "DeliveryCountry": "string",
    "DeliveryDate": "2019-08-24",
    "DeliveryName": "string",
    "DeliveryState": "registration",
    "DeliveryZipCode": "string",
    "DocumentNumber": "string",
    "EmailInformation": {
        "EmailAddressBCC": "string",
        "EmailAddressCC": "string",
        "EmailAddressFrom": "string",
        "EmailAddressTo": "string",
        "EmailBody": "string",
        "EmailSubject": "string",
    },
    "ExternalInvoiceReference1": "string",
    "ExternalInvoiceReference2": "string",
    "Freight": 0.1,
    "FreightVAT": 0.1,
    "Gross": 0.1,
    "HouseWork": True,
    "InvoiceReference": "string",
    "Labels": [{"Id": 0}],
    "Language": "string",
    "Net": 0.1,
    "NotCompleted": True,
    "OfferReference": "string",
    "OrderDate": "2019-08-24",
    "OrderRows": [
        {
            "AccountNumber": 0,
            "ArticleNumber": "string",
            "Bundle": {
                "Revision": 0,
                "SubRows": [
                    {
                        "AccountNumber": 0,
                        "ArticleNumber": "string",
                        "BundleSubItem": {
                            "AmountInBundle": 0.1,
                            "FixedPrice": True,
                            "PriceAdjustment": True,
                            "SalesPriceInBundle": 0.1,
                            "UserPrice": True,
                        },
                        "ContributionPercent": "string",
                        "ContributionValue": "string",
                        "CostCenter": "string",
                        "DeliveredQuantity": "string",
                        "Description": "string",
                        "Discount": 0.1,
                        "DiscountType": "AMOUNT",
                        "HouseWork": True,
                        "HouseWorkHoursToReport": 0,
                        "HouseWorkType": "CONSTRUCTION",
                        "OrderedQuantity": "string",
                        "Price": 0.1,
                        "Project": "string",
                        "ReservedQuantity": "string",
                        "RowId": 0,
                        "StockPointCode": "string",
                        "StockPointId": "string",
                        "Total": 0.1,
                        "Unit": "string",
                        "VAT": 0.1,
                        "VATCode": "string",
                    }
                ],
            },
            "ContributionPercent": "string",
            "ContributionValue": "string",
            "CostCenter": "string",
            "DeliveredQuantity": "string",
            "Description": "string",
            "Discount": 0.1,
            "DiscountType": "AMOUNT",
            "HouseWork": True,
            "HouseWorkHoursToReport": 0,
            "HouseWorkType": "CONSTRUCTION",
            "OrderedQuantity": "string",
            "Price": 0.1,
            "Project": "string",
            "ReservedQuantity": "string",
            "RowId": 0,
            "StockPointCode": "string",
            "StockPointId": "string",
            "Total": 0.1,
            "Unit": "string",
            "VAT": 0.1,
            "VATCode": "string",
        }
    ],
    "OrderType": "string",
    "OrganisationNumber": "string",
    "OurReference": "string",
    "OutboundDate": "2019-08-24",
    "Phone1": "string",
    "Phone2": "string",
    "PriceList": "string",
    "PrintTemplate": "string",
    "Project": "string",
    "Remarks": "string",
    "RoundOff": 0.1,
    "Sent": True,
    "StockPointCode": "string",
    "StockPointId": "string",
    "TaxReduction": 0.1,
    "TaxReductionType": "none",
    "TermsOfDelivery": "string",
    "TermsOfPayment": "string",
    "TimeBasisReference": 0,
    "Total": 0.1,
    "TotalToPay": 0.1,
    "TotalVAT": 0.1,
    "VATIncluded": True,
    "WarehouseReady": True,
    "WayOfDelivery": "string",
    "YourOrderNumber": "string",
    "YourReference": "string",
    "ZipCode": "string",
}

SPEC_OFFER: dict[str, Any] = {
    "@url": "string",
    "@urlTaxReductionList": "string",
    "Address1": "string",
    "Address2": "string",
    "AdministrationFee": 0.1,
    "AdministrationFeeVAT": 0.1,
    "BasisTaxReduction": 0.1,
    "Cancelled": True,
    "City": "string",
    "Comments": "string",
    "ContributionPercent": 0.1,
    "ContributionValue": 0.1,
    "CopyRemarks": True,
    "CostCenter": "string",
    "Country": "string",
    "Currency": "string",
    "CurrencyRate": 0.1,
    "CurrencyUnit": 0,
    "CustomerName": "string",
    "CustomerNumber": "string",
    "DeliveryAddress1": "string",
    "DeliveryAddress2": "string",
    "DeliveryCity": "string",
    "DeliveryCountry": "string",
    "DeliveryDate": "2019-08-24",
    "DeliveryName": "string",
    "DeliveryZipCode": "string",
    "DocumentNumber": "string",
    "EmailInformation": {
        "EmailAddressBCC": "string",
        "EmailAddressCC": "string",
        "EmailAddressFrom": "string",
        "EmailAddressTo": "string",
        "EmailBody": "string",
        "EmailSubject": "string",
    },
    "ExpireDate": "2019-08-24",
    "Freight": 0.1,
    "FreightVAT": 0.1,
    "Gross": 0.1,
    "HouseWork": True,
    "InvoiceReference": "string",
    "Labels": [{"Id": 0}],
    "Language": "string",
    "Net": 0.1,
    "NotCompleted": True,
    "OfferDate": "2019-08-24",
    "OfferRows": [
        {
            "AccountNumber": 0,
            "ArticleNumber": "string",
            "Bundle": {
                "Revision": 0,
                "SubRows": [
                    {
                        "AccountNumber": 0,
                        "ArticleNumber": "string",
                        "BundleSubItem": {
                            "AmountInBundle": 0.1,
                            "FixedPrice": True,
                            "PriceAdjustment": True,
                            "SalesPriceInBundle": 0.1,
                            "UserPrice": True,
                        },
                        "ContributionPercent": "string",
                        "ContributionValue": "string",
                        "CostCenter": "string",
                        "Description": "string",
                        "Discount": 0.1,
                        "DiscountType": "AMOUNT",
                        "HouseWork": True,
                        "HouseWorkHoursToReport": 999,
                        "HouseWorkType": "CONSTRUCTION",
                        "Price": 0.1,
                        "Project": "string",
                        "Quantity": "string",
                        "RowId": 0,
                        "Total": 0.1,
                        "Unit": "string",
                        "VAT": 0,
                        "VATCode": "string",
                    }
                ],
            },
            "ContributionPercent": "string",
            "ContributionValue": "string",
            "CostCenter": "string",
            "Description": "string",
            "Discount": 0.1,
            "DiscountType": "AMOUNT",
            "HouseWork": True,
            "HouseWorkHoursToReport": 999,
            "HouseWorkType": "CONSTRUCTION",
            "Price": 0.1,
            "Project": "string",
            "Quantity": "string",
            "RowId": 0,
            "Total": 0.1,
            "Unit": "string",
            "VAT": 0,
            "VATCode": "string",
        }
    ],
    "OrderReference": "string",
    "OrganisationNumber": "string",
    "OurReference": "string",
    "Phone1": "string",
    "Phone2": "string",
    "PriceList": "string",
    "PrintTemplate": "string",
    "Project": "string",
    "Remarks": "string",
    "RoundOff": 0.1,
    "Sent": True,
    "TaxReduction": 0,
    "TaxReductionType": "none",
    "TermsOfDelivery": "string",
    "TermsOfPayment": "string",
    "Total": 0.1,
    "TotalToPay": 0.1,
    "TotalVAT": 0.1,
    "VATIncluded": True,
    "WayOfDelivery": "string",
    "YourReference": "string",
    "YourReferenceNumber": "string",
    "ZipCode": "string",
}

SPEC_ARTICLE: dict[str, Any] = {
    "@url": "string",
    "Active": True,
    "ArticleNumber": "string",
    "Bulky": True,
    "Bundle": {
        "Comment": "string",
        "PriceAdjustmentRow": {
            "ConstructionAccount": 1000,
            "Description": "string",
            "EUAccount": 1000,
            "EUVATAccount": 1000,
            "ExportAccount": 1000,
            "SalesAccount": 1000,
            "VAT": 0.1,
        },
        "SubItems": [{"ArticleNumber": "string", "FixedPrice": True, "Quantity": 0.1}],
    },
    "BundleArticle": True,
    "ConstructionAccount": 1000,
    "CostCalculationMethod": "string",
    "DefaultStockLocation": "string",
    "DefaultStockPoint": "string",
    "Depth": 999999999,
    "Description": "string",
    "DirectCost": 0.1,
    "DisposableQuantity": 0.1,
    "EAN": "string",
    "EUAccount": 1000,
    "EUVATAccount": 1000,
    "Expired": True,
    "ExportAccount": 1000,
    "FreightCost": 0.1,
    "Height": 999999999,
    "Housework": True,
    "HouseworkType": "CONSTRUCTION",
    "Manufacturer": "string",
    "ManufacturerArticleNumber": "string",
    "Note": "string",
    "OtherCost": 0.1,
    "PurchaseAccount": 1000,
    "PurchasePrice": 0.1,
    "QuantityInStock": 0.1,
    "ReservedQuantity": 0.1,
    "SalesAccount": 1000,
    "SalesPrice": 0.1,
    "StockAccount": 0,
    "StockChangeAccount": 0,
    "StockGoods": True,
    "StockPlace": "string",
    "StockValue": 0.1,
    "StockWarning": 0.1,
    "SupplierName": "string",
    "SupplierNumber": "string",
    "Type": "STOCK",
    "Unit": "string",
    "VAT": 0.1,
    "WebshopArticle": True,
    "Weight": 999999999,
    "Width": 999999999,
}

SalesDocument = type[FortnoxInvoice] | type[FortnoxOrder] | type[FortnoxOffer]
SALES: list[tuple[SalesDocument, dict[str, Any], str]] = [
    (FortnoxInvoice, SPEC_INVOICE, "InvoiceRows"),
    (FortnoxOrder, SPEC_ORDER, "OrderRows"),
    (FortnoxOffer, SPEC_OFFER, "OfferRows"),
]
ALL: list[tuple[type[BaseModel], dict[str, Any]]] = [(m, e) for m, e, _ in SALES] + [(FortnoxArticle, SPEC_ARTICLE)]


def _nested_model(model: type[BaseModel], key: str) -> type[BaseModel] | None:
    """The model of a nested object or list of objects under `key`, if any."""
    field = next((f for name, f in model.model_fields.items() if (f.alias or name) == key), None)
    todo = [field.annotation] if field else []
    while todo:
        tp = todo.pop()
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            return tp
        todo.extend(typing.get_args(tp))
    return None


def without_read_only(model: type[BaseModel], data: dict[str, Any]) -> dict[str, Any]:
    """`data` without the fields Fortnox sets itself, at every level (rows, bundle sub-rows, EDIInformation)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in model.READ_ONLY_FIELDS:  # type: ignore[attr-defined]
            continue
        sub = _nested_model(model, key)
        if sub is not None and isinstance(value, dict):
            value = without_read_only(sub, value)
        elif sub is not None and isinstance(value, list):
            value = [without_read_only(sub, item) for item in value]
        out[key] = value
    return out


def errors_of(model: type[BaseModel], data: Any) -> dict[tuple[Any, ...], dict[str, Any]]:
    """The validation errors of `data`, by location."""
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data, by_alias=True)
    return {tuple(e["loc"]): e for e in caught.value.errors(include_url=False)}


def realistic(model: type[BaseModel], example: dict[str, Any]) -> dict[str, Any]:
    """The spec example, read-only fields removed and its placeholders replaced by values of a real document.

    The examples are generated from the schema types ("string" for every text, 0 or 0.1 for every number),
    so some placeholders break documented rules: a quantity typed "string", a currency "string", a document
    number "string", a CurrencyUnit 0, an account number 0.
    """
    doc = copy.deepcopy(without_read_only(model, example))
    if model is FortnoxArticle:
        doc["ArticleNumber"] = "A-100"
        return doc
    doc.update({"Currency": "SEK", "CurrencyUnit": 1, "DocumentNumber": "1001", "Language": "SV"})
    if model is FortnoxInvoice:
        doc["CreditInvoiceReference"] = "1000"
    quantity = {"InvoiceRows": ("DeliveredQuantity",), "OrderRows": ("DeliveredQuantity", "OrderedQuantity")}
    for rows_key in ("InvoiceRows", "OrderRows", "OfferRows"):
        for row in doc.get(rows_key, []):
            for row_or_sub in [row, *row["Bundle"]["SubRows"]]:
                for name in quantity.get(rows_key, ("Quantity",)):
                    row_or_sub[name] = 2
                row_or_sub["AccountNumber"] = 3001
    return doc


@pytest.mark.parametrize(("model", "example"), ALL)
def test_every_field_of_the_spec_examples_is_known(model: type[BaseModel], example: dict[str, Any]) -> None:
    # Unstripped, the examples fail only on read-only fields and on placeholder values: no field of theirs
    # is unknown to our models.
    errors = errors_of(model, example)
    assert not [loc for loc, e in errors.items() if e["type"] == "extra_forbidden"]
    top_level_read_only = {loc[0] for loc, e in errors.items() if e["type"] == "read_only" and len(loc) == 1}
    assert top_level_read_only == model.READ_ONLY_FIELDS  # type: ignore[attr-defined]


@pytest.mark.parametrize(("model", "example"), ALL)
def test_spec_examples_without_read_only_fields_fail_only_on_placeholders(
    model: type[BaseModel], example: dict[str, Any]
) -> None:
    try:
        model.model_validate(without_read_only(model, example), by_alias=True)
        errors: dict[tuple[Any, ...], dict[str, Any]] = {}
    except ValidationError as exc:
        errors = {tuple(e["loc"]): e for e in exc.errors()}
    placeholders = {
        FortnoxInvoice: {
            ("Currency",),
            ("CurrencyUnit",),
            ("DocumentNumber",),
            ("CreditInvoiceReference",),
            ("InvoiceRows", 0, "DeliveredQuantity"),
            ("InvoiceRows", 0, "Bundle", "SubRows", 0, "DeliveredQuantity"),
        },
        FortnoxOrder: {
            ("Currency",),  # "str": the example generator cut "string" to the schema's maxLength of 3
            ("DocumentNumber",),
            ("Language",),
            *(
                (*prefix, name)
                for prefix in (("OrderRows", 0), ("OrderRows", 0, "Bundle", "SubRows", 0))
                for name in ("AccountNumber", "DeliveredQuantity", "OrderedQuantity")
            ),
        },
        FortnoxOffer: {
            ("Currency",),
            ("CurrencyUnit",),
            ("DocumentNumber",),
            ("Language",),
            *(
                (*prefix, name)
                for prefix in (("OfferRows", 0), ("OfferRows", 0, "Bundle", "SubRows", 0))
                for name in ("AccountNumber", "Quantity")
            ),
        },
        FortnoxArticle: set(),
    }
    assert set(errors) == placeholders[model]


@pytest.mark.parametrize(("model", "example"), ALL)
def test_spec_examples_with_real_values_validate_and_go_out_unchanged(
    model: type[BaseModel], example: dict[str, Any]
) -> None:
    doc = realistic(model, example)
    parsed = model.model_validate(doc, by_alias=True)
    assert parsed.to_wire() == doc  # type: ignore[attr-defined]
    assert json.loads(parsed.to_wire_json()) == doc  # type: ignore[attr-defined]
    assert model.model_validate_json(parsed.to_wire_json(), by_alias=True) == parsed  # type: ignore[attr-defined]


def test_wrappers_and_id_fields() -> None:
    assert [(m.wrapper, m.external_id_field) for m in (FortnoxInvoice, FortnoxOrder, FortnoxOffer, FortnoxArticle)] == [
        ("Invoice", "ExternalInvoiceReference1"),
        ("Order", "ExternalInvoiceReference1"),
        ("Offer", None),
        ("Article", "ArticleNumber"),
    ]
    # The spec's order payload does carry ExternalInvoiceReference1, and both examples have it.
    assert "ExternalInvoiceReference1" in SPEC_ORDER and "ExternalInvoiceReference1" in SPEC_INVOICE
    for model in (FortnoxInvoice, FortnoxOrder, FortnoxArticle):
        assert model.external_id_field in model.model_fields


# ----- header rules


@pytest.mark.parametrize(("model", "example", "rows"), SALES)
def test_customer_number_is_required_text(model: SalesDocument, example: dict[str, Any], rows: str) -> None:
    doc = realistic(model, example)
    del doc["CustomerNumber"]
    assert errors_of(model, doc)[("CustomerNumber",)]["type"] == "missing"
    doc["CustomerNumber"] = 13
    assert "leading zeros" in errors_of(model, doc)[("CustomerNumber",)]["msg"]
    doc["CustomerNumber"] = "   "
    assert ("CustomerNumber",) in errors_of(model, doc)
    doc["CustomerNumber"] = " 0013 "
    assert model.model_validate(doc).CustomerNumber == "0013"


@pytest.mark.parametrize(
    ("model", "field"),
    [
        (FortnoxInvoice, "InvoiceDate"),
        (FortnoxInvoice, "DueDate"),
        (FortnoxOrder, "OrderDate"),
        (FortnoxOrder, "DeliveryDate"),
        (FortnoxOffer, "ExpireDate"),
    ],
)
@pytest.mark.parametrize("bad", ["2026-02-30", "26-02-01", "2026-2-1", "2026-02-01T10:00:00", "", 20260201])
def test_dates_are_calendar_dates_yyyy_mm_dd(model: SalesDocument, field: str, bad: Any) -> None:
    error = errors_of(model, {"CustomerNumber": "1", field: bad})[(field,)]
    assert "date" in error["msg"]
    assert getattr(model.model_validate({"CustomerNumber": "1", field: "2026-02-28"}), field) == date(2026, 2, 28)


def test_a_date_goes_out_as_yyyy_mm_dd() -> None:
    doc = FortnoxInvoice.model_validate({"CustomerNumber": "1", "InvoiceDate": "2026-02-28"})
    assert doc.to_wire() == {"CustomerNumber": "1", "InvoiceDate": "2026-02-28"}


@pytest.mark.parametrize(
    ("model", "field", "bad"),
    [
        (FortnoxInvoice, "InvoiceType", "CREDIT"),
        (FortnoxInvoice, "PaymentWay", "SWISH"),
        (FortnoxInvoice, "Language", "sv"),
        (FortnoxInvoice, "TaxReductionType", "ROT"),
        (FortnoxOrder, "DeliveryState", "delivered"),
        (FortnoxOffer, "Language", "DE"),
        (FortnoxArticle, "Type", "GOODS"),
        (FortnoxArticle, "HouseworkType", "PLUMBING"),
    ],
)
def test_header_enumerations(model: type[BaseModel], field: str, bad: str) -> None:
    base = {"Description": "x"} if model is FortnoxArticle else {"CustomerNumber": "1"}
    assert errors_of(model, {**base, field: bad})[(field,)]["type"] == "literal_error"


@pytest.mark.parametrize("bad", ["sek", "SEKR", "SE", 752])
def test_currency_is_three_capital_letters(bad: Any) -> None:
    assert "currency code" in errors_of(FortnoxOrder, {"CustomerNumber": "1", "Currency": bad})[("Currency",)]["msg"]
    assert FortnoxOrder.model_validate({"CustomerNumber": "1", "Currency": "EUR"}).Currency == "EUR"


def test_external_invoice_reference1_is_our_id_at_most_80_characters() -> None:
    for model in (FortnoxInvoice, FortnoxOrder):
        assert model.model_validate({"CustomerNumber": "1", "ExternalInvoiceReference1": "j" * 80})
        assert model.model_validate({"CustomerNumber": "1", "ExternalInvoiceReference1": 4711}).to_wire() == {
            "CustomerNumber": "1",
            "ExternalInvoiceReference1": "4711",
        }
        for bad in ("j" * 81, "  ", 1.5):
            assert ("ExternalInvoiceReference1",) in errors_of(
                model, {"CustomerNumber": "1", "ExternalInvoiceReference1": bad}
            )


@pytest.mark.parametrize(
    ("field", "length"), [("OurReference", 50), ("YourReference", 50), ("YourOrderNumber", 75), ("Remarks", 1024)]
)
def test_documented_maximum_lengths(field: str, length: int) -> None:
    assert FortnoxInvoice.model_validate({"CustomerNumber": "1", field: "x" * length})
    error = errors_of(FortnoxInvoice, {"CustomerNumber": "1", field: "x" * (length + 1)})[(field,)]
    assert error["type"] == "string_too_long"


def test_document_numbers_are_digits() -> None:
    assert FortnoxInvoice.model_validate({"CustomerNumber": "1", "DocumentNumber": 1001}).DocumentNumber == "1001"
    assert (
        "digits"
        in errors_of(FortnoxInvoice, {"CustomerNumber": "1", "DocumentNumber": "F-1"})[("DocumentNumber",)]["msg"]
    )


def test_nested_objects_are_checked_too() -> None:
    errors = errors_of(
        FortnoxInvoice,
        {
            "CustomerNumber": "1",
            "EmailInformation": {"EmailSubject": "s" * 101},
            "EDIInformation": {"EDIGlobalLocationNumber": "73" * 7},
            "Labels": [{"Id": 3}, {}, {"Id": "x"}, {"Id": 1, "Name": "x"}],
        },
    )
    assert set(errors) == {
        ("EmailInformation", "EmailSubject"),
        ("EDIInformation", "EDIGlobalLocationNumber"),
        ("Labels", 1, "Id"),
        ("Labels", 2, "Id"),
        ("Labels", 3, "Name"),
    }


# ----- read-only and unknown fields


@pytest.mark.parametrize(
    ("model", "loc", "doc"),
    [
        (FortnoxInvoice, ("Balance",), {"Balance": 0}),
        (FortnoxInvoice, ("@url",), {"@url": "https://api.fortnox.se/3/invoices/1"}),
        (FortnoxInvoice, ("Booked",), {"Booked": False}),
        (FortnoxInvoice, ("AccountingMethod",), {"AccountingMethod": "ACCRUAL"}),
        (FortnoxInvoice, ("InvoiceRows", 1, "Total"), {"InvoiceRows": [{"Price": 1}, {"Total": 5}]}),
        (FortnoxInvoice, ("EDIInformation", "EDIStatus"), {"EDIInformation": {"EDIStatus": "3"}}),
        (FortnoxOrder, ("OrderRows", 0, "RowId"), {"OrderRows": [{"RowId": 123}]}),
        (FortnoxOrder, ("OrderRows", 0, "ReservedQuantity"), {"OrderRows": [{"ReservedQuantity": 2}]}),
        (FortnoxOrder, ("Sent",), {"Sent": True}),
        (FortnoxOffer, ("TotalVAT",), {"TotalVAT": 25}),
        (FortnoxArticle, ("SalesPrice",), {"SalesPrice": 100}),
    ],
)
def test_read_only_fields_are_refused_by_name(
    model: type[BaseModel], loc: tuple[Any, ...], doc: dict[str, Any]
) -> None:
    base = {"Description": "x"} if model is FortnoxArticle else {"CustomerNumber": "1"}
    errors = errors_of(model, {**base, **doc})
    assert list(errors) == [loc]
    assert errors[loc]["type"] == "read_only"
    assert errors[loc]["msg"].startswith("is set by Fortnox (read-only); leave it out")


def test_null_read_only_fields_count_as_absent() -> None:
    doc = FortnoxInvoice.model_validate({"CustomerNumber": "1", "Balance": None, "InvoiceRows": [{"Total": None}]})
    assert doc.to_wire() == {"CustomerNumber": "1", "InvoiceRows": [{}]}


def test_unknown_fields_are_refused_by_name() -> None:
    errors = errors_of(FortnoxOrder, {"CustomerNumber": "1", "Curency": "SEK", "OrderRows": [{"Discont": 10}]})
    assert {loc: e["type"] for loc, e in errors.items()} == {
        ("Curency",): "extra_forbidden",
        ("OrderRows", 0, "Discont"): "extra_forbidden",
    }


def test_the_invoice_row_field_of_an_order_is_unknown() -> None:
    # Each document has its own row fields: an order row has no Quantity, an offer row no OrderedQuantity.
    assert (
        errors_of(FortnoxOrder, {"CustomerNumber": "1", "OrderRows": [{"Quantity": 1}]})[("OrderRows", 0, "Quantity")][
            "type"
        ]
        == "extra_forbidden"
    )
    assert (
        errors_of(FortnoxOffer, {"CustomerNumber": "1", "OfferRows": [{"OrderedQuantity": 1}]})[
            ("OfferRows", 0, "OrderedQuantity")
        ]["type"]
        == "extra_forbidden"
    )


# ----- row rules


def row_errors(row: dict[str, Any]) -> dict[tuple[Any, ...], dict[str, Any]]:
    return errors_of(FortnoxInvoice, {"CustomerNumber": "1", "InvoiceRows": [row]})


@pytest.mark.parametrize("bad", [True, "NaN", float("nan"), float("inf"), "ten", [1]])
def test_prices_are_numbers(bad: Any) -> None:
    assert ("InvoiceRows", 0, "Price") in row_errors({"Price": bad})


def test_nan_in_json_text_is_refused() -> None:
    with pytest.raises(ValidationError) as caught:
        FortnoxInvoice.model_validate_json('{"CustomerNumber": "1", "InvoiceRows": [{"Price": NaN}]}')
    assert [e["loc"] for e in caught.value.errors()] == [("InvoiceRows", 0, "Price")]


def test_amounts_are_exact_and_go_out_as_json_numbers() -> None:
    doc = FortnoxInvoice.model_validate(
        {"CustomerNumber": "1", "InvoiceRows": [{"Price": "11.90", "DeliveredQuantity": 3, "VAT": 12}]}
    )
    row = doc.InvoiceRows[0]  # type: ignore[index]
    assert (row.Price, row.DeliveredQuantity) == (Decimal("11.90"), Decimal(3))
    assert json.loads(doc.to_wire_json())["InvoiceRows"] == [{"DeliveredQuantity": 3.0, "Price": 11.9, "VAT": 12.0}]


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ({"DiscountType": "PERCENTAGE"}, "DiscountType"),
        ({"HouseWorkType": "COOKING"}, "HouseWorkType"),  # retired: no longer a tax-reduction type on rows
        ({"HouseWorkType": "construction"}, "HouseWorkType"),
        ({"DiscountType": "PERCENT", "Discount": 150}, "Discount"),
        ({"DiscountType": "PERCENT", "Discount": -1}, "Discount"),
        ({"AccountNumber": 999}, "AccountNumber"),
        ({"AccountNumber": 10000}, "AccountNumber"),
        ({"HouseWorkHoursToReport": 1000}, "HouseWorkHoursToReport"),
        ({"HouseWorkHoursToReport": 1.5}, "HouseWorkHoursToReport"),
        ({"VAT": 125}, "VAT"),
        ({"VAT": False}, "VAT"),
        ({"Description": "d" * 256}, "Description"),
        ({"ArticleNumber": "A 100"}, "ArticleNumber"),
        ({"ArticleNumber": "a" * 51}, "ArticleNumber"),
    ],
)
def test_row_values(row: dict[str, Any], field: str) -> None:
    assert list(row_errors(row)) == [("InvoiceRows", 0, field)]


def test_an_amount_discount_may_exceed_100() -> None:
    doc = FortnoxInvoice.model_validate(
        {"CustomerNumber": "1", "InvoiceRows": [{"DiscountType": "AMOUNT", "Discount": 150, "Price": 500}]}
    )
    assert doc.InvoiceRows[0].Discount == 150  # type: ignore[index]


def test_a_custom_vat_rate_without_an_account_is_left_to_fortnox() -> None:
    # EasyVat (error 2004167) needs an AccountNumber with a custom VAT rate; whether EasyVat is on only
    # Fortnox knows, so such a row is valid here.
    assert FortnoxInvoice.model_validate({"CustomerNumber": "1", "InvoiceRows": [{"VAT": 7, "Price": 1}]})


def test_bundle_sub_rows_follow_the_row_rules() -> None:
    errors = errors_of(
        FortnoxOffer,
        {"CustomerNumber": "1", "OfferRows": [{"Bundle": {"SubRows": [{"Quantity": 1}, {"Price": True, "RowId": 4}]}}]},
    )
    assert set(errors) == {
        ("OfferRows", 0, "Bundle", "SubRows", 1, "Price"),
        ("OfferRows", 0, "Bundle", "SubRows", 1, "RowId"),
    }


# ----- articles


def test_article_needs_a_description_only() -> None:
    assert errors_of(FortnoxArticle, {})[("Description",)]["type"] == "missing"
    assert ("Description",) in errors_of(FortnoxArticle, {"Description": "  "})
    assert FortnoxArticle.model_validate({"Description": "Hammare"}).to_wire() == {"Description": "Hammare"}


def test_article_number_is_text_of_fortnox_characters() -> None:
    assert FortnoxArticle.model_validate({"Description": "x", "ArticleNumber": 1001}).ArticleNumber == "1001"
    assert FortnoxArticle.model_validate({"Description": "x", "ArticleNumber": "Å-10/b.2_+"})
    assert (
        "letters, digits"
        in errors_of(FortnoxArticle, {"Description": "x", "ArticleNumber": "A#1"})[("ArticleNumber",)]["msg"]
    )


def test_article_may_keep_a_retired_housework_type() -> None:
    assert FortnoxArticle.model_validate({"Description": "x", "HouseworkType": "COOKING"}).HouseworkType == "COOKING"


# ----- round trips


def test_to_wire_json_round_trips_a_full_document() -> None:
    doc = FortnoxInvoice.model_validate(realistic(FortnoxInvoice, SPEC_INVOICE))
    text = doc.to_wire_json()
    assert FortnoxInvoice.model_validate_json(text) == doc
    assert json.loads(text) == doc.to_wire()


def _decimals(low: int, high: int, places: int) -> st.SearchStrategy[Decimal]:
    return st.decimals(min_value=low, max_value=high, places=places, allow_nan=False, allow_infinity=False)


_texts = st.text(max_size=20)
_row_fields: dict[str, st.SearchStrategy[Any]] = {
    "AccountNumber": st.integers(1000, 9999),
    "ArticleNumber": st.from_regex(r"[A-Za-z0-9_.+/-]{1,50}", fullmatch=True),
    "CostCenter": _texts,
    "Description": st.text(max_size=255),
    "DiscountType": st.sampled_from(["AMOUNT", "PERCENT"]),
    "Discount": _decimals(0, 100, 2),
    "HouseWork": st.booleans(),
    "HouseWorkHoursToReport": st.integers(0, 999),
    "HouseWorkType": st.sampled_from(typing.get_args(HouseWorkTypeValue)),
    "Price": _decimals(-1_000_000_000, 1_000_000_000, 2),
    "Project": _texts,
    "Unit": _texts,
    "VAT": st.sampled_from([0, 6, 12, 25]) | _decimals(0, 100, 2),
    "VATCode": _texts,
}
_quantities = _decimals(-1_000_000, 1_000_000, 3)
_row_strategies: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "InvoiceRows": st.fixed_dictionaries(
        {}, optional={**_row_fields, "DeliveredQuantity": _quantities, "StockPointCode": _texts}
    ),
    "OrderRows": st.fixed_dictionaries(
        {},
        optional={
            **_row_fields,
            "DeliveredQuantity": _quantities,
            "OrderedQuantity": _quantities,
            "StockPointId": _texts,
        },
    ),
    "OfferRows": st.fixed_dictionaries({}, optional={**_row_fields, "Quantity": _quantities}),
}


@given(st.data())
@settings(max_examples=100, deadline=None)
def test_valid_looking_rows_round_trip_through_to_wire_json(data: st.DataObject) -> None:
    model, _, rows_key = data.draw(st.sampled_from(SALES))
    rows = data.draw(st.lists(_row_strategies[rows_key], max_size=4))
    doc = model.model_validate({"CustomerNumber": "0013", rows_key: rows})
    again = model.model_validate_json(doc.to_wire_json())
    assert again == doc
    assert again.to_wire_json() == doc.to_wire_json()


# ----- Fortnox's error body


@pytest.mark.parametrize(
    "body",
    [
        {"ErrorInformation": {"Error": 1, "Message": "Kunde inte hitta kunden.", "Code": 2000433}},
        {"ErrorInformation": {"error": 1, "message": "Kunde inte hitta kunden.", "code": 2000433}},
        {"errorInformation": {"error": 1, "message": "Kunde inte hitta kunden.", "code": "2000433"}},
        '{"ErrorInformation": {"error": 1, "message": "Kunde inte hitta kunden.", "code": 2000433}}',
        b'{"errorInformation": {"Error": "1", "Message": "Kunde inte hitta kunden.", "Code": 2000433}}',
    ],
)
def test_error_body_in_either_casing(body: Any) -> None:
    assert parse_error(body) == FortnoxError(error=1, message="Kunde inte hitta kunden.", code=2000433)


def test_documented_error_code() -> None:
    error = parse_error({"ErrorInformation": {"Error": 1, "Message": "Konto saknas", "Code": 2004167}})
    assert error is not None and error.code == 2004167
    assert error.description == ERROR_CODES[2004167]
    assert "EasyVat" in ERROR_CODES[2004167]
    assert parse_error({"ErrorInformation": {"Message": "x"}}) == FortnoxError(error=None, message="x", code=None)


@pytest.mark.parametrize(
    "body",
    [None, "", "<html>Bad gateway</html>", b"\xff", [], {"Invoice": {}}, {"ErrorInformation": "oops"}, 42],
)
def test_bodies_without_an_error_give_none(body: Any) -> None:
    assert parse_error(body) is None


def test_odd_error_values_do_not_break_parsing() -> None:
    error = parse_error({"ErrorInformation": {"Error": True, "Message": None, "Code": "x"}})
    assert error == FortnoxError(error=None, message="", code=None)
