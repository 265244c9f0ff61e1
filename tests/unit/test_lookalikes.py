"""Look-alikes: no two documents with one content signature of a tenant in flight at once.

The send step holds every signature of a SoftOne invoice batch before its POST (worker/pipeline/lookalikes.py); a
document whose signature another open batch holds is split off into a batch of its own, a batch whose every
signature is held elsewhere waits, and a batch that ends lets its holds go. Against fakeredis, with a fake ERP that
sends a second batch while the first one's request is out (as another sender would).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import DocumentKind, FilteredInvoice
from tests.unit.fake_runtime import capture_messages, fake_runtime
from worker.celery_app.enqueue import publish
from worker.connectors import Created
from worker.connectors.reconcile import lookalike_key, reconcile
from worker.errors import RetryLater
from worker.pipeline.send import send
from worker.settings import get_settings
from worker.store.records import CREATED, PENDING, BatchPlan, Record

TENANTS = {"tenants": [{"name": "demo", "company_api_key": "k1", "connect_api_key": "k2"}]}


def receipt(x: str, customer: str = "1001", product: str = "COFFEE", qty: Any = 1, price: Any = 32) -> dict[str, Any]:
    return {"ExternalId": x, "CustomerNr": customer, "InvoiceDate": "2026-11-20", "OriginType": 2,
            "InvoiceRows": [{"CustomerRowType": 2, "RowNr": 1, "ProductNr": product, "Quantity": qty,
                             "UnitPrice": price}]}  # fmt: skip


class Erp:
    """Answers every POST with increasing Keys; `during` runs while a request is out (another sender's turn)."""

    def __init__(self) -> None:
        self.next_key = 1000
        self.posts: list[tuple[str, list[str]]] = []
        self.during: dict[str, Callable[[], Any]] = {}

    def post_documents(self, kind: DocumentKind, body: bytes, request_id: str) -> list[Created]:
        docs = json.loads(body)
        self.posts.append((request_id, [d["ExternalId"] for d in docs]))
        if request_id in self.during:
            self.during.pop(request_id)()
        keys = list(range(self.next_key, self.next_key + len(docs)))
        self.next_key += len(docs)
        return [Created(k) for k in keys]

    def can_look_up(self, kind: DocumentKind) -> bool:
        return True

    def lookalike_keys(self, kind: DocumentKind, docs: list[dict[str, Any]]) -> list[str] | None:
        return [lookalike_key(d) for d in docs]


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dict[str, Any]]:
    from worker.pipeline import runtime

    path = tmp_path / "tenants.json"
    path.write_text(json.dumps(TENANTS), encoding="utf-8")
    monkeypatch.setenv("ERPSYNC_TENANTS_FILE", str(path))
    get_settings.cache_clear()
    parts = fake_runtime(monkeypatch, get_settings())
    parts["messages"] = capture_messages(monkeypatch)
    parts["erp"] = Erp()
    monkeypatch.setattr(runtime, "connector", lambda tenant: parts["erp"])
    yield parts
    get_settings.cache_clear()


def store_batch(stack: dict[str, Any], batch_id: str, docs: list[dict[str, Any]], high_water: int = 0) -> None:
    """A job of `docs` whose documents are all in one stored batch `batch_id`, claimed."""
    store = stack["store"]
    job_id = f"job-{batch_id}"
    xids = [d["ExternalId"] for d in docs]
    store.create_job({"job_id": job_id, "tenant": "demo", "target": "softone", "kind": "customer_invoice"},
                     [json.dumps(d) for d in docs], xids)  # fmt: skip
    meta = {"tenant": "demo", "kind": "customer_invoice", "target": "softone", "external_ids": json.dumps(xids),
            "high_water": str(high_water)}  # fmt: skip
    members = [(job_id, i) for i in range(len(docs))]
    records = [(job_id, i, Record(x, PENDING, batch_id=batch_id)) for i, x in enumerate(xids)]
    store.commit_batches([BatchPlan(batch_id, meta, members, json.dumps(docs), records)])
    for i, x in enumerate(xids):
        store.claim("demo", "customer_invoice", x, f"{job_id}#{i}")


def records(stack: dict[str, Any], batch_id: str) -> dict[str, Record]:
    return {r.external_id: r for r in stack["store"].records(f"job-{batch_id}")}


def test_a_look_alike_in_flight_elsewhere_is_split_off_and_sent_after_it(stack: dict[str, Any]) -> None:
    erp = stack["erp"]
    store_batch(stack, "b1", [receipt("A"), receipt("B", product="BUN")])
    store_batch(stack, "b2", [receipt("C"), receipt("D", product="TEA")])  # C looks like A
    outcomes: list[Any] = []
    erp.during["b1"] = lambda: outcomes.append(send(publish, "b2"))  # b2 goes while b1's request is out

    assert send(publish, "b1")["outcome"] == "created"
    assert outcomes[0]["outcome"] == "created"
    assert erp.posts == [("b1", ["A", "B"]), ("b2", ["D"])]  # C was not in flight beside A
    assert records(stack, "b2")["C"].status == PENDING
    assert records(stack, "b2")["C"].batch_id == "b2.l1"

    assert send(publish, "b2.l1")["outcome"] == "created"  # b1 is done: its holds are free
    assert erp.posts[-1] == ("b2.l1", ["C"])
    assert {x: r.status for x, r in records(stack, "b2").items()} == {"C": CREATED, "D": CREATED}
    assert stack["store"].r.hgetall("erpsync:lookalike:demo:customer_invoice") == {}


def test_a_batch_of_look_alikes_only_waits_and_sends_nothing(stack: dict[str, Any]) -> None:
    erp = stack["erp"]
    store_batch(stack, "b1", [receipt("A")])
    store_batch(stack, "b2", [receipt("C", qty=1.0, price="32.00"), receipt("E", qty="1")])  # one signature, as A's
    waited: list[RetryLater] = []

    def second_sender() -> None:
        with pytest.raises(RetryLater) as info:
            send(publish, "b2")
        waited.append(info.value)

    erp.during["b1"] = second_sender
    send(publish, "b1")
    assert waited[0].reason == "lookalike" and waited[0].countdown <= 1.0
    assert erp.posts == [("b1", ["A"])]
    assert stack["store"].batch("b2")["attempts"] == "0"  # nothing was sent: not an attempt

    send(publish, "b2")
    assert erp.posts[-1] == ("b2", ["C", "E"])  # look-alikes within one batch go together


def test_a_hold_of_a_batch_that_ended_or_vanished_is_free(stack: dict[str, Any]) -> None:
    holds = stack["lookalikes"]
    store_batch(stack, "b1", [receipt("A")])
    signature = lookalike_key(receipt("A"))
    stack["store"].r.hset("erpsync:lookalike:demo:customer_invoice", signature, "gone-batch")
    send(publish, "b1")
    assert stack["erp"].posts == [("b1", ["A"])]
    assert holds.holder("demo", "customer_invoice", signature) is None  # released with b1's end


def test_the_first_hold_raises_the_high_water_mark_to_the_highest_key_known(stack: dict[str, Any]) -> None:
    store = stack["store"]
    store.r.zadd("erpsync:erpkeys:demo:customer_invoice", {"1500": 1500})
    store_batch(stack, "b1", [receipt("A")], high_water=900)
    seen: list[str] = []
    stack["erp"].during["b1"] = lambda: seen.append(store.batch("b1")["high_water"])
    send(publish, "b1")
    assert seen == ["1500"]


# ----- the signature and the matching


@given(qty=st.sampled_from([6, 6.0, "6", "6.000"]), price=st.sampled_from([11.9, "11.90", "11.9000"]))
def test_a_signature_compares_numbers_by_value_and_ignores_row_order(qty: Any, price: Any) -> None:
    one = receipt("A", qty=6, price=11.9)
    one["InvoiceRows"].append({"CustomerRowType": 2, "RowNr": 2, "ProductNr": "BUN", "Quantity": 1, "UnitPrice": 25})
    other = receipt("B", qty=qty, price=price)
    other["InvoiceRows"].insert(0, {"RowNr": 2, "ProductNr": "BUN", "UnitPrice": 25.0, "Quantity": 1.0,
                                    "CustomerRowType": 2})  # fmt: skip
    assert lookalike_key(one) == lookalike_key(other)
    assert lookalike_key(one) != lookalike_key(receipt("C", qty=qty, price=price))


def filtered(key: int, doc: dict[str, Any], **extra: Any) -> FilteredInvoice:
    rows = [{"ProductNr": r["ProductNr"], "Quantity": r["Quantity"], "UnitPrice": r["UnitPrice"],
             "Text": r.get("Text", "")} for r in doc["InvoiceRows"]]  # fmt: skip
    head = {"InvoiceId": key, "CustomerNr": doc["CustomerNr"], "InvoiceDate": doc["InvoiceDate"]}
    return FilteredInvoice.model_validate({**head, "InvoiceRows": rows, **extra})


def test_details_the_filter_echoes_choose_our_invoice_over_a_look_alike_made_by_someone_else() -> None:
    ours = receipt("A")
    ours["DueDate"] = "2026-12-20"
    ours["InvoiceRows"][0]["Text"] = "Kaffe"
    someone_elses = filtered(1001, receipt("X"), DueDate="2026-12-01T00:00:00")
    mine = filtered(1002, ours, DueDate="2026-12-20T00:00:00")
    found = reconcile([ours], [someone_elses, mine], known_keys=set(), high_water=1000)
    assert found.matched[0].invoice_id == 1002

    # A detail that differs never makes a saved document look unsaved (an ERP may rewrite a text).
    rewritten = filtered(1003, receipt("A"), DueDate="2026-12-20T00:00:00")
    found = reconcile([ours], [rewritten], known_keys=set(), high_water=1000)
    assert found.matched[0].invoice_id == 1003


def test_a_split_off_batch_holds_nothing_until_it_can_hold_all_its_signatures(stack: dict[str, Any]) -> None:
    erp, holds, store = stack["erp"], stack["lookalikes"], stack["store"]
    store_batch(stack, "b1", [receipt("A")])
    store_batch(stack, "b2", [receipt("C"), receipt("D", product="TEA")])
    erp.during["b1"] = lambda: send(publish, "b2")  # C is split off while A is out
    send(publish, "b1")
    assert store.batch("b2.l1")["lookalikes_of"] == "b2"

    # A split-off batch of two signatures, one of them held by a batch in flight: it takes neither, and waits whole.
    store_batch(stack, "b3", [receipt("F", product="TEA")])
    store_batch(stack, "b4", [receipt("G"), receipt("H", product="TEA")])
    store.r.hset("erpsync:batch:b4", "lookalikes_of", "b0")
    waited: list[str] = []

    def second_sender() -> None:
        with pytest.raises(RetryLater) as info:
            send(publish, "b4")
        waited.append(info.value.reason)

    erp.during["b3"] = second_sender
    send(publish, "b3")
    assert waited == ["lookalike"] and ("b4", ["G", "H"]) not in erp.posts
    assert holds.holder("demo", "customer_invoice", lookalike_key(receipt("x"))) is None  # COFFEE was free: not taken
    send(publish, "b4")
    assert erp.posts[-1] == ("b4", ["G", "H"])
