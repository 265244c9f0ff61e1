"""The distributed rate limiter under real load: 3,000 Fortnox invoices pushed by 4 worker processes with 8
threads each. The sandbox enforces Fortnox's sliding window on arrival; none of its 429s may come from our
over-sending, and the limit must be used: at least 90 % of the allowed rate once the first window has passed.

The window is Fortnox's 5 s, the limit 250 instead of 25 (50 requests/s instead of 5), so that the run takes
about a minute instead of ten.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest
import redis

from tests.integration.conftest import wait_job
from tests.integration.test_targets import fortnox_invoice
from worker.devstack.stack import LocalStack
from worker.producer.submit import submit

pytestmark = pytest.mark.integration

LIMIT, WINDOW = 250, 5.0
INVOICES = 3000


@pytest.fixture
def rate_stack(redis_url: str, tmp_path: Path, stack: LocalStack) -> Iterator[LocalStack]:
    """Its own sandbox, workers and prefix; this process produces for it during the test and for the
    session's `stack` again afterwards."""
    prefix = f"erpsync-rate-{uuid.uuid4().hex[:8]}"
    env = {
        "ERPSYNC_QUEUE": prefix,
        "ERPSYNC_KEY_PREFIX": prefix,
        "ERPSYNC_RATE_LIMITS": json.dumps({"fortnox": f"{LIMIT}/{WINDOW:g}"}),
    }
    rate = LocalStack(
        workdir=tmp_path,
        redis_url=redis_url,
        concurrency=8,
        pool="threads",
        extra_env=env,
        sandbox_args=["--fortnox-rate-limit", str(LIMIT), "--fortnox-rate-window", f"{WINDOW:g}"],
    )
    try:
        rate.start_sandbox()
        for _ in range(4):
            rate.start_worker()
        rate.use_in_this_process()
        yield rate
    finally:
        rate.stop()
        stack.use_in_this_process()
        client = redis.Redis.from_url(redis_url.replace("redis+socket://", "unix://"))
        for key in client.scan_iter(f"{prefix}*", count=1000):
            client.delete(key)


def test_four_workers_stay_under_fortnox_limit_and_use_it(rate_stack: LocalStack) -> None:
    tag = f"rate-{uuid.uuid4().hex[:6]}"
    docs = [fortnox_invoice(f"{tag}-{i:05d}", customer=str(10_000 + i)) for i in range(INVOICES)]
    job_ids = [submit(docs[i : i + 300], tenant="demo-fortnox", source="rate") for i in range(0, INVOICES, 300)]
    results = [wait_job(rate_stack, job_id, timeout=300) for job_id in job_ids]
    statuses = [r["status"] for result in results for r in result["records"]]
    assert statuses.count("created") == INVOICES, {s: statuses.count(s) for s in set(statuses)}

    with httpx.Client(base_url=rate_stack.sandbox_url) as sandbox:
        stats = sandbox.get("/_sandbox/stats").json()["fortnox"]
        created = sandbox.get("/_sandbox/ledger", params={"target": "fortnox"}).json()["documents"]
    times = sorted(datetime.fromisoformat(d["created_at"].replace("Z", "+00:00")).timestamp() for d in created)
    assert len(times) == INVOICES
    # After the first window (a sliding window lets a full one through at once), the steady rate.
    start = times[0] + WINDOW
    steady = [t for t in times if t >= start]
    rate = (len(steady) - 1) / (steady[-1] - steady[0])
    allowed = LIMIT / WINDOW
    print(f"\nfortnox rate: {rate:.1f} requests/s steady against {allowed:.0f} allowed ({100 * rate / allowed:.1f} %); "
          f"sandbox stats {stats}")  # fmt: skip
    assert stats["rate_limited"] == 0, "the sandbox refused requests for over-sending"
    assert stats["max_in_window"] <= LIMIT
    assert rate >= 0.9 * allowed
