"""Every example file is valid for its target and kind, read and validated as `erpsync submit` and intake do.

examples/README.md has a table of the files: target, kind, tenant and the options to submit a bare file with. Each
file is opened with the reader `erpsync submit` uses (worker/producer/ingest.py: its envelope fields, JSONL or CSV),
its job checked as `submit()` checks it (JobEnvelope: the target takes the kind, the operation its actions), its
documents encoded as they are stored (`encoded_chunks`: ids filled in, credentials refused) and validated by what the
intake runs on the stored text (`validate_document_json`, or `validate_action` for an `act` job). No Redis, no HTTP.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import NamedTuple

import pytest

from schemas import JobEnvelope
from schemas.kinds import DocumentKind, Target
from schemas.targets import DOCUMENT_TYPES, job_document_type
from schemas.validation import DocumentError, validate_action, validate_document_json
from worker.producer.ingest import open_source
from worker.producer.submit import CredentialScan, encoded_chunks
from worker.settings import Settings

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DATA_SUFFIXES = (".json", ".jsonl", ".csv")


class Example(NamedTuple):
    """A row of examples/README.md's table."""

    file: str
    target: Target
    kind: DocumentKind
    tenant: str


def documented() -> list[Example]:
    """The table of examples/README.md: `| `file` | target | kind | tenant | submit with | what it is |`."""
    rows = []
    for line in (EXAMPLES / "README.md").read_text(encoding="utf-8").splitlines():
        match = re.match(r"^\| `([^`]+)` \| (\w+) \| (\w+) \| ([\w.-]+) \|", line)
        if match:
            name, target, kind, tenant = match.groups()
            rows.append(Example(name, Target(target), DocumentKind(kind), tenant))
    return rows


EXAMPLE_ROWS = documented()


def settings() -> Settings:
    """The built-in demo tenants, whatever the environment says (the examples name them)."""
    return Settings(demo_tenant=True, tenants_file=None, default_tenant="demo")


def test_every_example_file_is_documented_once_and_every_row_has_its_file() -> None:
    files = sorted(p.name for p in EXAMPLES.iterdir() if p.suffix in DATA_SUFFIXES)
    names = [row.file for row in EXAMPLE_ROWS]
    assert len(names) == len(set(names))
    assert sorted(names) == files


def test_every_target_and_kind_has_an_example() -> None:
    covered = {(row.target, row.kind) for row in EXAMPLE_ROWS}
    assert set(DOCUMENT_TYPES) - covered == set()


@pytest.mark.parametrize("example", EXAMPLE_ROWS, ids=lambda e: e.file)
def test_the_example_validates_as_erpsync_submit_reads_it(example: Example) -> None:
    config = settings()
    source = open_source(EXAMPLES / example.file)
    header = source.header
    # An envelope's own fields must agree with the table (a bare file takes the table's as command-line options).
    assert header.get("tenant", example.tenant) == example.tenant
    assert header.get("kind", example.kind.value) == example.kind.value
    tenant = config.tenant(example.tenant)
    assert tenant.target is example.target
    operation = header.get("operation") or "create"
    job_id = "example-" + re.sub(r"[^A-Za-z0-9]", "-", example.file)
    envelope = JobEnvelope(  # as submit() checks the job: this target takes this kind (and these actions)
        job_id=job_id,
        tenant=example.tenant,
        target=tenant.target.value,
        kind=example.kind,
        documents=[{}],
        source=header.get("source"),
        priority=header.get("priority"),
        operation=operation,
    )
    doc_type = job_document_type(envelope.target, envelope.kind, envelope.operation)
    chunks = list(
        encoded_chunks(source.documents(), job_id, config.intake_chunk_docs, doc_type, CredentialScan(config))
    )
    texts = [text for _ids, encoded, _refused in chunks for text in encoded]
    assert texts, "no documents"
    assert [refused for _ids, _encoded, refused in chunks if refused] == []  # no demo credential in a document
    problems = {}
    for position, text in enumerate(texts):
        result: object
        if envelope.operation == "act":
            result = validate_action(envelope.kind, text, envelope.target)
        else:
            result = validate_document_json(envelope.kind, text, envelope.target, config.max_document_rows)
        if isinstance(result, DocumentError):
            problems[position] = result.summary()
    assert problems == {}


def test_the_csv_holds_the_jsonl_days_first_50_receipts() -> None:
    # examples/README.md says so (and the tour in README.md relies on it: the CSV after the JSONL is 50 duplicates).
    csv_docs = list(open_source(EXAMPLES / "pos-end-of-day.csv").documents())
    jsonl_docs = list(open_source(EXAMPLES / "pos-end-of-day.jsonl").documents())
    assert (len(csv_docs), len(jsonl_docs)) == (50, 600)
    kind = DocumentKind.CUSTOMER_INVOICE
    for from_csv, from_jsonl in zip(csv_docs, jsonl_docs, strict=False):
        wire = []
        for doc in (from_csv, from_jsonl):
            valid = validate_document_json(kind, json.dumps(doc), Target.SOFTONE)
            assert not isinstance(valid, DocumentError), valid.summary()
            wire.append(json.loads(valid.to_wire_json()))
        assert wire[0] == wire[1]


def test_a_bad_example_would_fail(tmp_path: Path) -> None:
    # The same path refuses what the ERP's model refuses: a Fortnox invoice row with a read-only field.
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "tenant": "demo-fortnox",
                "kind": "customer_invoice",
                "documents": [{"CustomerNumber": "1001", "InvoiceRows": [{"Price": 1, "Total": 1}]}],
            }
        ),
        encoding="utf-8",
    )
    config = settings()
    doc_type = job_document_type(Target.FORTNOX, DocumentKind.CUSTOMER_INVOICE)
    source = open_source(bad)
    (_ids, encoded, _refused), *_ = encoded_chunks(source.documents(), "j", 1000, doc_type, CredentialScan(config))
    result = validate_document_json(DocumentKind.CUSTOMER_INVOICE, encoded[0], Target.FORTNOX)
    assert isinstance(result, DocumentError)
    assert "InvoiceRows[0].Total" in result.summary()
