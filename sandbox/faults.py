"""Fault injection: rules that make the next matching ERP request(s) fail in a chosen way.

A rule (JSON, posted to ``/_sandbox/faults``)::

    {"path": "/Economy/Billing/CustomerInvoices",  # exact request path, or "*" = any ERP path but
                                                   # the token endpoints (/Login/Token, /oauth-v1/token)
     "kind": "status",            # see KINDS
     "status": 503,               # for status / status_after_commit
     "times": 1,                  # how many matching requests it applies to
     "delay_ms": 0,               # for delay
     "retry_after": "2",          # optional Retry-After header value (status kinds)
     "body": "Service Unavailable"}  # optional plain-text body (status kinds)

Rules are consumed in order: a request takes the FIRST rule whose path matches, at the moment
the request arrives (after the simulated latency, before authentication), and uses up one of
its ``times``. Paths of every API work: SoftOne's, Fortnox's (``/3/invoices``, ...,
``/oauth-v1/token``) and the invoice service's (``/invoices``). A request Fortnox's rate limit
refuses takes no rule.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

KINDS = {
    "status": "answer `status` without saving anything",
    "status_after_commit": "process normally (documents ARE saved), then answer `status` instead",
    "drop": "close the connection mid-response without saving anything",
    "drop_after_commit": "process normally (documents ARE saved), then close mid-response",
    "delay": "wait delay_ms more, then process normally (documents ARE saved)",
}
DEFAULT_STATUS = {"status": 503, "status_after_commit": 500}


@dataclass
class FaultRule:
    """One parsed rule; ``times`` counts down as matching requests use it."""

    path: str
    kind: str
    status: int
    times: int
    delay_ms: int
    retry_after: str | None
    body: str | None

    def matches(self, path: str, wildcard: bool = True) -> bool:
        """True if the rule names ``path``, or is ``"*"`` and ``wildcard`` (False for token endpoints)."""
        return self.path == path or (wildcard and self.path == "*")

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _int(raw: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = raw.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"fault rule: {name} must be an integer in [{low}, {high}], got {value!r}")
    return value


def parse_rule(raw: Any) -> FaultRule:
    """Validate one rule object; raises ValueError with a readable message."""
    if not isinstance(raw, dict):
        raise ValueError("fault rule must be a JSON object")
    unknown = set(raw) - {"path", "kind", "status", "times", "delay_ms", "retry_after", "body"}
    if unknown:
        raise ValueError(f"fault rule: unknown field(s) {sorted(unknown)}")
    path, kind = raw.get("path", "*"), raw.get("kind")
    if not isinstance(path, str) or not (path == "*" or path.startswith("/")):
        raise ValueError('fault rule: path must be "*" or start with "/"')
    if kind not in KINDS:
        raise ValueError(f"fault rule: kind must be one of {sorted(KINDS)}, got {kind!r}")
    for name in ("retry_after", "body"):
        if raw.get(name) is not None and not isinstance(raw[name], str):
            raise ValueError(f"fault rule: {name} must be a string")
    return FaultRule(
        path=path,
        kind=kind,
        status=_int(raw, "status", DEFAULT_STATUS.get(kind, 503), 100, 599),
        times=_int(raw, "times", 1, 1, 1_000_000),
        delay_ms=_int(raw, "delay_ms", 0, 0, 3_600_000),
        retry_after=raw.get("retry_after"),
        body=raw.get("body"),
    )


class FaultStore:
    """The ordered list of pending rules."""

    def __init__(self) -> None:
        self.rules: list[FaultRule] = []

    def add(self, raw: Any) -> list[FaultRule]:
        """Append one rule object or a list of them (all validated before any is added)."""
        rules = [parse_rule(r) for r in raw] if isinstance(raw, list) else [parse_rule(raw)]
        self.rules.extend(rules)
        return rules

    def take(self, path: str, wildcard: bool = True) -> FaultRule | None:
        """The first rule matching ``path`` (``"*"`` rules only if ``wildcard``), with one of its ``times``
        used up."""
        for i, rule in enumerate(self.rules):
            if rule.matches(path, wildcard):
                rule.times -= 1
                if rule.times == 0:
                    del self.rules[i]
                return rule
        return None

    def clear(self) -> None:
        self.rules.clear()

    def as_json(self) -> list[dict[str, Any]]:
        return [r.as_json() for r in self.rules]
