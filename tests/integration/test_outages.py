"""Outages mid-run: Redis restarted (cleanly, and SIGKILLed) during 5,000 invoices, and the ERP refusing
connections for two minutes. Each ends with the audit of tests/faults.py: every document `created` exactly once
in the sandbox ledger with the Key our results store holds (or failed with its reason), nothing pending,
nothing in the ledger twice; then whatever the workers held is redelivered late and the audit must not change.

Redis runs here as production should run it: AOF with `appendfsync always` (see `harden_redis`), so a write
Redis acknowledged is on disk before the worker acts on it.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.faults import FAST_SETTINGS, Audit, FaultStack, invoice, poll

pytestmark = [pytest.mark.integration]

INVOICES = "/Economy/Billing/CustomerInvoices"
_customers = itertools.count(20_000_000, 1_000_000)  # unique content per scenario: reconciliation matches on content

#: Production-sized batches and intake chunks (5,000 invoices in 10-document batches would test the queue, not
#: the outage), the fault harness's short leases and timeouts otherwise.
OUTAGE_SETTINGS = {**FAST_SETTINGS, "ERPSYNC_BATCH_MAX_DOCS": "50", "ERPSYNC_INTAKE_CHUNK_DOCS": "1000"}


def harden_redis(faults: FaultStack) -> None:
    """`appendfsync always`: Redis fsyncs the AOF before it answers a write (group commit per event-loop turn).
    The harness's redis-server starts with everysec; set again after every restart (it is not in a config file)."""
    faults.redis().config_set("appendfsync", "always")


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    stack = FaultStack(tmp_path_factory.mktemp("outages"), settings=OUTAGE_SETTINGS, concurrency=4).start()
    harden_redis(stack)
    try:
        yield stack
    finally:
        stack.stop()


def documents(jobs: int, per_job: int, tag: str) -> list[list[dict[str, Any]]]:
    """`jobs` jobs of `per_job` valid invoices (unique content) and one our schema rejects, in the middle."""
    base = next(_customers)
    out = []
    for j in range(jobs):
        docs = [invoice(f"{tag}-{j}-{i:04d}", base + j * 10_000 + i, rows=1 + i % 3) for i in range(per_job)]
        bad = invoice(f"{tag}-{j}-bad", base + j * 10_000 + 9_999)
        bad["InvoiceRows"][0]["Quantity"] = "två"
        out.append([*docs[: per_job // 2], bad, *docs[per_job // 2 :]])
    return out


def created_in_ledger(erp: httpx.Client, tag: str) -> int:
    return sum(1 for d in erp.get("/_sandbox/ledger").json()["documents"] if str(d["external_id"]).startswith(tag))


def check(report: Audit, jobs: list[list[dict[str, Any]]]) -> None:
    """Every valid invoice created once with the ERP's Key; every invalid one failed with its field, and only those."""
    report.assert_clean()
    assert report.documents == sum(len(j) for j in jobs)
    assert len(report.failed) == len(jobs), report.failed
    assert all("InvoiceRows[0].Quantity" in why for why in report.failed.values()), report.failed


def redeliver_late(faults: FaultStack, job_ids: list[str]) -> None:
    """Whatever a worker held when the outage hit comes back after the visibility timeout: nothing changes."""
    report = faults.audit(job_ids)
    for proc in faults.stack.workers:
        if proc.poll() is None:
            assert faults.terminate_worker(proc) == 0
    faults.expire_unacked()
    late = faults.start_worker()
    faults.wait_idle(timeout=60)
    assert faults.audit(job_ids) == report
    assert faults.terminate_worker(late) == 0


@pytest.mark.timeout(420)
@pytest.mark.parametrize("crash", [False, True], ids=["shutdown", "sigkill"])
def test_redis_restarted_in_the_middle_of_5000_invoices(faults: FaultStack, erp: httpx.Client, crash: bool) -> None:
    """Redis goes away for 2 s while 5,000 invoices are being sent (SHUTDOWN, or SIGKILL of redis-server) and comes
    back from its AOF. Workers reconnect; tasks interrupted mid-way are retried or redelivered; the audit holds."""
    tag = f"redis-{'kill' if crash else 'stop'}-{uuid.uuid4().hex[:6]}"
    # One big file (4 chunks) and 50 small jobs: both paths through intake.
    jobs = documents(1, 4000, tag) + documents(50, 20, f"{tag}-s")  # 5,000 valid invoices and 51 invalid ones
    erp.post("/_sandbox/latency", json={"ms": 40, "jitter_ms": 20})  # a run long enough to be cut in the middle
    faults.start_worker("a")
    faults.start_worker("b")
    job_ids = faults.submit(jobs)

    poll(lambda: created_in_ledger(erp, tag) >= 1000, 120, "1,000 invoices created", every=0.5)
    faults.restart_redis(crash=crash, down_for=2)
    harden_redis(faults)
    assert created_in_ledger(erp, tag) < 5000, "the run ended before Redis went away: not a mid-run outage"

    faults.wait_jobs(job_ids, timeout=240)
    report = faults.audit(job_ids)
    check(report, jobs)
    assert len(report.created) == 5000
    redeliver_late(faults, job_ids)


@pytest.mark.timeout(360)
def test_erp_refusing_connections_for_two_minutes(faults: FaultStack, erp: httpx.Client) -> None:
    """The ERP is unreachable (connection refused, open connections reset) for 2 minutes mid-run, then back.

    Nothing reached the ERP while it refused, so those turns are waits, not attempts: no document is given up
    (the fault settings allow 8 attempts with backoff capped at 2 s — 2 minutes of refusal would exhaust them
    ten times over). POSTs cut by the outage are reconciled, not resent blindly."""
    tag = f"erpdown-{uuid.uuid4().hex[:6]}"
    jobs = documents(4, 500, tag)
    erp.post("/_sandbox/latency", json={"ms": 1500, "jitter_ms": 200})  # about 15 s of sending: cut in the middle
    faults.start_worker()
    job_ids = faults.submit(jobs)
    poll(lambda: created_in_ledger(erp, tag) >= 100, 60, "100 invoices created", every=0.3)

    faults.erp_down()
    down_at = time.monotonic()
    more = documents(2, 40, f"{tag}-late")  # submitted while the ERP is down
    job_ids += faults.submit(more)
    jobs += more
    time.sleep(60)
    store = faults.store()
    assert not any(r.status == "created" for j in job_ids[-2:] for r in store.records(j))
    time.sleep(max(0.0, 120 - (time.monotonic() - down_at)))
    during = faults.records(job_ids)
    assert not [r for r in during if r["status"] == "failed" and "Quantity" not in (r["error"] or "")], (
        "documents gave up while the ERP was down"
    )
    assert any(r["status"] == "pending" for r in during), "the run ended before the outage: nothing was held up"
    faults.erp_up()

    faults.wait_jobs(job_ids, timeout=120)
    report = faults.audit(job_ids)
    check(report, jobs)
    batches = faults.batches(job_ids)
    refused = [b for b in batches.values() if any(e.get("outcome") == "unreachable" for e in b["log"])]
    assert refused, "no batch met the outage"
    # The waits were not counted: no batch used more than a few real attempts.
    assert max(int(b["attempts"]) for b in batches.values()) <= 4, {i: b["log"][-3:] for i, b in batches.items()}
    redeliver_late(faults, job_ids)
