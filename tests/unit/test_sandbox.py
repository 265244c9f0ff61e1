"""The sandbox's HTTP contract, exercised in-process through httpx.ASGITransport."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx
import pytest

from sandbox import SandboxConfig
from sandbox.config import Company
from tests.unit.sandbox_app import FakeClock, InProcessSandbox

COMPANY_KEY, CONNECT_KEY = "demo-company-key", "demo-connect-key"
INVOICES, ORDERS = "/Economy/Billing/CustomerInvoices", "/Economy/Billing/Orders"
FILTER = "/Economy/Billing/CustomerInvoices/Filter"

# The request bodies of the specs' examples, verbatim.
INVOICE_EXAMPLE = """[
  {
    "InvoiceRows": [
      {
        "CustomerRowType": 2,
        "ProductNr": "1986090",
        "Quantity": 6.0,
        "UnitPrice": 11.9,
        "Text": "3231 20X15 BUSSNING METALL",
        "RowNr": 1
      }
    ],
    "OriginType": 2,
    "CustomerNr": "3879",
    "RegistrationType": 4,
    "BillingType": 1,
    "InvoiceDate": "2026-02-18"
  }
]"""
ORDER_EXAMPLE_AS_PRINTED = """[
  {
    "InvoiceRows": [
      {
        "CustomerRowType": 2,
        "ProductNr": "100-5t",
        "Quantity": 3.0,
        "Amount": 350,
        "Text": "Skolbil m väktare",
        "RowNr": 1,
      }
    ],
    "InvoiceDate": "2026-01-30",
    "OriginType": 6,
    "CustomerNr": "013"
  }
]"""
ORDER_EXAMPLE = ORDER_EXAMPLE_AS_PRINTED.replace('"RowNr": 1,\n', '"RowNr": 1\n')
RESPONSE_FIELDS = [
    "Success",
    "SuccessNumber",
    "ErrorNumber",
    "ErrorMessage",
    "InfoMessage",
    "CanUserOverride",
    "IntegerValue",
    "IntegerValue2",
    "DecimalValue",
    "StringValue",
    "BooleanValue",
    "BooleanValue2",
    "DateTimeValue",
    "Value",
    "Value2",
    "Dates",
    "Keys",
    "Strings",
    "IdDict",
    "IntDict",
    "IntDict2",
    "StrDict",
    "StrDict2",
    "StrIntListDict",
    "ObjectsAffected",
    "StackTrace",
    "Exception",
    "Modified",
    "ModifiedBy",
]


class Sandbox(InProcessSandbox):
    """The in-process sandbox with SoftOne's calls: login, query-string auth, array POSTs."""

    def login(self, company_key: str = COMPANY_KEY, connect_key: str = CONNECT_KEY) -> str:
        response = self.request(
            "POST", "/Login/Token", params={"companyApiKey": company_key, "connectApiKey": connect_key}
        )
        assert response.status_code == 200, response.text
        return str(response.json()["Token"])

    def auth(
        self, token: str | None = None, company_key: str = COMPANY_KEY, connect_key: str = CONNECT_KEY
    ) -> dict[str, str]:
        token = token or self.login(company_key, connect_key)
        return {
            "companyApiKey": company_key,
            "connectApiKey": connect_key,
            "token": token,
            "importid": "0",
            "specialfunctionalities": "",
        }

    def post(self, path: str, body: Any, params: dict[str, str] | None = None) -> httpx.Response:
        content = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        return self.request(
            "POST", path, params=params or self.auth(), content=content, headers={"content-type": "application/json"}
        )


def invoice(customer_nr: str = "3879", external_id: str | None = None, **rows: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "CustomerNr": customer_nr,
        "InvoiceDate": "2026-02-18",
        "OriginType": 6,
        "InvoiceRows": [
            {"CustomerRowType": 2, "RowNr": 1, "ProductNr": "A11", "Quantity": 2, "UnitPrice": 100.0, **rows}
        ],
    }
    if external_id is not None:
        doc["ExternalId"] = external_id
    return doc


@pytest.fixture
def sb() -> Sandbox:
    return Sandbox()


# -- login and authentication ----------------------------------------------------------------
def test_login_ok_get_and_post(sb: Sandbox) -> None:
    for method in ("GET", "POST"):
        r = sb.request(method, "/Login/Token", params={"companyApiKey": COMPANY_KEY, "connectApiKey": CONNECT_KEY})
        assert r.status_code == 200
        body = r.json()
        assert set(body) == {"Token", "ExpiresIn", "ValidTo"}
        assert body["ExpiresIn"] == 3600 and body["ValidTo"].endswith("Z") and len(body["Token"]) >= 32


@pytest.mark.parametrize(
    "params",
    [
        {"companyApiKey": "nope", "connectApiKey": CONNECT_KEY},
        {"companyApiKey": COMPANY_KEY, "connectApiKey": "nope"},
        {"companyApiKey": COMPANY_KEY},
        {},
    ],
)
def test_login_bad_keys_401_plain_text(sb: Sandbox, params: dict[str, str]) -> None:
    r = sb.request("POST", "/Login/Token", params=params)
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("text/plain")
    assert r.text == "Unauthorized"


def test_authenticated_endpoint_rejects_bad_keys_and_tokens(sb: Sandbox) -> None:
    good = sb.auth()
    cases = [
        ({**good, "token": "forged"}, "Invalid or expired token"),
        ({k: v for k, v in good.items() if k != "token"}, "Invalid or expired token"),
        ({**good, "connectApiKey": "nope"}, "Unauthorized"),
        ({**good, "companyApiKey": "nope"}, "Unauthorized"),
    ]
    for params, text in cases:
        r = sb.post(INVOICES, INVOICE_EXAMPLE, params=params)
        assert (r.status_code, r.text) == (401, text)
    assert sb.ledger()["count"] == 0
    # Capitalised parameter names are accepted (the specs spell `Token`).
    capitalised = {
        "CompanyApiKey": COMPANY_KEY,
        "ConnectApiKey": CONNECT_KEY,
        "Token": good["token"],
        "importId": "0",
        "specialFunctionalities": "",
    }
    assert sb.post(INVOICES, INVOICE_EXAMPLE, params=capitalised).json()["Success"] is True
    # The overview's URL shape, with its doubled "&&", verbatim.
    url = (
        f"{INVOICES}?companyApiKey={COMPANY_KEY}&connectApiKey={CONNECT_KEY}&token={good['token']}"
        "&&importId=0&specialFunctionalities="
    )
    assert sb.request("POST", url, content=INVOICE_EXAMPLE).json()["Success"] is True


def test_token_of_another_company_is_rejected() -> None:
    other = Company("other-company", frozenset({"other-connect"}), 7, "Annat AB")
    config = SandboxConfig()
    config.companies[other.company_api_key] = other
    sb = Sandbox(config)
    other_token = sb.login("other-company", "other-connect")
    r = sb.post(INVOICES, INVOICE_EXAMPLE, params=sb.auth(token=other_token))
    assert (r.status_code, r.text) == (401, "Invalid or expired token")


def test_token_expires_after_ttl() -> None:
    clock = FakeClock()
    config = SandboxConfig(token_ttl_seconds=600)
    sb = Sandbox(config, clock)
    params = sb.auth()
    clock.now += 599
    assert sb.post(INVOICES, INVOICE_EXAMPLE, params=params).status_code == 200
    clock.now += 1
    r = sb.post(INVOICES, INVOICE_EXAMPLE, params=params)
    assert (r.status_code, r.text) == (401, "Invalid or expired token")
    assert sb.post(INVOICES, INVOICE_EXAMPLE).status_code == 200  # a new login works


def test_default_ttl_is_60_minutes_and_expire_endpoint() -> None:
    clock = FakeClock()
    sb = Sandbox(clock=clock)
    params = sb.auth()
    clock.now += 3599
    assert sb.post(INVOICES, INVOICE_EXAMPLE, params=params).status_code == 200
    assert sb.request("POST", "/_sandbox/tokens/expire").json() == {"expired": 1}
    assert sb.post(INVOICES, INVOICE_EXAMPLE, params=params).status_code == 401


# -- creating documents ----------------------------------------------------------------------
def test_invoice_example_is_accepted_with_spec_response_shape(sb: Sandbox) -> None:
    r = sb.post(INVOICES, INVOICE_EXAMPLE)
    assert r.status_code == 200
    body = r.json()
    assert list(body) == RESPONSE_FIELDS
    assert body["Success"] is True and body["ErrorNumber"] == 0 and body["ErrorMessage"] is None
    assert body["Keys"] == [21027274] and body["Strings"] == [] and body["ObjectsAffected"] == 1
    assert body["InfoMessage"] == "\\n\\n kundfakturor utav 1 har skapats/uppdaterats."
    assert body["DateTimeValue"] == body["Modified"] == "0001-01-01T00:00:00"
    assert len(body["StringValue"]) == 36 and body["Dates"] is None
    # Second request: fresh GUID, next Key.
    again = sb.post(INVOICES, INVOICE_EXAMPLE).json()
    assert again["Keys"] == [21027275] and again["StringValue"] != body["StringValue"]


def test_order_example_is_accepted_and_numbered(sb: Sandbox) -> None:
    params = sb.auth()
    first = sb.post(ORDERS, ORDER_EXAMPLE, params=params).json()
    assert first["Success"] is True and first["Strings"] == ["211"] and first["ObjectsAffected"] == 1
    second = sb.post("/Economy/Billing/Order", ORDER_EXAMPLE, params=params).json()  # the example's path
    assert second["Strings"] == ["212"] and second["Keys"] == [first["Keys"][0] + 1]
    assert [d["kind"] for d in sb.ledger()["documents"]] == ["order", "order"]


def test_invoice_alias_path_creates_invoices(sb: Sandbox) -> None:
    assert sb.post("/Economy/CustomerInvoices/Orders", INVOICE_EXAMPLE).json()["Success"] is True
    assert sb.ledger()["documents"][0]["kind"] == "customer_invoice"


def test_several_documents_keys_in_body_order(sb: Sandbox) -> None:
    docs = [invoice(external_id=f"ext-{i}") for i in range(3)]
    body = sb.post(ORDERS, docs).json()
    assert body["ObjectsAffected"] == 3 and body["Strings"] == ["211", "212", "213"]
    ledger = sb.ledger()["documents"]
    assert [d["key"] for d in ledger] == body["Keys"] == sorted(body["Keys"])
    assert [d["external_id"] for d in ledger] == ["ext-0", "ext-1", "ext-2"]
    assert {d["request_id"] for d in ledger} == {body["StringValue"]}


@pytest.mark.parametrize(
    "bad_body",
    [
        ORDER_EXAMPLE_AS_PRINTED,  # trailing comma, exactly as printed in the spec
        "",
        "{not json",
        '{"CustomerNr": "3879"}',  # an object, not an array
        "[1, 2]",
        '[{"Quantity": NaN}]',
    ],
)
def test_unparseable_or_non_array_body_is_400(sb: Sandbox, bad_body: str) -> None:
    r = sb.post(ORDERS, bad_body)
    assert r.status_code == 400
    body = r.json()
    assert list(body) == RESPONSE_FIELDS
    assert body["Success"] is False and body["ErrorNumber"] == 1 and body["ErrorMessage"]
    assert sb.ledger()["count"] == 0


def test_trailing_comma_error_describes_the_parse_error(sb: Sandbox) -> None:
    message = sb.post(ORDERS, ORDER_EXAMPLE_AS_PRINTED).json()["ErrorMessage"]
    assert "Expecting property name" in message and "line 11" in message  # the `}` after the comma


def test_failing_document_stops_the_array_and_earlier_ones_stay_saved(sb: Sandbox) -> None:
    docs = [
        invoice(external_id="a"),
        invoice(external_id="b"),
        invoice("UNKNOWN-3", external_id="c"),
        invoice(external_id="d"),
    ]
    r = sb.post(INVOICES, docs)
    assert r.status_code == 200
    body = r.json()
    assert list(body) == RESPONSE_FIELDS
    assert body["Success"] is False and body["ErrorNumber"] == 10
    assert body["ErrorMessage"] == "Kund med kundnummer 'UNKNOWN-3' hittades inte."
    assert body["Keys"] == [] and body["Strings"] == [] and body["ObjectsAffected"] == 0
    assert [d["external_id"] for d in sb.ledger()["documents"]] == ["a", "b"]


def test_validation_error_message_names_the_field_not_the_document(sb: Sandbox) -> None:
    doc = invoice()
    del doc["InvoiceRows"][0]["Quantity"]
    body = sb.post(INVOICES, [invoice(), doc]).json()
    assert body["Success"] is False and body["ErrorNumber"] == 8
    assert body["ErrorMessage"] == "InvoiceRows[0].Quantity saknas (obligatoriskt fält)."
    assert sb.ledger()["count"] == 1


@pytest.mark.parametrize("field", ["CustomerNr", "InvoiceDate", "OriginType", "InvoiceRows"])
def test_missing_mandatory_header_field(sb: Sandbox, field: str) -> None:
    doc = invoice()
    del doc[field]
    body = sb.post(INVOICES, [doc]).json()
    assert body["Success"] is False and body["ErrorMessage"] == f"{field} saknas (obligatoriskt fält)."


def test_empty_array_creates_nothing(sb: Sandbox) -> None:
    body = sb.post(INVOICES, []).json()
    assert body["Success"] is True and body["Keys"] == [] and body["ObjectsAffected"] == 0


def test_concurrent_arrays_do_not_interleave(sb: Sandbox) -> None:
    params = sb.auth()

    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=sb.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as client:
            posts = [
                client.post(ORDERS, params=params, json=[invoice(external_id=f"{n}-{i}") for i in range(20)])
                for n in range(10)
            ]
            return await asyncio.gather(*posts)

    responses = asyncio.run(go())
    for r in responses:
        keys = r.json()["Keys"]
        assert keys == list(range(keys[0], keys[0] + 20))  # contiguous: saved without interleaving
    assert sb.ledger()["count"] == 200


# -- filter -----------------------------------------------------------------------------------
def test_filter_by_date_range_with_amounts(sb: Sandbox) -> None:
    params = sb.auth()
    rows = [
        {
            "CustomerRowType": 2,
            "RowNr": 1,
            "ProductNr": "1808033",
            "Quantity": 1,
            "UnitPrice": 234.00,
            "Discount": -10,
            "Text": "S-PRESS PLUS TÄROR RV 20-8P",
        },
        {
            "CustomerRowType": 2,
            "RowNr": 2,
            "ProductNr": "7889746",
            "Quantity": 1,
            "Amount": 84.96,
            "Discount": 10,
            "VatRate": 25,
        },
        {"CustomerRowType": 3, "RowNr": 3, "Text": "Tack för ditt köp"},
    ]
    inside = {"CustomerNr": "11357", "InvoiceDate": "2026-02-23", "OriginType": 6, "InvoiceRows": rows}
    outside = {**inside, "InvoiceDate": "2026-03-02"}
    created = sb.post(INVOICES, [inside, outside], params=params).json()
    sb.post(ORDERS, [inside], params=params)  # orders are not invoices
    r = sb.post(
        "/Economy/Billing/CustomerInvoices/Search",
        {"InvoiceDateFrom": "2026-02-23", "InvoiceDateTo": "2026-03-01", "IncludeVoucher": True},
        params={**params, "maxNrRows": "20"},
    )
    assert r.status_code == 200
    found = r.json()
    assert [inv["InvoiceId"] for inv in found] == created["Keys"][:1]
    inv = found[0]
    assert inv["InvoiceNr"] == "17536" and inv["CustomerNr"] == "11357" and inv["CustomerName"] == "Per Persson"
    assert inv["InvoiceDate"] == "2026-02-23T00:00:00" and inv["DueDate"] == "2026-03-25T00:00:00"
    assert (inv["BillingType"], inv["Currency"], inv["CustomerOrgNr"]) == (1, "SEK", None)
    first, second, text = inv["InvoiceRows"]
    assert (first["SumAmount"], first["VatAmount"], first["UnitPrice"]) == (257.40, 64.35, 234.0)
    assert (second["SumAmount"], second["VatAmount"]) == (76.46, 19.12)  # the Filter example's row
    assert (text["ProductNr"], text["SumAmount"], text["Text"]) == (None, 0.0, "Tack för ditt köp")
    assert inv["VATAmount"] == 83.47
    assert inv["TotalAmount"] == 417.0  # 333.86 + 83.47 = 417.33, rounded to whole kronor (SEK)
    assert set(first) == {
        "ProductNr",
        "Quantity",
        "Text",
        "UnitPrice",
        "UnitPriceCurrency",
        "VatAmount",
        "VatAmountCurrency",
        "SumAmount",
        "SumAmountCurrency",
        "Accounts",
        "AttestStateName",
        "AttestState",
    }


def test_filter_by_id_number_paging_and_aliases(sb: Sandbox) -> None:
    params = sb.auth()
    keys = sb.post(INVOICES, [invoice() for _ in range(5)], params=params).json()["Keys"]
    for path in (FILTER, "/Economy/CustomerInvoices/Filter"):
        assert [i["InvoiceId"] for i in sb.post(path, {}, params=params).json()] == keys
    assert [i["InvoiceId"] for i in sb.post(FILTER, {"InvoiceId": str(keys[2])}, params=params).json()] == [keys[2]]
    assert [i["InvoiceNr"] for i in sb.post(FILTER, {"Number": "17537"}, params=params).json()] == ["17537"]
    page2 = sb.post(FILTER, {"PageNumber": 2, "PageNrOfRecords": 2}, params=params).json()
    assert [i["InvoiceId"] for i in page2] == keys[2:4]
    bad = sb.post(FILTER, {"InvoiceDateFrom": "igår"}, params=params)
    assert bad.status_code == 400 and bad.json()["ErrorNumber"] == 8
    assert sb.post(FILTER, "{,}", params=params).status_code == 400


def test_filter_only_returns_the_calling_companys_invoices() -> None:
    config = SandboxConfig()
    config.companies["k2"] = Company("k2", frozenset({"c2"}), 2, "Två AB")
    sb = Sandbox(config)
    sb.post(INVOICES, [invoice()])
    other = sb.auth(company_key="k2", connect_key="c2")
    assert sb.post(FILTER, {}, params=other).json() == []
    assert sb.post(INVOICES, [invoice()], params=other).json()["Success"] is True
    assert [d["company_id"] for d in sb.ledger()["documents"]] == [1592, 2]
    assert sb.ledger(company_id="2")["count"] == 1


# -- operator endpoints ----------------------------------------------------------------------
def test_ledger_filters_and_full(sb: Sandbox) -> None:
    sb.post(INVOICES, [invoice(external_id="x-1"), invoice(external_id="x-2")])
    sb.post(ORDERS, ORDER_EXAMPLE)
    assert sb.ledger()["count"] == 3
    assert sb.ledger(kind="order")["documents"][0]["number"] == "211"
    only = sb.ledger(external_id="x-2", full="1")
    assert only["count"] == 1
    entry = only["documents"][0]
    assert set(entry) == {
        "key",
        "kind",
        "target",
        "external_id",
        "customer_nr",
        "number",
        "company_id",
        "invoice_date",
        "created_at",
        "request_id",
        "document",
    }
    assert entry["document"] == invoice(external_id="x-2")
    assert entry["target"] == "softone" and isinstance(entry["key"], int)
    assert "document" not in sb.ledger()["documents"][0]


def test_stats_reset_keeps_keys_and_tokens(sb: Sandbox) -> None:
    params = sb.auth()
    first = sb.post(INVOICES, INVOICE_EXAMPLE, params=params).json()["Keys"][0]
    sb.post(INVOICES, INVOICE_EXAMPLE, params={**params, "token": "bad"})
    stats = sb.request("GET", "/_sandbox/stats").json()
    assert stats["requests"][f"POST {INVOICES}"] == {"200": 1, "401": 1}
    assert stats["requests"]["POST /Login/Token"] == {"200": 1}
    assert (stats["documents_created"], stats["tokens_issued"], stats["in_flight"]) == (1, 1, 0)
    assert stats["max_in_flight"] >= 1
    sb.request("POST", "/_sandbox/faults", json={"path": "*", "kind": "status"})
    assert sb.request("POST", "/_sandbox/reset").json() == {"ok": True}
    assert sb.ledger()["count"] == 0
    assert sb.request("GET", "/_sandbox/faults").json() == {"faults": [], "random": None}
    assert sb.request("GET", "/_sandbox/stats").json()["requests"] == {}
    again = sb.post(INVOICES, INVOICE_EXAMPLE, params=params).json()  # same token still valid
    assert again["Keys"] == [first + 1]


def test_health_and_latency(sb: Sandbox) -> None:
    assert sb.request("GET", "/_sandbox/health").json() == {"ok": True}
    assert sb.request("POST", "/_sandbox/latency", json={"ms": 50, "jitter_ms": 10}).json() == {
        "ms": 50,
        "jitter_ms": 10,
    }
    assert sb.request("POST", "/_sandbox/latency", json={"ms": -1}).status_code == 400

    async def timed() -> float:
        loop = asyncio.get_running_loop()
        transport = httpx.ASGITransport(app=sb.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as client:
            start = loop.time()
            await asyncio.gather(*(client.get("/Login/Token", params={}) for _ in range(5)))
            return loop.time() - start

    elapsed = asyncio.run(timed())
    assert 0.05 <= elapsed < 0.5  # concurrent requests wait in parallel
    assert sb.request("GET", "/_sandbox/stats").json()["max_in_flight"] == 5


def test_max_in_flight_counts_concurrent_requests(sb: Sandbox) -> None:
    sb.request("POST", "/_sandbox/latency", json={"ms": 30})
    params = sb.auth()

    async def go() -> None:
        transport = httpx.ASGITransport(app=sb.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as client:
            await asyncio.gather(*(client.post(INVOICES, params=params, content=INVOICE_EXAMPLE) for _ in range(8)))

    asyncio.run(go())
    stats = sb.request("GET", "/_sandbox/stats").json()
    assert stats["max_in_flight"] == 8 and stats["in_flight"] == 0 and stats["documents_created"] == 8


# -- faults (in-process; connection drops are tested against a real server) -------------------
def test_status_fault_saves_nothing_and_is_consumed(sb: Sandbox) -> None:
    params = sb.auth()
    rule = {"path": INVOICES, "kind": "status", "status": 503, "times": 2, "retry_after": "2"}
    assert sb.request("POST", "/_sandbox/faults", json=rule).json()["added"] == 1
    assert sb.post(ORDERS, ORDER_EXAMPLE, params=params).status_code == 200  # other path unaffected
    for _ in range(2):
        r = sb.post(INVOICES, INVOICE_EXAMPLE, params=params)
        assert (r.status_code, r.headers["retry-after"], r.text) == (503, "2", "Service Unavailable")
    assert sb.post(INVOICES, INVOICE_EXAMPLE, params=params).status_code == 200
    assert sb.ledger(kind="customer_invoice")["count"] == 1
    assert sb.request("GET", "/_sandbox/stats").json()["requests"][f"POST {INVOICES}"] == {"503": 2, "200": 1}


def test_status_after_commit_saves_then_fails(sb: Sandbox) -> None:
    params = sb.auth()
    sb.request("POST", "/_sandbox/faults", json=[{"path": "*", "kind": "status_after_commit", "body": "Boom"}])
    r = sb.post(INVOICES, [invoice(external_id="amb-1")], params=params)
    assert (r.status_code, r.text) == (500, "Boom")
    assert sb.ledger(external_id="amb-1")["count"] == 1


def test_faults_are_consumed_in_order(sb: Sandbox) -> None:
    params = sb.auth()
    sb.request("POST", "/_sandbox/faults", json=[{"kind": "status", "status": 502}, {"kind": "status", "status": 504}])
    assert [sb.post(INVOICES, INVOICE_EXAMPLE, params=params).status_code for _ in range(3)] == [502, 504, 200]


def test_delay_fault_still_saves(sb: Sandbox) -> None:
    params = sb.auth()
    sb.request("POST", "/_sandbox/faults", json={"path": INVOICES, "kind": "delay", "delay_ms": 100})

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=sb.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as client:
            loop = asyncio.get_running_loop()
            start = loop.time()
            r = await client.post(INVOICES, params=params, content=INVOICE_EXAMPLE)
            assert loop.time() - start >= 0.1
            return r

    assert asyncio.run(go()).json()["Success"] is True
    assert sb.ledger()["count"] == 1


@pytest.mark.parametrize(
    "rule",
    [
        {"kind": "explode"},
        {"kind": "status", "status": 99},
        {"kind": "status", "times": 0},
        {"kind": "status", "path": "no-slash"},
        {"kind": "status", "colour": "red"},
        "not an object",
    ],
)
def test_invalid_fault_rules_are_rejected(sb: Sandbox, rule: Any) -> None:
    r = sb.request("POST", "/_sandbox/faults", json=rule)
    assert r.status_code == 400 and r.json()["error"]
    assert sb.request("GET", "/_sandbox/faults").json() == {"faults": [], "random": None}


def test_faults_list_and_delete(sb: Sandbox) -> None:
    sb.request("POST", "/_sandbox/faults", json={"path": INVOICES, "kind": "drop"})
    listed = sb.request("GET", "/_sandbox/faults").json()["faults"]
    assert listed == [
        {"path": INVOICES, "kind": "drop", "status": 503, "times": 1, "delay_ms": 0, "retry_after": None, "body": None}
    ]
    assert sb.request("DELETE", "/_sandbox/faults").json() == {"faults": [], "random": None}


# -- logging ----------------------------------------------------------------------------------
def test_log_lines_never_contain_keys_or_tokens(caplog: pytest.LogCaptureFixture) -> None:
    secret_company, secret_connect = "s3cret-company-key-4711", "s3cret-connect-key-0815"
    config = SandboxConfig()
    config.companies = {secret_company: Company(secret_company, frozenset({secret_connect}), 5, "Hemlig AB")}
    sb = Sandbox(config)
    caplog.set_level(logging.DEBUG, logger="sandbox")
    token = sb.login(secret_company, secret_connect)
    params = sb.auth(token, secret_company, secret_connect)
    sb.post(INVOICES, INVOICE_EXAMPLE, params=params)
    sb.post(INVOICES, INVOICE_EXAMPLE, params={**params, "Token": "wrong-" + token})
    sb.request("POST", "/_sandbox/faults", json={"kind": "status_after_commit"})
    sb.post(FILTER, {}, params=params)
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("sandbox")]
    assert len(lines) >= 5
    assert any("companyApiKey=***" in line and "token=***" in line and "-> 200" in line for line in lines)
    for secret in (secret_company, secret_connect, token):
        assert secret not in caplog.text
