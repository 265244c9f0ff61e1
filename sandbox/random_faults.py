"""Probabilistic fault injection: each ERP request may be hit by one randomly drawn fault.

Set at start-up (``python -m sandbox --faults 429=0.05,503=0.05 --seed 7``, or ``erpsync
sandbox ...``) or at run time by POSTing a profile to ``/_sandbox/faults``::

    {"probabilities": {"429": 0.05, "503": 0.05, "slow": 0.05, "drop_after_commit": 0.05,
                       "500_after_commit": 0.05, "token_expiry": 0.01},
     "seed": 7,            # optional; without one a seed is chosen and shown by GET
     "retry_after": 1,     # seconds, the Retry-After of a 429 (default 1)
     "slow_ms": 3000,      # how long "slow" holds the answer back (default 3000)
     "paths": ["*"]}       # request paths it applies to (fnmatch patterns; default ["*"])

Which requests draw: every ERP request (not ``/_sandbox/...``, not ``/Login/Token``) whose path
matches ``paths`` and that no fault RULE (sandbox.faults) has claimed. Each draws exactly one
number from the profile's own ``random.Random(seed)``; the kinds, in the fixed order of
:data:`KINDS`, own consecutive slices of [0, 1) as wide as their probabilities, so at most one
fault applies and the same seed with the same sequence of requests gives the same faults.
(Concurrent requests draw in the order they finish the simulated latency.)
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from typing import Any

KINDS: dict[str, str] = {
    "429": "answer 429 Too Many Requests with Retry-After, save nothing",
    "503": "answer 503 Service Unavailable, save nothing",
    "slow": "process normally (documents ARE saved), hold the answer back slow_ms",
    "drop_after_commit": "process normally (documents ARE saved), then close the connection mid-response",
    "500_after_commit": "process normally (documents ARE saved), then answer 500 (operation result, Success false)",
    "token_expiry": "expire the caller's token just before authentication: 401, the client must log in again",
}
DEFAULT_RETRY_AFTER = 1
DEFAULT_SLOW_MS = 3000
PROFILE_FIELDS = ("probabilities", "seed", "retry_after", "slow_ms", "paths")
_SUM_TOLERANCE = 1e-9


def _error(message: str) -> ValueError:
    return ValueError(f"random faults: {message}")


def _probability(kind: Any, value: Any) -> float:
    if kind not in KINDS:
        raise _error(f"unknown fault kind {kind!r} (known: {', '.join(KINDS)})")
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise _error(f"the probability of {kind} must be a number from 0 to 1, got {value!r}")
    return float(value)


def check_probabilities(raw: Any) -> dict[str, float]:
    """Validated ``{kind: probability}``; ValueError for an unknown kind, a value outside 0..1
    or a sum above 1."""
    if not isinstance(raw, Mapping):
        raise _error('probabilities must be an object {"<kind>": <0..1>, ...}')
    probabilities = {str(kind): _probability(kind, value) for kind, value in raw.items()}
    total = math.fsum(probabilities.values())
    if total > 1 + _SUM_TOLERANCE:
        raise _error(f"the probabilities add up to {total:g}, more than 1")
    return probabilities


def parse_fault_spec(text: str) -> dict[str, float]:
    """``"429=0.05,503=0.05,slow=0.05"`` -> ``{"429": 0.05, ...}`` (the CLI's ``--faults``)."""
    raw: dict[str, float] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        kind, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not kind or not value:
            raise _error(f"expected KIND=PROBABILITY, got {item!r}")
        if kind in raw:
            raise _error(f"{kind} is given twice")
        try:
            raw[kind] = float(value)
        except ValueError:
            raise _error(f"the probability of {kind} must be a number from 0 to 1, got {value!r}") from None
    return check_probabilities(raw)


def _int_field(raw: Mapping[str, Any], name: str, default: int, high: int) -> int:
    value = raw.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
        raise _error(f"{name} must be an integer from 0 to {high}, got {value!r}")
    return value


@dataclass(frozen=True)
class FaultProfile:
    """The validated settings; ``seed`` None means "choose one when the profile is armed"."""

    probabilities: dict[str, float]
    seed: int | None = None
    retry_after: int = DEFAULT_RETRY_AFTER
    slow_ms: int = DEFAULT_SLOW_MS
    paths: tuple[str, ...] = ("*",)

    @classmethod
    def from_json(cls, raw: Any) -> FaultProfile:
        """Validate the JSON object POSTed to /_sandbox/faults; ValueError if it is invalid."""
        if not isinstance(raw, Mapping):
            raise _error("the profile must be a JSON object")
        unknown = sorted(set(raw) - set(PROFILE_FIELDS))
        if unknown:
            raise _error(f"unknown field(s) {unknown} (known: {', '.join(PROFILE_FIELDS)})")
        seed = raw.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise _error(f"seed must be an integer, got {seed!r}")
        paths = raw.get("paths", ["*"])
        if (
            not isinstance(paths, list)
            or not paths
            or not all(isinstance(p, str) and (p == "*" or p.startswith("/")) for p in paths)
        ):
            raise _error('paths must be a non-empty list of "*" or paths starting with "/" (wildcards allowed)')
        return cls(
            probabilities=check_probabilities(raw.get("probabilities")),
            seed=seed,
            retry_after=_int_field(raw, "retry_after", DEFAULT_RETRY_AFTER, 86_400),
            slow_ms=_int_field(raw, "slow_ms", DEFAULT_SLOW_MS, 3_600_000),
            paths=tuple(paths),
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "probabilities": dict(self.probabilities),
            "seed": self.seed,
            "retry_after": self.retry_after,
            "slow_ms": self.slow_ms,
            "paths": list(self.paths),
        }


@dataclass
class RandomFaults:
    """The armed profile (or none) and the random generator that draws for it."""

    profile: FaultProfile | None = None
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def __post_init__(self) -> None:
        self.configure(self.profile)

    def configure(self, profile: FaultProfile | None) -> None:
        """Arm ``profile`` (None: off) with a generator seeded afresh from its seed."""
        if profile is not None and profile.seed is None:
            profile = replace(profile, seed=random.SystemRandom().randrange(2**32))
        self.profile = profile
        self.rng = random.Random(profile.seed if profile else None)

    def clear(self) -> None:
        self.configure(None)

    def applies_to(self, path: str) -> bool:
        return self.profile is not None and any(fnmatchcase(path, p) for p in self.profile.paths)

    def draw(self, path: str) -> str | None:
        """The fault kind for one request on ``path``, or None. Draws only if the profile applies."""
        if self.profile is None or not self.applies_to(path):
            return None
        u = self.rng.random()
        upper = 0.0
        for kind in KINDS:  # fixed order: the result does not depend on the order of the JSON keys
            upper += self.profile.probabilities.get(kind, 0.0)
            if u < upper:
                return kind
        return None

    def as_json(self) -> dict[str, Any] | None:
        return self.profile.as_json() if self.profile else None
