"""What the pipeline is doing right now, read from Redis: the data behind `erpsync status`, `jobs` and `metrics`.

Functions here return plain dicts and never print: worker/cli/commands.py renders them as rich tables or JSON, and
`OverviewCollector` turns them into Prometheus gauges at scrape time. Everything is read, nothing is written
or repaired (that is the workers' recovery, worker/pipeline/recovery.py). Every read is bounded — so many open jobs,
so many recent jobs, so many status entries per job — so a status screen or a scrape stays cheap with a
backlog of a million documents.

Where the numbers come from: the store's read-only views (worker/store/views.py, OperatorView), which read
- the Celery queues' lists (every priority of a queue counted),
- intake items, raw producer messages waiting and being accepted, the coalescing buffers;
- open jobs, every job by submission time, dead letters, refused producer messages (a capped log);
- job webhooks' deliveries due, failing and given up, and job events not taken yet (worker/store/webhooks.py);
and, per tenant with work (`tenants`), the intake queue's and the dispatcher's backlogs per lane
(worker/store/intake.py, dispatch.py): what each tenant has waiting, what it waits for, and for how long.

A job is *stalled* when it is not finished, still has documents to settle, and none of its documents has
changed state for `stall_seconds`: its `updated_at` (set by the results store's Lua script on every status
change) or, before any change, when it was created, received or started.

Per tenant (`tenant_status`, one row for each configured tenant and each with work): its backlog, its rate —
documents settled per second over the last minute, from the throughput buckets the same Lua script writes
(worker/store/counters.py, `throughput`) — the ETA at that rate, and why it does not move (a `Stall`: paused by an
operator or a refused authorisation, the ERP's Retry-After, its rate limit, its cap of requests in flight, an
outage, reconciliation, no worker, a lost duplicate index). Open jobs carry their own rate and ETA. Failures are
counted for the last hour and before it (`failure_counts`), and dead letters as kept and still open.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from worker.errors import ConfigurationError
from worker.settings import Settings
from worker.store.client import RedisClient
from worker.store.counters import Throughput, throughput
from worker.store.dispatch import LANES, Dispatcher
from worker.store.errors import REDIS_ERRORS
from worker.store.intake import IntakeQueue
from worker.store.outbox import Outbox
from worker.store.records import DOC_STATUSES, JOB_FINAL
from worker.store.results import ResultsStore
from worker.store.tenants import TenantControls
from worker.store.views import OperatorView
from worker.store.webhooks import WebhookStore

# Finished jobs: the results store's final statuses, and `rejected` (a producer message refused as a whole).
FINAL_STATUSES = frozenset(JOB_FINAL) | {"rejected"}
JOB_STATUSES = ("receiving", "queued", "running", "succeeded", "partial", "failed", "incomplete", "rejected")

OPEN_JOBS_READ = 5000  # open jobs read in detail (the oldest ones: they are the ones that stall)
JOBS_SCAN_LIMIT = 20_000  # `jobs` looks at most this many of the newest jobs to fill its filtered page
STATUS_SCAN_LIMIT = 10_000  # per job, status entries scanned for failed documents
PAGE = 500
BAD_STATUSES = ("failed", "unknown")  # what `recent_failures` lists of a job's documents

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


def _view(client: RedisClient, settings: Settings) -> OperatorView:
    return OperatorView(client, settings.key_prefix)


def queue_depths(client: RedisClient, settings: Settings) -> list[dict[str, Any]]:
    """Messages waiting in each Celery queue of this deployment (not counting those a worker holds)."""
    names = queue_names(settings)
    depths = _view(client, settings).queue_depths(names)
    return [{"queue": n, "messages": depth} for n, depth in zip(names, depths, strict=True)]


def waiting_input(client: RedisClient, settings: Settings) -> dict[str, int]:
    """Intake items not taken yet, raw producer messages waiting and being accepted."""
    return _view(client, settings).waiting_input()._asdict()


def buffer_depths(client: RedisClient, settings: Settings) -> list[dict[str, Any]]:
    """Documents (and their bytes) waiting in each tenant's coalescing buffer, per kind."""
    return [b._asdict() for b in _view(client, settings).buffer_depths()]


# ----- tenants


def tenants(
    client: RedisClient, settings: Settings, buffers: list[dict[str, Any]], now: float | None = None
) -> list[dict[str, Any]]:
    """Every tenant with work waiting, the longest-waiting first: documents per lane waiting for intake, in the
    buffer, queued to send; batches coming back later; what the tenant waits for (`rate`: its next rate-limit turn,
    `slot`: its cap of requests in flight, with the holder and until when, `pause`: its ERP's Retry-After, or what
    its delayed batches wait for: `outage`, `retry`, `reconcile`, `lease`; `paused: <reason>` while the tenant is
    paused, worker/store/tenants.py), and the age of its oldest batch ready to send. A tenant with nothing waiting
    is not listed (and keeps no key). `buffers`: `buffer_depths`, read already by the caller."""
    now = time.time() if now is None else now
    dispatcher = Dispatcher(client, settings)
    rows: dict[str, dict[str, Any]] = {}

    def row(tenant: str) -> dict[str, Any]:
        return rows.setdefault(tenant, {
            "tenant": tenant, "intake_documents": dict.fromkeys((lane.value for lane in LANES), 0),
            "buffered_documents": 0, "queued_documents": dict.fromkeys((lane.value for lane in LANES), 0),
            "queued_batches": 0,
            "delayed_batches": 0, "delayed_documents": 0, "waiting_for": None, "waiting_seconds": None,
            "holder": None, "oldest_ready_seconds": None,
        })  # fmt: skip

    for b in IntakeQueue(client, settings).backlog():
        row(b.tenant)["intake_documents"][b.lane.value] = b.documents
    for buffered in buffers:
        if buffered["documents"]:
            row(buffered["tenant"])["buffered_documents"] += buffered["documents"]
    for t in dispatcher.backlog():
        entry = row(t.tenant)
        entry["queued_documents"] = {lane.value: t.documents[lane] for lane in LANES}
        entry["queued_batches"] = sum(t.batches.values())
        entry["oldest_ready_seconds"] = (
            None if t.oldest_ready_at is None else round(max(0.0, now - t.oldest_ready_at), 1)
        )
        if t.waiting is not None:
            entry["waiting_for"] = t.waiting.value
            entry["waiting_seconds"] = None if t.waiting_until is None else round(max(0.0, t.waiting_until - now), 2)
            if t.holder:
                entry["holder"] = {"batch_id": t.holder, "sender": t.holder_sender}
    for tenant, delayed in dispatcher.delayed_by_tenant().items():
        entry = row(tenant)
        entry["delayed_batches"], entry["delayed_documents"] = delayed.batches, delayed.documents
        if entry["waiting_for"] is None and not entry["queued_batches"]:
            entry["waiting_for"] = max(delayed.reasons, key=lambda r: delayed.reasons[r])
            entry["waiting_seconds"] = round(max(0.0, delayed.next_due - now), 2)
    for tenant, state in TenantControls(client, settings.key_prefix).states(rows).items():
        if state.paused:  # its backlog waits for a resume or a reauth (worker/ops/tenants.py)
            rows[tenant].update(waiting_for=f"paused: {state.reason or state.paused_by}", waiting_seconds=None)
    return sorted(rows.values(), key=lambda e: (-(e["oldest_ready_seconds"] or 0.0), e["tenant"]))


class Stall(StrEnum):
    """Why a tenant's documents are not moving (`tenant_status`), the most telling reason first."""

    PAUSED = "paused"  # paused by an operator, or because its ERP refused its authorisation (worker/ops/tenants.py)
    INDEX_LOST = "index lost"  # Redis lost the duplicate index: intake claims nothing until it is restored
    NO_WORKER = "no worker"  # no worker serving our queues answered
    OUTAGE = "outage"  # its ERP could not be reached: its batches wait for the next try
    RETRY_AFTER = "retry-after"  # its ERP asked for a pause (a 429's Retry-After)
    RATE_LIMIT = "rate limit"  # it waits for its next rate-limit turn
    SLOTS = "slots"  # its cap of requests in flight is reached
    RECONCILE = "reconcile"  # its batches wait to look up what the ERP holds before sending again
    RETRY = "retry"  # its batches wait for a retry's backoff
    LEASE = "lease"  # a batch waits for a sender's lease to run out
    STALLED = "stalled"  # documents waiting, none settled for ERPSYNC_STALL_SECONDS, and no reason known


#: What the dispatcher says a tenant or its delayed batches wait for (worker/store/dispatch.py, pipeline/retry.py).
_WAITING_STALL = {
    "paused": Stall.PAUSED,
    "pause": Stall.RETRY_AFTER,
    "rate": Stall.RATE_LIMIT,
    "slot": Stall.SLOTS,
    "outage": Stall.OUTAGE,
    "connection": Stall.OUTAGE,
    "reconcile": Stall.RECONCILE,
    "retry": Stall.RETRY,
    "lease": Stall.LEASE,
    "sender_lost": Stall.LEASE,
}


def tenant_status(
    waiting: list[dict[str, Any]],
    jobs: list[dict[str, Any]],
    rates: Throughput,
    states: list[dict[str, Any]],
    *,
    no_worker: bool = False,
    index_lost: bool = False,
) -> list[dict[str, Any]]:
    """One row per tenant (configured in `states`, the rows of worker/ops/tenants.py `list_tenants`, or with work
    waiting or open jobs): its `backlog` (documents not settled yet: its open jobs' pending documents, or what waits
    in the intake queue, buffer and send queue if that is more), `rate` (documents settled per second over the last
    minute), `eta_seconds` at that rate, and why it does not move (`stall`, a Stall, with `stall_seconds` until the
    wait ends when known and `stall_detail`); `stalled` when it has a backlog and settled nothing in the last
    minute. Those with a backlog first (the largest first), then the paused ones, then the idle ones."""
    rows: dict[str, dict[str, Any]] = {}

    def row(tenant: str) -> dict[str, Any]:
        return rows.setdefault(tenant, {
            "tenant": tenant, "state": None, "paused_by": None, "backlog": 0, "waiting_documents": 0,
            "open_jobs": 0, "stalled_jobs": 0, "rate": 0.0, "eta_seconds": None, "stall": None,
            "stall_seconds": None, "stall_detail": None, "stalled": False,
        })  # fmt: skip

    for state in states:
        entry = row(state["name"])
        entry.update(state=state.get("state"), paused_by=state.get("paused_by"))
        if state.get("state") == "paused":
            entry.update(stall=Stall.PAUSED.value, stall_detail=state.get("reason"))
    pending: dict[str, int] = {}
    for job in jobs:
        tenant = job.get("tenant") or ""
        entry = row(tenant)
        entry["open_jobs"] += 1
        entry["stalled_jobs"] += int(bool(job.get("stalled")))
        pending[tenant] = pending.get(tenant, 0) + int(job.get("pending") or 0)
    for w in waiting:
        entry = row(w["tenant"])
        entry["waiting_documents"] = (
            sum(w["intake_documents"].values()) + w["buffered_documents"] + sum(w["queued_documents"].values())
        )
        stall = _WAITING_STALL.get(w["waiting_for"] or "")
        if stall is not None and entry["stall"] is None:
            entry.update(stall=stall.value, stall_seconds=None if stall == Stall.PAUSED else w["waiting_seconds"])
            if stall == Stall.SLOTS and w.get("holder"):
                entry["stall_detail"] = f"held by {w['holder']['sender'] or w['holder']['batch_id']}"
    for tenant, entry in rows.items():
        _finish_tenant(entry, pending.get(tenant, 0), rates.tenants.get(tenant, 0.0), no_worker, index_lost)
    return sorted(rows.values(), key=lambda e: (-e["backlog"], e["stall"] != Stall.PAUSED, e["tenant"]))


def _finish_tenant(entry: dict[str, Any], pending: int, rate: float, no_worker: bool, index_lost: bool) -> None:
    """A `tenant_status` row's backlog, rate, ETA, and its stall when the whole pipeline is stopped for it."""
    entry["backlog"] = max(pending, entry["waiting_documents"])
    entry["rate"] = rate
    if entry["backlog"] and rate > 0:
        entry["eta_seconds"] = round(entry["backlog"] / rate, 1)
    if not entry["backlog"] or entry["stall"] == Stall.PAUSED:
        return
    if index_lost:
        entry.update(stall=Stall.INDEX_LOST.value, stall_seconds=None)
    elif no_worker:
        entry.update(stall=Stall.NO_WORKER.value, stall_seconds=None)
    elif entry["stall"] is None and rate == 0 and entry["stalled_jobs"]:
        entry["stall"] = Stall.STALLED.value
    entry["stalled"] = rate == 0 and entry["stall"] is not None


def with_rates(jobs: list[dict[str, Any]], rates: Throughput) -> list[dict[str, Any]]:
    """Open jobs with `percent` settled, `rate` (documents settled per second over the last minute) and
    `eta_seconds` at that rate (None while nothing settles)."""
    for job in jobs:
        settled = max(0, job["total"] - job["pending"])
        job["percent"] = round(100.0 * settled / job["total"], 1) if job["total"] else 0.0
        job["rate"] = rates.jobs.get(job["job_id"] or "", 0.0)
        job["eta_seconds"] = round(job["pending"] / job["rate"], 1) if job["rate"] > 0 and job["pending"] else None
    return jobs


# ----- jobs


def job_entry(job: dict[str, Any], stall_seconds: float, now: float, score: float | None = None) -> dict[str, Any]:
    """One job as `status`/`jobs` show it: ids, counts, times, age, and whether it is stalled."""
    counts: dict[str, int] = {s: int(job.get(f"n_{s}") or 0) for s in DOC_STATUSES}
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
        "lane": job.get("lane"),
        "source": job.get("source") or None,
        "total": int(job.get("total") or 0),
        "pending": counts["pending"],
        "counts": counts,
        "reason": job.get("reason") or None,
        # An `incomplete` job: where its source broke and why (worker/store/jobs.py); the job holds what was read.
        "source_error": job.get("source_error") or None,
        "source_error_line": int(job["source_error_line"]) if job.get("source_error_line") else None,
        "submitted_at": job.get("submitted_at") or (iso(created) if created else None),
        "finished_at": job.get("finished_at") if final else None,
        "last_progress_at": iso(last) if last is not None and not final else None,
        "age_seconds": round(max(0.0, (finished or now) - created), 1) if created is not None else None,
        "idle_seconds": round(idle, 1) if idle is not None else None,
        "stalled": bool(not final and settling and idle is not None and idle >= stall_seconds),
    }


def open_jobs(
    client: RedisClient, settings: Settings, *, now: float | None = None, limit: int = OPEN_JOBS_READ
) -> dict[str, Any]:
    """Unfinished jobs, oldest first: the `limit` oldest in detail, and how many there are in all."""
    now = time.time() if now is None else now
    view = _view(client, settings)
    members = view.open_job_ids()
    scored = sorted(
        zip(view.submission_times(members, PAGE), members, strict=True), key=lambda x: (x[0] is None, x[0] or 0, x[1])
    )[:limit]
    ids = [job_id for _, job_id in scored]
    entries, gone = [], 0
    for start in range(0, len(ids), PAGE):
        chunk = scored[start : start + PAGE]
        for (score, _), job in zip(chunk, view.jobs(ids[start : start + PAGE]), strict=True):
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
    client: RedisClient,
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
    view = _view(client, settings)
    low: float | str = "-inf" if since is None else since
    found: list[dict[str, Any]] = []
    scanned, truncated = 0, False
    high: float | str = "+inf"
    while len(found) < limit:
        if scanned >= scan_limit:
            truncated = True
            break
        page = view.jobs_page(high, low, scanned, min(PAGE, scan_limit - scanned))
        if not page:
            break
        if high == "+inf":  # later pages stay below the newest job seen: jobs submitted meanwhile cannot shift them
            high = page[0][1]
        scanned += len(page)
        jobs = view.jobs([job_id for job_id, _ in page])
        for (_, score), job in zip(page, jobs, strict=True):
            if job is None or (tenant and job.get("tenant") != tenant) or (status and job.get("status") != status):
                continue
            found.append(job_entry(job, settings.stall_seconds, now, score))
            if len(found) == limit:
                break
    return {"jobs": found, "scanned": scanned, "truncated": truncated}


def recent_failures(
    client: RedisClient, settings: Settings, *, jobs: int = 20, per_job: int = 5, limit: int = 20
) -> list[dict[str, Any]]:
    """Documents that failed or ended unknown in the `jobs` newest jobs, and rejected jobs, newest first.

    At most `per_job` documents of a job and `limit` in all; each job's status hash is scanned for at
    most STATUS_SCAN_LIMIT entries (its counters say how many failed in all: `failed_in_job`)."""
    view = _view(client, settings)
    ids = view.newest_job_ids(jobs)
    out: list[dict[str, Any]] = []
    for job_id, job in zip(ids, view.jobs(ids), strict=True):
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
        positions = view.positions_with_status(
            job_id, BAD_STATUSES, min(per_job, limit - len(out)), page=PAGE, scan_limit=STATUS_SCAN_LIMIT
        )
        if not positions:
            continue
        records = view.records(job_id, [pos for pos, _ in positions])
        for (pos, status), record in zip(positions, records, strict=True):
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


def failure_counts(
    client: RedisClient, settings: Settings, *, now: float, window: float = 3600.0, jobs: int = 200
) -> dict[str, Any]:
    """Documents that failed or ended unknown (and rejected jobs) in the `jobs` newest jobs: `last_hour` those of
    jobs that changed within `window` seconds, `older` those of jobs that did not. A job's failures are dated by its
    last change (its `updated_at`): two job fields each, not a read of every failed record."""
    view = _view(client, settings)
    ids = view.newest_job_ids(jobs)
    recent = older = 0
    for job in view.jobs(ids):
        if job is None:
            continue
        bad = 1 if job.get("status") == "rejected" else int(job.get("n_failed") or 0) + int(job.get("n_unknown") or 0)
        changed = epoch_of(job.get("updated_at") or job.get("finished_at") or job.get("created_at"))
        if changed is not None and changed >= now - window:
            recent += bad
        else:
            older += bad
    return {"window_seconds": window, "last_hour": recent, "older": older, "jobs_scanned": len(ids)}


def dead_letters(client: RedisClient, settings: Settings, *, newest: int = 5) -> dict[str, Any]:
    """How many dead letters are kept (`count`) and open (`open`: neither replayed nor resolved), and the newest few
    open ones (without their documents; worker/ops/deadletters.py)."""
    from worker.ops.deadletters import newest_open, summary

    store = ResultsStore(client, settings)
    count, still_open = store.dead_letter_counts()
    return {"count": count, "open": still_open, "newest": [summary(e) for e in newest_open(store, newest)]}


def rejected_messages(client: RedisClient, settings: Settings, *, newest: int = 3) -> dict[str, Any]:
    """Raw producer messages refused (worker/producer/submissions.py logs each, capped, without its content)."""
    count, entries = _view(client, settings).rejected_messages(newest)
    return {"count": count, "newest": entries}


# ----- the archive


def archive(client: RedisClient, settings: Settings) -> dict[str, Any]:
    """The archive (worker/archive/) as Redis sees it: the outbox's lag (entries not archived yet, the oldest's
    age), the archiver's last commit and error, and the duplicate index's state: `ready`, `lost` (Redis lost its
    data: intake claims nothing until `erpsync archive restore-index`) or `not started` (no worker has run yet)."""
    if not settings.archive_enabled:
        return {"enabled": False}
    outbox = Outbox(client, settings)
    lag, oldest = outbox.lag()
    state = outbox.state()
    index = "lost" if state.get("lost") else ("ready" if outbox.epoch() else "not started")
    return {
        "enabled": True,
        "lag": lag,
        "oldest_seconds": None if oldest is None else round(oldest, 3),
        "index": index,
        "reason": state.get("lost") or None,
        "committed_at": float(state["committed_at"]) if state.get("committed_at") else None,
        "error": state.get("error") or None,
    }


def archive_gauges(data: dict[str, Any]) -> Iterator[GaugeMetricFamily]:
    """The archive's gauges, from `archive()`: its lag in entries and seconds, and whether the index is lost."""
    if not data.get("enabled"):
        return
    yield GaugeMetricFamily(
        "erpsync_archive_lag_entries",
        "Outbox entries (a script call's outcomes each) not archived yet",
        value=data["lag"],
    )
    yield GaugeMetricFamily(
        "erpsync_archive_lag_seconds", "Age of the oldest outcome not archived yet", value=data["oldest_seconds"] or 0
    )
    yield GaugeMetricFamily(
        "erpsync_index_lost",
        "1 while Redis has lost the duplicate index (intake claims nothing until it is restored)",
        value=1 if data["index"] == "lost" else 0,
    )


# ----- webhooks


def webhooks(client: RedisClient, settings: Settings, now: float | None = None) -> dict[str, Any]:
    """Job webhooks (worker/webhooks/): deliveries waiting (`due`, now or after a backoff), `failing` (waiting
    after a failed attempt), `given_up` (kept a week), per tenant too, and the job events no sender has taken yet
    (they grow while `erpsync webhooks run` is not running)."""
    counts = WebhookStore(client, settings.key_prefix).counts(time.time() if now is None else now)
    return {
        "events_waiting": counts.events_waiting,
        "due": counts.due,
        "failing": counts.failing,
        "given_up": counts.given_up,
        "oldest_due_seconds": counts.oldest_due_seconds,
        "tenants": [
            {"tenant": t.tenant, "due": t.due, "failing": t.failing, "given_up": t.given_up}
            for t in sorted(counts.tenants.values(), key=lambda t: t.tenant)
        ],
        "truncated": counts.truncated,
    }


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
    broker_errors: tuple[type[Exception], ...] = (OperationalError, *REDIS_ERRORS, OSError)  # the broker is Redis too
    try:
        replies = app.control.inspect(timeout=timeout).active_queues() or {}
    except broker_errors as exc:
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
    client: RedisClient, settings: Settings, *, with_workers: bool = True, now: float | None = None
) -> dict[str, Any]:
    """The `erpsync status --json` object."""
    now = time.time() if now is None else now
    jobs = open_jobs(client, settings, now=now)
    buffers = buffer_depths(client, settings)
    rates = throughput(client, settings.key_prefix, now)
    waiting = tenants(client, settings, buffers, now)
    data: dict[str, Any] = {
        "generated_at": iso(now),
        "key_prefix": settings.key_prefix,
        "stall_seconds": settings.stall_seconds,
        "queues": queue_depths(client, settings),
        **waiting_input(client, settings),
        "buffers": buffers,
        "tenants": waiting,
        "send_tickets": Dispatcher(client, settings).live_tickets(),
        "open_jobs_total": jobs["total"],
        "open_jobs": with_rates(jobs["jobs"], rates),
        "stalled_jobs": sum(1 for j in jobs["jobs"] if j["stalled"]),
        "oldest_pending_seconds": oldest_pending_seconds(jobs["jobs"]),
        "rate_window_seconds": round(rates.window_seconds, 1),
        "recent_failures": recent_failures(client, settings),
        "failures": failure_counts(client, settings, now=now),
        "dead_letters": dead_letters(client, settings),
        "rejected_messages": rejected_messages(client, settings),
        "webhooks": webhooks(client, settings, now),
        "archive": archive(client, settings),
    }
    # Redis first: when it is down, the command fails at once with its one-line error, before a broadcast.
    found = workers(settings) if with_workers else {"workers": [], "other_workers": 0, "error": "not asked"}
    data.update(workers=found["workers"], other_workers=found["other_workers"], workers_error=found["error"])
    names = {w["tenant"] for w in waiting} | {j["tenant"] for j in jobs["jobs"] if j["tenant"]}
    data["tenant_status"] = tenant_status(
        waiting,
        jobs["jobs"],
        rates,
        tenant_states(client, settings, names),
        no_worker=with_workers and not found["workers"],
        index_lost=data["archive"].get("index") == "lost",
    )
    return data


def tenant_states(client: RedisClient, settings: Settings, seen: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Every configured tenant and each of `seen`, `active` or `paused` (by `operator` or `auth`, with the reason),
    as the tenant controls keep it (worker/store/tenants.py): the state fields of worker/ops/tenants.py's
    `list_tenants`, read from the store itself (one round trip). A tenants file that cannot be read leaves the
    configured ones out: the status screen still shows the rest."""
    try:
        configured = set(settings.tenants())
    except ConfigurationError:
        configured = set()
    names = sorted(configured | set(seen))
    rows = []
    for name, state in TenantControls(client, settings.key_prefix).states(names).items():
        rows.append({"name": name, "state": "paused" if state.paused else "active",
                     "paused_by": state.paused_by.value if state.paused_by else None, "reason": state.reason,
                     "since": state.since, "auth": state.auth.value})  # fmt: skip
    return rows


class OverviewCollector(Collector):
    """Prometheus gauges computed at scrape time from Redis (no worker broadcast: Flower has worker metrics)."""

    def __init__(self, client: RedisClient, settings: Settings) -> None:
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
        buffered = GaugeMetricFamily(
            "erpsync_buffer_documents", "Documents waiting in a coalescing buffer", labels=["tenant", "kind"]
        )
        buffers = buffer_depths(self.r, self.s)
        for b in buffers:
            buffered.add_metric([b["tenant"], b["kind"]], b["documents"])
        yield buffered
        backlog = GaugeMetricFamily(
            "erpsync_tenant_backlog_documents",
            "Documents of a tenant waiting, per lane: for intake, in the buffer (lane bulk), queued to send",
            labels=["tenant", "lane"],
        )
        oldest = GaugeMetricFamily(
            "erpsync_tenant_oldest_ready_seconds",
            "Age of a tenant's oldest batch ready to send (tenants with batches queued)",
            labels=["tenant"],
        )
        for t in tenants(self.r, self.s, buffers, now):
            for lane in LANES:
                waiting = t["intake_documents"][lane.value] + t["queued_documents"][lane.value]
                backlog.add_metric(
                    [t["tenant"], lane.value], waiting + (t["buffered_documents"] if lane is LANES[1] else 0)
                )
            if t["oldest_ready_seconds"] is not None:
                oldest.add_metric([t["tenant"]], t["oldest_ready_seconds"])
        yield backlog
        yield oldest
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
        kept, still_open = ResultsStore(self.r, self.s).dead_letter_counts()
        yield GaugeMetricFamily("erpsync_dead_letters", "Dead letters kept", value=kept)
        yield GaugeMetricFamily(
            "erpsync_dead_letters_open", "Dead letters neither replayed nor resolved", value=still_open
        )
        yield from webhook_gauges(webhooks(self.r, self.s, now))
        yield from archive_gauges(archive(self.r, self.s))


def webhook_gauges(data: dict[str, Any]) -> Iterator[GaugeMetricFamily]:
    """The webhooks' gauges, from `webhooks()`: deliveries due, failing and given up per tenant, events waiting."""
    names = {
        "due": ("erpsync_webhook_deliveries_due", "Webhook deliveries waiting to be sent, now or after a backoff"),
        "failing": ("erpsync_webhook_deliveries_failing", "Webhook deliveries waiting after a failed attempt"),
        "given_up": ("erpsync_webhook_deliveries_failed", "Webhook deliveries given up (kept 7 days)"),
    }
    for field, (name, text) in names.items():
        family = GaugeMetricFamily(name, text, labels=["tenant"])
        for t in data["tenants"]:
            family.add_metric([t["tenant"]], t[field])
        yield family
    yield GaugeMetricFamily(
        "erpsync_webhook_events_waiting",
        "Final jobs not yet taken by a webhook sender (grows while none runs)",
        value=data["events_waiting"],
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
