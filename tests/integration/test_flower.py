"""Flower for ops: a real Flower process (`erpsync flower`) on the session's worker, through its HTTP API.

It sees the worker and our finished tasks with the credentials, whose visible args are ids and counts; it
refuses every page and API call without them or with a wrong password; /metrics and /healthcheck answer
without them (Flower 2.2), which is why it listens on loopback only; its state survives a restart.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import ACME_COMPANY_KEY, ACME_CONNECT_KEY, pos_invoice, wait_job
from worker.devstack.stack import FlowerProcess, LocalStack
from worker.producer.submit import submit
from worker.settings import get_settings
from worker.store.client import get_redis
from worker.store.results import ResultsStore

pytestmark = pytest.mark.integration

# What a task's visible args, kwargs or result must never show: document contents, credentials.
NEVER_SHOWN = (
    "Kanelbulle",
    "InvoiceRows",
    "CustomerNr",
    "UnitPrice",
    "demo-company-key",
    "demo-connect-key",
    ACME_COMPANY_KEY,
    ACME_CONNECT_KEY,
    "Bearer",
    "companyApiKey",
)


def poll(fetch: Callable[[], Any], timeout: float, what: str) -> Any:
    """Flower learns from events and inspect replies, both asynchronous: ask until it knows."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = fetch()
        except httpx.HTTPError as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.5)
    raise AssertionError(f"{what}: not seen in {timeout:.0f}s (last: {last!r})")


def finished_job(stack: LocalStack) -> tuple[str, set[str]]:
    """A small job through the session's worker: its id and its batches' ids."""
    tag = uuid.uuid4().hex[:8]
    job_id = submit(
        [pos_invoice(f"{tag}-{i}") for i in range(3)], kind="customer_invoice", tenant="demo", source="flower-test"
    )
    assert wait_job(stack, job_id)["status"] == "succeeded"
    settings = get_settings()
    batches = {r.batch_id for r in ResultsStore(get_redis(settings), settings).records(job_id) if r.batch_id}
    assert batches
    return job_id, batches


def sent_tasks(api: httpx.Client, batches: set[str]) -> list[dict[str, Any]]:
    """The send tickets that Flower saw succeed serving our batches (found by the batch ids their result shows)."""
    answer = api.get("/api/tasks", params={"taskname": "erpsync.send_next", "state": "SUCCESS"})
    answer.raise_for_status()
    return [t for t in answer.json().values() if any(b in str(t.get("result")) for b in batches)]


def seen_on(api: httpx.Client, queue: str) -> list[tuple[str, str, str]]:
    """(name, state, args) of every task Flower saw on a queue: what a failure message should show."""
    return [
        (t["name"], t["state"], t["args"])
        for t in api.get("/api/tasks").json().values()
        if t.get("routing_key") == queue
    ]


def test_flower_sees_the_worker_and_a_finished_task_showing_ids_and_counts(
    stack: LocalStack, flower: FlowerProcess
) -> None:
    job_id, batches = finished_job(stack)
    with httpx.Client(base_url=flower.url, auth=flower.auth, timeout=20) as api:
        try:
            tasks = poll(lambda: sent_tasks(api, batches), 60, f"a SUCCESS send_next serving job {job_id}")
        except AssertionError as exc:
            send_queue = f"{stack.env['ERPSYNC_QUEUE']}.send"
            raise AssertionError(f"{exc}; batches {batches}; on {send_queue}: {seen_on(api, send_queue)}") from None
        for task in tasks:
            shown = f"{task.get('args')} {task.get('kwargs')} {task.get('result')}"
            assert all(word not in shown for word in NEVER_SHOWN), shown
            assert any(b in str(task["result"]) for b in batches)

        def our_workers() -> list[str]:
            listed = api.get("/api/workers", params={"refresh": 1})
            if listed.status_code != 200:  # inspect fails for a while after Flower starts
                return []
            queue = stack.env["ERPSYNC_QUEUE"]
            return [
                name
                for name, info in listed.json().items()
                if any(q.get("name") == queue for q in (info or {}).get("active_queues") or [])
            ]

        names = poll(our_workers, 60, "the session's worker in /api/workers")
        assert all(tasks_worker in names for tasks_worker in {t["worker"] for t in tasks})


@pytest.mark.parametrize("path", ["/api/workers", "/api/tasks", "/api/task/types", "/", "/tasks", "/workers"])
def test_flower_refuses_requests_without_the_right_credentials(flower: FlowerProcess, path: str) -> None:
    assert httpx.get(f"{flower.url}{path}", auth=flower.auth, timeout=20).status_code == 200
    for auth in (None, (flower.user, flower.password + "x"), ("someone", flower.password)):
        answer = httpx.get(f"{flower.url}{path}", auth=auth, timeout=20)
        assert answer.status_code == 401, (path, auth and auth[0], answer.status_code)


def test_flower_refuses_a_task_sent_without_credentials(flower: FlowerProcess) -> None:
    answer = httpx.post(f"{flower.url}/api/task/async-apply/erpsync.drain_intake", json={}, timeout=20)
    assert answer.status_code == 401


def test_flower_metrics_and_healthcheck_answer_without_credentials_on_loopback_only(flower: FlowerProcess) -> None:
    metrics = httpx.get(f"{flower.url}/metrics", timeout=20)
    assert metrics.status_code == 200 and "flower_events_total" in metrics.text
    assert "flower_worker_online" in metrics.text
    health = httpx.get(f"{flower.url}/healthcheck", timeout=20)
    assert health.status_code == 200 and health.text == "OK"
    # which is why it listens on loopback only (a proxy in front decides what else may reach it)
    assert listening_addresses(flower.port) <= {"127.0.0.1"}


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a socket listening on `port`, from /proc/net/tcp{,6} (Linux)."""
    tables = [p for p in (Path("/proc/net/tcp"), Path("/proc/net/tcp6")) if p.exists()]
    if not tables:
        pytest.skip("needs /proc/net/tcp (Linux) to see where Flower listens")
    found = set()
    for table in tables:
        for line in table.read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add("127.0.0.1" if address == "0100007F" else address)
    assert found, f"nothing listens on port {port}"
    return found


def test_flower_keeps_its_task_history_across_a_restart(stack: LocalStack, tmp_path: Path) -> None:
    db = tmp_path / "flower.db"
    first = stack.start_flower(db=db)
    try:
        job_id, batches = finished_job(stack)
        with httpx.Client(base_url=first.url, auth=first.auth, timeout=20) as api:
            seen = poll(lambda: sent_tasks(api, batches), 60, f"a SUCCESS send_next serving job {job_id}")
    finally:
        first.stop()  # SIGTERM: Flower saves its state on the way out
    assert first.proc.returncode == 0
    assert list(tmp_path.glob("flower.db*")), "no state file written"
    second = stack.start_flower(db=db, password=first.password)
    try:
        with httpx.Client(base_url=second.url, auth=second.auth, timeout=20) as api:
            kept = sent_tasks(api, batches)  # no new events for these: only the saved state has them
        assert {t["uuid"] for t in seen} <= {t["uuid"] for t in kept}
    finally:
        second.stop()
