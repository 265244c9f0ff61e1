"""Random (seeded) faults, Retry-After bookkeeping and the all-digit customer register of the sandbox."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

import sandbox
from sandbox import FaultProfile, SandboxConfig, background_server, create_app
from sandbox.__main__ import build_parser as sandbox_parser
from sandbox.__main__ import main as sandbox_main
from sandbox.config import Company, customers_from_json, load_customers
from sandbox.random_faults import KINDS, RandomFaults, parse_fault_spec
from sandbox.server import build_config
from tests.unit.sandbox_app import FakeClock
from tests.unit.sandbox_process import sandbox_process

REPO = Path(__file__).resolve().parents[2]
KEYS = {"companyApiKey": "demo-company-key", "connectApiKey": "demo-connect-key"}
INVOICES, ORDERS = "/Economy/Billing/CustomerInvoices", "/Economy/Billing/Orders"
FILTER = "/Economy/Billing/CustomerInvoices/Filter"
ALL_KINDS = {
    "429": 0.05,
    "503": 0.05,
    "slow": 0.05,
    "drop_after_commit": 0.05,
    "500_after_commit": 0.05,
    "token_expiry": 0.01,
}
FULL_SPEC = "429=0.05,503=0.05,slow=0.05,drop_after_commit=0.05,500_after_commit=0.05,token_expiry=0.01"


def doc(external_id: str, customer_nr: str = "3879") -> dict[str, Any]:
    return {
        "CustomerNr": customer_nr,
        "InvoiceDate": "2026-02-18",
        "OriginType": 6,
        "ExternalId": external_id,
        "InvoiceRows": [{"CustomerRowType": 2, "RowNr": 1, "ProductNr": "A11", "Quantity": 1, "UnitPrice": 9.5}],
    }


def app_with(
    probabilities: dict[str, float] | None = None,
    *,
    clock: Callable[[], float] | None = None,
    config: SandboxConfig | None = None,
    **profile: Any,
) -> Starlette:
    config = config or SandboxConfig()
    if probabilities is not None:
        config.faults = FaultProfile.from_json({"probabilities": probabilities, **profile})
    return create_app(config, clock=clock)


class Sandbox:
    """Synchronous calls into an app through httpx.ASGITransport (one event loop per call)."""

    def __init__(self, app: Starlette) -> None:
        self.app = app

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as client:
                return await client.request(method, path, **kwargs)

        return asyncio.run(go())

    def auth(self, keys: dict[str, str] = KEYS) -> dict[str, str]:
        response = self.request("POST", "/Login/Token", params=keys)
        assert response.status_code == 200, response.text
        return {**keys, "token": response.json()["Token"]}

    def post(self, params: dict[str, str], *docs: dict[str, Any], path: str = INVOICES) -> httpx.Response:
        return self.request("POST", path, params=params, json=list(docs) or [doc("x")])

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", "/_sandbox/stats").json()
        return result

    def ledger_count(self) -> int:
        count: int = self.request("GET", "/_sandbox/ledger").json()["count"]
        return count


# -- the spec parser and the profile ------------------------------------------------------------
def test_parse_fault_spec_full_interface() -> None:
    assert parse_fault_spec(FULL_SPEC) == ALL_KINDS
    assert parse_fault_spec(" 429 = 0.5 , slow=0.25,") == {"429": 0.5, "slow": 0.25}
    assert parse_fault_spec("") == {}
    assert parse_fault_spec("503=1") == {"503": 1.0}
    assert parse_fault_spec("429=0.5,503=0.5") == {"429": 0.5, "503": 0.5}  # sum exactly 1 is fine


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("bogus=0.1", "unknown fault kind 'bogus'"),
        ("drop=0.1", "unknown fault kind 'drop'"),  # a RULE kind, not a random one
        ("429=1.5", "from 0 to 1"),
        ("429=-0.1", "from 0 to 1"),
        ("429=nan", "from 0 to 1"),
        ("429=abc", "from 0 to 1"),
        ("429=0.6,503=0.6", "add up to 1.2, more than 1"),
        ("429", "expected KIND=PROBABILITY"),
        ("=0.1", "expected KIND=PROBABILITY"),
        ("429=", "expected KIND=PROBABILITY"),
        ("429=0.1,429=0.2", "429 is given twice"),
    ],
)
def test_parse_fault_spec_rejects_invalid_specs(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match="random faults: .*" + re.escape(message)):
        parse_fault_spec(spec)


def test_profile_from_json_defaults_and_echo() -> None:
    profile = FaultProfile.from_json({"probabilities": {"503": 0.5}})
    assert profile.as_json() == {
        "probabilities": {"503": 0.5},
        "seed": None,
        "retry_after": 1,
        "slow_ms": 3000,
        "paths": ["*"],
    }
    body = {"probabilities": ALL_KINDS, "seed": 7, "retry_after": 3, "slow_ms": 50, "paths": ["/Economy/*"]}
    assert FaultProfile.from_json(body).as_json() == body


@pytest.mark.parametrize(
    "body",
    [
        {"probabilities": {"bogus": 0.1}},
        {"probabilities": {"429": 1.01}},
        {"probabilities": {"429": True}},
        {"probabilities": {"429": "0.1"}},
        {"probabilities": {"429": 0.7, "503": 0.2, "slow": 0.2}},
        {"probabilities": [["429", 0.1]]},
        {"probabilities": {"429": 0.1}, "seed": "7"},
        {"probabilities": {"429": 0.1}, "seed": True},
        {"probabilities": {"429": 0.1}, "retry_after": -1},
        {"probabilities": {"429": 0.1}, "retry_after": 1.5},
        {"probabilities": {"429": 0.1}, "slow_ms": -5},
        {"probabilities": {"429": 0.1}, "paths": []},
        {"probabilities": {"429": 0.1}, "paths": "*"},
        {"probabilities": {"429": 0.1}, "paths": ["Economy"]},
        {"probabilities": {"429": 0.1}, "colour": "red"},
    ],
)
def test_invalid_profiles_are_a_400_and_change_nothing(body: dict[str, Any]) -> None:
    sb = Sandbox(app_with({"503": 0.25}, seed=1))
    with pytest.raises(ValueError, match="random faults: "):
        FaultProfile.from_json(body)
    r = sb.request("POST", "/_sandbox/faults", json=body)
    assert r.status_code == 400 and r.json()["error"].startswith("random faults: ")
    assert sb.request("GET", "/_sandbox/faults").json()["random"]["probabilities"] == {"503": 0.25}


def test_draw_uses_fixed_kind_order_and_one_number_per_request() -> None:
    forward = RandomFaults(FaultProfile.from_json({"probabilities": {"429": 0.3, "503": 0.3}, "seed": 3}))
    backward = RandomFaults(FaultProfile.from_json({"probabilities": {"503": 0.3, "429": 0.3}, "seed": 3}))
    a = [forward.draw(INVOICES) for _ in range(300)]
    assert a == [backward.draw(INVOICES) for _ in range(300)]  # key order does not matter
    assert set(a) == {"429", "503", None}
    off = RandomFaults(FaultProfile.from_json({"probabilities": {}, "seed": 3}))
    assert {off.draw(INVOICES) for _ in range(100)} == {None}
    assert RandomFaults().draw(INVOICES) is None


# -- determinism --------------------------------------------------------------------------------
IN_PROCESS_KINDS = {"429": 0.1, "503": 0.1, "slow": 0.1, "500_after_commit": 0.1, "token_expiry": 0.1}


async def _sequence(app: Starlette, n: int) -> list[int]:
    """``n`` single-document POSTs; after a 401 the client logs in again (deterministically)."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as client:

        async def login() -> str:
            token: str = (await client.post("/Login/Token", params=KEYS)).json()["Token"]
            return token

        token, outcomes = await login(), []
        for i in range(n):
            r = await client.post(INVOICES, params={**KEYS, "token": token}, json=[doc(f"d-{i}")])
            outcomes.append(r.status_code)
            if r.status_code == 401:
                token = await login()
    return outcomes


def _run(seed: int, n: int = 200) -> tuple[list[int], dict[str, Any]]:
    app = app_with(IN_PROCESS_KINDS, seed=seed, slow_ms=0, retry_after=0)
    outcomes = asyncio.run(_sequence(app, n))
    return outcomes, Sandbox(app).stats()


def test_same_seed_same_faults_different_seed_different() -> None:
    first, stats = _run(7)
    second, stats_again = _run(7)
    assert first == second and stats["faults"] == stats_again["faults"]
    assert _run(8)[0] != first
    # Every kind shows up in 200 requests and the stats count exactly what the client saw.
    assert set(first) == {200, 401, 429, 500, 503}
    faults = stats["faults"]
    assert faults == {
        "429": first.count(429),
        "503": first.count(503),
        "slow": faults["slow"],
        "drop_after_commit": 0,
        "500_after_commit": first.count(500),
        "token_expiry": first.count(401),
    }
    assert faults["slow"] > 0 and first.count(200) + sum(faults.values()) - faults["slow"] == 200
    # 200 and 500-after-commit saved their document; 429, 503 and 401 did not.
    assert stats["documents_created"] == first.count(200) + first.count(500)
    assert stats["requests"][f"POST {INVOICES}"] == {str(s): first.count(s) for s in set(first)}


def test_reset_and_a_reposted_profile_replay_the_same_sequence() -> None:
    app = app_with(IN_PROCESS_KINDS, seed=11, slow_ms=0, retry_after=0)
    sb = Sandbox(app)
    first = asyncio.run(_sequence(app, 60))
    sb.request("POST", "/_sandbox/reset")
    assert sb.stats()["faults"] == dict.fromkeys(KINDS, 0)
    assert asyncio.run(_sequence(app, 60)) == first  # reset re-arms the start-up profile, re-seeded
    profile = {"probabilities": IN_PROCESS_KINDS, "seed": 11, "slow_ms": 0, "retry_after": 0}
    sb.request("DELETE", "/_sandbox/faults")
    assert set(asyncio.run(_sequence(app, 20))) == {200}
    sb.request("POST", "/_sandbox/faults", json=profile)
    assert asyncio.run(_sequence(app, 60)) == first


def test_seedless_profile_gets_a_seed_that_reproduces_it() -> None:
    sb = Sandbox(create_app())
    random = sb.request("POST", "/_sandbox/faults", json={"probabilities": IN_PROCESS_KINDS, "slow_ms": 0}).json()
    seed = random["random"]["seed"]
    assert isinstance(seed, int)
    first = asyncio.run(_sequence(sb.app, 50))
    again = Sandbox(create_app())
    again.request("POST", "/_sandbox/faults", json={"probabilities": IN_PROCESS_KINDS, "slow_ms": 0, "seed": seed})
    assert asyncio.run(_sequence(again.app, 50)) == first


def _real_sequence(base_url: str, n: int) -> list[str]:
    outcomes: list[str] = []
    with httpx.Client(base_url=base_url, timeout=5) as client:
        token = client.post("/Login/Token", params=KEYS).json()["Token"]
        for i in range(n):
            try:
                r = client.post(INVOICES, params={**KEYS, "token": token}, json=[doc(f"r-{i}")])
            except httpx.RemoteProtocolError:
                outcomes.append("drop")
                continue
            outcomes.append(str(r.status_code))
            if r.status_code == 401:
                token = client.post("/Login/Token", params=KEYS).json()["Token"]
    return outcomes


def test_all_six_kinds_are_deterministic_over_a_real_server() -> None:
    probabilities = dict.fromkeys(KINDS, 0.16)
    runs = []
    for _ in range(2):
        with background_server(app_with(probabilities, seed=5, slow_ms=1, retry_after=0)) as url:
            outcomes = _real_sequence(url, 40)
            stats = httpx.get(f"{url}/_sandbox/stats").json()
        runs.append((outcomes, stats["faults"]))
    assert runs[0] == runs[1]
    outcomes, faults = runs[0]
    assert set(outcomes) == {"200", "401", "429", "500", "503", "drop"}
    assert faults["drop_after_commit"] == outcomes.count("drop") and faults["slow"] > 0


# -- each kind ----------------------------------------------------------------------------------
def test_429_has_retry_after_saves_nothing_and_early_retries_are_counted() -> None:
    clock = FakeClock()
    other = Company("other-key", frozenset({"other-connect"}), 7, "Annat AB")
    config = SandboxConfig()
    config.companies[other.company_api_key] = other
    sb = Sandbox(create_app(config, clock=clock))
    params = sb.auth()
    other_params = sb.auth({"companyApiKey": "other-key", "connectApiKey": "other-connect"})
    body = {"probabilities": {"429": 1.0}, "retry_after": 2, "seed": 1}
    assert sb.request("POST", "/_sandbox/faults", json=body).status_code == 200
    r = sb.post(params)
    assert (r.status_code, r.headers["retry-after"], r.text) == (429, "2", "Too Many Requests")
    assert sb.ledger_count() == 0
    sb.request("DELETE", "/_sandbox/faults")

    clock.now += 1  # 1 s into a 2 s Retry-After
    assert sb.post(other_params).status_code == 200  # another company was not told to wait
    assert sb.auth()["token"]  # logging in is not a retry
    assert sb.post(params).status_code == 200  # too early: served, but counted
    stats = sb.stats()
    assert stats["early_retries"] == 1
    (sample,) = stats["early_retry_samples"]
    assert sample["company_id"] == 1592 and sample["route"] == f"POST {INVOICES}"
    assert sample["early_by_ms"] == 1000.0
    clock.now += 1  # exactly at the Retry-After: on time
    assert sb.post(params).status_code == 200
    assert sb.stats()["early_retries"] == 1
    assert sb.stats()["faults"]["429"] == 1
    sb.request("POST", "/_sandbox/reset")
    assert (sb.stats()["early_retries"], sb.stats()["early_retry_samples"]) == (0, [])


def test_a_later_429_extends_the_wait_an_earlier_one_does_not_shorten_it() -> None:
    clock = FakeClock()
    sb = Sandbox(create_app(clock=clock))
    params = sb.auth()
    sb.request("POST", "/_sandbox/faults", json={"probabilities": {"429": 1.0}, "retry_after": 10})
    assert sb.post(params).status_code == 429  # wait until now + 10 (early, but nothing told yet)
    sb.request("POST", "/_sandbox/faults", json={"probabilities": {"429": 1.0}, "retry_after": 1})
    clock.now += 10
    assert sb.post(params).status_code == 429  # on time; now wait until +11
    assert sb.stats()["early_retries"] == 0
    sb.request("DELETE", "/_sandbox/faults")
    clock.now += 0.5
    sb.post(params)
    assert sb.stats()["early_retries"] == 1


def test_503_saves_nothing_and_has_no_retry_after() -> None:
    sb = Sandbox(app_with({"503": 1.0}, seed=1))
    params = sb.auth()
    r = sb.post(params)
    assert (r.status_code, r.text) == (503, "Service Unavailable") and "retry-after" not in r.headers
    assert sb.ledger_count() == 0
    assert sb.stats()["faults"]["503"] == 1
    assert sb.stats()["requests"][f"POST {INVOICES}"] == {"503": 1}


def test_500_after_commit_saves_then_answers_an_operation_result() -> None:
    sb = Sandbox(app_with({"500_after_commit": 1.0}, seed=1))
    r = sb.post(sb.auth(), doc("amb-1"), doc("amb-2"))
    assert r.status_code == 500 and r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["Success"] is False and body["Exception"] and body["Keys"] == []
    ledger = sb.request("GET", "/_sandbox/ledger").json()
    assert [d["external_id"] for d in ledger["documents"]] == ["amb-1", "amb-2"]
    assert sb.stats()["faults"]["500_after_commit"] == 1


def test_an_after_commit_fault_on_a_request_that_saved_nothing_gives_its_own_answer() -> None:
    """Nothing was committed (an expired token: 401; the chaos test's orders met one through another request's
    token_expiry), so there is no answer to lose: the client gets the real one, not a 500 claiming a commit."""
    sb = Sandbox(app_with({"500_after_commit": 1.0}, seed=1))
    r = sb.post({**KEYS, "token": "not-a-token"}, doc("refused-1"))
    assert (r.status_code, r.text) == (401, "Invalid or expired token")
    assert sb.ledger_count() == 0


def test_token_expiry_gives_401_then_a_fresh_login_works() -> None:
    sb = Sandbox(app_with({"token_expiry": 1.0}, seed=1))
    params = sb.auth()  # /Login/Token is never hit
    assert sb.post(params).status_code == 200  # a token never expires on its first use
    r = sb.post(params)
    assert (r.status_code, r.text) == (401, "Invalid or expired token")
    assert sb.ledger_count() == 1
    sb.request("DELETE", "/_sandbox/faults")
    assert sb.post(params).status_code == 401  # that token is gone for good
    assert sb.post(sb.auth()).status_code == 200  # a new login works
    assert sb.stats()["faults"]["token_expiry"] == 1


def test_a_renewed_token_is_not_expired_on_its_first_use() -> None:
    sb = Sandbox(app_with({"token_expiry": 1.0}, seed=1))
    params = sb.auth()
    sb.post(params)
    assert sb.post(params).status_code == 401
    fresh = sb.auth()
    assert sb.post(fresh).status_code == 200  # the client's one renewal is not defeated by the fault


def test_retry_after_binds_the_request_it_answered_not_the_whole_company() -> None:
    sb = Sandbox(app_with({}, seed=1))
    params = sb.auth()
    body = {"probabilities": {"429": 1.0}, "retry_after": 30, "seed": 1}
    assert sb.request("POST", "/_sandbox/faults", json=body).status_code == 200
    assert sb.post(params, doc("a")).status_code == 429
    sb.request("DELETE", "/_sandbox/faults")
    assert sb.post(params, doc("b")).status_code == 200  # another batch: not a retry of the first
    assert sb.stats()["early_retries"] == 0
    assert sb.post(params, doc("a")).status_code == 200  # the same request 30 s too early
    assert sb.stats()["early_retries"] == 1


def test_slow_saves_at_once_and_answers_late_over_a_real_server() -> None:
    with background_server(app_with({"slow": 1.0}, seed=1, slow_ms=400)) as url, httpx.Client(base_url=url) as client:
        params = {**KEYS, "token": client.post("/Login/Token", params=KEYS).json()["Token"]}
        with pytest.raises(httpx.ReadTimeout):
            client.post(INVOICES, params=params, json=[doc("slow-1")], timeout=httpx.Timeout(5, read=0.1))
        assert client.get("/_sandbox/ledger").json()["count"] == 1  # saved before the answer was due
        start = time.monotonic()
        r = client.post(INVOICES, params=params, json=[doc("slow-2")], timeout=5)
        assert r.json()["Success"] is True and time.monotonic() - start >= 0.4
        deadline = time.monotonic() + 5
        while client.get("/_sandbox/stats").json()["in_flight"] and time.monotonic() < deadline:
            time.sleep(0.02)
        stats = client.get("/_sandbox/stats").json()
    assert stats["faults"]["slow"] == 2 and stats["documents_created"] == 2
    assert stats["requests"][f"POST {INVOICES}"] == {"200": 2}


def test_drop_after_commit_saves_and_drops_over_a_real_server() -> None:
    app = app_with({"drop_after_commit": 1.0}, seed=1)
    with background_server(app) as url, httpx.Client(base_url=url, timeout=5) as client:
        params = {**KEYS, "token": client.post("/Login/Token", params=KEYS).json()["Token"]}
        with pytest.raises(httpx.RemoteProtocolError):
            client.post(INVOICES, params=params, json=[doc("drop-1")])
        assert client.get("/_sandbox/ledger", params={"external_id": "drop-1"}).json()["count"] == 1
        stats = client.get("/_sandbox/stats").json()
    assert stats["faults"]["drop_after_commit"] == 1
    assert stats["requests"][f"POST {INVOICES}"] == {"drop": 1}


# -- which requests draw ------------------------------------------------------------------------
def test_login_and_operator_endpoints_are_never_hit() -> None:
    sb = Sandbox(app_with({"503": 1.0}, seed=1))
    for _ in range(5):
        assert sb.request("POST", "/Login/Token", params=KEYS).status_code == 200
        assert sb.request("GET", "/_sandbox/health").status_code == 200
    assert sb.stats()["faults"]["503"] == 0


def test_paths_limit_the_random_faults() -> None:
    sb = Sandbox(app_with({"503": 1.0}, seed=1, paths=["/Economy/Billing/Orders"]))
    params = sb.auth()
    assert sb.post(params).status_code == 200
    assert sb.post(params, path=ORDERS).status_code == 503
    assert sb.request("POST", FILTER, params=params, json={}).status_code == 200
    sb.request("POST", "/_sandbox/faults", json={"probabilities": {"503": 1.0}, "paths": ["/Economy/Billing/*"]})
    assert sb.request("POST", FILTER, params=params, json={}).status_code == 503


def test_a_rule_takes_precedence_over_the_random_draw() -> None:
    sb = Sandbox(app_with({"503": 1.0}, seed=1))
    params = sb.auth()
    sb.request("POST", "/_sandbox/faults", json={"kind": "status", "status": 502})
    assert [sb.post(params).status_code for _ in range(2)] == [502, 503]
    assert sb.stats()["faults"]["503"] == 1


def test_faults_endpoint_shows_clears_and_keeps_rule_lists_working() -> None:
    sb = Sandbox(create_app())
    assert sb.request("GET", "/_sandbox/faults").json() == {"faults": [], "random": None}
    profile = {"probabilities": ALL_KINDS, "seed": 7, "retry_after": 1, "slow_ms": 3000, "paths": ["*"]}
    assert sb.request("POST", "/_sandbox/faults", json=profile).json() == {"faults": [], "random": profile}
    added = sb.request("POST", "/_sandbox/faults", json=[{"kind": "drop"}]).json()
    assert added["added"] == 1 and added["random"] == profile
    listed = sb.request("GET", "/_sandbox/faults").json()
    assert [r["kind"] for r in listed["faults"]] == ["drop"] and listed["random"] == profile
    assert sb.request("DELETE", "/_sandbox/faults").json() == {"faults": [], "random": None}
    assert sb.stats()["faults"] == dict.fromkeys(KINDS, 0) and sb.stats()["early_retries"] == 0


def test_reset_without_start_up_faults_leaves_them_off() -> None:
    sb = Sandbox(create_app())
    sb.request("POST", "/_sandbox/faults", json={"probabilities": {"503": 1.0}})
    sb.request("POST", "/_sandbox/reset")
    assert sb.request("GET", "/_sandbox/faults").json() == {"faults": [], "random": None}


# -- customers ----------------------------------------------------------------------------------
def test_every_all_digit_customer_is_known_by_default() -> None:
    sb = Sandbox(create_app())
    params = sb.auth()
    numbers = ["013", "3879", "1001", "99999", "0", "123456789012"]
    r = sb.post(params, *(doc(f"c-{nr}", nr) for nr in numbers))
    assert r.json()["Success"] is True and len(r.json()["Keys"]) == len(numbers)
    names = {i["CustomerNr"]: i["CustomerName"] for i in sb.request("POST", FILTER, params=params, json={}).json()}
    assert names["3879"] == "Rasmus Bygg AB" and names["99999"] == "Kund 99999" and names["1001"] == "Kund 1001"


@pytest.mark.parametrize("customer_nr", ["UNKNOWN-3", "12a", " 12", "12 ", "-12", "1.5", "١٢"])
def test_a_customer_number_with_a_non_digit_is_unknown(customer_nr: str) -> None:
    sb = Sandbox(create_app())
    body = sb.post(sb.auth(), doc("u", customer_nr)).json()
    assert body["Success"] is False and body["ErrorNumber"] == 10
    assert body["ErrorMessage"] == f"Kund med kundnummer '{customer_nr}' hittades inte."
    assert sb.ledger_count() == 0


def test_customers_file_replaces_the_register(tmp_path: Path) -> None:
    path = tmp_path / "customers.json"
    path.write_text(json.dumps({"42": "Fyrtiotvå AB", "X-1": "Bokstavskund AB"}))
    sb = Sandbox(create_app(build_config(customers_path=path)))
    params = sb.auth()
    assert sb.post(params, doc("a", "42"), doc("b", "X-1")).json()["Success"] is True
    unknown = sb.post(params, doc("c", "3879")).json()
    assert unknown["Success"] is False and unknown["ErrorNumber"] == 10
    names = [i["CustomerName"] for i in sb.request("POST", FILTER, params=params, json={}).json()]
    assert names == ["Fyrtiotvå AB", "Bokstavskund AB"]


def test_customers_file_as_a_list_and_over_a_config_file(tmp_path: Path) -> None:
    customers = tmp_path / "customers.json"
    customers.write_text(json.dumps(["42", 7, "3879"]))
    assert load_customers(customers) == {"42": "Kund 42", "7": "Kund 7", "3879": "Rasmus Bygg AB"}
    config_file = tmp_path / "sandbox.json"
    config_file.write_text(json.dumps({"customers": {"1": "Ett AB"}, "token_ttl_seconds": 60}))
    assert build_config(config_file).customers == {"1": "Ett AB"}  # the config file still replaces it
    config = build_config(config_file, customers_path=customers)
    assert config.customers == load_customers(customers) and config.token_ttl_seconds == 60


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"42": 5}, "the name of customer '42' must be a string"),
        ({"": "Tom AB"}, "must not be empty"),
        (["42", ""], "non-empty strings"),
        ([True], "non-empty strings"),
        ([-1], "non-empty strings"),
        ("42", "expected an object"),
    ],
)
def test_invalid_customers_files(tmp_path: Path, content: Any, message: str) -> None:
    with pytest.raises(ValueError, match="invalid customers file: .*" + re.escape(message)):
        customers_from_json(content)
    path = tmp_path / "customers.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=re.escape(message)):
        build_config(customers_path=path)


def test_unreadable_customers_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read customers file"):
        build_config(customers_path=tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="is not valid JSON"):
        build_config(customers_path=tmp_path / "bad.json")


# -- command lines ------------------------------------------------------------------------------
def test_build_config_arms_the_start_up_profile() -> None:
    config = build_config(faults=FULL_SPEC, seed=7, retry_after=2, slow_ms=100)
    assert config.faults is not None
    assert config.faults.as_json() == {
        "probabilities": ALL_KINDS,
        "seed": 7,
        "retry_after": 2,
        "slow_ms": 100,
        "paths": ["*"],
    }
    assert build_config(faults={"503": 0.5}).faults == FaultProfile({"503": 0.5})
    assert build_config().faults is None
    with pytest.raises(ValueError, match="--seed need --faults"):
        build_config(seed=0)
    with pytest.raises(ValueError, match="unknown fault kind"):
        build_config(faults="bogus=1")


def test_erpsync_sandbox_passes_the_new_options_through(monkeypatch: pytest.MonkeyPatch) -> None:
    from worker.cli import commands as cli

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(sandbox, "serve", lambda **kwargs: calls.append(kwargs))
    argv = ["sandbox", "--port", "9999", "--faults", FULL_SPEC, "--seed", "7", "--customers", "c.json"]
    argv += ["--retry-after", "2", "--slow-ms", "500"]
    assert cli.main(argv) == cli.EXIT_OK
    (kwargs,) = calls
    assert kwargs["port"] == 9999 and kwargs["faults"] == FULL_SPEC and kwargs["seed"] == 7
    assert (kwargs["customers_path"], kwargs["retry_after"], kwargs["slow_ms"]) == ("c.json", 2, 500)
    # Without the new options nothing changes.
    cli.main(["sandbox"])
    assert {calls[1][k] for k in ("faults", "seed", "customers_path", "retry_after", "slow_ms")} == {None}


def test_erpsync_sandbox_rejects_an_invalid_spec(capsys: pytest.CaptureFixture[str]) -> None:
    from worker.cli import commands as cli

    assert cli.main(["sandbox", "--faults", "429=0.7,503=0.7"]) == cli.EXIT_USAGE
    assert "more than 1" in capsys.readouterr().err


def test_python_dash_m_sandbox_parses_the_new_options(monkeypatch: pytest.MonkeyPatch) -> None:
    args = sandbox_parser().parse_args(["--faults", FULL_SPEC, "--seed", "7", "--customers", "c.json"])
    assert (args.faults, args.seed, args.customers) == (FULL_SPEC, 7, "c.json")
    served: list[SandboxConfig] = []
    monkeypatch.setattr("sandbox.__main__.serve_config", lambda config, **kwargs: served.append(config))
    sandbox_main(["--faults", "503=0.5", "--seed", "3", "--slow-ms", "10"])
    assert served[0].faults == FaultProfile({"503": 0.5}, seed=3, slow_ms=10)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--faults", "bogus=0.1"], "unknown fault kind 'bogus'"),
        (["--seed", "7"], "--seed need --faults"),
        (["--customers", "/nonexistent/customers.json"], "cannot read customers file"),
    ],
)
def test_python_dash_m_sandbox_exits_with_a_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        sandbox_main(argv)
    assert exited.value.code == 2 and message in capsys.readouterr().err


def test_python_dash_m_sandbox_starts_with_faults_seed_and_customers(tmp_path: Path) -> None:
    customers = tmp_path / "customers.json"
    customers.write_text(json.dumps({"42": "Fyrtiotvå AB"}))
    with (
        sandbox_process("--faults", "503=1", "--seed", "7", "--customers", str(customers)) as sb,
        httpx.Client(base_url=sb.base, timeout=5) as client,
    ):
        random = client.get("/_sandbox/faults").json()["random"]
        assert random["probabilities"] == {"503": 1.0} and random["seed"] == 7
        params = {**KEYS, "token": client.post("/Login/Token", params=KEYS).json()["Token"]}
        assert client.post(INVOICES, params=params, json=[doc("a", "42")]).status_code == 503
        client.delete("/_sandbox/faults")
        assert client.post(INVOICES, params=params, json=[doc("a", "42")]).json()["Success"] is True
        assert client.post(INVOICES, params=params, json=[doc("b", "3879")]).json()["ErrorNumber"] == 10
    assert "random faults 503=1 seed 7" in sb.output
