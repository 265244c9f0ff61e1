"""Every Redis key erpsync uses, in one place: the families, their types and who writes them.

All keys start with the deployment's prefix (ERPSYNC_KEY_PREFIX, `erpsync` by default), so several
deployments can share one Redis. Only worker/store/ reads and writes them; the Lua scripts in
worker/store/lua/ build the per-job and per-batch keys from the prefix the same way (`prefix .. ':job:' .. id`),
since one script call serves documents of many jobs. Celery's own queues (lists named after the queue, kombu's
layout) are not ours: worker/store/views.py only counts them for operators.

    jobs and documents (worker/store/results.py)
    {p}:job:{job_id}                    hash    job fields and counters n_pending, n_created, ...
    {p}:job:{job_id}:docs               list    the submitted documents (JSON), ExternalId filled in
    {p}:job:{job_id}:records            hash    position -> record JSON (external_id, status, key, number, ...)
    {p}:job:{job_id}:status             hash    position -> status (missing = pending)
    {p}:job:{job_id}:assigned           hash    position -> "buffer" or the batch id (a document is pushed once)
    {p}:jobs                            zset    job ids by submission time (trimmed to the retention)
    {p}:open_jobs                       set     jobs not finished yet (a restarted worker re-queues them)
    duplicate index and Keys (worker/store/results.py)
    {p}:dedup:{tenant}:{kind}:{xid}     string  "claimed|owner" or "created|owner|key|number"
    {p}:erpkeys:{tenant}:{kind}         zset    every Key we recorded (score = Key): reconciliation's exclusions
    batches (worker/store/results.py, buffer.py)
    {p}:batch:{batch_id}                hash    members, body, state, attempts, lease, request
    {p}:batch:{batch_id}:log            list    one JSON line per attempt
    {p}:open_batches                    set     batches not done yet (a restarted worker re-queues their sends)
    {p}:buffer:{tenant}:{kind}          list    the coalescing buffer's items (worker/store/buffer.py)
    {p}:buffer:{tenant}:{kind}:bytes    string  bytes of the documents in it
    {p}:buffers                         set     "tenant|kind" of every buffer that has been used
    intake and submissions (worker/store/intake.py, submissions.py)
    {p}:intake:lane:{tenant}:{lane}     list    the tenant's job ranges waiting to be validated (interactive or bulk)
    {p}:intake:ready                    zset    tenants with ranges waiting, by virtual time (fair share of intake)
    {p}:intake:clock                    string  the virtual time of the last range taken (while any waits)
    {p}:intake:backlog                  hash    ranges waiting in all, and ranges and documents per tenant and lane
    {p}:intake:streak                   hash    tenant -> interactive ranges taken in a row while its bulk waited
    {p}:intake:taken:{holder}           list    ranges a drain task took, until it is done with them
    {p}:intakeq                         string  a drain task is queued already
    {p}:submit                          list    raw producers' job messages (LPUSH), taken oldest first
    {p}:submit:held:{id}                string  a taken message, until its task has stored or rejected it
    {p}:submit:held                     set     the ids of taken messages
    {p}:rejected                        list    newest first, capped: one entry per rejected message
    dead letters (worker/store/results.py)
    {p}:dead                            hash    dead-letter id -> entry (document, reason, attempts); no expiry
    {p}:dead:index                      zset    dead-letter ids by time
    {p}:dead:state                      hash    dead-letter id -> its state (replayed, resolved: flat JSON); none = open
    {p}:dead:open                       hash    duplicate-index key -> JSON array of the unresolved dead letters'
                                                ids for that document (mark_created.lua resolves them)
    the dispatcher: batches waiting to be sent, per tenant and lane (worker/store/dispatch.py)
    {p}:dispatch:ready                  zset    tenants with batches queued that may send now, by virtual time
    {p}:dispatch:parked                 zset    tenants with batches queued that may not send yet, by when they may
    {p}:dispatch:delayed                zset    batches coming back later (retry, reconcile delay), by when
    {p}:dispatch:taken                  zset    batches handed to a sender, by the end of its (renewed) lease
    {p}:dispatch:tenant:{tenant}        hash    limits, virtual time, what it waits for, documents per lane
    {p}:dispatch:lane:{tenant}:{lane}   list    the tenant's queued batch ids (lane: interactive or bulk)
    {p}:dispatch:clock                  string  the virtual time of the last batch handed out
    {p}:dispatch:tickets                zset    send tickets running, by when they stop counting
    {p}:dispatch:wake                   string  when the delayed ticket scheduled soonest is due
    {p}:dispatch:flushes                zset    "tenant|kind" of buffers to flush, by when (a claim: by its end)
    sending limits and ERP sessions (worker/store/dispatch.py, ratelimit.py, tokens.py)
    {p}:inflight:{tenant}               zset    the tenant's requests in flight (grant tokens), by lease end
    {p}:rate:{target}:{tenant}          string  the tenant's next free rate-limit turn (µs, Redis's clock)
    {p}:token:{tenant}                  string  the tenant's shared ERP access token
    {p}:token:{tenant}:lock             string  held by the one worker renewing it (a redis-py lock)
    {p}:token:{tenant}:credentials      hash    credentials given by `erpsync tenants reauth` (field -> value) and,
                                                per credential held in Redis, `file:{field}` -> the fingerprint of
                                                the tenants file's value it superseded (worker/store/tokens.py)
    {p}:fortnox:refresh:{tenant}        string  the Fortnox refresh token (rotates on every use)
    {p}:pause:{tenant}                  string  a Retry-After pause after a 429, until it expires
    tenant controls (worker/store/tenants.py)
    {p}:tenant:{tenant}                 hash    paused_by (auth|operator), reason, since; auth (ok|refused), auth_at,
                                                credentials_at (the last reauth); no expiry
    metrics (worker/store/counters.py)
    {p}:metrics:{metric}                hash    Prometheus counters and histogram buckets
    {p}:throughput:{bucket}             hash    documents settled in a 10-second bucket: "t|tenant", "j|job" -> n
    the outbox: what leaves Redis for the archive and the webhooks (worker/store/outbox.py)
    {p}:archive                         stream  every outcome, duplicate-index entry, dead letter and final job
                                                (written by the scripts that record them); group `archiver`
    {p}:archive:epoch                   string  the duplicate index's epoch: missing = Redis lost the index (no
                                                expiry; written when the index is started or restored)
    {p}:archive:state                   hash    the archiver's last commit, lag, error; a detected loss
    {p}:events:jobs                     stream  final jobs (capped at ~100,000); group `webhooks`
    {p}:webhooks:due                    zset    webhook deliveries by when they are due (worker/webhooks/)
    {p}:webhooks:delivery:{id}          hash    one delivery: job, tenant, attempts, last error
    {p}:webhooks:failed                 zset    deliveries given up, by time (shown by `erpsync status`)
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Keys"]


@dataclass(frozen=True, slots=True)
class Keys:
    """The keys of one deployment (its prefix): `Keys("erpsync").job("J1")` is `erpsync:job:J1`."""

    prefix: str

    # ----- jobs and documents
    def job(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def job_docs(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:docs"

    def job_records(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:records"

    def job_status(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:status"

    def job_assigned(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:assigned"

    @property
    def jobs(self) -> str:
        return f"{self.prefix}:jobs"

    @property
    def open_jobs(self) -> str:
        return f"{self.prefix}:open_jobs"

    # ----- duplicate index and Keys
    def dedup(self, tenant: str, kind: str, external_id: str) -> str:
        return f"{self.prefix}:dedup:{tenant}:{kind}:{external_id}"

    def erp_keys(self, tenant: str, kind: str) -> str:
        return f"{self.prefix}:erpkeys:{tenant}:{kind}"

    def lookalikes(self, tenant: str, kind: str) -> str:
        """Which batch holds each content signature of a tenant's documents of a kind (worker/store/lookalikes.py);
        the release script (lua/lookalike_release.lua) spells it too."""
        return f"{self.prefix}:lookalike:{tenant}:{kind}"

    # ----- batches, the buffer and flushes
    def batch(self, batch_id: str) -> str:
        return f"{self.prefix}:batch:{batch_id}"

    def batch_log(self, batch_id: str) -> str:
        return f"{self.prefix}:batch:{batch_id}:log"

    @property
    def open_batches(self) -> str:
        return f"{self.prefix}:open_batches"

    def buffer(self, tenant: str, kind: str) -> str:
        return f"{self.prefix}:buffer:{tenant}:{kind}"

    def buffer_bytes(self, tenant: str, kind: str) -> str:
        return f"{self.prefix}:buffer:{tenant}:{kind}:bytes"

    @property
    def buffers(self) -> str:
        return f"{self.prefix}:buffers"

    # ----- intake and submissions
    def intake_lane(self, tenant: str, lane: str) -> str:
        return f"{self.prefix}:intake:lane:{tenant}:{lane}"

    @property
    def intake_ready(self) -> str:
        return f"{self.prefix}:intake:ready"

    @property
    def intake_clock(self) -> str:
        return f"{self.prefix}:intake:clock"

    @property
    def intake_backlog(self) -> str:
        return f"{self.prefix}:intake:backlog"

    @property
    def intake_streak(self) -> str:
        return f"{self.prefix}:intake:streak"

    def intake_taken(self, holder: str) -> str:
        return f"{self.prefix}:intake:taken:{holder}"

    @property
    def intake_flag(self) -> str:
        return f"{self.prefix}:intakeq"

    @property
    def submit(self) -> str:
        return f"{self.prefix}:submit"

    @property
    def submit_held_set(self) -> str:
        return f"{self.prefix}:submit:held"

    def submit_held(self, submission_id: str) -> str:
        return f"{self.prefix}:submit:held:{submission_id}"

    @property
    def rejected(self) -> str:
        return f"{self.prefix}:rejected"

    # ----- dead letters
    @property
    def dead(self) -> str:
        return f"{self.prefix}:dead"

    @property
    def dead_index(self) -> str:
        return f"{self.prefix}:dead:index"

    @property
    def dead_state(self) -> str:
        return f"{self.prefix}:dead:state"

    @property
    def dead_open(self) -> str:
        return f"{self.prefix}:dead:open"

    # ----- the dispatcher
    @property
    def dispatch_ready(self) -> str:
        return f"{self.prefix}:dispatch:ready"

    @property
    def dispatch_parked(self) -> str:
        return f"{self.prefix}:dispatch:parked"

    @property
    def dispatch_delayed(self) -> str:
        return f"{self.prefix}:dispatch:delayed"

    @property
    def dispatch_taken(self) -> str:
        return f"{self.prefix}:dispatch:taken"

    def dispatch_tenant(self, tenant: str) -> str:
        return f"{self.prefix}:dispatch:tenant:{tenant}"

    def dispatch_lane(self, tenant: str, lane: str) -> str:
        return f"{self.prefix}:dispatch:lane:{tenant}:{lane}"

    @property
    def dispatch_clock(self) -> str:
        return f"{self.prefix}:dispatch:clock"

    @property
    def dispatch_tickets(self) -> str:
        return f"{self.prefix}:dispatch:tickets"

    @property
    def dispatch_wake(self) -> str:
        return f"{self.prefix}:dispatch:wake"

    @property
    def dispatch_flushes(self) -> str:
        return f"{self.prefix}:dispatch:flushes"

    # ----- sending limits and ERP sessions
    def inflight(self, tenant: str) -> str:
        return f"{self.prefix}:inflight:{tenant}"

    def rate(self, target: str, tenant: str) -> str:
        return f"{self.prefix}:rate:{target}:{tenant}"

    def token(self, tenant: str) -> str:
        return f"{self.prefix}:token:{tenant}"

    def token_lock(self, tenant: str) -> str:
        return f"{self.prefix}:token:{tenant}:lock"

    def fortnox_refresh(self, tenant: str) -> str:
        return f"{self.prefix}:fortnox:refresh:{tenant}"

    def pause(self, tenant: str) -> str:
        return f"{self.prefix}:pause:{tenant}"

    def credentials(self, tenant: str) -> str:
        """Live credentials, so in the token family with the access token (never in the results store's keys)."""
        return f"{self.prefix}:token:{tenant}:credentials"

    # ----- tenant controls
    def tenant(self, tenant: str) -> str:
        """A tenant's state (paused, auth health); lua/dispatch_take.lua spells it too."""
        return f"{self.prefix}:tenant:{tenant}"

    # ----- metrics
    def metric(self, name: str) -> str:
        return f"{self.prefix}:metrics:{name}"

    def throughput(self, bucket: int) -> str:
        """Documents settled in one bucket of time (worker/store/counters.py, THROUGHPUT_BUCKET_SECONDS)."""
        return f"{self.prefix}:throughput:{bucket}"

    # ----- the outbox: the archive and webhooks
    @property
    def archive(self) -> str:
        return f"{self.prefix}:archive"

    @property
    def archive_epoch(self) -> str:
        return f"{self.prefix}:archive:epoch"

    @property
    def archive_state(self) -> str:
        return f"{self.prefix}:archive:state"

    @property
    def job_events(self) -> str:
        return f"{self.prefix}:events:jobs"

    @property
    def webhooks_due(self) -> str:
        return f"{self.prefix}:webhooks:due"

    def webhook_delivery(self, delivery_id: str) -> str:
        return f"{self.prefix}:webhooks:delivery:{delivery_id}"

    @property
    def webhooks_failed(self) -> str:
        return f"{self.prefix}:webhooks:failed"
