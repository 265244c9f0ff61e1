"""A distributed sliding-window rate limiter in Redis: N requests per W seconds, over every worker process.

Fortnox allows 25 requests per access token in any sliding 5 seconds and answers 429 beyond it; a tenant's
token is shared by all our workers, so the limit must be kept together, not per process. Each limited
stream (tenant and target) is a sorted set of the times its recent requests were let through; one Lua
script drops the entries older than the window and either adds the new one (under the limit) or answers
how long until the oldest leaves the window. The script reads Redis's own clock (`TIME`), so workers on
machines whose clocks disagree still share one timeline.

Keys (prefix p):
    {p}:rate:{target}:{tenant}     zset   member: request id, score: time it was let through (ms)

The ERP counts requests when they ARRIVE, we count them when we let them go; the two differ by a few
milliseconds of jitter, enough to put a 26th request into the ERP's window at its edge. `margin` widens our
window a little (default 0.25 s: 5 % of Fortnox's 5 s) so that never happens.
"""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass

import redis

# KEYS: the zset. ARGV: window (ms), limit, member. Returns {1, 0} (go) or {0, ms to wait}.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window + 1000)
  return {1, 0}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, math.max(1, tonumber(oldest[2]) + window - now + 1)}
"""


@dataclass(frozen=True, slots=True)
class Rate:
    """`limit` requests per `window` seconds."""

    limit: int
    window: float

    @classmethod
    def parse(cls, text: str) -> Rate:
        """`"25/5"` (25 per 5 seconds), `"25/5s"`, `"300/60"`; ValueError with the reason otherwise."""
        head, sep, tail = text.strip().partition("/")
        try:
            if not sep:
                raise ValueError
            limit, window = int(head), float(tail.strip().removesuffix("s"))
        except ValueError:
            raise ValueError(f"{text!r} is not a rate: write requests/seconds, e.g. 25/5") from None
        if limit < 1 or not window > 0:
            raise ValueError(f"{text!r}: the limit must be at least 1 and the window above 0 seconds")
        return cls(limit, window)

    def __str__(self) -> str:
        return f"{self.limit}/{self.window:g}"

    @property
    def per_second(self) -> float:
        return self.limit / self.window


class RateLimiter:
    """Take turns under a shared rate; one instance per process (stateless apart from the client)."""

    def __init__(self, client: redis.Redis, prefix: str, margin: float = 0.25) -> None:
        self.r = client
        self.p = prefix
        self.margin = margin
        self._take = client.register_script(_TAKE)

    def key(self, target: str, tenant: str) -> str:
        return f"{self.p}:rate:{target}:{tenant}"

    def try_acquire(self, target: str, tenant: str, rate: Rate) -> float:
        """Take a turn if the rate allows one now: 0.0; else the seconds until one may be free."""
        window_ms = round((rate.window + self.margin) * 1000)
        ok, wait_ms = self._take(keys=[self.key(target, tenant)], args=[window_ms, rate.limit, uuid.uuid4().hex])
        return 0.0 if int(ok) else int(wait_ms) / 1000

    def acquire(self, target: str, tenant: str, rate: Rate, timeout: float) -> float:
        """Wait (sleeping, not polling hot) up to `timeout` seconds for a turn.

        Returns 0.0 once a turn is taken, else the seconds still to wait at the deadline (nothing taken).
        """
        deadline = time.monotonic() + timeout
        while True:
            wait = self.try_acquire(target, tenant, rate)
            if wait == 0.0:
                return 0.0
            left = deadline - time.monotonic()
            if left <= 0:
                return wait
            # Many waiters wake for one freed turn: a little jitter spreads them instead of a stampede.
            time.sleep(min(left, wait + random.uniform(0, 0.01)))

    def recent(self, target: str, tenant: str, window: float) -> int:
        """Turns taken in the last `window` seconds (by Redis's clock): for stats and tests."""
        seconds, micros = self.r.time()
        now_ms = seconds * 1000 + micros // 1000
        return int(self.r.zcount(self.key(target, tenant), now_ms - window * 1000, "+inf"))
