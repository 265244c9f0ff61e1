"""worker/ops/overview.py against fakeredis: queue and buffer depths, open and stalled jobs, recent jobs with
filters, recent failures, dead letters, the worker broadcast, and the Prometheus gauges."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import fakeredis
import pytest
from kombu.exceptions import OperationalError
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from schemas.kinds import Lane
from worker.ops import overview
from worker.settings import Settings
from worker.store.buffer import CoalescingBuffer
from worker.store.intake import IntakeQueue, Item
from worker.store.records import CREATED, FAILED, UNKNOWN, Record
from worker.store.results import ResultsStore


@pytest.fixture
def settings() -> Settings:
    return Settings(key_prefix="ov", queue="ovq", stall_seconds=120, demo_tenant=False)


@pytest.fixture
def r() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(decode_responses=True)


@pytest.fixture
def store(r: fakeredis.FakeRedis, settings: Settings) -> ResultsStore:
    return ResultsStore(r, settings)


def make_job(store: ResultsStore, job_id: str, n: int = 3, *, tenant: str = "demo", close: bool = True) -> None:
    meta = {
        "job_id": job_id,
        "tenant": tenant,
        "target": "softone",
        "kind": "customer_invoice",
        "source": "t",
        "submitted_at": datetime.now(UTC).isoformat(),
    }
    store.open_job(meta)
    store.append_documents(
        job_id, 0, [json.dumps({"ExternalId": f"{job_id}-{i}"}) for i in range(n)], [f"{job_id}-{i}" for i in range(n)]
    )
    if close:
        store.close_job(job_id)


def age_job(r: fakeredis.FakeRedis, settings: Settings, job_id: str, seconds: float) -> None:
    """Move every timestamp of a job `seconds` into the past (as if submitted and last changed then)."""
    key = f"{settings.key_prefix}:job:{job_id}"
    for field in ("created_at", "submitted_at", "updated_at", "received_at", "started_at"):
        value = r.hget(key, field)
        if value:
            r.hset(key, field, overview.iso(overview.epoch_of(value) - seconds))  # type: ignore[operator]
    r.zadd(f"{settings.key_prefix}:jobs", {job_id: time.time() - seconds})


def test_queue_depth_counts_the_priority_lists_of_each_queue(r: fakeredis.FakeRedis, settings: Settings) -> None:
    r.rpush("ovq", "a", "b")
    r.rpush("ovq\x06\x163", "c")
    r.rpush("ovq\x06\x169", "d")
    r.rpush("ovq.send", "e")
    r.rpush("other", "x", "y", "z")  # another deployment's queue is not ours
    assert overview.queue_depths(r, settings) == [{"queue": "ovq", "messages": 4}, {"queue": "ovq.send", "messages": 1}]


def test_waiting_input_and_buffer_depths(r: fakeredis.FakeRedis, settings: Settings) -> None:
    IntakeQueue(r, settings).push([Item("j1", 0, 10, "demo", Lane.BULK), Item("j2", 0, 1, "acme", Lane.INTERACTIVE)])
    r.lpush("ov:submit", "{}", "{}")
    r.sadd("ov:submit:held", "m1")
    buffer = CoalescingBuffer(r, settings)
    buffer.push("demo", "customer_invoice", [("j1", i, f"x{i}", '{"a": 1}') for i in range(3)])
    buffer.push("acme", "order", [("j2", 0, "y", '{"b": 2}')])
    assert overview.waiting_input(r, settings) == {"intake_items": 2, "submissions_waiting": 2, "submissions_held": 1}
    assert overview.buffer_depths(r, settings) == [
        {"tenant": "acme", "kind": "order", "documents": 1, "bytes": 9},
        {"tenant": "demo", "kind": "customer_invoice", "documents": 3, "bytes": 27},
    ]


def test_open_jobs_oldest_first_and_the_one_without_progress_is_stalled(
    r: fakeredis.FakeRedis, settings: Settings, store: ResultsStore
) -> None:
    make_job(store, "old")
    age_job(r, settings, "old", 600)
    make_job(store, "fresh")
    make_job(store, "done", n=1)
    store.set_records([("done", 0, Record("done-0", CREATED, key=1))])
    found = overview.open_jobs(r, settings)
    assert found["total"] == 2
    jobs = {j["job_id"]: j for j in found["jobs"]}
    assert [j["job_id"] for j in found["jobs"]] == ["old", "fresh"]
    assert jobs["old"]["stalled"] and not jobs["fresh"]["stalled"]
    assert 599 <= jobs["old"]["age_seconds"] <= 610 and 599 <= jobs["old"]["idle_seconds"] <= 610
    assert jobs["old"]["pending"] == 3 and jobs["old"]["status"] == "queued" and jobs["old"]["tenant"] == "demo"
    assert overview.oldest_pending_seconds(found["jobs"]) == jobs["old"]["age_seconds"]


def test_a_document_settling_is_progress(r: fakeredis.FakeRedis, settings: Settings, store: ResultsStore) -> None:
    make_job(store, "j", n=2)
    age_job(r, settings, "j", 600)
    store.set_records([("j", 0, Record("j-0", CREATED, key=7))])  # updated_at: now
    (job,) = overview.open_jobs(r, settings)["jobs"]
    assert job["pending"] == 1 and job["idle_seconds"] < 5 and not job["stalled"]
    assert job["age_seconds"] >= 599  # age stays the age since submission


def test_a_job_left_receiving_by_a_dead_producer_is_stalled(
    r: fakeredis.FakeRedis, settings: Settings, store: ResultsStore
) -> None:
    make_job(store, "half", n=2, close=False)
    age_job(r, settings, "half", 300)
    (job,) = overview.open_jobs(r, settings)["jobs"]
    assert job["status"] == "receiving" and job["stalled"]


def test_expired_open_jobs_are_not_counted(r: fakeredis.FakeRedis, settings: Settings, store: ResultsStore) -> None:
    make_job(store, "live")
    r.sadd("ov:open_jobs", "expired-long-ago")
    found = overview.open_jobs(r, settings)
    assert found["total"] == 1 and [j["job_id"] for j in found["jobs"]] == ["live"]


def test_open_jobs_reads_only_the_oldest_when_there_are_many(
    r: fakeredis.FakeRedis, settings: Settings, store: ResultsStore
) -> None:
    for i in range(5):
        make_job(store, f"j{i}", n=1)
        age_job(r, settings, f"j{i}", 100 - i)
    found = overview.open_jobs(r, settings, limit=2)
    assert found["read"] == 2 and [j["job_id"] for j in found["jobs"]] == ["j0", "j1"]


def test_a_finished_job_is_never_stalled_and_its_age_ends_when_it_finished() -> None:
    now = time.time()
    job = {
        "job_id": "f",
        "status": "succeeded",
        "n_created": "2",
        "total": "2",
        "created_at": overview.iso(now - 1000),
        "updated_at": overview.iso(now - 900),
        "finished_at": overview.iso(now - 900),
    }
    entry = overview.job_entry(job, stall_seconds=1, now=now)
    assert not entry["stalled"] and entry["idle_seconds"] is None and entry["last_progress_at"] is None
    assert 99 <= entry["age_seconds"] <= 101


def test_recent_jobs_filters_by_tenant_status_and_time(
    r: fakeredis.FakeRedis, settings: Settings, store: ResultsStore
) -> None:
    make_job(store, "a1", tenant="a")
    age_job(r, settings, "a1", 7200)
    make_job(store, "b1", tenant="b")
    make_job(store, "a2", tenant="a", n=1)
    store.set_records([("a2", 0, Record("a2-0", CREATED, key=1))])
    everything = overview.recent_jobs(r, settings)
    assert [j["job_id"] for j in everything["jobs"]] == ["a2", "b1", "a1"] and not everything["truncated"]
    assert [j["job_id"] for j in overview.recent_jobs(r, settings, tenant="a")["jobs"]] == ["a2", "a1"]
    assert [j["job_id"] for j in overview.recent_jobs(r, settings, status="succeeded")["jobs"]] == ["a2"]
    hour_ago = overview.parse_since("1h")
    assert [j["job_id"] for j in overview.recent_jobs(r, settings, since=hour_ago)["jobs"]] == ["a2", "b1"]
    assert [j["job_id"] for j in overview.recent_jobs(r, settings, limit=1)["jobs"]] == ["a2"]
    assert overview.recent_jobs(r, settings, tenant="nobody")["jobs"] == []


def test_recent_jobs_says_when_its_scan_bound_stopped_it(
    r: fakeredis.FakeRedis, settings: Settings, store: ResultsStore
) -> None:
    for i in range(6):
        make_job(store, f"j{i}", n=1, tenant="busy")
    make_job(store, "rare", n=1, tenant="rare")
    age_job(r, settings, "rare", 60)
    found = overview.recent_jobs(r, settings, tenant="rare", scan_limit=4)
    assert found == {"jobs": [], "scanned": 4, "truncated": True}
    assert [j["job_id"] for j in overview.recent_jobs(r, settings, tenant="rare")["jobs"]] == ["rare"]


def test_recent_failures_name_job_document_and_reason_and_rejected_jobs(
    r: fakeredis.FakeRedis, settings: Settings, store: ResultsStore
) -> None:
    make_job(store, "j", n=4)
    store.set_records(
        [
            ("j", 0, Record("j-0", CREATED, key=1)),
            ("j", 1, Record("j-1", FAILED, error="CustomerNr: Field required")),
            ("j", 3, Record("j-3", UNKNOWN, error="no answer after 3 attempts")),
        ]
    )
    make_job(store, "clean", n=1)
    # a raw producer message refused as a whole (worker/producer/submissions.py writes these)
    r.hset(
        "ov:job:rej",
        mapping={
            "job_id": "rej",
            "status": "rejected",
            "reason": "unknown tenant 'x'",
            "tenant": "x",
            "total": "0",
            "finished_at": overview.iso(time.time()),
        },
    )
    r.zadd("ov:jobs", {"rej": time.time() + 1})
    failures = overview.recent_failures(r, settings)
    assert failures[0]["job_id"] == "rej" and failures[0]["status"] == "rejected"
    assert failures[0]["reason"] == "unknown tenant 'x'"
    docs = [(f["position"], f["external_id"], f["status"], f["reason"], f["failed_in_job"]) for f in failures[1:]]
    assert docs == [
        (1, "j-1", "failed", "CustomerNr: Field required", 2),
        (3, "j-3", "unknown", "no answer after 3 attempts", 2),
    ]
    assert len(overview.recent_failures(r, settings, per_job=1)) == 2
    assert len(overview.recent_failures(r, settings, limit=2)) == 2


def test_dead_letters_count_and_newest_first_without_documents(
    r: fakeredis.FakeRedis, settings: Settings, store: ResultsStore
) -> None:
    for i in range(3):
        entry = {
            "id": f"j#{i}",
            "status": "failed",
            "tenant": "demo",
            "kind": "customer_invoice",
            "external_id": f"x{i}",
            "job_id": "j",
            "reason": f"rejected {i}",
            "document": {"secret": "doc"},
        }
        store.complete_batch(f"b{i}", "rejected", [], dead=[entry])
        r.zadd("ov:dead:index", {f"j#{i}": 1000 + i})
    found = overview.dead_letters(r, settings, newest=2)
    assert found["count"] == 3 and [d["id"] for d in found["newest"]] == ["j#2", "j#1"]
    assert all("document" not in d for d in found["newest"])
    assert overview.dead_letters(r, settings, newest=0)["newest"] == []


class FakeInspect:
    def __init__(self, replies: Any = None, error: Exception | None = None) -> None:
        self.replies, self.error = replies, error

    def active_queues(self) -> Any:
        if self.error:
            raise self.error
        return self.replies


def use_inspect(monkeypatch: pytest.MonkeyPatch, fake: FakeInspect) -> None:
    from worker.celery_app.application import app

    monkeypatch.setattr(app.control, "inspect", lambda timeout: fake)


def test_workers_are_ours_when_they_serve_one_of_our_queues(
    monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    use_inspect(
        monkeypatch,
        FakeInspect(
            {
                "send@h": [{"name": "ovq.send"}],
                "intake@h": [{"name": "ovq"}],
                "elsewhere@h": [{"name": "erpsync"}, {"name": "erpsync.send"}],
            }
        ),
    )
    found = overview.workers(settings)
    assert found == {
        "workers": [{"name": "intake@h", "queues": ["ovq"]}, {"name": "send@h", "queues": ["ovq.send"]}],
        "other_workers": 1,
        "error": None,
    }


def test_no_worker_is_an_empty_list_and_a_broker_error_is_reported_not_raised(
    monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    use_inspect(monkeypatch, FakeInspect(None))
    assert overview.workers(settings) == {"workers": [], "other_workers": 0, "error": None}
    use_inspect(monkeypatch, FakeInspect(error=OperationalError("Error 111 connecting to redis://:pw@h:1/0")))
    found = overview.workers(settings)
    assert found["workers"] == [] and "111" in found["error"] and "pw" not in found["error"]


def test_overview_has_the_documented_keys(
    monkeypatch: pytest.MonkeyPatch, r: fakeredis.FakeRedis, settings: Settings, store: ResultsStore
) -> None:
    use_inspect(monkeypatch, FakeInspect({}))
    make_job(store, "j")
    age_job(r, settings, "j", 500)
    data = overview.overview(r, settings)
    assert {
        "generated_at",
        "queues",
        "workers",
        "open_jobs",
        "recent_failures",
        "dead_letters",
        "oldest_pending_seconds",
        "stalled_jobs",
        "buffers",
        "intake_items",
    } <= set(data)
    assert data["stalled_jobs"] == 1 and data["open_jobs"][0]["job_id"] == "j"
    assert data["oldest_pending_seconds"] >= 499
    json.dumps(data)  # all of it is JSON


def gauges(r: fakeredis.FakeRedis, settings: Settings) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry()
    registry.register(overview.OverviewCollector(r, settings))
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_collector_exposes_the_gauges(r: fakeredis.FakeRedis, settings: Settings, store: ResultsStore) -> None:
    empty = gauges(r, settings)
    assert empty[("erpsync_jobs_open", ())] == 0 and empty[("erpsync_oldest_pending_seconds", ())] == 0
    make_job(store, "old")
    age_job(r, settings, "old", 400)
    make_job(store, "new")
    r.rpush("ovq", "m1", "m2")
    r.rpush("ovq.send\x06\x166", "m3")
    CoalescingBuffer(r, settings).push("demo", "order", [("new", 0, "x", "{}")])
    store.complete_batch(
        "b",
        "rejected",
        [],
        dead=[
            {"id": "old#0", "status": "failed", "tenant": "demo", "kind": "order", "external_id": "x", "job_id": "old"}
        ],
    )
    g = gauges(r, settings)
    assert g[("erpsync_queue_depth", (("queue", "ovq"),))] == 2
    assert g[("erpsync_queue_depth", (("queue", "ovq.send"),))] == 1
    assert g[("erpsync_buffer_documents", (("kind", "order"), ("tenant", "demo")))] == 1
    assert g[("erpsync_jobs_open", ())] == 2
    assert g[("erpsync_stalled_jobs", ())] == 1
    assert 399 <= g[("erpsync_oldest_pending_seconds", ())] <= 410
    assert g[("erpsync_dead_letters", ())] == 1


@pytest.mark.parametrize(
    ("text", "seconds_ago"),
    [("90s", 90), ("30m", 1800), ("1h", 3600), ("2d", 172800), ("1w", 604800), ("1.5h", 5400), (" 2H ", 7200)],
)
def test_since_durations(text: str, seconds_ago: float) -> None:
    assert overview.parse_since(text, now=1_000_000.0) == 1_000_000.0 - seconds_ago


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-20", datetime(2026, 11, 20, tzinfo=UTC)),
        ("2026-11-20T08:00Z", datetime(2026, 11, 20, 8, tzinfo=UTC)),
        ("2026-11-20T08:00:00", datetime(2026, 11, 20, 8, tzinfo=UTC)),  # no zone: UTC
        ("2026-11-20T09:00:00+01:00", datetime(2026, 11, 20, 8, tzinfo=UTC)),
    ],
)
def test_since_iso(text: str, expected: datetime) -> None:
    assert overview.parse_since(text) == expected.timestamp()


@pytest.mark.parametrize("text", ["yesterday", "", "1y", "-1h", "2026-13-01", "h1"])
def test_since_refuses_what_it_cannot_read(text: str) -> None:
    with pytest.raises(ValueError, match="--since"):
        overview.parse_since(text)


@pytest.mark.parametrize(
    ("seconds", "text"), [(None, "-"), (0, "0s"), (45.9, "45s"), (725, "12m05s"), (10920, "3h02m"), (187200, "2d04h")]
)
def test_since_text(seconds: float | None, text: str) -> None:
    assert overview.since_text(seconds) == text


def test_recent_jobs_pages_through_the_list_and_ignores_jobs_submitted_meanwhile(
    monkeypatch: pytest.MonkeyPatch, r: fakeredis.FakeRedis, settings: Settings, store: ResultsStore
) -> None:
    monkeypatch.setattr(overview, "PAGE", 2)
    for i in range(7):
        make_job(store, f"j{i}", n=1, tenant="even" if i % 2 == 0 else "odd")
        age_job(r, settings, f"j{i}", 100 - i)
    real_page = r.zrevrangebyscore

    def page_then_a_new_job(*args: Any, **kwargs: Any) -> Any:
        out = real_page(*args, **kwargs)
        r.zadd("ov:jobs", {f"late{time.monotonic_ns()}": time.time() + 5})  # a producer submitting meanwhile
        return out

    monkeypatch.setattr(r, "zrevrangebyscore", page_then_a_new_job)
    found = overview.recent_jobs(r, settings, tenant="even")
    assert [j["job_id"] for j in found["jobs"]] == ["j6", "j4", "j2", "j0"] and found["scanned"] == 7


def test_rejected_producer_messages_are_counted_newest_first(r: fakeredis.FakeRedis, settings: Settings) -> None:
    for i in range(4):
        r.lpush("ov:rejected", json.dumps({"id": f"m{i}", "job_id": None, "reason": f"not JSON ({i})", "bytes": 9}))
    found = overview.rejected_messages(r, settings, newest=2)
    assert found["count"] == 4 and [e["id"] for e in found["newest"]] == ["m3", "m2"]


def test_tenants_with_work_waiting_say_what_they_wait_for(
    r: fakeredis.FakeRedis, settings: Settings, store: ResultsStore
) -> None:
    """`status`'s tenants: documents per lane for intake, in the buffer and queued to send, batches coming back
    later, what each waits for (a slot with its holder, or what its delayed batches wait for), its oldest ready
    batch's age; and the same as the erpsync_tenant_* gauges. A tenant with nothing waiting is not listed."""
    from worker.store.dispatch import Dispatcher, Limits, Settle

    IntakeQueue(r, settings).push([Item("J1", 0, 40, "intake-only", Lane.BULK)])
    CoalescingBuffer(r, settings).push("buffered", "order", [("J2", 0, "x", "{}"), ("J2", 1, "y", "{}")])
    d = Dispatcher(r, settings)
    for batch_id, tenant, size in (("c1", "capped", 5), ("c2", "capped", 7), ("o1", "outage", 3)):
        r.hset(f"ov:batch:{batch_id}", mapping={"state": "queued", "tenant": tenant, "size": size,
                                                 "members": json.dumps([["J3", 0]])})  # fmt: skip
    r.hset("ov:job:J3", "lane", "bulk")
    d.add(Limits(1, 0.0), ["c1", "c2"])
    d.add(Limits(0, 0.0), ["o1"])
    first = d.take()
    assert first.grant is not None and first.grant.batch_id == "c1"
    r.hset("ov:batch:c1", "sender", "host-a:4711")
    down = d.take()
    assert down.grant is not None and down.grant.batch_id == "o1"
    d.settle(down.grant, Settle.DELAY, delay_s=30, reason="outage")
    assert d.take().grant is None  # capped is at its cap of 1: parked for the slot c1 holds

    now = time.time()
    rows = {t["tenant"]: t for t in overview.tenants(r, settings, overview.buffer_depths(r, settings), now)}
    assert set(rows) == {"intake-only", "buffered", "capped", "outage"}
    assert rows["intake-only"]["intake_documents"] == {"interactive": 0, "bulk": 40}
    assert rows["buffered"]["buffered_documents"] == 2
    capped = rows["capped"]
    assert capped["queued_documents"] == {"interactive": 0, "bulk": 7} and capped["queued_batches"] == 1
    assert capped["waiting_for"] == "slot" and capped["holder"] == {"batch_id": "c1", "sender": "host-a:4711"}
    assert 0 < capped["waiting_seconds"] <= settings.send_lease_seconds
    assert capped["oldest_ready_seconds"] is not None and capped["oldest_ready_seconds"] < 60
    outage = rows["outage"]
    assert (outage["delayed_batches"], outage["waiting_for"]) == (1, "outage") and 25 < outage["waiting_seconds"] <= 30
    assert overview.overview(r, settings, with_workers=False, now=now)["tenants"] == sorted(
        rows.values(), key=lambda e: (-(e["oldest_ready_seconds"] or 0.0), e["tenant"])
    )

    g = gauges(r, settings)
    assert g[("erpsync_tenant_backlog_documents", (("lane", "bulk"), ("tenant", "intake-only")))] == 40
    assert g[("erpsync_tenant_backlog_documents", (("lane", "bulk"), ("tenant", "buffered")))] == 2
    assert g[("erpsync_tenant_backlog_documents", (("lane", "bulk"), ("tenant", "capped")))] == 7
    assert g[("erpsync_tenant_backlog_documents", (("lane", "interactive"), ("tenant", "capped")))] == 0
    assert ("erpsync_tenant_oldest_ready_seconds", (("tenant", "capped"),)) in g
