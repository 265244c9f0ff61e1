"""Tenant controls for operators: every configured tenant with its state, pause and resume, and authorising a tenant
again with new credentials (`erpsync tenants`, worker/cli/tenants.py; the console's tenants page).

A tenant is `active` or `paused` (worker/store/tenants.py): by an operator (`pause`), or by `auth` when its ERP
refused its authorisation (a spent Fortnox refresh token, refused client credentials or API keys, a 401 after
renewal: worker/pipeline/retry.py). While it is paused the dispatcher hands out none of its batches: its backlog
waits, nothing of it fails, other tenants go on; `erpsync status` shows it waiting for `paused: <reason>`.

`reauth` stores new credentials in Redis (worker/store/tokens.py), with the fingerprint of the tenants file's value
each supersedes, and ends a pause by `auth` (an operator's pause stays until `resume`). Which credential a worker uses
("newest wins", worker/store/tokens.py's docstring): Redis's while the tenants file still holds the value it
superseded; once the file holds another value (an operator edited it), the file's, and Redis's is dropped. So
editing the tenants file (then `resume`, for a tenant paused by `auth`) works as well as `reauth`.

Credentials are never printed, logged or put in an error: the listing says only where the ones in use come from.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from schemas.envelope import Target
from worker.errors import UserError
from worker.ops.overview import buffer_depths
from worker.ops.overview import tenants as waiting_tenants
from worker.pipeline.queue import Enqueue
from worker.pipeline.tickets import offer_tickets
from worker.redaction import secrets_filter
from worker.settings import SECRET_MIN_LENGTH, Settings, TenantConfig, unknown_tenant_message
from worker.store.client import RedisClient
from worker.store.dispatch import LANES, Dispatcher
from worker.store.errors import StoreUnavailable
from worker.store.tenants import TenantControls
from worker.store.tokens import REFRESH_TOKEN, TokenStore

__all__ = ["credential_fields", "list_tenants", "pause", "reauth", "required_fields", "resume"]

#: How long `reauth` waits for a worker renewing the tenant's token to finish (s).
REAUTH_LOCK_S = 60.0


def required_fields(tenant: TenantConfig) -> tuple[str, ...]:
    """The credentials `reauth` asks for: what authorises this tenant at its ERP (empty: it cannot be reauthorised
    here; its credentials are the tenants file's only)."""
    if tenant.target is Target.FORTNOX:
        return (REFRESH_TOKEN,) if tenant.refresh_token is not None else ("client_secret",)
    if tenant.target is Target.SOFTONE:
        return ("company_api_key", "connect_api_key")
    return ("api_token",)  # the invoice service: a static Bearer token


def credential_fields(tenant: TenantConfig) -> tuple[str, ...]:
    """Every credential `reauth` may replace for this tenant (its connector reads them with the precedence)."""
    if tenant.target is Target.FORTNOX and tenant.refresh_token is not None:
        return (REFRESH_TOKEN, "client_secret")
    return required_fields(tenant)


def _tenant(settings: Settings, name: str) -> TenantConfig:
    tenants = settings.tenants()
    if name not in tenants:  # the same one line as everywhere else: a near match, the configured ones
        raise UserError(unknown_tenant_message(name, sorted(tenants)))
    return tenants[name]


def _file_value(tenant: TenantConfig, field: str) -> str | None:
    value = getattr(tenant, field, None)
    return value.get_secret_value() if value is not None else None


def list_tenants(client: RedisClient, settings: Settings) -> list[dict[str, Any]]:
    """One dict per configured tenant, by name: {"name", "target", "state": "active"|"paused", "paused_by":
    "operator"|"auth"|None, "reason", "since" (epoch s), "auth": "ok"|"refused"|"unknown", "backlog" (documents
    waiting to be sent: for intake, in the coalescing buffer, queued in the dispatcher, in batches coming back later),
    "backlog_lanes" ({"interactive", "bulk"}: those waiting for intake or queued, per lane, the buffer's as bulk),
    "backlog_later" (in batches coming back later), "credentials": "file"|"redis" (where the ones in use come from),
    "reauth": the credentials `reauth` asks for}."""
    configs = settings.tenants()
    states = TenantControls(client, settings.key_prefix).states(configs)
    waiting = {row["tenant"]: row for row in waiting_tenants(client, settings, buffer_depths(client, settings))}
    rows = []
    for name, config in sorted(configs.items()):
        state = states[name]
        w = waiting.get(name)
        lanes = dict.fromkeys((lane.value for lane in LANES), 0)
        later = 0
        if w is not None:
            for lane in lanes:
                lanes[lane] = w["intake_documents"][lane] + w["queued_documents"][lane]
            lanes[LANES[-1].value] += w["buffered_documents"]
            later = w["delayed_documents"]
        tokens = TokenStore(client, settings.key_prefix, name)
        sources = {tokens.source(field, _file_value(config, field)) for field in credential_fields(config)}
        rows.append(
            {
                "name": name,
                "target": config.target.value,
                "state": "paused" if state.paused else "active",
                "paused_by": state.paused_by.value if state.paused_by else None,
                "reason": state.reason,
                "since": state.since,
                "auth": state.auth.value,
                "backlog": sum(lanes.values()) + later,
                "backlog_lanes": lanes,
                "backlog_later": later,
                "credentials": "redis" if "redis" in sources else "file",
                "reauth": list(required_fields(config)),
            }
        )
    return rows


def pause(client: RedisClient, settings: Settings, name: str, *, reason: str = "paused by an operator") -> None:
    """Pause a tenant (its batches wait; what is in flight finishes). UserError for an unknown tenant."""
    _tenant(settings, name)
    TenantControls(client, settings.key_prefix).pause(name, reason.strip() or "paused by an operator")


def resume(client: RedisClient, settings: Settings, name: str, *, enqueue: Enqueue | None = None) -> bool:
    """End a tenant's pause, whoever paused it: its backlog goes on at once (a send ticket is offered with `enqueue`;
    without one the next worker heartbeat offers it). True when it was paused."""
    _tenant(settings, name)
    was = TenantControls(client, settings.key_prefix).resume(name)
    _wake(client, settings, name, enqueue)
    return was


def reauth(
    client: RedisClient,
    settings: Settings,
    name: str,
    credentials: Mapping[str, str],
    *,
    enqueue: Enqueue | None = None,
) -> bool:
    """Store new credentials for a tenant (e.g. {"refresh_token": ...} for Fortnox, {"company_api_key": ...,
    "connect_api_key": ...} for SoftOne) and end its pause by `auth`. They take precedence over the tenants file's
    until that file holds other values (the module docstring). True when this resumed the tenant (a pause by an
    operator stays). UserError for an unknown tenant, a credential it does not take, or an empty one."""
    config = _tenant(settings, name)
    allowed = credential_fields(config)
    if not allowed:
        raise UserError(
            f"tenant {name!r} ({config.target.value}) takes its credentials from the tenants file only: edit it there"
        )
    given = {field: value.strip() for field, value in credentials.items()}
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise UserError(
            f"tenant {name!r} takes no {', '.join(unknown)}; its credentials for reauth: {', '.join(allowed)}"
        )
    if not given:
        raise UserError(f"no new credentials given for tenant {name!r} (it takes {', '.join(allowed)})")
    short = sorted(field for field, value in given.items() if len(value) < SECRET_MIN_LENGTH)
    if short:
        raise UserError(f"{', '.join(short)}: too short to be a credential (at least {SECRET_MIN_LENGTH} characters)")
    for value in given.values():
        secrets_filter().add_secret(value)
    tokens = TokenStore(client, settings.key_prefix, name)
    try:
        tokens.replace(given, {field: _file_value(config, field) for field in given}, REAUTH_LOCK_S)
    except StoreUnavailable as exc:
        raise UserError(
            f"could not store tenant {name!r}'s credentials ({exc.kind}): a worker may be renewing its token; try again"
        ) from None
    resumed = TenantControls(client, settings.key_prefix).reauthorised(name)
    _wake(client, settings, name, enqueue)
    return resumed


def _wake(client: RedisClient, settings: Settings, name: str, enqueue: Enqueue | None) -> None:
    """A resumed tenant's batches go on now: the dispatcher looks at it at once, and a send ticket is offered."""
    Dispatcher(client, settings).wake(name)
    if enqueue is not None:
        offer_tickets(enqueue, 1)
