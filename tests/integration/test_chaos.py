"""Chaos: thousands of documents through random faults and poison, then an audit against the ledger.

Every fault kind of the sandbox at 6 % of ERP requests (Filter included), 2 % poisoned documents (valid for
our schema, rejected by the ERP), a real worker, real Redis, HTTP. Half the documents are look-alikes: one-row
receipts from a short menu for one cash customer, identical but for their ExternalId, as a POS day is.
Afterwards every good invoice exists exactly once with the Key we recorded and none is `unknown`, every good
order exists exactly once and is `unknown` only where the answer to its own request was lost, every poisoned
document failed with the ERP's message, nothing is pending, and no request came back before its Retry-After.
"""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter
from typing import Any

import httpx
import pytest

from tests.integration.conftest import wait_job
from worker.devstack.stack import LocalStack
from worker.producer.submit import submit
from worker.store.results import ResultsStore

pytestmark = pytest.mark.integration

# 6 % each, so that every kind lands on at least 5 % of requests in a run (the draw varies around it).
FAULTS = {"429": 0.06, "503": 0.06, "slow": 0.06, "drop_after_commit": 0.06, "500_after_commit": 0.06,
          "token_expiry": 0.06}  # fmt: skip


#: The look-alikes' menu: (ProductNr, Quantity, UnitPrice) of a one-row receipt.
MENU = [("COFFEE", 1, 32), ("BUN", 1, 25), ("COFFEE", 2, 32), ("TEA", 1, 28), ("WATER", 1, 18), ("BUN", 2, 25)]


def chaos_documents(
    tag: str, count: int, rng: random.Random, poison_rate: float, lookalike_rate: float = 0.5
) -> tuple[list[dict], set[str]]:
    docs, poisoned = [], set()
    for i in range(count):
        external_id = f"{tag}-{i:05d}"
        bad = rng.random() < poison_rate
        if bad:
            poisoned.add(external_id)
        if rng.random() < lookalike_rate:
            product, qty, price = rng.choice(MENU)
            customer = "UNKNOWN-CASH" if bad else "1000"
            rows = [{"CustomerRowType": 2, "RowNr": 1, "ProductNr": product, "Quantity": qty, "UnitPrice": price,
                     "VatRate": 12}]  # fmt: skip
        else:
            customer = f"UNKNOWN-{i}" if bad else str(10_000 + i)
            rows = [
                {"CustomerRowType": 2, "RowNr": r + 1, "ProductNr": f"73100{rng.randint(0, 99):03d}",
                 "Quantity": rng.choice([1, 2, 3, 0.5]), "UnitPrice": round(rng.uniform(5, 500), 2), "VatRate": 12}
                for r in range(rng.randint(1, 4))
            ]  # fmt: skip
        docs.append({"ExternalId": external_id, "CustomerNr": customer, "InvoiceDate": "2026-11-20", "OriginType": 2,
                     "InvoiceRows": rows})  # fmt: skip
    return docs, poisoned


def run_chaos(
    stack: LocalStack, sandbox: httpx.Client, kind: str, docs: list[dict], jobs: int
) -> tuple[list[dict], int]:
    """Submit `docs` in `jobs` jobs under every fault kind; their records and the ERP requests they took."""
    before = sandbox.get("/_sandbox/stats").json()
    sandbox.post("/_sandbox/faults", json={"probabilities": FAULTS, "seed": 7, "retry_after": 1, "slow_ms": 1500})
    per_job = len(docs) // jobs
    job_ids = [submit(docs[i * per_job : (i + 1) * per_job], kind=kind, tenant="demo", source="chaos")
               for i in range(jobs)]  # fmt: skip
    started = time.monotonic()
    results = [wait_job(stack, job_id, timeout=600) for job_id in job_ids]
    sandbox.delete("/_sandbox/faults")
    after = sandbox.get("/_sandbox/stats").json()
    injected = {k: after["faults"][k] - before.get("faults", {}).get(k, 0) for k in FAULTS}
    # ERP requests that could draw a fault (logins never do)
    requests = sum(
        n - before["requests"].get(route, {}).get(status, 0)
        for route, counts in after["requests"].items()
        if not route.endswith("/Login/Token")
        for status, n in counts.items()
    )
    rates = {k: f"{100 * n / max(1, requests):.1f}%" for k, n in injected.items()}
    print(f"\nchaos {kind}: {len(docs)} documents, {jobs} jobs, {time.monotonic() - started:.1f}s, "
          f"{requests} ERP requests, faults injected {injected} = {rates}")  # fmt: skip
    for route, counts in sorted(after["requests"].items()):
        old = before["requests"].get(route, {})
        print(f"  {route}: " + ", ".join(f"{s} {n - old.get(s, 0)}" for s, n in sorted(counts.items())))
    assert after["early_retries"] - before.get("early_retries", 0) == 0, after["early_retry_samples"]
    assert all(n > 0 for n in injected.values()), injected
    return [r for result in results for r in result["records"]], requests


def test_chaos_invoices(stack: LocalStack, sandbox: httpx.Client) -> None:
    tag = f"chaos-{uuid.uuid4().hex[:6]}"
    docs, poisoned = chaos_documents(tag, 1800, random.Random(20261120), poison_rate=0.02)
    assert len(poisoned) >= 0.015 * len(docs)
    records, requests = run_chaos(stack, sandbox, "customer_invoice", docs, jobs=12)

    ledger = [d for d in sandbox.get("/_sandbox/ledger").json()["documents"] if d["external_id"].startswith(tag)]
    times = Counter(d["external_id"] for d in ledger)
    key_of = {d["external_id"]: d["key"] for d in ledger}
    statuses = Counter(r["status"] for r in records)
    print(f"chaos invoices: {dict(statuses)}; poisoned {len(poisoned)}; {requests / len(docs):.3f} requests a document")
    reasons = Counter((r["status"], (r["error"] or "")[:90]) for r in records if r["status"] != "created")
    print("\n".join(f"  {n:5d} {status}: {why}" for (status, why), n in reasons.most_common(8)))
    assert statuses["pending"] == 0 and statuses["unknown"] == 0
    for record in records:
        x = record["external_id"]
        if x in poisoned:
            assert record["status"] == "failed" and "hittades inte" in record["error"], record
            assert times[x] == 0
        else:
            assert record["status"] == "created", record
            assert times[x] == 1, f"{x} is {times[x]} times in the ledger"
            assert record["key"] == key_of[x]


def test_chaos_orders(stack: LocalStack, sandbox: httpx.Client) -> None:
    """Orders have no Filter: each goes in a request of its own, so an open answer costs that one order."""
    tag = f"chaos-o-{uuid.uuid4().hex[:6]}"
    docs, poisoned = chaos_documents(tag, 920, random.Random(7), poison_rate=0.02)
    records, requests = run_chaos(stack, sandbox, "order", docs, jobs=12)

    ledger = [d for d in sandbox.get("/_sandbox/ledger").json()["documents"] if d["external_id"].startswith(tag)]
    times = Counter(d["external_id"] for d in ledger)
    key_of = {d["external_id"]: d["key"] for d in ledger}
    statuses = Counter(r["status"] for r in records)
    dead: dict[str, Any] = {d["external_id"]: d for d in _dead_letters(stack) if d["external_id"].startswith(tag)}
    good = len(docs) - len(poisoned)
    print(f"chaos orders: {dict(statuses)}; poisoned {len(poisoned)}; unknown {statuses['unknown']} of {good} good "
          f"= {100 * statuses['unknown'] / good:.1f}%; {requests / len(docs):.3f} requests an order")  # fmt: skip
    reasons = Counter((r["status"], (r["error"] or "")[:120]) for r in records if r["status"] != "created")
    print("\n".join(f"  {n:5d} {status}: {why}" for (status, why), n in reasons.most_common(8)))
    assert statuses["pending"] == 0
    store = _store()
    for record in records:
        x = record["external_id"]
        if record["status"] == "unknown":
            # Only where the answer to its own request was lost (cut off, a 500, or slower than the read timeout):
            # its request carried that one order.
            assert "gave no usable answer" in record["error"], record
            assert dead[x]["status"] == "unknown" and store.batch(dead[x]["batch_id"])["size"] == "1", dead[x]
        if x in poisoned:
            assert times[x] == 0, f"poisoned {x} is in the ledger"
            if record["status"] != "unknown":
                assert record["status"] == "failed" and "hittades inte" in record["error"], record
                assert dead[x]["status"] == "failed"
            continue
        if record["status"] == "unknown":
            # "unknown" says the ERP may have it: at most once. A slow answer that was a refusal (a 401 after
            # another request's token_expiry, held back past the read timeout) leaves it out of the ledger.
            assert times[x] <= 1, f"{x} is {times[x]} times in the ledger: {record}"
            continue
        assert times[x] == 1, f"{x} is {times[x]} times in the ledger: {record}"  # every created order exactly once
        assert record["status"] == "created" and record["key"] == key_of[x], record


def _store() -> ResultsStore:
    from worker.cli.commands import _store

    return _store()


def _dead_letters(stack: LocalStack) -> list[dict[str, Any]]:
    return _store().dead_letters()
