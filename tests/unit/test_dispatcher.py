"""The dispatcher (worker/store/dispatch.py and its Lua scripts): batches queued per tenant and lane, handed out fairly.

Against fakeredis, which runs the dispatcher's scripts (cjson, TIME included). Leases, delays and pauses are epoch
seconds of the caller's clock: a fake clock for worker.store.dispatch drives them. Rate-limit turns are Redis's
clock (TIME): the rate test waits for real. Batches are written as the hashes the scripts read (state, tenant,
size, target, members; a job's lane is its hash's `lane`).

A grant's token ('<batch id>#<suffix>') fences its holder: only it settles or renews the batch, and the member of
its tenant's in-flight slot zset is the token, so a sender whose lease ran out (its batch taken back, perhaps handed
to another sender) changes nothing of the batch's new holder.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from types import SimpleNamespace
from typing import Any

import fakeredis
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from worker.settings import Settings
from worker.store import dispatch as dispatch_module
from worker.store.dispatch import (
    INTERACTIVE_STREAK,
    TURN_AHEAD_S,
    Delayed,
    Dispatcher,
    Grant,
    Lane,
    Limits,
    Reaped,
    Settle,
    Waiting,
)

P = "d"
FREE = Limits(cap=0, rate_interval_s=0.0)
LEASE = 10.0
INT, BULK = Lane.INTERACTIVE, Lane.BULK


@pytest.fixture
def r() -> redis.Redis:
    return fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """A fake clock for worker.store.dispatch (leases, delays, pauses, ready_at)."""
    fake = SimpleNamespace(now=1_800_000_000.0)
    monkeypatch.setattr(dispatch_module, "time", SimpleNamespace(time=lambda: fake.now))
    return fake


def dispatcher(r: redis.Redis, **overrides: Any) -> Dispatcher:
    return Dispatcher(r, Settings(key_prefix=P, demo_tenant=False, **overrides))


@pytest.fixture
def d(r: redis.Redis) -> Dispatcher:
    return dispatcher(r)


def job(r: redis.Redis, job_id: str, lane: Lane) -> str:
    r.hset(f"{P}:job:{job_id}", mapping={"lane": lane.value, "tenant": "t"})
    return job_id


def store_batch(
    r: redis.Redis, batch_id: str, tenant: str, *, jobs: tuple[str, ...] = ("j",), size: int = 1, state: str = "queued"
) -> None:
    members = [[j, n] for n, j in enumerate(jobs)]
    fields = {"state": state, "tenant": tenant, "target": "softone", "size": size, "members": json.dumps(members)}
    r.hset(f"{P}:batch:{batch_id}", mapping=fields)


def queue(r: redis.Redis, d: Dispatcher, tenant: str, ids: list[str], limits: Limits = FREE, **batch: Any) -> int:
    """Store the batches and add them: returns how many were queued."""
    for batch_id in ids:
        store_batch(r, batch_id, tenant, **batch)
    return d.add(limits, ids)


def take(d: Dispatcher, **kwargs: Any) -> Grant:
    found = d.take(**kwargs)
    assert found.grant is not None, found
    return found.grant


def taken(d: Dispatcher, n: int) -> list[str]:
    return [take(d).batch_id for _ in range(n)]


def nothing(d: Dispatcher) -> float | None:
    """Asserts that nothing may go now; returns when something may."""
    found = d.take()
    assert found.grant is None, found
    return found.due


def lane_list(r: redis.Redis, tenant: str, lane: Lane) -> list[str]:
    return list(r.lrange(f"{P}:dispatch:lane:{tenant}:{lane.value}", 0, -1))


def field(r: redis.Redis, batch_id: str, name: str) -> str | None:
    return r.hget(f"{P}:batch:{batch_id}", name)  # type: ignore[return-value]


def slots(r: redis.Redis, tenant: str) -> list[str]:
    """The members of the tenant's in-flight slot zset: the tokens of the grants holding its slots."""
    return sorted(r.zrange(f"{P}:inflight:{tenant}", 0, -1))


def unknown_grant(batch_id: str, tenant: str) -> Grant:
    """A grant the dispatcher never handed out (a token no batch carries)."""
    return Grant(batch_id, tenant, INT, None, None, f"{batch_id}#never-handed-out")


def tenant_keys(r: redis.Redis) -> list[str]:
    return sorted(r.keys(f"{P}:dispatch:tenant:*") + r.keys(f"{P}:dispatch:lane:*"))


# ----- fairness between tenants


def test_a_tenant_with_one_batch_goes_within_two_takes_of_one_with_a_hundred(r: redis.Redis, d: Dispatcher) -> None:
    assert queue(r, d, "big", [f"big-{n}" for n in range(100)]) == 100
    assert queue(r, d, "small", ["small-0"]) == 1
    assert "small-0" in taken(d, 2)
    # A newcomer after the first tenant has been sending a while goes next too, not after its backlog.
    assert taken(d, 10) == [f"big-{n}" for n in range(1, 11)]
    queue(r, d, "late", ["late-0"])
    assert "late-0" in taken(d, 2)
    # The big tenant's own batches go in the order they were queued.
    assert taken(d, 88) == [f"big-{n}" for n in range(12, 100)]
    assert nothing(d) is not None  # the leases of the batches taken: when they could be reaped


def test_a_tenant_with_weight_two_gets_two_thirds_of_the_turns(r: redis.Redis, d: Dispatcher) -> None:
    queue(r, d, "heavy", [f"h-{n}" for n in range(300)], Limits(0, 0.0, weight=2.0))
    queue(r, d, "light", [f"l-{n}" for n in range(300)], Limits(0, 0.0, weight=1.0))
    tenants = Counter(take(d).tenant for _ in range(300))
    assert 198 <= tenants["heavy"] <= 202 and tenants["heavy"] + tenants["light"] == 300
    # and in any stretch, not in runs: never three light ones in a row
    order = "".join(take(d).tenant[0] for _ in range(150))
    assert "lll" not in order and order.count("h") in range(99, 102)


# ----- lanes


def test_interactive_batches_go_first_and_a_bulk_one_after_every_streak(r: redis.Redis, d: Dispatcher) -> None:
    big, small = job(r, "big", BULK), job(r, "small", INT)
    queue(r, d, "t", [f"b{n}" for n in range(6)], jobs=(big,))
    queue(r, d, "t", [f"i{n}" for n in range(10)], jobs=(small,))
    assert lane_list(r, "t", BULK) == [f"b{n}" for n in range(6)]
    assert len(lane_list(r, "t", INT)) == 10
    grants = [take(d) for _ in range(16)]
    lanes = "".join("I" if g.lane == INT else "B" for g in grants)
    streak = "I" * INTERACTIVE_STREAK
    assert lanes == f"{streak}B{streak}B" + "I" * (10 - 2 * INTERACTIVE_STREAK) + "B" * 4
    assert [g.batch_id for g in grants if g.lane == BULK] == [f"b{n}" for n in range(6)]
    assert [g.batch_id for g in grants if g.lane == INT] == [f"i{n}" for n in range(10)]


def test_a_batch_is_interactive_when_any_of_its_jobs_is_not_bulk(r: redis.Redis, d: Dispatcher) -> None:
    bulk1, bulk2, inter = job(r, "bulk1", BULK), job(r, "bulk2", BULK), job(r, "inter", INT)
    queue(r, d, "t", ["all-bulk"], jobs=(bulk1, bulk2, bulk1))
    queue(r, d, "t", ["mixed"], jobs=(bulk1, inter))
    queue(r, d, "t", ["unknown-job"], jobs=(bulk2, "gone"))  # a job without a hash (expired): not bulk
    queue(r, d, "t", ["no-members"], jobs=())
    assert lane_list(r, "t", BULK) == ["all-bulk", "no-members"]
    assert lane_list(r, "t", INT) == ["mixed", "unknown-job"]
    assert [field(r, b, "lane") for b in ("all-bulk", "mixed", "unknown-job")] == ["bulk", "interactive", "interactive"]


def test_a_batch_keeps_the_lane_it_was_given(r: redis.Redis, d: Dispatcher, clock: SimpleNamespace) -> None:
    """A batch taken back or delayed comes back in its lane, whatever its jobs say by then."""
    inter = job(r, "inter", INT)
    queue(r, d, "t", ["x"], jobs=(inter,))
    grant = take(d)
    assert grant.lane == INT
    job(r, "inter", BULK)
    d.settle(grant, Settle.DELAY, delay_s=0)
    assert lane_list(r, "t", INT) == ["x"] and take(d).lane == INT


# ----- limits: in-flight cap, rate, pause


def test_a_tenant_at_its_cap_is_parked_while_others_are_served(
    r: redis.Redis, d: Dispatcher, clock: SimpleNamespace
) -> None:
    queue(r, d, "a", ["a0", "a1", "a2"], Limits(cap=1, rate_interval_s=0.0))
    queue(r, d, "b", ["b0", "b1"])
    a0, b0 = take(d), take(d)
    assert (a0.batch_id, b0.batch_id) == ("a0", "b0")
    assert a0.token.startswith("a0#") and field(r, "a0", "taken_by") == a0.token
    assert slots(r, "a") == [a0.token]  # the slot taken with the batch, named by its grant
    assert slots(r, "b") == []  # (no cap: no slot)
    assert take(d).batch_id == "b1"  # `a` looked at first (equal virtual time), parked: at its cap
    assert nothing(d) == pytest.approx(clock.now + d.s.send_lease_seconds)
    [a] = [t for t in d.backlog() if t.tenant == "a"]
    assert (a.waiting, a.holder, a.holder_sender, a.batches[INT]) == (Waiting.SLOT, "a0", None, 2)  # the batch id
    assert a.waiting_until == pytest.approx(clock.now + d.s.send_lease_seconds)
    assert r.zscore(f"{P}:dispatch:parked", "a") is not None

    assert d.settle(b0, Settle.DONE) is False  # nothing was waiting for it
    assert d.settle(a0, Settle.SLOT) is True  # the ERP answered: `a` may send again
    assert slots(r, "a") == []
    assert field(r, "a0", "queued_in") == "taken"  # the batch is still the sender's
    assert field(r, "a0", "taken_by") == a0.token
    a1 = take(d)
    assert a1.batch_id == "a1" and slots(r, "a") == [a1.token]
    assert d.settle(a0, Settle.DONE) is False and field(r, "a0", "queued_in") is None
    assert field(r, "a0", "taken_by") is None
    assert slots(r, "a") == [a1.token]  # a0's DONE gives back no slot but its own (given back already)
    assert nothing(d) is not None  # `a` at its cap again (a1)


def test_a_slot_whose_lease_ran_out_counts_no_more(r: redis.Redis, d: Dispatcher, clock: SimpleNamespace) -> None:
    queue(r, d, "a", ["a0", "a1"], Limits(cap=1, rate_interval_s=0.0))
    first = take(d, lease_s=5)
    assert nothing(d) == pytest.approx(clock.now + 5)
    clock.now += 5.01
    found = d.take()
    assert found.grant is not None and found.grant.batch_id == "a0"  # a0 came back first
    assert found.reaped == [Reaped("a0", "a", "")]  # (never acquired by a sender: no sender named)
    assert found.grant.token != first.token and slots(r, "a") == [found.grant.token]


def test_a_rate_limited_tenant_gets_one_batch_per_turn(r: redis.Redis, d: Dispatcher) -> None:
    """Its turn is taken with the batch (Redis's clock, worker/store/ratelimit.py's key), up to TURN_AHEAD_S ahead:
    the grant says how long its sender waits for it. Until then the tenant is parked and others are served."""
    interval = 1.0
    queue(r, d, "slow", ["s0", "s1"], Limits(cap=0, rate_interval_s=interval))
    started = time.time()
    first = take(d)
    taken_at = time.time()
    assert first.batch_id == "s0" and first.turn_in == 0.0  # its turn is now
    assert r.get(f"{P}:rate:softone:slow") is not None  # the turn is taken in the rate limiter's key
    queue(r, d, "free", ["f0", "f1", "f2"])
    assert [take(d).batch_id for _ in range(3)] == ["f0", "f1", "f2"]  # `slow` parked for its next turn meanwhile
    [slow] = d.backlog()
    assert slow.waiting == Waiting.RATE and slow.waiting_until is not None
    # parked until its next turn is TURN_AHEAD_S away
    earliest = started + interval - TURN_AHEAD_S
    assert earliest - 0.05 < slow.waiting_until <= taken_at + interval - TURN_AHEAD_S + 0.05
    due = nothing(d)
    assert due is not None and due == pytest.approx(slow.waiting_until)
    time.sleep(max(0.0, due - time.time()))
    while (found := d.take()).grant is None and time.time() < due + 2:
        time.sleep(0.005)
    assert found.grant is not None and found.grant.batch_id == "s1"
    turn_in = found.grant.turn_in
    assert turn_in is not None and 0 <= turn_in <= TURN_AHEAD_S
    assert time.time() + turn_in - started >= interval - 0.001  # its turn is not before its time


def test_a_tenant_without_a_rate_takes_no_turn(r: redis.Redis, d: Dispatcher) -> None:
    queue(r, d, "t", ["x"])
    assert take(d).turn_in is None
    assert r.keys(f"{P}:rate:*") == []


def test_a_paused_tenant_waits_for_the_end_of_its_pause(r: redis.Redis, d: Dispatcher, clock: SimpleNamespace) -> None:
    queue(r, d, "a", ["a0"])
    queue(r, d, "b", ["b0"])
    r.set(f"{P}:pause:a", f"{clock.now + 30:.3f}")  # its ERP said Retry-After: 30 (worker/store/tokens.py)
    b0 = take(d)
    assert b0.batch_id == "b0"
    [a] = d.backlog()
    assert (a.waiting, a.waiting_until) == (Waiting.PAUSE, pytest.approx(clock.now + 30))
    d.settle(b0, Settle.DONE)
    assert nothing(d) == pytest.approx(clock.now + 30)
    clock.now += 29
    nothing(d)
    clock.now += 1.5
    assert take(d).batch_id == "a0"


# ----- delays, leases, the reaper


def test_a_delayed_batch_goes_when_it_is_due_not_before(r: redis.Redis, d: Dispatcher, clock: SimpleNamespace) -> None:
    queue(r, d, "t", ["x", "y"])
    x, y = take(d), take(d)
    assert (x.batch_id, y.batch_id) == ("x", "y")
    assert d.settle(x, Settle.DELAY, delay_s=30) is False
    assert r.zscore(f"{P}:dispatch:delayed", "x") == pytest.approx(clock.now + 30)
    assert field(r, "x", "queued_in") == "delayed" and d.delayed() == 1 and d.taken() == 1  # y still held
    assert field(r, "x", "taken_by") is None
    assert d.settle(y, Settle.DONE) is False and d.taken() == 0
    assert nothing(d) == pytest.approx(clock.now + 30)
    clock.now += 29.9
    nothing(d)
    clock.now += 0.2
    grant = take(d)
    assert grant.batch_id == "x" and grant.ready_at == pytest.approx(clock.now)  # the wait counts from now
    assert d.delayed() == 0


def test_delayed_batches_say_what_they_wait_for(r: redis.Redis, d: Dispatcher, clock: SimpleNamespace) -> None:
    queue(r, d, "a", ["a0", "a1", "a2"])
    queue(r, d, "b", ["b0"])
    grants = {g.batch_id: g for g in (take(d) for _ in range(4))}
    d.settle(grants["a0"], Settle.DELAY, delay_s=30, reason="outage")
    d.settle(grants["a1"], Settle.DELAY, delay_s=10, reason="outage")
    d.settle(grants["a2"], Settle.DELAY, delay_s=20, reason="reconcile")
    d.settle(grants["b0"], Settle.DELAY, delay_s=5)
    assert field(r, "a2", "delayed_for") == "reconcile"
    assert d.delayed_by_tenant() == {
        "a": Delayed(3, pytest.approx(clock.now + 10), {"outage": 2, "reconcile": 1}),
        "b": Delayed(1, pytest.approx(clock.now + 5), {"retry": 1}),  # no reason given: a retry
    }
    assert d.delayed_by_tenant(limit=1) == {"b": Delayed(1, pytest.approx(clock.now + 5), {"retry": 1})}


def test_a_batch_delayed_by_nothing_is_queued_again_at_once(r: redis.Redis, d: Dispatcher) -> None:
    queue(r, d, "t", ["x"])
    grant = take(d)
    assert d.settle(grant, Settle.DELAY, delay_s=0) is True  # work that may go now: offer a ticket
    assert take(d).batch_id == "x"


def test_a_batch_whose_sender_stopped_renewing_comes_back_first(
    r: redis.Redis, d: Dispatcher, clock: SimpleNamespace
) -> None:
    queue(r, d, "t", ["x", "y", "z"], Limits(cap=2, rate_interval_s=0.0))
    x, y = take(d, lease_s=5), take(d, lease_s=5)
    assert (x.batch_id, y.batch_id) == ("x", "y")
    assert nothing(d) == pytest.approx(clock.now + 5)  # at its cap
    clock.now += 3
    assert d.renew([y], "w1", lease_s=5) == 1  # y's sender is alive; x's died
    clock.now += 2.5
    found = d.take(lease_s=5)
    assert [r.batch_id for r in found.reaped] == ["x"] and found.grant is not None
    assert found.grant.batch_id == "x"  # at the front of its lane, before z: the slot x held is free again
    assert found.grant.token != x.token and field(r, "x", "taken_by") == found.grant.token
    assert slots(r, "t") == sorted([found.grant.token, y.token])  # the dead sender's slot is gone
    assert r.zscore(f"{P}:inflight:t", y.token) == pytest.approx(clock.now - 2.5 + 5)  # renewed with its lease
    assert lane_list(r, "t", INT) == ["z"]


def test_a_batch_whose_own_lease_runs_on_is_not_taken_back(
    r: redis.Redis, d: Dispatcher, clock: SimpleNamespace
) -> None:
    """A sender that marked its request sent restarted the batch's own lease (worker/store/results.py): the
    dispatcher keeps the batch the sender's until that lease ends."""
    queue(r, d, "t", ["x"])
    take(d, lease_s=5)
    r.hset(f"{P}:batch:x", mapping={"state": "sending", "lease_until": f"{clock.now + 8:.3f}", "sender": "w1"})
    clock.now += 6
    assert nothing(d) == pytest.approx(clock.now + 2)  # its dispatch lease moved to the batch's
    assert r.zscore(f"{P}:dispatch:taken", "x") == pytest.approx(clock.now + 2)
    clock.now += 2.5
    found = d.take()
    assert found.reaped == [Reaped("x", "t", "w1")]  # who stopped: for the log line
    assert found.grant is not None and found.grant.batch_id == "x"


def test_renew_extends_the_batch_lease_of_its_own_sender_only(
    r: redis.Redis, d: Dispatcher, clock: SimpleNamespace
) -> None:
    queue(r, d, "t", ["x", "y"], Limits(cap=4, rate_interval_s=0.0))
    x, y = take(d, lease_s=5), take(d, lease_s=5)
    for batch_id, sender in (("x", "w1"), ("y", "w2")):
        r.hset(f"{P}:batch:{batch_id}", mapping={"state": "sending", "lease_until": "0", "sender": sender})
    assert d.renew([x, y, unknown_grant("gone", "t")], "w1", lease_s=7) == 2
    assert float(field(r, "x", "lease_until") or 0) == pytest.approx(clock.now + 7)
    assert field(r, "y", "lease_until") == "0"  # another sender's attempt
    assert r.zscore(f"{P}:dispatch:taken", "y") == pytest.approx(clock.now + 7)
    assert r.zscore(f"{P}:inflight:t", x.token) == pytest.approx(clock.now + 7)
    assert r.zscore(f"{P}:inflight:t", y.token) == pytest.approx(clock.now + 7)
    # A grant the dispatcher never handed out renews nothing, even naming a batch that is held.
    assert d.renew([unknown_grant("x", "t")], "w1", lease_s=60) == 0
    assert r.zscore(f"{P}:dispatch:taken", "x") == pytest.approx(clock.now + 7)
    assert d.renew([], "w1") == 0


def test_a_batch_taken_back_is_not_renewed_by_its_late_sender(
    r: redis.Redis, d: Dispatcher, clock: SimpleNamespace
) -> None:
    queue(r, d, "t", ["x"], Limits(cap=1, rate_interval_s=0.0))
    late = take(d, lease_s=5)
    r.set(f"{P}:pause:t", f"{clock.now + 60:.3f}")  # so that it stays in its lane once taken back
    clock.now += 6
    assert len(d.take().reaped) == 1
    assert lane_list(r, "t", INT) == ["x"] and d.taken() == 0
    assert field(r, "x", "taken_by") is None and slots(r, "t") == []  # the reaper took its token and slot
    assert d.renew([late], "w1", lease_s=5) == 0
    assert d.taken() == 0 and lane_list(r, "t", INT) == ["x"] and slots(r, "t") == []


def test_a_batch_done_while_queued_is_skipped(r: redis.Redis, d: Dispatcher) -> None:
    queue(r, d, "t", ["x", "y"])
    r.hset(f"{P}:batch:x", "state", "done")  # e.g. sent by a message of an earlier version
    assert take(d).batch_id == "y"
    assert field(r, "x", "queued_in") is None
    queue(r, d, "u", ["gone"])
    r.delete(f"{P}:batch:gone")  # expired
    assert nothing(d) is not None  # y's lease; `u` left no keys
    assert tenant_keys(r) == []


def test_a_done_batch_is_not_taken_back_or_delayed(r: redis.Redis, d: Dispatcher, clock: SimpleNamespace) -> None:
    queue(r, d, "t", ["x", "y"])
    take(d, lease_s=5)
    y = take(d, lease_s=5)
    r.hset(f"{P}:batch:x", "state", "done")
    clock.now += 6
    found = d.take(lease_s=5)
    assert [r.batch_id for r in found.reaped] == ["y"]  # x is done: not queued again
    assert lane_list(r, "t", INT) == [] and field(r, "x", "queued_in") is None
    assert found.grant is not None and found.grant.batch_id == "y"  # taken back, and handed to another sender
    r.hset(f"{P}:batch:y", "state", "done")  # which sends it
    assert d.settle(y, Settle.DELAY, delay_s=5) is False  # the late sender's grant is stale: nothing changes
    assert d.delayed() == 0 and field(r, "y", "queued_in") == "taken"
    assert d.settle(found.grant, Settle.DELAY, delay_s=5) is False  # its holder's: done, so not delayed
    assert d.delayed() == 0 and d.taken() == 0 and field(r, "y", "queued_in") is None


# ----- placing: once, and again when the placement was lost


def test_adding_a_batch_twice_queues_it_once(r: redis.Redis, d: Dispatcher, clock: SimpleNamespace) -> None:
    assert queue(r, d, "t", ["x", "y"]) == 2
    assert d.add(FREE, ["x", "y", "x"]) == 0
    assert lane_list(r, "t", INT) == ["x", "y"]
    x = take(d)
    assert x.batch_id == "x"
    assert d.add(FREE, ["x"]) == 0  # taken by a sender
    d.settle(x, Settle.DELAY, delay_s=10)
    assert d.add(FREE, ["x"]) == 0  # delayed
    r.hset(f"{P}:batch:y", "state", "done")
    assert d.add(FREE, ["missing"]) == 0
    assert [t.batches[INT] for t in d.backlog()] == [1]
    assert d.add(FREE, []) == 0


def test_verify_queues_again_a_batch_whose_placement_was_lost(
    r: redis.Redis, d: Dispatcher, clock: SimpleNamespace
) -> None:
    """Recovery after a Redis that lost writes: the batch says where it is, but is not there."""
    queue(r, d, "t", ["x", "y", "z"])
    take(d)  # x: taken
    y = take(d)  # y: taken, then delayed
    d.settle(y, Settle.DELAY, delay_s=60)
    r.delete(f"{P}:dispatch:lane:t:interactive")  # z's place lost
    assert d.add(FREE, ["x", "y", "z"]) == 0  # without verify: each says where it is
    assert d.add(FREE, ["x", "y", "z"], verify=True) == 1
    assert lane_list(r, "t", INT) == ["z"]
    r.delete(f"{P}:dispatch:taken", f"{P}:dispatch:delayed")
    assert d.add(FREE, ["x", "y", "z"], verify=True) == 2
    assert lane_list(r, "t", INT) == ["z", "x", "y"]
    assert d.add(FREE, ["x", "y", "z"], verify=True) == 0  # each where it says: nothing queued twice


# ----- tickets and wakes


def test_tickets_are_issued_within_the_limit_and_only_for_work(r: redis.Redis, clock: SimpleNamespace) -> None:
    """Tickets count where they are: waiting in the send queue (its list) and running (registered by take)."""
    d = dispatcher(r, send_tickets=3, send_ticket_seconds=60)
    send_queue = d.s.send_queue_name
    assert d.issue_tickets(["t1", "t2"]) == []  # nothing queued
    assert d.issue_tickets([]) == []
    queue(r, d, "t", ["x", "y"])
    assert d.issue_tickets(["t1", "t2", "t3", "t4", "t5"]) == ["t1", "t2", "t3"]
    r.rpush(send_queue, "t1", "t2", "t3")  # published: they wait in the send queue
    assert d.live_tickets() == 0 and d.issue_tickets(["t6"]) == []
    r.lpop(send_queue)  # t1 is delivered and runs
    take(d, ticket="t1")
    assert d.live_tickets() == 1 and d.issue_tickets(["t6"]) == []
    d.ticket_done("t1")
    assert d.issue_tickets(["t6", "t7"]) == ["t6"]
    r.delete(send_queue)  # the queued ones are lost with a broker: they count no more
    assert d.issue_tickets(["t8", "t9", "t10", "t11"]) == ["t8", "t9", "t10"]
    # A running ticket counts until a while after its last take (one lost with a killed worker stops counting).
    take(d, ticket="runner")
    assert d.live_tickets() == 1
    clock.now += 61
    assert d.live_tickets() == 0


def test_no_ticket_for_work_that_may_not_go_yet(r: redis.Redis, clock: SimpleNamespace) -> None:
    d = dispatcher(r, send_tickets=5)
    queue(r, d, "t", ["x"])
    x = take(d, lease_s=30)
    d.ticket_done("")  # (no ticket was named)
    assert d.issue_tickets(["a"]) == []  # taken, its lease running: nothing to do
    d.settle(x, Settle.DELAY, delay_s=20)
    assert d.issue_tickets(["a"]) == []  # delayed, not due
    clock.now += 21
    assert d.issue_tickets(["a", "b"]) == ["a", "b"]  # due: a ticket takes it


def test_a_wake_is_scheduled_once_for_the_earliest_moment(
    r: redis.Redis, d: Dispatcher, clock: SimpleNamespace
) -> None:
    now = clock.now
    assert d.schedule_wake(now + 5) is True
    assert d.schedule_wake(now + 6) is False  # one is due before then
    assert d.schedule_wake(now + 5) is False
    assert d.schedule_wake(now + 3) is True  # sooner than the one scheduled
    assert d.schedule_wake(now + 3) is False
    clock.now += 10  # the wake scheduled was due 7 s ago: lost with its worker, a new one is asked for
    assert d.schedule_wake(clock.now + 5) is True
    assert d.schedule_wake(clock.now + 5) is False


# ----- recovery's mark, counts, keys


def test_a_tenant_leaves_no_keys_once_its_last_batch_is_taken(r: redis.Redis, d: Dispatcher) -> None:
    big, small = job(r, "big", BULK), job(r, "small", INT)
    queue(r, d, "a", ["a0", "a1"], jobs=(big,), size=7)
    queue(r, d, "a", ["a2"], jobs=(small,), size=3)
    queue(r, d, "b", ["b0"])
    assert tenant_keys(r) == [
        f"{P}:dispatch:lane:a:bulk",
        f"{P}:dispatch:lane:a:interactive",
        f"{P}:dispatch:lane:b:interactive",
        f"{P}:dispatch:tenant:a",
        f"{P}:dispatch:tenant:b",
    ]
    taken(d, 4)
    assert tenant_keys(r) == []
    assert r.zcard(f"{P}:dispatch:ready") == 0 and r.zcard(f"{P}:dispatch:parked") == 0
    assert d.backlog() == []


def test_the_backlog_says_what_waits_where_and_why(r: redis.Redis, d: Dispatcher, clock: SimpleNamespace) -> None:
    big, small = job(r, "big", BULK), job(r, "small", INT)
    start = clock.now
    queue(r, d, "b", ["b0", "b1"], Limits(cap=1, rate_interval_s=0.0), jobs=(small,), size=5)
    take(d)
    r.hset(f"{P}:batch:b0", "sender", "host-1:4242")  # acquired by that sender (worker/store/results.py)
    nothing(d)  # b: parked at its cap
    clock.now += 1
    queue(r, d, "a", ["a0"], jobs=(small,), size=3)
    clock.now += 1
    queue(r, d, "a", ["a1"], jobs=(small,), size=4)
    queue(r, d, "a", ["a2"], jobs=(big,), size=10)
    b, a = d.backlog()
    assert (b.tenant, b.batches, b.documents) == ("b", {INT: 1, BULK: 0}, {INT: 5, BULK: 0})
    assert (b.oldest_ready_at, b.waiting, b.holder) == (pytest.approx(start), Waiting.SLOT, "b0")
    assert b.holder_sender == "host-1:4242"
    assert (a.tenant, a.batches, a.documents) == ("a", {INT: 2, BULK: 1}, {INT: 7, BULK: 10})
    assert (a.oldest_ready_at, a.waiting, a.waiting_until, a.holder) == (pytest.approx(start + 1), None, None, None)
    assert a.holder_sender is None
    assert take(d).batch_id == "a0"
    [_, a] = d.backlog()
    assert a.documents == {INT: 4, BULK: 10} and a.oldest_ready_at == pytest.approx(start + 2)
    assert d.taken() == 2 and d.delayed() == 0
    assert d.backlog(limit=1)[0].tenant == "b"


# ----- a property: one holder at a time, every batch handed out in the end

TENANTS = ("t0", "t1", "t2")
CAPS = {"t0": 0, "t1": 1, "t2": 2}
PROP_LEASE = 5.0

OPS = (
    *("add", "readd", "take", "take", "take", "done", "done", "delay", "slot"),
    *("renew", "die", "tick", "expire", "late"),
)
ops = st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 50), st.integers(0, 8)), min_size=10, max_size=80)


class Model:
    """What the dispatcher must keep true, checked against its Redis state after every step. Senders hold grants;
    one whose lease ran out (its batch taken back) keeps its stale grant and may still settle or renew with it
    (`late`): that must change nothing."""

    def __init__(self, r: redis.Redis, d: Dispatcher, clock: SimpleNamespace) -> None:
        self.r, self.d, self.clock = r, d, clock
        self.tenant: dict[str, str] = {}  # batch id -> tenant
        self.done: set[str] = set()
        self.held: dict[str, tuple[Grant, float]] = {}  # token -> grant, lease end: holders that may settle (alive)
        self.dead: dict[str, tuple[Grant, float]] = {}  # token -> grant, lease end: holders that died (never settle)
        self.stale: list[Grant] = []  # grants whose lease ran out: their batch was taken back
        self.slots: set[str] = set()  # tokens of the grants holding their tenant's slot
        self.handed: Counter[str] = Counter()

    def add(self, tenant: str, n: int) -> None:
        ids = [f"{tenant}-{len(self.tenant) + k}" for k in range(n)]
        for batch_id in ids:
            store_batch(self.r, batch_id, tenant)
            self.tenant[batch_id] = tenant
        assert self.d.add(Limits(CAPS[tenant], 0.0), ids, verify=True) == n

    def readd(self, i: int, verify: bool) -> None:
        if self.tenant:
            batch_id = sorted(self.tenant)[i % len(self.tenant)]
            assert self.d.add(Limits(CAPS[self.tenant[batch_id]], 0.0), [batch_id], verify=verify) == 0

    def holding(self, batch_id: str) -> bool:
        return any(g.batch_id == batch_id for g, _ in (*self.held.values(), *self.dead.values()))

    def take(self) -> Grant | None:
        now = self.clock.now
        for holders in (self.held, self.dead):  # leases that ran out: the dispatcher takes those batches back
            for token in [t for t, (_, end) in holders.items() if end <= now]:
                grant, _ = holders.pop(token)
                self.slots.discard(token)
                self.stale.append(grant)
        found = self.d.take(lease_s=PROP_LEASE)
        grant = found.grant
        if grant is not None:
            batch_id = grant.batch_id
            assert not self.holding(batch_id), f"{batch_id} handed to two holders"
            assert batch_id not in self.done and grant.tenant == self.tenant[batch_id]
            assert grant.token.startswith(f"{batch_id}#")
            assert grant.token not in self.held and all(grant.token != g.token for g in self.stale)
            self.held[grant.token] = (grant, now + PROP_LEASE)
            self.handed[batch_id] += 1
            cap = CAPS[grant.tenant]
            if cap:
                self.slots.add(grant.token)
                assert sum(1 for t in self.slots if self.tenant[t.split("#")[0]] == grant.tenant) <= cap
        return grant

    def pick(self, i: int) -> Grant | None:
        if not self.held:
            return None
        grants = sorted((g for g, _ in self.held.values()), key=lambda g: g.batch_id)
        return grants[i % len(grants)]

    def settle(self, grant: Grant, how: Settle, delay_s: float = 0.0) -> None:
        if how == Settle.SLOT:
            self.d.settle(grant, how)
            self.slots.discard(grant.token)
            return
        if how == Settle.DONE:
            self.r.hset(f"{P}:batch:{grant.batch_id}", "state", "done")  # as the send's end writes it
            self.done.add(grant.batch_id)
        self.d.settle(grant, how, delay_s=delay_s)
        del self.held[grant.token]
        self.slots.discard(grant.token)

    def renew(self, i: int) -> None:
        grant = self.pick(i)
        if grant is not None:
            # A live sender's heartbeat names its stale grants too (say, one it is finishing): only its own renews.
            stale = self.stale[i % len(self.stale) :][:1] if self.stale else []
            assert self.d.renew([grant, *stale], "w", lease_s=PROP_LEASE) == 1
            self.held[grant.token] = (grant, self.clock.now + PROP_LEASE)

    def late(self, i: int, b: int) -> None:
        """A sender whose lease ran out wakes up and settles or renews with its stale grant: nothing changes."""
        if not self.stale:
            return
        grant = self.stale[i % len(self.stale)]
        before = self.snapshot()
        how = (Settle.SLOT, Settle.DONE, Settle.DELAY, None)[b % 4]
        if how is None:
            assert self.d.renew([grant], "late", lease_s=PROP_LEASE * 10) == 0
        else:
            # Its slot went with the reaper (or its own release): giving it back again wakes nobody.
            assert self.d.settle(grant, how, delay_s=0.0) is False
        assert self.snapshot() == before

    def snapshot(self) -> dict[str, Any]:
        """The dispatcher's state a stale grant must not change (its batch's and its tenant's included)."""
        keys = [f"{P}:dispatch:{name}" for name in ("ready", "parked", "delayed", "taken")]
        keys += [f"{P}:inflight:{t}" for t in TENANTS]
        state: dict[str, Any] = {k: self.r.zrange(k, 0, -1, withscores=True) for k in keys}
        for key in self.r.scan_iter(f"{P}:dispatch:lane:*"):
            state[key] = self.r.lrange(key, 0, -1)
        for batch_id in self.tenant:
            state[batch_id] = self.r.hgetall(f"{P}:batch:{batch_id}")
        return state

    def die(self, i: int) -> None:
        grant = self.pick(i)
        if grant is not None:
            self.dead[grant.token] = self.held.pop(grant.token)

    def step(self, op: str, a: int, b: int) -> None:
        if op == "add":
            self.add(TENANTS[a % len(TENANTS)], 1 + b % 3)
        elif op == "readd":
            self.readd(a, b % 2 == 0)
        elif op == "take":
            self.take()
        elif op in ("done", "delay", "slot"):
            grant = self.pick(a)
            if grant is not None:
                self.settle(grant, Settle(op), delay_s=float(b))
        elif op == "renew":
            self.renew(a)
        elif op == "die":
            self.die(a)
        elif op == "late":
            self.late(a, b)
        elif op == "expire":  # the leases taken so far run out (those renewed since may not)
            self.clock.now += PROP_LEASE
        else:
            self.clock.now += b

    def check(self) -> None:
        """Every batch not done is in exactly one place: a lane, delayed, or taken (held, or due to be reaped); a
        held batch carries its holder's token; a tenant's slots are exactly those its holders hold."""
        places: Counter[str] = Counter()
        for key in self.r.scan_iter(f"{P}:dispatch:lane:*"):
            places.update(self.r.lrange(key, 0, -1))
        places.update(self.r.zrange(f"{P}:dispatch:delayed", 0, -1))
        places.update(self.r.zrange(f"{P}:dispatch:taken", 0, -1))
        for batch_id in self.tenant:
            expected = 0 if batch_id in self.done else 1
            assert places[batch_id] == expected, (batch_id, places[batch_id], self.r.hgetall(f"{P}:batch:{batch_id}"))
        for token, (grant, _) in [*self.held.items(), *self.dead.items()]:
            assert self.r.zscore(f"{P}:dispatch:taken", grant.batch_id) is not None
            assert field(self.r, grant.batch_id, "taken_by") == token
        for tenant in TENANTS:
            expected_slots = sorted(t for t in self.slots if self.tenant[t.split("#")[0]] == tenant)
            assert slots(self.r, tenant) == expected_slots, tenant


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops)
def test_one_holder_at_a_time_and_every_batch_goes_in_the_end(steps: list[tuple[str, Any, Any]]) -> None:
    r = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
    clock = SimpleNamespace(now=1_800_000_000.0)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(dispatch_module, "time", SimpleNamespace(time=lambda: clock.now))
        model = Model(r, dispatcher(r), clock)
        for tenant in TENANTS:  # some work from the start
            model.add(tenant, 2)
        for op, a, b in steps:
            model.step(op, a, b)
            model.check()
        # Then every sender finishes what it is given; the dead stay dead. Everything is handed out and done.
        for _ in range(10 * len(model.tenant) + 10):
            if len(model.done) == len(model.tenant):
                break
            grant = model.take()
            if grant is None:
                clock.now += PROP_LEASE + 1
            else:
                # The batch's earlier holders, their leases run out, come back while its new holder has it.
                for n, late in enumerate(model.stale):
                    if late.batch_id == grant.batch_id:
                        model.late(n, n + len(model.done))
                model.settle(grant, Settle.DONE)
            model.check()
        assert model.done == set(model.tenant)
        for n in range(len(model.stale)):  # the late ones come back at the very end: nothing to change
            model.late(n, n)
        assert model.d.take().grant is None
        assert tenant_keys(r) == []
        assert r.zcard(f"{P}:dispatch:taken") == r.zcard(f"{P}:dispatch:delayed") == 0
        assert r.keys(f"{P}:inflight:*") == []  # every slot given back


def test_a_late_sender_cannot_settle_the_batch_of_the_sender_after_it(
    r: redis.Redis, d: Dispatcher, clock: SimpleNamespace
) -> None:
    queue(r, d, "t", ["x"], Limits(cap=1, rate_interval_s=0.0))
    a = take(d, lease_s=5)  # sender A
    clock.now += 6  # A stalls past its lease (a long GC pause, Redis away for a lease)
    found = d.take(lease_s=5)  # sender B
    assert found.reaped == [Reaped("x", "t", "")]
    b = found.grant
    assert b is not None and b.batch_id == "x" and b.token != a.token
    taken_until = clock.now + 5
    assert field(r, "x", "taken_by") == b.token and slots(r, "t") == [b.token]

    assert d.settle(a, Settle.DELAY, delay_s=0) is False  # A wakes up and comes back later
    assert d.take().grant is None  # B still holds x: nobody else may be given it
    assert d.settle(a, Settle.DONE) is False  # A finishes (what it found is dropped: worker/pipeline/send.py)
    assert d.settle(a, Settle.SLOT) is False
    # B's taken entry, its token and its slot are all still there, untouched.
    assert r.zscore(f"{P}:dispatch:taken", "x") == pytest.approx(taken_until)
    assert field(r, "x", "taken_by") == b.token and field(r, "x", "queued_in") == "taken"
    assert slots(r, "t") == [b.token]
    assert r.zscore(f"{P}:inflight:t", b.token) == pytest.approx(taken_until)
    assert d.delayed() == 0 and lane_list(r, "t", INT) == [] and d.taken() == 1

    # A's heartbeat does not renew B's batch (nor its slot); B's does.
    clock.now += 1
    r.hset(f"{P}:batch:x", mapping={"state": "sending", "lease_until": f"{taken_until:.3f}", "sender": "B"})
    assert d.renew([a], "A", lease_s=60) == 0
    assert d.renew([a], "B", lease_s=60) == 0  # (whatever sender it names: the token decides)
    assert r.zscore(f"{P}:dispatch:taken", "x") == pytest.approx(taken_until)
    assert r.zscore(f"{P}:inflight:t", b.token) == pytest.approx(taken_until)
    assert float(field(r, "x", "lease_until") or 0) == pytest.approx(taken_until)
    assert d.renew([b], "B", lease_s=5) == 1
    assert r.zscore(f"{P}:dispatch:taken", "x") == pytest.approx(clock.now + 5)
    assert r.zscore(f"{P}:inflight:t", b.token) == pytest.approx(clock.now + 5)
    assert float(field(r, "x", "lease_until") or 0) == pytest.approx(clock.now + 5)

    # B settles: its slot goes back, then the batch is done.
    assert d.settle(b, Settle.SLOT) is False  # (nobody was parked for the slot)
    assert slots(r, "t") == [] and field(r, "x", "taken_by") == b.token
    r.hset(f"{P}:batch:x", "state", "done")
    assert d.settle(b, Settle.DONE) is False
    assert d.taken() == 0 and field(r, "x", "taken_by") is None and field(r, "x", "queued_in") is None
    assert d.take().grant is None and d.delayed() == 0 and tenant_keys(r) == []


def test_a_stale_grant_gives_back_no_slot_of_the_batchs_new_holder(
    r: redis.Redis, d: Dispatcher, clock: SimpleNamespace
) -> None:
    """A's ERP answers after A's lease ran out and x went to B: A's slot release must not free the slot B holds,
    or the tenant would have two requests in flight at a cap of one."""
    queue(r, d, "t", ["x", "y"], Limits(cap=1, rate_interval_s=0.0))
    a = take(d, lease_s=5)
    clock.now += 6
    b = take(d, lease_s=5)
    assert (a.batch_id, b.batch_id) == ("x", "x") and slots(r, "t") == [b.token]
    assert nothing(d) == pytest.approx(clock.now + 5)  # y waits for the tenant's one slot, which B holds
    assert d.settle(a, Settle.SLOT) is False  # wakes nobody: no slot was given back
    assert slots(r, "t") == [b.token]
    assert nothing(d) == pytest.approx(clock.now + 5)  # y still waits
    [t] = d.backlog()
    assert (t.waiting, t.holder) == (Waiting.SLOT, "x")
    assert d.settle(b, Settle.SLOT) is True  # B's answer gives the slot back and wakes the tenant
    y = take(d, lease_s=5)
    assert y.batch_id == "y" and slots(r, "t") == [y.token]


def test_a_stale_grant_whose_own_slot_remains_gives_back_that_one_only(
    r: redis.Redis, d: Dispatcher, clock: SimpleNamespace
) -> None:
    """A Redis that lost writes: the dispatcher's taken set is gone, so recovery queues x again while A's grant and
    slot remain; B is handed x. A's release gives back A's own slot (it holds one, and the cap counts it), not B's."""
    cap2 = Limits(cap=2, rate_interval_s=0.0)
    queue(r, d, "t", ["x"], cap2)
    a = take(d, lease_s=30)
    r.delete(f"{P}:dispatch:taken")
    assert d.add(cap2, ["x"], verify=True) == 1 and lane_list(r, "t", INT) == ["x"]
    b = take(d, lease_s=30)
    assert b.batch_id == "x" and b.token != a.token and field(r, "x", "taken_by") == b.token
    assert slots(r, "t") == sorted([a.token, b.token])
    queue(r, d, "t", ["y"], cap2)
    assert nothing(d) is not None  # y waits: at its cap, A's slot counting
    assert d.settle(a, Settle.DONE) is True  # A's own slot goes back, waking the tenant; x stays B's
    assert slots(r, "t") == [b.token]
    assert field(r, "x", "taken_by") == b.token and field(r, "x", "queued_in") == "taken"
    assert r.zscore(f"{P}:dispatch:taken", "x") is not None
    y = take(d, lease_s=30)
    assert y.batch_id == "y" and slots(r, "t") == sorted([b.token, y.token])
    assert d.renew([a], "A", lease_s=60) == 0
    assert d.renew([b, y], "B", lease_s=60) == 2


def test_a_flush_waits_while_its_tenant_has_interactive_batches_queued(
    r: redis.Redis, d: Dispatcher, clock: SimpleNamespace
) -> None:
    """A partial batch's documents could not go before the tenant's queued interactive batches: its flush waits for
    that lane to empty (more documents share the batch), then is due at once. Queued bulk batches hold no flush
    back (the buffer's documents go first), and another tenant's flush goes when due."""
    small = job(r, "small", INT)
    queue(r, d, "busy", ["b0", "b1"], jobs=(small,))
    queue(r, d, "filer", ["f0"], jobs=(job(r, "file", BULK),))
    for tenant in ("busy", "idle", "filer"):
        assert d.flush_at(tenant, "customer_invoice", clock.now - 1)
    assert not d.flush_at("idle", "customer_invoice", clock.now + 5)  # one due sooner stands
    claimed = d.claim_flushes()
    assert sorted(claimed.buffers) == [("filer", "customer_invoice"), ("idle", "customer_invoice")]
    assert d.claim_flushes().buffers == []  # busy's waits, the others are claimed
    take(d)
    assert d.claim_flushes().buffers == []  # one taken, by busy or filer: busy's lane is not empty yet
    while d.r.llen(d.keys.dispatch_lane("busy", INT)):
        take(d)
    assert d.claim_flushes().buffers == [("busy", "customer_invoice")]  # its interactive lane emptied: due now
    assert d.flush_done("idle", "customer_invoice", claimed.claimed_at)
    assert sorted(r.zrange(f"{P}:dispatch:flushes", 0, -1)) == ["busy|customer_invoice", "filer|customer_invoice"]
