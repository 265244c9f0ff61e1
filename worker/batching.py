"""Grouping documents into SoftOne array bodies of at most N documents and B bytes."""

from __future__ import annotations

from collections.abc import Sequence


def plan_batches(sizes: Sequence[int], max_docs: int, max_bytes: int) -> list[list[int]]:
    """Split items (given by their encoded size in bytes) into consecutive groups of item indexes.

    A group's body is `[` + items joined by `,` + `]`, so it costs sum(sizes) + count + 1 bytes. Order is
    kept (SoftOne saves an array in order). An item larger than `max_bytes` on its own still goes, alone:
    refusing it here would be our rule, not the ERP's.
    """
    groups: list[list[int]] = []
    current: list[int] = []
    current_bytes = 1  # the closing bracket; each item adds its size plus one separator/opening bracket
    for index, size in enumerate(sizes):
        if current and (len(current) >= max_docs or current_bytes + size + 1 > max_bytes):
            groups.append(current)
            current, current_bytes = [], 1
        current.append(index)
        current_bytes += size + 1
    if current:
        groups.append(current)
    return groups


def array_body(encoded: Sequence[str]) -> str:
    """The JSON array body for already-encoded documents."""
    return "[" + ",".join(encoded) + "]"
