"""Tenant controls (worker/store/tenants.py, worker/ops/tenants.py, `erpsync tenants`): an authorisation the ERP
refuses pauses its tenant instead of failing its documents, the dispatcher holds a paused tenant's backlog, `reauth`
stores new credentials and resumes it, and the tenants file or Redis wins by the documented precedence.

Against fakeredis and httpx.MockTransport: the SoftOne connector's 401 after renewal through the pipeline's send
tickets, Fortnox's refused refresh token at the connector, the CLI reading credentials from a file or stdin only."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fakeredis
import httpx
import pytest

from schemas import DocumentKind
from tests.unit.fake_runtime import capture_messages, fake_runtime
from tests.unit.sandbox_app import InProcessSandbox
from tests.unit.test_fortnox_connector import CLIENT_SECRET, FIRST_REFRESH, FakeFortnox, make_connector, make_tenant
from worker.celery_app.enqueue import publish
from worker.connectors.softone import SoftOneConnector
from worker.errors import AuthenticationFailed, AuthorizationRefused, UserError
from worker.ops import overview
from worker.ops import tenants as ops
from worker.pipeline.intake import process_items
from worker.settings import Settings, TenantConfig, get_settings
from worker.store.dispatch import Dispatcher, Lane, Limits, Waiting
from worker.store.records import PENDING, Record
from worker.store.results import ResultsStore
from worker.store.tenants import AuthHealth, PausedBy, TenantControls
from worker.store.tokens import REFRESH_TOKEN, TokenStore

OLD_COMPANY, OLD_CONNECT = "acme-company-OLD-1111", "acme-connect-OLD-2222"
NEW_COMPANY, NEW_CONNECT = "acme-company-NEW-3333", "acme-connect-NEW-4444"
TOKEN_PATH = "/Login/Token"
OK = {"Success": True, "ErrorNumber": 0, "Keys": [], "Strings": []}


class SoftOne:
    """A SoftOne GO whose login takes only `valid` keys, and whose POSTs answer 401 for tokens of keys that were
    revoked after the login (`revoked`: every POST 401, whatever token)."""

    def __init__(self) -> None:
        self.valid = {(OLD_COMPANY, OLD_CONNECT)}
        self.revoked = False
        self.fail_and_revoke = False
        self.logins = 0
        self.posts: list[httpx.Request] = []
        self.keys = 500

    def __call__(self, request: httpx.Request) -> httpx.Response:
        params = request.url.params
        keys = (params.get("companyApiKey"), params.get("connectApiKey"))
        if request.url.path.endswith(TOKEN_PATH):
            self.logins += 1
            if keys not in self.valid:
                return httpx.Response(401, json={"Message": "Authorization has been denied for this request."})
            return httpx.Response(200, json={"Token": f"tok-SECRET-{self.logins:04d}"})
        self.posts.append(request)
        if self.revoked or keys not in self.valid:
            return httpx.Response(401, json={"Message": "Authorization has been denied for this request."})
        if request.url.path.endswith("/Filter"):
            return httpx.Response(200, json=[])  # nothing saved
        if self.fail_and_revoke:  # a 500 (the outcome is open), and the keys are revoked before the look-up
            self.fail_and_revoke, self.valid = False, set()
            return httpx.Response(500, text="Internal Server Error")
        docs = json.loads(request.content)
        self.keys += len(docs)
        return httpx.Response(200, json={**OK, "Keys": list(range(self.keys - len(docs) + 1, self.keys + 1))})


def tenants_file(path: Path, company: str = OLD_COMPANY, connect: str = OLD_CONNECT) -> None:
    path.write_text(
        json.dumps(
            {
                "tenants": [
                    {"name": "acme", "company_api_key": company, "connect_api_key": connect},
                    {"name": "beta", "company_api_key": "beta-company-key-5555", "connect_api_key": "beta-connect-66"},
                ]
            }
        ),
        encoding="utf-8",
    )


@pytest.fixture
def pipeline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The pipeline's runtime on fakeredis, with real SoftOne connectors on a MockTransport ERP."""
    from worker.pipeline import runtime

    path = tmp_path / "tenants.json"
    tenants_file(path)
    monkeypatch.setenv("ERPSYNC_TENANTS_FILE", str(path))
    monkeypatch.setenv("ERPSYNC_DEMO_TENANT", "false")
    monkeypatch.setenv("ERPSYNC_BATCH_MAX_WAIT_MS", "0")  # a job's partial batch is flushed by the next ticket
    monkeypatch.setenv("ERPSYNC_RECONCILE_DELAY_SECONDS", "0")
    get_settings.cache_clear()
    settings = get_settings()
    parts = fake_runtime(monkeypatch, settings)
    parts["messages"] = capture_messages(monkeypatch)
    erp = SoftOne()
    http = httpx.Client(transport=httpx.MockTransport(erp))
    client = parts["store"].r

    def connector(tenant: str) -> SoftOneConnector:
        s = get_settings()
        return SoftOneConnector(s.tenant(tenant), s, http, client)

    monkeypatch.setattr(runtime, "connector", connector)
    yield {**parts, "erp": erp, "client": client, "settings": settings, "path": path}
    get_settings.cache_clear()


def submit(stack: dict[str, Any], job_id: str, n: int, tenant: str = "acme") -> None:
    store: ResultsStore = stack["store"]
    row = {"CustomerRowType": 2, "RowNr": 1, "ProductNr": "P1", "Quantity": 1, "UnitPrice": 10}
    docs = [{"ExternalId": f"{job_id}-{i}", "CustomerNr": "1001", "InvoiceDate": "2026-11-20", "OriginType": 2,
             "InvoiceRows": [row]} for i in range(n)]  # fmt: skip
    meta = {"job_id": job_id, "tenant": tenant, "target": "softone", "kind": "customer_invoice"}
    store.create_job(meta, [json.dumps(d) for d in docs], [d["ExternalId"] for d in docs])
    process_items(publish, [(job_id, 0, n)])


def serve() -> dict[str, Any]:
    from worker.pipeline import runtime
    from worker.pipeline.dispatch import serve

    d = runtime.dispatcher()
    d.r.delete(d.s.send_queue_name)
    return serve(publish, "ticket-test")


def statuses(store: ResultsStore, job_id: str) -> list[str]:
    """Each document's status, from the job's records (a document without one is pending)."""
    job = store.job(job_id) or {}
    raw = store.r.hgetall(store.keys.job_records(job_id))
    by_position = {int(i): Record.from_json(text).status for i, text in raw.items()}
    return [by_position.get(i, PENDING) for i in range(int(job.get("total") or 0))]


# ----- a SoftOne 401 after renewal pauses the tenant; reauth resumes it


def test_softone_401_after_renewal_is_authorization_refused() -> None:
    erp = SoftOne()
    erp.revoked = True  # the login works, the calls answer 401 whatever the token
    settings = Settings(key_prefix="t", softone_base_url="http://erp.test/api", demo_tenant=False)
    config = TenantConfig.model_validate(
        {
            "name": "acme",
            "base_url": "http://erp.test/api",
            "company_api_key": OLD_COMPANY,
            "connect_api_key": OLD_CONNECT,
        }
    )
    cache = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
    connector = SoftOneConnector(config, settings, httpx.Client(transport=httpx.MockTransport(erp)), cache)
    with pytest.raises(AuthorizationRefused) as info:
        connector.post_documents(DocumentKind.CUSTOMER_INVOICE, b'[{"ExternalId":"x"}]', "b1")
    assert isinstance(info.value, AuthenticationFailed) and info.value.status == 401
    assert erp.logins == 2 and len(erp.posts) == 2  # renewed once, refused with the fresh token too
    assert info.value.reason == "SoftOne answered 401 with a fresh token"
    for secret in (OLD_COMPANY, OLD_CONNECT, "tok-SECRET-0001", "tok-SECRET-0002"):
        assert secret not in str(info.value)


def test_a_refused_authorisation_pauses_the_tenant_and_reauth_sends_everything(pipeline: dict[str, Any]) -> None:
    store: ResultsStore = pipeline["store"]
    d: Dispatcher = pipeline["dispatcher"]
    client, settings, erp = pipeline["client"], pipeline["settings"], pipeline["erp"]
    erp.valid = {(NEW_COMPANY, NEW_CONNECT)}  # acme's keys were revoked at the ERP
    submit(pipeline, "A", 3)
    submit(pipeline, "B", 2, tenant="beta")  # another tenant, unaffected
    erp.valid.add(("beta-company-key-5555", "beta-connect-66"))
    serve()
    # acme: paused by auth, its batch back in its lane without an attempt, nothing failed or dead-lettered.
    state = TenantControls(client, settings.key_prefix).state("acme")
    assert (state.paused_by, state.auth) == (PausedBy.AUTH, AuthHealth.REFUSED)
    assert state.reason == "SoftOne refused the API keys (401)"
    assert statuses(store, "A") == [PENDING] * 3
    assert store.r.hlen(store.keys.dead) == 0
    [batch_id] = store.r.lrange(d.keys.dispatch_lane("acme", Lane.INTERACTIVE), 0, -1)
    assert int(store.batch(batch_id)["attempts"]) == 0
    assert statuses(store, "B") == ["created"] * 2  # beta went on
    # The dispatcher holds acme's backlog: nothing is handed out, it waits for `paused`.
    assert d.take().grant is None
    [acme] = [t for t in d.backlog() if t.tenant == "acme"]
    assert acme.waiting == Waiting.PAUSED and acme.documents[Lane.INTERACTIVE] == 3
    [row] = [t for t in ops.list_tenants(client, settings) if t["name"] == "acme"]
    assert row == row | {"state": "paused", "paused_by": "auth", "auth": "refused", "backlog": 3,
                         "backlog_lanes": {"interactive": 3, "bulk": 0}, "credentials": "file"}  # fmt: skip
    [waiting] = [t for t in overview.tenants(client, settings, []) if t["tenant"] == "acme"]
    assert waiting["waiting_for"] == "paused: SoftOne refused the API keys (401)"
    logins = erp.logins
    serve()  # another ticket: the paused tenant is not tried again
    assert erp.logins == logins
    # reauth: new keys in Redis, the pause ends, everything is created once with the new keys.
    resumed = ops.reauth(
        client, settings, "acme", {"company_api_key": NEW_COMPANY, "connect_api_key": NEW_CONNECT}, enqueue=publish
    )
    assert resumed
    serve()
    assert statuses(store, "A") == ["created"] * 3
    assert erp.posts[-1].url.params["companyApiKey"] == NEW_COMPANY
    [row] = [t for t in ops.list_tenants(client, settings) if t["name"] == "acme"]
    assert row == row | {"state": "active", "auth": "ok", "backlog": 0, "credentials": "redis"}
    # Secrets are in no key name, and the listing holds none.
    names = " ".join(str(k) for k in client.keys("*"))
    listing = json.dumps(ops.list_tenants(client, settings))
    for secret in (OLD_COMPANY, OLD_CONNECT, NEW_COMPANY, NEW_CONNECT):
        assert secret not in names and secret not in listing


def test_a_refusal_during_a_look_up_pauses_the_tenant_and_settles_nothing(pipeline: dict[str, Any]) -> None:
    store: ResultsStore = pipeline["store"]
    client, settings, erp = pipeline["client"], pipeline["settings"], pipeline["erp"]
    erp.fail_and_revoke = True
    submit(pipeline, "R", 2)
    serve()  # the POST's outcome is open; the look-up (reconcile phase) meets the revoked keys
    assert TenantControls(client, settings.key_prefix).state("acme").paused_by is PausedBy.AUTH
    assert statuses(store, "R") == [PENDING] * 2 and store.r.hlen(store.keys.dead) == 0
    [batch_id] = store.r.lrange(pipeline["dispatcher"].keys.dispatch_lane("acme", Lane.INTERACTIVE), 0, -1)
    assert store.batch(batch_id)["phase"] == "reconcile"
    erp.valid = {(NEW_COMPANY, NEW_CONNECT)}
    ops.reauth(client, settings, "acme", {"company_api_key": NEW_COMPANY, "connect_api_key": NEW_CONNECT})
    serve()  # looked up with the new keys: not saved, so sent again
    assert statuses(store, "R") == ["created"] * 2


def test_an_edited_tenants_file_is_newer_than_redis(pipeline: dict[str, Any]) -> None:
    client, settings, erp, path = pipeline["client"], pipeline["settings"], pipeline["erp"], pipeline["path"]
    erp.valid = {(NEW_COMPANY, NEW_CONNECT)}
    ops.reauth(client, settings, "acme", {"company_api_key": NEW_COMPANY, "connect_api_key": NEW_CONNECT})
    tokens = TokenStore(client, settings.key_prefix, "acme")
    # The file still holds the values the reauth superseded: Redis's are newer.
    assert tokens.credential("company_api_key", OLD_COMPANY) == NEW_COMPANY
    # Then an operator edits the file: its values are newer; Redis's are dropped.
    edited_company, edited_connect = "acme-company-EDIT-7777", "acme-connect-EDIT-8888"
    tenants_file(path, edited_company, edited_connect)
    erp.valid = {(edited_company, edited_connect)}
    submit(pipeline, "E", 1)
    serve()
    assert statuses(pipeline["store"], "E") == ["created"]
    assert erp.posts[-1].url.params["companyApiKey"] == edited_company
    assert client.hget(tokens.credentials_key, "company_api_key") is None
    assert tokens.source("company_api_key", edited_company) == "file"


def test_an_operator_pause_holds_the_backlog_and_outlasts_a_reauth(pipeline: dict[str, Any]) -> None:
    client, settings, store = pipeline["client"], pipeline["settings"], pipeline["store"]
    ops.pause(client, settings, "acme", reason="month-end close")
    submit(pipeline, "P", 2)
    serve()
    assert statuses(store, "P") == [PENDING] * 2 and pipeline["erp"].posts == []
    assert not ops.reauth(client, settings, "acme", {"connect_api_key": OLD_CONNECT})  # keys, still paused
    [row] = [t for t in ops.list_tenants(client, settings) if t["name"] == "acme"]
    assert (row["state"], row["paused_by"], row["reason"]) == ("paused", "operator", "month-end close")
    assert ops.resume(client, settings, "acme", enqueue=publish)
    serve()
    assert statuses(store, "P") == ["created"] * 2


def test_unknown_tenants_and_credentials_are_user_errors(pipeline: dict[str, Any]) -> None:
    client, settings = pipeline["client"], pipeline["settings"]
    with pytest.raises(UserError, match=r"unknown tenant 'nope'; configured: acme, beta"):
        ops.pause(client, settings, "nope")
    with pytest.raises(UserError, match="takes no refresh_token; its credentials for reauth: company_api_key"):
        ops.reauth(client, settings, "acme", {"refresh_token": "x" * 20})
    with pytest.raises(UserError, match="too short"):
        ops.reauth(client, settings, "acme", {"company_api_key": "abc"})


# ----- the store: who may pause, and a refusal of credentials already replaced


def test_a_refusal_of_old_credentials_does_not_pause_after_a_reauth() -> None:
    r = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
    controls = TenantControls(r, "t")
    controls.reauthorised("acme")
    given = controls.state("acme").credentials_at
    assert given is not None
    assert not controls.refused("acme", "refused", started_at=given - 5)  # the attempt used the old ones
    assert not controls.state("acme").paused
    assert controls.refused("acme", "refused", started_at=given + 1)
    assert controls.state("acme").paused_by is PausedBy.AUTH
    controls.pause("acme", "by hand")  # an operator's pause replaces it, keeping its start
    since = controls.state("acme").since
    assert controls.state("acme").paused_by is PausedBy.OPERATOR and since is not None
    assert not controls.reauthorised("acme") and controls.state("acme").paused
    assert controls.resume("acme") and not controls.state("acme").paused


def test_the_dispatcher_parks_a_paused_tenant_and_wakes_it_on_resume() -> None:
    r = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
    settings = Settings(key_prefix="t", demo_tenant=False)
    d = Dispatcher(r, settings)
    for tenant in ("a", "b"):
        r.hset(f"t:batch:{tenant}1", mapping={"state": "queued", "tenant": tenant, "size": 4, "lane": "bulk"})
        d.add(Limits(cap=0, rate_interval_s=0), [f"{tenant}1"])
    TenantControls(r, "t").pause("a", "held")
    first = d.take()
    assert first.grant is not None and first.grant.tenant == "b"
    assert d.take().grant is None
    [a] = d.backlog()
    assert (a.tenant, a.waiting, a.documents[Lane.BULK]) == ("a", Waiting.PAUSED, 4)
    TenantControls(r, "t").resume("a")
    assert d.wake("a")
    again = d.take()
    assert again.grant is not None and again.grant.batch_id == "a1"


# ----- Fortnox: a refused refresh token, and the precedence of its refresh token


def test_a_refused_fortnox_refresh_token_is_authorization_refused() -> None:
    cache = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
    erp = FakeFortnox()
    erp.valid_refresh.clear()  # spent
    with pytest.raises(AuthorizationRefused) as info:
        make_connector(erp, cache).post_documents(DocumentKind.CUSTOMER_INVOICE, b'[{"CustomerNumber":"1"}]', "b")
    assert info.value.status == 400 and "invalid_grant" in info.value.reason
    assert FIRST_REFRESH not in str(info.value) and CLIENT_SECRET not in str(info.value)
    assert erp.api_requests == []  # nothing was sent


def test_fortnox_refresh_token_newest_wins() -> None:
    cache = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
    erp = FakeFortnox()
    make_connector(erp, cache).token()  # the file's token spent; its successor rt-1 in Redis
    tokens = TokenStore(cache, "t", "acme")
    assert tokens.credential(REFRESH_TOKEN, FIRST_REFRESH) == "rt-1"  # the file unchanged: Redis's is newer
    # An operator authorised again and put the new token in the tenants file: the file is newer.
    erp.valid_refresh.add("from-the-file-99")
    cache.delete("t:token:acme")
    make_connector(erp, cache, make_tenant(refresh_token="from-the-file-99")).token()
    assert [r["refresh_token"] for r in erp.token_requests] == [FIRST_REFRESH, "from-the-file-99"]
    assert tokens.credential(REFRESH_TOKEN, "from-the-file-99") == "rt-2"  # and its successor is Redis's again
    # A refresh token stored by an earlier version (no fingerprint) is used, as before.
    cache.delete("t:token:acme:credentials")
    assert tokens.credential(REFRESH_TOKEN, "anything-else") == "rt-2"


def test_fortnox_reauth_is_used_by_the_next_renewal(tmp_path: Path) -> None:
    cache = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
    erp = FakeFortnox()
    erp.valid_refresh = {"reauthorised-token-1"}
    path = tmp_path / "tenants.json"
    entry = {"name": "acme", "target": "fortnox", "base_url": "http://fortnox.test", "client_id": "client-1",
             "client_secret": CLIENT_SECRET, "refresh_token": FIRST_REFRESH}  # fmt: skip
    path.write_text(json.dumps({"tenants": [entry]}), encoding="utf-8")
    settings = Settings(key_prefix="t", demo_tenant=False, tenants_file=path)
    TenantControls(cache, "t").refused("acme", "Fortnox refused the refresh token", started_at=0)
    assert ops.reauth(cache, settings, "acme", {"refresh_token": "reauthorised-token-1"})
    make_connector(erp, cache).token()
    assert erp.token_requests[-1]["refresh_token"] == "reauthorised-token-1"
    assert TenantControls(cache, "t").state("acme").auth is AuthHealth.OK


# ----- the CLI: credentials from a file or stdin, never the command line


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[fakeredis.FakeRedis]:
    from worker.store import client as redis_client

    path = tmp_path / "tenants.json"
    entry = {"name": "fx", "target": "fortnox", "client_id": "client-1", "client_secret": CLIENT_SECRET,
             "refresh_token": FIRST_REFRESH}  # fmt: skip
    path.write_text(json.dumps({"tenants": [entry]}), encoding="utf-8")
    monkeypatch.setenv("ERPSYNC_TENANTS_FILE", str(path))
    monkeypatch.setenv("ERPSYNC_DEMO_TENANT", "false")
    get_settings.cache_clear()
    r = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
    monkeypatch.setattr(redis_client, "get_redis", lambda settings: r)
    capture_messages(monkeypatch)
    yield r
    get_settings.cache_clear()


def test_cli_reauth_reads_a_refresh_token_file_and_resumes(
    cli: fakeredis.FakeRedis, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from worker.cli.commands import main

    TenantControls(cli, "erpsync").refused("fx", "Fortnox refused the refresh token (400 invalid_grant)", started_at=0)
    assert main(["tenants", "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row | {"state": "paused", "paused_by": "auth", "auth": "refused"} == row
    token_file = tmp_path / "token"
    token_file.write_text("new-refresh-token-from-fortnox\n", encoding="utf-8")
    assert main(["tenants", "reauth", "fx", "--refresh-token-file", str(token_file)]) == 0
    assert "new refresh_token stored; resumed" in capsys.readouterr().out
    assert cli.get("erpsync:fortnox:refresh:fx") == "new-refresh-token-from-fortnox"
    assert main(["tenants"]) == 0
    shown = capsys.readouterr().out
    assert "fx" in shown and "active" in shown and "new-refresh-token" not in shown


def test_cli_reauth_reads_stdin_and_never_takes_a_credential_as_an_argument(
    cli: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from worker.cli.commands import build_parser, main

    with pytest.raises(SystemExit):
        build_parser().parse_args(["tenants", "reauth", "fx", "the-token-on-the-command-line"])
    monkeypatch.setattr("sys.stdin", io.StringIO("piped-refresh-token-42\n"))
    assert main(["tenants", "reauth", "fx"]) == 0
    assert cli.get("erpsync:fortnox:refresh:fx") == "piped-refresh-token-42"
    assert main(["tenants", "pause", "nope"]) == 2
    assert "unknown tenant 'nope'; configured: fx" in capsys.readouterr().err


def test_secrets_of_a_refusal_stay_out_of_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    cache = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
    erp = FakeFortnox()
    erp.valid_refresh.clear()
    with caplog.at_level(logging.DEBUG), pytest.raises(AuthorizationRefused):
        make_connector(erp, cache).token()
    assert FIRST_REFRESH not in caplog.text and CLIENT_SECRET not in caplog.text


# ----- the sandbox issues a refresh token as an authorisation would


def test_the_sandbox_authorises_again_with_a_new_refresh_token() -> None:
    sb = InProcessSandbox()
    issued = sb.request("POST", "/_sandbox/fortnox/authorize", json={"client_id": "demo-fortnox-client"})
    assert issued.status_code == 200
    token = issued.json()["refresh_token"]
    form = {"grant_type": "refresh_token", "refresh_token": token}
    auth = ("demo-fortnox-client", "demo-fortnox-secret")
    assert sb.request("POST", "/oauth-v1/token", data=form, auth=auth).status_code == 200
    assert sb.request("POST", "/oauth-v1/token", data=form, auth=auth).status_code == 400  # single-use
    unknown = sb.request("POST", "/_sandbox/fortnox/authorize", json={"client_id": "nobody"})
    assert unknown.status_code == 400
