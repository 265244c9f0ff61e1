"""Honest partial files (issue 26): a file that breaks part-way makes a job of every document read before the bad
line, processed like any, that ends `incomplete` with the line and the reason in the job; `erpsync submit --wait`
waits for those documents and exits 4 (EXIT_INCOMPLETE). Big and small files alike; a raw producer says the same
with its message's `source_error`.

Real Redis, a real Celery worker and the sandbox over HTTP (tests/integration/conftest.py, `stack`)."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from tests.integration.conftest import ledger_for, pos_invoice, wait_job
from worker.archive.database import engine_for
from worker.archive.history import job as archived_job
from worker.cli.console import EXIT_INCOMPLETE
from worker.devstack.stack import LocalStack
from worker.settings import get_settings
from worker.store import client as redis_client
from worker.store.results import ResultsStore

BAD_LINE = '{"ExternalId": "cut-short", "CustomerNr": '  # a line that ends where its value should be


def write_cut_file(path: Path, docs: list[dict[str, Any]], bad_line: int, total_lines: int) -> None:
    """A JSONL file of `total_lines` lines: `docs` on the lines before `bad_line`, a broken line there, and more
    valid documents after it (which must never be read)."""
    assert len(docs) == total_lines and bad_line <= total_lines
    lines = [json.dumps(d, ensure_ascii=False) for d in docs]
    lines[bad_line - 1] = BAD_LINE
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def store() -> ResultsStore:
    settings = get_settings()
    return ResultsStore(redis_client.get_redis(settings), settings)


def check_incomplete_job(
    stack: LocalStack,
    sandbox: httpx.Client,
    path: Path,
    docs: list[dict[str, Any]],
    bad_line: int,
    failing: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """`erpsync submit --wait --json` of the cut file: exit 4, the one stderr line, and a job `incomplete` holding
    exactly the documents before the bad line, each with its outcome (created with its Key in the sandbox's ledger,
    or failed when it is one of `failing`); none after it was read or sent."""
    kept = bad_line - 1
    done = stack.erpsync("submit", str(path), "--wait", "--json", "--timeout", "600")
    documents = "1 document" if kept == 1 else f"{kept} documents"
    expected = f"error: line {bad_line}: not valid JSON (Expecting value); the job keeps the {documents} read before it"
    assert done.returncode == EXIT_INCOMPLETE, (done.returncode, done.stderr, stack.logs()[-3000:])
    assert expected in done.stderr.splitlines(), done.stderr
    payload = json.loads(done.stdout)
    assert payload["status"] == "incomplete"
    assert (payload["source_error_line"], payload["source_error"]) == (bad_line, "not valid JSON (Expecting value)")

    records = payload["records"]
    before = [d["ExternalId"] for d in docs[:kept]]
    assert [r["external_id"] for r in records] == before
    for r in records:
        if r["external_id"] in failing:
            assert r["status"] == "failed" and r["key"] is None and r["error"], r
        else:
            assert r["status"] == "created" and isinstance(r["key"], int), r
    ledger = ledger_for(sandbox, {d["ExternalId"] for d in docs})
    assert sorted(e["external_id"] for e in ledger) == sorted(set(before) - failing)  # each once, none after the line
    keys = {r["external_id"]: r["key"] for r in records if r["status"] == "created"}
    assert {e["external_id"]: e["key"] for e in ledger} == keys

    job = store().job(payload["job_id"])
    assert job is not None
    assert (job["status"], job["total"], job["source_error_line"]) == ("incomplete", str(kept), str(bad_line))
    assert (job["n_created"], job["n_failed"], job["n_pending"]) == (str(kept - len(failing)), str(len(failing)), "0")

    status = stack.erpsync("status", payload["job_id"], "--json")
    assert status.returncode == EXIT_INCOMPLETE, status.stderr
    summary = json.loads(status.stdout)
    assert (summary["status"], summary["source_error_line"], summary["total"]) == ("incomplete", bad_line, kept)
    shown = stack.erpsync("results", payload["job_id"])
    assert shown.returncode == EXIT_INCOMPLETE
    assert f"the source broke at line {bad_line}: not valid JSON" in " ".join(shown.stdout.split())
    return payload


def test_a_jsonl_broken_at_line_1501_of_2501_keeps_the_1500_documents_before_it(
    stack: LocalStack, sandbox: httpx.Client, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    docs = [pos_invoice(f"{tag}-{i}", customer=str(1000 + i % 50), rows=1) for i in range(1, 2502)]
    path = tmp_path / "eod.jsonl"
    write_cut_file(path, docs, bad_line=1501, total_lines=2501)
    check_incomplete_job(stack, sandbox, path, docs, bad_line=1501)


def test_a_jsonl_broken_at_line_7_of_10_makes_a_job_too_and_incomplete_wins_over_a_failure(
    stack: LocalStack, sandbox: httpx.Client, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    docs = [pos_invoice(f"{tag}-{i}", customer="1001") for i in range(1, 11)]
    docs[2] = pos_invoice(f"{tag}-3", customer="UNKNOWN-1")  # the sandbox refuses this customer: failed
    path = tmp_path / "small.jsonl"
    write_cut_file(path, docs, bad_line=7, total_lines=10)
    payload = check_incomplete_job(stack, sandbox, path, docs, bad_line=7, failing=frozenset({f"{tag}-3"}))

    # The archive keeps the job's summary too: `incomplete`, and where its source broke as its reason.
    engine = engine_for(get_settings().archive_url)
    deadline = time.monotonic() + 120
    while (archived := archived_job(engine, payload["job_id"])) is None:  # the archiver drains the outbox
        assert time.monotonic() < deadline, f"the job was not archived:\n{stack.logs()[-3000:]}"
        time.sleep(0.2)
    assert (archived["status"], archived["total"]) == ("incomplete", 6)
    assert archived["reason"] == "the source broke at line 7: not valid JSON (Expecting value)"
    assert (archived["counts"]["created"], archived["counts"]["failed"]) == (5, 1)


def test_a_csv_broken_part_way_without_wait_exits_4_at_once_and_its_job_ends_incomplete(
    stack: LocalStack, sandbox: httpx.Client, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    head = "receipt_id,customer_nr,date,article,text,quantity,unit_price,discount,vat_rate"
    rows = [f"{tag}-{n},1001,2026-11-20,A{n},Bulle,1,24.50,,12" for n in (1, 2, 3)]
    rows.insert(2, f'{tag}-2,1001,"2026"-11-20,B,Kaka,1,10,,12')  # line 4: a stray quote, in receipt 2
    path = tmp_path / "pos.csv"
    path.write_text("\n".join([head, *rows]) + "\n", encoding="utf-8")

    submitted = stack.erpsync("submit", str(path), "--json")
    assert submitted.returncode == EXIT_INCOMPLETE, submitted.stderr
    printed = json.loads(submitted.stdout)
    assert printed["documents"] == 1 and printed["source_error_line"] == 4
    assert f"receipt {tag}-2, open at that line, is left out" in printed["source_error"]
    [line] = submitted.stderr.splitlines()
    assert line.startswith("error: line 4: not valid CSV (") and line.endswith(
        "the job keeps the 1 document read before it"
    )

    result = wait_job(stack, printed["job_id"])
    assert result["status"] == "incomplete" and [r["external_id"] for r in result["records"]] == [f"{tag}-1"]
    assert result["records"][0]["status"] == "created"
    assert [e["external_id"] for e in ledger_for(sandbox, {f"{tag}-{n}" for n in (1, 2, 3)})] == [f"{tag}-1"]


def test_a_raw_producer_says_its_source_broke_and_the_job_ends_incomplete(
    stack: LocalStack, sandbox: httpx.Client
) -> None:
    tag = uuid.uuid4().hex[:8]
    settings = get_settings()
    message = {
        "job_id": f"raw-{tag}",
        "tenant": "demo",
        "kind": "customer_invoice",
        "documents": [pos_invoice(f"{tag}-{i}") for i in range(3)],
        "source_error": {"line": 4, "reason": "the export was cut short"},
    }
    client = redis_client.get_redis(settings)
    client.lpush(f"{settings.key_prefix}:submit", json.dumps(message))
    deadline = time.monotonic() + 120
    while store().job(f"raw-{tag}") is None:  # until a worker's listener has taken and stored the message
        assert time.monotonic() < deadline, f"the message was not taken:\n{stack.logs()[-3000:]}"
        time.sleep(0.2)
    result = wait_job(stack, f"raw-{tag}")
    assert result["status"] == "incomplete"
    assert (result["source_error_line"], result["source_error"]) == (4, "the export was cut short")
    assert [r["status"] for r in result["records"]] == ["created"] * 3
    assert len(ledger_for(sandbox, {f"{tag}-{i}" for i in range(3)})) == 3
