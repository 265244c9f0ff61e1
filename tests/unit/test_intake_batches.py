"""Intake stores documents that fill whole batches as batches itself; only the rest waits in the buffer.

Against fakeredis, with Celery's sending captured: which batches are stored, which sends and flushes are asked
for, and that a run cut short between storing a batch and queueing its send is made good by the next run.
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


def sends(stack: dict[str, Any]) -> list[str]:
    """The batches whose sends were queued; several whole batches go in one send_batches message
    (tests/unit/test_send_groups.py)."""
    out: list[str] = []
    for m in stack["messages"]:
        if m.task == TaskName.SEND_BATCH:
            out.append(m.args[0])
        elif m.task == TaskName.SEND_BATCHES:
            out.extend(m.args[0])
    return out


def flushes(stack: dict[str, Any]) -> list[tuple[str, str]]:
    return [tuple(m.args) for m in of_task(stack["messages"], TaskName.FLUSH_BUFFER)]


def store_job(store: ResultsStore, job_id: str, n: int) -> None:
    docs = [invoice(i) for i in range(n)]
    meta = {"job_id": job_id, "tenant": "demo", "target": "softone", "kind": "customer_invoice"}
    store.create_job(meta, [json.dumps(d) for d in docs], [d["ExternalId"] for d in docs])


def test_whole_batches_skip_the_buffer_and_the_rest_waits_in_it(stack: dict[str, Any]) -> None:
    store: ResultsStore = stack["store"]
    store_job(store, "J", 120)
    assert process_items(publish, [("J", 0, 120)])["buffered"] == 120
    assert sends(stack) == ["J@0", "J@50"]  # batch_max_docs 50: two whole batches, sent at once
    for batch_id, first in (("J@0", 0), ("J@50", 50)):
        batch = store.batch(batch_id) or {}
        assert json.loads(batch["members"]) == [["J", p] for p in range(first, first + 50)]
        assert [d["ExternalId"] for d in json.loads(batch["body"])] == [f"X-{p:03d}" for p in range(first, first + 50)]
    assert stack["buffer"].waiting("demo", "customer_invoice") == 20
    assert flushes(stack) == [("demo", "customer_invoice")]  # the timer flush for the 20 left
    assigned = stack["buffer"].assigned("J")
    assert sorted(assigned) == list(range(120))
    assert {v for p, v in assigned.items() if p >= 100} == {"buffer"}

    # A redelivery stores nothing again; it queues the send of a batch still `queued` (its first send may have
    # been lost with the run), not of one sent already. A second send message of a batch is a no-op.
    store.r.hset(store.keys.batch("J@0"), "state", "done")
    assert process_items(publish, [("J", 0, 120)])["buffered"] == 0
    assert sends(stack) == ["J@0", "J@50", "J@50"]
    assert stack["buffer"].waiting("demo", "customer_invoice") == 20


def test_a_batch_stored_by_a_run_that_died_before_queueing_its_send_is_sent_by_the_next_run(
    stack: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    store: ResultsStore = stack["store"]
    store_job(store, "J", 50)

    def broker_gone(message: Message) -> None:
        raise ConnectionError("the broker went away")

    with pytest.raises(ConnectionError):
        process_items(broker_gone, [("J", 0, 50)])
    assert (store.batch("J@0") or {})["state"] == "queued" and sends(stack) == []

    process_items(publish, [("J", 0, 50)])  # the redelivered intake: every document is assigned, none pushed again
    assert sends(stack) == ["J@0"]
    assert json.loads((store.batch("J@0") or {})["members"]) == [["J", p] for p in range(50)]
