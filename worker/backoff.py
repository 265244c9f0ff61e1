"""Backoff for transient failures: exponential, full jitter, capped, and never shorter than Retry-After."""

from __future__ import annotations

import random


def backoff_seconds(
    attempt: int, *, base: float, cap: float, retry_after: float | None = None, rng: random.Random | None = None
) -> float:
    """Delay before attempt `attempt + 1` (attempt counts from 1).

    Full jitter (uniform between 0 and the exponential ceiling) spreads a crowd of workers that failed at
    the same moment; the server's Retry-After, when given, is a floor (capped too, so a hostile or broken
    header cannot park a batch beyond the broker's visibility timeout).
    """
    ceiling = min(cap, base * (2 ** max(0, attempt - 1)))
    delay = (rng or random).uniform(0, ceiling)
    if retry_after is not None:
        delay = max(delay, min(retry_after, cap))
    return delay
