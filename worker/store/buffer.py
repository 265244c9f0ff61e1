"""The coalescing buffer: documents of many jobs gathered per (tenant, kind) into array POSTs.

Valid, claimed documents are pushed into a Redis list per tenant and kind; a flush takes up to
`batch_max_docs` documents / `batch_max_bytes` bytes from its head and turns them into a stored batch, in
one Lua script. A document is therefore always either in the buffer or in exactly one batch, whatever
process dies when: nothing lives only in a worker's memory. A batch is flushed when it is full, or when
its oldest document has waited `batch_max_wait_ms`.

Documents that fill whole batches on their own (a big file's chunk, or a drain of many small jobs) need no
company: intake stores them as batches at once (`make_batch`, cut by `full_batches` with the flush's own
limits) and pushes only the rest here. Either way a document is assigned once, in one Lua script.

Keys (prefix p; worker/store/keys.py):
    {p}:buffer:{tenant}:{kind}          list    items {t: pushed at, j: job, p: position, x: ExternalId, d: JSON}
    {p}:buffer:{tenant}:{kind}:bytes    string  bytes of the documents in the list
    {p}:buffers                         set     "tenant|kind" of every buffer that has been used
    {p}:job:{job_id}:assigned           hash    position -> "buffer" or the batch id (a document is pushed once)

Scripts (worker/store/lua/): buffer_push.lua, buffer_flush.lua and make_batch.lua, the last two storing a batch
with the one function of store_batch.lua.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import cast

from worker.fastjson import dumps
from worker.settings import Settings
from worker.store.client import Arg, RedisClient
from worker.store.keys import Keys
from worker.store.records import now_iso
from worker.store.scripts import load_script


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

    def __init__(self, client: RedisClient, settings: Settings) -> None:
        self.r = client
        self.s = settings
        self.p = settings.key_prefix
        self.keys = Keys(settings.key_prefix)
        self._push = load_script(client, "buffer_push")
        self._flush = load_script(client, "buffer_flush")
        self._batch = load_script(client, "make_batch")

    def push(self, tenant: str, kind: str, items: Sequence[tuple[str, int, str, str]]) -> tuple[int, int, int]:
        """Push (job, position, ExternalId, document JSON) items not pushed before.

        Returns (pushed now, documents waiting, bytes waiting). Safe to repeat: a position is pushed once.
        """
        keys = self.keys
        if not items:
            return 0, int(self.r.llen(keys.buffer(tenant, kind))), 0
        args: list[Arg] = [self.p, f"{tenant}|{kind}", self.s.result_ttl_seconds, time.time()]
        for job_id, position, external_id, doc in items:
            args += [job_id, position, external_id, doc]
        pushed, waiting, size = self._push(
            keys=[keys.buffer(tenant, kind), keys.buffer_bytes(tenant, kind), keys.buffers], args=args
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
        keys = self.keys
        status, size, extra = self._flush(
            keys=[keys.buffer(tenant, kind), keys.buffer_bytes(tenant, kind), keys.open_batches],
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
            args: list[Arg] = [
                self.p, batch_id, self.s.result_ttl_seconds, tenant, kind, target, high_water, now_iso(),
                dumps([[job_id, position] for job_id, position, _, _ in todo]),
                dumps([external_id for _, _, external_id, _ in todo]),
                "[" + ",".join(doc for _, _, _, doc in todo) + "]",
            ]  # fmt: skip
            for job_id, position, _, _ in todo:
                args += [job_id, position]
            status, *rest = self._batch(keys=[self.keys.open_batches], args=args)
            if status == "exists":
                return -1
            if status == "stored":
                return int(rest[0])
            taken = {int(i) for i in rest}  # an earlier run assigned these (a redelivery): the batch goes without
            todo = [item for i, item in enumerate(todo) if i not in taken]
        return 0

    def buffers(self) -> list[tuple[str, str]]:
        """Every (tenant, kind) buffer in use."""
        members = cast(set[str], self.r.smembers(self.keys.buffers))
        return [cast(tuple[str, str], tuple(b.split("|", 1))) for b in members]  # push writes "tenant|kind"

    def waiting(self, tenant: str, kind: str) -> int:
        return int(self.r.llen(self.keys.buffer(tenant, kind)))

    def assigned(self, job_id: str) -> dict[int, str]:
        """position -> "buffer" or batch id, for the documents of a job already pushed."""
        assigned = cast(dict[str, str], self.r.hgetall(self.keys.job_assigned(job_id)))
        return {int(k): v for k, v in assigned.items()}
