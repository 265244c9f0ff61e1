"""A document carrying one of our credentials is refused on its own and stored masked (worker/producer/submit.py)."""

from __future__ import annotations

import json
from typing import Any

import fakeredis
import pytest

import worker.producer.submit
from worker.producer.submit import CREDENTIAL_IN_DOCUMENT, CredentialScan, submit
from worker.settings import DEMO_CONNECT_API_KEY, Settings
from worker.store.results import ResultsStore

REDIS_PASSWORD = "redis-pw-4b8e1d"
FLOWER_PASSWORD = "flower-pw-9a7c3f"
CONSOLE_PASSWORDS = ("console-admin-pw-1e5d", "console-viewer-pw-77c2")
CONSOLE_SECRET = "s" * 16 + "console-session-key"


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("FLOWER_BASIC_AUTH", f"ops:{FLOWER_PASSWORD},viewer:short")
    monkeypatch.setenv("ERPSYNC_CONSOLE_AUTH", f"admin:{CONSOLE_PASSWORDS[0]}")
    monkeypatch.setenv("ERPSYNC_CONSOLE_READONLY_AUTH", f"viewer:{CONSOLE_PASSWORDS[1]}")
    monkeypatch.setenv("ERPSYNC_CONSOLE_SECRET", CONSOLE_SECRET)
    return Settings(redis_url=f"redis://:{REDIS_PASSWORD}@127.0.0.1:6379/0", key_prefix="cred-test")


def test_the_secret_values_are_every_configured_credential(settings: Settings) -> None:
    values = settings.secret_values()
    for expected in (DEMO_CONNECT_API_KEY, "demo-fortnox-secret", "demo-invoice-service-token"):
        assert expected in values
    assert REDIS_PASSWORD in values and FLOWER_PASSWORD in values
    assert set(CONSOLE_PASSWORDS) <= set(values) and CONSOLE_SECRET in values  # the web console's accounts and key
    assert "short" not in values  # below the minimum length: masking it would garble innocent text
    assert "demo-fortnox-client" not in values  # a client id names an account, it is not a secret
    assert values == sorted(values, key=len, reverse=True)


def test_the_scan_masks_plain_and_json_escaped_forms() -> None:
    scan = CredentialScan(Settings(tenants_file=None))
    assert scan.mask('{"Text":"nothing to see"}') is None
    masked = scan.mask(json.dumps({"Text": f"key {DEMO_CONNECT_API_KEY}!"}))
    assert masked is not None and DEMO_CONNECT_API_KEY not in masked and "***" in masked


def test_a_credential_fails_its_document_only_and_is_never_stored(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
    monkeypatch.setattr(worker.producer.submit, "get_redis", lambda _settings=None: client)
    queued: list[tuple[int, str | None]] = []
    monkeypatch.setattr(worker.producer.submit, "request_intake", lambda q, n, job_id=None: queued.append((n, job_id)))
    docs: list[dict[str, Any]] = [
        {"ExternalId": "ok-1", "CustomerNr": "1001"},
        {"ExternalId": "leak-1", "CustomerNr": "1001", "Text": f"pw {FLOWER_PASSWORD}"},
        {"ExternalId": f"id-{REDIS_PASSWORD}", "CustomerNr": "1001"},
        {"ExternalId": "ok-2", "CustomerNr": "1001", "InvoiceRows": [{"Text": 'a quote " and a key-like word'}]},
    ]
    job_id = submit(docs, tenant="demo", settings=settings)
    store = ResultsStore(client, settings)
    records = store.records(job_id)
    assert [r.status for r in records] == ["pending", "failed", "failed", "pending"]
    assert records[1].error == CREDENTIAL_IN_DOCUMENT
    job = store.job(job_id)
    assert job is not None and job["n_failed"] == "2" and job["n_pending"] == "2"
    assert queued == [(4, job_id)]  # the job's documents go to intake as usual; the refused ones are no longer pending
    everything = json.dumps(
        {key: client.lrange(key, 0, -1) if client.type(key) == "list" else client.hgetall(key)
         for key in client.keys("*") if client.type(key) in ("list", "hash")}
    )  # fmt: skip
    assert "leak-1" in everything  # the documents and records are all there, only the credentials are not
    for secret in (FLOWER_PASSWORD, REDIS_PASSWORD):
        assert secret not in everything
