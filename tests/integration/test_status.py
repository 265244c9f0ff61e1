"""`erpsync status`, `jobs` and `metrics` as real processes against the real Redis and worker.

A stalled job is made without stopping the session's worker (other tests need it): jobs are submitted under a
key prefix and queue of their own that no worker serves, and the commands run with those settings and
ERPSYNC_STALL_SECONDS=1.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import order, pos_invoice, wait_job
from worker.devstack.stack import ROOT, LocalStack, free_port, stop, wait_until
from worker.producer.submit import submit

pytestmark = pytest.mark.integration


class Deployment:
    """Settings of a deployment no worker serves, on the session's Redis."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.prefix = f"erpsync-idle-{uuid.uuid4().hex[:8]}"
        self.env = {
            **stack.env,
            "ERPSYNC_QUEUE": self.prefix,
            "ERPSYNC_KEY_PREFIX": self.prefix,
            "ERPSYNC_STALL_SECONDS": "1",
            "COLUMNS": "200",  # rich tables wide enough for whole job ids
        }

    def erpsync(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.stack.erpsync(*args, timeout=120, env=self.env)

    def submit(self, tmp_path: Path, tenant: str, count: int = 3) -> str:
        tag = uuid.uuid4().hex[:8]
        path = tmp_path / f"{tag}.jsonl"
        path.write_text("".join(json.dumps(pos_invoice(f"{tag}-{i}")) + "\n" for i in range(count)))
        done = self.erpsync("submit", str(path), "--tenant", tenant, "--json")
        assert done.returncode == 0, done.stderr
        return str(json.loads(done.stdout)["job_id"])

    def status(self) -> dict:
        done = self.erpsync("status", "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def jobs(self, *args: str) -> list[str]:
        done = self.erpsync("jobs", "--json", *args)
        assert done.returncode == 0, done.stderr
        return [j["job_id"] for j in json.loads(done.stdout)["jobs"]]


@pytest.fixture
def idle(stack: LocalStack) -> Iterator[Deployment]:
    deployment = Deployment(stack)
    yield deployment
    client = redis.Redis.from_url(stack.env["ERPSYNC_REDIS_URL"].replace("redis+socket://", "unix://"))
    for pattern in (f"{deployment.prefix}*", f"_kombu.binding.{deployment.prefix}*"):
        for key in client.scan_iter(pattern, count=1000):
            client.delete(key)


def test_status_shows_a_job_no_worker_progresses_as_stalled_with_its_age(
    stack: LocalStack, idle: Deployment, tmp_path: Path
) -> None:
    job_id = idle.submit(tmp_path, "demo")
    time.sleep(1.5)
    data = idle.status()
    job = next(j for j in data["open_jobs"] if j["job_id"] == job_id)
    assert job["stalled"] is True and job["age_seconds"] >= 1 and job["idle_seconds"] >= 1
    assert job["pending"] == 3 and job["total"] == 3 and job["tenant"] == "demo" and job["status"] == "queued"
    assert data["stalled_jobs"] == 1 and data["open_jobs_total"] == 1 and data["oldest_pending_seconds"] >= 1
    depth = {q["queue"]: q["messages"] for q in data["queues"]}
    assert depth[idle.prefix] >= 1  # the intake request nobody takes
    assert data["intake_items"] == 1
    # the session's worker answers the broadcast, but serves other queues: not one of ours
    assert data["workers"] == [] and data["workers_error"] is None and data["other_workers"] >= 1

    screen = idle.erpsync("status")
    assert screen.returncode == 0, screen.stderr
    line = next(line for line in screen.stdout.splitlines() if job_id in line)
    assert "STALLED" in line
    assert "workers: NONE answering" in screen.stdout
    assert len(screen.stdout.splitlines()) <= 25  # a screen: rich's height when not on a terminal


def test_a_stopped_worker_leaves_its_next_job_stalled(stack: LocalStack, idle: Deployment, tmp_path: Path) -> None:
    """The acceptance case as it happens: the deployment's only worker works, is stopped, and the next job
    shows as stalled (named, with its age) while nobody answers for the deployment's queues."""
    worker = stack.start_worker(f"idle-{idle.prefix[-8:]}", 1, idle.env, pool="threads")
    try:
        first = idle.submit(tmp_path, "demo")
        deadline = time.monotonic() + 60
        while first not in idle.jobs("--status", "succeeded"):
            assert time.monotonic() < deadline, "the deployment's worker did not finish its job"
            time.sleep(0.3)
    finally:
        stop(worker)
    job_id = idle.submit(tmp_path, "demo")
    time.sleep(1.5)
    data = idle.status()
    assert data["workers"] == [] and data["stalled_jobs"] == 1
    job = next(j for j in data["open_jobs"] if j["job_id"] == job_id)
    assert job["stalled"] is True and job["age_seconds"] >= 1 and job["pending"] == 3
    assert first not in {j["job_id"] for j in data["open_jobs"]}


def test_status_lists_the_session_worker_and_no_stalled_job_while_it_works(stack: LocalStack) -> None:
    job_id = submit([pos_invoice(f"{uuid.uuid4().hex[:8]}-{i}") for i in range(3)], tenant="demo", source="status")
    assert wait_job(stack, job_id)["status"] == "succeeded"
    done = stack.erpsync("status", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    queue = stack.env["ERPSYNC_QUEUE"]
    assert any(queue in w["queues"] for w in data["workers"]), data["workers"]
    assert job_id not in {j["job_id"] for j in data["open_jobs"]}
    finished = stack.erpsync("jobs", "--json", "--status", "succeeded", "--since", "10m")
    assert job_id in [j["job_id"] for j in json.loads(finished.stdout)["jobs"]]


def test_jobs_filters_by_tenant_status_and_time(stack: LocalStack, idle: Deployment, tmp_path: Path) -> None:
    first = idle.submit(tmp_path, "demo")
    second = idle.submit(tmp_path, "acme", count=1)
    third = idle.submit(tmp_path, "demo", count=2)
    assert idle.jobs() == [third, second, first]
    assert idle.jobs("--tenant", "acme") == [second]
    assert idle.jobs("--tenant", "demo", "--limit", "1") == [third]
    assert idle.jobs("--status", "queued") == [third, second, first]
    assert idle.jobs("--status", "succeeded") == []
    assert idle.jobs("--since", "1h") == [third, second, first]
    assert idle.jobs("--since", "2099-01-01T00:00Z") == []
    bad = idle.erpsync("jobs", "--since", "last week")
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.startswith("error: --since 'last week'") and bad.stderr.count("\n") == 1


def gauges(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_once_and_served_include_the_gauges(stack: LocalStack, idle: Deployment, tmp_path: Path) -> None:
    idle.submit(tmp_path, "demo")
    time.sleep(1.5)
    once = idle.erpsync("metrics", "--once")
    assert once.returncode == 0, once.stderr
    values = gauges(once.stdout)
    assert values[("erpsync_queue_depth", (("queue", idle.prefix),))] >= 1
    assert values[("erpsync_queue_depth", (("queue", f"{idle.prefix}.send"),))] == 0
    assert values[("erpsync_jobs_open", ())] == 1 and values[("erpsync_stalled_jobs", ())] == 1
    assert values[("erpsync_oldest_pending_seconds", ())] >= 1 and values[("erpsync_dead_letters", ())] == 0

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "metrics", "--port", str(port)],
        cwd=ROOT,
        env=idle.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{port}/metrics"

        def answers() -> bool:
            try:
                return httpx.get(url, timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(answers, 30, "erpsync metrics", server)
        scraped = httpx.get(url, timeout=10)
        assert scraped.headers["content-type"].startswith("text/plain")
        assert gauges(scraped.text)[("erpsync_jobs_open", ())] == 1
    finally:
        stop(server)


def dead_letters(stack: LocalStack, *args: str) -> dict[str, dict]:
    done = stack.erpsync("dead", "list", "--json", *args)
    assert done.returncode == 0, done.stderr
    return {d["id"]: d for d in json.loads(done.stdout)["dead_letters"]}


def test_a_replayed_dead_letter_is_resolved_with_the_key_its_replay_created(
    stack: LocalStack, sandbox: httpx.Client
) -> None:
    """An order the ERP answered 500 (nothing saved) is an open dead letter; replayed through the real pipeline, it
    names its replay job, and once that job creates the order it is resolved with the Key, out of the default list."""
    tag = uuid.uuid4().hex[:8]
    sandbox.post("/_sandbox/faults", json={"path": "/Economy/Billing/Orders", "kind": "status", "status": 500})
    job = submit([order(f"{tag}-o")], kind="order", tenant="demo", source="status")
    assert wait_job(stack, job)["records"][0]["status"] == "unknown"
    dead_id = f"{job}#0"
    assert dead_letters(stack)[dead_id]["state"] == "open"

    done = stack.erpsync("dead", "replay", dead_id, "--json")
    assert done.returncode == 0, done.stderr
    replay = json.loads(done.stdout)["replayed"][0]["job_id"]
    created = wait_job(stack, replay)["records"][0]
    assert created["status"] == "created"

    assert dead_id not in dead_letters(stack)  # closed: not in the default list
    entry = dead_letters(stack, "--all")[dead_id]
    assert (entry["state"], entry["replay_job"], entry["replay_outcome"]) == ("resolved", replay, "created")
    assert entry["resolved_key"] == str(created["key"]) and entry["resolved_by"] == replay
    again = stack.erpsync("dead", "replay", dead_id)
    assert again.returncode == 2 and "resolved" in again.stderr


def test_a_later_submission_of_the_same_document_resolves_its_dead_letter(stack: LocalStack) -> None:
    """A rejected invoice (a customer the ERP does not know) is fixed and submitted again as a new job: its dead
    letter is resolved by that job, without a replay."""
    tag = uuid.uuid4().hex[:8]
    job = submit([pos_invoice(f"{tag}-i", customer="UNKNOWN-1")], tenant="demo", source="status")
    assert wait_job(stack, job)["records"][0]["status"] == "failed"
    dead_id = f"{job}#0"
    assert dead_letters(stack)[dead_id]["state"] == "open"
    fixed = submit([pos_invoice(f"{tag}-i")], tenant="demo", source="status")
    created = wait_job(stack, fixed)["records"][0]
    assert created["status"] == "created"
    entry = dead_letters(stack, "--all")[dead_id]
    assert (entry["state"], entry["resolved_by"], entry["replay_job"]) == ("resolved", fixed, None)
    assert entry["resolved_key"] == str(created["key"])
