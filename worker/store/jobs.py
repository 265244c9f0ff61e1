"""A job's documents stored a chunk at a time: the documents, their pending records, the records of those refused
at once, and the chunk's intake item, in one transaction. Both producers write jobs this way: `submit()` from
Python (worker/producer/submit.py) and a raw-Redis job message (worker/store/submissions.py, `settle`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from redis.client import Pipeline

from schemas.kinds import Lane
from worker.store.intake import IntakeQueue, Item
from worker.store.records import RecordUpdate
from worker.store.results import ResultsStore

__all__ = ["JobChunk", "JobRef", "queue_chunk", "store_chunk"]


class JobRef(NamedTuple):
    """The job a chunk is of: its id, and the tenant and lane its intake items queue under (its hash says the same:
    fields `tenant` and `lane`)."""

    job_id: str
    tenant: str
    lane: Lane


@dataclass(frozen=True, slots=True)
class JobChunk:
    """Documents [start, start + len(documents)) of a job: their ExternalIds and JSON texts, the records of those
    refused at once (a credential in them: never pending, so no worker validates or sends them), and one intake
    item for them all."""

    start: int
    external_ids: Sequence[str]
    documents: Sequence[str]
    refused: Sequence[RecordUpdate] = ()


def queue_chunk(pipe: Pipeline, results: ResultsStore, intake: IntakeQueue, job: JobRef, chunk: JobChunk) -> None:
    """`store_chunk`'s commands, queued on the caller's transaction."""
    results.append_documents(job.job_id, chunk.start, chunk.documents, chunk.external_ids, pipe=pipe)
    results.queue_records(pipe, chunk.refused)
    end = chunk.start + len(chunk.documents)
    intake.push([Item(job.job_id, chunk.start, end, job.tenant, job.lane)], pipe=pipe)


def store_chunk(results: ResultsStore, intake: IntakeQueue, job: JobRef, chunk: JobChunk) -> None:
    """Store a chunk of an open job and queue it for intake, in one transaction (on the results store's client)."""
    pipe = results.r.pipeline(transaction=True)
    queue_chunk(pipe, results, intake, job, chunk)
    pipe.execute()
