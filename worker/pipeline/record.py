"""Recording, the pipeline's last step: a batch's end written in one transaction, and its one outcome line.

    send ──▶ [record: Keys, failures (claims released), unknowns, dead letters, follow-up batch, metrics, `done`]

`StoredBatch` is a batch as the send and reconcile steps hold it (its members, ExternalIds, body and the attempt
holding it). `end_batch` is fenced by that attempt: an attempt that outlived its lease and was taken over writes
nothing (LeaseLost). Every run that sends or looks up writes exactly one `batch outcome` log line
(created/failed/unknown/reconciled/... or retrying/reconciling) with its counts, HTTP status and duration.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from schemas.fingerprint import parse
from worker.connectors import Created
from worker.errors import LeaseLost
from worker.observability import metrics
from worker.observability.logs import fields
from worker.pipeline.queue import Enqueue
from worker.pipeline.resubmitted import content_fingerprint
from worker.pipeline.tickets import place
from worker.store.errors import OUTAGE_ERRORS
from worker.store.records import (
    ACT,
    UPDATE,
    BatchOutcome,
    BatchPlan,
    ClaimRef,
    CreatedClaim,
    DocStatus,
    Record,
    RecordUpdate,
    owner_of,
)
from worker.store.results import ResultsStore

__all__ = [
    "UNKNOWN_HINT",
    "StoredBatch",
    "carry_on",
    "end_all",
    "end_batch",
    "for_all",
    "jobs_of",
    "log_outcome",
    "recorder_for",
]

log = logging.getLogger(__name__)


UNKNOWN_HINT = "the ERP may have created it: an operator must check before it is sent again"


class StoredBatch:
    """A stored batch: who is in it (job, position, ExternalId) and its body."""

    def __init__(self, batch_id: str, data: dict[str, str], started: float | None = None) -> None:
        self.id = batch_id
        self.data = data
        self.tenant = data["tenant"]
        self.kind = data["kind"]
        self.target = data.get("target", "softone")
        self.members: list[tuple[str, int]] = [(j, int(p)) for j, p in json.loads(data["members"])]
        self.external_ids: list[str] = json.loads(data["external_ids"])
        self.started = time.perf_counter() if started is None else started
        self.attempt: int | None = None  # the attempt holding the batch, once acquired: it fences the batch's end
        self._docs: list[dict[str, Any]] | None = None
        self._read: list[dict[str, Any]] | None = None

    @property
    def docs(self) -> list[dict[str, Any]]:
        if self._docs is None:
            self._docs = json.loads(self.data["body"])
        return self._docs

    @property
    def read(self) -> list[dict[str, Any]]:
        """The documents as schemas.fingerprint.parse reads them, for signatures and fingerprints only (faster than
        `docs`, but an integer beyond 64 bits comes out a float: never what is sent again)."""
        if self._read is None:
            self._read = parse(self.data["body"])
        return self._read

    def fingerprint(self, i: int) -> str:
        """The content fingerprint of document `i` as sent (the duplicate index keeps it with the Key)."""
        return content_fingerprint(self.target, self.kind, self.read[i])

    def owner(self, i: int) -> str:
        """Who claims document `i`'s ExternalId in the duplicate index."""
        return owner_of(*self.members[i])

    def record(
        self,
        i: int,
        status: DocStatus,
        *,
        key: int | str | None = None,
        number: str | None = None,
        error: str | None = None,
        batch_id: str | None = None,
    ) -> RecordUpdate:
        """Document `i`'s new record, in this batch unless `batch_id` names another (a follow-up batch)."""
        job_id, position = self.members[i]
        batch_id = self.id if batch_id is None else batch_id
        return RecordUpdate(
            job_id,
            position,
            Record(self.external_ids[i], status, key=key, number=number, error=error, batch_id=batch_id),
        )

    def claim(self, i: int) -> ClaimRef:
        """Document `i`'s claim in the duplicate index."""
        return ClaimRef(self.tenant, self.kind, self.external_ids[i], self.owner(i))

    def dead_letter(self, i: int, status: DocStatus, reason: str, attempts: list[dict[str, Any]]) -> dict[str, Any]:
        job_id, position = self.members[i]
        return {
            "id": self.owner(i),
            "job_id": job_id,
            "position": position,
            "external_id": self.external_ids[i],
            "tenant": self.tenant,
            "kind": self.kind,
            "target": self.target,
            "status": status,
            "reason": reason,
            "batch_id": self.id,
            "document": self.docs[i],
            "attempts": attempts,
        }


def _write(operation: Callable[[], object], attempts: int = 6) -> None:
    """Results must be written once the ERP has answered: retry Redis hiccups in-process for a while."""
    for attempt in range(1, attempts + 1):
        try:
            operation()
            return
        except OUTAGE_ERRORS:
            if attempt == attempts:
                raise
            time.sleep(min(10.0, 0.5 * 2**attempt))


def jobs_of(batch: StoredBatch) -> dict[str, Any]:
    """job_id when every document of the batch is of one job (a big file), else how many jobs it serves."""
    jobs = {job_id for job_id, _ in batch.members}
    return {"job_id": next(iter(jobs))} if len(jobs) == 1 else {"jobs": len(jobs)}


def log_outcome(
    batch: StoredBatch, outcome: str, level: int = logging.INFO, *, exc_info: bool = False, **values: Any
) -> None:
    """The one line per batch outcome (see the module docstring); the context adds batch_id, tenant, ...

    An error is named by its type and HTTP status, never its text: an ERP's message may quote the document
    (a customer number, a name). The text is in the documents' records, dead letters and the batch's log."""
    counts = {"created": 0, "failed": 0, "duplicate": 0, "unknown": 0}
    counts |= {k: values.pop(k) for k in list(counts) if k in values}
    log.log(
        level,
        "batch outcome",
        exc_info=exc_info,
        extra=fields(
            outcome=outcome,
            documents=len(batch.members),
            **counts,
            **values,
            duration_ms=round((time.perf_counter() - batch.started) * 1000),
        ),
    )


def end_batch(
    enqueue: Enqueue,
    store: ResultsStore,
    batch: StoredBatch,
    outcome: BatchOutcome,
    *,
    created: Mapping[int, Created] | None = None,
    failed: Mapping[int, str] | None = None,
    unknown: Mapping[int, str] | None = None,
    resend: list[int] | None = None,
    attempt_log: dict[str, Any] | None = None,
    **log_fields: Any,
) -> None:
    """Write a batch's end in one transaction: Keys, failures (claims released), unknowns, dead letters for
    both, a follow-up batch for documents certainly not saved, and the batch's metrics; then its outcome line.

    `created`, `failed` and `unknown` are by the documents' places in the batch (what the ERP answered for each,
    the reason each failed, why each is unknown); `resend`, the places of those to send again in a new batch.
    Raises LeaseLost (writing only what this attempt learnt, to the batch's log) if the attempt no longer
    holds the batch."""
    created, failed, unknown, resend = created or {}, failed or {}, unknown or {}, resend or []
    attempts = store.attempts(batch.id) if failed or unknown else []
    operation = batch.data.get("operation")
    made = _made(batch)
    updates = [batch.record(i, made, key=c.key, number=c.number) for i, c in created.items()]
    updates += [batch.record(i, DocStatus.FAILED, error=e) for i, e in failed.items()]
    updates += [batch.record(i, DocStatus.UNKNOWN, error=e) for i, e in unknown.items()]
    dead = [batch.dead_letter(i, DocStatus.FAILED, e, attempts) for i, e in failed.items()]
    dead += [batch.dead_letter(i, DocStatus.UNKNOWN, e, attempts) for i, e in unknown.items()]
    follow_up = [carry_on(batch, resend, f"{batch.id}.r{batch.data.get('attempts', '0')}")] if resend else []
    held = metrics.take_held()  # the request's duration: written with the batch's end, or on its own below
    counters = [
        *metrics.count(store.p, metrics.BATCHES, (batch.tenant, batch.target, batch.kind, outcome.replace(" ", "_"))),
        *metrics.observe(store.p, metrics.BATCH_DOCUMENTS, (batch.target,), len(batch.members)),
        *held,
    ]
    if operation == ACT:  # the document acted on is put back as it was; one the action made joins the index
        makes = batch.data.get("result_kind") or ""
        made_as = (batch.tenant, makes, batch.data.get("result_external_id") or "")
        claims = [CreatedClaim(*made_as, batch.owner(i), c.key, c.number) for i, c in created.items() if makes]
        released = [batch.claim(i) for i in (*created, *failed, *unknown)]
    else:
        claims = [CreatedClaim(*batch.claim(i), c.key, c.number, batch.fingerprint(i)) for i, c in created.items()]
        # an update that was refused or whose outcome is open puts the entry back as it was: sending it again is
        # harmless (it is whole), and later jobs need not wait for ever
        released = [batch.claim(i) for i in (*failed, *(unknown if operation == UPDATE else ()))]
    written: list[bool] = []
    _write(
        lambda: written.append(
            store.complete_batch(
                batch.id,
                outcome,
                updates,
                created=claims,
                released=released,
                dead=dead,
                follow_up=follow_up,
                counters=counters,
                attempt=batch.attempt,
                log=attempt_log,
            )
        )
    )
    if not written[-1]:
        recorder_for(store).record(held)  # the request was made, whoever settles the batch
        if attempt_log is not None:  # what this attempt learnt stays in the batch's log for audits
            _write(lambda: store.log_attempt(batch.id, attempt_log))
        raise LeaseLost(batch.id)
    for plan in follow_up:
        place(enqueue, batch.tenant, [plan.batch_id])
    log_outcome(
        batch,
        outcome.replace(" ", "_"),
        logging.WARNING if failed or unknown else logging.INFO,
        created=len(created),
        failed=len(failed),
        unknown=len(unknown),
        resent=len(resend),
        **log_fields,
    )


def _made(batch: StoredBatch) -> DocStatus:
    """The status of a document the ERP answered for: `created`, or `updated` for an upsert's update and an action
    that made no document of its own (an action that made one, a credit invoice, is `created`, with its Key)."""
    operation = batch.data.get("operation")
    if operation == UPDATE or (operation == ACT and not batch.data.get("result_kind")):
        return DocStatus.UPDATED
    return DocStatus.CREATED


def carry_on(batch: StoredBatch, positions: list[int], child_id: str) -> BatchPlan:
    """A new batch `child_id` for the documents of `batch` at `positions` (in their order): their records point at
    it, pending."""
    return BatchPlan(
        batch_id=child_id,
        meta={
            "tenant": batch.tenant,
            "kind": batch.kind,
            "target": batch.target,
            "external_ids": json.dumps([batch.external_ids[i] for i in positions], ensure_ascii=False),
            "high_water": batch.data.get("high_water", "0"),
            "parent": batch.id,
        },
        members=[batch.members[i] for i in positions],
        body=json.dumps([batch.docs[i] for i in positions], ensure_ascii=False, separators=(",", ":")),
        records=[batch.record(i, DocStatus.PENDING, batch_id=child_id) for i in positions],
    )


def for_all(batch: StoredBatch, message: str) -> dict[int, str]:
    """The same `message` for every document of the batch (as `failed` or `unknown` of `end_batch`)."""
    return dict.fromkeys(range(len(batch.members)), message)


def end_all(
    enqueue: Enqueue,
    store: ResultsStore,
    batch: StoredBatch,
    outcome: BatchOutcome,
    reason: str,
    error: BaseException,
    *,
    unknown: bool = False,
) -> dict[str, Any]:
    """End the batch with every document `failed` (or `unknown`) for one reason, decided by `error` (named in the
    outcome line by its type and HTTP status, never its text); the run's result."""
    documents = for_all(batch, reason)
    end_batch(
        enqueue,
        store,
        batch,
        outcome,
        failed=None if unknown else documents,
        unknown=documents if unknown else None,
        error_type=type(error).__name__,
        http_status=getattr(error, "status", None),
    )
    return {"batch_id": batch.id, "outcome": outcome.value}


def recorder_for(store: ResultsStore) -> metrics.Recorder:
    """Metrics go where the store writes (its Redis client and key prefix)."""
    return metrics.Recorder(store.r, store.p)
