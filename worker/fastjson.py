"""JSON for what the worker writes and reads once per document (records, batch members): orjson, with the
stdlib as the fallback for what orjson refuses, so that the values written and read are exactly the stdlib's.

A record is encoded when a document's outcome changes and decoded when intake looks at it: orjson does
each in under a microsecond, the stdlib in 6-8 (measured on a created record). The output differs from
`json.dumps(value, ensure_ascii=False)` only in its whitespace (none). orjson refuses strings with lone
surrogates and integers beyond 64 bits, which the stdlib writes; reading, it refuses lone-surrogate escapes,
which the stdlib reads. Both cases fall back to the stdlib, so nothing the worker stored before (or that a
document's text can put in a record) becomes unreadable.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(value: Any) -> str:
    """`json.dumps(value, ensure_ascii=False)` without the whitespace, for values without floats (orjson
    writes NaN as null where the stdlib writes NaN: a record or a member list holds no float)."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # lone surrogates, integers beyond 64 bits, types orjson does not know
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def loads(text: str | bytes) -> Any:
    """`json.loads(text)`."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)
