"""Producing from any language: a job is one JSON message pushed onto a Redis list; here messages become jobs.

The contract (README, "Producing from any language"; schema: schemas/job-envelope.schema.json):

    LPUSH {p}:submit '{"job_id": "...", "tenant": "...", "kind": "customer_invoice", "documents": [...]}'
    HGETALL {p}:job:{job_id}            status and counts; `rejected` with a `reason` if the message was refused
    HGETALL {p}:job:{job_id}:records    position -> each document's outcome (its Key, or errors by field path)

How a message travels. A listener thread in every worker that consumes the intake queue (a Celery bootstep)
takes the oldest message with one Lua call that moves it to a key of its own (`held`), and sends the task
`erpsync.accept_submission` with the message's id only. The task (`accept`) checks the message — size, UTF-8,
JSON, envelope schema, tenant, target, number of documents, job id not used before — and stores it as a job
exactly as `worker.producer.submit()` does, or rejects it with a reason, in one MULTI with the removal of
the held message. So a message is never lost (a worker that dies after the move leaves its id in the held
set, and a starting worker sends its task again) and never applied twice (a second run finds it gone).

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

import hashlib
import json
import logging
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis
from celery import bootsteps
from pydantic import ValidationError

from schemas.envelope import JOB_ID_PATTERN, TENANT_PATTERN, DocumentKind, JobEnvelope, Target
from schemas.jsonschema import JobMessage
from schemas.targets import document_type
from worker.errors import ConfigurationError
from worker.intake import IntakeQueue, Item
from worker.producer import CREDENTIAL_IN_DOCUMENT, CredentialScan, encoded_chunks
from worker.results import FAILED, Record, ResultsStore
from worker.settings import Settings

log = logging.getLogger(__name__)

ACCEPTED, REJECTED, GONE = "accepted", "rejected", "gone"
#: Entries kept in {p}:rejected: weeks of a misbehaving producer, a few MB of Redis at most.
REJECTED_KEEP = 10_000
#: A message's job id is looked for in this much of its start when the message cannot be parsed.
_HEAD_BYTES = 64 * 1024
_READ_CHUNK = 1 << 20
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

# KEYS: the submit list, the held key for the new id, the held set. ARGV: the new id. Moves the oldest
# message (producers LPUSH, so RPOP is first in, first out) and returns its size; the content never
# leaves Redis here. False (None) when no message waits.
_TAKE = """
local message = redis.call('RPOP', KEYS[1])
if not message then return false end
redis.call('SET', KEYS[2], message)
redis.call('SADD', KEYS[3], ARGV[1])
return string.len(message)
"""


def new_submission_id() -> str:
    """Sortable by time, unique without coordination: `20261120T231607-3f9c2a1b7d4e`."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:12]}"


class SubmissionQueue:
    """The submit list and the messages taken from it."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.r = client
        self.key = f"{settings.key_prefix}:submit"
        self.held_set = f"{self.key}:held"
        self._take = client.register_script(_TAKE)

    def held_key(self, submission_id: str) -> str:
        return f"{self.held_set}:{submission_id}"

    def take(self) -> tuple[str, int] | None:
        """Move the oldest message to a held key of its own: (its id, its size in bytes), or None."""
        submission_id = new_submission_id()
        size = self._take(keys=[self.key, self.held_key(submission_id), self.held_set], args=[submission_id])
        return None if size is None else (submission_id, int(size))

    def held(self) -> list[tuple[str, int]]:
        """(id, size) of every message taken and not yet stored or rejected."""
        ids = sorted(self.r.smembers(self.held_set))
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
        if size <= max_bytes:
            raw = self.r.execute_command("GET", key, NEVER_DECODE=True)
            return None if raw is None else (raw, size, hashlib.sha256(raw).hexdigest())
        digest, head = hashlib.sha256(), b""
        for start in range(0, size, _READ_CHUNK):
            part = self.r.execute_command("GETRANGE", key, start, start + _READ_CHUNK - 1, NEVER_DECODE=True)
            if not part:
                return None  # gone while we read: another run of the task has settled it
            digest.update(part)
            head = head or part[:_HEAD_BYTES]
        return head, size, digest.hexdigest()


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one message: a job (`accepted`), a rejection with its reason, or nothing (`gone`:
    another run of the task settled it first). `chunks`: documents per intake item queued."""

    submission_id: str
    status: str
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
    """The checks' result: either an envelope with its encoded chunks, or a reason. `known`: the message's
    fields that passed their own checks (job_id, tenant, target, kind), for a rejected job's record."""

    known: dict[str, str]
    reason: str | None = None
    envelope: JobEnvelope | None = None
    chunks: list[tuple[list[str], list[str], list[int]]] = field(default_factory=list)


class _Rejected(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def accept(client: redis.Redis, settings: Settings, submission_id: str) -> Outcome:
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
        client.srem(queue.held_set, submission_id)
        return Outcome(submission_id, GONE)
    raw, size, sha256 = read
    if size > settings.max_message_bytes:
        verdict = _Verdict(
            _known_in_text(raw),
            f"message: {size} bytes, above the limit of {settings.max_message_bytes} (ERPSYNC_MAX_MESSAGE_BYTES)",
        )
    else:
        verdict = _examine(raw, settings)
    return _settle(client, settings, queue, submission_id, verdict, size, sha256)


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
        )
    except ValidationError as exc:
        raise _Rejected(_reasons(exc, loc_of_model="kind")) from None
    known["target"] = envelope.target.value
    if len(message.documents) > settings.max_job_documents:
        raise _Rejected(
            f"documents: {len(message.documents)} documents, above the limit of {settings.max_job_documents} "
            "(ERPSYNC_MAX_JOB_DOCUMENTS): split the job"
        )
    doc_type = document_type(envelope.target, envelope.kind)
    scan = CredentialScan(settings)  # a document holding one of our credentials is refused alone, stored masked
    chunks = list(encoded_chunks(message.documents, envelope.job_id, settings.intake_chunk_docs, doc_type, scan))
    return _Verdict(known, envelope=envelope, chunks=chunks)


def _settle(
    client: redis.Redis,
    settings: Settings,
    queue: SubmissionQueue,
    submission_id: str,
    verdict: _Verdict,
    size: int,
    sha256: str,
) -> Outcome:
    """Write the job or the rejection and drop the held message, in one MULTI.

    WATCH on the held message and the job: if another run of this task (a redelivery) settles the
    message first, we find it gone and do nothing; if the job id gets used meanwhile, we see it.
    """
    store, intake = ResultsStore(client, settings), IntakeQueue(client, settings)
    held = queue.held_key(submission_id)
    job_id = verdict.known.get("job_id")
    watched = [held] + ([store.job_key(job_id)] if job_id else [])
    for _ in range(20):
        with client.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(*watched)
                if not pipe.exists(held):
                    pipe.reset()
                    client.srem(queue.held_set, submission_id)
                    return Outcome(submission_id, GONE, job_id)
                used = job_id is not None and bool(pipe.exists(store.job_key(job_id)))
                pipe.multi()
                if verdict.envelope is not None and not used:
                    outcome = _queue_job(pipe, store, intake, submission_id, verdict)
                else:
                    outcome = _queue_rejection(pipe, store, submission_id, verdict, used, size, sha256)
                pipe.delete(held)
                pipe.srem(queue.held_set, submission_id)
                pipe.execute()
                return outcome
            except redis.WatchError:
                continue
    raise RuntimeError(f"submission {submission_id}: its keys kept changing while it was being stored")


def _queue_job(pipe: Any, store: ResultsStore, intake: IntakeQueue, submission_id: str, verdict: _Verdict) -> Outcome:
    """The job, stored the way worker/producer.py's submit() stores one: keys, ExternalIds, documents refused
    for a credential in them, intake items."""
    envelope = verdict.envelope
    assert envelope is not None
    store.queue_open_job(
        pipe,
        {
            "job_id": envelope.job_id,
            "tenant": envelope.tenant,
            "target": envelope.target.value,
            "kind": envelope.kind.value,
            "source": envelope.source or "",
            "submitted_at": envelope.submitted_at.isoformat(),
            "submission": submission_id,
        },
    )
    start, sizes = 0, []
    for external_ids, encoded, refused in verdict.chunks:
        store.append_documents(envelope.job_id, start, encoded, external_ids, pipe=pipe)
        store.queue_records(
            pipe,
            [
                (envelope.job_id, start + i, Record(external_ids[i], FAILED, error=CREDENTIAL_IN_DOCUMENT))
                for i in refused
            ],
        )
        intake.push([Item(envelope.job_id, start, start + len(encoded))], pipe=pipe)
        start += len(encoded)
        sizes.append(len(encoded))
    store.queue_close_job(pipe, envelope.job_id)
    return Outcome(submission_id, ACCEPTED, envelope.job_id, chunks=tuple(sizes))


def _queue_rejection(
    pipe: Any, store: ResultsStore, submission_id: str, verdict: _Verdict, used: bool, size: int, sha256: str
) -> Outcome:
    """The rejected job's record (when its id is known and free) and, always, the entry in {p}:rejected."""
    job_id = verdict.known.get("job_id")
    if verdict.reason is None:  # a valid message whose job id is taken: a producer's retry, or a clash
        reason = "job_id: job id already submitted; this message was ignored"
    elif used:
        reason = f"{verdict.reason} (job id already submitted: that job was not touched)"
    else:
        reason = verdict.reason
    if job_id is not None and not used:
        store.queue_rejected_job(pipe, {**verdict.known, "submission": submission_id, "bytes": str(size)}, reason)
    entry = {
        "id": submission_id,
        "job_id": job_id,
        "tenant": verdict.known.get("tenant"),
        "reason": reason,
        "bytes": size,
        "sha256": sha256,
    }
    store.queue_rejection(pipe, entry, REJECTED_KEEP)
    return Outcome(submission_id, REJECTED, job_id, reason)


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
    match = _JOB_ID_IN_TEXT.search(raw[:_HEAD_BYTES])
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


# ----- the listener


class Listener:
    """Takes messages off the submit list and sends a task for each, on a thread of its own.

    Polls every `submit_poll_seconds` while the list is empty and not at all while messages wait. Redis or
    broker errors (a restart, a failover) are logged and waited out with a growing pause; it never stops
    on its own. On start it first sends the tasks of messages held by a worker that died before it could.
    """

    def __init__(
        self,
        client: redis.Redis,
        settings: Settings,
        send: Callable[[str, int], None],
        *,
        max_backoff: float = 30.0,
    ) -> None:
        self.queue = SubmissionQueue(client, settings)
        self.send = send
        self.poll = settings.submit_poll_seconds
        self.max_backoff = max_backoff
        self.stopping = threading.Event()
        self.unsent: list[tuple[str, int]] = []
        self.recovered = False
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self.run, name="erpsync-submissions", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(timeout=10)

    terminate = stop

    def run(self) -> None:
        failures = 0
        while not self.stopping.is_set():
            try:
                busy = self.step()
                failures = 0
            except Exception as exc:
                failures += 1
                pause = min(self.max_backoff, self.poll * 2**failures)
                log.warning(
                    "submission listener: %s (%s); trying again in %.1fs",
                    type(exc).__name__,
                    exc,
                    pause,
                    exc_info=failures == 1 and not isinstance(exc, redis.ConnectionError | redis.TimeoutError),
                )
                self.stopping.wait(pause)
                continue
            if not busy:
                self.stopping.wait(self.poll)

    def step(self) -> bool:
        """One turn: send what is owed, take one message and send its task. True if one was taken."""
        if not self.recovered:
            held = self.queue.held()
            if held:
                log.info("submission listener: sending again the tasks of %d held message(s)", len(held))
            self.unsent.extend(held)
            self.recovered = True
        self._send_unsent()
        taken = self.queue.take()
        if taken is None:
            return False
        self.unsent.append(taken)  # until its task is sent; a failed send is tried again next turn
        self._send_unsent()
        return True

    def _send_unsent(self) -> None:
        while self.unsent:
            submission_id, size = self.unsent[0]
            self.send(submission_id, size)
            self.unsent.pop(0)


class SubmissionListener(bootsteps.StartStopStep):
    """The listener as a step of the Celery worker (`app.steps["worker"].add(...)`): on workers that
    consume the intake queue only, started after the pool (so no pool process is forked from a process
    with a running listener thread at start-up) and stopped with the worker."""

    label = "erpsync submissions"
    requires = ("celery.worker.components:Pool",)

    def include_if(self, w: Any) -> bool:
        from worker.settings import get_settings

        return get_settings().queue in w.app.amqp.queues.consume_from

    def create(self, w: Any) -> Listener:
        from tasks.submissions import send_accept
        from worker.redis_client import get_redis
        from worker.settings import get_settings

        settings = get_settings()
        return Listener(get_redis(settings), settings, send_accept)
