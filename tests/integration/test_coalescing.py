"""Coalescing: many one-document jobs share array POSTs; a crash with documents in the buffer loses none."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.integration.conftest import pos_invoice, wait_job
from worker.devstack.stack import LocalStack
from worker.producer.submit import submit
from worker.store.records import JOB_FINAL

pytestmark = pytest.mark.integration
INVOICES = "POST /Economy/Billing/CustomerInvoices"


def posts(client: httpx.Client) -> int:
    return sum(client.get("/_sandbox/stats").json()["requests"].get(INVOICES, {}).values())


def test_one_document_jobs_share_array_posts_and_keys_land_on_their_own_jobs(
    stack: LocalStack, sandbox: httpx.Client
) -> None:
    tag = uuid.uuid4().hex[:8]
    before = posts(sandbox)
    jobs = {submit([pos_invoice(f"{tag}-{i}", customer=str(2000 + i))], tenant="demo"): f"{tag}-{i}" for i in range(60)}
    results = {job: wait_job(stack, job) for job in jobs}
    sent = posts(sandbox) - before
    ledger = {d["external_id"]: d["key"] for d in sandbox.get("/_sandbox/ledger").json()["documents"]}
    for job, external_id in jobs.items():
        (record,) = results[job]["records"]
        assert record["external_id"] == external_id and record["status"] == "created"
        assert record["key"] == ledger[external_id]
    # batch size is 10 in this stack: about 6 POSTs; a few partial flushes are fine, one per job is not
    print(f"\n60 one-document jobs -> {sent} POSTs")
    assert sent <= 15


@pytest.fixture
def crash_stack(redis_url: str, tmp_path: Path) -> Iterator[LocalStack]:
    prefix = f"erpsync-crash-{uuid.uuid4().hex[:8]}"
    env = {"ERPSYNC_QUEUE": prefix, "ERPSYNC_KEY_PREFIX": prefix, "ERPSYNC_BATCH_MAX_DOCS": "50"}
    s = LocalStack(workdir=tmp_path, redis_url=redis_url, concurrency=2, extra_env=env)
    try:
        s.start_sandbox()
        yield s
    finally:
        s.stop()
        client = redis.Redis.from_url(redis_url.replace("redis+socket://", "unix://"))
        for key in client.scan_iter(f"{prefix}*", count=1000):
            client.delete(key)


def test_worker_killed_with_documents_in_the_buffer_loses_none(crash_stack: LocalStack) -> None:
    s = crash_stack
    # Documents wait up to 60 s for company: long enough to kill the worker while they sit in the buffer.
    worker = s.start_worker(env={"ERPSYNC_BATCH_MAX_WAIT_MS": "60000"})
    tag = uuid.uuid4().hex[:8]
    paths = []
    for i in range(12):
        path = s.workdir / f"job{i}.json"
        path.write_text(json.dumps([pos_invoice(f"{tag}-{i}", customer=str(3000 + i))]))
        paths.append(path)
    job_ids = [json.loads(s.erpsync("submit", str(p), "--json").stdout)["job_id"] for p in paths]
    client = redis.Redis.from_url(s.env["ERPSYNC_REDIS_URL"].replace("redis+socket://", "unix://"))
    buffer_key = f"{s.env['ERPSYNC_KEY_PREFIX']}:buffer:demo:customer_invoice"
    deadline = time.monotonic() + 60
    while client.llen(buffer_key) < 12:
        assert time.monotonic() < deadline, "documents never reached the buffer"
        time.sleep(0.1)
    s.kill_worker(worker)
    assert client.llen(buffer_key) == 12

    s.start_worker(name="after-crash", env={"ERPSYNC_BATCH_MAX_WAIT_MS": "200"})
    statuses = []
    for job_id in job_ids:
        deadline = time.monotonic() + 60
        while True:
            payload = json.loads(s.erpsync("results", job_id, "--json").stdout)
            if payload["status"] in JOB_FINAL or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        statuses.append(payload["records"][0]["status"])
    assert statuses == ["created"] * 12
    ledger = Counter(d["external_id"] for d in s.ledger() if str(d["external_id"]).startswith(tag))
    assert sorted(ledger) == sorted(f"{tag}-{i}" for i in range(12)) and set(ledger.values()) == {1}
