"""ASGI middleware around every request: simulated latency, fault injection, rate limit, stats, access log.

ERP requests (every path not under ``/_sandbox``, of all three APIs) wait the configured
latency, may be hit by a fault rule (sandbox.faults) or, if no rule claims them, by a random
fault (sandbox.random_faults), are counted in the stats per ``"METHOD /path"`` (a Fortnox
document's number folded: ``PUT /3/invoices/{DocumentNumber}/credit``, ``GET
/3/articles-v2/{ArticleNumber}``) and status, and are logged as one line with the key and token
values masked (bearer tokens travel in headers, which are never logged). Operator requests
(``/_sandbox/...``) are only logged (at DEBUG).

Token endpoints (``/Login/Token``, ``/oauth-v1/token``) never draw a random fault and are not
matched by a ``"*"`` rule; a rule naming their path exactly still applies (e.g. to lose the
answer to a Fortnox renewal after the refresh token was spent: ``drop_after_commit``).

Fortnox's rate limit is measured on ARRIVAL, before the simulated latency - the moment the
request reaches this middleware, before its body is read (the earliest an ASGI app can tell; a
sandbox process the OS leaves waiting for a CPU sees requests late, which narrows the gaps
between them): a request whose access token already had ``limit`` admitted requests in the
sliding window is answered 429 (lower-case ErrorInformation, "Too many requests", no
Retry-After: Fortnox documents none) after the latency, without drawing a random fault or
consuming a rule (see sandbox.fortnox_state). A 429 from a rule or a random fault on a Fortnox
path counts as ``fortnox.injected_429`` instead.

Fault answers take the shape of the API they hit: a random 429 on Fortnox has the Fortnox
error body, ``500_after_commit`` answers SoftOne's operation result, Fortnox's "System
exception" (code 1000003) or the invoice service's error body; ``token_expiry`` expires the
SoftOne token or the Fortnox access token of the request (the invoice service's API tokens are
static: it never draws ``token_expiry``).

Retry-After bookkeeping: a random 429 records, for the request it answered (caller - the SoftOne
company, Fortnox account or invoice-service client -, route and the client's ``Idempotency-Key``
header, or a digest of the body when there is none), the time before which that request must not
come back; the same request ARRIVING earlier (before the simulated latency) counts in
``stats["early_retries"]``. Other requests of the caller are not held to it: concurrent workers
sending other batches are not retries of it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox.auth import masked_query, scope_query_params
from sandbox.faults import FaultRule
from sandbox.fortnox import (
    SYSTEM_EXCEPTION_BODY,
    TOKEN_PATH,
    TOO_MANY_REQUESTS_BODY,
    bearer_token,
    route_label,
    target_of,
)
from sandbox.random_faults import FaultProfile
from sandbox.responses import operation_result
from sandbox.state import SandboxState

log = logging.getLogger("sandbox.access")

DROP_MARKER = "drop"  # the "status" recorded in stats/log for a dropped connection
LOGIN_PATH = "/Login/Token"
TOKEN_PATHS = frozenset({LOGIN_PATH, TOKEN_PATH})  # never hit by random faults, never counted as an early retry
INVOICE_SERVICE_ERROR_BODY = {"status": 500, "errors": [{"field": None, "message": "Internal server error"}]}
INTERNAL_ERROR_EXCEPTION = "System.InvalidOperationException: Ett oväntat fel inträffade (sandbox 500_after_commit)."


async def _send_status(send: Send, status: int, body: str | None = None, retry_after: str | None = None) -> None:
    """A plain-text answer with ``status`` (body: the reason phrase unless given)."""
    data = (body if body is not None else _reason(status)).encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(data)).encode())]
    if retry_after is not None:
        headers.append((b"retry-after", retry_after.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


async def _send_fault_status(rule: FaultRule, send: Send) -> None:
    await _send_status(send, rule.status, rule.body, rule.retry_after)


async def _send_json(send: Send, status: int, body: Any, retry_after: str | None = None) -> None:
    data = json.dumps(body, ensure_ascii=False).encode()
    headers = [(b"content-type", b"application/json; charset=utf-8"), (b"content-length", str(len(data)).encode())]
    if retry_after is not None:
        headers.append((b"retry-after", retry_after.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


async def _send_internal_error(send: Send, target: str) -> None:
    """HTTP 500 in the API's error shape; SoftOne: an operation result, Success false, ErrorMessage and
    Exception set."""
    if target == "fortnox":
        await _send_json(send, 500, SYSTEM_EXCEPTION_BODY)
    elif target == "invoiceservice":
        await _send_json(send, 500, INVOICE_SERVICE_ERROR_BODY)
    else:
        result = operation_result(success=False, error_message="Internt serverfel.")
        result["Exception"] = INTERNAL_ERROR_EXCEPTION
        await _send_json(send, 500, result)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"Status {status}"


async def _drop_connection(send: Send) -> None:
    """Announce a body longer than what is sent, send part of it, and return.

    The server (uvicorn) then closes the connection with the response incomplete, so a real
    HTTP client sees a transport error (httpx.RemoteProtocolError), never a clean response.
    Under httpx.ASGITransport / TestClient there is no connection to drop: they fail with an
    AssertionError instead, so test drop faults against a real server.
    """
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json; charset=utf-8"), (b"content-length", b"4096")],
        }
    )
    await send({"type": "http.response.body", "body": b'{"Success": tr', "more_body": True})


async def _buffered(receive: Receive) -> tuple[Receive, bytes] | None:
    """Read the whole request body now; a ``receive`` that replays it (None if the client left).

    The body is read BEFORE the latency/delay so that a client giving up during the wait does
    not stop the processing: like a real server, the sandbox commits what it fully received.
    """
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    replay: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

    async def replaying_receive() -> Message:
        return replay.pop() if replay else await receive()

    return replaying_receive, body


def _retry_identity(scope: Scope, path: str, body: bytes) -> str:
    """Which earlier request a request repeats: the client's `Idempotency-Key` header when it sends one
    (identical Filter queries of different batches are not retries of each other), else route + body."""
    for name, value in scope.get("headers", []):
        if name == b"idempotency-key" and value:
            return "key:" + hashlib.sha256(f"{path}\n".encode() + value).hexdigest()
    return hashlib.sha256(f"{scope['method']} {path}\n".encode() + body).hexdigest()


async def _committed(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> bool:
    """Run the request for an after-commit fault: True when the app saved it (a 2xx answer, thrown away for the
    fault's); else its own answer (a 401 of an expired token, a 400) goes to the client as it is, since nothing was
    committed for the fault to come after: a real ERP that refused a request does not answer it with a lost reply."""
    held: list[Message] = []

    async def hold(message: Message) -> None:
        held.append(message)

    await app(scope, receive, hold)
    start = next((m for m in held if m["type"] == "http.response.start"), None)
    if start is not None and 200 <= int(start["status"]) < 300:
        return True
    for message in held:
        await send(message)
    return False


@dataclass(frozen=True)
class _Call:
    """What the middleware knows about one ERP request before it reaches the app."""

    path: str
    route: str  # the stats key, "METHOD /path"
    target: str  # "softone", "fortnox" or "invoiceservice"
    token_endpoint: bool
    params: dict[str, str]  # query parameters, lower-cased names
    bearer: str  # the Authorization: Bearer token ("" if none)
    caller: tuple[str, int] | None  # (who, company id) for the Retry-After bookkeeping
    digest: str  # which earlier request this one repeats


class SandboxMiddleware:
    """See the module docstring."""

    def __init__(self, app: ASGIApp, state: SandboxState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        arrived_at = self.state.clock()  # as early as the app can tell: before the body is read
        seen: dict[str, int] = {}

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
            await send(message)

        path: str = scope["path"]
        if path.startswith("/_sandbox"):
            await self.app(scope, receive, recording_send)
            self._log(scope, str(seen.get("status")), started, logging.DEBUG)
            return
        self.state.stats.enter()
        try:
            outcome = await self._erp_request(scope, receive, recording_send, seen, arrived_at)
        finally:
            self.state.stats.leave()  # not `stats`: a reset may have replaced it meanwhile
        self.state.stats.count(route_label(scope["method"], path), outcome)
        self._log(scope, outcome, started, logging.INFO)

    def _caller(self, target: str, params: dict[str, str], bearer: str) -> tuple[str, int] | None:
        """Who sends the request (for the Retry-After bookkeeping), if the credentials name anyone."""
        if target == "fortnox":
            token = self.state.fortnox.valid_token(bearer)
            account = self.state.config.fortnox_accounts.get(token.client_id) if token else None
            return (f"fortnox:{account.client_id}", account.company_id) if account else None
        if target == "invoiceservice":
            client = self.state.config.invoice_service_clients.get(bearer)
            return (f"invoiceservice:{client.client_id}", client.client_id) if client else None
        company = self.state.config.companies.get(params.get("companyapikey", ""))
        return (company.company_api_key, company.company_id) if company else None

    def _call(self, scope: Scope, body: bytes) -> _Call:
        path: str = scope["path"]
        target = target_of(path)
        token_endpoint = path in TOKEN_PATHS
        params = scope_query_params(scope)
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
        bearer = bearer_token(headers)
        return _Call(
            path=path,
            route=route_label(scope["method"], path),
            target=target,
            token_endpoint=token_endpoint,
            params=params,
            bearer=bearer,
            caller=None if token_endpoint else self._caller(target, params, bearer),
            digest=_retry_identity(scope, path, body),
        )

    def _over_rate_limit(self, call: _Call, arrived_at: float) -> bool:
        """Count a Fortnox API request on arrival; True if its access token is over the rate limit."""
        fortnox_stats = self.state.stats.fortnox
        fortnox_stats.requests += 1
        token = self.state.fortnox.valid_token(call.bearer)
        if token is None:
            return False  # no valid token: the app answers 401
        admitted, in_window = self.state.fortnox.limiter.arrive(token.label, arrived_at)
        fortnox_stats.saw(token.label, in_window)
        if not admitted:
            fortnox_stats.limited(token.label)
        return not admitted

    def _token_expirable(self, call: _Call) -> bool:
        """A token never expires on its first use (nor would a renewed one at once); API tokens never."""
        if call.target == "fortnox":
            return self.state.fortnox.token_used_before(call.bearer)
        if call.target == "invoiceservice":
            return False
        return self.state.token_used_before(call.params.get("token", ""))

    def _count_injected_429(self, call: _Call, status: int | str) -> None:
        if call.target == "fortnox" and str(status) == "429":
            self.state.stats.fortnox.injected_429 += 1

    async def _erp_request(
        self, scope: Scope, receive: Receive, send: Send, seen: dict[str, int], arrived_at: float
    ) -> str:
        """Handle one ERP request that arrived at ``arrived_at``; returns what the client got: a status code
        or "drop"."""
        buffered = await _buffered(receive)
        if buffered is None:
            return "disconnected"
        receive, body = buffered
        call = self._call(scope, body)
        if call.caller is not None:
            self.state.check_arrival(call.caller[0], call.caller[1], arrived_at, call.route, call.digest)
        rate_limited = call.target == "fortnox" and not call.token_endpoint and self._over_rate_limit(call, arrived_at)
        delay_ms = self.state.latency_ms + random.uniform(0, self.state.latency_jitter_ms)
        if delay_ms > 0:
            await asyncio.sleep(delay_ms / 1000)
        if rate_limited:
            log.info("fortnox rate limit: 429 on %s", call.path)
            await _send_json(send, 429, TOO_MANY_REQUESTS_BODY)
            return "429"
        rule = self.state.faults.take(call.path, wildcard=not call.token_endpoint)
        if rule is None and not call.token_endpoint:
            kind = self.state.random_faults.draw(call.path)
            if kind == "token_expiry" and not self._token_expirable(call):
                kind = None
            profile = self.state.random_faults.profile
            if kind is not None and profile is not None:
                self.state.stats.count_fault(kind)
                log.info("fault: random %s on %s", kind, call.path)
                return await self._random_fault(kind, profile, scope, receive, send, seen, call)
        if rule is None or rule.kind == "delay":
            if rule is not None:
                log.info("fault: delay %d ms on %s", rule.delay_ms, call.path)
                await asyncio.sleep(rule.delay_ms / 1000)
            await self.app(scope, receive, send)
            return str(seen.get("status"))
        log.info("fault: %s on %s", rule.kind, call.path)
        if rule.kind.endswith("_after_commit") and not await _committed(self.app, scope, receive, send):
            return str(seen.get("status"))  # refused, not saved: its own answer went out
        if rule.kind.startswith("status"):
            self._count_injected_429(call, rule.status)
            await _send_fault_status(rule, send)
            return str(rule.status)
        await _drop_connection(send)
        return DROP_MARKER

    async def _random_fault(
        self,
        kind: str,
        profile: FaultProfile,
        scope: Scope,
        receive: Receive,
        send: Send,
        seen: dict[str, int],
        call: _Call,
    ) -> str:
        """Apply one drawn fault (see sandbox.random_faults.KINDS); returns what the client got."""
        if kind == "429":
            if call.caller is not None:
                self.state.told_to_wait(call.caller[0], profile.retry_after, call.digest)
            self._count_injected_429(call, 429)
            if call.target == "fortnox":
                await _send_json(send, 429, TOO_MANY_REQUESTS_BODY, retry_after=str(profile.retry_after))
            else:
                await _send_status(send, 429, retry_after=str(profile.retry_after))
            return "429"
        if kind == "503":
            await _send_status(send, 503)
            return "503"
        if kind == "token_expiry":
            if call.target == "fortnox":
                self.state.fortnox.expire_token(call.bearer)
            else:
                self.state.expire_token(call.params.get("token", ""))
            await self.app(scope, receive, send)  # authentication now fails: 401
            return str(seen.get("status"))
        if kind == "slow":
            held: list[Message] = []

            async def hold(message: Message) -> None:
                held.append(message)

            await self.app(scope, receive, hold)  # documents are saved now, the answer waits
            await asyncio.sleep(profile.slow_ms / 1000)
            for message in held:
                await send(message)  # uvicorn ignores these if the client has gone meanwhile
            return str(seen.get("status"))
        if not await _committed(self.app, scope, receive, send):  # *_after_commit: saved, answer thrown away
            return str(seen.get("status"))
        if kind == "drop_after_commit":
            await _drop_connection(send)
            return DROP_MARKER
        await _send_internal_error(send, call.target)
        return "500"

    @staticmethod
    def _log(scope: Scope, outcome: str, started: float, level: int) -> None:
        raw_query = scope.get("query_string", b"").decode("latin-1")
        query = masked_query(parse_qsl(raw_query, keep_blank_values=True))
        target = scope["path"] + (f"?{query}" if query else "")
        elapsed_ms = (time.perf_counter() - started) * 1000
        log.log(level, "%s %s -> %s (%.1f ms)", scope["method"], target, outcome, elapsed_ms)
