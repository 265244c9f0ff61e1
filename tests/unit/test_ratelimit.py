"""The distributed sliding-window rate limiter (worker/ratelimit.py).

fakeredis runs the Lua script for the single-process rules; the sharing across processes is tested with
real processes against a real Redis (redis://127.0.0.1:6379/15, skipped when none answers): the times at
which turns were granted never put more than `limit` into any window, and the turns keep coming close to
the allowed rate.
"""

from __future__ import annotations

import multiprocessing
import time
import uuid

import fakeredis
import pytest
import redis

from worker.ratelimit import Rate, RateLimiter

REAL_REDIS_URL = "redis://127.0.0.1:6379/15"


def test_parse_rates() -> None:
    assert Rate.parse("25/5") == Rate(25, 5.0)
    assert Rate.parse(" 300/60s ") == Rate(300, 60.0)
    assert str(Rate(25, 5.0)) == "25/5"
    assert Rate(25, 5.0).per_second == 5.0
    for bad in ("25", "x/5", "0/5", "5/0", "5/-1", ""):
        with pytest.raises(ValueError, match=r"rate|limit"):
            Rate.parse(bad)


def test_limit_then_wait_then_go() -> None:
    limiter = RateLimiter(fakeredis.FakeRedis(decode_responses=True), "t", margin=0)
    rate = Rate(3, 0.2)
    assert [limiter.try_acquire("fortnox", "acme", rate) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.try_acquire("fortnox", "acme", rate)
    assert 0 < wait <= 0.201
    # Other tenants and targets have their own windows.
    assert limiter.try_acquire("fortnox", "other", rate) == 0.0
    assert limiter.try_acquire("softone", "acme", rate) == 0.0
    time.sleep(wait + 0.005)
    assert limiter.try_acquire("fortnox", "acme", rate) == 0.0  # the oldest left the window
    time.sleep(0.2)
    assert limiter.try_acquire("fortnox", "acme", rate) == 0.0
    assert limiter.recent("fortnox", "acme", 0.2) == 1  # the others left the window; refusals never counted


def test_margin_widens_the_window() -> None:
    limiter = RateLimiter(fakeredis.FakeRedis(decode_responses=True), "t", margin=0.3)
    rate = Rate(1, 0.1)
    assert limiter.try_acquire("fortnox", "acme", rate) == 0.0
    assert limiter.try_acquire("fortnox", "acme", rate) > 0.3


def test_acquire_sleeps_until_a_turn_or_gives_up() -> None:
    limiter = RateLimiter(fakeredis.FakeRedis(decode_responses=True), "t", margin=0)
    rate = Rate(2, 0.3)
    assert limiter.acquire("fortnox", "acme", rate, timeout=0) == 0.0
    assert limiter.acquire("fortnox", "acme", rate, timeout=0) == 0.0
    assert limiter.acquire("fortnox", "acme", rate, timeout=0.05) > 0  # not within 50 ms: nothing taken
    started = time.monotonic()
    assert limiter.acquire("fortnox", "acme", rate, timeout=1.0) == 0.0
    assert 0.2 <= time.monotonic() - started < 0.6


def _grab(prefix: str, rate: Rate, until: float, out: multiprocessing.Queue) -> None:
    client = redis.Redis.from_url(REAL_REDIS_URL, decode_responses=True)
    limiter = RateLimiter(client, prefix, margin=0)
    granted = []
    while time.time() < until:
        if limiter.acquire("fortnox", "acme", rate, timeout=max(0.0, until - time.time())) == 0.0:
            seconds, micros = client.time()
            granted.append(seconds + micros / 1e6)
    out.put(granted)


def test_processes_share_the_rate_on_a_real_redis() -> None:
    try:
        redis.Redis.from_url(REAL_REDIS_URL, socket_connect_timeout=0.5).ping()
    except redis.RedisError:
        pytest.skip("no Redis at 127.0.0.1:6379")
    prefix = f"test-rate-{uuid.uuid4().hex[:8]}"
    rate = Rate(20, 0.5)
    out: multiprocessing.Queue = multiprocessing.Queue()
    until = time.time() + 2.0
    procs = [multiprocessing.Process(target=_grab, args=(prefix, rate, until, out)) for _ in range(4)]
    for p in procs:
        p.start()
    granted = sorted(t for _ in procs for t in out.get(timeout=30))
    for p in procs:
        p.join(10)
    # Never more than `limit` grants within any window (times read just after each grant, so a window
    # is checked with a little slack for the time between the grant and the clock read).
    for i in range(len(granted) - rate.limit):
        assert granted[i + rate.limit] - granted[i] > rate.window - 0.02, "more than the limit in one window"
    # And the rate is used: 2 s at 40/s allows about 80 turns; the processes got at least 90 % of them.
    assert len(granted) >= 0.9 * 2.0 * rate.per_second
