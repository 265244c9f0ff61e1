"""Upserts (worker/pipeline/updates.py): a changed document of an "upsert" job becomes an update batch where the
target takes updates, fails with what to do instead where it does not, and claims the duplicate index entry so that
two updates of one document never run at once; a refused update puts the entry back as it was."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.unit.fake_runtime import fake_runtime
from worker.pipeline.resubmitted import content_fingerprint
from worker.pipeline.updates import resolve
from worker.settings import get_settings
from worker.store.records import ClaimState, CreatedClaim, DocStatus, Route

TENANTS = {
    "tenants": [
        {"name": "demo", "company_api_key": "k1", "connect_api_key": "k2"},
        {"name": "fx", "target": "fortnox", "client_id": "c", "client_secret": "s", "refresh_token": "r"},
    ]
}
FX = Route("fx", "fortnox", "order")
SOFTONE = Route("demo", "softone", "customer_invoice")


def fx_order(price: float = 100.0) -> dict[str, Any]:
    row = {"ArticleNumber": "A1", "OrderedQuantity": 1, "DeliveredQuantity": 1, "Price": price}
    return {"CustomerNumber": "1", "ExternalInvoiceReference1": "O-1", "OrderRows": [row]}


def softone_invoice(price: float = 10.0) -> dict[str, Any]:
    row = {"CustomerRowType": 2, "RowNr": 1, "ProductNr": "P", "Quantity": 1, "UnitPrice": price}
    return {"ExternalId": "R-1", "CustomerNr": "1", "InvoiceDate": "2026-11-20", "OriginType": 2, "InvoiceRows": [row]}


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    (tmp_path / "tenants.json").write_text(json.dumps(TENANTS), encoding="utf-8")
    monkeypatch.setenv("ERPSYNC_TENANTS_FILE", str(tmp_path / "tenants.json"))
    get_settings.cache_clear()
    yield fake_runtime(monkeypatch, get_settings())["store"]
    get_settings.cache_clear()


def created(store: Any, route: Route, external_id: str, doc: dict[str, Any], key: Any) -> None:
    """`doc` created earlier by job j0 (position 0), as the send step records it."""
    store.create_job({"job_id": "j0", "tenant": route.tenant, "target": route.target, "kind": route.kind},
                     [json.dumps(doc)], [external_id])  # fmt: skip
    fingerprint = content_fingerprint(route.target, route.kind, doc)
    claim = CreatedClaim(route.tenant, route.kind, external_id, "j0#0", key, str(key), fingerprint)
    store.complete_batch("b0", "created", [], created=[claim])


def test_a_changed_fortnox_order_becomes_an_update_batch_and_holds_the_entry(store: Any) -> None:
    created(store, FX, "O-1", fx_order(), "7")
    claim = store.claim("fx", "order", "O-1", "j1#0")
    assert claim.state == ClaimState.CREATED

    same = resolve(claim, "j1", 0, "O-1", FX, json.dumps(fx_order()), upsert=True)
    assert same.record is not None and same.record.status == DocStatus.DUPLICATE

    update = resolve(claim, "j1", 0, "O-1", FX, json.dumps(fx_order(120.0)), upsert=True).update
    assert update is not None and update.batch_id == "j1@0.u"
    assert update.meta["operation"] == "update" and update.meta["erp_key"] == "7"
    assert json.loads(update.body) == [fx_order(120.0)]

    # Another job's look now waits for the update; this document's own look (a redelivery) finds it ours.
    assert store.claim("fx", "order", "O-1", "j2#0").state == ClaimState.CLAIMED
    mine = store.claim("fx", "order", "O-1", "j1#0")
    assert mine.state == ClaimState.UPDATING and mine.key == "7"
    assert resolve(mine, "j1", 0, "O-1", FX, json.dumps(fx_order(120.0)), upsert=True).update is not None
    # A second claim of an entry read before the update took it: refused, so that job waits and looks again.
    assert resolve(claim, "j2", 0, "O-1", FX, json.dumps(fx_order(130.0)), upsert=True) == (None, None)


def test_a_refused_update_puts_the_entry_back_and_a_made_one_records_the_new_content(store: Any) -> None:
    created(store, FX, "O-1", fx_order(), "7")
    ttl = store.r.ttl("erpsync:dedup:fx:order:O-1")
    claim = store.claim("fx", "order", "O-1", "j1#0")
    assert store.claim_update("fx", "order", "O-1", "j1#0", claim)
    store.release("fx", "order", "O-1", "j1#0")  # the ERP refused it
    back = store.claim("fx", "order", "O-1", "j9#0")
    assert (back.state, back.owner, back.key, back.fingerprint) == (ClaimState.CREATED, "j0#0", "7", claim.fingerprint)
    assert 0 < store.r.ttl("erpsync:dedup:fx:order:O-1") <= ttl

    assert store.claim_update("fx", "order", "O-1", "j1#0", back)
    new = content_fingerprint("fortnox", "order", fx_order(120.0))
    store.complete_batch("b1", "created", [], created=[CreatedClaim("fx", "order", "O-1", "j1#0", "7", "7", new)])
    after = store.claim("fx", "order", "O-1", "j9#0")
    assert (after.state, after.owner, after.fingerprint) == (ClaimState.CREATED, "j1#0", new)


def test_an_upsert_of_a_target_without_updates_fails_with_what_to_do_instead(store: Any) -> None:
    created(store, SOFTONE, "R-1", softone_invoice(), 1001)
    claim = store.claim("demo", "customer_invoice", "R-1", "j1#0")
    changed = resolve(claim, "j1", 0, "R-1", SOFTONE, json.dumps(softone_invoice(12.0)), upsert=True).record
    assert changed is not None and changed.status == DocStatus.FAILED and changed.key == 1001
    assert "no update" in (changed.error or "") and "credit the invoice in SoftOne GO" in (changed.error or "")
    assert [e["field"] for e in changed.errors] == ["InvoiceRows[0].UnitPrice"]
    without = resolve(claim, "j1", 0, "R-1", SOFTONE, json.dumps(softone_invoice(12.0)), upsert=False).record
    assert without is not None and without.status == DocStatus.CHANGED
    assert store.claim("demo", "customer_invoice", "R-1", "j2#0").state == ClaimState.CREATED  # nothing claimed


# ----- actions (worker/pipeline/actions.py)


def test_an_action_names_its_document_by_id_and_waits_fails_or_repeats_as_the_index_says(store: Any) -> None:
    from schemas import DocumentKind, Target
    from schemas.actions import ActionDocument
    from schemas.validation import validate_action
    from worker.pipeline.actions import resolve_action

    invoice_route = Route("fx", "fortnox", "customer_invoice")
    credit = validate_action(DocumentKind.CUSTOMER_INVOICE, '{"ExternalId": "I-1", "Action": "credit"}', Target.FORTNOX)
    assert isinstance(credit, ActionDocument)

    nothing = resolve_action("j1", 0, invoice_route, credit).record
    assert nothing is not None and nothing.status == DocStatus.FAILED and "was created through erpsync" in nothing.error

    store.claim("fx", "customer_invoice", "I-1", "j0#0")  # being created by job j0 (pending): the action waits
    store.create_job({"job_id": "j0", "tenant": "fx", "target": "fortnox", "kind": "customer_invoice"}, ["{}"], ["I-1"])
    assert resolve_action("j1", 0, invoice_route, credit) == (None, None)

    claim = CreatedClaim("fx", "customer_invoice", "I-1", "j0#0", "5", "5", "")
    store.complete_batch("b0", "created", [], created=[claim])
    store.create_job({"job_id": "j1", "tenant": "fx", "target": "fortnox", "kind": "customer_invoice"}, ["{}"], ["I-1"])
    batch = resolve_action("j1", 0, invoice_route, credit).update
    assert batch is not None and batch.meta["action"] == "credit" and batch.meta["erp_key"] == "5"
    assert batch.meta["result_kind"] == "customer_invoice" and batch.meta["result_external_id"] == "I-1:credit"
    assert resolve_action("j2", 0, invoice_route, credit) == (None, None)  # one action at a time per document

    # The credit made (its id in the index): the same action again is a duplicate with the credit invoice's Key.
    store.release("fx", "customer_invoice", "I-1", "j1#0")
    made = CreatedClaim("fx", "customer_invoice", "I-1:credit", "j1#0", "6", "6", "")
    store.complete_batch("b1", "created", [], created=[made])
    again = resolve_action("j2", 0, invoice_route, credit).record
    assert again is not None and (again.status, again.key) == (DocStatus.DUPLICATE, "6")


@pytest.mark.parametrize(
    ("kind", "raw", "field", "says"),
    [
        ("order", '{"ExternalId": "O-1", "Action": "credit"}', "Action", "it takes: createinvoice, externalprint"),
        ("order", '{"ExternalId": "O-1", "Action": "externalprint", "ResultExternalId": "x"}', "ResultExternalId",
         "creates no document"),
        ("order", '{"Action": "createinvoice"}', "ExternalId", "mandatory"),
        ("order", '{"ExternalId": "O-1", "Action": "createinvoice", "ResultExternalId": "O-1"}', "ResultExternalId",
         "must differ"),
        ("offer", '{"ExternalId": "j#0", "Action": "createorder", "Note": 1}', "Note", "not a field"),
    ],
)  # fmt: skip
def test_an_invalid_action_fails_alone_with_its_field(kind: str, raw: str, field: str, says: str) -> None:
    from schemas import DocumentKind, Target
    from schemas.validation import DocumentError, validate_action

    error = validate_action(DocumentKind(kind), raw, Target.FORTNOX)
    assert isinstance(error, DocumentError)
    assert error.errors[0].field == field and says in error.errors[0].reason
