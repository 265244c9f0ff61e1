"""The coalescing buffer: documents of many jobs gathered per (tenant, kind) into array POSTs.

Valid, claimed documents are pushed into a Redis list per tenant and kind; a flush takes up to
`batch_max_docs` documents / `batch_max_bytes` bytes from its head and turns them into a stored batch, in
one Lua script. A document is therefore always either in the buffer or in exactly one batch, whatever
process dies when: nothing lives only in a worker's memory. A batch is flushed when it is full, or when
its oldest document has waited `batch_max_wait_ms`.

Documents that fill whole batches on their own (a big file's chunk, or a drain of many small jobs) need no
company: intake stores them as batches at once (`make_batch`, cut by `full_batches` with the flush's own
limits) and pushes only the rest here. Either way a document is assigned once, in one Lua script.

Keys (prefix p):
    {p}:buffer:{tenant}:{kind}          list    items {t: pushed at, j: job, p: position, x: ExternalId, d: JSON}
    {p}:buffer:{tenant}:{kind}:bytes    string  bytes of the documents in the list
    {p}:buffers                         set     "tenant|kind" of every buffer that has been used
    {p}:job:{job_id}:assigned           hash    position -> "buffer" or the batch id (a document is pushed once)
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import redis

from worker.fastjson import dumps
from worker.settings import Settings
from worker.store.keys import Keys
from worker.store.records import now_iso

# KEYS: buffer list, its bytes counter, the buffers set.
# ARGV: prefix, "tenant|kind", ttl, now, then (job, position, external id, document JSON) repeated.
_PUSH = """
local pushed = 0
for i = 5, #ARGV, 4 do
  local assigned = ARGV[1] .. ':job:' .. ARGV[i] .. ':assigned'
  if redis.call('HSETNX', assigned, ARGV[i + 1], 'buffer') == 1 then
    redis.call('EXPIRE', assigned, ARGV[3])
    redis.call('RPUSH', KEYS[1], cjson.encode({t = tonumber(ARGV[4]), j = ARGV[i], p = tonumber(ARGV[i + 1]),
                                                x = ARGV[i + 2], d = ARGV[i + 3]}))
    redis.call('INCRBY', KEYS[2], #ARGV[i + 3] + 1)
    pushed = pushed + 1
  end
end
redis.call('SADD', KEYS[3], ARGV[2])
return {pushed, redis.call('LLEN', KEYS[1]), tonumber(redis.call('GET', KEYS[2]) or '0')}
"""

# The one writer of a new batch's hash, shared by the flush and by intake's whole batches (make_batch): the layout
# tasks/send.py reads, `queued`, listed in the open batches. `members` and `xids` are JSON arrays and `body` the
# JSON array of the documents, already encoded (by the flush here, by make_batch in Python).
_STORE_BATCH = """
local function store_batch(bk, open_batches, batch_id, ttl, tenant, kind, target, members, xids, body, size, high_water,
                           now)
  redis.call('HSET', bk, 'state', 'queued', 'tenant', tenant, 'kind', kind, 'target', target,
             'members', members, 'external_ids', xids, 'body', body, 'attempts', '0', 'size', tostring(size),
             'created_at', now, 'high_water', high_water)
  redis.call('EXPIRE', bk, ttl)
  redis.call('SADD', open_batches, batch_id)
end
"""

# KEYS: buffer list, its bytes counter, open-batches set.
# ARGV: prefix, batch id, max docs, max bytes, max wait (s), now, ttl, tenant, kind, high water, now ISO, target.
_FLUSH = (
    _STORE_BATCH
    + """
local bk = ARGV[1] .. ':batch:' .. ARGV[2]
if redis.call('EXISTS', bk) == 1 then return {'exists', redis.call('HGET', bk, 'size') or '0', '0'} end
local first = redis.call('LINDEX', KEYS[1], 0)
if not first then return {'empty', '0', '0'} end
local max_docs, max_bytes = tonumber(ARGV[3]), tonumber(ARGV[4])
local len = redis.call('LLEN', KEYS[1])
local bytes_waiting = tonumber(redis.call('GET', KEYS[2]) or '0') + len + 1
if len < max_docs and bytes_waiting < max_bytes then
  local age = tonumber(ARGV[6]) - cjson.decode(first).t
  if age < tonumber(ARGV[5]) then return {'young', tostring(len), tostring(tonumber(ARGV[5]) - age)} end
end
local members, xids, docs = {}, {}, {}
local bytes = 1
while #docs < max_docs do
  local raw = redis.call('LINDEX', KEYS[1], 0)
  if not raw then break end
  local item = cjson.decode(raw)
  local size = #item.d + 1
  if #docs > 0 and bytes + size > max_bytes then break end
  redis.call('LPOP', KEYS[1])
  redis.call('DECRBY', KEYS[2], #item.d + 1)
  bytes = bytes + size
  members[#members + 1] = {item.j, item.p}
  xids[#xids + 1] = item.x
  docs[#docs + 1] = item.d
  redis.call('HSET', ARGV[1] .. ':job:' .. item.j .. ':assigned', tostring(item.p), ARGV[2])
end
store_batch(bk, KEYS[3], ARGV[2], ARGV[7], ARGV[8], ARGV[9], ARGV[12], cjson.encode(members), cjson.encode(xids),
            '[' .. table.concat(docs, ',') .. ']', #docs, ARGV[10], ARGV[11])
return {'created', tostring(#docs), tostring(redis.call('LLEN', KEYS[1]))}
"""
)


# KEYS: open-batches set. ARGV: prefix, batch id, ttl, tenant, kind, target, high water, now ISO, members JSON,
# external ids JSON, body, then (job, position) repeated. Stores the documents as one batch, as the flush does, if
# none of them was assigned before: returns {'stored', n}; {'taken', i, ...} (0-based indexes of those assigned
# already: nothing written; make_batch tries again without them); {'exists'} (made by an earlier run).
# The caller encodes members, ids and body: building a 60 KB body in Lua cost Redis about 0.4 ms per batch, its
# busiest script in scenario A (README, "Benchmark"), where Python joins the same strings in a few microseconds.
_BATCH = (
    _STORE_BATCH
    + """
local bk = ARGV[1] .. ':batch:' .. ARGV[2]
if redis.call('EXISTS', bk) == 1 then return {'exists'} end
local taken = {'taken'}
for i = 12, #ARGV, 2 do
  if redis.call('HEXISTS', ARGV[1] .. ':job:' .. ARGV[i] .. ':assigned', ARGV[i + 1]) == 1 then
    taken[#taken + 1] = (i - 12) / 2
  end
end
if #taken > 1 then return taken end
local expiring = {}
for i = 12, #ARGV, 2 do
  local assigned = ARGV[1] .. ':job:' .. ARGV[i] .. ':assigned'
  redis.call('HSET', assigned, ARGV[i + 1], ARGV[2])
  if not expiring[assigned] then
    redis.call('EXPIRE', assigned, ARGV[3])
    expiring[assigned] = true
  end
end
local size = (#ARGV - 11) / 2
store_batch(bk, KEYS[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[9], ARGV[10], ARGV[11], size, ARGV[7],
            ARGV[8])
return {'stored', size}
"""
)


def full_batches(sizes: Sequence[int], max_docs: int, max_bytes: int) -> tuple[list[range], int]:
    """Cut documents of `sizes` bytes, in order, into whole batches by the flush's rules (count, and bytes of the
    array body: brackets and commas included; a document too big for any batch goes alone).

    Returns (the whole batches as index ranges, the index where the rest begins): the rest is a batch that could
    still take more documents, so it belongs in the buffer."""
    batches: list[range] = []
    start, count, size = 0, 0, 1  # size: the body so far, "[" included
    for i, n in enumerate(sizes):
        if count and size + n + 1 > max_bytes:  # this one does not fit: the batch so far is full
            batches.append(range(start, i))
            start, count, size = i, 0, 1
        count, size = count + 1, size + n + 1
        if count == max_docs or size >= max_bytes:
            batches.append(range(start, i + 1))
            start, count, size = i + 1, 0, 1
    return batches, start


class FlushStatus(StrEnum):
    """What one flush attempt found."""

    CREATED = "created"  # made a batch
    EXISTS = "exists"  # the batch of this id was made before (a redelivered flush)
    YOUNG = "young"  # a partial batch whose oldest document may still wait for company
    EMPTY = "empty"


@dataclass(frozen=True, slots=True)
class Flush:
    """What one flush attempt did: `created`/`exists` (a batch `batch_id` of `size`), `young`, `empty`."""

    status: FlushStatus
    batch_id: str
    size: int
    wait_s: float = 0.0


class CoalescingBuffer:
    """Push documents, flush batches; one instance per process (stateless apart from the client)."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.r = client
        self.s = settings
        self.p = settings.key_prefix
        self.keys = Keys(settings.key_prefix)
        self._push = client.register_script(_PUSH)
        self._flush = client.register_script(_FLUSH)
        self._batch = client.register_script(_BATCH)

    def key(self, tenant: str, kind: str) -> str:
        return f"{self.p}:buffer:{tenant}:{kind}"

    def push(self, tenant: str, kind: str, items: Sequence[tuple[str, int, str, str]]) -> tuple[int, int, int]:
        """Push (job, position, ExternalId, document JSON) items not pushed before.

        Returns (pushed now, documents waiting, bytes waiting). Safe to repeat: a position is pushed once.
        """
        if not items:
            return 0, int(self.r.llen(self.key(tenant, kind))), 0
        args: list[str | int | float] = [self.p, f"{tenant}|{kind}", self.s.result_ttl_seconds, time.time()]
        for job_id, position, external_id, doc in items:
            args += [job_id, position, external_id, doc]
        pushed, waiting, size = self._push(
            keys=[self.key(tenant, kind), f"{self.key(tenant, kind)}:bytes", f"{self.p}:buffers"], args=args
        )
        return int(pushed), int(waiting), int(size)

    def flush_one(
        self,
        tenant: str,
        kind: str,
        batch_id: str,
        high_water: int,
        *,
        target: str = "softone",
        max_docs: int | None = None,
    ) -> Flush:
        """Make one batch from the buffer's head if it is full or old enough (idempotent per batch id).

        `max_docs`: the target's documents per request (default batch_max_docs; 1 for one-document APIs).
        """
        status, size, extra = self._flush(
            keys=[self.key(tenant, kind), f"{self.key(tenant, kind)}:bytes", f"{self.p}:open_batches"],
            args=[
                self.p, batch_id, max_docs or self.s.batch_max_docs, self.s.batch_max_bytes,
                self.s.batch_max_wait_ms / 1000, time.time(), self.s.result_ttl_seconds, tenant, kind, high_water,
                now_iso(), target,
            ],
        )  # fmt: skip
        wait = float(extra) if status == "young" else 0.0
        return Flush(FlushStatus(status), batch_id, int(size), wait)

    def make_batch(
        self,
        tenant: str,
        kind: str,
        batch_id: str,
        items: Sequence[tuple[str, int, str, str]],
        high_water: int,
        *,
        target: str = "softone",
    ) -> int:
        """Store (job, position, ExternalId, document JSON) items as batch `batch_id`, without the buffer: those
        not assigned before (a redelivery skips what an earlier run stored). Returns how many it holds; 0 when
        none was free (no batch), -1 when the batch exists already."""
        todo = list(items)
        while todo:
            args: list[str | int] = [
                self.p, batch_id, self.s.result_ttl_seconds, tenant, kind, target, high_water, now_iso(),
                dumps([[job_id, position] for job_id, position, _, _ in todo]),
                dumps([external_id for _, _, external_id, _ in todo]),
                "[" + ",".join(doc for _, _, _, doc in todo) + "]",
            ]  # fmt: skip
            for job_id, position, _, _ in todo:
                args += [job_id, position]
            status, *rest = self._batch(keys=[f"{self.p}:open_batches"], args=args)
            if status == "exists":
                return -1
            if status == "stored":
                return int(rest[0])
            taken = {int(i) for i in rest}  # an earlier run assigned these (a redelivery): the batch goes without
            todo = [item for i, item in enumerate(todo) if i not in taken]
        return 0

    def ask_for_flush(self, tenant: str, kind: str, *, now: bool, ttl_ms: int) -> bool:
        """True if no flush of this kind (`now`, or the delayed one) is known to be queued for the buffer: the
        caller queues one. The flag lives `ttl_ms`, past the delay of the flush it stands for."""
        return bool(self.r.set(self.keys.flush_flag(tenant, kind, now), "1", nx=True, px=ttl_ms))

    def flush_started(self, tenant: str, kind: str, *, now: bool) -> None:
        """A flush answering the `now` (or delayed) request starts: documents pushed from now ask for another."""
        self.r.delete(self.keys.flush_flag(tenant, kind, now))

    def clear_flush_flags(self, buffers: Sequence[tuple[str, str]]) -> None:
        """Forget that flushes of these buffers are queued (recovery: those flushes may have died with a worker)."""
        flags = [self.keys.flush_flag(t, k, now) for t, k in buffers for now in (True, False)]
        if flags:
            self.r.delete(*flags)

    def buffers(self) -> list[tuple[str, str]]:
        """Every (tenant, kind) buffer in use."""
        return [tuple(b.split("|", 1)) for b in self.r.smembers(f"{self.p}:buffers")]  # type: ignore[misc]

    def waiting(self, tenant: str, kind: str) -> int:
        return int(self.r.llen(self.key(tenant, kind)))

    def assigned(self, job_id: str) -> dict[int, str]:
        """position -> "buffer" or batch id, for the documents of a job already pushed."""
        return {int(k): v for k, v in self.r.hgetall(f"{self.p}:job:{job_id}:assigned").items()}
