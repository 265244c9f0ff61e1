"""The archive (worker/archive/, worker/store/outbox.py) on fakeredis (with Lua) and an SQLite file per test: the
store's scripts append every outcome, index entry, dead letter and final job to the outbox stream; rows_of and
write turn them into rows exactly once; the index guard, its restore, the archiver's loop and the retention."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import fakeredis
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import Engine, Table, func, select
from sqlalchemy.exc import OperationalError

import worker.archive.archiver as archiver_module
import worker.archive.restore as restore_module
from worker.archive import schema
from worker.archive.archiver import Archiver
from worker.archive.database import ready_engine
from worker.archive.events import rows_of
from worker.archive.guard import IndexState, check_index
from worker.archive.restore import restore_index
from worker.archive.retention import prune
from worker.archive.writer import write
from worker.errors import ArchiveError, IndexLost
from worker.settings import Settings
from worker.store.outbox import ARCHIVER_GROUP, Entry, Outbox
from worker.store.records import DOC_STATUSES, BatchOutcome, ClaimRef, ClaimState, CreatedClaim, DocStatus, Record
from worker.store.results import ResultsStore

PREFIX = "arc"
KIND = "customer_invoice"
STREAM = f"{PREFIX}:archive"
DEDUP_TTL = 30 * 24 * 3600
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
_seq = itertools.count()


def make_settings(archive_url: str = "off", **overrides: Any) -> Settings:
    fields: dict[str, Any] = {"key_prefix": PREFIX, "dedup_ttl_seconds": DEDUP_TTL, "demo_tenant": False}
    return Settings(**fields, archive_url=archive_url, **overrides)


@pytest.fixture
def r() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/a.sqlite3"


@pytest.fixture
def on(url: str) -> Settings:
    """The archive on, with an SQLite file of this test's (tests/unit/conftest.py turns it off by default)."""
    return make_settings(url)


@pytest.fixture
def engine(on: Settings) -> Iterator[Engine]:
    engine = ready_engine(on)  # an SQLite file is migrated on first use
    yield engine
    engine.dispose()


# ----- helpers: outbox entries as the scripts write them, the stream, the tables


def entry(fields: dict[str, str], at: datetime = T0) -> Entry:
    return Entry(f"{int(at.timestamp() * 1000)}-{next(_seq)}", fields)


def docs(job_id: str, *items: Any) -> dict[str, str]:
    """A `docs` entry of job_id: items are {"p": position, "s": status, "r": record} (or anything malformed)."""
    return {"e": "docs", "j": job_id, "t": "acme", "g": "softone", "k": KIND, "d": json.dumps(list(items))}


def doc(job_id: str, position: int, status: str, xid: str, **record: Any) -> dict[str, str]:
    return docs(job_id, {"p": position, "s": status, "r": {"external_id": xid, "status": status, **record}})


def idx(xid: str, value: str) -> dict[str, str]:
    return {"e": "idxs", "d": json.dumps([["acme", KIND, xid, value]])}


def dead(dead_id: str, **data: Any) -> dict[str, str]:
    return {"e": "dead", "id": dead_id, "d": json.dumps({"tenant": "acme", "kind": KIND, **data})}


def job(job_id: str, status: str, at: datetime = T0, **counters: int) -> dict[str, str]:
    data = {"job_id": job_id, "tenant": "acme", "kind": KIND, "status": status, "total": str(sum(counters.values()))}
    data |= {f"n_{name}": str(n) for name, n in counters.items()}
    return {"e": "job", "j": job_id, "at": at.isoformat(), "d": json.dumps(data)}


def stream(r: fakeredis.FakeRedis) -> list[dict[str, str]]:
    return [fields for _id, fields in cast(list[tuple[str, dict[str, str]]], r.xrange(STREAM))]


def pick(row: Mapping[str, Any], *names: str) -> tuple[Any, ...]:
    return tuple(row[name] for name in names)


def count(engine: Engine, table: Table) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table)).scalar_one())


def column(engine: Engine, table: Table, name: str) -> list[Any]:
    with engine.connect() as connection:
        return list(connection.execute(select(table.c[name])).scalars())


def add_index_row(engine: Engine, deployment: str, xid: str, value: str, at: datetime) -> None:
    write(engine, rows_of([entry(idx(xid, value), at)], deployment))


def record_everything(store: ResultsStore) -> None:
    """One of each: 2 docs entries (3 outcomes) and a final job (j1), an idxs entry (2 created), 1 dead letter (stored
    twice), a rejected job."""
    docs = [json.dumps({"ExternalId": f"j1-X{i}"}) for i in range(3)]
    meta = {"job_id": "j1", "tenant": "acme", "kind": KIND, "target": "fortnox"}
    store.create_job(meta, docs, ["j1-X0", "j1-X1", "j1-X2"])
    first = [
        Record("j1-X0", "created", key="7", number="7"),
        Record("j1-X1", "failed", error="refused"),
        Record("j1-X2"),
    ]
    store.set_records([("j1", position, record) for position, record in enumerate(first)])
    store.set_records([("j1", 2, Record("j1-X2", DocStatus.CREATED, key="8", number="8"))])
    created = [
        CreatedClaim("acme", KIND, "R-1", "j1#0", 4711, "N1", "fp"),
        CreatedClaim("acme", KIND, "R-2", "j1#1", "ABC", None),
    ]
    store.complete_batch("b1", BatchOutcome.CREATED, [], created=created)
    letter = {"id": "d1", "tenant": "acme", "kind": KIND, "external_id": "R-9", "reason": "refused",
              "document": {"ExternalId": "R-9", "Note": "BODY"}}  # fmt: skip
    for _ in range(2):  # a repeated transaction stores (and archives) it once
        store.complete_batch("b2", BatchOutcome.FAILED, [], dead=[letter])
    pipe = store.r.pipeline(transaction=True)
    store.queue_rejected_job(pipe, {"job_id": "jr", "tenant": "acme", "kind": KIND}, "no documents")
    pipe.execute()


# ----- the scripts append to the stream


def test_recording_outcomes_appends_one_entry_per_call_with_the_archive_on(
    r: fakeredis.FakeRedis, on: Settings
) -> None:
    record_everything(ResultsStore(r, on))
    entries = stream(r)
    assert [e["e"] for e in entries] == ["docs", "docs", "job", "idxs", "dead", "job"]

    # one entry per call; the pending record is not an outcome
    outcomes = json.loads(entries[0]["d"]) + json.loads(entries[1]["d"])
    assert [(o["p"], o["s"]) for o in outcomes] == [(0, "created"), (1, "failed"), (2, "created")]
    assert all(pick(e, "j", "t", "g", "k") == ("j1", "acme", "fortnox", KIND) for e in entries[:2])
    assert outcomes[0]["r"]["key"] == "7" and outcomes[1]["r"]["error"] == "refused"

    final = json.loads(entries[2]["d"])
    assert entries[2]["j"] == "j1" and entries[2]["at"]
    assert (final["status"], final["n_created"], final["n_failed"], final["n_pending"]) == ("partial", "2", "1", "0")
    assert final["tenant"] == "acme" and final["finished_at"] == entries[2]["at"]

    assert json.loads(entries[3]["d"]) == [
        ["acme", KIND, "R-1", "created|j1#0|4711|N1|fp"],
        ["acme", KIND, "R-2", "created|j1#1|~ABC||"],
    ]
    assert r.get(f"{PREFIX}:dedup:acme:{KIND}:R-1") == "created|j1#0|4711|N1|fp"  # the index value, as archived

    letter = json.loads(entries[4]["d"])
    assert entries[4]["id"] == "d1" and "document" not in letter and letter["reason"] == "refused"

    rejected = json.loads(entries[5]["d"])
    assert entries[5]["j"] == "jr" and (rejected["status"], rejected["reason"]) == ("rejected", "no documents")


def test_with_the_archive_off_nothing_is_appended(r: fakeredis.FakeRedis) -> None:
    store = ResultsStore(r, make_settings())
    record_everything(store)
    assert store.job("j1") is not None and store.dead_letter("d1") is not None  # recorded all the same
    assert r.exists(STREAM) == 0


# ----- claim_all and the epoch


def test_claim_all_raises_index_lost_without_the_epoch_and_claims_once_it_is_set(
    r: fakeredis.FakeRedis, on: Settings
) -> None:
    store, outbox = ResultsStore(r, on), Outbox(r, on)
    refs = [ClaimRef("acme", KIND, "R-1", "j1#0")]
    assert not store.index_ready()
    with pytest.raises(IndexLost):
        store.claim_all(refs)
    assert r.exists(f"{PREFIX}:dedup:acme:{KIND}:R-1") == 0  # nothing claimed

    assert outbox.start_epoch("e1") and not outbox.start_epoch("e2")  # the first one wins
    assert outbox.epoch() == "e1" and store.index_ready()
    assert [c.state for c in store.claim_all(refs)] == [ClaimState.MINE]


def test_claim_all_with_the_archive_off_never_checks_the_epoch(r: fakeredis.FakeRedis) -> None:
    store = ResultsStore(r, make_settings())
    assert store.index_ready()
    assert [c.state for c in store.claim_all([ClaimRef("acme", KIND, "R-1", "j1#0")])] == [ClaimState.MINE]
    assert r.exists(f"{PREFIX}:archive:epoch") == 0


# ----- rows_of


def test_rows_of_makes_each_kind_of_entry_its_row() -> None:
    entries = [
        entry(doc("j1", 3, "created", "R-1", key=4711, number="N1", batch_id="b1")),
        entry(idx("R-1", "created|j1#3|4711|N1|fp")),
        entry(idx("R-2", "created|j1#4|~ABC||")),
        entry(dead("d1", external_id="R-9", job_id="j1", error="refused")),
        entry(job("j1", "partial", created=1, failed=1)),
    ]
    rows = rows_of(entries, PREFIX)
    assert rows.skipped == [] and len(rows) == 5
    outcome = rows.outcomes[0]
    assert outcome["event_id"] == f"{entries[0].sort_key}.00000" and outcome["recorded_at"] == T0
    assert pick(outcome, "job_id", "position", "tenant", "target", "kind") == ("j1", 3, "acme", "softone", KIND)
    assert pick(outcome, "external_id", "status", "erp_key", "number") == ("R-1", "created", "4711", "N1")
    assert outcome["batch_id"] == "b1" and outcome["errors"] == [] and outcome["body"] is None

    first, second = rows.index[("acme", KIND, "R-1")], rows.index[("acme", KIND, "R-2")]
    assert pick(first, "deployment", "value", "erp_key") == (PREFIX, "created|j1#3|4711|N1|fp", 4711)
    assert second["erp_key"] is None  # another target's text id: not one of SoftOne's known Keys

    letter = rows.dead_letters["d1"]
    assert pick(letter, "tenant", "external_id", "job_id", "reason") == ("acme", "R-9", "j1", "refused")

    summary = rows.jobs["j1"]
    assert pick(summary, "status", "total", "finished_at") == ("partial", 2, T0)
    assert summary["counts"] == {**dict.fromkeys(map(str, DOC_STATUSES), 0), "created": 1, "failed": 1}


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"e": "docs", "j": "j1"}, id="docs-missing-fields"),
        pytest.param({**doc("j1", 0, "created", "R-1"), "d": "[{not json"}, id="docs-bad-json"),
        pytest.param(docs("j1", {"p": "first", "s": "created", "r": {}}), id="docs-bad-position"),
        pytest.param({"e": "idxs", "d": json.dumps([["acme", KIND]])}, id="idxs-short-item"),
        pytest.param({"e": "dead", "id": "d1", "d": "{"}, id="dead-bad-json"),
        pytest.param({**job("j1", "failed"), "d": json.dumps({"total": "many"})}, id="job-bad-total"),
        pytest.param({"e": "webhook", "j": "j1"}, id="unknown-kind"),
        pytest.param({"e": "dead", "id": "d1", "d": "[]"}, id="dead-json-list"),
        pytest.param(docs("j1", {"p": 0, "s": "created", "r": None}), id="docs-record-null"),
        pytest.param({**job("j1", "failed"), "d": '"done"'}, id="job-json-string"),
    ],
)
def test_rows_of_skips_a_malformed_entry_with_its_reason(fields: dict[str, str]) -> None:
    bad, good = entry(fields), entry(doc("j1", 1, "created", "R-2"))
    rows = rows_of([bad, good], PREFIX)
    assert [entry_id for entry_id, _why in rows.skipped] == [bad.id] and rows.skipped[0][1]
    assert [row["external_id"] for row in rows.outcomes] == ["R-2"]  # the rest of the batch still goes


def test_rows_of_keeps_the_newest_index_and_job_entry_of_a_batch() -> None:
    entries = [
        entry(idx("R-1", "created|j1#0|1|N1|"), T0),
        entry(job("j1", "failed", failed=1), T0),
        entry(idx("R-1", "created|j2#0|2|N2|"), T0 + timedelta(seconds=1)),
        entry(job("j1", "succeeded", created=1), T0 + timedelta(seconds=1)),
    ]
    rows = rows_of(entries, PREFIX)
    assert list(rows.index) == [("acme", KIND, "R-1")]
    newest = rows.index[("acme", KIND, "R-1")]
    assert pick(newest, "value", "erp_key", "event_id") == ("created|j2#0|2|N2|", 2, f"{entries[2].sort_key}.00000")
    assert pick(rows.jobs["j1"], "status", "event_id") == ("succeeded", f"{entries[3].sort_key}.00000")


@hsettings(max_examples=80, deadline=None, derandomize=True, database=None)
@given(
    xid=st.text(max_size=30),
    status=st.sampled_from([s for s in DocStatus if s != DocStatus.PENDING]),
    key=st.none() | st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.text(max_size=20),
    number=st.none() | st.text(max_size=10),
)
def test_rows_of_round_trips_a_records_fields(xid: str, status: str, key: int | str | None, number: str | None) -> None:
    record = Record(xid, status, key=key, number=number)
    fields = docs("j1", {"p": 0, "s": status, "r": json.loads(record.to_json())})
    rows = rows_of([entry(fields)], PREFIX)
    assert rows.skipped == []
    row = rows.outcomes[0]
    assert (row["external_id"], row["status"], row["number"]) == (xid, status, number)
    assert row["erp_key"] == (None if key is None else str(key))


# ----- writer


def test_writing_a_batch_twice_leaves_one_copy(engine: Engine) -> None:
    entries = [entry(doc("j1", 0, "created", "R-1", key=1)), entry(dead("d1", external_id="R-9"))]
    for _ in range(2):  # an archiver killed between its commit and its acknowledgement writes the batch again
        write(engine, rows_of(entries, PREFIX))
    assert (count(engine, schema.outcomes), count(engine, schema.dead_letters)) == (1, 1)


def test_job_and_index_rows_are_replaced_by_newer_entries_only(engine: Engine) -> None:
    older = [entry(job("j1", "running"), T0), entry(idx("R-1", "created|j1#0|1||"), T0)]
    newer = [entry(job("j1", "succeeded", created=1), T0 + timedelta(minutes=1)),
             entry(idx("R-1", "created|j2#0|2||"), T0 + timedelta(minutes=1))]  # fmt: skip
    write(engine, rows_of(older, PREFIX))
    write(engine, rows_of(newer, PREFIX))
    assert column(engine, schema.jobs, "status") == ["succeeded"]
    assert column(engine, schema.index, "value") == ["created|j2#0|2||"]
    write(engine, rows_of(older, PREFIX))  # read again after a crash: must not undo the newer rows
    assert column(engine, schema.jobs, "status") == ["succeeded"]
    assert column(engine, schema.index, "value") == ["created|j2#0|2||"]
    assert column(engine, schema.jobs, "event_id") == [f"{newer[0].sort_key}.00000"]


# ----- the index guard


@pytest.mark.parametrize("deployment", [None, "another"])
def test_guard_starts_the_index_of_a_deployment_the_archive_does_not_know(
    r: fakeredis.FakeRedis, on: Settings, engine: Engine, deployment: str | None
) -> None:
    if deployment:  # another deployment's rows (another key prefix) say nothing of this one
        add_index_row(engine, deployment, "R-1", "created|j1#0|1||", datetime.now(UTC))
    outbox = Outbox(r, on)
    assert check_index(outbox, engine, on) is IndexState.STARTED
    assert outbox.epoch() and "lost" not in outbox.state()
    assert check_index(outbox, engine, on) is IndexState.READY


def test_guard_says_lost_when_the_archive_knows_documents_and_the_epoch_is_gone(
    r: fakeredis.FakeRedis, on: Settings, engine: Engine
) -> None:
    add_index_row(engine, PREFIX, "R-1", "created|j1#0|1||", datetime.now(UTC))
    outbox = Outbox(r, on)
    assert check_index(outbox, engine, on) is IndexState.LOST
    assert outbox.epoch() is None and "lost" in outbox.state()
    with pytest.raises(IndexLost):
        ResultsStore(r, on).claim_all([ClaimRef("acme", KIND, "R-2", "j2#0")])
    outbox.start_epoch("e1")  # an epoch there: the index is the one the archive mirrors, whatever it holds
    assert check_index(outbox, engine, on) is IndexState.READY and outbox.epoch() == "e1"


def test_guard_restores_at_once_with_auto_restore(r: fakeredis.FakeRedis, url: str, engine: Engine) -> None:
    settings = make_settings(url, archive_auto_restore=True)
    add_index_row(engine, PREFIX, "R-1", "created|j1#0|1||", datetime.now(UTC))
    outbox = Outbox(r, settings)
    assert check_index(outbox, engine, settings) is IndexState.RESTORED
    assert r.get(f"{PREFIX}:dedup:acme:{KIND}:R-1") == "created|j1#0|1||"
    assert outbox.epoch() and "lost" not in outbox.state()


# ----- restore_index


def test_restore_index_writes_the_index_back_with_what_is_left_of_its_ttl(
    r: fakeredis.FakeRedis, on: Settings, engine: Engine
) -> None:
    now = datetime.now(UTC)
    add_index_row(engine, PREFIX, "R-1", "created|j1#0|4711|N1|", now - timedelta(hours=1))
    add_index_row(engine, PREFIX, "R-2", "created|j1#1|~ABC||", now - timedelta(hours=2))
    add_index_row(engine, PREFIX, "R-OLD", "created|j0#0|5||", now - timedelta(seconds=DEDUP_TTL + 3600))
    add_index_row(engine, "another", "R-3", "created|j9#0|6||", now)
    outbox = Outbox(r, on)
    outbox.mark_lost("lost")

    assert restore_index(outbox, engine, on) == 2
    dedup = f"{PREFIX}:dedup:acme:{KIND}"
    assert r.get(f"{dedup}:R-1") == "created|j1#0|4711|N1|" and r.get(f"{dedup}:R-2") == "created|j1#1|~ABC||"
    assert abs(r.ttl(f"{dedup}:R-1") - (DEDUP_TTL - 3600)) < 60
    assert abs(r.ttl(f"{dedup}:R-2") - (DEDUP_TTL - 7200)) < 60
    assert r.exists(f"{dedup}:R-OLD", f"{dedup}:R-3") == 0  # expired, and another deployment's
    known = f"{PREFIX}:erpkeys:acme:{KIND}"
    assert r.zrange(known, 0, -1, withscores=True) == [("4711", 4711.0)] and r.ttl(known) > 0
    assert outbox.epoch() and "lost" not in outbox.state()

    claims = ResultsStore(r, on).claim_all([ClaimRef("acme", KIND, x, "j5#0") for x in ("R-1", "R-2", "R-OLD")])
    assert [(c.state, c.key) for c in claims] == [
        (ClaimState.CREATED, 4711),  # a duplicate of the document created before the loss
        (ClaimState.CREATED, "ABC"),
        (ClaimState.MINE, None),  # its entry had expired before the loss too
    ]


def test_restore_index_writes_the_epoch_last(
    r: fakeredis.FakeRedis, on: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def half(_engine: Engine, _settings: Settings) -> Iterator[tuple[str, str, str, str, int | None, float]]:
        yield "acme", KIND, "R-1", "created|j1#0|1||", 1, 3600.0
        raise OperationalError("SELECT", {}, Exception("the archive went away"))

    monkeypatch.setattr(restore_module, "_entries", half)
    with pytest.raises(ArchiveError):
        restore_index(Outbox(r, on), engine, on)
    assert Outbox(r, on).epoch() is None  # half an index must not be claimed from


# ----- the archiver


def archived(engine: Engine) -> tuple[int, ...]:
    """Rows of outcomes, jobs, index entries and dead letters."""
    return tuple(count(engine, t) for t in (schema.outcomes, schema.jobs, schema.index, schema.dead_letters))


def test_archiver_moves_the_stream_into_the_tables(r: fakeredis.FakeRedis, on: Settings, engine: Engine) -> None:
    record_everything(ResultsStore(r, on))
    outbox = Outbox(r, on)
    archiver = Archiver(outbox, engine, on)
    assert archiver.run_once(block_ms=10) == 6
    assert archived(engine) == (3, 2, 2, 1)
    assert r.xlen(STREAM) == 0 and r.xpending(STREAM, ARCHIVER_GROUP)["pending"] == 0
    assert outbox.state()["lag"] == "0" and outbox.state()["archived"] == "6"
    assert archiver.run_once(block_ms=10) == 0 and archived(engine) == (3, 2, 2, 1)


def test_a_failed_write_leaves_the_entries_in_the_stream_for_the_next_run(
    r: fakeredis.FakeRedis, on: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    record_everything(ResultsStore(r, on))
    calls: list[int] = []

    def flaky(engine: Engine, rows: Any) -> None:
        calls.append(len(rows))
        if len(calls) == 1:
            raise ArchiveError("the archive refused a batch")
        write(engine, rows)

    monkeypatch.setattr(archiver_module, "write", flaky)
    archiver = Archiver(Outbox(r, on), engine, on)
    with pytest.raises(ArchiveError):
        archiver.run_once(block_ms=10)
    assert r.xlen(STREAM) == 6 and r.xpending(STREAM, ARCHIVER_GROUP)["pending"] == 6
    assert archived(engine) == (0, 0, 0, 0)
    assert archiver.run_once(block_ms=10) == 6  # its own pending entries, read again
    assert archived(engine) == (3, 2, 2, 1) and r.xlen(STREAM) == 0


def test_an_archiver_killed_after_its_commit_writes_nothing_twice(
    r: fakeredis.FakeRedis, on: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    record_everything(ResultsStore(r, on))
    outbox = Outbox(r, on)
    acknowledge = outbox.acknowledge

    def lost_once(ids: Any) -> None:
        monkeypatch.setattr(outbox, "acknowledge", acknowledge)
        raise ConnectionError("Redis went away")

    monkeypatch.setattr(outbox, "acknowledge", lost_once)
    archiver = Archiver(outbox, engine, on)
    with pytest.raises(ConnectionError):
        archiver.run_once(block_ms=10)
    assert archived(engine) == (3, 2, 2, 1) and r.xlen(STREAM) == 6
    assert archiver.run_once(block_ms=10) == 6
    assert archived(engine) == (3, 2, 2, 1) and r.xlen(STREAM) == 0


# ----- retention


def test_prune_deletes_what_is_older_than_the_retention(url: str, engine: Engine) -> None:
    now = T0 + timedelta(days=100)
    for age, tag in ((40, "old"), (10, "new")):
        at = now - timedelta(days=age)
        entries = [doc(tag, 0, "created", f"{tag}-R"), dead(f"{tag}-d"), job(tag, "succeeded", at, created=1),
                   idx(f"{tag}-R", "created|x#0|1||")]  # fmt: skip
        write(engine, rows_of([entry(fields, at) for fields in entries], PREFIX))

    assert prune(engine, make_settings(url, archive_retention_days=0), now=now + timedelta(days=999)) == {}
    assert archived(engine) == (2, 2, 2, 2)  # retention 0 keeps everything

    pruned = prune(engine, make_settings(url, archive_retention_days=30), now=now)  # dedup TTL: 30 days too
    assert pruned == {"outcomes": 1, "jobs": 1, "dead_letters": 1, "index": 1}
    assert column(engine, schema.outcomes, "job_id") == ["new"] and column(engine, schema.jobs, "job_id") == ["new"]
    assert column(engine, schema.dead_letters, "dead_id") == ["new-d"]
    assert column(engine, schema.index, "external_id") == ["new-R"]


# ----- lag


def test_lag_counts_the_entries_and_ages_the_oldest(r: fakeredis.FakeRedis, on: Settings) -> None:
    outbox = Outbox(r, on)
    assert outbox.lag() == (0, None)
    now_ms = int(time.time() * 1000)
    r.xadd(STREAM, {"e": "doc"}, id=f"{now_ms - 5000}-0")
    r.xadd(STREAM, {"e": "doc"}, id=f"{now_ms - 1000}-0")
    length, oldest = outbox.lag()
    assert length == 2 and oldest is not None and 4.5 < oldest < 7.0
