"""The sandbox's strict JSON bodies: what a JSON API refuses is refused, whichever parser decided."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sandbox.jsonbody import parse_json


@pytest.mark.parametrize(
    "body", [b"[1,]", b"[NaN]", b"[Infinity]", b"[-Infinity]", b"[1e400]", b"[-1e400]", b"[1] x", b"", b"\xff[]"]
)
def test_what_is_not_strict_json_is_refused(body: bytes) -> None:
    with pytest.raises(ValueError):
        parse_json(body)


def test_a_byte_order_mark_and_blanks_are_accepted() -> None:
    assert parse_json(b'\xef\xbb\xbf [{"a": 1.5}] ') == [{"a": 1.5}]


def test_a_lone_surrogate_escape_is_read_as_the_stdlib_reads_it() -> None:
    assert parse_json(b'["\\ud800"]') == ["\ud800"]


def test_an_integer_beyond_64_bits_is_not_an_integer() -> None:
    # A .NET service's integer fields are 32/64-bit: RowNr 10**30 is then refused as "not an integer".
    (value,) = parse_json(b"[1000000000000000000000000000000]")
    assert isinstance(value, float)
    assert parse_json(b"[18446744073709551615, -9223372036854775808]") == [2**64 - 1, -(2**63)]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4),
    max_leaves=12,
)  # fmt: skip


@given(json_values)
def test_any_json_value_reads_back_as_the_stdlib_reads_it(value: object) -> None:
    assert parse_json(json.dumps(value, ensure_ascii=False).encode()) == json.loads(json.dumps(value))
