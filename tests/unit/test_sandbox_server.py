"""The sandbox behind a real uvicorn server: connection drops, read timeouts, ``python -m sandbox``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox import background_server
from tests.unit.sandbox_process import sandbox_process

REPO = Path(__file__).resolve().parents[2]
INVOICES = "/Economy/Billing/CustomerInvoices"
KEYS = {"companyApiKey": "demo-company-key", "connectApiKey": "demo-connect-key"}
DOCS = [
    {
        "CustomerNr": "3879",
        "InvoiceDate": "2026-02-18",
        "OriginType": 6,
        "ExternalId": "e-1",
        "InvoiceRows": [{"CustomerRowType": 2, "RowNr": 1, "ProductNr": "A11", "Quantity": 1, "UnitPrice": 9.5}],
    }
]


@pytest.fixture
def base_url() -> Iterator[str]:
    with background_server() as url:
        yield url


def _auth(client: httpx.Client) -> dict[str, str]:
    token = client.post("/Login/Token", params=KEYS).json()["Token"]
    return {**KEYS, "token": token}


def _fault(client: httpx.Client, rule: dict[str, Any]) -> None:
    assert client.post("/_sandbox/faults", json=rule).status_code == 200


def _ledger_count(client: httpx.Client) -> int:
    count: int = client.get("/_sandbox/ledger").json()["count"]
    return count


@pytest.mark.parametrize(("kind", "saved"), [("drop", 0), ("drop_after_commit", 1)])
def test_drop_is_a_transport_error(base_url: str, kind: str, saved: int) -> None:
    with httpx.Client(base_url=base_url, timeout=5) as client:
        params = _auth(client)
        _fault(client, {"path": INVOICES, "kind": kind})
        with pytest.raises(httpx.RemoteProtocolError, match=r"incomplete|without sending complete"):
            client.post(INVOICES, params=params, json=DOCS)
        assert _ledger_count(client) == saved
        # The next request is normal again (the rule was used up).
        assert client.post(INVOICES, params=params, json=DOCS).json()["Success"] is True
        stats = client.get("/_sandbox/stats").json()["requests"][f"POST {INVOICES}"]
        assert stats == {"drop": 1, "200": 1}


def test_delay_fault_makes_read_timeout_fire_but_documents_are_saved(base_url: str) -> None:
    with httpx.Client(base_url=base_url, timeout=5) as client:
        params = _auth(client)
        _fault(client, {"path": INVOICES, "kind": "delay", "delay_ms": 600})
        with pytest.raises(httpx.ReadTimeout):
            client.post(INVOICES, params=params, json=DOCS, timeout=httpx.Timeout(5, read=0.2))
        deadline = time.monotonic() + 5
        while _ledger_count(client) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _ledger_count(client) == 1


def test_status_fault_over_http(base_url: str) -> None:
    with httpx.Client(base_url=base_url, timeout=5) as client:
        params = _auth(client)
        _fault(client, {"path": "*", "kind": "status", "status": 429, "retry_after": "1"})
        r = client.post(INVOICES, params=params, json=DOCS)
        assert (r.status_code, r.headers["retry-after"]) == (429, "1")
        assert _ledger_count(client) == 0


def test_python_dash_m_sandbox_smoke() -> None:
    with (
        sandbox_process("--latency-ms", "5", "--token-ttl-seconds", "120") as sb,
        httpx.Client(base_url=sb.base, timeout=5) as client,
    ):
        login = client.get("/Login/Token", params=KEYS).json()
        assert login["ExpiresIn"] == 120
        token = login["Token"]
        body = client.post(INVOICES, params={**KEYS, "token": token}, json=DOCS).json()
        assert body["Success"] is True
        assert client.get("/_sandbox/ledger").json()["documents"][0]["key"] == body["Keys"][0]
    assert f"POST {INVOICES}?companyApiKey=***&connectApiKey=***&token=*** -> 200" in sb.output
    for secret in (*KEYS.values(), token):
        assert secret not in sb.output
