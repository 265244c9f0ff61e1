"""The intake queue: ranges of job documents waiting to be validated, drained many at a time.

A producer stores a job's documents (in chunks, as it reads them) and pushes one item per chunk here:
`job_id|start|end`. Intake tasks take items until they hold about `intake_chunk_docs` documents and
process them together, so a thousand one-document jobs cost a handful of tasks and Redis round trips
instead of a thousand of each, and a big file's chunks are spread over every worker process.

Taking is an atomic move into the taker's own list (`{p}:intake:taken:{holder}`, the holder being the
Celery task id). A task that dies mid-way is delivered again under the same id and finds what it held
there; processing is idempotent per document (records and buffer positions say what is done).

Keys (prefix p; worker/store/keys.py):
    {p}:intake                  list   items "job_id|start|end" in arrival order
    {p}:intake:taken:{holder}   list   the items one intake task holds
    {p}:intakeq                 string set while a drain task is queued (`ask_for_drain`), cleared as one starts
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import redis

from worker.settings import Settings
from worker.store.keys import Keys
from worker.store.scripts import load_script


@dataclass(frozen=True, slots=True)
class Item:
    """Documents [start, end) of one job."""

    job_id: str
    start: int
    end: int

    def encode(self) -> str:
        return f"{self.job_id}|{self.start}|{self.end}"

    @classmethod
    def decode(cls, text: str) -> Item:
        job_id, start, end = text.rsplit("|", 2)
        return cls(job_id, int(start), int(end))

    @property
    def size(self) -> int:
        return self.end - self.start


class IntakeQueue:
    """Push items, take a batch of them for one holder, let go of them once processed."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.r = client
        self.s = settings
        self.keys = Keys(settings.key_prefix)
        self.key = self.keys.intake
        self._take = load_script(client, "intake_take")

    def push(self, items: Sequence[Item], pipe: redis.client.Pipeline | None = None) -> None:
        """Queue items (on `pipe` when given, so they go in the same transaction as their documents)."""
        if items:
            (pipe or self.r).rpush(self.key, *(i.encode() for i in items))

    def take(self, holder: str, max_docs: int | None = None) -> list[Item]:
        """The holder's items: what it held before, else up to about `max_docs` documents' worth."""
        budget = max_docs or self.s.intake_chunk_docs
        raw = self._take(keys=[self.key, self.taken_key(holder)], args=[budget, self.s.result_ttl_seconds])
        return [Item.decode(x) for x in raw]

    def done(self, holder: str) -> None:
        """The holder's items are processed: forget them."""
        self.r.delete(self.taken_key(holder))

    def waiting(self) -> int:
        """Items queued (not documents)."""
        return int(self.r.llen(self.key))

    def taken_key(self, holder: str) -> str:
        return self.keys.intake_taken(holder)

    def ask_for_drain(self) -> bool:
        """True if no drain task is known to be queued (the caller queues one now); the flag lives 30 s."""
        return bool(self.r.set(self.keys.intake_flag, "1", nx=True, px=30_000))

    def drain_started(self) -> None:
        """A drain task starts: what arrives from now on must ask for another."""
        self.r.delete(self.keys.intake_flag)
