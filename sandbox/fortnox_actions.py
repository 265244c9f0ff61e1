"""The Fortnox routes of one existing document: retrieve, update, delete and the actions (credit, bookkeep, ...).

Which routes, and why (the spec lost its paths and headings; each section is known by its
description, request body and response body, and by its place - the spec lists each resource's
paths in alphabetical order, the methods of one path too: DELETE, GET, PUT):

* Articles: delete (spec line ~279), retrieve (~288), update (~356) of ``/3/articles-v2/{ArticleNumber}``.
* Invoices: retrieve (~661: path parameter, no body, an Invoice), update (~832), credit (~1334,
  "The created credit invoice will be referenced in the property CreditInvoiceReference"), email
  (~1669), externalprint (~2004, "set invoice as sent, without generating an invoice"),
  warehouseready (~2172). Between update's response and credit the spec has one more Invoice
  body with neither description nor parameter line (~1167): where bookkeep and cancel stand in
  the path order. The spec cannot tell which of the two it is, so the sandbox serves both.
  The undescribed sections ~1501 (between credit and email) and ~1836 (between email and
  externalprint) are by that order ``einvoice`` and ``eprint`` - not bookkeep / cancel - and are
  left out (nothing erpsync does needs them).
* Orders: update (~3803), createinvoice (~4094, answers an Invoice), email (~4262),
  externalprint (~4408).
* Offers: update (~2636), createinvoice (~2895, answers an Invoice), createorder (~3062, answers
  an Order), email (~3208), externalprint (~3338).
* Not in the spec at all, so not served: retrieving one order or offer (``GET /3/orders/{n}``,
  ``GET /3/offers/{n}``: 405 Method Not Allowed), cancelling an order or an offer, an order's
  warehouseready (404). The ledger (``/_sandbox/ledger?full=1``) shows an order's or offer's
  current content.

Methods are those of Fortnox's stable API (the spec has none): ``GET`` for retrieve and email,
``DELETE`` for delete, ``PUT`` for update and every other action. Actions take no body (the spec
shows none; one sent is ignored) and answer 200 with a document: the one acted on, except
createinvoice / createorder, which answer the document they created (the spec's response is an
Invoice / an Order), and credit, which answers the ORIGINAL invoice - its CreditInvoiceReference
names the credit invoice, as the spec's sentence says. Delete answers 204 without a body.

State rules (Fortnox's; refusals are HTTP 400 with the capitalised ErrorInformation; 2099008 when
an update meets a locked document, 2099009 when an action is not possible in the document's state -
the sandbox's own codes, see sandbox.fortnox_rules):

* An invoice that is booked, cancelled or sent cannot be updated ("Faktura som är bokförd kan
  inte ändras."); neither can a cancelled order or offer, nor an order once it is invoiced
  (InvoiceReference set).
* bookkeep sets Booked (not twice, not for a cancelled invoice); cancel sets Cancelled (not for a
  booked, cancelled or credited invoice); email and externalprint set Sent (again is fine, a
  cancelled document cannot be sent; email sends nothing and needs no address).
* credit makes a credit invoice (sandbox.fortnox_merge.credit_copy) under the next number and
  sets CreditInvoiceReference on both; refused for a credit invoice (Credit "true"), an invoice
  already credited, and a cancelled one. Booked or not does not matter.
* warehouseready sets WarehouseReady. The spec: "DeliveryState needs to be set to 'delivery'",
  but the invoice schema has no DeliveryState and the request no body. The sandbox reads it as
  the DeliveryState of the order the invoice was created from (kept by createinvoice): an invoice
  not made from an order whose DeliveryState was "delivery" is refused, the message saying so.
* createinvoice (orders, offers) and createorder (offers) copy the document
  (sandbox.fortnox_merge.converted) into a new one under the next number and set the references
  both ways: the order's / offer's InvoiceReference or OrderReference, the new document's
  OrderReference or OfferReference; ExternalInvoiceReference1 is carried over. A document converts
  once (an offer: to an order OR an invoice) and not when cancelled.

A number the account does not have -> 404 in the validation errors' shape (code 2099005). A
document an action creates is a new ledger entry whose history starts with what made it
(``{"operation": "credit", "from": "<number>"}``, ``"from_kind"`` for conversions); the document
acted on gets an event with ``"to"``. Fault rules and random faults apply as on every ERP path (an
``*_after_commit`` fault answers after the action took effect), and so does the rate limit.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.config import FortnoxAccount
from sandbox.fortnox import (
    ARTICLES,
    INVOICES,
    OFFERS,
    ORDERS,
    DocumentType,
    assign_row_ids,
    authenticate,
    base_url,
    document_view,
    error_response,
    parsed_body,
    sandbox_state,
    save_document,
    today,
)
from sandbox.fortnox_merge import (
    OFFER_TO_INVOICE,
    OFFER_TO_ORDER,
    ORDER_TO_INVOICE,
    Conversion,
    converted,
    credit_copy,
    is_set,
    merge_update,
)
from sandbox.fortnox_rules import (
    CODE_LOCKED,
    CODE_NOT_ALLOWED,
    CODE_NOT_FOUND,
    CODE_NUMBER_MISMATCH,
    FortnoxError,
    check_fields,
    field_error,
    unwrap,
    validate_article,
    validate_document,
)
from sandbox.state import LedgerEntry, SandboxState


@dataclass(frozen=True)
class Names:
    """How the Swedish messages name a kind of document."""

    the: str  # "fakturan"
    a: str  # "Faktura"


NAMES = {
    "customer_invoice": Names("fakturan", "Faktura"),
    "order": Names("ordern", "Order"),
    "offer": Names("offerten", "Offert"),
    "article": Names("artikeln", "Artikel"),
}


@dataclass(frozen=True)
class Call:
    """One authenticated request on one existing document."""

    state: SandboxState
    account: FortnoxAccount
    entry: LedgerEntry
    request_id: str
    now: float

    @property
    def doc(self) -> dict[str, Any]:
        """The stored document (actions change it in place)."""
        return self.entry.document

    def record(self, operation: str, **details: str) -> None:
        """Add an event of this request to the document's history."""
        self.entry.record(operation, self.now, self.request_id, **details)


Outcome = tuple[LedgerEntry, DocumentType] | FortnoxError  # the document to answer, or the refusal
Action = Callable[[Call], Outcome]


def _refused(message: str) -> FortnoxError:
    """An action the document's state does not allow."""
    return FortnoxError(CODE_NOT_ALLOWED, message)


def _not_found(doc_type: DocumentType, number: str) -> Response:
    names = NAMES[doc_type.kind]
    text = f"Kan inte hitta {names.the} ({number}). Fält: {doc_type.number_field}."
    return error_response(FortnoxError(CODE_NOT_FOUND, text, 404))


def _find(request: Request, account: FortnoxAccount, doc_type: DocumentType) -> LedgerEntry | Response:
    """The account's document of the path's number, or the 404 to answer."""
    number = request.path_params["number"]
    entry = sandbox_state(request).fortnox.find(account.client_id, doc_type.kind, number)
    return entry if entry is not None else _not_found(doc_type, number)


def _answer(entry: LedgerEntry, doc_type: DocumentType, request: Request) -> Response:
    return JSONResponse({doc_type.wrapper: document_view(entry, doc_type, base_url(request))})


# -- retrieve, update, delete ------------------------------------------------------------------
async def retrieve(request: Request, doc_type: DocumentType) -> Response:
    """``GET <path>/{number}``: the document as Fortnox shows it."""
    account = authenticate(request)
    if isinstance(account, Response):
        return account
    entry = _find(request, account, doc_type)
    return entry if isinstance(entry, Response) else _answer(entry, doc_type, request)


def locked(doc_type: DocumentType, doc: dict[str, Any]) -> FortnoxError | None:
    """Why a stored document cannot be updated, if it cannot."""
    a = NAMES[doc_type.kind].a
    reason = None
    if doc_type is INVOICES and doc.get("Booked") is True:
        reason = "bokförd"
    elif doc.get("Cancelled") is True:
        reason = "makulerad"
    elif doc_type is INVOICES and doc.get("Sent") is True:
        reason = "skickad"
    elif doc_type is ORDERS and is_set(doc.get("InvoiceReference")):
        reason = f"fakturerad (faktura {doc['InvoiceReference']})"
    return FortnoxError(CODE_LOCKED, f"{a} som är {reason} kan inte ändras.") if reason else None


def _validated(
    state: SandboxState, account: FortnoxAccount, doc_type: DocumentType, doc: dict[str, Any]
) -> FortnoxError | None:
    """The first problem of a document about to be saved (as on create), or None."""
    if doc_type is ARTICLES:
        return validate_article(doc, doc_type.fields)
    assert doc_type.rows_field is not None
    return validate_document(doc, doc_type.fields, doc_type.rows_field, state.config.customers, account.easy_vat)


def _merged(entry: LedgerEntry, doc_type: DocumentType, body: Any) -> dict[str, Any] | FortnoxError:
    """The document an update body makes of the stored one, or why the update is refused."""
    if isinstance(body, FortnoxError):
        return body
    given = unwrap(body, doc_type.wrapper)
    if isinstance(given, FortnoxError):
        return given
    sent = given.get(doc_type.number_field)
    if sent is not None and str(sent) != entry.number:
        what = "Artikelnumret" if doc_type is ARTICLES else "Dokumentnumret"
        text = f"{what} kan inte ändras ({entry.number} i adressen, {sent} i anropet)."
        return field_error(CODE_NUMBER_MISMATCH, text, doc_type.number_field)
    return (
        locked(doc_type, entry.document)
        or check_fields(given, doc_type.fields)
        or merge_update(entry.document, given, doc_type.rows_field)
    )


async def update(request: Request, doc_type: DocumentType) -> Response:
    """``PUT <path>/{number}``: merge the body into the document (sandbox.fortnox_merge), validate, save."""
    state = sandbox_state(request)
    account = authenticate(request)
    if isinstance(account, Response):
        return account
    body = await parsed_body(request)
    # No `await` from here on: the document is read, checked and replaced atomically.
    entry = _find(request, account, doc_type)
    if isinstance(entry, Response):
        return entry
    merged = _merged(entry, doc_type, body)
    if isinstance(merged, FortnoxError):
        return error_response(merged)
    error = _validated(state, account, doc_type, merged)
    if error is not None:
        return error_response(error)
    assign_row_ids(state, merged, doc_type)
    entry.document = merged
    if doc_type is not ARTICLES:
        customer_nr = merged["CustomerNumber"]
        entry.customer_nr, entry.customer_name = customer_nr, state.config.customers.get(customer_nr, "")
        entry.invoice_date = merged.get(doc_type.date_field or "") or entry.invoice_date
    if doc_type.reference_field is not None:
        old, entry.external_id = entry.external_id, merged.get(doc_type.reference_field)
        state.fortnox.reindex(account.client_id, entry, old, entry.external_id)
    entry.record("update", state.clock(), str(uuid.uuid4()))
    return _answer(entry, doc_type, request)


async def delete_article(request: Request) -> Response:
    """``DELETE /3/articles-v2/{ArticleNumber}``: the article is gone from the API (its ledger entry stays)."""
    state = sandbox_state(request)
    account = authenticate(request)
    if isinstance(account, Response):
        return account
    entry = _find(request, account, ARTICLES)
    if isinstance(entry, Response):
        return entry
    state.fortnox.forget(account.client_id, entry, None)
    entry.record("delete", state.clock(), str(uuid.uuid4()))
    return Response(status_code=204)


# -- invoice actions ---------------------------------------------------------------------------
def bookkeep(call: Call) -> Outcome:
    """Book the invoice."""
    if call.doc.get("Booked") is True:
        return _refused("Fakturan är redan bokförd.")
    if call.doc.get("Cancelled") is True:
        return _refused("Faktura som är makulerad kan inte bokföras.")
    call.doc["Booked"] = True
    call.record("bookkeep")
    return call.entry, INVOICES


def cancel(call: Call) -> Outcome:
    """Cancel (makulera) the invoice."""
    if call.doc.get("Booked") is True:
        return _refused("Faktura som är bokförd kan inte makuleras.")
    if call.doc.get("Cancelled") is True:
        return _refused("Fakturan är redan makulerad.")
    if is_set(call.doc.get("CreditInvoiceReference")):
        return _refused(
            f"Faktura som är krediterad kan inte makuleras (kreditfaktura {call.doc['CreditInvoiceReference']})."
        )
    call.doc["Cancelled"] = True
    call.record("cancel")
    return call.entry, INVOICES


def credit(call: Call) -> Outcome:
    """Make the invoice's credit invoice; answer the original."""
    original = call.entry
    if call.doc.get("Credit") == "true":
        return _refused("En kreditfaktura kan inte krediteras.")
    if is_set(call.doc.get("CreditInvoiceReference")):
        return _refused(f"Fakturan är redan krediterad (kreditfaktura {call.doc['CreditInvoiceReference']}).")
    if call.doc.get("Cancelled") is True:
        return _refused("Faktura som är makulerad kan inte krediteras.")
    doc = credit_copy(call.doc, original.number, today(call.now))
    number = call.state.fortnox.next_number(call.account.client_id, INVOICES.kind)
    origin = {"operation": "credit", "from": original.number}
    save_document(call.state, call.account, INVOICES, number, doc, call.request_id, origin)
    call.doc["CreditInvoiceReference"] = number
    call.record("credit", to=number)
    return original, INVOICES


def warehouseready(call: Call) -> Outcome:
    """Mark the invoice as ready in the warehouse module."""
    if call.doc.get("Cancelled") is True:
        return _refused("Faktura som är makulerad kan inte klarmarkeras i lagret.")
    delivery = call.state.fortnox.delivery_states.get((call.account.client_id, call.entry.number))
    if delivery != "delivery":
        shown = f'"{delivery}"' if delivery else "ingen: fakturan är inte skapad från en order"
        text = f'DeliveryState måste vara "delivery" för att klarmarkera i lagret (är {shown}).'
        return field_error(CODE_NOT_ALLOWED, text, "DeliveryState")
    call.doc["WarehouseReady"] = True
    call.record("warehouseready")
    return call.entry, INVOICES


# -- actions of several kinds ------------------------------------------------------------------
def _sent(doc_type: DocumentType, operation: str) -> Action:
    """email / externalprint: the document is marked as sent (no e-mail leaves the sandbox)."""

    def mark_sent(call: Call) -> Outcome:
        if call.doc.get("Cancelled") is True:
            return _refused(f"{NAMES[doc_type.kind].a} som är makulerad kan inte skickas.")
        call.doc["Sent"] = True
        call.record(operation)
        return call.entry, doc_type

    return mark_sent


def _convert(source: DocumentType, target: DocumentType, conversion: Conversion) -> Action:
    """createinvoice / createorder: a new ``target`` document made from the ``source`` one."""
    own_reference = "OrderReference" if source is ORDERS else "OfferReference"  # on the new document
    back_reference = "InvoiceReference" if target is INVOICES else "OrderReference"  # on the source
    operation = f"create{target.wrapper.lower()}"

    def convert(call: Call) -> Outcome:
        names = NAMES[source.kind]
        if call.doc.get("Cancelled") is True:
            verb = "faktureras" if target is INVOICES else "bli order"
            return _refused(f"{names.a} som är makulerad kan inte {verb}.")
        for reference, made in (("InvoiceReference", "faktura"), ("OrderReference", "order")):
            if is_set(call.doc.get(reference)):
                return _refused(f"{names.the.capitalize()} har redan blivit {made} {call.doc[reference]}.")
        doc = converted(call.doc, conversion)
        assert target.date_field is not None
        doc |= {own_reference: call.entry.number, target.date_field: today(call.now)}
        error = _validated(call.state, call.account, target, doc)
        if error is not None:
            return error
        number = call.state.fortnox.next_number(call.account.client_id, target.kind)
        origin = {"operation": operation, "from": call.entry.number, "from_kind": source.kind}
        created = save_document(call.state, call.account, target, number, doc, call.request_id, origin)
        delivery = call.doc.get("DeliveryState")
        if target is INVOICES and isinstance(delivery, str):
            call.state.fortnox.delivery_states[(call.account.client_id, number)] = delivery
        call.doc[back_reference] = number
        call.record(operation, to=number)
        return created, target

    return convert


def _action_endpoint(doc_type: DocumentType, action: Action) -> Callable[[Request], Awaitable[Response]]:
    """The endpoint of one action: authenticate, find the document, act (no `await`: atomic), answer."""

    async def endpoint(request: Request) -> Response:
        state = sandbox_state(request)
        account = authenticate(request)
        if isinstance(account, Response):
            return account
        entry = _find(request, account, doc_type)
        if isinstance(entry, Response):
            return entry
        outcome = action(Call(state, account, entry, str(uuid.uuid4()), state.clock()))
        if isinstance(outcome, FortnoxError):
            return error_response(outcome)
        return _answer(*outcome, request)

    return endpoint


@dataclass(frozen=True)
class ActionRoute:
    """One action: ``METHOD <doc_type.path>/{DocumentNumber}/<name>``."""

    doc_type: DocumentType
    name: str
    method: str
    action: Action


ACTIONS = [
    ActionRoute(INVOICES, "bookkeep", "PUT", bookkeep),
    ActionRoute(INVOICES, "cancel", "PUT", cancel),
    ActionRoute(INVOICES, "credit", "PUT", credit),
    ActionRoute(INVOICES, "email", "GET", _sent(INVOICES, "email")),
    ActionRoute(INVOICES, "externalprint", "PUT", _sent(INVOICES, "externalprint")),
    ActionRoute(INVOICES, "warehouseready", "PUT", warehouseready),
    ActionRoute(ORDERS, "createinvoice", "PUT", _convert(ORDERS, INVOICES, ORDER_TO_INVOICE)),
    ActionRoute(ORDERS, "email", "GET", _sent(ORDERS, "email")),
    ActionRoute(ORDERS, "externalprint", "PUT", _sent(ORDERS, "externalprint")),
    ActionRoute(OFFERS, "createinvoice", "PUT", _convert(OFFERS, INVOICES, OFFER_TO_INVOICE)),
    ActionRoute(OFFERS, "createorder", "PUT", _convert(OFFERS, ORDERS, OFFER_TO_ORDER)),
    ActionRoute(OFFERS, "email", "GET", _sent(OFFERS, "email")),
    ActionRoute(OFFERS, "externalprint", "PUT", _sent(OFFERS, "externalprint")),
]


def _document_endpoint(doc_type: DocumentType) -> Callable[[Request], Awaitable[Response]]:
    """The endpoint of ``<path>/{number}``, by method."""

    async def endpoint(request: Request) -> Response:
        if request.method == "GET":
            return await retrieve(request, doc_type)
        if request.method == "DELETE":
            return await delete_article(request)
        return await update(request, doc_type)

    return endpoint


def routes() -> list[Route]:
    """The routes of single documents (see the module docstring)."""
    single = [
        Route(INVOICES.path + "/{number}", _document_endpoint(INVOICES), methods=["GET", "PUT"]),
        Route(ORDERS.path + "/{number}", _document_endpoint(ORDERS), methods=["PUT"]),
        Route(OFFERS.path + "/{number}", _document_endpoint(OFFERS), methods=["PUT"]),
        Route(ARTICLES.path + "/{number}", _document_endpoint(ARTICLES), methods=["GET", "PUT", "DELETE"]),
    ]
    actions = [
        Route(f"{a.doc_type.path}/{{number}}/{a.name}", _action_endpoint(a.doc_type, a.action), methods=[a.method])
        for a in ACTIONS
    ]
    return single + actions
