"""Crashes: a worker SIGKILLed in each phase of a document's life, and one shut down gracefully mid-run.

Each scenario runs real processes of a private stack (tests/faults.py: own Redis with AOF, sandbox, workers),
stops a worker at an exact line (worker/failpoints.py), lets a fresh worker recover, and ends with the same
audit: every document `created` exactly once in the sandbox ledger with the Key our results store holds (or
failed with its reason), nothing pending, nothing in the ledger twice. Then the broker's visibility timeout
is made to pass for whatever the dead worker held, and the audit must come out the same: a late redelivery
changes nothing.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.faults import Audit, ErpGate, FaultStack, audit_records, invoice, poll
from worker.store.keys import Keys

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

INVOICES = "/Economy/Billing/CustomerInvoices"
_customers = itertools.count(700_000, 1000)  # unique content per scenario: reconciliation matches on content


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    stack = FaultStack(tmp_path_factory.mktemp("faults")).start()
    try:
        yield stack
    finally:
        stack.stop()


def documents(jobs: int = 3, per_job: int = 20) -> list[list[dict[str, Any]]]:
    """`jobs` jobs of `per_job` valid invoices and one our schema rejects (a quantity that is no number)."""
    tag, base = uuid.uuid4().hex[:6], next(_customers)
    out = []
    for j in range(jobs):
        docs = [invoice(f"crash-{tag}-{j}-{i:02d}", base + j * 100 + i) for i in range(per_job)]
        bad = invoice(f"crash-{tag}-{j}-bad", base + j * 100 + 99)
        bad["InvoiceRows"][0]["Quantity"] = "två"
        out.append([*docs[: per_job // 2], bad, *docs[per_job // 2 :]])
    return out


def check(report: Audit, jobs: list[list[dict[str, Any]]]) -> None:
    """Every valid invoice created once with the ERP's Key, every invalid one failed with its field."""
    report.assert_clean()
    assert report.documents == sum(len(j) for j in jobs)
    assert all("InvoiceRows[0].Quantity" in why for why in report.failed.values()), report.failed
    assert len(report.failed) == len(jobs)


def crash_and_recover(faults: FaultStack, failpoint: str, jobs: list[list[dict[str, Any]]]) -> list[str]:
    """A worker dies at `failpoint`; a fresh one recovers; audit. Then the dead worker's messages are redelivered
    (as after the visibility timeout) to yet another worker: the audit must not change."""
    # One pool process: the worker dies in exactly that phase, with nothing else half-done beside it.
    doomed = faults.start_worker(failpoints=failpoint, concurrency=1)
    job_ids = faults.submit(jobs)
    faults.wait_killed(doomed)
    assert f"failpoint {failpoint.split('=')[0]}: kill" in faults.worker_log(doomed)

    faults.start_worker()
    faults.wait_jobs(job_ids, timeout=60)
    check(faults.audit(job_ids), jobs)
    redeliver_late(faults, job_ids)
    return job_ids


def redeliver_late(faults: FaultStack, job_ids: list[str]) -> None:
    """What the killed worker held comes back after the visibility timeout, to a new worker: nothing changes."""
    report = faults.audit(job_ids)
    for proc in faults.stack.workers:
        if proc.poll() is None:
            assert faults.terminate_worker(proc) == 0
    assert faults.expire_unacked() >= 1, "the killed worker held no message"
    late = faults.start_worker()
    faults.wait_idle(timeout=60)
    assert faults.audit(job_ids) == report
    assert faults.terminate_worker(late) == 0
    assert faults.unacked() == set()


def lost_senders(faults: FaultStack, job_ids: list[str]) -> list[dict[str, Any]]:
    """Batches taken over from a dead worker that had marked its request sent."""
    return [
        b for b in faults.batches(job_ids).values()
        if any(e.get("outcome") == "lease expired" and e.get("request_sent") for e in b["log"])
    ]  # fmt: skip


def test_killed_after_validation_before_the_buffer(faults: FaultStack, erp: httpx.Client) -> None:
    jobs = documents()
    crash_and_recover(faults, "intake.validated=kill", jobs)


def test_killed_with_documents_in_the_buffer(faults: FaultStack, erp: httpx.Client) -> None:
    jobs = documents()
    crash_and_recover(faults, "intake.buffered=kill", jobs)


def test_killed_after_intake_stored_a_whole_batch_before_its_send_was_queued(
    faults: FaultStack, erp: httpx.Client
) -> None:
    jobs = documents(jobs=1, per_job=120)  # two whole batches skip the buffer; the rest waits in it
    crash_and_recover(faults, "intake.batched=kill", jobs)


def test_killed_after_a_batch_was_made_before_its_send_was_queued(faults: FaultStack, erp: httpx.Client) -> None:
    jobs = documents()
    crash_and_recover(faults, "flush.batched=kill", jobs)


def test_killed_with_the_post_in_flight(faults: FaultStack, erp: httpx.Client) -> None:
    """The ERP works 3 s on the first POST before it saves and answers; the worker dies 1 s after sending it (time
    enough for the request to arrive whole, even on a loaded machine). The ERP commits a request whose answer
    nobody reads: the batch is taken over after its lease and reconciled, not resent."""
    erp.post("/_sandbox/faults", json={"path": INVOICES, "kind": "delay", "delay_ms": 3000, "times": 1})
    jobs = documents()
    job_ids = crash_and_recover(faults, "post.sending=kill-after=1s", jobs)
    [batch] = lost_senders(faults, job_ids)
    reconciled = next(e for e in batch["log"] if e.get("outcome") == "reconciled")
    assert reconciled["found"] == int(batch["size"]) and reconciled["resend"] == 0, batch["log"]
    assert batch["outcome"] == "reconciled"


def test_killed_after_the_answer_before_the_results(faults: FaultStack, erp: httpx.Client) -> None:
    """The ERP created the documents and answered; the worker died before writing the Keys: reconciled."""
    jobs = documents()
    job_ids = crash_and_recover(faults, "post.answered=kill", jobs)
    [batch] = lost_senders(faults, job_ids)
    reconciled = next(e for e in batch["log"] if e.get("outcome") == "reconciled")
    assert reconciled["found"] == int(batch["size"]) and reconciled["resend"] == 0, batch["log"]
    assert batch["outcome"] == "reconciled"


def test_killed_after_the_results_before_the_ack(faults: FaultStack, erp: httpx.Client) -> None:
    """The Keys are written, the ticket is neither settled with the dispatcher nor acknowledged: when its lease runs
    out the dispatcher finds the batch done and drops it, and the ticket's late redelivery sends nothing."""
    jobs = documents()
    stats = erp.get("/_sandbox/stats").json()["requests"].get(f"POST {INVOICES}", {})
    job_ids = crash_and_recover(faults, "batch.finished=kill", jobs)  # the ticket's late redelivery included
    after = erp.get("/_sandbox/stats").json()["requests"].get(f"POST {INVOICES}", {})
    posts = sum(after.values()) - sum(stats.values())
    batches = faults.batches(job_ids)
    assert posts == len(batches), {i: b["log"] for i, b in batches.items()}
    assert all(int(b["attempts"]) == 1 for b in batches.values()), {i: b["log"] for i, b in batches.items()}
    poll(lambda: not _dispatched(faults, batches), 30, "the dead sender's batch dropped by the dispatcher")


def test_killed_between_two_batches_of_one_ticket(faults: FaultStack, erp: httpx.Client) -> None:
    """A big job's whole batches are served one after another by a send ticket; the worker dies once the first
    batch is written. The next worker sends the rest (and drops the done one when its lease runs out): one POST a
    batch."""
    jobs = documents(jobs=1, per_job=120)
    stats = erp.get("/_sandbox/stats").json()["requests"].get(f"POST {INVOICES}", {})
    job_ids = crash_and_recover(faults, "batch.finished=kill", jobs)
    after = erp.get("/_sandbox/stats").json()["requests"].get(f"POST {INVOICES}", {})
    batches = faults.batches(job_ids)
    assert len(batches) == 12  # 120 valid documents in batches of 10
    assert sum(after.values()) - sum(stats.values()) == len(batches), {i: b["log"] for i, b in batches.items()}
    assert all(int(b["attempts"]) == 1 for b in batches.values()), {i: b["log"] for i, b in batches.items()}
    poll(lambda: not _dispatched(faults, batches), 30, "every batch out of the dispatcher")


def _dispatched(faults: FaultStack, batch_ids: Iterable[str]) -> set[str]:
    """Which of these batches the dispatcher still holds (queued, delayed or taken by a sender)."""
    client, keys = faults.redis(), Keys(faults.prefix)
    held = set(client.zrange(keys.dispatch_delayed, 0, -1)) | set(client.zrange(keys.dispatch_taken, 0, -1))
    for key in client.scan_iter(f"{faults.prefix}:dispatch:lane:*", count=1000):
        held.update(client.lrange(key, 0, -1))
    return held & set(batch_ids)


def test_a_flush_lost_with_a_killed_worker_strands_nothing(faults: FaultStack, erp: httpx.Client) -> None:
    """A worker dies holding the wake ticket of a partial batch's delayed flush. The flush is asked for in Redis
    (the dispatcher's flushes), so the next worker does it when due, and documents a producer pushes right after
    the new worker started get theirs."""
    doomed = faults.start_worker(env={"ERPSYNC_BATCH_MAX_WAIT_MS": "3000"})
    first_jobs = documents(jobs=1, per_job=4)
    first = faults.submit(first_jobs)
    client, flushes = faults.redis(), Keys(faults.prefix).dispatch_flushes
    poll(lambda: client.zscore(flushes, "demo|customer_invoice")
         and client.llen(f"{faults.prefix}:buffer:demo:customer_invoice"), 10,
         "a delayed flush asked for a partial batch")  # fmt: skip
    faults.kill_worker(doomed)

    faults.start_worker()  # its recovery flushes what the dead worker left in the buffer
    second_jobs = documents(jobs=1, per_job=4)
    second = faults.submit(second_jobs)  # while the dead worker's wake would still be pending
    faults.wait_jobs(first + second, timeout=20)
    check(faults.audit(first), first_jobs)
    check(faults.audit(second), second_jobs)
    redeliver_late(faults, first + second)  # the lost flush itself, an hour late in production


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_sigterm_lets_batches_in_flight_finish(faults: FaultStack, erp: httpx.Client, pool: str) -> None:
    """SIGTERM mid-run (Celery's warm shutdown): the POSTs in flight finish and are acknowledged, nothing is
    left `sending`, and the next worker sends every batch once: no redelivery was needed."""
    erp.post("/_sandbox/latency", json={"ms": 600})
    jobs = documents(jobs=4, per_job=30)
    held_before = faults.unacked()  # e.g. what a worker killed by an earlier test still holds
    worker = faults.start_worker(pool=pool, concurrency=4)
    job_ids = faults.submit(jobs)

    def mid_run() -> list[str]:
        states = {i: b["state"] for i, b in faults.batches(job_ids).items()}
        sending = [i for i, s in states.items() if s == "sending"]
        return sending if sending and "done" in states.values() else []

    in_flight = poll(mid_run, 30, "batches in flight")
    assert faults.terminate_worker(worker) == 0
    states = {i: b["state"] for i, b in faults.batches(job_ids).items()}
    assert "sending" not in states.values(), states
    assert all(states[i] == "done" for i in in_flight), states
    assert faults.unacked() <= held_before, "a message stayed unacknowledged after the warm shutdown"
    assert "Warm shutdown" in faults.worker_log(worker)

    erp.post("/_sandbox/latency", json={"ms": 0})
    faults.start_worker(pool=pool)
    faults.wait_jobs(job_ids, timeout=60)
    check(faults.audit(job_ids), jobs)
    batches = faults.batches(job_ids)
    assert all(int(b["attempts"]) == 1 for b in batches.values()), {i: b["log"] for i, b in batches.items()}
    assert not any(e.get("outcome") == "lease expired" for b in batches.values() for e in b["log"])


# ----- the harness itself


def test_audit_rules() -> None:
    ledger = [{"external_id": "a", "key": 1}, {"external_id": "b", "key": 2}, {"external_id": "b", "key": 3},
              {"external_id": "d", "key": 4}, {"external_id": "other", "key": 5}]  # fmt: skip
    records = [
        {"external_id": "a", "status": "created", "key": 1},
        {"external_id": "b", "status": "created", "key": 2},
        {"external_id": "c", "status": "created", "key": 9},
        {"external_id": "d", "status": "failed", "error": "no"},
        {"external_id": "e", "status": "unknown", "error": "may exist"},
        {"external_id": "f", "status": "pending"},
        {"external_id": "g", "status": "failed", "error": ""},
    ]
    report = audit_records(records, ledger, dead={"e": {}})
    assert report.created == {"a": 1, "b": 2}
    assert report.duplicates == {"b": 2}
    assert report.pending == ["f"]
    assert report.unknown == {"e": "may exist"}
    assert sorted(p.split(":")[0] for p in report.problems) == ["c", "d", "g"]
    with pytest.raises(AssertionError, match="b: 2 times in the ledger"):
        report.assert_clean(unknown=True)
    clean = audit_records(records[:1] + records[4:5], ledger, dead={"e": {}})
    clean.assert_clean(unknown=True)
    with pytest.raises(AssertionError, match="e: unknown"):
        clean.assert_clean()


def test_the_gate_refuses_while_the_erp_is_down_and_the_erp_keeps_its_ledger(
    faults: FaultStack, erp: httpx.Client
) -> None:
    url = f"http://127.0.0.1:{faults.gate.port}/_sandbox/health"
    assert httpx.get(url, timeout=5).status_code == 200
    jobs = documents(jobs=1, per_job=10)
    faults.start_worker()
    first = faults.submit(jobs)
    faults.wait_jobs(first)
    faults.erp_down()
    with pytest.raises(httpx.ConnectError):
        httpx.get(url, timeout=5)
    later = faults.submit(documents(jobs=1, per_job=10))
    faults.erp_up()
    faults.wait_jobs(later)
    check(faults.audit(first), jobs)
    faults.audit(later).assert_clean()


def test_a_paused_sandbox_accepts_and_never_answers(faults: FaultStack, erp: httpx.Client) -> None:
    url = f"http://127.0.0.1:{faults.gate.port}/_sandbox/health"
    faults.pause_sandbox()
    try:
        with pytest.raises(httpx.ReadTimeout):
            httpx.get(url, timeout=1)
    finally:
        faults.resume_sandbox()
    assert httpx.get(url, timeout=5).status_code == 200


def test_sandbox_restart_on_its_port_keeps_the_ledger_and_new_keys(faults: FaultStack, erp: httpx.Client) -> None:
    faults.start_worker()
    before = faults.submit(documents(jobs=1, per_job=5))
    faults.wait_jobs(before)
    port, old_keys = faults.stack.sandbox_port, set(faults.audit(before).created.values())
    faults.stop_sandbox()
    faults.start_sandbox()
    assert faults.stack.sandbox_port == port
    after = faults.submit(documents(jobs=1, per_job=5))
    faults.wait_jobs(after)
    faults.audit(before).assert_clean()
    report = faults.audit(after)
    report.assert_clean()
    assert min(report.created.values()) > max(old_keys)  # type: ignore[operator]


def test_redis_restart_keeps_the_data(faults: FaultStack, erp: httpx.Client) -> None:
    faults.start_worker()
    job_ids = faults.submit(documents(jobs=1, per_job=5))
    faults.wait_jobs(job_ids)
    report = faults.audit(job_ids)
    faults.kill_worker(faults.stack.workers[-1])
    faults.restart_redis()  # SHUTDOWN: the AOF has every write
    assert faults.audit(job_ids) == report
    client = faults.redis()
    client.set("faults:crash-probe", "1")

    def in_the_aof() -> bool:
        files = [p for p in Path(faults.redis_server.workdir).rglob("appendonly*") if p.is_file()]
        return any(b"faults:crash-probe" in p.read_bytes() for p in files)

    poll(in_the_aof, 5, "the AOF has the write")
    faults.restart_redis(crash=True)  # SIGKILL: what reached the AOF survives
    assert faults.redis().get("faults:crash-probe") == "1"
    faults.redis().delete("faults:crash-probe")


def test_the_gate_cuts_open_connections() -> None:
    with httpx.Client() as client:
        gate = ErpGate(lambda: 9)  # nothing listens upstream: a connection is accepted, then dropped
        gate.open()
        try:
            with pytest.raises(httpx.HTTPError):
                client.get(f"http://127.0.0.1:{gate.port}/", timeout=5)
        finally:
            gate.close()
        with pytest.raises(httpx.ConnectError):
            client.get(f"http://127.0.0.1:{gate.port}/", timeout=5)
