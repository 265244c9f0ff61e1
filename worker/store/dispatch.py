"""The dispatcher: batches waiting to be sent, parked in Redis per tenant and lane, handed out fairly.

A sender thread never waits for one tenant's limit while another tenant has work that could go. Every batch ready
to send sits in a list of its tenant (a lane: `interactive` first, `bulk` after it), and a sender asks the
dispatcher for *the next batch that may go now* (`take`): the ready tenant with the lowest virtual time is
chosen (round robin, each batch moving the tenant on by 1/weight: a tenant with a weight of 2 sends twice as
often); a tenant that may not send now — paused by its ERP (Retry-After), at its cap of requests in flight,
before its next rate-limit turn, paused by an operator or because its ERP refused its authorisation
(worker/store/tenants.py) — is *parked* until it may, and the next tenant is looked at. Batches that must
come back later (a retry's backoff, the reconcile delay, an outage's wait) are *delayed* until their time, then
join their lane again. Nobody sleeps: work that must wait is a member of a sorted set.

    add ──▶ lane:{tenant}:{lane} ──take──▶ taken (a sender's, leased) ──settle──▶ done | delayed ──▶ lane
                 ▲                           │ lease not renewed (the sender died): back to the lane's front
                 └───────────────────────────┘

Handing out takes the batch's in-flight slot and its rate-limit turn in the same script, so the sender holds
both without waiting; its slot goes back as soon as the ERP has answered (`settle(..., SLOT)`), waking a tenant
parked for a slot. A batch is in one place at a time (its `queued_in` field says where), so adding it again, or
two recoveries at once, queue it once.

A sender holds a batch on a short lease (ERPSYNC_SEND_LEASE_SECONDS) that its process renews while it works
(`renew`, a heartbeat thread: worker/pipeline/dispatch.py). A sender that is killed stops renewing: within a lease
its batches go back to the front of their lanes and its slots are free, and the next sender takes the batch over
(worker/pipeline/send.py decides whether its request may have gone out).

The coalescing buffers' flushes are asked for here too (`flush_at`: a buffer with a full batch at once, a partial
one when its oldest document has waited long enough) and claimed by the tickets as they come due
(`claim_flushes`), so that a flush never waits behind sends for a worker's thread: the ticket that claims it does
it before taking its next batch.

Senders run *tickets*: `send_next` messages that name no batch, each serving whatever is due. `issue_tickets`
keeps their number within ERPSYNC_SEND_TICKETS, counting those waiting in the send queue (so tickets lost with a
killed worker are not counted) and those running, and publishes none while nothing is queued or due;
`schedule_wake` asks for one delayed ticket for the moment the first parked tenant or delayed batch may go.

Keys (prefix p; worker/store/keys.py): {p}:dispatch:ready, :parked, :delayed, :taken, :tickets, :flushes (sorted
sets), {p}:dispatch:tenant:{tenant} (hash: limits, virtual time, what it waits for, documents queued per lane),
{p}:dispatch:lane:{tenant}:{lane} (list of batch ids), {p}:dispatch:clock and :wake (strings). A tenant's hash and
lanes exist only while it has batches queued.

Scripts (worker/store/lua/): dispatch_add, dispatch_take, dispatch_settle, dispatch_renew, dispatch_tickets,
dispatch_wake, dispatch_flush_at, dispatch_flushes, dispatch_flush_done, sharing dispatch_functions.

Clocks: leases and delays are epoch seconds of the caller's clock, as for the batches' own leases. This assumes worker
clocks roughly in sync (NTP): a worker whose clock runs d seconds ahead sees other workers' leases end d seconds
early, and a lease is many seconds long and renewed every third of it. Rate-limit turns are Redis's own clock
(`TIME`), as in ratelimit.py, since their pacing is a fraction of a second.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple, cast

from schemas import Lane
from worker.settings import Settings
from worker.store.client import Arg, RedisClient, as_text
from worker.store.keys import Keys
from worker.store.scripts import load_script

__all__ = [
    "LANES",
    "Claimed",
    "Delayed",
    "Dispatcher",
    "Grant",
    "Lane",
    "Limits",
    "Next",
    "Reaped",
    "Settle",
    "TenantBacklog",
    "Waiting",
]

#: A tenant's interactive batches that go in a row, at most, while its bulk lane waits.
INTERACTIVE_STREAK = 4
#: Ready tenants one `take` looks at, at most, before saying that nothing may go now.
SCAN_TENANTS = 64
#: Buffer flushes a sender claims at once, and how long a claim holds before another sender may flush the buffer.
FLUSHES_PER_CLAIM = 20
FLUSH_CLAIM_S = 30.0
#: How long a paused tenant (worker/store/tenants.py) stays parked before `take` looks at it again; `wake` brings a
#: resumed one back at once.
PAUSED_RECHECK_S = 60.0
#: How far ahead a rate-limit turn is taken for a batch handed out (its sender waits that long at most before the
#: request): the turns keep their pace whatever waking a ticket costs, and no sender waits longer than this.
TURN_AHEAD_S = 0.1


#: A tenant's two queues, served in this order: a webshop order does not wait behind the same tenant's end-of-day
#: file (schemas.Lane: a job's lane, from its `priority` or its size).
LANES = (Lane.INTERACTIVE, Lane.BULK)


class Waiting(StrEnum):
    """Why a tenant with batches queued sends none now."""

    RATE = "rate"  # its next rate-limit turn is later
    SLOT = "slot"  # its cap of requests in flight is reached
    PAUSE = "pause"  # its ERP asked for a pause (Retry-After)
    PAUSED = "paused"  # paused: by an operator, or its ERP refused its authorisation (worker/store/tenants.py)


class Settle(StrEnum):
    """What a sender is done with (`Dispatcher.settle`)."""

    SLOT = "slot"  # the ERP answered: the in-flight slot goes back, the batch stays the sender's
    DONE = "done"  # the batch is settled (or was found done, or gone)
    DELAY = "delay"  # the batch comes back later


@dataclass(frozen=True, slots=True)
class Limits:
    """What the dispatcher keeps a tenant to, from the tenants file: requests in flight (0: no cap), one rate turn
    every `rate_interval_s` seconds (0: no limit), and its share against other tenants."""

    cap: int
    rate_interval_s: float
    weight: float = 1.0


@dataclass(frozen=True, slots=True)
class Grant:
    """A batch handed to a sender: its slot taken (when the tenant has a cap) and its rate turn (`turn_in`)."""

    batch_id: str
    tenant: str
    lane: Lane
    ready_at: float | None  # when it joined its lane (epoch s): the dispatch wait is measured from here
    turn_in: float | None  # seconds until the rate-limit turn taken for it (None: the tenant has no rate limit)
    token: str  # names this grant: only its holder settles or renews the batch and its slot


class Claimed(NamedTuple):
    """Buffers ((tenant, kind)) whose flush a sender claimed, and the claim's time (for `flush_done`)."""

    buffers: list[tuple[str, str]]
    claimed_at: float


class Reaped(NamedTuple):
    """A batch taken back from a sender that stopped renewing its lease (killed, its machine lost)."""

    batch_id: str
    tenant: str
    sender: str


@dataclass(frozen=True, slots=True)
class Next:
    """What `take` found: a batch, or none and when something may go next (epoch s; None: nothing is waiting)."""

    grant: Grant | None
    due: float | None
    reaped: list[Reaped]  # batches taken back from senders that stopped renewing their lease
    flush_due: bool = False  # a buffer's flush is due (`claim_flushes`)


@dataclass(frozen=True, slots=True)
class TenantBacklog:
    """A tenant with batches queued, for `erpsync status` and the metrics."""

    tenant: str
    documents: dict[Lane, int]
    batches: dict[Lane, int]
    oldest_ready_at: float | None  # when its oldest queued batch joined its lane (epoch s)
    waiting: Waiting | None
    waiting_until: float | None
    holder: str | None  # for a slot: the batch holding the slot that ends first
    holder_sender: str | None  # and the sender holding it (host:pid)


@dataclass(frozen=True, slots=True)
class Delayed:
    """A tenant's batches that come back later (`erpsync status`): how many, the first one's time, and what they
    wait for (outage, retry, pause, reconcile, lease, paused: worker/pipeline/retry.py) with how many each; and the
    documents they hold."""

    batches: int
    next_due: float
    reasons: dict[str, int]
    documents: int = field(default=0, compare=False)


class Dispatcher:
    """Queue batches per tenant and lane, hand them out fairly, take them back from senders that died."""

    def __init__(self, client: RedisClient, settings: Settings) -> None:
        self.r = client
        self.s = settings
        self.p = settings.key_prefix
        self.keys = Keys(settings.key_prefix)
        self._add = load_script(client, "dispatch_add")
        self._take = load_script(client, "dispatch_take")
        self._settle = load_script(client, "dispatch_settle")
        self._renew = load_script(client, "dispatch_renew")
        self._tickets = load_script(client, "dispatch_tickets")
        self._wake = load_script(client, "dispatch_wake")
        self._flush_at = load_script(client, "dispatch_flush_at")
        self._flushes = load_script(client, "dispatch_flushes")
        self._flush_done = load_script(client, "dispatch_flush_done")

    def add(self, limits: Limits, batch_ids: Sequence[str], *, verify: bool = False) -> int:
        """Queue a tenant's stored batches (all of one tenant, whose `limits` they carry); a batch placed already
        stays where it is. `verify`: check each placement against the list or set it names (recovery).
        Returns how many were queued now."""
        if not batch_ids:
            return 0
        args: list[Arg] = [
            self.p,
            repr(time.time()),
            limits.cap,
            round(limits.rate_interval_s * 1e6),
            repr(float(limits.weight)),
            1 if verify else 0,
            *batch_ids,
        ]
        return int(self._add(args=args))

    def take(self, ticket: str = "", lease_s: float | None = None) -> Next:
        """The next batch that may go now, with its slot and rate turn taken; or none, and when to ask again."""
        lease = float(lease_s if lease_s is not None else self.s.send_lease_seconds)
        raw = self._take(
            args=[
                self.p,
                repr(time.time()),
                repr(lease),
                ticket,
                repr(self.s.send_ticket_seconds),
                INTERACTIVE_STREAK,
                SCAN_TENANTS,
                round(TURN_AHEAD_S * 1e6),
                uuid.uuid4().hex[:12],
                repr(PAUSED_RECHECK_S),
            ]
        )
        values = [as_text(v) if isinstance(v, bytes) else v for v in cast(list[object], raw)]
        reaped = [Reaped(*as_text(x).split("|", 2)) for x in cast(list[object], values[-2])]
        flush_due = bool(int(str(values[-1])))
        if values[0] == "batch":
            batch_id, tenant, lane, ready_at, turn, token = values[1:7]
            grant = Grant(
                str(batch_id),
                str(tenant),
                Lane(str(lane)),
                float(str(ready_at)) if ready_at else None,
                int(str(turn)) / 1e6 if turn else None,
                str(token),
            )
            return Next(grant, None, reaped, flush_due)
        due = str(values[1])
        return Next(None, float(due) if due else None, reaped, flush_due)

    def settle(self, grant: Grant, how: Settle, *, delay_s: float = 0.0, reason: str = "") -> bool:
        """A sender is done with a batch's slot (SLOT), with the batch (DONE), or the batch comes back in `delay_s`
        (DELAY), waiting for `reason` (shown to operators). Only the grant's holder changes anything: a sender whose
        lease ran out finds the batch taken back (perhaps handed to another). True when work may go now that could
        not before (the caller offers a ticket for it)."""
        now = time.time()
        args: list[Arg] = [
            self.p,
            repr(now),
            grant.token,
            grant.tenant,
            how.value,
            repr(now + max(0.0, delay_s)),
            reason,
        ]
        return bool(int(self._settle(args=args)))

    def renew(self, held: Iterable[Grant], sender: str, lease_s: float | None = None) -> int:
        """The heartbeat of a sender process: the batches it holds stay its own for another lease (those still held
        by these grants). Returns how many it still held."""
        pairs = [x for grant in held for x in (grant.token, grant.tenant)]
        if not pairs:
            return 0
        lease = float(lease_s if lease_s is not None else self.s.send_lease_seconds)
        return int(self._renew(args=[self.p, repr(time.time()), repr(lease), sender, *pairs]))

    def issue_tickets(self, ids: Sequence[str]) -> list[str]:
        """Which of the offered ticket ids to publish: room within ERPSYNC_SEND_TICKETS (tickets waiting in the send
        queue and running), and work queued or due."""
        if not ids:
            return []
        args: list[Arg] = [self.p, repr(time.time()), self.s.send_tickets, *ids]
        raw = cast(list[bytes | str], self._tickets(keys=[self.s.send_queue_name], args=args))
        return [as_text(x) for x in raw]

    def ticket_done(self, ticket: str) -> None:
        """A ticket ended: it no longer counts."""
        self.r.zrem(self.keys.dispatch_tickets, ticket)

    def schedule_wake(self, due: float) -> bool:
        """True when the caller is to publish a delayed ticket for `due` (none is scheduled at or before it)."""
        return bool(int(self._wake(args=[self.p, repr(time.time()), repr(due)])))

    def flush_at(self, tenant: str, kind: str, due: float) -> bool:
        """A tenant's coalescing buffer of `kind` is to be flushed at `due` (epoch s), by a sender. True when this
        brought the flush forward (the caller makes sure a ticket runs then), False when one is due by then."""
        return bool(int(self._flush_at(args=[self.p, f"{tenant}|{kind}", repr(due)])))

    def claim_flushes(self, limit: int = FLUSHES_PER_CLAIM) -> Claimed:
        """The buffers whose flush is due, claimed for FLUSH_CLAIM_S (flushed by another sender then, should this
        one die before `flush_done` or a new request)."""
        raw = cast(list[object], self._flushes(args=[self.p, repr(time.time()), FLUSH_CLAIM_S, limit]))
        buffers = [tuple(as_text(b).split("|", 1)) for b in cast(list[object], raw[0])]
        return Claimed([(t, k) for t, k in buffers], float(as_text(raw[1])))

    def flush_done(self, tenant: str, kind: str, claimed_at: float) -> bool:
        """A claimed flush found the buffer empty: forget it, unless it was asked for again meanwhile."""
        return bool(int(self._flush_done(args=[self.p, f"{tenant}|{kind}", repr(claimed_at)])))

    def live_tickets(self) -> int:
        """Tickets running now (those waiting are the send queue's length)."""
        return int(self.r.zcount(self.keys.dispatch_tickets, f"({time.time()!r}", "+inf"))

    def delayed(self) -> int:
        """Batches waiting for their retry's or look-up's time."""
        return int(self.r.zcard(self.keys.dispatch_delayed))

    def taken(self) -> int:
        """Batches held by senders."""
        return int(self.r.zcard(self.keys.dispatch_taken))

    def backlog(self, limit: int = 10_000) -> list[TenantBacklog]:
        """Every tenant with batches queued (ready or parked), most waited-for first, at most `limit`."""
        tenants = [
            as_text(t)
            for key in (self.keys.dispatch_ready, self.keys.dispatch_parked)
            for t in cast(list[bytes | str], self.r.zrange(key, 0, limit - 1))
        ]
        pipe = self.r.pipeline(transaction=False)
        for tenant in tenants:
            pipe.hgetall(self.keys.dispatch_tenant(tenant))
            for lane in LANES:
                pipe.llen(self.keys.dispatch_lane(tenant, lane))
                pipe.lindex(self.keys.dispatch_lane(tenant, lane), 0)
        raw = pipe.execute()
        heads: dict[str, str] = {}
        out: list[tuple[str, dict[str, str], dict[Lane, int], list[str]]] = []
        step = 1 + 2 * len(LANES)
        for n, tenant in enumerate(tenants):
            fields = {as_text(k): as_text(v) for k, v in cast(dict[object, object], raw[n * step]).items()}
            batches = {lane: int(raw[n * step + 1 + 2 * i]) for i, lane in enumerate(LANES)}
            firsts = [as_text(raw[n * step + 2 + 2 * i]) for i in range(len(LANES)) if raw[n * step + 2 + 2 * i]]
            out.append((tenant, fields, batches, firsts))
            heads.update(dict.fromkeys(firsts, ""))
        holders = [fields["holder"] for _, fields, _, _ in out if fields.get("holder")]
        ready_at = self._fields(list(heads), "ready_at")
        senders = self._fields(holders, "sender")
        result = [
            TenantBacklog(
                tenant,
                {lane: max(0, int(fields.get(f"docs:{lane.value}", 0) or 0)) for lane in LANES},
                batches,
                min((float(ready_at[h]) for h in firsts if ready_at.get(h)), default=None),
                Waiting(fields["waiting"]) if fields.get("waiting") in set(Waiting) else None,
                float(fields["waiting_until"]) if fields.get("waiting_until") else None,
                fields.get("holder") or None,
                senders.get(fields.get("holder") or ""),
            )
            for tenant, fields, batches, firsts in out
        ]
        return sorted(result, key=lambda b: b.oldest_ready_at or float("inf"))

    def delayed_by_tenant(self, limit: int = 10_000) -> dict[str, Delayed]:
        """Per tenant, its batches that come back later (the first `limit` due), for `erpsync status`."""
        due = cast(
            list[tuple[bytes | str, float]], self.r.zrange(self.keys.dispatch_delayed, 0, limit - 1, withscores=True)
        )
        pipe = self.r.pipeline(transaction=False)
        for batch_id, _ in due:
            pipe.hmget(self.keys.batch(as_text(batch_id)), "tenant", "delayed_for", "size")
        out: dict[str, Delayed] = {}
        for (_, when), (tenant, reason, size) in zip(due, pipe.execute(), strict=True):
            if tenant is None:
                continue
            name, why = as_text(tenant), as_text(reason or "retry") or "retry"
            seen = out.get(name) or Delayed(0, when, {})
            out[name] = Delayed(
                seen.batches + 1,
                min(seen.next_due, when),
                {**seen.reasons, why: seen.reasons.get(why, 0) + 1},
                seen.documents + int(as_text(size or "0") or 0),
            )
        return out

    def wake(self, tenant: str) -> bool:
        """A parked tenant is looked at by the next `take` (a paused tenant resumed: it goes on at once rather than
        when its recheck comes). True when it was parked."""
        return bool(self.r.zadd(self.keys.dispatch_parked, {tenant: time.time()}, xx=True, ch=True))

    def _fields(self, batch_ids: list[str], name: str) -> dict[str, str]:
        """One field of each of these batches (those that have it)."""
        pipe = self.r.pipeline(transaction=False)
        for batch_id in batch_ids:
            pipe.hget(self.keys.batch(batch_id), name)
        return {b: as_text(v) for b, v in zip(batch_ids, pipe.execute(), strict=True) if v}
