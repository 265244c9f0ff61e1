"""worker/producer/submit.py without Redis or Celery: reading job files and filling in ExternalIds."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.envelope import JOB_ID_PATTERN, derived_external_id
from worker.producer.submit import SubmitError, _external_id_of, encode_document, new_job_id, read_documents

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
