"""The console's ASGI app (starlette): routes, the session cookie and the security headers.

Routes (every one but /login and /static needs a session; the POSTs but /login and /logout need the admin role;
every POST passes the CSRF check, worker/console/views.py):

    GET  /login, POST /login, POST /logout
    GET  /tenants                        state, backlog per lane, rate, what each waits for, auth health
    POST /tenants/{name}/pause, /tenants/{name}/resume, /tenants/{name}/reauth
    GET  /jobs, /jobs/{job_id}           jobs with progress; one job's documents, paginated (no document bodies)
    GET  /search?q=                      a document by ExternalId or Key: Redis's duplicate index and the archive
    GET  /dead-letters[?all=1], /dead-letters/{id}      open ones (all=1: every one); one in full
    POST /dead-letters/{id}/replay, /dead-letters/{id}/drop
    GET  /api/tenants, /api/jobs, /api/jobs/{job_id}, /api/dead-letters    JSON the pages poll

The session is starlette's signed cookie (itsdangerous): HttpOnly, SameSite=Strict, `Secure` with
`secure_cookie`, valid SESSION_SECONDS; it holds the user's name and the session's CSRF token, nothing else.
Every response carries a CSP without inline script or style, frame-ancestors 'none' and X-Frame-Options DENY,
nosniff and a same-origin referrer policy; everything but the static files is `no-store`.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from worker.console.auth import Accounts, LoginLimiter
from worker.console.data import Console
from worker.console.views import HERE, Views
from worker.errors import ArchiveError
from worker.store.errors import REDIS_ERRORS

__all__ = ["COOKIE", "CSP", "SESSION_SECONDS", "create_app"]

COOKIE = "erpsync_console"
SESSION_SECONDS = 8 * 3600
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


class SecurityHeaders:
    """Headers on every response: the CSP and framing rules; `no-store` on everything but the static files."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = str(scope.get("path", "")).startswith("/static/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Content-Security-Policy"] = CSP
                headers["X-Frame-Options"] = "DENY"
                headers["X-Content-Type-Options"] = "nosniff"
                headers["Referrer-Policy"] = "same-origin"
                headers["Cross-Origin-Opener-Policy"] = "same-origin"
                headers["Cache-Control"] = "private, max-age=300" if static else "no-store"
            await send(message)

        await self.app(scope, receive, with_headers)


def create_app(
    console: Console,
    accounts: Accounts,
    *,
    secret: str,
    limiter: LoginLimiter | None = None,
    secure_cookie: bool = False,
) -> Starlette:
    """The console for one deployment: `console` reads and acts, `accounts` may log in, `secret` signs sessions."""
    v = Views(console, accounts, limiter)
    routes = [
        Route("/", v.home),
        Route("/favicon.ico", v.favicon),
        Route("/login", v.login_form, methods=["GET"]),
        Route("/login", v.login, methods=["POST"]),
        Route("/logout", v.logout, methods=["POST"]),
        Route("/tenants", v.tenants_page),
        Route("/tenants/{name}/pause", v.pause, methods=["POST"]),
        Route("/tenants/{name}/resume", v.resume, methods=["POST"]),
        Route("/tenants/{name}/reauth", v.reauth, methods=["POST"]),
        Route("/jobs", v.jobs_page),
        Route("/jobs/{job_id}", v.job_page),
        Route("/search", v.search_page),
        Route("/dead-letters", v.dead_letters_page),
        Route("/dead-letters/{dead_id}", v.dead_letter_page),
        Route("/dead-letters/{dead_id}/replay", v.replay, methods=["POST"]),
        Route("/dead-letters/{dead_id}/drop", v.drop, methods=["POST"]),
        Route("/api/tenants", v.tenants_api),
        Route("/api/jobs", v.jobs_api),
        Route("/api/jobs/{job_id}", v.job_api),
        Route("/api/dead-letters", v.dead_letters_api),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    session = Middleware(SessionMiddleware, secret_key=secret, session_cookie=COOKIE, max_age=SESSION_SECONDS,
                         same_site="strict", https_only=secure_cookie)  # fmt: skip
    handlers: dict[Any, Any] = {**dict.fromkeys(REDIS_ERRORS, v.redis_down), ArchiveError: v.archive_down}
    return Starlette(routes=routes, middleware=[Middleware(SecurityHeaders), session], exception_handlers=handlers)
