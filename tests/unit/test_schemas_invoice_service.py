"""Invoice-service models: the spec examples validate, fields are typed, and rows, vats and totals must agree."""

from __future__ import annotations

import copy
import json
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas.invoice_service import CreatedServiceInvoice, DebtorType, DistributionCode, ServiceInvoice
from tests.conftest import example_json

# The example request body of invoice-service-create-invoice.txt, as printed there.
SPEC_REQUEST: dict[str, Any] = example_json("spec-service-invoice.json")

# The same body as the spec's curl line sends it (floats where the printed body has integers).
SPEC_CURL_BODY = (
    '{"articleRows": [{"description": "This is a article", "discountType": "PERCENTAGE", "price": 100, "quantity": '
    '"2,00", "total": 200.0, "totalDiscount": 0.0, "totalExclVat": 200, "totalVat": 50, "unit": "pcs", '
    '"vatPercentage": 25}], "currency": {"baseCurrency": "SEK", "exchangeRate": 1.0, "invoiceCurrency": "SEK"}, '
    '"dates": {"expireDate": "2021-06-01", "invoiceDate": "2021-05-17"}, "debtor": {"cellPhone": "+46", '
    '"customerNumber": "123", "identificationNumber": "1234567890", "invoiceAddress": {"address": "Address", '
    '"city": "City", "countryCode": "SE", "name": "Name", "zip": "12345"}, "name": "Name", "type": "COMPANY"}, '
    '"distributionCode": "LETTER", "invoiceNumber": "123456", "productCode": "INVOICE_SERVICE", "totals": '
    '{"taxReduction": 0.0, "total": 250.0, "totalExclVat": 200, "totalRoundOff": 0.0, "totalToPay": 250.0, '
    '"totalVat": 50.0}, "type": "INVOICE", "vats": [{"percentage": 25, "totalTaxable": 200, "totalVat": 50}]}'
)

# The spec's example response body.
SPEC_RESPONSE = """{
"activatedById": null, "activatedDate": null,
"articleRows": [{"accountNumber": null, "articleNumber": null, "description": "This is a article",
  "discountType": "PERCENTAGE", "id": "IR.321035638", "price": 100, "quantity": "2,00", "total": 200,
  "totalDiscount": 0, "totalExclVat": 200, "totalVat": 50, "unit": "pcs", "vatPercentage": 25}],
"balances": {"capital": 0, "capitalFinanced": 0, "capitalFinancedLocale": 0, "capitalLocale": 0, "capitalService": 0,
  "capitalServiceLocale": 0, "interest": 0, "interestLocale": 0, "reminder": 0, "reminderLocale": 0, "total": 0,
  "totalLocale": 0},
"clientId": "C.100123", "clientName": "Quiddly Test", "createdBy": "[email protected]",
"createdDate": "2022-04-08T11:21:12",
"currency": {"baseCurrency": "SEK", "exchangeRate": 1, "invoiceCurrency": "SEK"},
"dates": {"deliveryDate": null, "expireDate": "2021-06-01", "invoiceDate": "2021-05-17", "latestFinancialDate": null,
  "ledgerPerformedDate": null, "pausedUntilDate": null},
"debitInvoiceNumber": null,
"debtor": {"FMI": null, "GLN": null, "cellPhone": "+46", "customerNumber": "123", "deliveryAddress": null,
  "distributionChannel": null, "distributionChannelOverride": null, "email": null, "id": null,
  "identificationNumber": null, "invoiceAddress": {"address": "Address", "address2": null, "address3": null,
  "city": "City", "countryCode": "SE", "name": "Name", "zip": "12345"}, "name": "Name", "phone": null,
  "type": "COMPANY", "vatNumber": null},
"distributionCode": "LETTER",
"document": {"attachment": null, "connectedFileCount": 0, "invoice": null,
  "invoicePreview": "57b7f0d607f1403fa3e23643342f1b58", "invoiceWithAttachments": null},
"documentTemplateCode": "STANDARD_MARKETING",
"fees": {"administration": 0, "administrationVatPercentage": null, "freight": 0, "freightVatPercentage": null},
"id": "I.111225694", "invoiceNumber": "123457", "isRecourse": false, "ourOrderNumber": null, "ourReference": null,
"partPayment": {"isPartPayment": false, "partPaymentPlanId": null},
"paymentReference": null, "productCode": "REMINDER_SERVICE", "refund": false, "remark": null,
"reminderProfileCode": null, "reverseCharge": false, "serviceProviderCode": null,
"statuses": {"ledger": null, "ledgerSubType": null, "main": "CREATED"},
"terms": {"delivery": null, "payment": null},
"totals": {"taxReduction": 0, "total": 250, "totalExclVat": 200, "totalRoundOff": 0, "totalToPay": 250,
  "totalToPayBase": 250, "totalVat": 50},
"type": "INVOICE", "useRecourse": true,
"vats": [{"percentage": 25, "totalTaxable": 200, "totalVat": 50}],
"yourContactPerson": null, "yourOrderNumber": null, "yourReference": null
}"""

CENT = Decimal("0.01")
Loc = tuple[str | int, ...]


@pytest.fixture
def doc() -> dict[str, Any]:
    return copy.deepcopy(SPEC_REQUEST)


def errors_of(raw: dict[str, Any]) -> dict[Loc, str]:
    """loc -> message of every error, or a failure if `raw` validates."""
    with pytest.raises(ValidationError) as caught:
        ServiceInvoice.model_validate(raw, by_alias=True)
    return {tuple(err["loc"]): err["msg"] for err in caught.value.errors(include_url=False)}


def two_rate_invoice() -> dict[str, Any]:
    """The spec example plus a 12% row: 3 x 33.33 = 99.99, VAT 12.00 (11.9988 rounded)."""
    raw = copy.deepcopy(SPEC_REQUEST)
    raw["articleRows"].append(
        {"price": 33.33, "quantity": 3, "totalExclVat": 99.99, "totalVat": 12.0, "total": 99.99, "vatPercentage": 12}
    )
    raw["vats"].append({"percentage": 12, "totalTaxable": 99.99, "totalVat": 12.0})
    raw["totals"].update(totalExclVat=299.99, totalVat=62.0, total=361.99, totalToPay=361.99)
    return raw


# --- the spec's examples -----------------------------------------------------------------------------------


def test_spec_example_request_validates_and_goes_back_unchanged(doc: dict[str, Any]) -> None:
    invoice = ServiceInvoice.model_validate(doc, by_alias=True)
    row = invoice.articleRows[0]
    assert row.quantity == Decimal(2) and row.total == row.totalExclVat == Decimal(200)
    assert invoice.debtor.type is DebtorType.COMPANY
    assert invoice.to_wire() == SPEC_REQUEST  # nothing added, nothing lost; quantity goes out as "2,00"


def test_spec_curl_body_validates_from_json() -> None:
    invoice = ServiceInvoice.model_validate_json(SPEC_CURL_BODY, by_alias=True)
    assert invoice.to_wire() == SPEC_REQUEST


def test_spec_example_response_parses() -> None:
    created = CreatedServiceInvoice.model_validate_json(SPEC_RESPONSE)
    assert (created.id, created.invoiceNumber, created.status) == ("I.111225694", "123457", "CREATED")


def test_response_without_statuses_and_response_without_id() -> None:
    created = CreatedServiceInvoice.model_validate({"id": "I.1", "invoiceNumber": "9", "anything": [1]})
    assert created.statuses is None and created.status is None
    with pytest.raises(ValidationError) as caught:
        CreatedServiceInvoice.model_validate({"invoiceNumber": "9"})
    assert [err["loc"] for err in caught.value.errors()] == [("id",)]


def test_external_id_field_is_the_invoice_number(doc: dict[str, Any]) -> None:
    assert ServiceInvoice.external_id_field == "invoiceNumber"
    doc["invoiceNumber"] = 123456  # an integer is unambiguous as text
    assert ServiceInvoice.model_validate(doc).to_wire()["invoiceNumber"] == "123456"


# --- fields ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "wire"),
    [
        (2, "2,00"),
        (2.0, "2,00"),
        ("2", "2,00"),
        ("2,00", "2,00"),
        ("2.00", "2,00"),
        (" 2,00 ", "2,00"),
        ("2,0", "2,00"),
    ],
)
def test_quantity_as_number_or_text_with_comma_or_point(doc: dict[str, Any], given: Any, wire: str) -> None:
    doc["articleRows"][0]["quantity"] = given
    invoice = ServiceInvoice.model_validate(doc)
    assert invoice.articleRows[0].quantity == Decimal(2)
    assert invoice.to_wire()["articleRows"][0]["quantity"] == wire


def test_fractional_quantities_keep_their_decimals(doc: dict[str, Any]) -> None:
    row = {"price": 10, "quantity": "1,125", "totalExclVat": 11.25, "totalVat": 2.81, "vatPercentage": 25}
    doc["articleRows"] = [row, dict(row, quantity=1.5, totalExclVat=15, totalVat=3.75)]
    doc["vats"] = [{"percentage": 25, "totalTaxable": 26.25, "totalVat": 6.56}]
    doc["totals"] = {"total": 32.81, "totalExclVat": 26.25, "totalVat": 6.56}
    assert [r["quantity"] for r in ServiceInvoice.model_validate(doc).to_wire()["articleRows"]] == ["1,125", "1,50"]


@pytest.mark.parametrize("bad", ["2 000,00", "1.000,50", "2,", ",5", "two", "", True, None, "NaN", float("inf")])
def test_quantity_refusals(doc: dict[str, Any], bad: Any) -> None:
    doc["articleRows"][0]["quantity"] = bad
    assert ("articleRows", 0, "quantity") in errors_of(doc)


def test_everything_the_table_lists_round_trips_through_json(doc: dict[str, Any]) -> None:
    doc.update(
        clientId="C.100123",
        paymentReference="1234567",
        debitInvoiceNumber="100",
        documentTemplateCode="STANDARD",
        useRecourse=True,
        activatedDate="2022-04-08T11:21:12",
        activatedById="U.1",
        ourReference="Anna",
        yourReference="Bo",
        yourContactPerson="Cecilia",
        ourOrderNumber="O-1",
        yourOrderNumber="PO-7",
        remark="Tack!",
        terms={"payment": "30 dagar", "delivery": "Fritt vårt lager"},
        fees={"administration": 29, "administrationVatPercentage": 25, "freight": 49.5, "freightVatPercentage": 25},
        reverseCharge=False,
        refund=False,
        serviceProviderCode="SP",
        distributionCode="NULL",
    )
    doc["dates"]["deliveryDate"] = "2021-05-10"
    doc["debtor"].update(
        GLN="4006381333931",
        FMI="fmi-1",
        email="ekonomi@example.se",
        phone="08-123 45 67",
        vatNumber="SE556677889901",
        distributionChannelOverride=True,
        distributionChannel="EMAIL",
        deliveryAddress={"name": "Lager", "address": "Väg 1", "zip": "SW1A 1AA", "city": "London", "countryCode": "GB"},
    )
    doc["debtor"]["invoiceAddress"].update(address2="c/o X", address3="Box 1", zip="123 45")
    doc["articleRows"][0].update(articleNumber="A-1", accountNumber="3001")
    invoice = ServiceInvoice.model_validate(doc)
    text = invoice.to_wire_json()
    assert ServiceInvoice.model_validate_json(text) == invoice
    assert json.loads(text) == invoice.to_wire()
    wire_debtor = invoice.to_wire()["debtor"]
    assert (wire_debtor["GLN"], wire_debtor["FMI"]) == ("4006381333931", "fmi-1")  # wire names, not gln/fmi
    assert invoice.distributionCode is DistributionCode.NULL  # the text "NULL" is a value, not an absent field


@pytest.mark.parametrize(
    "loc",
    [
        ("invoiceNumber",),
        ("dates",),
        ("debtor",),
        ("articleRows",),
        ("vats",),
        ("totals",),
        ("dates", "invoiceDate"),
        ("dates", "expireDate"),
        ("debtor", "customerNumber"),
        ("debtor", "name"),
        ("debtor", "type"),
        ("debtor", "invoiceAddress"),
        ("debtor", "invoiceAddress", "name"),
        ("debtor", "invoiceAddress", "address"),
        ("debtor", "invoiceAddress", "zip"),
        ("debtor", "invoiceAddress", "city"),
        ("totals", "total"),
        ("totals", "totalExclVat"),
        ("totals", "totalVat"),
        ("articleRows", 0, "price"),
        ("articleRows", 0, "quantity"),
        ("articleRows", 0, "vatPercentage"),
        ("articleRows", 0, "totalExclVat"),
        ("articleRows", 0, "totalVat"),
    ],
)
def test_required_fields(doc: dict[str, Any], loc: Loc) -> None:
    parent: Any = doc
    for part in loc[:-1]:
        parent = parent[part]
    del parent[loc[-1]]
    with pytest.raises(ValidationError) as caught:
        ServiceInvoice.model_validate(doc)
    assert (loc, "missing") in [(tuple(err["loc"]), err["type"]) for err in caught.value.errors()]


def test_optional_fields_may_be_left_out(doc: dict[str, Any]) -> None:
    for field in ("currency", "distributionCode", "productCode", "type"):
        del doc[field]
    for field in ("identificationNumber", "cellPhone"):
        del doc["debtor"][field]
    del doc["debtor"]["invoiceAddress"]["countryCode"]
    for field in ("description", "discountType", "total", "totalDiscount", "unit"):
        del doc["articleRows"][0][field]
    for field in ("taxReduction", "totalRoundOff", "totalToPay"):
        del doc["totals"][field]
    assert isinstance(ServiceInvoice.model_validate(doc), ServiceInvoice)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("productCode",), "INVOICE"),
        (("distributionCode",), "SMS"),
        (("debtor", "type"), "company"),
        (("articleRows", 0, "discountType"), "PERCENT"),
        (("debtor", "invoiceAddress", "countryCode"), "se"),
        (("debtor", "invoiceAddress", "countryCode"), "SWE"),
        (("currency", "invoiceCurrency"), "kr"),
        (("currency", "exchangeRate"), 0),
        (("debtor", "email"), "ekonomi.example.se"),
        (("debtor", "GLN"), "4006381333932"),  # wrong check digit
        (("debtor", "GLN"), "400638133393"),
        (("debtor", "customerNumber"), 123),
        (("debtor", "invoiceAddress", "zip"), 12345),
        (("debtor", "invoiceAddress", "zip"), "1234"),  # a Swedish postcode has five digits
        (("dates", "invoiceDate"), "2021-5-17"),
        (("dates", "invoiceDate"), "17.05.2021"),
        (("dates", "invoiceDate"), "2021-02-30"),
        (("dates", "invoiceDate"), "2021-05-17T00:00:00"),
        (("dates", "invoiceDate"), 1621209600),
        (("articleRows", 0, "price"), True),
        (("articleRows", 0, "vatPercentage"), 20),
        (("articleRows", 0, "vatPercentage"), 25.5),
        (("vats", 0, "percentage"), 7),
        (("fees", "administrationVatPercentage"), 10),
        (("articleRows", 0, "discont"), 5),
        (("debtor", "gln_number"), "4006381333931"),
    ],
)
def test_field_refusals_name_the_field(doc: dict[str, Any], path: Loc, value: Any) -> None:
    parent: Any = doc
    for part in path[:-1]:
        parent = parent.setdefault(part, {}) if isinstance(part, str) else parent[part]
    parent[path[-1]] = value
    assert path in errors_of(doc)


def test_error_messages_say_what_is_wrong(doc: dict[str, Any]) -> None:
    doc["debtor"]["customerNumber"] = 13
    doc["articleRows"][0]["vatPercentage"] = 20
    errors = errors_of(doc)
    assert "leading zeros" in errors["debtor", "customerNumber"]
    assert "a Swedish VAT rate: one of 0, 6, 12 or 25" in errors["articleRows", 0, "vatPercentage"]


def test_empty_article_rows_are_refused(doc: dict[str, Any]) -> None:
    doc["articleRows"] = []
    assert ("articleRows",) in errors_of(doc)


# --- business checks ---------------------------------------------------------------------------------------


def test_two_rates_with_vat_rounded_to_the_cent() -> None:
    invoice = ServiceInvoice.model_validate(two_rate_invoice())
    assert invoice.totals.total == Decimal("361.99")


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("totalExclVat", 190, "is not price * quantity - totalDiscount"),
        ("totalVat", 40, "is not totalExclVat * vatPercentage / 100"),
        ("total", 250, "before discount and VAT"),  # reading the row's total as incl. VAT is the mistake
        ("price", 90, "price * quantity"),  # blamed on the amounts computed from it
    ],
)
def test_row_arithmetic(doc: dict[str, Any], field: str, value: Any, reason: str) -> None:
    doc["articleRows"][0][field] = value
    errors = errors_of(doc)
    blamed = field if field != "price" else "totalExclVat"
    assert reason in errors["articleRows", 0, blamed]
    assert str(value) not in errors["articleRows", 0, blamed]  # the rule, never the amounts (docs/)


def test_row_amounts_may_be_off_by_a_cent_of_rounding_but_no_more(doc: dict[str, Any]) -> None:
    doc["articleRows"][0]["totalVat"] = 50.01
    doc["vats"][0]["totalVat"] = 50.01
    doc["totals"].update(totalVat=50.01, total=250.01, totalToPay=250.01)
    ServiceInvoice.model_validate(doc)
    doc["articleRows"][0]["totalVat"] = 50.02
    assert ("articleRows", 0, "totalVat") in errors_of(doc)


def test_a_row_discount_is_an_amount_taken_before_vat(doc: dict[str, Any]) -> None:
    doc["articleRows"][0].update(totalDiscount=20, totalExclVat=180, totalVat=45)  # total stays 200 = 100 * 2
    doc["vats"][0].update(totalTaxable=180, totalVat=45)
    doc["totals"].update(totalExclVat=180, totalVat=45, total=225, totalToPay=225)
    assert ServiceInvoice.model_validate(doc).articleRows[0].total == Decimal(200)
    doc["articleRows"][0]["total"] = 180  # the total after discount is the row's totalExclVat, not its total
    assert "before discount" in errors_of(doc)["articleRows", 0, "total"]


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("totalExclVat", 210, "is not what the articleRows' totalExclVat add up to"),
        ("totalVat", 55, "is not what the articleRows' totalVat add up to"),
        ("total", 200, "is not totalExclVat + totalVat"),
        ("totalToPay", 300, "is not total + totalRoundOff - taxReduction"),
    ],
)
def test_totals_are_the_sums_of_the_rows(doc: dict[str, Any], field: str, value: Any, reason: str) -> None:
    doc["totals"][field] = value
    assert reason in errors_of(doc)["totals", field]


def test_total_to_pay_adds_the_round_off_and_takes_off_the_tax_reduction(doc: dict[str, Any]) -> None:
    doc["totals"].update(totalRoundOff=0.4, taxReduction=50, totalToPay=200.4)
    ServiceInvoice.model_validate(doc)
    doc["totals"]["totalToPay"] = 250.4  # the tax reduction not taken off
    assert errors_of(doc)["totals", "totalToPay"] == "is not total + totalRoundOff - taxReduction"


def test_fees_are_not_part_of_the_totals(doc: dict[str, Any]) -> None:
    doc["fees"] = {"administration": 29, "administrationVatPercentage": 25}
    ServiceInvoice.model_validate(doc)


def test_vats_need_an_entry_for_every_rate_the_rows_use() -> None:
    raw = two_rate_invoice()
    del raw["vats"][1]
    assert "has no entry for VAT 12%, used by articleRows[1]" in errors_of(raw)["vats",]


def test_vats_have_no_entry_for_a_rate_no_row_uses(doc: dict[str, Any]) -> None:
    doc["vats"].append({"percentage": 6, "totalTaxable": 0, "totalVat": 0})
    assert "no article row has VAT 6%" in errors_of(doc)["vats", 1, "percentage"]


def test_vats_list_each_rate_once(doc: dict[str, Any]) -> None:
    doc["vats"].append(dict(doc["vats"][0]))
    assert "more than one entry" in errors_of(doc)["vats", 1, "percentage"]


@pytest.mark.parametrize(("field", "value"), [("totalTaxable", 99.99 + 1), ("totalVat", 11)])
def test_vats_are_the_sums_of_the_rows_at_their_rate(field: str, value: Any) -> None:
    raw = two_rate_invoice()
    raw["vats"][1][field] = value
    assert "rows at 12% VAT add up to" in errors_of(raw)["vats", 1, field]


def test_vats_may_come_in_any_order() -> None:
    raw = two_rate_invoice()
    raw["vats"].reverse()
    ServiceInvoice.model_validate(raw)


def test_expire_date_not_before_invoice_date(doc: dict[str, Any]) -> None:
    doc["dates"]["expireDate"] = "2021-05-16"
    assert errors_of(doc)["dates", "expireDate"] == "is before invoiceDate: an invoice expires on or after its date"
    doc["dates"]["expireDate"] = "2021-05-17"  # due the day it is issued is fine
    ServiceInvoice.model_validate(doc)


@pytest.mark.parametrize("delivery", ["2021-04-01", "2021-07-01"])
def test_delivery_date_may_be_before_the_invoice_or_after_expiry(doc: dict[str, Any], delivery: str) -> None:
    doc["dates"]["deliveryDate"] = delivery
    ServiceInvoice.model_validate(doc)


def test_all_business_errors_are_reported_together() -> None:
    raw = two_rate_invoice()
    raw["vats"][0]["totalVat"] = 51
    raw["totals"]["totalExclVat"] = 310
    raw["totals"]["totalToPay"] = 1
    assert set(errors_of(raw)) == {
        ("vats", 0, "totalVat"),
        ("totals", "totalExclVat"),
        ("totals", "total"),
        ("totals", "totalToPay"),
    }


# --- property: consistent invoices validate, any total off by one does not ---------------------------------

_TOTALS_FIELDS = ("total", "totalExclVat", "totalVat", "totalToPay", "totalRoundOff", "taxReduction")


def _cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


@st.composite
def consistent_invoices(draw: st.DrawFn) -> dict[str, Any]:
    """An invoice (wire JSON shapes) whose rows, vats and totals agree, with amounts rounded to the cent."""
    rows: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        price = Decimal(draw(st.integers(min_value=0, max_value=10**7))) / 100
        quantity = Decimal(draw(st.integers(min_value=1, max_value=10**5))) / 100
        gross = price * quantity
        discount = Decimal(draw(st.integers(min_value=0, max_value=int(gross * 100)))) / 100
        rate = draw(st.sampled_from([0, 6, 12, 25]))
        excl = _cents(gross - discount)
        quantity_text = format(quantity, "f")
        rows.append(
            {
                "price": float(price),
                "quantity": draw(st.sampled_from([float(quantity), quantity_text, quantity_text.replace(".", ",")])),
                "totalDiscount": float(discount),
                "total": float(_cents(gross)),
                "totalExclVat": float(excl),
                "totalVat": float(_cents(excl * rate / 100)),
                "vatPercentage": rate,
            }
        )
    vats: dict[int, dict[str, Decimal]] = {}
    for row in rows:
        entry = vats.setdefault(row["vatPercentage"], {"totalTaxable": Decimal(0), "totalVat": Decimal(0)})
        entry["totalTaxable"] += Decimal(str(row["totalExclVat"]))
        entry["totalVat"] += Decimal(str(row["totalVat"]))
    excl_sum = sum((v["totalTaxable"] for v in vats.values()), Decimal(0))
    vat_sum = sum((v["totalVat"] for v in vats.values()), Decimal(0))
    total = excl_sum + vat_sum
    round_off = Decimal(draw(st.integers(min_value=-50, max_value=50))) / 100
    reduction = Decimal(draw(st.integers(min_value=0, max_value=int(total * 100)))) / 100
    vat_entries = [
        {"percentage": rate, "totalTaxable": float(v["totalTaxable"]), "totalVat": float(v["totalVat"])}
        for rate, v in vats.items()
    ]
    raw = copy.deepcopy(SPEC_REQUEST)
    raw["articleRows"] = rows
    raw["vats"] = draw(st.permutations(vat_entries))
    raw["totals"] = {
        "totalExclVat": float(excl_sum),
        "totalVat": float(vat_sum),
        "total": float(total),
        "totalRoundOff": float(round_off),
        "taxReduction": float(reduction),
        "totalToPay": float(total + round_off - reduction),
    }
    return raw


def _total_paths(raw: dict[str, Any]) -> list[Loc]:
    paths: list[Loc] = [("totals", field) for field in _TOTALS_FIELDS]
    for index in range(len(raw["articleRows"])):
        paths += [("articleRows", index, field) for field in ("total", "totalExclVat", "totalVat")]
    for index in range(len(raw["vats"])):
        paths += [("vats", index, field) for field in ("totalTaxable", "totalVat")]
    return paths


@given(consistent_invoices())
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_consistent_invoices_validate_and_round_trip(raw: dict[str, Any]) -> None:
    invoice = ServiceInvoice.model_validate_json(json.dumps(raw))
    assert ServiceInvoice.model_validate_json(invoice.to_wire_json()) == invoice


@given(consistent_invoices(), st.data())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_total_changed_by_one_is_refused(raw: dict[str, Any], data: st.DataObject) -> None:
    path = data.draw(st.sampled_from(_total_paths(raw)))
    parent: Any = raw
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] += data.draw(st.sampled_from([-1, 1]))
    with pytest.raises(ValidationError) as caught:
        ServiceInvoice.model_validate_json(json.dumps(raw))
    # The round-off and the tax reduction are only checked through what they make totalToPay.
    blamed = ("totals", "totalToPay") if path[-1] in ("totalRoundOff", "taxReduction") else path
    assert blamed in [tuple(err["loc"]) for err in caught.value.errors()]
