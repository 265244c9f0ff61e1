"""worker/fastjson.py: orjson where it can, the stdlib where it cannot, and what the stdlib reads back is the value."""

from __future__ import annotations

import json

import orjson
from hypothesis import given
from hypothesis import strategies as st

from worker import fastjson
from worker.store.records import Record

# What a record or a member list can hold: text (any, lone surrogates included), integers of any size, None,
# booleans, and lists and objects of those.
values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(values)
def test_dumps_writes_what_the_stdlib_reads_as_the_same_value(value: object) -> None:
    assert json.loads(fastjson.dumps(value)) == value


def test_what_orjson_refuses_goes_to_the_stdlib() -> None:
    lone = "R-\ud800"
    try:
        orjson.dumps(lone)
        raise AssertionError("orjson accepted a lone surrogate: the fallback is no longer exercised")
    except TypeError:
        pass
    assert fastjson.dumps([lone, 2**70]) == json.dumps([lone, 2**70], ensure_ascii=False, separators=(",", ":"))


def test_a_record_written_before_orjson_reads_the_same() -> None:
    record = Record("R-1", "failed", error="kund 12 saknas", errors=[{"loc": "InvoiceRows[0]", "msg": "x"}],
                    batch_id="J@0", updated_at="2026-11-21T12:00:00.000Z")  # fmt: skip
    old = json.dumps(
        {"external_id": "R-1", "status": "failed", "key": None, "number": None, "error": "kund 12 saknas",
         "errors": [{"loc": "InvoiceRows[0]", "msg": "x"}], "batch_id": "J@0",
         "updated_at": "2026-11-21T12:00:00.000Z"},
        ensure_ascii=False,
    )  # fmt: skip
    assert Record.from_json(old) == record
    assert json.loads(record.to_json()) == json.loads(old)
