"""Content fingerprints: whether a re-submitted document says what the one created earlier said, and where not.

A document (its wire form, as validated) is read as leaves: `path = value`, with paths in the form the validation
errors use (`InvoiceRows[0].Quantity`). Its fingerprint is a digest of its sorted leaves, so it does not depend on:

- key order (leaves are sorted by path) or white space (values, not text, are compared);
- number formatting: 6, 6.0, "6.000" as a number field are the same value (numbers are written by value);
- absent versus null (a null leaf is no leaf: the wire form leaves empty fields out);
- the document's id field (`ExternalId`, `ExternalInvoiceReference1`, ...): the duplicate index is keyed on it,
  and where the producer left it empty it is derived from the job (`<job id>#<position>`): not the producer's.

Row order is content (a row moved is a change), as is a string's case.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = ["changed_paths", "fingerprint", "leaves"]


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


def fingerprint(document: Mapping[str, Any], id_field: str | None = None) -> str:
    """The digest of the document's leaves (24 hex digits): equal for documents with the same content."""
    text = "\n".join(f"{path}={value}" for path, value in sorted(leaves(document, id_field).items()))
    return hashlib.blake2b(text.encode("utf-8"), digest_size=12).hexdigest()


def changed_paths(old: Mapping[str, Any], new: Mapping[str, Any], id_field: str | None = None) -> list[str]:
    """The paths whose values differ between two versions of a document (present in one only, too), sorted: the
    names of what changed, never the values."""
    before, after = leaves(old, id_field), leaves(new, id_field)
    return sorted(path for path in before.keys() | after.keys() if before.get(path) != after.get(path))
