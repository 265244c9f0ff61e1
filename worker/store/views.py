"""Read-only views of the store for operators: the reads behind `erpsync status`, `jobs` and `metrics`
(worker/ops/overview.py composes them into what those show).

Nothing here writes or repairs. Every read is bounded by its caller (so many ids, so many entries per page), and
each method costs the round trips its docstring says, whatever the backlog.

Besides our own keys (worker/store/keys.py), `queue_depths` counts the Celery queues on the same Redis: kombu's
Redis transport keeps a queue as a list named after it, plus one list per priority step (`<queue>\\x06\\x16<3|6|9>`);
a queue's depth is the sum of them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple, cast

from worker.store.client import RedisClient
from worker.store.intake import TOTAL_FIELD as INTAKE_TOTAL
from worker.store.keys import Keys
from worker.store.records import DOC_STATUSES

__all__ = ["JOB_FIELDS", "PRIORITY_SEPARATOR", "PRIORITY_STEPS", "BufferDepth", "OperatorView", "WaitingInput"]

PRIORITY_SEPARATOR = "\x06\x16"
PRIORITY_STEPS = (3, 6, 9)  # kombu's Redis transport: step 0 is the queue's own list

#: The fields of a job's hash that operators are shown (`OperatorView.jobs`).
JOB_FIELDS = (
    "job_id",
    "status",
    "tenant",
    "target",
    "kind",
    "lane",
    "source",
    "total",
    "reason",
    "source_error",  # an `incomplete` job's (worker/store/jobs.py)
    "source_error_line",
    *(f"n_{s}" for s in DOC_STATUSES),
    "created_at",
    "submitted_at",
    "received_at",
    "started_at",
    "updated_at",
    "finished_at",
)


class WaitingInput(NamedTuple):
    """Input not taken up yet: intake items (job ranges, over every tenant and lane; IntakeQueue.backlog has them
    per tenant and lane), raw producer messages waiting and being accepted."""

    intake_items: int
    submissions_waiting: int
    submissions_held: int


class BufferDepth(NamedTuple):
    """One coalescing buffer: the documents waiting in it and their bytes."""

    tenant: str
    kind: str
    documents: int
    bytes: int


class OperatorView:
    """Bounded reads of one deployment's state (its key prefix); one instance per status screen or scrape."""

    def __init__(self, client: RedisClient, prefix: str) -> None:
        self.r = client
        self.keys = Keys(prefix)

    # ----- queues, input and buffers
    def queue_depths(self, queues: Sequence[str]) -> list[int]:
        """Messages waiting in each Celery queue (not those a worker holds), all priorities; one round trip."""
        pipe = self.r.pipeline(transaction=False)
        for name in queues:
            pipe.llen(name)
            for step in PRIORITY_STEPS:
                pipe.llen(f"{name}{PRIORITY_SEPARATOR}{step}")
        lengths = cast(list[int], pipe.execute())
        width = 1 + len(PRIORITY_STEPS)
        return [sum(lengths[i * width : (i + 1) * width]) for i in range(len(queues))]

    def waiting_input(self) -> WaitingInput:
        """One round trip."""
        pipe = self.r.pipeline(transaction=False)
        pipe.hget(self.keys.intake_backlog, INTAKE_TOTAL)
        pipe.llen(self.keys.submit)
        pipe.scard(self.keys.submit_held_set)
        intake, submitted, held = pipe.execute()
        return WaitingInput(max(0, int(intake or 0)), int(submitted), int(held))

    def buffer_depths(self) -> list[BufferDepth]:
        """Every buffer that has been used, by tenant and kind; two round trips."""
        members = cast(set[str], self.r.smembers(self.keys.buffers))
        buffers = sorted(cast(tuple[str, str], tuple(b.split("|", 1))) for b in members if "|" in b)
        pipe = self.r.pipeline(transaction=False)
        for tenant, kind in buffers:
            pipe.llen(self.keys.buffer(tenant, kind))
            pipe.get(self.keys.buffer_bytes(tenant, kind))
        out = pipe.execute()
        return [
            BufferDepth(tenant, kind, int(out[2 * i]), int(out[2 * i + 1] or 0))
            for i, (tenant, kind) in enumerate(buffers)
        ]

    # ----- jobs
    def jobs(self, job_ids: Sequence[str]) -> list[dict[str, str] | None]:
        """The JOB_FIELDS of each job (its `job_id` filled in if the hash lacks it); None for one that expired.
        One round trip."""
        pipe = self.r.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hmget(self.keys.job(job_id), JOB_FIELDS)
        out: list[dict[str, str] | None] = []
        for job_id, values in zip(job_ids, pipe.execute(), strict=True):
            job = {k: v for k, v in zip(JOB_FIELDS, values, strict=True) if v is not None}
            out.append({**job, "job_id": job.get("job_id", job_id)} if job else None)
        return out

    def open_job_ids(self) -> list[str]:
        """Jobs not finished, as far as the open set knows (it may still list some that just finished or expired),
        sorted; one round trip."""
        return sorted(cast(set[str], self.r.smembers(self.keys.open_jobs)))

    def submission_times(self, job_ids: list[str], page: int) -> list[float | None]:
        """When each job was submitted (epoch s; None if it left the list): one round trip per `page` ids."""
        out: list[float | None] = []
        for start in range(0, len(job_ids), page):
            out += self.r.zmscore(self.keys.jobs, job_ids[start : start + page])
        return out

    def jobs_page(self, high: float | str, low: float | str, start: int, num: int) -> list[tuple[str, float]]:
        """(job id, submission time) of jobs submitted in [low, high], newest first, `num` from the `start`-th on;
        one round trip."""
        page = self.r.zrevrangebyscore(self.keys.jobs, high, low, start=start, num=num, withscores=True)
        return cast(list[tuple[str, float]], page)

    def newest_job_ids(self, n: int) -> list[str]:
        """The `n` newest jobs; one round trip."""
        return cast(list[str], self.r.zrevrange(self.keys.jobs, 0, max(0, n - 1)))

    def positions_with_status(
        self, job_id: str, statuses: Iterable[str], want: int, *, page: int, scan_limit: int
    ) -> list[tuple[int, str]]:
        """Up to `want` (position, status) of a job's documents whose status is one of `statuses`, by position; the
        status hash is scanned `page` entries a round trip, and for at most `scan_limit` entries."""
        wanted = frozenset(statuses)
        found: list[tuple[int, str]] = []
        scan = self.r.hscan_iter(self.keys.job_status(job_id), count=page)
        for scanned, (position, status) in enumerate(cast(Iterable[tuple[str, str]], scan), start=1):
            if status in wanted:
                found.append((int(position), status))
                if len(found) >= want:
                    break
            if scanned >= scan_limit:
                break
        return sorted(found)

    def records(self, job_id: str, positions: Sequence[int]) -> list[dict[str, Any]]:
        """The records of these documents of a job as stored (JSON objects; {} for one missing); one round trip."""
        raw = cast(list[str | None], self.r.hmget(self.keys.job_records(job_id), [str(p) for p in positions]))
        return [json.loads(r) if r else {} for r in raw]

    # ----- dead letters and rejected messages
    def dead_letter_count(self) -> int:
        """One round trip."""
        return int(self.r.zcard(self.keys.dead_index))

    def dead_letters(self, newest: int) -> tuple[int, list[dict[str, Any]]]:
        """How many dead letters there are, and the `newest` few entries (newest first, documents included); up to
        three round trips."""
        count = self.dead_letter_count()
        ids = cast(list[str], self.r.zrevrange(self.keys.dead_index, 0, newest - 1)) if newest > 0 and count else []
        values = cast(list[str | None], self.r.hmget(self.keys.dead, ids)) if ids else []
        return count, [json.loads(v) for v in values if v]

    def rejected_messages(self, newest: int) -> tuple[int, list[dict[str, Any]]]:
        """How many refused producer messages the capped log holds, and the `newest` few; up to two round trips."""
        entries = cast(list[str], self.r.lrange(self.keys.rejected, 0, newest - 1)) if newest > 0 else []
        return int(self.r.llen(self.keys.rejected)), [json.loads(e) for e in entries]
