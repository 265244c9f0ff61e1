"""What the pipeline is doing right now, read from Redis: the data behind `erpsync status`, `jobs` and `metrics`.

Functions here return plain dicts and never print: worker/cli/commands.py renders them as rich tables or JSON, and
`OverviewCollector` turns them into Prometheus gauges at scrape time. Everything is read, nothing is written
or repaired (that is the workers' recovery, worker/pipeline/recovery.py). Every read is bounded — so many open jobs,
so many recent jobs, so many status entries per job — so a status screen or a scrape stays cheap with a
backlog of a million documents.

Where the numbers come from (prefix p = ERPSYNC_KEY_PREFIX; see worker/store/results.py, buffer.py, intake.py):
- Celery queues: the Redis transport keeps a queue as a list named after it, plus one list per priority
  step (`<queue>\\x06\\x16<3|6|9>`); a queue's depth is the sum of them.
- intake items `{p}:intake`, raw producer messages `{p}:submit` (and `{p}:submit:held` being accepted),
  coalescing buffers `{p}:buffer:{tenant}:{kind}` listed in `{p}:buffers`;
- open jobs `{p}:open_jobs`, every job by submission time `{p}:jobs`, dead letters `{p}:dead:index`, refused
  producer messages `{p}:rejected` (a capped log).

A job is *stalled* when it is not finished, still has documents to settle, and none of its documents has
changed state for `stall_seconds`: its `updated_at` (set by the results store's Lua script on every status
change) or, before any change, when it was created, received or started.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from worker.settings import Settings
from worker.store.records import DOC_STATUSES, JOB_FINAL

# Finished jobs: the results store's final statuses, and `rejected` (a producer message refused as a whole).
FINAL_STATUSES = frozenset(JOB_FINAL) | {"rejected"}
JOB_STATUSES = ("receiving", "queued", "running", "succeeded", "partial", "failed", "rejected")

PRIORITY_SEPARATOR = "\x06\x16"
PRIORITY_STEPS = (3, 6, 9)  # kombu's Redis transport: step 0 is the queue's own list

OPEN_JOBS_READ = 5000  # open jobs read in detail (the oldest ones: they are the ones that stall)
JOBS_SCAN_LIMIT = 20_000  # `jobs` looks at most this many of the newest jobs to fill its filtered page
STATUS_SCAN_LIMIT = 10_000  # per job, status entries scanned for failed documents
PAGE = 500

_JOB_FIELDS = (
    "job_id",
    "status",
    "tenant",
    "target",
    "kind",
    "source",
    "total",
    "reason",
    *(f"n_{s}" for s in DOC_STATUSES),
    "created_at",
    "submitted_at",
    "received_at",
    "started_at",
    "updated_at",
    "finished_at",
)

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


# ----- time


def epoch_of(value: str | None) -> float | None:
    """Seconds since the epoch of an ISO-8601 timestamp as the store writes them; None if absent or unreadable."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_since(text: str, now: float | None = None) -> float:
    """`--since`: a duration back from now (`90s`, `30m`, `1h`, `2d`, `1w`) or an ISO-8601 date or date-time
    (UTC unless it says otherwise). Returns seconds since the epoch; ValueError with a one-line reason."""
    now = time.time() if now is None else now
    match = _DURATION_RE.match(text)
    if match:
        return now - float(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()]
    epoch = epoch_of(text.strip())
    if epoch is None:
        raise ValueError(
            f"--since {text!r}: expected a duration like 30m, 1h, 2d or an ISO-8601 date-time (2026-11-20T08:00Z)"
        )
    return epoch


# ----- queues and buffers


def queue_names(settings: Settings) -> list[str]:
    return list(dict.fromkeys([settings.queue, settings.send_queue_name]))


def queue_depths(client: redis.Redis, settings: Settings) -> list[dict[str, Any]]:
    """Messages waiting in each Celery queue of this deployment (not counting those a worker holds)."""
    names = queue_names(settings)
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.llen(name)
        for step in PRIORITY_STEPS:
            pipe.llen(f"{name}{PRIORITY_SEPARATOR}{step}")
    lengths = pipe.execute()
    width = 1 + len(PRIORITY_STEPS)
    return [{"queue": n, "messages": sum(lengths[i * width : (i + 1) * width])} for i, n in enumerate(names)]


def waiting_input(client: redis.Redis, settings: Settings) -> dict[str, int]:
    """Intake items not taken yet, raw producer messages waiting and being accepted."""
    p = settings.key_prefix
    pipe = client.pipeline(transaction=False)
    pipe.llen(f"{p}:intake")
    pipe.llen(f"{p}:submit")
    pipe.scard(f"{p}:submit:held")
    intake, submitted, held = pipe.execute()
    return {"intake_items": int(intake), "submissions_waiting": int(submitted), "submissions_held": int(held)}


def buffer_depths(client: redis.Redis, settings: Settings) -> list[dict[str, Any]]:
    """Documents (and their bytes) waiting in each tenant's coalescing buffer, per kind."""
    p = settings.key_prefix
    buffers = sorted(tuple(b.split("|", 1)) for b in client.smembers(f"{p}:buffers") if "|" in b)
    pipe = client.pipeline(transaction=False)
    for tenant, kind in buffers:
        pipe.llen(f"{p}:buffer:{tenant}:{kind}")
        pipe.get(f"{p}:buffer:{tenant}:{kind}:bytes")
    out = pipe.execute()
    return [
        {"tenant": tenant, "kind": kind, "documents": int(out[2 * i]), "bytes": int(out[2 * i + 1] or 0)}
        for i, (tenant, kind) in enumerate(buffers)
    ]


# ----- jobs


def job_entry(job: dict[str, Any], stall_seconds: float, now: float, score: float | None = None) -> dict[str, Any]:
    """One job as `status`/`jobs` show it: ids, counts, times, age, and whether it is stalled."""
    counts = {s: int(job.get(f"n_{s}") or 0) for s in DOC_STATUSES}
    status = job.get("status") or "unknown"
    created = epoch_of(job.get("created_at")) or score or epoch_of(job.get("submitted_at"))
    progress = [epoch_of(job.get(k)) for k in ("updated_at", "received_at", "started_at")]
    last = max([t for t in progress if t is not None] + ([created] if created is not None else []), default=None)
    final = status in FINAL_STATUSES
    finished = epoch_of(job.get("finished_at")) if final else None
    idle = None if final or last is None else max(0.0, now - last)
    settling = counts["pending"] > 0 or status == "receiving"
    return {
        "job_id": job.get("job_id"),
        "status": status,
        "tenant": job.get("tenant"),
        "target": job.get("target"),
        "kind": job.get("kind"),
        "source": job.get("source") or None,
        "total": int(job.get("total") or 0),
        "pending": counts["pending"],
        "counts": counts,
        "reason": job.get("reason") or None,
        "submitted_at": job.get("submitted_at") or (iso(created) if created else None),
        "finished_at": job.get("finished_at") if final else None,
        "last_progress_at": iso(last) if last is not None and not final else None,
        "age_seconds": round(max(0.0, (finished or now) - created), 1) if created is not None else None,
        "idle_seconds": round(idle, 1) if idle is not None else None,
        "stalled": bool(not final and settling and idle is not None and idle >= stall_seconds),
    }


def _read_jobs(client: redis.Redis, settings: Settings, job_ids: list[str]) -> list[dict[str, Any] | None]:
    pipe = client.pipeline(transaction=False)
    for job_id in job_ids:
        pipe.hmget(f"{settings.key_prefix}:job:{job_id}", _JOB_FIELDS)
    out = []
    for job_id, values in zip(job_ids, pipe.execute(), strict=True):
        job = {k: v for k, v in zip(_JOB_FIELDS, values, strict=True) if v is not None}
        out.append({**job, "job_id": job.get("job_id", job_id)} if job else None)  # None: expired
    return out


def _scores(client: redis.Redis, key: str, members: list[str]) -> list[float | None]:
    out: list[float | None] = []
    for start in range(0, len(members), PAGE):
        out += client.zmscore(key, members[start : start + PAGE])
    return out


def open_jobs(
    client: redis.Redis, settings: Settings, *, now: float | None = None, limit: int = OPEN_JOBS_READ
) -> dict[str, Any]:
    """Unfinished jobs, oldest first: the `limit` oldest in detail, and how many there are in all."""
    now = time.time() if now is None else now
    p = settings.key_prefix
    members = sorted(client.smembers(f"{p}:open_jobs"))
    scored = sorted(
        zip(_scores(client, f"{p}:jobs", members), members, strict=True), key=lambda x: (x[0] is None, x[0] or 0, x[1])
    )[:limit]
    ids = [job_id for _, job_id in scored]
    entries, gone = [], 0
    for start in range(0, len(ids), PAGE):
        chunk = scored[start : start + PAGE]
        for (score, _), job in zip(chunk, _read_jobs(client, settings, ids[start : start + PAGE]), strict=True):
            if job is None or job.get("status") in FINAL_STATUSES:  # expired, or finished a moment ago
                gone += 1  # left in the set until a starting worker's recovery tidies it
            else:
                entries.append(job_entry(job, settings.stall_seconds, now, score))
    return {"total": len(members) - gone, "read": len(ids), "jobs": entries}


def oldest_pending_seconds(jobs: Iterable[dict[str, Any]]) -> float | None:
    """Age of the oldest open job that still has documents without an outcome; None when there is none."""
    ages = [j["age_seconds"] for j in jobs if j["pending"] > 0 and j["age_seconds"] is not None]
    return max(ages) if ages else None


def recent_jobs(
    client: redis.Redis,
    settings: Settings,
    *,
    tenant: str | None = None,
    since: float | None = None,
    status: str | None = None,
    limit: int = 50,
    now: float | None = None,
    scan_limit: int = JOBS_SCAN_LIMIT,
) -> dict[str, Any]:
    """Jobs newest first, filtered by tenant, submission time and status.

    Looks at no more than `scan_limit` of the newest jobs (after `since`); `truncated` says when that bound,
    rather than the end of the list, stopped the search."""
    now = time.time() if now is None else now
    key = f"{settings.key_prefix}:jobs"
    low = "-inf" if since is None else since
    found: list[dict[str, Any]] = []
    scanned, truncated = 0, False
    high: float | str = "+inf"
    while len(found) < limit:
        if scanned >= scan_limit:
            truncated = True
            break
        page = client.zrevrangebyscore(
            key, high, low, start=scanned, num=min(PAGE, scan_limit - scanned), withscores=True
        )
        if not page:
            break
        if high == "+inf":  # later pages stay below the newest job seen: jobs submitted meanwhile cannot shift them
            high = page[0][1]
        scanned += len(page)
        jobs = _read_jobs(client, settings, [job_id for job_id, _ in page])
        for (_, score), job in zip(page, jobs, strict=True):
            if job is None or (tenant and job.get("tenant") != tenant) or (status and job.get("status") != status):
                continue
            found.append(job_entry(job, settings.stall_seconds, now, score))
            if len(found) == limit:
                break
    return {"jobs": found, "scanned": scanned, "truncated": truncated}


def recent_failures(
    client: redis.Redis, settings: Settings, *, jobs: int = 20, per_job: int = 5, limit: int = 20
) -> list[dict[str, Any]]:
    """Documents that failed or ended unknown in the `jobs` newest jobs, and rejected jobs, newest first.

    At most `per_job` documents of a job and `limit` in all; each job's status hash is scanned for at
    most STATUS_SCAN_LIMIT entries (its counters say how many failed in all: `failed_in_job`)."""
    p = settings.key_prefix
    ids = client.zrevrange(f"{p}:jobs", 0, max(0, jobs - 1))
    out: list[dict[str, Any]] = []
    for job_id, job in zip(ids, _read_jobs(client, settings, ids), strict=True):
        if job is None or len(out) >= limit:
            continue
        base = {"job_id": job_id, "tenant": job.get("tenant"), "kind": job.get("kind"), "target": job.get("target")}
        if job.get("status") == "rejected":
            out.append(
                {
                    **base,
                    "position": None,
                    "external_id": None,
                    "status": "rejected",
                    "reason": job.get("reason"),
                    "at": job.get("finished_at") or job.get("updated_at"),
                    "failed_in_job": 0,
                }
            )
            continue
        bad = int(job.get("n_failed") or 0) + int(job.get("n_unknown") or 0)
        if not bad:
            continue
        positions = _bad_positions(client, f"{p}:job:{job_id}:status", min(per_job, limit - len(out)))
        if not positions:
            continue
        records = client.hmget(f"{p}:job:{job_id}:records", [str(pos) for pos, _ in positions])
        for (pos, status), raw in zip(positions, records, strict=True):
            record = json.loads(raw) if raw else {}
            out.append(
                {
                    **base,
                    "position": pos,
                    "external_id": record.get("external_id"),
                    "status": status,
                    "reason": record.get("error"),
                    "at": record.get("updated_at"),
                    "failed_in_job": bad,
                }
            )
    return out


def _bad_positions(client: redis.Redis, key: str, want: int) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for scanned, (position, status) in enumerate(client.hscan_iter(key, count=PAGE), start=1):
        if status in ("failed", "unknown"):
            found.append((int(position), status))
            if len(found) >= want:
                break
        if scanned >= STATUS_SCAN_LIMIT:
            break
    return sorted(found)


def dead_letters(client: redis.Redis, settings: Settings, *, newest: int = 5) -> dict[str, Any]:
    """How many dead letters there are, and the newest few (without their documents)."""
    from worker.ops.deadletters import summary

    p = settings.key_prefix
    count = int(client.zcard(f"{p}:dead:index"))
    ids = client.zrevrange(f"{p}:dead:index", 0, newest - 1) if newest > 0 and count else []
    entries = [json.loads(v) for v in client.hmget(f"{p}:dead", ids) if v] if ids else []
    return {"count": count, "newest": [summary(e) for e in entries]}


def rejected_messages(client: redis.Redis, settings: Settings, *, newest: int = 3) -> dict[str, Any]:
    """Raw producer messages refused (worker/producer/submissions.py logs each, capped, without its content)."""
    key = f"{settings.key_prefix}:rejected"
    entries = client.lrange(key, 0, newest - 1) if newest > 0 else []
    return {"count": int(client.llen(key)), "newest": [json.loads(e) for e in entries]}


# ----- workers


def workers(settings: Settings, timeout: float = 1.0) -> dict[str, Any]:
    """Celery workers answering a broadcast within `timeout`, split into those serving our queues and others.

    Workers of every deployment on the same broker answer (the broadcast is not per queue): those serving
    none of our queues are only counted, which also shows a worker started with the wrong ERPSYNC_QUEUE.
    A stopped worker simply does not answer; an unreachable broker gives `error`, never an exception."""
    from kombu.exceptions import OperationalError

    from worker.celery_app.application import app
    from worker.redaction import redact

    ours = set(queue_names(settings))
    try:
        replies = app.control.inspect(timeout=timeout).active_queues() or {}
    except (OperationalError, redis.RedisError, OSError) as exc:
        return {"workers": [], "other_workers": 0, "error": redact(str(exc))}
    serving, others = [], 0
    for name, queues in sorted(replies.items()):
        names = sorted(q.get("name", "") for q in queues or [])
        if ours & set(names):
            serving.append({"name": name, "queues": names})
        else:
            others += 1
    return {"workers": serving, "other_workers": others, "error": None}


# ----- everything


def overview(
    client: redis.Redis, settings: Settings, *, with_workers: bool = True, now: float | None = None
) -> dict[str, Any]:
    """The `erpsync status --json` object."""
    now = time.time() if now is None else now
    jobs = open_jobs(client, settings, now=now)
    data: dict[str, Any] = {
        "generated_at": iso(now),
        "key_prefix": settings.key_prefix,
        "stall_seconds": settings.stall_seconds,
        "queues": queue_depths(client, settings),
        **waiting_input(client, settings),
        "buffers": buffer_depths(client, settings),
        "open_jobs_total": jobs["total"],
        "open_jobs": jobs["jobs"],
        "stalled_jobs": sum(1 for j in jobs["jobs"] if j["stalled"]),
        "oldest_pending_seconds": oldest_pending_seconds(jobs["jobs"]),
        "recent_failures": recent_failures(client, settings),
        "dead_letters": dead_letters(client, settings),
        "rejected_messages": rejected_messages(client, settings),
    }
    # Redis first: when it is down, the command fails at once with its one-line error, before a broadcast.
    found = workers(settings) if with_workers else {"workers": [], "other_workers": 0, "error": "not asked"}
    data.update(workers=found["workers"], other_workers=found["other_workers"], workers_error=found["error"])
    return data


class OverviewCollector(Collector):
    """Prometheus gauges computed at scrape time from Redis (no worker broadcast: Flower has worker metrics)."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.r = client
        self.s = settings

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = time.time()
        queues = GaugeMetricFamily("erpsync_queue_depth", "Messages waiting in a Celery queue", labels=["queue"])
        for q in queue_depths(self.r, self.s):
            queues.add_metric([q["queue"]], q["messages"])
        yield queues
        waiting = waiting_input(self.r, self.s)
        yield GaugeMetricFamily(
            "erpsync_intake_items", "Intake items (job chunks) not taken yet", value=waiting["intake_items"]
        )
        yield GaugeMetricFamily(
            "erpsync_submissions_waiting",
            "Raw producer messages not accepted yet",
            value=waiting["submissions_waiting"] + waiting["submissions_held"],
        )
        buffers = GaugeMetricFamily(
            "erpsync_buffer_documents", "Documents waiting in a coalescing buffer", labels=["tenant", "kind"]
        )
        for b in buffer_depths(self.r, self.s):
            buffers.add_metric([b["tenant"], b["kind"]], b["documents"])
        yield buffers
        jobs = open_jobs(self.r, self.s, now=now)
        yield GaugeMetricFamily("erpsync_jobs_open", "Jobs not finished", value=jobs["total"])
        yield GaugeMetricFamily(
            "erpsync_stalled_jobs",
            "Open jobs none of whose documents changed state for ERPSYNC_STALL_SECONDS",
            value=sum(1 for j in jobs["jobs"] if j["stalled"]),
        )
        yield GaugeMetricFamily(
            "erpsync_oldest_pending_seconds",
            "Age of the oldest open job with documents still pending (0: none)",
            value=oldest_pending_seconds(jobs["jobs"]) or 0.0,
        )
        yield GaugeMetricFamily(
            "erpsync_dead_letters", "Dead letters kept", value=int(self.r.zcard(f"{self.s.key_prefix}:dead:index"))
        )


def since_text(seconds: float | None) -> str:
    """A short age for people: 45s, 12m05s, 3h02m, 2d04h."""
    if seconds is None:
        return "-"
    d = timedelta(seconds=int(seconds))
    days, rest = d.days, d.seconds
    hours, minutes, secs = rest // 3600, rest % 3600 // 60, rest % 60
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"
