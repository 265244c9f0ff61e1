"""Dead letters close their loop (worker/ops/deadletters.py, the results store's scripts) against fakeredis: a replay
records its job and then its outcome; a document created afterwards, by the replay or by another submission of its
ExternalId, resolves its dead letters with the Key in the same transaction; `erpsync dead list` shows the open ones
by default, `--all` every one, and `replay --all` takes only the open ones."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest

from tests.unit.cli_run import fake_redis_behind_cli, run
from worker.ops import deadletters, overview
from worker.settings import Settings, get_settings
from worker.store.records import CREATED, DUPLICATE, FAILED, CreatedClaim, Record
from worker.store.results import ResultsStore

PREFIX = "dl"
TENANT, KIND = "acme", "customer_invoice"


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    import os

    for name in list(os.environ):
        if name.startswith("ERPSYNC_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ERPSYNC_KEY_PREFIX", PREFIX)
    monkeypatch.setenv("ERPSYNC_DEMO_TENANT", "false")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def r(monkeypatch: pytest.MonkeyPatch) -> fakeredis.FakeRedis:
    return fake_redis_behind_cli(monkeypatch)


@pytest.fixture
def settings() -> Settings:
    return get_settings()


@pytest.fixture
def store(r: fakeredis.FakeRedis, settings: Settings) -> ResultsStore:
    return ResultsStore(r, settings)


@pytest.fixture
def replays(monkeypatch: pytest.MonkeyPatch, store: ResultsStore) -> list[dict[str, Any]]:
    """submit() replaced by one that stores the job (its one document pending) and names it replay-1, replay-2..."""
    made: list[dict[str, Any]] = []

    def fake_submit(documents: list[Any], **kwargs: Any) -> str:
        job_id = f"replay-{len(made) + 1}"
        doc = documents[0]
        store.create_job({"job_id": job_id, "tenant": kwargs["tenant"], "kind": kwargs["kind"],
                          "source": kwargs["source"]}, [json.dumps(doc)], [doc["ExternalId"]])  # fmt: skip
        made.append({"job_id": job_id, "documents": documents, **kwargs})
        return job_id

    monkeypatch.setattr(deadletters, "submit", fake_submit)
    return made


def dead_letter(store: ResultsStore, job_id: str, position: int, external_id: str, status: str = FAILED) -> str:
    """A document of `job_id` that failed for good: its job, and its dead letter written with the batch's end."""
    if store.job(job_id) is None:
        store.create_job({"job_id": job_id, "tenant": TENANT, "kind": KIND}, ["{}"] * (position + 1),
                         [f"{job_id}-{i}" for i in range(position + 1)])  # fmt: skip
    dead_id = f"{job_id}#{position}"
    entry = {"id": dead_id, "job_id": job_id, "position": position, "external_id": external_id, "tenant": TENANT,
             "kind": KIND, "target": "softone", "status": status, "reason": "CustomerNr: unknown customer",
             "batch_id": f"b-{job_id}", "document": {"ExternalId": external_id, "Rows": []},
             "attempts": []}  # fmt: skip
    store.complete_batch(f"b-{job_id}-{position}", "rejected", [], dead=[entry])
    return dead_id


def create(store: ResultsStore, job_id: str, external_id: str, key: int, *, position: int = 0) -> None:
    """The ERP created `external_id` as document `position` of `job_id`: its record and index entry, one batch end."""
    store.complete_batch(
        f"b-created-{job_id}-{position}",
        "created",
        [(job_id, position, Record(external_id, CREATED, key=key, number=f"N{key}"))],
        created=[CreatedClaim(TENANT, KIND, external_id, f"{job_id}#{position}", key, f"N{key}", "fp")],
    )


def by_id(store: ResultsStore, include_closed: bool = True) -> dict[str, dict[str, Any]]:
    return {e["id"]: e for e in deadletters.entries(store, include_closed=include_closed)}


def test_a_new_dead_letter_is_open_with_no_replay_and_no_key(store: ResultsStore) -> None:
    dead_id = dead_letter(store, "j1", 0, "INV-1")
    entry = by_id(store)[dead_id]
    assert (entry["state"], entry["replay_job"], entry["resolved_key"]) == ("open", None, None)
    assert entry["document"] == {"ExternalId": "INV-1", "Rows": []}
    assert store.dead_letter_counts() == (1, 1)


def test_a_replay_records_its_job_then_its_creation_resolves_the_dead_letter_with_the_key(
    store: ResultsStore, replays: list[dict[str, Any]]
) -> None:
    dead_id = dead_letter(store, "j1", 0, "INV-1")
    job_id = deadletters.replay(store, by_id(store)[dead_id])
    assert job_id == "replay-1" and replays[0]["source"] == f"replay of {dead_id}"
    entry = by_id(store)[dead_id]
    assert (entry["state"], entry["replay_job"], entry["replay_outcome"]) == ("replayed", "replay-1", "pending")
    assert len(store.dead_letter(dead_id)["replays"]) == 1  # type: ignore[index]
    assert "state" not in store.dead_letter(dead_id)  # type: ignore[operator]  # the stored entry stays as written
    assert by_id(store, include_closed=False) == {}  # replayed: its job carries the document on
    assert store.dead_letter_counts() == (1, 0)

    create(store, "replay-1", "INV-1", 4711)
    entry = by_id(store)[dead_id]
    assert entry["state"] == "resolved" and entry["replay_outcome"] == "created"
    assert (entry["resolved_key"], entry["resolved_number"], entry["resolved_by"]) == ("4711", "N4711", "replay-1")
    assert entry["document"] == {"ExternalId": "INV-1", "Rows": []}  # the entry itself is never rewritten by Lua


def test_a_later_submission_of_the_same_external_id_resolves_every_open_dead_letter_of_it(
    store: ResultsStore,
) -> None:
    first = dead_letter(store, "j1", 0, "INV-1")
    second = dead_letter(store, "j2", 0, "INV-1")
    other = dead_letter(store, "j3", 0, "INV-2")
    create(store, "j9", "INV-1", 12)
    found = by_id(store)
    assert [found[i]["state"] for i in (first, second, other)] == ["resolved", "resolved", "open"]
    assert found[first]["resolved_by"] == "j9" and found[first]["replay_outcome"] is None
    assert [e["id"] for e in deadletters.entries(store)] == [other]
    assert store.dead_letter_counts() == (3, 1)
    assert store.r.hkeys(store.keys.dead_open) == [store.keys.dedup(TENANT, KIND, "INV-2")]


def test_a_document_of_another_tenant_or_kind_resolves_nothing(store: ResultsStore) -> None:
    dead_id = dead_letter(store, "j1", 0, "INV-1")
    store.complete_batch(
        "b-other", "created", [],
        created=[CreatedClaim("other", KIND, "INV-1", "x#0", 1, None), CreatedClaim(TENANT, "order", "INV-1", "y#0", 2,
                                                                                    None)],
    )  # fmt: skip
    assert by_id(store)[dead_id]["state"] == "open"


def test_a_replay_that_fails_again_is_closed_and_its_own_dead_letter_is_open(
    store: ResultsStore, replays: list[dict[str, Any]]
) -> None:
    dead_id = dead_letter(store, "j1", 0, "INV-1")
    deadletters.replay(store, by_id(store)[dead_id])
    store.set_records([("replay-1", 0, Record("INV-1", FAILED, error="still unknown customer"))])
    again = dead_letter(store, "replay-1", 0, "INV-1")
    found = by_id(store)
    assert (found[dead_id]["state"], found[dead_id]["replay_outcome"]) == ("replayed", "failed")
    assert found[again]["state"] == "open"
    assert [e["id"] for e in deadletters.entries(store)] == [again]
    create(store, "j5", "INV-1", 99)  # fixed at last: both resolved
    assert {e["state"] for e in deadletters.entries(store, include_closed=True)} == {"resolved"}


def test_a_replay_that_finds_the_document_duplicate_is_resolved_with_the_key_it_found(
    store: ResultsStore, replays: list[dict[str, Any]]
) -> None:
    dead_id = dead_letter(store, "j1", 0, "INV-1", status="unknown")
    deadletters.replay(store, by_id(store)[dead_id])
    store.set_records([("replay-1", 0, Record("INV-1", DUPLICATE, key=321, number="N321"))])
    entry = by_id(store)[dead_id]
    assert (entry["state"], entry["replay_outcome"], entry["resolved_key"]) == ("resolved", "duplicate", "321")


def test_a_replay_whose_job_is_gone_says_so(store: ResultsStore, replays: list[dict[str, Any]]) -> None:
    dead_id = dead_letter(store, "j1", 0, "INV-1")
    deadletters.replay(store, by_id(store)[dead_id])
    store.r.delete(store.keys.job_records("replay-1"))
    assert by_id(store)[dead_id]["replay_outcome"] == "expired"


def test_a_resolved_dead_letter_replayed_stays_resolved(store: ResultsStore, replays: list[dict[str, Any]]) -> None:
    dead_id = dead_letter(store, "j1", 0, "INV-1")
    create(store, "j2", "INV-1", 7)
    assert store.record_replay(dead_id, "late-job")
    entry = by_id(store)[dead_id]
    assert (entry["state"], entry["resolved_key"], entry["replay_job"]) == ("resolved", "7", "late-job")
    assert not store.record_replay("nope#0", "x")


def test_dropping_forgets_the_entry_its_state_and_its_place_among_the_open_ones(store: ResultsStore) -> None:
    first = dead_letter(store, "j1", 0, "INV-1")
    second = dead_letter(store, "j2", 0, "INV-1")
    store.record_replay(second, "r")
    assert store.drop_dead_letter(second) and not store.drop_dead_letter(second)
    assert store.r.hlen(store.keys.dead_state) == 0
    assert json.loads(store.r.hget(store.keys.dead_open, store.keys.dedup(TENANT, KIND, "INV-1"))) == [first]
    assert store.drop_dead_letter(first) and store.r.hlen(store.keys.dead_open) == 0
    assert store.dead_letter_counts() == (0, 0)


def test_the_overview_counts_open_dead_letters_and_shows_the_newest_open_ones(
    r: fakeredis.FakeRedis, settings: Settings, store: ResultsStore, replays: list[dict[str, Any]]
) -> None:
    ids = [dead_letter(store, f"j{i}", 0, f"INV-{i}") for i in range(4)]
    for i, dead_id in enumerate(ids):
        r.zadd(store.keys.dead_index, {dead_id: 1000 + i})
    deadletters.replay(store, by_id(store)[ids[3]])
    create(store, "j9", "INV-2", 5)
    found = overview.dead_letters(r, settings, newest=5)
    assert (found["count"], found["open"]) == (4, 2)
    assert [d["id"] for d in found["newest"]] == [ids[1], ids[0]]
    assert all("document" not in d and d["state"] == "open" for d in found["newest"])


def test_dead_list_shows_open_ones_by_default_and_every_one_with_all(
    store: ResultsStore, replays: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    kept = dead_letter(store, "j1", 0, "INV-1")
    fixed = dead_letter(store, "j2", 0, "INV-2")
    create(store, "j9", "INV-2", 4711)
    code, out, _ = run(capsys, "dead", "list", "--json")
    data = json.loads(out)
    assert code == 0 and [d["id"] for d in data["dead_letters"]] == [kept] and data["count"] == 1
    code, out, _ = run(capsys, "dead", "list", "--all", "--json")
    found = {d["id"]: d for d in json.loads(out)["dead_letters"]}
    assert found[fixed]["state"] == "resolved" and found[fixed]["resolved_key"] == "4711"
    assert "document" not in found[fixed]
    code, out, _ = run(capsys, "dead", "list", "--all")
    line = next(line for line in out.splitlines() if fixed in line)
    assert "resolved" in line and "4711" in line


def test_replay_all_takes_the_open_ones_and_a_resolved_one_is_not_replayed_by_id(
    store: ResultsStore, replays: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    first = dead_letter(store, "j1", 0, "INV-1")
    second = dead_letter(store, "j2", 0, "INV-2")
    create(store, "j9", "INV-2", 4711)
    code, out, _ = run(capsys, "dead", "replay", "--all", "--json")
    assert code == 0 and json.loads(out) == {"replayed": [{"id": first, "job_id": "replay-1"}]}
    code, out, _ = run(capsys, "dead", "replay", "--all")
    assert code == 0 and "nothing to replay" in out
    code, _, err = run(capsys, "dead", "replay", second)
    assert code == 2 and "resolved" in err and "4711" in err and "\n" not in err.strip()
    code, out, _ = run(capsys, "dead", "show", first, "--json")
    assert code == 0 and json.loads(out)["state"] == "replayed" and json.loads(out)["replay_job"] == "replay-1"
