"""Fair sharing across tenants with real workers in the Procfile layout (an intake worker, a sender worker):

- a SoftOne tenant's jobs finish while a Fortnox tenant's rate-limited backlog is still draining (no sender
  thread waits for the Fortnox tenant's turns: its batches are parked in Redis);
- a sender killed mid-file costs seconds: its replacement sends again for every tenant within 30 s, each batch
  queued once (never in two of the dispatcher's places, no pile of send messages);
- work parked in Redis (a rate-limited tenant's backlog, batches delayed by the ERP's 503s) survives SIGKILL of
  every worker and a Redis restart, and ends with the usual audit: every document created exactly once.

Order of completion is asserted, never timings, except the issue's 30 s bound for a replacement sender.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.faults import FAST_SETTINGS, FaultStack, invoice, poll
from tests.integration.test_targets import fortnox_invoice
from worker.store.keys import Keys
from worker.store.records import JOB_FINAL

pytestmark = pytest.mark.integration

INVOICES = "/Economy/Billing/CustomerInvoices"


def _stack(tmp_path: Path, **settings: str) -> FaultStack:
    return FaultStack(tmp_path, settings={**FAST_SETTINGS, **settings}, latency_ms=50).start()


@pytest.fixture
def slow_fortnox(tmp_path: Path) -> Iterator[FaultStack]:
    """Fortnox at 5 requests per 5 s: 20 invoices take about 20 s."""
    stack = _stack(tmp_path, ERPSYNC_RATE_LIMITS=json.dumps({"fortnox": "5/5"}))
    try:
        yield stack
    finally:
        stack.stop()


def _procfile_workers(stack: FaultStack) -> None:
    stack.start_worker("intake", concurrency=2, pool="prefork", queues="intake")
    stack.start_worker("sender", concurrency=12, pool="threads", queues="send")


def _status(stack: FaultStack, job_id: str) -> str:
    return str((stack.store().job(job_id) or {}).get("status"))


def test_softone_jobs_finish_while_a_fortnox_backlog_drains(slow_fortnox: FaultStack) -> None:
    stack = slow_fortnox
    _procfile_workers(stack)
    tag = uuid.uuid4().hex[:6]
    [fortnox_job] = stack.submit(
        [[fortnox_invoice(f"fx-{tag}-{i:03d}", customer=str(10_000 + i)) for i in range(20)]], tenant="demo-fortnox"
    )
    # The Fortnox tenant has begun, and most of its invoices wait for their turns.
    poll(lambda: len(stack.ledger()) >= 2, 60, "the Fortnox tenant sending")
    shop_jobs = stack.submit([[invoice(f"shop-{tag}-{i}", 20_000 + i)] for i in range(5)], tenant="demo")
    stack.wait_jobs(shop_jobs, timeout=60)
    assert _status(stack, fortnox_job) not in JOB_FINAL, "the Fortnox backlog drained before the SoftOne jobs ended"
    assert all(_status(stack, j) == "succeeded" for j in shop_jobs)
    stack.wait_jobs([fortnox_job], timeout=120)
    stack.audit([fortnox_job, *shop_jobs]).assert_clean()


def _places(stack: FaultStack) -> Counter[str]:
    """How many of the dispatcher's places (lanes, delayed, taken) hold each batch id, read in one transaction (a
    batch moving from its lane to a sender between two reads would otherwise be seen in both)."""
    client, keys = stack.redis(), Keys(stack.prefix)
    lanes = list(client.scan_iter(f"{stack.prefix}:dispatch:lane:*", count=1000))
    pipe = client.pipeline(transaction=True)
    for key in lanes:
        pipe.lrange(key, 0, -1)
    pipe.zrange(keys.dispatch_delayed, 0, -1)
    pipe.zrange(keys.dispatch_taken, 0, -1)
    seen: Counter[str] = Counter()
    for members in pipe.execute():
        seen.update(members)
    return seen


def test_a_killed_sender_costs_seconds_and_each_batch_is_queued_once(tmp_path: Path) -> None:
    # Fortnox at its real limit, SoftOne 2 requests in flight: both still sending when the sender is killed.
    stack = _stack(tmp_path, ERPSYNC_RATE_LIMITS=json.dumps({"fortnox": "25/5"}), ERPSYNC_TENANT_MAX_IN_FLIGHT="2")
    try:
        stack.start_worker("intake", concurrency=2, pool="prefork", queues="intake")
        sender = stack.start_worker("sender", concurrency=12, pool="threads", queues="send")
        tag = uuid.uuid4().hex[:6]
        bulk = [invoice(f"bulk-{tag}-{i:04d}", 30_000 + i) for i in range(4000)]
        fx = [fortnox_invoice(f"fxk-{tag}-{i:03d}", customer=str(40_000 + i)) for i in range(100)]  # about 20 s
        job_ids = stack.submit([bulk], tenant="demo") + stack.submit([fx], tenant="demo-fortnox")
        poll(lambda: {str(d["target"]) for d in stack.ledger()} == {"softone", "fortnox"}, 120, "both sending")

        worst: dict[str, Any] = {"places": 0, "send_queue": 0}
        stop = threading.Event()

        def watch() -> None:  # each batch in one place at a time, and no pile of send messages
            while not stop.is_set():
                places = _places(stack)
                worst["places"] = max([worst["places"], *places.values()])
                worst["send_queue"] = max(worst["send_queue"], stack.redis().llen(stack.queues[1]))
                time.sleep(0.2)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        stack.kill_worker(sender)
        time.sleep(4)
        restarted = time.time()
        stack.start_worker("sender", concurrency=12, pool="threads", queues="send")

        def sent_since_restart() -> bool:
            tenants = {str(d["target"]) for d in stack.ledger() if _created_at(d) > restarted}
            return {"softone", "fortnox"} <= tenants

        poll(sent_since_restart, 30, "both tenants sending within 30 s of the replacement's start", every=0.1)
        print(f"\nsending resumed for both tenants {time.time() - restarted:.1f}s after the replacement started")
        stack.wait_jobs(job_ids, timeout=240)
        stop.set()
        watcher.join()
        assert worst["places"] <= 1, f"a batch was queued twice: {worst}"
        assert worst["send_queue"] <= 48 + 12, f"send messages piled up: {worst}"
        print(f"most send messages queued at once: {worst['send_queue']}")
        stack.audit(job_ids).assert_clean(unknown=True)  # a request cut by the kill may be looked up
    finally:
        stack.stop()


def _created_at(document: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(document["created_at"]).replace("Z", "+00:00")).timestamp()


def test_parked_work_survives_killed_workers_and_a_redis_restart(slow_fortnox: FaultStack) -> None:
    stack = slow_fortnox
    _procfile_workers(stack)
    tag = uuid.uuid4().hex[:6]
    with httpx.Client(base_url=stack.stack.sandbox_url) as erp:
        # The next SoftOne POSTs are refused with 503: those batches wait in the delayed set.
        erp.post("/_sandbox/faults",
                 json={"path": INVOICES, "kind": "status", "status": 503, "times": 6, "retry_after": "3"})  # fmt: skip
    fortnox = stack.submit([[fortnox_invoice(f"fxp-{tag}-{i:03d}", customer=str(50_000 + i)) for i in range(12)]],
                           tenant="demo-fortnox")  # fmt: skip
    softone = stack.submit([[invoice(f"sp-{tag}-{i:03d}", 60_000 + i) for i in range(60)]], tenant="demo")
    keys = Keys(stack.prefix)

    def parked() -> bool:
        client = stack.redis()
        return bool(client.zcard(keys.dispatch_parked)) and bool(client.zcard(keys.dispatch_delayed))

    poll(parked, 60, "a parked tenant and a delayed batch")
    for proc in list(stack.stack.workers):  # SIGKILL, every worker
        if proc.poll() is None:
            stack.kill_worker(proc)
    stack.restart_redis()
    assert stack.redis().zcard(keys.dispatch_parked) or stack.redis().zcard(keys.dispatch_delayed)
    _procfile_workers(stack)
    stack.wait_jobs(fortnox + softone, timeout=180)
    stack.audit(fortnox + softone).assert_clean(unknown=True)
