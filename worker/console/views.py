"""The console's endpoints: pages (HTML rendered by Jinja2 with autoescaping), the JSON the pages poll, and the
actions. Who may call what is decided here, by two wrappers:

- `page`: any logged-in user (a GET); without a session, pages redirect to /login and the JSON answers 401.
- `action`: a POST that changes something: a logged-in admin, from the console's own origin (Origin, else
  Referer, must name the host the request was sent to), carrying the session's CSRF token (form field `csrf` or
  header X-CSRF-Token). A read-only user, a foreign origin or a wrong token gets 403 and nothing is done.

Redis and the archive are read in the thread pool: their clients block.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

import jinja2
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response

from worker.console.auth import Accounts, LoginLimiter, Role, new_csrf_token, same_origin, tokens_match
from worker.console.data import PAGE_SIZES, Console
from worker.errors import UserError
from worker.ops.overview import since_text

__all__ = ["CREDENTIAL_FIELDS", "DOC_STATUSES", "JOB_STATUSES", "Views"]

HERE = Path(__file__).resolve().parent
MAX_FORM_BYTES = 16 * 1024
#: The credentials a reauthorisation form may carry; worker/ops/tenants.py says which one a tenant takes (its
#: `reauth` field) and refuses the others.
CREDENTIAL_FIELDS = ("refresh_token", "client_secret", "company_api_key", "connect_api_key", "api_token")
JOB_STATUSES = ("receiving", "queued", "running", "succeeded", "partial", "incomplete", "failed", "rejected")
DOC_STATUSES = ("pending", "created", "duplicate", "updated", "changed", "failed", "unknown")
CSRF_REFUSED = "refused: the request did not come from a console page (CSRF check)"

Endpoint = Callable[["Views", Request], Awaitable[Response]]
ActionEndpoint = Callable[["Views", Request, dict[str, str]], Awaitable[Response]]


def page(handler: Endpoint) -> Endpoint:
    """A GET for any logged-in user."""

    @functools.wraps(handler)
    async def wrapped(self: Views, request: Request) -> Response:
        if self.user_of(request) is None:
            return self.login_required(request)
        return await handler(self, request)

    return wrapped


def action(handler: ActionEndpoint) -> Endpoint:
    """A POST that changes something: a logged-in admin, from our origin, with the session's CSRF token."""

    @functools.wraps(handler)
    async def wrapped(self: Views, request: Request) -> Response:
        who = self.user_of(request)
        if who is None:
            return self.login_required(request)
        form = await form_of(request)
        if not csrf_ok(request, form):
            return PlainTextResponse(CSRF_REFUSED, 403)
        if who[1] is not Role.ADMIN:
            return PlainTextResponse("refused: this account is read-only", 403)
        return await handler(self, request, form)

    return wrapped


async def form_of(request: Request) -> dict[str, str]:
    """An urlencoded form (what the console's forms post), at most MAX_FORM_BYTES."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise HTTPException(413, "form too large")
    parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=20)
    return {k: v[0] for k, v in parsed.items()}


def csrf_ok(request: Request, form: dict[str, str]) -> bool:
    origin_ok = same_origin(request.headers.get("host"), request.headers.get("origin"), request.headers.get("referer"))
    given = form.get("csrf") or request.headers.get("x-csrf-token")
    return origin_ok and tokens_match(request.session.get("csrf"), given)


def local_path(path: str | None) -> str | None:
    """A `next` target only if it is a path of this site (no scheme, no host, no `//`)."""
    if path and path.startswith("/") and not path.startswith("//") and "\\" not in path:
        return path
    return None


def bounded_int(text: str | None, default: int, low: int, high: int) -> int:
    try:
        value = int(text) if text else default
    except ValueError:
        value = default
    return max(low, min(high, value))


def _templates() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True)
    env.filters["age"] = since_text
    env.filters["when"] = lambda v: (v or "")[:19].replace("T", " ")
    return env


class Views:
    """Every endpoint of the console, bound to one deployment's `Console` and accounts."""

    def __init__(self, console: Console, accounts: Accounts, limiter: LoginLimiter | None = None) -> None:
        self.console = console
        self.accounts = accounts
        self.limiter = limiter or LoginLimiter()
        self.env = _templates()

    # ----- helpers

    def user_of(self, request: Request) -> tuple[str, Role] | None:
        """The session's user and role, if that user is still configured."""
        user = request.session.get("user")
        role = self.accounts.role_of(user) if isinstance(user, str) else None
        return (user, role) if isinstance(user, str) and role else None

    def login_required(self, request: Request) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": "login required"}, status_code=401)
        return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)

    def render(self, request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        who = self.user_of(request)
        html = self.env.get_template(template).render(
            user=who[0] if who else None,
            admin=bool(who and who[1] is Role.ADMIN),
            csrf=request.session.get("csrf", ""),
            flash=request.session.pop("flash", None),
            nav=template.split(".")[0],
            **context,
        )
        return HTMLResponse(html, status_code=status_code)

    @staticmethod
    def back(request: Request, to: str, message: str) -> Response:
        """Redirect after an action, with a one-line message for the next page."""
        request.session["flash"] = message
        return RedirectResponse(to, status_code=303)

    # ----- login

    async def home(self, request: Request) -> Response:
        return RedirectResponse("/tenants", status_code=303)

    async def favicon(self, request: Request) -> Response:
        """Browsers ask for one: no content rather than a 404 in every page's console."""
        return Response(status_code=204)

    async def login_form(self, request: Request) -> Response:
        if self.user_of(request) is not None:
            return RedirectResponse("/tenants", status_code=303)
        if "csrf" not in request.session:
            request.session["csrf"] = new_csrf_token()
        return self.render(request, "login.html", next=local_path(request.query_params.get("next")), error=None)

    async def login(self, request: Request) -> Response:
        client = request.client.host if request.client else "?"
        wait = self.limiter.retry_after(client)
        if wait:
            headers = {"Retry-After": str(int(wait) + 1)}
            return PlainTextResponse("too many failed logins: try again later", 429, headers=headers)
        form = await form_of(request)
        if not csrf_ok(request, form):
            return PlainTextResponse("refused: log in from the console's login page (CSRF check)", 403)
        account = self.accounts.check(form.get("user", ""), form.get("password", ""))
        if account is None:
            self.limiter.failed(client)
            next_path = local_path(form.get("next"))
            return self.render(request, "login.html", 401, next=next_path, error="wrong user or password")
        request.session.clear()
        request.session.update(user=account.user, csrf=new_csrf_token())
        return RedirectResponse(local_path(form.get("next")) or "/tenants", status_code=303)

    async def logout(self, request: Request) -> Response:
        """Any role may log out (the CSRF check still applies: no other site logs a user out)."""
        form = await form_of(request)
        if not csrf_ok(request, form):
            return PlainTextResponse(CSRF_REFUSED, 403)
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    # ----- tenants

    @page
    async def tenants_page(self, request: Request) -> Response:
        data = await run_in_threadpool(self.console.tenants)
        return self.render(request, "tenants.html", data=data)

    @page
    async def tenants_api(self, request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(self.console.tenants))

    @action
    async def pause(self, request: Request, form: dict[str, str]) -> Response:
        return await self._tenant_action(request, "pause", self.console.pause)

    @action
    async def resume(self, request: Request, form: dict[str, str]) -> Response:
        return await self._tenant_action(request, "resume", self.console.resume)

    @action
    async def reauth(self, request: Request, form: dict[str, str]) -> Response:
        name = request.path_params["name"]
        given = {f: form[f] for f in CREDENTIAL_FIELDS if form.get(f)}
        if not given:
            return self.back(request, "/tenants", f"reauthorize {name}: no new credentials given")
        return await self._tenant_action(
            request, "reauthorize", functools.partial(self.console.reauth, credentials=given)
        )

    async def _tenant_action(self, request: Request, verb: str, act: Callable[[str], None]) -> Response:
        name = request.path_params["name"]
        try:
            await run_in_threadpool(act, name)
        except UserError as exc:
            return self.back(request, "/tenants", f"{verb} {name}: {exc}")
        done = {"pause": "paused", "resume": "resumed", "reauthorize": "new credentials stored for"}[verb]
        return self.back(request, "/tenants", f"{done} {name}")

    # ----- jobs

    @staticmethod
    def _job_filters(request: Request) -> tuple[str | None, str | None]:
        tenant, status = request.query_params.get("tenant") or None, request.query_params.get("status") or None
        return tenant, status if status in JOB_STATUSES else None

    @page
    async def jobs_page(self, request: Request) -> Response:
        tenant, status = self._job_filters(request)
        data = await run_in_threadpool(functools.partial(self.console.jobs, tenant=tenant, status=status))
        names = await run_in_threadpool(self.console.tenant_names)
        return self.render(request, "jobs.html", data=data, tenant=tenant, status=status, statuses=JOB_STATUSES,
                           tenants=names)  # fmt: skip

    @page
    async def jobs_api(self, request: Request) -> Response:
        tenant, status = self._job_filters(request)
        return JSONResponse(await run_in_threadpool(functools.partial(self.console.jobs, tenant=tenant, status=status)))

    @page
    async def job_page(self, request: Request) -> Response:
        job_id = request.path_params["job_id"]
        found = await run_in_threadpool(self.console.job, job_id)
        if found is None:
            return self.render(request, "error.html", 404, message=f"no job {job_id} in Redis or the archive")
        number = bounded_int(request.query_params.get("page"), 1, 1, 1_000_000)
        size = bounded_int(request.query_params.get("size"), PAGE_SIZES[0], PAGE_SIZES[0], PAGE_SIZES[-1])
        status = request.query_params.get("status") or None
        read = functools.partial(self.console.documents, job_id, source=found["source"], page=number, size=size,
                                 status=status if status in DOC_STATUSES else None)  # fmt: skip
        docs = await run_in_threadpool(read)
        return self.render(request, "job.html", job=found, docs=docs, statuses=DOC_STATUSES)

    @page
    async def job_api(self, request: Request) -> Response:
        found = await run_in_threadpool(self.console.job, request.path_params["job_id"])
        if found is None:
            return JSONResponse({"error": "no such job"}, status_code=404)
        return JSONResponse(found)

    # ----- search

    @page
    async def search_page(self, request: Request) -> Response:
        query = (request.query_params.get("q") or "").strip()[:200]
        results = await run_in_threadpool(self.console.search, query) if query else None
        return self.render(request, "search.html", query=query, results=results)

    # ----- dead letters

    @page
    async def dead_letters_page(self, request: Request) -> Response:
        include_closed = request.query_params.get("all") == "1"
        read = functools.partial(self.console.dead_letters, include_closed=include_closed)
        entries = await run_in_threadpool(read)
        return self.render(request, "dead_letters.html", entries=entries, include_closed=include_closed)

    @page
    async def dead_letters_api(self, request: Request) -> Response:
        read = functools.partial(self.console.dead_letters, include_closed=request.query_params.get("all") == "1")
        return JSONResponse({"dead_letters": await run_in_threadpool(read)})

    @page
    async def dead_letter_page(self, request: Request) -> Response:
        dead_id = request.path_params["dead_id"]
        entry = await run_in_threadpool(self.console.dead_letter, dead_id)
        if entry is None:
            return self.render(request, "error.html", 404, message=f"no dead letter {dead_id}")
        return self.render(request, "dead_letter.html", entry=entry)

    @action
    async def replay(self, request: Request, form: dict[str, str]) -> Response:
        dead_id = request.path_params["dead_id"]
        job_id = await run_in_threadpool(self.console.replay, dead_id)
        if job_id is None:
            return self.back(request, "/dead-letters", f"no dead letter {dead_id}")
        return self.back(request, f"/dead-letters/{quote(dead_id)}", f"replayed {dead_id} as job {job_id}")

    @action
    async def drop(self, request: Request, form: dict[str, str]) -> Response:
        dead_id = request.path_params["dead_id"]
        dropped = await run_in_threadpool(self.console.drop, dead_id)
        return self.back(request, "/dead-letters", f"dropped {dead_id}" if dropped else f"no dead letter {dead_id}")

    async def redis_down(self, request: Request, exc: Exception) -> Response:
        return self.unavailable(request, f"Redis unavailable ({type(exc).__name__}); the console shows data again "
                                "once it answers")  # fmt: skip

    async def archive_down(self, request: Request, exc: Exception) -> Response:
        """An ArchiveError is one line without SQL or credentials (worker/archive/history.py)."""
        return self.unavailable(request, str(exc))

    def unavailable(self, request: Request, message: str) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": message}, status_code=503)
        return self.render(request, "error.html", 503, message=message)
