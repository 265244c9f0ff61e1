"""The naive baseline: one Celery task and one POST per document, nothing else (no batching, no store).

Run by the benchmark as its own worker (`celery -A bench.naive worker`) with the same pool and
concurrency as ours, so the comparison is about what we do, not how many processes we have.
"""

from __future__ import annotations

import os
import time
from functools import lru_cache
from typing import Any

import httpx
import redis
from celery import Celery

from worker.settings import DEMO_COMPANY_API_KEY, DEMO_CONNECT_API_KEY, get_settings

settings = get_settings()
app = Celery("erpsync-naive", broker=settings.broker_url())
app.conf.update(task_serializer="json", accept_content=["json"], task_ignore_result=True, worker_prefetch_multiplier=1,
                task_acks_late=True, task_default_queue=os.environ.get("NAIVE_QUEUE", "naive"))  # fmt: skip


@lru_cache(maxsize=1)
def _client() -> tuple[httpx.Client, str]:
    client = httpx.Client(base_url=settings.softone_base_url, timeout=60)
    keys = {"companyApiKey": DEMO_COMPANY_API_KEY, "connectApiKey": DEMO_CONNECT_API_KEY}
    token = client.post("/Login/Token", params=keys).json()["Token"]
    return client, token


@app.task(name="naive.send_one")
def send_one(doc: dict[str, Any], done_key: str, submitted_at: float) -> None:
    """POST one document; push its submit→done latency to Redis (the benchmark waits for all of them)."""
    client, token = _client()
    params = {"companyApiKey": DEMO_COMPANY_API_KEY, "connectApiKey": DEMO_CONNECT_API_KEY, "token": token}
    client.post(settings.softone_invoice_path, params=params, json=[doc]).raise_for_status()
    redis.Redis.from_url(settings.redis_py_url()).rpush(done_key, time.time() - submitted_at)
