"""Streaming document readers for `erpsync submit`: JSON, JSONL and POS end-of-day CSV files.

`open_source(path)` checks the file (readable, a known format, the CSV columns present) and returns a
`Source`; `Source.documents()` then yields the documents one at a time, so a JSONL or CSV file of any size
is read in flat memory. The counters on the `Source` (rows, documents, bytes) feed a progress bar.

- JSONL (`.jsonl`, `.ndjson`): one JSON value per line, split on "\\n" only (a JSON string may hold U+2028,
  U+2029 or U+0085 unescaped, which `str.splitlines()` would break on). Blank lines are skipped.
- JSON (any other suffix): one document, a list of documents, or an envelope
  `{"documents": [...], "tenant": ..., "kind": ..., "job_id": ..., "source": ..., "target": ..., "priority": ...,
  "operation": ...}`
  whose fields become `Source.header`. Loaded whole (there is no streaming JSON parser in the standard library).
  A file of one JSON value per line is JSONL whatever its suffix, and is streamed.
- CSV (`.csv`, `.tsv`): a POS end-of-day export, one line per sold row (columns: `CSV_COLUMNS`). Rows next
  to each other with the same receipt id become one SoftOne customer invoice.

UTF-8 only (a BOM is allowed). Whatever makes the file as a whole unreadable raises `SubmitError` naming
the file and line; a bad value inside one document (an unparseable number, a missing customer number) is
left for the worker's per-document validation to report, with its field path.

A file that breaks part-way (a JSONL line that is not JSON, broken CSV quoting, a row without its receipt id,
bytes that are not UTF-8) raises `SourceError` from `documents()` at that point, with the line and the reason: the
documents yielded before it are whole, and `submit()` keeps them in an `incomplete` job. A CSV receipt still open
at the bad line is not yielded (its rows may go on after it), and the reason says so. A JSON file read whole never
breaks part-way: it is valid JSON, or refused by `open_source` before anything is read.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NamedTuple

from worker.errors import SourceError, SubmitError

if TYPE_CHECKING:
    from _csv import Reader as CsvReader  # what csv.reader() returns (typeshed's name)

FORMATS = ("json", "jsonl", "csv")

ENVELOPE_FIELDS = ("tenant", "kind", "job_id", "source", "target", "priority", "operation")
"""Fields of a JSON envelope that are returned in `Source.header` (when not null)."""


class CsvColumn(NamedTuple):
    """A column of a POS end-of-day CSV."""

    name: str
    alias: str  # its Swedish name, accepted as well
    required: bool
    meaning: str  # what it holds, and the field of the invoice or row it becomes


CSV_COLUMNS: list[CsvColumn] = [
    CsvColumn(
        "receipt_id", "kvitto", True, "receipt number: consecutive rows with the same one form one invoice (ExternalId)"
    ),
    CsvColumn("customer_nr", "kundnr", True, "customer number, kept as text so leading zeros stay (CustomerNr)"),
    CsvColumn("date", "datum", True, "invoice date, YYYY-MM-DD or an ISO 8601 date-time (InvoiceDate)"),
    CsvColumn("article", "artikel", True, "article number (ProductNr); empty on a text row"),
    CsvColumn("text", "text", True, "row text (Text); a row with only a text is a text row (CustomerRowType 3)"),
    CsvColumn("quantity", "antal", True, "quantity, decimals allowed (Quantity)"),
    CsvColumn("unit_price", "apris", True, "price per unit (UnitPrice)"),
    CsvColumn("discount", "rabatt", True, "line discount in percent, may be empty (Discount)"),
    CsvColumn("vat_rate", "moms", True, "VAT rate in percent (VatRate)"),
    CsvColumn("unit", "enhet", False, "unit, e.g. st or kg (Unit)"),
    CsvColumn("currency", "valuta", False, "currency code; SEK when empty or absent (Currency)"),
    CsvColumn("reference", "referens", False, "our reference, e.g. store and till (ReferenceOur)"),
]
"""The columns of a POS end-of-day CSV. Header names are matched case-insensitively, surrounding blanks
ignored, inner blanks and hyphens read as "_"; numbers may use a decimal comma and blanks between
thousands ("1 234,50"); `discount` and `vat_rate` may end in "%". Other columns are ignored
(`Source.unused_columns`)."""

CSV_DELIMITERS = (",", ";", "\t")

_BOM = b"\xef\xbb\xbf"
_JSON_BLANKS = b" \t\n\r"  # what JSON itself counts as whitespace between values
_NOT_ALONE = object()

_ALIASES: dict[str, str] = {}
for _column in CSV_COLUMNS:
    _ALIASES[_column.name] = _column.name
    _ALIASES[_column.alias] = _column.name
_REQUIRED = [column.name for column in CSV_COLUMNS if column.required]

# 24 | -0,5 | 1 234,50 (blanks, no-break or narrow no-break spaces between thousands) | 24.90
_NUMBER = re.compile(r"[+-]?(?:\d{1,3}(?:[ \u00a0\u202f]\d{3})+|\d+)(?:[.,]\d+)?")
_THOUSANDS = str.maketrans({" ": None, "\u00a0": None, "\u202f": None, ",": ".", "\u2212": "-"})


@dataclass(eq=False)
class Source:
    """An opened document file: what `open_source` found out, and counters that move as `documents()` runs."""

    path: Path
    format: str  # "json", "jsonl" or "csv" (a .json file of JSON lines says "jsonl")
    header: dict[str, Any] = field(default_factory=dict)  # envelope fields (JSON envelope only)
    size: int = 0  # file size in bytes
    bytes_read: int = 0  # bytes consumed so far (a loaded JSON file: its share of the documents yielded)
    rows_read: int = 0  # JSONL lines with a document, CSV data rows, JSON documents
    documents_read: int = 0  # documents yielded so far
    documents_total: int | None = None  # known up front for a JSON file only
    split_receipts: int = 0  # CSV: documents whose receipt id already had a non-adjacent document
    split_receipt_ids: list[str] = field(default_factory=list)  # the first 10 of those receipt ids
    delimiter: str | None = None  # CSV: the delimiter found in the header line
    columns: dict[str, int] = field(default_factory=dict)  # CSV: column name -> cell index
    unused_columns: list[str] = field(default_factory=list)  # CSV: header cells that are no known column
    _loaded: list[Any] | None = field(default=None, init=False, repr=False)  # JSON: the documents
    _started: bool = field(default=False, init=False, repr=False)
    _width: int = field(default=0, init=False, repr=False)  # CSV: number of header cells

    def documents(self) -> Iterator[Any]:
        """The documents, one at a time; may be called once.

        Raises SourceError (a SubmitError with `line` and `reason`) while iterating when the file turns out to be
        unreadable further on (a bad JSONL line, broken CSV quoting): the documents yielded until then are whole,
        but only part of the file.
        """
        if self._started:
            raise RuntimeError(f"documents() of {self.path} was already called; open the source again")
        self._started = True
        if self.format == "csv":
            return self._csv_documents()
        if self._loaded is not None:
            loaded, self._loaded = self._loaded, None
            return self._loaded_documents(loaded)
        return self._jsonl_documents()

    # ----- JSON and JSONL

    def _loaded_documents(self, docs: list[Any]) -> Iterator[Any]:
        total = len(docs)
        for position, doc in enumerate(docs, start=1):
            self.rows_read = self.documents_read = position
            self.bytes_read = self.size * position // total
            yield doc
        self.bytes_read = self.size

    def _jsonl_documents(self) -> Iterator[Any]:
        with _open(self.path, "rb") as file:
            # Binary lines end at b"\n" only; a UTF-8 sequence never contains that byte.
            for lineno, raw in _numbered(file, self.path):
                self.bytes_read += len(raw)
                if lineno == 1:
                    raw = raw.removeprefix(_BOM)
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise _broken(self.path, lineno, "not UTF-8 text") from None
                if not line.strip():
                    continue
                try:
                    doc = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise _broken(self.path, lineno, f"not valid JSON ({exc.msg})") from None
                self.rows_read += 1
                self.documents_read += 1
                yield doc

    # ----- CSV

    def _csv_documents(self) -> Iterator[dict[str, Any]]:
        with _open(self.path, "r", encoding="utf-8-sig", newline="") as file:
            header_line, _text = _csv_header(file, self.path)
            reader = csv.reader(file, delimiter=self.delimiter or ",", strict=True)
            rows = self._csv_rows(reader, header_line)
            # Hashes, not the ids: a day of 200,000 receipts costs half the memory (a collision of two
            # 64-bit hashes among them is a one-in-10^9 chance, and would only cost a wrong warning).
            seen: set[int] = set()
            current: dict[str, Any] | None = None
            try:
                for lineno, cells in rows:
                    current = yield from self._csv_row(file, seen, current, lineno, cells)
            except SourceError as exc:
                if current is None:
                    raise
                # The receipt being read may have more rows after the bad line: sent without them, it would be a
                # wrong invoice that the file, once fixed, could not correct (its ExternalId would be taken).
                left_out = f"; receipt {current['ExternalId']}, open at that line, is left out (its rows may go on)"
                raise SourceError(f"{exc}{left_out}", reason=f"{exc.reason}{left_out}", line=exc.line) from None
            if current is not None:
                yield self._done(current, file)
            self.bytes_read = self.size

    def _csv_row(
        self, file: IO[str], seen: set[int], current: dict[str, Any] | None, lineno: int, cells: list[str]
    ) -> Generator[dict[str, Any], None, dict[str, Any]]:
        """Add a data row to its receipt's invoice, first yielding the invoice before it when the row starts a new
        one; returns the invoice being read."""
        receipt = self._cell(cells, "receipt_id")
        if not receipt:
            # Not left to validation: without its receipt id a row belongs to no invoice, and an invoice
            # without one would get an id derived from the job, so submitting the file again would
            # book it twice. The export is broken; it must be fixed at the till system.
            raise _broken(
                self.path,
                lineno,
                "the receipt_id is empty; every row must name the receipt it belongs to (it is the "
                "invoice's ExternalId)",
            )
        if current is None or receipt != current["ExternalId"]:
            if current is not None:
                yield self._done(current, file)
            if hash(receipt) in seen:
                self.split_receipts += 1
                if len(self.split_receipt_ids) < 10:
                    self.split_receipt_ids.append(receipt)
            seen.add(hash(receipt))
            current = self._invoice(receipt, cells)
        rows_of = current["InvoiceRows"]
        rows_of.append(self._invoice_row(cells, len(rows_of) + 1))
        return current

    def _csv_rows(self, reader: CsvReader, header_line: int) -> Iterator[tuple[int, list[str]]]:
        """(line number, cells) of each data row; blank rows skipped, decoding and quoting errors raised."""
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except UnicodeDecodeError:
                reason = _not_utf8_reason(header_line + reader.line_num)
                raise SourceError(f"{self.path} is {reason}", reason=reason) from None
            except csv.Error as exc:
                raise _broken(self.path, header_line + reader.line_num, f"not valid CSV ({exc})") from None
            except OSError as exc:
                raise _unreadable(self.path, header_line + reader.line_num, exc) from None
            if not any(cell.strip() for cell in cells):
                continue
            self.rows_read += 1
            yield header_line + reader.line_num, cells

    def _done(self, invoice: dict[str, Any], file: IO[str]) -> dict[str, Any]:
        self.documents_read += 1
        self.bytes_read = _position(file, self.bytes_read)
        return invoice

    def _cell(self, cells: list[str], name: str) -> str:
        index = self.columns.get(name)
        if index is None or index >= len(cells):
            return ""  # an optional column that is absent, or a short row: validation reports what is missing
        return cells[index].strip()

    def _invoice(self, receipt: str, cells: list[str]) -> dict[str, Any]:
        # Invoice-level fields come from the receipt's first row; if a later row of the same receipt
        # disagrees (another customer, date, ...), the first row wins and nothing is reported.
        invoice: dict[str, Any] = {"ExternalId": receipt}
        for key, name in (("CustomerNr", "customer_nr"), ("InvoiceDate", "date")):
            if value := self._cell(cells, name):
                invoice[key] = value  # empty: left out, so validation says "is mandatory and missing"
        invoice["OriginType"] = 2
        invoice["Currency"] = self._cell(cells, "currency") or "SEK"
        if reference := self._cell(cells, "reference"):
            invoice["ReferenceOur"] = reference
        invoice["InvoiceRows"] = []
        return invoice

    def _invoice_row(self, cells: list[str], row_nr: int) -> dict[str, Any]:
        article = self._cell(cells, "article")
        text = self._cell(cells, "text")
        quantity = self._cell(cells, "quantity")
        price = self._cell(cells, "unit_price")
        discount = self._cell(cells, "discount")
        if text and not (article or quantity or price or discount):
            # A text row (a note on the receipt): unit and VAT cells mean nothing without an amount.
            return {"CustomerRowType": 3, "RowNr": row_nr, "Text": text}
        row: dict[str, Any] = {"CustomerRowType": 2, "RowNr": row_nr}
        for key, value in (
            ("ProductNr", article),
            ("Text", text),
            ("Quantity", normalise_number(quantity)),
            ("Unit", self._cell(cells, "unit")),
            ("UnitPrice", normalise_number(price)),
            ("Discount", normalise_number(discount, percent=True)),
            ("VatRate", normalise_number(self._cell(cells, "vat_rate"), percent=True)),
        ):
            if value:
                row[key] = value  # empty cells are left out: validation names a mandatory one that is missing
        extra = [cell for cell in cells[self._width :] if cell.strip()]
        if extra:
            # More cells than header columns, e.g. an unquoted "24,90" in a comma-separated file: the cells
            # have shifted and the row's values cannot be trusted. This unknown field makes validation refuse
            # the document ("is not a field of this document") instead of booking shifted values.
            row["CsvExtraCells"] = extra
        return row


def normalise_number(text: str, *, percent: bool = False) -> str:
    """A CSV number as a plain decimal string: "1 234,50" -> "1234.50", "-0,5" -> "-0.5", "25 %" -> "25".

    Text that is not such a number (or is ambiguous, like "1,234.50") is returned unchanged, so that the
    worker's validation reports it with its field path instead of the file being refused.
    """
    value = text.strip()
    if percent and value.endswith("%"):
        value = value[:-1].rstrip()
    value = value.replace("\u2212", "-")  # a typographic minus sign
    if not _NUMBER.fullmatch(value):
        return text
    return value.translate(_THOUSANDS).removeprefix("+")


def open_source(path: Path | str, fmt: str | None = None) -> Source:
    """Open a JSON, JSONL or CSV document file; `fmt` None chooses by suffix.

    `.jsonl`/`.ndjson` are JSONL, `.csv`/`.tsv` CSV, anything else JSON (or JSONL when it holds one JSON value
    per line). Raises SubmitError when the file cannot be read or is not of its format as a whole.
    """
    path = Path(path)
    if fmt is None:
        suffix = path.suffix.lower()
        fmt = "jsonl" if suffix in (".jsonl", ".ndjson") else "csv" if suffix in (".csv", ".tsv") else "json"
    fmt = fmt.lower()
    if fmt == "ndjson":
        fmt = "jsonl"
    if fmt not in FORMATS:
        raise SubmitError(f"unknown file format {fmt!r}: expected one of {', '.join(FORMATS)}")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise SubmitError(f"cannot read {path}: {exc.strerror}") from None
    source = Source(path=path, format=fmt, size=size)
    if fmt == "json":
        _open_json(source)
    elif fmt == "csv":
        _open_csv(source)
    else:
        with _open(path, "rb"):
            pass  # readable: reported now, not at the first document
    return source


# ----- helpers


def _open(path: Path, mode: str, **kwargs: Any) -> IO[Any]:
    try:
        return open(path, mode, **kwargs)
    except OSError as exc:
        raise SubmitError(f"cannot read {path}: {exc.strerror}") from None


def _not_utf8(path: Path, after_line: int) -> str:
    return f"{path} is {_not_utf8_reason(after_line)}"


def _not_utf8_reason(after_line: int) -> str:
    # The text layer decodes ahead in chunks: the bad byte is somewhere after the last line read.
    where = f"after line {after_line}" if after_line else "near the start"
    return (
        f"not UTF-8 text (an invalid byte {where}); "
        "an export in Windows-1252 or Latin-1 must be converted to UTF-8 first"
    )


def _broken(path: Path, lineno: int, reason: str) -> SourceError:
    """The file breaks at `lineno`: the message names the file and line, `reason` says what is wrong there."""
    return SourceError(f"{path}, line {lineno}: {reason}", reason=reason, line=lineno)


def _unreadable(path: Path, after_line: int, exc: OSError) -> SourceError:
    """Reading stopped with an error of the file system or device (a disk error, a file on a share that went)."""
    reason = f"cannot read on after line {after_line} ({exc.strerror or type(exc).__name__})"
    return SourceError(f"{path}: {reason}", reason=reason)


def _numbered(file: IO[bytes], path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, line) of a binary file, a read error raised as the SourceError it is."""
    lineno = 0
    lines = iter(file)
    while True:
        try:
            raw = next(lines)
        except StopIteration:
            return
        except OSError as exc:
            raise _unreadable(path, lineno, exc) from None
        lineno += 1
        yield lineno, raw


def _position(file: IO[str], fallback: int) -> int:
    """Bytes consumed from a text file (to the read-ahead chunk): `tell()` is refused while iterating."""
    buffer = getattr(file, "buffer", None)
    try:
        return int(buffer.tell()) if buffer is not None else fallback
    except (OSError, ValueError):
        return fallback


def _open_json(source: Source) -> None:
    """Load a JSON file into `source`, or find that it is JSONL (then documents() streams it)."""
    path = source.path
    with _open(path, "rb") as file:
        # One JSON value per line is JSONL: decided from the first lines, not by loading the whole file.
        first: bytes | None = None
        for lineno, raw in enumerate(file, start=1):
            line = raw.removeprefix(_BOM) if lineno == 1 else raw
            if line.strip(_JSON_BLANKS):
                first = line
                break
        if first is not None:
            value = _parse_alone(first)
            if value is not _NOT_ALONE:
                for raw in file:
                    if raw.strip(_JSON_BLANKS):
                        source.format = "jsonl"
                        return
                _set_loaded(source, value)
                return
        file.seek(0)
        blob = file.read()
    try:
        text = blob.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SubmitError(f"{path} is not UTF-8 text") from None
    del blob
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # e.g. several values on the first line: JSONL says which line is bad
            source.format = "jsonl"
            return
        raise SubmitError(f"{path} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    _set_loaded(source, data)


def _parse_alone(line: bytes) -> Any:
    try:
        return json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return _NOT_ALONE


def _set_loaded(source: Source, data: Any) -> None:
    if isinstance(data, list):
        docs = data
    elif isinstance(data, dict) and isinstance(data.get("documents"), list):
        source.header = {k: data[k] for k in ENVELOPE_FIELDS if data.get(k) is not None}
        docs = data["documents"]
    elif isinstance(data, dict):
        docs = [data]
    else:
        raise SubmitError(
            f"{source.path} holds a JSON {type(data).__name__}: expected a document, a list or an envelope"
        )
    source._loaded = docs
    source.documents_total = len(docs)


def _column_key(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lstrip("\ufeff").strip().lower())


def _csv_header(file: IO[str], path: Path) -> tuple[int, str]:
    """(line number, text) of the header: the first non-blank line."""
    lineno = 0
    try:
        for lineno, line in enumerate(file, start=1):
            if line.strip():
                return lineno, line
    except UnicodeDecodeError:
        raise SubmitError(_not_utf8(path, lineno)) from None
    raise SubmitError(f"{path} is empty: a CSV needs a header row naming its columns")


def _header_cells(line: str, delimiter: str) -> list[str]:
    try:
        return next(csv.reader([line], delimiter=delimiter), [])
    except csv.Error:
        return line.rstrip("\r\n").split(delimiter)


def _open_csv(source: Source) -> None:
    path = source.path
    with _open(path, "r", encoding="utf-8-sig", newline="") as file:
        lineno, line = _csv_header(file, path)
    # The delimiter is the one that makes the most known column names out of the header line.
    scored = []
    for preference, delimiter in enumerate(CSV_DELIMITERS):
        cells = _header_cells(line, delimiter)
        known = sum(1 for cell in cells if _column_key(cell) in _ALIASES)
        scored.append((known, len(cells), -preference, delimiter, cells))
    _known, _count, _preference, delimiter, cells = max(scored)
    columns: dict[str, int] = {}
    unused: list[str] = []
    for index, cell in enumerate(cells):
        name = _ALIASES.get(_column_key(cell))
        if name is None:
            unused.append(cell.strip())
        elif name in columns:
            raise SubmitError(
                f"{path}, line {lineno}: column {name} appears twice "
                f"({cells[columns[name]].strip()!r} and {cell.strip()!r})"
            )
        else:
            columns[name] = index
    missing = [name for name in _REQUIRED if name not in columns]
    if missing:
        aliases = {column.name: column.alias for column in CSV_COLUMNS}
        wanted = ", ".join(f"{name} ({aliases[name]})" for name in missing)
        found = ", ".join(repr(cell.strip()) for cell in cells) or "none"
        raise SubmitError(
            f"{path}, line {lineno}: the CSV header lacks the required column(s) {wanted}; columns found: {found}"
        )
    source.delimiter = delimiter
    source.columns = columns
    source.unused_columns = unused
    source._width = len(cells)
