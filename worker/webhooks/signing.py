"""A webhook's signature: the headers erpsync sends with each POST, and `verify` for receivers and tests.

    ERPSync-Timestamp: 1763680000                      unix seconds when this attempt was signed
    ERPSync-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>
    ERPSync-Delivery:  <job id>.<event id>             the same on every attempt of one delivery: drop repeats by it
    ERPSync-Event:     job.finished

The signed text is the timestamp, a dot and the body exactly as received (bytes, UTF-8 JSON): a receiver checks the
signature before parsing the body, and refuses a timestamp older (or newer) than a few minutes, so that a recorded
request cannot be played again later. `v1=` names the scheme; a header may carry several signatures separated by
commas (e.g. under two secrets while one is being replaced), and one that matches is enough.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

__all__ = [
    "DELIVERY_HEADER",
    "EVENT",
    "EVENT_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "TOLERANCE_SECONDS",
    "sign",
    "signed_headers",
    "verify",
]

TIMESTAMP_HEADER = "ERPSync-Timestamp"
SIGNATURE_HEADER = "ERPSync-Signature"
DELIVERY_HEADER = "ERPSync-Delivery"
EVENT_HEADER = "ERPSync-Event"
EVENT = "job.finished"
SCHEME = "v1"
#: How far a timestamp may be from the receiver's clock, by default.
TOLERANCE_SECONDS = 300


def _bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value


def sign(secret: str | bytes, timestamp: int, body: str | bytes) -> str:
    """The hex HMAC-SHA256 of `<timestamp>.<body>` under `secret`."""
    return hmac.new(_bytes(secret), f"{timestamp}.".encode() + _bytes(body), hashlib.sha256).hexdigest()


def signed_headers(
    secret: str | bytes, body: str | bytes, delivery_id: str, *, now: float | None = None
) -> dict[str, str]:
    """The headers of one attempt to deliver `body`, signed now (or at `now`)."""
    timestamp = int(time.time() if now is None else now)
    return {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: f"{SCHEME}={sign(secret, timestamp, body)}",
        DELIVERY_HEADER: delivery_id,
        EVENT_HEADER: EVENT,
    }


def verify(
    secret: str | bytes,
    headers: Mapping[str, str],
    body: str | bytes,
    tolerance: float = TOLERANCE_SECONDS,
    *,
    now: float | None = None,
) -> bool:
    """Whether `body` with `headers` (any case of their names) was signed under `secret` no more than `tolerance`
    seconds from now. Compares in constant time; a missing or malformed header is False."""
    lower = {name.lower(): value for name, value in headers.items()}
    try:
        timestamp = int(lower.get(TIMESTAMP_HEADER.lower(), ""))
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = sign(secret, timestamp, body)
    given = [part.strip() for part in lower.get(SIGNATURE_HEADER.lower(), "").split(",")]
    signatures = [part.removeprefix(f"{SCHEME}=") for part in given if part.startswith(f"{SCHEME}=")]
    # Every candidate is compared (no early exit): the time taken says nothing about which one matched.
    return sum(hmac.compare_digest(expected.encode(), s.encode()) for s in signatures) > 0
