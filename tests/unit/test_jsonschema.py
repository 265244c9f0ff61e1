"""schemas/job-envelope.schema.json: generated from the model, committed up to date, and saying what the model says.

The file is what producers in other languages validate against; if it drifts from `JobMessage` (and so from
`JobEnvelope`), a producer would send messages we reject, or be told a rejected shape is fine.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas.envelope import JOB_ID_PATTERN, TENANT_PATTERN, DocumentKind, JobEnvelope, Lane, Target
from schemas.jsonschema import MESSAGE_ONLY, SCHEMA_ID, SCHEMA_PATH, JobMessage, json_schema, main, render

SCHEMA = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def test_the_committed_file_is_what_the_generator_writes() -> None:
    assert SCHEMA_PATH.read_text(encoding="utf-8") == render(), "run: python -m schemas.jsonschema"
    assert main(["--check"]) == 0


def test_the_generator_writes_and_checks_a_file(tmp_path: Path) -> None:
    out = tmp_path / "schema.json"
    assert main(["--check", "--out", str(out)]) == 1  # missing
    assert main(["--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == render()
    out.write_text(render().replace('"minItems": 1', '"minItems": 0'), encoding="utf-8")
    assert main(["--check", "--out", str(out)]) == 1


def test_the_schema_states_the_contract() -> None:
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert SCHEMA["$id"] == SCHEMA_ID and SCHEMA["title"] and "LPUSH" in SCHEMA["description"]
    assert SCHEMA["type"] == "object" and SCHEMA["additionalProperties"] is False
    assert SCHEMA["required"] == ["job_id", "tenant", "kind", "documents"]
    assert set(SCHEMA["properties"]) == set(JobEnvelope.model_fields) - {"submitted_at"} | {"source_error"}
    assert set(MESSAGE_ONLY) == {"source_error"}
    props = SCHEMA["properties"]
    assert props["job_id"]["pattern"] == JOB_ID_PATTERN and props["tenant"]["pattern"] == TENANT_PATTERN
    assert SCHEMA["$defs"]["Target"]["enum"] == [t.value for t in Target]
    assert SCHEMA["$defs"]["DocumentKind"]["enum"] == [k.value for k in DocumentKind]
    assert SCHEMA["$defs"]["Lane"]["enum"] == ["interactive", "bulk"] == [lane.value for lane in Lane]
    assert (
        props["priority"]["anyOf"] == [{"$ref": "#/$defs/Lane"}, {"type": "null"}]
        and "priority" not in SCHEMA["required"]
    )
    assert props["documents"]["minItems"] == 1 and props["documents"]["items"]["type"] == "object"
    assert all(p.get("description") for p in props.values())
    assert json_schema() == SCHEMA


# ----- the schema and the model agree (a small validator for the keywords the schema uses)


#: The JSON types the schema names, as Python's json module parses them.
TYPES = {"object": dict, "array": list, "string": str, "null": type(None), "integer": int}


def schema_accepts(value: Any, schema: dict[str, Any] = SCHEMA) -> bool:
    if "$ref" in schema:
        target = SCHEMA["$defs"][schema["$ref"].rsplit("/", 1)[1]]
        return schema_accepts(value, target) and schema_accepts(value, {k: v for k, v in schema.items() if k != "$ref"})
    if "anyOf" in schema and not any(schema_accepts(value, s) for s in schema["anyOf"]):
        return False
    if "enum" in schema and value not in schema["enum"]:
        return False
    kind = schema.get("type")
    if kind is not None and type(value) is not TYPES[kind]:
        return False
    if isinstance(value, str):
        return string_accepts(value, schema)
    if type(value) is int:
        return value >= schema.get("minimum", value)
    if isinstance(value, list):
        return array_accepts(value, schema)
    if isinstance(value, dict) and "properties" in schema:
        return object_accepts(value, schema)
    return True


def string_accepts(value: str, schema: dict[str, Any]) -> bool:
    # ECMA-262 `$` does not match before a final newline, as Python's does
    if "pattern" in schema and not re.search(schema["pattern"].replace("$", r"\Z"), value):
        return False
    return schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", len(value))


def array_accepts(value: list[Any], schema: dict[str, Any]) -> bool:
    if len(value) < schema.get("minItems", 0):
        return False
    return "items" not in schema or all(schema_accepts(v, schema["items"]) for v in value)


def object_accepts(value: dict[str, Any], schema: dict[str, Any]) -> bool:
    properties = schema["properties"]
    if not set(schema.get("required", ())) <= set(value):
        return False
    if schema.get("additionalProperties") is False and set(value) - set(properties):
        return False
    return all(schema_accepts(v, properties[k]) for k, v in value.items() if k in properties)


def model_accepts(value: Any) -> bool:
    try:
        JobMessage.model_validate(value)
    except ValidationError:
        return False
    return True


LEAVES = st.none() | st.booleans() | st.integers() | st.text(max_size=6)
FIELD_VALUES = {
    "job_id": st.sampled_from(["job-1", "a", "x" * 80, "x" * 81, "-a", "a b", "ok\n", "ÅÄÖ"]) | LEAVES,
    "tenant": st.sampled_from(["demo", "acme.se", "t" * 64, "t" * 65, "_t"]) | LEAVES,
    "target": st.sampled_from([t.value for t in Target] + ["SAP"]) | LEAVES,
    "kind": st.sampled_from([k.value for k in DocumentKind] + ["Order"]) | LEAVES,
    "documents": st.lists(st.dictionaries(st.text(max_size=4), LEAVES, max_size=2) | LEAVES, max_size=3) | LEAVES,
    "source": st.sampled_from(["pos", "s" * 200, "s" * 201]) | LEAVES,
    "priority": st.sampled_from(["interactive", "bulk", "Bulk", "urgent"]) | LEAVES,
    "submitted_at": st.just("2026-01-01T00:00:00Z"),
    "base_url": st.just("http://x"),
}


VALID = st.fixed_dictionaries(
    {
        "job_id": st.sampled_from(["job-1", "a", "x" * 80, "2026.01_a-b"]),
        "tenant": st.sampled_from(["demo", "acme.se", "t" * 64]),
        "kind": st.sampled_from([k.value for k in DocumentKind]),
        "documents": st.lists(st.dictionaries(st.text(max_size=4), LEAVES, max_size=2), min_size=1, max_size=3),
    },
    optional={
        "target": st.sampled_from([None, *(t.value for t in Target)]),
        "source": st.sampled_from([None, "pos"]),
        "priority": st.sampled_from([None, "interactive", "bulk"]),
    },
)


@st.composite
def messages(draw: st.DrawFn) -> dict[str, Any]:
    """A valid message with up to two fields replaced (by a valid or an invalid value) or dropped."""
    message = draw(VALID)
    for name in draw(st.lists(st.sampled_from(sorted(FIELD_VALUES)), max_size=2)):
        if draw(st.booleans()):
            message[name] = draw(FIELD_VALUES[name])
        else:
            message.pop(name, None)
    return message


@settings(max_examples=400, deadline=None)
@given(messages())
def test_the_schema_and_the_model_accept_the_same_messages(message: dict[str, Any]) -> None:
    assert schema_accepts(message) == model_accepts(message)


def test_a_message_the_schema_accepts_makes_an_envelope() -> None:
    message = {"job_id": "j-1", "tenant": "demo", "kind": "order", "documents": [{}], "target": None}
    assert schema_accepts(message) and model_accepts(message)
    parsed: Any = JobMessage.model_validate(message)
    fields = parsed.model_dump(exclude=set(MESSAGE_ONLY))
    envelope = JobEnvelope(**{**fields, "target": parsed.target or Target.SOFTONE})
    assert envelope.job_id == "j-1" and envelope.kind is DocumentKind.ORDER


# ----- source_error: how a producer says its source broke part-way (the job is stored, and ends `incomplete`)

SOURCE_ERRORS_ACCEPTED = [
    None,
    {"reason": "not valid JSON"},
    {"line": 1501, "reason": "x"},
    {"line": None, "reason": "r"},
]
SOURCE_ERRORS_REFUSED = [
    {},  # a reason is required
    {"line": 3},
    {"reason": ""},
    {"reason": "r" * 501},
    {"line": 0, "reason": "r"},
    {"line": "7", "reason": "r"},  # a number, not text
    {"line": True, "reason": "r"},
    {"line": 1.5, "reason": "r"},
    {"reason": "r", "position": 9},  # no other field
    "line 7: not valid JSON",
]


@pytest.mark.parametrize("value", SOURCE_ERRORS_ACCEPTED)
def test_a_source_error_the_schema_describes_is_accepted(value: Any) -> None:
    message = {"job_id": "j-1", "tenant": "demo", "kind": "order", "documents": [{}], "source_error": value}
    assert model_accepts(message) and schema_accepts(message)
    described = SCHEMA["$defs"]["SourceError"]
    assert SCHEMA["properties"]["source_error"]["anyOf"] == [{"$ref": "#/$defs/SourceError"}, {"type": "null"}]
    assert described["required"] == ["reason"] and described["additionalProperties"] is False
    assert described["properties"]["reason"]["maxLength"] == 500 and described["properties"]["reason"]["minLength"] == 1


@pytest.mark.parametrize("value", SOURCE_ERRORS_REFUSED)
def test_a_source_error_outside_the_schema_is_refused(value: Any) -> None:
    message = {"job_id": "j-1", "tenant": "demo", "kind": "order", "documents": [{}], "source_error": value}
    assert not model_accepts(message) and not schema_accepts(message)
