"""The results store in Redis: per job, per document, per batch, plus the duplicate index.

State is kept per document from the start: a batch may carry documents of several jobs, and each
document's outcome (status, Key, number, error) lands on its own job. Every status change goes through
one Lua script so a job's counters and its final status can never disagree with its documents.

Keys (prefix `erpsync` by default; all but the duplicate index expire after `result_ttl_seconds`):

    {p}:job:{job_id}            hash   job fields (tenant, kind, lane, ...) and counters n_pending, n_created, ...
    {p}:job:{job_id}:docs       list   the submitted documents (JSON), ExternalId filled in
    {p}:job:{job_id}:records    hash   position -> record JSON (external_id, status, key, number, error, ...)
    {p}:job:{job_id}:status     hash   position -> status (missing = pending)
    {p}:jobs                    zset   job ids by submission time (trimmed to the retention)
    {p}:batch:{batch_id}        hash   members, body, state (queued/sending/waiting/done), attempts, lease,
                                       request ("<attempt>:unsent" on acquiring, ":sent" just before the POST)
    {p}:batch:{batch_id}:log    list   one JSON line per attempt (time, outcome, error)
    {p}:open_batches            set    batches not done yet (a restarted worker re-queues their sends)
    {p}:open_jobs               set    jobs not finished yet (a restarted worker re-queues them)
    {p}:dedup:{tenant}:{kind}:{external_id}   "claimed|owner", "created|owner|key|number|fingerprint", or
                                              "updating|owner|" + the created value (an upsert's update in flight)
                                              (key: SoftOne's integer, or "~" + another target's text id;
                                              fingerprint: of the content created, schemas/fingerprint.py)
    {p}:erpkeys:{tenant}:{kind} zset   every Key we recorded (score = Key): reconciliation's exclusions
    {p}:lookalike:{tenant}:{kind} hash content signature -> the batch holding it (worker/store/lookalikes.py)
    {p}:dead                    hash   dead-letter id -> entry (document, reason, attempts); no expiry
    {p}:dead:index              zset   dead-letter ids by time
    {p}:dead:state              hash   dead-letter id -> state (replayed / resolved, replay job, Key); none = open
    {p}:dead:open               hash   duplicate-index key -> the ids of that document's unresolved dead letters
    {p}:metrics:{metric}        hash   Prometheus counters written by the scripts here (worker/store/counters.py)

Every key is spelled by worker/store/keys.py; the scripts (worker/store/lua/) build a job's keys from the prefix.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from time import monotonic  # `time` itself is replaced by tests that move the clock
from typing import Any, TypeAlias, cast

import redis
from redis.client import Pipeline
from redis.typing import EncodableT, FieldT

from schemas.kinds import Lane
from worker.errors import IndexLost
from worker.settings import Settings
from worker.store.client import Arg, RedisClient, queue_script
from worker.store.counters import DOCUMENTS_METRIC, Increment, labels_field, lua_args
from worker.store.keys import Keys
from worker.store.records import (
    BatchHead,
    BatchOutcome,
    BatchPlan,
    BatchState,
    Claim,
    ClaimRef,
    ClaimState,
    CreatedClaim,
    DocStatus,
    IntakeState,
    JobStatus,
    LeaseState,
    Record,
    RecordUpdate,
    job_lane,
    now_iso,
    parse_claim,
)
from worker.store.scripts import load_script

#: A hash's fields as redis-py's hset takes them: its Mapping is invariant in the key type, so a dict built from our
#: dict[str, str] metas (str keys, text and number values) is handed over as this.
HashFields: TypeAlias = Mapping[FieldT, EncodableT]


class ResultsStore:
    """All reads and writes of job/document/batch state; one instance per process is enough."""

    def __init__(self, client: RedisClient, settings: Settings) -> None:
        self.r = client
        self.s = settings
        self.p = settings.key_prefix
        self._flags: tuple[float, str] = (0.0, "")
        self.keys = Keys(settings.key_prefix)
        self._set_records = load_script(client, "set_records")
        self._mark_created = load_script(client, "mark_created")
        self._acquire = load_script(client, "acquire_batch")
        self._take_over = load_script(client, "take_over_batch")
        self._mark_sent = load_script(client, "mark_sent")
        self._extend_lease = load_script(client, "extend_lease")
        self._release = load_script(client, "release_claim")
        self._claim_update = load_script(client, "claim_update")
        self._claim_all = load_script(client, "claim_all")
        self._close_job = load_script(client, "close_job")
        self._store_dead_letter = load_script(client, "store_dead_letter")
        self._dead_replay = load_script(client, "dead_replay")
        self._dead_drop = load_script(client, "dead_drop")
        self._count_batch = load_script(client, "count_batch")
        self._mark_running = load_script(client, "mark_running")
        self._release_lookalikes = load_script(client, "lookalike_release")

    def outbox_flags(self) -> str:
        """The scripts' outbox flags (Settings.outbox_flags), read again every 5 s: a webhook added to the tenants
        file is announced without a restart, and the hot paths do not read the file for every call."""
        at, flags = self._flags
        now = monotonic()
        if now - at > 5.0:
            flags = self.s.outbox_flags()
            self._flags = (now, flags)
        return flags

    # ----- jobs
    def create_job(self, meta: dict[str, str], documents: Iterable[str], external_ids: Sequence[str]) -> None:
        """Store a whole job at once (tests, small producers): `open_job`, one `append_documents`, `close_job`.
        Without a `lane` in `meta`, the job's is chosen by its size (Lane.for_size)."""
        docs = list(documents)
        self.open_job({"lane": Lane.for_size(len(docs), self.s.interactive_max_documents).value, **meta})
        for start in range(0, len(docs), 1000):
            self.append_documents(meta["job_id"], start, docs[start : start + 1000], external_ids[start : start + 1000])
        self.close_job(meta["job_id"])

    def open_job(self, meta: dict[str, str]) -> None:
        """Create a job in status `receiving`: its documents are streamed in by `append_documents`.

        A receiving job can be worked on (each appended chunk is queued for intake at once) but cannot
        finish: `close_job` ends the receiving. A producer that dies in between leaves a job that says
        `receiving` with the documents it had stored, each with its own outcome; nothing is lost silently.
        `meta` should say the job's `lane` (its size is not known yet): `bulk` if it does not.
        """
        pipe = self.r.pipeline(transaction=True)
        self.queue_open_job(pipe, meta)
        pipe.execute()

    def append_documents(
        self,
        job_id: str,
        start: int,
        documents: Sequence[str],
        external_ids: Sequence[str],
        pipe: Pipeline | None = None,
    ) -> None:
        """Store documents at positions [start, start + n) with pending records, and count them in.

        Positions are given, not implied, so a repeated call (a retried producer) cannot shift them; it
        is the caller's job to append each range once. Queued on `pipe` when given, else sent at once.
        """
        jk, docs, records = self.keys.job(job_id), self.keys.job_docs(job_id), self.keys.job_records(job_id)
        own = pipe is None
        pipe = self.r.pipeline(transaction=True) if pipe is None else pipe
        now = now_iso()
        pipe.rpush(docs, *documents)
        pipe.hset(
            records,
            mapping={
                str(start + i): Record(external_id=x, updated_at=now).to_json() for i, x in enumerate(external_ids)
            },
        )
        pipe.hincrby(jk, "total", len(documents))
        pipe.hincrby(jk, "n_pending", len(documents))
        for key in (docs, records):
            pipe.expire(key, self.s.result_ttl_seconds)
        if own:
            pipe.execute()

    def close_job(self, job_id: str) -> None:
        """Every document is stored: the job is `queued`/`running`, or finished if all have outcomes."""
        self.queue_close_job(self.r, job_id)

    def job(self, job_id: str) -> dict[str, str] | None:
        data = cast(dict[str, str], self.r.hgetall(self.keys.job(job_id)))
        return data or None

    def job_lanes(self, job_ids: Sequence[str]) -> list[Lane | None]:
        """Each job's lane (field `lane` of its hash; a job stored before lanes: by its size), None for a job that is
        gone; one round trip."""
        pipe = self.r.pipeline(transaction=False)
        fields = ("lane", "total", "status")
        for job_id in job_ids:
            pipe.hmget(self.keys.job(job_id), fields)
        jobs = [{k: v for k, v in zip(fields, values, strict=True) if v is not None} for values in pipe.execute()]
        return [job_lane(job, self.s.interactive_max_documents) if job else None for job in jobs]

    def documents(self, job_id: str, start: int = 0, end: int | None = None) -> list[str]:
        """The submitted documents at positions [start, end)."""
        return cast(list[str], self.r.lrange(self.keys.job_docs(job_id), start, -1 if end is None else end - 1))

    def records(self, job_id: str) -> list[Record]:
        raw = cast(dict[str, str], self.r.hgetall(self.keys.job_records(job_id)))
        return [Record.from_json(raw[k]) for k in sorted(raw, key=int)]

    def record(self, job_id: str, position: int) -> Record | None:
        raw = cast(str | None, self.r.hget(self.keys.job_records(job_id), str(position)))
        return Record.from_json(raw) if raw else None

    def statuses(self, job_id: str) -> dict[int, str]:
        raw = cast(dict[str, str], self.r.hgetall(self.keys.job_status(job_id)))
        return {int(k): v for k, v in raw.items()}

    def mark_running(self, job_id: str, pipe: Pipeline | None = None) -> None:
        """A queued job becomes running (a finished one keeps its status on redelivery); queued on `pipe`."""
        if pipe is None:
            self._mark_running(keys=[self.keys.job(job_id)], args=[now_iso()])
        else:
            queue_script(pipe, self._mark_running, keys=[self.keys.job(job_id)], args=[now_iso()])

    def intake_state(self, items: Sequence[tuple[str, int, int]]) -> list[IntakeState]:
        """Everything intake needs about (job_id, start, end) ranges, in one round trip, each job marked
        running on the way. A job that expired (or never was) comes back with an empty `job`."""
        pipe = self.r.pipeline(transaction=False)
        keys = self.keys
        for job_id, start, end in items:
            self.mark_running(job_id, pipe)
            pipe.hgetall(keys.job(job_id))
            pipe.hmget(keys.job_records(job_id), [str(p) for p in range(start, end)])
            pipe.lrange(keys.job_docs(job_id), start, end - 1)
            # position -> "buffer" or batch id (worker/store/buffer.py), of this range only: the whole hash of a big job
            # would be read again for every chunk of it.
            pipe.hmget(keys.job_assigned(job_id), [str(p) for p in range(start, end)])
        out = pipe.execute()
        states = []
        for (_, start, _), i in zip(items, range(0, len(out), 5), strict=True):
            job, records, docs, assigned = out[i + 1 : i + 5]
            states.append(
                IntakeState(
                    job,
                    [Record.from_json(r) if r else None for r in records],
                    docs,
                    {start + n: where for n, where in enumerate(assigned) if where is not None},
                )
            )
        return states

    def set_records(self, updates: Sequence[tuple[str, int, Record]]) -> None:
        """Apply (job_id, position, record) changes, each atomic with its job's counters, in one round trip."""
        if updates:
            pipe = self.r.pipeline(transaction=False)
            self.queue_records(pipe, updates)
            pipe.execute()

    # ----- duplicate index
    def claim(self, tenant: str, kind: str, external_id: str, owner: str) -> Claim:
        """Claim an ExternalId for sending, or learn who has it (and its Key once created)."""
        key = self.keys.dedup(tenant, kind, external_id)
        for _ in range(5):
            if self.r.set(key, f"claimed|{owner}", nx=True, ex=self.s.dedup_ttl_seconds):
                return Claim(ClaimState.MINE, owner)
            value = cast(str | None, self.r.get(key))
            if value is None:
                continue  # released between our two calls; try again
            return parse_claim(value, owner)
        raise RuntimeError(f"duplicate index entry for {external_id!r} keeps changing")

    def claim_all(self, items: Sequence[ClaimRef]) -> list[Claim]:
        """`claim()` for many (tenant, kind, external_id, owner): one script call per 1,000, whatever their number."""
        claims: list[Claim] = []
        dedup = self.keys.dedup
        for start in range(0, len(items), 1000):
            part = items[start : start + 1000]
            args: list[Arg] = [self.s.dedup_ttl_seconds, self.keys.archive_epoch if self.s.archive_enabled else ""]
            for tenant, kind, external_id, owner in part:
                args += [dedup(tenant, kind, external_id), owner]
            try:
                found = self._claim_all(args=args)
            except redis.ResponseError as exc:
                if str(exc).startswith("INDEXLOST"):
                    raise IndexLost() from None
                raise
            claims += [
                Claim(ClaimState.MINE, owner) if not value else parse_claim(value, owner)
                for (_, _, _, owner), value in zip(part, found, strict=True)
            ]
        return claims

    def index_ready(self) -> bool:
        """The duplicate index may be used: the archive is off, or its epoch is there (worker/store/outbox.py)."""
        return not self.s.archive_enabled or bool(self.r.exists(self.keys.archive_epoch))

    def lookup(self, tenant: str, kind: str, external_id: str, owner: str = "") -> Claim | None:
        """What the duplicate index says of an ExternalId, as seen by `owner`, without claiming it (None: nothing)."""
        value = cast(str | None, self.r.get(self.keys.dedup(tenant, kind, external_id)))
        return parse_claim(value, owner) if value else None

    def release(self, tenant: str, kind: str, external_id: str, owner: str) -> None:
        """Give up our claim (the document was not created) so a corrected re-submission can go."""
        self._release(keys=[self.keys.dedup(tenant, kind, external_id)], args=[f"claimed|{owner}", owner])

    def claim_update(self, tenant: str, kind: str, external_id: str, owner: str, created: Claim) -> bool:
        """Claim a created entry (`created`, as read) for `owner` to send an update of its document; False if the
        entry changed since it was read (another update, or a re-creation): read it again."""
        key = self.keys.dedup(tenant, kind, external_id)
        return bool(self._claim_update(keys=[key], args=[created.value, owner]))

    # ----- Keys we recorded (for reconciliation: an invoice with one of these Keys is not a candidate)
    def known_keys(self, tenant: str, kind: str, keys: Iterable[int]) -> set[int]:
        keys = list(keys)
        zset = self.keys.erp_keys(tenant, kind)
        pipe = self.r.pipeline(transaction=False)
        for key in keys:
            pipe.zscore(zset, str(key))
        return {key for key, score in zip(keys, pipe.execute(), strict=True) if score is not None}

    def high_water(self, tenant: str, kind: str) -> int:
        """The highest Key recorded for this tenant and kind (0 if none)."""
        top = cast(list[tuple[str, float]], self.r.zrevrange(self.keys.erp_keys(tenant, kind), 0, 0, withscores=True))
        return int(top[0][1]) if top else 0

    # ----- dead letters
    def _queue_dead_letter(self, pipe: Pipeline, entry: dict[str, Any]) -> None:
        entry = {"created_at": now_iso(), **entry}
        labels = (entry.get("tenant", ""), entry.get("target") or "softone", entry.get("kind", ""), "dead")
        queue_script(
            pipe,
            self._store_dead_letter,
            keys=[self.keys.dead, self.keys.dead_index, self.keys.metric(DOCUMENTS_METRIC), self.keys.dead_open],
            args=[
                entry["id"],
                json.dumps(entry, ensure_ascii=False),
                time.time(),
                labels_field(labels),
                *self._archived_dead_letter(entry),
                self._dead_letter_document(entry),
            ],
        )

    def _dead_letter_document(self, entry: dict[str, Any]) -> str:
        """The duplicate-index key of a dead letter's document: where its creation is recorded (mark_created.lua)."""
        return self.keys.dedup(str(entry.get("tenant", "")), str(entry.get("kind", "")), str(entry.get("external_id")))

    def _archived_dead_letter(self, entry: dict[str, Any]) -> tuple[str, str]:
        """The archive stream and what it keeps of a dead letter: all but the document, unless bodies are kept."""
        if not self.s.archive_enabled:
            return "", ""
        kept = entry if self.s.archive_bodies else {k: v for k, v in entry.items() if k != "document"}
        return self.keys.archive, json.dumps(kept, ensure_ascii=False)

    def dead_letters(self) -> list[dict[str, Any]]:
        """Every dead letter's entry as stored (oldest first); their states: `dead_letter_states`."""
        ids = cast(list[str], self.r.zrange(self.keys.dead_index, 0, -1))
        if not ids:
            return []
        values = cast(list[str | None], self.r.hmget(self.keys.dead, ids))
        return [json.loads(v) for v in values if v]

    def dead_letter_states(self, dead_ids: Sequence[str]) -> list[dict[str, str | None]]:
        """Each dead letter's state as the scripts keep it ({} for one still open: never replayed nor resolved)."""
        if not dead_ids:
            return []
        values = cast(list[str | None], self.r.hmget(self.keys.dead_state, list(dead_ids)))
        return [json.loads(v) if v else {} for v in values]

    def dead_letter_counts(self) -> tuple[int, int]:
        """(dead letters kept, those still open), in one round trip: a state is recorded by a replay or a resolution
        only."""
        pipe = self.r.pipeline(transaction=False)
        pipe.zcard(self.keys.dead_index)
        pipe.hlen(self.keys.dead_state)
        kept, closed = pipe.execute()
        return int(kept), max(0, int(kept) - int(closed))

    def newest_dead_letter_ids(self, limit: int) -> list[str]:
        """The ids of the newest `limit` dead letters, newest first."""
        return cast(list[str], self.r.zrevrange(self.keys.dead_index, 0, limit - 1)) if limit > 0 else []

    def dead_letters_by_id(self, dead_ids: Sequence[str]) -> list[dict[str, Any] | None]:
        """These dead letters' entries (None for one that is gone), one round trip."""
        if not dead_ids:
            return []
        values = cast(list[str | None], self.r.hmget(self.keys.dead, list(dead_ids)))
        return [json.loads(v) if v else None for v in values]

    def first_records(self, job_ids: Sequence[str]) -> list[Record | None]:
        """The record of each job's first document (a replay's one document), None where the job is gone."""
        if not job_ids:
            return []
        pipe = self.r.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hget(self.keys.job_records(job_id), "0")
        return [Record.from_json(raw) if raw else None for raw in pipe.execute()]

    def record_replay(self, dead_id: str, job_id: str) -> bool:
        """The dead letter was submitted again as `job_id`: `replayed`, its outcome pending (a resolved one stays
        resolved); False if it is gone."""
        return bool(self._dead_replay(keys=[self.keys.dead, self.keys.dead_state], args=[dead_id, job_id, now_iso()]))

    def dead_letter(self, dead_id: str) -> dict[str, Any] | None:
        value = cast(str | None, self.r.hget(self.keys.dead, dead_id))
        return cast(dict[str, Any], json.loads(value)) if value else None

    def update_dead_letter(self, entry: dict[str, Any]) -> None:
        self.r.hset(self.keys.dead, entry["id"], json.dumps(entry, ensure_ascii=False))

    def drop_dead_letter(self, dead_id: str) -> bool:
        """Forget a dead letter, its state and its place among its document's open ones; False if there was none."""
        entry = self.dead_letter(dead_id)
        document = self._dead_letter_document(entry) if entry is not None else ""
        keys = [self.keys.dead, self.keys.dead_index, self.keys.dead_state, self.keys.dead_open]
        return bool(self._dead_drop(keys=keys, args=[dead_id, document]))

    # ----- batches
    def queue_records(self, pipe: Pipeline, updates: Sequence[tuple[str, int, Record]]) -> None:
        """`set_records` queued on the caller's pipeline, to be atomic with the rest of its transaction."""
        # One script call per few hundred documents: far cheaper to send than a command or two each.
        now = now_iso()
        for start in range(0, len(updates), 500):
            args: list[Arg] = [self.p, now, self.s.result_ttl_seconds, self.outbox_flags()]
            for job_id, position, record in updates[start : start + 500]:
                record.updated_at = now
                args += [job_id, position, record.status, record.to_json()]
            queue_script(pipe, self._set_records, args=args)

    def commit_batches(self, batches: Sequence[BatchPlan]) -> None:
        """Store new batches and point their documents' records at them, all in one transaction.

        Either a document is in exactly one stored batch or in none, even if the worker dies here: a
        redelivered job then plans only the documents that have no batch yet.
        """
        if batches:
            pipe = self.r.pipeline(transaction=True)
            self._queue_batches(pipe, batches)
            pipe.execute()

    def _queue_batches(self, pipe: Pipeline, batches: Sequence[BatchPlan]) -> None:
        now = now_iso()
        keys = self.keys
        for plan in batches:
            bk = keys.batch(plan.batch_id)
            pipe.hset(
                bk,
                mapping=cast(
                    HashFields,
                    {
                        **plan.meta,
                        "state": BatchState.QUEUED,
                        "members": json.dumps(plan.members),
                        "body": plan.body,
                        "attempts": 0,
                        "size": len(plan.members),
                        "created_at": now,
                    },
                ),
            )
            pipe.expire(bk, self.s.result_ttl_seconds)
            pipe.sadd(keys.open_batches, plan.batch_id)
            for job_id, position in plan.members:
                pipe.hset(keys.job_assigned(job_id), str(position), plan.batch_id)
            self.queue_records(pipe, plan.records)

    def complete_batch(
        self,
        batch_id: str,
        outcome: BatchOutcome,
        updates: Sequence[RecordUpdate],
        created: Sequence[CreatedClaim] = (),
        released: Sequence[ClaimRef] = (),
        dead: Sequence[dict[str, Any]] = (),
        follow_up: Sequence[BatchPlan] = (),
        counters: Sequence[Increment] = (),
        attempt: int | None = None,
        log: dict[str, Any] | None = None,
    ) -> bool:
        """End a batch in one transaction: document outcomes, duplicate index and known Keys, released
        claims, dead letters, the batches that carry on with its remaining documents, `log` (the ending
        attempt's entry in the batch's log), and `done`; `counters` (the batch's metrics) count only if the batch
        was not done before.

        With `attempt`, only while that attempt still holds the batch: if it was finished, or taken over after
        its lease ran out, nothing is written and False is returned. (An attempt that outlived its lease must
        not write: the taker's look-up treats Keys already recorded as somebody else's, so two settlements
        of one batch would resend documents the ERP holds.)"""
        key = self.keys.batch(batch_id)
        with self.r.pipeline(transaction=True) as pipe:
            while True:
                try:
                    if attempt is not None:
                        pipe.watch(key)  # type: ignore[no-untyped-call]  # redis-py leaves Pipeline.watch unannotated
                        state, request = pipe.hmget(key, "state", "request")
                        if state != BatchState.SENDING or not str(request or "").startswith(f"{attempt}:"):
                            return False
                        pipe.multi()
                    self._queue_complete(pipe, batch_id, outcome, updates, created, released, dead, follow_up,
                                         counters)  # fmt: skip
                    if log is not None:
                        self.queue_log_attempt(pipe, batch_id, log)
                    pipe.execute()
                    return True
                except redis.WatchError:
                    continue  # the batch changed (its lease renewed, or taken over): look again

    def _queue_complete(
        self,
        pipe: Pipeline,
        batch_id: str,
        outcome: BatchOutcome,
        updates: Sequence[RecordUpdate],
        created: Sequence[CreatedClaim],
        released: Sequence[ClaimRef],
        dead: Sequence[dict[str, Any]],
        follow_up: Sequence[BatchPlan],
        counters: Sequence[Increment],
    ) -> None:
        keys = self.keys
        bk = keys.batch(batch_id)
        if counters:
            queue_script(pipe, self._count_batch, keys=[bk], args=lua_args(counters))
        self.queue_records(pipe, updates)
        for start in range(0, len(created), 500):
            args: list[Arg] = [self.s.dedup_ttl_seconds, keys.archive if self.s.archive_enabled else ""]
            args += [keys.dead, keys.dead_state, keys.dead_open, now_iso()]  # its dead letters are resolved
            for tenant, kind, external_id, owner, key, number, fingerprint in created[start : start + 500]:
                value = f"created|{owner}|{key if isinstance(key, int) else '~' + key}|{number or ''}|{fingerprint}"
                # Known Keys (SoftOne's integers, for its content matching) are kept in a zset scored by Key;
                # other targets' ids are not numbers and are looked up by our own id instead.
                known = keys.erp_keys(tenant, kind) if isinstance(key, int) else ""
                args += [keys.dedup(tenant, kind, external_id), value, known, key, tenant, kind, external_id]
            queue_script(pipe, self._mark_created, args=args)
        for entry in dead:
            self._queue_dead_letter(pipe, entry)
        self._queue_batches(pipe, follow_up)
        for tenant, kind, external_id, owner in released:
            queue_script(
                pipe, self._release, keys=[keys.dedup(tenant, kind, external_id)], args=[f"claimed|{owner}", owner]
            )
        queue_script(pipe, self._release_lookalikes, keys=[bk], args=[self.p, batch_id])
        pipe.hset(bk, mapping={"state": BatchState.DONE, "outcome": outcome, "updated_at": now_iso()})
        pipe.expire(bk, self.s.result_ttl_seconds)
        pipe.srem(keys.open_batches, batch_id)

    def split_batch(self, batch_id: str, attempt: int, keep: Mapping[str, str], rest: BatchPlan) -> bool:
        """Send only part of a batch: its fields become `keep` (members, external_ids, body, size) and the other
        documents move to the new batch `rest`, in one transaction. Only while attempt `attempt` holds the batch and
        has sent nothing (False otherwise, and nothing is written)."""
        key = self.keys.batch(batch_id)
        with self.r.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(key)  # type: ignore[no-untyped-call]  # redis-py leaves Pipeline.watch unannotated
                    state, request = pipe.hmget(key, "state", "request")
                    if state != BatchState.SENDING or request != f"{attempt}:unsent":
                        return False
                    pipe.multi()
                    pipe.hset(key, mapping=cast(HashFields, dict(keep)))
                    self._queue_batches(pipe, [rest])
                    pipe.execute()
                    return True
                except redis.WatchError:
                    continue  # its lease renewed meanwhile: look again

    def batch_heads(self, batch_ids: Sequence[str]) -> list[BatchHead | None]:
        """The state, route and size of each batch (None for one that is gone), in one round trip."""
        if not batch_ids:
            return []
        pipe = self.r.pipeline(transaction=False)
        for batch_id in batch_ids:
            pipe.hmget(self.keys.batch(batch_id), "state", "tenant", "kind", "target", "size")
        return [
            BatchHead(BatchState(state), tenant, kind, target or "softone", int(size or 0)) if state else None
            for state, tenant, kind, target, size in pipe.execute()
        ]

    def needs_intake(self, job_ids: Sequence[str]) -> list[bool]:
        """Per job, whether some of its documents are neither settled nor in the buffer or a batch (intake has
        not put them anywhere yet, or they wait for another job's outcome): one round trip."""
        pipe = self.r.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hget(self.keys.job(job_id), "n_pending")
            pipe.hlen(self.keys.job_assigned(job_id))
        raw = pipe.execute()
        return [int(raw[2 * n] or 0) > int(raw[2 * n + 1] or 0) for n in range(len(job_ids))]

    def open_batch_ids(self) -> set[str]:
        """Batches not done yet, as far as the open set knows (recovery re-queues their sends)."""
        return cast(set[str], self.r.smembers(self.keys.open_batches))

    def forget_open_batch(self, batch_id: str) -> None:
        """A batch found done or gone leaves the open set."""
        self.r.srem(self.keys.open_batches, batch_id)

    def open_job_ids(self) -> set[str]:
        """Jobs not finished yet, as far as the open set knows (recovery re-queues them)."""
        return cast(set[str], self.r.smembers(self.keys.open_jobs))

    def forget_open_job(self, job_id: str) -> None:
        """A job found finished or gone leaves the open set."""
        self.r.srem(self.keys.open_jobs, job_id)

    def count_unreachable(self, batch_id: str) -> int:
        """One more consecutive wait of the batch for an ERP that could not be reached; returns how many."""
        return int(self.r.hincrby(self.keys.batch(batch_id), "unreachable", 1))

    def batch(self, batch_id: str) -> dict[str, str] | None:
        data = cast(dict[str, str], self.r.hgetall(self.keys.batch(batch_id)))
        return data or None

    def acquire_batch(self, batch_id: str, sender: str) -> tuple[LeaseState, float]:
        """Move a batch to `sending` under a lease. Returns (outcome, attempt number or seconds to wait)."""
        state, value, _ = self.acquire_batch_data(batch_id, sender)
        return state, value

    def acquire_batch_data(self, batch_id: str, sender: str) -> tuple[LeaseState, float, dict[str, str]]:
        """`acquire_batch`, and the batch's fields as they are after it (empty when it is `missing`)."""
        state, value, flat = self._acquire(
            keys=[self.keys.batch(batch_id)], args=[f"{time.time():.3f}", self.s.send_lease_seconds, sender]
        )
        return LeaseState(state), float(value), dict(zip(flat[::2], flat[1::2], strict=True))

    def take_over_batch(self, batch_id: str, sender: str) -> tuple[LeaseState, float, bool]:
        """Take a batch whose sender's lease expired (see _TAKE_OVER_BATCH).

        Returns (outcome, value, sent): `taken over` with the new attempt number and whether the dead attempt
        had marked its request sent; `busy` with the seconds its (new) holder's lease still runs; `done`;
        `moved` (no longer `sending`: acquire it the usual way); `missing`."""
        state, value, sent = self._take_over(
            keys=[self.keys.batch(batch_id)], args=[f"{time.time():.3f}", self.s.send_lease_seconds, sender]
        )
        return LeaseState(state), float(value), sent == "1"

    def mark_sent(self, batch_id: str, attempt: int, lease_seconds: float) -> bool:
        """Record that `attempt` is sending its request now, with a fresh lease of `lease_seconds`; False if that
        attempt lost the batch to another worker (nothing may be sent then)."""
        return bool(
            self._mark_sent(keys=[self.keys.batch(batch_id)], args=[f"{time.time():.3f}", lease_seconds, attempt])
        )

    def extend_lease(self, batch_id: str, attempt: int, lease_seconds: float) -> bool:
        """Restart the lease of `attempt`, still at work on the batch; False if it no longer holds it."""
        return bool(
            self._extend_lease(keys=[self.keys.batch(batch_id)], args=[f"{time.time():.3f}", lease_seconds, attempt])
        )

    def uncount_attempt(self, batch_id: str) -> None:
        """The acquired turn sent nothing (we were pausing): it does not count against the attempts."""
        self.r.hincrby(self.keys.batch(batch_id), "attempts", -1)

    def set_batch_state(self, batch_id: str, state: BatchState, **fields: str) -> None:
        bk = self.keys.batch(batch_id)
        mapping: dict[FieldT, EncodableT] = {"state": state, "updated_at": now_iso()}
        mapping.update(fields.items())
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(bk, mapping=mapping)
        pipe.expire(bk, self.s.result_ttl_seconds)
        pipe.execute()

    def log_attempt(self, batch_id: str, entry: dict[str, Any]) -> None:
        pipe = self.r.pipeline(transaction=False)
        self.queue_log_attempt(pipe, batch_id, entry)
        pipe.execute()

    def queue_log_attempt(self, pipe: Pipeline, batch_id: str, entry: dict[str, Any]) -> None:
        """`log_attempt` queued on `pipe` (with other writes of the same moment)."""
        lk = self.keys.batch_log(batch_id)
        pipe.rpush(lk, json.dumps({"at": now_iso(), **entry}, ensure_ascii=False))
        pipe.expire(lk, self.s.result_ttl_seconds)

    def attempts(self, batch_id: str) -> list[dict[str, Any]]:
        return [json.loads(x) for x in cast(list[str], self.r.lrange(self.keys.batch_log(batch_id), 0, -1))]

    # ----- job messages of raw-Redis producers (worker/producer/submissions.py): each ends in one MULTI, as a job or a
    # rejection, together with the removal of the held message, so a crash in between re-runs harmlessly.
    def queue_open_job(self, pipe: Pipeline, meta: dict[str, str]) -> None:
        """`open_job`'s commands, queued on `pipe` (a MULTI): the one writer of a new job's layout."""
        job_id = meta["job_id"]
        fields = {"lane": Lane.BULK.value, **meta, "status": JobStatus.RECEIVING}
        self._queue_job_hash(pipe, job_id, fields)
        pipe.sadd(self.keys.open_jobs, job_id)
        pipe.zremrangebyscore(self.keys.jobs, "-inf", time.time() - self.s.result_ttl_seconds)

    def queue_close_job(self, pipe: Pipeline | RedisClient, job_id: str) -> None:
        """`close_job`, queued on `pipe` (at once on a client)."""
        queue_script(pipe, self._close_job, args=[self.p, now_iso(), job_id, self.outbox_flags()])

    def queue_rejected_job(self, pipe: Pipeline, meta: dict[str, str], reason: str) -> None:
        """A job that never got documents: status `rejected` (final) with the reason, listed like any job and
        kept as long. `meta` holds job_id and whatever else of the message was valid (tenant, kind, ...)."""
        now = now_iso()
        fields = {"submitted_at": now, **meta, "status": JobStatus.REJECTED, "reason": reason, "finished_at": now}
        self._queue_job_hash(pipe, meta["job_id"], fields, now=now)
        flags = self.outbox_flags()
        if "a" in flags:
            pipe.xadd(self.keys.archive, {"e": "job", "j": meta["job_id"], "at": now, "d": json.dumps(fields)})
        if "w" in flags:  # as the scripts do for a job that finishes (worker/store/lua/job_functions.lua)
            event: dict[FieldT, EncodableT] = {"j": meta["job_id"], "t": meta.get("tenant", ""), "at": now}
            event["s"] = JobStatus.REJECTED.value
            pipe.xadd(self.keys.job_events, event, maxlen=100_000, approximate=True)

    def _queue_job_hash(self, pipe: Pipeline, job_id: str, fields: dict[str, str], *, now: str | None = None) -> None:
        """A new job's hash (`fields`, no documents yet, every counter 0), kept for the retention and listed."""
        jk = self.keys.job(job_id)
        now = now or now_iso()
        counters = {f"n_{status}": 0 for status in DocStatus}
        mapping = {**fields, "total": 0, **counters, "created_at": now, "updated_at": now}
        pipe.hset(jk, mapping=cast(HashFields, mapping))
        pipe.expire(jk, self.s.result_ttl_seconds)
        pipe.zadd(self.keys.jobs, {job_id: time.time()})

    def queue_rejection(self, pipe: Pipeline, entry: dict[str, Any], keep: int) -> None:
        """Log a rejected message (its id, job id, reason, size, digest: never its content), newest first,
        keeping the newest `keep` entries."""
        pipe.lpush(self.keys.rejected, json.dumps({"at": now_iso(), **entry}, ensure_ascii=False))
        pipe.ltrim(self.keys.rejected, 0, keep - 1)

    def rejections(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest rejected messages, newest first."""
        return [json.loads(x) for x in cast(list[str], self.r.lrange(self.keys.rejected, 0, limit - 1))]
