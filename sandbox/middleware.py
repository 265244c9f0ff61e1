"""ASGI middleware around every request: simulated latency, fault injection, stats, access log.

ERP requests (every path not under ``/_sandbox``) wait the configured latency, may be hit by
a fault rule (sandbox.faults) or, if no rule claims them, by a random fault
(sandbox.random_faults; never on ``/Login/Token``), are counted in the stats per
``"METHOD /path"`` and status, and are logged as one line with the key and token values
masked. Operator requests (``/_sandbox/...``) are only logged (at DEBUG).

Retry-After bookkeeping: a random 429 records, for the request it answered (company, route and
the client's ``Idempotency-Key`` header, or a digest of the body when there is none), the time
before which that request must not come back; the same request ARRIVING earlier (before the
simulated latency) counts in ``stats["early_retries"]``. Other requests of the company are not
held to it: concurrent workers sending other batches are not retries of it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import time
from http import HTTPStatus
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox.auth import masked_query, scope_query_params
from sandbox.config import Company
from sandbox.faults import FaultRule
from sandbox.random_faults import FaultProfile
from sandbox.responses import operation_result
from sandbox.state import SandboxState

log = logging.getLogger("sandbox.access")

DROP_MARKER = "drop"  # the "status" recorded in stats/log for a dropped connection
LOGIN_PATH = "/Login/Token"  # never hit by random faults, never counted as an early retry
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


async def _send_internal_error(send: Send) -> None:
    """HTTP 500 with an operation result: Success false, ErrorMessage and Exception set."""
    result = operation_result(success=False, error_message="Internt serverfel.")
    result["Exception"] = INTERNAL_ERROR_EXCEPTION
    data = json.dumps(result, ensure_ascii=False).encode()
    headers = [(b"content-type", b"application/json; charset=utf-8"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": 500, "headers": headers})
    await send({"type": "http.response.body", "body": data})


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


async def _discard(message: Message) -> None:
    """A ``send`` that throws the normal response away (after-commit faults replace it)."""


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
            outcome = await self._erp_request(scope, receive, recording_send, seen)
        finally:
            self.state.stats.leave()  # not `stats`: a reset may have replaced it meanwhile
        self.state.stats.count(f"{scope['method']} {path}", outcome)
        self._log(scope, outcome, started, logging.INFO)

    async def _erp_request(self, scope: Scope, receive: Receive, send: Send, seen: dict[str, int]) -> str:
        """Handle one ERP request; returns what the client got: a status code or "drop"."""
        buffered = await _buffered(receive)
        if buffered is None:
            return "disconnected"
        receive, body = buffered
        path: str = scope["path"]
        params = scope_query_params(scope)
        company = self.state.config.companies.get(params.get("companyapikey", ""))
        faultable = path != LOGIN_PATH
        request_digest = _retry_identity(scope, path, body)
        if faultable and company is not None:
            self.state.check_arrival(company, self.state.clock(), f"{scope['method']} {path}", request_digest)
        delay_ms = self.state.latency_ms + random.uniform(0, self.state.latency_jitter_ms)
        if delay_ms > 0:
            await asyncio.sleep(delay_ms / 1000)
        rule = self.state.faults.take(path)
        if rule is None and faultable:
            kind = self.state.random_faults.draw(path)
            if kind == "token_expiry" and not self.state.token_used_before(params.get("token", "")):
                kind = None  # a token never expires on its first use (nor would a renewed one at once)
            profile = self.state.random_faults.profile
            if kind is not None and profile is not None:
                self.state.stats.count_fault(kind)
                log.info("fault: random %s on %s", kind, path)
                return await self._random_fault(kind, profile, scope, receive, send, seen, company, params,
                                                request_digest)  # fmt: skip
        if rule is None or rule.kind == "delay":
            if rule is not None:
                log.info("fault: delay %d ms on %s", rule.delay_ms, scope["path"])
                await asyncio.sleep(rule.delay_ms / 1000)
            await self.app(scope, receive, send)
            return str(seen.get("status"))
        log.info("fault: %s on %s", rule.kind, scope["path"])
        if rule.kind.endswith("_after_commit"):
            await self.app(scope, receive, _discard)  # documents are saved, answer thrown away
        if rule.kind.startswith("status"):
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
        company: Company | None,
        params: dict[str, str],
        request_digest: str,
    ) -> str:
        """Apply one drawn fault (see sandbox.random_faults.KINDS); returns what the client got."""
        if kind == "429":
            if company is not None:
                self.state.told_to_wait(company, profile.retry_after, request_digest)
            await _send_status(send, 429, retry_after=str(profile.retry_after))
            return "429"
        if kind == "503":
            await _send_status(send, 503)
            return "503"
        if kind == "token_expiry":
            self.state.expire_token(params.get("token", ""))
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
        await self.app(scope, receive, _discard)  # *_after_commit: saved, answer thrown away
        if kind == "drop_after_commit":
            await _drop_connection(send)
            return DROP_MARKER
        await _send_internal_error(send)
        return "500"

    @staticmethod
    def _log(scope: Scope, outcome: str, started: float, level: int) -> None:
        raw_query = scope.get("query_string", b"").decode("latin-1")
        query = masked_query(parse_qsl(raw_query, keep_blank_values=True))
        target = scope["path"] + (f"?{query}" if query else "")
        elapsed_ms = (time.perf_counter() - started) * 1000
        log.log(level, "%s %s -> %s (%.1f ms)", scope["method"], target, outcome, elapsed_ms)
