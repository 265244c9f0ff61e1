"""The sandbox that keeps its state (``--state FILE``, sandbox.persistence): what a restart keeps - the ledger of
every target with its history, the Key/number/id sequences, SoftOne and Fortnox tokens, webhook receivers -, a reset
that empties the file's ledger too, writes made before the answer, and the one-line refusals of a file it cannot
use. A "restart" here is a new app on the same file, after the old one's file was closed without any last save."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.types import Message

from sandbox import create_app
from sandbox.persistence import APPLICATION_ID, StateFile
from tests.unit.sandbox_app import FakeClock
from tests.unit.test_sandbox import invoice as softone_invoice
from tests.unit.test_sandbox_fortnox import CLIENT_ID, CLIENT_SECRET, REFRESH, TENANT
from tests.unit.test_sandbox_fortnox import invoice as fortnox_invoice
from tests.unit.test_sandbox_fortnox import order as fortnox_order
from tests.unit.test_sandbox_invoice_service import EXAMPLE_REQUEST
from worker.cli.commands import main as erpsync_main

SOFTONE = {"companyApiKey": "demo-company-key", "connectApiKey": "demo-connect-key"}
INVOICES, ORDERS = "/Economy/Billing/CustomerInvoices", "/Economy/Billing/Orders"
INVOICE_SERVICE_TOKEN = "demo-invoice-service-token"


class Kept:
    """Synchronous requests into an app whose state is kept in a file, with each API's calls."""

    def __init__(self, app: Starlette) -> None:
        self.app = app

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://sb") as client:
                return await client.request(method, path, **kwargs)

        return asyncio.run(go())

    def ledger(self, **params: str) -> list[dict[str, Any]]:
        documents: list[dict[str, Any]] = self.request("GET", "/_sandbox/ledger", params=params).json()["documents"]
        return documents

    # SoftOne GO
    def login(self) -> str:
        r = self.request("POST", "/Login/Token", params=SOFTONE)
        assert r.status_code == 200, r.text
        return str(r.json()["Token"])

    def softone(self, path: str, docs: list[dict[str, Any]], token: str) -> dict[str, Any]:
        r = self.request("POST", path, params={**SOFTONE, "token": token}, json=docs)
        assert r.status_code == 200, r.text
        result: dict[str, Any] = r.json()
        return result

    # Fortnox
    def oauth(self, form: dict[str, str], **headers: str) -> httpx.Response:
        return self.request("POST", "/oauth-v1/token", data=form, auth=(CLIENT_ID, CLIENT_SECRET), headers=headers)

    def fortnox_token(self) -> str:
        r = self.oauth({"grant_type": "client_credentials"}, TenantId=TENANT)
        assert r.status_code == 200, r.text
        return str(r.json()["access_token"])

    def fortnox(self, method: str, path: str, token: str, **kwargs: Any) -> httpx.Response:
        return self.request(method, path, headers={"Authorization": f"Bearer {token}"}, **kwargs)

    # the invoice service
    def invoice_service(self, body: dict[str, Any]) -> dict[str, Any]:
        r = self.request("POST", "/invoices", json=body, headers={"Authorization": f"Bearer {INVOICE_SERVICE_TOKEN}"})
        assert r.status_code == 200, r.text
        result: dict[str, Any] = r.json()
        return result


@contextmanager
def kept(path: Path, clock: FakeClock | None = None) -> Iterator[Kept]:
    """A sandbox on the state file ``path``; its file is closed on exit (nothing is saved then: a crash the same)."""
    app = create_app(clock=clock, state_file=path)
    try:
        yield Kept(app)
    finally:
        app.state.state_file.close()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "sandbox.sqlite3"


def fortnox_doc(sb: Kept, token: str, path: str, wrapper: str, doc: dict[str, Any]) -> dict[str, Any]:
    r = sb.fortnox("POST", path, token, json={wrapper: doc})
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()[wrapper]
    return created


# -- the ledger ---------------------------------------------------------------------------------
def test_the_ledger_of_every_target_with_its_history_survives_a_restart(path: Path) -> None:
    clock = FakeClock()
    with kept(path, clock) as sb:
        token = sb.login()
        sb.softone(INVOICES, [softone_invoice(external_id="pos-1"), softone_invoice(external_id="pos-2")], token)
        sb.softone(ORDERS, [softone_invoice("013", external_id="ord-1")], token)
        fx = sb.fortnox_token()
        fortnox_doc(sb, fx, "/3/invoices", "Invoice", fortnox_invoice("ext-1"))
        update = {"Invoice": {"ExternalInvoiceReference1": "ext-1b", "Comments": "changed"}}
        assert sb.fortnox("PUT", "/3/invoices/1", fx, json=update).status_code == 200
        assert sb.fortnox("PUT", "/3/invoices/1/credit", fx).status_code == 200  # credit invoice 2
        fortnox_doc(sb, fx, "/3/orders", "Order", fortnox_order("ord-9", DeliveryState="delivery"))
        made = sb.fortnox("PUT", "/3/orders/1/createinvoice", fx)  # invoice 3, remembers DeliveryState
        assert made.status_code == 200 and made.json()["Invoice"]["DocumentNumber"] == "3"
        fortnox_doc(sb, fx, "/3/articles-v2", "Article", {"ArticleNumber": "A1", "Description": "Bulle"})
        assert sb.fortnox("DELETE", "/3/articles-v2/A1", fx).status_code == 204
        sb.invoice_service(EXAMPLE_REQUEST)
        before = sb.ledger(full="1", history="1")
        invoice_before = sb.fortnox("GET", "/3/invoices/1", fx).json()
    assert len(before) == 3 + 3 + 1 + 1 + 1  # SoftOne 3; Fortnox invoices 3, order, article; invoice service 1
    assert [d["history"][-1]["operation"] for d in before if d["target"] == "fortnox"] == [
        "credit", "credit", "createinvoice", "createinvoice", "delete"
    ]  # fmt: skip

    with kept(path, clock) as sb:
        assert sb.ledger(full="1", history="1") == before
        fx = sb.fortnox_token()
        assert sb.fortnox("GET", "/3/invoices/1", fx).json() == invoice_before
        found = sb.fortnox("GET", "/3/invoices", fx, params={"externalinvoicereference1": "ext-1b"}).json()
        assert [i["DocumentNumber"] for i in found["Invoices"]] == ["1"]  # found by its updated reference
        assert sb.fortnox("PUT", "/3/invoices/3/warehouseready", fx).status_code == 200  # DeliveryState kept
        assert sb.fortnox("GET", "/3/articles-v2/A1", fx).status_code == 404  # deleted stays deleted
        fortnox_doc(sb, fx, "/3/articles-v2", "Article", {"ArticleNumber": "A1", "Description": "Ny"})  # number free
        filtered = sb.request("POST", f"{INVOICES}/Filter", params={**SOFTONE, "token": sb.login()}, json={})
        softone_invoices = [d["key"] for d in before if d["target"] == "softone" and d["kind"] == "customer_invoice"]
        assert sorted(i["InvoiceId"] for i in filtered.json()) == sorted(softone_invoices)  # the Filter finds them


def test_sequences_continue_after_a_restart_and_start_again_without_a_state_file(path: Path) -> None:
    with kept(path) as sb:
        token = sb.login()
        first = sb.softone(INVOICES, [softone_invoice(external_id="a")], token)
        order = sb.softone(ORDERS, [softone_invoice("013", external_id="o")], token)
        fx = sb.fortnox_token()
        rows = fortnox_doc(sb, fx, "/3/invoices", "Invoice", fortnox_invoice("f1"))["InvoiceRows"]
        service = sb.invoice_service(EXAMPLE_REQUEST)
    with kept(path) as sb:
        token = sb.login()
        second = sb.softone(INVOICES, [softone_invoice(external_id="b")], token)
        assert second["Keys"] == [first["Keys"][0] + 2]  # the order between them took a Key too
        assert sb.softone(ORDERS, [softone_invoice("013", external_id="p")], token)["Strings"] == [
            str(int(order["Strings"][0]) + 1)
        ]
        numbers = {d["external_id"]: d["number"] for d in sb.ledger(target="softone")}
        assert int(numbers["b"]) == int(numbers["a"]) + 1
        fx = sb.fortnox_token()
        again = fortnox_doc(sb, fx, "/3/invoices", "Invoice", fortnox_invoice("f2"))
        assert again["DocumentNumber"] == "2" and again["InvoiceRows"][0]["RowId"] > rows[-1]["RowId"]
        assert sb.invoice_service(EXAMPLE_REQUEST)["id"] == f"I.{int(service['id'][2:]) + 1}"
    # Without a state file a new process starts every sequence again: the same Key for another document.
    memory = Kept(create_app())
    assert memory.softone(INVOICES, [softone_invoice(external_id="c")], memory.login())["Keys"] == first["Keys"]


def test_a_higher_first_key_in_the_config_wins_over_the_kept_sequence(path: Path, tmp_path: Path) -> None:
    with kept(path) as sb:
        sb.softone(INVOICES, [softone_invoice(external_id="a")], sb.login())
    from sandbox.config import SandboxConfig

    app = create_app(SandboxConfig(first_key=90_000_000), state_file=path)
    try:
        sb = Kept(app)
        assert sb.softone(INVOICES, [softone_invoice(external_id="b")], sb.login())["Keys"] == [90_000_000]
    finally:
        app.state.state_file.close()


# -- tokens -------------------------------------------------------------------------------------
def test_tokens_survive_a_restart_and_a_spent_refresh_token_stays_spent(path: Path) -> None:
    with kept(path) as sb:
        softone_token = sb.login()
        access = sb.fortnox_token()
        renewed = sb.oauth({"grant_type": "refresh_token", "refresh_token": REFRESH})
        assert renewed.status_code == 200, renewed.text
        successor = renewed.json()["refresh_token"]
    with kept(path) as sb:
        assert sb.softone(INVOICES, [softone_invoice(external_id="x")], softone_token)["Success"] is True
        assert sb.fortnox("GET", "/3/invoices", access).status_code == 200
        reused = sb.oauth({"grant_type": "refresh_token", "refresh_token": REFRESH})
        assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
        assert sb.request("GET", "/_sandbox/stats").json()["fortnox"]["refresh_token_reuse"] == 1
        third = sb.oauth({"grant_type": "refresh_token", "refresh_token": successor})
        assert third.status_code == 200
        assert sb.fortnox("GET", "/3/invoices", third.json()["access_token"]).status_code == 200
        # Labels continue too: the stats of a token issued now never mix with an older token's.
        labels = sb.request("GET", "/_sandbox/stats").json()["fortnox"]["max_in_window_by_token"]
        assert sorted(labels) == [f"{CLIENT_ID}#1", f"{CLIENT_ID}#3"]
        assert sb.request("POST", "/_sandbox/tokens/expire").json()["expired"] == 4  # SoftOne 1, Fortnox 3
    with kept(path) as sb:
        refused = sb.request("POST", INVOICES, params={**SOFTONE, "token": softone_token}, json=[softone_invoice()])
        assert refused.status_code == 401
        assert sb.fortnox("GET", "/3/invoices", access).status_code == 401


def test_a_refresh_token_of_a_new_authorisation_survives_a_restart(path: Path) -> None:
    with kept(path) as sb:
        given = sb.request("POST", "/_sandbox/fortnox/authorize", json={"client_id": CLIENT_ID})
        assert given.status_code == 200, given.text
    with kept(path) as sb:
        renewed = sb.oauth({"grant_type": "refresh_token", "refresh_token": given.json()["refresh_token"]})
        assert renewed.status_code == 200, renewed.text


def test_a_token_expired_by_the_clock_stays_expired(path: Path) -> None:
    clock = FakeClock()
    with kept(path, clock) as sb:
        token = sb.login()
    clock.now += 3601
    with kept(path, clock) as sb:
        r = sb.request("POST", INVOICES, params={**SOFTONE, "token": token}, json=[softone_invoice()])
        assert r.status_code == 401


# -- reset, webhook receivers -------------------------------------------------------------------
def test_reset_empties_the_ledger_in_the_file_and_keys_keep_increasing(path: Path) -> None:
    with kept(path) as sb:
        token = sb.login()
        keys = sb.softone(INVOICES, [softone_invoice(external_id="a"), softone_invoice(external_id="b")], token)
    with kept(path) as sb:
        assert len(sb.ledger()) == 2
        assert sb.request("POST", "/_sandbox/reset").json() == {"ok": True}
        assert sb.ledger() == []
        after = sb.softone(INVOICES, [softone_invoice(external_id="c")], token)  # the token outlives a reset
    with kept(path) as sb:
        assert [(d["external_id"], d["key"]) for d in sb.ledger()] == [("c", after["Keys"][0])]
        assert after["Keys"][0] > max(keys["Keys"])


def test_webhook_receivers_and_what_they_received_survive_a_restart(path: Path) -> None:
    with kept(path) as sb:
        r = sb.request("POST", "/_sandbox/webhooks/acme/config", json={"secret": "s3cret-value", "fail_next": 2})
        assert r.status_code == 200
        assert sb.request("POST", "/_sandbox/webhooks/acme", content=b"{}").status_code == 503
    with kept(path) as sb:
        shown = sb.request("GET", "/_sandbox/webhooks/acme").json()
        assert shown["config"]["fail_next"] == 1 and shown["config"]["has_secret"] is True
        assert shown["attempts"] == 1 and shown["refused"] == 1
        assert sb.request("DELETE", "/_sandbox/webhooks/acme").json() == {"deleted": True}
    with kept(path) as sb:
        assert sb.request("GET", "/_sandbox/webhooks/acme").status_code == 404


# -- durability ---------------------------------------------------------------------------------
def test_a_document_is_in_the_file_when_its_answer_starts(path: Path) -> None:
    app = create_app(state_file=path)
    sb = Kept(app)
    token = sb.login()
    counted: list[int] = []

    async def call() -> None:
        body = json.dumps([softone_invoice(external_id="durable")]).encode()
        query = "&".join(f"{k}={v}" for k, v in {**SOFTONE, "token": token}.items())
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": INVOICES, "raw_path": INVOICES.encode(), "root_path": "",
                 "query_string": query.encode(), "headers": [(b"content-type", b"application/json")],
                 "client": ("127.0.0.1", 1), "server": ("sb", 80)}  # fmt: skip
        sent = False

        async def receive() -> Message:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                row = app.state.state_file.db.execute("SELECT count(*) FROM ledger WHERE external_id = 'durable'")
                counted.append(row.fetchone()[0])

        await app(scope, receive, send)

    try:
        asyncio.run(call())
    finally:
        app.state.state_file.close()
    assert counted == [1]


@pytest.mark.parametrize("kind", ["status_after_commit", "drop_after_commit"])
def test_a_document_whose_answer_a_fault_threw_away_is_kept(path: Path, kind: str) -> None:
    with kept(path) as sb:
        token = sb.login()
        sb.request("POST", "/_sandbox/faults", json={"path": INVOICES, "kind": kind})
        try:
            lost = sb.request("POST", INVOICES, params={**SOFTONE, "token": token}, json=[softone_invoice("1", "lost")])
            assert lost.status_code == 500
        except AssertionError:  # httpx.ASGITransport cannot drop a connection: it fails instead (sandbox.middleware)
            assert kind == "drop_after_commit"
    with kept(path) as sb:
        assert [d["external_id"] for d in sb.ledger()] == ["lost"]


def test_without_a_state_file_nothing_is_noted_for_saving() -> None:
    app = create_app()
    sb = Kept(app)
    sb.softone(INVOICES, [softone_invoice(external_id="a")], sb.login())
    assert app.state.state_file is None and not app.state.sandbox.journal.pending()


def test_the_file_is_created_for_its_owner_only(path: Path) -> None:
    with kept(path):
        pass
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# -- files it cannot use ------------------------------------------------------------------------
def _layout(path: Path, application_id: int, version: int) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE t (x)")
    db.execute(f"PRAGMA application_id={application_id}")
    db.execute(f"PRAGMA user_version={version}")
    db.commit()
    db.close()


@pytest.mark.parametrize(
    ("prepare", "message"),
    [
        (lambda p: p.write_text("hello, not sqlite\n" * 100), "not a sandbox state file (file is not a database)"),
        (lambda p: _layout(p, 0, 0), "an SQLite file of another program, not a sandbox state"),
        (lambda p: _layout(p, APPLICATION_ID, 2), "written in layout 2, this sandbox reads layout 1"),
        (lambda p: p.mkdir(), "is a directory, expected a file"),
    ],
)
def test_a_file_it_cannot_use_is_refused_in_one_line(path: Path, prepare: Any, message: str) -> None:
    prepare(path)
    with pytest.raises(ValueError, match=r"^sandbox state ") as refused:
        create_app(state_file=path)
    assert message in str(refused.value) and "\n" not in str(refused.value)


def test_a_missing_directory_and_a_file_in_use_are_refused(path: Path) -> None:
    with pytest.raises(ValueError, match=r"directory .* does not exist"):
        StateFile.open(path.parent / "nowhere" / "state.sqlite3")
    with kept(path), pytest.raises(ValueError, match="in use by another sandbox process"):
        StateFile.open(path)


def test_erpsync_sandbox_says_what_is_wrong_with_the_file_in_one_line(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path.write_text("not a database at all, " * 50)
    assert erpsync_main(["sandbox", "--port", "0", "--state", str(path)]) == 2
    out = capsys.readouterr()
    lines = [line for line in (out.out + out.err).splitlines() if line.strip()]
    assert len(lines) == 1 and "sandbox state" in lines[0] and "Traceback" not in lines[0], lines
