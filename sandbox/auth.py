"""Authentication from the query string: companyApiKey + connectApiKey (+ token).

Query parameter NAMES are matched case-insensitively (the specs spell ``token`` and ``Token``,
``importId`` and ``importid``); ``importId`` and ``specialFunctionalities`` are accepted and
ignored. Keys and tokens are secrets: nothing here logs them or echoes them in a response.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.types import Scope

from sandbox.config import Company
from sandbox.state import SandboxState

SECRET_PARAMS = frozenset({"companyapikey", "connectapikey", "token"})


def query_params(request: Request) -> dict[str, str]:
    """Query parameters with lower-cased names (first value wins)."""
    out: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        out.setdefault(name.lower(), value)
    return out


def scope_query_params(scope: Scope) -> dict[str, str]:
    """:func:`query_params` for an ASGI scope (middleware runs before a Request exists)."""
    out: dict[str, str] = {}
    for name, value in parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True):
        out.setdefault(name.lower(), value)
    return out


def masked_query(pairs: Iterable[tuple[str, str]]) -> str:
    """The query string for a log line, with key and token values replaced by ``***``."""
    return "&".join(f"{k}={'***' if k.lower() in SECRET_PARAMS else v}" for k, v in pairs)


def unauthorized(text: str = "Unauthorized") -> PlainTextResponse:
    return PlainTextResponse(text, status_code=401)


def company_for_keys(state: SandboxState, params: dict[str, str]) -> Company | None:
    """The company if companyApiKey is known and connectApiKey is allowed for it."""
    company = state.config.companies.get(params.get("companyapikey", ""))
    if company is None or params.get("connectapikey") not in company.connect_api_keys:
        return None
    return company


def authenticate(state: SandboxState, request: Request) -> Company | PlainTextResponse:
    """The calling company, or the 401 response to send."""
    params = query_params(request)
    company = company_for_keys(state, params)
    if company is None:
        return unauthorized()
    if not state.token_valid(params.get("token", ""), company):
        return unauthorized("Invalid or expired token")
    return company
