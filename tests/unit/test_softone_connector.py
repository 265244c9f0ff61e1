"""SoftOneConnector (worker/connectors/softone.py) against an httpx.MockTransport and fakeredis."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import fakeredis
import httpx
import pytest
import redis
from pydantic import SecretStr

from schemas import DocumentKind, InvoiceFilter
from worker.connectors.softone import SoftOneConnector
from worker.errors import (
    AmbiguousError,
    AuthenticationFailed,
    BatchRejected,
    ConnectFailed,
    ErpSyncError,
    PermanentError,
    RateLimited,
    RequestRejected,
    ServiceUnavailable,
    TransientError,
    WaitingForRetryAfter,
)
from worker.settings import Settings, TenantConfig
from worker.store.errors import StoreUnavailable

COMPANY_KEY = "company-KEY-6f1d2a77"
CONNECT_KEY = "connect-KEY-9b8c7d55"
TOKENS = [f"tok-SECRET-{i:04d}-zq" for i in range(1, 10)]
SECRETS = (COMPANY_KEY, CONNECT_KEY, *TOKENS)

INVOICE_PATH = "/Economy/Billing/CustomerInvoices"
ORDER_PATH = "/Economy/Billing/Orders"
FILTER_PATH = "/Economy/Billing/CustomerInvoices/Filter"
TOKEN_PATH = "/Login/Token"
TOKEN_KEY = "t:token:acme"

OK_RESULT = {"Success": True, "ErrorNumber": 0, "Keys": [501, 502], "Strings": ["F-501", "F-502"]}
DOCS = [{"ExternalId": "R-1", "CustomerNr": "013"}, {"ExternalId": "R-2", "CustomerNr": "014"}]

Reply = httpx.Response | type[Exception] | Callable[[httpx.Request], httpx.Response]


class FakeErp:
    """The MockTransport handler: scripted answers for /Login/Token and for every other POST."""

    def __init__(self, logins: list[Reply] | None = None, posts: list[Reply] | None = None) -> None:
        self.login_replies = list(logins or [])
        self.post_replies = list(posts or [])
        self.logins: list[httpx.Request] = []
        self.posts: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api" + TOKEN_PATH:
            self.logins.append(request)
            default: Reply = httpx.Response(200, json={"Token": TOKENS[len(self.logins) - 1]})
            reply = self.login_replies.pop(0) if self.login_replies else default
        else:
            self.posts.append(request)
            reply = self.post_replies.pop(0) if self.post_replies else httpx.Response(200, json=OK_RESULT)
        if isinstance(reply, httpx.Response):
            return reply
        if isinstance(reply, type) and issubclass(reply, Exception):
            raise reply("scripted transport failure", request=request)  # type: ignore[call-arg]
        return reply(request)

    def tokens_used(self) -> list[str | None]:
        return [r.url.params.get("token") for r in self.posts]


def make_settings(**overrides: Any) -> Settings:
    return Settings(key_prefix="t", softone_base_url="http://erp.test/api", demo_tenant=False, **overrides)


def make_tenant(name: str = "acme") -> TenantConfig:
    return TenantConfig(
        name=name,
        base_url="http://erp.test/api/",
        company_api_key=SecretStr(COMPANY_KEY),
        connect_api_key=SecretStr(CONNECT_KEY),
    )


@pytest.fixture
def redis_client() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)


def make_connector(
    erp: FakeErp, cache: fakeredis.FakeRedis, *, tenant: TenantConfig | None = None, **settings: Any
) -> SoftOneConnector:
    client = httpx.Client(transport=httpx.MockTransport(erp))
    return SoftOneConnector(tenant or make_tenant(), make_settings(**settings), client, cache)


# ----- token handling


def test_token_is_fetched_once_and_cached_in_redis(redis_client: fakeredis.FakeRedis) -> None:
    erp = FakeErp()
    connector = make_connector(erp, redis_client)
    first = connector.post_documents(DocumentKind.CUSTOMER_INVOICE, DOCS)
    connector.post_documents(DocumentKind.CUSTOMER_INVOICE, DOCS)

    assert len(erp.logins) == 1 and len(erp.posts) == 2
    assert erp.tokens_used() == [TOKENS[0], TOKENS[0]]
    assert redis_client.get(TOKEN_KEY) == TOKENS[0]
    assert 0 < redis_client.ttl(TOKEN_KEY) <= make_settings().token_ttl_seconds
    assert [(c.key, c.number) for c in first] == [(501, "F-501"), (502, "F-502")]


def test_two_connectors_on_the_same_redis_share_one_token() -> None:
    erp = FakeErp()
    server = fakeredis.FakeServer()
    one = make_connector(erp, fakeredis.FakeRedis(server=server, decode_responses=True))
    two = make_connector(erp, fakeredis.FakeRedis(server=server, decode_responses=True))
    one.post_documents(DocumentKind.CUSTOMER_INVOICE, DOCS)
    two.post_documents(DocumentKind.ORDER, DOCS)
    assert len(erp.logins) == 1
    assert erp.tokens_used() == [TOKENS[0], TOKENS[0]]


def test_each_tenant_has_its_own_token(redis_client: fakeredis.FakeRedis) -> None:
    erp = FakeErp()
    make_connector(erp, redis_client).post_documents(DocumentKind.CUSTOMER_INVOICE, DOCS)
    make_connector(erp, redis_client, tenant=make_tenant("beta")).post_documents(DocumentKind.CUSTOMER_INVOICE, DOCS)
    assert len(erp.logins) == 2
    assert redis_client.get("t:token:acme") == TOKENS[0]
    assert redis_client.get("t:token:beta") == TOKENS[1]


def test_a_401_renews_the_token_once_and_retries(redis_client: fakeredis.FakeRedis) -> None:
    erp = FakeErp(posts=[httpx.Response(401, text="Invalid or expired token")])
    connector = make_connector(erp, redis_client)
    result = connector.post_documents(DocumentKind.CUSTOMER_INVOICE, DOCS)
    assert [c.key for c in result] == [501, 502]
    assert len(erp.logins) == 2 and len(erp.posts) == 2
    assert erp.tokens_used() == [TOKENS[0], TOKENS[1]]
    assert erp.posts[0].content == erp.posts[1].content
    assert redis_client.get(TOKEN_KEY) == TOKENS[1]


def test_a_second_401_is_authentication_failed(redis_client: fakeredis.FakeRedis) -> None:
    erp = FakeErp(posts=[httpx.Response(401), httpx.Response(401)])
    connector = make_connector(erp, redis_client)
    with pytest.raises(AuthenticationFailed) as info:
        connector.post_documents(DocumentKind.CUSTOMER_INVOICE, DOCS)
    assert isinstance(info.value, PermanentError)
    assert info.value.status == 401
    assert "acme" in str(info.value)
    assert len(erp.logins) == 2 and len(erp.posts) == 2
    assert redis_client.get(TOKEN_KEY) is None  # the refused token is not kept


def test_invalidate_keeps_a_token_another_worker_already_replaced(redis_client: fakeredis.FakeRedis) -> None:
    connector = make_connector(FakeErp(), redis_client)
    redis_client.set(TOKEN_KEY, "newer-token")
    connector.invalidate("older-token")
    assert redis_client.get(TOKEN_KEY) == "newer-token"
    connector.invalidate("newer-token")
    assert redis_client.get(TOKEN_KEY) is None


def test_login_refused_is_authentication_failed_and_nothing_is_posted(redis_client: fakeredis.FakeRedis) -> None:
    erp = FakeErp(logins=[httpx.Response(401, text="Unauthorized")])
    with pytest.raises(AuthenticationFailed) as info:
        make_connector(erp, redis_client).post_documents(DocumentKind.CUSTOMER_INVOICE, DOCS)
    assert info.value.status == 401
    assert erp.posts == []
    assert redis_client.get(TOKEN_KEY) is None


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (httpx.ConnectError, ConnectFailed),
        (httpx.ReadTimeout, ConnectFailed),  # a login creates nothing: a lost answer is just retried
        (httpx.Response(503, headers={"Retry-After": "4"}), ServiceUnavailable),
    ],
)
def test_login_failures_are_transient(redis_client: fakeredis.FakeRedis, reply: Reply, error: type) -> None:
    erp = FakeErp(logins=[reply])
    with pytest.raises(error) as info:
        make_connector(erp, redis_client).post_documents(DocumentKind.CUSTOMER_INVOICE, DOCS)
    assert isinstance(info.value, TransientError)
    assert erp.posts == []


def test_token_cache_down_is_connect_failed_and_nothing_is_sent() -> None:
    server = fakeredis.FakeServer()
    server.connected = False
    erp = FakeErp()
    connector = make_connector(erp, fakeredis.FakeRedis(server=server, decode_responses=True))
    with pytest.raises(ConnectFailed, match=r"^token cache unavailable \(ConnectionError\); nothing was sent$"):
        connector.post_documents(DocumentKind.CUSTOMER_INVOICE, DOCS)
    assert erp.logins == [] and erp.posts == []


def test_a_renewal_lock_not_had_in_time_is_connect_failed_and_nothing_is_sent(
    redis_client: fakeredis.FakeRedis,
) -> None:
    redis_client.set(TOKEN_KEY + ":lock", "another worker", px=60_000)  # another worker is logging in, and stays
    erp = FakeErp()
    connector = make_connector(erp, redis_client)
    connector.token_lock_seconds = 0.2
    with pytest.raises(ConnectFailed, match=r"^token cache unavailable \(LockError\); nothing was sent$"):
        connector.post_documents(DocumentKind.CUSTOMER_INVOICE, DOCS)
    assert erp.logins == [] and erp.posts == []


def test_a_retry_after_pauses_every_worker_of_the_tenant(redis_client: fakeredis.FakeRedis) -> None:
    erp = FakeErp(posts=[httpx.Response(429, headers={"Retry-After": "30"})])
    with pytest.raises(RateLimited):
        make_connector(erp, redis_client).post_documents(DocumentKind.CUSTOMER_INVOICE, DOCS)
    assert 29_000 < redis_client.pttl("t:pause:acme") <= 30_001
    with pytest.raises(WaitingForRetryAfter) as info:  # another worker: nothing sent while the pause runs
        make_connector(erp, redis_client).post_documents(DocumentKind.CUSTOMER_INVOICE, DOCS)
    assert 29 < (info.value.retry_after or 0) <= 30.001  # the pause is written to the millisecond
    assert len(erp.posts) == 1


def test_what_the_token_cache_cannot_do_after_a_login_does_not_fail_the_post(
    redis_client: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pause that cannot be read is no pause; a fresh token that cannot be shared is kept to ourselves."""
    erp = FakeErp(posts=[httpx.Response(401)])
    connector = make_connector(erp, redis_client)

    def unavailable(*args: Any) -> Any:
        raise StoreUnavailable(redis.ConnectionError("Error 111 connecting"))

    monkeypatch.setattr(connector.tokens, "paused_until", unavailable)
    monkeypatch.setattr(connector.tokens, "offer", unavailable)
    assert [c.key for c in connector.post_documents(DocumentKind.CUSTOMER_INVOICE, DOCS)] == [501, 502]
    assert erp.tokens_used() == [TOKENS[0], TOKENS[1]]
    assert redis_client.get(TOKEN_KEY) is None  # not shared: the next request logs in again


@pytest.mark.parametrize(
    "reply",
    [
        httpx.Response(200, json={"Token": "tok-object-form-1"}),
        httpx.Response(200, json={"token": "tok-object-form-1"}),
        httpx.Response(200, json={"access_token": "tok-object-form-1"}),
        httpx.Response(200, json="tok-object-form-1"),  # a bare JSON string
        httpx.Response(200, text="tok-object-form-1\n", headers={"Content-Type": "text/plain"}),
    ],
    ids=["Token", "token", "access_token", "json-string", "plain-text"],
)
def test_login_answer_forms(redis_client: fakeredis.FakeRedis, reply: httpx.Response) -> None:
    erp = FakeErp(logins=[reply])
    make_connector(erp, redis_client).post_documents(DocumentKind.CUSTOMER_INVOICE, DOCS)
    assert erp.tokens_used() == ["tok-object-form-1"]
    assert redis_client.get(TOKEN_KEY) == "tok-object-form-1"


@pytest.mark.parametrize("body", [{}, {"Token": ""}, {"Token": None}, [], ""])
def test_login_answer_without_token_is_permanent(redis_client: fakeredis.FakeRedis, body: Any) -> None:
    erp = FakeErp(logins=[httpx.Response(200, json=body)])
    with pytest.raises(PermanentError, match="no token"):
        make_connector(erp, redis_client).post_documents(DocumentKind.CUSTOMER_INVOICE, DOCS)
    assert erp.posts == []


@pytest.mark.parametrize(
    ("answer", "ttl"),
    [
        ({"Token": "tok-expiring-01", "ExpiresIn": 600}, 540),  # a minute of margin
        ({"Token": "tok-expiring-01", "expires_in": 900}, 840),
        ({"Token": "tok-expiring-01", "ExpiresIn": 30}, 10),  # never below 10 s
        ({"Token": "tok-expiring-01", "ExpiresIn": 7200}, 3300),  # never above token_ttl_seconds
        ({"Token": "tok-expiring-01"}, 3300),
    ],
)
def test_expires_in_shortens_the_cache_ttl(redis_client: fakeredis.FakeRedis, answer: dict, ttl: int) -> None:
    erp = FakeErp(logins=[httpx.Response(200, json=answer)])
    make_connector(erp, redis_client, token_ttl_seconds=3300).post_documents(DocumentKind.CUSTOMER_INVOICE, DOCS)
    assert ttl - 2 <= redis_client.ttl(TOKEN_KEY) <= ttl


# ----- the POST itself


def test_keys_and_token_go_in_the_query_string(redis_client: fakeredis.FakeRedis) -> None:
    erp = FakeErp()
    make_connector(erp, redis_client).post_documents(DocumentKind.CUSTOMER_INVOICE, DOCS)

    (login,) = erp.logins
    assert login.method == "POST"
    assert login.url.path == "/api/Login/Token"
    assert login.url.params["companyApiKey"] == COMPANY_KEY
    assert login.url.params["connectApiKey"] == CONNECT_KEY

    (post,) = erp.posts
    assert post.method == "POST"
    assert post.url.host == "erp.test" and post.url.path == "/api" + INVOICE_PATH
    assert post.url.params["companyApiKey"] == COMPANY_KEY
    assert post.url.params["connectApiKey"] == CONNECT_KEY
    assert post.url.params["token"] == TOKENS[0]
    assert post.url.params["importId"] == "0"
    assert post.headers["Content-Type"] == "application/json"
    assert json.loads(post.content) == DOCS
    for secret in SECRETS:  # never in the body or a header
        assert secret.encode() not in post.content
        assert all(secret not in value for value in post.headers.values())


def test_bytes_body_is_sent_verbatim_and_orders_go_to_the_order_path(redis_client: fakeredis.FakeRedis) -> None:
    erp = FakeErp()
    body = '[{"ExternalId":"Ω-1"}]'.encode()
    make_connector(erp, redis_client).post_documents(DocumentKind.ORDER, body)
    (post,) = erp.posts
    assert post.url.path == "/api" + ORDER_PATH
    assert post.content == body


def test_success_false_is_batch_rejected_with_the_error_message(redis_client: fakeredis.FakeRedis) -> None:
    answer = {"Success": False, "ErrorNumber": 8, "ErrorMessage": "Customer 013 not found", "Keys": None}
    erp = FakeErp(posts=[httpx.Response(200, json=answer)])
    with pytest.raises(BatchRejected) as info:
        make_connector(erp, redis_client).post_documents(DocumentKind.CUSTOMER_INVOICE, DOCS)
    assert isinstance(info.value, PermanentError)
    assert str(info.value) == "Customer 013 not found"
    assert info.value.error_number == 8
    assert info.value.status == 200


def test_success_false_without_message_names_the_error_number(redis_client: fakeredis.FakeRedis) -> None:
    erp = FakeErp(posts=[httpx.Response(200, json={"Success": False, "ErrorNumber": 12})])
    with pytest.raises(BatchRejected, match="ErrorNumber 12"):
        make_connector(erp, redis_client).post_documents(DocumentKind.CUSTOMER_INVOICE, DOCS)


@pytest.mark.parametrize(
    ("reply", "error", "retry_after"),
    [
        (httpx.Response(503, headers={"Retry-After": "7"}, text="maintenance"), ServiceUnavailable, 7.0),
        (httpx.Response(502), ServiceUnavailable, None),
        (httpx.Response(504, headers={"Retry-After": "1.5"}), ServiceUnavailable, 1.5),
        (httpx.Response(429, headers={"Retry-After": "3"}), RateLimited, 3.0),
    ],
)
def test_transient_statuses(
    redis_client: fakeredis.FakeRedis, reply: httpx.Response, error: type, retry_after: float | None
) -> None:
    erp = FakeErp(posts=[reply])
    with pytest.raises(error) as info:
        make_connector(erp, redis_client).post_documents(DocumentKind.CUSTOMER_INVOICE, DOCS)
    assert isinstance(info.value, TransientError)
    assert info.value.retry_after == retry_after
    assert info.value.status == reply.status_code
    assert len(erp.posts) == 1  # the connector itself never retries; the task decides


@pytest.mark.parametrize(
    ("status", "error"),
    [(400, RequestRejected), (403, RequestRejected), (404, RequestRejected), (422, RequestRejected)],
)
def test_client_errors_are_request_rejected(redis_client: fakeredis.FakeRedis, status: int, error: type) -> None:
    erp = FakeErp(posts=[httpx.Response(status, text="bad field CustomerNr")])
    with pytest.raises(error) as info:
        make_connector(erp, redis_client).post_documents(DocumentKind.CUSTOMER_INVOICE, DOCS)
    assert info.value.status == status
    assert "bad field CustomerNr" in str(info.value)


def test_500_is_ambiguous(redis_client: fakeredis.FakeRedis) -> None:
    erp = FakeErp(posts=[httpx.Response(500, text="NullReferenceException")])
    with pytest.raises(AmbiguousError) as info:
        make_connector(erp, redis_client).post_documents(DocumentKind.CUSTOMER_INVOICE, DOCS)
    assert info.value.status == 500


@pytest.mark.parametrize(
    ("exc", "error"),
    [
        (httpx.ConnectError, ConnectFailed),
        (httpx.ConnectTimeout, ConnectFailed),
        (httpx.WriteError, ConnectFailed),
        (httpx.ReadTimeout, AmbiguousError),
        (httpx.ReadError, AmbiguousError),
        (httpx.RemoteProtocolError, AmbiguousError),
    ],
)
def test_transport_failures(redis_client: fakeredis.FakeRedis, exc: type[Exception], error: type) -> None:
    erp = FakeErp(posts=[exc])
    with pytest.raises(error) as info:
        make_connector(erp, redis_client).post_documents(DocumentKind.CUSTOMER_INVOICE, DOCS)
    assert exc.__name__ in str(info.value)
    assert info.value.__suppress_context__  # raised `from None`: the httpx error is not chained into logs


@pytest.mark.parametrize(
    "reply",
    [
        httpx.Response(200, json={}),
        httpx.Response(200, json=[]),
        httpx.Response(200, json={"Keys": [1, 2]}),
        httpx.Response(200, json={"Success": "perhaps"}),
        httpx.Response(200, text="<html>Welcome</html>"),
        httpx.Response(204),
    ],
    ids=["empty-object", "array", "no-success", "bad-success", "html", "no-content"],
)
def test_a_2xx_that_is_not_an_operation_result_is_ambiguous(
    redis_client: fakeredis.FakeRedis, reply: httpx.Response
) -> None:
    erp = FakeErp(posts=[reply])
    with pytest.raises(AmbiguousError, match="not a SoftOne operation result"):
        make_connector(erp, redis_client).post_documents(DocumentKind.CUSTOMER_INVOICE, DOCS)


# ----- Filter


def test_filter_invoices_posts_criteria_and_parses_invoices(redis_client: fakeredis.FakeRedis) -> None:
    found = [
        {
            "InvoiceId": 9001,
            "InvoiceNr": "F-9001",
            "CustomerNr": "013",
            "InvoiceDate": "2026-02-18",
            "TotalAmount": 11.9,
            "VATAmount": 1.9,
            "InvoiceRows": [{"ProductNr": "P1", "Quantity": 1, "UnitPrice": 10}],
            "SomethingNew": "kept",
        },
        {"InvoiceId": 9002},
    ]
    erp = FakeErp(posts=[httpx.Response(200, json=found)])
    criteria = InvoiceFilter(invoice_date_from="2026-02-01", invoice_date_to="2026-02-28", include_preliminary=True)
    invoices = make_connector(erp, redis_client).filter_invoices(criteria)

    (post,) = erp.posts
    assert post.url.path == "/api" + FILTER_PATH
    assert post.url.params["token"] == TOKENS[0] and post.url.params["companyApiKey"] == COMPANY_KEY
    assert post.headers["Content-Type"] == "application/json"
    assert json.loads(post.content) == {
        "InvoiceDateFrom": "2026-02-01",
        "InvoiceDateTo": "2026-02-28",
        "IncludePreliminary": True,
    }
    assert [inv.invoice_id for inv in invoices] == [9001, 9002]
    assert invoices[0].invoice_nr == "F-9001"
    assert str(invoices[0].total_amount) == "11.9" and str(invoices[0].vat_amount) == "1.9"
    assert invoices[0].invoice_rows[0].product_nr == "P1"
    assert invoices[1].invoice_rows == []


@pytest.mark.parametrize(
    "reply",
    [httpx.Response(200, json={"InvoiceId": 1}), httpx.Response(200, json=[{"InvoiceNr": "x"}]), httpx.Response(200)],
)
def test_filter_answer_that_is_not_a_list_of_invoices_is_permanent(
    redis_client: fakeredis.FakeRedis, reply: httpx.Response
) -> None:
    erp = FakeErp(posts=[reply])
    with pytest.raises(PermanentError, match="not an array of invoices"):
        make_connector(erp, redis_client).filter_invoices(InvoiceFilter())


# ----- secrets never leak into errors or logs

SCENARIOS: dict[str, dict[str, list[Reply]]] = {
    "ok": {},
    "401-then-ok": {"posts": [httpx.Response(401)]},
    "401-twice": {"posts": [httpx.Response(401), httpx.Response(401)]},
    "login-401": {"logins": [httpx.Response(401)]},
    "login-500": {"logins": [httpx.Response(500, text="boom")]},
    "login-connect-error": {"logins": [httpx.ConnectError]},
    "login-read-timeout": {"logins": [httpx.ReadTimeout]},
    "login-no-token": {"logins": [httpx.Response(200, json={})]},
    "rejected": {"posts": [httpx.Response(200, json={"Success": False, "ErrorMessage": "no customer"})]},
    "400": {"posts": [httpx.Response(400, text="CustomerNr missing")]},
    "429": {"posts": [httpx.Response(429, headers={"Retry-After": "2"})]},
    "500": {"posts": [httpx.Response(500, text="server error")]},
    "503": {"posts": [httpx.Response(503, headers={"Retry-After": "5"})]},
    "connect-error": {"posts": [httpx.ConnectError]},
    "read-timeout": {"posts": [httpx.ReadTimeout]},
    "write-error": {"posts": [httpx.WriteError]},
    "not-a-result": {"posts": [httpx.Response(200, text="<html/>")]},
}


def _run_every_scenario(cache: fakeredis.FakeRedis) -> list[ErpSyncError]:
    errors: list[ErpSyncError] = []
    for script in SCENARIOS.values():
        cache.flushall()
        connector = make_connector(FakeErp(**script), cache)
        try:
            connector.post_documents(DocumentKind.CUSTOMER_INVOICE, DOCS)
        except ErpSyncError as exc:
            errors.append(exc)
    cache.flushall()
    erp = FakeErp(posts=[httpx.Response(200, json={"not": "a list"})])
    try:
        make_connector(erp, cache).filter_invoices(InvoiceFilter(number="F-1"))
    except ErpSyncError as exc:
        errors.append(exc)
    return errors


@pytest.fixture
def logger_levels() -> Any:
    """Set individual loggers' levels for one test (caplog.set_level would also raise its handler's level)."""
    saved: dict[str, int] = {}

    def set_levels(level: int, *names: str) -> None:
        for name in names:
            logger = logging.getLogger(name)
            saved.setdefault(name, logger.level)
            logger.setLevel(level)

    yield set_levels
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


def _assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


def test_errors_never_carry_keys_or_tokens(redis_client: fakeredis.FakeRedis) -> None:
    errors = _run_every_scenario(redis_client)
    assert len(errors) == len(SCENARIOS) - 2 + 1  # "ok" and "401-then-ok" succeed, plus the Filter error
    for error in errors:
        _assert_clean(str(error))
        _assert_clean(repr(error.args))


def test_log_records_never_carry_keys_or_tokens(
    redis_client: fakeredis.FakeRedis, caplog: pytest.LogCaptureFixture, logger_levels: Any
) -> None:
    caplog.set_level(logging.DEBUG)
    # What redaction.install() does in every worker process (celery_app): httpx's own request lines,
    # which carry the raw URL, are kept out of the logs.
    logger_levels(logging.WARNING, "httpx", "httpcore")
    _run_every_scenario(redis_client)
    ours = [r for r in caplog.records if r.name.startswith("worker")]
    assert any("softone POST" in r.getMessage() and "companyApiKey=***" in r.getMessage() for r in ours)
    assert any("softone login ok" in r.getMessage() for r in ours)
    for record in caplog.records:
        _assert_clean(record.getMessage())
    _assert_clean(caplog.text)


def test_log_records_never_carry_keys_or_tokens_without_celery_logging_setup(
    redis_client: fakeredis.FakeRedis, caplog: pytest.LogCaptureFixture, logger_levels: Any
) -> None:
    caplog.set_level(logging.DEBUG)
    logger_levels(logging.NOTSET, "httpx", "httpcore")
    _run_every_scenario(redis_client)
    for record in caplog.records:
        _assert_clean(record.getMessage())


def test_an_error_body_echoing_the_request_url_does_not_leak_secrets(redis_client: fakeredis.FakeRedis) -> None:
    def echo_uri(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            404, json={"Message": f"No HTTP resource was found that matches the request URI '{request.url}'."}
        )

    erp = FakeErp(posts=[echo_uri])
    with pytest.raises(RequestRejected) as info:
        make_connector(erp, redis_client).post_documents(DocumentKind.CUSTOMER_INVOICE, DOCS)
    _assert_clean(str(info.value))
