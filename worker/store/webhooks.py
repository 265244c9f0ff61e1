"""Job webhooks' Redis state: the job-events stream read by a consumer group, deliveries due, and those given up.

The scripts that finish a job append it to the job-events stream (worker/store/lua/job_functions.lua) when some
tenant has a webhook. A webhook sender (worker/webhooks/sender.py) reads it in the consumer group `webhooks` and
turns each event into a delivery — or into nothing, when the job's tenant has no webhook — and acknowledges and
deletes the event in the same script call (`schedule`): an event is never lost between the two, nor made into two
deliveries. A delivery waits in the due zset, scored by when it is due; a sender claims due ones atomically
(`claim_due`: the score moves to the end of a lease, so no other sender takes one while it is being sent, and it is
due again if the sender dies), then records the outcome: delivered (`delivered`: gone), or failed (`failed`: due
again later, or given up after the last attempt: kept in the given-up zset, with its last error, for a week).

Keys (prefix p; worker/store/keys.py):
    {p}:events:jobs                stream  final jobs: j (job id), t (tenant), s (status), at (time); group `webhooks`
    {p}:webhooks:due               zset    delivery id -> when it is due (epoch seconds; a lease's end while sent)
    {p}:webhooks:delivery:{id}     hash    tenant, job, status, at, body (the payload as sent), attempts,
                                           created; last_error, last_status, last_attempt; failed_at
    {p}:webhooks:failed            zset    delivery id -> when it was given up (a week, 10,000 at most)

A delivery's id is `<job id>.<stream entry id>`: the same on every attempt (receivers drop repeats by it), and a
job that finishes again later (a late outcome) is a new event, so a new delivery.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import redis

from worker.store.client import Arg, RedisClient
from worker.store.counters import Increment, lua_args
from worker.store.counters import queue as queue_increments
from worker.store.keys import Keys
from worker.store.scripts import load_script

__all__ = [
    "FAILED_KEEP_COUNT",
    "FAILED_KEEP_SECONDS",
    "GROUP",
    "Delivery",
    "JobEvent",
    "TenantWebhookCounts",
    "WebhookCounts",
    "WebhookStore",
]

GROUP = "webhooks"
#: Given-up deliveries are kept this long, and this many at most.
FAILED_KEEP_SECONDS = 7 * 24 * 3600
FAILED_KEEP_COUNT = 10_000
#: Due deliveries a claim looks at, at most (those of tenants at their cap are skipped over).
CLAIM_SCAN = 500
#: A skipped delivery (its tenant at its cap) comes back this much later.
SKIP_SECONDS = 1.0
#: Deliveries read per tenant count (`counts`), at most: a status screen stays cheap with a huge backlog.
COUNT_SCAN = 10_000


@dataclass(frozen=True, slots=True)
class JobEvent:
    """One entry of the job-events stream: a job reached final `status` at `at`. Fields are empty for an entry
    that was deleted while pending (it is only acknowledged)."""

    entry_id: str
    job_id: str
    tenant: str
    status: str
    at: str

    @property
    def delivery_id(self) -> str:
        return f"{self.job_id}.{self.entry_id}"


@dataclass(frozen=True, slots=True)
class Delivery:
    """A claimed delivery: what to send (`body`, as stored when it was scheduled) and the attempts made before."""

    delivery_id: str
    tenant: str
    job_id: str
    status: str
    attempts: int
    body: str


@dataclass(slots=True)
class TenantWebhookCounts:
    """One tenant's deliveries: waiting (due now or later), failing (waiting after a failed attempt), given up."""

    tenant: str
    due: int = 0
    failing: int = 0
    given_up: int = 0


@dataclass(slots=True)
class WebhookCounts:
    """Every tenant's deliveries, and the events no sender has taken yet (they grow while none runs).

    `due` and `given_up` are exact; the per-tenant split reads at most COUNT_SCAN of each (`truncated`)."""

    events_waiting: int = 0
    due: int = 0
    failing: int = 0
    given_up: int = 0
    oldest_due_seconds: float | None = None
    tenants: dict[str, TenantWebhookCounts] = field(default_factory=dict)
    truncated: bool = False

    def tenant(self, name: str) -> TenantWebhookCounts:
        return self.tenants.setdefault(name, TenantWebhookCounts(name))


def _event(entry_id: str, data: Mapping[str, str] | None) -> JobEvent:
    data = data or {}
    return JobEvent(entry_id, data.get("j", ""), data.get("t", ""), data.get("s", ""), data.get("at", ""))


class WebhookStore:
    """The webhooks' stream, deliveries and counts of one deployment (its key prefix)."""

    def __init__(self, client: RedisClient, prefix: str) -> None:
        self.r = client
        self.keys = Keys(prefix)
        self.stream = self.keys.job_events
        self._delivery_prefix = self.keys.webhook_delivery("")
        self._schedule = load_script(client, "webhook_schedule")
        self._claim = load_script(client, "webhook_claim")
        self._retry = load_script(client, "webhook_retry")

    # ----- events
    def ensure_group(self) -> None:
        """The consumer group, created (with the stream) at the stream's start if missing: after Redis lost it,
        the events still in the stream were not scheduled yet (scheduling deletes them)."""
        try:
            self.r.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def read_events(
        self, consumer: str, count: int = 100, *, block_ms: int = 0, take_over_idle_ms: int = 0
    ) -> list[JobEvent]:
        """Events for `consumer`: its own pending ones first (read before and not scheduled: it was stopped), then,
        with `take_over_idle_ms`, those another consumer has held that long (it died), then new ones (waiting up to
        `block_ms` for one). The group is created again when Redis lost it."""
        try:
            return self._read(consumer, count, block_ms, take_over_idle_ms)
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
        self.ensure_group()
        return self._read(consumer, count, block_ms, take_over_idle_ms)

    def _read(self, consumer: str, count: int, block_ms: int, take_over_idle_ms: int) -> list[JobEvent]:
        own = self._entries(self.r.xreadgroup(GROUP, consumer, {self.stream: "0"}, count=count))
        if own:
            return own
        if take_over_idle_ms:
            claimed = self.r.xautoclaim(self.stream, GROUP, consumer, take_over_idle_ms, "0-0", count)
            taken = [_event(entry_id, data) for entry_id, data in claimed[1]]
            if taken:
                return taken
        return self._entries(
            self.r.xreadgroup(GROUP, consumer, {self.stream: ">"}, count=count, block=block_ms or None)
        )

    @staticmethod
    def _entries(reply: Any) -> list[JobEvent]:
        return [_event(entry_id, data) for _, entries in reply or [] for entry_id, data in entries]

    def jobs(self, job_ids: Sequence[str]) -> list[dict[str, str] | None]:
        """Each job's hash (None for a job gone), in one round trip."""
        pipe = self.r.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hgetall(self.keys.job(job_id))
        return [cast(dict[str, str], job) or None for job in pipe.execute()]

    def schedule(self, events: Sequence[JobEvent], bodies: Mapping[str, str], now: float) -> int:
        """Make a delivery, due `now`, of each event with a body in `bodies` (by entry id), and acknowledge and
        delete every event, in one script call. Returns the deliveries made."""
        if not events:
            return 0
        args: list[Arg] = [GROUP, self._delivery_prefix, now]
        for e in events:
            args += [e.entry_id, e.delivery_id, e.tenant, e.job_id, e.status, e.at, bodies.get(e.entry_id, "")]
        return int(self._schedule(keys=[self.stream, self.keys.webhooks_due], args=args))

    # ----- deliveries
    def claim_due(
        self,
        now: float,
        *,
        lease_seconds: float,
        limit: int,
        in_flight: Mapping[str, int] | None = None,
        per_tenant: int = 0,
    ) -> list[Delivery]:
        """Up to `limit` deliveries due by `now`, each leased for `lease_seconds`; a tenant with `per_tenant`
        deliveries in flight (`in_flight`: this sender's) gets none (0: no cap)."""
        if limit <= 0:
            return []
        args: list[Arg] = [self._delivery_prefix, now, now + lease_seconds, limit, CLAIM_SCAN, per_tenant]
        args.append(now + SKIP_SECONDS)
        for tenant, n in (in_flight or {}).items():
            args += [tenant, n]
        flat = cast(list[str], self._claim(keys=[self.keys.webhooks_due], args=args))
        return [
            Delivery(flat[i], flat[i + 1], flat[i + 2], flat[i + 3], int(flat[i + 4] or 0), flat[i + 5])
            for i in range(0, len(flat), 6)
        ]

    def next_due(self) -> float | None:
        """When the earliest delivery is due (epoch seconds); None when there is none."""
        first = cast(list[tuple[str, float]], self.r.zrange(self.keys.webhooks_due, 0, 0, withscores=True))
        return float(first[0][1]) if first else None

    def delivered(self, delivery_id: str, increments: Sequence[Increment] = ()) -> None:
        """A delivery answered 2xx: gone, with `increments` (metrics) in the same transaction."""
        pipe = self.r.pipeline(transaction=True)
        pipe.zrem(self.keys.webhooks_due, delivery_id)
        pipe.delete(self.keys.webhook_delivery(delivery_id))
        queue_increments(pipe, increments)
        pipe.execute()

    def failed(
        self,
        delivery: Delivery,
        *,
        now: float,
        error: str,
        status_code: int | None,
        retry_at: float | None,
        increments: Sequence[Increment] = (),
    ) -> bool:
        """An attempt failed: the delivery is due again at `retry_at`, or given up (None) and kept a week with
        its last error. False when it was delivered meanwhile (another sender, after this one's lease)."""
        args: list[Arg] = [
            delivery.delivery_id,
            now,
            "" if retry_at is None else retry_at,
            delivery.attempts + 1,
            error,
            "" if status_code is None else status_code,
            FAILED_KEEP_SECONDS,
            FAILED_KEEP_COUNT,
            *lua_args(increments),
        ]
        keys = [self.keys.webhooks_due, self.keys.webhooks_failed, self.keys.webhook_delivery(delivery.delivery_id)]
        return bool(self._retry(keys=keys, args=args))

    def requeue_lost(self, deliveries: Sequence[Delivery], now: float) -> None:
        """Deliveries claimed and not sent (the sender stopped): due again now rather than at their lease's end."""
        if deliveries:
            self.r.zadd(self.keys.webhooks_due, {d.delivery_id: now for d in deliveries}, xx=True)

    # ----- operators
    def counts(self, now: float, *, scan: int = COUNT_SCAN) -> WebhookCounts:
        """Deliveries due, failing and given up, in all and per tenant; events not taken yet. Two round trips."""
        pipe = self.r.pipeline(transaction=False)
        pipe.xlen(self.stream)
        pipe.zcard(self.keys.webhooks_due)
        pipe.zcard(self.keys.webhooks_failed)
        pipe.zrange(self.keys.webhooks_due, 0, scan - 1, withscores=True)
        pipe.zrevrange(self.keys.webhooks_failed, 0, scan - 1)
        events, due, given_up, due_ids, failed_ids = pipe.execute()
        counts = WebhookCounts(events_waiting=int(events), due=int(due), given_up=int(given_up))
        counts.truncated = due > len(due_ids) or given_up > len(failed_ids)
        if due_ids:
            counts.oldest_due_seconds = round(max(0.0, now - float(due_ids[0][1])), 1)
        pipe = self.r.pipeline(transaction=False)
        for delivery_id, _ in due_ids:
            pipe.hmget(self.keys.webhook_delivery(delivery_id), ["tenant", "attempts"])
        for delivery_id in failed_ids:
            pipe.hget(self.keys.webhook_delivery(delivery_id), "tenant")
        found = pipe.execute() if due_ids or failed_ids else []
        for tenant, attempts in found[: len(due_ids)]:
            if tenant is not None:
                row = counts.tenant(tenant)
                row.due += 1
                if int(attempts or 0) > 0:
                    row.failing += 1
                    counts.failing += 1
        for tenant in found[len(due_ids) :]:
            counts.tenant(tenant or "?").given_up += 1
        return counts

    def deliveries(self, delivery_ids: Sequence[str]) -> list[dict[str, str]]:
        """Each delivery's fields without its body (`id` added), for operators; those gone are left out."""
        pipe = self.r.pipeline(transaction=False)
        fields = ("tenant", "job", "status", "at", "attempts", "created", "last_error", "last_status", "last_attempt")
        for delivery_id in delivery_ids:
            pipe.hmget(self.keys.webhook_delivery(delivery_id), [*fields, "failed_at"])
        rows = []
        for delivery_id, values in zip(delivery_ids, pipe.execute(), strict=True):
            if values[0] is not None:
                row = dict(zip((*fields, "failed_at"), values, strict=True))
                rows.append({"id": delivery_id, **{k: v for k, v in row.items() if v not in (None, "")}})
        return rows

    def given_up(self, limit: int = 50) -> list[dict[str, str]]:
        """The newest deliveries given up (fields as `deliveries`)."""
        return self.deliveries(cast(list[str], self.r.zrevrange(self.keys.webhooks_failed, 0, limit - 1)))

    def failing(self, limit: int = 50, *, scan: int = COUNT_SCAN) -> list[dict[str, str]]:
        """Deliveries waiting after a failed attempt (the soonest due first; among the first `scan` due)."""
        ids = cast(list[str], self.r.zrange(self.keys.webhooks_due, 0, scan - 1))
        pipe = self.r.pipeline(transaction=False)
        for delivery_id in ids:
            pipe.hget(self.keys.webhook_delivery(delivery_id), "attempts")
        retried = [i for i, attempts in zip(ids, pipe.execute() if ids else [], strict=True) if int(attempts or 0)]
        return self.deliveries(retried[:limit])

    def tidy(self, now: float, *, consumer: str, idle_ms: int = 3_600_000) -> None:
        """Forget given-up deliveries older than a week, and consumers (stopped senders) idle for `idle_ms` that
        hold no event."""
        self.r.zremrangebyscore(self.keys.webhooks_failed, "-inf", now - FAILED_KEEP_SECONDS)
        try:
            consumers = self.r.xinfo_consumers(self.stream, GROUP)
        except redis.ResponseError:  # no stream or no group yet
            return
        for c in consumers:
            if c["name"] != consumer and not int(c["pending"]) and int(c["idle"]) >= idle_ms:
                self.r.xgroup_delconsumer(self.stream, GROUP, c["name"])
