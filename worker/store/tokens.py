"""ERP sessions shared by every worker of a tenant (worker/connectors/): its access token, the lock under which one
worker renews it, Fortnox's refresh token, credentials an operator gave with `erpsync tenants reauth`, and the pause
an ERP asked for with Retry-After.

Keys (prefix p; worker/store/keys.py):
    {p}:token:{tenant}              string  the access token, until shortly before it expires
    {p}:token:{tenant}:lock         string  a redis-py lock: one worker renews the token, the others wait for it
    {p}:fortnox:refresh:{tenant}    string  Fortnox's current refresh token (single-use, rotated; no expiry)
    {p}:token:{tenant}:credentials  hash    credentials from `erpsync tenants reauth` (field -> value), and per
                                            credential held in Redis `file:{field}`: the fingerprint of the tenants
                                            file's value it superseded (live credentials, like the two above)
    {p}:pause:{tenant}              string  until when (epoch s) the ERP asked every client to wait

The tenants file or Redis: which credential is used ("newest wins"). A credential the tenants file holds may also be
held in Redis: Fortnox's refresh token after a renewal (the file's one is spent then), any credential after `erpsync
tenants reauth`. Whenever Redis takes a credential it records the fingerprint (a hash, `fingerprint()`) of the value
the tenants file held for it at that moment: the value it supersedes. When a worker needs the credential:
- Redis holds none: the tenants file's value is used;
- the tenants file still holds the value Redis's superseded (same fingerprint): Redis's is newer and used;
- the tenants file holds another value: the file was edited since, so it is newer; it is used and Redis's is dropped
  (a renewal then stores the successor with the new file value's fingerprint).
So both editing the tenants file and `reauth` take effect, and neither needs redis-cli. A Fortnox refresh token
stored by an earlier version has no fingerprint: it is used (as before) until the next renewal or reauth records one.

Errors (worker/store/errors.py): a connector carries on without the token cache (a request that cannot get its
token is not sent; one that cannot share a token it has, or read a pause, goes on), so the calls it makes for a
token or a credential, and `offer` and `paused_until`, raise StoreUnavailable whatever Redis's error was. `forget`
and `pause` let Redis's own errors through, like the rest of the store: no connector handles them.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Literal, cast

import redis
from redis.commands.core import Script

from worker.store.client import RedisClient
from worker.store.errors import StoreUnavailable
from worker.store.keys import Keys
from worker.store.scripts import load_script

__all__ = ["REFRESH_TOKEN", "TokenStore", "fingerprint"]

#: The credential that is Fortnox's refresh token (kept in its own key: it rotates with every renewal).
REFRESH_TOKEN = "refresh_token"


def fingerprint(tenant: str, field: str, value: str | None) -> str:
    """What Redis records of a tenants file's credential: a short hash (never the value), "-" for none."""
    if value is None:
        return "-"
    return hashlib.sha256(f"erpsync\0{tenant}\0{field}\0{value}".encode()).hexdigest()[:20]


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
        self.tenant = tenant
        self.key = keys.token(tenant)
        self.lock_key = keys.token_lock(tenant)
        self.refresh_key = keys.fortnox_refresh(tenant)
        self.credentials_key = keys.credentials(tenant)
        self.tenant_key = keys.tenant(tenant)
        self.pause_key = keys.pause(tenant)
        self._forget: Script | None = None  # registered on first use: a connector is made per send, forgets rarely

    # ----- the access token
    def get(self) -> str | None:
        """The shared token, None when there is none (never stored, expired or forgotten)."""
        with _unavailable():
            return cast(str | None, self.r.get(self.key))

    def save(self, token: str, ttl: int, *, refresh: str | None = None, file_refresh: str | None = None) -> None:
        """Store a new token for `ttl` seconds, for every worker, and note that the tenant's authorisation works
        (worker/store/tenants.py's `auth`). With `refresh` (Fortnox's successor of the refresh token just spent, kept
        without expiry), both in one transaction, nobody finds one without the other, and with it the fingerprint of
        the tenants file's refresh token now (`file_refresh`): the value it supersedes (see the module docstring)."""
        with _unavailable():
            pipe = self.r.pipeline(transaction=True)
            pipe.set(self.key, token, ex=ttl)
            if refresh is not None:
                pipe.set(self.refresh_key, refresh)
                pipe.hset(self.credentials_key, f"file:{REFRESH_TOKEN}", self._fingerprint(REFRESH_TOKEN, file_refresh))
            pipe.hset(self.tenant_key, mapping={"auth": "ok", "auth_at": f"{time.time():.3f}"})
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
        """The refresh token the last renewal (or reauth) stored, whatever the tenants file holds; None before the
        first. Workers ask `credential(REFRESH_TOKEN, ...)`, which applies the precedence."""
        with _unavailable():
            return cast(str | None, self.r.get(self.refresh_key))

    # ----- credentials: the tenants file's or Redis's (the module docstring's precedence)
    def credential(self, field: str, file_value: str | None) -> str | None:
        """The credential `field` to use: Redis's while the tenants file still holds the value it superseded, else
        the file's (`file_value`; Redis's is then dropped). StoreUnavailable when Redis fails."""
        with _unavailable():
            stored, superseded = self._stored(field)
            if stored is None:
                return file_value
            if superseded is None or superseded == self._fingerprint(field, file_value):
                return stored
            self._drop(field, superseded)
        return file_value

    def source(self, field: str, file_value: str | None) -> Literal["file", "redis"]:
        """Where the credential `field` a worker would use now comes from (reads only). Redis's errors come through."""
        stored, superseded = self._stored(field)
        if stored is not None and (superseded is None or superseded == self._fingerprint(field, file_value)):
            return "redis"
        return "file"

    def replace(self, credentials: Mapping[str, str], file_values: Mapping[str, str | None], lock_s: float) -> None:
        """New credentials from an operator (`erpsync tenants reauth`): stored with the fingerprints of the tenants
        file's values they supersede, and the access token of the old ones dropped (the next request renews with the
        new), under the renewal lock so that no renewal in progress stores its successor over them. StoreUnavailable
        when the lock cannot be had within `lock_s` or Redis fails."""
        with self.renewal(lock_s), _unavailable():
            pipe = self.r.pipeline(transaction=True)
            for field, value in credentials.items():
                if field == REFRESH_TOKEN:
                    pipe.set(self.refresh_key, value)
                else:
                    pipe.hset(self.credentials_key, field, value)
                pipe.hset(self.credentials_key, f"file:{field}", self._fingerprint(field, file_values.get(field)))
            pipe.delete(self.key)
            pipe.execute()

    def _fingerprint(self, field: str, value: str | None) -> str:
        return fingerprint(self.tenant, field, value)

    def _stored(self, field: str) -> tuple[str | None, str | None]:
        """Redis's value of the credential `field` and the fingerprint of the file's value it superseded."""
        if field == REFRESH_TOKEN:
            pipe = self.r.pipeline(transaction=False)
            pipe.get(self.refresh_key)
            pipe.hget(self.credentials_key, f"file:{field}")
            stored, superseded = pipe.execute()
        else:
            stored, superseded = self.r.hmget(self.credentials_key, [field, f"file:{field}"])
        return cast(str | None, stored), cast(str | None, superseded)

    def _drop(self, field: str, superseded: str) -> None:
        """Drop Redis's credential `field` (the tenants file's is newer) unless it was replaced meanwhile."""
        with self.r.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(self.credentials_key)  # type: ignore[no-untyped-call]
                if pipe.hget(self.credentials_key, f"file:{field}") != superseded:
                    return
                pipe.multi()
                pipe.hdel(self.credentials_key, field, f"file:{field}")
                if field == REFRESH_TOKEN:
                    pipe.delete(self.refresh_key)
                pipe.execute()
            except redis.WatchError:
                return  # replaced meanwhile (a renewal, a reauth): the next read decides again

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
