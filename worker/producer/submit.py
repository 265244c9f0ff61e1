"""The producer side in Python: read documents, store a job, queue it for intake. `submit()` returns the id.

Every job goes through here (the CLI, the benchmark, dead-letter replay), so the Redis layout has one writer.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_core import to_json

from schemas import DocumentKind, JobEnvelope, Lane, Operation, Target
from schemas.envelope import derived_external_id
from schemas.targets import TARGET_NAMES, DocumentType, document_type, job_document_type, kind_refusal
from worker.celery_app.enqueue import publish
from worker.errors import ConfigurationError, JobIncomplete, SourceError, SubmitError
from worker.pipeline.intake import request_intake
from worker.pipeline.queue import Enqueue
from worker.producer.ingest import open_source
from worker.redaction import MASK
from worker.settings import Settings, get_settings
from worker.store.client import get_redis
from worker.store.intake import IntakeQueue
from worker.store.jobs import JobChunk, JobRef, SourceBreak, close_job, store_chunk
from worker.store.records import FAILED, JOB_FINAL, Record, RecordUpdate
from worker.store.results import ResultsStore


def new_job_id() -> str:
    """Sortable by time, unique without coordination: `20261120T231607-3f9c2a1b7d`."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:10]}"


def _external_id_of(doc: Any, job_id: str, position: int, doc_type: DocumentType | None = None) -> str:
    """The document's id for the duplicate index (schemas/targets.py says which field holds it; SoftOne's
    ExternalId by default), filled in (on the document too, where the target's field is ours to fill) when
    the producer left it out."""
    doc_type = doc_type or document_type(Target.SOFTONE, DocumentKind.CUSTOMER_INVOICE)
    field = doc_type.id_field
    if not isinstance(doc, dict) or field is None:
        return derived_external_id(job_id, position)
    value = doc.get(field)
    if isinstance(value, bool) or not isinstance(value, str | int | None):
        return derived_external_id(job_id, position)  # validation reports the bad type
    text = "" if value is None else str(value).strip()
    if text:
        if doc_type.fill_id:
            doc[field] = text  # what the index, the results and the ERP see must be the same id
        return text
    if not doc_type.fill_id:
        return derived_external_id(job_id, position)
    doc[field] = derived_external_id(job_id, position)
    return doc[field]


CREDENTIAL_IN_DOCUMENT = (
    "the document contains a credential configured in this worker (an API key, token or password); it is refused "
    "so that the credential is never sent to an ERP, logged or kept, and the stored copy has it masked"
)


class CredentialScan:
    """Finds this deployment's credentials (Settings.secret_values) inside encoded documents.

    A document that carries one is refused on its own, and stored with the value masked: a credential must not
    reach an ERP, a log line or the results store, whatever a producer puts in a free-text field.
    """

    def __init__(self, settings: Settings) -> None:
        values = settings.secret_values()
        # Encoded documents are JSON text (`encode_document`): a value with quotes or backslashes appears escaped.
        forms = {form for v in values for form in (v, encode_document(v)[1:-1])}
        ordered = sorted(forms, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def mask(self, text: str) -> str | None:
        """`text` with every credential masked, or None when it holds none."""
        if self._pattern is None or self._pattern.search(text) is None:
            return None
        return self._pattern.sub(MASK, text)


def submit(
    documents: Iterable[Any],
    *,
    kind: DocumentKind | str = DocumentKind.CUSTOMER_INVOICE,
    tenant: str | None = None,
    target: Target | str | None = None,
    source: str | None = None,
    job_id: str | None = None,
    priority: Lane | str | None = None,
    operation: Operation | str = Operation.CREATE,
    settings: Settings | None = None,
    on_progress: Callable[[int], None] | None = None,
    enqueue: Enqueue = publish,
) -> str:
    """Store a job's documents in Redis and queue them for intake; returns the job id.

    Documents are raw JSON objects (dicts), read from `documents` as it yields them and stored a chunk
    (ERPSYNC_INTAKE_CHUNK_DOCS) at a time: memory stays flat whatever the size of the source, and the
    workers start on the first chunk while the rest is still being read. Each document is validated on
    its own by the worker, so a bad one is reported per document and never rejects the job.

    `target` defaults to the tenant's; a job for another target than the tenant's is refused. `priority` is the
    job's lane, `interactive` or `bulk` (schemas.Lane); without it the job is sized: interactive if it has at most
    ERPSYNC_INTERACTIVE_MAX_DOCUMENTS documents (`choose_lane`). `operation` "upsert" sends a document created before
    with other content as an update, where its ERP takes updates (schemas.Operation). `enqueue` publishes the intake
    tasks (the Celery app's broker by default).

    Raises SubmitError when the job as a whole is bad (unknown tenant, no documents). If the source breaks
    part-way (it raises: a SourceError names the line and reason; any other error is named by its type only), or
    holds more than ERPSYNC_MAX_JOB_DOCUMENTS documents, every document read before is stored, the job is closed
    `incomplete` with the line and the reason in its hash (`source_error_line`, `source_error`), and JobIncomplete
    (a SubmitError with the job id, the documents stored, the line and the reason) is raised once it is: those
    documents are processed and reported like any job's. A source that breaks before its first document leaves
    no job: the SourceError is raised as it is.
    """
    settings = settings or get_settings()
    job_id = job_id or new_job_id()
    tenant = tenant or settings.default_tenant
    config = settings.tenant(tenant)  # unknown tenant: refuse now, not later in the worker
    if target is not None and str(target) != config.target.value:
        raise SubmitError(f"invalid job: tenant {tenant!r} is configured for {config.target.value}, not {target}")
    if (refusal := kind_refusal(config.target, kind)) is not None:
        raise SubmitError(f"tenant {tenant!r} is at {TARGET_NAMES[config.target]}, which {refusal}")
    try:
        envelope = JobEnvelope(
            # Documents are validated one by one in the worker; here only the job's own fields are checked.
            job_id=job_id,
            tenant=tenant,
            target=config.target.value,
            kind=kind,
            documents=[{}],
            source=source,
            priority=priority,
            operation=operation,
        )
    except (ValidationError, ValueError) as exc:
        raise SubmitError(f"invalid job: {_short(exc)}") from None
    doc_type = job_document_type(envelope.target, envelope.kind, envelope.operation)
    broke: list[Exception] = []  # what stopped the source, if it did not end
    chunks = _until_broken(
        encoded_chunks(documents, job_id, settings.intake_chunk_docs, doc_type, CredentialScan(settings)), broke
    )
    first = next(chunks, None)  # read before storing anything: an empty source leaves no job behind
    if first is None:
        raise _nothing_read(broke)
    lane, read = choose_lane(envelope.priority, first, chunks, settings)

    client = get_redis(settings)
    store = ResultsStore(client, settings)
    store.open_job(
        {
            "job_id": job_id,
            "tenant": envelope.tenant,
            "target": envelope.target.value,
            "kind": envelope.kind.value,
            "lane": lane.value,
            "operation": envelope.operation.value,
            "source": source or "",
            "submitted_at": envelope.submitted_at.isoformat(),
        }
    )
    job = JobRef(job_id, envelope.tenant, lane)
    stored = _store_all(itertools.chain(read, chunks), store, job, settings, enqueue, on_progress, broke)
    if not broke:
        store.close_job(job_id)
        return job_id
    why = _source_break(broke[0])
    close_job(store, job_id, why)
    raise JobIncomplete(job_id, stored, why.reason, why.line)


def _store_all(
    chunks: Iterator[Chunk],
    store: ResultsStore,
    job: JobRef,
    settings: Settings,
    enqueue: Enqueue,
    on_progress: Callable[[int], None] | None,
    broke: list[Exception],
) -> int:
    """Store the job's chunks as they are read and queue them for intake; returns the number of documents stored.
    Above ERPSYNC_MAX_JOB_DOCUMENTS the rest is not read, and `broke` says why."""
    intake, job_id, stored = IntakeQueue(store.r, settings), job.job_id, 0
    try:
        for external_ids, encoded, refused in chunks:
            room = settings.max_job_documents - stored
            if len(encoded) > room:  # the job keeps the first ERPSYNC_MAX_JOB_DOCUMENTS documents, and says so
                external_ids, encoded = external_ids[:room], encoded[:room]
                refused = [i for i in refused if i < room]
                broke.insert(0, _TooMany(settings.max_job_documents))  # the first cut, if the source broke after
            if encoded:
                failed = [
                    RecordUpdate(job_id, stored + i, Record(external_ids[i], FAILED, error=CREDENTIAL_IN_DOCUMENT))
                    for i in refused
                ]
                store_chunk(store, intake, job, JobChunk(stored, external_ids, encoded, failed))
                request_intake(enqueue, len(encoded), job_id=job_id)
                stored += len(encoded)
                if on_progress:
                    on_progress(len(encoded))
            if broke:
                break
    except BaseException as exc:
        # Stopped while storing (Redis went, Ctrl-C): what was stored is processed and reported, and the job says
        # it is not the whole source. A Redis that is gone cannot be told (the job stays `receiving`, ResultsStore):
        # the error that stopped us is the one to raise.
        with contextlib.suppress(Exception):
            close_job(store, job_id, SourceBreak(f"submitting stopped part-way ({type(exc).__name__})"))
        raise
    return stored


def _nothing_read(broke: list[Exception]) -> SubmitError:
    """The error of a source that gave no document: empty, or broken before its first one (nothing to keep: no
    job is made)."""
    if not broke:
        return SubmitError("the job has no documents")
    if isinstance(broke[0], SubmitError):
        return broke[0]
    return SubmitError(f"{_source_break(broke[0]).reason}; no document was read, so no job was created")


class _TooMany(Exception):
    """The source has more documents than a job may hold (ERPSYNC_MAX_JOB_DOCUMENTS)."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"more than {limit} documents in one job (ERPSYNC_MAX_JOB_DOCUMENTS): the rest of the file was not read; "
            "split the file"
        )


def _until_broken(chunks: Iterator[Chunk], broke: list[Exception]) -> Iterator[Chunk]:
    """`chunks` until they end or the source raises; what it raised is appended to `broke`."""
    try:
        yield from chunks
    except Exception as exc:  # whatever stops the source: the job keeps what came before it
        broke.append(exc)


def _source_break(exc: Exception) -> SourceBreak:
    """Where and why a source stopped, for the job: a SourceError's line and reason; our own limit's message; of
    anything else its type only (its message may quote a document or a credential)."""
    if isinstance(exc, SourceError):
        return SourceBreak(exc.reason, exc.line)
    if isinstance(exc, _TooMany):
        return SourceBreak(str(exc))
    if isinstance(exc, OSError):
        return SourceBreak(f"the source could not be read on ({exc.strerror or type(exc).__name__})")
    return SourceBreak(f"the source of the documents raised {type(exc).__name__}")


Chunk = tuple[list[str], list[str], list[int]]
"""What `encoded_chunks` yields: ExternalIds, JSON texts, offsets of refused documents."""


def choose_lane(
    priority: Lane | None, first: Chunk, chunks: Iterator[Chunk], settings: Settings
) -> tuple[Lane, list[Chunk]]:
    """The lane of a job read a chunk at a time, decided before its first chunk is stored, and the chunks read to
    decide it (`first` and perhaps more), to be stored before the rest of `chunks`.

    The producer's `priority` if it gave one; else by size (Lane.for_size): chunks are read ahead until the job is
    known to be bulk (above ERPSYNC_INTERACTIVE_MAX_DOCUMENTS documents) or the source ends, so at most that many
    documents (and one chunk) wait in memory, and a job is in the lane a raw producer's message of the same documents
    gets. With the default settings (100, chunks of 1,000) the first chunk always decides."""
    if priority is not None:
        return priority, [first]
    read, total = [first], len(first[1])
    while total <= settings.interactive_max_documents and len(read[-1][1]) >= settings.intake_chunk_docs:
        more = next(chunks, None)  # the last chunk read was full: the source may go on
        if more is None:
            break
        read.append(more)
        total += len(more[1])
    return Lane.for_size(total, settings.interactive_max_documents), read


def encoded_chunks(
    documents: Iterable[Any], job_id: str, size: int, doc_type: DocumentType, scan: CredentialScan
) -> Iterator[Chunk]:
    """(ExternalIds, JSON texts, offsets of refused documents) of `size` documents at a time; each document is
    encoded as soon as it is read, so no more than one document is held as Python objects (flat memory for any
    file). A document holding a credential is refused, its text masked. When `documents` raises part-way, the
    documents read before are yielded (a last, shorter chunk) before the error is raised."""
    external_ids: list[str] = []
    encoded: list[str] = []
    refused: list[int] = []
    try:
        for position, doc in enumerate(documents):
            external_id = _external_id_of(doc, job_id, position, doc_type)
            text = encode_document(doc)
            masked = scan.mask(text)
            if masked is not None:
                refused.append(len(encoded))
                text = masked
                external_id = scan.mask(external_id) or external_id
            external_ids.append(external_id)
            encoded.append(text)
            if len(encoded) == size:
                yield external_ids, encoded, refused
                external_ids, encoded, refused = [], [], []
    except Exception:
        # The source broke part-way: the documents read before it are whole, and are yielded before its error.
        if encoded:
            yield external_ids, encoded, refused
        raise
    if encoded:
        yield external_ids, encoded, refused


def encode_document(doc: Any) -> str:
    """A document as compact JSON text, by pydantic-core's encoder: the JSON of the stdlib's
    `json.dumps(doc, ensure_ascii=False, separators=(",", ":"))`, with the same escapes and values (a float may be
    written differently, 0.00001 for 1e-05; NaN stays NaN, for the worker to refuse) in a quarter of the time
    (5 against 23 µs for a ten-row invoice). It also encodes what the stdlib cannot, such as a Decimal or a date
    from a Python producer, as text (the models accept amounts and dates as text)."""
    return to_json(doc, inf_nan_mode="constants").decode()


def _short(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            (f"{'.'.join(map(str, e['loc']))}: " if e["loc"] else "") + e["msg"].removeprefix("Value error, ")
            for e in exc.errors(include_url=False, include_input=False)
        )
    return str(exc)


# ----- reading files


def read_documents(path: Path) -> tuple[list[Any], dict[str, Any]]:
    """All documents of a JSON/JSONL/CSV file in a list, and the envelope fields found in it (tenant, kind,
    job_id, source). For small files; `erpsync submit` streams instead (worker/producer/ingest.py)."""
    source = open_source(path)
    return list(source.documents()), source.header


def wait_for(job_id: str, *, timeout: float, settings: Settings | None = None, poll: float = 0.25) -> dict[str, str]:
    """Block until the job is finished (or `timeout` seconds pass); returns the job hash."""
    settings = settings or get_settings()
    store = ResultsStore(get_redis(settings), settings)
    deadline = time.monotonic() + timeout
    while True:
        job = store.job(job_id)
        if job is None:
            raise ConfigurationError(f"job {job_id} is not in the results store")
        if job.get("status") in JOB_FINAL or time.monotonic() >= deadline:
            return job
        time.sleep(poll)
