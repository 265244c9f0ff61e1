"""Intake stores documents that fill whole batches as batches itself; only the rest waits in the buffer.

Against fakeredis, with Celery's sending captured: which batches are stored and placed with the dispatcher (whose
send tickets serve them: tests/unit/test_dispatch_send.py), which flushes are asked for, and that a run cut short
between storing a batch and placing it is made good by the next run.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.unit.fake_runtime import capture_messages, fake_runtime, of_task
from worker.celery_app.enqueue import publish
from worker.pipeline.intake import process_items
from worker.pipeline.queue import Message, TaskName
from worker.settings import Settings
from worker.store.dispatch import LANES, Dispatcher, Lane
from worker.store.results import ResultsStore


def invoice(n: int) -> dict[str, Any]:
    row = {"CustomerRowType": 2, "RowNr": 1, "ProductNr": "P1", "Quantity": 1, "UnitPrice": 10}
    return {"ExternalId": f"X-{n:03d}", "CustomerNr": "1001", "InvoiceDate": "2026-11-20", "OriginType": 2,
            "InvoiceRows": [row]}  # fmt: skip


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    parts = {**fake_runtime(monkeypatch, Settings(demo_tenant=True)), "sends": [], "flushes": []}
    parts["messages"] = capture_messages(monkeypatch)
    return parts


def placed(stack: dict[str, Any]) -> list[str]:
    """The demo tenant's batches queued with the dispatcher, lane by lane, in order."""
    d: Dispatcher = stack["dispatcher"]
    return [b for lane in LANES for b in d.r.lrange(d.keys.dispatch_lane("demo", lane), 0, -1)]


def tickets(stack: dict[str, Any]) -> int:
    """Send tickets published to go at once (wakes, delayed ones, aside); no message names a batch."""
    assert of_task(stack["messages"], TaskName.SEND_BATCH) == of_task(stack["messages"], TaskName.SEND_BATCHES) == []
    return len([m for m in of_task(stack["messages"], TaskName.SEND_NEXT) if not m.countdown])


def flushes(stack: dict[str, Any]) -> list[tuple[str, str]]:
    """The buffers whose flush is asked for with the dispatcher (no flush message is published)."""
    assert of_task(stack["messages"], TaskName.FLUSH_BUFFER) == []
    d: Dispatcher = stack["dispatcher"]
    return [tuple(b.split("|", 1)) for b in d.r.zrange(d.keys.dispatch_flushes, 0, -1)]


def store_job(store: ResultsStore, job_id: str, n: int) -> None:
    docs = [invoice(i) for i in range(n)]
    meta = {"job_id": job_id, "tenant": "demo", "target": "softone", "kind": "customer_invoice"}
    store.create_job(meta, [json.dumps(d) for d in docs], [d["ExternalId"] for d in docs])


def test_whole_batches_skip_the_buffer_and_the_rest_waits_in_it(stack: dict[str, Any]) -> None:
    store: ResultsStore = stack["store"]
    store_job(store, "J", 120)
    assert process_items(publish, [("J", 0, 120)])["buffered"] == 120
    assert placed(stack) == ["J@0", "J@50"]  # batch_max_docs 50: two whole batches, placed at once
    assert tickets(stack) == 2
    for batch_id, first in (("J@0", 0), ("J@50", 50)):
        batch = store.batch(batch_id) or {}
        assert json.loads(batch["members"]) == [["J", p] for p in range(first, first + 50)]
        assert [d["ExternalId"] for d in json.loads(batch["body"])] == [f"X-{p:03d}" for p in range(first, first + 50)]
    assert stack["buffer"].waiting("demo", "customer_invoice") == 20
    assert flushes(stack) == [("demo", "customer_invoice")]  # the timer flush for the 20 left, and a wake for it
    assert [m.countdown is not None for m in of_task(stack["messages"], TaskName.SEND_NEXT)].count(True) == 1
    assigned = stack["buffer"].assigned("J")
    assert sorted(assigned) == list(range(120))
    assert {v for p, v in assigned.items() if p >= 100} == {"buffer"}

    # A redelivery stores nothing again, and places a batch still `queued` only where its placement was lost:
    # placing a batch placed already is a no-op, and one sent already is not sent again.
    store.r.hset(store.keys.batch("J@0"), "state", "done")
    assert process_items(publish, [("J", 0, 120)])["buffered"] == 0
    assert placed(stack) == ["J@0", "J@50"] and tickets(stack) == 2
    assert stack["buffer"].waiting("demo", "customer_invoice") == 20
    d: Dispatcher = stack["dispatcher"]
    store.r.delete(d.keys.dispatch_lane("demo", Lane.BULK))  # both placements lost (a Redis that lost writes)
    store.r.hdel(store.keys.batch("J@50"), "queued_in")
    store.r.hdel(store.keys.batch("J@0"), "queued_in")
    process_items(publish, [("J", 0, 120)])
    assert placed(stack) == ["J@50"] and tickets(stack) == 3
    found = d.take()
    assert found.grant is not None and found.grant.batch_id == "J@50"
    assert d.take().grant is None


def test_a_batch_stored_by_a_run_that_died_before_placing_it_is_placed_by_the_next_run(
    stack: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker.pipeline import batch

    class Died(Exception):
        pass

    def die_at(name: str) -> None:
        if name == "intake.batched":
            raise Died(name)

    store: ResultsStore = stack["store"]
    store_job(store, "J", 50)
    with monkeypatch.context() as patched:
        patched.setattr(batch, "failpoint", die_at)
        with pytest.raises(Died):
            process_items(publish, [("J", 0, 50)])
    assert (store.batch("J@0") or {})["state"] == "queued"
    assert placed(stack) == [] and tickets(stack) == 0

    process_items(publish, [("J", 0, 50)])  # the redelivered intake: every document is assigned, none pushed again
    assert placed(stack) == ["J@0"] and tickets(stack) == 1
    assert json.loads((store.batch("J@0") or {})["members"]) == [["J", p] for p in range(50)]


def test_a_batch_whose_ticket_was_lost_with_the_broker_is_served_all_the_same(stack: dict[str, Any]) -> None:
    """The batch was placed, the ticket for it could not be published: the redelivered intake places it once, and
    a sender's heartbeat offers a ticket for the work it finds queued."""
    from worker.pipeline.dispatch import heartbeat

    store: ResultsStore = stack["store"]
    store_job(store, "J", 50)

    def broker_gone(message: Message) -> None:
        raise ConnectionError("the broker went away")

    with pytest.raises(ConnectionError):
        process_items(broker_gone, [("J", 0, 50)])
    assert placed(stack) == ["J@0"] and tickets(stack) == 0
    process_items(publish, [("J", 0, 50)])
    assert placed(stack) == ["J@0"]  # queued once
    heartbeat(publish)
    assert tickets(stack) == 1
    found = stack["dispatcher"].take()
    assert found.grant is not None and found.grant.batch_id == "J@0"
