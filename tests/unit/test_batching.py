"""Batch planning: order kept, limits respected, nothing lost or repeated."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from worker.batching import array_body, plan_batches


def test_splits_on_document_count() -> None:
    assert plan_batches([10] * 5, max_docs=2, max_bytes=10_000) == [[0, 1], [2, 3], [4]]


def test_splits_on_bytes_counting_brackets_and_commas() -> None:
    # [a,b] with a=b=10 bytes is 23 bytes
    assert plan_batches([10, 10], max_docs=50, max_bytes=23) == [[0, 1]]
    assert plan_batches([10, 10], max_docs=50, max_bytes=22) == [[0], [1]]


def test_oversized_document_goes_alone() -> None:
    assert plan_batches([5, 100, 5], max_docs=50, max_bytes=50) == [[0], [1], [2]]


def test_array_body_is_json() -> None:
    assert json.loads(array_body(['{"a":1}', '{"b":2}'])) == [{"a": 1}, {"b": 2}]


@given(st.lists(st.integers(1, 500), max_size=300), st.integers(1, 60), st.integers(2, 5000))
@settings(max_examples=300, deadline=None)
def test_plan_properties(sizes: list[int], max_docs: int, max_bytes: int) -> None:
    groups = plan_batches(sizes, max_docs, max_bytes)
    flat = [i for g in groups for i in g]
    assert flat == list(range(len(sizes)))  # every item once, in order
    for group in groups:
        assert 1 <= len(group) <= max_docs
        body_bytes = sum(sizes[i] for i in group) + len(group) + 1
        assert body_bytes <= max_bytes or len(group) == 1
