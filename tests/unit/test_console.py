"""The web console (worker/console/) with starlette's TestClient against fakeredis: it refuses to start without
credentials, a wrong password gets nothing, failed logins are limited, CSRF and foreign origins are refused, a
read-only user cannot act, the pages render without document bodies or passwords, and the security headers."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import fakeredis
import pytest
from starlette.testclient import TestClient

from tests.unit.test_history import doc as history_doc
from tests.unit.test_history import job_entry as history_job
from worker.archive.database import ready_engine
from worker.archive.events import rows_of
from worker.archive.writer import write
from worker.celery_app.enqueue import publish
from worker.cli.commands import main
from worker.console.app import COOKIE, create_app
from worker.console.auth import Accounts, LoginLimiter, accounts_from_env, same_origin
from worker.console.data import Console, progress
from worker.errors import UserError
from worker.settings import Settings
from worker.store import counters
from worker.store.jobs import SourceBreak, close_job
from worker.store.keys import Keys
from worker.store.records import CREATED, FAILED, Record
from worker.store.results import ResultsStore

ADMIN, ADMIN_PASSWORD = "ops", "admin-password-4f9c2a"
VIEWER, VIEWER_PASSWORD = "viewer", "viewer-password-8d1e7b"
ORIGIN = "http://testserver"
BODY_MARKER = "body-only-text-9a7c"  # in the documents' bodies: never on a page but a dead letter's own


@pytest.fixture
def settings() -> Settings:
    return Settings(key_prefix="cs", queue="csq")


@pytest.fixture
def r() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(decode_responses=True)


@pytest.fixture
def store(r: fakeredis.FakeRedis, settings: Settings) -> ResultsStore:
    return ResultsStore(r, settings)


@pytest.fixture
def accounts() -> Accounts:
    return accounts_from_env(
        {
            "ERPSYNC_CONSOLE_AUTH": f"{ADMIN}:{ADMIN_PASSWORD}",
            "ERPSYNC_CONSOLE_READONLY_AUTH": f"{VIEWER}:{VIEWER_PASSWORD}",
        }
    )


@pytest.fixture
def client(r: fakeredis.FakeRedis, settings: Settings, accounts: Accounts) -> Iterator[TestClient]:
    app = create_app(Console(r, settings), accounts, secret="s" * 40, limiter=LoginLimiter(attempts=3, window=60))
    with TestClient(app, follow_redirects=False) as c:
        yield c


def make_job(store: ResultsStore, job_id: str, n: int = 3) -> None:
    meta = {"job_id": job_id, "tenant": "demo", "target": "softone", "kind": "customer_invoice", "source": "t",
            "submitted_at": datetime.now(UTC).isoformat()}  # fmt: skip
    store.open_job(meta)
    docs = [json.dumps({"ExternalId": f"{job_id}-{i}", "Note": BODY_MARKER}) for i in range(n)]
    store.append_documents(job_id, 0, docs, [f"{job_id}-{i}" for i in range(n)])
    store.close_job(job_id)


def dead_letter(store: ResultsStore, job_id: str, position: int = 0) -> str:
    """A dead letter of the job's document at `position`; returns its id (`job#position`)."""
    entry = {"id": f"{job_id}#{position}", "status": "failed", "tenant": "demo", "kind": "customer_invoice",
             "external_id": f"{job_id}-{position}", "job_id": job_id, "reason": "customer UNKNOWN-1 does not exist",
             "document": {"ExternalId": f"{job_id}-{position}", "Note": BODY_MARKER}}  # fmt: skip
    store.complete_batch(f"b-{job_id}-{position}", "rejected", [], dead=[entry])
    return str(entry["id"])


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF token in the page"
    return found.group(1)


def login(client: TestClient, user: str = ADMIN, password: str = ADMIN_PASSWORD) -> str:
    """Log in through the form; returns the session's CSRF token (from a page, as a browser would have it)."""
    token = csrf_of(client.get("/login").text)
    response = client.post("/login", data={"user": user, "password": password, "csrf": token},
                           headers={"Origin": ORIGIN})  # fmt: skip
    assert response.status_code == 303, response.text
    return csrf_of(client.get("/jobs").text)


# ----- starting


def test_the_console_refuses_to_start_without_credentials(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["console"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "ERPSYNC_CONSOLE_AUTH" in lines[0] and "Traceback" not in lines[0]


def test_a_malformed_entry_is_named_by_its_number_never_by_its_value(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ERPSYNC_CONSOLE_AUTH", "ops:fine-password,no-colon-secret-value")
    assert main(["console"]) == 2
    text = capsys.readouterr().err
    assert "entry 2" in text and "no-colon-secret-value" not in text and "fine-password" not in text
    with pytest.raises(UserError, match="configured twice"):
        accounts_from_env({"ERPSYNC_CONSOLE_AUTH": "a:password1", "ERPSYNC_CONSOLE_READONLY_AUTH": "a:password2"})


def test_a_short_session_secret_is_refused(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ERPSYNC_CONSOLE_AUTH", "ops:fine-password")
    monkeypatch.setenv("ERPSYNC_CONSOLE_SECRET", "short")
    assert main(["console"]) == 2
    assert "ERPSYNC_CONSOLE_SECRET" in capsys.readouterr().err


# ----- authentication


def test_without_a_session_pages_redirect_to_login_and_json_is_401(client: TestClient, store: ResultsStore) -> None:
    make_job(store, "job-a")
    page = client.get("/jobs")
    assert page.status_code == 303 and page.headers["location"].startswith("/login")
    api = client.get("/api/jobs")
    assert api.status_code == 401 and "job-a" not in api.text
    assert client.get("/api/jobs/job-a").status_code == 401


def test_a_wrong_password_gets_nothing(client: TestClient, store: ResultsStore) -> None:
    make_job(store, "job-a")
    token = csrf_of(client.get("/login").text)
    response = client.post(
        "/login", data={"user": ADMIN, "password": "wrong", "csrf": token}, headers={"Origin": ORIGIN}
    )
    assert response.status_code == 401 and "wrong user or password" in response.text
    assert "job-a" not in response.text
    assert client.get("/api/jobs").status_code == 401
    assert client.get("/jobs/job-a").status_code == 303
    # a real user name with another's password is no better
    response = client.post("/login", data={"user": VIEWER, "password": ADMIN_PASSWORD, "csrf": token},
                           headers={"Origin": ORIGIN})  # fmt: skip
    assert response.status_code == 401 and client.get("/api/jobs").status_code == 401


def test_failed_logins_are_limited_per_client(client: TestClient) -> None:
    token = csrf_of(client.get("/login").text)
    for _ in range(3):
        bad = client.post(
            "/login", data={"user": ADMIN, "password": "guess", "csrf": token}, headers={"Origin": ORIGIN}
        )
        assert bad.status_code == 401
    # the right password too, while the window lasts
    good = client.post("/login", data={"user": ADMIN, "password": ADMIN_PASSWORD, "csrf": token},
                       headers={"Origin": ORIGIN})  # fmt: skip
    assert good.status_code == 429 and int(good.headers["retry-after"]) >= 1
    assert client.get("/api/jobs").status_code == 401


def test_the_limiter_forgets_failures_that_left_its_window() -> None:
    now = [1000.0]
    limiter = LoginLimiter(attempts=2, window=10, clock=lambda: now[0])
    limiter.failed("a")
    limiter.failed("a")
    assert limiter.retry_after("a") == pytest.approx(10) and limiter.retry_after("b") == 0
    now[0] += 10.5
    assert limiter.retry_after("a") == 0


def test_login_needs_the_login_page_token(client: TestClient) -> None:
    client.get("/login")
    response = client.post("/login", data={"user": ADMIN, "password": ADMIN_PASSWORD}, headers={"Origin": ORIGIN})
    assert response.status_code == 403 and client.get("/api/jobs").status_code == 401


def test_the_session_cookie_is_httponly_and_strict(client: TestClient) -> None:
    token = csrf_of(client.get("/login").text)
    response = client.post("/login", data={"user": ADMIN, "password": ADMIN_PASSWORD, "csrf": token},
                           headers={"Origin": ORIGIN})  # fmt: skip
    cookie = response.headers["set-cookie"].lower()
    assert cookie.startswith(COOKIE) and "httponly" in cookie and "samesite=strict" in cookie
    assert ADMIN_PASSWORD not in response.headers["set-cookie"]


def test_a_user_removed_from_the_accounts_loses_the_session(
    r: fakeredis.FakeRedis, settings: Settings, accounts: Accounts
) -> None:
    app = create_app(Console(r, settings), accounts, secret="k" * 40)
    with TestClient(app, follow_redirects=False) as c:
        login(c, VIEWER, VIEWER_PASSWORD)
        cookies = dict(c.cookies)
    fewer = accounts_from_env({"ERPSYNC_CONSOLE_AUTH": f"{ADMIN}:{ADMIN_PASSWORD}"})
    with TestClient(create_app(Console(r, settings), fewer, secret="k" * 40), follow_redirects=False) as c:
        c.cookies.update(cookies)
        assert c.get("/api/jobs").status_code == 401


def test_passwords_are_checked_in_full() -> None:
    accounts = accounts_from_env({"ERPSYNC_CONSOLE_AUTH": "ops:abcdef"})
    assert accounts.check("ops", "abcdef") is not None
    for wrong in ("abcde", "abcdefg", "", "ABCDEF"):
        assert accounts.check("ops", wrong) is None
    assert accounts.check("op", "abcdef") is None


# ----- CSRF and roles


def test_a_post_without_the_token_or_from_another_origin_is_refused(client: TestClient, store: ResultsStore) -> None:
    make_job(store, "job-d")
    dead = dead_letter(store, "job-d")
    token = login(client)
    url = f"/dead-letters/{quote(dead)}/drop"
    assert client.post(url, data={}, headers={"Origin": ORIGIN}).status_code == 403
    assert client.post(url, data={"csrf": "x" * 43}, headers={"Origin": ORIGIN}).status_code == 403
    assert client.post(url, data={"csrf": token}, headers={"Origin": "http://evil.example"}).status_code == 403
    assert client.post(url, data={"csrf": token}).status_code == 403  # neither Origin nor Referer
    assert store.dead_letter(dead) is not None
    done = client.post(url, data={"csrf": token}, headers={"Referer": f"{ORIGIN}/dead-letters/{quote(dead)}"})
    assert done.status_code == 303 and store.dead_letter(dead) is None


def test_a_read_only_user_sees_everything_and_changes_nothing(client: TestClient, store: ResultsStore) -> None:
    make_job(store, "job-r")
    dead = dead_letter(store, "job-r")
    token = login(client, VIEWER, VIEWER_PASSWORD)
    for path in ("/jobs", "/jobs/job-r", "/dead-letters", f"/dead-letters/{quote(dead)}", "/search?q=job-r-0"):
        page = client.get(path)
        assert page.status_code == 200, path
        assert "read-only" in page.text and "/drop" not in page.text and "/replay" not in page.text
    for action in ("drop", "replay"):
        refused = client.post(f"/dead-letters/{quote(dead)}/{action}", data={"csrf": token}, headers={"Origin": ORIGIN})
        assert refused.status_code == 403 and "read-only" in refused.text
    for action in ("pause", "resume", "reauth"):
        refused = client.post(f"/tenants/demo/{action}", data={"csrf": token, "refresh_token": "new-token-value"},
                              headers={"Origin": ORIGIN})  # fmt: skip
        assert refused.status_code == 403
    assert store.dead_letter(dead) is not None and not store.dead_letter(dead).get("replays")


def test_same_origin_compares_the_host() -> None:
    assert same_origin("console:8808", "http://console:8808", None)
    assert same_origin("console:8808", None, "https://console:8808/jobs")
    assert not same_origin("console:8808", "http://console:8809", None)
    assert not same_origin("console:8808", "null", None)
    assert not same_origin("console:8808", None, "javascript://console:8808/")
    assert not same_origin(None, "http://console:8808", None)


# ----- pages


def test_jobs_and_a_job_page_show_progress_and_documents_without_bodies(
    client: TestClient, store: ResultsStore
) -> None:
    make_job(store, "job-p", n=4)
    errors = [{"field": "CustomerNr", "reason": "unknown customer"}]
    failed = Record("job-p-1", FAILED, error="customer UNKNOWN-1 does not exist", errors=errors)
    store.set_records([("job-p", 0, Record("job-p-0", CREATED, key=4711)), ("job-p", 1, failed)])
    login(client)
    jobs = client.get("/jobs")
    assert jobs.status_code == 200 and "job-p" in jobs.text and "2/4" in jobs.text
    page = client.get("/jobs/job-p")
    assert page.status_code == 200
    for text in ("job-p-0", "4711", "job-p-1", "customer UNKNOWN-1 does not exist", "CustomerNr", "unknown customer"):
        assert text in page.text
    assert BODY_MARKER not in page.text and BODY_MARKER not in jobs.text
    failed_only = client.get("/jobs/job-p?status=failed")
    assert "job-p-1" in failed_only.text and "job-p-0" not in failed_only.text
    data = client.get("/api/jobs/job-p").json()
    assert data["settled"] == 2 and data["total"] == 4 and data["percent"] == 50.0 and data["counts"]["failed"] == 1
    assert BODY_MARKER not in json.dumps(data)
    assert client.get("/jobs/nope").status_code == 404


def test_an_incomplete_jobs_page_says_where_its_source_broke(client: TestClient, store: ResultsStore) -> None:
    store.open_job({"job_id": "job-i", "tenant": "demo", "target": "softone", "kind": "customer_invoice",
                    "source": "t", "submitted_at": datetime.now(UTC).isoformat()})  # fmt: skip
    store.append_documents("job-i", 0, [json.dumps({"ExternalId": "job-i-0"})], ["job-i-0"])
    close_job(store, "job-i", SourceBreak("not valid JSON (Expecting value)", 7))
    login(client)
    page = client.get("/jobs/job-i")
    assert page.status_code == 200 and "incomplete: the source broke" in page.text and "at line 7" in page.text
    assert "not valid JSON (Expecting value)" in page.text
    api = client.get("/api/jobs/job-i").json()
    assert (api["source_error_line"], api["source_error"]) == (7, "not valid JSON (Expecting value)")


def test_documents_are_paginated(client: TestClient, store: ResultsStore) -> None:
    make_job(store, "job-big", n=120)
    login(client)
    first = client.get("/jobs/job-big?size=50")
    assert "job-big-49" in first.text and "job-big-50" not in first.text and "page=2" in first.text
    third = client.get("/jobs/job-big?size=50&page=3")
    assert "job-big-100" in third.text and "job-big-119" in third.text and "page=4" not in third.text


def test_progress_derives_throughput_and_eta() -> None:
    entry = {"total": 100, "pending": 60, "age_seconds": 20.0, "finished_at": None}
    found = progress(entry)
    assert found["settled"] == 40 and found["percent"] == 40.0 and found["throughput"] == 2.0
    assert found["eta_seconds"] == 30.0
    assert progress({**entry, "pending": 100})["eta_seconds"] is None


def test_search_finds_a_document_in_the_duplicate_index_by_external_id_and_key(
    client: TestClient, r: fakeredis.FakeRedis, settings: Settings
) -> None:
    keys = Keys(settings.key_prefix)
    r.set(keys.dedup("demo", "customer_invoice", "INV-77"), "created|job-s#3|4711|F-1|")
    r.zadd(keys.erp_keys("demo", "customer_invoice"), {"4711": 4711})
    login(client)
    by_id = client.get("/search?q=INV-77")
    assert by_id.status_code == 200 and "4711" in by_id.text and "job-s" in by_id.text and "created" in by_id.text
    assert "The archive is off" in by_id.text
    by_key = client.get("/search?q=4711")
    assert "key recorded" in by_key.text
    assert "nothing in Redis" in client.get("/search?q=INV-00").text


def test_dead_letters_list_and_show(client: TestClient, store: ResultsStore) -> None:
    make_job(store, "job-x")
    dead = dead_letter(store, "job-x")
    token = login(client)
    listing = client.get("/dead-letters")
    assert dead in listing.text and "customer UNKNOWN-1 does not exist" in listing.text
    assert BODY_MARKER not in listing.text
    shown = client.get(f"/dead-letters/{quote(dead)}")
    assert shown.status_code == 200 and BODY_MARKER in shown.text and "open" in shown.text
    assert client.get("/api/dead-letters").json()["dead_letters"][0]["state"] == "open"
    assert client.get("/dead-letters/nope%230").status_code == 404
    assert token


def test_a_tenants_rate_is_the_documents_it_settled_per_second_over_the_last_minute(
    r: fakeredis.FakeRedis, settings: Settings
) -> None:
    """The rate `erpsync status` shows (worker/store/counters.py, `throughput`): from the buckets the workers write,
    so a console started a moment ago shows it too."""
    bucket = int(time.time() // counters.THROUGHPUT_BUCKET_SECONDS) - 5  # 50 to 60 seconds ago
    r.hset(Keys(settings.key_prefix).throughput(bucket), mapping={"t|demo": 600, "j|job-r": 600})
    rows = {row["name"]: row for row in Console(r, settings).tenants()["tenants"]}
    assert 10.0 < rows["demo"]["rate"] <= 12.0  # 600 documents over 50 to 60 seconds
    assert all(row["rate"] == 0.0 for name, row in rows.items() if name != "demo")


def test_every_response_carries_the_security_headers(client: TestClient, store: ResultsStore) -> None:
    make_job(store, "job-h")
    for path in ("/login", "/api/jobs"):
        response = client.get(path)
        assert response.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert "unsafe-inline" not in response.headers["content-security-policy"]
        assert response.headers["cache-control"] == "no-store"
    login(client)
    api = client.get("/api/jobs")
    assert api.status_code == 200 and api.headers["cache-control"] == "no-store"
    assert "<script>" not in client.get("/jobs").text  # the script is a file: the CSP allows no inline one


def test_no_page_shows_a_password(client: TestClient, store: ResultsStore) -> None:
    make_job(store, "job-q")
    dead = dead_letter(store, "job-q")
    login(client)
    for path in ("/jobs", "/jobs/job-q", "/dead-letters", f"/dead-letters/{quote(dead)}", "/search?q=x", "/api/jobs"):
        text = client.get(path).text
        assert ADMIN_PASSWORD not in text and VIEWER_PASSWORD not in text


def test_html_is_escaped(client: TestClient, store: ResultsStore) -> None:
    make_job(store, "job-e")
    store.set_records([("job-e", 0, Record("<script>alert(1)</script>", FAILED, error="<img src=x onerror=1>"))])
    login(client)
    page = client.get("/jobs/job-e").text
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page
    assert "<img src=x" not in page


# ----- tenants


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """What a resume or reauth offers send tickets with (worker/ops/tenants.py), recorded instead of issued (which
    would go through the process's own Redis client, not this test's)."""
    sent: list[object] = []
    monkeypatch.setattr("worker.ops.tenants.offer_tickets", lambda enqueue, want: sent.append(enqueue))
    return sent


def test_an_admin_pauses_and_resumes_a_tenant(client: TestClient, store: ResultsStore, published: list[object]) -> None:
    token = login(client)
    page = client.get("/tenants")
    assert page.status_code == 200 and 'data-key="demo"' in page.text and "/tenants/demo/pause" in page.text
    paused = client.post("/tenants/demo/pause", data={"csrf": token}, headers={"Origin": ORIGIN})
    assert paused.status_code == 303 and paused.headers["location"] == "/tenants"
    (demo,) = [t for t in client.get("/api/tenants").json()["tenants"] if t["name"] == "demo"]
    assert demo["state"] == "paused" and demo["paused_by"] == "operator" and demo["waiting_for"] == "pause (operator)"
    assert "paused demo" in client.get("/tenants").text  # the flash, once
    resumed = client.post("/tenants/demo/resume", data={"csrf": token}, headers={"Origin": ORIGIN})
    assert resumed.status_code == 303
    (demo,) = [t for t in client.get("/api/tenants").json()["tenants"] if t["name"] == "demo"]
    assert demo["state"] == "active" and published == [publish]
    unknown = client.post("/tenants/nobody/pause", data={"csrf": token}, headers={"Origin": ORIGIN})
    assert unknown.status_code == 303 and "configured: demo" in client.get("/tenants").text


def test_reauthorising_stores_credentials_without_showing_them(
    client: TestClient, published: list[object], settings: Settings, r: fakeredis.FakeRedis
) -> None:
    token = login(client)
    new = {"company_api_key": "new-company-key-123", "connect_api_key": "new-connect-key-456"}
    done = client.post("/tenants/demo/reauth", data={"csrf": token, **new}, headers={"Origin": ORIGIN})
    assert done.status_code == 303
    page = client.get("/tenants").text
    assert "new credentials stored for demo" in page and "credentials: reauthorized" in page
    assert all(value not in page for value in new.values())
    assert all(value not in client.get("/api/tenants").text for value in new.values())
    client.post("/tenants/demo/reauth", data={"csrf": token, "refresh_token": "a-refresh-token"},
                headers={"Origin": ORIGIN})  # fmt: skip
    assert "takes no refresh_token" in client.get("/tenants").text


def test_the_console_binds_loopback_by_default_and_warns_otherwise(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], r: fakeredis.FakeRedis
) -> None:
    import uvicorn

    served: list[dict[str, object]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: served.append(options))
    monkeypatch.setattr("worker.cli.web._check_address", lambda host, port: None)  # the ports may be taken here
    monkeypatch.setattr("worker.store.client.get_redis", lambda settings=None: r)
    monkeypatch.setenv("ERPSYNC_CONSOLE_AUTH", f"{ADMIN}:{ADMIN_PASSWORD}")
    assert main(["console"]) == 0
    assert served[-1]["host"] == "127.0.0.1" and served[-1]["port"] == 8808
    assert "warning" not in capsys.readouterr().err
    assert main(["console", "--host", "0.0.0.0", "--port", "9000"]) == 0
    assert served[-1]["host"] == "0.0.0.0" and served[-1]["port"] == 9000
    err = capsys.readouterr().err
    assert "warning" in err and "not only on loopback" in err and ADMIN_PASSWORD not in err


# ----- the archive


@pytest.fixture
def archived(tmp_path: Path, r: fakeredis.FakeRedis, accounts: Accounts) -> Iterator[TestClient]:
    """A console whose archive (SQLite) holds job j1 (INV-1 failed then created with Key 4711, INV-2 created), a job
    Redis no longer has; the archive keeps the bodies too (ERPSYNC_ARCHIVE_BODIES), which no page may show."""
    settings = Settings(key_prefix="cs", queue="csq", archive_url=f"sqlite:///{tmp_path}/archive.sqlite3")
    engine = ready_engine(settings)
    t0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
    entries = [
        history_doc(t0, "j1", 0, "failed", "INV-1", error="InvoiceDate: field required"),
        history_doc(t0 + timedelta(minutes=1), "j1", 1, "created", "INV-2", key=4712, number="1002"),
        history_doc(t0 + timedelta(hours=2), "j1", 0, "created", "INV-1", key=4711, number="1001"),
        history_job(t0 + timedelta(hours=2), "j1", "succeeded", created=2),
    ]
    rows = rows_of(entries, "cs", bodies=True)
    for row in rows.outcomes:
        row["body"] = json.dumps({"ExternalId": row["external_id"], "Note": BODY_MARKER})
    write(engine, rows)
    app = create_app(Console(r, settings), accounts, secret="a" * 40)
    with TestClient(app, follow_redirects=False) as c:
        yield c
    engine.dispose()


def test_search_and_job_pages_read_the_archive(archived: TestClient) -> None:
    login(archived)
    by_id = archived.get("/search?q=INV-1").text
    assert "nothing in Redis" in by_id and by_id.count("INV-1</td>") >= 2 and "InvoiceDate: field required" in by_id
    by_key = archived.get("/search?q=4711").text
    assert "INV-1" in by_key and "INV-2" not in by_key
    job = archived.get("/jobs/j1")
    assert job.status_code == 200 and "from the archive" in job.text and "4712" in job.text and "INV-2" in job.text
    for page in (by_id, by_key, job.text):
        assert BODY_MARKER not in page


def test_redis_down_is_one_line_and_503(settings: Settings, accounts: Accounts) -> None:
    server = fakeredis.FakeServer()
    client = fakeredis.FakeRedis(server=server, decode_responses=True)
    with TestClient(create_app(Console(client, settings), accounts, secret="d" * 40), follow_redirects=False) as c:
        login(c)
        server.connected = False
        page = c.get("/jobs")
        assert page.status_code == 503 and "Redis unavailable (ConnectionError)" in page.text
        api = c.get("/api/tenants")
        assert api.status_code == 503 and api.json()["error"].startswith("Redis unavailable")
