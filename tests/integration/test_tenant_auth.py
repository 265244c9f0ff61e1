"""A Fortnox tenant whose refresh token the ERP refuses: the tenant is paused, no document fails or becomes a dead
letter, its backlog waits; `erpsync tenants reauth` with a token the ERP issued authorises it again and every
document is created exactly once. A real worker, Redis and the sandbox over HTTP (the `stack` fixture).

The tenant is added to the session's tenants file for this test (workers read the file again when it changes) with
a refresh token the sandbox never issued; the new one comes from the sandbox as an authorisation would hand it out
(`POST /_sandbox/fortnox/authorize`)."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import wait_job
from tests.integration.test_targets import fortnox_invoice, ledger
from worker.cli.commands import main, results_payload
from worker.devstack.stack import LocalStack
from worker.ops.tenants import list_tenants
from worker.pipeline.runtime import store
from worker.producer.submit import submit
from worker.settings import get_settings

pytestmark = pytest.mark.integration

CLIENT_ID, CLIENT_SECRET = "demo-fortnox-client", "demo-fortnox-secret"


@pytest.fixture
def refused_tenant(stack: LocalStack) -> Iterator[tuple[str, str]]:
    """A Fortnox tenant in the tenants file whose refresh token the sandbox refuses: (its name, that token)."""
    path = Path(stack.env["ERPSYNC_TENANTS_FILE"])
    original = path.read_text(encoding="utf-8")
    name, spent = f"fx-auth-{uuid.uuid4().hex[:6]}", f"never-issued-{uuid.uuid4().hex}"
    data = json.loads(original)
    data["tenants"].append(
        {
            "name": name,
            "target": "fortnox",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "refresh_token": spent,
        }
    )
    path.write_text(json.dumps(data), encoding="utf-8")
    try:
        yield name, spent
    finally:
        path.write_text(original, encoding="utf-8")


def tenant_row(name: str) -> dict[str, Any]:
    settings = get_settings()
    return next(t for t in list_tenants(store().r, settings) if t["name"] == name)


def wait_for(name: str, check: Any, timeout: float = 60) -> dict[str, Any]:
    """Poll the tenant's row until `check(row)` holds (a wait, not an assertion on time)."""
    deadline = time.monotonic() + timeout
    while True:
        row = tenant_row(name)
        if check(row):
            return row
        if time.monotonic() > deadline:
            raise AssertionError(f"tenant {name} never got there: {row}")
        time.sleep(0.2)


def test_a_refused_refresh_token_pauses_the_tenant_until_reauth(
    stack: LocalStack, sandbox: httpx.Client, refused_tenant: tuple[str, str], tmp_path: Path
) -> None:
    name, spent = refused_tenant
    tag = f"fa-{uuid.uuid4().hex[:6]}"
    dead_before = store().r.hlen(store().keys.dead)
    job_id = submit([fortnox_invoice(f"{tag}-{i}") for i in range(6)], tenant=name)
    # The token endpoint refuses the refresh token: the tenant is paused and its six invoices wait.
    row = wait_for(name, lambda r: r["state"] == "paused" and r["backlog"] == 6)
    assert (row["paused_by"], row["auth"]) == ("auth", "refused")
    assert "refused the refresh token" in row["reason"] and spent not in row["reason"]
    payload = results_payload(job_id)
    assert payload["status"] not in ("succeeded", "partial", "failed")
    assert Counter(r["status"] for r in payload["records"]) <= Counter({"pending": 6})
    assert store().r.hlen(store().keys.dead) == dead_before
    assert not [d for d in ledger(sandbox, "fortnox") if str(d["external_id"]).startswith(tag)]
    # An operator authorises the integration again: the ERP hands out a new refresh token, reauth stores it.
    issued = sandbox.post("/_sandbox/fortnox/authorize", json={"client_id": CLIENT_ID})
    assert issued.status_code == 200
    fresh = issued.json()["refresh_token"]
    token_file = tmp_path / "refresh-token"
    token_file.write_text(fresh + "\n", encoding="utf-8")
    assert main(["tenants", "reauth", name, "--refresh-token-file", str(token_file)]) == 0
    result = wait_job(stack, job_id, timeout=120)
    assert [r["status"] for r in result["records"]] == ["created"] * 6, result["records"]
    times = Counter(d["external_id"] for d in ledger(sandbox, "fortnox") if str(d["external_id"]).startswith(tag))
    assert times == Counter({f"{tag}-{i}": 1 for i in range(6)})
    row = tenant_row(name)
    assert (row["state"], row["auth"], row["backlog"], row["credentials"]) == ("active", "ok", 0, "redis")
    assert store().r.hlen(store().keys.dead) == dead_before
    logs = stack.logs()
    assert spent not in logs and fresh not in logs
