"""SoftOne document models: the spec examples validate, mandatory fields are enforced, errors name fields."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import CustomerInvoice, DocumentError, DocumentKind, OperationResult, Order, RowType, validate_document
from schemas.softone import InvoiceFilter
from schemas.validation import validate_document_json

INVOICE, ORDER = DocumentKind.CUSTOMER_INVOICE, DocumentKind.ORDER


def errors_of(kind: DocumentKind, doc: Any) -> dict[str, str]:
    result = validate_document(kind, doc)
    assert isinstance(result, DocumentError), f"expected errors, got a valid {type(result).__name__}"
    return {e.field: e.reason for e in result.errors}


def test_spec_invoice_example_validates_and_round_trips(spec_invoice: dict[str, Any]) -> None:
    doc = validate_document(INVOICE, spec_invoice)
    assert isinstance(doc, CustomerInvoice)
    assert doc.invoice_rows[0].customer_row_type is RowType.PRODUCT
    assert doc.invoice_rows[0].unit_price == 11.9
    assert doc.to_wire() == spec_invoice  # nothing added, nothing lost, same names and values


def test_spec_order_example_validates_with_amount_as_price(spec_order: dict[str, Any]) -> None:
    doc = validate_document(ORDER, spec_order)
    assert isinstance(doc, Order)
    assert doc.customer_nr == "013"
    wire = doc.to_wire()
    assert wire["InvoiceRows"][0]["Amount"] == 350
    assert wire["OriginType"] == 6


def test_order_example_with_its_trailing_comma_is_not_json() -> None:
    text = '[{"InvoiceRows": [{"CustomerRowType": 2, "RowNr": 1,}], "CustomerNr": "013"}]'
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


@pytest.mark.parametrize("field", ["CustomerNr", "InvoiceDate", "OriginType", "InvoiceRows"])
def test_mandatory_header_fields(spec_invoice: dict[str, Any], field: str) -> None:
    del spec_invoice[field]
    assert errors_of(INVOICE, spec_invoice) == {field: "is mandatory and missing"}


def test_at_least_one_row(spec_invoice: dict[str, Any]) -> None:
    spec_invoice["InvoiceRows"] = []
    assert "InvoiceRows" in errors_of(INVOICE, spec_invoice)


@pytest.mark.parametrize("field", ["CustomerRowType", "RowNr"])
def test_mandatory_row_fields(spec_invoice: dict[str, Any], field: str) -> None:
    del spec_invoice["InvoiceRows"][0][field]
    assert errors_of(INVOICE, spec_invoice) == {f"InvoiceRows[0].{field}": "is mandatory and missing"}


@pytest.mark.parametrize("field", ["ProductNr", "Quantity"])
def test_product_row_needs_product_and_quantity(spec_invoice: dict[str, Any], field: str) -> None:
    del spec_invoice["InvoiceRows"][0][field]
    errors = errors_of(INVOICE, spec_invoice)
    assert field in errors["InvoiceRows[0]"]


def test_product_row_needs_a_price(spec_invoice: dict[str, Any]) -> None:
    del spec_invoice["InvoiceRows"][0]["UnitPrice"]
    assert "UnitPrice or Amount" in errors_of(INVOICE, spec_invoice)["InvoiceRows[0]"]


def test_text_row_needs_only_text() -> None:
    doc = {
        "CustomerNr": "1",
        "InvoiceDate": "2026-01-01",
        "OriginType": 2,
        "InvoiceRows": [{"CustomerRowType": 3, "RowNr": 1, "Text": "Tack för ditt köp!"}],
    }
    assert isinstance(validate_document(INVOICE, doc), CustomerInvoice)
    doc["InvoiceRows"][0]["Text"] = "  "
    assert "Text" in errors_of(INVOICE, doc)["InvoiceRows[0]"]


def test_row_type_is_an_enum(spec_invoice: dict[str, Any]) -> None:
    spec_invoice["InvoiceRows"][0]["CustomerRowType"] = 5
    assert "InvoiceRows[0].CustomerRowType" in errors_of(INVOICE, spec_invoice)


def test_errors_are_field_level_and_all_reported(spec_invoice: dict[str, Any]) -> None:
    spec_invoice["CustomerNr"] = 3879  # a number would lose leading zeros
    spec_invoice["OriginType"] = True
    spec_invoice["InvoiceDate"] = "2026-13-45"
    spec_invoice["InvoiceRows"][0]["Quantity"] = "NaN"
    spec_invoice["Discont"] = 10
    errors = errors_of(INVOICE, spec_invoice)
    assert set(errors) == {"CustomerNr", "OriginType", "InvoiceDate", "InvoiceRows[0].Quantity", "Discont"}
    assert "leading zeros" in errors["CustomerNr"]
    assert "misspelt" in errors["Discont"]


def test_duplicate_row_numbers_are_refused(spec_invoice: dict[str, Any]) -> None:
    spec_invoice["InvoiceRows"].append(dict(spec_invoice["InvoiceRows"][0]))
    rows = len(spec_invoice["InvoiceRows"])
    assert (
        next(iter(errors_of(INVOICE, spec_invoice).values()))
        == f"InvoiceRows[{rows - 1}] has the same RowNr as InvoiceRows[0]"
    )


def test_ocr_corrected_names_are_the_wire_names(spec_invoice: dict[str, Any]) -> None:
    spec_invoice.update(
        {
            "InvoiceId": 5,
            "CustomerInvoiceHeadId": 6,
            "ActorCompanyId": 7,
            "BatchId": "b",
            "PriceListTypeId": 1,
            "PaymentConditionId": 2,
            "DeliveryConditionId": 3,
            "OCR": "123",
        }
    )
    spec_invoice["InvoiceRows"][0]["CustomerInvoiceRowId"] = 9
    doc = validate_document(INVOICE, spec_invoice)
    assert isinstance(doc, CustomerInvoice)
    assert doc.ocr == "123" and doc.invoice_id == 5 and doc.invoice_rows[0].customer_invoice_row_id == 9
    assert doc.to_wire()["OCR"] == "123"


def test_external_id_integer_becomes_text(spec_invoice: dict[str, Any]) -> None:
    spec_invoice["ExternalId"] = 4711
    doc = validate_document(INVOICE, spec_invoice)
    assert isinstance(doc, CustomerInvoice) and doc.to_wire()["ExternalId"] == "4711"


def test_not_an_object() -> None:
    assert errors_of(INVOICE, ["x"]) == {"": "a document must be a JSON object, got list"}


def test_operation_result_reads_the_spec_response() -> None:
    result = OperationResult.model_validate(
        {
            "Success": True,
            "Keys": [12614169],
            "Strings": ["211"],
            "ObjectsAffected": 1,
            "Dates": None,
            "InfoMessage": "\\n\\n kundfakturor utav 1 har skapats/uppdaterats.",
            "SomethingNew": 1,
        }
    )
    assert result.keys == [12614169] and result.strings == ["211"] and result.objects_affected == 1
    assert OperationResult.model_validate({"Success": False, "Keys": None, "Strings": None}).keys == []


def test_filter_request_wire_names() -> None:
    body = InvoiceFilter(invoice_date_from="2026-02-23", invoice_date_to="2026-03-01", include_voucher=True)
    assert body.to_wire() == {"InvoiceDateFrom": "2026-02-23", "InvoiceDateTo": "2026-03-01", "IncludeVoucher": True}


# ----- property-based: validation never raises, and a valid document always survives the round trip

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8)
json_values = st.recursive(
    json_scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3), max_leaves=8
)
row_strategy = st.fixed_dictionaries(
    {
        "CustomerRowType": st.just(2),
        "RowNr": st.integers(0, 10_000),
        "ProductNr": st.text(min_size=1, max_size=12).filter(str.strip),
        "Quantity": st.decimals(-1000, 1000, places=3),
        "UnitPrice": st.decimals(0, 100_000, places=2),
    }
)


arbitrary_documents = st.dictionaries(
    st.sampled_from(["CustomerNr", "InvoiceDate", "OriginType", "InvoiceRows", "Note", "X"]), json_values, max_size=6
)


@given(arbitrary_documents)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_validation_never_raises_on_arbitrary_json(doc: dict[str, Any]) -> None:
    result = validate_document(INVOICE, doc)
    if isinstance(result, DocumentError):
        assert result.errors and all(isinstance(e.reason, str) and e.reason for e in result.errors)


@given(
    st.lists(row_strategy, min_size=1, max_size=5, unique_by=lambda r: r["RowNr"]),
    st.text(min_size=1, max_size=10).filter(str.strip),
    st.dates(),
)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_valid_documents_round_trip(rows: list[dict[str, Any]], customer: str, day: Any) -> None:
    doc = {
        "CustomerNr": customer.strip(),
        "InvoiceDate": day.isoformat(),
        "OriginType": 6,
        "InvoiceRows": [{**r, "Quantity": float(r["Quantity"]), "UnitPrice": float(r["UnitPrice"])} for r in rows],
    }
    model = validate_document(ORDER, doc)
    assert isinstance(model, Order)
    again = validate_document(ORDER, json.loads(json.dumps(model.to_wire())))
    assert isinstance(again, Order) and again == model


# ----- the intake hot path: validation straight from JSON text must agree with validation of Python objects


def _same_verdict(kind: DocumentKind, doc: Any) -> None:
    text = json.dumps(doc, ensure_ascii=False)
    by_objects, by_text = validate_document(kind, json.loads(text)), validate_document_json(kind, text)
    if isinstance(by_objects, DocumentError):
        assert isinstance(by_text, DocumentError)
        assert {e.field for e in by_text.errors} == {e.field for e in by_objects.errors}
    else:
        assert not isinstance(by_text, DocumentError)
        assert by_text.to_wire_json() == by_objects.to_wire_json()  # type: ignore[attr-defined]
        assert json.loads(by_text.to_wire_json()) == by_objects.to_wire()  # type: ignore[attr-defined]


@given(arbitrary_documents)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_validation_from_json_text_agrees_on_arbitrary_json(doc: dict[str, Any]) -> None:
    _same_verdict(INVOICE, doc)


@given(
    st.lists(row_strategy, min_size=1, max_size=5, unique_by=lambda r: r["RowNr"]),
    st.text(min_size=1, max_size=10).filter(str.strip),
    st.dates(),
)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_validation_from_json_text_agrees_on_valid_documents(
    rows: list[dict[str, Any]], customer: str, day: Any
) -> None:
    doc = {
        "CustomerNr": customer.strip(),
        "InvoiceDate": day.isoformat(),
        "OriginType": 2,
        "InvoiceRows": [{**r, "Quantity": str(r["Quantity"]), "UnitPrice": float(r["UnitPrice"])} for r in rows],
    }
    _same_verdict(INVOICE, doc)


@pytest.mark.parametrize("text", ["[]", "7", '"x"', "{", "", '{"CustomerNr": true}'])
def test_validation_from_json_text_of_non_objects_and_broken_json(text: str) -> None:
    result = validate_document_json(INVOICE, text)
    assert isinstance(result, DocumentError) and result.summary()
    if text in ("[]", "7", '"x"'):
        assert result.summary() == validate_document(INVOICE, json.loads(text)).summary()  # type: ignore[union-attr]
    if text in ("{", ""):
        assert result.summary().startswith("not valid JSON")


def test_pos_example_file_agrees_line_by_line() -> None:
    from pathlib import Path

    for line in (Path(__file__).parents[2] / "examples" / "pos-end-of-day.jsonl").read_text().splitlines()[:100]:
        _same_verdict(INVOICE, json.loads(line))
