"""The raw-Redis producer contract (worker/producer/submissions.py, tasks/submissions.py) against fakeredis.

Every message pushed to `{p}:submit` must end as a job stored exactly as `submit()` stores one, or as a
rejection with a reason (a `rejected` job when its id is readable and free, and always an entry in
`{p}:rejected`): never raise, never stay held, never echo what was sent, never touch another job. The
listener must take messages in order, survive Redis going away, and send again what a dead worker held.
Also here: the per-document row limit of schemas/validation.py (ERPSYNC_MAX_DOCUMENT_ROWS).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
import threading
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import fakeredis
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from schemas import DocumentError, DocumentKind
from schemas.validation import validate_document, validate_document_json
from worker.celery_app.bootsteps import SubmissionListener
from worker.celery_app.listener import Listener
from worker.errors import ConfigurationError
from worker.producer.submissions import ACCEPTED, GONE, REJECTED, Outcome, accept
from worker.settings import DEMO_COMPANY_API_KEY, Settings
from worker.store.intake import IntakeQueue
from worker.store.records import CREATED, Record
from worker.store.results import ResultsStore
from worker.store.submissions import NewJob, Rejection, SubmissionQueue

INVOICE = DocumentKind.CUSTOMER_INVOICE
INTERNAL_ERROR = "could not be checked"


class Env:
    """A fake Redis with one key prefix, and the settings of a worker using it (demo tenants on)."""

    def __init__(self, **overrides: Any) -> None:
        self.server = fakeredis.FakeServer()
        self.client = fakeredis.FakeRedis(server=self.server, decode_responses=True)
        self.settings = Settings(key_prefix=f"t{uuid.uuid4().hex[:6]}", intake_chunk_docs=10, **overrides)
        self.queue = SubmissionQueue(self.client, self.settings)
        self.store = ResultsStore(self.client, self.settings)
        self.intake = IntakeQueue(self.client, self.settings)
        self.p = self.settings.key_prefix

    def intake_items(self) -> list[str]:
        """Every intake item waiting, encoded, by tenant and lane (the lists' order within each)."""
        lists = sorted(self.client.keys(f"{self.p}:intake:lane:*"))
        return [item for key in lists for item in self.client.lrange(key, 0, -1)]

    def clear_intake(self) -> None:
        """Forget every intake item waiting (taken, then done)."""
        while self.intake.take("clear", max_docs=10**6):
            self.intake.done("clear")

    def push(self, message: str | bytes) -> str:
        """LPUSH a message and take it as a listener would; returns its submission id."""
        self.client.lpush(self.queue.key, message)
        taken = self.queue.take()
        assert taken is not None
        return taken[0]

    def submit(self, message: str | bytes | dict[str, Any]) -> Outcome:
        """Push, take and accept a message; checks that it is settled either way."""
        if isinstance(message, dict):
            message = json.dumps(message, ensure_ascii=False)
        submission_id = self.push(message)
        outcome = accept(self.client, self.settings, submission_id)
        assert_settled(self, submission_id, outcome)
        return outcome

    def everything(self) -> str:
        """Every key and value in the fake Redis, as one text (to look for what must not be stored)."""
        raw = fakeredis.FakeRedis(server=self.server)
        out = []
        for key in raw.keys("*"):
            kind = raw.type(key).decode()
            value: Any = {
                "string": raw.get,
                "list": lambda k: raw.lrange(k, 0, -1),
                "hash": raw.hgetall,
                "set": raw.smembers,
                "zset": lambda k: raw.zrange(k, 0, -1),
            }[kind](key)
            out.append(f"{key!r} {value!r}")
        return "\n".join(out)

    def job_keys(self, job_id: str) -> dict[str, Any]:
        """A job's hash, documents, records and statuses: to show that nothing of it changed."""
        jk = self.store.keys.job(job_id)
        return {
            "job": self.client.hgetall(jk),
            "docs": self.client.lrange(f"{jk}:docs", 0, -1),
            "records": self.client.hgetall(f"{jk}:records"),
            "status": self.client.hgetall(f"{jk}:status"),
            "ttl": self.client.ttl(jk) > 0,
        }


def assert_settled(env: Env, submission_id: str, outcome: Outcome) -> None:
    """The message is no longer held, and it is a job or a rejection with a reason."""
    assert not env.client.exists(env.queue.held_key(submission_id))
    assert submission_id not in env.client.smembers(env.queue.held_set)
    assert outcome.status in (ACCEPTED, REJECTED)
    if outcome.status == ACCEPTED:
        assert outcome.job_id is not None
        job = env.store.job(outcome.job_id)
        assert job is not None and job["submission"] == submission_id
        # failed: every document refused (a credential in it); incomplete: that, and its source broke (source_error)
        assert job["status"] in ("queued", "failed", "incomplete")
        assert int(job["total"]) == sum(outcome.chunks) > 0
    else:
        entries = [e for e in env.store.rejections(1000) if e["id"] == submission_id]
        assert len(entries) == 1
        assert entries[0]["reason"] and entries[0]["reason"] == outcome.reason
        assert INTERNAL_ERROR not in entries[0]["reason"]
        assert entries[0]["job_id"] == outcome.job_id


def message(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "job_id": f"j-{uuid.uuid4().hex[:8]}",
        "tenant": "demo",
        "kind": "customer_invoice",
        "documents": [{"ExternalId": "R-1", "CustomerNr": "1001"}],
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not ...}


# ----- accepted messages


def test_a_valid_message_becomes_a_job_stored_as_submit_stores_one(monkeypatch: pytest.MonkeyPatch) -> None:
    import worker.producer.submit
    from worker.producer.submit import submit

    env = Env()
    docs = [{"ExternalId": "R-1", "CustomerNr": "1001"}, {"CustomerNr": "1002", "Text": "Kanelbulle"}] + [
        {"ExternalId": f"R-{i}"} for i in range(2, 13)
    ]
    monkeypatch.setattr(worker.producer.submit, "get_redis", lambda settings=None: env.client)
    monkeypatch.setattr(worker.producer.submit, "request_intake", lambda enqueue, n, job_id=None: None)
    python_job = submit(
        copy.deepcopy(docs), tenant="demo", kind="customer_invoice", source="pos", job_id="py-1", settings=env.settings
    )
    env.clear_intake()

    outcome = env.submit(
        {"job_id": "raw-1", "tenant": "demo", "kind": "customer_invoice", "source": "pos", "documents": docs}
    )
    assert outcome.status == ACCEPTED and outcome.job_id == "raw-1" and outcome.chunks == (10, 3)

    py, raw = env.job_keys(python_job), env.job_keys("raw-1")
    volatile = {"job_id", "submitted_at", "created_at", "updated_at", "received_at", "submission"}
    assert {k: v for k, v in raw["job"].items() if k not in volatile} == {
        k: v for k, v in py["job"].items() if k not in volatile
    }
    assert raw["job"]["status"] == "queued" and raw["job"]["total"] == "13" and raw["job"]["target"] == "softone"
    # ExternalIds filled in the same way (derived from the job id where missing)
    assert raw["docs"] == [d.replace("py-1#", "raw-1#") for d in py["docs"]]
    assert json.loads(raw["docs"][1])["ExternalId"] == "raw-1#1"
    strip = lambda records: {k: {**json.loads(v), "updated_at": None} for k, v in records.items()}  # noqa: E731
    assert json.dumps(strip(raw["records"])) == json.dumps(strip(py["records"])).replace("py-1#", "raw-1#")
    assert env.intake_items() == ["raw-1|0|10|interactive|demo", "raw-1|10|13|interactive|demo"]
    assert raw["job"]["lane"] == py["job"]["lane"] == "interactive"  # 13 documents, at most 100
    assert "raw-1" in env.client.smembers(f"{env.p}:open_jobs")
    assert "raw-1" in env.client.zrange(f"{env.p}:jobs", 0, -1)
    assert raw["ttl"]


def test_a_message_whose_source_broke_is_stored_as_submit_stores_a_broken_file(monkeypatch: pytest.MonkeyPatch) -> None:
    import worker.producer.submit
    from worker.errors import JobIncomplete, SourceError
    from worker.producer.submit import submit

    env = Env()
    docs = [{"ExternalId": f"R-{i}", "CustomerNr": "1001"} for i in range(13)]

    def broken() -> Any:
        yield from copy.deepcopy(docs)
        raise SourceError("x.jsonl, line 14: not valid JSON", reason="not valid JSON", line=14)

    monkeypatch.setattr(worker.producer.submit, "get_redis", lambda settings=None: env.client)
    monkeypatch.setattr(worker.producer.submit, "request_intake", lambda enqueue, n, job_id=None: None)
    with pytest.raises(JobIncomplete):
        submit(broken(), tenant="demo", kind="customer_invoice", source="pos", job_id="py-1", settings=env.settings)
    env.clear_intake()

    said = {"line": 14, "reason": "not valid JSON"}
    outcome = env.submit(message(job_id="raw-1", source="pos", documents=docs, source_error=said))
    assert outcome.status == ACCEPTED and outcome.chunks == (10, 3)
    py, raw = env.job_keys("py-1"), env.job_keys("raw-1")
    volatile = {"job_id", "submitted_at", "created_at", "updated_at", "received_at", "submission"}
    assert {k: v for k, v in raw["job"].items() if k not in volatile} == {
        k: v for k, v in py["job"].items() if k not in volatile
    }
    assert (raw["job"]["source_error"], raw["job"]["source_error_line"]) == ("not valid JSON", "14")
    assert raw["job"]["status"] == "queued"  # it finishes `incomplete` once its 13 documents have their outcomes
    env.store.set_records([("raw-1", i, Record(f"R-{i}", CREATED, key=10 + i)) for i in range(13)])
    job = env.store.job("raw-1")
    assert job is not None and job["status"] == "incomplete" and job["n_created"] == "13"


def test_a_source_error_without_a_line_and_every_document_refused_is_incomplete_at_once() -> None:
    env = Env()
    docs = [{"ExternalId": "R-1", "Text": f"key {DEMO_COMPANY_API_KEY}"}]
    outcome = env.submit(message(documents=docs, source_error={"reason": "the export stopped"}))
    job = env.store.job(outcome.job_id or "")
    assert job is not None and job["status"] == "incomplete" and job["n_failed"] == "1"
    assert job["source_error"] == "the export stopped" and "source_error_line" not in job


@pytest.mark.parametrize(
    "said", [{"line": 0, "reason": "r"}, {"reason": ""}, {"line": "3", "reason": "r"}, {"line": 3}, "broke"]
)
def test_a_malformed_source_error_rejects_the_message(said: Any) -> None:
    outcome = Env().submit(message(source_error=said))
    assert outcome.status == REJECTED and outcome.reason is not None and outcome.reason.startswith("source_error")


def test_target_may_be_given_when_it_is_the_tenants() -> None:
    env = Env()
    outcome = env.submit(message(tenant="demo-fortnox", target="fortnox", documents=[{"CustomerNumber": "1"}]))
    assert outcome.status == ACCEPTED
    job = env.store.job(outcome.job_id or "")
    assert job is not None and job["target"] == "fortnox"


def test_a_document_holding_a_credential_is_refused_alone_and_stored_masked() -> None:
    env = Env()
    docs = [{"ExternalId": "R-1"}, {"ExternalId": "R-2", "Text": f"key {DEMO_COMPANY_API_KEY}"}]
    outcome = env.submit(message(documents=docs))
    assert outcome.status == ACCEPTED
    records = env.store.records(outcome.job_id or "")
    assert [r.status for r in records] == ["pending", "failed"]
    assert DEMO_COMPANY_API_KEY not in env.everything()


def test_messages_are_taken_oldest_first() -> None:
    env = Env()
    for text in ("first", "second", "third"):
        env.client.lpush(env.queue.key, text)
    taken = [env.queue.take() for _ in range(4)]
    assert taken[3] is None
    held = [env.client.get(env.queue.held_key(t[0])) for t in taken[:3] if t]
    assert held == ["first", "second", "third"]
    assert sorted(env.queue.held()) == sorted((t[0], len(v)) for t, v in zip(taken[:3], held, strict=True) if t)
    assert env.queue.waiting() == 0


def test_accepting_twice_does_nothing_the_second_time() -> None:
    env = Env()
    submission_id = env.push(json.dumps(message(job_id="twice")))
    first = accept(env.client, env.settings, submission_id)
    before = env.job_keys("twice")
    second = accept(env.client, env.settings, submission_id)
    assert (first.status, second.status) == (ACCEPTED, GONE)
    assert env.job_keys("twice") == before
    assert env.intake.waiting() == 1


def test_a_job_id_used_while_the_message_is_stored_makes_it_a_rejection() -> None:
    """SubmissionQueue.settle watches the job: a job stored under the same id between the check and the write
    aborts the write, and the producer's choice is asked again, now told the id is used."""
    env = Env()
    submission_id = env.push(json.dumps(message(job_id="raced-1")))
    other = fakeredis.FakeRedis(server=env.server, decode_responses=True)
    asked: list[bool] = []

    def choose(used: bool) -> NewJob | Rejection:
        asked.append(used)
        if not used:  # another producer's job takes the id meanwhile
            other.hset(env.store.keys.job("raced-1"), "status", "queued")
            return NewJob({"job_id": "raced-1"})
        return Rejection({"id": submission_id, "job_id": "raced-1"}, 10, "job id taken")

    settled = env.queue.settle(submission_id, "raced-1", choose)
    assert asked == [False, True] and isinstance(settled, Rejection)
    assert env.client.hgetall(env.store.keys.job("raced-1")) == {"status": "queued"}  # not touched
    assert [e["id"] for e in env.store.rejections()] == [submission_id]
    assert not env.client.exists(env.queue.held_key(submission_id))
    assert submission_id not in env.client.smembers(env.queue.held_set)


def test_a_message_settled_by_another_run_is_gone_and_nothing_is_written() -> None:
    env = Env()
    submission_id = env.push(json.dumps(message()))
    env.client.delete(env.queue.held_key(submission_id))  # another run of the task stored it
    assert env.queue.settle(submission_id, None, lambda used: pytest.fail("nothing to choose")) is None
    assert env.client.smembers(env.queue.held_set) == set() and env.store.rejections() == []


def test_an_id_that_is_not_ours_is_ignored() -> None:
    env = Env()
    assert accept(env.client, env.settings, "../../etc").status == GONE
    assert accept(env.client, env.settings, "20261121T000000-000000000000").status == GONE


# ----- rejected messages


REJECTIONS: list[tuple[str, Any, str]] = [
    ("not JSON", '{"job_id": "bad-json", "tenant": "demo", oops', "message: not valid JSON: Expecting"),
    ("binary", b'\xff\xfe{"job_id": "bad-bytes"}\x00', "message: not UTF-8 text (invalid byte at offset 0)"),
    ("not an object", "[1, 2, 3]", "message: a job message must be a JSON object, got an array"),
    ("NaN", '{"job_id": "nan-1", "x": NaN}', "message: not valid JSON: NaN is not a JSON number"),
    (
        "a lone surrogate",
        '{"job_id": "sur-1", "source": "\\udc00"}',
        "message: a \\uD800-\\uDFFF escape without its pair",
    ),
    (
        "a huge number",
        '{"job_id": "big-1", "n": ' + "9" * 5000 + "}",
        "message: not valid JSON here: a number has too many digits",
    ),
    ("too deep", '{"job_id": "deep-1", "d": ' + "[" * 100_000 + "]" * 100_000 + "}", "message: nested too deeply"),
    ("no job id", message(job_id=...), "job_id: is required"),
    ("a bad job id", message(job_id="a b/c"), "job_id: String should match pattern"),
    ("documents not objects", message(documents=[{}, {}, {}, 7]), "documents.3: Input should be a valid dictionary"),
    ("no documents", message(documents=[]), "documents: List should have at least 1 item after validation"),
    ("a bad kind", message(kind="receipt"), "kind: Input should be 'customer_invoice', 'order', 'offer' or 'article'"),
    ("unknown tenant", message(tenant="nobody"), "tenant: not a configured tenant (ERPSYNC_TENANTS_FILE)"),
    ("target mismatch", message(target="fortnox"), "target: the tenant is configured for softone, not fortnox"),
    (
        "kind not taken",
        message(tenant="demo-invoices", kind="order"),
        "kind: target invoiceservice does not take order",
    ),
    ("extra field", message(base_url="http://evil.example"), "base_url: is not a field of a job message"),
    ("worker-set field", message(submitted_at="2020-01-01T00:00:00Z"), "submitted_at: is not a field of a job message"),
]


@pytest.mark.parametrize(("what", "payload", "reason"), REJECTIONS, ids=[r[0] for r in REJECTIONS])
def test_a_malformed_message_is_rejected_with_its_reason(what: str, payload: Any, reason: str) -> None:
    env = Env()
    outcome = env.submit(payload)
    assert outcome.status == REJECTED
    assert outcome.reason is not None and outcome.reason.startswith(reason), outcome.reason
    entry = env.store.rejections()[0]
    raw = payload if isinstance(payload, bytes) else (payload if isinstance(payload, str) else json.dumps(payload))
    raw_bytes = raw if isinstance(raw, bytes) else raw.encode()
    assert entry["bytes"] == len(raw_bytes) and entry["sha256"] == hashlib.sha256(raw_bytes).hexdigest()
    if outcome.job_id is not None:  # a readable id, not used before: the job tells the producer why
        job = env.store.job(outcome.job_id)
        assert job is not None
        assert job["status"] == "rejected" and job["reason"] == outcome.reason and job["total"] == "0"
        assert job["finished_at"] and outcome.job_id in env.client.zrange(f"{env.p}:jobs", 0, -1)
        assert outcome.job_id not in env.client.smembers(f"{env.p}:open_jobs")
        assert env.client.ttl(env.store.keys.job(outcome.job_id)) > 0
    assert env.intake.waiting() == 0 and env.intake_items() == []


def test_the_job_id_of_an_unparsable_message_is_found_in_its_text() -> None:
    env = Env()
    assert env.submit('{"job_id": "findme-1", "tenant": "demo", "documents": [}').job_id == "findme-1"
    assert env.submit(b'\xff{"job_id":"findme-2"}').job_id == "findme-2"
    assert env.submit("{'job_id': 'single-quotes'}").job_id is None


def test_a_message_above_the_byte_limit_is_rejected_unread_with_its_digest() -> None:
    env = Env(max_message_bytes=1024)
    text = '{"job_id": "huge-1", "tenant": "demo", "documents": [' + ",".join(['{"a": 1}'] * 400_000) + "]}"
    outcome = env.submit(text)  # 3.6 MB: read a megabyte at a time for the digest only
    assert outcome.status == REJECTED and outcome.job_id == "huge-1"
    assert outcome.reason == f"message: {len(text)} bytes, above the limit of 1024 (ERPSYNC_MAX_MESSAGE_BYTES)"
    assert env.store.rejections()[0]["sha256"] == hashlib.sha256(text.encode()).hexdigest()


def test_a_message_at_the_byte_limit_is_accepted() -> None:
    env = Env(max_message_bytes=1024)

    def padded(job_id: str, size: int) -> str:
        text = json.dumps(message(job_id=job_id, source="x" * 200))
        return text + " " * (size - len(text))  # JSON allows trailing whitespace

    assert env.submit(padded("limit-1", 1024)).status == ACCEPTED
    outcome = env.submit(padded("limit-2", 1025))
    assert outcome.reason == "message: 1025 bytes, above the limit of 1024 (ERPSYNC_MAX_MESSAGE_BYTES)"


def test_more_documents_than_allowed_are_rejected() -> None:
    env = Env(max_job_documents=2)
    outcome = env.submit(message(documents=[{}, {}, {}]))
    assert outcome.reason == "documents: 3 documents, above the limit of 2 (ERPSYNC_MAX_JOB_DOCUMENTS): split the job"
    assert env.submit(message(documents=[{}, {}])).status == ACCEPTED


def test_reasons_never_echo_what_was_sent() -> None:
    env = Env()
    secret, personal = "sk_live_4f9a8c7e6d5b", "Anna Svensson, 19850412-1234"
    payloads = [
        message(company_api_key=secret, documents=[{"CustomerName": personal}, "x"]),
        message(tenant=secret + "!", source=personal, documents=personal),
        message(kind=secret, target=personal),
        message(job_id=secret + "/"),
        {**message(), personal: secret},  # a key that is not a plain name is not shown either
        '{"job_id": "echo-1", "tenant": "' + secret + '", "x": "' + personal + '" ,,}',
        b'{"job_id": "echo-2", "api_token": "' + secret.encode() + b'"}\xff',
        json.dumps(message(tenant="nobody", documents=[{"Text": personal, "Key": secret}])),
    ]
    for payload in payloads:
        outcome = env.submit(payload)
        assert outcome.status == REJECTED
        assert secret not in (outcome.reason or "") and "Svensson" not in (outcome.reason or "")
    stored = env.everything()
    assert secret not in stored and "Svensson" not in stored and "19850412" not in stored


def test_no_message_reaches_another_tenants_job() -> None:
    env = Env()
    theirs = env.submit(message(job_id="acme-0001", tenant="demo", documents=[{"ExternalId": "A-1"}]))
    assert theirs.status == ACCEPTED
    before = env.job_keys("acme-0001")
    attempts = [
        message(job_id="acme-0001", tenant="demo-invoices", documents=[{"invoiceNumber": "X-1"}]),  # another tenant
        message(job_id="acme-0001", tenant="demo", documents=[{"ExternalId": "A-2"}]),  # the same tenant, again
        message(job_id="acme-0001", tenant="demo", base_url="http://evil.example", company_api_key="x" * 12),
        '{"job_id": "acme-0001", "tenant": "demo-invoices", "documents": [',
    ]
    for payload in attempts:
        outcome = env.submit(payload)
        assert outcome.status == REJECTED and outcome.job_id == "acme-0001"
        assert outcome.reason is not None
        assert "job id already submitted" in outcome.reason
    assert env.store.rejections()[-1]["reason"] == "job_id: job id already submitted; this message was ignored"
    assert env.job_keys("acme-0001") == before
    assert env.intake_items() == ["acme-0001|0|1|interactive|demo"]


def test_a_rejected_job_id_is_not_reused_either() -> None:
    env = Env()
    assert env.submit(message(job_id="once-1", tenant="nobody")).status == REJECTED
    before = env.job_keys("once-1")
    outcome = env.submit(message(job_id="once-1"))
    assert outcome.status == REJECTED and outcome.reason == "job_id: job id already submitted; this message was ignored"
    assert env.job_keys("once-1") == before


def test_the_rejection_log_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    import worker.producer.submissions

    monkeypatch.setattr(worker.producer.submissions, "REJECTED_KEEP", 3)
    env = Env()
    for i in range(5):
        env.submit(f"not json {i}")
    assert env.client.llen(f"{env.p}:rejected") == 3


def test_an_unreadable_tenants_file_leaves_the_message_held(tmp_path: Path) -> None:
    broken = tmp_path / "tenants.json"
    broken.write_text("{not json")
    env = Env(tenants_file=broken)
    submission_id = env.push(json.dumps(message()))
    with pytest.raises(ConfigurationError):
        accept(env.client, env.settings, submission_id)
    assert env.client.exists(env.queue.held_key(submission_id))
    broken.write_text(json.dumps({"tenants": []}))
    os.utime(broken, (time.time() + 5, time.time() + 5))  # the tenants file is re-read when its mtime changes
    outcome = accept(env.client, env.settings, submission_id)
    assert_settled(env, submission_id, outcome)
    assert outcome.status == ACCEPTED


# ----- fuzzing: whatever is pushed ends settled, and accept() never raises

JSON_LEAVES = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12)
JSON_VALUES = st.recursive(
    JSON_LEAVES, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
)
FUZZ = hsettings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(raw=st.binary(max_size=200))
def test_fuzz_random_bytes(raw: bytes) -> None:
    Env().submit(raw)


@FUZZ
@given(value=JSON_VALUES)
def test_fuzz_random_json_values(value: Any) -> None:
    Env().submit(json.dumps(value))


ANY_ENVELOPE = st.fixed_dictionaries(
    {},
    optional={
        "job_id": st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,20}\Z") | JSON_LEAVES,
        "tenant": st.sampled_from(["demo", "demo-fortnox", "demo-invoices", "nobody", ""]) | JSON_LEAVES,
        "target": st.sampled_from(["softone", "fortnox", "invoiceservice", None, "sap"]) | JSON_VALUES,
        "kind": st.sampled_from(["customer_invoice", "order", "offer", "article", "receipt"]) | JSON_VALUES,
        "documents": st.lists(st.dictionaries(st.text(max_size=12), JSON_VALUES, max_size=4) | JSON_VALUES, max_size=4)
        | JSON_VALUES,
        "source": st.none() | st.text(max_size=250) | JSON_LEAVES,
        "base_url": st.text(max_size=20),
        "api_token": st.text(max_size=20),
    },
)
# Envelopes right in every field (any tenant takes customer invoices, ids collide often), then damaged in at
# most one place: most are accepted, the rest fail on one rule at a time.
VALID_ENVELOPE = st.fixed_dictionaries(
    {
        "job_id": st.from_regex(r"\A[a-c][0-9]{0,2}\Z"),
        "tenant": st.sampled_from(["demo", "demo-fortnox", "demo-invoices"]),
        "kind": st.just("customer_invoice"),
        "documents": st.lists(st.dictionaries(st.text(max_size=12), JSON_VALUES, max_size=4), min_size=1, max_size=5),
    },
    optional={"source": st.none() | st.text(max_size=200)},
)
FIELDS = ["job_id", "tenant", "target", "kind", "documents", "source", "base_url", "company_api_key"]


@st.composite
def near_valid_envelopes(draw: st.DrawFn) -> dict[str, Any]:
    envelope = draw(VALID_ENVELOPE)
    change, name = draw(st.sampled_from(["none", "none", "drop", "junk", "add"])), draw(st.sampled_from(FIELDS))
    if change == "drop":
        envelope.pop(name, None)
    elif change in ("junk", "add"):
        envelope[name] = draw(JSON_VALUES)
    return envelope


ENVELOPES = ANY_ENVELOPE | near_valid_envelopes()


@FUZZ
@given(envelope=ENVELOPES, extra=st.dictionaries(st.text(max_size=8), JSON_LEAVES, max_size=2))
def test_fuzz_envelopes(envelope: dict[str, Any], extra: dict[str, Any]) -> None:
    env = Env(max_job_documents=3)
    sent = {**extra, **envelope}
    if env.submit(sent).status == ACCEPTED:
        assert set(sent) <= {"job_id", "tenant", "target", "kind", "documents", "source"}


@FUZZ
@given(envelope=ENVELOPES, cut=st.integers(min_value=0), flip=st.integers(min_value=0, max_value=255))
def test_fuzz_damaged_envelopes(envelope: dict[str, Any], cut: int, flip: int) -> None:
    text = json.dumps(envelope, ensure_ascii=False).encode()
    damaged = text[: cut % (len(text) + 1)] + bytes([flip]) + text[cut % (len(text) + 1) + 1 :]
    Env().submit(damaged)


@FUZZ
@given(envelope=ENVELOPES)
def test_fuzz_many_messages_share_one_store(envelope: dict[str, Any]) -> None:
    # Job ids collide across examples here: a used id is never overwritten, whoever the sender.
    env = shared_env()
    job_id = envelope.get("job_id")
    before = env.job_keys(job_id) if isinstance(job_id, str) and env.store.job(job_id) else None
    outcome = env.submit(envelope)
    if before is not None:
        assert outcome.status == REJECTED and env.job_keys(job_id) == before  # type: ignore[arg-type]


@functools.cache
def shared_env() -> Env:
    return Env()


# ----- the listener


class Sender:
    def __init__(self, fail: int = 0) -> None:
        self.sent: list[tuple[str, int]] = []
        self.fail = fail
        self.event = threading.Event()

    def __call__(self, submission_id: str, size: int) -> None:
        if self.fail:
            self.fail -= 1
            raise ConnectionError("broker down")
        self.sent.append((submission_id, size))
        self.event.set()


def test_the_listener_sends_one_task_per_message_with_its_id_and_size() -> None:
    env = Env()
    sender = Sender()
    listener = Listener(env.client, env.settings, sender)
    env.client.lpush(env.queue.key, "abc", "de")
    assert listener.step() and listener.step() and not listener.step()
    assert [size for _, size in sender.sent] == [3, 2]
    assert {i for i, _ in sender.sent} == env.client.smembers(env.queue.held_set)


def test_a_failed_send_is_tried_again_before_anything_else() -> None:
    env = Env()
    sender = Sender(fail=1)
    listener = Listener(env.client, env.settings, sender)
    env.client.lpush(env.queue.key, "abc")
    with pytest.raises(ConnectionError):
        listener.step()
    assert listener.unsent and not sender.sent
    assert not listener.step()  # nothing new to take, but the owed task went
    assert [size for _, size in sender.sent] == [3]


def test_a_starting_listener_sends_again_what_a_dead_worker_held() -> None:
    env = Env()
    env.client.lpush(env.queue.key, "held by the dead", "not taken yet")
    dead = env.queue.take()  # moved, then the worker died before sending its task
    assert dead is not None
    sender = Sender()
    assert Listener(env.client, env.settings, sender).step()
    assert sender.sent[0] == dead and len(sender.sent) == 2


def test_the_listener_survives_redis_going_away_and_stops_cleanly() -> None:
    env = Env(submit_poll_seconds=0.01)
    sender = Sender()
    listener = Listener(env.client, env.settings, sender, max_backoff=0.05)
    env.server.connected = False
    listener.start()
    time.sleep(0.3)  # it keeps failing, logging and waiting
    assert listener.thread is not None and listener.thread.is_alive()
    env.server.connected = True
    env.client.lpush(env.queue.key, "after the restart")
    assert sender.event.wait(5)
    listener.stop()
    assert not listener.thread.is_alive()
    assert sender.sent[0][1] == len("after the restart")


def test_the_bootstep_runs_on_workers_of_the_intake_queue_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from worker.celery_app import app
    from worker.settings import get_settings

    assert SubmissionListener in app.steps["worker"]
    monkeypatch.setenv("ERPSYNC_QUEUE", "intake-q")
    get_settings.cache_clear()
    try:
        step = SubmissionListener.__new__(SubmissionListener)

        def worker(*queues: str) -> Any:
            return SimpleNamespace(
                app=SimpleNamespace(amqp=SimpleNamespace(queues=SimpleNamespace(consume_from=queues)))
            )

        assert step.include_if(worker("intake-q", "intake-q.send"))
        assert step.include_if(worker("intake-q"))
        assert not step.include_if(worker("intake-q.send"))
    finally:
        monkeypatch.delenv("ERPSYNC_QUEUE")
        get_settings.cache_clear()


# ----- the task


def test_the_task_queues_intake_for_an_accepted_job(monkeypatch: pytest.MonkeyPatch) -> None:
    import tasks.submissions
    from worker.producer import submissions

    env = Env()
    asked: list[tuple[int, str | None]] = []
    monkeypatch.setattr(submissions, "get_redis", lambda settings=None: env.client)
    monkeypatch.setattr(submissions, "get_settings", lambda: env.settings)
    monkeypatch.setattr(submissions, "request_intake", lambda enqueue, n, job_id=None: asked.append((n, job_id)))
    submission_id = env.push(json.dumps(message(documents=[{}] * 13)))
    result = tasks.submissions.accept_submission(submission_id)
    assert result["status"] == ACCEPTED and result["documents"] == 13
    assert asked == [(10, result["job_id"]), (3, result["job_id"])]
    assert tasks.submissions.accept_submission(submission_id)["status"] == GONE


def test_the_task_message_shows_the_id_and_size_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.unit.fake_runtime import capture_messages
    from worker.celery_app.bootsteps import send_accept
    from worker.pipeline.queue import Message, TaskName

    sent = capture_messages(monkeypatch)
    send_accept("20261121T000000-0123456789ab", 4711)
    assert sent == [
        Message(
            TaskName.ACCEPT_SUBMISSION,
            args=["20261121T000000-0123456789ab"],
            argsrepr="('20261121T000000-0123456789ab', 4711 bytes)",
        )
    ]


# ----- rows per document (schemas/validation.py)


def rows(n: int) -> list[dict[str, Any]]:
    return [{"CustomerRowType": 3, "Text": "x"} for _ in range(n)]


def test_a_document_with_too_many_rows_fails_with_the_lists_path() -> None:
    doc = {"ExternalId": "R-1", "CustomerNr": "1", "InvoiceRows": rows(7)}
    for result in (
        validate_document(INVOICE, doc, max_rows=5),
        validate_document_json(INVOICE, json.dumps(doc), max_rows=5),
        validate_document_json(INVOICE, json.dumps(doc).encode(), max_rows=5),
    ):
        assert isinstance(result, DocumentError)
        assert result.summary() == "InvoiceRows: 7 rows, above the limit of 5 (ERPSYNC_MAX_DOCUMENT_ROWS)"


def test_rows_at_the_limit_and_without_a_limit_are_validated_as_usual() -> None:
    doc = {"ExternalId": "R-1", "CustomerNr": "1", "InvoiceDate": "2026-01-01", "InvoiceRows": rows(5)}
    for max_rows in (5, None):
        by_objects = validate_document(INVOICE, doc, max_rows=max_rows)
        by_text = validate_document_json(INVOICE, json.dumps(doc), max_rows=max_rows)
        assert type(by_objects) is type(by_text)
        assert not isinstance(by_objects, DocumentError) or by_objects == by_text
        assert "rows, above the limit" not in getattr(by_objects, "summary", lambda: "")()


def test_nested_lists_are_counted_too_with_their_paths() -> None:
    doc = {"InvoiceRows": [{"Text": "a"}, {"Tags": list(range(9))}], "Other": {"Deep": [[1] * 4, [2] * 10]}}
    result = validate_document(INVOICE, doc, max_rows=5)
    assert isinstance(result, DocumentError)
    assert [(e.field, e.reason.split(",")[0]) for e in result.errors] == [
        ("InvoiceRows[1].Tags", "9 rows"),
        ("Other.Deep[1]", "10 rows"),
    ]
    assert validate_document_json(INVOICE, json.dumps(doc), max_rows=5) == result


def test_commas_inside_strings_do_not_count_as_rows() -> None:
    doc = {"ExternalId": "R-1", "CustomerNr": "1", "InvoiceRows": rows(2), "Text": "," * 50}
    by_text = validate_document_json(INVOICE, json.dumps(doc), max_rows=5)
    assert not isinstance(by_text, DocumentError) or "rows, above" not in by_text.summary()
