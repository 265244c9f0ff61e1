"""Streaming jobs and the intake queue (worker/store/results.py, worker/store/intake.py) against fakeredis.

A job streamed in chunks is `receiving` until its producer closes it: it may be worked on, but never
finishes early, even if every stored document already has its outcome. Intake items are taken by
document budget, and a holder that died finds its items again.
"""

from __future__ import annotations

import json

import fakeredis
from hypothesis import given
from hypothesis import strategies as st

from schemas.kinds import Lane
from worker.settings import Settings
from worker.store.intake import IntakeQueue, Item
from worker.store.records import CREATED, FAILED, Record
from worker.store.results import ResultsStore


def make() -> tuple[ResultsStore, IntakeQueue]:
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
    settings = Settings(key_prefix="t", intake_chunk_docs=100, demo_tenant=False)
    return ResultsStore(client, settings), IntakeQueue(client, settings)


def item(job_id: str, start: int, end: int) -> Item:
    """A bulk item of tenant acme: one tenant and lane, so the queue is first in, first out."""
    return Item(job_id, start, end, "acme", Lane.BULK)


def append(store: ResultsStore, job_id: str, start: int, n: int) -> None:
    ids = [f"{job_id}-{i}" for i in range(start, start + n)]
    store.append_documents(job_id, start, [json.dumps({"ExternalId": x}) for x in ids], ids)


def test_a_receiving_job_does_not_finish_until_closed() -> None:
    store, _ = make()
    store.open_job({"job_id": "j", "tenant": "acme", "kind": "customer_invoice"})
    append(store, "j", 0, 2)
    store.set_records([("j", 0, Record("j-0", CREATED, key=1)), ("j", 1, Record("j-1", FAILED, error="bad"))])
    job = store.job("j")
    assert job is not None and job["status"] == "receiving" and job["n_pending"] == "0"
    assert store.r.sismember("t:open_jobs", "j")

    append(store, "j", 2, 1)  # more arrives: pending again, still receiving
    store.close_job("j")
    job = store.job("j")
    assert job is not None and job["status"] == "queued" and job["total"] == "3" and job["n_pending"] == "1"

    store.set_records([("j", 2, Record("j-2", CREATED, key=2))])
    job = store.job("j")
    assert job is not None and job["status"] == "partial" and job["finished_at"]
    assert not store.r.sismember("t:open_jobs", "j")


def test_closing_a_job_whose_documents_all_have_outcomes_finishes_it() -> None:
    store, _ = make()
    store.open_job({"job_id": "j", "tenant": "acme", "kind": "customer_invoice"})
    append(store, "j", 0, 1)
    store.mark_running("j")  # a worker got to it first: started, but receiving
    store.set_records([("j", 0, Record("j-0", CREATED, key=7))])
    store.close_job("j")
    job = store.job("j")
    assert job is not None and job["status"] == "succeeded" and job["received_at"]
    store.close_job("j")  # twice is harmless
    assert (store.job("j") or {})["status"] == "succeeded"


def test_a_closed_job_that_a_worker_started_is_running() -> None:
    store, _ = make()
    store.open_job({"job_id": "j", "tenant": "acme", "kind": "customer_invoice"})
    append(store, "j", 0, 2)
    store.mark_running("j")
    assert (store.job("j") or {})["status"] == "receiving"
    store.close_job("j")
    assert (store.job("j") or {})["status"] == "running"


def test_mark_running_never_creates_a_husk_for_a_missing_job() -> None:
    store, _ = make()
    store.mark_running("gone")
    assert not store.r.exists("t:job:gone")


def test_intake_state_reads_ranges_of_several_jobs_in_one_go() -> None:
    store, _ = make()
    for job_id in ("a", "b"):
        store.open_job({"job_id": job_id, "tenant": "acme", "kind": "customer_invoice"})
        append(store, job_id, 0, 5)
        store.close_job(job_id)
    store.r.hset("t:job:b:assigned", mapping={"3": "buffer", "4": "b@4", "0": "b@0"})
    a, b, gone = store.intake_state([("a", 1, 3), ("b", 2, 5), ("gone", 0, 2)])
    assert [r.external_id for r in a.records if r] == ["a-1", "a-2"]
    assert [json.loads(d)["ExternalId"] for d in b.documents] == ["b-2", "b-3", "b-4"]
    assert b.assigned == {3: "buffer", 4: "b@4"} and a.assigned == {}  # the range's positions only
    assert a.job["status"] == "running"
    assert gone.job == {} and gone.documents == [] and not store.r.exists("t:job:gone")


def test_take_moves_items_up_to_the_document_budget() -> None:
    _, intake = make()
    intake.push([item("j1", 0, 60), item("j2", 0, 30), item("j3", 0, 30), item("j4", 0, 1)])
    assert intake.take("h1") == [item("j1", 0, 60), item("j2", 0, 30), item("j3", 0, 30)]  # stops past 100
    assert intake.waiting() == 1
    assert intake.take("h2", max_docs=1) == [item("j4", 0, 1)]
    assert intake.take("h3") == []


def test_a_holder_that_died_finds_its_items_again_until_done() -> None:
    _, intake = make()
    intake.push([item("j|with|bars", 0, 10), item("j2", 5, 9)])
    first = intake.take("task-1")
    assert first == [item("j|with|bars", 0, 10), item("j2", 5, 9)]
    intake.push([item("j3", 0, 1)])
    assert intake.take("task-1") == first  # redelivered under the same id: the same items, no new ones
    intake.done("task-1")
    assert intake.take("task-1") == [item("j3", 0, 1)]


@given(st.lists(st.integers(min_value=1, max_value=250), max_size=40), st.integers(min_value=1, max_value=300))
def test_every_item_is_taken_once_in_order(sizes: list[int], budget: int) -> None:
    _, intake = make()
    items = [item(f"j{i}", 0, n) for i, n in enumerate(sizes)]
    intake.push(items)
    taken: list[Item] = []
    for n in range(len(items) + 1):
        got = intake.take(f"h{n}", max_docs=budget)
        if not got:
            break
        assert sum(i.size for i in got[:-1]) < budget  # the budget is only ever passed by the last item
        intake.done(f"h{n}")
        taken += got
    assert taken == items
