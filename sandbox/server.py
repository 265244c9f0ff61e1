"""Run the sandbox over HTTP with uvicorn: :func:`serve` (foreground) and
:func:`background_server` (a thread, for tests that need a real socket, e.g. drop faults).

One process, asyncio, uvicorn's own access log disabled: the sandbox logs one line per
request itself, with API keys and tokens masked (sandbox.middleware). Its state is in memory, or
kept in an SQLite file across restarts with ``state_file`` (``--state FILE``, sandbox.persistence).
"""

from __future__ import annotations

import copy
import logging
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from uvicorn.config import LOGGING_CONFIG

from sandbox.app import create_app
from sandbox.config import SandboxConfig, is_positive_number, load_config, load_customers
from sandbox.random_faults import FaultProfile, parse_fault_spec

KEEP_ALIVE_SECONDS = 30  # clients keep pooled connections; don't close them under their feet
BACKLOG = 4096  # bursts of concurrent workers must not be refused by the listen queue


class _IntentionalDropFilter(logging.Filter):
    """Silence uvicorn's error for an incomplete response: only drop faults cause it, and the
    sandbox logs those itself ("-> drop")."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "ASGI callable returned without completing response."


def fault_profile(
    faults: str | Mapping[str, float] | None,
    seed: int | None = None,
    retry_after: int | None = None,
    slow_ms: int | None = None,
) -> FaultProfile | None:
    """The start-up random fault profile from ``--faults`` (``"429=0.05,slow=0.01"`` or a
    ``{kind: probability}`` mapping) and its options; None without ``faults``.

    ValueError (a message for the user) if anything is invalid, or if an option is given
    without ``faults``."""
    if faults is None:
        options = (("--seed", seed), ("--retry-after", retry_after), ("--slow-ms", slow_ms))
        given = [name for name, value in options if value is not None]
        if given:
            raise ValueError(f"random faults: {', '.join(given)} need --faults")
        return None
    probabilities = parse_fault_spec(faults) if isinstance(faults, str) else dict(faults)
    return FaultProfile.from_json(
        {"probabilities": probabilities, "seed": seed, "retry_after": retry_after, "slow_ms": slow_ms}
    )


def build_config(
    config_path: str | Path | None = None,
    latency_ms: int | None = None,
    latency_jitter_ms: int | None = None,
    token_ttl_seconds: int | None = None,
    *,
    faults: str | Mapping[str, float] | None = None,
    seed: int | None = None,
    retry_after: int | None = None,
    slow_ms: int | None = None,
    customers_path: str | Path | None = None,
    fortnox_token_ttl_seconds: int | None = None,
    fortnox_rate_limit: int | None = None,
    fortnox_rate_window: float | None = None,
) -> SandboxConfig:
    """The config file (or the built-in demo tenants), with the given values overriding it.

    ``customers_path`` (``--customers FILE``) replaces the customer register, also one from the
    config file; ``faults``/``seed``/``retry_after``/``slow_ms`` arm random faults (see
    :func:`fault_profile`); ``fortnox_*`` set Fortnox's token lifetime and rate limit (requests
    per access token in a sliding window of ``fortnox_rate_window`` seconds). ValueError with a
    readable message if a file or value is invalid."""
    config = load_config(config_path) if config_path else SandboxConfig()
    if latency_ms is not None:
        config.latency_ms = latency_ms
    if latency_jitter_ms is not None:
        config.latency_jitter_ms = latency_jitter_ms
    if token_ttl_seconds is not None:
        config.token_ttl_seconds = token_ttl_seconds
    if fortnox_token_ttl_seconds is not None:
        if fortnox_token_ttl_seconds < 0:
            raise ValueError("--fortnox-token-ttl-seconds must be >= 0")
        config.fortnox_token_ttl_seconds = fortnox_token_ttl_seconds
    if fortnox_rate_limit is not None:
        if fortnox_rate_limit < 1:
            raise ValueError("--fortnox-rate-limit must be >= 1")
        config.fortnox_rate_limit = fortnox_rate_limit
    if fortnox_rate_window is not None:
        if not is_positive_number(fortnox_rate_window):
            raise ValueError("--fortnox-rate-window must be a number of seconds > 0")
        config.fortnox_rate_window_seconds = float(fortnox_rate_window)
    if customers_path is not None:
        config.customers = load_customers(customers_path)
    profile = fault_profile(faults, seed, retry_after, slow_ms)
    if profile is not None:
        config.faults = profile
    return config


def _log_config(log_level: str) -> dict[str, Any]:
    """uvicorn's logging config plus the ``sandbox`` logger on the same console handler."""
    cfg = copy.deepcopy(LOGGING_CONFIG)
    cfg["loggers"]["sandbox"] = {"handlers": ["default"], "level": log_level.upper(), "propagate": False}
    return cfg


def _uvicorn_config(app: Starlette, host: str, port: int, log_level: str, **kwargs: Any) -> uvicorn.Config:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        backlog=BACKLOG,
        loop="asyncio",
        lifespan="off",
        **kwargs,
    )
    logging.getLogger("uvicorn.error").addFilter(_IntentionalDropFilter())
    return config


def serve(
    host: str = "127.0.0.1",
    port: int = 8765,
    latency_ms: int | None = None,
    latency_jitter_ms: int | None = None,
    config_path: str | Path | None = None,
    token_ttl_seconds: int | None = None,
    log_level: str = "info",
    *,
    faults: str | Mapping[str, float] | None = None,
    seed: int | None = None,
    retry_after: int | None = None,
    slow_ms: int | None = None,
    customers_path: str | Path | None = None,
    fortnox_token_ttl_seconds: int | None = None,
    fortnox_rate_limit: int | None = None,
    fortnox_rate_window: float | None = None,
    state_file: str | Path | None = None,
) -> None:
    """Serve the sandbox until interrupted. ``None`` means "as in the config" (default 0 / 3600 s,
    no random faults, every all-digit customer number known, Fortnox: 25 requests per 5 s, the state
    in memory; ``state_file``: kept in that SQLite file across restarts).

    Raises ValueError, before anything is started, if a file or value is invalid."""
    config = build_config(
        config_path,
        latency_ms,
        latency_jitter_ms,
        token_ttl_seconds,
        faults=faults,
        seed=seed,
        retry_after=retry_after,
        slow_ms=slow_ms,
        customers_path=customers_path,
        fortnox_token_ttl_seconds=fortnox_token_ttl_seconds,
        fortnox_rate_limit=fortnox_rate_limit,
        fortnox_rate_window=fortnox_rate_window,
    )
    serve_config(config, host, port, log_level, state_file=state_file)


def _describe_faults(profile: FaultProfile | None) -> str:
    if profile is None:
        return "random faults off"
    probabilities = ",".join(f"{kind}={p:g}" for kind, p in profile.probabilities.items())
    return (
        f"random faults {probabilities or 'none'} seed {profile.seed} "
        f"(retry-after {profile.retry_after} s, slow {profile.slow_ms} ms, paths {' '.join(profile.paths)})"
    )


def serve_config(
    config: SandboxConfig,
    host: str = "127.0.0.1",
    port: int = 8765,
    log_level: str = "info",
    *,
    state_file: str | Path | None = None,
) -> None:
    """Serve a ready config until interrupted (see :func:`build_config`), its state kept in ``state_file`` if
    given. ValueError, before anything is started, if the state file cannot be used."""
    serve_app(create_app(config, state_file=state_file), host, port, log_level)


def _describe_state(app: Starlette) -> str:
    kept = app.state.state_file
    if kept is None:
        return "state in memory, lost on exit"
    return f"state kept in {kept.path} ({len(app.state.sandbox.ledger)} documents in the ledger)"


def serve_app(app: Starlette, host: str = "127.0.0.1", port: int = 8765, log_level: str = "info") -> None:
    """Serve an app of :func:`sandbox.create_app` until interrupted; its state file (if any) is closed after."""
    config: SandboxConfig = app.state.sandbox.config
    server = uvicorn.Server(_uvicorn_config(app, host, port, log_level, log_config=_log_config(log_level)))
    logging.getLogger("sandbox").info(
        "sandbox ERP (SoftOne GO, Fortnox, invoice service) on http://%s:%d (SoftOne companies: %s; "
        "Fortnox accounts: %s; invoice-service clients: %s; latency %d ms +%d; token ttl %d s; "
        "Fortnox token ttl %d s, rate limit %d per %g s; %s; %s)",
        host,
        port,
        ", ".join(f"{c.company_id} {c.name}" for c in config.companies.values()),
        ", ".join(f"{a.company_id} {a.name}" for a in config.fortnox_accounts.values()),
        ", ".join(f"C.{c.client_id} {c.name}" for c in config.invoice_service_clients.values()),
        config.latency_ms,
        config.latency_jitter_ms,
        config.token_ttl_seconds,
        config.fortnox_token_ttl_seconds,
        config.fortnox_rate_limit,
        config.fortnox_rate_window_seconds,
        _describe_faults(app.state.sandbox.random_faults.profile),
        _describe_state(app),
    )
    try:
        server.run()
    finally:
        if app.state.state_file is not None:
            app.state.state_file.close()


@contextmanager
def background_server(app: Starlette | None = None, host: str = "127.0.0.1") -> Iterator[str]:
    """Run ``app`` (default: a fresh demo sandbox) on a free port in a thread; yields the base URL.

    Logging configuration is left alone (``log_config=None``), so pytest's caplog keeps working.
    """
    app = app or create_app()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(_uvicorn_config(app, host, port, "warning", log_config=None))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("sandbox server did not start")
            time.sleep(0.01)
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
