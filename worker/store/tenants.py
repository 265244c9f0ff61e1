"""Tenant controls kept in Redis: whether a tenant is paused — by an operator, or because its ERP refused its
authorisation — why and since when, and the health of its authorisation.

    {p}:tenant:{tenant}     hash    paused_by (auth|operator), reason, since (epoch s); auth (ok|refused|unknown),
                                    auth_at; credentials_at (when an operator last gave new credentials). No expiry.

A paused tenant's batches are not handed out: the dispatcher parks the tenant while `paused_by` is set
(lua/dispatch_take.lua reads it; worker/store/dispatch.py, Waiting.PAUSED), so its backlog waits in its lanes while
other tenants go on; its intake and batching go on too. Nothing of it is failed or dead-lettered.

Who writes it: operators pause and resume (`pause`, `resume`: worker/ops/tenants.py, `erpsync tenants`); the send
step records a refusal (`refused`: worker/pipeline/retry.py), which pauses the tenant by `auth`; `reauthorised`
(after `erpsync tenants reauth` stored new credentials: worker/store/tokens.py) ends a pause by `auth`, and the
token store's `save` notes `auth: ok` after every renewal that worked.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import cast

from worker.store.client import RedisClient
from worker.store.keys import Keys
from worker.store.scripts import load_script

__all__ = ["AuthHealth", "PausedBy", "TenantControls", "TenantState"]

#: How long a pause reason is kept, at most (characters).
REASON_MAX = 300


class PausedBy(StrEnum):
    """Who paused a tenant."""

    AUTH = "auth"  # its ERP refused its authorisation: it waits for `erpsync tenants reauth` (or resume)
    OPERATOR = "operator"  # `erpsync tenants pause` or the console


class AuthHealth(StrEnum):
    """What is known of a tenant's authorisation at its ERP."""

    OK = "ok"  # the last token renewal worked
    REFUSED = "refused"  # the ERP refused it
    UNKNOWN = "unknown"  # no renewal seen yet, or new credentials not used yet


@dataclass(frozen=True, slots=True)
class TenantState:
    """One tenant's controls as Redis holds them."""

    tenant: str
    paused_by: PausedBy | None
    reason: str | None
    since: float | None
    auth: AuthHealth
    auth_at: float | None
    credentials_at: float | None

    @property
    def paused(self) -> bool:
        return self.paused_by is not None


class TenantControls:
    """Pause, resume and the authorisation state of tenants."""

    def __init__(self, client: RedisClient, prefix: str) -> None:
        self.r = client
        self.keys = Keys(prefix)
        self._control = load_script(client, "tenant_control")

    def state(self, tenant: str) -> TenantState:
        return self.states([tenant])[tenant]

    def states(self, tenants: Iterable[str]) -> dict[str, TenantState]:
        """The state of each of these tenants (one round trip)."""
        names = list(tenants)
        pipe = self.r.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(self.keys.tenant(name))
        return {name: _state(name, cast(dict[str, str], raw)) for name, raw in zip(names, pipe.execute(), strict=True)}

    def pause(self, tenant: str, reason: str, *, by: PausedBy = PausedBy.OPERATOR) -> None:
        """Pause the tenant: who and why replace what was there; `since` stays that of a pause already running."""
        key = self.keys.tenant(tenant)
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(key, mapping={"paused_by": by.value, "reason": reason[:REASON_MAX]})
        pipe.hsetnx(key, "since", f"{time.time():.3f}")
        pipe.execute()

    def resume(self, tenant: str) -> bool:
        """End the tenant's pause, whoever paused it; True when it was paused."""
        return bool(self.r.hdel(self.keys.tenant(tenant), "paused_by", "reason", "since"))

    def refused(self, tenant: str, reason: str, *, started_at: float) -> bool:
        """Its ERP refused the authorisation a request that started at `started_at` (epoch s) used: health `refused`
        and the tenant paused by `auth` (an operator's pause stays), unless new credentials were given since then.
        True when recorded."""
        args = ["refused", f"{time.time():.3f}", reason[:REASON_MAX], repr(started_at)]
        return bool(self._control(keys=[self.keys.tenant(tenant)], args=args))

    def reauthorised(self, tenant: str) -> bool:
        """New credentials were stored: health `unknown` until a renewal works, a pause by `auth` ends (an
        operator's stays). True when that ended a pause."""
        return bool(self._control(keys=[self.keys.tenant(tenant)], args=["reauthorised", f"{time.time():.3f}"]))


def _state(tenant: str, raw: dict[str, str]) -> TenantState:
    def when(name: str) -> float | None:
        try:
            return float(raw[name]) if raw.get(name) else None
        except ValueError:
            return None

    by = raw.get("paused_by")
    auth = raw.get("auth")
    return TenantState(
        tenant=tenant,
        paused_by=PausedBy(by) if by in set(PausedBy) else (PausedBy.OPERATOR if by else None),
        reason=raw.get("reason") or None if by else None,
        since=when("since") if by else None,
        auth=AuthHealth(auth) if auth in set(AuthHealth) else AuthHealth.UNKNOWN,
        auth_at=when("auth_at"),
        credentials_at=when("credentials_at"),
    )
