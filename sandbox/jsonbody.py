"""Strict JSON request bodies, shared by every API of the sandbox."""

from __future__ import annotations

import json
import math
from typing import Any

import orjson


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is out of range")
    return value


def parse_json(body: bytes) -> Any:
    """Strict JSON (no trailing commas, NaN, Infinity, out-of-range numbers); ValueError if not."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError("request body is not UTF-8") from exc
    try:
        # orjson is as strict (no NaN, Infinity, trailing commas, numbers beyond a double) and three times
        # faster. It reads an integer beyond 64 bits as a float, so such a number is then refused where an
        # integer is expected, as a .NET service with 32/64-bit integer fields refuses it.
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        pass  # the stdlib parser decides and words the error (lone surrogates, for one, it accepts)
    return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
