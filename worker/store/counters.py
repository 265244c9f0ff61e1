"""Metric counters in Redis: how increments are written (on their own, or riding on a transaction or script) and
read back. Which metrics exist, when they count and how they are exposed is worker/observability/metrics.py's.

Keys: `{prefix}:metrics:{metric name}` (worker/store/keys.py), one hash per metric. A counter's field is its label
values joined by `|` (`acme|softone|customer_invoice|created`) -> count. A histogram's fields are the label values
plus a bucket's upper bound (`softone|0.05`, `softone|+Inf`) -> observations that fell into that bucket only (one
HINCRBY per observation; the collector adds them up), and `softone|sum` -> sum of the observed values.

Throughput (`throughput`): documents settled per 10-second bucket, per tenant and per job, for the rates and ETAs
of `erpsync status` (Prometheus users take rate() of erpsync_documents_total instead).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from worker.store.client import as_text
from worker.store.keys import Keys

__all__ = [
    "DOCUMENTS_METRIC",
    "SEP",
    "SUM_FIELD",
    "THROUGHPUT_BUCKET_SECONDS",
    "THROUGHPUT_WINDOW_SECONDS",
    "Increment",
    "Throughput",
    "labels_field",
    "lua_args",
    "queue",
    "read",
    "throughput",
    "write",
]

log = logging.getLogger(__name__)

SEP = "|"
SUM_FIELD = "sum"
#: The counter the store's own scripts write where a document's status changes (worker/store/lua/set_records.lua
#: spells its key out) and where a dead letter is first stored.
DOCUMENTS_METRIC = "erpsync_documents_total"


def labels_field(values: Sequence[object]) -> str:
    """The hash field of a series: its label values joined by `|`."""
    # Label values are ids and fixed words; a separator inside one would shift the others, so it is replaced.
    return SEP.join(str(v).replace(SEP, "_") for v in values)


@dataclass(frozen=True, slots=True)
class Increment:
    """One HINCRBY (int amount) or HINCRBYFLOAT (float amount) of a metric hash field."""

    key: str
    field: str
    amount: int | float

    def amount_arg(self) -> str:
        # Integers stay integers (HINCRBY); floats always carry a '.' or an exponent (HINCRBYFLOAT).
        return str(self.amount) if isinstance(self.amount, int) else repr(float(self.amount))


def queue(pipe: Any, increments: Iterable[Increment]) -> None:
    """Queue increments on a pipeline (transactional or not) that the caller executes."""
    for inc in increments:
        if isinstance(inc.amount, int):
            pipe.hincrby(inc.key, inc.field, inc.amount)
        else:
            pipe.hincrbyfloat(inc.key, inc.field, inc.amount)


def lua_args(increments: Iterable[Increment]) -> list[str]:
    """(key, field, amount) triples for a Lua script that applies them (lua/apply_metrics.lua)."""
    return [part for inc in increments for part in (inc.key, inc.field, inc.amount_arg())]


def write(client: redis.Redis, increments: Sequence[Increment]) -> None:
    """Write increments in one non-transactional pipeline; never raises (a metric must not fail the work)."""
    if not increments:
        return
    try:
        pipe = client.pipeline(transaction=False)
        queue(pipe, increments)
        pipe.execute()
    except Exception as exc:
        log.debug("metrics not recorded (%s: %s)", type(exc).__name__, exc)


def read(client: redis.Redis, prefix: str, names: Sequence[str]) -> list[dict[str, float]]:
    """Each metric's hash (field -> value), in one round trip; a Redis error propagates (a scrape fails visibly
    rather than serving zeros)."""
    keys = Keys(prefix)
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.hgetall(keys.metric(name))
    return [{as_text(k): float(as_text(v)) for k, v in raw.items()} for raw in pipe.execute()]


# ----- throughput: documents settled per bucket of time (rates and ETAs of `erpsync status`)

#: The script that records documents' outcomes (worker/store/lua/job_functions.lua) adds each run's settled documents
#: to the hash of the current bucket of Redis's clock (Keys.throughput: `t|tenant` and `j|job` -> documents), kept
#: 130 s: three commands per run of a job's records, and nothing to prune.
THROUGHPUT_BUCKET_SECONDS = 10
THROUGHPUT_WINDOW_SECONDS = 60


@dataclass(frozen=True, slots=True)
class Throughput:
    """Documents settled per second over the last minute or so, per tenant and per job (absent: none settled)."""

    tenants: dict[str, float]
    jobs: dict[str, float]
    window_seconds: float


def throughput(client: redis.Redis, prefix: str, now: float) -> Throughput:
    """The rates of the last THROUGHPUT_WINDOW_SECONDS (plus the current, partial bucket), in one round trip.

    A series counts from its first bucket with documents in the window (a job started 20 s ago is not averaged over
    a minute), but over one bucket at least (a first burst is not divided by a fraction of a second). `now` is
    this host's clock; the buckets are Redis's: a skew of a few seconds moves the window by as much."""
    keys = Keys(prefix)
    current = int(now // THROUGHPUT_BUCKET_SECONDS)
    buckets = list(range(current - THROUGHPUT_WINDOW_SECONDS // THROUGHPUT_BUCKET_SECONDS, current + 1))
    pipe = client.pipeline(transaction=False)
    for bucket in buckets:
        pipe.hgetall(keys.throughput(bucket))
    counts: dict[str, int] = {}
    first: dict[str, int] = {}
    for bucket, raw in zip(buckets, pipe.execute(), strict=True):
        for k, v in raw.items():
            name = as_text(k)
            counts[name] = counts.get(name, 0) + int(as_text(v))
            first.setdefault(name, bucket)
    start = buckets[0] * THROUGHPUT_BUCKET_SECONDS
    rates: dict[str, float] = {}
    for name, n in counts.items():
        since = max(start, first[name] * THROUGHPUT_BUCKET_SECONDS)
        rates[name] = round(n / max(float(THROUGHPUT_BUCKET_SECONDS), now - since), 2)
    return Throughput(
        tenants={name[2:]: rate for name, rate in rates.items() if name.startswith("t|")},
        jobs={name[2:]: rate for name, rate in rates.items() if name.startswith("j|")},
        window_seconds=float(now - start),
    )
