"""A per-tenant cap on ERP requests in flight, shared by every worker process on every machine.

A Redis counting semaphore with leases: before a POST to the ERP a worker takes a slot for the tenant,
after it (whatever the outcome) it gives the slot back. A slot is a member of a sorted set whose score is
its lease deadline, so a holder that is SIGKILLed mid-request cannot leak its slot: the next acquisition
after the deadline drops it. Taking a slot is one Lua script (sweep expired leases, then refresh or add),
so two workers can never both take the last slot.

Holder ids are unique per request (e.g. the batch id plus the attempt number). Acquiring again with a
holder already present refreshes its lease and counts as acquired without taking a second slot, so a
redelivered message for the same attempt is harmless.

Clocks: lease deadlines are epoch seconds from the caller's clock (`time.time()`, passed as ARGV), as in
the rest of the code base, not Redis server time. This assumes worker clocks roughly in sync (NTP): a
worker whose clock runs d seconds ahead sees other workers' leases end d seconds early. Leases are minutes
long (longer than the longest POST), so a skew of a second or two does not matter. The key's own expiry is
relative (PEXPIRE) and does not depend on any clock agreement.

Lowering the limit does not evict holders: it takes effect as they release or expire.

Waiting: a sender thread that finds the cap full polls (a freed slot of another process is seen within
MAX_POLL_S), and a release in the same process wakes one of that process's waiters for the tenant at once,
so that a slot given back by one thread of a sender is taken by another without a poll's delay. Slots
are only held while a request is in flight (tasks/send.py gives the slot back as soon as the ERP has
answered), so a sender with more threads than the cap keeps the cap's requests in flight while its other
threads record outcomes and fetch the next batches.

Keys (prefix p; worker/store/keys.py):
    {p}:inflight:{tenant}   zset   holder id -> lease deadline (epoch s); expires a little after the
                                   latest deadline, so an idle tenant leaves no key

Script (worker/store/lua/): inflight_acquire.lua, one try to take a slot.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import cast

import redis

from worker.store.client import RedisClient
from worker.store.keys import Keys
from worker.store.scripts import load_script

log = logging.getLogger(__name__)

# How long `acquire` sleeps between tries at most, whatever poll_s is: a freed slot is seen within this.
MAX_POLL_S = 0.1
# The key outlives its latest lease by this much (ms), so rounding never drops a live lease with the key.
_EXPIRY_SLACK_MS = 1000


class Slot:
    """A slot taken (or not) by `InflightLimiter.slot`: true when taken; `release()` gives it back early."""

    def __init__(self, limiter: InflightLimiter, tenant: str, holder: str, *, acquired: bool, held: bool) -> None:
        self.limiter, self.tenant, self.holder = limiter, tenant, holder
        self.acquired = acquired  # the caller may go on (a limit <= 0 always lets it)
        self._held = held  # a slot is stored in Redis and not given back yet

    def __bool__(self) -> bool:
        return self.acquired

    def release(self) -> None:
        """Give the slot back now (once; later calls and the with-statement's end do nothing). Should that
        fail (Redis unreachable), the error is logged, not raised: the lease ends the slot anyway."""
        if not self._held:
            return
        self._held = False
        try:
            self.limiter.release(self.tenant, self.holder)
        except redis.RedisError:
            log.warning("could not release ERP slot %s of tenant %s; its lease will end it", self.holder, self.tenant)


class _Freed:
    """Per tenant, the releases made by this process: a count that waiters compare, and a condition they wait on."""

    def __init__(self) -> None:
        self.condition = threading.Condition()
        self.count = 0


class InflightLimiter:
    """Take and give back per-tenant ERP request slots; one instance per process is enough."""

    def __init__(self, client: RedisClient, prefix: str) -> None:
        self.r = client
        self.p = prefix
        self.keys = Keys(prefix)
        self._try_acquire = load_script(client, "inflight_acquire")
        self._freed: dict[str, _Freed] = {}
        self._freed_lock = threading.Lock()

    def _freed_for(self, tenant: str) -> _Freed:
        freed = self._freed.get(tenant)
        if freed is None:
            with self._freed_lock:
                freed = self._freed.setdefault(tenant, _Freed())
        return freed

    def key(self, tenant: str) -> str:
        return self.keys.inflight(tenant)

    def try_acquire(
        self, tenant: str, holder: str, limit: int, lease_s: float, now: float | None = None
    ) -> tuple[bool, float]:
        """One attempt to take a slot for `holder` with a lease of `lease_s` seconds from `now`.

        Returns (True, 0.0) when acquired, including when `holder` already held a slot (its lease is then
        refreshed; no second slot is taken). Returns (False, seconds until the earliest lease ends) when all
        `limit` slots are held: the longest a caller has to wait, unless a holder releases sooner.
        A `limit` <= 0 means unlimited: always acquired, nothing stored.
        """
        if limit <= 0:
            return True, 0.0
        if lease_s <= 0:
            raise ValueError(f"lease_s must be positive, not {lease_s!r}")
        at = time.time() if now is None else now
        acquired, wait = self._try_acquire(
            keys=[self.key(tenant)], args=[repr(float(at)), holder, limit, repr(float(lease_s)), _EXPIRY_SLACK_MS]
        )
        return bool(int(acquired)), max(0.0, float(wait))

    def acquire(
        self, tenant: str, holder: str, limit: int, lease_s: float, timeout_s: float, poll_s: float = 0.02
    ) -> bool:
        """Take a slot, waiting up to `timeout_s` seconds for one; False on timeout (nothing is then held).

        Polls with jittered sleeps that start at `poll_s` and grow to at most `MAX_POLL_S`, never past the
        end of the earliest lease or the timeout. A timeout of 0 makes exactly one attempt. Meant for short
        waits: a caller that cannot get a slot soon should defer its work rather than block its process.
        """
        give_up = time.monotonic() + max(0.0, timeout_s)
        interval = min(max(poll_s, 0.001), MAX_POLL_S)
        freed = self._freed_for(tenant)
        while True:
            seen = freed.count  # read before trying: a release after the try is not missed
            acquired, wait = self.try_acquire(tenant, holder, limit, lease_s)
            if acquired:
                return True
            left = give_up - time.monotonic()
            if left <= 0:
                return False
            pause = min(interval * random.uniform(0.5, 1.5), MAX_POLL_S, left, max(wait, 0.001))
            with freed.condition:
                if freed.count == seen:
                    freed.condition.wait(pause)  # a release in this process wakes one waiter at once
            interval = min(interval * 1.5, MAX_POLL_S)

    def release(self, tenant: str, holder: str) -> None:
        """Give back `holder`'s slot; harmless if it holds none (never acquired, expired or released)."""
        removed = self.r.zrem(self.key(tenant), holder)
        if removed:
            freed = self._freed_for(tenant)
            with freed.condition:
                freed.count += 1
                freed.condition.notify()

    @contextmanager
    def slot(self, tenant: str, holder: str, limit: int, lease_s: float, timeout_s: float) -> Iterator[Slot]:
        """`acquire` for the body of a with-statement: yields a `Slot`, true when taken.

        A slot taken is given back on the way out, even when the body raises, unless the body gave it back
        earlier (`Slot.release`). Should that release fail (Redis unreachable), the error is logged, not
        raised over the body's outcome: the lease ends the slot anyway.
        """
        acquired = self.acquire(tenant, holder, limit, lease_s, timeout_s)
        slot = Slot(self, tenant, holder, acquired=acquired, held=acquired and limit > 0)
        try:
            yield slot
        finally:
            slot.release()

    def holders(self, tenant: str) -> dict[str, float]:
        """Every stored holder -> lease deadline (epoch s), including expired ones not swept yet."""
        members = cast(list[tuple[str | bytes, float]], self.r.zrange(self.key(tenant), 0, -1, withscores=True))
        return {h.decode() if isinstance(h, bytes) else str(h): float(s) for h, s in members}

    def in_flight(self, tenant: str, now: float | None = None) -> int:
        """How many holders have a live lease (deadline after `now`)."""
        at = time.time() if now is None else now
        return int(self.r.zcount(self.key(tenant), f"({at!r}", "+inf"))
