"""One pooled httpx client per process, with explicit timeouts, and the HTTP → error-type boundary.

`classify_status()` and `classify_exception()` are the single place where an HTTP answer or an httpx exception
becomes one of our error types (see worker/errors.py); connectors call them and never interpret status codes
themselves.

The process's client times every request it sends (answer read, or failure) for the
erpsync_http_request_duration_seconds histogram (worker/observability/metrics.py), labelled with the target of the log
context the request is made in (the send step binds it, worker/pipeline/send.py, so POSTs, look-ups and token
requests all carry it).
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import httpx

from worker.errors import (
    AmbiguousError,
    ConnectFailed,
    ErpSyncError,
    PermanentError,
    RateLimited,
    RequestRejected,
    ServiceUnavailable,
)
from worker.observability.logs import current
from worker.redaction import redact_url, secrets_filter
from worker.settings import Settings, get_settings


def quieten_httpx_logging() -> None:
    """httpx logs each request's full URL (keys and token included) at INFO: never let that through."""
    for name in ("httpx", "httpcore"):
        logger = logging.getLogger(name)
        logger.setLevel(max(logger.level, logging.WARNING))
        if secrets_filter() not in logger.filters:
            logger.addFilter(secrets_filter())


class MeasuredClient(httpx.Client):
    """An httpx client that reports each request's duration, including failed ones, to `observe(target, s)`."""

    def __init__(self, *, observe: Callable[[str, float], None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._observe = observe

    def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        started = time.perf_counter()
        try:
            return super().send(request, **kwargs)
        finally:
            self._observe(str(current().get("target") or "unknown"), time.perf_counter() - started)


def make_client(
    settings: Settings,
    transport: httpx.BaseTransport | None = None,
    observe: Callable[[str, float], None] | None = None,
) -> httpx.Client:
    """A pooled client with our timeouts; with `observe`, every request's duration is reported to it."""
    quieten_httpx_logging()
    timeout = httpx.Timeout(
        connect=settings.http_connect_timeout,
        read=settings.http_read_timeout,
        write=settings.http_write_timeout,
        pool=settings.http_pool_timeout,
    )
    limits = httpx.Limits(
        max_connections=settings.http_max_connections, max_keepalive_connections=settings.http_max_connections
    )
    options: dict[str, Any] = {
        "timeout": timeout,
        "limits": limits,
        "transport": transport,
        "headers": {"User-Agent": "erpsync/0.1"},
    }
    if observe is None:
        return httpx.Client(**options)
    return MeasuredClient(observe=observe, **options)


@lru_cache(maxsize=1)
def get_client() -> httpx.Client:
    """The process-wide client (thread-safe; created lazily so a forked pool child gets its own), timing every
    request for the metrics."""
    from worker.observability.metrics import recorder

    return make_client(get_settings(), observe=recorder().http_request)


def parse_retry_after(value: str | None) -> float | None:
    """`Retry-After` in seconds or as an HTTP date -> seconds from now (never negative)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def classify_exception(exc: httpx.HTTPError, url: httpx.URL | str) -> ErpSyncError:
    """Map a transport failure: did the request possibly reach the ERP?"""
    where = redact_url(url)
    name = type(exc).__name__
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return ConnectFailed(f"could not connect to {where} ({name})")
    if isinstance(exc, httpx.WriteError | httpx.WriteTimeout):
        # The body did not get through whole: the ERP cannot have parsed and saved it.
        return ConnectFailed(f"sending to {where} failed before the body was complete ({name})")
    if isinstance(exc, httpx.ReadTimeout | httpx.ReadError | httpx.RemoteProtocolError):
        return AmbiguousError(f"request to {where} was sent but no complete answer came ({name})")
    if isinstance(exc, httpx.TimeoutException | httpx.NetworkError | httpx.TransportError):
        return AmbiguousError(f"request to {where} failed after it may have been sent ({name})")
    return PermanentError(f"request to {where} could not be made ({name})")


def classify_status(response: httpx.Response) -> ErpSyncError | None:
    """None for 2xx; otherwise the error type for this status (401 is handled by the caller first)."""
    status = response.status_code
    if 200 <= status < 300:
        return None
    where = redact_url(response.request.url)
    detail = response.text[:300].strip() if response.content else ""
    message = f"{response.request.method} {where} answered {status}" + (f": {detail}" if detail else "")
    if status == 429:
        return RateLimited(message, retry_after=parse_retry_after(response.headers.get("Retry-After")), status=status)
    if status in (502, 503, 504):
        return ServiceUnavailable(
            message, retry_after=parse_retry_after(response.headers.get("Retry-After")), status=status
        )
    if status >= 500:
        # 500 (and other 5xx): the ERP failed while handling a request it had received; what it saved
        # before failing is unknown.
        return AmbiguousError(message, status=status)
    return RequestRejected(message, status=status)
