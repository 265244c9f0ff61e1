"""The producer contract for any language, end to end: nothing but Redis commands from the producer's side.

A real `celery worker` (the session's stack, which consumes the intake queue, so its submissions listener
runs) takes what is LPUSHed to `{prefix}:submit`; this test never calls erpsync's Python APIs to produce or
read. A valid job is processed document by document; every malformed message ends as a rejected record
with its reason, and nothing stays held.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from typing import Any

import httpx
import pytest
import redis

from tests.integration.conftest import ledger_for, pos_invoice
from worker.devstack.stack import LocalStack

pytestmark = pytest.mark.integration

FINAL = ("succeeded", "partial", "failed", "rejected")
DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024  # ERPSYNC_MAX_MESSAGE_BYTES's default; the stack does not set it


@pytest.fixture
def r(stack: LocalStack) -> redis.Redis:
    """A plain Redis client, as a producer in any language would have."""
    return redis.Redis.from_url(
        stack.env["ERPSYNC_REDIS_URL"].replace("redis+socket://", "unix://"), decode_responses=True
    )


@pytest.fixture
def p(stack: LocalStack) -> str:
    return stack.env["ERPSYNC_KEY_PREFIX"]


def wait_final(r: redis.Redis, p: str, job_id: str, stack: LocalStack, timeout: float = 90) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = r.execute_command("HGETALL", f"{p}:job:{job_id}")
        if job.get("status") in FINAL:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} not finished after {timeout}s:\n{stack.logs()[-4000:]}")


def test_a_job_lpushed_as_json_is_processed_and_read_back_by_key(
    stack: LocalStack, sandbox: httpx.Client, r: redis.Redis, p: str
) -> None:
    tag = uuid.uuid4().hex[:8]
    job_id = f"raw-{tag}"
    bad = pos_invoice(f"RAW-{tag}-2")
    bad["InvoiceRows"][0]["Quantity"] = "två"
    message = {
        "job_id": job_id,
        "tenant": "acme",
        "kind": "customer_invoice",
        "source": "a shell script",
        "documents": [pos_invoice(f"RAW-{tag}-0"), pos_invoice(f"RAW-{tag}-1"), bad],
    }
    r.execute_command("LPUSH", f"{p}:submit", json.dumps(message, ensure_ascii=False))

    job = wait_final(r, p, job_id, stack)
    assert job["status"] == "partial", job
    assert (job["total"], job["n_created"], job["n_failed"]) == ("3", "2", "1")
    assert (job["tenant"], job["target"], job["kind"], job["source"]) == (
        "acme",
        "softone",
        "customer_invoice",
        "a shell script",
    )
    records = {int(k): json.loads(v) for k, v in r.execute_command("HGETALL", f"{p}:job:{job_id}:records").items()}
    assert [records[i]["status"] for i in range(3)] == ["created", "created", "failed"]
    assert all(isinstance(records[i]["key"], int) for i in (0, 1))
    assert records[2]["key"] is None and "InvoiceRows[0].Quantity" in records[2]["error"]
    ledger = ledger_for(sandbox, {f"RAW-{tag}-0", f"RAW-{tag}-1", f"RAW-{tag}-2"})
    assert sorted(d["key"] for d in ledger) == sorted(records[i]["key"] for i in (0, 1))
    assert r.execute_command("SCARD", f"{p}:submit:held") == 0


def test_malformed_messages_all_end_as_rejected_records_with_their_reasons(
    stack: LocalStack, r: redis.Redis, p: str
) -> None:
    tag = uuid.uuid4().hex[:8]
    taken = f"taken-{tag}"
    limit = int(stack.env.get("ERPSYNC_MAX_MESSAGE_BYTES", DEFAULT_MAX_MESSAGE_BYTES))

    def envelope(job_id: str, **fields: Any) -> str:
        body = {"job_id": job_id, "tenant": "acme", "kind": "customer_invoice", "documents": [{"CustomerNr": "1"}]}
        return json.dumps({**body, **fields})

    # The job whose id is re-used below: it must come out whole, whoever tries to reach it.
    r.execute_command("LPUSH", f"{p}:submit", envelope(taken, documents=[pos_invoice(f"TAKEN-{tag}")]))
    assert wait_final(r, p, taken, stack)["status"] == "succeeded"

    filler = ",".join(['{"CustomerNr":"1"}'] * (limit // 18 + 1))
    cases: list[tuple[bytes, str | None, str]] = [
        (b'{"job_id": "nojson-' + tag.encode() + b'", "tenant": "acme", "documents": [', f"nojson-{tag}",
         "message: not valid JSON: Expecting value at line 1 column"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + tag.encode(), None,
         "message: not UTF-8 text (invalid byte at offset 0)"),
        (envelope(f"huge-{tag}", documents="@").replace('"@"', "[" + filler + "]").encode(), f"huge-{tag}",
         "message: {size} bytes, above the limit of " + f"{limit} (ERPSYNC_MAX_MESSAGE_BYTES)"),
        (envelope(f"schema-{tag}", documents=[{}, 7]).encode(), f"schema-{tag}",
         "documents.1: Input should be a valid dictionary"),
        (envelope(f"tenant-{tag}", tenant="nobody").encode(), f"tenant-{tag}",
         "tenant: not a configured tenant (ERPSYNC_TENANTS_FILE)"),
        (envelope(f"extra-{tag}", base_url="http://evil.example", company_api_key="k" * 20).encode(), f"extra-{tag}",
         "base_url: is not a field of a job message (see schemas/job-envelope.schema.json); "
         "company_api_key: is not a field of a job message (see schemas/job-envelope.schema.json)"),
        (envelope(taken, tenant="demo", documents=[{"CustomerNr": "2"}, {"CustomerNr": "3"}]).encode(), taken,
         "job_id: job id already submitted; this message was ignored"),
    ]  # fmt: skip
    before = r.execute_command("HGETALL", f"{p}:job:{taken}")
    before_docs = r.execute_command("LRANGE", f"{p}:job:{taken}:docs", 0, -1)
    for payload, _, _ in cases:
        r.execute_command("LPUSH", f"{p}:submit", payload)

    digests = {hashlib.sha256(payload).hexdigest(): (payload, job_id, reason) for payload, job_id, reason in cases}
    deadline = time.monotonic() + 90
    entries: dict[str, dict[str, Any]] = {}
    while len(entries) < len(digests) and time.monotonic() < deadline:
        for text in r.execute_command("LRANGE", f"{p}:rejected", 0, 999):
            entry = json.loads(text)
            if entry["sha256"] in digests:
                entries[entry["sha256"]] = entry
        time.sleep(0.2)
    assert len(entries) == len(digests), f"rejected: {list(entries.values())}\n{stack.logs()[-4000:]}"

    for digest, (payload, job_id, reason) in digests.items():
        entry = entries[digest]
        reason = reason.replace("{size}", str(len(payload)))
        assert entry["reason"].startswith(reason), entry
        assert (entry["job_id"], entry["bytes"]) == (job_id, len(payload))
        if job_id is not None and job_id != taken:
            job = r.execute_command("HGETALL", f"{p}:job:{job_id}")
            assert (job["status"], job["reason"], job["total"]) == ("rejected", entry["reason"], "0"), job
            assert r.execute_command("TTL", f"{p}:job:{job_id}") > 0
            assert r.execute_command("ZSCORE", f"{p}:jobs", job_id) is not None
    assert r.execute_command("HGETALL", f"{p}:job:{taken}") == before
    assert r.execute_command("LRANGE", f"{p}:job:{taken}:docs", 0, -1) == before_docs
    assert r.execute_command("LLEN", f"{p}:submit") == 0
    assert r.execute_command("SCARD", f"{p}:submit:held") == 0
    # Reasons and records never carry what was sent (the extra field's value here).
    assert "evil.example" not in json.dumps(list(entries.values())) and "k" * 20 not in json.dumps(
        r.execute_command("HGETALL", f"{p}:job:extra-{tag}")
    )
