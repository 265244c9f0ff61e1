"""FortnoxConnector (worker/connectors/fortnox.py) against an httpx.MockTransport and fakeredis: OAuth
renewal (single-use refresh tokens under a lock, client credentials), bearer calls, error bodies in both
key casings, look-ups, and the shared rate limit."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import fakeredis
import httpx
import pytest
from pydantic import SecretStr

from schemas import DocumentKind
from worker.connectors import LookupRequest
from worker.connectors.fortnox import FortnoxConnector
from worker.errors import (
    AuthenticationFailed,
    ConnectFailed,
    RateLimited,
    RequestRejected,
    WaitingForRetryAfter,
)
from worker.settings import Settings, TenantConfig

CLIENT_SECRET = "fx-client-SECRET-77"
FIRST_REFRESH = "fx-refresh-SECRET-0"


class FakeFortnox:
    """An OAuth server with single-use refresh tokens and an API that answers scripted replies."""

    def __init__(self, api: list[httpx.Response] | None = None) -> None:
        self.valid_refresh = {FIRST_REFRESH}
        self.issued = 0
        self.token_requests: list[dict[str, Any]] = []
        self.api_requests: list[httpx.Request] = []
        self.api_replies = list(api or [])
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth-v1/token":
            return self._token(request)
        self.api_requests.append(request)
        if not request.headers.get("Authorization", "").startswith("Bearer at-"):
            return httpx.Response(401, json={"ErrorInformation": {"error": 1, "message": "Invalid", "code": 2000311}})
        if self.api_replies:
            return self.api_replies.pop(0)
        wrapper = next(iter(json.loads(request.content)))
        return httpx.Response(201, json={wrapper: {"DocumentNumber": str(1000 + len(self.api_requests))}})

    def _token(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
            user = base64.b64decode(request.headers["Authorization"].split()[1]).decode()
            self.token_requests.append({**form, "basic": user, "tenant": request.headers.get("TenantId")})
            if user != f"client-1:{CLIENT_SECRET}":
                return httpx.Response(401, json={"error": "invalid_client"})
            self.issued += 1
            if form["grant_type"] == "client_credentials":
                return httpx.Response(200, json={"access_token": f"at-{self.issued}", "expires_in": 3600})
            if form.get("refresh_token") not in self.valid_refresh:
                return httpx.Response(400, json={"error": "invalid_grant", "error_description": "used"})
            self.valid_refresh.discard(form["refresh_token"])
            new_refresh = f"rt-{self.issued}"
            self.valid_refresh.add(new_refresh)
            return httpx.Response(
                200, json={"access_token": f"at-{self.issued}", "refresh_token": new_refresh, "expires_in": 3600}
            )


def make_tenant(**overrides: Any) -> TenantConfig:
    fields: dict[str, Any] = {
        "name": "acme",
        "target": "fortnox",
        "base_url": "http://fortnox.test",
        "client_id": "client-1",
        "client_secret": SecretStr(CLIENT_SECRET),
        "refresh_token": SecretStr(FIRST_REFRESH),
    }
    return TenantConfig(**{**fields, **overrides})


def make_connector(
    erp: Callable[[httpx.Request], httpx.Response],
    cache: fakeredis.FakeRedis,
    tenant: TenantConfig | None = None,
    **settings: Any,
) -> FortnoxConnector:
    client = httpx.Client(transport=httpx.MockTransport(erp))
    config = Settings(key_prefix="t", demo_tenant=False, **settings)
    return FortnoxConnector(tenant or make_tenant(), config, client, cache)


@pytest.fixture
def cache() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)


INVOICE = b'[{"CustomerNumber":"013","ExternalInvoiceReference1":"R-1"}]'


def test_post_wraps_the_document_and_returns_its_number(cache: fakeredis.FakeRedis) -> None:
    erp = FakeFortnox()
    created = make_connector(erp, cache).post_documents(DocumentKind.CUSTOMER_INVOICE, INVOICE, "b1")
    assert [(c.key, c.number) for c in created] == [("1001", "1001")]
    sent = erp.api_requests[0]
    assert sent.url.path == "/3/invoices" and sent.method == "POST"
    assert json.loads(sent.content) == {"Invoice": {"CustomerNumber": "013", "ExternalInvoiceReference1": "R-1"}}
    assert sent.headers["Authorization"] == "Bearer at-1"


def test_articles_go_to_the_alpha_path_and_answer_their_number(cache: fakeredis.FakeRedis) -> None:
    erp = FakeFortnox(api=[httpx.Response(201, json={"Article": {"ArticleNumber": "hammer"}})])
    created = make_connector(erp, cache).post_documents(DocumentKind.ARTICLE, b'[{"Description":"Hammer"}]', "b")
    assert created[0].key == "hammer"
    assert erp.api_requests[0].url.path == "/3/articles-v2"


def test_refresh_token_is_used_once_and_its_successor_is_kept_for_every_worker(cache: fakeredis.FakeRedis) -> None:
    erp = FakeFortnox()
    make_connector(erp, cache).post_documents(DocumentKind.CUSTOMER_INVOICE, INVOICE, "b1")
    # Another worker: the cached access token, no renewal.
    make_connector(erp, cache).post_documents(DocumentKind.CUSTOMER_INVOICE, INVOICE, "b2")
    assert len(erp.token_requests) == 1
    assert cache.get("t:fortnox:refresh:acme") == "rt-1"
    # The access token is due: the stored successor renews it, never the tenants file's spent one.
    cache.delete("t:token:acme")
    make_connector(erp, cache).post_documents(DocumentKind.CUSTOMER_INVOICE, INVOICE, "b3")
    assert [r["refresh_token"] for r in erp.token_requests] == [FIRST_REFRESH, "rt-1"]
    assert erp.api_requests[-1].headers["Authorization"] == "Bearer at-2"


def test_token_is_cached_until_shortly_before_it_expires(cache: fakeredis.FakeRedis) -> None:
    make_connector(FakeFortnox(), cache, fortnox_token_renew_seconds=300).token()
    assert 3290 <= cache.ttl("t:token:acme") <= 3300


def test_concurrent_workers_renew_once(cache: fakeredis.FakeRedis) -> None:
    erp = FakeFortnox()
    tokens: list[str] = []
    threads = [threading.Thread(target=lambda: tokens.append(make_connector(erp, cache).token())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(erp.token_requests) == 1, "a single-use refresh token was spent more than once"
    assert set(tokens) == {"at-1"}


def test_refused_refresh_token_needs_an_operator(cache: fakeredis.FakeRedis) -> None:
    erp = FakeFortnox()
    erp.valid_refresh.clear()
    with pytest.raises(AuthenticationFailed, match="authorise the integration again") as info:
        make_connector(erp, cache).token()
    assert FIRST_REFRESH not in str(info.value)


def test_lost_renewal_answer_is_reported_not_retried_blindly(cache: fakeredis.FakeRedis) -> None:
    def lost(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("no answer", request=request)

    with pytest.raises(AuthenticationFailed, match="renewal was lost"):
        make_connector(lost, cache).token()


def test_client_credentials_for_service_accounts(cache: fakeredis.FakeRedis) -> None:
    erp = FakeFortnox()
    tenant = make_tenant(refresh_token=None, tenant_id="tenant-42")
    make_connector(erp, cache, tenant).post_documents(DocumentKind.ORDER, b'[{"CustomerNumber":"1"}]', "b")
    assert erp.token_requests == [{"grant_type": "client_credentials", "basic": f"client-1:{CLIENT_SECRET}",
                                   "tenant": "tenant-42"}]  # fmt: skip
    assert erp.api_requests[0].url.path == "/3/orders"
    assert cache.get("t:fortnox:refresh:acme") is None


def test_token_cache_down_is_connect_failed_and_nothing_is_sent() -> None:
    server = fakeredis.FakeServer()
    server.connected = False
    erp = FakeFortnox()
    with pytest.raises(ConnectFailed, match=r"^token cache unavailable \(ConnectionError\); nothing was sent$"):
        make_connector(erp, fakeredis.FakeRedis(server=server, decode_responses=True)).post_documents(
            DocumentKind.CUSTOMER_INVOICE, INVOICE, "b1"
        )
    assert erp.token_requests == [] and erp.api_requests == []


def test_a_renewal_that_outlives_its_lock_is_connect_failed(cache: fakeredis.FakeRedis) -> None:
    """The new pair is stored, but the renewal held the lock past its timeout: another worker may have renewed
    meanwhile, so this request is not sent (the next one finds the stored token)."""
    erp = FakeFortnox()
    connector = make_connector(erp, cache)
    connector.token_lock_seconds = 0.05
    renew = connector._renew

    def slow_renew() -> str:
        token = renew()
        time.sleep(0.2)
        return token

    connector._renew = slow_renew  # type: ignore[method-assign]
    with pytest.raises(ConnectFailed, match=r"^token cache unavailable \(LockNotOwnedError\); nothing was sent$"):
        connector.post_documents(DocumentKind.CUSTOMER_INVOICE, INVOICE, "b1")
    assert erp.api_requests == [] and cache.get("t:token:acme") == "at-1"


def test_401_drops_the_token_and_renews_once(cache: fakeredis.FakeRedis) -> None:
    cache.set("t:token:acme", "stale")
    erp = FakeFortnox()
    created = make_connector(erp, cache).post_documents(DocumentKind.CUSTOMER_INVOICE, INVOICE, "b1")
    assert created[0].key == "1002"
    assert [r.headers["Authorization"] for r in erp.api_requests] == ["Bearer stale", "Bearer at-1"]


@pytest.mark.parametrize(
    "body",
    [
        {"ErrorInformation": {"Error": 1, "Message": "An account must be provided", "Code": 2004167}},
        {"ErrorInformation": {"error": 1, "message": "An account must be provided", "code": 2004167}},
    ],
)
def test_fortnox_error_bodies_in_both_casings(cache: fakeredis.FakeRedis, body: dict[str, Any]) -> None:
    erp = FakeFortnox(api=[httpx.Response(400, json=body)])
    with pytest.raises(RequestRejected, match=r"An account must be provided \(code 2004167\)"):
        make_connector(erp, cache).post_documents(DocumentKind.CUSTOMER_INVOICE, INVOICE, "b1")


def test_429_is_transient(cache: fakeredis.FakeRedis) -> None:
    erp = FakeFortnox(api=[httpx.Response(429, json={"ErrorInformation": {"message": "Too many requests"}})])
    with pytest.raises(RateLimited):
        make_connector(erp, cache).post_documents(DocumentKind.CUSTOMER_INVOICE, INVOICE, "b1")


def test_rate_limit_is_shared_and_nothing_is_sent_beyond_it(cache: fakeredis.FakeRedis) -> None:
    erp = FakeFortnox()
    tenant = make_tenant(rate_limit="2/60")  # paced: a turn every 30.2 s (60 s + 0.4 s margin, over 2)
    make_connector(erp, cache, tenant, rate_limit_wait_seconds=0).post_documents(
        DocumentKind.CUSTOMER_INVOICE, INVOICE, "b1"
    )
    # Another worker, the same tenant: its turn is 30 s away and it waits at most 0 s.
    with pytest.raises(WaitingForRetryAfter) as info:
        make_connector(erp, cache, tenant, rate_limit_wait_seconds=0).post_documents(
            DocumentKind.CUSTOMER_INVOICE, INVOICE, "b2"
        )
    assert info.value.retry_after and 29 < info.value.retry_after <= 30.2
    assert len(erp.api_requests) == 1


def _lookup(kind: DocumentKind, docs: list[dict[str, Any]], ids: list[str]) -> LookupRequest:
    return LookupRequest(kind, docs, ids, rejected=False, high_water=0, known_keys=lambda k: set(), request_id="b")


def test_look_up_invoices_by_external_reference(cache: fakeredis.FakeRedis) -> None:
    found = {"Invoices": [{"DocumentNumber": "77", "ExternalInvoiceReference1": "R-1"}]}
    erp = FakeFortnox(api=[httpx.Response(200, json=found), httpx.Response(200, json={"Invoices": []})])
    connector = make_connector(erp, cache)
    assert connector.can_look_up(DocumentKind.CUSTOMER_INVOICE) and not connector.can_look_up(DocumentKind.OFFER)
    plan = connector.look_up(_lookup(DocumentKind.CUSTOMER_INVOICE, [{}], ["R-1"]))
    assert plan.created == {0: "77"} and plan.resend == []
    plan = connector.look_up(_lookup(DocumentKind.CUSTOMER_INVOICE, [{}], ["R-2"]))
    assert plan.created == {} and plan.resend == [0]
    assert erp.api_requests[0].url.params["externalinvoicereference1"] == "R-1"


def test_look_up_articles_by_number(cache: fakeredis.FakeRedis) -> None:
    erp = FakeFortnox(api=[httpx.Response(404, json={"ErrorInformation": {"Message": "not found"}})])
    plan = make_connector(erp, cache).look_up(
        _lookup(DocumentKind.ARTICLE, [{"ArticleNumber": "A/1"}, {"Description": "no number"}], ["A/1", "j#1"])
    )
    assert plan.resend == [0] and plan.doubtful == [1]
    assert erp.api_requests[0].url.raw_path == b"/3/articles-v2/A%2F1"


def test_failed_look_up_is_retried_not_unknown(cache: fakeredis.FakeRedis) -> None:
    erp = FakeFortnox(api=[httpx.Response(500, text="oops")])
    with pytest.raises(ConnectFailed):
        make_connector(erp, cache).look_up(_lookup(DocumentKind.ORDER, [{}], ["R-1"]))


# ----- updates and actions


def test_an_update_is_a_put_of_the_whole_document_and_a_locked_invoice_says_to_credit_it(
    cache: fakeredis.FakeRedis,
) -> None:
    locked = {"ErrorInformation": {"Error": 1, "Message": "Faktura som är bokförd kan inte ändras.", "Code": 2099008}}
    erp = FakeFortnox(
        api=[httpx.Response(200, json={"Invoice": {"DocumentNumber": "7"}}), httpx.Response(400, json=locked)]
    )
    connector = make_connector(erp, cache)
    assert connector.update_document(DocumentKind.CUSTOMER_INVOICE, "7", INVOICE, "b1").key == "7"
    put = erp.api_requests[0]
    assert (put.method, put.url.path) == ("PUT", "/3/invoices/7")
    assert json.loads(put.content) == {"Invoice": {"CustomerNumber": "013", "ExternalInvoiceReference1": "R-1"}}
    with pytest.raises(RequestRejected, match=r"bokförd.*credit it in Fortnox"):
        connector.update_document(DocumentKind.CUSTOMER_INVOICE, "7", INVOICE, "b2")


def test_a_credit_is_read_before_it_is_asked_so_a_lost_answer_never_credits_twice(cache: fakeredis.FakeRedis) -> None:
    erp = FakeFortnox(api=[
        httpx.Response(200, json={"Invoice": {"DocumentNumber": "7", "CreditInvoiceReference": "0"}}),  # not yet
        httpx.Response(200, json={"Invoice": {"DocumentNumber": "7", "CreditInvoiceReference": "8"}}),  # the credit
        httpx.Response(200, json={"Invoice": {"DocumentNumber": "7", "CreditInvoiceReference": "8"}}),  # again: done
    ])  # fmt: skip
    connector = make_connector(erp, cache)
    assert connector.act(DocumentKind.CUSTOMER_INVOICE, "7", "credit", "R-1", "b1").key == "8"
    assert [(r.method, r.url.path) for r in erp.api_requests] == [
        ("GET", "/3/invoices/7"),
        ("PUT", "/3/invoices/7/credit"),
    ]
    assert connector.act(DocumentKind.CUSTOMER_INVOICE, "7", "credit", "R-1", "b1").key == "8"
    assert [r.method for r in erp.api_requests] == ["GET", "PUT", "GET"]  # found done: not asked again


def test_an_orders_invoice_is_found_by_its_reference_before_createinvoice_is_asked_again(
    cache: fakeredis.FakeRedis,
) -> None:
    erp = FakeFortnox(api=[
        httpx.Response(200, json={"Invoices": [{"DocumentNumber": "3"}, {"DocumentNumber": "9"}]}),
        httpx.Response(200, json={"Invoice": {"DocumentNumber": "3", "OrderReference": "2"}}),  # another order's
        httpx.Response(200, json={"Invoice": {"DocumentNumber": "9", "OrderReference": "5"}}),  # ours
    ])  # fmt: skip
    made = make_connector(erp, cache).act(DocumentKind.ORDER, "5", "createinvoice", "O-1", "b1")
    assert (made.key, made.number) == ("9", "9")
    assert erp.api_requests[0].url.params["externalinvoicereference1"] == "O-1"
    assert all(r.method == "GET" for r in erp.api_requests)  # done already: nothing was converted again
    assert not FortnoxConnector.can_verify(DocumentKind.OFFER, "createorder")
