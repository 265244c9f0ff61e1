"""A big file's whole batches go out in groups: one send_batches message per ERPSYNC_SEND_GROUP_BATCHES batches.

Against fakeredis and a fake ERP, with Celery's sending captured: how intake groups the sends, that a group
sends each of its batches as send_batch would, that a batch which must wait comes back alone while the rest
of its group goes on, and that a redelivered group sends nothing twice.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from schemas import DocumentKind
from tests.unit.fake_runtime import fake_runtime
from tests.unit.test_intake_batches import store_job
from worker.celery_app.enqueue import publish
from worker.connectors import Created
from worker.errors import ServiceUnavailable
from worker.pipeline.intake import process_items
from worker.pipeline.queue import TaskName
from worker.settings import Settings
from worker.store.records import CREATED, PENDING
from worker.store.results import ResultsStore


class Erp:
    """Answers every POST with Keys (1000 per batch apart); `refuse` names request ids it answers 503 once."""

    def __init__(self, refuse: set[str] | None = None) -> None:
        self.refuse = set(refuse or ())
        self.posts: list[str] = []

    def post_documents(self, kind: DocumentKind, body: bytes, request_id: str) -> list[Created]:
        if request_id in self.refuse:
            self.refuse.discard(request_id)
            raise ServiceUnavailable("503 from the ERP", status=503)
        self.posts.append(request_id)
        base = 1000 * len(self.posts)
        return [Created(base + i) for i in range(len(json.loads(body)))]

    def can_look_up(self, kind: DocumentKind) -> bool:
        return True


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    from worker.celery_app import app
    from worker.pipeline import batch, intake, runtime, send
    from worker.pipeline import retry as retry_policy
    from worker.store.inflight import InflightLimiter

    settings = Settings(demo_tenant=True, send_group_batches=2)
    parts = {**fake_runtime(monkeypatch, settings), "singles": [], "groups": [], "erp": Erp()}
    store: ResultsStore = parts["store"]

    def send_task(name: str, args: Any = None, countdown: float | None = None, **_: Any) -> None:
        if name == TaskName.SEND_BATCH:
            parts["singles"].append((args[0], countdown))
        elif name == TaskName.SEND_BATCHES:
            parts["groups"].append(args[0])

    monkeypatch.setattr(app, "send_task", send_task)
    for step in (intake, batch, send, retry_policy):
        monkeypatch.setattr(step, "get_settings", lambda: settings)
    monkeypatch.setattr(runtime, "inflight", lambda: InflightLimiter(store.r, "grp"))
    monkeypatch.setattr(runtime, "connector", lambda tenant: parts["erp"])
    return parts


def test_intake_queues_a_chunks_whole_batches_in_groups(stack: dict[str, Any]) -> None:

    store_job(stack["store"], "J", 260)
    process_items(publish, [("J", 0, 260)])
    # Five whole batches of 50 at two per message; the last one alone goes as a send_batch; ten wait in the buffer.
    assert stack["groups"] == [["J@0", "J@50"], ["J@100", "J@150"]]
    assert stack["singles"] == [("J@200", None)]
    assert stack["buffer"].waiting("demo", "customer_invoice") == 10


def test_a_group_sends_every_batch_and_one_that_must_wait_comes_back_alone(stack: dict[str, Any]) -> None:
    from tasks.send import send_batch, send_batches

    store: ResultsStore = stack["store"]
    store_job(store, "J", 200)
    process_items(publish, [("J", 0, 200)])
    assert stack["groups"] == [["J@0", "J@50"], ["J@100", "J@150"]]
    stack["erp"].refuse = {"J@0"}

    result = send_batches(["J@0", "J@50"])
    # The 503 on the first batch did not hold up the second; the first comes back alone after its backoff.
    assert result == {"batches": 2, "outcomes": {"comes back alone": 1, "created": 1}}
    assert stack["erp"].posts == ["J@50"]
    [(batch_id, countdown)] = stack["singles"]
    assert batch_id == "J@0" and countdown is not None and 0 < countdown <= store.s.retry_backoff_cap
    assert (store.batch("J@0") or {})["state"] == "waiting"
    assert {r.status for r in store.records("J")[:50]} == {PENDING}

    assert send_batch("J@0")["outcome"] == "created"  # the message it came back in
    assert send_batches(["J@100", "J@150"])["outcomes"] == {"created": 2}
    # Redelivered (the worker died before acknowledging it): every batch is done, nothing is posted again.
    assert send_batches(["J@0", "J@50"]) == {"batches": 2, "outcomes": {"already done": 2}}
    assert stack["erp"].posts == ["J@50", "J@0", "J@100", "J@150"]
    records = store.records("J")
    assert [r.status for r in records] == [CREATED] * 200
    assert len({r.key for r in records}) == 200


def test_a_group_cut_short_by_an_outage_queues_the_rest_of_its_batches_alone(
    stack: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis

    from tasks import send as batches

    store: ResultsStore = stack["store"]
    store_job(store, "J", 150)
    process_items(publish, [("J", 0, 150)])
    real = store.acquire_batch_data

    def gone_for(batch_id: str, sender: str) -> Any:
        if batch_id == "J@50":
            raise redis.ConnectionError("Redis went away")
        return real(batch_id, sender)

    monkeypatch.setattr(store, "acquire_batch_data", gone_for)
    stack["singles"].clear()  # intake's own send of J@100 (a group of two, then one alone)
    with pytest.raises(redis.ConnectionError):
        batches.send_batches(["J@0", "J@50", "J@100"])
    assert stack["erp"].posts == ["J@0"]
    assert stack["singles"] == [("J@100", None)]  # J@50 stays open: the recovery after reconnecting re-queues it
    assert store.r.sismember(f"{store.p}:open_batches", "J@50")


def test_the_tenants_slot_is_held_for_the_request_only(stack: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """The cap counts requests in flight: the slot is taken before the POST and given back as soon as the ERP
    has answered, before the outcome is written, so a sender with more threads than the cap keeps the cap's
    requests going while other threads record outcomes."""
    from tasks.send import send_batch
    from worker.pipeline import runtime

    store: ResultsStore = stack["store"]
    store_job(store, "J", 50)
    process_items(publish, [("J", 0, 50)])
    seen: list[tuple[str, int]] = []
    erp_post = stack["erp"].post_documents

    def post(kind: DocumentKind, body: bytes, request_id: str) -> Any:
        seen.append(("posting", runtime.inflight().in_flight("demo")))
        return erp_post(kind, body, request_id)

    real_complete = store.complete_batch

    def complete(*args: Any, **kwargs: Any) -> bool:
        seen.append(("recording", runtime.inflight().in_flight("demo")))
        return real_complete(*args, **kwargs)

    monkeypatch.setattr(stack["erp"], "post_documents", post)
    monkeypatch.setattr(store, "complete_batch", complete)
    assert send_batch("J@0")["outcome"] == "created"
    assert seen == [("posting", 1), ("recording", 0)]
