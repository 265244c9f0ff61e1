"""The intake queue: ranges of job documents waiting to be validated, drained many at a time, fairly over tenants.

A producer stores a job's documents (in chunks, as it reads them) and pushes one item per chunk here, to the list of
the job's tenant and lane (`interactive` or `bulk`, schemas.Lane). Intake tasks take items until they hold about
`intake_chunk_docs` documents and process them together, so a thousand one-document jobs cost a handful of tasks and
Redis round trips instead of a thousand of each, and a big file's chunks are spread over every worker process.

Fair sharing (lua/intake_take.lua says it step by step): tenants with items waiting are served round robin in
virtual time, each item advancing its tenant's by 1/weight (TenantConfig.weight), so a 30-chunk file does not hold
back another tenant's one-document job: that job's tenant, new in the queue, enters at the current virtual time and
goes next. Within a tenant, interactive items go first, but after INTERACTIVE_STREAK of them in a row while its bulk
items wait, a bulk one. A take holds items of one lane only: interactive documents are never validated together with
a bulk chunk. Nothing is kept for a tenant with nothing waiting.

Taking is an atomic move into the taker's own list (`{p}:intake:taken:{holder}`, the holder being the Celery task
id). A task that dies mid-way is delivered again under the same id and finds what it held there; processing is
idempotent per document (records and buffer positions say what is done). Items carry their tenant and lane
(`job_id|start|end|lane|tenant`), so a held item can always be told where it came from.

Keys (prefix p; worker/store/keys.py):
    {p}:intake:lane:{tenant}:{lane}   list   the tenant's items of one lane, in arrival order
    {p}:intake:ready                  zset   tenants with items waiting -> virtual time
    {p}:intake:clock                  string the virtual time of the last item taken; gone when nothing waits
    {p}:intake:backlog                hash   `items` (all waiting), `{tenant}|{lane}|items` and `|docs`
    {p}:intake:streak                 hash   tenant -> interactive items taken in a row while its bulk ones waited
    {p}:intake:taken:{holder}         list   the items one intake task holds
    {p}:intakeq                       string set while a drain task is queued (`ask_for_drain`), cleared as one starts
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, cast

import redis

from schemas.kinds import Lane
from worker.errors import ConfigurationError
from worker.settings import Settings
from worker.store.client import queue_script
from worker.store.keys import Keys
from worker.store.scripts import load_script

__all__ = ["INTERACTIVE_STREAK", "TOTAL_FIELD", "IntakeQueue", "Item", "LaneBacklog"]

#: Interactive items a tenant gets in a row while its bulk items wait; then one bulk item goes.
INTERACTIVE_STREAK = 4
#: The backlog hash's field that counts every item waiting (worker/store/views.py reads it too).
TOTAL_FIELD = "items"
#: Items per call of the push script (Lua's unpack takes a few thousand values at most).
_PUSH_SLICE = 1000

_LANES = frozenset(lane.value for lane in Lane)
_ITEM_BEFORE_LANES = re.compile(r"(.*)\|(\d+)\|(\d+)", re.S)


@dataclass(frozen=True, slots=True)
class Item:
    """Documents [start, end) of one job, of `tenant`, in `lane`."""

    job_id: str
    start: int
    end: int
    tenant: str
    lane: Lane

    def encode(self) -> str:
        """`job_id|start|end|lane|tenant`: a job id may hold anything, tenants and lanes never hold a `|`."""
        return f"{self.job_id}|{self.start}|{self.end}|{self.lane.value}|{self.tenant}"

    @classmethod
    def decode(cls, text: str) -> Item:
        """An encoded item; one written before lanes (`job_id|start|end`, held by a task across an upgrade) is a
        bulk item of no tenant."""
        parts = text.rsplit("|", 4)
        if len(parts) == 5 and parts[3] in _LANES and parts[1].isdigit() and parts[2].isdigit():
            job_id, start, end, lane, tenant = parts
            return cls(job_id, int(start), int(end), tenant, Lane(lane))
        match = _ITEM_BEFORE_LANES.fullmatch(text)
        if match is None:
            raise ValueError(f"not an intake item: {text[:100]!r}")
        job_id, start, end = match.groups()
        return cls(job_id, int(start), int(end), "", Lane.BULK)

    @property
    def size(self) -> int:
        return self.end - self.start


class LaneBacklog(NamedTuple):
    """What waits for intake in one tenant's lane: items (job ranges) and the documents in them."""

    tenant: str
    lane: Lane
    items: int
    documents: int


class IntakeQueue:
    """Push items, take a fair batch of them for one holder, let go of them once processed."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.r = client
        self.s = settings
        self.keys = Keys(settings.key_prefix)
        self._push = load_script(client, "intake_push")
        self._take = load_script(client, "intake_take")

    def push(self, items: Sequence[Item], pipe: redis.client.Pipeline | None = None) -> None:
        """Queue items at the end of their tenant's lane (on `pipe` when given, so that they go in the same
        transaction as their documents; else in a transaction of their own)."""
        if not items:
            return
        groups: dict[tuple[str, Lane], list[Item]] = {}
        for item in items:
            groups.setdefault((item.tenant, item.lane), []).append(item)
        target = pipe if pipe is not None else self.r.pipeline(transaction=True)
        shared = [self.keys.intake_ready, self.keys.intake_clock, self.keys.intake_backlog]
        for (tenant, lane), group in groups.items():
            for first in range(0, len(group), _PUSH_SLICE):
                part = group[first : first + _PUSH_SLICE]
                args = [tenant, lane.value, sum(i.size for i in part), *(i.encode() for i in part)]
                queue_script(target, self._push, keys=[self.keys.intake_lane(tenant, lane), *shared], args=args)
        if pipe is None:
            target.execute()

    def take(self, holder: str, max_docs: int | None = None) -> list[Item]:
        """The holder's items: what it held before, else up to about `max_docs` documents' worth (the last item
        may pass it), fairly over tenants and of one lane (the module docstring says how)."""
        budget = max_docs or self.s.intake_chunk_docs
        keys = [
            self.keys.intake_ready,
            self.taken_key(holder),
            self.keys.intake_clock,
            self.keys.intake_backlog,
            self.keys.intake_streak,
        ]
        lanes = self.keys.intake_lane("", "").removesuffix(":")  # "{p}:intake:lane:"
        args: list[str | int] = [lanes, budget, self.s.result_ttl_seconds, INTERACTIVE_STREAK, *self._weights()]
        raw = cast(list[str], self._take(keys=keys, args=args))
        return [Item.decode(x) for x in raw]

    def done(self, holder: str) -> None:
        """The holder's items are processed: forget them."""
        self.r.delete(self.taken_key(holder))

    def waiting(self) -> int:
        """Items queued over every tenant and lane (not documents)."""
        return max(0, int(cast(str | None, self.r.hget(self.keys.intake_backlog, TOTAL_FIELD)) or 0))

    def backlog(self) -> list[LaneBacklog]:
        """What waits for intake, per tenant and lane (only those with something waiting), by tenant, interactive
        first: items and documents, as counted on push and take. One round trip, one hash of a few fields per
        tenant waiting; for `erpsync status`."""
        counts = cast(dict[str, str], self.r.hgetall(self.keys.intake_backlog))
        found: dict[tuple[str, Lane], list[int]] = {}
        for name, value in counts.items():
            parts = name.rsplit("|", 2)
            if len(parts) != 3 or parts[1] not in _LANES or parts[2] not in ("items", "docs"):
                continue  # the total
            tenant, lane, what = parts
            found.setdefault((tenant, Lane(lane)), [0, 0])[1 if what == "docs" else 0] = int(value)
        order = list(Lane)
        rows = sorted(found.items(), key=lambda kv: (kv[0][0], order.index(kv[0][1])))
        return [LaneBacklog(tenant, lane, items, docs) for (tenant, lane), (items, docs) in rows if items > 0]

    def taken_key(self, holder: str) -> str:
        return self.keys.intake_taken(holder)

    def ask_for_drain(self) -> bool:
        """True if no drain task is known to be queued (the caller queues one now); the flag lives 30 s."""
        return bool(self.r.set(self.keys.intake_flag, "1", nx=True, px=30_000))

    def drain_started(self) -> None:
        """A drain task starts: what arrives from now on must ask for another."""
        self.r.delete(self.keys.intake_flag)

    def _weights(self) -> list[str]:
        """(tenant, weight) pairs, flat, of the tenants whose weight is not 1; none if the tenants file cannot be
        read (every tenant weighs 1 then; intake reports the file's problem per job)."""
        try:
            tenants = self.s.tenants()
        except ConfigurationError:
            return []
        return [text for name, t in sorted(tenants.items()) if t.weight != 1.0 for text in (name, repr(t.weight))]
