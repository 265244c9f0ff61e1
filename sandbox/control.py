"""Operator / test endpoints under ``/_sandbox`` (no authentication; never part of the ERP API).

* ``GET  /_sandbox/health``          -> ``{"ok": true}``
* ``GET  /_sandbox/ledger``          -> ``{"count", "documents": [...]}`` of every API; filters
  ``target`` (softone, fortnox, invoiceservice), ``kind`` (customer_invoice, order, offer,
  article), ``external_id``, ``company_id``; ``full=1`` adds each document's body (as sent, or as
  a Fortnox update or action left it), ``history=1`` each document's history (``[{"at",
  "operation": "create" | "update" | "credit" | ..., "request_id", ...}]``, see
  sandbox.state.LedgerEntry). Documents a Fortnox action created (credit invoices, invoices and
  orders converted from orders / offers) are entries of their own; a deleted article stays
* ``GET  /_sandbox/stats``           -> request counts per "METHOD /path" and status, etc., and a
  ``fortnox`` section (requests, rate_limited, max_in_window, injected_429, refresh_token_reuse,
  ..., and the current ``rate_limit``)
* ``POST /_sandbox/reset``           -> clears ledger, stats, fault rules, Retry-After records
  and re-arms the start-up random faults with their seed (Keys and numbers keep increasing,
  tokens and refresh tokens stay valid, latency and the Fortnox rate limit unchanged)
* ``GET|POST|DELETE /_sandbox/faults`` -> ``{"faults": [rules], "random": profile or null}``.
  POST decides by the body's shape: an object with ``"probabilities"`` replaces the random
  fault profile (sandbox.random_faults, re-seeded); anything else is one rule or a list of
  rules to append (sandbox.faults). DELETE clears both.
* ``GET|POST /_sandbox/latency``     -> ``{"ms", "jitter_ms"}`` (POST sets either or both)
* ``POST /_sandbox/tokens/expire``   -> every issued token becomes invalid (test 401 renewal):
  SoftOne tokens and Fortnox access tokens (Fortnox refresh tokens stay valid)
* ``GET|POST /_sandbox/fortnox/ratelimit`` -> ``{"limit", "window_seconds"}`` of Fortnox's rate
  limit per access token (POST sets either or both; it applies at once)
* ``POST /_sandbox/fortnox/authorize`` ``{"client_id"}`` -> ``{"refresh_token"}``: the account's user
  authorises the integration again, as Fortnox's authorization-code flow ends (consent, then the code
  exchanged at the token endpoint): a new single-use refresh token for that client, which the token
  endpoint takes like any other. Refresh tokens issued before stay as they are (spent or not).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.config import is_positive_number
from sandbox.random_faults import FaultProfile
from sandbox.rules import is_int
from sandbox.state import TARGETS, SandboxState


def _state(request: Request) -> SandboxState:
    state: SandboxState = request.app.state.sandbox
    return state


def _error(message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=400)


async def _json_body(request: Request) -> Any:
    body = await request.body()
    return json.loads(body) if body.strip() else None


async def health(request: Request) -> Response:
    return JSONResponse({"ok": True})


async def ledger(request: Request) -> Response:
    params = request.query_params
    entries = _state(request).ledger
    if "target" in params:
        if params["target"] not in TARGETS:
            return _error(f"target must be one of {', '.join(TARGETS)}")
        entries = [e for e in entries if e.target == params["target"]]
    if "kind" in params:
        entries = [e for e in entries if e.kind == params["kind"]]
    if "external_id" in params:
        entries = [e for e in entries if e.external_id == params["external_id"]]
    if "company_id" in params:
        try:
            company_id = int(params["company_id"])
        except ValueError:
            return _error("company_id must be an integer")
        entries = [e for e in entries if e.company_id == company_id]
    full, history = (params.get(name, "").lower() in ("1", "true", "yes") for name in ("full", "history"))
    return JSONResponse({"count": len(entries), "documents": [e.summary(full, history) for e in entries]})


async def stats(request: Request) -> Response:
    state = _state(request)
    data = state.stats.as_json()
    data["fortnox"]["rate_limit"] = state.fortnox.limiter.as_json()
    return JSONResponse(data)


async def reset(request: Request) -> Response:
    _state(request).reset()
    return JSONResponse({"ok": True})


def _faults_json(state: SandboxState) -> dict[str, Any]:
    return {"faults": state.faults.as_json(), "random": state.random_faults.as_json()}


async def faults(request: Request) -> Response:
    state = _state(request)
    if request.method == "POST":
        try:
            body = await _json_body(request)
            if isinstance(body, dict) and "probabilities" in body:
                state.random_faults.configure(FaultProfile.from_json(body))
                return JSONResponse(_faults_json(state))
            added = state.faults.add(body)
        except ValueError as exc:  # also json.JSONDecodeError
            return _error(str(exc))
        return JSONResponse({"added": len(added), **_faults_json(state)})
    if request.method == "DELETE":
        state.faults.clear()
        state.random_faults.clear()
    return JSONResponse(_faults_json(state))


async def latency(request: Request) -> Response:
    state = _state(request)
    if request.method == "POST":
        try:
            body = await _json_body(request)
        except ValueError as exc:
            return _error(str(exc))
        if not isinstance(body, dict):
            return _error('expected {"ms": N, "jitter_ms": N}')
        for name in ("ms", "jitter_ms"):
            if name in body and not (is_int(body[name]) and body[name] >= 0):
                return _error(f"{name} must be an integer >= 0")
        state.latency_ms = body.get("ms", state.latency_ms)
        state.latency_jitter_ms = body.get("jitter_ms", state.latency_jitter_ms)
    return JSONResponse({"ms": state.latency_ms, "jitter_ms": state.latency_jitter_ms})


async def expire_tokens(request: Request) -> Response:
    return JSONResponse({"expired": _state(request).expire_tokens()})


async def fortnox_rate_limit(request: Request) -> Response:
    limiter = _state(request).fortnox.limiter
    if request.method == "POST":
        try:
            body = await _json_body(request)
        except ValueError as exc:
            return _error(str(exc))
        if not isinstance(body, dict) or not body or set(body) - {"limit", "window_seconds"}:
            return _error('expected {"limit": N, "window_seconds": S} (either or both)')
        if "limit" in body and not (is_int(body["limit"]) and body["limit"] >= 1):
            return _error("limit must be an integer >= 1")
        if "window_seconds" in body and not is_positive_number(body["window_seconds"]):
            return _error("window_seconds must be a number > 0")
        limiter.limit = body.get("limit", limiter.limit)
        limiter.window_seconds = float(body.get("window_seconds", limiter.window_seconds))
    return JSONResponse(limiter.as_json())


async def fortnox_authorize(request: Request) -> Response:
    state = _state(request)
    try:
        body = await _json_body(request)
    except ValueError as exc:
        return _error(str(exc))
    if not isinstance(body, dict) or set(body) != {"client_id"}:
        return _error('expected {"client_id": "..."}')
    account = state.config.fortnox_accounts.get(str(body["client_id"]))
    if account is None:
        return _error(f"no Fortnox account with client_id {body['client_id']!r}")
    return JSONResponse(
        {"refresh_token": state.fortnox.issue_refresh_token(account)}, headers={"Cache-Control": "no-store"}
    )


def routes() -> list[Route]:
    return [
        Route("/_sandbox/health", health, methods=["GET"]),
        Route("/_sandbox/ledger", ledger, methods=["GET"]),
        Route("/_sandbox/stats", stats, methods=["GET"]),
        Route("/_sandbox/reset", reset, methods=["POST"]),
        Route("/_sandbox/faults", faults, methods=["GET", "POST", "DELETE"]),
        Route("/_sandbox/latency", latency, methods=["GET", "POST"]),
        Route("/_sandbox/tokens/expire", expire_tokens, methods=["POST"]),
        Route("/_sandbox/fortnox/ratelimit", fortnox_rate_limit, methods=["GET", "POST"]),
        Route("/_sandbox/fortnox/authorize", fortnox_authorize, methods=["POST"]),
    ]
