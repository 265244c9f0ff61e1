"""worker/producer/ingest.py: streaming JSON/JSONL readers and the POS end-of-day CSV reader, and the CSV generator."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import re
import subprocess
import sys
import tracemalloc
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import DocumentKind
from schemas.types import AMOUNT_ERROR
from schemas.validation import DocumentError, validate_document
from worker.errors import SourceError
from worker.producer.ingest import CSV_COLUMNS, Source, normalise_number, open_source
from worker.producer.submit import SubmitError, read_documents

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

DOC_A = {"ExternalId": "R-1", "CustomerNr": "013", "Text": "Καφές"}
DOC_B = {"ExternalId": 2, "CustomerNr": "014"}

CSV_HEAD = "receipt_id,customer_nr,date,article,text,quantity,unit_price,discount,vat_rate"


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", newline="")
    return path


def read(path: Path, fmt: str | None = None) -> tuple[list[Any], Source]:
    source = open_source(path, fmt)
    return list(source.documents()), source


def count_with_peak_memory(source: Source) -> tuple[int, int]:
    """How many documents the source yields, and the peak of traced Python memory while reading them."""
    tracemalloc.start()
    try:
        count = sum(1 for _ in source.documents())
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return count, peak


def valid(doc: Any) -> Any:
    result = validate_document(DocumentKind.CUSTOMER_INVOICE, doc)
    assert not isinstance(result, DocumentError), result.summary()
    return result


def errors_of(doc: Any) -> dict[str, str]:
    result = validate_document(DocumentKind.CUSTOMER_INVOICE, doc)
    assert isinstance(result, DocumentError), "the document should be invalid"
    return {e.field: e.reason for e in result.errors}


@pytest.fixture(scope="module")
def generator() -> ModuleType:
    """examples/make_pos_day.py as a module (examples/ is no package)."""
    spec = importlib.util.spec_from_file_location("make_pos_day", EXAMPLES / "make_pos_day.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ----- format choice and errors common to all formats


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("a.jsonl", "jsonl"),
        ("a.NDJSON", "jsonl"),
        ("a.csv", "csv"),
        ("a.TSV", "csv"),
        ("a.json", "json"),
        ("a", "json"),
    ],
)
def test_the_format_follows_the_suffix(tmp_path: Path, name: str, fmt: str) -> None:
    text = f"{CSV_HEAD}\n" if fmt == "csv" else json.dumps([DOC_A])
    assert open_source(write(tmp_path, name, text)).format == fmt


def test_an_explicit_format_wins_over_the_suffix(tmp_path: Path) -> None:
    path = write(tmp_path, "export.txt", f"{CSV_HEAD}\nR1,1,2026-11-20,A,T,1,2,,25\n")
    docs, source = read(path, "csv")
    assert source.format == "csv" and len(docs) == 1


def test_an_unknown_format_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SubmitError, match="unknown file format 'xml'"):
        open_source(write(tmp_path, "a.xml", "<a/>"), "xml")


@pytest.mark.parametrize("name", ["nope.json", "nope.jsonl", "nope.csv"])
def test_a_missing_file_is_refused_when_opened(tmp_path: Path, name: str) -> None:
    with pytest.raises(SubmitError, match="cannot read"):
        open_source(tmp_path / name)


def test_documents_may_be_called_once(tmp_path: Path) -> None:
    source = open_source(write(tmp_path, "a.jsonl", json.dumps(DOC_A)))
    list(source.documents())
    with pytest.raises(RuntimeError, match="already called"):
        source.documents()


# ----- JSONL


def jsonl(*docs: Any) -> str:
    return "".join(json.dumps(doc, ensure_ascii=False) + "\n" for doc in docs)


def test_jsonl_streams_documents_and_counts(tmp_path: Path) -> None:
    path = write(tmp_path, "docs.jsonl", jsonl(DOC_A, DOC_B))
    source = open_source(path)
    assert (source.format, source.header, source.size, source.documents_total) == (
        "jsonl",
        {},
        path.stat().st_size,
        None,
    )
    documents = source.documents()
    assert source.documents_read == source.bytes_read == 0  # nothing read before the first next()
    assert next(documents) == DOC_A
    assert (source.rows_read, source.documents_read) == (1, 1)
    assert 0 < source.bytes_read < source.size
    assert list(documents) == [DOC_B]
    assert (source.rows_read, source.documents_read, source.bytes_read) == (2, 2, source.size)


@pytest.mark.parametrize("char", ["\u2028", "\u2029", "\x85", "\r", "\x0b", "\x0c"])
def test_jsonl_strings_may_hold_unicode_line_separators(tmp_path: Path, char: str) -> None:
    doc = {"ExternalId": "R-9", "Text": f"first{char}second"}
    line = json.dumps(doc, ensure_ascii=False)
    if char in line:  # json escapes \r, \x0b, \x0c itself; the others stay as raw characters
        assert char in "\u2028\u2029\x85"
    docs, source = read(write(tmp_path, "sep.jsonl", jsonl(DOC_A) + line + "\n" + jsonl(DOC_B)))
    assert docs == [DOC_A, doc, DOC_B]
    assert source.rows_read == 3


@pytest.mark.parametrize("name", ["blank.jsonl", "blank.json"])
def test_jsonl_blank_lines_and_crlf_are_skipped(tmp_path: Path, name: str) -> None:
    text = f"\r\n{json.dumps(DOC_A)}\r\n   \r\n\t\r\n{json.dumps(DOC_B)}\r\n\r\n"
    docs, source = read(write(tmp_path, name, text))
    assert docs == [DOC_A, DOC_B]
    assert (source.format, source.rows_read, source.documents_read) == ("jsonl", 2, 2)


def test_jsonl_a_last_line_without_newline(tmp_path: Path) -> None:
    assert read(write(tmp_path, "one.jsonl", json.dumps(DOC_A)))[0] == [DOC_A]


def test_jsonl_a_bom_is_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, "bom.jsonl", b"\xef\xbb\xbf" + jsonl(DOC_A, DOC_B).encode())
    docs, source = read(path)
    assert docs == [DOC_A, DOC_B]
    assert source.bytes_read == source.size


def test_jsonl_a_bad_line_names_file_and_line_after_the_good_ones(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.jsonl", f'{jsonl(DOC_A)}\n{{"ExternalId": "R-3",}}\n{jsonl(DOC_B)}')
    source = open_source(path)  # opening does not read the whole file
    documents = source.documents()
    assert next(documents) == DOC_A  # lazy: the first document comes before the bad line is read
    with pytest.raises(SubmitError, match=r"bad\.jsonl, line 3: not valid JSON \(Expecting"):
        next(documents)
    assert source.documents_read == 1


def test_jsonl_a_line_that_is_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "latin1.jsonl", jsonl(DOC_A).encode() + '{"Text": "café"}\n'.encode("latin-1"))
    documents = open_source(path).documents()
    assert next(documents) == DOC_A
    with pytest.raises(SubmitError, match=r"latin1\.jsonl, line 2: not UTF-8"):
        next(documents)


def test_jsonl_values_that_are_not_objects_are_passed_on_for_validation(tmp_path: Path) -> None:
    docs, _source = read(write(tmp_path, "odd.jsonl", "[1, 2]\n7\nnull\n"))
    assert docs == [[1, 2], 7, None]


def test_jsonl_memory_stays_flat(tmp_path: Path) -> None:
    doc = {"ExternalId": "R", "CustomerNr": "1", "Text": "x" * 900}
    path = tmp_path / "big.jsonl"
    with path.open("w", encoding="utf-8") as out:
        for n in range(6000):
            out.write(json.dumps({**doc, "ExternalId": f"R-{n}"}) + "\n")
    source = open_source(path)
    count, peak = count_with_peak_memory(source)
    assert count == 6000
    assert source.size > 5_000_000
    assert peak < 1_000_000, f"peak {peak} bytes while streaming a {source.size}-byte file"


# ----- JSON


def test_json_a_list(tmp_path: Path) -> None:
    path = write(tmp_path, "list.json", json.dumps([DOC_A, DOC_B], indent=2))
    source = open_source(path)
    assert (source.format, source.documents_total, source.header) == ("json", 2, {})
    documents = source.documents()
    assert next(documents) == DOC_A
    assert (source.rows_read, source.documents_read, source.bytes_read) == (1, 1, source.size // 2)
    assert list(documents) == [DOC_B]
    assert source.bytes_read == source.size


def test_json_an_envelope_gives_its_header(tmp_path: Path) -> None:
    envelope = {
        "tenant": "acme",
        "kind": "order",
        "job_id": "nightly-1",
        "source": "pos-17",
        "target": "softone",
        "submitted_at": "2026-01-01T00:00:00Z",
        "extra": "ignored",
        "documents": [DOC_A, DOC_B],
    }
    docs, source = read(write(tmp_path, "envelope.json", json.dumps(envelope)))
    assert docs == [DOC_A, DOC_B]
    assert source.header == {
        "tenant": "acme",
        "kind": "order",
        "job_id": "nightly-1",
        "source": "pos-17",
        "target": "softone",
    }
    assert read(write(tmp_path, "env2.json", json.dumps({"tenant": None, "documents": []})))[1].header == {}


def test_json_a_single_document(tmp_path: Path) -> None:
    docs, source = read(write(tmp_path, "one.json", json.dumps(DOC_A, ensure_ascii=False, indent=1)))
    assert (docs, source.format, source.documents_total) == ([DOC_A], "json", 1)


def test_json_a_single_document_on_one_line(tmp_path: Path) -> None:
    docs, source = read(write(tmp_path, "one.json", json.dumps(DOC_A) + "\n\n"))
    assert (docs, source.format) == ([DOC_A], "json")


def test_json_an_empty_list(tmp_path: Path) -> None:
    docs, source = read(write(tmp_path, "empty.json", "[]"))
    assert (docs, source.documents_total, source.bytes_read) == ([], 0, source.size)


@pytest.mark.parametrize("name", ["docs.json", "docs.txt", "docs"])
def test_json_lines_without_the_jsonl_suffix_are_jsonl_and_streamed(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, name, jsonl(DOC_A, DOC_B) + "{oops\n")
    source = open_source(path)
    assert (source.format, source.documents_total) == ("jsonl", None)
    documents = source.documents()
    assert [next(documents), next(documents)] == [DOC_A, DOC_B]  # lazy: the bad tail is not read yet
    with pytest.raises(SubmitError, match=rf"{name}, line 3: not valid JSON"):
        next(documents)


def test_json_extra_data_on_the_first_line_is_read_as_jsonl(tmp_path: Path) -> None:
    source = open_source(write(tmp_path, "two.json", f"{json.dumps(DOC_A)} {json.dumps(DOC_B)}\n"))
    assert source.format == "jsonl"
    with pytest.raises(SubmitError, match="line 1: not valid JSON \\(Extra data\\)"):
        list(source.documents())


def test_json_a_bom_is_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, "bom.json", b"\xef\xbb\xbf" + json.dumps([DOC_A], ensure_ascii=False).encode())
    assert read(path)[0] == [DOC_A]


def test_json_invalid_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.json", '[\n  {"ExternalId": "R-1"},\n  {"ExternalId": }\n]\n')
    with pytest.raises(SubmitError, match=r"bad\.json is not valid JSON: .*\(line 3, column 18\)"):
        open_source(path)


@pytest.mark.parametrize("text", ["42", '"text"', "null", "true"])
def test_json_a_scalar_is_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises(SubmitError, match="expected a document, a list or an envelope"):
        open_source(write(tmp_path, "scalar.json", text))


def test_json_an_empty_file_is_invalid(tmp_path: Path) -> None:
    with pytest.raises(SubmitError, match="not valid JSON"):
        open_source(write(tmp_path, "empty.json", ""))


def test_json_not_utf8_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SubmitError, match="not UTF-8"):
        open_source(write(tmp_path, "latin1.json", '{"Text": "café"}'.encode("latin-1")))


SAME_AS_READ_DOCUMENTS = [
    ("a.json", json.dumps(DOC_A)),
    ("a.json", json.dumps([DOC_A, DOC_B], indent=2)),
    ("a.json", json.dumps({"tenant": "t", "kind": "order", "documents": [DOC_A]})),
    ("a.json", jsonl(DOC_A, DOC_B)),
    ("a.json", "\n\n" + jsonl(DOC_A) + "\u00a0\n"),
    ("a.json", json.dumps([DOC_A]) + "\n\x0c\n"),
    ("a.json", "\u00a0\n" + jsonl(DOC_A, DOC_B)),
    ("a.json", '{"a": 1}\n{"b": '),
    ("a.json", "[1,\n2]\n[3]\n"),
    ("a.json", "42\n5\n"),
    ("a.json", "\ufeff" + jsonl(DOC_A, DOC_B)),
    ("a.json", "   "),
    ("a.json", "[\n"),
    ("a.jsonl", jsonl(DOC_A, [1], "x")),
    ("a.jsonl", ""),
    ("a.jsonl", "\n \n"),
]


@pytest.mark.parametrize(("name", "text"), SAME_AS_READ_DOCUMENTS)
def test_json_and_jsonl_read_as_read_documents_does(tmp_path: Path, name: str, text: str) -> None:
    path = write(tmp_path, name, text)
    try:
        expected: Any = read_documents(path)
    except SubmitError:
        expected = SubmitError
    try:
        docs, source = read(path)
        got: Any = (docs, source.header)
    except SubmitError:
        got = SubmitError
    assert got == expected


# ----- CSV


def csv_file(tmp_path: Path, *lines: str, name: str = "pos.csv", head: str = CSV_HEAD) -> Path:
    return write(tmp_path, name, "\n".join([head, *lines]) + "\n")


def test_csv_consecutive_rows_of_a_receipt_are_one_invoice(tmp_path: Path) -> None:
    path = csv_file(
        tmp_path,
        "R1,1008,2026-11-20,7310050010,Västerbottensost 450 g,1,109.00,,12",
        "R1,1008,2026-11-20,7310050007,Lösgodis,2.062,119.00,10,12",
        "R1,1008,2026-11-20,,Tack för ditt köp!,,,,",
        "R2,013,2026-11-20,7310050017,Bärkasse papper,1,3.00,,25",
        head=CSV_HEAD + ",unit,currency,reference",
    )
    docs, source = read(path)
    assert docs == [
        {
            "ExternalId": "R1",
            "CustomerNr": "1008",
            "InvoiceDate": "2026-11-20",
            "OriginType": 2,
            "Currency": "SEK",
            "InvoiceRows": [
                {
                    "CustomerRowType": 2,
                    "RowNr": 1,
                    "ProductNr": "7310050010",
                    "Text": "Västerbottensost 450 g",
                    "Quantity": "1",
                    "UnitPrice": "109.00",
                    "VatRate": "12",
                },
                {
                    "CustomerRowType": 2,
                    "RowNr": 2,
                    "ProductNr": "7310050007",
                    "Text": "Lösgodis",
                    "Quantity": "2.062",
                    "UnitPrice": "119.00",
                    "Discount": "10",
                    "VatRate": "12",
                },
                {"CustomerRowType": 3, "RowNr": 3, "Text": "Tack för ditt köp!"},
            ],
        },
        {
            "ExternalId": "R2",
            "CustomerNr": "013",
            "InvoiceDate": "2026-11-20",
            "OriginType": 2,
            "Currency": "SEK",
            "InvoiceRows": [
                {
                    "CustomerRowType": 2,
                    "RowNr": 1,
                    "ProductNr": "7310050017",
                    "Text": "Bärkasse papper",
                    "Quantity": "1",
                    "UnitPrice": "3.00",
                    "VatRate": "25",
                }
            ],
        },
    ]
    for doc in docs:
        valid(doc)
    assert (source.rows_read, source.documents_read, source.split_receipts) == (4, 2, 0)
    assert (source.delimiter, source.unused_columns, source.bytes_read) == (",", [], source.size)


def test_csv_optional_columns_fill_the_invoice(tmp_path: Path) -> None:
    path = csv_file(
        tmp_path,
        "R1,1001,2026-11-20,A1,Kanelbulle,2,24.00,,12,st,EUR,Butik 01 kassa 2",
        head=CSV_HEAD + ",unit,currency,reference",
    )
    (doc,) = read(path)[0]
    assert doc["Currency"] == "EUR"
    assert doc["ReferenceOur"] == "Butik 01 kassa 2"
    assert doc["InvoiceRows"][0]["Unit"] == "st"
    assert list(doc) == [
        "ExternalId",
        "CustomerNr",
        "InvoiceDate",
        "OriginType",
        "Currency",
        "ReferenceOur",
        "InvoiceRows",
    ]
    assert valid(doc).invoice_rows[0].unit_price == 24.0


def test_csv_semicolons_decimal_commas_and_swedish_column_names(tmp_path: Path) -> None:
    head = " Kvitto ;KUNDNR;Datum;Artikel;Text;Antal;Apris;Rabatt;Moms;Enhet;Valuta;Referens;Kassör"
    path = csv_file(
        tmp_path,
        "K-1;013;2026-11-20;7310050007;Lösgodis;0,150;1 119,00;12,5;12 %;kg;;Kassa 1;Anna",
        'K-1;013;2026-11-20;7310050019;"Ljusstake; trä";1;249,90;;25;st;;;Anna',
        head=head,
    )
    docs, source = read(path)
    assert (source.delimiter, source.unused_columns) == (";", ["Kassör"])
    (doc,) = docs
    assert doc["CustomerNr"] == "013" and doc["ReferenceOur"] == "Kassa 1" and doc["Currency"] == "SEK"
    first, second = doc["InvoiceRows"]
    assert (first["Quantity"], first["UnitPrice"], first["Discount"], first["VatRate"]) == (
        "0.150",
        "1119.00",
        "12.5",
        "12",
    )
    assert (second["Text"], second["UnitPrice"], "Discount" in second) == ("Ljusstake; trä", "249.90", False)
    model = valid(doc)
    assert model.invoice_rows[0].quantity == 0.15
    assert model.invoice_rows[0].unit_price == 1119.0


def test_csv_tab_separated(tmp_path: Path) -> None:
    path = csv_file(tmp_path, "R1\t1\t2026-11-20\tA\tT\t1\t0,1\t\t25", head=CSV_HEAD.replace(",", "\t"))
    docs, source = read(path)
    assert source.delimiter == "\t"
    assert docs[0]["InvoiceRows"][0]["UnitPrice"] == "0.1"
    assert valid(docs[0]).to_wire()["InvoiceRows"][0]["UnitPrice"] == 0.1  # the JSON number 0.1, as in a JSON file


def test_csv_header_names_with_blanks_and_hyphens(tmp_path: Path) -> None:
    head = "Receipt ID,Customer-Nr,DATE,article,text,quantity,Unit Price,discount,VAT rate"
    docs, _source = read(csv_file(tmp_path, "R1,1,2026-11-20,A,T,1,2,,25", head=head))
    valid(docs[0])


def test_csv_missing_columns_are_named_with_the_columns_found(tmp_path: Path) -> None:
    path = csv_file(tmp_path, "R1,1,A,T,1", head="receipt_id,customer,article,text,quantity")
    with pytest.raises(SubmitError) as info:
        open_source(path)
    message = str(info.value)
    assert "pos.csv, line 1" in message
    for name in ("customer_nr (kundnr)", "date (datum)", "unit_price (apris)", "discount (rabatt)", "vat_rate (moms)"):
        assert name in message
    assert "columns found: 'receipt_id', 'customer', 'article', 'text', 'quantity'" in message
    assert "article (artikel)" not in message


def test_csv_a_column_given_twice_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SubmitError, match="column quantity appears twice"):
        open_source(csv_file(tmp_path, head=CSV_HEAD + ",antal"))


@pytest.mark.parametrize("text", ["", "\n\n  \n"])
def test_csv_without_a_header_is_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises(SubmitError, match="needs a header row"):
        open_source(write(tmp_path, "empty.csv", text))


def test_csv_header_only_has_no_documents(tmp_path: Path) -> None:
    docs, source = read(csv_file(tmp_path))
    assert (docs, source.rows_read, source.bytes_read) == ([], 0, source.size)


def test_csv_a_bad_number_is_kept_and_reported_by_validation(tmp_path: Path) -> None:
    path = csv_file(tmp_path, "R1,1,2026-11-20,A,T,12 st,24.90,,25", "R1,1,2026-11-20,B,U,1,1.234,50,,25")
    (doc,) = read(path)[0]
    rows = doc["InvoiceRows"]
    assert rows[0]["Quantity"] == "12 st"
    errors = errors_of(doc)
    assert errors["InvoiceRows[0].Quantity"] == AMOUNT_ERROR
    # "1.234,50" unquoted in a comma-separated file spills into the next column: the row is refused, not booked
    assert rows[1]["UnitPrice"] == "1.234" and rows[1]["Discount"] == "50" and rows[1]["CsvExtraCells"] == ["25"]
    assert errors["InvoiceRows[1].CsvExtraCells"] == "is not a field of this document (misspelt?)"


def test_csv_trailing_empty_cells_are_harmless(tmp_path: Path) -> None:
    (doc,) = read(csv_file(tmp_path, "R1,1,2026-11-20,A,T,1,2,,25,,,"))[0]
    assert "CsvExtraCells" not in doc["InvoiceRows"][0]
    valid(doc)


def test_csv_a_short_row_keeps_what_it_has_and_validation_names_the_rest(tmp_path: Path) -> None:
    (doc,) = read(csv_file(tmp_path, "R1,1,2026-11-20,A,T"))[0]
    assert doc["InvoiceRows"] == [{"CustomerRowType": 2, "RowNr": 1, "ProductNr": "A", "Text": "T"}]
    assert "needs Quantity" in errors_of(doc)["InvoiceRows[0]"]


def test_csv_empty_invoice_fields_are_left_out_for_validation(tmp_path: Path) -> None:
    (doc,) = read(csv_file(tmp_path, "R1, ,,A,T,1,2,,25"))[0]
    assert "CustomerNr" not in doc and "InvoiceDate" not in doc
    errors = errors_of(doc)
    assert errors["CustomerNr"] == errors["InvoiceDate"] == "is mandatory and missing"


def test_csv_invoice_fields_come_from_the_first_row(tmp_path: Path) -> None:
    path = csv_file(
        tmp_path,
        "R1,1001,2026-11-20,A,T,1,2,,25,SEK,Kassa 1",
        "R1,1002,2026-11-21,B,U,1,2,,25,EUR,Kassa 2",
        head=CSV_HEAD + ",valuta,referens",
    )
    (doc,) = read(path)[0]
    assert (doc["CustomerNr"], doc["InvoiceDate"], doc["Currency"], doc["ReferenceOur"]) == (
        "1001",
        "2026-11-20",
        "SEK",
        "Kassa 1",
    )
    assert [row["RowNr"] for row in doc["InvoiceRows"]] == [1, 2]


def test_csv_a_receipt_split_in_two_places_is_counted(tmp_path: Path) -> None:
    path = csv_file(
        tmp_path,
        "R1,1,2026-11-20,A,T,1,2,,25",
        "R2,1,2026-11-20,A,T,1,2,,25",
        "R1,1,2026-11-20,B,U,1,2,,25",
        "R3,1,2026-11-20,A,T,1,2,,25",
        "R2,1,2026-11-20,C,V,1,2,,25",
        "R2,1,2026-11-20,D,W,1,2,,25",
    )
    docs, source = read(path)
    assert [doc["ExternalId"] for doc in docs] == ["R1", "R2", "R1", "R3", "R2"]
    assert [len(doc["InvoiceRows"]) for doc in docs] == [1, 1, 1, 1, 2]
    assert (source.split_receipts, source.split_receipt_ids) == (2, ["R1", "R2"])
    assert (source.rows_read, source.documents_read) == (6, 5)


def test_csv_blank_rows_are_skipped(tmp_path: Path) -> None:
    path = csv_file(tmp_path, "", "R1,1,2026-11-20,A,T,1,2,,25", ",,,,", "  ", "R1,1,2026-11-20,B,U,1,2,,25")
    docs, source = read(path)
    assert len(docs) == 1 and [row["RowNr"] for row in docs[0]["InvoiceRows"]] == [1, 2]
    assert source.rows_read == 2


def test_csv_an_empty_receipt_id_is_refused_with_its_line(tmp_path: Path) -> None:
    path = csv_file(tmp_path, "R1,1,2026-11-20,A,T,1,2,,25", ",1,2026-11-20,B,U,1,2,,25")
    documents = open_source(path).documents()
    with pytest.raises(SubmitError, match=r"pos\.csv, line 3: the receipt_id is empty"):
        next(documents)


def test_csv_quoted_cells_may_hold_delimiters_quotes_and_newlines(tmp_path: Path) -> None:
    path = csv_file(
        tmp_path,
        'R1,1,2026-11-20,A,"Kaffe, ""mörkrost""\nextra",1,2,,25',
        'R1,1,2026-11-20,A,"Te\u2028grönt",1,2,,25',
        "R2,1,2026-11-20,A,T,1,2,,25",
        ",1,2026-11-20,A,T,1,2,,25",
    )
    documents = open_source(path).documents()
    first = next(documents)
    assert [row["Text"] for row in first["InvoiceRows"]] == ['Kaffe, "mörkrost"\nextra', "Te\u2028grönt"]
    with pytest.raises(SubmitError, match="line 6"):  # physical line: the quoted newline counts; R2 never ends
        next(documents)


def test_csv_is_lazy_and_a_broken_tail_raises_after_the_good_receipts(tmp_path: Path) -> None:
    path = csv_file(tmp_path, "R1,1,2026-11-20,A,T,1,2,,25", "R2,1,2026-11-20,A,T,1,2,,25", 'R3,1,"2026-11-20,A')
    source = open_source(path)
    documents = source.documents()
    assert next(documents)["ExternalId"] == "R1"  # yielded when R2 starts
    assert (source.rows_read, source.documents_read) == (2, 1)
    with pytest.raises(SubmitError, match=r"pos\.csv, line 4: not valid CSV"):
        next(documents)


def test_csv_crlf_line_ends_and_a_bom(tmp_path: Path) -> None:
    text = "\ufeff" + CSV_HEAD + "\r\nR1,1,2026-11-20,A,T,1,2,,25\r\nR1,1,2026-11-20,B,U,3,4,,25\r\n"
    docs, source = read(write(tmp_path, "win.csv", text.encode()))
    assert source.columns["receipt_id"] == 0
    assert [row["ProductNr"] for row in docs[0]["InvoiceRows"]] == ["A", "B"]
    assert docs[0]["InvoiceRows"][1]["VatRate"] == "25"


def test_csv_not_utf8_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "latin1.csv", f"{CSV_HEAD}\nR1,1,2026-11-20,A,Räksmörgås,1,2,,25\n".encode("latin-1"))
    with pytest.raises(SubmitError, match=r"latin1\.csv is not UTF-8 text .*Windows-1252"):
        open_source(path)  # the first chunk is decoded with the header
    good = "".join(f"R{n},1,2026-11-20,A,Bulle,1,2,,25\n" for n in range(1000))
    path = write(tmp_path, "later.csv", f"{CSV_HEAD}\n{good}R-x,1,2026-11-20,A,Räka,1,2,,25\n".encode("latin-1"))
    documents = open_source(path).documents()
    assert next(documents)["ExternalId"] == "R0"
    with pytest.raises(SubmitError, match=r"later\.csv is not UTF-8 text \(an invalid byte after line \d+\)"):
        list(documents)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24,90", "24.90"),
        ("24.90", "24.90"),
        (" 7 ", "7"),
        ("-1", "-1"),
        ("\u22121,5", "-1.5"),
        ("+3", "3"),
        ("1 234,50", "1234.50"),
        ("12\u00a0345\u00a0678", "12345678"),
        ("1\u202f000.5", "1000.5"),
        ("0,1", "0.1"),
        ("12 st", "12 st"),  # not a number: kept for validation to report
        ("1,234.50", "1,234.50"),  # ambiguous
        ("1.234,50", "1.234,50"),  # ambiguous
        ("12 34", "12 34"),  # not groups of thousands
        ("", ""),
        ("25 %", "25 %"),  # a percent sign only where percentages are expected
    ],
)
def test_normalise_number(text: str, expected: str) -> None:
    assert normalise_number(text) == expected


@pytest.mark.parametrize(("text", "expected"), [("25 %", "25"), ("12,5%", "12.5"), ("%", "%")])
def test_normalise_number_percent(text: str, expected: str) -> None:
    assert normalise_number(text, percent=True) == expected


def test_csv_columns_table() -> None:
    names = [name for name, _alias, _required, _meaning in CSV_COLUMNS]
    assert names[:9] == [
        "receipt_id",
        "customer_nr",
        "date",
        "article",
        "text",
        "quantity",
        "unit_price",
        "discount",
        "vat_rate",
    ]
    assert [required for _name, _alias, required, _meaning in CSV_COLUMNS] == [True] * 9 + [False] * 3
    assert all(meaning for *_rest, meaning in CSV_COLUMNS)


# ----- property: receipts written as CSV read back as the same invoices

_texts = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=20).filter(
    lambda text: text == text.strip() and text != ""
)


@st.composite
def _amounts(draw: st.DrawFn, signed: bool = False) -> tuple[str, Decimal]:
    """(the decimal string the reader should produce, the value)."""
    whole = draw(st.integers(0, 10_000_000))
    fraction = draw(st.text("0123456789", max_size=3))
    sign = "-" if signed and draw(st.booleans()) else ""
    text = f"{sign}{whole}" + (f".{fraction}" if fraction else "")
    return text, Decimal(text)


@st.composite
def _receipts(draw: st.DrawFn) -> list[dict[str, Any]]:
    ids = draw(st.lists(_texts, min_size=1, max_size=5, unique=True))
    out = []
    for receipt_id in ids:
        rows = []
        for row_nr in range(1, draw(st.integers(1, 4)) + 1):
            if draw(st.integers(0, 5)) == 0:
                rows.append({"CustomerRowType": 3, "RowNr": row_nr, "Text": draw(_texts)})
                continue
            row: dict[str, Any] = {"CustomerRowType": 2, "RowNr": row_nr, "ProductNr": draw(_texts)}
            row["Text"] = draw(_texts)
            row["Quantity"] = draw(_amounts(signed=True))
            row["UnitPrice"] = draw(_amounts())
            if draw(st.booleans()):
                row["Discount"] = draw(_amounts())
            row["VatRate"] = draw(st.sampled_from([("0", 0), ("6", 6), ("12", 12), ("25", 25)]))
            rows.append(row)
        out.append(
            {
                "ExternalId": receipt_id,
                "CustomerNr": draw(st.from_regex(r"\A[0-9]{1,6}\Z")),
                "InvoiceDate": draw(st.dates()).isoformat(),
                "OriginType": 2,
                "Currency": "SEK",
                "InvoiceRows": rows,
            }
        )
    return out


def _written(text: str, comma: bool, grouped: bool) -> str:
    """A decimal string as a Swedish export may write it: decimal comma, blanks between thousands."""
    sign, digits = ("-", text[1:]) if text.startswith("-") else ("", text)
    whole, _dot, fraction = digits.partition(".")
    if grouped:
        whole = f"{int(whole):,}".replace(",", " ")
    return sign + whole + ((("," if comma else ".") + fraction) if fraction else "")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(receipts=_receipts(), delimiter=st.sampled_from([",", ";", "\t"]), comma=st.booleans(), grouped=st.booleans())
def test_csv_round_trip_property(
    tmp_path: Path, receipts: list[dict[str, Any]], delimiter: str, comma: bool, grouped: bool
) -> None:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(["kvitto", "kundnr", "datum", "artikel", "text", "antal", "apris", "rabatt", "moms"])
    expected = []
    for receipt in receipts:
        head = [receipt["ExternalId"], receipt["CustomerNr"], receipt["InvoiceDate"]]
        rows = []
        for row in receipt["InvoiceRows"]:
            if row["CustomerRowType"] == 3:
                writer.writerow([*head, "", row["Text"], "", "", "", ""])
                rows.append(row)
                continue
            cells = {key: _written(value[0], comma, grouped) for key, value in row.items() if isinstance(value, tuple)}
            writer.writerow(
                [
                    *head,
                    row["ProductNr"],
                    row["Text"],
                    cells["Quantity"],
                    cells["UnitPrice"],
                    cells.get("Discount", ""),
                    cells["VatRate"],
                ]
            )
            rows.append({key: value[0] if isinstance(value, tuple) else value for key, value in row.items()})
        expected.append({**receipt, "InvoiceRows": rows})
    path = write(tmp_path, "prop.csv", buffer.getvalue())
    docs, source = read(path)
    assert docs == expected
    assert source.delimiter == delimiter
    assert source.rows_read == sum(len(receipt["InvoiceRows"]) for receipt in receipts)
    assert (source.documents_read, source.split_receipts) == (len(receipts), 0)
    for doc, receipt in zip(docs, receipts, strict=True):
        model = valid(doc)
        for row_model, row in zip(model.invoice_rows, receipt["InvoiceRows"], strict=True):
            if row["CustomerRowType"] == 2:
                # What is sent: the JSON number nearest the amount the file wrote.
                assert (row_model.quantity, row_model.unit_price) == (
                    float(row["Quantity"][1]),
                    float(row["UnitPrice"][1]),
                )


# ----- the generator: examples/make_pos_day.py


def _models(docs: Iterator[Any] | list[Any]) -> list[Any]:
    return [valid(doc) for doc in docs]


def test_generator_csv_round_trips_to_the_same_invoices_as_its_jsonl(tmp_path: Path, generator: ModuleType) -> None:
    path = tmp_path / "day.csv"
    with path.open("w", encoding="utf-8", newline="") as out:
        generator.write_csv(generator.iter_receipts("2026-11-20", 7, 400), out)
    docs, source = read(path)
    assert source.split_receipts == 0 and source.unused_columns == []
    assert len(docs) == 400
    from_json = generator.receipts(400, "2026-11-20", 7)
    assert _models(docs) == _models(from_json)  # same values: "2.062" from the CSV is the JSON number 2.062
    assert source.rows_read == sum(len(doc["InvoiceRows"]) for doc in from_json)


def test_the_sample_csv_is_the_start_of_the_sample_jsonl() -> None:
    csv_docs, source = read(EXAMPLES / "pos-end-of-day.csv")
    assert len(csv_docs) == 50 and source.split_receipts == 0
    jsonl_source = open_source(EXAMPLES / "pos-end-of-day.jsonl")
    json_docs = [doc for doc, _n in zip(jsonl_source.documents(), range(50), strict=False)]
    assert _models(csv_docs) == _models(json_docs)


def test_csv_documents_validate_the_same_as_json_text(tmp_path: Path) -> None:
    """The worker receives each document as the JSON text the producer stored: decimal strings survive that."""
    from schemas import validation

    validate_json = getattr(validation, "validate_document_json", None)
    if validate_json is None:
        pytest.skip("schemas.validation has no validate_document_json")
    path = csv_file(tmp_path, "R1,013,2026-11-20,A,T,0,1,24.90,,25", "R2,014,2026-11-20,A,T,12 st,0.1,,25")
    for doc in read(path)[0] + read(EXAMPLES / "pos-end-of-day.csv")[0]:
        text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
        by_text = validate_json(DocumentKind.CUSTOMER_INVOICE, text)
        by_objects = validate_document(DocumentKind.CUSTOMER_INVOICE, doc)
        if isinstance(by_objects, DocumentError):
            assert by_text == by_objects
        else:  # the wire JSON text the intake buffers, whichever validator made it
            assert by_text.to_wire_json() == by_objects.to_wire_json()


def test_generator_rows_limit_is_exact(generator: ModuleType) -> None:
    out = io.StringIO(newline="")
    generator.write_csv(generator.limit_rows(generator.iter_receipts("2026-11-20", 1), 1001), out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1002  # header + 1001 rows


def test_generator_default_jsonl_is_unchanged() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "make_pos_day.py"), "--invoices", "600", "--date", "2026-11-20"],
        capture_output=True,
        check=True,
        cwd=ROOT,
    )
    assert result.stdout == (EXAMPLES / "pos-end-of-day.jsonl").read_bytes()


def test_csv_memory_holds_one_receipt_plus_the_receipt_ids(tmp_path: Path, generator: ModuleType) -> None:
    path = tmp_path / "big.csv"
    with path.open("w", encoding="utf-8", newline="") as out:
        generator.write_csv(generator.limit_rows(generator.iter_receipts("2026-11-20", 3), 40_000), out)
    source = open_source(path)
    count, peak = count_with_peak_memory(source)
    assert source.rows_read == 40_000 and count > 8000
    # What remains is the set of receipt ids seen (~100 bytes each), for counting split receipts.
    assert peak < 150 * count, f"peak {peak} bytes for {count} receipts in a {source.size}-byte file"


# ----- a file that breaks part-way: SourceError with the line and reason, the documents before it whole


def read_until_broken(path: Path) -> tuple[list[Any], SourceError]:
    """The documents a source yields before it raises, and what it raises."""
    docs: list[Any] = []
    documents = open_source(path).documents()
    with pytest.raises(SourceError) as info:
        for doc in documents:
            docs.append(doc)
    return docs, info.value


@pytest.mark.parametrize("name", ["cut.jsonl", "cut.json"])
def test_jsonl_broken_part_way_names_line_and_reason_after_every_document_before(tmp_path: Path, name: str) -> None:
    lines = [json.dumps({"ExternalId": f"R-{n}"}) for n in range(1, 11)]
    lines[6] = '{"ExternalId": "R-7", "CustomerNr": '  # line 7 of 10: cut short
    docs, error = read_until_broken(write(tmp_path, name, "\n".join(lines) + "\n"))
    assert [d["ExternalId"] for d in docs] == [f"R-{n}" for n in range(1, 7)]
    assert (error.line, error.reason) == (7, "not valid JSON (Expecting value)")
    assert str(error) == f"{tmp_path / name}, line 7: not valid JSON (Expecting value)"


def test_jsonl_bytes_that_are_not_utf8_break_the_file_at_their_line(tmp_path: Path) -> None:
    path = write(tmp_path, "latin1.jsonl", jsonl(DOC_A).encode() + '{"Text": "café"}\n'.encode("latin-1"))
    docs, error = read_until_broken(path)
    assert docs == [DOC_A] and (error.line, error.reason) == (2, "not UTF-8 text")


def test_a_read_error_part_way_is_a_source_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "share.jsonl", jsonl(DOC_A, DOC_A, DOC_A))

    class Failing(io.BytesIO):
        def __iter__(self) -> Iterator[bytes]:
            yield from self.getvalue().splitlines(keepends=True)[:2]
            raise OSError(5, "Input/output error")

    source = open_source(path)
    monkeypatch.setattr("worker.producer.ingest._open", lambda path, mode, **kw: Failing(path.read_bytes()))
    docs = []
    with pytest.raises(SourceError) as info:
        docs.extend(source.documents())
    assert docs == [DOC_A, DOC_A]
    assert info.value.line is None and info.value.reason == "cannot read on after line 2 (Input/output error)"


def test_csv_broken_quoting_keeps_the_finished_receipts_and_leaves_out_the_open_one(tmp_path: Path) -> None:
    path = csv_file(
        tmp_path,
        "R1,1,2026-11-20,A,T,1,2,,25",
        "R2,1,2026-11-20,A,T,1,2,,25",
        "R2,1,2026-11-20,B,U,1,2,,25",
        'R2,1,"2026-11-20,A',  # line 5: an unclosed quote; R2 may have had more rows
    )
    docs, error = read_until_broken(path)
    assert [d["ExternalId"] for d in docs] == ["R1"]
    assert error.line == 5 and error.reason.startswith("not valid CSV (")
    assert error.reason.endswith("; receipt R2, open at that line, is left out (its rows may go on)")
    assert str(error).startswith(f"{path}, line 5: not valid CSV")


def test_csv_an_empty_receipt_id_part_way_is_where_the_file_breaks(tmp_path: Path) -> None:
    path = csv_file(tmp_path, "R1,1,2026-11-20,A,T,1,2,,25", "R2,1,2026-11-20,A,T,1,2,,25", ",1,2026-11-20,B,U,1,2,,25")
    docs, error = read_until_broken(path)
    assert [d["ExternalId"] for d in docs] == ["R1"]
    assert error.line == 4 and error.reason.startswith("the receipt_id is empty")
    assert "receipt R2, open at that line, is left out" in error.reason


def test_csv_a_bad_first_row_breaks_the_file_with_nothing_left_out(tmp_path: Path) -> None:
    docs, error = read_until_broken(csv_file(tmp_path, ",1,2026-11-20,B,U,1,2,,25"))
    assert docs == [] and error.line == 2 and "left out" not in error.reason


def test_csv_not_utf8_part_way_is_a_source_error_saying_after_which_line(tmp_path: Path) -> None:
    good = "".join(f"R{n},1,2026-11-20,A,Bulle,1,2,,25\n" for n in range(1000))
    path = write(tmp_path, "later.csv", f"{CSV_HEAD}\n{good}R-x,1,2026-11-20,A,Räka,1,2,,25\n".encode("latin-1"))
    docs, error = read_until_broken(path)
    assert docs and [d["ExternalId"] for d in docs] == [f"R{n}" for n in range(len(docs))]
    assert error.line is None and re.fullmatch(r"not UTF-8 text \(an invalid byte after line \d+\); .*", error.reason)
