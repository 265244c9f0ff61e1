"""Job webhooks end to end: the session's workers, a real `erpsync webhooks run` process and the sandbox's webhook
receivers over HTTP. Two tenants name webhooks: one receiver fails three times on purpose then recovers, and
gets exactly one verified delivery per final job; the other hangs beyond the sender's timeout, and its tenant's
jobs finish as fast as the first's (the pipeline never waits for a webhook) while the first's webhooks arrive;
once it answers again, each of its jobs is delivered once too."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import pos_invoice, wait_job
from worker.devstack.stack import ROOT, LocalStack, stop, wait_until
from worker.ops.overview import epoch_of
from worker.producer.submit import submit
from worker.settings import get_settings
from worker.store.client import get_redis
from worker.store.results import ResultsStore

pytestmark = pytest.mark.integration

TIMEOUT_SECONDS = 2  # the sender's ERPSYNC_WEBHOOK_TIMEOUT_SECONDS: the hanging receiver holds every POST longer
HANG_SECONDS = 20
FLAGS_REFRESH_SECONDS = 6  # the workers' stores read the tenants file for webhooks every 5 s (outbox_flags)
JOBS_PER_TENANT = 5
DOCUMENTS_PER_JOB = 10  # the session's ERPSYNC_BATCH_MAX_DOCS: a full batch goes at once, no coalescing wait


@dataclass
class Hooked:
    """The two tenants with webhooks, their receivers' secrets, and the sandbox's operator client."""

    ok: str
    hang: str
    secrets: dict[str, str]
    sandbox: httpx.Client

    def receiver(self, name: str) -> dict[str, Any]:
        data: dict[str, Any] = self.sandbox.get(f"/_sandbox/webhooks/{name}").json()
        return data


@pytest.fixture
def hooked(stack: LocalStack) -> Iterator[Hooked]:
    """Two tenants (the sandbox's demo SoftOne company) with webhooks to the sandbox's receivers, added to the
    session's tenants file — every process reads it again when it changes — and taken out after the test."""
    path = Path(stack.env["ERPSYNC_TENANTS_FILE"])
    original = path.read_text()
    suffix = uuid.uuid4().hex[:6]
    names = [f"wh-ok-{suffix}", f"wh-hang-{suffix}"]
    secrets = {name: f"whsec-{uuid.uuid4().hex}" for name in names}
    data = json.loads(original)
    for name in names:
        data["tenants"].append({
            "name": name, "company_api_key": "demo-company-key", "connect_api_key": "demo-connect-key",
            "webhook_url": f"{stack.sandbox_url}/_sandbox/webhooks/{name}?token=not-in-logs",
            "webhook_secret": secrets[name],
        })  # fmt: skip
    with httpx.Client(base_url=stack.sandbox_url, timeout=30) as sandbox:
        path.write_text(json.dumps(data))
        try:
            yield Hooked(names[0], names[1], secrets, sandbox)
        finally:
            path.write_text(original)
            for name in names:
                sandbox.delete(f"/_sandbox/webhooks/{name}")


@pytest.fixture
def sender(stack: LocalStack, hooked: Hooked) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """`erpsync webhooks run` as the Procfile runs it, with a short timeout."""
    logfile = stack.workdir / f"webhooks-{hooked.ok}.log"
    env = {**stack.env, "ERPSYNC_WEBHOOK_TIMEOUT_SECONDS": str(TIMEOUT_SECONDS), "ERPSYNC_LOG_FORMAT": "text"}
    with open(logfile, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "worker.cli", "webhooks", "run"], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        wait_until(lambda: b"webhook sender" in logfile.read_bytes(), 30, "webhook sender", proc)
        yield proc, logfile
    finally:
        stop(proc)


def poll(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f}s"
        time.sleep(0.2)


def durations(job_ids: list[str]) -> list[float]:
    """Each job's time from submission to its final status."""
    store = ResultsStore(get_redis(get_settings()), get_settings())
    found = []
    for job_id in job_ids:
        job = store.job(job_id) or {}
        submitted, finished = epoch_of(job.get("submitted_at")), epoch_of(job.get("finished_at"))
        assert submitted is not None and finished is not None, job
        found.append(finished - submitted)
    return found


def verified_once(receiver: dict[str, Any], job_ids: list[str]) -> list[dict[str, Any]]:
    """The receiver's deliveries, checked: every one verified, one per job, and each delivery id once."""
    deliveries = receiver["deliveries"]
    assert all(d["verified"] for d in deliveries), deliveries
    assert sorted(d["body"]["job_id"] for d in deliveries) == sorted(job_ids)
    assert len({d["delivery_id"] for d in deliveries}) == len(deliveries)
    return list(deliveries)


def test_signed_webhooks_survive_a_failing_receiver_and_a_hanging_one_slows_no_job(
    stack: LocalStack, hooked: Hooked, sender: tuple[subprocess.Popen[bytes], Path]
) -> None:
    proc, logfile = sender
    sandbox = hooked.sandbox
    config = {hooked.ok: {"fail_next": 3}, hooked.hang: {"hang_seconds": HANG_SECONDS}}
    for name, extra in config.items():
        assert sandbox.post(
            f"/_sandbox/webhooks/{name}/config", json={"secret": hooked.secrets[name], **extra}
        ).is_success
    time.sleep(FLAGS_REFRESH_SECONDS)  # every worker now announces final jobs

    jobs: dict[str, list[str]] = {hooked.ok: [], hooked.hang: []}
    for i in range(JOBS_PER_TENANT):  # interleaved: both tenants' jobs meet the same load
        for tenant in jobs:
            documents = [pos_invoice(f"{tenant}-{i}-{n}-{uuid.uuid4().hex[:6]}") for n in range(DOCUMENTS_PER_JOB)]
            jobs[tenant].append(submit(documents, tenant=tenant, source="webhooks"))
    for job_ids in jobs.values():
        for job_id in job_ids:
            assert wait_job(stack, job_id)["status"] == "succeeded"
    took = {tenant: durations(job_ids) for tenant, job_ids in jobs.items()}
    finished_at = max(epoch_of((ResultsStore(get_redis(), get_settings()).job(j) or {}).get("finished_at")) or 0.0
                      for j in jobs[hooked.ok])  # fmt: skip

    # The failing receiver: three attempts refused, then every job's webhook exactly once, verified.
    poll(lambda: len(hooked.receiver(hooked.ok)["deliveries"]) >= JOBS_PER_TENANT, 60, "the ok tenant's webhooks")
    ok = hooked.receiver(hooked.ok)
    deliveries = verified_once(ok, jobs[hooked.ok])
    assert ok["refused"] == 3 and ok["attempts"] == JOBS_PER_TENANT + 3
    for d in deliveries:
        body = d["body"]
        assert body["event"] == d["event"] == "job.finished" and body["tenant"] == hooked.ok
        assert body["status"] == "succeeded" and body["total"] == body["counts"]["created"] == DOCUMENTS_PER_JOB
        assert not {"documents", "records", "source"} & set(body) and "InvoiceRows" not in json.dumps(body)
    arrived_after = max(d["received_at"] for d in deliveries) - finished_at

    # The hanging receiver held the first attempts; they show as failing, and no delivery was recorded.
    def hang_failing() -> bool:
        done = stack.erpsync("status", "--json")
        assert done.returncode == 0, done.stderr
        rows = {t["tenant"]: t for t in json.loads(done.stdout)["webhooks"]["tenants"]}
        return rows.get(hooked.hang, {}).get("failing", 0) >= 1

    poll(hang_failing, 30, "the hanging receiver's deliveries shown as failing")
    hang = hooked.receiver(hooked.hang)
    assert hang["attempts"] >= 1 and hang["deliveries"] == []

    # The pipeline did not wait for either receiver: the hanging one's jobs took as long as the other's.
    median = {tenant: statistics.median(seconds) for tenant, seconds in took.items()}
    print(f"\njob durations (s), webhook failing 3x then ok: {[round(s, 3) for s in took[hooked.ok]]}, median "
          f"{median[hooked.ok]:.3f}; webhook hanging: {[round(s, 3) for s in took[hooked.hang]]}, median "
          f"{median[hooked.hang]:.3f}; the ok tenant's last webhook arrived {arrived_after:.1f}s after its last job "
          f"finished; attempts at the hanging receiver so far: {hang['attempts']}")  # fmt: skip
    assert median[hooked.hang] <= 3 * median[hooked.ok]

    # The hanging receiver recovers: each of its jobs is delivered once, the attempts it held never recorded.
    assert sandbox.post(f"/_sandbox/webhooks/{hooked.hang}/config", json={"hang_seconds": 0}).is_success
    poll(lambda: len(hooked.receiver(hooked.hang)["deliveries"]) >= JOBS_PER_TENANT, 90, "the hang tenant's webhooks")
    verified_once(hooked.receiver(hooked.hang), jobs[hooked.hang])

    listing = stack.erpsync("webhooks", "list", "--json")
    assert listing.returncode == 0, listing.stderr
    rows = {t["tenant"]: t for t in json.loads(listing.stdout)["tenants"]}
    assert rows.get(hooked.ok, {}).get("due", 0) == rows.get(hooked.hang, {}).get("due", 0) == 0

    stop(proc)
    assert proc.returncode == 0
    log = logfile.read_text()
    assert "webhook sender stopped" in log and "webhook delivered" in log and "HTTP 503" in log
    assert "not-in-logs" not in log and hooked.secrets[hooked.ok] not in log
