"""From intake to the ERP through the dispatcher: batches placed per tenant, send tickets that serve them.

Against fakeredis (the runtime's store, buffer, intake and dispatcher: tests/unit/fake_runtime.py), a fake ERP and
Celery's sending captured. Intake places a chunk's whole batches with the dispatcher and publishes send tickets
that name no batch (no send message per batch); a ticket (worker/pipeline/dispatch.py, `serve`) sends what may go
now across tenants, delays a batch that must come back, ends when nothing may go, hands over to a new ticket after
ERPSYNC_SEND_SERVE_SECONDS; a tenant's in-flight slot is held for its request only; a ticket cut short by an
outage leaves its batches to come back; send messages of an earlier version place their batches.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from schemas import DocumentKind
from tests.unit.fake_runtime import capture_messages, fake_runtime, of_task
from worker.celery_app.enqueue import publish
from worker.connectors import Created
from worker.errors import ServiceUnavailable
from worker.observability import metrics
from worker.pipeline.intake import process_items
from worker.pipeline.queue import Message, TaskName
from worker.settings import get_settings
from worker.store.dispatch import Dispatcher, Grant, Lane, Settle, Waiting
from worker.store.records import CREATED, PENDING
from worker.store.results import ResultsStore

INT, BULK = Lane.INTERACTIVE, Lane.BULK
TENANTS = {
    "tenants": [
        {"name": "acme", "company_api_key": "acme-company", "connect_api_key": "acme-connect", "max_in_flight": 1},
        {"name": "beta", "company_api_key": "beta-company", "connect_api_key": "beta-connect"},
    ]
}


class Erp:
    """Answers every POST with Keys (1000 per batch apart); `refuse` names request ids it answers 503 once (with
    a Retry-After of `retry_after` seconds)."""

    def __init__(self) -> None:
        self.refuse: set[str] = set()
        self.retry_after = 20.0
        self.posts: list[str] = []
        self.during_post: list[Any] = []  # what `watch` returned during each POST
        self.watch: Any = None

    def post_documents(self, kind: DocumentKind, body: bytes, request_id: str) -> list[Created]:
        if self.watch is not None:
            self.during_post.append(self.watch(request_id))
        if request_id in self.refuse:
            self.refuse.discard(request_id)
            raise ServiceUnavailable("503 from the ERP", status=503, retry_after=self.retry_after)
        self.posts.append(request_id)
        base = 1000 * len(self.posts)
        return [Created(base + i) for i in range(len(json.loads(body)))]

    def can_look_up(self, kind: DocumentKind) -> bool:
        return True

    def lookalike_keys(self, kind: DocumentKind, docs: list[dict[str, Any]]) -> list[str] | None:
        return None  # found by id, not by content


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dict[str, str]]:
    """ERPSYNC_* settings every module reads (get_settings), applied by `start`."""
    path = tmp_path / "tenants.json"
    path.write_text(json.dumps(TENANTS), encoding="utf-8")
    values = {"ERPSYNC_TENANTS_FILE": str(path), "ERPSYNC_SEND_GROUP_BATCHES": "2"}
    yield values
    get_settings.cache_clear()


def start(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], **overrides: str) -> dict[str, Any]:
    from worker.pipeline import runtime

    for name, value in {**env, **overrides}.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    parts = {**fake_runtime(monkeypatch, get_settings()), "erp": Erp()}
    parts["messages"] = capture_messages(monkeypatch)
    _queue_tickets(monkeypatch, parts["dispatcher"])
    monkeypatch.setattr(runtime, "connector", lambda tenant: parts["erp"])
    return parts


def _queue_tickets(monkeypatch: pytest.MonkeyPatch, d: Dispatcher) -> None:
    """Tickets published without a delay also wait in the send queue's list, as on the broker (the dispatcher counts
    them there); `serve` takes its ticket off it, as a worker's delivery does."""
    from worker.celery_app import app

    captured = app.send_task

    def send_task(name: str, *args: Any, countdown: float | None = None, **kwargs: Any) -> None:
        captured(name, *args, countdown=countdown, **kwargs)
        if name == TaskName.SEND_NEXT and not countdown:
            d.r.rpush(d.s.send_queue_name, str((kwargs.get("args") or args[0])[0]))

    monkeypatch.setattr(app, "send_task", send_task)


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> dict[str, Any]:
    return start(monkeypatch, env)


def invoice(job_id: str, n: int) -> dict[str, Any]:
    row = {"CustomerRowType": 2, "RowNr": 1, "ProductNr": "P1", "Quantity": 1, "UnitPrice": 10}
    return {"ExternalId": f"{job_id}-{n:03d}", "CustomerNr": "1001", "InvoiceDate": "2026-11-20", "OriginType": 2,
            "InvoiceRows": [row]}  # fmt: skip


def store_job(store: ResultsStore, job_id: str, n: int, tenant: str = "demo") -> None:
    docs = [invoice(job_id, i) for i in range(n)]
    meta = {"job_id": job_id, "tenant": tenant, "target": "softone", "kind": "customer_invoice"}
    store.create_job(meta, [json.dumps(d) for d in docs], [d["ExternalId"] for d in docs])


def intake(stack: dict[str, Any], job_id: str, n: int, tenant: str = "demo") -> None:
    store_job(stack["store"], job_id, n, tenant)
    process_items(publish, [(job_id, 0, n)])


def queued(d: Dispatcher, tenant: str, lane: Lane) -> list[str]:
    return list(d.r.lrange(d.keys.dispatch_lane(tenant, lane), 0, -1))


def tickets(stack: dict[str, Any]) -> list[Message]:
    return of_task(stack["messages"], TaskName.SEND_NEXT)


def dispatch_waits(d: Dispatcher) -> dict[str, float]:
    """erpsync_dispatch_wait_seconds_count by lane, as Prometheus reads it."""
    registry = CollectorRegistry()
    registry.register(metrics.RedisCountersCollector(d.r, d.p))
    return {
        s.labels["lane"]: s.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for s in family.samples
        if s.name == "erpsync_dispatch_wait_seconds_count"
    }


def serve(ticket: str = "ticket-test") -> dict[str, Any]:
    from worker.pipeline import runtime
    from worker.pipeline.dispatch import serve

    d = runtime.dispatcher()
    d.r.lrem(d.s.send_queue_name, 1, ticket)  # delivered
    return serve(publish, ticket)


# ----- intake places whole batches with the dispatcher


def test_intake_places_a_chunks_whole_batches_and_offers_tickets(stack: dict[str, Any]) -> None:
    d: Dispatcher = stack["dispatcher"]
    intake(stack, "J", 260)
    # Five whole batches of 50 queued in the job's lane (260 documents: bulk), in order; ten wait in the buffer.
    assert queued(d, "demo", BULK) == ["J@0", "J@50", "J@100", "J@150", "J@200"]
    assert queued(d, "demo", INT) == []
    assert stack["buffer"].waiting("demo", "customer_invoice") == 10
    # No send message names a batch: tickets do (as many as batches placed, within ERPSYNC_SEND_TICKETS).
    assert of_task(stack["messages"], TaskName.SEND_BATCH) == of_task(stack["messages"], TaskName.SEND_BATCHES) == []
    sent = [m for m in tickets(stack) if m.countdown is None]
    assert len(sent) == 5 and len({m.args[0] for m in sent}) == 5
    assert all(m.argsrepr == repr(m.args) and m.kwargsrepr == "{}" for m in sent)
    assert d.r.llen(d.s.send_queue_name) == 5 and d.live_tickets() == 0  # waiting in the queue; none running yet
    # The ten in the buffer: a flush asked for in batch_max_wait_ms, and a wake for it.
    [wake] = [m for m in tickets(stack) if m.countdown]
    assert 0.4 < wake.countdown < 0.6
    [demo] = d.backlog()
    assert (demo.batches, demo.documents) == ({INT: 0, BULK: 5}, {INT: 0, BULK: 250})


def test_a_small_job_goes_in_the_interactive_lane(stack: dict[str, Any]) -> None:
    intake(stack, "S", 50)
    assert queued(stack["dispatcher"], "demo", INT) == ["S@0"]


def test_tickets_stay_within_the_limit(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    stack = start(monkeypatch, env, ERPSYNC_SEND_TICKETS="3")
    intake(stack, "J", 300)
    assert len(queued(stack["dispatcher"], "demo", BULK)) == 6
    assert len(tickets(stack)) == 3  # three wait in the send queue: no room for more


# ----- a ticket


def test_a_ticket_serves_the_batches_of_every_tenant_fairly(stack: dict[str, Any]) -> None:
    intake(stack, "A", 200, tenant="acme")
    intake(stack, "B", 50, tenant="beta")
    result = serve()
    assert {k: result[k] for k in ("ticket", "batches", "outcomes")} == {
        "ticket": "ticket-test",
        "batches": 5,
        "outcomes": {"created": 5},
    }
    assert sorted(result["batch_ids"]) == ["A@0", "A@100", "A@150", "A@50", "B@0"]  # ids only, for Flower
    posts = stack["erp"].posts
    assert sorted(posts) == ["A@0", "A@100", "A@150", "A@50", "B@0"]
    assert "B@0" in posts[:2]  # beta's one batch did not wait behind acme's four
    store: ResultsStore = stack["store"]
    assert {r.status for job in ("A", "B") for r in store.records(job)} == {CREATED}
    d: Dispatcher = stack["dispatcher"]
    assert d.backlog() == [] and d.taken() == 0 and d.delayed() == 0
    assert "ticket-test" not in d.r.zrange(d.keys.dispatch_tickets, 0, -1)  # done: it counts no more
    waits = dispatch_waits(d)  # each batch's wait in its lane, by lane
    assert (waits["bulk"], waits["interactive"]) == (4, 1)
    from worker.pipeline.dispatch import held

    assert held() == []
    assert not d.r.keys(d.keys.inflight("*"))  # every slot given back


def test_a_batch_that_must_come_back_is_delayed_and_a_wake_is_scheduled(stack: dict[str, Any]) -> None:
    store: ResultsStore = stack["store"]
    d: Dispatcher = stack["dispatcher"]
    intake(stack, "J", 200)
    stack["erp"].refuse = {"J@0"}
    stack["messages"].clear()
    before = time.time()

    result = serve()
    # The 503 (Retry-After: 20) on the first batch did not hold up the others.
    assert result["outcomes"] == {"comes back": 1, "created": 3}
    assert stack["erp"].posts == ["J@50", "J@100", "J@150"]
    due = d.r.zscore(d.keys.dispatch_delayed, "J@0")
    assert due is not None and before + 20 <= due <= time.time() + 20
    assert (store.batch("J@0") or {})["state"] == "waiting"
    assert {r.status for r in store.records("J")[:50]} == {PENDING}
    [wake] = tickets(stack)  # one wake, for when the batch is due (the ticket's end asked for no second one)
    assert wake.countdown is not None and 19 < wake.countdown <= 20.1
    assert wake.kwargsrepr == repr({"wake_in_s": round(wake.countdown, 3)}) and wake.argsrepr == repr(wake.args)

    # Not before its time: a ticket now finds nothing to send, and asks for no wake it has already.
    stack["messages"].clear()
    assert serve("ticket-2")["batches"] == 0
    assert tickets(stack) == []
    # Its time comes (moved here rather than waited for): the next ticket sends it.
    d.r.zadd(d.keys.dispatch_delayed, {"J@0": time.time() - 0.01})
    assert serve("ticket-3")["outcomes"] == {"created": 1}
    assert stack["erp"].posts[-1] == "J@0"
    assert [r.status for r in store.records("J")] == [CREATED] * 200
    assert len({r.key for r in store.records("J")}) == 200


def test_a_ticket_ends_when_nothing_may_go_and_asks_for_a_wake(stack: dict[str, Any]) -> None:
    d: Dispatcher = stack["dispatcher"]
    assert serve() == {"ticket": "ticket-test", "batches": 0, "outcomes": {}, "batch_ids": []}  # no wake either
    assert stack["messages"] == []

    intake(stack, "A", 100, tenant="acme")
    intake(stack, "B", 50, tenant="beta")
    d.r.set(d.keys.pause("acme"), f"{time.time() + 30:.3f}")  # acme's ERP asked for a pause
    stack["messages"].clear()
    assert serve()["batches"] == 1
    assert stack["erp"].posts == ["B@0"]
    [acme] = d.backlog()
    assert (acme.tenant, acme.waiting, acme.batches[INT] + acme.batches[BULK]) == ("acme", Waiting.PAUSE, 2)
    [wake] = tickets(stack)
    assert wake.countdown is not None and 25 < wake.countdown <= 30.1


def test_a_ticket_hands_over_after_its_time(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    stack = start(monkeypatch, env, ERPSYNC_SEND_SERVE_SECONDS="0.001")
    d: Dispatcher = stack["dispatcher"]
    intake(stack, "J", 150)
    d.r.delete(d.keys.dispatch_tickets, d.s.send_queue_name)  # the tickets intake published are someone else's
    stack["messages"].clear()
    stack["erp"].watch = lambda request_id: time.sleep(0.01)

    assert serve()["batches"] == 1
    [next_ticket] = tickets(stack)  # a new ticket takes over, at once
    assert next_ticket.countdown is None and next_ticket.args[0] != "ticket-test"
    assert queued(d, "demo", BULK) == ["J@50", "J@100"]
    assert d.r.lrange(d.s.send_queue_name, 0, -1) == [next_ticket.args[0]] and d.live_tickets() == 0
    assert serve(str(next_ticket.args[0]))["batches"] == 1
    assert len(tickets(stack)) == 2


def test_the_tenants_slot_is_held_for_the_request_only(stack: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """The cap counts requests in flight: the dispatcher takes the slot with the batch and it goes back as soon as
    the ERP has answered, before the outcome is written, so that the tenant's next request can go while this one is
    recorded; a tenant parked for the slot is woken by it (a ticket is offered)."""
    store: ResultsStore = stack["store"]
    d: Dispatcher = stack["dispatcher"]
    intake(stack, "A", 100, tenant="acme")  # cap 1
    seen: list[tuple[str, int]] = []
    inflight = d.keys.inflight("acme")

    def during(request_id: str) -> None:
        seen.append(("posting", d.r.zcard(inflight)))
        [member] = d.r.zrange(inflight, 0, -1)
        assert member.startswith(f"{request_id}#")  # the slot is named by the batch's grant token ...
        assert d.r.hget(d.keys.batch(request_id), "taken_by") == member  # ... which the batch carries
        if request_id == "A@0":
            other = d.take("another-ticket")  # another sender asks meanwhile: acme is at its cap
            assert other.grant is None and d.backlog()[0].waiting == Waiting.SLOT
            stack["messages"].clear()

    real_complete = store.complete_batch

    def complete(*args: Any, **kwargs: Any) -> bool:
        seen.append(("recording", d.r.zcard(inflight)))
        return real_complete(*args, **kwargs)

    stack["erp"].watch = during
    monkeypatch.setattr(store, "complete_batch", complete)
    assert serve()["outcomes"] == {"created": 2}
    assert seen == [("posting", 1), ("recording", 0), ("posting", 1), ("recording", 0)]
    assert len(tickets(stack)) == 1  # the slot given back woke acme: a ticket was offered for it


def test_the_heartbeat_renews_what_a_ticket_holds(stack: dict[str, Any]) -> None:
    from worker.pipeline import dispatch

    store: ResultsStore = stack["store"]
    d: Dispatcher = stack["dispatcher"]
    intake(stack, "S", 50)
    renewed: list[tuple[int, float, float]] = []

    def during(request_id: str) -> None:
        [grant] = dispatch.held()
        assert (grant.batch_id, grant.tenant) == ("S@0", "demo")
        assert grant.token.startswith("S@0#") and d.r.hget(d.keys.batch("S@0"), "taken_by") == grant.token
        d.r.zadd(d.keys.dispatch_taken, {"S@0": time.time() + 1})
        d.r.hset(d.keys.batch("S@0"), "lease_until", f"{time.time() + 1:.3f}")
        n = dispatch.heartbeat(publish)
        lease_until = float((store.batch("S@0") or {})["lease_until"])
        renewed.append((n, d.r.zscore(d.keys.dispatch_taken, "S@0") or 0.0, lease_until))

    stack["erp"].watch = during
    assert serve()["outcomes"] == {"created": 1}
    [(n, taken_until, lease_until)] = renewed
    lease = get_settings().send_lease_seconds
    assert n == 1
    assert taken_until > time.time() + lease - 2 and lease_until > time.time() + lease - 2
    assert dispatch.held() == [] and dispatch.heartbeat(publish) == 0


def test_a_ticket_cut_short_by_an_outage_leaves_its_batches_to_come_back(
    stack: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker.pipeline import dispatch

    store: ResultsStore = stack["store"]
    d: Dispatcher = stack["dispatcher"]
    intake(stack, "J", 150)
    real = store.acquire_batch_data

    def gone_for(batch_id: str, sender: str) -> Any:
        if batch_id == "J@50":
            raise redis.ConnectionError("Redis went away")
        return real(batch_id, sender)

    monkeypatch.setattr(store, "acquire_batch_data", gone_for)
    with pytest.raises(redis.ConnectionError):  # the task's Redis-outage retry runs it again
        serve()
    assert stack["erp"].posts == ["J@0"]
    assert queued(d, "demo", BULK) == ["J@100"]  # not taken: it waits for the next ticket
    assert d.r.zscore(d.keys.dispatch_taken, "J@50") is not None  # held on a lease nobody renews now
    assert dispatch.held() == []
    assert "ticket-test" not in d.r.zrange(d.keys.dispatch_tickets, 0, -1)

    monkeypatch.setattr(store, "acquire_batch_data", real)
    d.r.zadd(d.keys.dispatch_taken, {"J@50": time.time() - 0.01})  # its lease runs out
    assert serve("ticket-2")["outcomes"] == {"created": 2}
    assert stack["erp"].posts == ["J@0", "J@50", "J@100"]  # J@50 first: taken back to the front of its lane
    assert [r.status for r in store.records("J")] == [CREATED] * 150


def test_a_retry_that_is_due_at_once_is_sent_by_the_same_ticket(
    stack: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker.pipeline import retry

    monkeypatch.setattr(retry, "backoff_seconds", lambda *args, **kwargs: 0.0)
    intake(stack, "S", 50)
    stack["erp"].refuse = {"S@0"}
    stack["erp"].retry_after = None
    stack["messages"].clear()
    assert serve()["outcomes"] == {"comes back": 1, "created": 1}
    assert stack["erp"].posts == ["S@0"]
    d: Dispatcher = stack["dispatcher"]
    assert d.delayed() == 0 and d.taken() == 0
    assert all(m.countdown is None for m in tickets(stack))  # a ticket offered for it, no wake


# ----- send messages of an earlier version


def test_send_messages_of_an_earlier_version_place_their_batches(stack: dict[str, Any]) -> None:
    from tasks.send import send_batch, send_batches

    store: ResultsStore = stack["store"]
    d: Dispatcher = stack["dispatcher"]
    intake(stack, "J", 150)
    d.r.delete(d.keys.dispatch_lane("demo", BULK), d.keys.dispatch_tenant("demo"), d.keys.dispatch_ready)
    for batch_id in ("J@0", "J@50", "J@100"):
        d.r.hdel(d.keys.batch(batch_id), "queued_in")  # as stored by the earlier version: never placed
    stack["messages"].clear()

    assert send_batches(["J@0", "J@50"]) == {"batches": 2, "placed": 2}
    assert send_batch("J@100") == {"batch_id": "J@100", "placed": 1}
    assert send_batches(["J@0", "J@50"]) == {"batches": 2, "placed": 0}  # redelivered: queued once
    assert queued(d, "demo", BULK) == ["J@0", "J@50", "J@100"]
    assert len(tickets(stack)) == 3
    assert serve()["outcomes"] == {"created": 3}
    # Once done, a redelivered message places nothing and nothing is posted again.
    assert send_batches(["J@0", "J@50"]) == {"batches": 2, "placed": 0}
    assert send_batch("unknown") == {"batch_id": "unknown", "placed": 0}
    assert stack["erp"].posts == ["J@0", "J@50", "J@100"]
    assert [r.status for r in store.records("J")] == [CREATED] * 150


def test_a_tenant_limits_come_from_the_tenants_file(stack: dict[str, Any]) -> None:
    from worker.pipeline.tickets import limits_of

    assert limits_of("acme").cap == 1 and limits_of("acme").rate_interval_s == 0
    assert limits_of("beta").cap == get_settings().tenant_max_in_flight
    assert limits_of("no-such-tenant").cap == get_settings().tenant_max_in_flight
    d: Dispatcher = stack["dispatcher"]
    intake(stack, "A", 50, tenant="acme")
    assert d.r.hget(d.keys.dispatch_tenant("acme"), "cap") == "1"
    never_handed_out = Grant("A@0", "acme", INT, None, None, "A@0#never-handed-out")
    assert d.settle(never_handed_out, Settle.DONE) is False  # (not taken: nothing to give back)
    assert queued(d, "acme", INT) == ["A@0"] and d.r.hget(d.keys.batch("A@0"), "queued_in") == "lane"


# ----- buffer flushes, done by tickets


def test_a_ticket_does_the_flushes_that_are_due_before_its_next_batch(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    """A small job's documents wait in the buffer; their flush is asked for with the dispatcher and done by the
    ticket that finds it due, which then sends the batch: no flush message waits for a thread."""
    stack = start(monkeypatch, env, ERPSYNC_BATCH_MAX_WAIT_MS="100")
    d: Dispatcher = stack["dispatcher"]
    intake(stack, "S", 3)  # three documents: the buffer, a flush due in batch_max_wait_ms
    assert stack["buffer"].waiting("demo", "customer_invoice") == 3
    assert of_task(stack["messages"], TaskName.FLUSH_BUFFER) == []
    [wake] = tickets(stack)
    assert wake.countdown and 0.05 < wake.countdown < 0.15
    assert serve()["batches"] == 0  # not due yet: nothing to do, and the wake stands
    time.sleep(0.12)  # its time has come
    assert serve()["batches"] == 1
    assert stack["buffer"].waiting("demo", "customer_invoice") == 0 and len(stack["erp"].posts) == 1
    assert d.r.zcard(d.keys.dispatch_flushes) == 0  # the buffer is empty: the request is forgotten


def test_a_flush_claimed_by_a_ticket_that_died_is_done_by_another_later(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    from worker.store.dispatch import FLUSH_CLAIM_S

    stack = start(monkeypatch, env, ERPSYNC_BATCH_MAX_WAIT_MS="0")
    d: Dispatcher = stack["dispatcher"]
    intake(stack, "S", 3)
    d.r.zadd(d.keys.dispatch_flushes, {"demo|customer_invoice": time.time() - 0.01})
    claimed = d.claim_flushes()  # a ticket claims it, and dies before flushing
    assert claimed.buffers == [("demo", "customer_invoice")]
    assert d.claim_flushes().buffers == []  # nobody else while the claim holds
    [(_, until)] = d.r.zrange(d.keys.dispatch_flushes, 0, -1, withscores=True)
    assert until == pytest.approx(time.time() + FLUSH_CLAIM_S, abs=1)
    d.r.zadd(d.keys.dispatch_flushes, {"demo|customer_invoice": time.time() - 0.01})  # the claim ran out
    assert serve()["batches"] == 1
    assert not d.flush_done("demo", "customer_invoice", claimed.claimed_at)  # the dead claim forgets nothing
