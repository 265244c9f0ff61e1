"""The sandbox's Fortnox routes of one document: retrieve, update, delete, the actions and their state rules, the
ledger's history, and faults, rate limit and stats on those routes."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from sandbox import SandboxConfig, background_server, create_app
from sandbox.fortnox import route_label
from tests.unit.sandbox_app import FakeClock
from tests.unit.test_sandbox_fortnox import CLIENT_ID, CLIENT_SECRET, TENANT, Sandbox, invoice, offer, order

TODAY = "2026-02-18"  # FakeClock's day


@pytest.fixture
def sb() -> Sandbox:
    return Sandbox(clock=FakeClock())


@pytest.fixture
def token(sb: Sandbox) -> str:
    return sb.token()


def two_rows(**fields: Any) -> dict[str, Any]:
    rows = [
        {"ArticleNumber": "A11", "DeliveredQuantity": "2", "Price": 100, "VAT": 25},
        {"ArticleNumber": "B22", "DeliveredQuantity": 1, "Price": 40, "VAT": 25, "Discount": 10},
    ]
    return invoice(InvoiceRows=rows, **fields)


def created(sb: Sandbox, token: str, path: str, wrapper: str, doc: dict[str, Any]) -> dict[str, Any]:
    r = sb.call("POST", path, token, json={wrapper: doc})
    assert r.status_code == 201, r.text
    result: dict[str, Any] = r.json()[wrapper]
    return result


def ok(r: httpx.Response, wrapper: str = "Invoice") -> dict[str, Any]:
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()[wrapper]
    return result


def refused(r: httpx.Response, code: int, status: int = 400) -> str:
    """The Message of a capitalised ErrorInformation answer with ``code``."""
    assert r.status_code == status, r.text
    info = r.json()["ErrorInformation"]
    assert set(info) == {"Error", "Message", "Code"} and info["Code"] == code, info
    message: str = info["Message"]
    return message


def history(sb: Sandbox, **params: str) -> list[list[dict[str, Any]]]:
    return [d["history"] for d in sb.ledger(history="1", **params)["documents"]]


def operations(events: list[dict[str, Any]]) -> list[str]:
    return [e["operation"] for e in events]


# -- retrieve -----------------------------------------------------------------------------------
def test_retrieve_an_invoice_and_what_is_not_there(sb: Sandbox, token: str) -> None:
    first = created(sb, token, "/3/invoices", "Invoice", two_rows())
    assert ok(sb.call("GET", "/3/invoices/1", token)) == first
    assert [row["RowId"] for row in first["InvoiceRows"]] == [1, 2]  # every row gets a RowId on create
    message = refused(sb.call("GET", "/3/invoices/9", token), 2099005, 404)
    assert message == "Kan inte hitta fakturan (9). Fält: DocumentNumber."
    refused(sb.call("PUT", "/3/orders/9", token, json={"Order": order()}), 2099005, 404)
    refused(sb.call("PUT", "/3/offers/9/createorder", token), 2099005, 404)
    # The spec has no retrieve of one order or offer, and no cancel of them: not served.
    created(sb, token, "/3/orders", "Order", order())
    assert sb.call("GET", "/3/orders/1", token).status_code == 405
    assert sb.call("PUT", "/3/orders/1/cancel", token).status_code == 404
    assert sb.request("GET", "/3/invoices/1").status_code == 401  # every route needs the bearer token
    other = Sandbox(clock=FakeClock())
    assert other.call("GET", "/3/invoices/1", other.token()).status_code == 404  # another sandbox, another account


# -- update -------------------------------------------------------------------------------------
def test_update_without_row_ids_maps_rows_in_order_and_keeps_what_is_not_sent(sb: Sandbox, token: str) -> None:
    created(sb, token, "/3/invoices", "Invoice", two_rows(YourReference="Anna", EmailInformation={"EmailSubject": "x"}))
    body = {
        "Invoice": {
            "DocumentNumber": "1",  # the same number is fine
            "OurReference": "Bo",
            "YourReference": None,  # null = not provided
            "EmailInformation": {"EmailAddressTo": "a@b.se"},
            "InvoiceRows": [{"Price": 150}],  # updates row 0; row 1 is not listed: removed
        }
    }
    updated = ok(sb.call("PUT", "/3/invoices/1", token, json=body))
    assert (updated["OurReference"], updated["YourReference"], updated["ExternalInvoiceReference1"]) == (
        "Bo",
        "Anna",
        "ext-1",
    )
    assert updated["EmailInformation"] == {"EmailSubject": "x", "EmailAddressTo": "a@b.se"}
    (row,) = updated["InvoiceRows"]
    assert row == {"ArticleNumber": "A11", "DeliveredQuantity": "2", "Price": 150, "VAT": 25, "RowId": 3}
    assert updated["Total"] == 375.0 and updated["Balance"] == 375.0  # recomputed: 2 x 150 + 25 %
    assert ok(sb.call("GET", "/3/invoices/1", token)) == updated

    # More rows than stored: the extra ones are new. An empty list removes every row.
    rows = [{"DeliveredQuantity": 3}, {"ArticleNumber": "C33", "DeliveredQuantity": 1, "Price": 8}]
    again = ok(sb.call("PUT", "/3/invoices/1", token, json={"Invoice": {"InvoiceRows": rows}}))
    assert [(r["ArticleNumber"], r["DeliveredQuantity"], r["RowId"]) for r in again["InvoiceRows"]] == [
        ("A11", 3, 4),
        ("C33", 1, 5),
    ]
    emptied = ok(sb.call("PUT", "/3/invoices/1", token, json={"Invoice": {"InvoiceRows": []}}))
    assert emptied["InvoiceRows"] == [] and emptied["Total"] == 0.0
    (entry,) = sb.ledger(full="1", history="1")["documents"]
    assert entry["document"]["InvoiceRows"] == [] and entry["document"]["OurReference"] == "Bo"
    assert operations(entry["history"]) == ["create", "update", "update", "update"]


def test_update_with_row_ids_updates_named_rows_adds_new_ones_and_drops_the_rest(sb: Sandbox, token: str) -> None:
    rows = [{"ArticleNumber": name, "DeliveredQuantity": 1, "Price": 10} for name in ("A", "B", "C")]
    ids = [r["RowId"] for r in created(sb, token, "/3/invoices", "Invoice", invoice(InvoiceRows=rows))["InvoiceRows"]]
    body = {"InvoiceRows": [{"RowId": ids[2]}, {"RowId": ids[0], "Price": 5}, {"ArticleNumber": "D", "Price": 1}]}
    updated = ok(sb.call("PUT", "/3/invoices/1", token, json={"Invoice": body}))
    assert [(r["ArticleNumber"], r["Price"]) for r in updated["InvoiceRows"]] == [("C", 10), ("A", 5), ("D", 1)]
    new_ids = [r["RowId"] for r in updated["InvoiceRows"]]
    assert len(set(new_ids)) == 3 and not set(new_ids) & set(ids)  # new RowIds for every row, every update

    unknown = {"InvoiceRows": [{"RowId": new_ids[0]}, {"RowId": ids[1]}]}  # B's old id is gone
    message = refused(sb.call("PUT", "/3/invoices/1", token, json={"Invoice": unknown}), 2099010)
    assert message == f"Kan inte hitta raden med RowId {ids[1]}. Fält: InvoiceRows[1].RowId."
    twice = {"InvoiceRows": [{"RowId": new_ids[0]}, {"RowId": new_ids[0]}]}
    refused(sb.call("PUT", "/3/invoices/1", token, json={"Invoice": twice}), 2099010)
    assert ok(sb.call("GET", "/3/invoices/1", token)) == updated  # refused updates change nothing


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"Invoice": {"DocumentNumber": "2"}}, 2099007, "DocumentNumber"),
        ({"Invoice": {"Colour": "red"}}, 2001399, "Colour"),
        ({"Invoice": {"InvoiceRows": [{"Price": "100"}]}}, 2000108, "InvoiceRows[0].Price"),
        ({"Invoice": {"InvoiceRows": {"Price": 1}}}, 2001392, "InvoiceRows"),
        ({"Invoice": {"CustomerNumber": "X-1"}}, 2099003, "CustomerNumber"),
        ({"Invoice": {"CustomerNumber": ""}}, 2099001, "CustomerNumber"),
        ({"Invoice": {"InvoiceRows": [{"VAT": 7.5}]}}, 2004167, "InvoiceRows[0].VAT"),  # merged row: no account
        ({"Order": {}}, 2001392, None),
        ({}, 2001392, None),
    ],
)
def test_an_update_is_validated_as_a_create(
    sb: Sandbox, token: str, body: dict[str, Any], code: int, field: str | None
) -> None:
    before = created(sb, token, "/3/invoices", "Invoice", invoice())
    message = refused(sb.call("PUT", "/3/invoices/1", token, json=body), code)
    if field is not None:
        assert message.endswith(f"Fält: {field}.")
    assert ok(sb.call("GET", "/3/invoices/1", token)) == before
    assert operations(history(sb)[0]) == ["create"]


def test_update_needs_a_body(sb: Sandbox, token: str) -> None:
    created(sb, token, "/3/invoices", "Invoice", invoice())
    refused(sb.call("PUT", "/3/invoices/1", token), 2001392)
    refused(
        sb.call("PUT", "/3/invoices/1", token, content=b"{nope", headers={"content-type": "application/json"}), 2002115
    )


def test_an_update_moves_the_reference_and_the_customer_and_ignores_state_fields(sb: Sandbox, token: str) -> None:
    created(sb, token, "/3/invoices", "Invoice", invoice("old-ref"))
    body = {"ExternalInvoiceReference1": "new-ref", "CustomerNumber": "1006", "InvoiceDate": "2026-03-01"}
    state = {"Booked": True, "Sent": True, "Cancelled": True, "CreditInvoiceReference": "7", "WarehouseReady": True}
    updated = ok(sb.call("PUT", "/3/invoices/1", token, json={"Invoice": {**body, **state}}))
    assert (updated["Booked"], updated["Sent"], updated["Cancelled"]) == (False, False, False)
    assert "CreditInvoiceReference" not in updated and "WarehouseReady" not in updated
    listed = sb.call("GET", "/3/invoices", token, params={"externalinvoicereference1": "new-ref"}).json()["Invoices"]
    assert [i["DocumentNumber"] for i in listed] == ["1"]
    assert (
        sb.call("GET", "/3/invoices", token, params={"externalinvoicereference1": "old-ref"}).json()["Invoices"] == []
    )
    (entry,) = sb.ledger(target="fortnox")["documents"]
    assert (entry["external_id"], entry["customer_nr"], entry["invoice_date"]) == ("new-ref", "1006", "2026-03-01")
    assert sb.ledger(external_id="old-ref")["count"] == 0


def test_orders_and_offers_update_their_own_rows(sb: Sandbox, token: str) -> None:
    created(sb, token, "/3/orders", "Order", order())
    placed = ok(sb.call("PUT", "/3/orders/1", token, json={"Order": {"OrderRows": [{"OrderedQuantity": 4}]}}), "Order")
    assert placed["OrderRows"][0]["OrderedQuantity"] == 4 and placed["Total"] == 1750.0  # 4 x 350 + 25 %
    assert placed["ExternalInvoiceReference1"] == "ord-1" and placed["Labels"] == [{"Id": 4}]
    created(sb, token, "/3/offers", "Offer", offer())
    quoted = ok(sb.call("PUT", "/3/offers/1", token, json={"Offer": {"OfferRows": [{"Quantity": "2"}]}}), "Offer")
    assert quoted["OfferRows"][0]["Quantity"] == "2" and quoted["Total"] == 2000.0
    wrong_rows = {"Offer": {"OfferRows": [{"DeliveredQuantity": 1}]}}  # an invoice row's field
    refused(sb.call("PUT", "/3/offers/1", token, json=wrong_rows), 2001399)
    refused(sb.call("PUT", "/3/offers/1", token, json={"Offer": {"DocumentNumber": "5"}}), 2099007)


# -- articles -----------------------------------------------------------------------------------
def test_article_update_and_delete(sb: Sandbox, token: str) -> None:
    created(sb, token, "/3/articles-v2", "Article", {"Description": "Hammare", "ArticleNumber": "hammer", "Unit": "st"})
    body = {"Article": {"ArticleNumber": "hammer", "SalesPrice": 199.0, "Description": "Snickarhammare"}}
    updated = ok(sb.call("PUT", "/3/articles-v2/hammer", token, json=body), "Article")
    assert updated == {
        "Description": "Snickarhammare",
        "ArticleNumber": "hammer",
        "Unit": "st",
        "SalesPrice": 199.0,
        "@url": "http://sandbox/3/articles-v2/hammer",
    }
    renamed = {"Article": {"ArticleNumber": "mallet"}}
    message = refused(sb.call("PUT", "/3/articles-v2/hammer", token, json=renamed), 2099007)
    assert message == "Artikelnumret kan inte ändras (hammer i adressen, mallet i anropet). Fält: ArticleNumber."
    refused(sb.call("PUT", "/3/articles-v2/hammer", token, json={"Article": {"Depth": "deep"}}), 2000108)
    refused(sb.call("PUT", "/3/articles-v2/hammer", token, json={"Article": {"Description": ""}}), 2099001)
    refused(sb.call("PUT", "/3/articles-v2/nail", token, json={"Article": {}}), 2099005, 404)

    deleted = sb.call("DELETE", "/3/articles-v2/hammer", token)
    assert deleted.status_code == 204 and deleted.content == b""
    assert refused(sb.call("GET", "/3/articles-v2/hammer", token), 2099005, 404).startswith("Kan inte hitta artikeln")
    refused(sb.call("DELETE", "/3/articles-v2/hammer", token), 2099005, 404)
    again = created(sb, token, "/3/articles-v2", "Article", {"Description": "Ny", "ArticleNumber": "hammer"})
    assert again["Description"] == "Ny"  # the number is free again
    old, new = sb.ledger(kind="article", history="1", full="1")["documents"]
    assert operations(old["history"]) == ["create", "update", "delete"] and operations(new["history"]) == ["create"]
    assert old["document"]["SalesPrice"] == 199.0


# -- invoice actions ----------------------------------------------------------------------------
def test_bookkeep_locks_the_invoice(sb: Sandbox, token: str) -> None:
    created(sb, token, "/3/invoices", "Invoice", invoice())
    assert ok(sb.call("PUT", "/3/invoices/1/bookkeep", token))["Booked"] is True
    assert refused(sb.call("PUT", "/3/invoices/1/bookkeep", token), 2099009) == "Fakturan är redan bokförd."
    message = refused(sb.call("PUT", "/3/invoices/1", token, json={"Invoice": {"OurReference": "x"}}), 2099008)
    assert message == "Faktura som är bokförd kan inte ändras."
    assert (
        refused(sb.call("PUT", "/3/invoices/1/cancel", token), 2099009) == "Faktura som är bokförd kan inte makuleras."
    )
    assert ok(sb.call("GET", "/3/invoices/1/email", token))["Sent"] is True  # a booked invoice can be sent
    assert operations(history(sb)[0]) == ["create", "bookkeep", "email"]


def test_a_sent_invoice_cannot_be_changed(sb: Sandbox, token: str) -> None:
    for _ in range(2):
        created(sb, token, "/3/invoices", "Invoice", invoice())
    assert ok(sb.call("PUT", "/3/invoices/1/externalprint", token))["Sent"] is True
    assert ok(sb.call("PUT", "/3/invoices/1/externalprint", token))["Sent"] is True  # again is fine
    assert ok(sb.call("GET", "/3/invoices/2/email", token))["Sent"] is True
    for number in ("1", "2"):
        r = sb.call("PUT", f"/3/invoices/{number}", token, json={"Invoice": {"Remarks": "x"}})
        assert refused(r, 2099008) == "Faktura som är skickad kan inte ändras."
    assert ok(sb.call("PUT", "/3/invoices/1/bookkeep", token))["Booked"] is True  # sent, then booked


def test_a_cancelled_invoice_refuses_everything(sb: Sandbox, token: str) -> None:
    created(sb, token, "/3/invoices", "Invoice", invoice())
    cancelled = ok(sb.call("PUT", "/3/invoices/1/cancel", token))
    assert cancelled["Cancelled"] is True and cancelled["Booked"] is False
    assert refused(sb.call("PUT", "/3/invoices/1/cancel", token), 2099009) == "Fakturan är redan makulerad."
    message = refused(sb.call("PUT", "/3/invoices/1", token, json={"Invoice": {}}), 2099008)
    assert message == "Faktura som är makulerad kan inte ändras."
    for method, action in (("PUT", "bookkeep"), ("PUT", "credit"), ("GET", "email"), ("PUT", "externalprint")):
        assert "makulerad" in refused(sb.call(method, f"/3/invoices/1/{action}", token), 2099009)
    refused(sb.call("PUT", "/3/invoices/1/warehouseready", token), 2099009)
    assert sb.ledger(kind="customer_invoice")["count"] == 1  # no credit invoice was made
    assert operations(history(sb)[0]) == ["create", "cancel"]


def test_credit_once_with_references_on_both(sb: Sandbox, token: str) -> None:
    created(sb, token, "/3/invoices", "Invoice", two_rows(DueDate="2026-03-20", YourReference="Anna"))
    ok(sb.call("PUT", "/3/invoices/1/bookkeep", token))
    answer = ok(sb.call("PUT", "/3/invoices/1/credit", token))
    assert answer["DocumentNumber"] == "1" and answer["CreditInvoiceReference"] == "2"  # the original answers
    assert answer["Booked"] is True and answer["Total"] == 295.0  # (2 x 100 + 40 - 10 %) + 25 %

    credit = ok(sb.call("GET", "/3/invoices/2", token))
    assert (credit["Credit"], credit["CreditInvoiceReference"], credit["CustomerNumber"]) == ("true", "1", "3879")
    assert [r["DeliveredQuantity"] for r in credit["InvoiceRows"]] == ["-2", -1]  # negated, same JSON type
    assert credit["Total"] == -295.0 and credit["Balance"] == -295.0
    assert (credit["InvoiceDate"], credit["YourReference"], credit["Booked"], credit["Sent"]) == (
        TODAY,
        "Anna",
        False,
        False,
    )
    assert "ExternalInvoiceReference1" not in credit and "DueDate" not in credit
    assert {r["RowId"] for r in credit["InvoiceRows"]}.isdisjoint(r["RowId"] for r in answer["InvoiceRows"])

    message = refused(sb.call("PUT", "/3/invoices/1/credit", token), 2099009)
    assert message == "Fakturan är redan krediterad (kreditfaktura 2)."
    assert refused(sb.call("PUT", "/3/invoices/2/credit", token), 2099009) == "En kreditfaktura kan inte krediteras."
    assert sb.ledger(kind="customer_invoice")["count"] == 2
    found = sb.call("GET", "/3/invoices", token, params={"externalinvoicereference1": "ext-1"}).json()["Invoices"]
    assert [i["DocumentNumber"] for i in found] == ["1"]  # a look-up by our id finds the original only

    original, credit_entry = sb.ledger(history="1")["documents"]
    assert (credit_entry["kind"], credit_entry["number"], credit_entry["external_id"]) == (
        "customer_invoice",
        "2",
        None,
    )
    (made,) = credit_entry["history"]
    assert (made["operation"], made["from"]) == ("credit", "1")
    assert operations(original["history"]) == ["create", "bookkeep", "credit"]
    assert original["history"][-1]["to"] == "2" and original["history"][-1]["request_id"] == made["request_id"]
    assert sb.stats()["documents_created"] == 2


def test_an_unbooked_credited_invoice_cannot_be_cancelled(sb: Sandbox, token: str) -> None:
    created(sb, token, "/3/invoices", "Invoice", invoice())
    assert ok(sb.call("PUT", "/3/invoices/1/credit", token))["CreditInvoiceReference"] == "2"
    message = refused(sb.call("PUT", "/3/invoices/1/cancel", token), 2099009)
    assert message == "Faktura som är krediterad kan inte makuleras (kreditfaktura 2)."


def test_warehouseready_needs_an_order_in_delivery_state(sb: Sandbox, token: str) -> None:
    created(sb, token, "/3/invoices", "Invoice", invoice())
    message = refused(sb.call("PUT", "/3/invoices/1/warehouseready", token), 2099009)
    assert "DeliveryState" in message and '"delivery"' in message and message.endswith("Fält: DeliveryState.")
    created(sb, token, "/3/orders", "Order", order(DeliveryState="reservation"))
    made = ok(sb.call("PUT", "/3/orders/1/createinvoice", token))["DocumentNumber"]
    assert '(är "reservation")' in refused(sb.call("PUT", f"/3/invoices/{made}/warehouseready", token), 2099009)
    created(sb, token, "/3/orders", "Order", order(DeliveryState="delivery"))
    ready = ok(sb.call("PUT", "/3/orders/2/createinvoice", token))["DocumentNumber"]
    assert ok(sb.call("PUT", f"/3/invoices/{ready}/warehouseready", token))["WarehouseReady"] is True
    assert operations(history(sb, kind="customer_invoice")[-1]) == ["createinvoice", "warehouseready"]


# -- conversions --------------------------------------------------------------------------------
def test_order_to_invoice_to_credit(sb: Sandbox, token: str) -> None:
    created(sb, token, "/3/orders", "Order", order("ord-9", YourReference="Bo", DeliveryState="delivery"))
    created(sb, token, "/3/invoices", "Invoice", invoice())  # invoice 1: the order's becomes 2
    made = ok(sb.call("PUT", "/3/orders/1/createinvoice", token))
    assert (made["DocumentNumber"], made["OrderReference"], made["ExternalInvoiceReference1"]) == ("2", "1", "ord-9")
    assert (made["CustomerNumber"], made["CustomerName"], made["YourReference"]) == (
        "013",
        "Berglund Transport AB",
        "Bo",
    )
    assert (made["InvoiceDate"], made["EmailInformation"], made["Labels"]) == (
        TODAY,
        {"EmailAddressTo": "kund@example.com"},
        [{"Id": 4}],
    )
    (row,) = made["InvoiceRows"]
    assert (row["ArticleNumber"], row["DeliveredQuantity"], row["Price"]) == ("100-5t", "3", 350)
    assert "OrderedQuantity" not in row and "DeliveryState" not in made and made["Total"] == 1312.5

    message = refused(sb.call("PUT", "/3/orders/1/createinvoice", token), 2099009)
    assert message == "Ordern har redan blivit faktura 2."
    message = refused(sb.call("PUT", "/3/orders/1", token, json={"Order": {"Remarks": "x"}}), 2099008)
    assert message == "Order som är fakturerad (faktura 2) kan inte ändras."
    assert ok(sb.call("GET", "/3/orders/1/email", token), "Order")["Sent"] is True  # still sendable

    ok(sb.call("PUT", "/3/invoices/2/bookkeep", token))
    assert ok(sb.call("PUT", "/3/invoices/2/credit", token))["CreditInvoiceReference"] == "3"
    credit = ok(sb.call("GET", "/3/invoices/3", token))
    assert (credit["OrderReference"], credit["CreditInvoiceReference"], credit["Total"]) == ("1", "2", -1312.5)

    entries = sb.ledger(full="1", history="1")["documents"]
    by_kind_number = {(d["kind"], d["number"]): d for d in entries}
    the_order = by_kind_number[("order", "1")]
    assert the_order["document"]["InvoiceReference"] == "2"
    assert operations(the_order["history"]) == ["create", "createinvoice", "email"]
    from_order = by_kind_number[("customer_invoice", "2")]
    assert from_order["external_id"] == "ord-9" and from_order["customer_nr"] == "013"
    assert {k: from_order["history"][0][k] for k in ("operation", "from", "from_kind")} == {
        "operation": "createinvoice",
        "from": "1",
        "from_kind": "order",
    }
    assert operations(from_order["history"]) == ["createinvoice", "bookkeep", "credit"]
    assert by_kind_number[("customer_invoice", "3")]["history"][0]["from"] == "2"
    # The order and its invoice share ExternalInvoiceReference1: each kind's list finds its own.
    assert sb.ledger(external_id="ord-9")["count"] == 2
    listed = sb.call("GET", "/3/invoices", token, params={"externalinvoicereference1": "ord-9"}).json()
    assert [i["DocumentNumber"] for i in listed["Invoices"]] == ["2"]


def test_a_cancelled_order_is_neither_invoiced_nor_sent(sb: Sandbox, token: str) -> None:
    created(sb, token, "/3/orders", "Order", order(Cancelled=True))
    assert refused(sb.call("PUT", "/3/orders/1/createinvoice", token), 2099009) == (
        "Order som är makulerad kan inte faktureras."
    )
    assert refused(sb.call("PUT", "/3/orders/1/externalprint", token), 2099009) == (
        "Order som är makulerad kan inte skickas."
    )
    assert refused(sb.call("PUT", "/3/orders/1", token, json={"Order": {}}), 2099008) == (
        "Order som är makulerad kan inte ändras."
    )
    assert sb.ledger(kind="customer_invoice")["count"] == 0


def test_offer_to_order_and_offer_to_invoice(sb: Sandbox, token: str) -> None:
    created(sb, token, "/3/offers", "Offer", offer(YourReference="Cia"))
    created(sb, token, "/3/offers", "Offer", offer())
    placed = ok(sb.call("PUT", "/3/offers/1/createorder", token), "Order")
    assert (placed["DocumentNumber"], placed["OfferReference"], placed["OrderDate"]) == ("1", "1", TODAY)
    assert (placed["YourReference"], placed["Total"], placed["Cancelled"]) == ("Cia", 1500.0, False)
    assert placed["OrderRows"][0]["OrderedQuantity"] == "1.5" and "ExpireDate" not in placed
    assert refused(sb.call("PUT", "/3/offers/1/createorder", token), 2099009) == "Offerten har redan blivit order 1."
    assert refused(sb.call("PUT", "/3/offers/1/createinvoice", token), 2099009) == "Offerten har redan blivit order 1."

    billed = ok(sb.call("PUT", "/3/offers/2/createinvoice", token))
    assert (billed["DocumentNumber"], billed["OfferReference"], billed["InvoiceDate"]) == ("1", "2", TODAY)
    assert billed["InvoiceRows"][0]["DeliveredQuantity"] == "1.5" and billed["Total"] == 1500.0
    assert "ExternalInvoiceReference1" not in billed
    message = refused(sb.call("PUT", "/3/offers/2/createorder", token), 2099009)
    assert message == "Offerten har redan blivit faktura 1."

    # The order made from the offer goes on to an invoice that names both.
    chained = ok(sb.call("PUT", "/3/orders/1/createinvoice", token))
    assert (chained["DocumentNumber"], chained["OrderReference"], chained["OfferReference"]) == ("2", "1", "1")
    offers = {d["number"]: d for d in sb.ledger(kind="offer", full="1", history="1")["documents"]}
    assert offers["1"]["document"]["OrderReference"] == "1" and offers["2"]["document"]["InvoiceReference"] == "1"
    assert [(e["operation"], e.get("to")) for e in offers["1"]["history"]] == [("create", None), ("createorder", "1")]
    (order_entry,) = sb.ledger(kind="order", history="1")["documents"]
    assert order_entry["external_id"] is None
    assert (order_entry["history"][0]["from"], order_entry["history"][0]["from_kind"]) == ("1", "offer")
    assert ok(sb.call("GET", "/3/offers/1/email", token), "Offer")["Sent"] is True
    created(sb, token, "/3/offers", "Offer", offer(Cancelled=True))
    assert refused(sb.call("PUT", "/3/offers/3/createinvoice", token), 2099009) == (
        "Offert som är makulerad kan inte faktureras."
    )


# -- ledger -------------------------------------------------------------------------------------
def test_ledger_history_is_opt_in_and_every_api_has_one(sb: Sandbox, token: str) -> None:
    created(sb, token, "/3/invoices", "Invoice", invoice())
    softone = {"companyApiKey": "demo-company-key", "connectApiKey": "demo-connect-key"}
    login = sb.request("POST", "/Login/Token", params=softone).json()["Token"]
    doc = {
        "CustomerNr": "3879",
        "InvoiceDate": "2026-02-18",
        "OriginType": 6,
        "InvoiceRows": [{"CustomerRowType": 2, "RowNr": 1, "ProductNr": "A", "Quantity": 1, "UnitPrice": 1}],
    }
    sb.request("POST", "/Economy/Billing/CustomerInvoices", params={**softone, "token": login}, json=[doc])
    plain = sb.ledger()["documents"]
    assert all("history" not in d and "document" not in d for d in plain)
    assert all("history" not in d for d in sb.ledger(full="1")["documents"])
    fortnox_entry, softone_entry = sb.ledger(history="1")["documents"]
    for entry in (fortnox_entry, softone_entry):
        assert entry["history"] == [
            {"at": "2026-02-18T07:33:20.000Z", "operation": "create", "request_id": entry["request_id"]}
        ]
    assert sb.ledger(history="1", target="fortnox", kind="customer_invoice")["count"] == 1  # filters still work


# -- faults, rate limit, stats ------------------------------------------------------------------
def test_a_lost_createinvoice_answer_leaves_the_invoice_made_and_a_repeat_is_refused() -> None:
    auth = (CLIENT_ID, CLIENT_SECRET)
    with background_server(create_app()) as url, httpx.Client(base_url=url, timeout=5) as client:
        grant = client.post(
            "/oauth-v1/token", data={"grant_type": "client_credentials"}, auth=auth, headers={"TenantId": TENANT}
        )
        headers = {"Authorization": f"Bearer {grant.json()['access_token']}"}
        assert client.post("/3/orders", json={"Order": order("lost-1")}, headers=headers).status_code == 201
        rule = {"path": "/3/orders/1/createinvoice", "kind": "drop_after_commit"}
        assert client.post("/_sandbox/faults", json=rule).status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            client.put("/3/orders/1/createinvoice", headers=headers)
        made = client.get("/_sandbox/ledger", params={"kind": "customer_invoice", "history": "1"}).json()
        (invoice_entry,) = made["documents"]
        assert invoice_entry["external_id"] == "lost-1" and invoice_entry["history"][0]["operation"] == "createinvoice"
        again = client.put("/3/orders/1/createinvoice", headers=headers)
        assert again.status_code == 400 and again.json()["ErrorInformation"]["Code"] == 2099009
        assert again.json()["ErrorInformation"]["Message"] == "Ordern har redan blivit faktura 1."
        stats = client.get("/_sandbox/stats").json()
    assert stats["requests"]["PUT /3/orders/{DocumentNumber}/createinvoice"] == {"drop": 1, "400": 1}
    assert stats["documents_created"] == 2


def test_after_commit_faults_and_the_rate_limit_apply_to_actions() -> None:
    sb = Sandbox(SandboxConfig(fortnox_rate_limit=5), FakeClock())
    token = sb.token()
    created(sb, token, "/3/invoices", "Invoice", invoice())
    rules = [
        {"path": "/3/invoices/1/bookkeep", "kind": "status_after_commit", "status": 502},
        {"path": "/3/invoices/1/credit", "kind": "status", "status": 503},
    ]
    sb.request("POST", "/_sandbox/faults", json=rules)
    assert sb.call("PUT", "/3/invoices/1/bookkeep", token).status_code == 502
    assert ok(sb.call("GET", "/3/invoices/1", token))["Booked"] is True  # the action took effect
    assert sb.call("PUT", "/3/invoices/1/credit", token).status_code == 503
    assert "CreditInvoiceReference" not in ok(sb.call("GET", "/3/invoices/1", token))  # a 503 does nothing
    limited = sb.call("PUT", "/3/invoices/1/credit", token)  # the 6th request in the window
    assert limited.status_code == 429 and limited.json()["ErrorInformation"]["message"] == "Too many requests"
    assert sb.ledger(kind="customer_invoice")["count"] == 1
    requests = sb.stats()["requests"]
    assert requests["PUT /3/invoices/{DocumentNumber}/bookkeep"] == {"502": 1}
    assert requests["PUT /3/invoices/{DocumentNumber}/credit"] == {"503": 1, "429": 1}
    assert requests["GET /3/invoices/{DocumentNumber}"] == {"200": 2}


def test_random_faults_hit_the_new_routes() -> None:
    sb = Sandbox(clock=FakeClock())
    token = sb.token()
    created(sb, token, "/3/invoices", "Invoice", invoice())
    profile = {"probabilities": {"500_after_commit": 1.0}, "seed": 1, "paths": ["/3/invoices/*/externalprint"]}
    sb.request("POST", "/_sandbox/faults", json=profile)
    r = sb.call("PUT", "/3/invoices/1/externalprint", token)
    assert r.status_code == 500 and r.json()["ErrorInformation"]["Code"] == 1000003
    assert ok(sb.call("GET", "/3/invoices/1", token))["Sent"] is True
    assert sb.stats()["faults"]["500_after_commit"] == 1


@pytest.mark.parametrize(
    ("method", "path", "label"),
    [
        ("PUT", "/3/invoices/12/credit", "PUT /3/invoices/{DocumentNumber}/credit"),
        ("GET", "/3/invoices/12", "GET /3/invoices/{DocumentNumber}"),
        ("GET", "/3/orders/7/email", "GET /3/orders/{DocumentNumber}/email"),
        ("PUT", "/3/offers/3/createorder", "PUT /3/offers/{DocumentNumber}/createorder"),
        ("DELETE", "/3/articles-v2/hammer", "DELETE /3/articles-v2/{ArticleNumber}"),
        ("GET", "/3/invoices", "GET /3/invoices"),
        ("GET", "/3/invoices/", "GET /3/invoices/"),
        ("PUT", "/3/invoices/1/credit/x", "PUT /3/invoices/1/credit/x"),
        ("POST", "/Economy/Billing/Orders", "POST /Economy/Billing/Orders"),
    ],
)
def test_route_labels_fold_document_numbers(method: str, path: str, label: str) -> None:
    assert route_label(method, path) == label
