"""The distributed sliding-window rate limiter (worker/store/ratelimit.py).

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

from worker.settings import Rate
from worker.store.ratelimit import RateLimiter

REAL_REDIS_URL = "redis://127.0.0.1:6379/15"


def test_parse_rates() -> None:
    assert Rate.parse("25/5") == Rate(25, 5.0)
    assert Rate.parse(" 300/60s ") == Rate(300, 60.0)
    assert str(Rate(25, 5.0)) == "25/5"
    assert Rate(25, 5.0).per_second == 5.0
    for bad in ("25", "x/5", "0/5", "5/0", "5/-1", ""):
        with pytest.raises(ValueError, match=r"rate|limit"):
            Rate.parse(bad)


def test_turns_are_paced_and_reserved() -> None:
    limiter = RateLimiter(fakeredis.FakeRedis(decode_responses=True), "t", margin=0.1)
    rate = Rate(4, 0.3)
    assert limiter.interval(rate) == pytest.approx(0.1)  # (0.3 + 0.1) / 4
    assert limiter.try_acquire("fortnox", "acme", rate) == 0.0
    # The next turn is one interval away: not free now, nothing reserved by asking.
    assert 0.05 < limiter.try_acquire("fortnox", "acme", rate) <= 0.1
    ok, wait = limiter.reserve("fortnox", "acme", rate, max_wait=1.0)
    assert ok and 0.05 < wait <= 0.1
    ok, wait = limiter.reserve("fortnox", "acme", rate, max_wait=1.0)
    assert ok and 0.15 < wait <= 0.2  # queued behind the previous reservation
    # Other tenants and targets have their own pace.
    assert limiter.try_acquire("fortnox", "other", rate) == 0.0
    assert limiter.try_acquire("softone", "acme", rate) == 0.0


def test_a_turn_further_off_than_the_caller_waits_is_not_reserved() -> None:
    limiter = RateLimiter(fakeredis.FakeRedis(decode_responses=True), "t", margin=0)
    rate = Rate(1, 0.5)
    assert limiter.acquire("fortnox", "acme", rate, timeout=0) == 0.0
    come_back = limiter.acquire("fortnox", "acme", rate, timeout=0.1)
    assert 0.3 < come_back <= 0.4  # the turn is 0.5 s away, 0.1 s of waiting would not reach it
    ok, wait = limiter.reserve("fortnox", "acme", rate, max_wait=1.0)
    assert ok and 0.4 < wait <= 0.5  # the refusal reserved nothing


def test_acquire_sleeps_until_its_turn() -> None:
    limiter = RateLimiter(fakeredis.FakeRedis(decode_responses=True), "t", margin=0)
    rate = Rate(2, 0.4)
    started = time.monotonic()
    for _ in range(3):
        assert limiter.acquire("fortnox", "acme", rate, timeout=1.0) == 0.0
    assert 0.35 <= time.monotonic() - started < 0.7  # turns at 0, 0.2 and 0.4 s


def _grab(prefix: str, rate: Rate, until: float, out: multiprocessing.Queue) -> None:
    client = redis.Redis.from_url(REAL_REDIS_URL, decode_responses=True)
    limiter = RateLimiter(client, prefix, margin=0)
    granted = []
    while time.time() < until:
        if limiter.acquire("fortnox", "acme", rate, timeout=max(0.0, until - time.time() - 0.05)) == 0.0:
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
    # Never more than `limit` turns within any window (times read just after each turn, so a window is
    # checked with a little slack for the time between the turn and the clock read).
    for i in range(len(granted) - rate.limit):
        assert granted[i + rate.limit] - granted[i] > rate.window - 0.02, "more than the limit in one window"
    # And the rate is used: 2 s at 40/s allows about 80 turns; the processes got at least 90 % of them
    # (the margin alone costs nothing here: it is 0).
    assert len(granted) >= 0.9 * 2.0 * rate.per_second
