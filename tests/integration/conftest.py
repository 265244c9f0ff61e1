"""Integration fixtures: a real Redis, the sandbox over HTTP and a real `celery worker` process.

Redis: ERPSYNC_REDIS_URL or 127.0.0.1:6379 when one answers, otherwise an embedded redis-server. Each
session uses its own queue and key prefix, so a shared Redis is neither disturbed nor flushed.
"""

from __future__ import annotations

import json
import os
import secrets
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.faults import FaultStack
from worker.devstack.stack import EmbeddedRedis, FlowerProcess, LocalStack, redis_answers
from worker.store.records import JOB_FINAL

HERE = Path(__file__).resolve().parent
ACME_COMPANY_KEY = "acme-company-key-7f3a9c1e5b"
ACME_CONNECT_KEY = "acme-connect-key-2d8e4f6a0c"
# One environment for every process of the session, as under the Procfile: the workers know Flower's
# password too (a document carrying it is refused, worker/producer/submit.py).
FLOWER_USER, FLOWER_PASSWORD = "ops", secrets.token_urlsafe(18)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    for url in (os.environ.get("ERPSYNC_REDIS_URL"), "redis://127.0.0.1:6379/0"):
        if url and redis_answers(url):
            yield url
            return
    embedded = EmbeddedRedis(tmp_path_factory.mktemp("redis")).start()
    try:
        yield embedded.url
    finally:
        embedded.stop()


@pytest.fixture(scope="session")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    workdir = tmp_path_factory.mktemp("stack")
    prefix = f"erpsync-it-{uuid.uuid4().hex[:8]}"
    sandbox_config = workdir / "sandbox.json"
    sandbox_config.write_text(
        json.dumps(
            {
                "companies": [
                    {
                        "company_api_key": "demo-company-key",
                        "connect_api_keys": ["demo-connect-key"],
                        "company_id": 1592,
                        "name": "Demo AB",
                    },
                    {
                        "company_api_key": ACME_COMPANY_KEY,
                        "connect_api_keys": [ACME_CONNECT_KEY],
                        "company_id": 2001,
                        "name": "Acme AB",
                    },
                ],
                # no "customers": the default register (every all-digit number); "UNKNOWN-n" is the poison
            }
        )
    )
    tenants = workdir / "tenants.json"
    tenants.write_text(
        json.dumps(
            {
                "tenants": [
                    {"name": "acme", "company_api_key": ACME_COMPANY_KEY, "connect_api_key": ACME_CONNECT_KEY},
                    # the sandbox's demo Fortnox account through the authorization-code flow's refresh token
                    {
                        "name": "fx-refresh",
                        "target": "fortnox",
                        "client_id": "demo-fortnox-client",
                        "client_secret": "demo-fortnox-secret",
                        "refresh_token": "demo-fortnox-refresh",
                    },
                ]
            }
        )
    )
    env = {
        "ERPSYNC_QUEUE": prefix,
        "ERPSYNC_KEY_PREFIX": prefix,
        "ERPSYNC_TENANTS_FILE": str(tenants),
        "ERPSYNC_RETRY_BACKOFF_BASE": "0.2",
        "ERPSYNC_RETRY_BACKOFF_CAP": "2",
        "ERPSYNC_BATCH_MAX_DOCS": "10",
        "ERPSYNC_RECONCILE_DELAY_SECONDS": "0.3",
        # small, so that most jobs of the suite are validated in several chunk tasks
        "ERPSYNC_INTAKE_CHUNK_DOCS": "10",
        # short, so that the chaos test's slow answers (1.5 s) are read timeouts: ambiguous outcomes
        "ERPSYNC_HTTP_READ_TIMEOUT": "1",
        # Fortnox's 25 requests per 5 s would make the Fortnox tests minutes long: both sides at 250 per 5 s
        "ERPSYNC_RATE_LIMITS": json.dumps({"fortnox": "250/5"}),
        "FLOWER_BASIC_AUTH": f"{FLOWER_USER}:{FLOWER_PASSWORD}",
    }
    s = LocalStack(
        workdir=workdir,
        redis_url=redis_url,
        concurrency=2,
        sandbox_config=sandbox_config,
        extra_env=env,
        sandbox_args=["--fortnox-rate-limit", "250", "--fortnox-rate-window", "5"],
    )
    try:
        s.start_sandbox()
        s.start_worker()
        s.start_archiver()  # every test's outcomes are archived too (an SQLite file of the session's)
        s.use_in_this_process()
        yield s
    finally:
        s.stop()
        client = redis.Redis.from_url(s.env["ERPSYNC_REDIS_URL"].replace("redis+socket://", "unix://"))
        for key in client.scan_iter(f"{prefix}*", count=1000):
            client.delete(key)
        client.delete(prefix)


@pytest.fixture(scope="session")
def flower(stack: LocalStack) -> Iterator[FlowerProcess]:
    """A real Flower process (`erpsync flower`: basic auth, loopback, state file) on the session's broker.

    `flower.url` and `flower.auth` (user, password) reach its HTTP API. It is ready when it yields: it sees
    the session's worker and receives its events, so the tasks of a job submitted afterwards show up in
    GET /api/tasks (poll: events arrive asynchronously). Flower sees every worker and task on the broker,
    other sessions' too: filter by your job's and batches' ids."""
    process = stack.start_flower(user=FLOWER_USER, password=FLOWER_PASSWORD)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def sandbox(stack: LocalStack) -> Iterator[httpx.Client]:
    """HTTP client on the sandbox's operator endpoints; faults and latency are cleared after each test."""
    with httpx.Client(base_url=stack.sandbox_url, timeout=30) as client:
        yield client
        client.delete("/_sandbox/faults")
        client.post("/_sandbox/latency", json={"ms": 0, "jitter_ms": 0})


def ledger_for(client: httpx.Client, external_ids: set[str]) -> list[dict[str, Any]]:
    docs = client.get("/_sandbox/ledger").json()["documents"]
    return [d for d in docs if d["external_id"] in external_ids]


def wait_job(stack: LocalStack, job_id: str, timeout: float = 120) -> dict[str, Any]:
    """Poll `erpsync results --json` style data through the store until the job is finished."""
    from worker.cli.commands import results_payload

    deadline = time.monotonic() + timeout
    while True:
        payload = results_payload(job_id)
        if payload["status"] in JOB_FINAL:
            return payload
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {payload['status']} after {timeout}s:\n{stack.logs()[-4000:]}")
        time.sleep(0.2)


def pos_invoice(external_id: str, customer: str = "1001", rows: int = 2) -> dict[str, Any]:
    return {
        "ExternalId": external_id,
        "CustomerNr": customer,
        "InvoiceDate": "2026-11-20",
        "OriginType": 2,
        "InvoiceRows": [
            {
                "CustomerRowType": 2,
                "RowNr": i + 1,
                "ProductNr": f"73100500{i:02d}",
                "Text": "Kanelbulle",
                "Quantity": 2.0,
                "UnitPrice": 24.5,
                "Discount": 10,
                "VatRate": 12,
            }
            for i in range(rows)
        ],
    }


def order(external_id: str, customer: str = "013") -> dict[str, Any]:
    return {
        "ExternalId": external_id,
        "CustomerNr": customer,
        "InvoiceDate": "2026-01-30",
        "OriginType": 6,
        "InvoiceRows": [
            {
                "CustomerRowType": 2,
                "RowNr": 1,
                "ProductNr": "100-5t",
                "Quantity": 3.0,
                "Amount": 350,
                "Text": "Skolbil m väktare",
            }
        ],
    }


@pytest.fixture
def erp(faults: FaultStack) -> Iterator[httpx.Client]:
    """The fault stack's sandbox operator endpoints, for the modules that define a `faults` stack (test_crashes,
    test_outages); every worker of the test is stopped and the ERP made whole after it."""
    with faults.sandbox() as client:
        yield client
        faults.make_whole(client)
