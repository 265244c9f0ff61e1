"""Metrics in Redis (worker/observability/metrics.py, worker/store/counters.py): written by many processes, summed
by one collector, never failing work."""

from __future__ import annotations

import json
import logging
from typing import Any

import fakeredis
import httpx
import pytest
import redis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from worker.connectors.http import classify_exception, make_client
from worker.errors import (
    AmbiguousError,
    AuthenticationFailed,
    BatchRejected,
    ConnectFailed,
    RateLimited,
    ServiceUnavailable,
    TransientError,
    WaitingForRetryAfter,
)
from worker.observability import metrics
from worker.observability.logs import log_context
from worker.settings import Settings
from worker.store.records import CREATED, DUPLICATE, FAILED, UNKNOWN, Record
from worker.store.results import ResultsStore

PREFIX = "mt"


@pytest.fixture
def server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


def client(server: fakeredis.FakeServer) -> redis.Redis:
    return fakeredis.FakeRedis(server=server, decode_responses=True)


def exposition(server: fakeredis.FakeServer) -> str:
    registry = CollectorRegistry()
    registry.register(metrics.RedisCountersCollector(client(server), PREFIX))
    return generate_latest(registry).decode()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """name + sorted labels -> value, from the exposition text (parsed as Prometheus would)."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[s.name, tuple(sorted(s.labels.items()))] = s.value
    return out


def store_on(server: fakeredis.FakeServer) -> ResultsStore:
    settings = Settings(
        key_prefix=PREFIX,
        http_connect_timeout=1.0,
        http_write_timeout=1.0,
        http_read_timeout=1.0,
        send_lease_seconds=10,
        demo_tenant=False,
    )
    return ResultsStore(client(server), settings)


def add_job(store: ResultsStore, job_id: str, n: int, target: str = "fortnox") -> None:
    ids = [f"{job_id}-{i}" for i in range(n)]
    meta = {"job_id": job_id, "tenant": "acme", "target": target, "kind": "order"}
    store.create_job(meta, [json.dumps({"ExternalId": x}) for x in ids], ids)


def documents_total(server: fakeredis.FakeServer, status: str, target: str = "fortnox") -> float:
    key = ("erpsync_documents_total", (("kind", "order"), ("status", status), ("target", target), ("tenant", "acme")))
    return samples(exposition(server)).get(key, 0.0)


# ----- counters and histograms


def test_counters_written_by_two_processes_add_up_in_one_exposition(server: fakeredis.FakeServer) -> None:
    first, second = metrics.Recorder(client(server), PREFIX), metrics.Recorder(client(server), PREFIX)
    first.retry("softone", "timeout")
    second.retry("softone", "timeout")
    second.retry("softone", "timeout")
    first.retry("fortnox", "rate_limited")

    found = samples(exposition(server))
    assert found["erpsync_retries_total", (("reason", "timeout"), ("target", "softone"))] == 3
    assert found["erpsync_retries_total", (("reason", "rate_limited"), ("target", "fortnox"))] == 1
    assert ("erpsync_retries_total", (("reason", "timeout"), ("target", "fortnox"))) not in found


def test_histogram_buckets_are_cumulative_with_count_and_sum(server: fakeredis.FakeServer) -> None:
    a, b = metrics.Recorder(client(server), PREFIX), metrics.Recorder(client(server), PREFIX)
    for seconds in (0.003, 0.04, 0.05):  # 0.05 is in the le="0.05" bucket: bounds are inclusive
        a.http_request("softone", seconds)
    b.http_request("softone", 2.0)
    b.http_request("softone", 100.0)  # beyond the last bound: only +Inf
    b.http_request("fortnox", 0.2)

    text = exposition(server)
    found = samples(text)

    def bucket(le: str, target: str = "softone") -> float:
        return found["erpsync_http_request_duration_seconds_bucket", (("le", le), ("target", target))]

    assert bucket("0.005") == 1
    assert bucket("0.01") == bucket("0.025") == 1
    assert bucket("0.05") == bucket("0.1") == bucket("1.0") == 3
    assert bucket("2.5") == bucket("60.0") == 4
    assert bucket("+Inf") == 5
    assert found["erpsync_http_request_duration_seconds_count", (("target", "softone"),)] == 5
    assert found["erpsync_http_request_duration_seconds_sum", (("target", "softone"),)] == pytest.approx(102.093)
    assert bucket("0.1", "fortnox") == 0 and bucket("0.25", "fortnox") == 1
    assert "# TYPE erpsync_http_request_duration_seconds histogram" in text
    # buckets never decrease along the bounds
    values = [bucket(metrics.bucket_bound(metrics.HTTP_DURATION, b)) for b in metrics.HTTP_DURATION.buckets]
    assert values == sorted(values)


def test_buckets_from_other_settings_fold_into_the_next_current_bound(server: fakeredis.FakeServer) -> None:
    r = client(server)
    key = metrics.key(PREFIX, metrics.BATCH_DOCUMENTS)
    r.hset(key, mapping={"softone|3.0": 2, "softone|5.0": 1, "softone|sum": 11, "softone|bogus": 7, "x": 1})
    found = samples(exposition(server))
    assert found["erpsync_batch_documents_bucket", (("le", "2.0"), ("target", "softone"))] == 0
    assert found["erpsync_batch_documents_bucket", (("le", "5.0"), ("target", "softone"))] == 3
    assert found["erpsync_batch_documents_count", (("target", "softone"),)] == 3


def test_every_metric_is_described_without_reading_redis() -> None:
    down = fakeredis.FakeServer()
    down.connected = False
    broken = client(down)
    registry = CollectorRegistry(auto_describe=True)
    registry.register(metrics.RedisCountersCollector(broken, PREFIX))  # describe() only: no Redis call
    names = {f.name for f in metrics.RedisCountersCollector(broken, PREFIX).describe()}
    assert names == {
        "erpsync_documents",
        "erpsync_batches",
        "erpsync_batch_documents",
        "erpsync_retries",
        "erpsync_http_request_duration_seconds",
        "erpsync_dispatch_wait_seconds",
        "erpsync_webhook_deliveries",
    }


def test_the_collector_takes_the_prefix_or_the_settings(server: fakeredis.FakeServer) -> None:
    metrics.Recorder(client(server), PREFIX).retry("softone", "timeout")
    registry = CollectorRegistry()
    registry.register(metrics.RedisCountersCollector(client(server), Settings(key_prefix=PREFIX, demo_tenant=False)))
    text = generate_latest(registry).decode()
    assert 'erpsync_retries_total{reason="timeout",target="softone"} 1.0' in text


def test_labels_of_the_wrong_shape_are_refused() -> None:
    with pytest.raises(ValueError):
        metrics.count(PREFIX, metrics.RETRIES, ("softone",))
    with pytest.raises(ValueError):
        metrics.observe(PREFIX, metrics.RETRIES, ("softone", "x"), 1.0)


# ----- never failing the work


def test_a_redis_error_while_recording_is_swallowed(caplog: pytest.LogCaptureFixture) -> None:
    server = fakeredis.FakeServer()
    server.connected = False
    recorder = metrics.Recorder(client(server), PREFIX)
    caplog.set_level(logging.DEBUG, logger="worker.store.counters")
    recorder.retry("softone", "timeout")
    recorder.http_request("softone", 0.1)
    assert any("metrics not recorded" in r.getMessage() and r.levelno == logging.DEBUG for r in caplog.records)


def test_a_broken_metric_key_does_not_stop_a_status_change(server: fakeredis.FakeServer) -> None:
    store = store_on(server)
    add_job(store, "j1", 1)
    store.r.set(metrics.key(PREFIX, metrics.DOCUMENTS), "not a hash")  # HINCRBY on it fails inside the script
    store.set_records([("j1", 0, Record("j1-0", CREATED, key="7"))])
    assert store.statuses("j1") == {0: CREATED}
    assert store.job("j1")["status"] == "succeeded"  # type: ignore[index]


# ----- documents: counted where statuses change


def test_a_status_written_twice_counts_once(server: fakeredis.FakeServer) -> None:
    store = store_on(server)
    add_job(store, "j1", 3)
    failed = ("j1", 0, Record("j1-0", FAILED, error="x"))
    store.set_records([failed])
    store.set_records([failed])  # a redelivered message
    store.set_records([("j1", 1, Record("j1-1", UNKNOWN)), ("j1", 2, Record("j1-2", DUPLICATE, key="3"))])
    store.set_records([("j1", 1, Record("j1-1", CREATED, key="5"))])  # unknown, then found
    store.set_records([("j1", 1, Record("j1-1", CREATED, key="5")), ("j1", 2, Record("j1-2", FAILED))])  # final

    assert documents_total(server, FAILED) == 1
    assert documents_total(server, UNKNOWN) == 1
    assert documents_total(server, CREATED) == 1
    assert documents_total(server, DUPLICATE) == 1
    assert documents_total(server, "pending") == 0


def test_a_job_without_target_counts_as_softone(server: fakeredis.FakeServer) -> None:
    store = store_on(server)
    store.create_job({"job_id": "old", "tenant": "acme", "kind": "order"}, ["{}"], ["old-0"])
    store.set_records([("old", 0, Record("old-0", FAILED))])
    assert documents_total(server, FAILED, target="softone") == 1


def test_batch_end_counts_batch_size_and_dead_letters_once(server: fakeredis.FakeServer) -> None:
    store = store_on(server)
    add_job(store, "j1", 2)
    dead = [{"id": f"j1#{i}", "tenant": "acme", "target": "fortnox", "kind": "order", "status": FAILED} for i in (0, 1)]
    counters = [
        *metrics.count(PREFIX, metrics.BATCHES, ("acme", "fortnox", "order", "failed")),
        *metrics.observe(PREFIX, metrics.BATCH_DOCUMENTS, ("fortnox",), 2),
    ]
    updates = [("j1", i, Record(f"j1-{i}", FAILED, error="no")) for i in (0, 1)]
    store.r.hset(store.keys.batch("b1"), mapping={"state": "sending"})
    for _ in range(2):  # the second: a transaction repeated because its answer was lost
        store.complete_batch("b1", "failed", updates, dead=dead, counters=counters)

    found = samples(exposition(server))
    batch_labels = (("kind", "order"), ("outcome", "failed"), ("target", "fortnox"), ("tenant", "acme"))
    assert found["erpsync_batches_total", batch_labels] == 1
    assert found["erpsync_batch_documents_bucket", (("le", "2.0"), ("target", "fortnox"))] == 1
    assert found["erpsync_batch_documents_sum", (("target", "fortnox"),)] == 2
    assert documents_total(server, "dead") == 2
    assert documents_total(server, FAILED) == 2
    assert len(store.dead_letters()) == 2


# ----- retry reasons: a closed vocabulary, from the error type


def _raised_from(error: Exception, cause: Exception) -> Exception:
    try:
        try:
            raise cause
        except Exception:
            raise error from None
    except Exception as exc:  # the point is to keep the chained context
        return exc


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (WaitingForRetryAfter("x", retry_after=1), "rate_limit_wait"),
        (RateLimited("x", status=429), "rate_limited"),
        (ServiceUnavailable("x", status=503), "server_error"),
        (AmbiguousError("x", status=500), "server_error"),
        (AuthenticationFailed("x", status=401), "auth"),
        (BatchRejected("x"), "partial_reject"),
        (ConnectFailed("x"), "connection"),
        (AmbiguousError("x"), "ambiguous"),
        (TransientError("x"), "other"),
        (ValueError("x"), "other"),
    ],
)
def test_retry_reason_comes_from_the_type(exc: Exception, reason: str) -> None:
    assert metrics.retry_reason(exc) == reason
    assert reason in metrics.RETRY_REASONS


def test_retry_reason_sees_the_timeout_behind_a_connector_error() -> None:
    url = "http://erp.example/x?token=secret"
    read = _raised_from(classify_exception(httpx.ReadTimeout("slow"), url), httpx.ReadTimeout("slow"))
    assert isinstance(read, AmbiguousError) and metrics.retry_reason(read) == "timeout"
    connect = _raised_from(classify_exception(httpx.ConnectTimeout("slow"), url), httpx.ConnectTimeout("slow"))
    assert metrics.retry_reason(connect) == "timeout"
    # a look-up's lost answer is asked again as a TransientError raised from the AmbiguousError
    dropped = _raised_from(AmbiguousError("dropped"), httpx.RemoteProtocolError("eof"))
    assert metrics.retry_reason(_raised_from(TransientError("again"), dropped)) == "ambiguous"


# ----- HTTP latency: every request of the process's client, labelled with the context's target


def test_the_client_times_answers_and_failures_by_target() -> None:
    observed: list[tuple[str, float]] = []
    calls = iter([httpx.Response(201, json={}), httpx.ConnectError("refused")])

    def answer(request: httpx.Request) -> httpx.Response:
        outcome = next(calls)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    settings = Settings(demo_tenant=False)
    http = make_client(settings, transport=httpx.MockTransport(answer), observe=lambda t, s: observed.append((t, s)))
    with log_context(target="fortnox"):
        assert http.post("http://erp.example/3/orders", content=b"{}").status_code == 201
        with pytest.raises(httpx.ConnectError):
            http.get("http://erp.example/3/orders")
    assert [t for t, _ in observed] == ["fortnox", "fortnox"]
    assert all(s >= 0 for _, s in observed)


def test_a_request_outside_any_context_is_labelled_unknown() -> None:
    observed: list[Any] = []
    http = make_client(
        Settings(demo_tenant=False),
        transport=httpx.MockTransport(lambda r: httpx.Response(200)),
        observe=lambda t, s: observed.append(t),
    )
    http.get("http://erp.example/")
    assert observed == ["unknown"]


# ----- sending: one outcome line per run, its metrics, and messages that show ids and counts only


class FakeConnector:
    def __init__(self, outcome: Any) -> None:
        self.outcome = outcome

    def post_documents(self, kind: Any, body: bytes, request_id: str) -> list[Any]:
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome

    def lookalike_keys(self, kind: Any, docs: list[dict[str, Any]]) -> list[str] | None:
        return None  # found by id, not by content


@pytest.fixture
def sending(monkeypatch: pytest.MonkeyPatch, server: fakeredis.FakeServer) -> dict[str, Any]:
    """A send ticket (worker/pipeline/dispatch.py) against fakeredis and a fake connector, with Celery's sending
    captured: `serve()` places b1 with the dispatcher and runs one ticket."""
    from tests.unit.fake_runtime import capture_messages
    from worker.celery_app.enqueue import publish
    from worker.pipeline import dispatch, runtime, tickets
    from worker.store.dispatch import Dispatcher
    from worker.store.records import PENDING, BatchPlan

    store = store_on(server)
    store.create_job(
        {"job_id": "j1", "tenant": "demo", "target": "softone", "kind": "customer_invoice"},
        ['{"ExternalId": "R-0"}', '{"ExternalId": "R-1"}'],
        ["R-0", "R-1"],
    )
    meta = {"tenant": "demo", "kind": "customer_invoice", "target": "softone", "external_ids": '["R-0", "R-1"]'}
    plan = BatchPlan(
        "b1",
        meta,
        [("j1", 0), ("j1", 1)],
        '[{"ExternalId": "R-0"}, {"ExternalId": "R-1"}]',
        [("j1", i, Record(f"R-{i}", PENDING, batch_id="b1")) for i in (0, 1)],
    )
    store.commit_batches([plan])
    dispatcher = Dispatcher(store.r, store.s)
    state: dict[str, Any] = {"store": store, "dispatcher": dispatcher, "connector": FakeConnector([])}

    def serve() -> dict[str, Any]:
        tickets.place(publish, "demo", ["b1"])
        return dispatch.serve(publish, "ticket-1")

    monkeypatch.setattr(runtime, "store", lambda: store)
    monkeypatch.setattr(runtime, "dispatcher", lambda: dispatcher)
    monkeypatch.setattr(runtime, "connector", lambda tenant: state["connector"])
    state["serve"] = serve
    state["messages"] = capture_messages(monkeypatch)
    return state


def outcome_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    from worker.observability.logs import record_fields

    return [record_fields(r) for r in caplog.records if r.getMessage() == "batch outcome"]


def test_a_created_batch_logs_one_outcome_line_and_counts(
    sending: dict[str, Any], server: fakeredis.FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    from worker.celery_app.enqueue import publish
    from worker.connectors import Created
    from worker.observability.logs import context_filter
    from worker.pipeline.send import send

    sending["connector"] = FakeConnector([Created(11), Created(12)])
    caplog.set_level(logging.INFO)
    caplog.handler.addFilter(context_filter())
    result = sending["serve"]()

    # ids and counts: Celery logs it
    assert result == {"ticket": "ticket-1", "batches": 1, "outcomes": {"created": 1}, "batch_ids": ["b1"]}
    [line] = outcome_lines(caplog)
    assert line["level"] == "INFO" and line["outcome"] == "created"
    assert (line["batch_id"], line["tenant"], line["target"], line["kind"], line["job_id"]) == (
        "b1",
        "demo",
        "softone",
        "customer_invoice",
        "j1",
    )
    assert (line["attempt"], line["documents"], line["created"], line["failed"], line["unknown"]) == (1, 2, 2, 0, 0)
    assert line["duration_ms"] >= 0
    found = samples(exposition(server))
    labels = (("kind", "customer_invoice"), ("outcome", "created"), ("target", "softone"), ("tenant", "demo"))
    assert found["erpsync_batches_total", labels] == 1
    assert found["erpsync_batch_documents_count", (("target", "softone"),)] == 1
    doc_labels = (("kind", "customer_invoice"), ("status", "created"), ("target", "softone"), ("tenant", "demo"))
    assert found["erpsync_documents_total", doc_labels] == 2
    # how long the batch waited in its lane for a sender (b1's job is small: interactive)
    assert found["erpsync_dispatch_wait_seconds_count", (("lane", "interactive"),)] == 1
    assert 0 <= found["erpsync_dispatch_wait_seconds_sum", (("lane", "interactive"),)] < 5

    caplog.clear()
    assert sending["serve"]()["batches"] == 0  # placed again (a redelivered message): done, nothing sent
    # a sender that was handed it before it was done: no second outcome, no second count
    assert send(publish, "b1") == {"batch_id": "b1", "outcome": "already done"}
    assert outcome_lines(caplog) == []
    assert samples(exposition(server))["erpsync_batches_total", labels] == 1


def test_a_retry_logs_its_reason_counts_it_and_its_message_shows_ids_only(
    sending: dict[str, Any], server: fakeredis.FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    sending["connector"] = FakeConnector(
        ServiceUnavailable("POST http://erp/x?token=abc answered 503", status=503, retry_after=30)
    )
    caplog.set_level(logging.INFO)
    assert sending["serve"]()["outcomes"] == {"comes back": 1}

    [line] = outcome_lines(caplog)
    assert (line["outcome"], line["reason"], line["http_status"], line["error_type"]) == (
        "retrying",
        "server_error",
        503,
        "ServiceUnavailable",
    )
    assert "error" not in line and "abc" not in json.dumps(line)  # an ERP's text may quote the document
    assert sending["dispatcher"].delayed() == 1  # the batch waits in Redis for its time, not in a message
    # Every message published shows ids and counts only: the placement's ticket, and the wake for b1's time.
    messages = sending["messages"]
    assert [m.countdown is not None for m in messages] == [False, True]
    for m in messages:
        assert m.argsrepr == repr(m.args) and m.args[0].startswith("ticket-")
    assert messages[1].kwargsrepr is not None and messages[1].kwargsrepr.startswith("{'wake_in_s': ")
    assert not any("abc" in repr(m) or "ExternalId" in repr(m) for m in messages)
    found = samples(exposition(server))
    assert found["erpsync_retries_total", (("reason", "server_error"), ("target", "softone"))] == 1
    assert not any(name == "erpsync_batches_total" for name, _ in found)  # not ended: not a batch outcome


class TimedConnector(FakeConnector):
    """Records its request's duration as the process's HTTP client does, and what Redis held at that moment."""

    def __init__(self, outcome: Any, server: fakeredis.FakeServer) -> None:
        super().__init__(outcome)
        self.server = server
        self.written_during_request: float | None = None

    def post_documents(self, kind: Any, body: bytes, request_id: str) -> list[Any]:
        metrics.Recorder(client(self.server), PREFIX).http_request("softone", 0.03)
        self.written_during_request = http_count(self.server)
        return super().post_documents(kind, body, request_id)


def http_count(server: fakeredis.FakeServer) -> float:
    return samples(exposition(server)).get(("erpsync_http_request_duration_seconds_count", (("target", "softone"),)), 0)


def test_a_request_duration_is_written_with_the_batch_end_not_on_its_own(
    sending: dict[str, Any], server: fakeredis.FakeServer
) -> None:
    from worker.connectors import Created

    sending["connector"] = connector = TimedConnector([Created(11), Created(12)], server)
    assert sending["serve"]()["outcomes"] == {"created": 1}
    assert connector.written_during_request == 0  # held back: it rode on the transaction that ended the batch
    assert http_count(server) == 1


def test_a_request_duration_held_back_is_written_when_the_batch_does_not_end(
    sending: dict[str, Any], server: fakeredis.FakeServer
) -> None:
    from worker.errors import ServiceUnavailable

    sending["connector"] = TimedConnector(ServiceUnavailable("503", status=503, retry_after=30), server)
    assert sending["serve"]()["outcomes"] == {"comes back": 1}
    assert http_count(server) == 1  # written on the way out of the batch's handling
    assert metrics.take_held() == []  # nothing held outside a batch's handling
