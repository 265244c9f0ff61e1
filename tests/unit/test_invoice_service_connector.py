"""InvoiceServiceConnector (worker/connectors/invoice_service.py) against an httpx.MockTransport."""

from __future__ import annotations

import json

import fakeredis
import httpx
import pytest
from pydantic import SecretStr

from schemas import DocumentKind
from worker.connectors.invoice_service import InvoiceServiceConnector
from worker.errors import AmbiguousError, AuthorizationRefused, RequestRejected, ServiceUnavailable
from worker.settings import Settings, TenantConfig

TOKEN = "inv-service-SECRET-token-5"
BODY = b'[{"invoiceNumber":"123456"}]'


def post(reply: httpx.Response) -> tuple[list[httpx.Request], InvoiceServiceConnector]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return reply

    tenant = TenantConfig(name="acme", target="invoiceservice", base_url="http://inv.test/", api_token=SecretStr(TOKEN))
    settings = Settings(key_prefix="t", demo_tenant=False)
    cache = fakeredis.FakeRedis(decode_responses=True)
    return seen, InvoiceServiceConnector(tenant, settings, httpx.Client(transport=httpx.MockTransport(handler)), cache)


def test_one_invoice_per_request_with_bearer_token() -> None:
    seen, connector = post(httpx.Response(201, json={"id": "I.111225694", "invoiceNumber": "123456"}))
    created = connector.post_documents(DocumentKind.CUSTOMER_INVOICE, BODY, "b1")
    assert [(c.key, c.number) for c in created] == [("I.111225694", "123456")]
    (request,) = seen
    assert request.url.path == "/invoices" and request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert json.loads(request.content) == {"invoiceNumber": "123456"}  # the document itself, not an array
    assert connector.max_batch_docs(connector.settings, DocumentKind.CUSTOMER_INVOICE) == 1
    assert not connector.can_look_up(DocumentKind.CUSTOMER_INVOICE)


def test_validation_errors_name_their_fields() -> None:
    errors = {"status": 400, "errors": [{"field": "totals.total", "message": "does not add up"}]}
    _, connector = post(httpx.Response(400, json=errors))
    with pytest.raises(RequestRejected, match=r"totals\.total: does not add up"):
        connector.post_documents(DocumentKind.CUSTOMER_INVOICE, BODY, "b1")


def test_401_refuses_the_authorisation_without_the_token() -> None:
    """A static token answered 401 will be refused again: the pipeline pauses the tenant (AuthorizationRefused)."""
    _, connector = post(httpx.Response(401))
    with pytest.raises(AuthorizationRefused) as info:
        connector.post_documents(DocumentKind.CUSTOMER_INVOICE, BODY, "b1")
    assert TOKEN not in str(info.value) and "reauth" in str(info.value) and "401" in info.value.reason


def test_a_token_given_by_reauth_is_sent_until_the_tenants_file_changes() -> None:
    seen, connector = post(httpx.Response(201, json={"id": "I.1", "invoiceNumber": "1"}))
    connector.tokens.replace({"api_token": "inv-service-NEW-token-6"}, {"api_token": TOKEN}, 1.0)
    connector.post_documents(DocumentKind.CUSTOMER_INVOICE, BODY, "b1")
    assert seen[-1].headers["Authorization"] == "Bearer inv-service-NEW-token-6"
    edited = TenantConfig(name="acme", target="invoiceservice", base_url="http://inv.test/",
                          api_token=SecretStr("inv-service-EDITED-token-7"))  # fmt: skip
    again = InvoiceServiceConnector(edited, connector.settings, connector.client, connector.tokens.r)
    again.post_documents(DocumentKind.CUSTOMER_INVOICE, BODY, "b2")
    assert seen[-1].headers["Authorization"] == "Bearer inv-service-EDITED-token-7"  # the file is newer: it wins


def test_unreadable_success_is_ambiguous_and_503_transient() -> None:
    _, connector = post(httpx.Response(201, text="<html>ok</html>"))
    with pytest.raises(AmbiguousError):
        connector.post_documents(DocumentKind.CUSTOMER_INVOICE, BODY, "b1")
    _, connector = post(httpx.Response(503))
    with pytest.raises(ServiceUnavailable):
        connector.post_documents(DocumentKind.CUSTOMER_INVOICE, BODY, "b1")
