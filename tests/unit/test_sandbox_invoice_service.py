"""The sandbox's invoice service: POST /invoices, its validation, the created invoice, ledger, stats, faults."""

from __future__ import annotations

import copy
import re
from typing import Any

import httpx
import pytest

from sandbox import InvoiceServiceClient
from sandbox.config import config_from_dict
from tests.conftest import example_json
from tests.unit.sandbox_app import FakeClock, InProcessSandbox

TOKEN = "demo-invoice-service-token"
PATH = "/invoices"

# The spec's "Example Request Body", verbatim.
EXAMPLE_REQUEST: dict[str, Any] = example_json("spec-service-invoice.json")

# The spec's "Example Response Body", verbatim ("createdBy" is shown obfuscated in the spec).
EXAMPLE_RESPONSE: dict[str, Any] = {
    "activatedById": None,
    "activatedDate": None,
    "articleRows": [
        {
            "accountNumber": None,
            "articleNumber": None,
            "description": "This is a article",
            "discountType": "PERCENTAGE",
            "id": "IR.321035638",
            "price": 100,
            "quantity": "2,00",
            "total": 200,
            "totalDiscount": 0,
            "totalExclVat": 200,
            "totalVat": 50,
            "unit": "pcs",
            "vatPercentage": 25,
        }
    ],
    "balances": {
        "capital": 0,
        "capitalFinanced": 0,
        "capitalFinancedLocale": 0,
        "capitalLocale": 0,
        "capitalService": 0,
        "capitalServiceLocale": 0,
        "interest": 0,
        "interestLocale": 0,
        "reminder": 0,
        "reminderLocale": 0,
        "total": 0,
        "totalLocale": 0,
    },
    "clientId": "C.100123",
    "clientName": "Quiddly Test",
    "createdBy": "[email protected]",
    "createdDate": "2022-04-08T11:21:12",
    "currency": {"baseCurrency": "SEK", "exchangeRate": 1, "invoiceCurrency": "SEK"},
    "dates": {
        "deliveryDate": None,
        "expireDate": "2021-06-01",
        "invoiceDate": "2021-05-17",
        "latestFinancialDate": None,
        "ledgerPerformedDate": None,
        "pausedUntilDate": None,
    },
    "debitInvoiceNumber": None,
    "debtor": {
        "FMI": None,
        "GLN": None,
        "cellPhone": "+46",
        "customerNumber": "123",
        "deliveryAddress": None,
        "distributionChannel": None,
        "distributionChannelOverride": None,
        "email": None,
        "id": None,
        "identificationNumber": None,
        "invoiceAddress": {
            "address": "Address",
            "address2": None,
            "address3": None,
            "city": "City",
            "countryCode": "SE",
            "name": "Name",
            "zip": "12345",
        },
        "name": "Name",
        "phone": None,
        "type": "COMPANY",
        "vatNumber": None,
    },
    "distributionCode": "LETTER",
    "document": {
        "attachment": None,
        "connectedFileCount": 0,
        "invoice": None,
        "invoicePreview": "57b7f0d607f1403fa3e23643342f1b58",
        "invoiceWithAttachments": None,
    },
    "documentTemplateCode": "STANDARD_MARKETING",
    "fees": {"administration": 0, "administrationVatPercentage": None, "freight": 0, "freightVatPercentage": None},
    "id": "I.111225694",
    "invoiceNumber": "123457",
    "isRecourse": False,
    "ourOrderNumber": None,
    "ourReference": None,
    "partPayment": {"isPartPayment": False, "partPaymentPlanId": None},
    "paymentReference": None,
    "productCode": "REMINDER_SERVICE",
    "refund": False,
    "remark": None,
    "reminderProfileCode": None,
    "reverseCharge": False,
    "serviceProviderCode": None,
    "statuses": {"ledger": None, "ledgerSubType": None, "main": "CREATED"},
    "terms": {"delivery": None, "payment": None},
    "totals": {
        "taxReduction": 0,
        "total": 250,
        "totalExclVat": 200,
        "totalRoundOff": 0,
        "totalToPay": 250,
        "totalToPayBase": 250,
        "totalVat": 50,
    },
    "type": "INVOICE",
    "useRecourse": True,
    "vats": [{"percentage": 25, "totalTaxable": 200, "totalVat": 50}],
    "yourContactPerson": None,
    "yourOrderNumber": None,
    "yourReference": None,
}


class Sandbox(InProcessSandbox):
    """The in-process sandbox with the invoice service's call: a bearer POST."""

    def post(self, body: Any, token: str = TOKEN) -> httpx.Response:
        return self.request("POST", PATH, json=body, headers={"Authorization": f"Bearer {token}"})


def example(**changes: Any) -> dict[str, Any]:
    """The example request with ``changes`` applied: ``{"totals.total": 251}`` style paths; None deletes."""
    body = copy.deepcopy(EXAMPLE_REQUEST)
    for path, value in changes.items():
        *parents, last = re.split(r"\.", path)
        target: Any = body
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        key: Any = int(last) if last.isdigit() else last
        if value is None:
            del target[key]
        else:
            target[key] = value
    return body


def two_rate_invoice(**extra: Any) -> dict[str, Any]:
    """100 at 25 % and 50 at 12 %, consistent everywhere."""
    rows = [
        {
            "description": "Arbete",
            "price": 100,
            "quantity": 1,
            "totalExclVat": 100,
            "totalVat": 25,
            "vatPercentage": 25,
        },
        {"description": "Bok", "price": 25, "quantity": "2", "totalExclVat": 50, "totalVat": 6, "vatPercentage": 12},
    ]
    return example(
        articleRows=rows,
        totals={"total": 181, "totalExclVat": 150, "totalVat": 31},
        vats=[
            {"percentage": 25, "totalTaxable": 100, "totalVat": 25},
            {"percentage": 12, "totalTaxable": 50, "totalVat": 6},
        ],
        **extra,
    )


@pytest.fixture
def sb() -> Sandbox:
    return Sandbox()


# -- success ------------------------------------------------------------------------------------
def test_the_spec_example_is_created_and_answered_like_the_example_response() -> None:
    sb = Sandbox(clock=FakeClock(1_649_416_872.0))  # 2022-04-08T11:21:12Z, the example's createdDate
    r = sb.post(EXAMPLE_REQUEST)
    assert r.status_code == 200  # the spec: "With a successful 200 response ..."
    body = r.json()
    assert list(body) == sorted(body) and list(body["debtor"]) == sorted(body["debtor"])  # keys sorted, as there
    expected = copy.deepcopy(EXAMPLE_RESPONSE)
    # Where the example response shows another invoice than its request, the sandbox echoes the request.
    expected |= {"invoiceNumber": "123456", "productCode": "INVOICE_SERVICE", "createdBy": "api-user@example.com"}
    expected["debtor"]["identificationNumber"] = "1234567890"
    assert len(body["document"].pop("invoicePreview")) == 32
    del expected["document"]["invoicePreview"]
    assert body == expected


def test_ids_increase_and_the_same_invoice_number_creates_another_invoice(sb: Sandbox) -> None:
    first, second = sb.post(EXAMPLE_REQUEST).json(), sb.post(two_rate_invoice()).json()
    assert (first["id"], second["id"]) == ("I.111225694", "I.111225695")
    assert [row["id"] for row in second["articleRows"]] == ["IR.321035639", "IR.321035640"]
    assert sb.post(EXAMPLE_REQUEST).status_code == 200  # no duplicate check is documented
    assert sb.ledger(external_id="123456")["count"] == 3


@pytest.mark.parametrize("quantity", [2, 2.0, "2,00", "2.00", "2", "-1,5"])
def test_quantity_is_a_number_or_a_decimal_string(sb: Sandbox, quantity: Any) -> None:
    r = sb.post(example(**{"articleRows.0.quantity": quantity}))
    assert r.status_code == 200 and r.json()["articleRows"][0]["quantity"] == quantity


def test_several_vat_rates_defaults_and_computed_totals(sb: Sandbox) -> None:
    body = two_rate_invoice(currency={"invoiceCurrency": "EUR", "baseCurrency": "SEK", "exchangeRate": 11.5})
    del body["totals"]
    body["totals"] = {"total": 181, "totalExclVat": 150, "totalVat": 31}
    created = sb.post(body).json()
    assert created["totals"] == {
        "taxReduction": 0,
        "total": 181,
        "totalExclVat": 150,
        "totalRoundOff": 0,
        "totalToPay": 181,  # total + totalRoundOff - taxReduction
        "totalToPayBase": 2081.5,  # x exchangeRate 11.5
        "totalVat": 31,
    }
    assert created["currency"]["invoiceCurrency"] == "EUR"


def test_fees_may_be_part_of_the_totals_or_not(sb: Sandbox) -> None:
    fees = {"administration": 40, "administrationVatPercentage": 25}
    assert sb.post(example(fees=fees)).status_code == 200  # totals of the rows only
    with_fees = example(
        fees=fees,
        totals={"total": 300, "totalExclVat": 240, "totalVat": 60},
        vats=[{"percentage": 25, "totalTaxable": 240, "totalVat": 60}],
    )
    assert sb.post(with_fees).status_code == 200
    r = sb.post(example(fees=fees, totals={"total": 290, "totalExclVat": 230, "totalVat": 60}))
    message = "must be the sum of the rows' totalExclVat, 200.00 (or 240.00 with the fees)"
    assert {"field": "totals.totalExclVat", "message": message} in r.json()["errors"]


# -- authentication -----------------------------------------------------------------------------
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}])
def test_missing_or_wrong_token_is_401(sb: Sandbox, headers: dict[str, str]) -> None:
    r = sb.request("POST", PATH, json=EXAMPLE_REQUEST, headers=headers)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert r.json() == {"status": 401, "errors": [{"field": None, "message": r.json()["errors"][0]["message"]}]}
    assert sb.ledger()["count"] == 0


def test_clients_come_from_the_config_and_get_their_own_ids() -> None:
    config = config_from_dict(
        {"invoice_service_clients": [{"token": "t-1", "client_id": 42, "name": "Fyrtiotvå AB", "created_by": "a@b.se"}]}
    )
    assert config.invoice_service_clients == {"t-1": InvoiceServiceClient("t-1", 42, "Fyrtiotvå AB", "a@b.se")}
    sb = Sandbox(config)
    assert sb.post(EXAMPLE_REQUEST).status_code == 401  # the demo client is replaced
    created = sb.post(example(clientId="C.42"), token="t-1").json()
    assert (created["clientId"], created["clientName"], created["createdBy"]) == ("C.42", "Fyrtiotvå AB", "a@b.se")
    assert sb.ledger(target="invoiceservice")["documents"][0]["company_id"] == 42
    wrong = sb.post(example(clientId="C.100123"), token="t-1")
    assert wrong.json()["errors"] == [{"field": "clientId", "message": "is not the client of this API token (C.42)"}]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([], "invoice_service_clients must be a non-empty list"),
        ([{"token": "", "client_id": 1, "name": "x"}], "token must be a non-empty string"),
        ([{"token": "t", "client_id": "C.1", "name": "x"}], "client_id must be an integer > 0"),
        ([{"token": "t", "client_id": 1, "name": "x", "colour": "red"}], "unknown field(s) ['colour']"),
        ([{"token": "t", "client_id": 1, "name": "x"}, {"token": "t", "client_id": 2, "name": "y"}], "duplicate"),
    ],
)
def test_invalid_invoice_service_clients(raw: Any, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        config_from_dict({"invoice_service_clients": raw})


# -- validation ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"invoiceNumber": None}, "invoiceNumber", "is required"),
        ({"invoiceNumber": "  "}, "invoiceNumber", "is required"),
        ({"dates.expireDate": None}, "dates.expireDate", "is required"),
        ({"dates": None}, "dates", "is required"),
        ({"debtor.invoiceAddress.zip": None}, "debtor.invoiceAddress.zip", "is required"),
        ({"debtor.invoiceAddress": None}, "debtor.invoiceAddress", "is required"),
        ({"debtor.type": "COMPANYX"}, "debtor.type", "must be one of COMPANY, PERSON"),
        ({"debtor.invoiceAddress.countryCode": "se"}, "debtor.invoiceAddress.countryCode", "ISO 3166-1 alpha-2"),
        ({"debtor.email": "not-an-address"}, "debtor.email", "must be an e-mail address"),
        ({"debtor.GLN": "123"}, "debtor.GLN", "must be a GLN (13 digits)"),
        ({"debtor.customerNumber": 123}, "debtor.customerNumber", "must be a string"),
        ({"debtor.phoneNumber": "+46"}, "debtor.phoneNumber", "is not a field of this object"),
        ({"invoiceNumbr": "1"}, "invoiceNumbr", "is not a field of this object"),
        ({"statuses": {"main": "CREATED"}}, "statuses", "is not a field of this object"),  # response-only
        ({"productCode": "INVOICE"}, "productCode", "must be one of INVOICE_SERVICE"),
        ({"distributionCode": "SMS"}, "distributionCode", "must be one of LETTER, EMAIL, NULL"),
        ({"dates.invoiceDate": "17/05/2021"}, "dates.invoiceDate", "must be a date YYYY-MM-DD"),
        ({"dates.deliveryDate": "2021-02-30"}, "dates.deliveryDate", "must be a date YYYY-MM-DD"),
        ({"activatedDate": "yesterday"}, "activatedDate", "must be a date and time"),
        ({"currency.invoiceCurrency": "kr"}, "currency.invoiceCurrency", "three upper-case letters"),
        ({"currency.exchangeRate": "1"}, "currency.exchangeRate", "must be a number"),
        ({"useRecourse": "yes"}, "useRecourse", "must be true or false"),
        (
            {"fees": {"freight": 10, "freightVatPercentage": 24}},
            "fees.freightVatPercentage",
            "must be one of 0, 6, 12, 25",
        ),
        ({"articleRows": []}, "articleRows", "must have at least 1 item(s)"),
        ({"articleRows": {"price": 1}}, "articleRows", "must be a list"),
        ({"articleRows.0.vatPercentage": 24}, "articleRows[0].vatPercentage", "must be one of 0, 6, 12, 25"),
        ({"articleRows.0.vatPercentage": None}, "articleRows[0].vatPercentage", "is required"),
        ({"articleRows.0.price": "100"}, "articleRows[0].price", "must be a number"),
        ({"articleRows.0.quantity": "två"}, "articleRows[0].quantity", "must be a number or a decimal number"),
        ({"articleRows.0.quantity": True}, "articleRows[0].quantity", "must be a number or a decimal number"),
        ({"vats.0.percentage": 24}, "vats[0].percentage", "must be one of 0, 6, 12, 25"),
        ({"vats": "25"}, "vats", "must be a list"),
    ],
)
def test_structural_errors_name_the_field(sb: Sandbox, changes: dict[str, Any], field: str, message: str) -> None:
    r = sb.post(example(**changes))
    assert r.status_code == 400
    body = r.json()
    assert body["status"] == 400
    assert any(e["field"] == field and message in e["message"] for e in body["errors"]), body
    assert sb.ledger()["count"] == 0


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"dates.invoiceDate": "2021-06-02"}, "dates.expireDate", "must not be before dates.invoiceDate (2021-06-02)"),
        ({"articleRows.0.totalVat": 40, "totals.totalVat": 40, "totals.total": 240, "vats.0.totalVat": 40},
         "articleRows[0].totalVat", "must be totalExclVat x vatPercentage / 100, 50.00"),
        ({"totals.totalExclVat": 201, "totals.total": 251}, "totals.totalExclVat",
         "must be the sum of the rows' totalExclVat, 200.00"),
        ({"totals.totalVat": 49, "totals.total": 249}, "totals.totalVat",
         "must be the sum of the rows' totalVat, 50.00"),
        ({"totals.total": 251}, "totals.total", "must be totals.totalExclVat + totals.totalVat, 250.00"),
        ({"vats.0.totalTaxable": 199}, "vats[0].totalTaxable", "must be 200.00 (the rows at 25 % VAT)"),
        ({"vats.0.totalVat": 51}, "vats[0].totalVat", "must be 50.00 (the rows at 25 % VAT)"),
        ({"vats": []}, "vats", "needs an entry for 25 % (used by the rows)"),
        ({"vats": [{"percentage": 25, "totalTaxable": 200, "totalVat": 50}] * 2}, "vats[1].percentage",
         "there is already an entry for 25 %"),
        ({"vats": [{"percentage": 25, "totalTaxable": 200, "totalVat": 50},
                   {"percentage": 12, "totalTaxable": 10, "totalVat": 1.2}]},
         "vats[1].totalTaxable", "must be 0.00 (no row has 12 % VAT)"),
        ({"clientId": "C.1"}, "clientId", "is not the client of this API token (C.100123)"),
    ],
)  # fmt: skip
def test_arithmetic_and_date_errors_name_the_field(
    sb: Sandbox, changes: dict[str, Any], field: str, message: str
) -> None:
    r = sb.post(example(**changes))
    assert r.status_code == 400
    assert {"field": field, "message": message} in r.json()["errors"], r.json()


def test_rounding_of_one_ore_is_tolerated_and_zero_vats_entries_accepted(sb: Sandbox) -> None:
    rows = [{"price": 33.33, "quantity": 1, "totalExclVat": 33.33, "totalVat": 8.33, "vatPercentage": 25}] * 3
    body = example(
        articleRows=rows,
        totals={"total": 124.99, "totalExclVat": 99.99, "totalVat": 25.0},  # 24.99 from the rows: one öre off
        vats=[
            {"percentage": 25, "totalTaxable": 99.99, "totalVat": 25.0},
            {"percentage": 0, "totalTaxable": 0, "totalVat": 0},
        ],
    )
    assert sb.post(body).status_code == 200
    body["totals"]["totalVat"] = 25.01
    body["totals"]["total"] = 125.0
    assert sb.post(body).status_code == 400


def test_every_problem_is_reported_at_once(sb: Sandbox) -> None:
    r = sb.post(example(invoiceNumber=None, **{"debtor.type": "X", "articleRows.0.price": "1"}))
    assert {e["field"] for e in r.json()["errors"]} == {"invoiceNumber", "debtor.type", "articleRows[0].price"}


@pytest.mark.parametrize(("content", "message"), [(b"{,}", "not valid JSON"), (b"[]", "must be an object")])
def test_unreadable_bodies_are_400_for_the_whole_body(sb: Sandbox, content: bytes, message: str) -> None:
    r = sb.request(
        "POST", PATH, content=content, headers={"Authorization": f"Bearer {TOKEN}", "content-type": "application/json"}
    )
    assert r.status_code == 400
    (error,) = r.json()["errors"]
    assert error["field"] is None and message in error["message"]


def test_unknown_row_and_vat_fields_are_accepted_and_echoed(sb: Sandbox) -> None:
    body = example(**{"articleRows.0.articleNumber": "A-1", "articleRows.0.accountNumber": 3001})
    body["articleRows"][0]["ean"] = "7350000000000"  # the spec does not list row fields: not refused
    created = sb.post(body).json()
    assert created["articleRows"][0]["ean"] == "7350000000000" and created["articleRows"][0]["accountNumber"] == 3001


# -- ledger, stats, faults ----------------------------------------------------------------------
def test_ledger_entry_and_stats(sb: Sandbox) -> None:
    created = sb.post(EXAMPLE_REQUEST).json()
    sb.post(example(invoiceNumber=None))
    (entry,) = sb.ledger(target="invoiceservice", full="1")["documents"]
    assert entry["target"] == "invoiceservice" and entry["kind"] == "customer_invoice"
    assert (entry["key"], entry["number"], entry["external_id"]) == (created["id"], "123456", "123456")
    assert (entry["customer_nr"], entry["invoice_date"], entry["company_id"]) == ("123", "2021-05-17", 100123)
    assert entry["document"] == EXAMPLE_REQUEST
    assert sb.ledger(target="softone")["count"] == 0 and sb.ledger(target="fortnox")["count"] == 0
    stats = sb.stats()
    assert stats["requests"]["POST /invoices"] == {"200": 1, "400": 1} and stats["documents_created"] == 1


def test_fault_rules_and_random_faults_hit_the_invoice_service(sb: Sandbox) -> None:
    sb.request("POST", "/_sandbox/faults", json={"path": PATH, "kind": "status", "status": 503})
    assert sb.post(EXAMPLE_REQUEST).status_code == 503
    assert sb.ledger()["count"] == 0
    sb.request("POST", "/_sandbox/faults", json={"path": "*", "kind": "status_after_commit", "status": 504})
    assert sb.post(example(invoiceNumber="amb-1")).status_code == 504
    assert sb.ledger(external_id="amb-1")["count"] == 1  # saved, answer lost

    sb.request("POST", "/_sandbox/faults", json={"probabilities": {"500_after_commit": 1.0}, "seed": 1})
    r = sb.post(example(invoiceNumber="amb-2"))
    assert r.status_code == 500
    assert r.json() == {"status": 500, "errors": [{"field": None, "message": "Internal server error"}]}
    assert sb.ledger(external_id="amb-2")["count"] == 1

    # API tokens are static: a random token expiry never applies to them.
    sb.request("POST", "/_sandbox/faults", json={"probabilities": {"token_expiry": 1.0}, "seed": 1})
    assert [sb.post(example(invoiceNumber=f"t-{i}")).status_code for i in range(3)] == [200, 200, 200]
    assert sb.stats()["faults"]["token_expiry"] == 0

    sb.request("POST", "/_sandbox/faults", json={"probabilities": {"429": 1.0}, "retry_after": 4, "seed": 1})
    r = sb.post(EXAMPLE_REQUEST)
    assert (r.status_code, r.headers["retry-after"]) == (429, "4")
    assert sb.stats()["fortnox"]["injected_429"] == 0  # not Fortnox's
