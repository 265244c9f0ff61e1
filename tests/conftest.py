"""Shared fixtures: example documents from the specs and the examples folder."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def example_json(name: str) -> Any:
    """A fresh copy of a JSON file of examples/ (the spec example bodies live there, once)."""
    return json.loads((EXAMPLES / name).read_text(encoding="utf-8"))


@pytest.fixture
def spec_invoice() -> dict[str, Any]:
    """The invoice example body from softone-go-customer-invoices-post.txt (its one document)."""
    return copy.deepcopy(json.loads((EXAMPLES / "spec-invoice.json").read_text())[0])


@pytest.fixture
def spec_order() -> dict[str, Any]:
    """The order example body from softone-go-orders-post.txt, trailing comma removed."""
    return copy.deepcopy(json.loads((EXAMPLES / "spec-order.json").read_text())[0])
