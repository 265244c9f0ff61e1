"""The HTTP boundary maps every documented case to one error type (issue: failure semantics)."""

from __future__ import annotations

import httpx
import pytest

from worker.connectors.http import classify_exception, classify_status, parse_retry_after
from worker.errors import (
    AmbiguousError,
    ConnectFailed,
    PermanentError,
    RateLimited,
    RequestRejected,
    ServiceUnavailable,
    TransientError,
)

URL = "http://erp/Economy/Billing/CustomerInvoices?companyApiKey=k1&connectApiKey=k2&token=t"


def response(status: int, headers: dict[str, str] | None = None, text: str = "") -> httpx.Response:
    return httpx.Response(status, headers=headers, text=text, request=httpx.Request("POST", URL))


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (429, RateLimited),
        (502, ServiceUnavailable),
        (503, ServiceUnavailable),
        (504, ServiceUnavailable),
        (500, AmbiguousError),
        (400, RequestRejected),
        (403, RequestRejected),
        (404, RequestRejected),
        (422, RequestRejected),
    ],
)
def test_status_mapping(status: int, expected: type) -> None:
    error = classify_status(response(status, text="nope"))
    assert type(error) is expected
    assert "k1" not in str(error) and "token=t" not in str(error)


def test_success_is_not_an_error() -> None:
    assert classify_status(response(200)) is None


def test_transient_and_permanent_are_types() -> None:
    assert isinstance(classify_status(response(503)), TransientError)
    assert isinstance(classify_status(response(422)), PermanentError)


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (httpx.ConnectError("refused"), ConnectFailed),
        (httpx.ConnectTimeout("t"), ConnectFailed),
        (httpx.PoolTimeout("t"), ConnectFailed),
        (httpx.WriteError("w"), ConnectFailed),
        (httpx.ReadTimeout("t"), AmbiguousError),
        (httpx.ReadError("reset"), AmbiguousError),
        (httpx.RemoteProtocolError("incomplete"), AmbiguousError),
    ],
)
def test_transport_errors(exc: httpx.HTTPError, expected: type) -> None:
    error = classify_exception(exc, URL)
    assert type(error) is expected
    assert "k1" not in str(error)


def test_retry_after_seconds_and_http_date() -> None:
    assert parse_retry_after("7") == 7
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0  # in the past
    assert parse_retry_after("garbage") is None
    error = classify_status(response(429, {"Retry-After": "12"}))
    assert isinstance(error, RateLimited) and error.retry_after == 12
