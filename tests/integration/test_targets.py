"""Every target and document kind end to end: a real worker, Redis and the sandbox over HTTP.

Fortnox (invoices, orders, offers, articles; OAuth client credentials and single-use refresh tokens) and the
invoice service go through the same pipeline as SoftOne: Keys land in the results store, invalid documents
fail with field paths, the ERP's own rejections fail with its message, and the Fortnox chaos run ends with
every invoice created exactly once and the poisoned ones isolated.
"""

from __future__ import annotations

import copy
import random
import time
import uuid
from collections import Counter
from typing import Any

import httpx
import pytest

from tests.conftest import example_json
from tests.integration.conftest import wait_job
from tests.integration.test_chaos import FAULTS
from worker.devstack.stack import LocalStack
from worker.producer.submit import SubmitError, submit

pytestmark = pytest.mark.integration


def fortnox_invoice(reference: str | None, customer: str = "1001", vat: float = 12) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "CustomerNumber": customer,
        "InvoiceDate": "2026-11-20",
        "InvoiceRows": [
            {"ArticleNumber": "7310050", "Description": "Kanelbulle", "DeliveredQuantity": 2, "Price": 24.5,
             "VAT": vat},
        ],
    }  # fmt: skip
    if reference:
        doc["ExternalInvoiceReference1"] = reference
    return doc


def fortnox_order(reference: str) -> dict[str, Any]:
    return {
        "CustomerNumber": "1001",
        "OrderDate": "2026-11-20",
        "ExternalInvoiceReference1": reference,
        "OrderRows": [{"ArticleNumber": "100", "Description": "Skolbil", "OrderedQuantity": 3,
                       "DeliveredQuantity": 3, "Price": 350, "VAT": 25}],
    }  # fmt: skip


def fortnox_offer(tag: str) -> dict[str, Any]:
    return {
        "CustomerNumber": "1001",
        "OfferDate": "2026-11-20",
        "YourReference": tag,
        "OfferRows": [{"Description": "Catering", "Quantity": 10, "Price": 95, "VAT": 12}],
    }


SERVICE_INVOICE: dict[str, Any] = example_json("spec-service-invoice.json")


def ledger(sandbox: httpx.Client, target: str) -> list[dict[str, Any]]:
    return sandbox.get("/_sandbox/ledger", params={"target": target}).json()["documents"]


def records_by_id(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["external_id"]: r for r in result["records"]}


def test_fortnox_invoices_keys_land_and_invalid_ones_fail_with_their_field(
    stack: LocalStack, sandbox: httpx.Client
) -> None:
    tag = f"fx-{uuid.uuid4().hex[:6]}"
    bad_price = fortnox_invoice(f"{tag}-bad")
    bad_price["InvoiceRows"][0]["Price"] = "tjugo"
    docs = [fortnox_invoice(f"{tag}-1"), fortnox_invoice(None), bad_price,
            fortnox_invoice(f"{tag}-easyvat", vat=17)]  # fmt: skip
    result = wait_job(stack, submit(docs, kind="customer_invoice", tenant="demo-fortnox"))
    records = result["records"]
    assert [r["status"] for r in records] == ["created", "created", "failed", "failed"], records
    assert "InvoiceRows[0].Price" in records[2]["error"]
    # Not our rule (we cannot know whether the company has EasyVat on): Fortnox's answer, with its code.
    assert "2004167" in records[3]["error"]
    # The invoice without a reference got our derived id, and Fortnox holds it: it can be looked up.
    assert records[1]["external_id"].endswith("#1")
    created = {d["external_id"]: d for d in ledger(sandbox, "fortnox")}
    for record in records[:2]:
        assert str(created[record["external_id"]]["key"]) == str(record["key"])
    assert f"{tag}-easyvat" not in created and f"{tag}-bad" not in created


def test_fortnox_orders_offers_and_articles(stack: LocalStack, sandbox: httpx.Client) -> None:
    tag = f"fk-{uuid.uuid4().hex[:6]}"
    jobs = {
        "order": submit([fortnox_order(f"{tag}-o1"), fortnox_order(f"{tag}-o2")], kind="order", tenant="demo-fortnox"),
        "offer": submit([fortnox_offer(tag)], kind="offer", tenant="demo-fortnox"),
        "article": submit(
            [{"ArticleNumber": f"{tag}-A1", "Description": "Hammare"}, {"Description": "Skruvmejsel"},
             {"ArticleNumber": f"{tag}-A1", "Description": "samma nummer igen"}],
            kind="article",
            tenant="demo-fortnox",
        ),
    }  # fmt: skip
    results = {kind: wait_job(stack, job_id) for kind, job_id in jobs.items()}
    assert [r["status"] for r in results["order"]["records"]] == ["created", "created"]
    assert [r["status"] for r in results["offer"]["records"]] == ["created"]
    article = results["article"]["records"]
    assert [r["status"] for r in article] == ["created", "created", "failed"], article
    assert article[0]["key"] == f"{tag}-A1"  # an article's id is its number
    assert "also used by document 0" in article[2]["error"]  # the same ArticleNumber twice in one job
    kinds = Counter(d["kind"] for d in ledger(sandbox, "fortnox") if tag in str(d.get("external_id") or d["key"]))
    assert kinds["order"] == 2 and kinds["article"] == 1


def test_fortnox_refresh_token_tenant(stack: LocalStack, sandbox: httpx.Client) -> None:
    """The tenants file's refresh token is spent once; its successor, kept in Redis, renews afterwards."""
    from worker.pipeline.runtime import store

    tag = f"fr-{uuid.uuid4().hex[:6]}"
    first = wait_job(stack, submit([fortnox_invoice(f"{tag}-1")], tenant="fx-refresh"))
    store().r.delete(f"{stack.env['ERPSYNC_KEY_PREFIX']}:token:fx-refresh")  # the access token is due
    second = wait_job(stack, submit([fortnox_invoice(f"{tag}-2")], tenant="fx-refresh"))
    assert [r["status"] for r in first["records"] + second["records"]] == ["created", "created"]
    stats = sandbox.get("/_sandbox/stats").json()["fortnox"]
    assert stats["refresh_token_reuse"] == 0


def test_invoice_service_ids_land_and_bad_totals_fail_with_their_field(
    stack: LocalStack, sandbox: httpx.Client
) -> None:
    tag = uuid.uuid4().hex[:8]
    good = copy.deepcopy(SERVICE_INVOICE) | {"invoiceNumber": f"{tag}-1"}
    bad = copy.deepcopy(SERVICE_INVOICE) | {"invoiceNumber": f"{tag}-2"}
    bad["totals"]["total"] = 260
    result = wait_job(stack, submit([good, bad], tenant="demo-invoices"))
    ok, failed = (records_by_id(result)[f"{tag}-{i}"] for i in (1, 2))
    assert ok["status"] == "created" and str(ok["key"]).startswith("I.") and ok["number"] == f"{tag}-1"
    assert failed["status"] == "failed" and "totals.total" in failed["error"]
    created = [d for d in ledger(sandbox, "invoiceservice") if d["external_id"] == f"{tag}-1"]
    assert [d["key"] for d in created] == [ok["key"]]
    # Re-submitting the same invoice number creates nothing new: the duplicate index knows its id.
    again = wait_job(stack, submit([good], tenant="demo-invoices"))
    assert again["records"][0]["status"] == "duplicate" and again["records"][0]["key"] == ok["key"]


def test_a_job_for_a_target_the_tenant_is_not_at_is_refused(stack: LocalStack) -> None:
    with pytest.raises(SubmitError, match="configured for softone"):
        submit([fortnox_invoice("x")], tenant="demo", target="fortnox")
    with pytest.raises(
        SubmitError, match=r"^tenant 'demo-invoices' is at the invoice service, .*offer is for Fortnox$"
    ):
        submit([fortnox_offer("x")], kind="offer", tenant="demo-invoices")


def test_chaos_fortnox_invoices_exactly_once_and_poison_isolated(stack: LocalStack, sandbox: httpx.Client) -> None:
    """The failures issue's chaos run, for Fortnox: every fault kind on 6 % of requests, 3 % poison."""
    tag = f"fxc-{uuid.uuid4().hex[:6]}"
    rng = random.Random(5)
    docs, poisoned = [], set()
    for i in range(300):
        bad = rng.random() < 0.03 or i == 7
        reference = f"{tag}-{i:04d}"
        docs.append(fortnox_invoice(reference, customer=f"UNKNOWN-{i}" if bad else str(10_000 + i)))
        if bad:
            poisoned.add(reference)
    before = sandbox.get("/_sandbox/stats").json()
    sandbox.post("/_sandbox/faults", json={"probabilities": FAULTS, "seed": 11, "retry_after": 1, "slow_ms": 1500})
    job_ids = [submit(docs[i : i + 30], tenant="demo-fortnox", source="chaos") for i in range(0, len(docs), 30)]
    started = time.monotonic()
    results = [wait_job(stack, job_id, timeout=600) for job_id in job_ids]
    sandbox.delete("/_sandbox/faults")
    after = sandbox.get("/_sandbox/stats").json()
    injected = {k: after["faults"][k] - before["faults"].get(k, 0) for k in FAULTS}
    records = [r for result in results for r in result["records"]]
    statuses = Counter(r["status"] for r in records)
    print(f"\nchaos fortnox: {len(docs)} invoices in {time.monotonic() - started:.1f}s, faults {injected}, "
          f"outcomes {dict(statuses)}")  # fmt: skip
    assert all(n > 0 for n in injected.values()), injected
    times = Counter(d["external_id"] for d in ledger(sandbox, "fortnox") if str(d["external_id"]).startswith(tag))
    key_of = {d["external_id"]: d["key"] for d in ledger(sandbox, "fortnox")}
    for record in records:
        x = record["external_id"]
        if x in poisoned:
            assert record["status"] == "failed" and times[x] == 0, record
        else:
            # Invoices can be looked up by ExternalInvoiceReference1: no outcome stays unknown.
            assert record["status"] == "created", record
            assert times[x] == 1, f"{x} is {times[x]} times in the ledger"
            assert str(record["key"]) == str(key_of[x])
    assert after["fortnox"]["rate_limited"] - before["fortnox"]["rate_limited"] == 0
