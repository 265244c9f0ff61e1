"""A job's documents stored a chunk at a time: the documents, their pending records, the records of those refused
at once, and the chunk's intake item, in one transaction. Both producers write jobs this way: `submit()` from
Python (worker/producer/submit.py) and a raw-Redis job message (worker/store/submissions.py, `settle`).

A job whose source broke part-way is closed with a `SourceBreak` (`close_job`): its hash gets `source_error` (the
reason) and `source_error_line` (the line, when known), and the job finishes `incomplete` (lua/job_functions.lua)
once every document it holds has its outcome. A raw message says the same with its `source_error` field
(`SourceBreak.fields()` go into the job's fields when it is opened)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from redis.client import Pipeline

from schemas.kinds import Lane
from worker.store.client import queue_script
from worker.store.intake import IntakeQueue, Item
from worker.store.records import RecordUpdate
from worker.store.results import ResultsStore
from worker.store.scripts import load_script

__all__ = ["SOURCE_ERROR_MAX_CHARS", "JobChunk", "JobRef", "SourceBreak", "close_job", "queue_chunk", "store_chunk"]

#: A source error's reason is cut to this length in the job (a producer's text: it must not fill Redis).
SOURCE_ERROR_MAX_CHARS = 500


class SourceBreak(NamedTuple):
    """Why and where a job's source stopped before its end: the reason (for people: what is wrong there, never a
    document's content) and the line of the file, None when unknown. The job keeps the documents read before."""

    reason: str
    line: int | None = None

    def fields(self) -> dict[str, str]:
        """The job hash's fields that say so: `source_error` and, when the line is known, `source_error_line`."""
        fields = {"source_error": self.reason[:SOURCE_ERROR_MAX_CHARS] or "the source broke"}
        if self.line is not None:
            fields["source_error_line"] = str(self.line)
        return fields


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


def close_job(results: ResultsStore, job_id: str, broke: SourceBreak | None = None) -> None:
    """Every document the producer could read is stored: end the job's receiving (ResultsStore.close_job). With
    `broke`, the source stopped before its end: in the same transaction the job gets its `source_error` fields and
    finishes `incomplete` (lua/job_source_error.lua; a job no longer receiving is left as it is)."""
    if broke is None:
        results.close_job(job_id)
        return
    fields = broke.fields()
    pipe = results.r.pipeline(transaction=True)
    queue_script(
        pipe,
        load_script(results.r, "job_source_error"),
        args=[results.p, job_id, fields["source_error"], fields.get("source_error_line", "")],
    )
    results.queue_close_job(pipe, job_id)
    pipe.execute()
