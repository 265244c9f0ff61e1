"""What a starting worker re-queues (worker/pipeline/recovery.py), against fakeredis with Celery's sending captured."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.fake_runtime import capture_messages, fake_runtime, of_task
from worker.celery_app.enqueue import publish
from worker.pipeline.queue import TaskName
from worker.settings import Settings
from worker.store.buffer import CoalescingBuffer


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    parts = {**fake_runtime(monkeypatch, Settings(demo_tenant=True))}
    parts["messages"] = capture_messages(monkeypatch)
    return parts


def flushes(queued: dict[str, Any]) -> list[tuple[str, str]]:
    return [tuple(m.args) for m in of_task(queued["messages"], TaskName.FLUSH_BUFFER)]


def test_recovery_clears_the_request_flags_a_dead_worker_may_have_left(queued: dict[str, Any]) -> None:
    """A flag says "a flush (or drain) is queued": if that message died with a worker, documents pushed later
    would wait for it until the visibility timeout. Recovery clears them and flushes what is waiting."""
    from worker.pipeline.batch import request_flush
    from worker.pipeline.intake import request_intake
    from worker.store.keys import Keys

    flag_key = Keys("erpsync").flush_flag
    buffer: CoalescingBuffer = queued["buffer"]
    buffer.push("demo", "customer_invoice", [("j1", 0, "X-0", '{"ExternalId": "X-0"}')])
    r = queued["store"].r
    r.sadd("erpsync:buffers", "demo|order")  # a buffer used before, empty now: nothing to flush
    for kind in ("customer_invoice", "order"):
        r.set(flag_key("demo", kind, True), "1")
        r.set(flag_key("demo", kind, False), "1")
    r.set("erpsync:intakeq", "1")

    from worker.pipeline.recovery import recover

    counts = recover(publish)
    assert counts["buffers"] == 1
    assert flushes(queued) == [("demo", "customer_invoice")]
    assert [k for k in r.keys("erpsync:flushq:*")] == [] and not r.exists("erpsync:intakeq")

    # and the next push asks for its own flush, the next small job for its own drain
    request_flush(publish, "demo", "order", now=False)
    assert flushes(queued)[-1] == ("demo", "order")
    request_intake(publish, 1)
    assert len(of_task(queued["messages"], TaskName.DRAIN_INTAKE)) == 1
