"""End to end: producer → Redis → celery worker → sandbox over HTTP → results store, checked against the ledger."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from celery.signals import before_task_publish

from tests.integration.conftest import (
    ACME_COMPANY_KEY,
    ACME_CONNECT_KEY,
    ledger_for,
    order,
    pos_invoice,
    wait_job,
)
from worker.devstack.stack import LocalStack
from worker.producer.submit import submit

pytestmark = pytest.mark.integration
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def uid() -> str:
    return uuid.uuid4().hex[:8]


def invalid_invoices(tag: str) -> list[tuple[dict[str, Any], str]]:
    """(document, field path the error must name)."""
    no_customer = pos_invoice(f"{tag}-bad-1")
    del no_customer["CustomerNr"]
    bad_quantity = pos_invoice(f"{tag}-bad-2")
    bad_quantity["InvoiceRows"][1]["Quantity"] = "två"
    bad_row_type = pos_invoice(f"{tag}-bad-3")
    bad_row_type["InvoiceRows"][0]["CustomerRowType"] = 7
    return [
        (no_customer, "CustomerNr"),
        (bad_quantity, "InvoiceRows[1].Quantity"),
        (bad_row_type, "InvoiceRows[0].CustomerRowType"),
    ]


def check_against_ledger(
    results: dict[str, Any], ledger: list[dict[str, Any]], valid: set[str], invalid: dict[str, str]
) -> None:
    by_id = Counter(d["external_id"] for d in ledger)
    key_of = {d["external_id"]: d["key"] for d in ledger}
    for record in results["records"]:
        x = record["external_id"]
        if x in valid:
            assert record["status"] == "created", record
            assert by_id[x] == 1, f"{x} is {by_id[x]} times in the ledger"
            assert record["key"] == key_of[x]
            assert record["error"] is None
        else:
            assert record["status"] == "failed", record
            assert by_id[x] == 0
            assert any(e["field"] == invalid[x] for e in record["errors"]), record
            assert invalid[x] in record["error"]


def test_mixed_jobs_each_valid_document_created_once_each_invalid_failed_with_field(
    stack: LocalStack, sandbox: httpx.Client
) -> None:
    tag = uid()
    invoices = [pos_invoice(f"{tag}-inv-{i}", customer=str(1001 + i % 12)) for i in range(25)]
    bad = invalid_invoices(tag)
    mixed = [*invoices[:10], bad[0][0], *invoices[10:20], bad[1][0], bad[2][0], *invoices[20:]]
    orders = [order(f"{tag}-ord-{i}") for i in range(12)]
    bad_order = order(f"{tag}-ord-bad")
    bad_order["InvoiceRows"] = []
    job_a = submit(mixed, kind="customer_invoice", tenant="demo", source="it")
    job_b = submit([*orders[:6], bad_order, *orders[6:]], kind="order", tenant="acme", source="it")

    a, b = wait_job(stack, job_a), wait_job(stack, job_b)
    assert a["status"] == b["status"] == "partial"
    valid_a = {d["ExternalId"] for d in invoices}
    check_against_ledger(
        a,
        ledger_for(sandbox, valid_a | {d["ExternalId"] for d, _ in bad}),
        valid_a,
        {d["ExternalId"]: f for d, f in bad},
    )
    valid_b = {d["ExternalId"] for d in orders}
    ledger_b = ledger_for(sandbox, valid_b | {bad_order["ExternalId"]})
    check_against_ledger(b, ledger_b, valid_b, {bad_order["ExternalId"]: "InvoiceRows"})
    # orders carry their order number (Strings) and belong to the acme company
    numbers = [r["number"] for r in b["records"] if r["status"] == "created"]
    assert all(n and n.isdigit() for n in numbers) and len(set(numbers)) == len(numbers)
    assert {d["company_id"] for d in ledger_b} == {2001}
    assert {d["kind"] for d in ledger_b} == {"order"}


def test_resubmitting_creates_nothing_new(stack: LocalStack, sandbox: httpx.Client, tmp_path: Path) -> None:
    tag = uid()
    path = tmp_path / "eod.jsonl"
    docs = [pos_invoice(f"{tag}-{i}", customer=str(1100 + i)) for i in range(15)]
    path.write_text("\n".join(json.dumps(d, ensure_ascii=False) for d in docs) + "\n")
    first = stack.erpsync("submit", str(path), "--wait", "--json", "--timeout", "120")
    assert first.returncode == 0, first.stderr
    before = json.loads(first.stdout)
    ledger_size = len(sandbox.get("/_sandbox/ledger").json()["documents"])

    second = stack.erpsync("submit", str(path), "--wait", "--json", "--timeout", "120")
    assert second.returncode == 0, second.stderr
    after = json.loads(second.stdout)
    assert after["job_id"] != before["job_id"]
    assert [r["status"] for r in after["records"]] == ["duplicate"] * 15
    assert [r["key"] for r in after["records"]] == [r["key"] for r in before["records"]]
    assert len(sandbox.get("/_sandbox/ledger").json()["documents"]) == ledger_size

    # Corrections: a price fixed (3), a row added (7); the same content written otherwise stays a duplicate (0).
    docs[0] = {k: docs[0][k] for k in reversed(list(docs[0]))}
    docs[0]["InvoiceRows"][0] |= {"Quantity": 2, "UnitPrice": "24.50", "Discount": 10.0}
    docs[3]["InvoiceRows"][1]["UnitPrice"] = 19.5
    docs[7]["InvoiceRows"].append(dict(docs[7]["InvoiceRows"][0], RowNr=3, Quantity=1))
    path.write_text("\n".join(json.dumps(d, ensure_ascii=False) for d in docs) + "\n")
    third = stack.erpsync("submit", str(path), "--wait", "--json", "--timeout", "120")
    assert third.returncode == 1, third.stdout  # not every document is as the ERP holds it
    corrected = json.loads(third.stdout)
    assert corrected["status"] == "partial"
    statuses = [r["status"] for r in corrected["records"]]
    assert statuses == ["duplicate"] * 3 + ["changed"] + ["duplicate"] * 3 + ["changed"] + ["duplicate"] * 7
    price, row = corrected["records"][3], corrected["records"][7]
    assert [e["field"] for e in price["errors"]] == ["InvoiceRows[1].UnitPrice"]
    assert price["key"] == before["records"][3]["key"] and "19.5" not in price["error"]  # paths, never values
    assert [e["field"] for e in row["errors"]] == [f"InvoiceRows[2].{f}" for f in sorted(docs[7]["InvoiceRows"][2])]
    assert len(sandbox.get("/_sandbox/ledger").json()["documents"]) == ledger_size  # the ERP is left as it was
    summary = stack.erpsync("status", corrected["job_id"], "--json")
    assert json.loads(summary.stdout)["counts"]["changed"] == 2


def test_both_spec_examples_go_through_end_to_end(stack: LocalStack, sandbox: httpx.Client) -> None:
    inv = stack.erpsync("submit", str(EXAMPLES / "spec-invoice.json"), "--wait", "--json")
    ordr = stack.erpsync("submit", str(EXAMPLES / "spec-order.json"), "--kind", "order", "--wait", "--json")
    assert inv.returncode == 0 and ordr.returncode == 0, inv.stderr + ordr.stderr
    inv_rec = json.loads(inv.stdout)["records"][0]
    ord_rec = json.loads(ordr.stdout)["records"][0]
    ledger = {d["key"]: d for d in sandbox.get("/_sandbox/ledger").json()["documents"]}
    assert ledger[inv_rec["key"]]["customer_nr"] == "3879" and ledger[inv_rec["key"]]["kind"] == "customer_invoice"
    assert ledger[ord_rec["key"]]["customer_nr"] == "013" and ledger[ord_rec["key"]]["kind"] == "order"
    assert ord_rec["number"] == ledger[ord_rec["key"]]["number"]


def test_cli_results_contract_and_exit_codes(stack: LocalStack, tmp_path: Path) -> None:
    tag = uid()
    bad = pos_invoice(f"{tag}-bad")
    bad["InvoiceDate"] = "20-11-2026"
    path = tmp_path / "jobs.json"
    path.write_text(
        json.dumps({"tenant": "demo", "kind": "customer_invoice", "documents": [pos_invoice(f"{tag}-ok"), bad]})
    )
    submitted = stack.erpsync("submit", str(path), "--wait", "--json")
    assert submitted.returncode == 1  # not every document was created
    job_id = json.loads(submitted.stdout)["job_id"]

    results = stack.erpsync("results", job_id, "--json")
    payload = json.loads(results.stdout)
    assert set(payload) == {"job_id", "status", "lane", "records", "source_error_line", "source_error"}
    assert payload["status"] == "partial" and payload["source_error"] is None  # its source was read whole
    assert payload["lane"] == "interactive"  # two documents: the small jobs' lane
    for record in payload["records"]:
        assert {"external_id", "status", "key", "number", "error"} <= set(record)
        assert record["status"] in ("created", "failed", "duplicate", "changed", "pending", "unknown")
    ok, failed = payload["records"]
    assert ok["status"] == "created" and isinstance(ok["key"], int) and ok["error"] is None
    assert failed["status"] == "failed" and failed["key"] is None and "InvoiceDate" in failed["error"]

    status = json.loads(stack.erpsync("status", job_id, "--json").stdout)
    assert status["status"] == "partial" and status["counts"]["created"] == 1 and status["counts"]["failed"] == 1
    missing = stack.erpsync("status", "no-such-job")
    assert missing.returncode == 2 and "no job" in missing.stderr and "Traceback" not in missing.stderr


def test_document_rejected_by_the_erp(stack: LocalStack, sandbox: httpx.Client) -> None:
    tag = uid()
    alone = submit([pos_invoice(f"{tag}-alone", customer="UNKNOWN-1")], tenant="demo")
    result = wait_job(stack, alone)
    assert result["status"] == "failed"
    assert "UNKNOWN-1" in result["records"][0]["error"] and result["records"][0]["status"] == "failed"


def test_poison_inside_an_invoice_array_is_isolated_and_the_rest_created_once(
    stack: LocalStack, sandbox: httpx.Client
) -> None:
    # SoftOne saves the documents before the rejected one and returns no Keys: the worker asks the Filter
    # what exists, records those Keys, fails the rejected document and sends the rest again.
    tag = uid()
    docs = [pos_invoice(f"{tag}-{i}", customer=str(1200 + i)) for i in range(7)]
    docs[2]["CustomerNr"] = "UNKNOWN-2"
    docs[5]["CustomerNr"] = "UNKNOWN-5"
    result = wait_job(stack, submit(docs, tenant="demo"))
    ledger = ledger_for(sandbox, {d["ExternalId"] for d in docs})
    key_of = {d["external_id"]: d["key"] for d in ledger}
    assert sorted(key_of) == sorted(d["ExternalId"] for i, d in enumerate(docs) if i not in (2, 5))
    assert len(ledger) == 5  # each once
    for i, record in enumerate(result["records"]):
        if i in (2, 5):
            assert record["status"] == "failed" and "hittades inte" in record["error"], record
        else:
            assert record["status"] == "created" and record["key"] == key_of[record["external_id"]], record


def test_transient_503_is_retried_and_creates_once(stack: LocalStack, sandbox: httpx.Client) -> None:
    tag = uid()
    sandbox.post(
        "/_sandbox/faults",
        json={
            "path": "/Economy/Billing/CustomerInvoices",
            "kind": "status",
            "status": 503,
            "times": 2,
            "retry_after": "0",
        },
    )
    docs = [pos_invoice(f"{tag}-{i}") for i in range(5)]
    result = wait_job(stack, submit(docs, tenant="demo"))
    assert result["status"] == "succeeded"
    ledger = ledger_for(sandbox, {d["ExternalId"] for d in docs})
    assert len(ledger) == 5 and len({d["external_id"] for d in ledger}) == 5


def test_invoices_dropped_after_commit_are_reconciled_not_resent(stack: LocalStack, sandbox: httpx.Client) -> None:
    tag = uid()
    sandbox.post("/_sandbox/faults", json={"path": "/Economy/Billing/CustomerInvoices", "kind": "drop_after_commit",
                                           "times": 1})  # fmt: skip
    docs = [pos_invoice(f"{tag}-{i}", customer=str(1300 + i)) for i in range(3)]
    result = wait_job(stack, submit(docs, tenant="demo"))
    ledger = ledger_for(sandbox, {d["ExternalId"] for d in docs})
    assert len(ledger) == 3  # saved once, never re-sent
    key_of = {d["external_id"]: d["key"] for d in ledger}
    assert [(r["status"], r["key"]) for r in result["records"]] == [("created", key_of[d["ExternalId"]]) for d in docs]


def test_orders_with_unknown_outcome_are_dead_letters_not_resent(stack: LocalStack, sandbox: httpx.Client) -> None:
    tag = uid()
    sandbox.post("/_sandbox/faults", json={"path": "/Economy/Billing/Orders", "kind": "drop_after_commit",
                                           "times": 1})  # fmt: skip
    docs = [order(f"{tag}-{i}") for i in range(3)]
    result = wait_job(stack, submit(docs, kind="order", tenant="demo"))
    # One order per request: the lost answer was one order's, the others were answered.
    assert sorted(r["status"] for r in result["records"]) == ["created", "created", "unknown"]
    assert len(ledger_for(sandbox, {d["ExternalId"] for d in docs})) == 3
    listed = json.loads(stack.erpsync("dead", "list", "--json").stdout)
    mine = [d for d in listed["dead_letters"] if d["external_id"].startswith(tag)]
    assert [d["status"] for d in mine] == ["unknown"]


def test_expired_token_is_renewed_once(stack: LocalStack, sandbox: httpx.Client) -> None:
    tag = uid()
    before = sandbox.get("/_sandbox/stats").json()
    sandbox.post("/_sandbox/tokens/expire")
    result = wait_job(stack, submit([pos_invoice(f"{tag}-1")], tenant="demo"))
    assert result["status"] == "succeeded"
    after = sandbox.get("/_sandbox/stats").json()
    path = "POST /Economy/Billing/CustomerInvoices"
    assert after["requests"][path].get("401", 0) - before["requests"].get(path, {}).get("401", 0) == 1
    assert after["tokens_issued"] - before["tokens_issued"] == 1


def test_same_external_id_in_two_concurrent_jobs_is_created_once(stack: LocalStack, sandbox: httpx.Client) -> None:
    tag = uid()
    docs = [pos_invoice(f"{tag}-{i}") for i in range(8)]
    sandbox.post("/_sandbox/latency", json={"ms": 300})
    first, second = submit(docs, tenant="demo"), submit(docs, tenant="demo")
    a, b = wait_job(stack, first), wait_job(stack, second)
    ledger = ledger_for(sandbox, {d["ExternalId"] for d in docs})
    assert len(ledger) == 8
    key_of = {d["external_id"]: d["key"] for d in ledger}
    for ra, rb in zip(a["records"], b["records"], strict=True):
        assert {ra["status"], rb["status"]} == {"created", "duplicate"}
        assert ra["key"] == rb["key"] == key_of[ra["external_id"]]


def test_a_waiting_duplicate_is_sent_when_the_first_submission_fails(stack: LocalStack, sandbox: httpx.Client) -> None:
    """The second job's document waits on the first's claim; the first is rejected by the ERP and releases it,
    so the waiting one (a corrected re-submission) is validated again, claimed and created."""
    tag = uid()
    sandbox.post("/_sandbox/latency", json={"ms": 300})
    first = submit([pos_invoice(f"{tag}-x", customer="UNKNOWN-1")], tenant="demo")
    second = submit([pos_invoice(f"{tag}-x")], tenant="demo")
    a, b = wait_job(stack, first), wait_job(stack, second)
    assert a["records"][0]["status"] == "failed"
    assert b["records"][0]["status"] == "created", b["records"][0]
    assert [d["key"] for d in ledger_for(sandbox, {f"{tag}-x"})] == [b["records"][0]["key"]]


def test_no_secret_in_task_messages_logs_or_results(stack: LocalStack, sandbox: httpx.Client) -> None:
    import redis as redis_lib

    from worker.settings import get_settings

    published: list[str] = []

    def capture(body: Any = None, headers: Any = None, **_: Any) -> None:
        published.append(json.dumps([body, headers], default=str))

    before_task_publish.connect(capture, weak=False)
    try:
        tag = uid()
        job = submit([order(f"{tag}-{i}") for i in range(3)], kind="order", tenant="acme")
        wait_job(stack, job)
    finally:
        before_task_publish.disconnect(capture)
    assert published, "no task message was captured"

    settings = get_settings()
    client = redis_lib.Redis.from_url(settings.redis_py_url(), decode_responses=True)
    token_keys = {f"{settings.key_prefix}:token:acme", f"{settings.key_prefix}:token:demo"}
    tokens = {t for t in (client.get(k) for k in token_keys) if t}
    assert tokens, "the worker should have cached a token"
    secrets = {ACME_COMPANY_KEY, ACME_CONNECT_KEY, "demo-company-key", "demo-connect-key", *tokens}

    stored: list[str] = []
    for key in client.scan_iter(f"{settings.key_prefix}:*", count=1000):
        if key in token_keys:
            continue
        kind = client.type(key)
        if kind == "string":
            stored.append(client.get(key) or "")
        elif kind == "hash":
            stored.extend(client.hvals(key))
        elif kind == "list":
            stored.extend(client.lrange(key, 0, -1))
    for queue in (settings.queue, settings.send_queue_name):
        stored.extend(client.lrange(queue, 0, -1))  # messages still queued, if any

    haystacks = {"task messages": "\n".join(published), "logs": stack.logs(), "results store": "\n".join(stored)}
    for where, text in haystacks.items():
        for secret in secrets:
            assert secret not in text, f"a secret appears in the {where}"
    assert "token=***" in stack.logs()  # the POST lines are logged, redacted


def test_dead_letter_replay_twice_creates_once(stack: LocalStack, sandbox: httpx.Client) -> None:
    tag = uid()
    # A 500 that saved nothing: for an order nobody can tell, so it becomes an `unknown` dead letter.
    sandbox.post("/_sandbox/faults", json={"path": "/Economy/Billing/Orders", "kind": "status", "status": 500})
    job = submit([order(f"{tag}-o")], kind="order", tenant="demo")
    assert wait_job(stack, job)["records"][0]["status"] == "unknown"
    dead_id = f"{job}#0"
    shown = json.loads(stack.erpsync("dead", "show", dead_id, "--json").stdout)
    assert shown["status"] == "unknown" and shown["document"]["ExternalId"] == f"{tag}-o"
    assert shown["attempts"] and shown["attempts"][0]["status"] == 500

    # The operator checked the ERP and decides to send it again, twice by mistake.
    first = json.loads(stack.erpsync("dead", "replay", dead_id, "--json").stdout)["replayed"][0]["job_id"]
    again = stack.erpsync("dead", "replay", dead_id, "--json")
    a = wait_job(stack, first)
    assert a["records"][0]["status"] == "created"
    if again.returncode == 0:  # the first replay had not created it yet: the second comes back duplicate
        b = wait_job(stack, json.loads(again.stdout)["replayed"][0]["job_id"])
        assert b["records"][0]["status"] == "duplicate" and b["records"][0]["key"] == a["records"][0]["key"]
    else:  # it had: the dead letter is resolved, and a replay of it is refused in one line
        assert again.returncode == 2 and "is resolved" in again.stderr, again
    assert len(ledger_for(sandbox, {f"{tag}-o"})) == 1
    shown = json.loads(stack.erpsync("dead", "show", dead_id, "--json").stdout)
    assert (shown["state"], shown["resolved_key"]) == ("resolved", str(a["records"][0]["key"]))

    assert stack.erpsync("dead", "drop", dead_id).returncode == 0
    assert stack.erpsync("dead", "show", dead_id).returncode == 2


def test_same_external_id_twice_in_one_chunked_job_fails_one(stack: LocalStack, sandbox: httpx.Client) -> None:
    tag = uid()
    docs = [pos_invoice(f"{tag}-{i}", customer=str(4000 + i)) for i in range(15)]
    docs[12]["ExternalId"] = docs[0]["ExternalId"]  # chunk size is 10 here: another chunk
    result = wait_job(stack, submit(docs, tenant="demo"))
    records = result["records"]
    # The chunks run in parallel: whichever claims the ExternalId first is created, the other fails.
    pair = sorted([(records[0]["status"], 0), (records[12]["status"], 12)])
    (_, created_at), (failed_status, failed_at) = pair
    assert [s for s, _ in pair] == ["created", "failed"] and failed_status == "failed"
    assert f"also used by document {created_at} " in records[failed_at]["error"]
    others = [r["status"] for i, r in enumerate(records) if i not in (0, 12)]
    assert others == ["created"] * 13
    assert len(ledger_for(sandbox, {d["ExternalId"] for d in docs})) == 14


def test_pos_csv_export_is_streamed_grouped_per_receipt_and_a_bad_cell_fails_only_its_receipt(
    stack: LocalStack, sandbox: httpx.Client, tmp_path: Path
) -> None:
    import csv
    import subprocess
    import sys

    day = f"2031-{1 + int(uid()[:2], 16) % 12:02d}-{1 + int(uid()[:2], 16) % 28:02d}"  # fresh receipt ids
    path = tmp_path / "eod.csv"
    subprocess.run(
        [sys.executable, str(EXAMPLES / "make_pos_day.py"), "--format", "csv", "--invoices", "40", "--date", day,
         "--seed", str(int(uid()[:6], 16)), "--out", str(path)],
        check=True,
    )  # fmt: skip
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    receipts = list(dict.fromkeys(r["receipt_id"] for r in rows))
    bad_receipt = receipts[2]
    first_of_bad = next(i for i, r in enumerate(rows) if r["receipt_id"] == bad_receipt)
    rows[first_of_bad]["quantity"] = "tre"  # a cashier's typo: only this receipt may fail
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    done = stack.erpsync("submit", str(path), "--wait", "--json", "--timeout", "120")
    assert done.returncode == 1, done.stderr  # not all created
    result = json.loads(done.stdout)
    by_id = {r["external_id"]: r for r in result["records"]}
    assert list(by_id) == receipts  # one invoice per receipt, in file order
    assert by_id[bad_receipt]["status"] == "failed"
    assert by_id[bad_receipt]["errors"][0]["field"] == "InvoiceRows[0].Quantity"
    assert all(r["status"] == "created" for x, r in by_id.items() if x != bad_receipt)

    ledger = {d["external_id"]: d for d in sandbox.get("/_sandbox/ledger", params={"full": "1"}).json()["documents"]}
    mine = [x for x in receipts if x in ledger]
    assert sorted(mine) == sorted(x for x in receipts if x != bad_receipt)
    for x in mine:
        assert ledger[x]["key"] == by_id[x]["key"]
        assert len(ledger[x]["document"]["InvoiceRows"]) == sum(1 for r in rows if r["receipt_id"] == x)
