"""What the outage scenarios (tests/integration/test_outages.py) revealed, pinned down without processes.

- An ERP that cannot be reached (connection refused, connect timeout, the body not sent whole) received
  nothing: the send waits for it with a growing backoff, and such waits are not attempts, so an outage of
  any length gives up no document; the same for the look-ups of the reconcile phase.
- A Redis blip right after the ERP answered does not turn a created batch into an internal error.
- After the broker connection comes back, a worker re-queues what the outage may have lost (recovery), as a
  starting worker does.

The send step (worker/pipeline/send.py) runs against fakeredis and a fake connector; a batch that must come back
raises RetryLater, whose countdown a send ticket gives the dispatcher (tests/unit/test_dispatch_send.py).
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
import redis

from schemas import DocumentKind
from tests.unit.batch_store import store_with_a_batch
from worker.connectors import Created
from worker.connectors.reconcile import Settlement
from worker.errors import ConnectFailed, RetryLater, ServiceUnavailable
from worker.settings import Settings
from worker.store.records import CREATED, FAILED, PENDING, Record
from worker.store.results import ResultsStore

MAX_ATTEMPTS = 3


@pytest.fixture
def store() -> ResultsStore:
    settings = Settings(key_prefix="out", retry_max_attempts=MAX_ATTEMPTS, demo_tenant=False)
    return store_with_a_batch(settings)


class Erp:
    """A connector whose ERP is down (`down` more calls refused), then answers with Keys from 500 on."""

    def __init__(self, down: int, error: Exception | None = None) -> None:
        self.down = down
        self.error = error or ConnectFailed("could not connect to 127.0.0.1:1 (ConnectError)")
        self.posts: list[bytes] = []
        self.lookups = 0

    def post_documents(self, kind: DocumentKind, body: bytes, request_id: str) -> list[Created]:
        if self.down > 0:
            self.down -= 1
            raise self.error
        self.posts.append(body)
        return [Created(500 + i) for i in range(len(json.loads(body)))]

    def can_look_up(self, kind: DocumentKind) -> bool:
        return True

    def lookalike_keys(self, kind: DocumentKind, docs: list[dict[str, Any]]) -> list[str] | None:
        return None  # found by id, not by content

    def look_up(self, request: Any) -> Settlement:
        self.lookups += 1
        if self.down > 0:
            self.down -= 1
            raise self.error
        return Settlement(created={0: 70, 1: 71}, rejected=None, doubtful=[], resend=[])


@pytest.fixture
def sending(monkeypatch: pytest.MonkeyPatch, store: ResultsStore) -> dict[str, Any]:
    from worker.pipeline import reconcile, runtime, send
    from worker.pipeline import retry as retry_policy
    from worker.store.dispatch import Dispatcher

    state: dict[str, Any] = {"erp": Erp(down=0), "retries": []}
    dispatcher = Dispatcher(store.r, store.s)
    monkeypatch.setattr(runtime, "store", lambda: store)
    monkeypatch.setattr(runtime, "dispatcher", lambda: dispatcher)
    monkeypatch.setattr(runtime, "connector", lambda tenant: state["erp"])
    for step in (send, retry_policy, reconcile):
        monkeypatch.setattr(step, "get_settings", lambda: store.s)
    return state


def send_once(batch_id: str) -> dict[str, Any]:
    """One run of the send step for the batch (no dispatcher grant)."""
    from worker.celery_app.enqueue import publish
    from worker.pipeline.send import send

    return send(publish, batch_id)


def comes_back(sending: dict[str, Any], batch_id: str = "b1") -> float:
    """Runs the send step, which must say the batch comes back later; returns (and keeps) its countdown."""
    with pytest.raises(RetryLater) as later:
        send_once(batch_id)
    sending["retries"].append(later.value.countdown)
    return later.value.countdown


def statuses(store: ResultsStore) -> list[tuple[str, Any]]:
    return [(r.status, r.key) for r in store.records("j1")]


def test_an_unreachable_erp_is_waited_for_without_using_up_attempts(
    sending: dict[str, Any], store: ResultsStore
) -> None:
    waits = 4 * MAX_ATTEMPTS  # far more refusals than attempts allowed
    sending["erp"] = Erp(down=waits)
    for _ in range(waits):
        comes_back(sending)
        batch = store.batch("b1")
        assert batch is not None and batch["state"] == "waiting" and batch["attempts"] == "0"
    assert statuses(store) == [(PENDING, None), (PENDING, None)]
    countdowns = sending["retries"]
    assert all(0 <= c <= store.s.retry_backoff_cap for c in countdowns)
    log = store.attempts("b1")
    assert [e["outcome"] for e in log] == ["unreachable"] * waits
    assert [e["waits"] for e in log] == list(range(1, waits + 1))  # the backoff grows with them

    assert send_once("b1")["outcome"] == "created"
    assert statuses(store) == [(CREATED, 500), (CREATED, 501)]
    assert store.batch("b1")["attempts"] == "1"  # type: ignore[index]
    assert len(sending["erp"].posts) == 1


def test_the_backoff_while_unreachable_reaches_the_cap(sending: dict[str, Any], store: ResultsStore) -> None:
    sending["erp"] = Erp(down=40)
    for _ in range(40):
        comes_back(sending)
    late = sending["retries"][-20:]
    # Full jitter under a ceiling of min(cap, base * 2^(waits-1)): late waits draw from [0, cap].
    assert max(late) > store.s.retry_backoff_cap / 4


def test_answers_of_an_erp_that_is_up_still_use_up_attempts(sending: dict[str, Any], store: ResultsStore) -> None:
    """503s come from an ERP that is there and says no: they count, and the documents fail after the last one."""
    sending["erp"] = Erp(down=10, error=ServiceUnavailable("503 from the ERP", status=503))
    for _ in range(MAX_ATTEMPTS - 1):
        comes_back(sending)
    assert send_once("b1")["outcome"] == "gave up"
    assert [s for s, _ in statuses(store)] == [FAILED, FAILED]


def test_a_look_up_while_the_erp_is_unreachable_waits_too(sending: dict[str, Any], store: ResultsStore) -> None:
    store.acquire_batch("b1", "w1")
    store.set_batch_state("b1", "waiting", phase="reconcile", reconcile_reason="ambiguous", reconcile_error="cut")
    sending["erp"] = Erp(down=4 * MAX_ATTEMPTS)
    for _ in range(4 * MAX_ATTEMPTS):
        comes_back(sending)
    assert store.batch("b1")["phase"] == "reconcile"  # type: ignore[index]
    assert send_once("b1")["outcome"] == "reconciled"
    assert statuses(store) == [(CREATED, 70), (CREATED, 71)]
    assert sending["erp"].posts == []


def test_a_redis_blip_after_the_answer_does_not_undo_the_created_batch(
    sending: dict[str, Any], store: ResultsStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker.pipeline import record

    monkeypatch.setattr(record.time, "sleep", lambda s: None)
    real, calls = store.complete_batch, []

    def flaky(batch_id: str, outcome: str, *args: Any, **kwargs: Any) -> bool:
        calls.append(outcome)
        if len(calls) == 1:
            raise redis.ConnectionError("Redis restarting")
        return real(batch_id, outcome, *args, **kwargs)

    monkeypatch.setattr(store, "complete_batch", flaky)
    assert send_once("b1")["outcome"] == "created"
    assert calls == ["created", "created"]
    assert statuses(store) == [(CREATED, 500), (CREATED, 501)]
    assert [e["outcome"] for e in store.attempts("b1")] == ["created"]  # written with the results, once


def test_recovery_runs_again_when_the_broker_connection_comes_back(monkeypatch: pytest.MonkeyPatch) -> None:
    from worker.celery_app import app, bootsteps
    from worker.celery_app.bootsteps import RecoverAfterReconnect

    runs: list[int] = []
    monkeypatch.setattr(bootsteps, "recover", lambda enqueue: runs.append(1) or {})
    assert RecoverAfterReconnect in app.steps["consumer"]
    step = RecoverAfterReconnect(SimpleNamespace())
    step.start(SimpleNamespace())  # the first connection: worker_ready runs the recovery on start
    assert runs == []
    step.start(SimpleNamespace())  # connection lost and re-established: messages may have been lost with it
    step.start(SimpleNamespace())
    assert runs == [1, 1]


def test_a_failed_recovery_after_a_reconnect_does_not_stop_the_consumer(monkeypatch: pytest.MonkeyPatch) -> None:
    from worker.celery_app import bootsteps
    from worker.celery_app.bootsteps import RecoverAfterReconnect

    def broken(enqueue: Any) -> dict[str, int]:
        raise redis.ConnectionError("still down")

    monkeypatch.setattr(bootsteps, "recover", broken)
    step = RecoverAfterReconnect(SimpleNamespace())
    step.start(SimpleNamespace())
    step.start(SimpleNamespace())  # logged, not raised


# ----- found by the soak test: an attempt that outlived its lease must not end the batch


def test_only_the_attempt_holding_a_batch_can_end_it(store: ResultsStore, monkeypatch: pytest.MonkeyPatch) -> None:
    from worker.store import results as results_module

    clock = SimpleNamespace(now=1_700_000_000.0)
    monkeypatch.setattr(results_module, "time", SimpleNamespace(time=lambda: clock.now))
    assert store.acquire_batch("b1", "w1") == ("acquired", 1.0)
    clock.now += store.s.send_lease_seconds + 1
    assert store.take_over_batch("b1", "w2")[:2] == ("taken over", 2.0)
    late = [("j1", 0, Record("R-0", CREATED, key=70, batch_id="b1"))]
    assert store.complete_batch("b1", "reconciled", late, attempt=1) is False  # outlived its lease: nothing written
    assert statuses(store) == [(PENDING, None), (PENDING, None)]
    assert not store.extend_lease("b1", 1, 10)
    assert store.extend_lease("b1", 2, 10)
    assert store.complete_batch("b1", "reconciled", late, attempt=2) is True
    assert store.complete_batch("b1", "reconciled", late, attempt=2) is False  # done already
    assert statuses(store)[0] == (CREATED, 70)


def test_a_settlement_overtaken_by_a_take_over_is_dropped_not_written(
    sending: dict[str, Any], store: ResultsStore
) -> None:
    """What the soak found: attempt 2 looked up for longer than its lease, attempt 3 took over, attempt 2 wrote the
    Keys it found, and attempt 3 (whose look-up skips Keys already recorded) resent all 50. Now attempt 2's end
    is refused, and attempt 3 settles the batch alone."""
    store.acquire_batch("b1", "w0")
    store.set_batch_state("b1", "waiting", phase="reconcile", reconcile_reason="ambiguous", reconcile_error="cut")
    erp = Erp(down=0)
    real_look_up = erp.look_up

    def slow_look_up(request: Any) -> Settlement:
        # While this look-up runs, its lease runs out and another worker takes the batch over.
        store.r.hset("out:batch:b1", "lease_until", "0")
        assert store.take_over_batch("b1", "w9")[0] == "taken over"
        return real_look_up(request)

    erp.look_up = slow_look_up  # type: ignore[method-assign]
    sending["erp"] = erp
    assert send_once("b1")["outcome"] == "lease lost"
    assert statuses(store) == [(PENDING, None), (PENDING, None)]
    assert store.batch("b1")["state"] == "sending"  # type: ignore[index]
    assert not any(k.startswith("out:batch:b1.r") for k in store.r.keys("out:batch:*"))  # nothing resent


def test_a_long_look_up_keeps_its_lease(store: ResultsStore) -> None:
    import time

    from worker.pipeline.reconcile import keep_lease
    from worker.pipeline.record import StoredBatch

    store.acquire_batch("b1", "w1")
    batch = StoredBatch("b1", store.batch("b1") or {})
    batch.attempt = 1
    first = float(store.batch("b1")["lease_until"])  # type: ignore[index]
    with keep_lease(store, batch, 0.3):
        time.sleep(0.5)
    renewed = float(store.batch("b1")["lease_until"])  # type: ignore[index]
    # The acquire gave the settings' lease (15 s); each beat restarted it from then on for 0.3 s.
    assert store.s.send_lease_seconds >= 10
    assert time.time() - 0.35 < renewed < first - store.s.send_lease_seconds / 2
