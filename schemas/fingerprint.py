"""Content fingerprints: whether a re-submitted document says what the one created earlier said, and where not.

Both are taken of a document's wire form as validated (what is sent to the ERP), in which the models have already
written every number by its field's type: a quantity of 6, 6.0 or "6.000" is the float 6.0, an integer field is an
integer, and empty fields are left out. On that form:

- the fingerprint is a digest of the document as JSON with its keys sorted, so it does not depend on key order,
  white space, number formatting or absent versus null; it leaves out the document's id field (`ExternalId`,
  `ExternalInvoiceReference1`, ...): the duplicate index is keyed on it, and where the producer left it empty it
  is derived from the job (`<job id>#<position>`), which is not the producer's. It runs for every document created,
  so the text is read and written by orjson (`parse`): about 8 µs for a ten-row invoice, read included;
- `changed_paths` reads both versions as leaves, `path = value`, with paths in the form the validation errors use
  (`InvoiceRows[0].Quantity`), numbers compared by value, and names the paths whose values differ (only for a
  document found changed).

Row order is content (a row moved is a change), as is a string's case.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

__all__ = ["changed_paths", "fingerprint", "leaves", "parse"]


def _number(value: int | float | Decimal) -> str:
    try:
        number = Decimal(str(value))
    except InvalidOperation:  # pragma: no cover - str() of an int/float/Decimal always parses
        return repr(value)
    if not number.is_finite():
        return str(number)
    return format(number.normalize(), "f")


def _leaves(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if value is None:
        return
    if isinstance(value, Mapping):
        for name in sorted(value, key=str):
            yield from _leaves(value[name], f"{path}.{name}" if path else str(name))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _leaves(item, f"{path}[{index}]")
    elif isinstance(value, bool):
        yield path, "true" if value else "false"
    elif isinstance(value, int | float | Decimal):
        yield path, "#" + _number(value)
    else:
        yield path, "'" + str(value)


def leaves(document: Mapping[str, Any], id_field: str | None = None) -> dict[str, str]:
    """The document's leaves, `path -> canonical value`, without its id field."""
    return {path: value for path, value in _leaves(document, "") if path != id_field}


def parse(text: str | bytes) -> Any:
    """JSON text read for a fingerprint or a signature: orjson (a few microseconds for a ten-row invoice), else the
    standard library (lone surrogates, infinities). orjson reads an integer beyond 64 bits as a float: harmless
    here, as both versions a fingerprint compares are read this way; never use this for what is sent."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def fingerprint(document: Mapping[str, Any], id_field: str | None = None) -> str:
    """The digest of the document's content (24 hex digits): equal for documents whose wire forms say the same.
    `document` as `parse` reads it (both versions compared must be read alike)."""
    content = {name: value for name, value in document.items() if name != id_field and value is not None}
    try:
        text = orjson.dumps(content, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # lone surrogates, integers beyond 64 bits: the standard library writes them
        text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()
    return hashlib.blake2b(text, digest_size=12).hexdigest()


def changed_paths(old: Mapping[str, Any], new: Mapping[str, Any], id_field: str | None = None) -> list[str]:
    """The paths whose values differ between two versions of a document (present in one only, too), sorted: the
    names of what changed, never the values."""
    before, after = leaves(old, id_field), leaves(new, id_field)
    return sorted(path for path in before.keys() | after.keys() if before.get(path) != after.get(path))
