"""PostgreSQL's fast path for the writer: a batch's rows go in by COPY, straight into their table inside a
savepoint. A batch written before (an archiver killed between its commit and its acknowledgement) or an index entry
that is already there makes that COPY fail on the key; then the rows go by COPY into a temporary table and one
`INSERT … SELECT … ON CONFLICT` moves them into place, idempotent exactly as the row-by-row inserts are.

Why: an archived outcome costs about a third of the CPU this way, in the archiver (no statement per row to build)
and in PostgreSQL (one statement per table and batch instead of one execution per row), and both share the
machine with the workers whose throughput the archive must not take (README, "Benchmark", the archive).
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter
from typing import Any

import orjson
import psycopg
import psycopg.errors
from sqlalchemy import JSON, Connection, Table

__all__ = ["copy_rows"]


def _json(value: Any) -> str | None:
    """A JSON column's value as COPY's text format takes it (most outcomes have no errors: `[]` is not encoded)."""
    if value is None:
        return None
    return "[]" if value == [] else orjson.dumps(value).decode()


def copy_rows(connection: Connection, table: Table, rows: Sequence[dict[str, Any]], key: Sequence[str],
              *, newer_only: bool) -> None:  # fmt: skip
    """Rows into `table` by COPY: new keys inserted; existing ones left (`newer_only` False) or replaced by a row of
    a newer `event_id` (`newer_only` True). Runs in the connection's transaction."""
    if not rows:
        return
    columns = [c.name for c in table.columns]
    driver = connection.connection.driver_connection
    assert driver is not None
    try:
        with connection.begin_nested(), driver.cursor() as cursor:
            _copy(cursor, table.name, table, rows)
        return
    except psycopg.errors.UniqueViolation:
        pass  # some are there already: the idempotent way below
    incoming = f"erpsync_incoming_{table.name.removeprefix('erpsync_')}"
    with driver.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {incoming} (LIKE {table.name} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        _copy(cursor, incoming, table, rows)
        names = ", ".join(columns)
        conflict = f"INSERT INTO {table.name} ({names}) SELECT {names} FROM {incoming} ON CONFLICT ({', '.join(key)}) "
        if newer_only:
            updates = ", ".join(f"{name} = EXCLUDED.{name}" for name in columns if name not in key)
            conflict += f"DO UPDATE SET {updates} WHERE {table.name}.event_id < EXCLUDED.event_id"
        else:
            conflict += "DO NOTHING"
        cursor.execute(conflict)


def _copy(cursor: psycopg.Cursor[Any], into: str, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """COPY `rows` (dicts of `table`'s columns) into the table `into`: JSON columns encoded, the rest as they are."""
    columns = [c.name for c in table.columns]
    values_of = itemgetter(*columns)
    encoded = [i for i, c in enumerate(table.columns) if isinstance(c.type, JSON)]
    with cursor.copy(f"COPY {into} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            values = list(values_of(row))
            for i in encoded:
                values[i] = _json(values[i])
            copy.write_row(values)
