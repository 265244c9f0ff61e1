"""A results store (fakeredis) holding one SoftOne batch `b1` of two claimed invoices of job `j1`, for the tests of
what the send step does with it (tests/unit/test_lost_sender.py, test_outages.py)."""

from __future__ import annotations

import fakeredis

from worker.settings import Settings
from worker.store.records import PENDING, BatchPlan, Record
from worker.store.results import ResultsStore


def store_with_a_batch(settings: Settings) -> ResultsStore:
    store = ResultsStore(fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True), settings)
    store.create_job(
        {"job_id": "j1", "tenant": "demo", "target": "softone", "kind": "customer_invoice"},
        ['{"ExternalId": "R-0"}', '{"ExternalId": "R-1"}'],
        ["R-0", "R-1"],
    )
    meta = {"tenant": "demo", "kind": "customer_invoice", "target": "softone", "external_ids": '["R-0", "R-1"]'}
    records = [("j1", i, Record(f"R-{i}", PENDING, batch_id="b1")) for i in (0, 1)]
    plan = BatchPlan("b1", meta, [("j1", 0), ("j1", 1)], '[{"ExternalId": "R-0"}, {"ExternalId": "R-1"}]', records)
    store.commit_batches([plan])
    for i in (0, 1):
        store.claim("demo", "customer_invoice", f"R-{i}", f"j1#{i}")
    return store
