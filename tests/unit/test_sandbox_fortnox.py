"""The sandbox's Fortnox API: OAuth2, documents, validation, lists, the rate limit, ledger, stats and faults."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
from typing import Any

import httpx
import pytest

from sandbox import FortnoxAccount, SandboxConfig
from sandbox.__main__ import build_parser
from sandbox.__main__ import main as sandbox_main
from sandbox.config import config_from_dict
from sandbox.server import build_config
from tests.unit.sandbox_app import FakeClock, InProcessSandbox

CLIENT_ID, CLIENT_SECRET = "demo-fortnox-client", "demo-fortnox-secret"
REFRESH, TENANT = "demo-fortnox-refresh", "demo-fortnox-tenant"
TOKEN_PATH = "/oauth-v1/token"
UNAUTHORIZED = {"ErrorInformation": {"error": 1, "message": "Invalid authorization", "code": 2000311}}
EASY_VAT = "An account must be provided when using a custom VAT rate and EasyVat has been enabled."


class Sandbox(InProcessSandbox):
    """The in-process sandbox with Fortnox's calls: OAuth and bearer requests."""

    def oauth(
        self, form: dict[str, str], auth: tuple[str, str] = (CLIENT_ID, CLIENT_SECRET), **headers: str
    ) -> httpx.Response:
        return self.request("POST", TOKEN_PATH, data=form, auth=auth, headers=headers)

    def token(self, client: tuple[str, str] = (CLIENT_ID, CLIENT_SECRET), tenant: str = TENANT) -> str:
        """A fresh access token by the (repeatable) client-credentials flow."""
        r = self.oauth({"grant_type": "client_credentials"}, client, TenantId=tenant)
        assert r.status_code == 200, r.text
        return str(r.json()["access_token"])

    def call(self, method: str, path: str, token: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
        return self.request(method, path, headers=headers, **kwargs)


def invoice(reference: str | None = "ext-1", **fields: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "CustomerNumber": "3879",
        "InvoiceDate": "2026-02-18",
        "InvoiceRows": [{"ArticleNumber": "A11", "DeliveredQuantity": "2", "Price": 100, "VAT": 25}],
        **fields,
    }
    if reference is not None:
        doc["ExternalInvoiceReference1"] = reference
    return doc


def order(reference: str = "ord-1", **fields: Any) -> dict[str, Any]:
    doc = {
        "CustomerNumber": "013",
        "OrderDate": "2026-01-30",
        "ExternalInvoiceReference1": reference,
        "OrderRows": [{"ArticleNumber": "100-5t", "OrderedQuantity": 3, "DeliveredQuantity": "3", "Price": 350}],
        "EmailInformation": {"EmailAddressTo": "kund@example.com"},
        "Labels": [{"Id": 4}],
    }
    return {**doc, **fields}


def offer(**fields: Any) -> dict[str, Any]:
    return {
        "CustomerNumber": "1006",
        "OfferDate": "2026-03-01",
        "ExpireDate": "2026-03-31",
        "OfferRows": [{"Description": "Montage", "Quantity": "1.5", "Price": 800, "VAT": 25}],
        **fields,
    }


@pytest.fixture
def sb() -> Sandbox:
    return Sandbox()


# -- OAuth2 -------------------------------------------------------------------------------------
def test_refresh_token_works_once_and_hands_out_a_successor(sb: Sandbox) -> None:
    first = sb.oauth({"grant_type": "refresh_token", "refresh_token": REFRESH})
    assert first.status_code == 200 and first.headers["cache-control"] == "no-store"
    body = first.json()
    assert set(body) == {"access_token", "refresh_token", "expires_in", "token_type", "scope"}
    assert (body["expires_in"], body["token_type"]) == (3600, "bearer") and "invoice" in body["scope"].split()
    assert body["refresh_token"] != REFRESH and len(body["access_token"]) >= 32

    reused = sb.oauth({"grant_type": "refresh_token", "refresh_token": REFRESH})
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant" and "already been used" in reused.json()["error_description"]
    assert sb.stats()["fortnox"]["refresh_token_reuse"] == 1

    second = sb.oauth({"grant_type": "refresh_token", "refresh_token": body["refresh_token"]})
    assert second.status_code == 200
    assert sb.call("GET", "/3/invoices", second.json()["access_token"]).status_code == 200
    assert sb.call("GET", "/3/invoices", body["access_token"]).status_code == 200  # the older access token still lives
    never_issued = sb.oauth({"grant_type": "refresh_token", "refresh_token": "made-up"})
    assert never_issued.json()["error"] == "invalid_grant"
    stats = sb.stats()["fortnox"]
    assert (stats["refresh_token_reuse"], stats["tokens_issued"]) == (1, 2)  # made-up is no reuse

    # The configured first refresh token is valid once per PROCESS: a reset does not revive it.
    sb.request("POST", "/_sandbox/reset")
    assert sb.oauth({"grant_type": "refresh_token", "refresh_token": REFRESH}).status_code == 400
    assert sb.stats()["fortnox"]["refresh_token_reuse"] == 1


def test_a_refresh_token_of_another_client_is_refused_and_not_spent() -> None:
    config = SandboxConfig()
    config.fortnox_accounts["other"] = FortnoxAccount("other", "other-secret", 77, "Annat AB", refresh_token="r-77")
    sb = Sandbox(config)
    assert sb.oauth({"grant_type": "refresh_token", "refresh_token": "r-77"}).json()["error"] == "invalid_grant"
    assert (
        sb.oauth({"grant_type": "refresh_token", "refresh_token": "r-77"}, ("other", "other-secret")).status_code == 200
    )


def test_client_credentials_with_tenant_id(sb: Sandbox) -> None:
    r = sb.oauth({"grant_type": "client_credentials"}, TenantId=TENANT)
    assert r.status_code == 200
    body = r.json()
    assert "refresh_token" not in body and body["expires_in"] == 3600 and body["token_type"] == "bearer"
    assert sb.call("GET", "/3/orders", body["access_token"]).status_code == 200
    missing = sb.oauth({"grant_type": "client_credentials"})
    assert (missing.status_code, missing.json()["error"]) == (400, "invalid_request")
    wrong = sb.oauth({"grant_type": "client_credentials"}, TenantId="someone-else")
    assert (wrong.status_code, wrong.json()["error"]) == (400, "invalid_grant")


def test_client_credentials_need_a_service_account() -> None:
    config = SandboxConfig()
    config.fortnox_accounts = {"c": FortnoxAccount("c", "s", 1, "Ett AB", refresh_token="r")}
    r = Sandbox(config).oauth({"grant_type": "client_credentials"}, ("c", "s"), TenantId=TENANT)
    assert (r.status_code, r.json()["error"]) == (400, "unauthorized_client")


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Basic " + base64.b64encode(b"demo-fortnox-client:wrong").decode()},
        {"Authorization": "Basic " + base64.b64encode(b"nobody:demo-fortnox-secret").decode()},
        {"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()},
        {"Authorization": "Basic !!not-base64!!"},
        {"Authorization": "Bearer demo-fortnox-secret"},
        {},
    ],
)
def test_bad_client_credentials_are_401_invalid_client(sb: Sandbox, headers: dict[str, str]) -> None:
    r = sb.request("POST", TOKEN_PATH, data={"grant_type": "refresh_token", "refresh_token": REFRESH}, headers=headers)
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    assert r.headers["www-authenticate"].startswith("Basic")
    assert sb.stats()["fortnox"]["tokens_issued"] == 0
    # Nothing was spent: the real client can still use the first refresh token.
    assert sb.oauth({"grant_type": "refresh_token", "refresh_token": REFRESH}).status_code == 200


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({}, "invalid_request"),
        ({"grant_type": "refresh_token"}, "invalid_request"),
        ({"grant_type": "password", "username": "u"}, "unsupported_grant_type"),
    ],
)
def test_malformed_token_requests_are_400(sb: Sandbox, form: dict[str, str], error: str) -> None:
    r = sb.oauth(form)
    assert r.status_code == 400 and r.json()["error"] == error and r.json()["error_description"]


def test_token_request_must_be_form_encoded(sb: Sandbox) -> None:
    r = sb.request("POST", TOKEN_PATH, json={"grant_type": "client_credentials"}, auth=(CLIENT_ID, CLIENT_SECRET))
    assert (r.status_code, r.json()["error"]) == (400, "invalid_request")


# -- authentication of API calls ------------------------------------------------------------------
def test_api_calls_need_a_valid_bearer_token_401_lower_case() -> None:
    clock = FakeClock()
    config = SandboxConfig(fortnox_token_ttl_seconds=600)
    sb = Sandbox(config, clock)
    issued = sb.oauth({"grant_type": "client_credentials"}, TenantId=TENANT).json()
    token = issued["access_token"]
    assert issued["expires_in"] == 600
    for headers in ({}, {"Authorization": "Bearer forged"}, {"Authorization": f"Basic {token}"}):
        r = sb.request("POST", "/3/invoices", json={"Invoice": invoice()}, headers=headers)
        assert (r.status_code, r.json()) == (401, UNAUTHORIZED)
    clock.now += 599
    assert sb.call("POST", "/3/invoices", token, json={"Invoice": invoice()}).status_code == 201
    clock.now += 1
    r = sb.call("GET", "/3/articles-v2/A1", token)
    assert (r.status_code, r.json()) == (401, UNAUTHORIZED)
    fresh = sb.token()
    assert sb.request("POST", "/_sandbox/tokens/expire").json() == {"expired": 1}
    assert sb.call("GET", "/3/invoices", fresh).status_code == 401
    assert sb.ledger(target="fortnox")["count"] == 1


# -- creating documents ---------------------------------------------------------------------------
def test_each_kind_is_created_numbered_per_kind_and_echoed(sb: Sandbox) -> None:
    token = sb.token()
    first = sb.call("POST", "/3/invoices", token, json={"Invoice": invoice("a")})
    assert first.status_code == 201
    created = first.json()["Invoice"]
    rows = created.pop("InvoiceRows")
    for name, value in invoice("a").items():
        assert name == "InvoiceRows" or created[name] == value  # every field as sent
    (row,) = rows  # the row as sent, plus the RowId Fortnox generates
    assert isinstance(row.pop("RowId"), int) and row == invoice("a")["InvoiceRows"][0]
    assert created["DocumentNumber"] == "1" and created["@url"] == "http://sandbox/3/invoices/1"
    assert created["CustomerName"] == "Rasmus Bygg AB" and created["Total"] == 250.0  # 2 x 100 + 25 % VAT
    assert (
        sb.call("POST", "/3/invoices", token, json={"Invoice": invoice("b")}).json()["Invoice"]["DocumentNumber"] == "2"
    )

    placed = sb.call("POST", "/3/orders", token, json={"Order": order()})
    assert placed.status_code == 201
    assert placed.json()["Order"]["DocumentNumber"] == "1" and placed.json()["Order"]["Labels"] == [{"Id": 4}]
    quoted = sb.call("POST", "/3/offers", token, json={"Offer": offer()})
    assert quoted.status_code == 201 and quoted.json()["Offer"]["DocumentNumber"] == "1"
    assert quoted.json()["Offer"]["Total"] == 1500.0  # 1.5 x 800 + 25 %

    assigned = sb.call("POST", "/3/articles-v2", token, json={"Article": {"Description": "Skruv", "SalesPrice": 2.5}})
    assert assigned.status_code == 201
    assert assigned.json()["Article"] == {
        "Description": "Skruv",
        "SalesPrice": 2.5,
        "ArticleNumber": "1",
        "@url": "http://sandbox/3/articles-v2/1",
    }
    kept = sb.call(
        "POST", "/3/articles-v2", token, json={"Article": {"Description": "Hammare", "ArticleNumber": "hammer"}}
    )
    assert kept.status_code == 201 and kept.json()["Article"]["ArticleNumber"] == "hammer"
    again = sb.call(
        "POST", "/3/articles-v2", token, json={"Article": {"Description": "Igen", "ArticleNumber": "hammer"}}
    )
    assert again.status_code == 400
    assert again.json()["ErrorInformation"]["Message"] == "Artikelnummer hammer används redan. Fält: ArticleNumber."
    assert sb.call("GET", "/3/articles-v2/hammer", token).json() == {"Article": kept.json()["Article"]}
    missing = sb.call("GET", "/3/articles-v2/toolbox", token)
    assert missing.status_code == 404 and set(missing.json()["ErrorInformation"]) == {"Error", "Message", "Code"}
    assert [d["kind"] for d in sb.ledger()["documents"]] == [
        "customer_invoice",
        "customer_invoice",
        "order",
        "offer",
        "article",
        "article",
    ]


def test_document_numbers_are_per_account_and_a_chosen_one_is_kept_if_free() -> None:
    config = SandboxConfig()
    config.fortnox_accounts["other"] = FortnoxAccount("other", "pw", 77, "Annat AB", tenant_id="t-77")
    sb = Sandbox(config)
    token, other = sb.token(), sb.token(("other", "pw"), "t-77")
    chosen = sb.call("POST", "/3/invoices", token, json={"Invoice": invoice(DocumentNumber="2")})
    assert chosen.status_code == 201 and chosen.json()["Invoice"]["DocumentNumber"] == "2"
    numbers = [sb.call("POST", "/3/invoices", token, json={"Invoice": invoice()}).json()["Invoice"]["DocumentNumber"]]
    numbers.append(
        sb.call("POST", "/3/invoices", token, json={"Invoice": invoice()}).json()["Invoice"]["DocumentNumber"]
    )
    assert numbers == ["1", "3"]  # 2 was taken
    taken = sb.call("POST", "/3/invoices", token, json={"Invoice": invoice(DocumentNumber="3")})
    assert taken.status_code == 400 and "Dokumentnummer 3 används redan" in taken.json()["ErrorInformation"]["Message"]
    assert sb.call("POST", "/3/invoices", other, json={"Invoice": invoice()}).json()["Invoice"]["DocumentNumber"] == "1"
    assert sb.call("GET", "/3/invoices", other).json()["MetaInformation"]["@TotalResources"] == 1


# -- validation ---------------------------------------------------------------------------------
def _without(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != name}


def _row(**fields: Any) -> dict[str, Any]:
    return invoice(InvoiceRows=[{"ArticleNumber": "A11", "DeliveredQuantity": "2", "Price": 100, **fields}])


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"invoice": invoice()}, 2001392, None),  # the wrapper is "Invoice"
        ({"Invoice": [invoice()]}, 2001392, None),
        ({"Invoice": invoice(), "Extra": 1}, 2001399, "Extra"),
        ({"Invoice": invoice(Foo=1)}, 2001399, "Foo"),
        ({"Invoice": _row(Foo=1)}, 2001399, "InvoiceRows[0].Foo"),
        ({"Invoice": _row(Price="100")}, 2000108, "InvoiceRows[0].Price"),
        ({"Invoice": _row(Price=True)}, 2000108, "InvoiceRows[0].Price"),
        ({"Invoice": _row(DeliveredQuantity="två")}, 2000108, "InvoiceRows[0].DeliveredQuantity"),
        ({"Invoice": _row(AccountNumber=3001.5)}, 2000108, "InvoiceRows[0].AccountNumber"),
        ({"Invoice": _row(HouseWork="true")}, 2000134, "InvoiceRows[0].HouseWork"),
        ({"Invoice": invoice(CustomerNumber=3879)}, 2000106, "CustomerNumber"),
        ({"Invoice": _without(invoice(), "CustomerNumber")}, 2099001, "CustomerNumber"),
        ({"Invoice": invoice(CustomerNumber="")}, 2099001, "CustomerNumber"),
        ({"Invoice": invoice(CustomerNumber="UNKNOWN-3")}, 2099003, "CustomerNumber"),
        ({"Invoice": invoice(InvoiceDate="18/02/2026")}, 2099002, "InvoiceDate"),
        ({"Invoice": invoice(DueDate="2026-02-30")}, 2099002, "DueDate"),
        ({"Invoice": invoice(InvoiceDate="2026-02-18T10:00:00")}, 2099002, "InvoiceDate"),
        ({"Invoice": invoice(EDIInformation={"EDIStatus": 5})}, 2000106, "EDIInformation.EDIStatus"),
        ({"Invoice": invoice(Labels=[{"Id": "x"}])}, 2000108, "Labels[0].Id"),
        ({"Invoice": invoice(InvoiceRows={"Price": 1})}, 2001392, "InvoiceRows"),
        ({"Invoice": invoice(DocumentNumber="A-1")}, 2000108, "DocumentNumber"),
    ],
)
def test_invoice_validation_errors_are_capitalised_and_name_the_field(
    sb: Sandbox, body: dict[str, Any], code: int, field: str | None
) -> None:
    r = sb.call("POST", "/3/invoices", sb.token(), json=body)
    assert r.status_code == 400
    info = r.json()["ErrorInformation"]
    assert set(info) == {"Error", "Message", "Code"} and info["Error"] == 1 and info["Code"] == code
    if field is not None:
        assert info["Message"].endswith(f"Fält: {field}.")
    assert sb.ledger()["count"] == 0


@pytest.mark.parametrize(
    ("content", "code"),
    [(b"", 2001392), (b"{not json", 2002115), (b'{"Invoice": {"Price": NaN}}', 2002115)],
)
def test_unreadable_bodies(sb: Sandbox, content: bytes, code: int) -> None:
    r = sb.call("POST", "/3/invoices", sb.token(), content=content, headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["ErrorInformation"]["Code"] == code


def test_valid_shapes_of_every_kind_are_accepted(sb: Sandbox) -> None:
    token = sb.token()
    rich_invoice = invoice(
        DueDate="2026-03-20",
        VATIncluded=False,
        Freight=49.0,
        EmailInformation={"EmailAddressTo": "a@b.se", "EmailSubject": "Faktura"},
        EDIInformation={"EDIGlobalLocationNumber": "7350000000000"},
        InvoiceRows=[
            {"ArticleNumber": "A11", "DeliveredQuantity": 2.5, "Price": 10, "Discount": 10, "DiscountType": "PERCENT"},
            {"Description": "Fritext"},
            {"ArticleNumber": "B", "DeliveredQuantity": "1", "Price": 99, "VAT": 12, "AccountNumber": 3001.0},
            {"Bundle": {"Revision": 1, "SubRows": [{"ArticleNumber": "C", "BundleSubItem": {"FixedPrice": True}}]}},
        ],
        Comments=None,  # null counts as absent
    )
    assert sb.call("POST", "/3/invoices", token, json={"Invoice": rich_invoice}).status_code == 201
    rows = [{"OrderedQuantity": "4", "ReservedQuantity": 1, "StockPointId": "S1", "Price": 5}]
    assert (
        sb.call(
            "POST", "/3/orders", token, json={"Order": order(OrderRows=rows, DeliveryState="reservation")}
        ).status_code
        == 201
    )
    assert sb.call("POST", "/3/offers", token, json={"Offer": offer(YourReferenceNumber="Y-1")}).status_code == 201
    article = {
        "Description": "Verktygslåda",
        "Bundle": {"SubItems": [{"ArticleNumber": "hammer", "Quantity": 2, "FixedPrice": False}]},
        "Depth": 10,
        "Type": "STOCK",
    }
    assert sb.call("POST", "/3/articles-v2", token, json={"Article": article}).status_code == 201
    bad_article = sb.call("POST", "/3/articles-v2", token, json={"Article": {"SalesPrice": 1}})
    assert bad_article.json()["ErrorInformation"]["Message"] == "Description måste anges. Fält: Description."
    # Order rows have no PriceExcludingVAT, offer rows no DeliveredQuantity: the schemas differ per kind.
    r = sb.call("POST", "/3/orders", token, json={"Order": order(OrderRows=[{"PriceExcludingVAT": 1}])})
    assert r.json()["ErrorInformation"]["Code"] == 2001399
    r = sb.call("POST", "/3/offers", token, json={"Offer": offer(OfferRows=[{"DeliveredQuantity": 1}])})
    assert r.json()["ErrorInformation"]["Code"] == 2001399


@pytest.mark.parametrize(
    ("path", "wrapper", "make", "rows"),
    [
        ("/3/invoices", "Invoice", invoice, "InvoiceRows"),
        ("/3/orders", "Order", order, "OrderRows"),
        ("/3/offers", "Offer", offer, "OfferRows"),
    ],
)
def test_easy_vat_needs_an_account_for_a_custom_vat_rate(
    sb: Sandbox, path: str, wrapper: str, make: Any, rows: str
) -> None:
    token = sb.token()

    def post(*row_list: dict[str, Any]) -> httpx.Response:
        return sb.call("POST", path, token, json={wrapper: make(**{rows: list(row_list)})})

    r = post({"Price": 10, "VAT": 25}, {"Price": 10, "VAT": 7.5})
    assert r.status_code == 400
    info = r.json()["ErrorInformation"]
    assert info["Code"] == 2004167 and info["Message"] == f"{EASY_VAT} Fält: {rows}[1].VAT."
    bundle = {"Bundle": {"SubRows": [{"Price": 1, "VAT": 18}]}}
    assert post(bundle).json()["ErrorInformation"]["Message"] == f"{EASY_VAT} Fält: {rows}[0].Bundle.SubRows[0].VAT."
    assert all(post({"Price": 10, "VAT": vat}).status_code == 201 for vat in (25, 12, 6, 0, 25.0))
    assert post({"Price": 10, "VAT": 7.5, "AccountNumber": 3001}).status_code == 201


def test_easy_vat_off_allows_custom_rates() -> None:
    config = SandboxConfig()
    config.fortnox_accounts = {
        "c": FortnoxAccount("c", "s", 1, "Ett AB", tenant_id="t", easy_vat=False),
    }
    sb = Sandbox(config)
    r = sb.call("POST", "/3/invoices", sb.token(("c", "s"), "t"), json={"Invoice": _row(VAT=7.5)})
    assert r.status_code == 201


# -- lists --------------------------------------------------------------------------------------
def test_list_filters_paging_and_meta_information(sb: Sandbox) -> None:
    token = sb.token()
    days = ["2026-01-05", "2026-01-20", "2026-02-01", "2026-02-15", "2026-03-01"]
    for i, day in enumerate(days):
        doc = invoice(f"ref-{i}", InvoiceDate=day, CustomerNumber="1006" if i % 2 else "3879")
        assert sb.call("POST", "/3/invoices", token, json={"Invoice": doc}).status_code == 201
    sb.call("POST", "/3/orders", token, json={"Order": order("ref-1")})  # an order is not an invoice

    def listed(**params: str) -> dict[str, Any]:
        r = sb.call("GET", "/3/invoices", token, params=params)
        assert r.status_code == 200, r.text
        result: dict[str, Any] = r.json()
        return result

    found = listed(externalinvoicereference1="ref-1")
    assert found["MetaInformation"] == {"@TotalResources": 1, "@TotalPages": 1, "@CurrentPage": 1}
    (item,) = found["Invoices"]
    assert (item["DocumentNumber"], item["ExternalInvoiceReference1"], item["InvoiceDate"]) == ("2", "ref-1", days[1])
    assert item["@url"] == "http://sandbox/3/invoices/2" and item["Total"] == 250.0 and item["Balance"] == 250.0
    assert set(item) >= {"CustomerName", "CustomerNumber", "DueDate", "Sent", "Cancelled", "Booked", "Currency", "OCR"}
    assert listed(externalinvoicereference1="nope") == {
        "MetaInformation": {"@TotalResources": 0, "@TotalPages": 1, "@CurrentPage": 1},
        "Invoices": [],
    }
    assert [i["DocumentNumber"] for i in listed(documentnumber="4")["Invoices"]] == ["4"]
    assert [i["DocumentNumber"] for i in listed(customernumber="1006")["Invoices"]] == ["2", "4"]
    between = listed(fromdate="2026-01-20", todate="2026-02-15")["Invoices"]
    assert [i["InvoiceDate"] for i in between] == days[1:4]
    page2 = listed(limit="2", page="2")
    assert page2["MetaInformation"] == {"@TotalResources": 5, "@TotalPages": 3, "@CurrentPage": 2}
    assert [i["DocumentNumber"] for i in page2["Invoices"]] == ["3", "4"]
    assert listed(sortby="total", filter="unpaid")["MetaInformation"]["@TotalResources"] == 5  # accepted, ignored

    orders = sb.call("GET", "/3/orders", token, params={"externalinvoicereference1": "ref-1"}).json()
    assert [(o["DocumentNumber"], o["ExternalInvoiceReference1"]) for o in orders["Orders"]] == [("1", "ref-1")]
    assert set(orders["Orders"][0]) == {
        "@url", "Cancelled", "Currency", "CustomerName", "CustomerNumber", "DeliveryDate", "DocumentNumber",
        "ExternalInvoiceReference1", "ExternalInvoiceReference2", "OrderDate", "OrderType", "Project", "Sent", "Total",
    }  # fmt: skip
    assert sb.call("GET", "/3/offers", token).json()["Offers"] == []


@pytest.mark.parametrize(
    "params",
    [{"limit": "0"}, {"limit": "501"}, {"page": "0"}, {"page": "x"}, {"fromdate": "2026-13-01"}, {"todate": "igår"}],
)
def test_invalid_list_parameters_are_400(sb: Sandbox, params: dict[str, str]) -> None:
    r = sb.call("GET", "/3/invoices", sb.token(), params=params)
    assert r.status_code == 400
    info = r.json()["ErrorInformation"]
    (name,) = params
    assert info["Code"] == 2000588 and f"Fält: {name}=" in info["Message"]


def test_a_document_created_without_a_date_is_dated_today() -> None:
    clock = FakeClock()  # 2026-02-18 07:33:20 UTC
    sb = Sandbox(clock=clock)
    token = sb.token()
    created = sb.call("POST", "/3/invoices", token, json={"Invoice": _without(invoice(), "InvoiceDate")}).json()
    assert created["Invoice"]["InvoiceDate"] == "2026-02-18"
    assert sb.call("GET", "/3/invoices", token, params={"fromdate": "2026-02-18"}).json()["Invoices"][0]["InvoiceDate"]


# -- the rate limit -----------------------------------------------------------------------------
def test_rate_limit_is_a_sliding_window_per_access_token() -> None:
    clock = FakeClock()
    config = SandboxConfig(fortnox_rate_limit=3, fortnox_rate_window_seconds=5.0)
    sb = Sandbox(config, clock)
    token, other = sb.token(), sb.token()
    start = clock.now
    for offset in (0, 1, 2):
        clock.now = start + offset
        assert sb.call("GET", "/3/invoices", token).status_code == 200
    limited = sb.call("POST", "/3/invoices", token, json={"Invoice": invoice()})
    assert (limited.status_code, limited.json()) == (
        429,
        {"ErrorInformation": {"error": 1, "message": "Too many requests", "code": 2099006}},
    )
    assert "retry-after" not in limited.headers and sb.ledger()["count"] == 0
    assert sb.call("GET", "/3/invoices", other).status_code == 200  # every token has its own window
    clock.now = start + 4.999
    assert sb.call("GET", "/3/invoices", token).status_code == 429
    clock.now = start + 5  # the request at `start` has left the window
    assert sb.call("GET", "/3/invoices", token).status_code == 200
    assert sb.call("GET", "/3/invoices", token).status_code == 429  # 1, 2 and 5 are in it
    clock.now = start + 7  # the refused ones took no slot
    assert sb.call("GET", "/3/invoices", token).status_code == 200

    stats = sb.stats()
    fortnox = stats["fortnox"]
    label = f"{CLIENT_ID}#1"
    assert (fortnox["rate_limited"], fortnox["rate_limited_by_token"]) == (3, {label: 3})
    # Most seen in one window: at start + 5, the requests at 1, 2, 2 (refused), 4.999 (refused), 5 and 5 (refused).
    assert fortnox["max_in_window"] == 6 and fortnox["max_in_window_by_token"] == {label: 6, f"{CLIENT_ID}#2": 1}
    assert fortnox["requests"] == 9 and fortnox["injected_429"] == 0
    assert fortnox["rate_limit"] == {"limit": 3, "window_seconds": 5.0}
    assert stats["requests"]["GET /3/invoices"] == {"200": 6, "429": 2}
    assert token not in json.dumps(stats)  # tokens appear under their labels only


def test_rate_limit_is_measured_on_arrival_before_the_latency() -> None:
    clock = FakeClock()
    sb = Sandbox(SandboxConfig(fortnox_rate_limit=1, fortnox_rate_window_seconds=5.0, latency_ms=50), clock)
    token = sb.token()

    async def go() -> list[int]:
        transport = httpx.ASGITransport(app=sb.app)
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://sandbox", headers=headers) as client:

            async def later() -> httpx.Response:
                await asyncio.sleep(0.01)  # the first request is inside its simulated latency now
                clock.now += 10
                return await client.get("/3/invoices")

            responses = await asyncio.gather(client.get("/3/invoices"), later())
            return [r.status_code for r in responses]

    # Arrivals 10 s apart: both fit a limit of 1 per 5 s. Counted after the latency, both would
    # fall at the same instant and the second would be refused.
    assert asyncio.run(go()) == [200, 200]


def test_rate_limit_changes_at_run_time(sb: Sandbox) -> None:
    assert sb.request("GET", "/_sandbox/fortnox/ratelimit").json() == {"limit": 25, "window_seconds": 5.0}
    token = sb.token()
    assert [sb.call("GET", "/3/invoices", token).status_code for _ in range(3)] == [200, 200, 200]
    r = sb.request("POST", "/_sandbox/fortnox/ratelimit", json={"limit": 3})
    assert r.json() == {"limit": 3, "window_seconds": 5.0}
    assert sb.call("GET", "/3/invoices", token).status_code == 429  # applies at once to the running window
    r = sb.request("POST", "/_sandbox/fortnox/ratelimit", json={"limit": 4, "window_seconds": 0.5})
    assert r.json() == {"limit": 4, "window_seconds": 0.5}
    for bad in ({"limit": 0}, {"limit": 2.5}, {"window_seconds": 0}, {"window_seconds": "5"}, {"colour": 1}, {}, [1]):
        assert sb.request("POST", "/_sandbox/fortnox/ratelimit", json=bad).status_code == 400
    assert sb.request("GET", "/_sandbox/fortnox/ratelimit").json() == {"limit": 4, "window_seconds": 0.5}


def test_token_endpoint_and_other_apis_are_not_rate_limited() -> None:
    sb = Sandbox(SandboxConfig(fortnox_rate_limit=1))
    tokens = [sb.token() for _ in range(3)]
    assert len(set(tokens)) == 3
    softone = {"companyApiKey": "demo-company-key", "connectApiKey": "demo-connect-key"}
    assert sb.request("POST", "/Login/Token", params=softone).status_code == 200
    assert sb.stats()["fortnox"]["requests"] == 0


# -- ledger and stats ---------------------------------------------------------------------------
def test_ledger_fields_and_target_filter(sb: Sandbox) -> None:
    token = sb.token()
    sb.call("POST", "/3/invoices", token, json={"Invoice": invoice("inv-ref")})
    sb.call("POST", "/3/orders", token, json={"Order": order("ord-ref")})
    sb.call("POST", "/3/offers", token, json={"Offer": offer()})
    sb.call("POST", "/3/articles-v2", token, json={"Article": {"Description": "Skruv", "ArticleNumber": "S-1"}})
    softone = {"companyApiKey": "demo-company-key", "connectApiKey": "demo-connect-key"}
    login = sb.request("POST", "/Login/Token", params=softone).json()["Token"]
    softone_doc = {
        "CustomerNr": "3879",
        "InvoiceDate": "2026-02-18",
        "OriginType": 6,
        "InvoiceRows": [{"CustomerRowType": 2, "RowNr": 1, "ProductNr": "A", "Quantity": 1, "UnitPrice": 1}],
    }
    sb.request("POST", "/Economy/Billing/CustomerInvoices", params={**softone, "token": login}, json=[softone_doc])

    documents = sb.ledger(target="fortnox")["documents"]
    summary = [(d["kind"], d["key"], d["number"], d["external_id"], d["customer_nr"]) for d in documents]
    assert summary == [
        ("customer_invoice", "1", "1", "inv-ref", "3879"),
        ("order", "1", "1", "ord-ref", "013"),
        ("offer", "1", "1", None, "1006"),
        ("article", "S-1", "S-1", "S-1", None),
    ]
    assert {d["target"] for d in documents} == {"fortnox"} and {d["company_id"] for d in documents} == {8051}
    assert [d["invoice_date"] for d in documents] == ["2026-02-18", "2026-01-30", "2026-03-01", None]
    (softone_entry,) = sb.ledger(target="softone")["documents"]
    assert isinstance(softone_entry["key"], int) and softone_entry["target"] == "softone"
    assert sb.ledger(target="fortnox", kind="customer_invoice")["count"] == 1
    assert sb.ledger(external_id="S-1", full="1")["documents"][0]["document"] == {
        "Description": "Skruv",
        "ArticleNumber": "S-1",
    }
    assert sb.ledger(company_id="8051")["count"] == 4
    assert sb.request("GET", "/_sandbox/ledger", params={"target": "sap"}).status_code == 400
    assert sb.stats()["documents_created"] == 5


def test_softone_filter_does_not_see_fortnox_invoices_of_the_same_company_id() -> None:
    config = SandboxConfig()
    config.fortnox_accounts = {"c": FortnoxAccount("c", "s", 1592, "Demo AB i Fortnox", tenant_id="t")}
    sb = Sandbox(config)
    sb.call("POST", "/3/invoices", sb.token(("c", "s"), "t"), json={"Invoice": invoice()})
    softone = {"companyApiKey": "demo-company-key", "connectApiKey": "demo-connect-key"}
    login = sb.request("POST", "/Login/Token", params=softone).json()["Token"]
    found = sb.request("POST", "/Economy/Billing/CustomerInvoices/Filter", params={**softone, "token": login}, json={})
    assert found.status_code == 200 and found.json() == []


def test_stats_count_the_new_routes_with_article_numbers_folded(sb: Sandbox) -> None:
    token = sb.token()
    for number in ("a", "b", "c"):
        sb.call("GET", f"/3/articles-v2/{number}", token)
    sb.call("POST", "/3/articles-v2", token, json={"Article": {"Description": "x"}})
    requests = sb.stats()["requests"]
    assert requests["GET /3/articles-v2/{ArticleNumber}"] == {"404": 3}
    assert requests["POST /3/articles-v2"] == {"201": 1} and requests["POST /oauth-v1/token"] == {"200": 1}


def test_reset_keeps_tokens_and_numbers_and_frees_chosen_article_numbers(sb: Sandbox) -> None:
    token = sb.token()
    sb.call("POST", "/3/invoices", token, json={"Invoice": invoice()})
    sb.call("POST", "/3/articles-v2", token, json={"Article": {"Description": "x", "ArticleNumber": "A-1"}})
    sb.request("POST", "/_sandbox/reset")
    assert sb.ledger()["count"] == 0 and sb.stats()["fortnox"]["requests"] == 0
    assert sb.call("GET", "/3/invoices", token).json()["Invoices"] == []  # same token still valid
    assert sb.call("GET", "/3/articles-v2/A-1", token).status_code == 404
    again = sb.call("POST", "/3/articles-v2", token, json={"Article": {"Description": "x", "ArticleNumber": "A-1"}})
    assert again.status_code == 201
    assert sb.call("POST", "/3/invoices", token, json={"Invoice": invoice()}).json()["Invoice"]["DocumentNumber"] == "2"


# -- faults -------------------------------------------------------------------------------------
def test_fault_rules_apply_to_fortnox_paths_and_injected_429s_count_apart(sb: Sandbox) -> None:
    token = sb.token()
    rules = [
        {"path": "/3/invoices", "kind": "status", "status": 429, "retry_after": "3"},
        {"path": "/3/orders", "kind": "status_after_commit", "status": 502},
    ]
    assert sb.request("POST", "/_sandbox/faults", json=rules).json()["added"] == 2
    r = sb.call("POST", "/3/invoices", token, json={"Invoice": invoice()})
    assert (r.status_code, r.headers["retry-after"]) == (429, "3")
    assert sb.call("POST", "/3/orders", token, json={"Order": order("amb")}).status_code == 502
    assert sb.ledger(target="fortnox")["documents"][0]["external_id"] == "amb"  # saved, answer lost
    fortnox = sb.stats()["fortnox"]
    assert (fortnox["injected_429"], fortnox["rate_limited"]) == (1, 0)
    assert sb.call("POST", "/3/invoices", token, json={"Invoice": invoice()}).status_code == 201


def test_star_rules_skip_the_token_endpoint_but_a_named_rule_hits_it(sb: Sandbox) -> None:
    sb.request("POST", "/_sandbox/faults", json={"path": "*", "kind": "status", "status": 503})
    token = sb.token()  # not hit by "*"
    assert sb.call("GET", "/3/articles-v2/x", token).status_code == 503
    sb.request("POST", "/_sandbox/faults", json={"path": TOKEN_PATH, "kind": "status", "status": 503})
    assert sb.oauth({"grant_type": "refresh_token", "refresh_token": REFRESH}).status_code == 503
    # The 503 came before the token endpoint ran: the refresh token was not spent.
    assert sb.oauth({"grant_type": "refresh_token", "refresh_token": REFRESH}).status_code == 200


def test_random_faults_hit_fortnox_routes_with_fortnox_bodies() -> None:
    config = SandboxConfig()
    sb = Sandbox(config)
    token = sb.token()
    sb.request("POST", "/_sandbox/faults", json={"probabilities": {"429": 1.0}, "retry_after": 2, "seed": 1})
    assert (
        sb.oauth({"grant_type": "client_credentials"}, TenantId=TENANT).status_code == 200
    )  # never the token endpoint
    r = sb.call("POST", "/3/invoices", token, json={"Invoice": invoice()})
    assert (r.status_code, r.headers["retry-after"]) == (429, "2")
    assert r.json()["ErrorInformation"]["message"] == "Too many requests"
    fortnox = sb.stats()["fortnox"]
    assert (fortnox["injected_429"], fortnox["rate_limited"], sb.stats()["faults"]["429"]) == (1, 0, 1)

    sb.request("POST", "/_sandbox/faults", json={"probabilities": {"500_after_commit": 1.0}, "seed": 1})
    r = sb.call("POST", "/3/invoices", token, json={"Invoice": invoice("lost-answer")})
    assert r.status_code == 500
    assert r.json() == {"ErrorInformation": {"Error": 1, "Message": "System exception", "Code": 1000003}}
    assert sb.ledger(external_id="lost-answer")["count"] == 1

    sb.request("POST", "/_sandbox/faults", json={"probabilities": {"token_expiry": 1.0}, "seed": 1})
    fresh = sb.token()
    assert sb.call("GET", "/3/invoices", fresh).status_code == 200  # never on a token's first use
    assert sb.call("GET", "/3/invoices", fresh).json() == UNAUTHORIZED
    assert sb.stats()["faults"]["token_expiry"] == 1


def test_early_retries_after_a_random_429_are_counted_per_fortnox_account() -> None:
    clock = FakeClock()
    sb = Sandbox(clock=clock)
    token = sb.token()
    sb.request("POST", "/_sandbox/faults", json={"probabilities": {"429": 1.0}, "retry_after": 2, "seed": 1})
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "batch-1"}
    body = {"Invoice": invoice()}
    assert sb.request("POST", "/3/invoices", headers=headers, json=body).status_code == 429
    sb.request("DELETE", "/_sandbox/faults")
    clock.now += 1
    assert sb.request("POST", "/3/invoices", headers=headers, json=body).status_code == 201
    stats = sb.stats()
    assert stats["early_retries"] == 1
    assert stats["early_retry_samples"][0]["company_id"] == 8051
    assert stats["early_retry_samples"][0]["route"] == "POST /3/invoices"


# -- configuration and command line -------------------------------------------------------------
def test_config_file_accounts_and_rate_limit() -> None:
    config = config_from_dict(
        {
            "fortnox_accounts": [
                {"client_id": "c1", "client_secret": "s1", "company_id": 5, "name": "Fem AB", "refresh_token": "r1"},
                {"client_id": "c2", "client_secret": "s2", "company_id": 6, "name": "Sex AB", "tenant_id": "t2",
                 "easy_vat": False, "scope": "invoice"},
            ],
            "fortnox_token_ttl_seconds": 120,
            "fortnox_rate_limit": 10,
            "fortnox_rate_window_seconds": 2.5,
        }
    )  # fmt: skip
    assert set(config.fortnox_accounts) == {"c1", "c2"}
    assert config.fortnox_accounts["c2"] == FortnoxAccount("c2", "s2", 6, "Sex AB", None, "t2", False, "invoice")
    assert (config.fortnox_token_ttl_seconds, config.fortnox_rate_limit, config.fortnox_rate_window_seconds) == (
        120,
        10,
        2.5,
    )
    sb = Sandbox(config)
    r = sb.oauth({"grant_type": "refresh_token", "refresh_token": "r1"}, ("c1", "s1"))
    assert r.json()["expires_in"] == 120
    assert sb.oauth({"grant_type": "refresh_token", "refresh_token": REFRESH}).status_code == 401  # demo replaced


ACCOUNT = {"client_id": "c", "client_secret": "s", "company_id": 1, "name": "x", "tenant_id": "t"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"fortnox_accounts": []}, "fortnox_accounts must be a non-empty list"),
        ({"fortnox_accounts": [{"client_id": "c", "client_secret": "s", "company_id": 1, "name": "x"}]},
         "needs a refresh_token or a tenant_id"),
        ({"fortnox_accounts": [{"client_id": "c", "client_secret": "s", "company_id": "1", "name": "x",
                                "tenant_id": "t"}]}, "company_id must be an integer"),
        ({"fortnox_accounts": [{"client_id": "c", "client_secret": "s", "company_id": 1, "name": "x",
                                "tenant_id": "t", "colour": "red"}]}, "unknown field(s) ['colour']"),
        ({"fortnox_accounts": [{"client_id": "c", "client_secret": "s", "company_id": 1, "name": "x",
                                "tenant_id": "t", "easy_vat": "yes"}]}, "easy_vat must be true or false"),
        ({"fortnox_accounts": [ACCOUNT, {**ACCOUNT, "client_secret": "z"}]}, "duplicate fortnox client_id"),
        ({"fortnox_rate_limit": 0}, "fortnox_rate_limit >= 1"),
        ({"fortnox_rate_window_seconds": 0}, "fortnox_rate_window_seconds must be a number > 0"),
        ({"fortnox_rate_window_seconds": True}, "fortnox_rate_window_seconds must be a number > 0"),
        ({"fortnox_token_ttl_seconds": -1}, "fortnox_token_ttl_seconds >= 0"),
    ],
)  # fmt: skip
def test_invalid_fortnox_config(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match="invalid sandbox config: .*" + re.escape(message)):
        config_from_dict(data)


def test_command_line_options(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(
        ["--fortnox-token-ttl-seconds", "60", "--fortnox-rate-limit", "7", "--fortnox-rate-window", "1.5"]
    )
    assert (args.fortnox_token_ttl_seconds, args.fortnox_rate_limit, args.fortnox_rate_window) == (60, 7, 1.5)
    help_text = build_parser().format_help()
    assert "--fortnox-rate-limit" in help_text and "/oauth-v1/token" in help_text and "POST /invoices" in help_text
    served: list[SandboxConfig] = []
    monkeypatch.setattr("sandbox.__main__.serve_config", lambda config, **kwargs: served.append(config))
    sandbox_main(["--fortnox-rate-limit", "7", "--fortnox-rate-window", "1.5", "--fortnox-token-ttl-seconds", "60"])
    assert (served[0].fortnox_rate_limit, served[0].fortnox_rate_window_seconds) == (7, 1.5)
    assert served[0].fortnox_token_ttl_seconds == 60
    for argv, message in (
        (["--fortnox-rate-limit", "0"], "--fortnox-rate-limit must be >= 1"),
        (["--fortnox-rate-window", "0"], "--fortnox-rate-window must be a number of seconds > 0"),
        (["--fortnox-rate-window", "nan"], "--fortnox-rate-window must be a number of seconds > 0"),
    ):
        with pytest.raises(SystemExit):
            sandbox_main(argv)
        assert message in capsys.readouterr().err
    assert build_config(fortnox_rate_limit=2).fortnox_rate_limit == 2
    assert build_config().fortnox_rate_limit == 25


def test_the_demo_account_is_not_shared_between_apps() -> None:
    """Each app has its own state: the demo refresh token is valid once per sandbox (process)."""
    first, second = Sandbox(), Sandbox()
    assert first.oauth({"grant_type": "refresh_token", "refresh_token": REFRESH}).status_code == 200
    assert second.oauth({"grant_type": "refresh_token", "refresh_token": REFRESH}).status_code == 200


def test_log_lines_never_contain_secrets(caplog: pytest.LogCaptureFixture) -> None:
    sb = Sandbox()
    caplog.set_level(logging.DEBUG, logger="sandbox")
    issued = sb.oauth({"grant_type": "refresh_token", "refresh_token": REFRESH}).json()
    sb.call("POST", "/3/invoices", issued["access_token"], json={"Invoice": invoice()})
    sb.call("GET", "/3/invoices", issued["access_token"], params={"externalinvoicereference1": "ext-1"})
    invoice_service = {"Authorization": "Bearer demo-invoice-service-token"}
    sb.request("POST", "/invoices", json={}, headers=invoice_service)
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("sandbox")]
    assert any("GET /3/invoices?externalinvoicereference1=ext-1 -> 200" in line for line in lines)
    secrets = (CLIENT_SECRET, REFRESH, issued["access_token"], issued["refresh_token"], "demo-invoice-service-token")
    for secret in secrets:
        assert secret not in caplog.text
