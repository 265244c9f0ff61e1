"""Producing from any language: a job is one JSON message pushed onto a Redis list; here messages become jobs.

The contract (docs/reference.md, "Producing from any language"; schema: schemas/job-envelope.schema.json):

    LPUSH {p}:submit '{"job_id": "...", "tenant": "...", "kind": "customer_invoice", "documents": [...]}'
    HGETALL {p}:job:{job_id}            status and counts; `rejected` with a `reason` if the message was refused
    HGETALL {p}:job:{job_id}:records    position -> each document's outcome (its Key, or errors by field path)

A producer whose own source broke part-way (a file cut short, a bad line) sends the documents it read before,
with `"source_error": {"line": 1501, "reason": "not valid JSON"}` (line optional): the job is stored and processed
as any, and finishes `incomplete` whatever its documents' outcomes, its hash holding `source_error` and
`source_error_line`. Final statuses: succeeded, partial, failed, incomplete, rejected.

How a message travels. A listener thread in every worker that consumes the intake queue (a Celery bootstep)
takes the oldest message with one Lua call that moves it to a key of its own (`held`), and sends the task
`erpsync.accept_submission` with the message's id only. The task (`accept`) checks the message — size, UTF-8,
JSON, envelope schema, tenant, target, number of documents, job id not used before — and stores it as a job
exactly as `worker.producer.submit.submit()` does, or rejects it with a reason, in one MULTI with the removal of
the held message (worker/store/submissions.py, SubmissionQueue.settle). So a message is never lost (a worker that
dies after the move leaves its id in the held set, and a starting worker sends its task again) and never applied
twice (a second run finds it gone).

Keys (prefix p):
    {p}:submit               list    job messages as producers pushed them (LPUSH); taken oldest first (RPOP)
    {p}:submit:held:{id}     string  a taken message, until its task has stored or rejected it
    {p}:submit:held          set     the ids of taken messages
    {p}:rejected             list    newest first, capped: one JSON entry per rejected message (id, job id,
                                     reason, size, sha256; never the content)

Tenants cannot reach each other by crafting a message: ERP addresses and credentials come only from the
worker's tenant configuration (a message with any field but the contract's is rejected), and a job id that
exists, whoever's it is, is never added to or overwritten: the message is logged as ignored. Reasons name
fields and rules, never the values sent (documents hold personal data; a misplaced field may be a secret).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from schemas.envelope import JOB_ID_PATTERN, TENANT_PATTERN, DocumentKind, JobEnvelope, Lane, Target
from schemas.jsonschema import JobMessage
from schemas.targets import job_document_type
from worker.errors import ConfigurationError, RetryLater
from worker.pipeline.intake import request_intake
from worker.pipeline.queue import Enqueue
from worker.producer.submit import CREDENTIAL_IN_DOCUMENT, CredentialScan, encoded_chunks
from worker.settings import Settings, get_settings
from worker.store.client import RedisClient, get_redis
from worker.store.jobs import JobChunk, SourceBreak
from worker.store.records import FAILED, Record, RecordUpdate
from worker.store.submissions import HEAD_BYTES, NewJob, Rejection, SubmissionQueue

log = logging.getLogger(__name__)


class Settled(StrEnum):
    """What became of a held message."""

    ACCEPTED = "accepted"  # stored as a job
    REJECTED = "rejected"  # refused, with a reason
    GONE = "gone"  # settled by another run of its task already


ACCEPTED, REJECTED, GONE = Settled.ACCEPTED, Settled.REJECTED, Settled.GONE
#: A worker whose tenants file cannot be read tries again this often (the file is re-read when it changes).
CONFIGURATION_RETRY_SECONDS = 30
#: Entries kept in {p}:rejected: weeks of a misbehaving producer, a few MB of Redis at most.
REJECTED_KEEP = 10_000
_MAX_REASONS = 10
_JOB_ID = re.compile(JOB_ID_PATTERN)
_TENANT = re.compile(TENANT_PATTERN)
_TARGETS = frozenset(t.value for t in Target)
_KINDS = frozenset(k.value for k in DocumentKind)
_SUBMISSION_ID = re.compile(r"^[0-9]{8}T[0-9]{6}-[0-9a-f]{12}$")
# Best effort for messages that are not JSON: the first `"job_id": "<a valid id>"` in the raw bytes.
_JOB_ID_IN_TEXT = re.compile(rb'"job_id"\s*:\s*"([A-Za-z0-9][A-Za-z0-9_.-]{0,79})"')
# A \uD800-\uDFFF escape may decode to half a surrogate pair: text that cannot be stored as UTF-8.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
# Field names are shown in reasons only when they look like field names (a key is producer input too).
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_$@-]{1,64}$")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one message: a job (`accepted`), a rejection with its reason, or nothing (`gone`:
    another run of the task settled it first). `chunks`: documents per intake item queued."""

    submission_id: str
    status: Settled
    job_id: str | None = None
    reason: str | None = None
    chunks: tuple[int, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "submission": self.submission_id,
            "status": self.status,
            "job_id": self.job_id,
            "reason": self.reason,
            "documents": sum(self.chunks),
        }


@dataclass(slots=True)
class _Verdict:
    """The checks' result: either an envelope with its encoded chunks and lane (the message's `priority`, or by
    its size), or a reason. `known`: the message's fields that passed their own checks (job_id, tenant, target,
    kind), for a rejected job's record."""

    known: dict[str, str]
    reason: str | None = None
    envelope: JobEnvelope | None = None
    chunks: list[tuple[list[str], list[str], list[int]]] = field(default_factory=list)
    lane: Lane = Lane.BULK
    broke: SourceBreak | None = None  # the message's `source_error`: the job will be `incomplete`


class _Rejected(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def accept(client: RedisClient, settings: Settings, submission_id: str) -> Outcome:
    """Store a held message as a job, or reject it; idempotent (a settled message is gone: `GONE`).

    Raises only for Redis errors (the task retries) and for a worker configuration that cannot be read
    (ConfigurationError: not the message's fault, so it stays held). Never for anything in the message.
    """
    if not _SUBMISSION_ID.fullmatch(submission_id):
        log.error("submission id %r is not one of ours; nothing done", submission_id[:40])
        return Outcome(submission_id[:40], GONE)
    queue = SubmissionQueue(client, settings)
    read = queue.read(submission_id, settings.max_message_bytes)
    if read is None:
        queue.forget(submission_id)
        return Outcome(submission_id, GONE)
    raw, size, sha256 = read
    if size > settings.max_message_bytes:
        verdict = _Verdict(
            _known_in_text(raw),
            f"message: {size} bytes, above the limit of {settings.max_message_bytes} (ERPSYNC_MAX_MESSAGE_BYTES)",
        )
    else:
        verdict = _examine(raw, settings)
    return _settle(queue, submission_id, verdict, size, sha256)


def _examine(raw: bytes, settings: Settings) -> _Verdict:
    known: dict[str, str] = {}
    try:
        return _check(raw, settings, known)
    except _Rejected as rejected:
        return _Verdict(known or _known_in_text(raw), rejected.reason)
    except RecursionError:
        return _Verdict(known or _known_in_text(raw), "message: nested too deeply")
    except ConfigurationError:
        raise  # the worker's tenants file is unreadable: not the message's fault, it stays held
    except Exception:
        # A message we could not judge must not stay held for ever, nor fail its task again and again: it is
        # rejected, and the log has the trace for us (not the content).
        log.exception("a job message could not be checked; it is rejected")
        return _Verdict(known or _known_in_text(raw), "message: could not be checked (an erpsync error; see its log)")


def _check(raw: bytes, settings: Settings, known: dict[str, str]) -> _Verdict:
    """The checks, in the documented order; `known` is filled as fields pass."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Rejected(f"message: not UTF-8 text (invalid byte at offset {exc.start})") from None
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise _Rejected(f"message: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except _NotJson as exc:
        raise _Rejected(f"message: not valid JSON: {exc}") from None
    except ValueError:  # the one other: an integer of more digits than Python converts (4,300)
        raise _Rejected("message: not valid JSON here: a number has too many digits") from None
    if not isinstance(data, dict):
        raise _Rejected(f"message: a job message must be a JSON object, got {_json_type(data)}")
    known.update(_known_fields(data))
    if _SURROGATE_ESCAPE.search(text) and not _is_text(data):
        raise _Rejected("message: a \\uD800-\\uDFFF escape without its pair: not text that can be stored")
    try:
        message: Any = JobMessage.model_validate(data)
    except ValidationError as exc:
        raise _Rejected(_reasons(exc)) from None
    tenants = settings.tenants()  # a broken tenants file raises: the worker's fault, the message stays held
    config = tenants.get(message.tenant)
    if config is None:
        raise _Rejected("tenant: not a configured tenant (ERPSYNC_TENANTS_FILE)")
    if message.target is not None and message.target is not config.target:
        raise _Rejected(f"target: the tenant is configured for {config.target.value}, not {message.target.value}")
    try:
        envelope = JobEnvelope(
            job_id=message.job_id,
            tenant=message.tenant,
            target=config.target,
            kind=message.kind,
            documents=[{}],  # documents are validated one by one in intake, as for every job
            source=message.source,
            priority=message.priority,
            operation=message.operation,
        )
    except ValidationError as exc:
        raise _Rejected(_reasons(exc, loc_of_model="kind")) from None
    known["target"] = envelope.target.value
    if len(message.documents) > settings.max_job_documents:
        raise _Rejected(
            f"documents: {len(message.documents)} documents, above the limit of {settings.max_job_documents} "
            "(ERPSYNC_MAX_JOB_DOCUMENTS): split the job"
        )
    doc_type = job_document_type(envelope.target, envelope.kind, envelope.operation)
    scan = CredentialScan(settings)  # a document holding one of our credentials is refused alone, stored masked
    chunks = list(encoded_chunks(message.documents, envelope.job_id, settings.intake_chunk_docs, doc_type, scan))
    lane = envelope.priority or Lane.for_size(len(message.documents), settings.interactive_max_documents)
    said = message.source_error  # the producer's source broke part-way: the job is kept, and `incomplete`
    broke = None if said is None else SourceBreak(said.reason, said.line)
    return _Verdict(known, envelope=envelope, chunks=chunks, lane=lane, broke=broke)


def _settle(queue: SubmissionQueue, submission_id: str, verdict: _Verdict, size: int, sha256: str) -> Outcome:
    """Write the job or the rejection and drop the held message, in one MULTI (SubmissionQueue.settle).

    The store watches the held message and the job: if another run of this task (a redelivery) settles the
    message first, we find it gone and do nothing; if the job id gets used meanwhile, we see it."""
    job_id = verdict.known.get("job_id")

    def choose(used: bool) -> NewJob | Rejection:
        if verdict.envelope is not None and not used:
            return _job(submission_id, verdict)
        return _rejection(submission_id, verdict, used, size, sha256)

    settled = queue.settle(submission_id, job_id, choose)
    if settled is None:
        return Outcome(submission_id, GONE, job_id)
    if isinstance(settled, NewJob):
        sizes = tuple(len(chunk.documents) for chunk in settled.chunks)
        return Outcome(submission_id, ACCEPTED, settled.meta["job_id"], chunks=sizes)
    return Outcome(submission_id, REJECTED, job_id, settled.reason)


def _job(submission_id: str, verdict: _Verdict) -> NewJob:
    """The job, as worker/producer/submit.py's submit() stores one: its fields (its lane too), ExternalIds,
    documents, and those refused for a credential in them (never pending: their records say why)."""
    envelope = verdict.envelope
    assert envelope is not None
    meta = {
        "job_id": envelope.job_id,
        "tenant": envelope.tenant,
        "target": envelope.target.value,
        "kind": envelope.kind.value,
        "lane": verdict.lane.value,
        "operation": envelope.operation.value,
        "source": envelope.source or "",
        "submitted_at": envelope.submitted_at.isoformat(),
        "submission": submission_id,
        **(verdict.broke.fields() if verdict.broke is not None else {}),
    }
    start, chunks = 0, []
    for external_ids, encoded, refused in verdict.chunks:
        failed = [
            RecordUpdate(envelope.job_id, start + i, Record(external_ids[i], FAILED, error=CREDENTIAL_IN_DOCUMENT))
            for i in refused
        ]
        chunks.append(JobChunk(start, external_ids, encoded, failed))
        start += len(encoded)
    return NewJob(meta, chunks)


def _rejection(submission_id: str, verdict: _Verdict, used: bool, size: int, sha256: str) -> Rejection:
    """The rejected job's record (when its id is known and free) and, always, the entry in {p}:rejected."""
    job_id = verdict.known.get("job_id")
    if verdict.reason is None:  # a valid message whose job id is taken: a producer's retry, or a clash
        reason = "job_id: job id already submitted; this message was ignored"
    elif used:
        reason = f"{verdict.reason} (job id already submitted: that job was not touched)"
    else:
        reason = verdict.reason
    job = (
        {**verdict.known, "submission": submission_id, "bytes": str(size)} if job_id is not None and not used else None
    )
    entry = {
        "id": submission_id,
        "job_id": job_id,
        "tenant": verdict.known.get("tenant"),
        "reason": reason,
        "bytes": size,
        "sha256": sha256,
    }
    return Rejection(entry, REJECTED_KEEP, reason, job)


# ----- reading what a message says, without echoing it


class _NotJson(ValueError):
    pass


def _no_constant(name: str) -> Any:
    raise _NotJson(f"{name} is not a JSON number")


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def _is_text(value: Any) -> bool:
    """Whether every string (keys too) of a parsed message can be written as UTF-8."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _known_fields(data: dict[str, Any]) -> dict[str, str]:
    """The message's job_id, tenant, target and kind, each only if it is valid on its own."""
    known: dict[str, str] = {}
    for name, pattern in (("job_id", _JOB_ID), ("tenant", _TENANT)):
        value = data.get(name)
        if isinstance(value, str) and pattern.fullmatch(value):
            known[name] = value
    for name, values in (("target", _TARGETS), ("kind", _KINDS)):
        value = data.get(name)
        if isinstance(value, str) and value in values:
            known[name] = value
    return known


def _known_in_text(raw: bytes) -> dict[str, str]:
    """The job id of a message that cannot be parsed, if its first bytes show one."""
    match = _JOB_ID_IN_TEXT.search(raw[:HEAD_BYTES])
    return {"job_id": match.group(1).decode("ascii")} if match else {}


def _reasons(exc: ValidationError, loc_of_model: str = "") -> str:
    """`documents.3: Input should be a valid dictionary; kind: ...`: field paths and rules, never the input."""
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    parts = []
    for error in errors[:_MAX_REASONS]:
        path = ".".join(str(p) if isinstance(p, int) or _PLAIN_NAME.fullmatch(p) else "<field>" for p in error["loc"])
        msg = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "missing":
            msg = "is required"
        elif error["type"] == "extra_forbidden":
            msg = "is not a field of a job message (see schemas/job-envelope.schema.json)"
        path = path or loc_of_model
        parts.append(f"{path}: {msg}" if path else msg)
    if len(errors) > _MAX_REASONS:
        parts.append(f"and {len(errors) - _MAX_REASONS} more")
    return "; ".join(parts)


def settle_message(enqueue: Enqueue, submission_id: str) -> dict[str, Any]:
    """`accept` a held message and queue the intake of the job it became; what became of it, as ids and counts.

    A worker whose tenants file cannot be read cannot judge the message: it stays held and comes back in
    CONFIGURATION_RETRY_SECONDS (RetryLater), and at every worker start."""
    settings = get_settings()
    try:
        outcome = accept(get_redis(settings), settings, submission_id)
    except ConfigurationError as exc:
        log.error("submission=%s cannot be checked: %s", submission_id, exc)
        raise RetryLater(CONFIGURATION_RETRY_SECONDS) from None
    if outcome.status == ACCEPTED:
        for documents in outcome.chunks:
            request_intake(enqueue, documents, job_id=outcome.job_id)
        log.info("submission=%s job=%s accepted documents=%d", submission_id, outcome.job_id, sum(outcome.chunks))
    elif outcome.status == REJECTED:
        # The reason names fields and rules only (never values), so it may be logged.
        log.warning("submission=%s job=%s rejected: %s", submission_id, outcome.job_id, outcome.reason)
    else:
        log.info("submission=%s already settled (a redelivered task); nothing to do", submission_id)
    return outcome.as_dict()
