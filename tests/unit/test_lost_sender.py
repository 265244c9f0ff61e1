"""A batch whose sender died: taken over after its lease, resent only if its request never left, else reconciled.

The results store records `request: <attempt>:unsent` when a batch is acquired and `<attempt>:sent` just before
the POST (restarting the lease); a worker that finds the lease expired takes the batch over and learns which
of the two the dead attempt had reached. The send step (worker/pipeline/send.py) runs here against fakeredis and
a fake connector, with a clock for the leases; a batch that must come back raises RetryLater (a send ticket
delays it with the dispatcher: tests/unit/test_dispatch_send.py). The last test takes the dispatcher's path: the
batch a dead sender held comes back from the dispatcher when its lease runs out, and the next ticket takes it over.
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from schemas import DocumentKind
from tests.unit.batch_store import store_with_a_batch
from tests.unit.fake_runtime import capture_messages
from worker.celery_app.enqueue import publish
from worker.connectors import Created
from worker.connectors.reconcile import Settlement
from worker.errors import ConfigurationError, RetryLater
from worker.pipeline.queue import TaskName
from worker.settings import Settings
from worker.store import dispatch as dispatch_module
from worker.store import results as results_module
from worker.store.dispatch import Dispatcher, Lane
from worker.store.records import CREATED, PENDING, UNKNOWN
from worker.store.results import ResultsStore

LEASE = 10


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """A fake clock for worker.store.results and worker.store.dispatch (the leases)."""
    fake = SimpleNamespace(now=1_700_000_000.0)
    for module in (results_module, dispatch_module):
        monkeypatch.setattr(module, "time", SimpleNamespace(time=lambda: fake.now))
    return fake


@pytest.fixture
def store() -> ResultsStore:
    settings = Settings(
        key_prefix="ls",
        send_lease_seconds=LEASE,
        http_connect_timeout=1.0,
        http_write_timeout=1.0,
        http_read_timeout=1.0,
        demo_tenant=False,
    )
    return store_with_a_batch(settings)


# ----- the store: take-over and the `sent` mark


def test_an_expired_lease_is_taken_over_once_and_says_whether_the_request_went_out(
    store: ResultsStore, clock: SimpleNamespace
) -> None:
    assert store.take_over_batch("b1", "w2") == ("moved", 0.0, False)  # queued: acquired the usual way
    assert store.acquire_batch("b1", "w1") == ("acquired", 1.0)
    assert store.take_over_batch("b1", "w2")[0] == "busy"
    clock.now += LEASE + 1
    assert store.take_over_batch("b1", "w2") == ("taken over", 2.0, False)  # w1 never marked it sent
    assert store.take_over_batch("b1", "w3")[0] == "busy"  # one taker only
    assert store.mark_sent("b1", 2, LEASE)
    clock.now += LEASE + 1
    assert store.take_over_batch("b1", "w3") == ("taken over", 3.0, True)
    batch = store.batch("b1")
    assert batch is not None and batch["state"] == "sending" and batch["sender"] == "w3"
    assert batch["request"] == "3:unsent"


def test_mark_sent_restarts_the_lease_and_is_refused_to_an_attempt_that_lost_the_batch(
    store: ResultsStore, clock: SimpleNamespace
) -> None:
    store.acquire_batch("b1", "w1")
    clock.now += LEASE - 1
    assert store.mark_sent("b1", 1, LEASE)  # e.g. after waiting for a slot: the POST gets a whole lease
    clock.now += LEASE - 1
    assert store.take_over_batch("b1", "w2")[0] == "busy"
    clock.now += 2
    assert store.take_over_batch("b1", "w2")[:2] == ("taken over", 2.0)
    assert not store.mark_sent("b1", 1, LEASE)  # w1, still alive after all, must not send now
    assert store.mark_sent("b1", 2, LEASE)
    assert not store.mark_sent("b1", 2, LEASE)  # marked once per attempt


def test_a_batch_acquired_by_a_version_without_the_mark_counts_as_sent(
    store: ResultsStore, clock: SimpleNamespace
) -> None:
    store.acquire_batch("b1", "w1")
    store.r.hdel("ls:batch:b1", "request")
    clock.now += LEASE + 1
    assert store.take_over_batch("b1", "w2") == ("taken over", 2.0, True)


def test_a_done_batch_is_not_taken_over(store: ResultsStore, clock: SimpleNamespace) -> None:
    store.acquire_batch("b1", "w1")
    store.complete_batch("b1", "created", [])
    clock.now += LEASE + 1
    assert store.take_over_batch("b1", "w2") == ("done", 0.0, False)
    assert store.take_over_batch("nope", "w2") == ("missing", 0.0, False)


# ----- sending a batch after its sender died


class FakeConnector:
    """Answers POSTs with Keys from 500 on, and look-ups with what it was told the ERP holds."""

    def __init__(self, *, can_look_up: bool = True, holds: dict[int, int] | None = None) -> None:
        self.looks_up = can_look_up
        self.holds = holds if holds is not None else {}
        self.posts: list[bytes] = []
        self.lookups = 0

    def post_documents(self, kind: DocumentKind, body: bytes, request_id: str) -> list[Created]:
        self.posts.append(body)
        return [Created(500 + i) for i in range(len(json.loads(body)))]

    def can_look_up(self, kind: DocumentKind) -> bool:
        return self.looks_up

    def lookalike_keys(self, kind: DocumentKind, docs: list[dict[str, Any]]) -> list[str] | None:
        return None  # found by id, not by content

    def look_up(self, request: Any) -> Settlement:
        self.lookups += 1
        missing = [i for i in range(len(request.docs)) if i not in self.holds]
        return Settlement(created=dict(self.holds), rejected=None, doubtful=[], resend=missing)


@pytest.fixture
def sending(monkeypatch: pytest.MonkeyPatch, store: ResultsStore, clock: SimpleNamespace) -> dict[str, Any]:
    from worker.pipeline import runtime

    dispatcher = Dispatcher(store.r, store.s)
    state: dict[str, Any] = {"connector": FakeConnector(), "sent": [], "dispatcher": dispatcher}

    def connector(tenant: str) -> Any:
        if state["connector"] is None:
            raise ConfigurationError(f"unknown tenant {tenant!r}")
        return state["connector"]

    monkeypatch.setattr(runtime, "store", lambda: store)
    monkeypatch.setattr(runtime, "dispatcher", lambda: dispatcher)
    monkeypatch.setattr(runtime, "connector", connector)
    state["sent"] = capture_messages(monkeypatch)  # a follow-up batch's send ticket
    return state


def send_once(batch_id: str) -> dict[str, Any]:
    """One run of the send step for the batch, without a dispatcher grant (RetryLater: it comes back later)."""
    from worker.pipeline.send import send

    return send(publish, batch_id)


def die_while_holding(store: ResultsStore, clock: SimpleNamespace, *, marked_sent: bool) -> None:
    """A worker acquires b1 (and marks its request sent, or not), then dies; its lease runs out."""
    assert store.acquire_batch("b1", "dead")[0] == "acquired"
    if marked_sent:
        assert store.mark_sent("b1", 1, LEASE)
    clock.now += 2 * LEASE + 1


def statuses(store: ResultsStore) -> list[tuple[str, Any]]:
    return [(r.status, r.key) for r in store.records("j1")]


def test_a_request_that_never_left_is_sent_by_the_next_worker(
    sending: dict[str, Any], store: ResultsStore, clock: SimpleNamespace
) -> None:
    die_while_holding(store, clock, marked_sent=False)
    assert send_once("b1")["outcome"] == "created"
    assert len(sending["connector"].posts) == 1 and sending["connector"].lookups == 0
    assert statuses(store) == [(CREATED, 500), (CREATED, 501)]
    log = store.attempts("b1")
    assert log[0] == {**log[0], "outcome": "lease expired", "request_sent": False, "attempt": 2}


def test_a_request_that_may_have_left_is_reconciled_not_resent(
    sending: dict[str, Any], store: ResultsStore, clock: SimpleNamespace
) -> None:
    """The dead worker's POST reached the ERP (it holds both documents with Keys 70 and 71): after the reconcile
    delay the look-up finds them; nothing is POSTed again."""
    sending["connector"] = FakeConnector(holds={0: 70, 1: 71})
    die_while_holding(store, clock, marked_sent=True)
    with pytest.raises(RetryLater) as later:
        send_once("b1")
    assert later.value.countdown == pytest.approx(5.0)  # the reconcile delay (an ERP may still be saving)
    batch = store.batch("b1")
    assert batch is not None and (batch["state"], batch["phase"], batch["reconcile_reason"]) == (
        "waiting",
        "reconcile",
        "lost",
    )

    assert send_once("b1")["outcome"] == "reconciled"
    assert sending["connector"].posts == [] and sending["connector"].lookups == 1
    assert statuses(store) == [(CREATED, 70), (CREATED, 71)]
    assert store.lookup("demo", "customer_invoice", "R-1").key == 71  # type: ignore[union-attr]
    assert send_once("b1")["outcome"] == "already done"


def test_documents_the_erp_does_not_hold_go_on_in_a_new_batch(
    sending: dict[str, Any], store: ResultsStore, clock: SimpleNamespace
) -> None:
    sending["connector"] = FakeConnector(holds={0: 70})  # the request was cut after the first document
    die_while_holding(store, clock, marked_sent=True)
    with pytest.raises(RetryLater):
        send_once("b1")
    assert send_once("b1") == {"batch_id": "b1", "outcome": "reconciled", "found": 1, "resend": 1}
    # The new batch is placed with the dispatcher (in the job's lane), and a send ticket is offered for it.
    dispatcher: Dispatcher = sending["dispatcher"]
    assert store.r.lrange(dispatcher.keys.dispatch_lane("demo", Lane.INTERACTIVE), 0, -1) == ["b1.r3"]
    assert [m.task for m in sending["sent"]] == [TaskName.SEND_NEXT]
    assert statuses(store) == [(CREATED, 70), (PENDING, None)]
    assert sending["connector"].posts == []


def test_where_the_erp_cannot_be_asked_the_documents_are_unknown(
    sending: dict[str, Any], store: ResultsStore, clock: SimpleNamespace
) -> None:
    sending["connector"] = FakeConnector(can_look_up=False)
    die_while_holding(store, clock, marked_sent=True)
    assert send_once("b1")["outcome"] == "unknown"
    assert [s for s, _ in statuses(store)] == [UNKNOWN, UNKNOWN]
    [record] = store.records("j1")[:1]
    assert "stopped while its request was in flight" in (record.error or "")
    assert "cannot be looked up" in (record.error or "")
    assert {d["id"] for d in store.dead_letters()} == {"j1#0", "j1#1"}
    assert sending["connector"].posts == []


def test_a_tenant_no_longer_configured_cannot_be_asked_either(
    sending: dict[str, Any], store: ResultsStore, clock: SimpleNamespace
) -> None:
    sending["connector"] = None
    die_while_holding(store, clock, marked_sent=True)
    assert send_once("b1")["outcome"] == "unknown"


def test_a_look_up_cut_short_is_simply_asked_again(
    sending: dict[str, Any], store: ResultsStore, clock: SimpleNamespace
) -> None:
    sending["connector"] = FakeConnector(holds={0: 70, 1: 71})
    store.set_batch_state("b1", "waiting", phase="reconcile", reconcile_reason="ambiguous", reconcile_error="500")
    die_while_holding(store, clock, marked_sent=False)  # dies during the look-up
    assert send_once("b1")["outcome"] == "reconciled"
    assert statuses(store) == [(CREATED, 70), (CREATED, 71)]  # in this run: it did not come back later


def test_a_sender_whose_lease_was_taken_over_does_not_send(
    sending: dict[str, Any], store: ResultsStore, clock: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker that stalled past its lease (before its POST) finds the batch taken over and sends nothing."""
    real_acquire = store.acquire_batch_data

    def stalled(batch_id: str, sender: str) -> tuple[str, float, dict[str, str]]:
        got = real_acquire(batch_id, sender)
        clock.now += LEASE + 1
        assert store.take_over_batch(batch_id, "other")[0] == "taken over"
        return got

    monkeypatch.setattr(store, "acquire_batch_data", stalled)
    assert send_once("b1") == {"batch_id": "b1", "outcome": "lease lost"}
    assert sending["connector"].posts == []


def test_a_batch_its_dead_sender_held_comes_back_from_the_dispatcher_and_is_taken_over(
    sending: dict[str, Any], store: ResultsStore, clock: SimpleNamespace
) -> None:
    """The sender was handed b1 by the dispatcher, acquired it and died before its POST: nobody renews its lease.
    When it runs out, the next ticket is handed b1 again and takes it over; it is sent once."""
    from worker.pipeline.dispatch import serve
    from worker.pipeline.tickets import place

    dispatcher: Dispatcher = sending["dispatcher"]
    assert place(publish, "demo", ["b1"]) == 1
    found = dispatcher.take("the-dead-ones-ticket")
    assert found.grant is not None and found.grant.batch_id == "b1"
    assert store.acquire_batch("b1", "dead")[0] == "acquired"
    clock.now += LEASE - 1
    assert serve(publish, "early")["batches"] == 0  # its lease still runs: nobody else is given b1
    assert sending["connector"].posts == []
    clock.now += 2
    assert serve(publish, "next") == {"ticket": "next", "batches": 1, "outcomes": {"created": 1}, "batch_ids": ["b1"]}
    assert len(sending["connector"].posts) == 1
    assert statuses(store) == [(CREATED, 500), (CREATED, 501)]
    assert store.attempts("b1")[0]["outcome"] == "lease expired"
    assert dispatcher.taken() == 0 and dispatcher.backlog() == []
