"""What a sandbox that keeps its state (``--state FILE``, sandbox.persistence) must save, noted as it changes.

* :class:`Sequences`: the named counters that never go back (SoftOne's Keys and numbers, Fortnox's document
  numbers, row ids and token labels, the invoice service's ids). Each starts at its first value; a saved value
  wins unless the config's first value is higher, so Keys never restart lower after a restart.
* :class:`Journal`: what changed since the state was last saved: ledger entries (new, or changed by a Fortnox
  update or action), rows of the token tables, whole tables cleared (a reset, ``tokens/expire``), and which
  counters moved. sandbox.persistence takes it and writes it in one transaction before the answer goes out.

Without a state file the journal is off (``enabled`` False) and notes nothing: the in-memory sandbox pays one
attribute test per change. Like the rest of the state it is used from the one asyncio thread only.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

# Tables of keyed rows the journal tracks (sandbox.persistence has one SQLite table each).
SOFTONE_TOKENS = "softone_tokens"
FORTNOX_TOKENS = "fortnox_tokens"
FORTNOX_REFRESH_TOKENS = "fortnox_refresh_tokens"
TABLES = (SOFTONE_TOKENS, FORTNOX_TOKENS, FORTNOX_REFRESH_TOKENS)


@dataclass
class Changes:
    """Everything changed since the last save. ``rows``: (table, key) -> the row's value, None to delete it;
    ``cleared``: tables emptied before those rows apply; ``entries``: ledger entries by their ``seq``."""

    ledger_cleared: bool = False
    entries: dict[int, Any] = field(default_factory=dict)
    cleared: set[str] = field(default_factory=set)
    rows: dict[tuple[str, str], Any] = field(default_factory=dict)
    sequences: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.ledger_cleared or self.entries or self.cleared or self.rows or self.sequences)


class Journal:
    """The changes not saved yet (see the module docstring); notes nothing while ``enabled`` is False."""

    def __init__(self) -> None:
        self.enabled = False
        self.changes = Changes()

    def entry(self, entry: Any) -> None:
        """A ledger entry was added or changed (its ``seq`` identifies it)."""
        if self.enabled:
            self.changes.entries[entry.seq] = entry

    def clear_ledger(self) -> None:
        """The ledger was emptied (a reset): entries noted before it are gone with it."""
        if self.enabled:
            self.changes.ledger_cleared = True
            self.changes.entries.clear()

    def put(self, table: str, key: str, value: Any) -> None:
        if self.enabled:
            self.changes.rows[(table, key)] = value

    def delete(self, table: str, key: str) -> None:
        if self.enabled:
            self.changes.rows[(table, key)] = None

    def clear(self, table: str) -> None:
        """Every row of ``table`` is gone (rows noted before are dropped, later ones apply after)."""
        if self.enabled:
            self.changes.rows = {k: v for k, v in self.changes.rows.items() if k[0] != table}
            self.changes.cleared.add(table)

    def moved(self, sequence: str) -> None:
        if self.enabled:
            self.changes.sequences.add(sequence)

    def pending(self) -> bool:
        return bool(self.changes)

    def take(self) -> Changes:
        """The changes noted so far; the journal starts afresh."""
        taken, self.changes = self.changes, Changes()
        return taken


class Sequences:
    """Named counters that never go back, noted in the journal as they move."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.values: dict[str, int] = {}  # name -> the value it hands out next

    def next(self, name: str, first: int) -> int:
        """The counter's next value: ``first`` the first time, then one more each time (never below ``first``)."""
        value = self.values.get(name, first)
        if value < first:
            value = first
        self.values[name] = value + 1
        self.journal.moved(name)
        return value

    def counter(self, name: str, first: int) -> Counter:
        """An iterator over one counter (``next(counter)``), as ``itertools.count(first)`` was."""
        return Counter(self, name, first)


class Counter(Iterator[int]):
    """One named counter of :class:`Sequences` as an iterator."""

    def __init__(self, sequences: Sequences, name: str, first: int) -> None:
        self.sequences = sequences
        self.name = name
        self.first = first

    def __next__(self) -> int:
        return self.sequences.next(self.name, self.first)
