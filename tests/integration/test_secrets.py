"""Credentials never get out: a job whose documents carry every credential the tests know, through both
producers (Python and raw Redis), leaves none of them in the workers' logs, Flower's task list or the results
store, and no document content in the logs or Flower either.

"The results store" is every key under the session's prefix except the two credential caches, which hold
live tokens by design (`{p}:token:*`, `{p}:fortnox:refresh:*`; docs/operations.md, "Security").
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis

from tests.integration.conftest import ACME_COMPANY_KEY, ACME_CONNECT_KEY, pos_invoice, wait_job
from worker.devstack.stack import FlowerProcess, LocalStack
from worker.producer.submit import CREDENTIAL_IN_DOCUMENT, submit
from worker.settings import (
    DEMO_COMPANY_API_KEY,
    DEMO_CONNECT_API_KEY,
    DEMO_FORTNOX_CLIENT_SECRET,
    DEMO_INVOICE_SERVICE_TOKEN,
    get_settings,
)
from worker.store.records import JOB_FINAL

pytestmark = pytest.mark.integration

FX_REFRESH_TOKEN = "demo-fortnox-refresh"  # the fx-refresh tenant's, in the session's tenants file


@pytest.fixture
def credentials(flower: FlowerProcess, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    # Under the Procfile every process shares one environment; here the producer (this process) is told
    # Flower's credentials the way it would be.
    monkeypatch.setenv("FLOWER_BASIC_AUTH", f"{flower.user}:{flower.password}")
    yield [
        ACME_COMPANY_KEY,
        ACME_CONNECT_KEY,
        DEMO_COMPANY_API_KEY,
        DEMO_CONNECT_API_KEY,
        DEMO_FORTNOX_CLIENT_SECRET,
        FX_REFRESH_TOKEN,
        DEMO_INVOICE_SERVICE_TOKEN,
        flower.password,
    ]


def documents(tag: str, secrets: list[str], content_marker: str) -> list[dict[str, Any]]:
    good = pos_invoice(f"{tag}-good")
    good["InvoiceRows"][0]["Text"] = content_marker
    leaky = []
    for i, secret in enumerate(secrets):
        doc = pos_invoice(f"{tag}-leak-{i}")
        # in a free-text field, in a nested row, and as a whole field value
        doc["InvoiceRows"][i % 2]["Text"] = f"note: {secret}"
        leaky.append(doc)
    as_id = pos_invoice(secrets[0])
    return [good, *leaky, as_id]


def raw_submit(client: redis.Redis, prefix: str, job_id: str, docs: list[dict[str, Any]]) -> None:
    message = {"job_id": job_id, "tenant": "acme", "kind": "customer_invoice", "documents": docs}
    client.execute_command("LPUSH", f"{prefix}:submit", json.dumps(message))


def wait_raw(client: redis.Redis, prefix: str, job_id: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while client.hget(f"{prefix}:job:{job_id}", "status") not in JOB_FINAL:
        assert time.monotonic() < deadline, f"raw job {job_id} did not finish"
        time.sleep(0.2)


def results_store_text(client: redis.Redis, prefix: str) -> str:
    caches = (f"{prefix}:token:", f"{prefix}:fortnox:refresh:")
    parts: list[str] = []
    for key in client.scan_iter(f"{prefix}:*", count=1000):
        name = key.decode() if isinstance(key, bytes) else key
        if name.startswith(caches):
            continue
        kind = client.type(name)
        kind = kind.decode() if isinstance(kind, bytes) else kind
        value: Any = {
            "string": lambda n: client.get(n),
            "list": lambda n: client.lrange(n, 0, -1),
            "hash": lambda n: client.hgetall(n),
            "set": lambda n: client.smembers(n),
            "zset": lambda n: client.zrange(n, 0, -1),
        }.get(kind, lambda n: None)(name)
        parts.append(f"{name} {value!r}")
    return "\n".join(parts)


def flower_tasks(flower: FlowerProcess, wanted: list[str], timeout: float = 60) -> str:
    """Flower's whole task list (every field: args, kwargs, result, traceback...) once it shows all `wanted`."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        answer = httpx.get(f"{flower.url}/api/tasks", auth=flower.auth, timeout=10)
        if answer.status_code == 200:
            text = answer.text
            if all(w in text for w in wanted):
                return text
        time.sleep(0.5)
    raise AssertionError(f"Flower did not show tasks of {wanted} in {timeout:.0f}s")


def test_no_credential_gets_out(stack: LocalStack, flower: FlowerProcess, credentials: list[str]) -> None:
    tag = uuid.uuid4().hex[:8]
    marker = f"Kanelbulle-{tag}"  # document content: in the ERP and the stored documents only
    prefix = stack.env["ERPSYNC_KEY_PREFIX"]
    client = redis.Redis.from_url(get_settings().redis_py_url(), decode_responses=True)

    docs = documents(tag, credentials, marker)
    job_id = submit(docs, tenant="acme", source="secrets-test")
    raw_job = f"raw-{tag}"
    raw_submit(client, prefix, raw_job, documents(f"raw-{tag}", credentials, marker))

    payload = wait_job(stack, job_id)
    wait_raw(client, prefix, raw_job)
    statuses = [r["status"] for r in payload["records"]]
    assert statuses == ["created"] + ["failed"] * (len(docs) - 1), payload
    assert all(r["error"] == CREDENTIAL_IN_DOCUMENT for r in payload["records"][1:])
    raw = client.hgetall(f"{prefix}:job:{raw_job}")
    assert (raw["status"], raw["n_created"], raw["n_failed"]) == ("partial", "1", str(len(docs) - 1)), raw

    # The ERP got the good documents only.
    sent = sorted(str(d["external_id"]) for d in stack.ledger() if tag in json.dumps(d))
    assert sent == [f"{tag}-good", f"raw-{tag}-good"]

    tasks = flower_tasks(flower, [job_id, raw_job])
    time.sleep(1)  # the last lines of the tasks Flower saw are written by now
    logs = "\n".join(p.read_text(errors="replace") for p in sorted(stack.workdir.glob("worker-*.log")))
    store = results_store_text(client, prefix)
    assert job_id in logs and job_id in store  # the places searched are the right ones
    for place, text in (("worker logs", logs), ("Flower's task list", tasks), ("results store", store)):
        leaked = [s for s in credentials if s in text]
        assert not leaked, f"{place} holds {leaked}"
    for place, text in (("worker logs", logs), ("Flower's task list", tasks)):
        assert marker not in text, f"{place} shows document content"
