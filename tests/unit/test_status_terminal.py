"""`erpsync status` drawn at 80x24 (worker/cli/screen.py) from overviews read off fakeredis: a realistic one and a
worst case (many tenants with long names, long job ids, huge counts, many failures with long reasons, every stall
reason). Nothing wraps (every line fits 80 cells and each table row is one line), at most 24 lines, and in each
table every column is at least as wide as its header, which shows whole."""

from __future__ import annotations

import json
import time
from typing import Any

import fakeredis
import pytest
from rich.cells import cell_len
from rich.console import Console, Group
from rich.table import Table

from worker.cli import screen
from worker.ops import overview
from worker.settings import Settings
from worker.store.counters import THROUGHPUT_BUCKET_SECONDS, throughput
from worker.store.records import CREATED, FAILED, UNKNOWN, Record
from worker.store.results import ResultsStore
from worker.store.tenants import PausedBy, TenantControls

WIDTH, HEIGHT = 80, 24


@pytest.fixture
def settings() -> Settings:
    return Settings(key_prefix="st", queue="stq", stall_seconds=120, demo_tenant=False)


@pytest.fixture
def r() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(decode_responses=True)


@pytest.fixture
def store(r: fakeredis.FakeRedis, settings: Settings) -> ResultsStore:
    return ResultsStore(r, settings)


def job(store: ResultsStore, job_id: str, tenant: str, n: int, *, kind: str = "customer_invoice") -> None:
    store.create_job({"job_id": job_id, "tenant": tenant, "target": "softone", "kind": kind, "source": "t"},
                     ["{}"] * n, [f"{job_id}-{i}" for i in range(n)])  # fmt: skip


def settle(store: ResultsStore, job_id: str, positions: range, status: str = CREATED, error: str | None = None) -> None:
    store.set_records([(job_id, p, Record(f"{job_id}-{p}", status, key=None if error else 1000 + p, error=error))
                       for p in positions])  # fmt: skip


def draw(data: dict[str, Any]) -> tuple[list[str], Group]:
    console = Console(width=WIDTH, height=HEIGHT, record=True, color_system=None, legacy_windows=False)
    rendered = screen.render_overview(data, WIDTH, HEIGHT)
    console.print(rendered)
    return console.export_text().splitlines(), rendered


def check_screen(data: dict[str, Any]) -> list[str]:
    """The screen's lines, after checking them: at most 24, none wider than 80, and each table as drawn alone
    has one line per row (no wrap) and a header line that holds every header whole in its column."""
    lines, rendered = draw(data)
    assert len(lines) <= HEIGHT, "\n".join(lines)
    assert all(cell_len(line) <= WIDTH for line in lines), "\n".join(lines)
    tables = [part for part in rendered.renderables if isinstance(part, Table)]
    assert tables, "\n".join(lines)
    for table in tables:
        console = Console(width=WIDTH, record=True, color_system=None)
        console.print(table)
        drawn = console.export_text().splitlines()
        assert len(drawn) == 1 + table.row_count, "\n".join(drawn)  # the header, then one line per row
        header, start = drawn[0], 0
        for column in table.columns:
            width = column.width
            assert width is not None and width >= cell_len(str(column.header)), column.header
            assert header[start : start + width].strip() == column.header, (column.header, header)
            for row in drawn[1:]:
                assert cell_len(row[start : start + width].strip()) <= width
            start += width + 1
    return lines


def test_a_realistic_status_fits_80x24(r: fakeredis.FakeRedis, settings: Settings, store: ResultsStore) -> None:
    job(store, "20261207T142204-0a1b2c3d4e", "acme", 2501)
    settle(store, "20261207T142204-0a1b2c3d4e", range(1500))
    job(store, "20261207T142301-5f6a7b8c9d", "nordic-foods", 40, kind="order")
    settle(store, "20261207T142301-5f6a7b8c9d", range(3), FAILED, "CustomerNr: no such customer (4711)")
    settle(store, "20261207T142301-5f6a7b8c9d", range(3, 4), UNKNOWN, "no answer after 3 attempts")
    job(store, "20261207T142355-aa11bb22cc", "bistro", 1, kind="offer")
    TenantControls(r, settings.key_prefix).pause("bistro", "Fortnox refused the refresh token", by=PausedBy.AUTH)
    data = overview.overview(r, settings, with_workers=False)
    lines = check_screen(data)
    text = "\n".join(lines)
    assert "20261207T142204-0a1b2c3d4e" in text  # ids whole: they are pasted into `erpsync status JOB_ID`
    tenants = {t["tenant"]: t for t in data["tenant_status"]}
    assert tenants["acme"]["backlog"] == 1001 and tenants["acme"]["rate"] > 0 and tenants["acme"]["eta_seconds"]
    assert tenants["bistro"]["stall"] == "paused" and "refused" in tenants["bistro"]["stall_detail"]
    assert any(line.startswith("bistro") and "paused (auth): Fortnox refused" in line for line in lines), text
    assert any("invoice" in line and "1500/2501" in line for line in lines), text
    assert "failures, last hour: 4 of 4" in text and "no such customer" in text
    json.dumps(data)  # --json has it all


def test_the_worst_case_still_fits_80x24(r: fakeredis.FakeRedis, settings: Settings, store: ResultsStore) -> None:
    long = "a-tenant-with-a-remarkably-long-name-from-the-tenants-file-{}"
    for i in range(40):
        job_id = f"nightly-export-of-{i:03d}-with-an-id-chosen-by-the-producer-itself-0123456789"
        job(store, job_id, long.format(i), 3)
        settle(store, job_id, range(2), FAILED, "Rows[0].Article: " + "the ERP explains at length why not " * 8)
    job(store, "huge", "big", 1)
    r.hset("st:job:huge", mapping={"total": 12_345_678, "n_pending": 12_000_000})
    for i in range(30):
        dead = {"id": f"{'x' * 70}#{i}", "job_id": "x", "position": i, "external_id": "E" * 90,
                "tenant": long.format(i),
                "kind": "customer_invoice", "status": "failed", "reason": "why " * 60, "document": {}}  # fmt: skip
        store.complete_batch(f"dead-{i}", "rejected", [], dead=[dead])
    r.lpush("st:rejected", json.dumps({"at": "2026-12-07T14:00:00Z", "job_id": "j" * 80, "reason": "not JSON " * 20}))
    data = overview.overview(r, settings, with_workers=False)
    data["workers_error"] = "Error 111 connecting to the broker: Connection refused " * 3
    now = time.time()
    waiting = [
        {"tenant": long.format(i), "intake_documents": {"interactive": 10**6, "bulk": 10**7}, "buffered_documents": 5,
         "queued_documents": {"interactive": 0, "bulk": 123_456}, "waiting_for": reason, "waiting_seconds": 12345.6,
         "holder": {"batch_id": "b" * 60, "sender": "host-" + "h" * 60}, "delayed_batches": 3,
         "oldest_ready_seconds": 99999.0}
        for i, reason in enumerate(["pause", "rate", "slot", "outage", "reconcile", "retry", "lease", "paused"] * 5)
    ]  # fmt: skip
    data["tenant_status"] = overview.tenant_status(
        waiting, data["open_jobs"], throughput(r, settings.key_prefix, now), overview.tenant_states(r, settings)
    )
    data["archive"] = {"enabled": True, "index": "lost", "reason": "Redis lost its data " * 10}
    data["webhooks"]["events_waiting"] = 10**9
    lines = check_screen(data)
    text = "\n".join(lines)
    assert "tenants with work:" in text and "of 41" in text  # elided, and saying so
    assert "open jobs:" in text and "of 41" in text
    assert "failures, last hour:" in text and "of 80" in text
    assert "big" in text and "12.0M" in text  # the largest backlog first; a huge count stays in its column
    assert "DUPLICATE INDEX LOST" in text and "NONE answering" in text


def test_a_screen_with_nothing_to_show_is_a_few_lines(r: fakeredis.FakeRedis, settings: Settings) -> None:
    lines, _ = draw(overview.overview(r, settings, with_workers=False))
    assert "tenants: no work waiting" in lines and "open jobs: none" in lines
    assert "failures, last hour: none" in lines and len(lines) <= 8


def test_old_failures_are_counted_not_shown(r: fakeredis.FakeRedis, settings: Settings, store: ResultsStore) -> None:
    job(store, "old", "acme", 3)
    settle(store, "old", range(3), FAILED, "rejected long ago")
    two_hours_ago = overview.iso(time.time() - 7200)
    r.hset("st:job:old", "updated_at", two_hours_ago)
    for p in range(3):
        record = json.loads(r.hget("st:job:old:records", str(p)))  # type: ignore[arg-type]
        r.hset("st:job:old:records", str(p), json.dumps({**record, "updated_at": two_hours_ago}))
    job(store, "new", "acme", 1)
    settle(store, "new", range(1), FAILED, "rejected just now")
    data = overview.overview(r, settings, with_workers=False)
    assert data["failures"]["last_hour"] == 1 and data["failures"]["older"] == 3
    text = "\n".join(draw(data)[0])
    assert "rejected just now" in text and "rejected long ago" not in text
    assert "failures, last hour: 1 of 1 (3 older, not shown)" in text


def test_rates_come_from_the_last_minute_of_settled_documents(
    r: fakeredis.FakeRedis, settings: Settings, store: ResultsStore
) -> None:
    job(store, "j", "acme", 100)
    settle(store, "j", range(60))
    rates = throughput(r, settings.key_prefix, time.time())
    assert rates.tenants["acme"] == rates.jobs["j"] and 60 / 20 <= rates.jobs["j"] <= 60 / 10
    later = time.time() + 10 * THROUGHPUT_BUCKET_SECONDS  # past the window: nothing settled in the last minute
    assert throughput(r, settings.key_prefix, later).tenants == {}
    data = overview.overview(r, settings, with_workers=False)
    entry = data["open_jobs"][0]
    assert entry["rate"] == rates.jobs["j"] and entry["eta_seconds"] == pytest.approx(40 / entry["rate"], rel=0.01)


def test_a_paused_tenant_without_backlog_and_an_idle_one_are_told_apart(
    r: fakeredis.FakeRedis, settings: Settings
) -> None:
    TenantControls(r, settings.key_prefix).pause("quiet", "maintenance window")
    states = overview.tenant_states(r, settings, ["quiet", "idle"])
    rows = overview.tenant_status([], [], throughput(r, "st", time.time()), states)
    by_name = {row["tenant"]: row for row in rows}
    assert by_name["quiet"]["stall"] == "paused" and by_name["quiet"]["stall_detail"] == "maintenance window"
    assert by_name["quiet"]["paused_by"] == "operator"
    assert by_name["idle"]["stall"] is None and by_name["idle"]["state"] == "active"
    assert [row["tenant"] for row in rows] == ["quiet", "idle"]


@pytest.mark.parametrize(
    ("cols", "rows", "width", "expected"),
    [
        ([screen.Col("tenant", shrink=True), screen.Col("n")], [["a" * 30, "1"]], 12, [10, 1]),
        ([screen.Col("tenant", shrink=True), screen.Col("n")], [["a" * 30, "1"]], 7, None),  # below its header
        ([screen.Col("job", last_resort=True), screen.Col("n")], [["j" * 30, "12345"]], 20, [14, 5]),
    ],
)
def test_columns_shrink_to_fit_but_never_below_their_header(
    cols: list[screen.Col], rows: list[list[str]], width: int, expected: list[int] | None
) -> None:
    assert screen.widths(cols, rows, width) == expected
