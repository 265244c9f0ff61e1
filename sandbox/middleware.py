"""ASGI middleware around every request: simulated latency, fault injection, stats, access log.

ERP requests (every path not under ``/_sandbox``) wait the configured latency, may be hit by
a fault rule, are counted in the stats per ``"METHOD /path"`` and status, and are logged as
one line with the key and token values masked. Operator requests (``/_sandbox/...``) are only
logged (at DEBUG).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from http import HTTPStatus
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox.auth import masked_query
from sandbox.faults import FaultRule
from sandbox.state import SandboxState

log = logging.getLogger("sandbox.access")

DROP_MARKER = "drop"  # the "status" recorded in stats/log for a dropped connection


async def _send_fault_status(rule: FaultRule, send: Send) -> None:
    body = (rule.body if rule.body is not None else _reason(rule.status)).encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    if rule.retry_after is not None:
        headers.append((b"retry-after", rule.retry_after.encode()))
    await send({"type": "http.response.start", "status": rule.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


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


async def _buffered(receive: Receive) -> Receive | None:
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
    replay: list[Message] = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

    async def replaying_receive() -> Message:
        return replay.pop() if replay else await receive()

    return replaying_receive


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
        receive = buffered
        delay_ms = self.state.latency_ms + random.uniform(0, self.state.latency_jitter_ms)
        if delay_ms > 0:
            await asyncio.sleep(delay_ms / 1000)
        rule = self.state.faults.take(scope["path"])
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

    @staticmethod
    def _log(scope: Scope, outcome: str, started: float, level: int) -> None:
        raw_query = scope.get("query_string", b"").decode("latin-1")
        query = masked_query(parse_qsl(raw_query, keep_blank_values=True))
        target = scope["path"] + (f"?{query}" if query else "")
        elapsed_ms = (time.perf_counter() - started) * 1000
        log.log(level, "%s %s -> %s (%.1f ms)", scope["method"], target, outcome, elapsed_ms)
