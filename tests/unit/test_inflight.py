"""The per-tenant cap on ERP requests in flight (worker/store/inflight.py): limit, leases, release, waiting.

Most tests run the Lua script on fakeredis with an explicit clock; one runs many threads against a real
Redis (redis://127.0.0.1:6379/15, skipped when none answers) to check the cap under real concurrency.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import fakeredis
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from worker.store.inflight import InflightLimiter

T0 = 1_700_000_000.0
REAL_REDIS_URL = "redis://127.0.0.1:6379/15"


@pytest.fixture
def client() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(decode_responses=True)


@pytest.fixture
def limiter(client: fakeredis.FakeRedis) -> InflightLimiter:
    return InflightLimiter(client, "t")


def test_limit_respected(limiter: InflightLimiter) -> None:
    assert limiter.try_acquire("acme", "a", 2, 60, now=T0) == (True, 0.0)
    assert limiter.try_acquire("acme", "b", 2, 60, now=T0 + 1) == (True, 0.0)
    acquired, wait = limiter.try_acquire("acme", "c", 2, 60, now=T0 + 10)
    assert not acquired
    assert wait == pytest.approx(50)  # a's lease ends at T0 + 60
    assert limiter.holders("acme") == {"a": T0 + 60, "b": T0 + 61}
    assert limiter.in_flight("acme", now=T0 + 10) == 2


def test_release_frees_a_slot(limiter: InflightLimiter) -> None:
    limiter.try_acquire("acme", "a", 1, 60, now=T0)
    assert not limiter.try_acquire("acme", "b", 1, 60, now=T0)[0]
    limiter.release("acme", "a")
    limiter.release("acme", "a")  # harmless when absent
    limiter.release("acme", "never")
    assert limiter.try_acquire("acme", "b", 1, 60, now=T0)[0]
    assert limiter.holders("acme") == {"b": T0 + 60}


def test_expired_lease_is_reclaimed(limiter: InflightLimiter) -> None:
    limiter.try_acquire("acme", "dead", 1, 30, now=T0)
    assert not limiter.try_acquire("acme", "b", 1, 30, now=T0 + 29.9)[0]
    assert limiter.in_flight("acme", now=T0 + 30) == 0  # the deadline itself is expired
    assert limiter.try_acquire("acme", "b", 1, 30, now=T0 + 30)[0]
    assert limiter.holders("acme") == {"b": T0 + 60}


def test_reacquire_by_the_same_holder_is_idempotent(limiter: InflightLimiter) -> None:
    assert limiter.try_acquire("acme", "a", 2, 60, now=T0)[0]
    assert limiter.try_acquire("acme", "a", 2, 60, now=T0 + 5)[0]  # lease refreshed, no second slot
    assert limiter.holders("acme") == {"a": T0 + 65}
    assert limiter.try_acquire("acme", "b", 2, 60, now=T0 + 5)[0]
    assert not limiter.try_acquire("acme", "c", 2, 60, now=T0 + 5)[0]
    # A holder keeps its slot on redelivery even when the limit is full (or was lowered).
    assert limiter.try_acquire("acme", "a", 1, 60, now=T0 + 6)[0]
    assert limiter.in_flight("acme", now=T0 + 6) == 2


def test_unlimited_when_limit_is_zero(limiter: InflightLimiter, client: fakeredis.FakeRedis) -> None:
    for i in range(10):
        assert limiter.try_acquire("acme", f"h{i}", 0, 60, now=T0) == (True, 0.0)
        assert limiter.acquire("acme", f"g{i}", -1, 60, timeout_s=0)
    with limiter.slot("acme", "s", 0, 60, timeout_s=0) as ok:
        assert ok
    assert client.keys("*") == []
    assert limiter.in_flight("acme") == 0


def test_tenants_are_independent(limiter: InflightLimiter) -> None:
    assert limiter.try_acquire("acme", "a", 1, 60, now=T0)[0]
    assert limiter.try_acquire("globex", "a", 1, 60, now=T0)[0]
    assert not limiter.try_acquire("acme", "b", 1, 60, now=T0)[0]
    limiter.release("globex", "a")
    assert limiter.holders("acme") == {"a": T0 + 60}
    assert limiter.holders("globex") == {}


def test_key_expires_after_the_latest_lease(limiter: InflightLimiter, client: fakeredis.FakeRedis) -> None:
    limiter.try_acquire("acme", "long", 5, 600)
    limiter.try_acquire("acme", "short", 5, 10)
    ttl = client.pttl("t:inflight:acme")
    assert 600_000 < ttl <= 602_000  # the short lease did not shorten the key's life
    limiter.release("acme", "long")
    limiter.release("acme", "short")
    assert client.exists("t:inflight:acme") == 0


def test_lease_must_be_positive(limiter: InflightLimiter) -> None:
    with pytest.raises(ValueError):
        limiter.try_acquire("acme", "a", 1, 0)


def test_acquire_times_out_when_full(limiter: InflightLimiter) -> None:
    assert limiter.acquire("acme", "a", 1, 60, timeout_s=0)
    assert not limiter.acquire("acme", "b", 1, 60, timeout_s=0.15)
    assert not limiter.acquire("acme", "b", 1, 60, timeout_s=0)
    assert limiter.holders("acme").keys() == {"a"}


def test_acquire_succeeds_when_another_holder_releases(client: fakeredis.FakeRedis) -> None:
    limiter = InflightLimiter(client, "t")
    assert limiter.acquire("acme", "a", 1, 60, timeout_s=0)
    other = InflightLimiter(client, "t")  # as another process would
    releaser = threading.Timer(0.05, other.release, args=("acme", "a"))
    releaser.start()
    try:
        assert limiter.acquire("acme", "b", 1, 60, timeout_s=10)
    finally:
        releaser.join()
    assert limiter.holders("acme").keys() == {"b"}


def test_slot_releases_on_exception(limiter: InflightLimiter) -> None:
    with pytest.raises(RuntimeError, match="boom"), limiter.slot("acme", "a", 1, 60, timeout_s=0) as ok:
        assert ok
        assert limiter.in_flight("acme") == 1
        raise RuntimeError("boom")
    assert limiter.holders("acme") == {}


def test_slot_not_taken_releases_nothing(limiter: InflightLimiter) -> None:
    assert limiter.acquire("acme", "a", 1, 60, timeout_s=0)
    with limiter.slot("acme", "b", 1, 60, timeout_s=0) as ok:
        assert not ok
    with limiter.slot("acme", "a", 1, 60, timeout_s=0) as ok:  # re-entrant: the same holder gets in
        assert ok
    assert limiter.holders("acme") == {}  # and gives its slot back on the way out


# ----- a model of the semaphore, checked against the Lua script on random operation sequences

operation = st.one_of(
    st.tuples(st.just("acquire"), st.integers(0, 5), st.integers(1, 10)),
    st.tuples(st.just("release"), st.integers(0, 5), st.just(0)),
    st.tuples(st.just("advance"), st.just(0), st.integers(0, 12)),
)


@given(st.integers(1, 4), st.lists(operation, max_size=60))
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_matches_a_simple_model(limit: int, ops: list[tuple[str, int, int]]) -> None:
    limiter = InflightLimiter(fakeredis.FakeRedis(decode_responses=True), "t")
    model: dict[str, float] = {}  # holder -> deadline
    now = T0
    for op, who, value in ops:
        holder = f"h{who}"
        if op == "advance":
            now += value
        elif op == "release":
            limiter.release("acme", holder)
            model.pop(holder, None)
        else:
            model = {h: d for h, d in model.items() if d > now}
            expected = holder in model or len(model) < limit
            if expected:
                model[holder] = now + value
            acquired, wait = limiter.try_acquire("acme", holder, limit, value, now=now)
            assert acquired == expected
            if not acquired:
                assert wait == pytest.approx(min(model.values()) - now)
        live = {h: d for h, d in model.items() if d > now}
        assert limiter.in_flight("acme", now=now) == len(live) <= limit
        assert {h: d for h, d in limiter.holders("acme").items() if d > now} == live


# ----- real Redis, real threads


@pytest.fixture
def real_redis() -> Iterator[tuple[redis.Redis, str]]:
    client = redis.Redis.from_url(REAL_REDIS_URL, decode_responses=True, socket_connect_timeout=0.5)
    try:
        client.ping()
    except redis.RedisError:
        client.close()
        pytest.skip(f"no Redis at {REAL_REDIS_URL}")
    prefix = f"test-inflight-{uuid.uuid4().hex}"
    try:
        yield client, prefix
    finally:
        keys = list(client.scan_iter(match=f"{prefix}:*"))
        if keys:
            client.delete(*keys)
        client.close()


def test_cap_holds_across_threads_on_real_redis(real_redis: tuple[redis.Redis, str]) -> None:
    client, prefix = real_redis
    limit, threads, rounds = 3, 16, 20
    lock = threading.Lock()
    current, peak, done, timeouts = 0, 0, 0, 0
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        nonlocal current, peak, done, timeouts
        own = redis.Redis.from_url(REAL_REDIS_URL, decode_responses=True)  # a client per "process"
        limiter = InflightLimiter(own, prefix)
        try:
            for i in range(rounds):
                with limiter.slot("acme", f"w{n}-{i}", limit, lease_s=60, timeout_s=30) as ok:
                    if not ok:
                        with lock:
                            timeouts += 1
                        continue
                    with lock:
                        current += 1
                        peak = max(peak, current)
                    time.sleep(0.001)
                    with lock:
                        current -= 1
                        done += 1
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            own.close()

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert errors == []
    assert timeouts == 0
    assert done == threads * rounds
    assert 1 <= peak <= limit
    assert client.exists(f"{prefix}:inflight:acme") == 0  # every slot given back, no key left


def test_a_slot_given_back_early_is_given_back_once(limiter: InflightLimiter) -> None:
    with limiter.slot("acme", "a", 1, 60, timeout_s=0) as slot:
        assert slot
        slot.release()
        assert limiter.holders("acme") == {}
        assert limiter.acquire("acme", "b", 1, 60, timeout_s=0)  # the freed slot is another's now
        slot.release()  # a second release does nothing (and takes nothing from b)
    assert limiter.holders("acme").keys() == {"b"}  # nor does the end of the with-statement


def test_a_release_in_this_process_wakes_a_waiter_at_once(
    limiter: InflightLimiter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Polling alone would next look after 5 s here (polls of 10 s, cut to the timeout of 5 s); the release after
    0.2 s wakes the waiter instead, which takes the slot long before that (a behaviour, not a speed: 5 s of margin)."""
    from worker.store import inflight

    monkeypatch.setattr(inflight, "MAX_POLL_S", 10.0)
    assert limiter.acquire("acme", "a", 1, 60, timeout_s=0)
    releaser = threading.Timer(0.2, limiter.release, args=("acme", "a"))
    releaser.start()
    started = time.monotonic()
    try:
        assert limiter.acquire("acme", "b", 1, 60, timeout_s=5, poll_s=10)
    finally:
        releaser.join()
    assert time.monotonic() - started < 4.5
    assert limiter.holders("acme").keys() == {"b"}


def test_a_release_of_another_tenant_or_of_nothing_wakes_no_waiter(
    limiter: InflightLimiter, monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker.store import inflight

    monkeypatch.setattr(inflight, "MAX_POLL_S", 10.0)
    assert limiter.acquire("acme", "a", 1, 60, timeout_s=0)
    assert limiter.acquire("globex", "g", 1, 60, timeout_s=0)
    tries: list[str] = []
    real = limiter.try_acquire

    def counted(tenant: str, holder: str, *args: object, **kwargs: object) -> tuple[bool, float]:
        tries.append(holder)
        return real(tenant, holder, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(limiter, "try_acquire", counted)
    waiter = threading.Thread(
        target=limiter.acquire, args=("acme", "b", 1, 60), kwargs={"timeout_s": 0.6, "poll_s": 10}
    )
    waiter.start()
    time.sleep(0.1)
    limiter.release("globex", "g")  # another tenant's slot
    limiter.release("acme", "never")  # a holder that holds nothing
    waiter.join()
    assert tries == ["b", "b"]  # its first try, and the one at its timeout: nobody woke it in between
