"""The archiver: moves what the outbox stream holds into the archive's database (`erpsync archive run`).

    read a batch (its own unacknowledged entries first) → rows → one transaction → commit → acknowledge + delete

An entry leaves the stream only after its rows are committed, and every row is written idempotently
(worker/archive/writer.py), so a killed archiver, a restarted Redis (its stream is in the AOF like everything
else) or a database that is down for minutes loses nothing and doubles nothing: it retries the same batch with
backoff, and the stream grows meanwhile (the lag, in `erpsync status` and the metric erpsync_archive_lag_entries).
One archiver per deployment is enough (it writes thousands of rows a second); a second one is harmless.

Every few seconds it also checks the duplicate index (worker/archive/guard.py); every hour it adds PostgreSQL's
partitions ahead, and once a day it applies the retention (worker/archive/retention.py).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field

from sqlalchemy import Engine

from worker.archive.events import rows_of
from worker.archive.guard import check_index
from worker.archive.retention import ensure_partitions, prune
from worker.archive.writer import write
from worker.errors import ArchiveError
from worker.redaction import secrets_filter
from worker.settings import Settings
from worker.store.errors import OUTAGE_ERRORS
from worker.store.outbox import Outbox

__all__ = ["Archiver"]

log = logging.getLogger(__name__)

INDEX_CHECK_SECONDS = 2.0
PARTITION_SECONDS = 3600.0
PRUNE_SECONDS = 24 * 3600.0
BACKOFF_CAP_SECONDS = 30.0
#: A read that brought fewer entries than this waits GATHER_SECONDS before the next: during a burst the archive then
#: commits a few large transactions a second rather than many small ones (each a commit the database must make
#: durable), and its lag stays under a second.
GATHER_ENTRIES = 200
GATHER_SECONDS = 0.25
#: What the loop waits out: the database (ArchiveError) or Redis unreachable.
_RETRIED: tuple[type[Exception], ...] = (ArchiveError, *OUTAGE_ERRORS)


@dataclass
class Archiver:
    """One archiver loop over a deployment's outbox."""

    outbox: Outbox
    engine: Engine
    settings: Settings
    archived: int = 0
    _next: dict[str, float] = field(default_factory=dict)

    def run_once(self, block_ms: int = 1000) -> int:
        """Archive one batch (waiting up to `block_ms` for one); how many entries were archived."""
        entries = self.outbox.read(self.settings.archive_batch_events, block_ms)
        if not entries:
            self._record_state()
            return 0
        rows = rows_of(entries, self.settings.key_prefix, bodies=self.settings.archive_bodies)
        for entry_id, why in rows.skipped:
            log.error("archive entry %s skipped: %s", entry_id, why)
        scrub = secrets_filter().scrub
        for row, job_id, position in rows.bodies_wanted:
            body = self.outbox.document(job_id, position)
            rows.outcomes[row]["body"] = scrub(body) if body is not None else None
        write(self.engine, rows)
        self.outbox.acknowledge([entry.id for entry in entries])
        self.archived += len(entries)
        self._record_state(committed=len(entries))
        return len(entries)

    def _record_state(self, committed: int = 0) -> None:
        length, oldest = self.outbox.lag()
        fields: dict[str, str | int | float] = {"lag": length, "oldest_seconds": round(oldest or 0.0, 3),
                                                 "seen_at": time.time(), "error": ""}  # fmt: skip
        if committed:
            fields["committed_at"] = time.time()
            fields["archived"] = self.archived
        self.outbox.set_state(**fields)

    def housekeeping(self) -> None:
        """The index check, partitions ahead and the retention, each when it is due."""
        now = time.monotonic()
        if now >= self._next.get("index", 0.0):
            self._next["index"] = now + INDEX_CHECK_SECONDS
            check_index(self.outbox, self.engine, self.settings)
        if now >= self._next.get("partitions", 0.0):
            self._next["partitions"] = now + PARTITION_SECONDS
            ensure_partitions(self.engine)
        if now >= self._next.get("prune", 0.0):
            self._next["prune"] = now + PRUNE_SECONDS
            pruned = prune(self.engine, self.settings)
            if any(pruned.values()):
                log.info("archive retention applied: %s", pruned)

    def run(self, stop: threading.Event) -> None:
        """Archive until `stop` is set; failures of the database or Redis are retried with backoff, never fatal."""
        failures = 0
        log.info("archiving in batches of up to %d entries", self.settings.archive_batch_events)
        while not stop.is_set():
            try:
                self.housekeeping()
                archived = self.run_once()
                failures = 0
                if 0 < archived < GATHER_ENTRIES:
                    stop.wait(GATHER_SECONDS)
            except _RETRIED as exc:
                failures += 1
                wait = min(BACKOFF_CAP_SECONDS, 0.5 * 2 ** min(failures, 10))
                log.warning("archiving waits %.1fs (attempt %d): %s", wait, failures, exc)
                self._note_error(str(exc))
                stop.wait(wait)
        log.info("archiver stopped (%d entries archived)", self.archived)

    def _note_error(self, error: str) -> None:
        with contextlib.suppress(*OUTAGE_ERRORS):  # Redis is what failed: the log line says so
            self.outbox.set_state(error=error[:500], error_at=time.time())
