"""Unit tests of the sandbox's pure parts: document rules, money arithmetic, config, fault rules."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from sandbox.amounts import invoice_totals, row_amounts
from sandbox.config import SPEC_CUSTOMERS, SandboxConfig, default_customers, load_config
from sandbox.faults import FaultStore, parse_rule
from sandbox.rules import ERROR_UNKNOWN_CUSTOMER, ERROR_VALIDATION, validate_document

CUSTOMERS = default_customers()


def doc(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "CustomerNr": "3879",
        "InvoiceDate": "2026-02-18",
        "OriginType": 6,
        "InvoiceRows": [{"CustomerRowType": 2, "RowNr": 1, "ProductNr": "A11", "Quantity": 1, "UnitPrice": 10}],
    }
    base.update(overrides)
    return base


def row(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"CustomerRowType": 2, "RowNr": 1, "ProductNr": "A11", "Quantity": 1, "Amount": 10}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def message(document: dict[str, Any]) -> str:
    error = validate_document(document, CUSTOMERS)
    assert error is not None
    assert error.number == ERROR_VALIDATION
    return error.message


# -- rules ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "document",
    [
        doc(),
        doc(OriginType=2),  # invoice example
        doc(InvoiceDate="2026-02-18T10:43:00"),
        doc(InvoiceDate="2026-02-18T10:43:00.1234567+01:00"),
        doc(
            InvoiceRows=[
                row(),
                row(RowNr=2, CustomerRowType=3, ProductNr=None, Quantity=None, Amount=None, Text="fritext"),
            ]
        ),
        doc(InvoiceRows=[row(Discount=-10, VatRate=12, Quantity=-1)]),  # credit row with surcharge
        doc(DueDate="2026-03-20", ExternalId="pos-1", Currency="SEK", UnknownField={"x": 1}),
        doc(CustomerNr="1500"),  # a POS store customer
    ],
)
def test_valid_documents(document: dict[str, Any]) -> None:
    assert validate_document(document, CUSTOMERS) is None


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (doc(CustomerNr=""), "CustomerNr har ett ogiltigt värde"),
        (doc(CustomerNr=3879), "CustomerNr har ett ogiltigt värde (3879)"),
        (doc(InvoiceDate="18/02/2026"), "InvoiceDate har ett ogiltigt värde"),
        (doc(InvoiceDate="2026-02-30"), "InvoiceDate har ett ogiltigt värde"),
        (doc(OriginType=True), "OriginType har ett ogiltigt värde"),
        (doc(OriginType=6.5), "OriginType har ett ogiltigt värde"),
        (doc(OriginType=0), "OriginType har ett ogiltigt värde"),
        (doc(InvoiceRows=[]), "InvoiceRows har ett ogiltigt värde ([])"),
        (doc(InvoiceRows={"RowNr": 1}), "InvoiceRows har ett ogiltigt värde"),
        (doc(InvoiceRows=["x"]), "InvoiceRows[0] har ett ogiltigt värde"),
        (doc(InvoiceRows=[row(CustomerRowType=None)]), "InvoiceRows[0].CustomerRowType saknas (obligatoriskt fält)."),
        (doc(InvoiceRows=[row(CustomerRowType=1)]), "InvoiceRows[0].CustomerRowType har ett ogiltigt värde (1)"),
        (doc(InvoiceRows=[row(RowNr=None)]), "InvoiceRows[0].RowNr saknas (obligatoriskt fält)."),
        (doc(InvoiceRows=[row(RowNr="1")]), "InvoiceRows[0].RowNr har ett ogiltigt värde"),
        (doc(InvoiceRows=[row(), row()]), "InvoiceRows[1].RowNr 1 förekommer flera gånger"),
        (doc(InvoiceRows=[row(ProductNr=None)]), "InvoiceRows[0].ProductNr saknas (obligatoriskt fält)."),
        (doc(InvoiceRows=[row(ProductNr=" ")]), "InvoiceRows[0].ProductNr har ett ogiltigt värde"),
        (doc(InvoiceRows=[row(Quantity=None)]), "InvoiceRows[0].Quantity saknas (obligatoriskt fält)."),
        (doc(InvoiceRows=[row(Quantity=True)]), "InvoiceRows[0].Quantity har ett ogiltigt värde (true)"),
        (doc(InvoiceRows=[row(Quantity="2")]), "InvoiceRows[0].Quantity har ett ogiltigt värde"),
        (doc(InvoiceRows=[row(Quantity=float("inf"))]), "InvoiceRows[0].Quantity har ett ogiltigt värde"),
        (doc(InvoiceRows=[row(Amount=None)]), "InvoiceRows[0].UnitPrice/InvoiceRows[0].Amount saknas"),
        (doc(InvoiceRows=[row(Discount="10%")]), "InvoiceRows[0].Discount har ett ogiltigt värde"),
        (doc(InvoiceRows=[row(Created="igår")]), "InvoiceRows[0].Created har ett ogiltigt värde"),
        (doc(InvoiceRows=[row(CustomerRowType=3, Text=None)]), "InvoiceRows[0].Text saknas (obligatoriskt fält)."),
        (doc(DueDate="snart"), "DueDate har ett ogiltigt värde"),
        (doc(BillingType="1"), "BillingType har ett ogiltigt värde"),
        (doc(ExternalId=42), "ExternalId har ett ogiltigt värde"),
    ],
)
def test_invalid_documents_name_the_field(document: dict[str, Any], expected: str) -> None:
    assert message(document).startswith(expected)


def test_null_mandatory_field_counts_as_missing() -> None:
    assert message(doc(CustomerNr=None)) == "CustomerNr saknas (obligatoriskt fält)."


def test_unknown_customer_is_a_business_error() -> None:
    error = validate_document(doc(CustomerNr="UNKNOWN-3"), CUSTOMERS)
    assert error is not None and error.number == ERROR_UNKNOWN_CUSTOMER
    assert error.message == "Kund med kundnummer 'UNKNOWN-3' hittades inte."


def test_long_values_are_shortened_in_messages() -> None:
    assert len(message(doc(CustomerNr=["x" * 500]))) < 150


# -- amounts ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fields", "sum_amount", "vat"),
    [
        ({"Quantity": 1, "UnitPrice": 234.00, "Discount": -10}, "257.40", "64.35"),  # UI screenshot row
        ({"Quantity": 1, "UnitPrice": 84.96, "Discount": 10}, "76.46", "19.12"),  # Filter example row
        ({"Quantity": 1, "UnitPrice": 310.40}, "310.40", "77.60"),  # Filter example row
        ({"Quantity": 6.0, "UnitPrice": 11.9}, "71.40", "17.85"),  # invoice example
        ({"Quantity": 3.0, "Amount": 350}, "1050.00", "262.50"),  # order example
        ({"Quantity": 2, "UnitPrice": 10, "Amount": 999}, "20.00", "5.00"),  # UnitPrice wins
        ({"Quantity": 25, "UnitPrice": 28.38, "VatRate": 12}, "709.50", "85.14"),
        ({"Quantity": 44.5, "UnitPrice": 590.00, "Discount": 0}, "26255.00", "6563.75"),
        ({"Text": "fritext"}, "0.00", "0.00"),
    ],
)
def test_row_amounts(fields: dict[str, Any], sum_amount: str, vat: str) -> None:
    amounts = row_amounts(fields)
    assert (amounts.sum_amount, amounts.vat_amount) == (Decimal(sum_amount), Decimal(vat))


def test_invoice_total_includes_vat_and_sek_is_rounded_to_kronor() -> None:
    # The Filter example's three rows: 502.06 + VAT 125.52 = 627.58 -> TotalAmount 628.00.
    rows = [
        row_amounts(r)
        for r in (
            {"Quantity": 1, "UnitPrice": 310.40},
            {"Quantity": 1, "UnitPrice": 84.96, "Discount": 10},
            {"Quantity": 1, "UnitPrice": 115.20},
        )
    ]
    assert invoice_totals(rows, "SEK") == (Decimal("628.00"), Decimal("125.52"))
    assert invoice_totals(rows, "EUR") == (Decimal("627.58"), Decimal("125.52"))


# -- config -----------------------------------------------------------------------------------
def test_default_config() -> None:
    config = SandboxConfig()
    (company,) = config.companies.values()
    assert (company.company_api_key, company.company_id, company.name) == ("demo-company-key", 1592, "Demo AB")
    assert company.connect_api_keys == {"demo-connect-key"}
    assert config.token_ttl_seconds == 3600 and config.latency_ms == 0
    assert set(SPEC_CUSTOMERS) <= set(config.customers)
    assert all(nr in config.customers for nr in ("1000", "1999", "013", "11", "10158", "99999", "0"))
    assert not any(nr in config.customers for nr in ("UNKNOWN-3", "", " 12", "12a", "-1", "1.5", "١٢"))
    assert config.customers["4185"] == "Sebastiangren AB" and config.customers["99999"] == "Kund 99999"


def test_load_config_file(tmp_path: Path) -> None:
    path = tmp_path / "sandbox.json"
    path.write_text(
        json.dumps(
            {
                "companies": [
                    {"company_api_key": "ck", "connect_api_keys": ["k1", "k2"], "company_id": 1, "name": "Ett AB"}
                ],
                "customers": {"3879": "Rasmus AB"},
                "token_ttl_seconds": 60,
            }
        )
    )
    config = load_config(path)
    assert config.companies["ck"].connect_api_keys == {"k1", "k2"}
    assert config.customers == {"3879": "Rasmus AB"} and config.token_ttl_seconds == 60


@pytest.mark.parametrize(
    "data",
    [
        {"companies": []},
        {"companies": [{"company_api_key": "ck", "connect_api_keys": [], "company_id": 1, "name": "x"}]},
        {"companies": [{"company_api_key": "ck", "connect_api_keys": ["k"], "company_id": "1", "name": "x"}]},
        {"customers": ["3879"]},
        {"latency_ms": -5},
    ],
)
def test_load_config_rejects_bad_files(tmp_path: Path, data: dict[str, Any]) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="invalid sandbox config"):
        load_config(path)


# -- fault rules ------------------------------------------------------------------------------
def test_fault_rule_defaults() -> None:
    assert parse_rule({"kind": "status"}).as_json() == {
        "path": "*",
        "kind": "status",
        "status": 503,
        "times": 1,
        "delay_ms": 0,
        "retry_after": None,
        "body": None,
    }
    assert parse_rule({"kind": "status_after_commit"}).status == 500


def test_fault_store_matches_path_and_counts_down() -> None:
    store = FaultStore()
    store.add([{"path": "/a", "kind": "status", "times": 2}, {"path": "*", "kind": "drop"}])
    assert store.take("/b") is not None and store.take("/b") is None  # "*" used up
    first, second = store.take("/a"), store.take("/a")
    assert first is not None and second is not None and first.kind == "status"
    assert store.take("/a") is None and store.rules == []


def test_fault_store_add_is_all_or_nothing() -> None:
    store = FaultStore()
    with pytest.raises(ValueError):
        store.add([{"kind": "status"}, {"kind": "nope"}])
    assert store.rules == []
