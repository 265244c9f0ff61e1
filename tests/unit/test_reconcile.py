"""Reconciliation and poison isolation: content matching in save order, and what isolation costs.

The fake ERP below behaves as SoftOne does with an array: saves in order, stops at the first document it
rejects, returns no Keys then. The isolation loop drives the production `reconcile()`/`settle()`.
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import FilteredInvoice
from worker.connectors.reconcile import document_signature, invoice_signature, reconcile, settle


def doc(customer: str, product: str = "P1", qty: float = 1.0, price: float = 10.0, **extra: Any) -> dict[str, Any]:
    return {"CustomerNr": customer, "InvoiceDate": "2026-11-20", "OriginType": 2,
            "InvoiceRows": [{"CustomerRowType": 2, "RowNr": 1, "ProductNr": product, "Quantity": qty,
                             "UnitPrice": price}], **extra}  # fmt: skip


class FakeErp:
    """Prefix-saving SoftOne: documents for customers in `poison` are rejected."""

    def __init__(self, poison: set[str], first_key: int = 1000) -> None:
        self.poison = poison
        self.next_key = first_key
        self.saved: list[tuple[int, dict[str, Any]]] = []
        self.posts = 0
        self.filters = 0

    def post(self, docs: list[dict[str, Any]]) -> list[int] | None:
        self.posts += 1
        keys = []
        for d in docs:
            if d["CustomerNr"] in self.poison:
                return None  # Success: false, no Keys, the ones before stay saved
            self.saved.append((self.next_key, copy.deepcopy(d)))
            keys.append(self.next_key)
            self.next_key += 1
        return keys

    def filter(self) -> list[FilteredInvoice]:
        self.filters += 1
        return [
            FilteredInvoice.model_validate(
                {
                    "InvoiceId": key,
                    "CustomerNr": d["CustomerNr"],
                    "InvoiceDate": d["InvoiceDate"] + "T00:00:00",
                    "InvoiceRows": [
                        {
                            "ProductNr": r["ProductNr"],
                            "Quantity": r["Quantity"],
                            "UnitPrice": r.get("UnitPrice", r.get("Amount")),
                        }
                        for r in d["InvoiceRows"]
                    ],
                }
            )
            for key, d in self.saved
        ]


def isolate(erp: FakeErp, docs: list[dict[str, Any]]) -> tuple[dict[int, int], set[int], set[int]]:
    """Send a batch, settling rejections the way the send step does; returns (created, failed, unknown)."""
    created: dict[int, int] = {}
    failed: set[int] = set()
    unknown: set[int] = set()
    known: set[int] = set()
    pending = list(range(len(docs)))
    while pending:
        keys = erp.post([docs[i] for i in pending])
        if keys is not None:
            created.update(zip(pending, keys, strict=True))
            known.update(keys)
            return created, failed, unknown
        found = reconcile([docs[i] for i in pending], erp.filter(), known)
        plan = settle(found, len(pending), rejected=True)
        for local, key in plan.created.items():
            created[pending[local]] = key
            known.add(key)
        if plan.rejected is not None:
            failed.add(pending[plan.rejected])
        unknown.update(pending[i] for i in plan.doubtful)
        pending = [pending[i] for i in plan.resend]
    return created, failed, unknown


def test_signatures_agree_between_document_and_filter_answer() -> None:
    d = doc("1001", qty=6.0, price=11.9)
    row = {"ProductNr": "P1", "Quantity": 6, "UnitPrice": 11.9000}
    inv = FilteredInvoice.model_validate(
        {"InvoiceId": 1, "CustomerNr": "1001", "InvoiceDate": "2026-11-20T00:00:00", "InvoiceRows": [row]}
    )
    assert document_signature(d) == invoice_signature(inv)
    order_priced = doc("1001", price=350.0)
    del order_priced["InvoiceRows"][0]["UnitPrice"]
    order_priced["InvoiceRows"][0]["Amount"] = 350
    assert document_signature(order_priced) == document_signature(doc("1001", price=350.0))


def test_rejected_array_saved_prefix_is_found_and_the_rejected_one_named() -> None:
    erp = FakeErp(poison={"BAD"})
    docs = [doc("1"), doc("2"), doc("BAD"), doc("3")]
    assert erp.post(docs) is None
    found = reconcile(docs, erp.filter(), known_keys=set())
    plan = settle(found, 4, rejected=True)
    assert plan.created == {0: 1000, 1: 1001} and plan.rejected == 2 and plan.resend == [3] and not plan.doubtful


def test_identical_documents_are_matched_in_save_order() -> None:
    erp = FakeErp(poison=set())
    docs = [doc("1"), doc("1"), doc("1")]
    erp.post(docs[:2])  # e.g. the answer was lost after two were saved... then nothing else
    found = reconcile(docs, erp.filter(), known_keys=set())
    assert {i: inv.invoice_id for i, inv in found.matched.items()} == {0: 1000, 1: 1001}
    assert found.boundary == 2 and found.doubtful == []


def test_invoices_we_already_recorded_or_older_than_the_high_water_mark_are_not_candidates() -> None:
    erp = FakeErp(poison=set())
    erp.post([doc("1")])  # Key 1000 belongs to an earlier document of ours
    erp.post([doc("2")])  # Key 1001: older than the batch
    found = reconcile([doc("1"), doc("2")], erp.filter(), known_keys={1000}, high_water=1001)
    assert found.matched == {} and found.boundary == 0


def test_a_later_document_that_could_have_been_saved_is_doubtful_not_resent() -> None:
    erp = FakeErp(poison=set())
    erp.post([doc("9")])  # a foreign invoice with the same content as the batch's last document
    found = reconcile([doc("1"), doc("9")], erp.filter(), known_keys=set())
    plan = settle(found, 2, rejected=False)
    assert plan.created == {} and plan.resend == [0] and plan.doubtful == [1]


def test_lost_answer_with_everything_saved_resends_nothing() -> None:
    erp = FakeErp(poison=set())
    docs = [doc(str(i)) for i in range(5)]
    erp.post(docs)
    plan = settle(reconcile(docs, erp.filter(), set()), 5, rejected=False)
    assert plan.resend == [] and sorted(plan.created) == [0, 1, 2, 3, 4]


@given(
    st.lists(st.tuples(st.sampled_from(["1", "2", "3"]), st.booleans()), min_size=1, max_size=60),
)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_isolation_creates_each_good_document_once_at_one_filter_and_one_post_per_poison(
    spec: list[tuple[str, bool]],
) -> None:
    # Customers repeat on purpose: identical content is the hard case for matching.
    docs = [doc("BAD" if bad else customer) for customer, bad in spec]
    erp = FakeErp(poison={"BAD"})
    created, failed, unknown = isolate(erp, docs)
    poisons = {i for i, (_, bad) in enumerate(spec) if bad}
    assert failed == poisons and not unknown
    assert set(created) == set(range(len(docs))) - poisons
    saved_keys = [k for k, _ in erp.saved]
    assert sorted(created.values()) == saved_keys  # every saved document is ours, recorded once
    # Cost: the first POST, then one Filter and at most one POST per poison.
    assert erp.filters <= len(poisons)
    assert erp.posts <= len(poisons) + 1
