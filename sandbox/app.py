"""The Starlette app: the endpoints of the three ERP APIs the project uses, plus the operator endpoints.

Fortnox's routes are in sandbox.fortnox (token, create, list) and sandbox.fortnox_actions (one document:
retrieve, update, delete, actions), the invoice service's in sandbox.invoice_service.
SoftOne GO routes (all parameters in the query string, see sandbox.auth):

* ``GET|POST /Login/Token?companyApiKey=&connectApiKey=`` -> ``{"Token", "ExpiresIn", "ValidTo"}``.
  The specs only say "call /Login/Token"; the sandbox takes the two keys from the query string
  like every other endpoint and accepts both methods.
* ``POST /Economy/Billing/CustomerInvoices`` (invoice example's path; the overview's
  ``/Economy/CustomerInvoices/Orders`` is an alias) -> creates customer invoices.
* ``POST /Economy/Billing/Orders`` (overview; the example's ``/Economy/Billing/Order`` is an
  alias) -> creates orders.
* ``POST /Economy/Billing/CustomerInvoices/Filter`` (aliases ``/Economy/CustomerInvoices/Filter``
  and the example's ``/Economy/Billing/CustomerInvoices/Search``) -> JSON array of invoices.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox import control, fortnox, fortnox_actions, invoice_service, webhooks
from sandbox.auth import authenticate, company_for_keys, query_params, unauthorized
from sandbox.config import SandboxConfig
from sandbox.jsonbody import parse_json
from sandbox.middleware import SandboxMiddleware
from sandbox.persistence import SaveBeforeAnswer, StateFile
from sandbox.responses import info_message, invoice_view, operation_result
from sandbox.rules import ERROR_INVALID_BODY, ERROR_VALIDATION, validate_document
from sandbox.search import parse_criteria, select
from sandbox.state import Kind, SandboxState, iso_utc


def sandbox_state(request: Request) -> SandboxState:
    state: SandboxState = request.app.state.sandbox
    return state


def bad_request(error_number: int, message: str) -> JSONResponse:
    result = operation_result(success=False, error_number=error_number, error_message=message)
    return JSONResponse(result, status_code=400)


async def login(request: Request) -> Response:
    state = sandbox_state(request)
    company = company_for_keys(state, query_params(request))
    if company is None:
        return unauthorized()
    token = state.issue_token(company)
    return JSONResponse(
        {
            "Token": token.value,
            "ExpiresIn": state.config.token_ttl_seconds,
            "ValidTo": iso_utc(token.expires_at, "seconds"),
        }
    )


async def _authenticated_json(request: Request) -> tuple[Any, Any] | Response:
    """(company, parsed body) of an ERP call, or the 401/400 answer to give instead."""
    company = authenticate(sandbox_state(request), request)
    if isinstance(company, Response):
        return company
    try:
        return company, parse_json(await request.body())
    except ValueError as exc:
        return bad_request(ERROR_INVALID_BODY, f"Ogiltig JSON i anropet: {exc}")


async def _create_documents(request: Request, kind: Kind) -> Response:
    state = sandbox_state(request)
    checked = await _authenticated_json(request)
    if isinstance(checked, Response):
        return checked
    company, docs = checked
    if not isinstance(docs, list) or not all(isinstance(d, dict) for d in docs):
        return bad_request(ERROR_INVALID_BODY, "Anropets innehåll måste vara en JSON-array av objekt.")
    request_id = str(uuid.uuid4())
    keys: list[int] = []
    strings: list[str] = []
    # No `await` from here on: the array is saved atomically relative to other requests.
    for doc in docs:
        error = validate_document(doc, state.config.customers)
        if error is not None:
            # Documents before this one stay saved, but their Keys are not returned, and the
            # message does not say which document failed (as the real service).
            return JSONResponse(operation_result(success=False, error_number=error.number, error_message=error.message))
        entry = state.create(kind, company, doc, request_id)
        keys.append(entry.key)
        if kind == "order":
            strings.append(entry.number)  # orders return their numbers (example: ["211"])
    # Invoices return Strings [] as in the invoice example; their number is visible via Filter.
    return JSONResponse(
        operation_result(success=True, info=info_message(len(keys)), request_id=request_id, keys=keys, strings=strings)
    )


async def create_invoices(request: Request) -> Response:
    return await _create_documents(request, "customer_invoice")


async def create_orders(request: Request) -> Response:
    return await _create_documents(request, "order")


async def filter_invoices(request: Request) -> Response:
    state = sandbox_state(request)
    checked = await _authenticated_json(request)
    if isinstance(checked, Response):
        return checked
    company, body = checked
    if not isinstance(body, dict):
        return bad_request(ERROR_INVALID_BODY, "Anropets innehåll måste vara ett JSON-objekt.")
    try:
        criteria = parse_criteria(body, query_params(request).get("maxnrrows"))
    except ValueError as exc:
        return bad_request(ERROR_VALIDATION, str(exc))
    return JSONResponse([invoice_view(e) for e in select(state.ledger, company.company_id, criteria)])


def erp_routes() -> list[Route]:
    invoices = ["/Economy/Billing/CustomerInvoices", "/Economy/CustomerInvoices/Orders"]
    orders = ["/Economy/Billing/Orders", "/Economy/Billing/Order"]
    filters = [
        "/Economy/Billing/CustomerInvoices/Filter",
        "/Economy/CustomerInvoices/Filter",
        "/Economy/Billing/CustomerInvoices/Search",
    ]
    routes = [Route("/Login/Token", login, methods=["GET", "POST"])]
    for paths, endpoint in ((invoices, create_invoices), (orders, create_orders), (filters, filter_invoices)):
        routes += [Route(p, endpoint, methods=["POST"]) for p in paths]
    return routes


def create_app(
    config: SandboxConfig | None = None,
    *,
    clock: Callable[[], float] | None = None,
    state_file: str | Path | None = None,
) -> Starlette:
    """A fresh sandbox app with its own state (``app.state.sandbox``): in memory, or kept in ``state_file``
    (sandbox.persistence: loaded from it, every change saved to it before the answer; ``app.state.state_file``,
    to be closed when the app is done). StateFileError (a ValueError, one line) if it cannot be used.

    ``clock`` (epoch seconds) replaces ``time.time`` for token expiry, for tests.
    """
    config = config or SandboxConfig()
    state = SandboxState(config) if clock is None else SandboxState(config, clock)
    receivers = webhooks.Receivers()  # erpsync's job webhooks' receivers (sandbox.webhooks)
    middleware = [Middleware(SandboxMiddleware, state=state)]
    kept: StateFile | None = None
    if state_file is not None:
        kept = StateFile.open(state_file)
        try:
            kept.load(state, receivers)
        except ValueError:
            kept.close()
            raise
        # Inside SandboxMiddleware: a change is saved before a fault there can throw the answer away.
        middleware.append(Middleware(SaveBeforeAnswer, state=state, receivers=receivers, state_file=kept))
    apis = erp_routes() + fortnox.routes() + fortnox_actions.routes() + invoice_service.routes()
    app = Starlette(routes=apis + control.routes() + webhooks.routes(), middleware=middleware)
    app.state.sandbox = state
    app.state.webhooks = receivers
    app.state.state_file = kept
    return app
