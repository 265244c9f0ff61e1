"""Content fingerprints (schemas/fingerprint.py) and what a re-submission of a created ExternalId becomes
(worker/pipeline/resubmitted.py): `duplicate` for the same content however written, `changed` with the paths that
differ (never the values) for another."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import DocumentKind, Target
from schemas.fingerprint import changed_paths, fingerprint, parse
from schemas.validation import DocumentError, validate_document_json
from tests.unit.fake_runtime import fake_runtime
from worker.pipeline.resubmitted import content_fingerprint, outcome
from worker.settings import get_settings
from worker.store.records import Claim, ClaimState, DocStatus


def invoice(**head: Any) -> dict[str, Any]:
    return {"ExternalId": "R-1", "CustomerNr": "1001", "InvoiceDate": "2026-11-20", "OriginType": 2,
            "InvoiceRows": [{"CustomerRowType": 2, "RowNr": 1, "ProductNr": "P1", "Quantity": 6, "UnitPrice": 11.9},
                            {"CustomerRowType": 3, "RowNr": 2, "Text": "Tack!"}], **head}  # fmt: skip


def shuffled(value: Any, rng: random.Random) -> Any:
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: shuffled(v, rng) for k, v in items}
    if isinstance(value, list):
        return [shuffled(v, rng) for v in value]
    return value


def wire(doc: dict[str, Any]) -> dict[str, Any]:
    """The document as validated and sent (its wire form, read as a fingerprint reads it)."""
    model = validate_document_json(DocumentKind.CUSTOMER_INVOICE, json.dumps(doc), Target.SOFTONE)
    assert not isinstance(model, DocumentError), model
    return cast(dict[str, Any], parse(model.to_wire_json()))


@given(
    seed=st.integers(0, 10_000),
    qty=st.sampled_from([6, 6.0, "6", "6.000", " 6 "]),
    price=st.sampled_from([11.9, 11.90, "11.90", "11.9000"]),
)
def test_the_fingerprint_ignores_key_order_number_formatting_and_the_id(seed: int, qty: Any, price: Any) -> None:
    other = shuffled(invoice(ExternalId=f"job#{seed}"), random.Random(seed))
    other["InvoiceRows"][0] |= {"Quantity": qty, "UnitPrice": price}
    other["Note"] = None  # null is no field
    assert fingerprint(wire(other), "ExternalId") == fingerprint(wire(invoice()), "ExternalId")
    assert changed_paths(wire(invoice()), wire(other), "ExternalId") == []


@pytest.mark.parametrize(
    ("change", "paths"),
    [
        (lambda d: d["InvoiceRows"][0].update(UnitPrice=12), ["InvoiceRows[0].UnitPrice"]),
        (lambda d: d.update(Currency="EUR"), ["Currency"]),
        (lambda d: d["InvoiceRows"].reverse(), ["InvoiceRows[0].CustomerRowType", "InvoiceRows[0].ProductNr",
                                                "InvoiceRows[0].Quantity", "InvoiceRows[0].RowNr",
                                                "InvoiceRows[0].Text", "InvoiceRows[0].UnitPrice",
                                                "InvoiceRows[1].CustomerRowType", "InvoiceRows[1].ProductNr",
                                                "InvoiceRows[1].Quantity", "InvoiceRows[1].RowNr",
                                                "InvoiceRows[1].Text", "InvoiceRows[1].UnitPrice"]),
        (lambda d: d["InvoiceRows"][1].update(Text="tack!"), ["InvoiceRows[1].Text"]),  # case is content
        (lambda d: d.update(OriginType="2"), ["OriginType"]),  # a number is not its text
    ],
)  # fmt: skip
def test_a_change_is_named_by_its_paths(change: Any, paths: list[str]) -> None:
    changed = invoice()
    change(changed)
    assert fingerprint(changed, "ExternalId") != fingerprint(invoice(), "ExternalId")
    assert changed_paths(invoice(), changed, "ExternalId") == paths


@pytest.fixture
def runtime_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    tenants = {"tenants": [{"name": "demo", "company_api_key": "k1", "connect_api_key": "k2"}]}
    (tmp_path / "tenants.json").write_text(json.dumps(tenants), encoding="utf-8")
    monkeypatch.setenv("ERPSYNC_TENANTS_FILE", str(tmp_path / "tenants.json"))
    get_settings.cache_clear()
    yield fake_runtime(monkeypatch, get_settings())["store"]
    get_settings.cache_clear()


def test_a_resubmission_is_a_duplicate_or_changed_with_the_paths_never_the_values(runtime_store: Any) -> None:
    created = invoice()
    runtime_store.create_job({"job_id": "j1", "tenant": "demo", "target": "softone", "kind": "customer_invoice"},
                             [json.dumps(created)], ["R-1"])  # fmt: skip
    claim = Claim(ClaimState.CREATED, "j1#0", 1234, None, content_fingerprint("softone", "customer_invoice", created))

    same = outcome(claim, "R-1", "softone", "customer_invoice", invoice(ExternalId="R-1"))
    assert (same.status, same.key) == (DocStatus.DUPLICATE, 1234)

    corrected = invoice()
    corrected["InvoiceRows"][0]["UnitPrice"] = 9.75
    record = outcome(claim, "R-1", "softone", "customer_invoice", corrected)
    assert (record.status, record.key) == (DocStatus.CHANGED, 1234)
    assert record.errors == [{"field": "InvoiceRows[0].UnitPrice", "reason": "differs from the document created"}]
    assert "1 field differs (InvoiceRows[0].UnitPrice)" in (record.error or "") and "9.75" not in (record.error or "")

    # The document created has expired with its job: still `changed`, the fields unnamed.
    runtime_store.r.delete("erpsync:job:j1:docs")
    expired = outcome(claim, "R-1", "softone", "customer_invoice", corrected)
    assert expired.status == DocStatus.CHANGED and expired.errors == []
    assert "no longer in the results store" in (expired.error or "")

    # An index entry written before fingerprints: a re-submission stays a duplicate, as it was.
    old_entry = Claim(ClaimState.CREATED, "j1#0", 1234, None, None)
    assert outcome(old_entry, "R-1", "softone", "customer_invoice", corrected).status == DocStatus.DUPLICATE
