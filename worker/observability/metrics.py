"""Prometheus counters and histograms kept in Redis, so that one exporter serves the sum of every worker.

Workers run as many processes and threads on many hosts; a counter in one process's memory would need a
scrape per process (or prometheus_client's multiprocess directory, which does not cross hosts). Instead every
increment is a Redis HINCRBY, and `RedisCountersCollector` (served by `erpsync metrics`) reads the totals at
scrape time. Writes ride on Redis calls that run anyway where they can:

- erpsync_documents_total{tenant,target,kind,status}: in the results store's Lua script, the single place a
  document's status changes (worker/store/results.py), so a redelivered message never counts twice; `dead` is
  counted where a dead letter is first stored.
- erpsync_batches_total{tenant,target,kind,outcome} and erpsync_batch_documents{target}: in the transaction
  that ends a batch (ResultsStore.complete_batch), counted only if the batch was not done already.
- erpsync_retries_total{target,reason}, erpsync_http_request_duration_seconds{target}: one non-transactional
  pipeline per retry or ERP request (`Recorder`).
- erpsync_webhook_deliveries_total{tenant,outcome}: in the transaction or script that records a webhook attempt's
  outcome (worker/webhooks/sender.py); the webhooks' gauges (due, failing, given up) are worker/ops/overview.py's.

Metrics never fail the work: a Redis error while recording is logged at debug level and dropped (inside Lua,
`redis.pcall`). Gauges (queue depths, buffers, oldest pending document) are computed at scrape time by
worker/ops/overview.py, not here.

Keys: `{prefix}:metrics:{metric name}`, one hash per metric. A counter's field is its label values joined by
`|` (`acme|softone|customer_invoice|created`) -> count. A histogram's fields are the label values plus a bucket's
upper bound (`softone|0.05`, `softone|+Inf`) -> observations that fell into that bucket only (not cumulative:
one HINCRBY per observation; the collector adds them up), and `softone|sum` -> sum of the observed values.
"""

from __future__ import annotations

import bisect
import logging
import math
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache

import httpx
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from worker.errors import (
    AmbiguousError,
    AuthenticationFailed,
    BatchRejected,
    ConnectFailed,
    RateLimited,
    ServiceUnavailable,
    WaitingForRetryAfter,
)
from worker.settings import Settings, get_settings
from worker.store import counters
from worker.store.client import RedisClient, get_redis
from worker.store.counters import DOCUMENTS_METRIC, SEP, SUM_FIELD, Increment, labels_field
from worker.store.keys import Keys

log = logging.getLogger(__name__)

INF = "+Inf"


@dataclass(frozen=True, slots=True)
class MetricDef:
    """One metric: its exposition name (counters end in `_total`), help text, label names and, for a
    histogram, its bucket upper bounds (+Inf is implied)."""

    name: str
    help: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = ()

    @property
    def is_histogram(self) -> bool:
        return bool(self.buckets)


DOCUMENTS = MetricDef(
    DOCUMENTS_METRIC,
    "Documents that reached a status (created, failed, duplicate, unknown), and documents dead-lettered (dead).",
    ("tenant", "target", "kind", "status"),
)
BATCHES = MetricDef(
    "erpsync_batches_total",
    "Batches ended, by outcome (created, reconciled, rejected, failed, unknown, gave_up).",
    ("tenant", "target", "kind", "outcome"),
)
BATCH_DOCUMENTS = MetricDef(
    "erpsync_batch_documents",
    "Documents per ended batch.",
    ("target",),
    (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)
RETRIES = MetricDef(
    "erpsync_retries_total",
    "Sends scheduled again, by reason (a fixed vocabulary derived from the error type).",
    ("target", "reason"),
)
HTTP_DURATION = MetricDef(
    "erpsync_http_request_duration_seconds",
    "Duration of ERP requests (POSTs, look-ups, token requests) until the answer was read or the request failed.",
    ("target",),
    (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
DISPATCH_WAIT = MetricDef(
    "erpsync_dispatch_wait_seconds",
    "Time a batch ready to send waited in its tenant's lane until a sender took it (worker/store/dispatch.py).",
    ("lane",),
    (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
WEBHOOK_DELIVERIES = MetricDef(
    "erpsync_webhook_deliveries_total",
    "Job webhook attempts by outcome: delivered, retry (failed, due again), gave_up (worker/webhooks/sender.py).",
    ("tenant", "outcome"),
)
METRICS: tuple[MetricDef, ...] = (
    DOCUMENTS,
    BATCHES,
    BATCH_DOCUMENTS,
    RETRIES,
    HTTP_DURATION,
    DISPATCH_WAIT,
    WEBHOOK_DELIVERIES,
)

#: Every value `retry_reason()` returns; a label with a closed vocabulary keeps the series few.
RETRY_REASONS = (
    "rate_limited",  # the ERP answered 429
    "rate_limit_wait",  # nothing sent: our shared rate limiter or an earlier Retry-After said wait
    "server_error",  # 5xx
    "timeout",  # connect or read timeout
    "connection",  # refused, reset, or the request could not be written whole
    "auth",
    "ambiguous",  # no usable answer: the batch is looked up (reconciled) before anything is resent
    "partial_reject",  # an array rejected part-way: reconciled
    "lease_busy",  # another worker holds the batch's sending lease
    "internal_error",  # a fault of our own while sending: settled after the lease
    "other",
)


def key(prefix: str, metric: MetricDef) -> str:
    """The hash of `metric` (worker/store/keys.py)."""
    return Keys(prefix).metric(metric.name)


def bucket_bound(metric: MetricDef, value: float) -> str:
    """The upper bound (as exposed: `0.05`, `+Inf`) of the bucket an observation of `value` falls into."""
    i = bisect.bisect_left(metric.buckets, value)
    return floatToGoString(metric.buckets[i]) if i < len(metric.buckets) else INF


def count(prefix: str, metric: MetricDef, labels: Sequence[object], amount: int = 1) -> list[Increment]:
    _check(metric, labels, histogram=False)
    return [Increment(key(prefix, metric), labels_field(labels), amount)]


def observe(prefix: str, metric: MetricDef, labels: Sequence[object], value: float) -> list[Increment]:
    _check(metric, labels, histogram=True)
    k = key(prefix, metric)
    return [
        Increment(k, labels_field([*labels, bucket_bound(metric, value)]), 1),
        Increment(k, labels_field([*labels, SUM_FIELD]), float(value)),
    ]


def _check(metric: MetricDef, labels: Sequence[object], histogram: bool) -> None:
    if len(labels) != len(metric.labels) or metric.is_histogram != histogram:
        raise ValueError(f"{metric.name} takes labels {metric.labels}, got {list(labels)}")


def retry_reason(exc: BaseException) -> str:
    """The `reason` label of a retry caused by `exc` (see RETRY_REASONS), from its type, never its text."""
    if isinstance(exc, WaitingForRetryAfter):
        return "rate_limit_wait"
    if isinstance(exc, RateLimited):
        return "rate_limited"
    if isinstance(exc, AuthenticationFailed):
        return "auth"
    if isinstance(exc, BatchRejected):
        return "partial_reject"
    if _caused_by(exc, httpx.TimeoutException):
        return "timeout"
    status = getattr(exc, "status", None)
    if isinstance(exc, ServiceUnavailable) or (isinstance(status, int) and status >= 500):
        return "server_error"
    if _caused_by(exc, ConnectFailed):
        return "connection"
    if _caused_by(exc, AmbiguousError):
        return "ambiguous"
    return "other"


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    """Whether `exc` or an exception it was raised from or while handling is a `kind` (connectors raise our
    types `from None`, which hides the httpx exception from tracebacks but keeps it as __context__)."""
    seen: BaseException | None = exc
    for _ in range(6):
        if seen is None:
            return False
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


# Increments recorded inside a `deferred()` block of this thread (or task), held back to be written later.
_held: ContextVar[list[Increment] | None] = ContextVar("erpsync_held_metrics", default=None)


@contextmanager
def deferred(recorder: Recorder) -> Iterator[None]:
    """Hold back what any Recorder records in this block, for `take_held()` to put in a transaction the block
    writes anyway (a batch's end); what is left is written by `recorder` on the way out.

    One round trip less per batch sent: the request's duration would otherwise be written on its own."""
    held: list[Increment] = []
    token = _held.set(held)
    try:
        yield
    finally:
        _held.reset(token)
        recorder.record(held)


def take_held() -> list[Increment]:
    """The increments held back so far in this `deferred()` block (none outside one); they are the caller's
    to write now."""
    held = _held.get()
    if not held:
        return []
    taken = held[:]
    held.clear()
    return taken


class Recorder:
    """Writes increments to Redis in one non-transactional pipeline (held back within `deferred()`); never
    raises."""

    def __init__(self, client: RedisClient, prefix: str) -> None:
        self.client = client
        self.prefix = prefix

    def record(self, increments: Iterable[Increment]) -> None:
        increments = list(increments)
        if not increments:
            return
        held = _held.get()
        if held is not None:
            held.extend(increments)
            return
        counters.write(self.client, increments)  # never raises: a metric must never fail the work it describes

    def count(self, metric: MetricDef, labels: Sequence[object], amount: int = 1) -> None:
        self.record(count(self.prefix, metric, labels, amount))

    def observe(self, metric: MetricDef, labels: Sequence[object], value: float) -> None:
        self.record(observe(self.prefix, metric, labels, value))

    def retry(self, target: str, reason: str) -> None:
        self.count(RETRIES, (target, reason))

    def http_request(self, target: str, seconds: float) -> None:
        self.observe(HTTP_DURATION, (target,), seconds)


@lru_cache(maxsize=1)
def recorder() -> Recorder:
    """This process's recorder, on the shared Redis client and key prefix of the settings."""
    settings = get_settings()
    return Recorder(get_redis(settings), settings.key_prefix)


class RedisCountersCollector:
    """A prometheus_client custom collector: the counters and histograms every worker wrote to Redis.

    `collect()` reads each metric's hash in one pipeline per scrape; a Redis error propagates, so the scrape
    fails visibly rather than serving zeros.

        registry = CollectorRegistry()
        registry.register(RedisCountersCollector(get_redis(settings), settings.key_prefix))
        generate_latest(registry)
    """

    def __init__(self, client: RedisClient, prefix: str | Settings, metrics: Sequence[MetricDef] = METRICS) -> None:
        """`prefix`: the key prefix, or the Settings it is read from (`key_prefix`)."""
        self.client = client
        self.prefix: str = prefix if isinstance(prefix, str) else prefix.key_prefix
        self.metrics = tuple(metrics)

    def describe(self) -> Iterator[Metric]:
        """The families without samples: lets a registry check names without reading Redis."""
        for metric in self.metrics:
            yield self._family(metric)

    def collect(self) -> Iterator[Metric]:
        found = counters.read(self.client, self.prefix, [metric.name for metric in self.metrics])
        for metric, data in zip(self.metrics, found, strict=True):
            yield self._histogram(metric, data) if metric.is_histogram else self._counter(metric, data)

    @staticmethod
    def _family(metric: MetricDef) -> Metric:
        if metric.is_histogram:
            return HistogramMetricFamily(metric.name, metric.help, labels=list(metric.labels))
        return CounterMetricFamily(metric.name, metric.help, labels=list(metric.labels))

    def _counter(self, metric: MetricDef, data: dict[str, float]) -> Metric:
        family = CounterMetricFamily(metric.name, metric.help, labels=list(metric.labels))
        for field, value in sorted(data.items()):
            values = field.split(SEP)
            if len(values) == len(metric.labels):  # anything else was not written by this version: skip it
                family.add_metric(values, value)
        return family

    def _histogram(self, metric: MetricDef, data: dict[str, float]) -> Metric:
        family = HistogramMetricFamily(metric.name, metric.help, labels=list(metric.labels))
        n = len(metric.labels)
        bounds = [*metric.buckets, math.inf]
        series: dict[tuple[str, ...], tuple[list[float], list[float]]] = {}
        for field, value in data.items():
            parts = field.split(SEP)
            if len(parts) != n + 1:
                continue
            labels, last = tuple(parts[:n]), parts[n]
            counts, total = series.setdefault(labels, ([0.0] * len(bounds), [0.0]))
            if last == SUM_FIELD:
                total[0] += value
                continue
            try:
                bound = math.inf if last == INF else float(last)
            except ValueError:
                continue
            # A bound from other bucket settings goes to the smallest current bucket that still contains it.
            counts[min(bisect.bisect_left(bounds, bound), len(bounds) - 1)] += value
        for labels, (counts, total) in sorted(series.items()):
            cumulative, buckets = 0.0, []
            for bound, c in zip(bounds, counts, strict=True):
                cumulative += c
                buckets.append((floatToGoString(bound), cumulative))
            family.add_metric(list(labels), buckets, sum_value=total[0])
        return family
