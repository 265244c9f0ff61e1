"""The coalescing buffer's flush: order kept, count and byte limits respected, nothing lost or repeated.

These are the batching rules; they live in the flush Lua script (worker/store/buffer.py), tested here on fakeredis.
"""

from __future__ import annotations

import json

import fakeredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from worker.settings import Settings
from worker.store.buffer import CoalescingBuffer, full_batches


def doc_of(size: int) -> str:
    """A JSON document of exactly `size` bytes (a string literal)."""
    return '"' + "x" * (size - 2) + '"'


def flush_all(sizes: list[int], max_docs: int, max_bytes: int) -> tuple[list[list[int]], list[str]]:
    client = fakeredis.FakeRedis(decode_responses=True)
    config = Settings(key_prefix="t", batch_max_docs=max_docs, batch_max_bytes=max_bytes, batch_max_wait_ms=0)
    buffer = CoalescingBuffer(client, config)
    buffer.push("acme", "customer_invoice", [("job", i, f"x{i}", doc_of(s)) for i, s in enumerate(sizes)])
    groups, bodies = [], []
    for n in range(len(sizes) + 1):
        result = buffer.flush_one("acme", "customer_invoice", f"b{n}", high_water=0)
        if result.status != "created":
            assert result.status == "empty"
            break
        batch = client.hgetall(f"t:batch:b{n}")
        groups.append([p for _, p in json.loads(batch["members"])])
        bodies.append(batch["body"])
    return groups, bodies


def test_splits_on_document_count() -> None:
    assert flush_all([10] * 5, max_docs=2, max_bytes=10_000)[0] == [[0, 1], [2, 3], [4]]


def test_splits_on_bytes_counting_brackets_and_commas() -> None:
    # [a,b] with a=b=511 bytes is 1025 bytes
    assert flush_all([511, 511], max_docs=50, max_bytes=1025)[0] == [[0, 1]]
    assert flush_all([511, 511], max_docs=50, max_bytes=1024)[0] == [[0], [1]]


def test_oversized_document_goes_alone() -> None:
    assert flush_all([5, 2000, 5], max_docs=50, max_bytes=1024)[0] == [[0], [1], [2]]


def test_body_is_the_json_array_of_the_documents() -> None:
    _, bodies = flush_all([4, 6], max_docs=50, max_bytes=10_000)
    assert json.loads(bodies[0]) == ["xx", "xxxx"]


@given(st.lists(st.integers(2, 500), max_size=120), st.integers(1, 60), st.integers(1024, 5000))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_flush_properties(sizes: list[int], max_docs: int, max_bytes: int) -> None:
    groups, bodies = flush_all(sizes, max_docs, max_bytes)
    assert [i for g in groups for i in g] == list(range(len(sizes)))  # every document once, in order
    for group, body in zip(groups, bodies, strict=True):
        assert 1 <= len(group) <= max_docs
        assert len(body) == sum(sizes[i] for i in group) + len(group) + 1
        assert len(body) <= max_bytes or len(group) == 1


@given(st.lists(st.integers(2, 500), max_size=120), st.integers(1, 60), st.integers(1024, 5000))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_whole_batches_cut_by_intake_are_the_flush_batches(sizes: list[int], max_docs: int, max_bytes: int) -> None:
    """Intake stores whole batches itself (full_batches): they must be what the flush would have made of the same
    documents, and the rest must be what the flush would still wait with (one batch that could take more)."""
    whole, rest = full_batches(sizes, max_docs, max_bytes)
    groups, _ = flush_all(sizes, max_docs, max_bytes)
    assert [list(r) for r in whole] == groups[: len(whole)]
    assert list(range(rest, len(sizes))) == [i for g in groups[len(whole) :] for i in g]
    if rest < len(sizes):  # the rest is one batch short of its limits: more documents could join it
        tail = sizes[rest:]
        assert len(groups) == len(whole) + 1
        assert len(tail) < max_docs and sum(tail) + len(tail) + 1 < max_bytes


def test_make_batch_stores_what_the_flush_stores_and_skips_assigned_documents() -> None:
    client = fakeredis.FakeRedis(decode_responses=True)
    buffer = CoalescingBuffer(client, Settings(key_prefix="t"))
    client.hset("t:job:j:assigned", "1", "buffer")  # pushed by an earlier run
    items = [("j", i, f"x{i}", doc_of(6)) for i in range(3)]
    assert buffer.make_batch("acme", "customer_invoice", "j@0", items, high_water=7, target="softone") == 2
    batch = client.hgetall("t:batch:j@0")
    assert json.loads(batch["members"]) == [["j", 0], ["j", 2]]
    assert json.loads(batch["external_ids"]) == ["x0", "x2"]
    assert json.loads(batch["body"]) == ["xxxx", "xxxx"]
    assert (batch["state"], batch["size"], batch["high_water"], batch["tenant"]) == ("queued", "2", "7", "acme")
    assert client.hgetall("t:job:j:assigned") == {"0": "j@0", "1": "buffer", "2": "j@0"}
    assert client.smembers("t:open_batches") == {"j@0"}
    assert buffer.make_batch("acme", "customer_invoice", "j@0", items, high_water=7) == -1  # exists: untouched
    assert buffer.make_batch("acme", "customer_invoice", "j@9", items, high_water=7) == 0  # none free: no batch
    assert not client.exists("t:batch:j@9")


def test_make_batch_of_many_jobs_assigns_each_document_and_expires_each_jobs_hash() -> None:
    """Small jobs coalesced into one batch: every job's `assigned` hash names the batch and gets the results' TTL
    (set once per job, not once per document)."""
    client = fakeredis.FakeRedis(decode_responses=True)
    buffer = CoalescingBuffer(client, Settings(key_prefix="t", result_ttl_seconds=600))
    items = [(f"j{i % 3}", i, f"x{i}", doc_of(6)) for i in range(7)]
    assert buffer.make_batch("acme", "customer_invoice", "j0@0", items, high_water=0) == 7
    for job in ("j0", "j1", "j2"):
        assigned = client.hgetall(f"t:job:{job}:assigned")
        assert assigned == {str(i): "j0@0" for i in range(7) if i % 3 == int(job[1])}
        assert 0 < client.ttl(f"t:job:{job}:assigned") <= 600
    batch = client.hgetall("t:batch:j0@0")
    assert json.loads(batch["members"]) == [[f"j{i % 3}", i] for i in range(7)]
    assert batch["body"] == "[" + ",".join(doc_of(6) for _ in range(7)) + "]"
