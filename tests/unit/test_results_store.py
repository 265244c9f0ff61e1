"""ResultsStore (worker/store/results.py) against fakeredis: job counters, duplicate index, batches, leases."""

from __future__ import annotations

import json
from collections import Counter
from types import SimpleNamespace
from typing import Any

import fakeredis
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

import worker.store.results as results_module
from worker.observability import metrics
from worker.settings import Settings
from worker.store.records import (
    CHANGED,
    CREATED,
    DOC_STATUSES,
    DUPLICATE,
    FAILED,
    JOB_FINAL,
    PENDING,
    UNKNOWN,
    UPDATED,
    BatchPlan,
    Claim,
    CreatedClaim,
    Record,
    parse_claim,
)
from worker.store.results import ResultsStore

RESULT_TTL = 3600
DEDUP_TTL = 7200
LEASE = 10

#: Every status counter at 0: a job's counters are this with a few set.
ZERO = dict.fromkeys(DOC_STATUSES, 0)


def make_settings() -> Settings:
    return Settings(
        key_prefix="t",
        result_ttl_seconds=RESULT_TTL,
        dedup_ttl_seconds=DEDUP_TTL,
        send_lease_seconds=LEASE,
        # a lease must outlast the longest POST (Settings refuses a lease shorter than the HTTP timeouts)
        http_connect_timeout=1.0,
        http_write_timeout=1.0,
        http_read_timeout=1.0,
        demo_tenant=False,
    )


def make_store() -> ResultsStore:
    return ResultsStore(fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True), make_settings())


@pytest.fixture
def store() -> ResultsStore:
    return make_store()


def add_job(store: ResultsStore, job_id: str, n: int, **meta: str) -> list[str]:
    external_ids = [f"{job_id}-X{i}" for i in range(n)]
    docs = [json.dumps({"ExternalId": x, "i": i}) for i, x in enumerate(external_ids)]
    store.create_job({"job_id": job_id, "tenant": "acme", "kind": "customer_invoice", **meta}, docs, external_ids)
    return external_ids


def counters(store: ResultsStore, job_id: str) -> dict[str, int]:
    job = store.job(job_id)
    assert job is not None
    return {s: int(job[f"n_{s}"]) for s in DOC_STATUSES}


def set_status(store: ResultsStore, job_id: str, position: int, status: str, **fields: Any) -> None:
    store.set_records([(job_id, position, Record(f"{job_id}-X{position}", status, **fields))])


class PipelineSpy:
    """Counts the pipelines a store opens and every command sent outside them."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, store: ResultsStore) -> None:
        self.pipelines: list[Any] = []
        self.direct: list[tuple[Any, ...]] = []
        real_pipeline = store.r.pipeline
        real_execute = store.r.execute_command

        def pipeline(transaction: bool = True, shard_hint: Any = None) -> Any:
            pipe = real_pipeline(transaction=transaction, shard_hint=shard_hint)
            self.pipelines.append(pipe)
            return pipe

        def execute_command(*args: Any, **options: Any) -> Any:
            self.direct.append(args)
            return real_execute(*args, **options)

        monkeypatch.setattr(store.r, "pipeline", pipeline)
        monkeypatch.setattr(store.r, "execute_command", execute_command)


# ----- create_job


def test_create_job_stores_documents_records_counters_and_ttls(store: ResultsStore) -> None:
    ids = add_job(store, "j1", 3, source="pos.jsonl")
    r = store.r

    job = store.job("j1")
    assert job is not None
    assert job["job_id"] == "j1" and job["tenant"] == "acme" and job["source"] == "pos.jsonl"
    assert job["status"] == "queued"
    assert job["total"] == "3"
    assert counters(store, "j1") == {**ZERO, PENDING: 3}
    assert job["created_at"] == job["updated_at"]

    assert [json.loads(d)["ExternalId"] for d in store.documents("j1")] == ids
    records = store.records("j1")
    assert [rec.external_id for rec in records] == ids
    assert all(rec.status == PENDING and rec.batch_id is None and rec.key is None for rec in records)
    assert store.record("j1", 1) == records[1]
    assert store.record("j1", 3) is None
    assert store.statuses("j1") == {}  # missing = pending

    for key in ("t:job:j1", "t:job:j1:docs", "t:job:j1:records"):
        assert 0 < r.ttl(key) <= RESULT_TTL, key
    assert r.zscore("t:jobs", "j1") is not None
    assert store.job("nope") is None


def test_create_job_with_more_than_one_chunk_keeps_every_document_in_order(store: ResultsStore) -> None:
    add_job(store, "big", 2345)
    docs = store.documents("big")
    assert len(docs) == 2345
    assert [json.loads(d)["i"] for d in docs] == list(range(2345))
    records = store.records("big")
    assert len(records) == 2345
    assert records[2344].external_id == "big-X2344"  # sorted by position as a number, not as text
    assert counters(store, "big")[PENDING] == 2345


def test_mark_running_only_moves_a_queued_job(store: ResultsStore) -> None:
    add_job(store, "j1", 1)
    store.mark_running("j1")
    job = store.job("j1")
    assert job is not None and job["status"] == "running" and job["started_at"]
    started = job["started_at"]
    set_status(store, "j1", 0, CREATED, key=1)
    store.mark_running("j1")  # redelivered job: its final status stays
    job = store.job("j1")
    assert job is not None and job["status"] == "succeeded" and job["started_at"] == started


# ----- set_records: counters and job status


def test_first_change_moves_the_job_from_queued_to_running(store: ResultsStore) -> None:
    add_job(store, "j1", 3)
    set_status(store, "j1", 0, FAILED, error="bad")
    job = store.job("j1")
    assert job is not None
    assert job["status"] == "running"
    assert "finished_at" not in job
    assert counters(store, "j1") == {**ZERO, PENDING: 2, FAILED: 1}
    assert store.statuses("j1") == {0: FAILED}
    assert 0 < store.r.ttl("t:job:j1:status") <= RESULT_TTL
    rec = store.record("j1", 0)
    assert rec is not None and rec.status == FAILED and rec.error == "bad" and rec.updated_at


@pytest.mark.parametrize(
    ("statuses", "final"),
    [
        ([CREATED, CREATED, CREATED], "succeeded"),
        ([CREATED, DUPLICATE, DUPLICATE], "succeeded"),
        ([DUPLICATE, DUPLICATE, DUPLICATE], "succeeded"),
        ([FAILED, FAILED, FAILED], "failed"),
        ([FAILED, UNKNOWN, UNKNOWN], "failed"),
        ([UNKNOWN, UNKNOWN, UNKNOWN], "failed"),
        ([CREATED, FAILED, FAILED], "partial"),
        ([DUPLICATE, UNKNOWN, FAILED], "partial"),
        ([FAILED, CREATED, UNKNOWN], "partial"),
    ],
)
def test_job_finishes_exactly_when_no_document_is_pending(store: ResultsStore, statuses: list[str], final: str) -> None:
    add_job(store, "j1", len(statuses))
    for position, status in enumerate(statuses):
        job = store.job("j1")
        assert job is not None
        assert job["status"] == ("queued" if position == 0 else "running")
        assert "finished_at" not in job
        set_status(store, "j1", position, status, key=position if status == CREATED else None)
    job = store.job("j1")
    assert job is not None
    assert job["status"] == final
    assert job["finished_at"] == job["updated_at"]
    expected = Counter(statuses)
    assert counters(store, "j1") == {s: expected.get(s, 0) for s in DOC_STATUSES}


def test_updates_in_one_call_are_applied_in_order_and_across_jobs(store: ResultsStore) -> None:
    add_job(store, "a", 2)
    add_job(store, "b", 1)
    store.set_records(
        [
            ("a", 0, Record("a-X0", UNKNOWN)),
            ("b", 0, Record("b-X0", CREATED, key=7, number="F7")),
            ("a", 0, Record("a-X0", CREATED, key=8)),  # later in the same call wins
            ("a", 1, Record("a-X1", DUPLICATE, key=9)),
        ]
    )
    assert counters(store, "a") == {**ZERO, CREATED: 1, DUPLICATE: 1}
    assert counters(store, "b")[CREATED] == 1
    a, b = store.job("a"), store.job("b")
    assert a is not None and b is not None
    assert a["status"] == "succeeded" and b["status"] == "succeeded"
    rec = store.record("b", 0)
    assert rec is not None and rec.key == 7 and rec.number == "F7"


def test_set_records_is_one_round_trip_and_empty_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    store = make_store()
    add_job(store, "j1", 2)
    spy = PipelineSpy(monkeypatch, store)
    store.set_records([])
    assert spy.pipelines == [] and spy.direct == []
    store.set_records([("j1", 0, Record("j1-X0", FAILED)), ("j1", 1, Record("j1-X1", CREATED, key=1))])
    assert len(spy.pipelines) == 1
    assert spy.direct == []  # nothing outside the pipeline: every change went through the Lua script
    assert counters(store, "j1")[FAILED] == 1


@pytest.mark.parametrize("final", [CREATED, DUPLICATE])
@pytest.mark.parametrize("later", [UNKNOWN, FAILED, PENDING, CREATED, DUPLICATE])
def test_created_and_duplicate_are_final(store: ResultsStore, final: str, later: str) -> None:
    add_job(store, "j1", 2)
    set_status(store, "j1", 0, final, key=11, number="N11")
    before_job = store.job("j1")
    before_record = store.r.hget("t:job:j1:records", "0")
    set_status(store, "j1", 0, later, key=99, error="late message")
    assert store.job("j1") == before_job  # counters, status and updated_at untouched
    assert store.r.hget("t:job:j1:records", "0") == before_record
    rec = store.record("j1", 0)
    assert rec is not None and rec.status == final and rec.key == 11 and rec.error is None


def test_same_status_rewrites_the_record_but_not_the_counters(store: ResultsStore) -> None:
    add_job(store, "j1", 2)
    set_status(store, "j1", 0, PENDING, batch_id="j1.0")
    job = store.job("j1")
    assert job is not None and job["status"] == "queued"
    assert counters(store, "j1")[PENDING] == 2
    rec = store.record("j1", 0)
    assert rec is not None and rec.batch_id == "j1.0"


def test_unknown_resolved_later_turns_a_partial_job_into_succeeded(store: ResultsStore) -> None:
    add_job(store, "j1", 2)
    set_status(store, "j1", 0, CREATED, key=1)
    set_status(store, "j1", 1, UNKNOWN, error="timeout")
    job = store.job("j1")
    assert job is not None and job["status"] == "partial"
    set_status(store, "j1", 1, CREATED, key=2)  # reconciliation found it
    job = store.job("j1")
    assert job is not None and job["status"] == "succeeded"
    assert counters(store, "j1") == {**ZERO, CREATED: 2}


def test_a_document_back_to_pending_reopens_a_finished_job(store: ResultsStore) -> None:
    add_job(store, "j1", 2)
    set_status(store, "j1", 0, FAILED)
    set_status(store, "j1", 1, FAILED)
    set_status(store, "j1", 1, PENDING)
    job = store.job("j1")
    assert job is not None and job["n_pending"] == "1"
    assert job["status"] not in JOB_FINAL


def test_updates_of_jobs_interleaved_in_one_call_each_land_on_their_job(store: ResultsStore) -> None:
    """A call's updates are applied a run of one job at a time: interleaved jobs, and a job that is gone."""
    add_job(store, "a", 3)
    add_job(store, "b", 2)
    updates = [("a", 0, CREATED), ("b", 0, FAILED), ("a", 1, CREATED), ("gone", 0, CREATED), ("gone", 1, CREATED),
               ("a", 0, FAILED), ("b", 1, DUPLICATE), ("a", 2, UNKNOWN)]  # fmt: skip
    args: list[Any] = [store.p, "2026-11-21T00:00:00.000Z", 3600, ""]
    got = store._set_records(args=args + [x for job, pos, status in updates for x in (job, pos, status, "{}")])
    assert got == [1, 1, 1, -1, -1, 0, 1, 1]  # a#0 is created: final, the later FAILED is refused
    assert counters(store, "a") == {**ZERO, CREATED: 2, UNKNOWN: 1}
    assert counters(store, "b") == {**ZERO, FAILED: 1, DUPLICATE: 1}
    a, b = store.job("a"), store.job("b")
    assert a is not None and b is not None
    assert (a["status"], b["status"]) == ("partial", "partial")
    assert store.r.smembers(f"{store.p}:open_jobs") == set()
    counted = store.r.hgetall(metrics.key(store.p, metrics.DOCUMENTS))
    assert {f.rpartition("|")[2]: int(v) for f, v in counted.items()} == {CREATED: 2, UNKNOWN: 1, FAILED: 1,
                                                                          DUPLICATE: 1}  # fmt: skip
    assert store.job("gone") is None


def test_set_records_on_an_expired_job_creates_nothing(store: ResultsStore) -> None:
    store.set_records([("gone", 0, Record("x", FAILED))])
    assert store.job("gone") is None
    assert store.r.keys("t:job:gone*") == []


def test_jobs_index_does_not_keep_jobs_older_than_the_result_ttl(
    store: ResultsStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(results_module, "time", SimpleNamespace(time=lambda: 1_000_000.0))
    add_job(store, "old", 1)
    monkeypatch.setattr(results_module, "time", SimpleNamespace(time=lambda: 1_000_000.0 + RESULT_TTL + 1))
    add_job(store, "new", 1)
    assert store.r.zscore("t:jobs", "old") is None


# ----- property: counters always agree with the documents


def _expected_job_status(model: list[str], changed: bool) -> str:
    if not changed:
        return "queued"
    if PENDING in model:
        return "running"
    ok = sum(1 for s in model if s in (CREATED, DUPLICATE, UPDATED))
    return "succeeded" if ok == len(model) else "failed" if ok == 0 else "partial"


@st.composite
def _updates(draw: st.DrawFn, statuses: tuple[str, ...]) -> tuple[int, list[list[tuple[int, str]]]]:
    n = draw(st.integers(min_value=1, max_value=6))
    update = st.tuples(st.integers(min_value=0, max_value=n - 1), st.sampled_from(statuses))
    calls = draw(st.lists(st.lists(update, min_size=1, max_size=4), max_size=8))
    return n, calls


def _apply_and_model(calls: list[list[tuple[int, str]]], n: int, check_status: bool) -> None:
    store = make_store()
    add_job(store, "p", n)
    model = [PENDING] * n
    changed = False
    entered: Counter[str] = Counter()  # erpsync_documents_total: changes into each status but pending
    for call in calls:
        store.set_records([("p", pos, Record(f"p-X{pos}", status)) for pos, status in call])
        for pos, status in call:
            if model[pos] not in (CREATED, DUPLICATE, CHANGED, UPDATED) and model[pos] != status:
                model[pos] = status
                changed = True
                entered[status] += status != PENDING
        counted = store.r.hgetall(metrics.key(store.p, metrics.DOCUMENTS))
        assert {f.rpartition("|")[2]: int(v) for f, v in counted.items()} == +entered
        got = counters(store, "p")
        assert sum(got.values()) == n
        assert got[PENDING] == model.count(PENDING)
        assert got == {s: model.count(s) for s in DOC_STATUSES}
        assert [rec.status for rec in store.records("p")] == model
        if check_status:
            job = store.job("p")
            assert job is not None
            assert job["status"] == _expected_job_status(model, changed)


@hsettings(
    max_examples=60, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(_updates(DOC_STATUSES))
def test_property_counters_sum_to_total_and_match_last_effective_status(
    case: tuple[int, list[list[tuple[int, str]]]],
) -> None:
    n, calls = case
    _apply_and_model(calls, n, check_status=False)


@hsettings(
    max_examples=60, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(_updates((CREATED, FAILED, DUPLICATE, UNKNOWN)))
def test_property_job_status_is_final_exactly_when_nothing_is_pending(
    case: tuple[int, list[list[tuple[int, str]]]],
) -> None:
    n, calls = case
    _apply_and_model(calls, n, check_status=True)


# ----- duplicate index


def test_claim_mine_again_mine_other_claimed(store: ResultsStore) -> None:
    assert store.claim("acme", "customer_invoice", "R-1", "j1#0") == Claim("mine", "j1#0")
    assert store.r.get("t:dedup:acme:customer_invoice:R-1") == "claimed|j1#0"
    assert 0 < store.r.ttl("t:dedup:acme:customer_invoice:R-1") <= DEDUP_TTL
    assert store.claim("acme", "customer_invoice", "R-1", "j1#0") == Claim("mine", "j1#0")
    assert store.claim("acme", "customer_invoice", "R-1", "j2#5") == Claim("claimed", "j1#0")
    # other tenant or kind: another index entry
    assert store.claim("other", "customer_invoice", "R-1", "j2#5").state == "mine"
    assert store.claim("acme", "order", "R-1", "j2#5").state == "mine"
    assert store.lookup("acme", "customer_invoice", "R-1") == Claim("claimed", "j1#0")
    assert store.lookup("acme", "customer_invoice", "R-404") is None


def test_claim_answers_created_with_key_and_number_after_complete_batch(store: ResultsStore) -> None:
    assert store.claim("acme", "customer_invoice", "R-1", "j1#0").state == "mine"
    assert store.claim("acme", "customer_invoice", "R-2", "j1#1").state == "mine"
    store.complete_batch(
        "b1",
        "created",
        [],
        created=[
            CreatedClaim("acme", "customer_invoice", "R-1", "j1#0", 1001, "INV-7"),
            CreatedClaim("acme", "customer_invoice", "R-2", "j1#1", 1002, None),
        ],
    )
    assert store.claim("acme", "customer_invoice", "R-1", "j9#0") == Claim("created", "j1#0", 1001, "INV-7")
    assert store.claim("acme", "customer_invoice", "R-1", "j1#0") == Claim("created", "j1#0", 1001, "INV-7")
    assert store.claim("acme", "customer_invoice", "R-2", "j9#1") == Claim("created", "j1#1", 1002, None)
    assert 0 < store.r.ttl("t:dedup:acme:customer_invoice:R-1") <= DEDUP_TTL


def test_release_only_deletes_the_claim_of_its_owner(store: ResultsStore) -> None:
    store.claim("acme", "customer_invoice", "R-1", "j1#0")
    store.release("acme", "customer_invoice", "R-1", "j2#0")  # not the owner
    assert store.lookup("acme", "customer_invoice", "R-1") == Claim("claimed", "j1#0")
    store.release("acme", "customer_invoice", "R-1", "j1#0")
    assert store.lookup("acme", "customer_invoice", "R-1") is None
    assert store.claim("acme", "customer_invoice", "R-1", "j2#0") == Claim("mine", "j2#0")


def test_release_never_deletes_a_created_entry(store: ResultsStore) -> None:
    store.complete_batch(
        "b1", "created", [], created=[CreatedClaim("acme", "customer_invoice", "R-1", "j1#0", 5, "N5")]
    )
    store.release("acme", "customer_invoice", "R-1", "j1#0")
    assert store.lookup("acme", "customer_invoice", "R-1") == Claim("created", "j1#0", 5, "N5")


def test_claim_retries_when_the_entry_is_released_between_set_and_get(
    store: ResultsStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.claim("acme", "customer_invoice", "R-1", "j1#0")
    real_get = store.r.get
    calls: list[str] = []

    def get_after_release(key: str) -> Any:
        if not calls:
            calls.append(key)
            store.release("acme", "customer_invoice", "R-1", "j1#0")
            return None
        return real_get(key)

    monkeypatch.setattr(store.r, "get", get_after_release)
    assert store.claim("acme", "customer_invoice", "R-1", "j2#0") == Claim("mine", "j2#0")


def test_claim_gives_up_when_the_entry_keeps_changing(store: ResultsStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store.r, "set", lambda *a, **k: None)
    monkeypatch.setattr(store.r, "get", lambda *a, **k: None)
    with pytest.raises(RuntimeError, match="keeps changing"):
        store.claim("acme", "customer_invoice", "R-1", "j1#0")


def test_claim_all_agrees_with_claim(store: ResultsStore) -> None:
    store.claim("acme", "customer_invoice", "R-other", "j0#0")
    store.complete_batch(
        "b0", "created", [], created=[CreatedClaim("acme", "customer_invoice", "R-done", "j0#1", 9, "N9")]
    )
    store.claim("acme", "customer_invoice", "R-again", "j1#2")
    pairs = [("R-new", "j1#0"), ("R-other", "j1#1"), ("R-again", "j1#2"), ("R-done", "j1#3")]
    claims = store.claim_all([("acme", "customer_invoice", x, owner) for x, owner in pairs])
    assert claims == [
        Claim("mine", "j1#0"),
        Claim("claimed", "j0#0"),
        Claim("mine", "j1#2"),
        Claim("created", "j0#1", 9, "N9"),
    ]
    assert store.lookup("acme", "customer_invoice", "R-new") == Claim("claimed", "j1#0")
    assert 0 < store.r.ttl("t:dedup:acme:customer_invoice:R-new") <= DEDUP_TTL
    assert store.claim_all([]) == []


@pytest.mark.parametrize(
    ("value", "owner", "expected"),
    [
        ("claimed|j1#0", "j1#0", Claim("mine", "j1#0")),
        ("claimed|j1#0", "j2#0", Claim("claimed", "j1#0")),
        ("created|j1#0|42|INV-1", "j2#0", Claim("created", "j1#0", 42, "INV-1")),
        ("created|j1#0|42|", "j1#0", Claim("created", "j1#0", 42, None)),
    ],
)
def test_parse_claim(value: str, owner: str, expected: Claim) -> None:
    assert parse_claim(value, owner) == expected


# ----- batches


def plan_for(job_id: str, positions: list[int], batch_id: str) -> BatchPlan:
    return BatchPlan(
        batch_id=batch_id,
        meta={"tenant": "acme", "kind": "customer_invoice", "target": "softone"},
        members=[(job_id, p) for p in positions],
        body=json.dumps([{"ExternalId": f"{job_id}-X{p}"} for p in positions]),
        records=[(job_id, p, Record(f"{job_id}-X{p}", PENDING, batch_id=batch_id)) for p in positions],
    )


def test_commit_batches_stores_batches_and_points_records_at_them_in_one_transaction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = make_store()
    add_job(store, "j1", 5)
    spy = PipelineSpy(monkeypatch, store)
    plans = [plan_for("j1", [0, 1, 2], "j1.0"), plan_for("j1", [3], "j1.3")]
    store.commit_batches(plans)

    assert len(spy.pipelines) == 1 and spy.pipelines[0].transaction is True
    assert spy.direct == []

    batch = store.batch("j1.0")
    assert batch is not None
    assert batch["state"] == "queued"
    assert batch["attempts"] == "0"
    assert batch["size"] == "3"
    assert batch["tenant"] == "acme" and batch["kind"] == "customer_invoice"
    assert json.loads(batch["members"]) == [["j1", 0], ["j1", 1], ["j1", 2]]
    assert batch["body"] == plans[0].body
    assert 0 < store.r.ttl("t:batch:j1.0") <= RESULT_TTL
    assert [rec.batch_id for rec in store.records("j1")] == ["j1.0", "j1.0", "j1.0", "j1.3", None]
    assert counters(store, "j1")[PENDING] == 5  # planning changes no status
    job = store.job("j1")
    assert job is not None and job["status"] == "queued"


def test_commit_batches_with_nothing_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    store = make_store()
    spy = PipelineSpy(monkeypatch, store)
    store.commit_batches([])
    assert spy.pipelines == [] and spy.direct == []
    assert store.batch("x") is None


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """A fake clock for worker.store.results only (fakeredis keeps the real one)."""
    fake = SimpleNamespace(now=1_700_000_000.0)
    monkeypatch.setattr(results_module, "time", SimpleNamespace(time=lambda: fake.now))
    return fake


def test_acquire_batch_lease_cycle(store: ResultsStore, clock: SimpleNamespace) -> None:
    assert store.acquire_batch("nope", "w1") == ("missing", 0.0)
    add_job(store, "j1", 2)
    store.commit_batches([plan_for("j1", [0, 1], "j1.0")])

    assert store.acquire_batch("j1.0", "w1") == ("acquired", 1.0)
    batch = store.batch("j1.0")
    assert batch is not None
    assert batch["state"] == "sending" and batch["sender"] == "w1" and batch["attempts"] == "1"
    assert float(batch["lease_until"]) == pytest.approx(clock.now + LEASE)

    clock.now += 3
    state, remaining = store.acquire_batch("j1.0", "w2")
    assert state == "busy"
    assert remaining == pytest.approx(LEASE - 3)
    batch = store.batch("j1.0")
    assert batch is not None and batch["sender"] == "w1" and batch["attempts"] == "1"

    store.set_batch_state("j1.0", "waiting")  # transient error: back off, then try again
    assert store.acquire_batch("j1.0", "w2") == ("acquired", 2.0)
    clock.now += LEASE + 0.5
    assert store.acquire_batch("j1.0", "w3") == ("expired", 0.0)
    batch = store.batch("j1.0")
    assert batch is not None and batch["state"] == "sending" and batch["attempts"] == "2"  # not taken over

    store.complete_batch("j1.0", "unknown", [])
    assert store.acquire_batch("j1.0", "w3") == ("done", 0.0)
    batch = store.batch("j1.0")
    assert batch is not None and batch["attempts"] == "2"


def test_lease_expires_at_its_end(store: ResultsStore, clock: SimpleNamespace) -> None:
    add_job(store, "j1", 1)
    store.commit_batches([plan_for("j1", [0], "j1.0")])
    assert store.acquire_batch("j1.0", "w1")[0] == "acquired"
    clock.now += LEASE - 0.001
    assert store.acquire_batch("j1.0", "w1")[0] == "busy"
    clock.now += 0.001
    assert store.acquire_batch("j1.0", "w1")[0] == "expired"


def test_complete_batch_writes_everything_in_one_transaction(monkeypatch: pytest.MonkeyPatch) -> None:
    store = make_store()
    add_job(store, "j1", 3)
    store.commit_batches([plan_for("j1", [0, 1], "j1.0"), plan_for("j1", [2], "j1.2")])
    for pos in range(3):
        assert store.claim("acme", "customer_invoice", f"j1-X{pos}", f"j1#{pos}").state == "mine"
    store.claim("acme", "customer_invoice", "someone-else", "j7#0")

    spy = PipelineSpy(monkeypatch, store)
    store.complete_batch(
        "j1.0",
        "created",
        [
            ("j1", 0, Record("j1-X0", CREATED, key=100, number="F100", batch_id="j1.0")),
            ("j1", 1, Record("j1-X1", CREATED, key=101, number="F101", batch_id="j1.0")),
        ],
        created=[
            CreatedClaim("acme", "customer_invoice", "j1-X0", "j1#0", 100, "F100"),
            CreatedClaim("acme", "customer_invoice", "j1-X1", "j1#1", 101, "F101"),
        ],
        released=[
            ("acme", "customer_invoice", "j1-X2", "j1#2"),
            ("acme", "customer_invoice", "someone-else", "j1#9"),  # not ours: stays
        ],
    )
    assert len(spy.pipelines) == 1 and spy.pipelines[0].transaction is True
    assert spy.direct == []

    batch = store.batch("j1.0")
    assert batch is not None and batch["state"] == "done" and batch["outcome"] == "created"
    recs = store.records("j1")
    assert [(r.status, r.key, r.number) for r in recs] == [
        (CREATED, 100, "F100"),
        (CREATED, 101, "F101"),
        (PENDING, None, None),
    ]
    assert counters(store, "j1") == {**ZERO, PENDING: 1, CREATED: 2}
    assert store.lookup("acme", "customer_invoice", "j1-X0") == Claim("created", "j1#0", 100, "F100")
    assert store.lookup("acme", "customer_invoice", "j1-X1") == Claim("created", "j1#1", 101, "F101")
    assert store.lookup("acme", "customer_invoice", "j1-X2") is None
    assert store.lookup("acme", "customer_invoice", "someone-else") == Claim("claimed", "j7#0")
    job = store.job("j1")
    assert job is not None and job["status"] == "running"


def test_complete_batch_failed_finishes_the_job(store: ResultsStore) -> None:
    add_job(store, "j1", 2)
    store.commit_batches([plan_for("j1", [0, 1], "j1.0")])
    store.complete_batch(
        "j1.0",
        "failed",
        [("j1", p, Record(f"j1-X{p}", FAILED, error="400", batch_id="j1.0")) for p in (0, 1)],
        released=[("acme", "customer_invoice", f"j1-X{p}", f"j1#{p}") for p in (0, 1)],
    )
    job = store.job("j1")
    assert job is not None and job["status"] == "failed" and job["n_failed"] == "2"
    rec = store.record("j1", 1)
    assert rec is not None and rec.batch_id == "j1.0" and rec.error == "400"


def test_log_attempt_and_attempts_round_trip(store: ResultsStore) -> None:
    assert store.attempts("b1") == []
    store.log_attempt("b1", {"attempt": 1, "outcome": "transient", "status": 503, "error": "Ωμέγα unavailable"})
    store.log_attempt("b1", {"attempt": 2, "outcome": "created", "keys": 3, "ms": 12})
    log = store.attempts("b1")
    assert [e["attempt"] for e in log] == [1, 2]
    assert log[0]["outcome"] == "transient" and log[0]["status"] == 503 and log[0]["error"] == "Ωμέγα unavailable"
    assert log[1] == {"at": log[1]["at"], "attempt": 2, "outcome": "created", "keys": 3, "ms": 12}
    assert log[0]["at"].endswith("Z")
    assert 0 < store.r.ttl("t:batch:b1:log") <= RESULT_TTL


def test_record_json_round_trip() -> None:
    rec = Record("R-1", CREATED, key=5, number="N5", errors=[{"field": "x", "message": "y"}], batch_id="b")
    back = Record.from_json(rec.to_json())
    assert back.external_id == "R-1" and back.key == 5 and back.errors == [{"field": "x", "message": "y"}]
    assert back.updated_at  # filled in when missing
