"""A job's lane (schemas.Lane): the envelope's `priority`, or chosen by size; stored as the job hash's `lane`, and the
intake list its items queue in, whichever way the job came (submit(), a raw message, `erpsync submit`, recovery)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from pydantic import ValidationError

import schemas
import worker.producer.submit
from schemas.envelope import JobEnvelope, Lane
from tests.unit.fake_runtime import fake_runtime
from worker.cli import commands as cli
from worker.errors import ConfigurationError, SubmitError
from worker.pipeline.queue import Message
from worker.producer.submissions import ACCEPTED, REJECTED, accept
from worker.producer.submit import Chunk, choose_lane, submit
from worker.settings import Settings, get_settings
from worker.store.intake import IntakeQueue, LaneBacklog
from worker.store.records import job_lane, job_summary
from worker.store.results import ResultsStore
from worker.store.submissions import SubmissionQueue

INT, BULK = Lane.INTERACTIVE, Lane.BULK


# ----- the envelope and the size rule


def test_priority_is_an_optional_lane_of_the_envelope() -> None:
    base: dict[str, Any] = {"job_id": "j", "tenant": "demo", "kind": "order", "documents": [{}]}
    assert JobEnvelope(**base).priority is None
    assert JobEnvelope(**base, priority="interactive").priority is INT
    assert JobEnvelope(**base, priority=BULK).priority is BULK
    with pytest.raises(ValidationError, match="priority"):
        JobEnvelope(**base, priority="urgent")
    assert schemas.Lane is Lane and "Lane" in schemas.__all__


@pytest.mark.parametrize(
    ("documents", "limit", "lane"), [(1, 100, INT), (100, 100, INT), (101, 100, BULK), (1, 0, BULK)]
)
def test_a_job_is_interactive_up_to_the_limit(documents: int, limit: int, lane: Lane) -> None:
    assert Lane.for_size(documents, limit) is lane


def test_settings_have_the_limit_and_tenants_a_weight(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().interactive_max_documents == 100
    monkeypatch.setenv("ERPSYNC_INTERACTIVE_MAX_DOCUMENTS", "7")
    assert Settings().interactive_max_documents == 7
    entry = {"name": "t", "company_api_key": "company-key", "connect_api_key": "connect-key"}
    path = tmp_path / "tenants.json"
    path.write_text(json.dumps({"tenants": [entry, {**entry, "name": "u", "weight": 2.5}]}), encoding="utf-8")
    tenants = Settings(tenants_file=path, demo_tenant=False).tenants()
    assert tenants["t"].weight == 1.0 and tenants["u"].weight == 2.5
    path.write_text(json.dumps({"tenants": [{**entry, "weight": 0}]}), encoding="utf-8")
    with pytest.raises(ConfigurationError, match="weight"):
        Settings(tenants_file=path, demo_tenant=False).tenants()


def chunks_of(sizes: list[int]) -> list[Chunk]:
    return [([f"x{n}"] * n, ["{}"] * n, []) for n in sizes]


@pytest.mark.parametrize(
    ("sizes", "lane", "read_ahead"),
    [
        ([7], INT, 1),  # one short chunk: the whole job
        ([10, 10, 5], INT, 3),  # 25 documents, read to the end before the first is stored
        ([10, 10], INT, 2),  # full chunks to the end: the source says when it ends
        ([10, 10, 10, 1], BULK, 3),  # bulk as soon as 26 are read
        ([10, 10, 10, 10], BULK, 3),
    ],
)
def test_a_streamed_job_is_sized_as_soon_as_its_size_is_known(sizes: list[int], lane: Lane, read_ahead: int) -> None:
    settings = Settings(intake_chunk_docs=10, interactive_max_documents=25)
    first, *rest = chunks_of(sizes)
    more = iter(rest)
    got, read = choose_lane(None, first, more, settings)
    assert got is lane and len(read) == read_ahead
    assert [len(c[1]) for c in read + list(more)] == sizes  # every chunk is stored, in order


def test_with_the_default_settings_the_first_chunk_decides() -> None:
    settings = Settings()
    for sizes, lane in (([1000, 1000], BULK), ([100], INT), ([101], BULK)):
        first, *rest = chunks_of(sizes)
        assert choose_lane(None, first, iter(rest), settings) == (lane, [first])
    assert choose_lane(BULK, chunks_of([1])[0], iter([]), settings)[0] is BULK  # the producer's word goes


# ----- submit(), a raw message, the CLI


@pytest.fixture
def redis_client(monkeypatch: pytest.MonkeyPatch) -> fakeredis.FakeRedis:
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
    monkeypatch.setattr(worker.producer.submit, "get_redis", lambda settings=None: client)
    monkeypatch.setattr(worker.producer.submit, "request_intake", lambda enqueue, n, job_id=None: None)
    return client


def lanes_queued(client: fakeredis.FakeRedis, settings: Settings) -> list[LaneBacklog]:
    return IntakeQueue(client, settings).backlog()


def docs(n: int) -> list[dict[str, Any]]:
    return [{"ExternalId": f"R-{i}", "CustomerNr": "1001"} for i in range(n)]


def test_submit_stores_the_lane_asked_for_or_by_size(redis_client: fakeredis.FakeRedis) -> None:
    settings = Settings(key_prefix="lanes", intake_chunk_docs=10, interactive_max_documents=15)
    store = ResultsStore(redis_client, settings)
    small = submit(docs(15), tenant="demo", settings=settings)
    big = submit(docs(16), tenant="demo", settings=settings)
    urgent = submit(docs(30), tenant="demo", settings=settings, priority="interactive")
    assert [store.job_lanes([j])[0] for j in (small, big, urgent)] == [INT, BULK, INT]
    assert redis_client.hget(f"lanes:job:{small}", "lane") == "interactive"
    assert lanes_queued(redis_client, settings) == [
        LaneBacklog("demo", INT, 2 + 3, 15 + 30),
        LaneBacklog("demo", BULK, 2, 16),
    ]
    with pytest.raises(SubmitError, match="priority"):
        submit(docs(1), tenant="demo", settings=settings, priority="urgent")


def test_a_raw_message_may_say_its_priority() -> None:
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
    settings = Settings(key_prefix="rawlanes", interactive_max_documents=2)
    queue, store = SubmissionQueue(client, settings), ResultsStore(client, settings)

    def send(**fields: Any) -> Any:
        message = {"job_id": f"j-{client.incr('n')}", "tenant": "demo", "kind": "customer_invoice", **fields}
        client.lpush(queue.key, json.dumps(message))
        taken = queue.take()
        assert taken is not None
        return accept(client, settings, taken[0])

    one = send(documents=docs(1), priority="bulk")
    three = send(documents=docs(3))
    two = send(documents=docs(2), source="pos")
    assert (one.status, three.status, two.status) == (ACCEPTED, ACCEPTED, ACCEPTED)
    assert store.job_lanes([one.job_id, three.job_id, two.job_id, "gone"]) == [BULK, BULK, INT, None]
    assert lanes_queued(client, settings) == [LaneBacklog("demo", INT, 1, 2), LaneBacklog("demo", BULK, 2, 4)]
    refused = send(documents=docs(1), priority="urgent")
    assert refused.status == REJECTED and refused.reason.startswith("priority: ")


def test_erpsync_submit_passes_the_priority(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[Any] = []

    def fake_submit(documents: Any, **kwargs: Any) -> str:
        list(documents)
        asked.append(kwargs["priority"])
        return "job-1"

    monkeypatch.setattr(worker.producer.submit, "submit", fake_submit)
    monkeypatch.setenv("ERPSYNC_KEY_PREFIX", "clilanes")
    get_settings.cache_clear()
    plain = tmp_path / "docs.json"
    plain.write_text(json.dumps(docs(2)), encoding="utf-8")
    envelope = tmp_path / "envelope.json"
    envelope.write_text(json.dumps({"priority": "bulk", "documents": docs(2)}), encoding="utf-8")
    try:
        assert cli.main(["submit", str(plain), "--priority", "interactive", "--json"]) == 0
        assert cli.main(["submit", str(plain), "--json"]) == 0
        assert cli.main(["submit", str(envelope), "--json"]) == 0  # the file's envelope says
        assert cli.main(["submit", str(envelope), "--priority", "interactive", "--json"]) == 0  # the option wins
    finally:
        get_settings.cache_clear()
    assert asked == ["interactive", None, "bulk", "interactive"]
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["submit", str(plain), "--priority", "urgent"])


# ----- the job's lane, read back


def test_the_lane_is_shown_with_the_job_and_read_for_jobs_from_before_lanes(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(key_prefix="shown", interactive_max_documents=1)
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
    store = ResultsStore(client, settings)
    store.create_job({"job_id": "a", "tenant": "demo", "kind": "customer_invoice"}, ["{}"], ["x"])
    store.create_job({"job_id": "b", "tenant": "demo", "kind": "customer_invoice"}, ["{}", "{}"], ["x", "y"])
    store.open_job({"job_id": "c", "tenant": "demo", "kind": "customer_invoice"})  # a stream that did not say
    job = store.job("a")
    assert job is not None and job["lane"] == "interactive" and job_summary(job)["lane"] == "interactive"
    assert store.job_lanes(["a", "b", "c"]) == [INT, BULK, BULK]
    client.hdel("shown:job:b", "lane")  # stored before lanes
    assert store.job_lanes(["b"]) == [BULK] and job_lane({"total": "1"}, 1) is INT
    monkeypatch.setattr(cli, "_store", lambda: store)
    assert cli.results_payload("a")["lane"] == "interactive"


def test_a_job_queued_again_goes_to_its_tenant_and_lane(monkeypatch: pytest.MonkeyPatch) -> None:
    from worker.pipeline.intake import enqueue_job_again

    settings = Settings(intake_chunk_docs=10, interactive_max_documents=5)
    monkeypatch.setattr("worker.pipeline.intake.get_settings", lambda: settings)
    parts = fake_runtime(monkeypatch, settings)
    store, intake = parts["store"], parts["intake"]
    store.create_job({"job_id": "j", "tenant": "acme", "kind": "order", "lane": "interactive"}, ["{}"] * 12, ["x"] * 12)
    sent: list[Message] = []
    enqueue_job_again(sent.append, "j", store.job("j"))
    assert intake.backlog() == [LaneBacklog("acme", INT, 2, 12)]
    old = {k: v for k, v in store.job("j").items() if k != "lane"}  # a job from before lanes: sized
    enqueue_job_again(sent.append, "j", old)
    assert intake.backlog() == [LaneBacklog("acme", INT, 2, 12), LaneBacklog("acme", BULK, 2, 12)]
