"""What the store holds and hands out, as types: document, job, batch and claim states, records, plans.

These are the values that cross from the store to the pipeline, the producer and the command line; the store's
modules write and read them (worker/store/results.py), nobody else builds their Redis form.

    document:  pending ──▶ created | failed | duplicate | unknown      (created and duplicate are final)
    job:       receiving ──▶ queued ──▶ running ──▶ succeeded | partial | failed | incomplete;   or rejected at once
    batch:     queued | waiting ──acquire──▶ sending ──▶ done           (worker/pipeline/send.py)
    claim:     mine | claimed (by another document) | created (with its Key)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NamedTuple

from schemas.kinds import Lane
from worker import fastjson

__all__ = [
    "CREATED",
    "DOC_STATUSES",
    "DUPLICATE",
    "FAILED",
    "JOB_FINAL",
    "PENDING",
    "UNKNOWN",
    "UPDATE",
    "BatchHead",
    "BatchOutcome",
    "BatchPlan",
    "BatchState",
    "Claim",
    "ClaimRef",
    "ClaimState",
    "CreatedClaim",
    "DocStatus",
    "IntakeState",
    "JobStatus",
    "LeaseState",
    "Ready",
    "Record",
    "RecordUpdate",
    "Route",
    "job_lane",
    "job_summary",
    "now_iso",
    "owner_of",
    "parse_claim",
]


class DocStatus(StrEnum):
    """A document's outcome, as its record and the job's counters (`n_<status>`) say."""

    PENDING = "pending"
    CREATED = "created"
    FAILED = "failed"
    DUPLICATE = "duplicate"
    UNKNOWN = "unknown"
    CHANGED = "changed"  # created before with other content: not sent; `errors` names the fields that differ
    UPDATED = "updated"  # created before with other content, and sent as an update of it (operation "upsert")


PENDING, CREATED, FAILED, DUPLICATE, UNKNOWN, CHANGED, UPDATED = (
    DocStatus.PENDING,
    DocStatus.CREATED,
    DocStatus.FAILED,
    DocStatus.DUPLICATE,
    DocStatus.UNKNOWN,
    DocStatus.CHANGED,
    DocStatus.UPDATED,
)
DOC_STATUSES = tuple(DocStatus)


class JobStatus(StrEnum):
    """A job's status; the last five are final."""

    RECEIVING = "receiving"  # the producer is still storing its documents
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"
    FAILED = "failed"
    REJECTED = "rejected"  # the job message itself was refused (worker/producer/submissions.py): no documents
    # Its source broke part-way (fields `source_error`, `source_error_line`: worker/store/jobs.py): every document
    # read before it has its outcome, in the counts; whatever those are, the job is not the whole source.
    INCOMPLETE = "incomplete"


JOB_FINAL = (JobStatus.SUCCEEDED, JobStatus.PARTIAL, JobStatus.FAILED, JobStatus.REJECTED, JobStatus.INCOMPLETE)


class BatchState(StrEnum):
    """A batch's `state` field: its request's truth, whatever Celery redelivers (worker/pipeline/send.py)."""

    QUEUED = "queued"
    WAITING = "waiting"  # comes back later: a retry, the reconcile delay, a pause
    SENDING = "sending"  # under a lease
    DONE = "done"


class BatchOutcome(StrEnum):
    """How a run of a batch's send ended. The first six end the batch: its hash's `outcome` and the batches
    metric's label (spaces as underscores); the others end only the run (what its task returns and logs)."""

    CREATED = "created"
    RECONCILED = "reconciled"
    REJECTED = "rejected"
    FAILED = "failed"
    UNKNOWN = "unknown"
    GAVE_UP = "gave up"
    LEASE_LOST = "lease lost"  # taken over by another worker: this run wrote nothing
    ALREADY_DONE = "already done"  # handed out again after it ended (a sender died between its end and settling it)
    MISSING = "missing"  # the batch expired from Redis


class ClaimRef(NamedTuple):
    """A document's claim on its ExternalId in the duplicate index."""

    tenant: str
    kind: str
    external_id: str
    owner: str


class CreatedClaim(NamedTuple):
    """A claim whose document the ERP created: the duplicate index learns its Key (and number)."""

    tenant: str
    kind: str
    external_id: str
    owner: str
    key: int | str
    number: str | None
    fingerprint: str = ""  # of the content created (schemas/fingerprint.py); "" where none is known


class LeaseState(StrEnum):
    """What trying to take a batch for sending found (ResultsStore.acquire_batch_data, take_over_batch)."""

    ACQUIRED = "acquired"  # ours now, under a fresh lease and attempt
    TAKEN_OVER = "taken over"  # its sender's lease had run out: ours now
    BUSY = "busy"  # another worker holds its lease
    EXPIRED = "expired"  # its sender's lease ran out: take it over
    MOVED = "moved"  # no longer `sending` (its holder finished it meanwhile): acquire it the usual way
    DONE = "done"
    MISSING = "missing"  # expired from Redis, or never stored


class DeadLetterState(StrEnum):
    """Where a dead letter stands (its state in {p}:dead:state, worker/store/lua/dead_letter_functions.lua)."""

    OPEN = "open"  # nobody acted on it yet: no state stored
    REPLAYED = "replayed"  # submitted again as a new job (`replay_job`); that job carries the document on
    RESOLVED = "resolved"  # its document was created (by the replay or a later submission): `resolved_key`


class ClaimState(StrEnum):
    """What the duplicate index says of an ExternalId when a document tries to claim it."""

    MINE = "mine"
    CLAIMED = "claimed"  # by another document, still being sent
    CREATED = "created"  # with its Key
    UPDATING = "updating"  # created, and this document (the owner) is sending an update of it


def owner_of(job_id: str, position: int) -> str:
    """Who claims an ExternalId in the duplicate index: one document of one job."""
    return f"{job_id}#{position}"


class Route(NamedTuple):
    """Where a job's documents go."""

    tenant: str
    target: str
    kind: str


class Ready(NamedTuple):
    """A valid, claimed document on its way into a batch: whose it is and its body as the ERP takes it."""

    job_id: str
    position: int
    external_id: str
    body: str


def now_iso() -> str:
    """Now, as the store writes times: ISO 8601 in UTC with milliseconds and a Z."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(slots=True)
class Record:
    """The outcome of one document, as stored and as returned by `erpsync results`."""

    external_id: str
    status: str = DocStatus.PENDING
    key: int | str | None = None  # SoftOne: an integer Key; Fortnox: DocumentNumber; invoice service: id
    number: str | None = None
    error: str | None = None
    errors: list[dict[str, str]] = field(default_factory=list)
    batch_id: str | None = None
    updated_at: str | None = None

    def to_json(self) -> str:
        return fastjson.dumps(
            {
                "external_id": self.external_id,
                "status": self.status,
                "key": self.key,
                "number": self.number,
                "error": self.error,
                "errors": self.errors,
                "batch_id": self.batch_id,
                "updated_at": self.updated_at or now_iso(),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Record:
        data = json.loads(text)
        return cls(**{k: data.get(k) for k in cls.__slots__ if k in data})


class RecordUpdate(NamedTuple):
    """A document's new record: which job and position."""

    job_id: str
    position: int
    record: Record


#: A batch's `operation` when it sends an update of a document the ERP holds (its `erp_key`), not a creation.
UPDATE = "update"
#: A batch's `operation` when it asks the ERP to act on a document it holds (`action`, `erp_key`).
ACT = "act"


@dataclass(frozen=True, slots=True)
class BatchPlan:
    """A batch about to be stored: its members (job id, position), body, and the members' records."""

    batch_id: str
    meta: dict[str, str]
    members: list[tuple[str, int]]
    body: str
    records: list[RecordUpdate]


class BatchHead(NamedTuple):
    """A stored batch's state, route and size: what deciding about its send needs, without its body."""

    state: BatchState
    tenant: str
    kind: str
    target: str
    size: int


@dataclass(frozen=True, slots=True)
class IntakeState:
    """A job's hash, and for a range of its positions: the records, the documents and which are pushed."""

    job: dict[str, str]
    records: list[Record | None]
    documents: list[str]
    assigned: dict[int, str]  # position -> "buffer" or the batch id, for the range's documents pushed before


@dataclass(frozen=True, slots=True)
class Claim:
    """What the duplicate index says about an ExternalId when we try to claim it."""

    state: ClaimState
    owner: str
    key: int | str | None = None
    number: str | None = None
    fingerprint: str | None = None  # of the content created; None for an entry written before fingerprints
    # The index's value as read: an update claims the entry only while it is still this (not compared).
    value: str = field(default="", compare=False)


def parse_claim(value: str, owner: str) -> Claim:
    """A duplicate-index value as seen by `owner`: "claimed|owner", "created|owner|key|number|fingerprint", or
    "updating|owner|" followed by the created value the update started from (another owner's update is `claimed`:
    wait for it)."""
    parts = value.split("|")
    if parts[0] == "updating" and len(parts) > 2:
        before = parse_claim(value.split("|", 2)[2], owner)
        state = ClaimState.UPDATING if parts[1] == owner else ClaimState.CLAIMED
        return Claim(state, parts[1], before.key, before.number, before.fingerprint, value)
    if parts[0] == "created" and len(parts) >= 4:
        key = parts[2]  # an integer Key, or "~" and a text id (see complete_batch)
        fingerprint = parts[4] if len(parts) > 4 and parts[4] else None
        return Claim(
            ClaimState.CREATED,
            parts[1],
            key[1:] if key.startswith("~") else int(key),
            parts[3] or None,
            fingerprint,
            value,
        )
    claimed_by = parts[1] if len(parts) > 1 else ""
    return Claim(ClaimState.MINE if claimed_by == owner else ClaimState.CLAIMED, claimed_by)


_LANES = frozenset(lane.value for lane in Lane)


def job_lane(job: Mapping[str, str], interactive_max: int) -> Lane:
    """A job's lane, from its hash: field `lane`; a job stored before lanes had none, and is sized by its `total`
    (`interactive_max`: Settings.interactive_max_documents)."""
    lane = job.get("lane")
    if lane in _LANES:
        return Lane(lane)
    return Lane.for_size(int(job.get("total") or 0), interactive_max)


def job_summary(job: dict[str, str]) -> dict[str, Any]:
    """The job fields people and scripts read: status, counts, timestamps."""
    counts = {s: int(job.get(f"n_{s}", 0)) for s in DOC_STATUSES}
    return {
        "job_id": job.get("job_id"),
        "status": job.get("status"),
        "tenant": job.get("tenant"),
        "target": job.get("target"),
        "kind": job.get("kind"),
        "lane": job.get("lane"),
        "source": job.get("source") or None,
        "total": int(job.get("total", 0)),
        "counts": counts,
        "submitted_at": job.get("submitted_at"),
        "created_at": job.get("created_at"),
        "started_at": job.get("started_at"),
        "finished_at": job.get("finished_at"),
        "updated_at": job.get("updated_at"),
        "reason": job.get("reason") or None,
        # An `incomplete` job's source broke here (worker/store/jobs.py): the line (None when unknown) and why.
        "source_error_line": int(job["source_error_line"]) if job.get("source_error_line") else None,
        "source_error": job.get("source_error") or None,
    }
