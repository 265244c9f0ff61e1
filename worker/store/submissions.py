"""The submit list of raw-Redis producers and the messages taken from it (worker/producer/submissions.py).

A held message ends in one transaction (`settle`): as a job, stored as worker/store/results.py stores any (with
its intake items), or as a rejection, together with the removal of the held message. What it becomes is the
producer's decision (`choose`); the store only tells it whether the message's job id is taken, under WATCH.

Keys (prefix p; worker/store/keys.py):
    {p}:submit               list    job messages as producers pushed them (LPUSH); taken oldest first (RPOP)
    {p}:submit:held:{id}     string  a taken message, until its task has stored or rejected it
    {p}:submit:held          set     the ids of taken messages
    {p}:rejected             list    newest first, capped: one entry per rejected message (ResultsStore.rejections)
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import redis
from redis.client import Pipeline

from schemas.kinds import Lane
from worker.settings import Settings
from worker.store.client import RedisClient
from worker.store.intake import IntakeQueue
from worker.store.jobs import JobChunk, JobRef, queue_chunk
from worker.store.keys import Keys
from worker.store.results import ResultsStore
from worker.store.scripts import load_script

__all__ = ["HEAD_BYTES", "NewJob", "Rejection", "SubmissionQueue", "new_submission_id"]

#: A message's job id is looked for in this much of its start when the message cannot be parsed.
HEAD_BYTES = 64 * 1024
_READ_CHUNK = 1 << 20


#: How often `settle` tries again when the keys it watches change under it.
_SETTLE_TRIES = 20


def new_submission_id() -> str:
    """Sortable by time, unique without coordination: `20261120T231607-3f9c2a1b7d4e`."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True, slots=True)
class NewJob:
    """A held message stored as a job: its fields (job_id, tenant, target, kind, lane, ...) and its documents; without
    a `lane`, the job's is chosen by its size (Lane.for_size)."""

    meta: dict[str, str]
    chunks: Sequence[JobChunk] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class Rejection:
    """A held message refused: its entry in the rejection log (newest `keep` kept) and, when its job id is known
    and free, the `rejected` job `job` (its fields) with `reason`."""

    entry: dict[str, Any]
    keep: int
    reason: str
    job: dict[str, str] | None = None


class SubmissionQueue:
    """The submit list and the messages taken from it."""

    def __init__(self, client: RedisClient, settings: Settings) -> None:
        self.r = client
        self.s = settings
        self.keys = Keys(settings.key_prefix)
        self.key = self.keys.submit
        self.held_set = self.keys.submit_held_set
        self._take = load_script(client, "submit_take")

    def held_key(self, submission_id: str) -> str:
        return self.keys.submit_held(submission_id)

    def take(self) -> tuple[str, int] | None:
        """Move the oldest message to a held key of its own: (its id, its size in bytes), or None."""
        submission_id = new_submission_id()
        size = self._take(keys=[self.key, self.held_key(submission_id), self.held_set], args=[submission_id])
        return None if size is None else (submission_id, int(size))

    def held(self) -> list[tuple[str, int]]:
        """(id, size) of every message taken and not yet stored or rejected."""
        ids = sorted(cast(set[str], self.r.smembers(self.held_set)))
        if not ids:
            return []
        pipe = self.r.pipeline(transaction=False)
        for submission_id in ids:
            pipe.strlen(self.held_key(submission_id))
        return list(zip(ids, (int(n) for n in pipe.execute()), strict=True))

    def waiting(self) -> int:
        """Messages not taken yet."""
        return int(self.r.llen(self.key))

    def read(self, submission_id: str, max_bytes: int) -> tuple[bytes, int, str] | None:
        """(content, size, sha256) of a held message, None if it is gone. A message above `max_bytes` is
        read a megabyte at a time for its digest, and only its first bytes are kept."""
        key = self.held_key(submission_id)
        pipe = self.r.pipeline(transaction=False)
        pipe.exists(key)
        pipe.strlen(key)
        exists, size = pipe.execute()
        if not exists:
            return None
        size = int(size)
        # The content as bytes (NEVER_DECODE): the client decodes replies, and a message need not be UTF-8.
        if size <= max_bytes:
            raw: bytes | None = self.r.execute_command("GET", key, NEVER_DECODE=True)  # type: ignore[no-untyped-call]  # redis-py leaves execute_command unannotated
            return None if raw is None else (raw, size, hashlib.sha256(raw).hexdigest())
        digest, head = hashlib.sha256(), b""
        for start in range(0, size, _READ_CHUNK):
            part: bytes = self.r.execute_command(  # type: ignore[no-untyped-call]  # as above
                "GETRANGE", key, start, start + _READ_CHUNK - 1, NEVER_DECODE=True
            )
            if not part:
                return None  # gone while we read: another run of the task has settled it
            digest.update(part)
            head = head or part[:HEAD_BYTES]
        return head, size, digest.hexdigest()

    def forget(self, submission_id: str) -> None:
        """A message found gone (settled by another run of its task) leaves the held set."""
        self.r.srem(self.held_set, submission_id)

    def settle(
        self, submission_id: str, job_id: str | None, choose: Callable[[bool], NewJob | Rejection]
    ) -> NewJob | Rejection | None:
        """Store what `choose` makes of a held message, and drop the message, in one MULTI.

        `choose(used)` is told whether `job_id` (the message's, if it has a valid one) is taken already. WATCH on the
        held message and that job: if another run of this task (a redelivery) settles the message first, it is
        found gone, the held set forgets it and None is returned (nothing written); if the job id gets used
        meanwhile, `choose` is asked again. Returns what was stored. RuntimeError if the keys keep changing."""
        held = self.held_key(submission_id)
        results, intake = ResultsStore(self.r, self.s), IntakeQueue(self.r, self.s)
        job_key = self.keys.job(job_id) if job_id else None
        watched = [held] if job_key is None else [held, job_key]
        for _ in range(_SETTLE_TRIES):
            with self.r.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(*watched)  # type: ignore[no-untyped-call]  # redis-py leaves Pipeline.watch unannotated
                    if not pipe.exists(held):
                        pipe.reset()
                        self.forget(submission_id)
                        return None
                    used = job_key is not None and bool(pipe.exists(job_key))
                    pipe.multi()
                    chosen = choose(used)
                    if isinstance(chosen, NewJob):
                        _queue_job(pipe, results, intake, chosen)
                    else:
                        _queue_rejection(pipe, results, chosen)
                    pipe.delete(held)
                    pipe.srem(self.held_set, submission_id)
                    pipe.execute()
                    return chosen
                except redis.WatchError:
                    continue
        raise RuntimeError(f"submission {submission_id}: its keys kept changing while it was being stored")


def _queue_job(pipe: Pipeline, results: ResultsStore, intake: IntakeQueue, job: NewJob) -> None:
    """The job, stored the way worker/producer/submit.py's submit() stores one: its layout, documents, the records
    of documents refused at once, intake items, and its end of receiving."""
    meta = job.meta
    if not meta.get("lane"):  # sized: the whole job is known
        total = sum(len(chunk.documents) for chunk in job.chunks)
        meta = {**meta, "lane": Lane.for_size(total, results.s.interactive_max_documents).value}
    ref = JobRef(meta["job_id"], meta.get("tenant", ""), Lane(meta["lane"]))
    results.queue_open_job(pipe, meta)
    for chunk in job.chunks:
        queue_chunk(pipe, results, intake, ref, chunk)
    results.queue_close_job(pipe, ref.job_id)


def _queue_rejection(pipe: Pipeline, results: ResultsStore, rejection: Rejection) -> None:
    """The rejected job's record (when its id is known and free) and, always, the entry in the rejection log."""
    if rejection.job is not None:
        results.queue_rejected_job(pipe, rejection.job, rejection.reason)
    results.queue_rejection(pipe, rejection.entry, rejection.keep)
