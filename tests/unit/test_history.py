"""The archive's history (worker/archive/history.py) and `erpsync history` / `erpsync results` after Redis's
retention (worker/cli/history.py), on an SQLite archive filled the way the archiver fills it (outbox entries →
rows_of → write); the queries again on PostgreSQL when one answers at 127.0.0.1:5432 (required under CI=true)."""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import fakeredis
import pytest
from sqlalchemy import Engine

from tests.unit.cli_run import fake_redis_behind_cli, run
from worker.archive.database import engine_for, migrate, ready_engine
from worker.archive.events import rows_of
from worker.archive.history import history, job, job_records
from worker.archive.writer import write
from worker.cli.history import CSV_COLUMNS
from worker.settings import get_settings
from worker.store.outbox import Entry
from worker.store.results import ResultsStore

PREFIX = "hist"
T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
BODY = "BODY-MARKER-never-listed"
_seq = iter(range(1_000_000))


def at(moment: datetime) -> str:
    """An outbox entry id at `moment`, unique."""
    return f"{int(moment.timestamp() * 1000)}-{next(_seq)}"


def doc(
    moment: datetime,
    job_id: str,
    position: int,
    status: str,
    external_id: str,
    *,
    tenant: str = "acme",
    kind: str = "customer_invoice",
    target: str = "softone",
    **record: Any,
) -> Entry:
    item = {"p": position, "s": status, "r": {"external_id": external_id, "status": status, **record}}
    fields = {"e": "docs", "j": job_id, "t": tenant, "g": target, "k": kind, "d": json.dumps([item])}
    return Entry(at(moment), fields)


def job_entry(
    moment: datetime,
    job_id: str,
    status: str,
    *,
    tenant: str = "acme",
    target: str = "softone",
    kind: str = "customer_invoice",
    **counts: int,
) -> Entry:
    data = {
        "job_id": job_id,
        "tenant": tenant,
        "target": target,
        "kind": kind,
        "lane": "interactive",
        "operation": "create",
        "status": status,
        "total": sum(counts.values()),
        "submitted_at": T0.isoformat(),
        **{f"n_{k}": str(v) for k, v in counts.items()},
    }
    return Entry(at(moment), {"e": "job", "j": job_id, "at": moment.isoformat(), "d": json.dumps(data)})


# Recent when this module is imported: the whole suite runs first its integration tests (20 minutes and more), so the
# one-hour window of `--since 1h` below keeps it for 55 minutes after the import.
RECENT = datetime.now(UTC) - timedelta(minutes=5)

ENTRIES = [
    # j1: INV-1 failed validation, then (replayed) created; INV-2 created
    doc(
        T0,
        "j1",
        0,
        "failed",
        "INV-1",
        error="InvoiceDate: field required",
        errors=[
            {"field": "InvoiceDate", "reason": "field required"},
            {"field": "Rows[0].Price", "reason": "not a number"},
        ],
    ),
    doc(T0 + timedelta(minutes=1), "j1", 1, "created", "INV-2", key=4712, number="1002"),
    doc(T0 + timedelta(hours=2), "j1", 0, "created", "INV-1", key=4711, number="1001"),
    job_entry(T0 + timedelta(hours=2), "j1", "succeeded", created=2),
    # j2: Fortnox orders of another tenant, one of them an ExternalId a spreadsheet would run as a formula
    doc(
        T0 + timedelta(days=1),
        "j2",
        0,
        "duplicate",
        "ORD-1",
        tenant="beta",
        kind="order",
        target="fortnox",
        key="55",
        number="55",
    ),
    doc(
        T0 + timedelta(days=1, seconds=1),
        "j2",
        1,
        "failed",
        '=HYPERLINK("x")',
        tenant="beta",
        kind="order",
        target="fortnox",
        error="-rejected by the ERP",
    ),
    job_entry(
        T0 + timedelta(days=1, seconds=1),
        "j2",
        "partial",
        tenant="beta",
        target="fortnox",
        kind="order",
        duplicate=1,
        failed=1,
    ),
    # j3: INV-1 submitted again: a duplicate of the one created
    doc(T0 + timedelta(days=3), "j3", 0, "duplicate", "INV-1", key=4711, number="1001"),
    job_entry(T0 + timedelta(days=3), "j3", "succeeded", duplicate=1),
    # j4: half an hour ago
    doc(RECENT, "j4", 0, "created", "INV-9", key=4800, number="1009"),
]


def fill(engine: Engine) -> None:
    rows = rows_of(ENTRIES, PREFIX, bodies=True)
    assert not rows.skipped
    for row in rows.outcomes:  # as the archiver does with ERPSYNC_ARCHIVE_BODIES: history must never show it
        row["body"] = json.dumps({"ExternalId": row["external_id"], "Note": BODY})
    write(engine, rows)


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("ERPSYNC_KEY_PREFIX", PREFIX)
    monkeypatch.setenv("ERPSYNC_QUEUE", PREFIX)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def archive(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    """An SQLite archive of its own (tests/unit/conftest.py turns the archive off: on again here), filled."""
    monkeypatch.setenv("ERPSYNC_ARCHIVE_URL", f"sqlite:///{tmp_path}/a.sqlite3")
    get_settings.cache_clear()
    engine = ready_engine(get_settings())
    fill(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def r(monkeypatch: pytest.MonkeyPatch) -> fakeredis.FakeRedis:
    return fake_redis_behind_cli(monkeypatch)


def one_line_error(code: int, out: str, err: str) -> str:
    assert code == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


# ----- the queries (run on SQLite here, on PostgreSQL below)


def check_queries(engine: Engine) -> None:
    def ids(**criteria: Any) -> list[tuple[str, int, str]]:
        return [(r.job_id, r.position, r.status) for r in history(engine, **criteria)]

    everything = history(engine)
    assert len(everything) == 7
    times = [r.recorded_at for r in everything]
    assert times == sorted(times, reverse=True) and all(t.tzinfo is not None for t in times)
    assert ids(external_id="INV-1") == [("j3", 0, "duplicate"), ("j1", 0, "created"), ("j1", 0, "failed")]
    assert ids(job_id="j1") == [("j1", 0, "created"), ("j1", 1, "created"), ("j1", 0, "failed")]
    assert ids(tenant="beta") == [("j2", 1, "failed"), ("j2", 0, "duplicate")]
    assert ids(kind="order") == ids(tenant="beta")
    assert ids(status="failed") == [("j2", 1, "failed"), ("j1", 0, "failed")]
    assert ids(key="4711") == [("j3", 0, "duplicate"), ("j1", 0, "created")]
    assert ids(key="55") == [("j2", 0, "duplicate")]
    assert ids(since=T0 + timedelta(hours=1), until=T0 + timedelta(days=2)) == [
        ("j2", 1, "failed"),
        ("j2", 0, "duplicate"),
        ("j1", 0, "created"),
    ]
    assert ids(until=T0 + timedelta(minutes=1)) == [("j1", 0, "failed")]  # until is exclusive
    assert ids(since=T0 + timedelta(minutes=1), until=T0 + timedelta(minutes=2)) == [("j1", 1, "created")]
    naive = (T0 + timedelta(minutes=1)).replace(tzinfo=None)  # a datetime without a zone is UTC
    assert ids(since=naive, until=T0 + timedelta(minutes=2)) == [("j1", 1, "created")]
    assert ids(tenant="acme", status="duplicate", external_id="INV-1") == [("j3", 0, "duplicate")]
    assert ids(tenant="nobody") == []
    assert ids(limit=2) == [("j4", 0, "created"), ("j3", 0, "duplicate")]
    with pytest.raises(ValueError):
        history(engine, limit=0)

    (failed,) = history(engine, job_id="j1", status="failed")
    assert failed.errors == [
        {"field": "InvoiceDate", "reason": "field required"},
        {"field": "Rows[0].Price", "reason": "not a number"},
    ]
    assert failed.recorded_at == T0 and failed.erp_key is None

    latest = job_records(engine, "j1")
    assert [(r.position, r.external_id, r.status, r.key, r.number) for r in latest] == [
        (0, "INV-1", "created", 4711, "1001"),
        (1, "INV-2", "created", 4712, "1002"),
    ]
    assert [r.key for r in job_records(engine, "j2")] == ["55", None]  # Fortnox's DocumentNumber stays text
    assert job_records(engine, "nope") == []

    summary = job(engine, "j2")
    assert summary is not None
    assert (summary["status"], summary["tenant"], summary["lane"], summary["total"]) == (
        "partial",
        "beta",
        "interactive",
        2,
    )
    assert summary["counts"]["duplicate"] == 1 and summary["counts"]["failed"] == 1
    assert summary["submitted_at"] == T0
    assert job(engine, "nope") is None


def test_history_queries_filter_newest_first_and_latest_per_position(archive: Engine) -> None:
    check_queries(archive)


# ----- erpsync history


def test_history_json_is_a_list_of_objects(archive: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "history", "--external-id", "INV-1", "--json")
    assert code == 0 and err == ""
    rows = json.loads(out)
    assert isinstance(rows, list) and [r["status"] for r in rows] == ["duplicate", "created", "failed"]
    assert set(rows[0]) == {
        "recorded_at",
        "tenant",
        "target",
        "kind",
        "job_id",
        "position",
        "external_id",
        "status",
        "key",
        "number",
        "error",
        "errors",
    }
    assert rows[1]["key"] == 4711 and rows[1]["number"] == "1001" and rows[1]["job_id"] == "j1"
    assert rows[2]["recorded_at"] == "2026-11-20T08:00:00.000Z" and rows[2]["errors"][0]["field"] == "InvoiceDate"
    assert BODY not in out


def test_history_csv_opens_in_a_spreadsheet(archive: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "history", "--csv")
    assert code == 0 and err == ""
    assert BODY not in out and "Note" not in out
    header, *rows = list(csv.reader(io.StringIO(out)))
    assert tuple(header) == CSV_COLUMNS and len(rows) == 7
    by = [dict(zip(header, row, strict=True)) for row in rows]
    failed = next(r for r in by if r["job_id"] == "j1" and r["status"] == "failed")
    assert failed["recorded_at"] == "2026-11-20 08:00:00" and failed["position"] == "0" and failed["key"] == ""
    assert failed["errors"] == "InvoiceDate: field required; Rows[0].Price: not a number"
    created = next(r for r in by if r["job_id"] == "j1" and r["external_id"] == "INV-1" and r["status"] == "created")
    assert (created["key"], created["number"], created["tenant"], created["kind"]) == (
        "4711",
        "1001",
        "acme",
        "customer_invoice",
    )
    formula = next(r for r in by if r["job_id"] == "j2" and r["status"] == "failed")
    assert formula["external_id"] == '\'=HYPERLINK("x")' and formula["error"] == "'-rejected by the ERP"


def test_history_table_and_filters_from_the_command_line(archive: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "history", "--tenant", "beta", "--status", "failed")
    assert code == 0 and err == "" and "1 outcome(s)" in out and "j2" in out and "ORD-1" not in out
    code, out, _ = run(capsys, "history", "--key", "4711", "--kind", "customer_invoice", "--json")
    assert [(r["job_id"], r["status"]) for r in json.loads(out)] == [("j3", "duplicate"), ("j1", "created")]
    code, out, _ = run(capsys, "history", "--job", "j1", "--json")
    assert [(r["position"], r["status"]) for r in json.loads(out)] == [(0, "created"), (1, "created"), (0, "failed")]
    code, out, _ = run(capsys, "history", "--since", "1h", "--json")
    assert [r["external_id"] for r in json.loads(out)] == ["INV-9"]
    code, out, _ = run(capsys, "history", "--since", "2026-11-21", "--until", "2026-11-23T00:00Z", "--json")
    assert [r["job_id"] for r in json.loads(out)] == ["j2", "j2"]
    code, out, err = run(capsys, "history", "--limit", "2", "--json")
    assert code == 0 and len(json.loads(out)) == 2 and "showing the newest 2 only" in err


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--until", "yesterday"], "--until 'yesterday'"),
        (["--since", "soon"], "--since 'soon'"),
        (["--since", "1d", "--until", "2d"], "is not before"),
        (["--limit", "0"], "--limit 0"),
    ],
)
def test_history_bad_option_values_are_one_line(
    archive: Engine, capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    assert says in one_line_error(*run(capsys, "history", *argv))


def test_history_with_the_archive_off_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    err = one_line_error(*run(capsys, "history", "--tenant", "acme"))
    assert "the archive is off" in err and "ERPSYNC_ARCHIVE_URL" in err


def test_history_of_an_archive_not_reachable_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ERPSYNC_ARCHIVE_URL", "postgresql://erpsync:hunter2@127.0.0.1:9/archive?connect_timeout=2")
    get_settings.cache_clear()
    err = one_line_error(*run(capsys, "history", "--csv"))
    assert "cannot reach the archive" in err and "hunter2" not in err


def test_an_archive_of_an_unknown_schema_revision_is_one_line(
    tmp_path: Any, r: fakeredis.FakeRedis, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An SQLite file written by newer code: neither history nor the results fallback show a traceback."""
    path = tmp_path / "newer.sqlite3"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)")
        connection.execute("INSERT INTO alembic_version VALUES ('9999')")
    monkeypatch.setenv("ERPSYNC_ARCHIVE_URL", f"sqlite:///{path}")
    get_settings.cache_clear()
    assert "9999" in one_line_error(*run(capsys, "history"))
    assert "9999" in one_line_error(*run(capsys, "results", "gone"))


def test_history_without_an_sqlite_file_lists_nothing_and_creates_none(
    tmp_path: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ERPSYNC_ARCHIVE_URL", f"sqlite:///{tmp_path}/none.sqlite3")
    get_settings.cache_clear()
    code, out, err = run(capsys, "history", "--json")
    assert (code, json.loads(out)) == (0, []) and "nothing archived" in err
    assert not (tmp_path / "none.sqlite3").exists()


# ----- erpsync results after Redis's retention


def test_results_fall_back_to_the_archive_once_redis_has_expired_the_job(
    archive: Engine, r: fakeredis.FakeRedis, capsys: pytest.CaptureFixture[str]
) -> None:
    store = ResultsStore(r, get_settings())
    store.create_job(
        {"job_id": "j1", "tenant": "acme", "target": "softone", "kind": "customer_invoice", "source": "t"},
        ["{}", "{}"],
        ["INV-1", "INV-2"],
    )
    code, out, _ = run(capsys, "results", "j1", "--json")
    live = json.loads(out)
    assert "source" not in live and [rec["status"] for rec in live["records"]] == ["pending", "pending"]

    r.flushall()  # the retention has passed
    code, out, err = run(capsys, "results", "j1", "--json")
    assert code == 0 and err == ""
    payload = json.loads(out)
    assert set(payload) == {"job_id", "status", "lane", "records", "source", "source_error"}
    assert payload["source_error"] is None  # its source was read whole
    assert (payload["job_id"], payload["status"], payload["lane"], payload["source"]) == (
        "j1",
        "succeeded",
        "interactive",
        "archive",
    )
    assert payload["records"] == [
        {"external_id": "INV-1", "status": "created", "key": 4711, "number": "1001", "error": None, "errors": []},
        {"external_id": "INV-2", "status": "created", "key": 4712, "number": "1002", "error": None, "errors": []},
    ]
    code, out, _ = run(capsys, "results", "j2")  # partial: not every document created
    assert code == 1 and "from the archive" in out and "ORD-1" in out

    err = one_line_error(*run(capsys, "results", "nope"))
    assert "no job 'nope' in the results store or the archive" in err


def test_results_with_the_archive_off_say_so(r: fakeredis.FakeRedis, capsys: pytest.CaptureFixture[str]) -> None:
    err = one_line_error(*run(capsys, "results", "gone", "--json"))
    assert "no job 'gone' in the results store (the archive is off)" in err


# ----- PostgreSQL, when one answers


@pytest.fixture
def postgres(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh database on the PostgreSQL at 127.0.0.1:5432 (user postgres, trust), dropped afterwards."""
    import psycopg

    try:
        admin = psycopg.connect(
            "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3", autocommit=True
        )
    except psycopg.OperationalError as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and no PostgreSQL at 127.0.0.1:5432: {exc}")
        pytest.skip(f"no PostgreSQL at 127.0.0.1:5432 ({str(exc).strip().splitlines()[0]})")
    name = f"erpsync_hist_{uuid.uuid4().hex[:12]}"
    url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            monkeypatch.setenv("ERPSYNC_ARCHIVE_URL", url)
            get_settings.cache_clear()
            yield url
        finally:
            engine_for(url).dispose()
            engine_for.cache_clear()
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_history_queries_on_postgresql(postgres: str, capsys: pytest.CaptureFixture[str]) -> None:
    err = one_line_error(*run(capsys, "history"))  # not migrated yet: PostgreSQL is migrated by the operator
    assert "schema revision none" in err and "erpsync archive migrate" in err
    migrate(get_settings())
    engine = ready_engine(get_settings())
    fill(engine)
    fill(engine)  # written twice (an archiver killed after its commit): the same rows
    check_queries(engine)
    code, out, _ = run(capsys, "history", "--since", "2026-11-21", "--until", "2026-11-23", "--csv")
    assert code == 0 and len(list(csv.reader(io.StringIO(out)))) == 3


def test_time_is_what_the_outbox_says() -> None:
    """The fixture's entries are timed by their ids, as the archiver's are (Redis's clock)."""
    assert ENTRIES[0].ms == int(T0.timestamp() * 1000) and ENTRIES[-1].ms == int(RECENT.timestamp() * 1000)
