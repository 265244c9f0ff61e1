"""The wire validator (schemas/wire.py): never says yes where the model says no, and encodes what it accepts
exactly as the model does; whatever it refuses, the model decides."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from schemas import CustomerInvoice, DocumentError, DocumentKind, Order, validate_document
from schemas.softone import INVOICE_WIRE, ORDER_WIRE, InvoiceRow
from schemas.validation import validate_document_json
from schemas.wire import WireDocument, WireValidator

INVOICE, ORDER = DocumentKind.CUSTOMER_INVOICE, DocumentKind.ORDER
WIRES = [(CustomerInvoice, INVOICE_WIRE), (Order, ORDER_WIRE)]


def agrees(model: type[BaseModel], wire: WireValidator, doc: Any) -> bool:
    """True if the wire validator accepted `doc` (and then the model did too, with the same JSON text)."""
    text = json.dumps(doc, ensure_ascii=False)
    try:
        fast = wire.validate_json(text)
    except ValidationError:
        return False
    slow = model.model_validate_json(text, by_alias=True)  # raises if the wire validator said yes wrongly
    assert fast == slow.to_wire_json()  # type: ignore[attr-defined]
    return True


@pytest.mark.parametrize(("model", "wire"), WIRES)
def test_spec_examples_take_the_fast_path(
    model: type[BaseModel], wire: WireValidator, spec_invoice: dict[str, Any], spec_order: dict[str, Any]
) -> None:
    assert agrees(model, wire, spec_invoice)
    assert agrees(model, wire, spec_order)


def test_intake_gets_the_wire_text_of_a_valid_document(spec_invoice: dict[str, Any]) -> None:
    result = validate_document_json(INVOICE, json.dumps(spec_invoice))
    assert isinstance(result, WireDocument)
    assert json.loads(result.to_wire_json()) == spec_invoice


def test_what_only_the_model_accepts_is_still_accepted(spec_invoice: dict[str, Any]) -> None:
    # The model also takes Python names (validate_by_name); the wire shape knows only the wire names.
    doc = {"customer_nr": "013", "invoice_date": "2026-01-01", "origin_type": 2,
           "invoice_rows": [{"customer_row_type": 3, "row_nr": 1, "text": "hej"}]}  # fmt: skip
    assert not agrees(CustomerInvoice, INVOICE_WIRE, doc)
    result = validate_document_json(INVOICE, json.dumps(doc))
    assert isinstance(result, CustomerInvoice) and result.customer_nr == "013"


@pytest.mark.parametrize(
    ("field", "value", "sent"),
    [("OriginType", "6", 6), ("OriginType", 6.0, 6), ("Rows.0.RowNr", "1", 1), ("Rows.0.CustomerRowType", "2", 2)],
)
def test_lax_integers_are_left_to_the_model_and_sent_as_integers(
    spec_invoice: dict[str, Any], field: str, value: Any, sent: int
) -> None:
    # The wire shape checks integers and row types in pydantic-core, strictly (no Python call per value): the
    # laxer forms the model also takes go the model's way, and come out the same.
    in_row, name = field.startswith("Rows.0."), field.removeprefix("Rows.0.")
    target = spec_invoice["InvoiceRows"][0] if in_row else spec_invoice
    target[name] = value
    assert not agrees(CustomerInvoice, INVOICE_WIRE, spec_invoice)
    result = validate_document_json(INVOICE, json.dumps(spec_invoice))
    assert isinstance(result, CustomerInvoice)
    wire = json.loads(result.to_wire_json())
    assert (wire["InvoiceRows"][0] if in_row else wire)[name] == sent
    target[name] = sent
    assert agrees(CustomerInvoice, INVOICE_WIRE, spec_invoice)


def test_nulls_and_blanks_encode_as_the_model_encodes_them(spec_invoice: dict[str, Any]) -> None:
    spec_invoice.update({"Note": None, "CustomerNr": "  013 ", "Currency": None})
    spec_invoice["InvoiceRows"][0].update({"Amount": None, "Quantity": "2", "Created": "2026-01-01T10:00:00Z"})
    assert agrees(CustomerInvoice, INVOICE_WIRE, spec_invoice)


BROKEN: list[tuple[str, Any]] = [
    ("CustomerNr", 13),
    ("CustomerNr", "   "),
    ("OriginType", True),
    ("OriginType", 6.5),
    ("InvoiceDate", "yesterday"),
    ("InvoiceRows", []),
    ("Discont", 5),
    ("Currency", "SEKR"),
    ("ExternalId", ""),
    ("Rows.0.Quantity", True),
    ("Rows.0.UnitPrice", "12 st"),
    ("Rows.0.UnitPrice", None),
    ("Rows.0.ProductNr", " "),
    ("Rows.0.RowNr", -1),
    ("Rows.0.CustomerRowType", 4),
    ("Rows.0.CustomerRowType", 3),  # a text row, but the spec row's Text is there: fine, see below
    ("Rows.0.Discont", 1),
]


@pytest.mark.parametrize(("field", "value"), BROKEN)
def test_every_refusal_is_the_models(spec_invoice: dict[str, Any], field: str, value: Any) -> None:
    target = spec_invoice["InvoiceRows"][0] if field.startswith("Rows.0.") else spec_invoice
    target[field.removeprefix("Rows.0.")] = value
    if field == "Rows.0.UnitPrice" and value is None:
        target.pop("Amount", None)
    by_model = validate_document(INVOICE, spec_invoice)
    accepted = agrees(CustomerInvoice, INVOICE_WIRE, spec_invoice)
    assert accepted == (not isinstance(by_model, DocumentError))
    by_text = validate_document_json(INVOICE, json.dumps(spec_invoice))
    if isinstance(by_model, DocumentError):
        assert isinstance(by_text, DocumentError) and by_text.errors == by_model.errors


def test_repeated_row_numbers_and_rows_without_what_their_type_needs(spec_invoice: dict[str, Any]) -> None:
    row = spec_invoice["InvoiceRows"][0]
    text_rows = [{"CustomerRowType": 3, "RowNr": 1}], [{"CustomerRowType": 3, "RowNr": 1, "Text": " "}]
    for rows in ([row, dict(row)], *text_rows):
        spec_invoice["InvoiceRows"] = rows
        assert not agrees(CustomerInvoice, INVOICE_WIRE, spec_invoice)
        assert isinstance(validate_document_json(INVOICE, json.dumps(spec_invoice)), DocumentError)


# ----- property-based: random fields with random values on a valid document

ROW_KEYS = [f.alias or n for n, f in InvoiceRow.model_fields.items()]
HEAD_KEYS = [f.alias or n for n, f in CustomerInvoice.model_fields.items()]
scalars = (
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True) | st.text(max_size=6)
    | st.sampled_from(["2026-01-01", "2026-01-01T10:00:00", " 2 ", "1e3", "SEK", "0", "-1", "3", "2"])
)  # fmt: skip
values = st.recursive(scalars, lambda c: st.lists(c, max_size=2) | st.dictionaries(st.text(max_size=4), c, max_size=2),
                      max_leaves=4)  # fmt: skip


@given(
    st.dictionaries(st.sampled_from([*HEAD_KEYS, "X"]), values, max_size=4),
    st.lists(st.dictionaries(st.sampled_from([*ROW_KEYS, "X"]), values, max_size=4), min_size=1, max_size=3),
    st.sampled_from(WIRES),
)
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_the_wire_validator_never_accepts_more_than_the_model(
    head: dict[str, Any], rows: list[dict[str, Any]], pair: tuple[type[BaseModel], WireValidator]
) -> None:
    base_row = {"CustomerRowType": 2, "RowNr": 1, "ProductNr": "A1", "Quantity": 1, "UnitPrice": 9.5, "Text": "t"}
    doc = {"CustomerNr": "1", "InvoiceDate": "2026-01-01", "OriginType": 2,
           "InvoiceRows": [{**base_row, "RowNr": i, **r} for i, r in enumerate(rows)], **head}  # fmt: skip
    agrees(*pair, doc)


# ----- what cannot have a wire validator is refused when it is made


def test_a_model_validator_the_check_does_not_cover_is_refused() -> None:
    class Checked(BaseModel):
        model_config = ConfigDict(extra="forbid")
        a: int | None = None

        @model_validator(mode="after")
        def _rule(self) -> Checked:
            return self

    with pytest.raises(TypeError, match="_rule"):
        WireValidator(Checked, lambda d: d, set())
    assert WireValidator(Checked, lambda d: d, {"_rule"}).validate_json('{"a": 1}') == '{"a":1}'


def test_defaults_other_than_none_and_extra_fields_are_refused() -> None:
    class Defaulted(BaseModel):
        model_config = ConfigDict(extra="forbid")
        a: int = 5

    class Open(BaseModel):
        a: int | None = None

    with pytest.raises(TypeError, match="default"):
        WireValidator(Defaulted, lambda d: d, set())
    with pytest.raises(TypeError, match="extra"):
        WireValidator(Open, lambda d: d, set())
