"""Who may use the console and what they may do: accounts from the environment, password checks in constant time,
failed logins limited per client, CSRF tokens and the same-origin check of state-changing requests.

    ERPSYNC_CONSOLE_AUTH=user:password[,user:password]            admins: see everything, pause/resume/replay/drop
    ERPSYNC_CONSOLE_READONLY_AUTH=user:password[,user:password]   read-only: see everything, change nothing

The console refuses to start without at least one account (`accounts_from_env` raises UserError in one line that
names the variable, never its value). Passwords are compared with `hmac.compare_digest` against every account, so
that the time of a check says neither which users exist nor how much of a password was right.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import urlsplit

from worker.errors import UserError

__all__ = [
    "ADMIN_ENV",
    "READONLY_ENV",
    "Account",
    "Accounts",
    "LoginLimiter",
    "Role",
    "accounts_from_env",
    "new_csrf_token",
    "same_origin",
    "tokens_match",
]

ADMIN_ENV = "ERPSYNC_CONSOLE_AUTH"
READONLY_ENV = "ERPSYNC_CONSOLE_READONLY_AUTH"


class Role(StrEnum):
    """What an account may do: `admin` acts (pause, resume, reauth, replay, drop), `readonly` only looks."""

    ADMIN = "admin"
    READONLY = "readonly"


@dataclass(frozen=True, slots=True)
class Account:
    user: str
    password: str = field(repr=False)
    role: Role


def _parse(variable: str, value: str, role: Role) -> list[Account]:
    """The `user:password` entries of one variable; UserError naming the entry's number, never its text."""
    accounts = []
    for i, entry in enumerate(value.split(","), start=1):
        user, colon, password = entry.partition(":")
        if not colon or not user.strip() or not password:
            raise UserError(f"{variable} entry {i} is not user:password (both non-empty; entries separated by commas)")
        if entry != entry.strip() or user != user.strip():
            raise UserError(f"{variable} entry {i} has spaces around it")
        accounts.append(Account(user, password, role))
    return accounts


class Accounts:
    """The console's accounts; a user name appears once (in one role)."""

    def __init__(self, accounts: list[Account]) -> None:
        if not accounts:
            raise UserError(
                f"no console credentials: set {ADMIN_ENV}=user:password (and optionally {READONLY_ENV}); "
                "the console does not run without authentication"
            )
        by_user: dict[str, Account] = {}
        for account in accounts:
            if account.user in by_user:
                raise UserError(f"console user {account.user!r} is configured twice")
            by_user[account.user] = account
        self._by_user = by_user

    def check(self, user: str, password: str) -> Account | None:
        """The account whose user and password both match, else None; every account is compared, each in
        constant time, whatever matched before."""
        found: Account | None = None
        given_user, given_password = user.encode(), password.encode()
        for account in self._by_user.values():
            user_ok = hmac.compare_digest(account.user.encode(), given_user)
            password_ok = hmac.compare_digest(account.password.encode(), given_password)
            if user_ok and password_ok:
                found = account
        return found

    def role_of(self, user: str) -> Role | None:
        """The role of a user still configured (a session of a user removed since gets nothing)."""
        account = self._by_user.get(user)
        return account.role if account else None

    def passwords(self) -> list[str]:
        """Every password, for the check that none appears in a page (tests) or a log."""
        return [a.password for a in self._by_user.values()]


def accounts_from_env(environ: Mapping[str, str]) -> Accounts:
    """The accounts of ERPSYNC_CONSOLE_AUTH (admins) and ERPSYNC_CONSOLE_READONLY_AUTH (read-only)."""
    accounts: list[Account] = []
    for variable, role in ((ADMIN_ENV, Role.ADMIN), (READONLY_ENV, Role.READONLY)):
        value = environ.get(variable, "")
        if value.strip():
            accounts += _parse(variable, value, role)
    return Accounts(accounts)


class LoginLimiter:
    """Failed logins per client: after `attempts` failures within `window` seconds, the client's next logins are
    refused (429) until the oldest of them leaves the window. A success does not reset the count: a guesser
    gets `attempts` guesses a window, whatever it does in between. Thread-safe; the memory is one small deque
    per client that failed recently (clients whose failures all left the window are forgotten)."""

    def __init__(self, attempts: int = 5, window: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.attempts = attempts
        self.window = window
        self._now = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, client: str, now: float) -> deque[float]:
        failures = self._failures.get(client, deque())
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            self._failures.pop(client, None)
        return failures

    def retry_after(self, client: str) -> float:
        """Seconds until this client may try again; 0 when it may now."""
        now = self._now()
        with self._lock:
            failures = self._recent(client, now)
            if len(failures) < self.attempts:
                return 0.0
            return max(0.0, failures[0] + self.window - now)

    def failed(self, client: str) -> None:
        now = self._now()
        with self._lock:
            failures = self._recent(client, now)
            failures.append(now)
            self._failures[client] = failures
            if len(self._failures) > 10_000:  # a flood of clients: forget the ones whose failures are oldest
                oldest = sorted(self._failures, key=lambda c: self._failures[c][-1])[:5_000]
                for name in oldest:
                    del self._failures[name]


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def tokens_match(expected: str | None, given: str | None) -> bool:
    """The session's CSRF token against the request's, in constant time; nothing matches a missing token."""
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


def same_origin(host: str | None, origin: str | None, referer: str | None) -> bool:
    """A state-changing request came from one of the console's own pages: its Origin (or, when a browser sends
    none, its Referer) names the host the request was sent to. Neither header: refused."""
    if not host:
        return False
    source = origin if origin and origin != "null" else referer
    if not source:
        return False
    parts = urlsplit(source)
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host.lower()
