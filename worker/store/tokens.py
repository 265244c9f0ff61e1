"""ERP sessions shared by every worker of a tenant (worker/connectors/): its access token, the lock under which one
worker renews it, Fortnox's refresh token, and the pause an ERP asked for with Retry-After.

Keys (prefix p; worker/store/keys.py):
    {p}:token:{tenant}              string  the access token, until shortly before it expires
    {p}:token:{tenant}:lock         string  a redis-py lock: one worker renews the token, the others wait for it
    {p}:fortnox:refresh:{tenant}    string  Fortnox's current refresh token (single-use, rotated; no expiry)
    {p}:pause:{tenant}              string  until when (epoch s) the ERP asked every client to wait

Errors (worker/store/errors.py): a connector carries on without the token cache (a request that cannot get its
token is not sent; one that cannot share a token it has, or read a pause, goes on), so the calls it makes for a
token, and `offer` and `paused_until`, raise StoreUnavailable whatever Redis's error was. `forget` and `pause` let
Redis's own errors through, like the rest of the store: no connector handles them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import cast

import redis
from redis.commands.core import Script

from worker.store.client import RedisClient
from worker.store.errors import StoreUnavailable
from worker.store.keys import Keys
from worker.store.scripts import load_script

__all__ = ["TokenStore"]


@contextmanager
def _unavailable() -> Iterator[None]:
    """Redis's errors in the block come out as StoreUnavailable."""
    try:
        yield
    except redis.RedisError as exc:
        raise StoreUnavailable(exc) from exc


class TokenStore:
    """One tenant's shared ERP session state; one instance per connector."""

    def __init__(self, client: RedisClient, prefix: str, tenant: str) -> None:
        keys = Keys(prefix)
        self.r = client
        self.key = keys.token(tenant)
        self.lock_key = keys.token_lock(tenant)
        self.refresh_key = keys.fortnox_refresh(tenant)
        self.pause_key = keys.pause(tenant)
        self._forget: Script | None = None  # registered on first use: a connector is made per send, forgets rarely

    # ----- the access token
    def get(self) -> str | None:
        """The shared token, None when there is none (never stored, expired or forgotten)."""
        with _unavailable():
            return cast(str | None, self.r.get(self.key))

    def save(self, token: str, ttl: int, *, refresh: str | None = None) -> None:
        """Store a new token for `ttl` seconds, for every worker. With `refresh` (Fortnox's successor of the refresh
        token just spent, kept without expiry), both in one transaction: nobody finds one without the other."""
        with _unavailable():
            if refresh is None:
                self.r.set(self.key, token, ex=ttl)
                return
            pipe = self.r.pipeline(transaction=True)
            pipe.set(self.key, token, ex=ttl)
            pipe.set(self.refresh_key, refresh)
            pipe.execute()

    def offer(self, token: str, ttl: int) -> bool:
        """Share a token that has just worked, for `ttl` seconds, unless another worker stored one meanwhile."""
        with _unavailable():
            return bool(self.r.set(self.key, token, ex=ttl, nx=True))

    def forget(self, token: str) -> bool:
        """Drop `token` (the ERP refused it) unless another worker has already replaced it; True if dropped.
        Redis's errors come through as they are."""
        if self._forget is None:
            self._forget = load_script(self.r, "forget_token")
        return bool(self._forget(keys=[self.key], args=[token]))

    @contextmanager
    def renewal(self, seconds: float) -> Iterator[None]:
        """Hold the tenant's renewal lock for the block: waits up to `seconds` for it and holds it at most as long.
        StoreUnavailable when it cannot be had in that time, when it was lost before the block ended, or when Redis
        fails; what the block itself raises comes through."""
        with _unavailable(), self.r.lock(self.lock_key, timeout=seconds, blocking_timeout=seconds):
            yield

    # ----- Fortnox's refresh token
    def refresh_token(self) -> str | None:
        """The refresh token the last renewal stored; None before the first (the tenants file's one is current)."""
        with _unavailable():
            return cast(str | None, self.r.get(self.refresh_key))

    # ----- the ERP's Retry-After
    def pause(self, seconds: float) -> None:
        """Every worker of the tenant waits `seconds` before its next request (the ERP answered 429 with
        Retry-After: it speaks to the client, not to one request). Redis's errors come through as they are."""
        self.r.set(self.pause_key, f"{time.time() + seconds:.3f}", px=int(seconds * 1000) + 1)

    def paused_until(self) -> float | None:
        """Until when (epoch s) the last pause runs; None when there is none."""
        with _unavailable():
            until = cast(str | None, self.r.get(self.pause_key))
        return float(until) if until else None
