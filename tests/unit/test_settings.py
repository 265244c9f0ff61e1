"""worker/settings.py: tenants file, demo tenant, Redis URL forms."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from worker.errors import ConfigurationError
from worker.settings import DEMO_COMPANY_API_KEY, DEMO_CONNECT_API_KEY, Settings, TenantConfig, load_tenants

COMPANY_SECRET = "co-SECRET-71b3e0"
CONNECT_SECRET = "cn-SECRET-5d2a19"


def tenants_file(tmp_path: Path, content: Any, name: str = "tenants.json") -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return path


GOOD = {
    "tenants": [
        {"name": "acme", "company_api_key": COMPANY_SECRET, "connect_api_key": CONNECT_SECRET},
        {
            "name": "beta",
            "base_url": "https://apiexternal.softone.se",
            "company_api_key": "beta-company",
            "connect_api_key": "beta-connect",
        },
    ]
}


# ----- tenants file


def test_a_good_tenants_file(tmp_path: Path) -> None:
    settings = Settings(tenants_file=tenants_file(tmp_path, GOOD), softone_base_url="http://sandbox:8765")
    tenants = settings.tenants()
    assert set(tenants) == {"demo", "demo-fortnox", "demo-invoices", "acme", "beta"}

    acme = settings.tenant("acme")
    assert isinstance(acme, TenantConfig)
    assert acme.target == "softone"
    assert acme.base_url == "http://sandbox:8765"  # defaults to ERPSYNC_SOFTONE_BASE_URL
    assert isinstance(acme.company_api_key, SecretStr)
    assert acme.company_api_key.get_secret_value() == COMPANY_SECRET
    assert acme.connect_api_key.get_secret_value() == CONNECT_SECRET
    assert COMPANY_SECRET not in repr(acme) and CONNECT_SECRET not in str(acme)

    assert settings.tenant("beta").base_url == "https://apiexternal.softone.se"


def test_the_tenants_file_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ERPSYNC_TENANTS_FILE", str(tenants_file(tmp_path, GOOD)))
    monkeypatch.setenv("ERPSYNC_DEMO_TENANT", "false")
    settings = Settings()
    assert settings.tenants_file == tmp_path / "tenants.json"
    assert set(settings.tenants()) == {"acme", "beta"}


def test_a_tenant_in_the_file_may_replace_the_demo_tenant(tmp_path: Path) -> None:
    path = tenants_file(
        tmp_path, {"tenants": [{"name": "demo", "company_api_key": "x-company", "connect_api_key": "x-connect"}]}
    )
    demo = Settings(tenants_file=path).tenant("demo")
    assert demo.company_api_key.get_secret_value() == "x-company"


def test_the_file_is_read_again_when_it_changes(tmp_path: Path) -> None:
    path = tenants_file(tmp_path, GOOD)
    os.utime(path, (1_000_000_000, 1_000_000_000))
    settings = Settings(tenants_file=path, demo_tenant=False)
    assert set(load_tenants(settings)) == {"acme", "beta"}
    path.write_text(json.dumps({"tenants": GOOD["tenants"][:1]}), encoding="utf-8")
    os.utime(path, (1_000_000_100, 1_000_000_100))
    assert set(load_tenants(settings)) == {"acme"}


def test_a_missing_tenants_file(tmp_path: Path) -> None:
    settings = Settings(tenants_file=tmp_path / "absent.json")
    with pytest.raises(ConfigurationError, match=r"cannot read tenants file .*absent\.json"):
        settings.tenants()
    with pytest.raises(ConfigurationError):
        settings.tenant("demo")  # no silent fallback to the demo tenant alone


def test_invalid_json_in_the_tenants_file(tmp_path: Path) -> None:
    path = tenants_file(tmp_path, '{"tenants": [\n  {"name": "acme", "company_api_key": "' + COMPANY_SECRET + '",}\n]}')
    with pytest.raises(ConfigurationError) as info:
        Settings(tenants_file=path).tenants()
    message = str(info.value)
    assert "not valid JSON" in message and "line 2" in message
    assert COMPANY_SECRET not in message


@pytest.mark.parametrize("content", [[], {"tenant": []}, {"tenants": {"acme": {}}}, "null", '"text"'])
def test_a_tenants_file_of_the_wrong_shape(tmp_path: Path, content: Any) -> None:
    with pytest.raises(ConfigurationError, match=re.escape('must be {"tenants"')):
        Settings(tenants_file=tenants_file(tmp_path, content)).tenants()


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ({"name": "acme", "company_api_key": COMPANY_SECRET}, "connect_api_key"),
        ({"name": "acme", "connect_api_key": CONNECT_SECRET}, "company_api_key"),
        ({"company_api_key": COMPANY_SECRET, "connect_api_key": CONNECT_SECRET}, "name"),
        ({"name": "acme", "company_api_key": 7130, "connect_api_key": CONNECT_SECRET}, "company_api_key"),
        (
            {"name": "acme", "company_api_key": COMPANY_SECRET, "connect_api_key": CONNECT_SECRET, "pw": "hunter2-x"},
            "pw",
        ),
        (f"{COMPANY_SECRET}:{CONNECT_SECRET}", "valid dictionary"),
    ],
    ids=["no-connect", "no-company", "no-name", "int-key", "extra-field", "not-an-object"],
)
def test_an_invalid_entry_is_named_without_its_values(tmp_path: Path, entry: Any, field: str) -> None:
    good = GOOD["tenants"][1]
    path = tenants_file(tmp_path, {"tenants": [good, entry]})
    with pytest.raises(ConfigurationError) as info:
        Settings(tenants_file=path).tenants()
    message = str(info.value)
    assert "entry 1 is invalid" in message
    assert field in message
    for value in (COMPANY_SECRET, CONNECT_SECRET, "7130", "hunter2-x", "beta-company", "beta-connect"):
        assert value not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_an_unknown_tenant(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="unknown tenant 'ghost'"):
        Settings(tenants_file=tenants_file(tmp_path, GOOD)).tenant("ghost")


def test_a_tenants_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "tenants.json"
    path.write_bytes(
        '{"tenants": [{"name": "café", "company_api_key": "k1", "connect_api_key": "k2"}]}'.encode("cp1252")
    )
    with pytest.raises(ConfigurationError):
        Settings(tenants_file=path).tenants()


# ----- targets


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ({"target": "fortnox", "client_id": "c"}, "needs client_secret"),
        ({"target": "fortnox", "client_id": "c", "client_secret": "s"}, "either refresh_token or tenant_id"),
        (
            {"target": "fortnox", "client_id": "c", "client_secret": "s", "refresh_token": "r", "tenant_id": "t"},
            "either refresh_token or tenant_id",
        ),
        ({"target": "invoiceservice"}, "needs api_token"),
        ({"target": "invoiceservice", "api_token": "t", "company_api_key": "k"}, "company_api_key are not"),
        ({"target": "sap", "api_token": "t"}, "target"),
        ({"target": "invoiceservice", "api_token": "t", "rate_limit": "fast"}, "not a rate"),
    ],
)
def test_each_target_needs_its_own_credentials(tmp_path: Path, entry: dict[str, Any], reason: str) -> None:
    path = tenants_file(tmp_path, {"tenants": [{"name": "x", **entry}]})
    with pytest.raises(ConfigurationError, match=re.escape(reason)) as info:
        Settings(tenants_file=path).tenants()
    assert "SECRET" not in str(info.value)


def test_tenants_of_every_target_and_their_rates(tmp_path: Path) -> None:
    path = tenants_file(
        tmp_path,
        {
            "tenants": [
                {"name": "fx", "target": "fortnox", "client_id": "c", "client_secret": "s", "refresh_token": "r"},
                {
                    "name": "fx-svc",
                    "target": "fortnox",
                    "client_id": "c",
                    "client_secret": "s",
                    "tenant_id": "t",
                    "rate_limit": "10/5",
                },
                {"name": "inv", "target": "invoiceservice", "api_token": "t", "base_url": "https://inv.example"},
            ]
        },
    )
    settings = Settings(tenants_file=path, fortnox_base_url="https://api.fortnox.se")
    fx, svc, inv = settings.tenant("fx"), settings.tenant("fx-svc"), settings.tenant("inv")
    assert fx.base_url == "https://api.fortnox.se" and inv.base_url == "https://inv.example"
    assert str(fx.rate(settings)) == "25/5"  # Fortnox's own limit by default
    assert str(svc.rate(settings)) == "10/5"
    assert inv.rate(settings) is None
    assert str(inv.rate(Settings(rate_limits={"invoiceservice": "5/1"}))) == "5/1"


def test_one_demo_tenant_per_target() -> None:
    tenants = Settings().tenants()
    assert {name: t.target.value for name, t in tenants.items()} == {
        "demo": "softone",
        "demo-fortnox": "fortnox",
        "demo-invoices": "invoiceservice",
    }


# ----- demo tenant


def test_the_demo_tenant_is_there_by_default() -> None:
    settings = Settings(softone_base_url="http://127.0.0.1:9999")
    assert settings.tenants_file is None
    assert settings.default_tenant == "demo"
    demo = settings.tenant("demo")
    assert demo.base_url == "http://127.0.0.1:9999"
    assert demo.company_api_key.get_secret_value() == DEMO_COMPANY_API_KEY
    assert demo.connect_api_key.get_secret_value() == DEMO_CONNECT_API_KEY


def test_no_demo_tenant_when_disabled(tmp_path: Path) -> None:
    assert Settings(demo_tenant=False).tenants() == {}
    with pytest.raises(ConfigurationError, match="unknown tenant 'demo'"):
        Settings(demo_tenant=False).tenant("demo")
    assert set(Settings(demo_tenant=False, tenants_file=tenants_file(tmp_path, GOOD)).tenants()) == {"acme", "beta"}


# ----- Redis URLs


@pytest.mark.parametrize(
    ("configured", "redis_py", "broker"),
    [
        ("unix:///tmp/erpsync/redis.sock", "unix:///tmp/erpsync/redis.sock", "redis+socket:///tmp/erpsync/redis.sock"),
        (
            "redis+socket:///tmp/erpsync/redis.sock",
            "unix:///tmp/erpsync/redis.sock",
            "redis+socket:///tmp/erpsync/redis.sock",
        ),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("rediss://:pw@redis.example:6380/2", "rediss://:pw@redis.example:6380/2", "rediss://:pw@redis.example:6380/2"),
    ],
)
def test_redis_url_forms(configured: str, redis_py: str, broker: str) -> None:
    settings = Settings(redis_url=configured)
    assert settings.redis_py_url() == redis_py
    assert settings.broker_url() == broker


def test_redis_url_conversions_round_trip() -> None:
    unix = "unix:///var/run/redis/redis.sock"
    broker = Settings(redis_url=unix).broker_url()
    assert broker == "redis+socket:///var/run/redis/redis.sock"
    assert Settings(redis_url=broker).redis_py_url() == unix


def test_redis_url_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ERPSYNC_REDIS_URL", "redis+socket:///tmp/r.sock")
    settings = Settings()
    assert settings.redis_py_url() == "unix:///tmp/r.sock"
    assert settings.broker_url() == "redis+socket:///tmp/r.sock"


def test_tls_options_only_for_rediss(tmp_path: Path) -> None:
    import ssl

    assert Settings(redis_url="redis://:pw@127.0.0.1:6379/0").redis_ssl_options() == {}
    ca = tmp_path / "ca.pem"
    ca.write_text("not read here")
    options = Settings(redis_url="rediss://:pw@redis.example:6380/0", redis_ssl_ca_certs=ca).redis_ssl_options()
    assert options == {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": str(ca)}
    relaxed = Settings(redis_url="rediss://redis.example:6380/0", redis_ssl_cert_reqs="none").redis_ssl_options()
    assert relaxed == {"ssl_cert_reqs": ssl.CERT_NONE}
    with pytest.raises(ConfigurationError, match="ERPSYNC_REDIS_SSL_CA_CERTS: no file"):
        Settings(
            redis_url="rediss://redis.example:6380/0", redis_ssl_ca_certs=tmp_path / "missing.pem"
        ).redis_ssl_options()


# ----- sending: leases, tickets, rate turns


def test_send_timings() -> None:
    settings = Settings()
    assert (settings.send_lease_seconds, settings.send_tickets, settings.send_ticket_seconds) == (15, 48, 60.0)
    assert settings.rate_limit_wait_seconds == 1.0  # a further turn of the same send: no sender waits long
    assert settings.send_serve_seconds > 0
    assert not hasattr(settings, "tenant_slot_wait_seconds")  # nothing waits for a slot: the dispatcher parks
    # A lease shorter than a POST may take is fine: the sender's heartbeat renews it while the request runs.
    post = settings.http_connect_timeout + settings.http_write_timeout + settings.http_read_timeout
    assert settings.send_lease_seconds < post
    assert Settings(send_lease_seconds=3, http_read_timeout=600).send_lease_seconds == 3
    for bad in ({"send_lease_seconds": 2}, {"send_tickets": 0}, {"send_ticket_seconds": 0}, {"send_serve_seconds": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            Settings(**bad)


def test_send_timings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ERPSYNC_SEND_LEASE_SECONDS", "6")
    monkeypatch.setenv("ERPSYNC_SEND_TICKETS", "5")
    monkeypatch.setenv("ERPSYNC_SEND_SERVE_SECONDS", "0.5")
    settings = Settings()
    assert (settings.send_lease_seconds, settings.send_tickets, settings.send_serve_seconds) == (6, 5, 0.5)
