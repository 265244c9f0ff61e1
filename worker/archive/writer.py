"""Writes a batch of the archive's rows (worker/archive/events.py) in one transaction, idempotently.

Outcomes and dead letters are inserted unless there (their outbox entry's id is their key: a batch written again
after a crash between commit and acknowledgement changes nothing). Jobs and index entries are upserted, and a row
is only replaced by a newer entry's (`event_id`): entries read again after a crash, older than what the database
holds, never undo it. PostgreSQL and SQLite both take `INSERT ... ON CONFLICT`, through their dialects. On PostgreSQL a
table's rows first go by COPY (worker/archive/pgcopy.py): when they are all new, that is all; when one is there
already, these statements write them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError

from worker.archive import schema
from worker.archive.events import Rows
from worker.archive.pgcopy import copy_new_rows
from worker.errors import ArchiveError, ArchiveUnavailable

__all__ = ["write"]

#: Rows per INSERT statement (executemany): PostgreSQL's parameter limit is 65,535, SQLite's 32,766.
_CHUNK = 500


def write(engine: Engine, rows: Rows) -> None:
    """Commit `rows` as one transaction, or raise ArchiveError (nothing of them is written then)."""
    tables: list[tuple[Table, Sequence[dict[str, Any]], list[str], bool]] = [
        (schema.outcomes, rows.outcomes, ["event_id", "recorded_at"], False),
        (schema.dead_letters, list(rows.dead_letters.values()), ["dead_id"], False),
        (schema.jobs, list(rows.jobs.values()), ["job_id"], True),
        (schema.index, list(rows.index.values()), ["deployment", "tenant", "kind", "external_id"], True),
    ]
    try:
        with engine.begin() as connection:
            for table, table_rows, key, newer_only in tables:
                if connection.dialect.name == "postgresql" and copy_new_rows(connection, table, table_rows):
                    continue  # all new: COPY took them
                if newer_only:
                    _upsert_newer(connection, table, table_rows, key)
                else:
                    _insert_new(connection, table, table_rows, key)
    except (OperationalError, InterfaceError, psycopg.OperationalError, psycopg.InterfaceError) as exc:
        raise ArchiveUnavailable(f"the archive cannot be reached: {_first_line(exc)}") from None  # worth waiting out
    except (SQLAlchemyError, psycopg.Error) as exc:
        raise ArchiveError(f"the archive refused a batch: {_first_line(exc)}") from None


def _first_line(exc: Exception) -> str:
    """The driver's message, first line only: the rest may quote the statement's parameters (document content)."""
    original = getattr(exc, "orig", None)
    lines = str(original if original is not None else exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _insert(connection: Connection) -> Any:
    return postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert


def _insert_new(connection: Connection, table: Table, rows: Sequence[dict[str, Any]], key: list[str]) -> None:
    insert = _insert(connection)
    for start in range(0, len(rows), _CHUNK):
        connection.execute(insert(table).on_conflict_do_nothing(index_elements=key), list(rows[start : start + _CHUNK]))


def _upsert_newer(connection: Connection, table: Table, rows: Sequence[dict[str, Any]], key: list[str]) -> None:
    insert = _insert(connection)
    for start in range(0, len(rows), _CHUNK):
        statement = insert(table)
        statement = statement.on_conflict_do_update(
            index_elements=key,
            set_={c.name: statement.excluded[c.name] for c in table.columns if c.name not in key},
            where=table.c.event_id < statement.excluded.event_id,
        )
        connection.execute(statement, list(rows[start : start + _CHUNK]))
