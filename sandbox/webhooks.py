"""Webhook receivers under ``/_sandbox/webhooks/{name}``: endpoints for erpsync's signed job webhooks that check each
signature, record what arrived, and fail or hang on purpose (no authentication; never part of an ERP's API).

* ``POST /_sandbox/webhooks/{name}/config`` ``{"secret": "...", "fail_next": N, "fail_status": 503,
  "hang_seconds": S, "tolerance_seconds": 300}`` -> the receiver's settings without its secret (creates the
  receiver; fields left out keep their values). ``fail_next``: the next N attempts are answered ``fail_status``;
  ``hang_seconds``: every attempt is held that long before it is handled.
* ``POST /_sandbox/webhooks/{name}`` -> one attempt. Held ``hang_seconds`` first: a caller that gave up meanwhile is
  counted in ``hung`` and nothing else. Then, while ``fail_next`` lasts, ``fail_status`` (counted in ``refused``).
  Otherwise the signature is checked — ``ERPSync-Signature: v1=<hex HMAC-SHA256(secret, "<ERPSync-Timestamp>.<body>")>``
  with the timestamp within ``tolerance_seconds`` of now — and the attempt recorded as a delivery: 200 if it
  verified, 401 if not. A receiver nobody configured answers 404.
* ``GET /_sandbox/webhooks/{name}`` -> ``{"name", "config", "attempts", "refused", "hung", "deliveries":
  [{"delivery_id", "event", "timestamp", "verified", "received_at", "body"}]}`` (``body``: the JSON received, parsed).
* ``DELETE /_sandbox/webhooks/{name}`` -> forgets the receiver.

The check is written here from the header format, not taken from erpsync's code (the sandbox imports none of it).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

__all__ = ["Receiver", "Receivers", "routes", "signature_ok"]


def signature_ok(secret: str, timestamp: str, signature: str, body: bytes, tolerance: float, now: float) -> bool:
    """Whether ``signature`` (``v1=<hex>``, several separated by commas) is the HMAC-SHA256 of ``<timestamp>.<body>``
    under ``secret``, with ``timestamp`` (unix seconds) within ``tolerance`` of ``now``."""
    try:
        sent_at = int(timestamp)
    except ValueError:
        return False
    if abs(now - sent_at) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{sent_at}.".encode() + body, hashlib.sha256).hexdigest().encode()
    given = [part.strip().removeprefix("v1=") for part in signature.split(",") if part.strip().startswith("v1=")]
    return any(hmac.compare_digest(expected, part.encode()) for part in given)


@dataclass
class Receiver:
    """One named receiver: its settings and what it got."""

    secret: str = ""
    fail_next: int = 0
    fail_status: int = 503
    hang_seconds: float = 0.0
    tolerance_seconds: float = 300.0
    attempts: int = 0
    refused: int = 0
    hung: int = 0
    deliveries: list[dict[str, Any]] = field(default_factory=list)

    def config(self) -> dict[str, Any]:
        return {
            "fail_next": self.fail_next,
            "fail_status": self.fail_status,
            "hang_seconds": self.hang_seconds,
            "tolerance_seconds": self.tolerance_seconds,
            "has_secret": bool(self.secret),
        }

    def configure(self, body: dict[str, Any]) -> None:
        """Apply the fields given; ValueError naming the first bad one."""
        checks = {
            "secret": lambda v: isinstance(v, str) and v != "",
            "fail_next": lambda v: _is_int(v) and v >= 0,
            "fail_status": lambda v: _is_int(v) and 100 <= v <= 599,
            "hang_seconds": lambda v: _is_number(v) and v >= 0,
            "tolerance_seconds": lambda v: _is_number(v) and v > 0,
        }
        unknown = sorted(set(body) - set(checks))
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(unknown)}; expected {', '.join(checks)}")
        for name, ok in checks.items():
            if name in body and not ok(body[name]):
                raise ValueError(f"{name}: invalid value")
        for name, value in body.items():
            setattr(self, name, value)


class Receivers:
    """Every receiver of one sandbox app, by name."""

    def __init__(self) -> None:
        self.by_name: dict[str, Receiver] = {}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _receivers(request: Request) -> Receivers:
    receivers: Receivers = request.app.state.webhooks
    return receivers


async def configure(request: Request) -> Response:
    name = request.path_params["name"]
    try:
        body = json.loads(await request.body() or b"{}")
        if not isinstance(body, dict):
            raise ValueError('expected {"secret": ..., "fail_next": N, "hang_seconds": S}')
        receiver = _receivers(request).by_name.get(name) or Receiver()
        receiver.configure(body)
    except ValueError as exc:  # also json.JSONDecodeError
        return JSONResponse({"error": str(exc)}, status_code=400)
    _receivers(request).by_name[name] = receiver
    return JSONResponse({"name": name, "config": receiver.config()})


async def receive(request: Request) -> Response:
    receiver = _receivers(request).by_name.get(request.path_params["name"])
    if receiver is None:
        return JSONResponse({"error": "no such receiver: configure it first"}, status_code=404)
    body = await request.body()
    receiver.attempts += 1
    if receiver.hang_seconds:
        await asyncio.sleep(receiver.hang_seconds)
        if await request.is_disconnected():
            receiver.hung += 1
            return Response(status_code=504)  # nobody is listening any more
    if receiver.fail_next > 0:
        receiver.fail_next -= 1
        receiver.refused += 1
        return JSONResponse({"error": "failing on purpose"}, status_code=receiver.fail_status)
    headers = request.headers
    timestamp = headers.get("erpsync-timestamp", "")
    verified = bool(receiver.secret) and signature_ok(
        receiver.secret, timestamp, headers.get("erpsync-signature", ""), body, receiver.tolerance_seconds, time.time()
    )
    try:
        parsed: Any = json.loads(body)
    except ValueError:
        parsed = None
    receiver.deliveries.append(
        {
            "delivery_id": headers.get("erpsync-delivery"),
            "event": headers.get("erpsync-event"),
            "timestamp": timestamp,
            "verified": verified,
            "received_at": time.time(),
            "body": parsed,
        }
    )
    return JSONResponse({"ok": verified}, status_code=200 if verified else 401)


async def show(request: Request) -> Response:
    name = request.path_params["name"]
    receivers = _receivers(request).by_name
    if request.method == "DELETE":
        return JSONResponse({"deleted": receivers.pop(name, None) is not None})
    receiver = receivers.get(name)
    if receiver is None:
        return JSONResponse({"error": "no such receiver"}, status_code=404)
    return JSONResponse(
        {
            "name": name,
            "config": receiver.config(),
            "attempts": receiver.attempts,
            "refused": receiver.refused,
            "hung": receiver.hung,
            "deliveries": receiver.deliveries,
        }
    )


def routes() -> list[Route]:
    return [
        Route("/_sandbox/webhooks/{name}/config", configure, methods=["POST"]),
        Route("/_sandbox/webhooks/{name}", receive, methods=["POST"]),
        Route("/_sandbox/webhooks/{name}", show, methods=["GET", "DELETE"]),
    ]
