"""The archive on real processes: every outcome reaches the database exactly once through a SIGKILLed archiver and a
database that goes away for a while (PostgreSQL and SQLite), and a Redis that loses its data (FLUSHALL) stops
intake until the duplicate index is restored from the archive, after which a re-submitted file is all `duplicate`.

PostgreSQL: the server on 127.0.0.1:5432 (a database of its own per run, dropped after); skipped when none answers,
except under CI=true, where that is a failure. The archiver reaches it through a TCP gate the test can close.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from tests.faults import FAST_SETTINGS, ErpGate, FaultStack, invoice, poll

pytestmark = [pytest.mark.integration]

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
#: Production-sized batches (the loss test's 5,000 invoices), small archive batches (many commits to kill between).
ARCHIVE_SETTINGS = {
    **FAST_SETTINGS,
    "ERPSYNC_BATCH_MAX_DOCS": "50",
    "ERPSYNC_INTAKE_CHUNK_DOCS": "1000",
    "ERPSYNC_ARCHIVE_BATCH_EVENTS": "100",
}


def _pg_answers() -> bool:
    try:
        with create_engine(PG_ADMIN).connect() as connection:
            connection.execute(text("SELECT 1"))
        return True
    except Exception:
        return False


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str]:
    """A fresh database on the local PostgreSQL; its name."""
    if not _pg_answers():
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true and no PostgreSQL answers at 127.0.0.1:5432")
        pytest.skip("no PostgreSQL at 127.0.0.1:5432")
    with _database(f"erpsync_it_{uuid.uuid4().hex[:10]}") as name:
        yield name


@contextlib.contextmanager
def _database(name: str) -> Iterator[str]:
    """CREATE DATABASE `name`, dropped on the way out."""
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield name
    finally:
        with admin.connect() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


class Deployment:
    """A fault stack (own Redis, sandbox, worker) with an archive and its archiver; `gate` in front of PostgreSQL."""

    def __init__(self, faults: FaultStack, url: str, gate: ErpGate | None) -> None:
        self.faults, self.url, self.gate = faults, url, gate
        self.archiver: subprocess.Popen[bytes] | None = None

    def start_archiver(self) -> None:
        self.archiver = self.faults.stack.start_archiver()

    def kill_archiver(self) -> None:
        assert self.archiver is not None
        self.faults.kill_worker(self.archiver)  # SIGKILL of its process group: a crash

    def erpsync(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.faults.stack.erpsync(*args)

    def state(self) -> dict[str, Any]:
        done = self.erpsync("archive", "status", "--json")
        assert done.stdout.strip(), done.stderr
        return dict(json.loads(done.stdout))

    def wait_archived(self, timeout: float = 60) -> None:
        poll(lambda: self.state()["lag"] == 0, timeout, "archive lag 0")

    def rows(self, sql: str, **params: Any) -> list[Any]:
        url = self.url.replace(f"127.0.0.1:{self.gate.port}", "127.0.0.1:5432") if self.gate else self.url
        engine = create_engine(url)
        try:
            with engine.connect() as connection:
                return list(connection.execute(text(sql), params))
        finally:
            engine.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def deployment(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    workdir = tmp_path_factory.mktemp(f"archive-{request.param}")
    gate = None
    if request.param == "postgresql":
        database = request.getfixturevalue("pg_database")
        gate = ErpGate(lambda: 5432)
        gate.open()
        url = f"postgresql+psycopg://postgres@127.0.0.1:{gate.port}/{database}"
    else:
        url = f"sqlite:///{workdir / 'archive.sqlite3'}"
    faults = FaultStack(workdir, settings={**ARCHIVE_SETTINGS, "ERPSYNC_ARCHIVE_URL": url}, concurrency=4).start()
    deployment = Deployment(faults, url, gate)
    try:
        migrated = deployment.erpsync("archive", "migrate")
        assert migrated.returncode == 0, migrated.stderr
        faults.start_worker()
        deployment.start_archiver()
        yield deployment
    finally:
        for proc in faults.stack.archivers:
            faults.kill_worker(proc)
        faults.stop()
        if gate is not None:
            gate.close()


def _documents(tag: str, count: int, base: int, poison_every: int = 0) -> list[dict[str, Any]]:
    docs = [invoice(f"{tag}-{i:05d}", base + i, rows=1 + i % 3) for i in range(count)]
    for i in range(poison_every, count, poison_every) if poison_every else ():
        docs[i]["CustomerNr"] = f"UNKNOWN-{i}"  # the ERP refuses it: failed with its message
    return docs


def _database_away(deployment: Deployment, seconds: float) -> None:
    """PostgreSQL: the gate refuses connections and cuts the open ones. SQLite: another process holds the file's
    write lock (the archiver's transactions wait, then fail and are retried)."""
    if deployment.gate is not None:
        deployment.gate.close()
        time.sleep(seconds)
        deployment.gate.open()
        return
    path = deployment.url.removeprefix("sqlite:///")
    connection = sqlite3.connect(path, timeout=30, isolation_level=None)
    connection.execute("BEGIN EXCLUSIVE")
    time.sleep(seconds)
    connection.execute("ROLLBACK")
    connection.close()


@pytest.mark.timeout(400)
def test_every_outcome_reaches_the_archive_once_through_a_killed_archiver_and_a_database_away(
    deployment: Deployment,
) -> None:
    """2,000 invoices (1 in 50 refused by the ERP) with every fault kind; mid-run the archiver is SIGKILLed, the
    database goes away for 4 s, and the archiver comes back. Afterwards the archive holds, for every document, its
    outcome as Redis does (latest row = record, Key and all), each created document once, the job's summary, and
    every created document's index entry; nothing is left in the outbox."""
    faults = deployment.faults
    tag = f"arc-{uuid.uuid4().hex[:6]}"
    base = 40_000_000 + (hash(tag) % 1000) * 10_000
    with faults.sandbox() as erp:
        erp.post("/_sandbox/faults", json={"drop_after_commit": 0.03, "500_after_commit": 0.03, "503": 0.03})
        try:
            jobs = faults.submit([_documents(f"{tag}-{j}", 500, base + j * 1000, poison_every=50) for j in range(4)])
            poll(lambda: int(deployment.state().get("committed_at") or 0) > 0, 60, "first archive commit")
            time.sleep(0.3)
            deployment.kill_archiver()
            away = threading.Thread(target=_database_away, args=(deployment, 4.0))
            away.start()
            time.sleep(1.0)
            deployment.start_archiver()  # while the database is still away: it waits and retries
            away.join()
            faults.wait_jobs(jobs, timeout=300)
        finally:
            erp.delete("/_sandbox/faults")
    deployment.wait_archived()
    faults.audit(jobs).assert_clean(unknown=True)

    store = faults.store()
    for job_id in jobs:
        records = store.records(job_id)
        rows = deployment.rows(
            "SELECT position, status, erp_key, event_id FROM erpsync_outcomes WHERE job_id = :job ORDER BY event_id",
            job=job_id,
        )
        latest: dict[int, tuple[str, str | None]] = {}
        created = Counter()
        for position, status, erp_key, _ in rows:
            latest[position] = (status, erp_key)
            created[position] += status == "created"
        assert len(latest) == len(records), f"{job_id}: {len(latest)} of {len(records)} documents archived"
        for position, record in enumerate(records):
            key = None if record.key is None else str(record.key)
            assert latest[position] == (record.status, key), (job_id, position, latest[position], record)
        assert max(created.values()) == 1, "a document archived as created twice"
        job = store.job(job_id)
        assert job is not None
        (archived_job,) = deployment.rows("SELECT status, total, counts FROM erpsync_jobs WHERE job_id = :j", j=job_id)
        counts = archived_job[2] if isinstance(archived_job[2], dict) else json.loads(archived_job[2])
        assert (archived_job[0], archived_job[1]) == (job["status"], int(job["total"]))
        assert counts["created"] == int(job["n_created"]) and counts["failed"] == int(job["n_failed"])
    (indexed,) = deployment.rows("SELECT count(*) FROM erpsync_index WHERE external_id LIKE :tag", tag=f"{tag}-%")
    assert indexed[0] == sum(1 for j in jobs for r in store.records(j) if r.status == "created")
    log = "".join(p.read_text(errors="replace") for p in Path(faults.workdir).glob("archiver-*.log"))
    if deployment.gate is not None:  # SQLite's writer waits for the lock (30 s busy timeout) rather than fails
        assert "archiving waits" in log, "the database was never found away: the test did not test it"
    print(f"\n{deployment.url.split(':')[0]}: {sum(len(store.records(j)) for j in jobs)} documents archived; "
          f"{log.count('archiving waits')} waits while the database was away")  # fmt: skip


@pytest.mark.timeout(600)
def test_redis_that_loses_its_data_sends_nothing_until_the_index_is_restored(deployment: Deployment) -> None:
    """5,000 invoices created and archived; Redis FLUSHALL; the same file again: the worker claims nothing and the
    ERP gets nothing while the index is lost; `erpsync archive restore-index`; then every document is `duplicate`
    with its first Key and the sandbox ledger is unchanged."""
    if deployment.gate is None:
        pytest.skip("run once, on PostgreSQL (the production archive)")
    faults = deployment.faults
    tag = f"loss-{uuid.uuid4().hex[:6]}"
    docs = _documents(tag, 5000, 60_000_000 + (hash(tag) % 1000) * 10_000)
    (first,) = faults.submit([docs])
    faults.wait_jobs([first], timeout=400)
    faults.audit([first]).assert_clean()
    keys = {r.external_id: r.key for r in faults.store().records(first)}
    deployment.wait_archived()
    with faults.sandbox() as erp:
        ledger = len(erp.get("/_sandbox/ledger").json()["documents"])

    faults.redis().flushall()
    poll(lambda: deployment.state()["index"] == "lost", 30, "the index found lost")
    (again,) = faults.submit([docs])
    time.sleep(6)
    store = faults.store()
    job = store.job(again) or {}
    assert int(job.get("n_pending", 0)) == 5000, job
    with faults.sandbox() as erp:
        assert len(erp.get("/_sandbox/ledger").json()["documents"]) == ledger
    shown = deployment.erpsync("status", "--json")
    assert "restore-index" in shown.stdout, shown.stdout[-2000:]

    restored = deployment.erpsync("archive", "restore-index")
    assert restored.returncode == 0, restored.stderr
    faults.wait_jobs([again], timeout=120)
    records = store.records(again)
    assert Counter(r.status for r in records) == {"duplicate": 5000}, [
        (r.external_id, r.status, r.error) for r in records if r.status != "duplicate"
    ][:5]
    assert {r.external_id: r.key for r in records} == keys
    with faults.sandbox() as erp:
        assert len(erp.get("/_sandbox/ledger").json()["documents"]) == ledger
    print(f"\nloss test: {restored.stdout.strip()}")


@pytest.fixture
def empty_pg_database(pg_database: str) -> Iterator[str]:
    """A database of the test's own (the module's is shared with the deployment's archive)."""
    with _database(f"{pg_database}_{uuid.uuid4().hex[:6]}") as name:
        yield name


def test_retention_drops_whole_months_on_postgresql(empty_pg_database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Monthly partitions: an expired month is dropped as a table, the default partition and the other tables are
    pruned by date, and what is younger than the retention stays."""
    from datetime import UTC, datetime

    from worker.archive.database import engine_for, migrate
    from worker.archive.retention import ensure_partitions, prune
    from worker.settings import Settings

    monkeypatch.setenv("ERPSYNC_ARCHIVE_URL", f"postgresql+psycopg://postgres@127.0.0.1:5432/{empty_pg_database}")
    settings = Settings(archive_retention_days=365)
    migrate(settings)
    engine = engine_for(settings.archive_url)
    now = datetime(2026, 12, 7, tzinfo=UTC)
    assert "erpsync_outcomes_202501" in ensure_partitions(engine, now=datetime(2025, 1, 15, tzinfo=UTC))
    ensure_partitions(engine, now=now)
    row = "INSERT INTO erpsync_outcomes (event_id, recorded_at, job_id, position, tenant, target, kind, external_id, "
    row += "status) VALUES (:e, :at, 'j', 0, 't', 'softone', 'customer_invoice', :x, 'created')"
    with engine.begin() as connection:
        for event, at, xid in [("a", "2025-01-20", "old"), ("b", "2026-12-01", "new"), ("c", "2019-03-01", "default")]:
            connection.execute(text(row), {"e": event, "at": at, "x": xid})
    pruned = prune(engine, settings, now=now)
    assert pruned["partitions"] >= 1 and pruned["outcomes"] == 1  # the month 2025-01 dropped; 2019 by date
    with engine.connect() as connection:
        left = {r[0] for r in connection.execute(text("SELECT external_id FROM erpsync_outcomes"))}
        tables = set(
            connection.execute(
                text("SELECT tablename FROM pg_tables WHERE tablename LIKE 'erpsync_outcomes_%'")
            ).scalars()
        )
    assert left == {"new"}
    assert "erpsync_outcomes_202501" not in tables and "erpsync_outcomes_202612" in tables
    engine.dispose()


def test_a_worker_refuses_to_start_on_an_unmigrated_postgresql_archive(
    empty_pg_database: str, tmp_path: Path, redis_url: str
) -> None:
    """The schema is checked at worker start: on PostgreSQL the operator migrates; the worker says so and exits."""
    from worker.devstack.stack import LocalStack

    name = f"unmigrated-{uuid.uuid4().hex[:6]}"
    stack = LocalStack(workdir=tmp_path, redis_url=redis_url, extra_env={
        "ERPSYNC_ARCHIVE_URL": f"postgresql+psycopg://postgres@127.0.0.1:5432/{empty_pg_database}",
        "ERPSYNC_QUEUE": name, "ERPSYNC_KEY_PREFIX": name,
    })  # fmt: skip
    try:
        with pytest.raises(RuntimeError, match="exited"):
            stack.start_worker(queues="intake")
        log = (tmp_path / "worker-w1.log").read_text(errors="replace")
        assert "erpsync archive migrate" in log, log[-2000:]
    finally:
        stack.stop()


def test_postgresql_writes_a_batch_read_again_once_and_keeps_the_newer_summary(
    empty_pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The COPY path meets rows already there (an archiver killed between its commit and its acknowledgement, an
    index entry rewritten): it falls back to ON CONFLICT, so nothing is doubled and nothing older wins."""
    from worker.archive.database import engine_for, migrate
    from worker.archive.events import rows_of
    from worker.archive.writer import write
    from worker.settings import Settings
    from worker.store.outbox import Entry

    monkeypatch.setenv("ERPSYNC_ARCHIVE_URL", f"postgresql+psycopg://postgres@127.0.0.1:5432/{empty_pg_database}")
    settings = Settings()
    migrate(settings)
    engine = engine_for(settings.archive_url)
    ms = int(time.time() * 1000)
    record = {"external_id": "X", "status": "created", "key": 5, "errors": [{"field": "a", "reason": "b"}]}
    outcome = Entry(f"{ms}-1", {"e": "docs", "j": "J", "t": "t", "g": "softone", "k": "customer_invoice",
                                "d": json.dumps([{"p": 0, "s": "created", "r": record}])})  # fmt: skip

    def job(seq: int, status: str) -> Entry:
        summary = {"tenant": "t", "kind": "customer_invoice", "status": status, "total": "1", "n_created": "1"}
        return Entry(f"{ms}-{seq}", {"e": "job", "j": "J", "at": "2026-12-07T00:00:00Z", "d": json.dumps(summary)})

    def index(seq: int, value: str) -> Entry:
        return Entry(f"{ms}-{seq}", {"e": "idxs", "d": json.dumps([["t", "customer_invoice", "X", value]])})

    write(engine, rows_of([outcome, job(3, "succeeded"), index(5, "created|J#0|5|1|fp")], "p"))
    write(engine, rows_of([outcome, job(2, "running"), index(4, "created|OLD#0|4|1|fp")], "p"))  # read again
    with engine.connect() as connection:
        (errors,) = connection.execute(text("SELECT errors FROM erpsync_outcomes")).all()
        assert errors[0] == [{"field": "a", "reason": "b"}]
        assert connection.execute(text("SELECT status FROM erpsync_jobs")).scalar() == "succeeded"
        assert connection.execute(text("SELECT value FROM erpsync_index")).scalar() == "created|J#0|5|1|fp"
    write(engine, rows_of([job(9, "partial"), index(8, "created|J2#0|7|2|fp2")], "p"))  # newer: they win
    with engine.connect() as connection:
        assert connection.execute(text("SELECT status FROM erpsync_jobs")).scalar() == "partial"
        assert connection.execute(text("SELECT erp_key FROM erpsync_index")).scalar() == 7
    engine.dispose()
