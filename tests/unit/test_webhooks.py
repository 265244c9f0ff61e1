"""Job webhooks (worker/webhooks/, worker/store/webhooks.py): the signature and its check, the payload's whitelist,
the store's events, deliveries, leases, backoff and giving up on fakeredis, and the sender against
httpx.MockTransport: an endpoint failing three times then recovering gets each webhook once, and an endpoint that
hangs holds up no other tenant's delivery. The sandbox's receiver checks the same signatures."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import fakeredis
import httpx
import pytest
from rich.console import Console

from tests.unit.sandbox_app import InProcessSandbox
from worker.observability import metrics
from worker.ops import overview
from worker.settings import Settings, get_settings
from worker.store.counters import read as read_counters
from worker.store.records import CREATED, FAILED, Record
from worker.store.results import ResultsStore
from worker.store.webhooks import FAILED_KEEP_SECONDS, GROUP, Delivery, JobEvent, WebhookStore
from worker.webhooks import payload as payloads
from worker.webhooks import signing
from worker.webhooks.sender import BACKOFF_CAP_SECONDS, Attempt, WebhookSender, endpoint, retry_delay

PREFIX = "wh"
SECRETS = {"acme": "whsec-acme-7f3a9c1e", "globex": "whsec-globex-2d8e4f6a"}
URLS = {"acme": "https://hooks.acme.test/erpsync?token=q-secret-1", "globex": "https://globex.test/hook"}


# ----- fixtures


def tenants_file(path: Path) -> Path:
    """acme and globex with webhooks, initech without."""
    tenants = [
        {"name": name, "company_api_key": f"{name}-company-key", "connect_api_key": f"{name}-connect-key",
         "base_url": "http://erp.test", **({"webhook_url": URLS[name], "webhook_secret": SECRETS[name]}
                                          if name in URLS else {})}
        for name in ("acme", "globex", "initech")
    ]  # fmt: skip
    path.write_text(json.dumps({"tenants": tenants}))
    return path


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "key_prefix": PREFIX,
        "demo_tenant": False,
        "tenants_file": tenants_file(tmp_path / "tenants.json"),
        "webhook_timeout_seconds": 0.5,
        "webhook_max_attempts": 5,
        **overrides,
    }
    return Settings(**values)


@pytest.fixture
def r() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def store(r: fakeredis.FakeRedis) -> WebhookStore:
    s = WebhookStore(r, PREFIX)
    s.ensure_group()
    return s


def event(r: fakeredis.FakeRedis, job_id: str, tenant: str, status: str = "succeeded") -> str:
    """An entry of the job-events stream as the job scripts write it."""
    fields = {"j": job_id, "t": tenant, "s": status, "at": "2026-11-20T23:16:09.412Z"}
    return str(r.xadd(f"{PREFIX}:events:jobs", fields))


def scheduled(store: WebhookStore, *job_tenants: tuple[str, str], now: float = 1000.0) -> list[JobEvent]:
    """Events of `job_tenants` read and scheduled (bodies for acme and globex only, as the sender does)."""
    for job_id, tenant in job_tenants:
        event(store.r, job_id, tenant)
    events = store.read_events("c1")
    bodies = {e.entry_id: json.dumps({"job_id": e.job_id}) for e in events if e.tenant in URLS}
    store.schedule(events, bodies, now)
    return events


def finish_job(results: ResultsStore, job_id: str, tenant: str, documents: list[str]) -> None:
    """A job of `documents` stored and every document given an outcome: its script announces it."""
    ids = [f"{job_id}-{i}" for i in range(len(documents))]
    results.create_job({"job_id": job_id, "tenant": tenant, "target": "softone", "kind": "customer_invoice"},
                       documents, ids)  # fmt: skip
    results.set_records([(job_id, i, Record(x, FAILED if i % 2 else CREATED, key=i)) for i, x in enumerate(ids)])


# ----- signing


def test_a_signature_verifies_and_a_tampered_body_or_another_secret_does_not() -> None:
    body = b'{"job_id":"j1","status":"succeeded"}'
    headers = signing.signed_headers("s3cret", body, "j1.1-0", now=1_800_000_000)
    assert headers["ERPSync-Timestamp"] == "1800000000" and headers["ERPSync-Delivery"] == "j1.1-0"
    assert headers["ERPSync-Event"] == "job.finished" and headers["ERPSync-Signature"].startswith("v1=")
    assert signing.verify("s3cret", headers, body, now=1_800_000_010)
    assert signing.verify("s3cret", {k.lower(): v for k, v in headers.items()}, body.decode(), now=1_800_000_000)
    assert not signing.verify("s3cret", headers, body.replace(b"succeeded", b"failed"), now=1_800_000_000)
    assert not signing.verify("other", headers, body, now=1_800_000_000)
    # the timestamp is signed too: moved forward, the signature no longer fits
    assert not signing.verify("s3cret", {**headers, "ERPSync-Timestamp": "1800000100"}, body, now=1_800_000_100)


def test_an_old_or_future_timestamp_is_refused() -> None:
    headers = signing.signed_headers("s3cret", b"{}", "d", now=1_800_000_000)
    assert signing.verify("s3cret", headers, b"{}", now=1_800_000_300)
    assert not signing.verify("s3cret", headers, b"{}", now=1_800_000_301)
    assert not signing.verify("s3cret", headers, b"{}", now=1_799_999_699)
    assert signing.verify("s3cret", headers, b"{}", tolerance=3600, now=1_800_001_000)


def test_malformed_headers_are_refused_and_one_matching_signature_of_several_is_enough() -> None:
    headers = signing.signed_headers("new-secret", b"{}", "d", now=1_800_000_000)
    for broken in ({}, {**headers, "ERPSync-Timestamp": "soon"}, {**headers, "ERPSync-Signature": "v0=abc"},
                   {**headers, "ERPSync-Signature": "v1=ünïcode"}):  # fmt: skip
        assert not signing.verify("new-secret", broken, b"{}", now=1_800_000_000)
    rotated = {**headers, "ERPSync-Signature": f"v1={signing.sign('old-secret', 1_800_000_000, b'{}')}, "
                                              + headers["ERPSync-Signature"]}  # fmt: skip
    assert signing.verify("new-secret", rotated, b"{}", now=1_800_000_000)
    assert signing.verify("old-secret", rotated, b"{}", now=1_800_000_000)


def test_the_sandbox_receiver_checks_the_same_signature_and_fails_on_purpose() -> None:
    sandbox = InProcessSandbox()
    assert sandbox.request("POST", "/_sandbox/webhooks/r1", content=b"{}").status_code == 404  # not configured
    config = {"secret": "rcv-secret", "fail_next": 1}
    assert sandbox.request("POST", "/_sandbox/webhooks/r1/config", json=config).json()["config"]["fail_next"] == 1
    body = payloads.serialize({"job_id": "j1", "status": "succeeded"}).encode()
    good = signing.signed_headers("rcv-secret", body, "j1.1-0")
    assert sandbox.request("POST", "/_sandbox/webhooks/r1", content=body, headers=good).status_code == 503
    assert sandbox.request("POST", "/_sandbox/webhooks/r1", content=body, headers=good).status_code == 200
    bad = signing.signed_headers("wrong-secret", body, "j1.1-0")
    assert sandbox.request("POST", "/_sandbox/webhooks/r1", content=body, headers=bad).status_code == 401
    seen = sandbox.request("GET", "/_sandbox/webhooks/r1").json()
    assert (seen["attempts"], seen["refused"], seen["hung"]) == (3, 1, 0)
    assert [(d["delivery_id"], d["verified"], d["body"]) for d in seen["deliveries"]] == [
        ("j1.1-0", True, {"job_id": "j1", "status": "succeeded"}),
        ("j1.1-0", False, {"job_id": "j1", "status": "succeeded"}),
    ]
    assert "rcv-secret" not in json.dumps(seen)
    assert sandbox.request("POST", "/_sandbox/webhooks/r1/config", json={"fail_next": -1}).status_code == 400
    assert sandbox.request("DELETE", "/_sandbox/webhooks/r1").json() == {"deleted": True}


# ----- the payload


def test_the_payload_is_a_whitelist_of_the_jobs_summary(tmp_path: Path, r: fakeredis.FakeRedis) -> None:
    settings = make_settings(tmp_path)
    results = ResultsStore(r, settings)
    secret_doc = json.dumps({"ExternalId": "x0", "CustomerNr": "1001", "Note": "private-content-42"})
    finish_job(results, "j1", "acme", [secret_doc, secret_doc.replace("x0", "x1")])
    job = results.job("j1")
    assert job is not None
    job.update(source="file.jsonl", api_token="tok-123456", document=secret_doc)  # whatever else a hash holds
    body = payloads.serialize(payloads.job_payload("j1", "acme", "partial", "2026-11-20T23:16:09.412Z", job))
    data = json.loads(body)
    assert set(data) == {"event", "job_id", "tenant", "target", "kind", "lane", "operation", "status", "total",
                         "counts", "submitted_at", "finished_at"}  # fmt: skip
    assert data["event"] == "job.finished" and data["status"] == "partial" and data["total"] == 2
    assert data["counts"]["created"] == 1 and data["counts"]["failed"] == 1 and data["counts"]["pending"] == 0
    for leak in ("private-content-42", "x0", "tok-123456", "file.jsonl", SECRETS["acme"], "records"):
        assert leak not in body
    assert body == payloads.serialize(dict(reversed(list(data.items()))))  # stable: keys sorted, compact
    assert " " not in body.replace("job.finished", "")


def test_a_rejected_jobs_payload_says_why_and_a_job_gone_keeps_the_events_fields() -> None:
    job = {"tenant": "acme", "status": "rejected", "reason": "not JSON: see https://x.test/?token=abc " + "x" * 900}
    data = payloads.job_payload("j2", "acme", "rejected", "t1", job)
    assert data["reason"].startswith("not JSON") and "abc" not in data["reason"] and len(data["reason"]) == 500
    gone = payloads.job_payload("j3", "acme", "succeeded", "t2", None)
    assert (gone["job_id"], gone["status"], gone["finished_at"], gone["total"]) == ("j3", "succeeded", "t2", 0)
    assert "reason" not in gone and "source_error" not in gone


def test_an_incomplete_jobs_payload_says_where_its_source_broke() -> None:
    job = {"tenant": "acme", "status": "incomplete", "source_error_line": "1501", "source_error": "not valid JSON"}
    data = payloads.job_payload("j4", "acme", "incomplete", "t1", job)
    assert data["source_error"] == {"line": 1501, "reason": "not valid JSON"}
    unknown_line = payloads.job_payload("j5", "acme", "incomplete", "t1", {"source_error": "stopped part-way"})
    assert unknown_line["source_error"] == {"line": None, "reason": "stopped part-way"}


# ----- the store


def test_a_finished_job_becomes_one_delivery_and_other_tenants_events_are_dropped(
    tmp_path: Path, r: fakeredis.FakeRedis, store: WebhookStore
) -> None:
    results = ResultsStore(r, make_settings(tmp_path))
    finish_job(results, "j1", "acme", ["{}"])
    finish_job(results, "j2", "initech", ["{}"])  # no webhook: its event is acknowledged and dropped
    events = store.read_events("c1")
    assert [(e.job_id, e.tenant, e.status) for e in events] == [
        ("j1", "acme", "succeeded"),
        ("j2", "initech", "succeeded"),
    ]
    assert store.schedule(events, {events[0].entry_id: "{}"}, 1000.0) == 1
    assert r.xlen(f"{PREFIX}:events:jobs") == 0 and r.xpending(f"{PREFIX}:events:jobs", GROUP)["pending"] == 0
    assert r.zrange(f"{PREFIX}:webhooks:due", 0, -1) == [events[0].delivery_id]
    assert events[0].delivery_id == f"j1.{events[0].entry_id}"
    assert store.read_events("c1") == [] and store.schedule(events, {events[0].entry_id: "{}"}, 2000.0) == 0


def test_a_job_finishing_again_later_is_a_delivery_of_its_own(store: WebhookStore) -> None:
    scheduled(store, ("j1", "acme"), ("j1", "acme"))  # a late outcome: the job finished a second time
    ids = store.r.zrange(f"{PREFIX}:webhooks:due", 0, -1)
    assert len(ids) == 2 and all(i.startswith("j1.") for i in ids)


def test_events_read_and_not_scheduled_come_back_first_and_a_lost_group_is_made_again(
    r: fakeredis.FakeRedis, store: WebhookStore
) -> None:
    event(r, "j1", "acme")
    first = store.read_events("c1")
    event(r, "j2", "acme")
    assert store.read_events("c1") == first  # its own pending entries first
    # j1 has not been held that long by c1: not taken over; j2, new, comes
    assert [e.job_id for e in store.read_events("c2", take_over_idle_ms=60_000)] == ["j2"]
    r.xgroup_destroy(f"{PREFIX}:events:jobs", GROUP)  # Redis lost the group: the stream is read from its start
    assert [e.job_id for e in store.read_events("c3")] == ["j1", "j2"]


def test_a_dead_consumers_events_are_taken_over(r: fakeredis.FakeRedis, store: WebhookStore) -> None:
    event(r, "j1", "acme")
    store.read_events("dead")
    time.sleep(0.01)
    assert [e.job_id for e in store.read_events("alive", take_over_idle_ms=5)] == ["j1"]
    assert [e.job_id for e in store.read_events("alive")] == ["j1"]  # its own now


def test_a_claim_leases_a_delivery_so_no_other_sender_takes_it(store: WebhookStore) -> None:
    scheduled(store, ("j1", "acme"))
    [claimed] = store.claim_due(1000.0, lease_seconds=15, limit=10)
    assert (claimed.tenant, claimed.job_id, claimed.attempts, claimed.body) == ("acme", "j1", 0, '{"job_id": "j1"}')
    assert store.claim_due(1000.0, lease_seconds=15, limit=10) == []
    assert store.claim_due(1014.9, lease_seconds=15, limit=10) == []
    assert [d.job_id for d in store.claim_due(1015.0, lease_seconds=15, limit=10)] == ["j1"]  # its sender died


def test_a_tenant_at_its_cap_is_skipped_without_hiding_the_others(store: WebhookStore) -> None:
    scheduled(store, *[(f"a{i}", "acme") for i in range(6)], ("g1", "globex"))
    claimed = store.claim_due(1000.0, lease_seconds=15, limit=10, in_flight={"acme": 2}, per_tenant=4)
    assert sorted(d.job_id for d in claimed) == ["a0", "a1", "g1"]
    due = dict(store.r.zrange(f"{PREFIX}:webhooks:due", 0, -1, withscores=True))
    skipped = {d: score for d, score in due.items() if score < 1015}
    assert len(skipped) == 4 and set(skipped.values()) == {1001.0}  # due again a moment later
    assert store.claim_due(1000.5, lease_seconds=15, limit=10) == []
    assert len(store.claim_due(1001.0, lease_seconds=15, limit=10)) == 4


def test_failures_back_off_then_give_up_and_stay_visible(tmp_path: Path, store: WebhookStore) -> None:
    scheduled(store, ("j1", "acme"), ("j2", "globex"))
    [d1] = [d for d in store.claim_due(1000.0, lease_seconds=15, limit=10) if d.job_id == "j1"]
    incs = metrics.count(PREFIX, metrics.WEBHOOK_DELIVERIES, ("acme", "retry"))
    assert store.failed(d1, now=1001.0, error="HTTP 503", status_code=503, retry_at=1003.0, increments=incs)
    [again] = store.claim_due(1003.0, lease_seconds=15, limit=10)
    assert (again.delivery_id, again.attempts) == (d1.delivery_id, 1)
    counts = store.counts(1003.0)
    assert (counts.due, counts.failing, counts.given_up) == (2, 1, 0)
    assert (counts.tenants["acme"].failing, counts.tenants["globex"].failing) == (1, 0)
    assert store.failing()[0]["last_error"] == "HTTP 503" and store.failing()[0]["last_status"] == "503"

    assert store.failed(again, now=1004.0, error="no answer within 10s", status_code=None, retry_at=None)
    assert store.r.zscore(f"{PREFIX}:webhooks:due", d1.delivery_id) is None
    [given_up] = store.given_up()
    assert (given_up["id"], given_up["tenant"], given_up["attempts"]) == (d1.delivery_id, "acme", "2")
    assert given_up["last_error"] == "no answer within 10s" and "body" not in given_up
    assert 0 < store.r.ttl(f"{PREFIX}:webhooks:delivery:{d1.delivery_id}") <= FAILED_KEEP_SECONDS
    counts = store.counts(1004.0)
    assert (counts.due, counts.failing, counts.given_up, counts.tenants["acme"].given_up) == (1, 0, 1, 1)
    assert read_counters(store.r, PREFIX, [metrics.WEBHOOK_DELIVERIES.name]) == [{"acme|retry": 1.0}]
    store.tidy(1004.0 + FAILED_KEEP_SECONDS + 1, consumer="c1")
    assert store.given_up() == []


def test_a_delivery_done_meanwhile_is_not_brought_back_by_a_late_failure(store: WebhookStore) -> None:
    scheduled(store, ("j1", "acme"))
    [first] = store.claim_due(1000.0, lease_seconds=15, limit=10)
    [second] = store.claim_due(1015.0, lease_seconds=15, limit=10)  # the first sender's lease ran out
    store.delivered(second.delivery_id, metrics.count(PREFIX, metrics.WEBHOOK_DELIVERIES, ("acme", "delivered")))
    assert not store.failed(first, now=1016.0, error="HTTP 500", status_code=500, retry_at=1017.0)
    assert store.r.keys(f"{PREFIX}:webhooks:*") == []
    assert store.counts(1016.0).due == 0


def test_the_backoff_doubles_from_a_second_to_ten_minutes_with_jitter() -> None:
    for attempts, ceiling in ((1, 1), (2, 2), (3, 4), (10, 512), (11, 600), (40, 600)):
        delays = [retry_delay(attempts) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays), attempts
        assert len(set(delays)) > 1
    assert BACKOFF_CAP_SECONDS == 600


def test_an_endpoint_is_logged_without_its_query_string_or_credentials() -> None:
    assert endpoint("https://user:pw@hooks.acme.test:8443/in?token=abc#x") == "https://hooks.acme.test:8443/in"


# ----- the sender


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def sender_for(store: WebhookStore, settings: Settings, clock: Clock | None = None) -> WebhookSender:
    return WebhookSender(store, settings, consumer="c1", clock=clock or Clock())


async def finish(sender: WebhookSender) -> None:
    """Wait for every POST under way."""
    while sender.sending:
        await asyncio.gather(*list(sender.sending), return_exceptions=True)


def test_an_endpoint_failing_three_times_then_recovering_gets_each_webhook_once(
    r: fakeredis.FakeRedis, store: WebhookStore, settings: Settings
) -> None:
    seen: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(503 if len(seen) <= 3 else 204)

    clock = Clock()
    sender = sender_for(store, settings, clock)
    event(r, "j1", "acme")

    async def go() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            assert await sender.pump_once() == 1
            for _ in range(10):
                await sender.dispatch_once(client)
                await finish(sender)
                clock.now += 60  # past any backoff of these attempts

    asyncio.run(go())
    assert len(seen) == 4
    assert {req.headers["ERPSync-Delivery"] for req in seen} == {seen[0].headers["ERPSync-Delivery"]}
    for req in seen:  # each attempt signed when it was made
        assert signing.verify(SECRETS["acme"], req.headers, req.content, now=float(req.headers["ERPSync-Timestamp"]))
    assert len({req.headers["ERPSync-Timestamp"] for req in seen}) == 4
    assert str(seen[-1].url) == URLS["acme"] and json.loads(seen[-1].content)["job_id"] == "j1"
    assert r.keys(f"{PREFIX}:webhooks:*") == []  # delivered: nothing left
    counted = read_counters(r, PREFIX, [metrics.WEBHOOK_DELIVERIES.name])[0]
    assert counted == {"acme|retry": 3.0, "acme|delivered": 1.0}


def test_a_delivery_is_given_up_after_the_last_attempt(
    r: fakeredis.FakeRedis, store: WebhookStore, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, webhook_max_attempts=3)
    clock = Clock()
    sender = sender_for(store, settings, clock)
    event(r, "j1", "globex")

    async def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async def go() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as client:
            await sender.pump_once()
            for _ in range(5):
                await sender.dispatch_once(client)
                await finish(sender)
                clock.now += 60

    asyncio.run(go())
    [given_up] = store.given_up()
    assert given_up["attempts"] == "3" and given_up["last_error"] == "ConnectError: connection refused"
    assert store.counts(clock.now).given_up == 1


def test_a_tenant_without_a_webhook_any_more_is_given_up_at_once(store: WebhookStore, settings: Settings) -> None:
    sender = sender_for(store, settings)
    delivery = Delivery("j9.1-0", "initech", "j9", "succeeded", 0, "{}")

    async def go() -> Attempt:
        async with httpx.AsyncClient(transport=httpx.MockTransport(lambda req: httpx.Response(200))) as client:
            return await sender.attempt(client, delivery)

    attempt = asyncio.run(go())
    assert attempt.final and not attempt.delivered


def test_a_hanging_endpoint_does_not_delay_another_tenants_webhook(
    r: fakeredis.FakeRedis, store: WebhookStore, settings: Settings
) -> None:
    """acme's endpoint never answers; globex's webhook, scheduled after six of acme's, is delivered while acme's
    first four (its cap) hang, before any of them has timed out; acme's are failed attempts after the timeout."""
    hanging: list[httpx.Request] = []
    acme_failures_when_globex_arrived: list[int] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "hooks.acme.test":
            hanging.append(request)
            await asyncio.sleep(3600)
        acme_failures_when_globex_arrived.append(store.counts(1e12).failing)
        return httpx.Response(200)

    for i in range(6):
        event(r, f"a{i}", "acme")
    event(r, "g1", "globex")
    sender = WebhookSender(store, settings, consumer="c1")

    async def go() -> None:
        stop = asyncio.Event()
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            running = asyncio.create_task(sender.run(stop, client))
            for _ in range(1000):
                if acme_failures_when_globex_arrived:
                    break
                await asyncio.sleep(0.01)
            stop.set()  # the hanging POSTs are given the timeout, then recorded as failed attempts
            await asyncio.wait_for(running, 10)

    asyncio.run(go())
    assert acme_failures_when_globex_arrived == [0]  # delivered once, before any of acme's had timed out
    assert len(hanging) == 4  # acme's cap: its other two waited, holding up nobody
    counts = store.counts(1e12)
    assert counts.tenants["acme"].due == 6 and counts.tenants.get("globex") is None
    assert counts.tenants["acme"].failing == 4
    assert {d["last_error"] for d in store.failing()} == {"no answer within 0.5s"}


def test_status_and_metrics_show_the_webhooks(
    r: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from worker.cli import commands as cli

    monkeypatch.setenv("ERPSYNC_KEY_PREFIX", PREFIX)
    monkeypatch.setenv("ERPSYNC_TENANTS_FILE", str(tenants_file(tmp_path / "t.json")))
    monkeypatch.setattr("worker.store.client.get_redis", lambda settings=None: r)
    monkeypatch.setattr(overview, "workers", lambda settings, timeout=1.0: {"workers": [], "other_workers": 0,
                                                                           "error": None})  # fmt: skip
    monkeypatch.setattr("worker.cli.ops.out", Console(width=200))
    get_settings.cache_clear()
    store = WebhookStore(r, PREFIX)
    store.ensure_group()
    scheduled(store, ("j1", "acme"), ("j2", "globex"))
    [d] = [d for d in store.claim_due(1000.0, lease_seconds=1, limit=5) if d.tenant == "acme"]
    store.failed(d, now=1001.0, error="HTTP 500", status_code=500, retry_at=None)
    event(r, "j3", "acme")  # not taken by a sender yet
    try:
        assert cli.main(["webhooks", "list", "--json"]) == 0
        listing = json.loads(capsys.readouterr().out)
        assert (listing["due"], listing["given_up"], listing["events_waiting"]) == (1, 1, 1)
        assert listing["given_up_deliveries"][0]["last_error"] == "HTTP 500"
        assert cli.main(["status", "--json"]) == 0
        hooks = json.loads(capsys.readouterr().out)["webhooks"]
        assert hooks["tenants"] == [{"tenant": "acme", "due": 0, "failing": 0, "given_up": 1},
                                    {"tenant": "globex", "due": 1, "failing": 0, "given_up": 0}]  # fmt: skip
        assert cli.main(["status"]) == 0
        # One line at 80 columns; the tenants' share is in --json and `erpsync webhooks list`.
        assert "webhooks: 1 due, 0 failing, 1 given up, 1 job event waiting" in capsys.readouterr().out
        assert cli.main(["webhooks", "list"]) == 0
        assert "HTTP 500" in capsys.readouterr().out
        assert cli.main(["webhooks", "list", "--limit", "0"]) == 2
        assert capsys.readouterr().err.strip() == "error: --limit 0: must be at least 1"
        gauges = {(s.name, tuple(s.labels.values())): s.value
                  for family in overview.webhook_gauges(overview.webhooks(r, get_settings()))
                  for s in family.samples}  # fmt: skip
        assert gauges[("erpsync_webhook_deliveries_due", ("globex",))] == 1
        assert gauges[("erpsync_webhook_deliveries_failed", ("acme",))] == 1
        assert gauges[("erpsync_webhook_events_waiting", ())] == 1
    finally:
        get_settings.cache_clear()
