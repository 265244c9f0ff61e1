"""Sync beyond create, end to end (real worker, Redis, the sandbox over HTTP): corrections become updates where the
ERP takes them and fail with what to do instead where it does not, and a Fortnox document's life is driven by the
producer's own ids — order, invoice from the order, credit of that invoice — exactly once under lost answers."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import pos_invoice, wait_job
from tests.integration.test_targets import fortnox_order
from worker.devstack.stack import LocalStack
from worker.producer.submit import submit

pytestmark = pytest.mark.integration


def fortnox_ledger(sandbox: httpx.Client) -> list[dict[str, Any]]:
    return sandbox.get("/_sandbox/ledger", params={"target": "fortnox", "full": 1, "history": 1}).json()["documents"]


def only(result: dict[str, Any]) -> dict[str, Any]:
    (record,) = result["records"]
    return record


def test_a_changed_fortnox_order_is_updated_with_upsert_and_a_softone_one_is_refused(
    stack: LocalStack, sandbox: httpx.Client, tmp_path: Path
) -> None:
    ref = f"sync-{uuid.uuid4().hex[:8]}"
    first = only(wait_job(stack, submit([fortnox_order(ref)], kind="order", tenant="demo-fortnox")))
    assert first["status"] == "created"
    corrected = fortnox_order(ref)
    corrected["OrderRows"][0]["Price"] = 400

    changed = only(wait_job(stack, submit([corrected], kind="order", tenant="demo-fortnox")))
    assert changed["status"] == "changed" and changed["key"] == first["key"]
    assert [e["field"] for e in changed["errors"]] == ["OrderRows[0].Price"]
    mine = [d for d in fortnox_ledger(sandbox) if d["external_id"] == ref]
    assert len(mine) == 1 and mine[0]["document"]["OrderRows"][0]["Price"] == 350  # the ERP left as it was

    updated = only(wait_job(stack, submit([corrected], kind="order", tenant="demo-fortnox", operation="upsert")))
    assert (updated["status"], updated["key"]) == ("updated", first["key"])
    mine = [d for d in fortnox_ledger(sandbox) if d["external_id"] == ref]
    assert len(mine) == 1 and str(mine[0]["key"]) == first["key"]  # the same DocumentNumber, new content
    assert mine[0]["document"]["OrderRows"][0]["Price"] == 400
    assert [h["operation"] for h in mine[0]["history"]] == ["create", "update"]
    again = only(wait_job(stack, submit([corrected], kind="order", tenant="demo-fortnox", operation="upsert")))
    assert again["status"] == "duplicate"  # the index knows the new content

    # SoftOne GO has no update: the correction fails with what to do instead, and the CLI says so by its exit code.
    invoice = pos_invoice(f"{ref}-s1")
    assert only(wait_job(stack, submit([invoice], tenant="demo")))["status"] == "created"
    invoice["InvoiceRows"][0]["UnitPrice"] = 30
    path = tmp_path / "correction.json"
    path.write_text(json.dumps({"tenant": "demo", "kind": "customer_invoice", "documents": [invoice]}))
    refused = stack.erpsync("submit", str(path), "--upsert", "--wait", "--json", "--timeout", "120")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    record = only(json.loads(refused.stdout))
    assert record["status"] == "failed" and "credit the invoice in SoftOne GO" in record["error"]
    assert [e["field"] for e in record["errors"]] == ["InvoiceRows[0].UnitPrice"]


def test_an_order_becomes_an_invoice_then_a_credit_named_by_the_producers_ids_exactly_once_under_lost_answers(
    stack: LocalStack, sandbox: httpx.Client
) -> None:
    ref = f"life-{uuid.uuid4().hex[:8]}"
    sandbox.post("/_sandbox/faults", json={"path": "/3/orders", "kind": "drop_after_commit", "times": 1})
    order = only(wait_job(stack, submit([fortnox_order(ref)], kind="order", tenant="demo-fortnox")))
    assert order["status"] == "created"  # its answer was cut off: found by its ExternalInvoiceReference1

    # The order's conversion is made and its answer cut off; then the conversion answers 500 after it is done.
    sandbox.post("/_sandbox/faults", json=[
        {"path": f"/3/orders/{order['key']}/createinvoice", "kind": "drop_after_commit", "times": 1},
    ])  # fmt: skip
    act = [{"ExternalId": ref, "Action": "createinvoice", "ResultExternalId": f"{ref}-invoice"}]
    invoice = only(wait_job(stack, submit(act, kind="order", tenant="demo-fortnox", operation="act")))
    assert invoice["status"] == "created", invoice

    sandbox.post("/_sandbox/faults", json=[
        {"path": f"/3/invoices/{invoice['key']}/credit", "kind": "status_after_commit", "status": 500, "times": 1},
    ])  # fmt: skip
    credit_act = [{"ExternalId": f"{ref}-invoice", "Action": "credit"}]
    credit = only(wait_job(stack, submit(credit_act, kind="customer_invoice", tenant="demo-fortnox", operation="act")))
    assert credit["status"] == "created" and credit["key"] != invoice["key"], (
        credit
    )  # invoices have a series of their own
    sandbox.delete("/_sandbox/faults")

    requests = sandbox.get("/_sandbox/stats").json()["requests"]
    assert requests["POST /3/orders"].get("drop", 0) >= 1
    assert requests["PUT /3/orders/{DocumentNumber}/createinvoice"].get("drop", 0) >= 1  # the faults did strike
    assert requests["PUT /3/invoices/{DocumentNumber}/credit"].get("500", 0) >= 1

    # The same steps again are answered from what was done, and change nothing.
    repeat = only(wait_job(stack, submit(credit_act, kind="customer_invoice", tenant="demo-fortnox", operation="act")))
    assert (repeat["status"], repeat["key"]) == ("duplicate", credit["key"])

    documents = fortnox_ledger(sandbox)
    orders = [d for d in documents if d["kind"] == "order" and d["external_id"] == ref]
    fortnox_invoices = [d for d in documents if d["kind"] == "customer_invoice"]
    invoices = [d for d in fortnox_invoices if str(d["document"].get("Credit")) != "true"
                and str(d["document"].get("OrderReference")) == str(order["key"])]  # fmt: skip
    credits = [d for d in fortnox_invoices if str(d["document"].get("Credit")) == "true"
               and str(d["document"].get("CreditInvoiceReference")) == str(invoice["key"])]  # fmt: skip
    assert Counter(len(x) for x in (orders, invoices, credits)) == Counter({1: 3}), (orders, invoices, credits)
    assert str(invoices[0]["key"]) == invoice["key"] and str(credits[0]["key"]) == credit["key"]

    # An action on an id never created fails, saying so.
    missing = [{"ExternalId": f"{ref}-nothing", "Action": "credit"}]
    failed = only(wait_job(stack, submit(missing, kind="customer_invoice", tenant="demo-fortnox", operation="act")))
    assert failed["status"] == "failed" and "was created through erpsync" in failed["error"]
