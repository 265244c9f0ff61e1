"""The web console in a real browser: Debian's headless chromium driven by Playwright, against a real `erpsync
console` process on the session's stack (real workers, the sandbox over HTTP, the archiver).

An operator logs in; pauses a tenant, sees the job submitted meanwhile wait at 0 and its backlog on the tenants
page, resumes it and watches the job's progress reach 100 % on a page that is never reloaded; finds a document by
its ExternalId (Redis and the archive); replays a dead letter (an order the ERP answered 500, fixed in the sandbox)
and sees it resolved; a read-only user gets no buttons, and a wrong password gets nothing.

Skipped when /usr/bin/chromium or playwright is missing, except under CI=true, where that fails (.ci/run installs
chromium). With ERPSYNC_SCREENSHOTS=DIR, each view is saved there (`make screenshots`: docs/images/).
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.integration.conftest import ledger_for, order, pos_invoice, wait_job
from worker.devstack.stack import ROOT, LocalStack, free_port, stop, wait_until

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
ADMIN, VIEWER = "ops", "viewer"
WAIT_MS = 120_000  # the longest a page waits for the pipeline (a wait, not an assertion on time)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page


def _missing() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    if importlib.util.find_spec("playwright") is None:
        return "playwright is missing (pip install -e '.[dev]')"
    return None


@dataclass
class ConsoleProcess:
    proc: subprocess.Popen[bytes]
    url: str
    admin_password: str
    viewer_password: str
    log: Path


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    missing = _missing()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the console's browser test cannot run in CI: {missing}")
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def console(stack: LocalStack, browser: Browser) -> Iterator[ConsoleProcess]:
    """`erpsync console` on a free port, an admin and a read-only account with random passwords."""
    admin_password, viewer_password = secrets.token_urlsafe(18), secrets.token_urlsafe(18)
    port = free_port()
    log = stack.workdir / f"console-{port}.log"
    env = {**stack.env, "ERPSYNC_CONSOLE_AUTH": f"{ADMIN}:{admin_password}",
           "ERPSYNC_CONSOLE_READONLY_AUTH": f"{VIEWER}:{viewer_password}",
           "ERPSYNC_CONSOLE_SECRET": secrets.token_urlsafe(32)}  # fmt: skip
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "worker.cli", "console", "--port", str(port)], cwd=ROOT,
                                env=env, stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return httpx.get(f"{url}/login", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(answers, 60, "console", proc)
        yield ConsoleProcess(proc, url, admin_password, viewer_password, log)
    finally:
        stop(proc)


@pytest.fixture
def page(browser: Browser, console: ConsoleProcess) -> Iterator[Page]:
    """A fresh browser context (no session); after the test, no page of it may have logged a script error or a
    Content-Security-Policy violation (an inline script or style the CSP blocks would be one)."""
    context = browser.new_context(base_url=console.url, viewport={"width": 1360, "height": 860})
    context.set_default_timeout(WAIT_MS)
    problems: list[str] = []

    def watch(new: Page) -> None:
        new.on("console", lambda m: problems.append(m.text) if m.type == "error" and "401" not in m.text else None)
        new.on("pageerror", lambda e: problems.append(str(e)))

    context.on("page", watch)
    try:
        yield context.new_page()
        assert not problems, problems
    finally:
        context.close()


def shot(page: Page, name: str) -> None:
    """Save the page as DIR/name when ERPSYNC_SCREENSHOTS=DIR."""
    folder = os.environ.get("ERPSYNC_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / name), full_page=True)


def log_in(page: Page, user: str, password: str) -> None:
    page.goto("/login")
    page.fill("input[name=user]", user)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")


def tenant_row(page: Page, name: str) -> Any:
    return page.locator(f'#tenants tr[data-key="{name}"]')


def test_a_wrong_password_gets_nothing(page: Page, console: ConsoleProcess) -> None:
    log_in(page, ADMIN, console.admin_password + "x")
    assert page.locator(".error").inner_text() == "wrong user or password"
    assert page.locator("#tenants, #jobs, nav").count() == 0
    page.goto("/jobs")
    assert page.url.endswith("/login?next=/jobs")
    api = page.request.get("/api/tenants")
    assert api.status == 401 and "acme" not in api.text()


def test_an_operator_pauses_watches_finds_and_replays(
    page: Page, console: ConsoleProcess, stack: LocalStack, sandbox: httpx.Client
) -> None:
    from worker.ops import tenants
    from worker.producer.submit import submit
    from worker.settings import get_settings
    from worker.store.client import get_redis

    tag = uuid.uuid4().hex[:8]
    log_in(page, ADMIN, console.admin_password)
    assert page.url.endswith("/tenants")
    try:
        # Pause acme: the job submitted meanwhile waits at 0, its documents shown as acme's backlog.
        tenant_row(page, "acme").locator("form[data-when=active] button").click()
        assert page.locator(".flash").inner_text() == "paused acme"
        assert tenant_row(page, "acme").locator("[data-field=state]").inner_text().startswith("paused")
        docs = [pos_invoice(f"{tag}-{i}", customer=str(5100 + i)) for i in range(30)]
        docs[7]["CustomerNr"] = f"UNKNOWN-{tag}"  # the ERP refuses this one: a failed document on the job's page
        job_id = submit(docs, tenant="acme", source="console browser test")
        watcher = page.context.new_page()
        watcher.goto(f"/jobs/{job_id}")
        assert watcher.locator("#job [data-field=done]").inner_text() == "0/30"
        watcher.evaluate("window.loadedOnce = true")  # gone if the page were reloaded
        page.reload()
        page.wait_for_function(  # the tenants page polls: acme's 30 documents join its backlog
            "() => { const r = document.querySelector('#tenants tr[data-key=\"acme\"]');"
            " return r && Number(r.querySelector('[data-field=interactive]').textContent)"
            " + Number(r.querySelector('[data-field=bulk]').textContent) >= 30; }"
        )
        # and its polling measures each tenant's rate over the seconds since the page was loaded
        page.wait_for_function("() => document.querySelector('#tenants tr[data-key=\"demo\"] [data-field=rate]')"
                               ".textContent !== ''")  # fmt: skip
        shot(page, "console-tenants.png")

        # Resume: the job's page, never reloaded, follows its progress to the end.
        tenant_row(page, "acme").locator("form[data-when=paused] button").click()
        assert page.locator(".flash").inner_text() == "resumed acme"
        assert tenant_row(page, "acme").locator("[data-field=state]").inner_text() == "active"
        watcher.wait_for_function("() => document.querySelector('#job progress').value === 100")
        assert watcher.evaluate("window.loadedOnce") is True
        assert watcher.locator("#job [data-field=done]").inner_text() == "30/30"
        assert watcher.locator("#job [data-field=count-failed]").inner_text() == "1"
        assert watcher.locator("#job [data-field=count-created]").inner_text() == "29"
        watcher.reload()
        failed_row = watcher.locator("#documents tr", has_text=f"{tag}-7")
        assert "UNKNOWN" in failed_row.inner_text() and "failed" in failed_row.inner_text()
        assert '"InvoiceRows"' not in watcher.content()  # no document body on the job's page
        shot(watcher, "console-job.png")
        watcher.close()
    finally:
        tenants.resume(get_redis(get_settings()), get_settings(), "acme")  # never leave acme paused for other tests

    # Search by ExternalId: the duplicate index says created with its Key, and the archive has its outcome.
    result = wait_job(stack, job_id)
    page.click("nav >> text=Jobs")
    listed = page.locator(f'#jobs tr[data-key="{job_id}"]')
    assert "partial" in listed.inner_text() and "30/30" in listed.inner_text()
    shot(page, "console-jobs.png")
    key = next(r["key"] for r in result["records"] if r["external_id"] == f"{tag}-3")
    page.click("nav >> text=Search")
    page.fill("input[name=q]", f"{tag}-3")
    page.click("form.filters button")
    redis_row = page.locator("#redis-results tbody tr", has_text="acme")
    assert (
        "created" in redis_row.inner_text() and str(key) in redis_row.inner_text() and job_id in redis_row.inner_text()
    )
    deadline = time.monotonic() + 60
    while "nothing archived" in page.locator("#archive-results").inner_text() and time.monotonic() < deadline:
        page.wait_for_timeout(500)  # the archiver commits a moment after the outcome: look again
        page.reload()
    assert "created" in page.locator("#archive-results tbody tr", has_text=f"{tag}-3").inner_text()
    shot(page, "console-search.png")

    # A dead letter: an order the ERP answered 500 (nobody can tell whether it was saved), then the ERP is fixed
    # and the operator replays it from the console: created once, the dead letter resolved with its Key.
    sandbox.post("/_sandbox/faults", json={"path": "/Economy/Billing/Orders", "kind": "status", "status": 500,
                                           "times": 1})  # fmt: skip
    poison = submit([order(f"{tag}-o")], kind="order", tenant="demo")
    assert wait_job(stack, poison)["records"][0]["status"] == "unknown"
    sandbox.delete("/_sandbox/faults")
    dead_id = f"{poison}#0"
    page.click("nav >> text=Dead letters")
    row = page.locator(f'#dead-letters tr[data-key="{dead_id}"]')
    assert "open" in row.inner_text() and f"{tag}-o" in row.inner_text()
    shot(page, "console-dead-letters.png")
    row.locator("a").first.click()
    assert page.locator("#dead-state").inner_text() == "open"
    page.click("form[action$='/replay'] button")
    flash = page.locator(".flash").inner_text()
    assert flash.startswith(f"replayed {dead_id} as job ")
    replay_job = flash.rsplit(" ", 1)[1]
    assert wait_job(stack, replay_job)["records"][0]["status"] == "created"
    deadline = time.monotonic() + 60
    while page.locator("#dead-state").inner_text() != "resolved" and time.monotonic() < deadline:
        page.wait_for_timeout(500)
        page.reload()
    assert page.locator("#dead-state").inner_text() == "resolved"
    (created,) = ledger_for(sandbox, {f"{tag}-o"})
    assert str(created["key"]) in page.locator(".facts").inner_text()
    shot(page, "console-dead-letter.png")
    page.goto("/dead-letters")
    assert page.locator(f'#dead-letters tr[data-key="{dead_id}"]').count() == 0  # open ones only, by default
    page.goto("/dead-letters?all=1")
    assert "resolved" in page.locator(f'#dead-letters tr[data-key="{dead_id}"]').inner_text()


def test_a_read_only_user_sees_but_gets_no_buttons(page: Page, console: ConsoleProcess, stack: LocalStack) -> None:
    log_in(page, VIEWER, console.viewer_password)
    assert page.url.endswith("/tenants") and tenant_row(page, "acme").count() == 1
    assert page.locator("form[action*='/pause'], form[action*='/resume']").count() == 0
    # a POST with the page's own token and origin, as a button would send it, is refused for this role
    token = page.locator("form[action='/logout'] input[name=csrf]").get_attribute("value")
    for path in ("/tenants/acme/pause", "/dead-letters/any%230/replay", "/dead-letters/any%230/drop"):
        refused = page.request.post(path, form={"csrf": token or ""}, headers={"Origin": console.url})
        assert refused.status == 403 and "read-only" in refused.text()
    assert page.request.get("/api/tenants").json()["tenants"]
    acme = next(t for t in page.request.get("/api/tenants").json()["tenants"] if t["name"] == "acme")
    assert acme["state"] == "active"
