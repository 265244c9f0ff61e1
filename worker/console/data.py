"""What the console shows, as JSON-ready dicts: tenants, jobs and their documents, search results, dead letters.

Every number comes from worker/ops (overview, tenants, deadletters), worker/store's read views and the archive's
history (worker/archive/history.py); this module only joins them per page and adds what a page derives from them
(a job's throughput and ETA from its counts and age). A tenant's rate is the one `erpsync status` shows: documents
settled per second over the last minute, from the throughput counters the workers keep (worker/store/counters.py).
Nothing here writes, and no document body is read except a dead letter's on its own page.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from schemas.kinds import DocumentKind
from worker.archive.database import engine_for, ready_engine
from worker.archive.history import history, job, job_records
from worker.celery_app.enqueue import publish
from worker.ops import deadletters, overview
from worker.ops import tenants as tenant_ops
from worker.settings import Settings
from worker.store import counters
from worker.store.client import RedisClient
from worker.store.records import DOC_STATUSES
from worker.store.results import ResultsStore
from worker.store.views import OperatorView

__all__ = ["PAGE_SIZES", "Console"]

PAGE_SIZES = (50, 100, 200)
SEARCH_LIMIT = 50  # archive rows per search


def progress(entry: dict[str, Any]) -> dict[str, Any]:
    """A job entry (worker/ops/overview.py `job_entry`) with what its page shows of its progress: documents
    settled, percent, documents per second since it was submitted, and the time left at that pace."""
    total, pending = entry["total"], entry["pending"]
    settled = max(0, total - pending)
    age = entry["age_seconds"] or 0.0
    rate = settled / age if age > 0 and settled else None
    eta = None
    if rate and pending and entry["finished_at"] is None:
        eta = round(pending / rate, 1)
    return {
        **entry,
        "settled": settled,
        "percent": round(100.0 * settled / total, 1) if total else (100.0 if entry["finished_at"] else 0.0),
        "throughput": round(rate, 2) if rate else None,
        "eta_seconds": eta,
    }


class Console:
    """The console's reads and the few actions it takes, for one deployment (one Redis, one key prefix)."""

    def __init__(self, client: RedisClient, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self.view = OperatorView(client, settings.key_prefix)
        self._store: ResultsStore | None = None
        self._engine: Engine | None = None
        self._lock = threading.Lock()

    @property
    def store(self) -> ResultsStore:
        with self._lock:
            if self._store is None:
                self._store = ResultsStore(self.client, self.settings)
            return self._store

    def archive_engine(self) -> Engine | None:
        """The archive's engine (schema checked once); None when the archive is off or its SQLite file does not
        exist yet (reading must not create it)."""
        if not self.settings.archive_enabled:
            return None
        with self._lock:
            if self._engine is None:
                engine = engine_for(self.settings.archive_url)
                database = engine.url.database
                sqlite_file = engine.dialect.name == "sqlite" and database and database != ":memory:"
                if sqlite_file and not Path(str(database)).exists():
                    return None
                self._engine = ready_engine(self.settings)
            return self._engine

    # ----- tenants

    def tenants(self) -> dict[str, Any]:
        """Every configured tenant: its state (active/paused, by whom, why, since), auth health and backlog
        (worker/ops/tenants.py), with the overview's documents per lane, what it waits for, the age of its oldest
        batch ready to send, and its rate; plus tenants with work waiting that are not configured any more."""
        buffers = overview.buffer_depths(self.client, self.settings)
        waiting = {row["tenant"]: row for row in overview.tenants(self.client, self.settings, buffers)}
        rates = counters.throughput(self.client, self.settings.key_prefix, time.time()).tenants
        rows = []
        for tenant in tenant_ops.list_tenants(self.client, self.settings):
            rows.append(self._tenant_row(tenant, waiting.pop(tenant["name"], None), rates.get(tenant["name"], 0.0)))
        for name, row in sorted(waiting.items()):
            unknown = {"name": name, "target": None, "state": "unknown", "paused_by": None, "reason": None,
                       "since": None, "auth": "unknown", "backlog": None, "reauth": []}  # fmt: skip
            rows.append(self._tenant_row(unknown, row, rates.get(name, 0.0)))
        return {"generated_at": overview.iso(time.time()), "tenants": rows}

    @staticmethod
    def _tenant_row(tenant: dict[str, Any], waiting: dict[str, Any] | None, rate: float) -> dict[str, Any]:
        """A tenant of worker/ops/tenants.py with what it waits for (the overview) and its rate."""
        lanes = dict(tenant.get("backlog_lanes") or {"interactive": 0, "bulk": 0})
        row = {**tenant, "rate": rate, "lanes": lanes, "later": tenant.get("backlog_later") or 0, "waiting_for": None,
               "waiting_seconds": None, "oldest_ready_seconds": None}  # fmt: skip
        if waiting is not None:
            if tenant.get("backlog_lanes") is None:  # not configured any more: the overview's counts
                for lane in lanes:
                    lanes[lane] = waiting["intake_documents"][lane] + waiting["queued_documents"][lane]
                lanes["bulk"] += waiting["buffered_documents"]
            row.update(waiting_for=waiting["waiting_for"], waiting_seconds=waiting["waiting_seconds"],
                       oldest_ready_seconds=waiting["oldest_ready_seconds"])  # fmt: skip
        if row["state"] == "paused":
            row["waiting_for"] = "pause (auth)" if row["paused_by"] == "auth" else "pause (operator)"
        return row

    def pause(self, name: str) -> None:
        tenant_ops.pause(self.client, self.settings, name, reason="paused from the console")

    def resume(self, name: str) -> None:
        tenant_ops.resume(self.client, self.settings, name, enqueue=publish)

    def reauth(self, name: str, credentials: dict[str, str]) -> None:
        tenant_ops.reauth(self.client, self.settings, name, credentials, enqueue=publish)

    def tenant_names(self) -> list[str]:
        return sorted(self.settings.tenants())

    # ----- jobs

    def jobs(self, *, tenant: str | None = None, status: str | None = None, limit: int = 50) -> dict[str, Any]:
        found = overview.recent_jobs(self.client, self.settings, tenant=tenant or None, status=status or None,
                                     limit=limit)  # fmt: skip
        return {"jobs": [progress(j) for j in found["jobs"]], "truncated": found["truncated"]}

    def job(self, job_id: str) -> dict[str, Any] | None:
        """A job's progress from Redis, or its archived summary (`"source": "archive"`) once Redis expired it."""
        (found,) = self.view.jobs([job_id])
        if found is not None:
            return {**progress(overview.job_entry(found, self.settings.stall_seconds, time.time())), "source": "redis"}
        engine = self.archive_engine()
        archived = job(engine, job_id) if engine is not None else None
        if archived is None:
            return None
        counts = {s.value: int(archived["counts"].get(s.value, 0)) for s in DOC_STATUSES}
        entry = {"job_id": job_id, "status": archived["status"], "tenant": archived.get("tenant"),
                 "target": archived.get("target"), "kind": archived.get("kind"), "lane": archived.get("lane"),
                 "source": "archive", "total": int(archived.get("total") or sum(counts.values())),
                 "pending": counts["pending"], "counts": counts, "reason": archived.get("reason"),
                 "submitted_at": _iso(archived.get("submitted_at")), "finished_at": _iso(archived.get("finished_at")),
                 "age_seconds": None, "idle_seconds": None, "stalled": False}  # fmt: skip
        return {**progress(entry), "source": "archive"}

    def documents(
        self, job_id: str, *, source: str, page: int = 1, size: int = 50, status: str | None = None
    ) -> dict[str, Any]:
        """One page of a job's documents in position order: position, ExternalId, status, Key, number, error and
        field errors; never a document's body. `status`: only documents with that outcome."""
        start = (page - 1) * size
        if source == "archive":
            engine = self.archive_engine()
            rows = [r for r in (job_records(engine, job_id) if engine else []) if not status or r.status == status]
            docs = [_document(r.position, r.as_dict() | {"key": r.key}) for r in rows[start : start + size + 1]]
        else:
            if status:
                found = self.view.positions_with_status(job_id, [status], start + size + 1, page=500,
                                                        scan_limit=overview.STATUS_SCAN_LIMIT)  # fmt: skip
                positions = [p for p, _ in found][start:]
            else:
                positions = list(range(start, start + size + 1))
            records = self.view.records(job_id, positions)
            docs = [_document(p, r) for p, r in zip(positions, records, strict=True) if r]
        return {"page": page, "size": size, "status": status, "documents": docs[:size], "more": len(docs) > size}

    # ----- search

    def search(self, text: str) -> dict[str, Any]:
        """A document by ExternalId or by the ERP's Key: the duplicate index in Redis (every configured tenant and
        kind; for a number, the Keys recorded), and every outcome the archive holds of it."""
        text = text.strip()
        redis_hits: list[dict[str, Any]] = []
        tenants = self.settings.tenants()
        for name in sorted(tenants):
            for kind in DocumentKind:
                claim = self.store.lookup(name, kind.value, text)
                if claim is not None:
                    redis_hits.append({"tenant": name, "kind": kind.value, "external_id": text,
                                       "state": claim.state.value, "owner": _owner(claim.owner), "key": claim.key,
                                       "number": claim.number})  # fmt: skip
                if text.isdigit() and self.store.known_keys(name, kind.value, [int(text)]):
                    redis_hits.append({"tenant": name, "kind": kind.value, "external_id": None, "state": "key recorded",
                                       "owner": None, "key": int(text), "number": None})  # fmt: skip
        archived: list[dict[str, Any]] = []
        engine = self.archive_engine()
        if engine is not None:
            rows = history(engine, external_id=text, limit=SEARCH_LIMIT)
            rows += history(engine, key=text, limit=SEARCH_LIMIT)
            archived = [r.as_dict() for r in sorted(rows, key=lambda r: r.recorded_at, reverse=True)]
        return {
            "query": text,
            "redis": redis_hits,
            "archive": archived,
            "archive_enabled": self.settings.archive_enabled,
        }

    # ----- dead letters

    def dead_letters(self, *, include_closed: bool = False) -> list[dict[str, Any]]:
        """Dead letters without their documents: the open ones, or every one."""
        return [deadletters.summary(e) for e in deadletters.entries(self.store, include_closed=include_closed)]

    def dead_letter(self, dead_id: str) -> dict[str, Any] | None:
        """One dead letter in full (its document too: the page that shows it is the one that needs it), with its
        state (open, replayed, resolved) from worker/ops/deadletters.py."""
        return deadletters.lookup(self.store, dead_id)

    def replay(self, dead_id: str) -> str | None:
        entry = self.store.dead_letter(dead_id)
        return deadletters.replay(self.store, entry) if entry is not None else None

    def drop(self, dead_id: str) -> bool:
        return self.store.drop_dead_letter(dead_id)


def _iso(value: Any) -> str | None:
    return None if value is None else overview.iso(value.timestamp())


def _owner(owner: str) -> dict[str, Any] | None:
    """The job and position of a duplicate-index owner (`job#position`)."""
    job_id, sep, position = owner.rpartition("#")
    if not sep or not position.isdigit():
        return None
    return {"job_id": job_id, "position": int(position)}


def _document(position: int, record: dict[str, Any]) -> dict[str, Any]:
    return {"position": position, "external_id": record.get("external_id"), "status": record.get("status"),
            "key": record.get("key"), "number": record.get("number"), "error": record.get("error"),
            "errors": record.get("errors") or [], "updated_at": record.get("updated_at")}  # fmt: skip
