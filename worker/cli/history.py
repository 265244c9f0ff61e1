"""`erpsync history`: what the archive holds of documents and jobs, filtered, as a table, JSON or CSV; and the
archive's side of `erpsync results` once Redis has expired a job (`archived_results`).

    erpsync history --external-id INV-1001             every outcome of one document, newest first
    erpsync history --key 4711                         the document the ERP knows by that Key/DocumentNumber
    erpsync history --tenant acme --since 2026-11-01 --until 2026-12-01 --csv > november.csv

Times are UTC. The CSV is for a spreadsheet: a header row, one row per outcome change, a validation failure's
field errors joined into one readable cell, and no document content beyond the ExternalId, Key and number.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from rich.table import Table
from sqlalchemy import Engine

from schemas.envelope import DocumentKind
from worker.archive.database import engine_for, ready_engine, shown_url
from worker.archive.history import HistoryRow, history, job, job_records
from worker.cli.console import EXIT_OK, UserError, err, out
from worker.settings import Settings, get_settings

__all__ = ["CSV_COLUMNS", "STATUS_CHOICES", "add_history_command", "archived_results", "errors_text", "result_record"]

STATUS_CHOICES = ("created", "duplicate", "changed", "updated", "failed", "unknown")
CSV_COLUMNS = ("recorded_at", "tenant", "kind", "job_id", "position", "external_id", "status", "key", "number",
               "error", "errors")  # fmt: skip
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _engine(settings: Settings) -> Engine | None:
    """The archive's engine, its schema checked; None for an SQLite file that does not exist yet (nothing was
    archived: reading should not create it)."""
    engine = engine_for(settings.archive_url)
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database and database != ":memory:" and not Path(database).exists():
        return None
    return ready_engine(settings)


# ----- `erpsync results` after Redis's retention


class _Outcome(Protocol):
    @property
    def external_id(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def key(self) -> int | str | None: ...
    @property
    def number(self) -> str | None: ...
    @property
    def error(self) -> str | None: ...
    @property
    def errors(self) -> list[dict[str, str]]: ...


def result_record(r: _Outcome) -> dict[str, Any]:
    """A document's outcome as the `results --json` contract has it, from Redis's record or the archive's row."""
    return {"external_id": r.external_id, "status": r.status, "key": r.key, "number": r.number, "error": r.error,
            "errors": r.errors}  # fmt: skip


def archived_results(job_id: str) -> dict[str, Any] | None:
    """The `results --json` payload of a job from the archive (`"source": "archive"`), or None when the archive is
    off or does not know the job."""
    settings = get_settings()
    if not settings.archive_enabled:
        return None
    engine = _engine(settings)
    found = job(engine, job_id) if engine is not None else None
    if engine is None or found is None:
        return None
    return {
        "job_id": job_id,
        "status": found["status"],
        "lane": found["lane"],
        "records": [result_record(r) for r in job_records(engine, job_id)],
        "source": "archive",
        # An `incomplete` job's reason, as archived: "the source broke at line N: ..." (worker/archive/events.py).
        "source_error": found["reason"] if found["status"] == "incomplete" else None,
    }


# ----- `erpsync history`


def _when(option: str, text: str | None) -> datetime | None:
    """`--since`/`--until`: `30m`, `1h`, `2d`, `1w` back from now, or an ISO-8601 date or date-time (UTC unless it
    says otherwise), parsed as `erpsync jobs --since` parses it."""
    if text is None:
        return None
    from worker.ops.overview import parse_since  # imported on use, as `erpsync jobs` does (worker/cli/ops.py)

    try:
        return datetime.fromtimestamp(parse_since(text), UTC)
    except ValueError as exc:
        raise UserError(str(exc).replace("--since", option, 1)) from None


def errors_text(errors: list[dict[str, str]]) -> str:
    """A document's field errors in one line: `InvoiceDate: field required; Rows[0].Price: not a number`."""
    parts = []
    for e in errors:
        where = e.get("field") or e.get("path") or ""
        reason = e.get("reason") or ""
        parts.append(f"{where}: {reason}" if where and reason else where or reason)
    return "; ".join(p for p in parts if p)


def _cell(value: object) -> str:
    """A CSV cell; text a spreadsheet would run as a formula (`=`, `+`, `-`, `@` first) gets a leading `'`."""
    text = "" if value is None else str(value)
    if text.startswith(_FORMULA_START):
        try:
            float(text)
        except ValueError:
            return "'" + text
    return text


def _csv_row(r: HistoryRow) -> list[str]:
    values = (r.recorded_at.strftime("%Y-%m-%d %H:%M:%S"), r.tenant, r.kind, r.job_id, r.position, r.external_id,
              r.status, r.erp_key, r.number, r.error, errors_text(r.errors))  # fmt: skip
    return [_cell(v) for v in values]


def _write_csv(rows: list[HistoryRow]) -> None:
    writer = csv.writer(sys.stdout)
    writer.writerow(CSV_COLUMNS)
    writer.writerows(_csv_row(r) for r in rows)
    sys.stdout.flush()


def _print_table(rows: list[HistoryRow], filters: str) -> None:
    title = f"{len(rows)} outcome(s), newest first" + (f" ({filters})" if filters else "") + "; times UTC"
    table = Table(title=title, title_justify="left")
    for name in ("recorded", "tenant", "kind", "job", "#", "ExternalId", "status", "Key", "number", "error"):
        table.add_column(name, no_wrap=name in ("job", "ExternalId"), overflow="fold")
    for r in rows:
        style = "red" if r.status in ("failed", "unknown", "changed") else None
        error = r.error or errors_text(r.errors)
        table.add_row(r.recorded_at.strftime("%Y-%m-%d %H:%M:%S"), r.tenant, r.kind, r.job_id, str(r.position),
                      r.external_id, r.status, r.erp_key or "", r.number or "", error[:160], style=style)  # fmt: skip
    out.print(table)


def cmd_history(args: argparse.Namespace) -> int:
    settings = get_settings()
    if not settings.archive_enabled:
        raise UserError("the archive is off (ERPSYNC_ARCHIVE_URL=off): set ERPSYNC_ARCHIVE_URL to read its history")
    if args.limit < 1:
        raise UserError(f"--limit {args.limit}: must be at least 1")
    since, until = _when("--since", args.since), _when("--until", args.until)
    if since is not None and until is not None and since >= until:
        raise UserError(f"--since {args.since} is not before --until {args.until}")
    engine = _engine(settings)
    rows: list[HistoryRow] = []
    if engine is None:
        err.print(f"no archive at {shown_url(settings)} yet: nothing archived")
    else:
        rows = history(engine, external_id=args.external_id, job_id=args.job, tenant=args.tenant, kind=args.kind,
                       status=args.status, since=since, until=until, key=args.key, limit=args.limit + 1)  # fmt: skip
    truncated = len(rows) > args.limit
    rows = rows[: args.limit]
    if args.json:
        print(json.dumps([r.as_dict() for r in rows], ensure_ascii=False))
    elif args.csv:
        _write_csv(rows)
    else:
        named = (("ExternalId", args.external_id), ("job", args.job), ("tenant", args.tenant), ("kind", args.kind),
                 ("status", args.status), ("Key", args.key), ("since", args.since), ("until", args.until))  # fmt: skip
        _print_table(rows, ", ".join(f"{k} {v}" for k, v in named if v))
    if truncated:
        err.print(f"showing the newest {args.limit} only: narrow it down (--since, --until, ...) or raise --limit")
    return EXIT_OK


def add_history_command(sub: Any) -> None:
    """Register `erpsync history` on the subparsers of `erpsync`."""
    p = sub.add_parser(
        "history",
        help="the archive's outcomes of documents, newest first, by ExternalId, job, tenant, kind, status, Key or "
        "time; a table, --json or --csv (for a spreadsheet)",
    )
    p.add_argument("--external-id", help="one document's ExternalId")
    p.add_argument("--job", help="one job's outcomes (every change; `erpsync results JOB` shows the latest)")
    p.add_argument("--tenant", help="only this tenant's documents")
    p.add_argument("--kind", choices=[k.value for k in DocumentKind], help="only documents of this kind")
    p.add_argument("--status", choices=STATUS_CHOICES, help="only outcomes with this status")
    p.add_argument("--key", help="the ERP's id of the document: SoftOne Key, Fortnox DocumentNumber, invoice id")
    p.add_argument("--since", help="recorded since: 30m, 1h, 2d, 1w or an ISO-8601 date/date-time (UTC by default)")
    p.add_argument("--until", help="recorded before: as --since (a date means its start, 00:00 UTC)")
    p.add_argument("--limit", type=int, default=1000, help="at most this many outcomes, the newest (default 1000)")
    output = p.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="a JSON list of objects")
    output.add_argument("--csv", action="store_true", help="CSV with a header row (UTF-8), for a spreadsheet")
    p.set_defaults(func=cmd_history)
