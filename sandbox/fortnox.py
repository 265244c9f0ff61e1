"""The Fortnox API of the sandbox: the OAuth2 token endpoint and the documents erpsync creates.

Routes (spec: fortnox-alpha-beta-api.txt). The spec shows ``/3/articles-v2/...`` for the alpha
article API and no paths at all for invoices, orders and offers: those use Fortnox's stable
paths ``/3/invoices``, ``/3/orders``, ``/3/offers``. This module serves the token endpoint,
creates and lists; sandbox.fortnox_actions the routes of one document (marked [one] below; its
docstring tells which spec section each one is, and which the spec does not have).

* ``POST /oauth-v1/token`` - Fortnox's OAuth2 server: form-encoded, the client authenticates with
  HTTP Basic (client_id:client_secret).
  ``grant_type=refresh_token&refresh_token=R`` -> ``{"access_token", "refresh_token",
  "expires_in", "token_type": "bearer", "scope"}``; refresh tokens are single-use (a spent one
  -> 400 ``invalid_grant``, counted as ``fortnox.refresh_token_reuse``).
  ``grant_type=client_credentials`` with header ``TenantId`` (service accounts) -> the same
  without a refresh token. Bad client credentials -> 401 ``invalid_client``; other OAuth errors
  -> 400 ``{"error", "error_description"}``.
* ``POST /3/invoices`` ``{"Invoice": {...}}``, ``/3/orders`` ``{"Order"}``, ``/3/offers``
  ``{"Offer"}`` -> 201 with the document as sent plus ``DocumentNumber`` (per account and kind:
  1, 2, ...; a DocumentNumber the client sends is kept if free), ``@url``, a ``RowId`` on every
  row (generated: one sent is replaced), and what Fortnox fills in: CustomerName (from the
  register), the document date (today), Currency "SEK", Cancelled / Sent (/ Booked) false, and
  ``Total`` (and an invoice's ``Balance``) = the rows' sum with VAT:
  quantity x Price less Discount (a percentage, or an amount with DiscountType "AMOUNT"), plus VAT
  (default 25 %) unless VATIncluded - freight, fees and rounding to whole kronor are left out, so
  compare documents by their numbers, not by Total.
* ``POST /3/articles-v2`` ``{"Article": {...}}`` -> 201 ``{"Article": {..., "ArticleNumber",
  "@url"}}``: an ArticleNumber sent is kept, else one is assigned; one already used in the
  account -> 400.
* ``GET /3/invoices``, ``/3/orders``, ``/3/offers`` -> ``{"MetaInformation": {"@TotalResources",
  "@TotalPages", "@CurrentPage"}, "Invoices" | "Orders" | "Offers": [...]}`` with the list fields
  of the spec, ordered by DocumentNumber. Filters: ``documentnumber``, ``customernumber``,
  ``fromdate`` / ``todate`` (the document date, inclusive, YYYY-MM-DD), and for invoices and orders
  ``externalinvoicereference1`` / ``externalinvoicereference2`` (exact match); paging ``page``
  (from 1) and ``limit`` (1-500, default 100). The spec's other list parameters (filter, sortby,
  lastmodified, ...) are accepted and ignored.
* [one] ``GET /3/invoices/{DocumentNumber}`` -> ``{"Invoice"}``; ``GET /3/articles-v2/{ArticleNumber}``
  -> ``{"Article"}``. (The spec types ArticleNumber "integer <int32>" but its own example is
  ``GET /3/articles-v2/toolbox``: any string.)
* [one] ``PUT /3/invoices/{DocumentNumber}`` ``{"Invoice": {...}}``, ``/3/orders/{n}`` ``{"Order"}``,
  ``/3/offers/{n}`` ``{"Offer"}``, ``/3/articles-v2/{ArticleNumber}`` ``{"Article"}`` -> 200 with
  the updated document: fields not sent stay, rows by position or by RowId
  (sandbox.fortnox_merge), validated as on create. A different DocumentNumber / ArticleNumber in
  the body -> 400 (2099007); a booked, sent or cancelled invoice, a cancelled order or offer, an
  invoiced order -> 400 (2099008).
* [one] ``DELETE /3/articles-v2/{ArticleNumber}`` -> 204.
* [one] Invoice actions ``PUT /3/invoices/{n}/bookkeep``, ``/cancel``, ``/credit`` (answers the
  original, whose CreditInvoiceReference names the new credit invoice), ``GET .../email``, ``PUT
  .../externalprint``, ``/warehouseready``; order actions ``PUT /3/orders/{n}/createinvoice``
  (answers the new invoice), ``GET .../email``, ``PUT .../externalprint``; offer actions ``PUT
  /3/offers/{n}/createinvoice`` (the new invoice), ``/createorder`` (the new order), ``GET
  .../email``, ``PUT .../externalprint``. A refusal in the document's state -> 400 (2099009).
* A document or article number the account does not have -> 404 (2099005).

Every API route needs ``Authorization: Bearer <access token>``; a missing, unknown or expired one
-> 401 ``{"ErrorInformation": {"error": 1, "message": "Invalid authorization", "code": 2000311}}``.
Real Fortnox answers some errors with lower-case keys and others capitalised, so the sandbox does
both: lower-case for 401 and 429, capitalised ``{"Error", "Message", "Code"}`` for validation
errors (400) and 404. The rate limit (429) is applied by sandbox.middleware on arrival, to every
route above but the token endpoint; fault rules and random faults hit them all the same (the
stats count them per route with the number folded, e.g. ``PUT /3/invoices/{DocumentNumber}/credit``).
"""

from __future__ import annotations

import base64
import binascii
import math
import secrets
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from urllib.parse import parse_qsl, quote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.auth import query_params
from sandbox.config import FortnoxAccount
from sandbox.fortnox_fields import ARTICLE, INVOICE, OFFER, ORDER, Shape
from sandbox.fortnox_rules import (
    CODE_INVALID_LOGIN,
    CODE_INVALID_PARAMETER,
    CODE_JSON_SYNTAX,
    CODE_NO_DATA,
    CODE_NUMBER_IN_USE,
    CODE_SYSTEM_EXCEPTION,
    FortnoxError,
    field_error,
    is_date,
    unwrap,
    validate_article,
    validate_document,
)
from sandbox.fortnox_state import RefreshTokenError
from sandbox.jsonbody import parse_json
from sandbox.state import Kind, LedgerEntry, SandboxState, iso_utc

TOKEN_PATH = "/oauth-v1/token"
API_PREFIX = "/3/"
ARTICLES_PATH = "/3/articles-v2"
CODE_TOO_MANY_REQUESTS = 2099006  # the sandbox's own code (see sandbox.fortnox_rules)
DEFAULT_LIMIT, MAX_LIMIT = 100, 500
CENT = Decimal("0.01")

UNAUTHORIZED_BODY = {"ErrorInformation": {"error": 1, "message": "Invalid authorization", "code": CODE_INVALID_LOGIN}}
TOO_MANY_REQUESTS_BODY = {
    "ErrorInformation": {"error": 1, "message": "Too many requests", "code": CODE_TOO_MANY_REQUESTS}
}
SYSTEM_EXCEPTION_BODY = {"ErrorInformation": {"Error": 1, "Message": "System exception", "Code": CODE_SYSTEM_EXCEPTION}}


@dataclass(frozen=True)
class DocumentType:
    """How one Fortnox resource is posted, stored and listed."""

    kind: Kind
    path: str
    wrapper: str  # {"Invoice": {...}}
    plural: str  # {"Invoices": [...]}
    fields: Shape
    number_field: str  # DocumentNumber or ArticleNumber
    rows_field: str | None = None
    quantity_field: str | None = None
    date_field: str | None = None
    reference_field: str | None = None  # the field that holds our id and can be filtered on
    list_fields: str = ""  # the fields of a list item, space-separated


INVOICES = DocumentType(
    kind="customer_invoice",
    path="/3/invoices",
    wrapper="Invoice",
    plural="Invoices",
    fields=INVOICE,
    number_field="DocumentNumber",
    rows_field="InvoiceRows",
    quantity_field="DeliveredQuantity",
    date_field="InvoiceDate",
    reference_field="ExternalInvoiceReference1",
    list_fields="@url Balance Booked Cancelled CostCenter Currency CurrencyRate CurrencyUnit CustomerName "
    "CustomerNumber DocumentNumber DueDate ExternalInvoiceReference1 ExternalInvoiceReference2 FinalPayDate "
    "InvoiceDate InvoiceType NoxFinans OCR Project Sent TermsOfPayment Total VoucherNumber VoucherSeries VoucherYear "
    "WayOfDelivery",
)
ORDERS = DocumentType(
    kind="order",
    path="/3/orders",
    wrapper="Order",
    plural="Orders",
    fields=ORDER,
    number_field="DocumentNumber",
    rows_field="OrderRows",
    quantity_field="OrderedQuantity",
    date_field="OrderDate",
    reference_field="ExternalInvoiceReference1",
    list_fields="@url Cancelled Currency CustomerName CustomerNumber DeliveryDate DocumentNumber "
    "ExternalInvoiceReference1 ExternalInvoiceReference2 OrderDate OrderType Project Sent Total",
)
OFFERS = DocumentType(
    kind="offer",
    path="/3/offers",
    wrapper="Offer",
    plural="Offers",
    fields=OFFER,
    number_field="DocumentNumber",
    rows_field="OfferRows",
    quantity_field="Quantity",
    date_field="OfferDate",
    list_fields="@url Cancelled Currency CustomerName CustomerNumber DocumentNumber OfferDate Project Sent Total",
)
ARTICLES = DocumentType(
    kind="article",
    path=ARTICLES_PATH,
    wrapper="Article",
    plural="Articles",
    fields=ARTICLE,
    number_field="ArticleNumber",
)
# What Fortnox fills in when a document does not say.
DOCUMENT_DEFAULTS: dict[str, Any] = {"Currency": "SEK", "Cancelled": False, "Sent": False}
INVOICE_DEFAULTS: dict[str, Any] = {
    "Booked": False,
    "CurrencyRate": 1,
    "CurrencyUnit": 1,
    "InvoiceType": "INVOICE",
    "NoxFinans": False,
}


def target_of(path: str) -> str:
    """Which API a request path belongs to (Fortnox's token endpoint included)."""
    if path.startswith(API_PREFIX) or path == TOKEN_PATH:
        return "fortnox"
    if path == "/invoices":
        return "invoiceservice"
    return "softone"


# Paths that continue with a document's number (and maybe an action): stats fold the number.
NUMBERED_PATHS = (
    ("/3/invoices/", "{DocumentNumber}"),
    ("/3/orders/", "{DocumentNumber}"),
    ("/3/offers/", "{DocumentNumber}"),
    (ARTICLES_PATH + "/", "{ArticleNumber}"),
)


def route_label(method: str, path: str) -> str:
    """The stats key of a request: "METHOD /path" with a document's number folded, so that the keys stay
    few: ``PUT /3/invoices/{DocumentNumber}/credit``, ``GET /3/articles-v2/{ArticleNumber}``."""
    for prefix, placeholder in NUMBERED_PATHS:
        if path.startswith(prefix):
            number, sep, action = path[len(prefix) :].partition("/")
            if number and "/" not in action:
                path = prefix + placeholder + sep + action
            break
    return f"{method} {path}"


def bearer_token(headers: Mapping[str, str]) -> str:
    """The token of an ``Authorization: Bearer <token>`` header ("" if there is none)."""
    scheme, _, value = headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def sandbox_state(request: Request) -> SandboxState:
    """The app's sandbox state."""
    state: SandboxState = request.app.state.sandbox
    return state


def error_response(error: FortnoxError) -> JSONResponse:
    """A capitalised ErrorInformation body (validation errors, 404)."""
    body = {"ErrorInformation": {"Error": 1, "Message": error.message, "Code": error.code}}
    return JSONResponse(body, status_code=error.status)


# -- OAuth2 ------------------------------------------------------------------------------------
def _oauth_error(status: int, error: str, description: str) -> JSONResponse:
    headers = {"Cache-Control": "no-store"}
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="fortnox"'
    return JSONResponse({"error": error, "error_description": description}, status_code=status, headers=headers)


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, sep, secret = decoded.partition(":")
    return (client_id, secret) if sep else None


def _token_answer(state: SandboxState, account: FortnoxAccount, refresh_token: str | None) -> JSONResponse:
    access = state.fortnox.issue_access_token(account)
    state.stats.fortnox.tokens_issued += 1
    body: dict[str, Any] = {"access_token": access.value}
    if refresh_token is not None:
        body["refresh_token"] = refresh_token
    body |= {"scope": account.scope, "expires_in": state.config.fortnox_token_ttl_seconds, "token_type": "bearer"}
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


async def token(request: Request) -> Response:
    state = sandbox_state(request)
    credentials = _basic_credentials(request)
    account = state.fortnox.client(*credentials) if credentials else None
    if account is None:
        return _oauth_error(401, "invalid_client", "Client authentication failed (HTTP Basic client_id:client_secret)")
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return _oauth_error(400, "invalid_request", "The body must be application/x-www-form-urlencoded")
    form = dict(parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True))
    grant_type = form.get("grant_type")
    if grant_type == "refresh_token":
        value = form.get("refresh_token")
        if not value:
            return _oauth_error(400, "invalid_request", "refresh_token is missing")
        try:
            state.fortnox.spend_refresh_token(account, value)
        except RefreshTokenError as exc:
            if exc.reused:
                state.stats.fortnox.refresh_token_reuse += 1
            return _oauth_error(400, "invalid_grant", exc.description)
        return _token_answer(state, account, state.fortnox.issue_refresh_token(account))
    if grant_type == "client_credentials":
        tenant_id = request.headers.get("tenantid")
        if not tenant_id:
            return _oauth_error(400, "invalid_request", "The TenantId header is missing")
        if account.tenant_id is None:
            return _oauth_error(400, "unauthorized_client", "Client does not allow service account")
        if not secrets.compare_digest(tenant_id, account.tenant_id):
            return _oauth_error(400, "invalid_grant", "Unknown TenantId for this client")
        return _token_answer(state, account, None)
    if not grant_type:
        return _oauth_error(400, "invalid_request", "grant_type is missing")
    return _oauth_error(400, "unsupported_grant_type", f"grant_type {grant_type!r} is not supported")


# -- documents ---------------------------------------------------------------------------------
def authenticate(request: Request) -> FortnoxAccount | Response:
    """The account the bearer token acts for, or the 401 to answer."""
    account = sandbox_state(request).fortnox.authenticate(bearer_token(request.headers))
    if account is None:
        return JSONResponse(UNAUTHORIZED_BODY, status_code=401)
    return account


def _dec(value: Any) -> Decimal:
    return Decimal(str(value)) if value is not None else Decimal(0)


def document_total(doc: Mapping[str, Any], doc_type: DocumentType) -> float:
    """The rows' sum including VAT (see the module docstring for what is left out)."""
    total = Decimal(0)
    vat_included = doc.get("VATIncluded") is True
    for row in doc.get(doc_type.rows_field or "") or []:
        gross = _dec(row.get(doc_type.quantity_field or "")) * _dec(row.get("Price"))
        discount = _dec(row.get("Discount"))
        net = gross - discount if row.get("DiscountType") == "AMOUNT" else gross * (1 - discount / 100)
        vat = _dec(row["VAT"]) if row.get("VAT") is not None else Decimal(25)
        total += net if vat_included else net * (1 + vat / 100)
    return float(total.quantize(CENT, ROUND_HALF_UP))


def document_view(entry: LedgerEntry, doc_type: DocumentType, base_url: str) -> dict[str, Any]:
    """A saved document as Fortnox answers it: as sent, plus its number, @url and defaults."""
    out = dict(entry.document)
    out[doc_type.number_field] = entry.number
    out["@url"] = f"{base_url}{doc_type.path}/{quote(entry.number, safe='')}"
    if doc_type.kind == "article":
        return out
    assert doc_type.date_field is not None
    defaults = {**DOCUMENT_DEFAULTS, **(INVOICE_DEFAULTS if doc_type is INVOICES else {})}
    defaults |= {"CustomerName": entry.customer_name, doc_type.date_field: entry.invoice_date}
    for name, value in defaults.items():
        if out.get(name) is None:
            out[name] = value
    out["Total"] = document_total(entry.document, doc_type)
    if doc_type is INVOICES:
        out["Balance"] = out["Total"]
    return out


def today(epoch_seconds: float) -> str:
    """The UTC day of an epoch time, ``YYYY-MM-DD`` (a document's date when it has none)."""
    return datetime.fromtimestamp(epoch_seconds, UTC).date().isoformat()


def assign_row_ids(state: SandboxState, doc: dict[str, Any], doc_type: DocumentType) -> None:
    """Give every row of ``doc`` a new ``RowId`` (Fortnox generates them on create and on every update)."""
    for row in doc.get(doc_type.rows_field or "") or []:
        row["RowId"] = state.fortnox.next_row_id()


def save_document(
    state: SandboxState,
    account: FortnoxAccount,
    doc_type: DocumentType,
    number: str,
    doc: dict[str, Any],
    request_id: str,
    origin: dict[str, str] | None = None,
) -> LedgerEntry:
    """Save a new, valid document under a free ``number``: its rows get RowIds, the ledger and the account's
    indexes get it. ``origin`` is for a document an action made: its first history event instead of
    "create" (``{"operation": "credit", "from": "7", ...}``)."""
    now = state.clock()
    assign_row_ids(state, doc, doc_type)
    customer_nr = doc.get("CustomerNumber")
    reference: str | None
    day: str | None
    if doc_type is ARTICLES:
        reference, day = number, None
    else:
        reference = doc.get(doc_type.reference_field) if doc_type.reference_field else None
        day = doc.get(doc_type.date_field or "") or today(now)
    history: list[dict[str, Any]] = []
    if origin:
        history.append({"at": iso_utc(now), "operation": origin["operation"], "request_id": request_id} | origin)
    entry = LedgerEntry(
        key=number,
        kind=doc_type.kind,
        company_id=account.company_id,
        number=number,
        customer_nr=customer_nr,
        customer_name=state.config.customers.get(customer_nr, "") if customer_nr else "",
        invoice_date=day,
        external_id=reference,
        created_at=now,
        request_id=request_id,
        document=doc,
        target="fortnox",
        history=history,
    )
    state.add(entry)
    state.fortnox.index(account.client_id, entry, reference if doc_type.reference_field else None)
    return entry


def base_url(request: Request) -> str:
    """The sandbox's own address, for ``@url``."""
    return str(request.base_url).rstrip("/")


async def parsed_body(request: Request) -> Any:
    """The request's JSON body, or the FortnoxError to answer (no body, JSON syntax)."""
    raw = await request.body()
    if not raw.strip():
        return FortnoxError(CODE_NO_DATA, "Ingen eller felaktig typ av data.")
    try:
        return parse_json(raw)
    except ValueError as exc:
        return FortnoxError(CODE_JSON_SYNTAX, f"Error deserializing JSON: JSON_ERROR_SYNTAX ({exc})")


async def create(request: Request, doc_type: DocumentType) -> Response:
    state = sandbox_state(request)
    account = authenticate(request)
    if isinstance(account, Response):
        return account
    body = await parsed_body(request)
    if isinstance(body, FortnoxError):
        return error_response(body)
    doc = unwrap(body, doc_type.wrapper)
    if isinstance(doc, FortnoxError):
        return error_response(doc)
    if doc_type is ARTICLES:
        error = validate_article(doc, doc_type.fields)
    else:
        assert doc_type.rows_field is not None
        error = validate_document(doc, doc_type.fields, doc_type.rows_field, state.config.customers, account.easy_vat)
    if error is not None:
        return error_response(error)
    # No `await` from here on: the number is checked and taken atomically.
    fortnox = state.fortnox
    number = doc.get(doc_type.number_field) or None
    if number is not None and fortnox.number_taken(account.client_id, doc_type.kind, number):
        what = "Artikelnummer" if doc_type is ARTICLES else "Dokumentnummer"
        taken = field_error(CODE_NUMBER_IN_USE, f"{what} {number} används redan.", doc_type.number_field)
        return error_response(taken)
    number = number or fortnox.next_number(account.client_id, doc_type.kind)
    entry = save_document(state, account, doc_type, number, doc, str(uuid.uuid4()))
    return JSONResponse({doc_type.wrapper: document_view(entry, doc_type, base_url(request))}, status_code=201)


@dataclass(frozen=True)
class ListQuery:
    """The supported filters and paging of a list request."""

    equal: dict[str, str]  # list field -> required value
    from_date: str | None
    to_date: str | None
    page: int
    limit: int


def _positive(params: Mapping[str, str], name: str, default: int, high: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= high:
        raise ValueError(f"{name}={raw}")
    return int(raw)


def parse_list_query(params: Mapping[str, str], doc_type: DocumentType) -> ListQuery:
    """The list parameters Fortnox documents for ``doc_type`` that the sandbox supports; ValueError
    naming the parameter if one is invalid."""
    filters = {"documentnumber": "DocumentNumber", "customernumber": "CustomerNumber"}
    if doc_type.reference_field is not None:
        filters |= {
            "externalinvoicereference1": "ExternalInvoiceReference1",
            "externalinvoicereference2": "ExternalInvoiceReference2",
        }
    equal = {field: params[name] for name, field in filters.items() if params.get(name)}
    dates = {name: params.get(name) or None for name in ("fromdate", "todate")}
    for name, value in dates.items():
        if value is not None and not is_date(value):
            raise ValueError(f"{name}={value}")
    return ListQuery(
        equal=equal,
        from_date=dates["fromdate"],
        to_date=dates["todate"],
        page=_positive(params, "page", 1, 10**9),
        limit=_positive(params, "limit", DEFAULT_LIMIT, MAX_LIMIT),
    )


def _sort_key(entry: LedgerEntry) -> tuple[int, int, str]:
    """Numbers in numeric order (2 before 10); an article's non-numeric number after them."""
    number = entry.number
    return (0, int(number), "") if number.isascii() and number.isdigit() else (1, 0, number)


async def list_documents(request: Request, doc_type: DocumentType) -> Response:
    state = sandbox_state(request)
    account = authenticate(request)
    if isinstance(account, Response):
        return account
    try:
        query = parse_list_query(query_params(request), doc_type)
    except ValueError as exc:
        return error_response(field_error(CODE_INVALID_PARAMETER, "Ogiltig parameter i anropet.", str(exc)))
    reference = query.equal.get("ExternalInvoiceReference1")
    base = base_url(request)
    found = []
    for entry in state.fortnox.documents(account.client_id, doc_type.kind, reference):
        view = document_view(entry, doc_type, base)
        day = entry.invoice_date or ""
        if any(view.get(field) != value for field, value in query.equal.items()):
            continue
        if (query.from_date and day < query.from_date) or (query.to_date and day > query.to_date):
            continue
        found.append((entry, view))
    found.sort(key=lambda pair: _sort_key(pair[0]))
    start = (query.page - 1) * query.limit
    page = found[start : start + query.limit]
    meta = {
        "@TotalResources": len(found),
        "@TotalPages": max(1, math.ceil(len(found) / query.limit)),
        "@CurrentPage": query.page,
    }
    items = [{name: view.get(name) for name in doc_type.list_fields.split()} for _, view in page]
    return JSONResponse({"MetaInformation": meta, doc_type.plural: items})


def _endpoint(doc_type: DocumentType) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        if request.method == "POST":
            return await create(request, doc_type)
        return await list_documents(request, doc_type)

    return endpoint


def routes() -> list[Route]:
    """The token endpoint, creates and lists (the routes of one document are sandbox.fortnox_actions')."""
    return [
        Route(TOKEN_PATH, token, methods=["POST"]),
        *(Route(t.path, _endpoint(t), methods=["GET", "POST"]) for t in (INVOICES, ORDERS, OFFERS)),
        Route(ARTICLES_PATH, _endpoint(ARTICLES), methods=["POST"]),
    ]
