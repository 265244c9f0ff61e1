"""PostgreSQL's fast path for the writer: a batch's rows go in by COPY, straight into their table inside a
savepoint. A batch written before (an archiver killed between its commit and its acknowledgement) or an index entry
that is already there makes that COPY fail on the key; then nothing of it is kept, and the writer's own
`INSERT … ON CONFLICT` statements (worker/archive/writer.py) write the rows, idempotent as ever.

Why: an archived outcome costs about a third of the CPU this way, in the archiver (no statement per row to build)
and in PostgreSQL (one statement per table and batch instead of one execution per row), and both share the
machine with the workers whose throughput the archive must not take (docs/benchmarks.md, the archive's cost).
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter
from typing import Any

import orjson
import psycopg
import psycopg.errors
from sqlalchemy import JSON, Connection, Table

__all__ = ["copy_new_rows"]


def _json(value: Any) -> str | None:
    """A JSON column's value as COPY's text format takes it (most outcomes have no errors: `[]` is not encoded)."""
    if value is None:
        return None
    return "[]" if value == [] else orjson.dumps(value).decode()


def copy_new_rows(connection: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> bool:
    """COPY `rows` straight into `table` under a savepoint: True when they were all new and are in; False when one of
    them is there already (nothing of this COPY is kept then, and the caller writes them with ON CONFLICT)."""
    if not rows:
        return True
    driver = connection.connection.driver_connection
    assert driver is not None
    try:
        with connection.begin_nested(), driver.cursor() as cursor:
            _copy(cursor, table, rows)
    except psycopg.errors.UniqueViolation:
        return False
    return True


def _copy(cursor: psycopg.Cursor[Any], table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """COPY `rows` (dicts of `table`'s columns) into it: JSON columns encoded, the rest as they are."""
    columns = [c.name for c in table.columns]
    values_of = itemgetter(*columns)
    encoded = [i for i, c in enumerate(table.columns) if isinstance(c.type, JSON)]
    with cursor.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            values = list(values_of(row))
            for i in encoded:
                values[i] = _json(values[i])
            copy.write_row(values)
