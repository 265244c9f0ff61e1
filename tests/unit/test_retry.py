"""Backoff: exponential ceiling, full jitter, cap, Retry-After as a floor."""

from __future__ import annotations

import random

from worker.backoff import backoff_seconds


def test_full_jitter_stays_under_exponential_ceiling() -> None:
    rng = random.Random(1)
    for attempt in range(1, 12):
        delays = [backoff_seconds(attempt, base=1, cap=60, rng=rng) for _ in range(200)]
        assert all(0 <= d <= min(60, 2 ** (attempt - 1)) for d in delays)
        assert max(delays) > 0.5 * min(60, 2 ** (attempt - 1))  # really spread, not constant


def test_retry_after_is_a_floor_but_capped() -> None:
    rng = random.Random(2)
    assert backoff_seconds(1, base=1, cap=300, retry_after=30, rng=rng) >= 30
    assert backoff_seconds(1, base=1, cap=300, retry_after=10_000, rng=rng) <= 300
