"""What a starting worker re-queues (worker/pipeline/recovery.py), against fakeredis with Celery's sending captured:
flushes, batches not done placed with the dispatcher (once, however many processes recover), send tickets, jobs
that still have documents for intake."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.fake_runtime import capture_messages, fake_runtime, of_task
from worker.celery_app.enqueue import publish
from worker.pipeline.queue import TaskName
from worker.settings import Settings, get_settings
from worker.store.buffer import CoalescingBuffer
from worker.store.dispatch import LANES, Dispatcher, Lane
from worker.store.results import ResultsStore


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    parts = {**fake_runtime(monkeypatch, Settings(demo_tenant=True))}
    parts["messages"] = capture_messages(monkeypatch)
    return parts


def flushes(queued: dict[str, Any]) -> list[tuple[str, str]]:
    """The buffers whose flush is asked for with the dispatcher (no flush message is published)."""
    assert of_task(queued["messages"], TaskName.FLUSH_BUFFER) == []
    d: Dispatcher = queued["dispatcher"]
    return [tuple(b.split("|", 1)) for b in d.r.zrange(d.keys.dispatch_flushes, 0, -1)]


def test_recovery_flushes_what_buffers_hold_and_clears_the_drain_flag(queued: dict[str, Any]) -> None:
    """A flag says "a drain is queued": if that message died with a worker, jobs queued later would wait for it
    until the visibility timeout. Recovery clears it, and asks for a flush of every buffer holding documents."""
    from worker.pipeline.batch import request_flush
    from worker.pipeline.intake import request_intake

    buffer: CoalescingBuffer = queued["buffer"]
    buffer.push("demo", "customer_invoice", [("j1", 0, "X-0", '{"ExternalId": "X-0"}')])
    r = queued["store"].r
    r.sadd("erpsync:buffers", "demo|order")  # a buffer used before, empty now: nothing to flush
    r.set("erpsync:intakeq", "1")

    from worker.pipeline.recovery import recover

    counts = recover(publish)
    assert counts["buffers"] == 1
    assert flushes(queued) == [("demo", "customer_invoice")]
    assert not r.exists("erpsync:intakeq")
    d: Dispatcher = queued["dispatcher"]
    assert d.claim_flushes().buffers == [("demo", "customer_invoice")]  # due at once

    # and the next push asks for its own flush, the next small job for its own drain
    request_flush(publish, "demo", "order", now=False)
    assert ("demo", "order") in flushes(queued)
    request_intake(publish, 1)
    assert len(of_task(queued["messages"], TaskName.DRAIN_INTAKE)) == 1


def placed(d: Dispatcher) -> list[str]:
    return [b for lane in LANES for b in d.r.lrange(d.keys.dispatch_lane("demo", lane), 0, -1)]


def test_recovery_places_every_open_batch_once_and_offers_tickets(queued: dict[str, Any]) -> None:
    """A batch not done goes back to the dispatcher unless it is where it says it is: queued in its lane, delayed,
    or held by a sender (whose lease brings it back if the sender died)."""
    from tests.unit.test_intake_batches import store_job
    from worker.pipeline.intake import process_items
    from worker.pipeline.recovery import recover

    store: ResultsStore = queued["store"]
    d: Dispatcher = queued["dispatcher"]
    store_job(store, "J", 250)
    process_items(publish, [("J", 0, 250)])
    assert placed(d) == ["J@0", "J@50", "J@100", "J@150", "J@200"]
    found = d.take()  # J@0: held by a sender (that may have died: its lease tells)
    assert found.grant is not None and found.grant.batch_id == "J@0"
    d.r.lpop(d.keys.dispatch_lane("demo", Lane.BULK))  # J@50: sent by a message of an earlier version ...
    store.r.hset(store.keys.batch("J@50"), "state", "done")  # ... and done
    d.r.lrem(d.keys.dispatch_lane("demo", Lane.BULK), 1, "J@100")  # J@100: its place lost, it says `lane`
    d.r.lrem(d.keys.dispatch_lane("demo", Lane.BULK), 1, "J@200")
    store.r.hdel(store.keys.batch("J@200"), "queued_in")  # J@200: stored, never placed (the run died)
    queued["messages"].clear()

    counts = recover(publish)
    assert counts["batches"] == 2
    assert placed(d)[0] == "J@150" and sorted(placed(d)) == ["J@100", "J@150", "J@200"]
    assert d.taken() == 1
    assert "J@50" not in store.open_batch_ids() and {"J@0", "J@100", "J@150", "J@200"} <= store.open_batch_ids()
    # Tickets, as many as there is room for (none waits in the send queue, none runs).
    tickets = of_task(queued["messages"], TaskName.SEND_NEXT)
    assert counts["tickets"] == get_settings().send_tickets
    assert len(tickets) == counts["tickets"] + counts["batches"]  # (placing offered one per batch placed)
    assert of_task(queued["messages"], TaskName.SEND_BATCH) == []
    # Everything goes, once each.
    handed = []
    while (grant := d.take().grant) is not None:
        handed.append(grant.batch_id)
    assert sorted(handed) == ["J@100", "J@150", "J@200"]


def test_processes_recovering_together_queue_each_piece_of_work_once(queued: dict[str, Any]) -> None:
    """A deployment's intake and sender workers start together: a batch placed by the first is left where it is by
    the second, and a job whose documents are all somewhere goes back to intake by neither."""
    from tests.unit.test_intake_batches import store_job
    from worker.pipeline.intake import process_items
    from worker.pipeline.recovery import recover

    store: ResultsStore = queued["store"]
    d: Dispatcher = queued["dispatcher"]
    store_job(store, "J", 100)
    process_items(publish, [("J", 0, 100)])
    d.r.delete(d.keys.dispatch_lane("demo", Lane.INTERACTIVE), d.keys.dispatch_lane("demo", Lane.BULK))  # lost
    queued["messages"].clear()

    first = recover(publish)
    assert (first["batches"], first["jobs"]) == (2, 0) and sorted(placed(d)) == ["J@0", "J@50"]
    second = recover(publish)
    assert (second["batches"], second["jobs"]) == (0, 0) and sorted(placed(d)) == ["J@0", "J@50"]


def test_a_job_goes_back_to_intake_only_while_some_of_its_documents_are_nowhere(queued: dict[str, Any]) -> None:
    from tests.unit.test_intake_batches import store_job
    from worker.pipeline.intake import process_items
    from worker.pipeline.recovery import recover

    store: ResultsStore = queued["store"]
    store_job(store, "DONE", 120)
    process_items(publish, [("DONE", 0, 120)])  # two batches and twenty in the buffer: nothing left for intake
    store_job(store, "NEW", 30)  # stored, never taken for intake (its drain died with a worker)
    queued["messages"].clear()
    counts = recover(publish)
    assert counts["jobs"] == 1
    assert len(of_task(queued["messages"], TaskName.DRAIN_INTAKE)) >= 1
