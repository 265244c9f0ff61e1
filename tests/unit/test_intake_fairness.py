"""Fair intake (worker/store/intake.py, lua/intake_take.lua) against fakeredis: tenants served round robin in virtual
time and by weight, interactive items first within a tenant (and never in a take with bulk ones), a bulk item after
a streak of interactive ones, nothing left behind for a tenant with nothing waiting, and every item taken once."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import fakeredis
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from schemas.kinds import Lane
from worker.settings import Settings
from worker.store.intake import INTERACTIVE_STREAK, IntakeQueue, Item, LaneBacklog

INT, BULK = Lane.INTERACTIVE, Lane.BULK
PREFIX = "fair"


def make(tmp_path: Path | None = None, weights: dict[str, float] | None = None) -> IntakeQueue:
    """A queue on a fresh fakeredis; with `weights`, a tenants file giving those tenants those weights."""
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
    tenants_file = None
    if weights:
        assert tmp_path is not None
        tenants_file = tmp_path / "tenants.json"
        entries = [
            {"name": name, "company_api_key": "company-key", "connect_api_key": "connect-key", "weight": weight}
            for name, weight in weights.items()
        ]
        tenants_file.write_text(json.dumps({"tenants": entries}), encoding="utf-8")
    settings = Settings(key_prefix=PREFIX, intake_chunk_docs=1000, demo_tenant=False, tenants_file=tenants_file)
    return IntakeQueue(client, settings)


def items(tenant: str, lane: Lane, n: int, size: int = 1, job: str | None = None) -> list[Item]:
    """`n` items of `size` documents: one job's consecutive chunks if `job` is given, else one-document jobs."""
    if job is not None:
        return [Item(job, i * size, (i + 1) * size, tenant, lane) for i in range(n)]
    return [Item(f"{tenant}-{lane.value}-{i}", 0, size, tenant, lane) for i in range(n)]


def take(intake: IntakeQueue, holder: str, max_docs: int | None = None) -> list[Item]:
    """A take whose holder is done with it at once."""
    got = intake.take(holder, max_docs)
    intake.done(holder)
    return got


def our_keys(intake: IntakeQueue) -> list[str]:
    return sorted(intake.r.keys(f"{PREFIX}:intake*"))


def test_a_small_tenant_is_not_held_back_by_a_big_file() -> None:
    intake = make()
    intake.push(items("big", BULK, 30, size=1000, job="file"))
    assert take(intake, "h1") == [Item("file", 0, 1000, "big", BULK)]
    intake.push(items("small", INT, 1))  # arrives behind 29 chunks
    assert take(intake, "h2") == [Item("small-interactive-0", 0, 1, "small", INT)]  # next, not 30th
    assert take(intake, "h3") == [Item("file", 1000, 2000, "big", BULK)]


def test_tenants_with_work_waiting_take_turns() -> None:
    intake = make()
    for tenant in ("a", "b", "c"):
        intake.push(items(tenant, BULK, 3, size=500, job=f"{tenant}-file"))
    order = [take(intake, f"h{n}", max_docs=500)[0].tenant for n in range(9)]
    assert order == ["a", "b", "c"] * 3
    assert take(intake, "h9") == []


def test_a_newcomer_enters_at_the_virtual_time_of_the_last_turn() -> None:
    intake = make()
    intake.push(items("a", BULK, 4, size=1000, job="fa"))
    intake.push(items("b", BULK, 4, size=1000, job="fb"))
    assert [take(intake, f"h{n}")[0].tenant for n in range(3)] == ["a", "b", "a"]
    intake.push(items("c", BULK, 1, size=1000, job="fc"))  # at a's last turn's time: with b (due), before a
    assert [take(intake, f"k{n}")[0].tenant for n in range(6)] == ["b", "c", "a", "b", "a", "b"]


def test_one_take_serves_many_tenants_small_jobs_round_robin() -> None:
    intake = make()
    intake.push(items("a", INT, 10))
    intake.push(items("b", INT, 10))
    got = take(intake, "h", max_docs=6)
    assert [i.tenant for i in got] == ["a", "b", "a", "b", "a", "b"]
    assert [i.job_id for i in got if i.tenant == "a"] == ["a-interactive-0", "a-interactive-1", "a-interactive-2"]


def test_a_tenant_of_weight_two_gets_twice_the_items(tmp_path: Path) -> None:
    intake = make(tmp_path, {"heavy": 2.0, "light": 1.0})
    intake.push(items("heavy", INT, 200))
    intake.push(items("light", INT, 200))
    got = take(intake, "h", max_docs=30)
    assert Counter(i.tenant for i in got) == {"heavy": 20, "light": 10}
    got = [i for n in range(20) for i in take(intake, f"h{n}", max_docs=7)]  # over many takes as well
    assert Counter(i.tenant for i in got) == {"heavy": 93, "light": 47}


def test_a_weight_below_one_gets_less(tmp_path: Path) -> None:
    intake = make(tmp_path, {"slow": 0.25, "normal": 1.0})
    intake.push(items("slow", INT, 100))
    intake.push(items("normal", INT, 100))
    got = take(intake, "h", max_docs=50)
    assert Counter(i.tenant for i in got) == {"normal": 40, "slow": 10}


def test_interactive_goes_first_and_a_bulk_item_after_each_streak() -> None:
    intake = make()
    intake.push(items("t", BULK, 3, size=500, job="file"))
    intake.push(items("t", INT, 10))
    lanes = [take(intake, f"h{n}", max_docs=1)[0].lane for n in range(13)]
    streak = [INT] * INTERACTIVE_STREAK
    assert lanes == [*streak, BULK, *streak, BULK, INT, INT, BULK]
    assert take(intake, "h13") == [] and our_keys(intake) == []


def test_no_streak_is_counted_while_no_bulk_item_waits() -> None:
    intake = make()
    intake.push(items("t", INT, 6))
    assert [i.lane for i in take(intake, "h1", max_docs=6)] == [INT] * 6
    intake.push(items("t", INT, 2))
    intake.push(items("t", BULK, 1, size=500, job="file"))
    assert [i.lane for i in take(intake, "h2", max_docs=1)] == [INT]  # the streak starts now, not before


def test_a_take_with_an_interactive_item_holds_no_bulk_one() -> None:
    intake = make()
    intake.push(items("a", BULK, 2, size=300, job="fa"))
    intake.push(items("b", INT, 5))
    # a is first (same virtual time, name first) and bulk: b's interactive items wait for the next take
    assert take(intake, "h1") == items("a", BULK, 2, size=300, job="fa")
    intake.push(items("c", BULK, 1, size=300, job="fc"))
    intake.push(items("a", INT, 2))
    got = take(intake, "h2")
    assert {i.lane for i in got} == {INT} and len(got) == 7  # b's 5 and a's 2; c's bulk chunk waits
    assert take(intake, "h3") == [Item("fc", 0, 300, "c", BULK)]


def test_a_tenant_owed_a_bulk_item_sits_out_an_interactive_take() -> None:
    intake = make()
    intake.push(items("t", BULK, 1, size=800, job="file"))
    intake.push(items("t", INT, 6))
    first = take(intake, "h1")
    assert [i.lane for i in first] == [INT] * INTERACTIVE_STREAK  # then t is owed a bulk item: not in this take
    assert take(intake, "h2") == [Item("file", 0, 800, "t", BULK)]
    assert [i.lane for i in take(intake, "h3")] == [INT, INT]


def test_a_drained_tenant_leaves_no_key_behind() -> None:
    intake = make()
    intake.push(items("a", INT, 2) + items("a", BULK, 1, size=10, job="fa"))
    intake.push(items("b", BULK, 9, size=1000, job="fb"))
    for n in range(10):
        if all(row.tenant != "a" for row in intake.backlog()):
            break
        take(intake, f"h{n}")
    r = intake.r
    assert intake.backlog() == [LaneBacklog("b", BULK, 6, 6000)]  # a took 3 turns, b 3 as well
    assert not any(":a:" in key for key in our_keys(intake))
    assert r.zscore(f"{PREFIX}:intake:ready", "a") is None
    assert not any(field.startswith("a|") for field in r.hkeys(f"{PREFIX}:intake:backlog"))
    assert not r.hexists(f"{PREFIX}:intake:streak", "a")
    while take(intake, "h"):
        pass
    assert our_keys(intake) == []  # nothing waits: no clock, backlog or streak either
    assert intake.waiting() == 0 and intake.backlog() == []


def test_a_redelivered_holder_gets_its_items_back_and_they_say_where_they_came_from() -> None:
    intake = make()
    intake.push(items("a", INT, 2) + items("b", INT, 1))
    held = intake.take("task-1")
    assert {(i.tenant, i.lane) for i in held} == {("a", INT), ("b", INT)}
    intake.push(items("c", INT, 1))
    assert intake.take("task-1") == held  # the same items, no new ones
    raw = intake.r.lrange(intake.taken_key("task-1"), 0, -1)
    assert [Item.decode(x) for x in raw] == held and raw[0] == "a-interactive-0|0|1|interactive|a"
    intake.push(held)  # pushed back (were it ever needed), each goes to its tenant and lane again
    intake.done("task-1")
    again = take(intake, "task-1", max_docs=10)
    assert sorted(again, key=repr) == sorted([*held, *items("c", INT, 1)], key=repr)


def test_waiting_and_backlog_count_items_and_documents_per_tenant_and_lane() -> None:
    intake = make()
    intake.push(items("b", BULK, 3, size=1000, job="fb") + items("b", INT, 2, size=3) + items("a", INT, 1))
    assert intake.waiting() == 6
    assert intake.backlog() == [
        LaneBacklog("a", INT, 1, 1),
        LaneBacklog("b", INT, 2, 6),
        LaneBacklog("b", BULK, 3, 3000),
    ]
    take(intake, "h")  # a's and b's interactive items
    assert intake.waiting() == 3 and intake.backlog() == [LaneBacklog("b", BULK, 3, 3000)]
    take(intake, "h")
    assert intake.waiting() == 2 and intake.backlog() == [LaneBacklog("b", BULK, 2, 2000)]


def test_items_encode_their_tenant_and_lane_and_old_items_still_decode() -> None:
    item = Item("2026.01_a-b", 1000, 2000, "acme.se", BULK)
    assert item.encode() == "2026.01_a-b|1000|2000|bulk|acme.se" and Item.decode(item.encode()) == item
    odd = Item("j|with|bars|0|1", 5, 9, "t", INT)  # whatever a job id holds, the last fields decode
    assert Item.decode(odd.encode()) == odd
    assert Item.decode("j|with|bars|0|10") == Item("j|with|bars", 0, 10, "", BULK)  # held across an upgrade
    with pytest.raises(ValueError, match="not an intake item"):
        Item.decode("garbage")


def test_an_unreadable_tenants_file_weighs_everyone_one(tmp_path: Path) -> None:
    intake = make(tmp_path, {"a": 3.0})
    assert intake.s.tenants_file is not None
    intake.s.tenants_file.write_text("{not json", encoding="utf-8")
    intake.push(items("a", INT, 4) + items("b", INT, 4))
    assert Counter(i.tenant for i in take(intake, "h", max_docs=4)) == {"a": 2, "b": 2}


# ----- every item is taken once, whatever the interleaving

TENANTS = ("a", "b", "c")
PUSH = st.tuples(st.just("push"), st.sampled_from(TENANTS), st.sampled_from(list(Lane)), st.integers(1, 400))
TAKE = st.tuples(st.just("take"), st.integers(1, 1500), st.booleans())


@hsettings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(PUSH, TAKE), max_size=40))
def test_every_item_is_taken_once_in_its_lanes_order(steps: list[tuple[object, ...]]) -> None:
    intake = make()
    pushed: list[Item] = []
    taken: list[Item] = []
    holder = 0
    for step in steps:
        if step[0] == "push":
            _, tenant, lane, size = step
            assert isinstance(tenant, str) and isinstance(lane, Lane) and isinstance(size, int)
            new = Item(f"j{len(pushed)}", 0, size, tenant, lane)
            intake.push([new])
            pushed.append(new)
            continue
        _, budget, redelivered = step
        assert isinstance(budget, int)
        got = intake.take(f"h{holder}", budget)
        if redelivered:  # the task died and runs again under its id: the same items
            assert intake.take(f"h{holder}", budget) == got
        intake.done(f"h{holder}")
        holder += 1
        assert len({i.lane for i in got}) <= 1  # one lane per take
        assert sum(i.size for i in got[:-1]) < budget  # only the last item passes the budget
        taken += got
        assert intake.waiting() == len(pushed) - len(taken)
    while got := take(intake, "last", 10**6):
        taken += got
    assert sorted(taken, key=repr) == sorted(pushed, key=repr)  # each once
    for tenant in TENANTS:
        for lane in Lane:
            mine = [i for i in pushed if (i.tenant, i.lane) == (tenant, lane)]
            assert [i for i in taken if (i.tenant, i.lane) == (tenant, lane)] == mine  # first in, first out
    assert our_keys(intake) == []
