"""What a starting worker re-queues (tasks/recovery.py), against fakeredis with Celery's sending captured."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.fake_runtime import fake_runtime
from worker.buffer import CoalescingBuffer
from worker.settings import Settings


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    from tasks import flush, jobs

    parts = {**fake_runtime(monkeypatch, Settings(demo_tenant=True)), "flushes": [], "drains": []}
    monkeypatch.setattr(flush.flush_buffer, "apply_async", lambda args, **k: parts["flushes"].append(tuple(args)))
    monkeypatch.setattr(jobs.drain_intake, "apply_async", lambda **k: parts["drains"].append(k))
    return parts


def test_recovery_clears_the_request_flags_a_dead_worker_may_have_left(queued: dict[str, Any]) -> None:
    """A flag says "a flush (or drain) is queued": if that message died with a worker, documents pushed later
    would wait for it until the visibility timeout. Recovery clears them and flushes what is waiting."""
    from tasks.flush import flag_key, request_flush
    from tasks.jobs import request_intake

    buffer: CoalescingBuffer = queued["buffer"]
    buffer.push("demo", "customer_invoice", [("j1", 0, "X-0", '{"ExternalId": "X-0"}')])
    r = queued["store"].r
    r.sadd("erpsync:buffers", "demo|order")  # a buffer used before, empty now: nothing to flush
    for kind in ("customer_invoice", "order"):
        r.set(flag_key("demo", kind, True), "1")
        r.set(flag_key("demo", kind, False), "1")
    r.set("erpsync:intakeq", "1")

    from tasks.recovery import recover

    counts = recover()
    assert counts["buffers"] == 1
    assert queued["flushes"] == [("demo", "customer_invoice")]
    assert [k for k in r.keys("erpsync:flushq:*")] == [] and not r.exists("erpsync:intakeq")

    # and the next push asks for its own flush, the next small job for its own drain
    request_flush("demo", "order", now=False)
    assert queued["flushes"][-1] == ("demo", "order")
    request_intake(1)
    assert len(queued["drains"]) == 1
