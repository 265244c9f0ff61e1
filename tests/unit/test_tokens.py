"""worker/store/tokens.py against fakeredis: a tenant's shared ERP session state, and what its calls raise when
Redis fails (StoreUnavailable for those a connector carries on without, Redis's own error for the others)."""

from __future__ import annotations

import time

import fakeredis
import pytest
import redis
from redis.exceptions import LockNotOwnedError

from worker.store.errors import StoreUnavailable
from worker.store.tokens import TokenStore


@pytest.fixture
def server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


@pytest.fixture
def r(server: fakeredis.FakeServer) -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(server=server, decode_responses=True)


@pytest.fixture
def tokens(r: fakeredis.FakeRedis) -> TokenStore:
    return TokenStore(r, "t", "acme")


def test_a_token_is_shared_for_its_ttl_and_forgotten_only_while_unchanged(
    r: fakeredis.FakeRedis, tokens: TokenStore
) -> None:
    assert tokens.get() is None
    tokens.save("tok-1", 300)
    assert tokens.get() == "tok-1" and 295 <= r.ttl("t:token:acme") <= 300
    assert TokenStore(r, "t", "beta").get() is None  # each tenant its own
    assert not tokens.forget("tok-0")  # another worker's newer token stays
    assert tokens.forget("tok-1") and tokens.get() is None


def test_a_renewal_stores_the_refresh_token_with_the_access_token(r: fakeredis.FakeRedis, tokens: TokenStore) -> None:
    assert tokens.refresh_token() is None
    tokens.save("at-1", 3300, refresh="rt-1")
    assert tokens.get() == "at-1" and tokens.refresh_token() == "rt-1"
    assert r.ttl("t:fortnox:refresh:acme") == -1  # no expiry: used within its 45 days


def test_a_token_offered_does_not_replace_one_stored_meanwhile(tokens: TokenStore) -> None:
    assert tokens.offer("mine", 60) and tokens.get() == "mine"
    assert not tokens.offer("later", 60) and tokens.get() == "mine"


def test_a_pause_runs_for_its_seconds(r: fakeredis.FakeRedis, tokens: TokenStore) -> None:
    assert tokens.paused_until() is None
    tokens.pause(2.5)
    until = tokens.paused_until()
    assert until is not None and 2.4 < until - time.time() <= 2.501  # written to the millisecond
    assert 2400 < r.pttl("t:pause:acme") <= 2501


def test_one_renewal_at_a_time_and_the_block_runs_under_the_lock(r: fakeredis.FakeRedis, tokens: TokenStore) -> None:
    with tokens.renewal(5):
        assert r.exists("t:token:acme:lock")
        with pytest.raises(StoreUnavailable) as info, TokenStore(r, "t", "acme").renewal(0.1):
            pass  # pragma: no cover - another worker waits 0.1 s and gives up
        assert info.value.kind == "LockError"
    assert not r.exists("t:token:acme:lock")


def test_what_the_renewal_block_raises_comes_through_and_the_lock_is_let_go(
    r: fakeredis.FakeRedis, tokens: TokenStore
) -> None:
    with pytest.raises(ValueError, match="the ERP said no"), tokens.renewal(5):
        raise ValueError("the ERP said no")
    assert not r.exists("t:token:acme:lock")


def test_a_renewal_that_outlives_its_lock_is_store_unavailable(tokens: TokenStore) -> None:
    with pytest.raises(StoreUnavailable) as info, tokens.renewal(0.05):
        time.sleep(0.2)
    assert info.value.kind == "LockNotOwnedError" and isinstance(info.value.__cause__, LockNotOwnedError)


def test_redis_down(server: fakeredis.FakeServer, tokens: TokenStore) -> None:
    """The calls a connector carries on without raise StoreUnavailable naming Redis's error; `forget` and `pause`
    raise Redis's own error, as the rest of the store does."""
    server.connected = False
    calls = [
        tokens.get,
        lambda: tokens.save("t", 60),
        lambda: tokens.save("t", 60, refresh="r"),
        lambda: tokens.offer("t", 60),
        tokens.refresh_token,
        tokens.paused_until,
    ]
    for call in calls:
        with pytest.raises(StoreUnavailable) as info:
            call()
        assert info.value.kind == "ConnectionError" and isinstance(info.value.__cause__, redis.ConnectionError)
    with pytest.raises(StoreUnavailable, match=r"^ConnectionError: "), tokens.renewal(1):
        pass  # pragma: no cover - the lock is never had
    with pytest.raises(redis.ConnectionError):
        tokens.forget("t")
    with pytest.raises(redis.ConnectionError):
        tokens.pause(1)
