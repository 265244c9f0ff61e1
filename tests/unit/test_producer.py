"""worker/producer/submit.py without Redis or Celery: reading job files, filling in ExternalIds, and a source that
breaks part-way (submit() against fakeredis: the job keeps every document read before, and ends `incomplete`)."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import fakeredis
import pytest
from hypothesis import given
from hypothesis import strategies as st

import worker.producer.submit
from schemas import DocumentKind, Target
from schemas.envelope import JOB_ID_PATTERN, derived_external_id
from schemas.targets import document_type
from worker.cli.commands import main
from worker.cli.console import EXIT_INCOMPLETE
from worker.errors import JobIncomplete, SourceError
from worker.producer.submit import (
    CredentialScan,
    SubmitError,
    _external_id_of,
    encode_document,
    encoded_chunks,
    new_job_id,
    read_documents,
    submit,
)
from worker.settings import DEMO_COMPANY_API_KEY, Settings, get_settings
from worker.store.jobs import SOURCE_ERROR_MAX_CHARS, SourceBreak, close_job
from worker.store.records import CREATED, FAILED, DocStatus, Record, job_summary
from worker.store.results import ResultsStore

DOC_A = {"ExternalId": "R-1", "CustomerNr": "013", "Text": "Καφές"}
DOC_B = {"ExternalId": 2, "CustomerNr": "014"}


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


# ----- read_documents


def test_one_document(tmp_path: Path) -> None:
    path = write(tmp_path, "one.json", json.dumps(DOC_A, ensure_ascii=False))
    assert read_documents(path) == ([DOC_A], {})


def test_a_list(tmp_path: Path) -> None:
    path = write(tmp_path, "list.json", json.dumps([DOC_A, DOC_B], indent=2))
    assert read_documents(path) == ([DOC_A, DOC_B], {})


def test_an_empty_list(tmp_path: Path) -> None:
    assert read_documents(write(tmp_path, "empty.json", "[]")) == ([], {})


def test_an_envelope_returns_its_header(tmp_path: Path) -> None:
    envelope = {"tenant": "acme", "kind": "order", "documents": [DOC_A, DOC_B]}
    path = write(tmp_path, "envelope.json", json.dumps(envelope))
    assert read_documents(path) == ([DOC_A, DOC_B], {"tenant": "acme", "kind": "order"})


def test_an_envelope_header_keeps_known_fields_only_and_skips_nulls(tmp_path: Path) -> None:
    envelope = {
        "tenant": "acme",
        "kind": "customer_invoice",
        "job_id": "nightly-1",
        "source": "pos-17",
        "target": "softone",
        "submitted_at": "2026-01-01T00:00:00Z",
        "extra": "ignored",
        "documents": [DOC_A],
    }
    docs, header = read_documents(write(tmp_path, "env.json", json.dumps(envelope)))
    assert docs == [DOC_A]
    assert header == {
        "tenant": "acme",
        "kind": "customer_invoice",
        "job_id": "nightly-1",
        "source": "pos-17",
        "target": "softone",
    }
    docs, header = read_documents(write(tmp_path, "env2.json", json.dumps({"tenant": None, "documents": []})))
    assert (docs, header) == ([], {})


@pytest.mark.parametrize("name", ["docs.jsonl", "docs.JSONL", "docs.ndjson"])
def test_a_jsonl_file(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, name, "\n".join(json.dumps(d, ensure_ascii=False) for d in (DOC_A, DOC_B)) + "\n")
    assert read_documents(path) == ([DOC_A, DOC_B], {})


def test_a_jsonl_file_of_one_line_without_newline(tmp_path: Path) -> None:
    assert read_documents(write(tmp_path, "one.jsonl", json.dumps(DOC_A))) == ([DOC_A], {})


@pytest.mark.parametrize("name", ["docs.json", "docs.txt", "docs"])
def test_json_lines_without_the_jsonl_extension(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, name, f"{json.dumps(DOC_A)}\n{json.dumps(DOC_B)}\n")
    assert read_documents(path) == ([DOC_A, DOC_B], {})


@pytest.mark.parametrize("name", ["blank.jsonl", "blank.json"])
def test_blank_lines_and_crlf_are_skipped(tmp_path: Path, name: str) -> None:
    text = f"\r\n{json.dumps(DOC_A)}\r\n   \r\n\t\r\n{json.dumps(DOC_B)}\r\n\r\n"
    assert read_documents(write(tmp_path, name, text)) == ([DOC_A, DOC_B], {})


def test_a_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, "bom.json", "\ufeff".encode() + json.dumps([DOC_A], ensure_ascii=False).encode())
    assert read_documents(path) == ([DOC_A], {})


def test_invalid_json_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.json", '[\n  {"ExternalId": "R-1"},\n  {"ExternalId": }\n]\n')
    with pytest.raises(SubmitError) as info:
        read_documents(path)
    message = str(info.value)
    assert "bad.json" in message and "not valid JSON" in message
    assert "line 3" in message and "column 18" in message


def test_invalid_jsonl_line_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.jsonl", f'{json.dumps(DOC_A)}\n\n{{"ExternalId": "R-3",}}\n')
    with pytest.raises(SubmitError, match=r"bad\.jsonl, line 3: not valid JSON"):
        read_documents(path)


def test_invalid_line_in_json_lines_without_extension_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "lines.json", f"{json.dumps(DOC_A)}\n{json.dumps(DOC_B)}\n{{oops\n")
    with pytest.raises(SubmitError, match="line 3"):
        read_documents(path)


def test_non_utf8_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "latin1.json", '{"Text": "café"}'.encode("latin-1"))
    with pytest.raises(SubmitError, match="not UTF-8"):
        read_documents(path)


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SubmitError, match="cannot read"):
        read_documents(tmp_path / "nope.json")


@pytest.mark.parametrize("text", ["42", '"text"', "null", "true"])
def test_a_scalar_is_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises(SubmitError, match="expected a document, a list or an envelope"):
        read_documents(write(tmp_path, "scalar.json", text))


def test_an_empty_file_is_invalid_json(tmp_path: Path) -> None:
    with pytest.raises(SubmitError, match="not valid JSON"):
        read_documents(write(tmp_path, "empty.json", ""))


@pytest.mark.parametrize("char", ["\u2028", "\u2029", "\x85"])
def test_jsonl_strings_may_hold_unicode_line_separators(tmp_path: Path, char: str) -> None:
    doc = {"ExternalId": "R-9", "Text": f"first{char}second"}
    line = json.dumps(doc, ensure_ascii=False)
    assert char in line  # the producer's own encoder leaves it unescaped
    path = write(tmp_path, "sep.jsonl", f"{json.dumps(DOC_A)}\n{line}\n")
    assert read_documents(path) == ([DOC_A, doc], {})


# ----- ExternalId


def test_a_missing_external_id_is_derived_and_written_on_the_document() -> None:
    doc: dict[str, Any] = {"CustomerNr": "013"}
    assert _external_id_of(doc, "job-1", 4) == "job-1#4"
    assert doc["ExternalId"] == "job-1#4" == derived_external_id("job-1", 4)


@pytest.mark.parametrize("empty", [None, ""])
def test_an_empty_external_id_is_derived(empty: Any) -> None:
    doc: dict[str, Any] = {"ExternalId": empty}
    assert _external_id_of(doc, "job-1", 0) == "job-1#0"
    assert doc["ExternalId"] == "job-1#0"


def test_a_given_external_id_is_kept() -> None:
    doc: dict[str, Any] = {"ExternalId": "POS-17/2026-0001"}
    assert _external_id_of(doc, "job-1", 3) == "POS-17/2026-0001"
    assert doc["ExternalId"] == "POS-17/2026-0001"


@pytest.mark.parametrize(("value", "text"), [(42, "42"), (0, "0"), (-7, "-7"), (10**20, "100000000000000000000")])
def test_an_integer_external_id_is_kept_as_text(value: int, text: str) -> None:
    doc: dict[str, Any] = {"ExternalId": value}
    assert _external_id_of(doc, "job-1", 3) == text
    assert doc["ExternalId"] == text  # written back: index, results and ERP see the same id


@pytest.mark.parametrize("doc", [["not", "an", "object"], "text", 7, None])
def test_a_document_that_is_not_an_object_gets_a_derived_id(doc: Any) -> None:
    assert _external_id_of(doc, "job-1", 9) == "job-1#9"


def test_derived_ids_are_unique_per_position() -> None:
    ids = [_external_id_of({}, "job-1", i) for i in range(100)]
    assert len(set(ids)) == 100


@pytest.mark.parametrize("given", [" R-1 ", "   "])
def test_the_id_returned_is_the_id_the_document_carries(given: str) -> None:
    doc: dict[str, Any] = {"ExternalId": given}
    external_id = _external_id_of(doc, "job-1", 2)
    assert str(doc["ExternalId"]) == external_id


def test_new_job_ids_are_valid_and_unique() -> None:
    ids = {new_job_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(re.match(JOB_ID_PATTERN, i) for i in ids)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4),
    max_leaves=12,
)


@given(json_values)
def test_a_document_is_stored_with_the_values_the_stdlib_would_write(value: Any) -> None:
    # Floats may be written differently (0.00001 for the stdlib's 1e-05): the same double either way.
    assert json.loads(encode_document(value)) == value


@given(st.text())
def test_text_is_escaped_as_the_stdlib_escapes_it(text: str) -> None:
    # The credential scan looks for the escaped forms of the secrets in the stored text.
    assert encode_document({"Note": text}) == json.dumps({"Note": text}, ensure_ascii=False, separators=(",", ":"))


def test_nan_and_infinity_stay_for_the_worker_to_refuse() -> None:
    assert encode_document({"Quantity": float("nan"), "UnitPrice": float("inf")}) == (
        '{"Quantity":NaN,"UnitPrice":Infinity}'
    )


# ----- a source that breaks part-way: submit() keeps every document read before it, in an `incomplete` job
# (against fakeredis: its Lua runs the store's scripts; no Celery: the intake requests are only counted)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """A fakeredis behind the producer and the CLI, settings with chunks of 10, and the intake requests made."""
    monkeypatch.setenv("ERPSYNC_KEY_PREFIX", "brk")
    monkeypatch.setenv("ERPSYNC_INTAKE_CHUNK_DOCS", "10")
    get_settings.cache_clear()
    client = fakeredis.FakeRedis(decode_responses=True)
    requested: list[int] = []
    monkeypatch.setattr(worker.producer.submit, "get_redis", lambda settings=None: client)
    monkeypatch.setattr("worker.store.client.get_redis", lambda settings=None: client)
    monkeypatch.setattr(worker.producer.submit, "request_intake", lambda enqueue, n, job_id=None: requested.append(n))
    settings = get_settings()
    yield SimpleNamespace(client=client, settings=settings, store=ResultsStore(client, settings), requested=requested)
    get_settings.cache_clear()


def broken(n: int, error: Exception) -> Iterator[dict[str, Any]]:
    """`n` documents R-1 .. R-n, then `error`, as a source that breaks after them does."""
    for i in range(1, n + 1):
        yield {"ExternalId": f"R-{i}", "CustomerNr": "1001"}
    raise error


def bad_line(line: int) -> SourceError:
    return SourceError(
        f"f.jsonl, line {line}: not valid JSON (Expecting value)", reason="not valid JSON (Expecting value)", line=line
    )


def settle_all(store: ResultsStore, job_id: str, status: DocStatus = CREATED, failed: int = 0) -> dict[str, str]:
    """Give every document of the job an outcome (the first `failed` ones fail), as the workers would."""
    records = store.records(job_id)
    updates = [
        (job_id, i, Record(r.external_id, FAILED if i < failed else status, key=None if i < failed else 100 + i))
        for i, r in enumerate(records)
    ]
    store.set_records(updates)
    job = store.job(job_id)
    assert job is not None
    return job


def test_a_source_broken_part_way_keeps_every_document_read_before_it(fake: SimpleNamespace) -> None:
    with pytest.raises(JobIncomplete) as info:
        submit(broken(25, bad_line(26)), job_id="cut-25", settings=fake.settings)
    error = info.value
    assert (error.job_id, error.stored, error.line) == ("cut-25", 25, 26)
    assert str(error) == "line 26: not valid JSON (Expecting value); the job keeps the 25 documents read before it"
    job = fake.store.job("cut-25")
    assert job is not None and job["total"] == "25" and job["n_pending"] == "25"  # the last 5: a partial chunk
    assert job["status"] == "queued"  # closed: it finishes once its documents have their outcomes
    assert (job["source_error"], job["source_error_line"]) == ("not valid JSON (Expecting value)", "26")
    assert [json.loads(d)["ExternalId"] for d in fake.store.documents("cut-25")] == [f"R-{i}" for i in range(1, 26)]
    assert fake.requested == [10, 10, 5]
    job = settle_all(fake.store, "cut-25")
    assert job["status"] == "incomplete" and job["n_created"] == "25" and job["finished_at"]
    summary = job_summary(job)
    assert (summary["source_error_line"], summary["source_error"]) == (26, "not valid JSON (Expecting value)")


def test_incomplete_wins_over_the_documents_outcomes_and_the_counts_still_tell_them(fake: SimpleNamespace) -> None:
    for job_id, failed in (("some-failed", 2), ("all-failed", 6)):
        with pytest.raises(JobIncomplete):
            submit(broken(6, bad_line(7)), job_id=job_id, settings=fake.settings)
        job = settle_all(fake.store, job_id, failed=failed)
        assert job["status"] == "incomplete"
        assert (job["n_failed"], job["n_created"]) == (str(failed), str(6 - failed))


def test_a_small_file_broken_at_line_7_of_10_makes_its_job_too(fake: SimpleNamespace) -> None:
    with pytest.raises(JobIncomplete, match=r"; the job keeps the 6 documents read before it$") as info:
        submit(broken(6, bad_line(7)), job_id="small", settings=fake.settings)
    assert info.value.stored == 6
    job = fake.store.job("small")
    assert job is not None and job["total"] == "6" and job["lane"] == "interactive"
    with pytest.raises(JobIncomplete, match=r"; the job keeps the 1 document read before it$"):
        submit(broken(1, bad_line(2)), job_id="one", settings=fake.settings)


def test_the_lane_read_ahead_keeps_the_chunks_read_before_the_break(fake: SimpleNamespace) -> None:
    # No priority: chunks are read ahead (choose_lane) while the job may still be interactive (<= 100 documents).
    with pytest.raises(JobIncomplete):
        submit(broken(35, bad_line(36)), job_id="ahead", settings=fake.settings)
    job = fake.store.job("ahead")
    assert job is not None and job["total"] == "35" and job["lane"] == "interactive"
    assert fake.requested == [10, 10, 10, 5]


def test_a_source_broken_before_its_first_document_makes_no_job(fake: SimpleNamespace) -> None:
    with pytest.raises(SourceError, match=r"^f\.jsonl, line 1: not valid JSON"):
        submit(broken(0, bad_line(1)), job_id="none", settings=fake.settings)
    with pytest.raises(SubmitError, match=r"^the source of the documents raised KeyError; no document was read"):
        submit(broken(0, KeyError("x")), job_id="none", settings=fake.settings)
    assert fake.store.job("none") is None and fake.requested == []


def test_any_other_error_of_the_source_is_named_by_its_type_only(fake: SimpleNamespace) -> None:
    with pytest.raises(JobIncomplete) as info:
        submit(broken(3, ValueError("customer 1001 Anna Andersson")), job_id="other", settings=fake.settings)
    assert info.value.line is None and info.value.reason == "the source of the documents raised ValueError"
    job = fake.store.job("other")
    assert job is not None and "source_error_line" not in job and "Anna" not in json.dumps(job)
    with pytest.raises(JobIncomplete, match=r"^the source could not be read on \(Input/output error\)"):
        submit(broken(3, OSError(5, "Input/output error")), job_id="io", settings=fake.settings)


def test_more_documents_than_a_job_may_hold_keep_the_first_ones_and_say_so(
    fake: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = fake.settings.model_copy(update={"max_job_documents": 12})
    docs = ({"ExternalId": f"R-{i}", "Text": DEMO_COMPANY_API_KEY if i == 11 else "x"} for i in range(25))
    with pytest.raises(JobIncomplete) as info:
        submit(docs, job_id="many", settings=settings)
    assert info.value.stored == 12 and info.value.line is None
    assert "more than 12 documents in one job (ERPSYNC_MAX_JOB_DOCUMENTS)" in info.value.reason
    job = fake.store.job("many")
    assert job is not None and job["total"] == "12" and "ERPSYNC_MAX_JOB_DOCUMENTS" in job["source_error"]
    assert [r.status for r in fake.store.records("many")] == ["pending"] * 11 + ["failed"]  # a credential: refused


def test_the_limit_is_the_reason_when_the_source_also_breaks_after_it(fake: SimpleNamespace) -> None:
    settings = fake.settings.model_copy(update={"max_job_documents": 12})
    with pytest.raises(JobIncomplete) as info:
        submit(broken(15, bad_line(16)), job_id="both", settings=settings)  # the last chunk: 5 documents, 2 fit
    assert info.value.stored == 12 and "ERPSYNC_MAX_JOB_DOCUMENTS" in info.value.reason and info.value.line is None


def test_a_submit_stopped_while_storing_closes_its_job_incomplete(
    fake: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored: list[int] = []

    def store_chunk(*args: Any) -> None:
        if stored:
            raise KeyboardInterrupt
        stored.append(1)
        real_store_chunk(*args)

    real_store_chunk = worker.producer.submit.store_chunk
    monkeypatch.setattr(worker.producer.submit, "store_chunk", store_chunk)
    with pytest.raises(KeyboardInterrupt):
        submit(({"ExternalId": f"R-{i}"} for i in range(30)), job_id="ctrl-c", priority="bulk", settings=fake.settings)
    job = fake.store.job("ctrl-c")
    assert job is not None and job["total"] == "10"
    assert job["source_error"] == "submitting stopped part-way (KeyboardInterrupt)"
    assert settle_all(fake.store, "ctrl-c")["status"] == "incomplete"


def test_a_whole_source_still_ends_as_its_documents_say(fake: SimpleNamespace) -> None:
    job_id = submit(({"ExternalId": f"R-{i}"} for i in range(12)), job_id="whole", settings=fake.settings)
    job = settle_all(fake.store, job_id)
    assert job["status"] == "succeeded" and "source_error" not in job
    assert job_summary(job)["source_error"] is None


def test_closing_with_a_source_break_leaves_a_closed_job_as_it_is(fake: SimpleNamespace) -> None:
    job_id = submit([{"ExternalId": "R-1"}], job_id="closed", settings=fake.settings)
    close_job(fake.store, job_id, SourceBreak("late", 3))
    job = fake.store.job(job_id)
    assert job is not None and "source_error" not in job and job["status"] == "queued"


def test_a_long_reason_is_cut_in_the_job() -> None:
    assert SourceBreak("r" * 900, 4).fields() == {
        "source_error": "r" * SOURCE_ERROR_MAX_CHARS,
        "source_error_line": "4",
    }
    assert SourceBreak("", None).fields() == {"source_error": "the source broke"}


def test_encoded_chunks_yield_the_documents_read_before_the_source_raises() -> None:
    doc_type = document_type(Target.SOFTONE, DocumentKind.CUSTOMER_INVOICE)
    scan = CredentialScan(Settings())
    chunks = encoded_chunks(broken(13, bad_line(14)), "j", 10, doc_type, scan)
    assert [len(ids) for ids, _, _ in itertools.islice(chunks, 2)] == [10, 3]
    with pytest.raises(SourceError):
        next(chunks)


# ----- `erpsync submit` of a broken file: the job, one line on stderr, exit code 4 (EXIT_INCOMPLETE)


def broken_jsonl(tmp_path: Path, good: int, total: int) -> Path:
    """A JSONL file of `total` lines whose line `good + 1` is cut short."""
    lines = [json.dumps({"ExternalId": f"R-{i}", "CustomerNr": "1001"}) for i in range(1, total + 1)]
    lines[good] = '{"ExternalId": '
    return write(tmp_path, "cut.jsonl", "\n".join(lines) + "\n")


def test_cli_submit_of_a_broken_file_says_so_and_exits_4(
    fake: SimpleNamespace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert EXIT_INCOMPLETE == 4
    assert main(["submit", str(broken_jsonl(tmp_path, 6, 10))]) == EXIT_INCOMPLETE
    captured = capsys.readouterr()
    assert (
        captured.err
        == "error: line 7: not valid JSON (Expecting value); the job keeps the 6 documents read before it\n"
    )
    job_id = re.search(r"submitted job (\S+) \(6 documents", captured.out)
    assert job_id is not None
    job = fake.store.job(job_id.group(1))
    assert job is not None and job["total"] == "6" and job["source_error_line"] == "7"


def test_cli_submit_json_says_where_the_file_broke(
    fake: SimpleNamespace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["submit", "--json", str(broken_jsonl(tmp_path, 1, 3))]) == EXIT_INCOMPLETE
    captured = capsys.readouterr()
    printed = json.loads(captured.out)
    assert printed["documents"] == 1 and printed["source_error_line"] == 2
    assert printed["source_error"] == "not valid JSON (Expecting value)"
    assert captured.err.endswith("; the job keeps the 1 document read before it\n")


def test_cli_submit_wait_waits_for_the_stored_documents_then_exits_4(
    fake: SimpleNamespace, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    waited: list[str] = []

    def wait_for(job_id: str, *, timeout: float, settings: Any = None) -> dict[str, str]:
        waited.append(job_id)
        return settle_all(fake.store, job_id, failed=1)  # what the workers do meanwhile

    monkeypatch.setattr(worker.producer.submit, "wait_for", wait_for)
    assert main(["submit", "--wait", "--json", str(broken_jsonl(tmp_path, 6, 10))]) == EXIT_INCOMPLETE
    payload = json.loads(capsys.readouterr().out)
    assert payload["job_id"] == waited[0] and payload["status"] == "incomplete"
    assert (payload["source_error_line"], payload["source_error"]) == (7, "not valid JSON (Expecting value)")
    assert [r["status"] for r in payload["records"]] == ["failed"] + ["created"] * 5

    assert main(["results", waited[0]]) == EXIT_INCOMPLETE
    shown = " ".join(capsys.readouterr().out.split())
    assert (
        "incomplete: the source broke at line 7: not valid JSON (Expecting value); the job holds the 6 documents"
        in shown
    )
    assert main(["status", "--json", waited[0]]) == EXIT_INCOMPLETE
    summary = json.loads(capsys.readouterr().out)
    assert (summary["status"], summary["source_error_line"], summary["total"]) == ("incomplete", 7, 6)
    assert main(["status", waited[0]]) == EXIT_INCOMPLETE
    shown = " ".join(capsys.readouterr().out.split())
    assert (
        "incomplete: the source broke at line 7: not valid JSON (Expecting value); the job holds the 6 documents"
        in shown
    )


def test_cli_submit_of_a_file_broken_at_its_first_line_makes_no_job(
    fake: SimpleNamespace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["submit", str(broken_jsonl(tmp_path, 0, 3))]) == 2
    assert "line 1: not valid JSON" in capsys.readouterr().err
    assert fake.client.keys("brk:job:*") == []
