"""The archive's side of Redis: the outbox stream the store's scripts append to, and the duplicate index's epoch.

Every outcome, duplicate-index entry, dead letter and final job is appended to the stream `{p}:archive` by the
same Lua script that records it (worker/store/lua/job_functions.lua, mark_created.lua, store_dead_letter.lua), so
a recorded outcome is always in the stream as well. The archiver (worker/archive/archiver.py) reads it through the
consumer group `archiver`, writes what it read to the database, and only after the commit acknowledges and deletes
the entries: a killed archiver finds them again as its pending entries, a database that is down leaves them in
the stream. The stream's length is the archive's lag.

The epoch (`{p}:archive:epoch`) is written when the duplicate index is started (a new deployment) or rebuilt
from the archive, and has no expiry: if it is missing while the archive knows created documents, Redis has lost
its data, and intake claims nothing until the index is restored (worker/archive/guard.py).

Entries (one per script call: a batch's outcomes are one entry; field names are short):

    e=docs  j=<job> t=<tenant> g=<target> k=<kind> d=[{"p": <position>, "s": <status>, "r": <record>}, ...]
    e=idxs  d=[[<tenant>, <kind>, <ExternalId>, <duplicate-index value>], ...]
    e=dead  id=<dead-letter id> d=<entry JSON, without the document unless bodies are archived>
    e=job   j=<job> at=<time> d=<the job hash as JSON: its summary and counters>
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import cast

import redis

from worker.settings import Settings
from worker.store.client import RedisClient
from worker.store.keys import Keys

__all__ = ["ARCHIVER_GROUP", "Entry", "Outbox"]

#: The consumer group the archiver reads the stream with; one consumer name (see `Outbox.read`).
ARCHIVER_GROUP = "archiver"
_CONSUMER = "archiver"


@dataclass(frozen=True, slots=True)
class Entry:
    """One stream entry: its id (`<ms>-<seq>`, Redis's clock) and fields."""

    id: str
    fields: dict[str, str]

    @property
    def ms(self) -> int:
        return int(self.id.partition("-")[0])

    @property
    def sort_key(self) -> str:
        """The id as text that sorts as the ids do: "<ms, 13 digits>-<seq, 6 digits>"."""
        ms, _, seq = self.id.partition("-")
        return f"{int(ms):013d}-{int(seq or 0):06d}"


class Outbox:
    """Reads and acknowledges the archive stream; keeps the index epoch and the archiver's state."""

    def __init__(self, client: RedisClient, settings: Settings) -> None:
        self.r = client
        self.s = settings
        self.keys = Keys(settings.key_prefix)

    # ----- the stream
    def _ensure_group(self) -> None:
        try:
            self.r.xgroup_create(self.keys.archive, ARCHIVER_GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def read(self, count: int, block_ms: int) -> list[Entry]:
        """The next entries to archive: first those read before and never acknowledged (a killed archiver's, or a
        batch the database refused), then new ones, waiting up to `block_ms` for some."""
        for attempt in range(2):
            try:
                pending = self._read("0", count, None)
                if pending:
                    return pending
                return self._read(">", count, block_ms)
            except redis.ResponseError as exc:
                if "NOGROUP" not in str(exc) or attempt:
                    raise
                self._ensure_group()  # a new deployment, or a Redis that lost the stream with everything else
        return []

    def _read(self, start: str, count: int, block_ms: int | None) -> list[Entry]:
        reply = self.r.xreadgroup(ARCHIVER_GROUP, _CONSUMER, {self.keys.archive: start}, count=count, block=block_ms)
        entries: list[Entry] = []
        for _stream, items in cast(list[tuple[str, list[tuple[str, dict[str, str] | None]]]], reply or []):
            # An entry deleted while pending comes back without fields: nothing left to archive.
            entries += [Entry(entry_id, fields) for entry_id, fields in items if fields]
            deleted = [entry_id for entry_id, fields in items if not fields]
            if deleted:
                self.r.xack(self.keys.archive, ARCHIVER_GROUP, *deleted)
        return entries

    def acknowledge(self, ids: Sequence[str]) -> None:
        """The entries are committed to the archive: acknowledge and delete them, in one transaction."""
        if not ids:
            return
        pipe = self.r.pipeline(transaction=True)
        pipe.xack(self.keys.archive, ARCHIVER_GROUP, *ids)
        pipe.xdel(self.keys.archive, *ids)
        pipe.execute()

    def lag(self) -> tuple[int, float | None]:
        """Entries not archived yet, and the age in seconds of the oldest (None when there is none)."""
        pipe = self.r.pipeline(transaction=False)
        pipe.xlen(self.keys.archive)
        pipe.xrange(self.keys.archive, count=1)
        pipe.time()
        length, first, (seconds, micros) = pipe.execute()
        if not first:
            return int(length), None
        oldest_ms = int(first[0][0].partition("-")[0])
        return int(length), max(0.0, (int(seconds) * 1000 + int(micros) / 1000 - oldest_ms) / 1000)

    def document(self, job_id: str, position: int) -> str | None:
        """A job's document as stored (for archiving bodies); None once the job has expired."""
        return cast(str | None, self.r.lindex(self.keys.job_docs(job_id), position))

    # ----- the archiver's state, for `erpsync status` and metrics
    def set_state(self, **fields: str | int | float) -> None:
        self.r.hset(self.keys.archive_state, mapping={k: str(v) for k, v in fields.items()})

    def state(self) -> dict[str, str]:
        return cast(dict[str, str], self.r.hgetall(self.keys.archive_state))

    # ----- the duplicate index's epoch
    def epoch(self) -> str | None:
        return cast(str | None, self.r.get(self.keys.archive_epoch))

    def start_epoch(self, epoch: str) -> bool:
        """Mark the index as started (a new deployment): False if another process did first."""
        return bool(self.r.set(self.keys.archive_epoch, epoch, nx=True))

    def mark_lost(self, reason: str) -> None:
        self.r.hset(self.keys.archive_state, mapping={"lost": reason, "lost_at": str(time.time())})

    def restore_index(self, entries: Iterable[tuple[str, str, str, str, int | None, float]], epoch: str) -> int:
        """Write duplicate-index entries back (tenant, kind, ExternalId, value, SoftOne Key or None, seconds left to
        live), then the epoch: intake claims again once the whole index is back. Returns how many were written."""
        keys = self.keys
        written = 0
        pipe = self.r.pipeline(transaction=False)
        known: set[str] = set()
        for tenant, kind, external_id, value, erp_key, ttl in entries:
            pipe.set(keys.dedup(tenant, kind, external_id), value, ex=max(60, int(ttl)))
            if erp_key is not None:
                zset = keys.erp_keys(tenant, kind)
                pipe.zadd(zset, {str(erp_key): erp_key})
                known.add(zset)
            written += 1
            if len(pipe) >= 2000:
                pipe.execute()
        for zset in known:
            pipe.expire(zset, self.s.dedup_ttl_seconds)
        pipe.execute()
        pipe = self.r.pipeline(transaction=True)
        pipe.set(keys.archive_epoch, epoch)
        pipe.hdel(keys.archive_state, "lost", "lost_at")
        pipe.execute()
        return written
