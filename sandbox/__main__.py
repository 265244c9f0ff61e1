"""``python -m sandbox [--host H] [--port P] [--latency-ms N] [--config FILE] [--customers FILE]
[--faults 429=0.05,503=0.05,... --seed N] [--fortnox-rate-limit N --fortnox-rate-window S] [--state FILE] ...``"""

from __future__ import annotations

import argparse

from sandbox.persistence import StateFileError
from sandbox.random_faults import KINDS
from sandbox.server import build_config, serve_config

STATE_HELP = (
    "SQLite file in which the sandbox keeps its state across restarts, as a real ERP does: the ledger with each "
    "document's history, the Key/number/id sequences, SoftOne and Fortnox tokens (refresh tokens spent stay "
    "spent), webhook receivers; every change is written before its answer. Created if missing. Default: in "
    "memory, lost when the process ends. Stats, faults and latency are never kept."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox",
        description="Sandbox ERP server: SoftOne GO (/Login/Token, /Economy/...), Fortnox (/oauth-v1/token, "
        "/3/invoices, /3/orders, /3/offers, /3/articles-v2) and the invoice service (POST /invoices) on one port, "
        "with operator endpoints under /_sandbox (ledger, stats, faults, latency, tokens/expire, fortnox/ratelimit). "
        "Demo credentials: SoftOne demo-company-key/demo-connect-key; Fortnox client demo-fortnox-client:"
        "demo-fortnox-secret, refresh token demo-fortnox-refresh (once per process), TenantId demo-fortnox-tenant; "
        "invoice service Bearer demo-invoice-service-token.",
    )
    add = parser.add_argument
    add("--host", default="127.0.0.1")
    add("--port", type=int, default=8765)
    add("--latency-ms", type=int, default=None, help="added to every ERP request (default 0)")
    add("--latency-jitter-ms", type=int, default=None, help="plus uniform 0..N ms (default 0)")
    add(
        "--config",
        default=None,
        help="JSON file with companies, fortnox_accounts, invoice_service_clients, customers and settings "
        "(default: one demo tenant per API)",
    )
    add(
        "--customers",
        default=None,
        help='JSON file {"<CustomerNr>": "<name>"} or [<CustomerNr>, ...] that REPLACES the customer register '
        "(default: every all-digit number is a customer)",
    )
    add("--token-ttl-seconds", type=int, default=None, help="SoftOne token lifetime (default 3600)")
    add("--fortnox-token-ttl-seconds", type=int, default=None, help="Fortnox access-token lifetime (default 3600)")
    add(
        "--fortnox-rate-limit",
        type=int,
        default=None,
        help="Fortnox requests allowed per access token in the sliding window, then 429 (default 25)",
    )
    add(
        "--fortnox-rate-window",
        type=float,
        default=None,
        metavar="SECONDS",
        help="the sliding window of the Fortnox rate limit (default 5.0; also POST /_sandbox/fortnox/ratelimit)",
    )
    add(
        "--faults",
        default=None,
        metavar="KIND=P,...",
        help=f"random faults per ERP request, kinds: {', '.join(KINDS)} (probabilities 0..1, sum <= 1)",
    )
    add("--seed", type=int, default=None, help="seed of the random faults (default: chosen and logged)")
    add("--retry-after", type=int, default=None, help="Retry-After seconds of a random 429 (default 1)")
    add("--slow-ms", type=int, default=None, help="how long a random 'slow' holds the answer (default 3000)")
    add("--state", default=None, metavar="FILE", help=STATE_HELP)
    add("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = build_config(
            args.config,
            args.latency_ms,
            args.latency_jitter_ms,
            args.token_ttl_seconds,
            faults=args.faults,
            seed=args.seed,
            retry_after=args.retry_after,
            slow_ms=args.slow_ms,
            customers_path=args.customers,
            fortnox_token_ttl_seconds=args.fortnox_token_ttl_seconds,
            fortnox_rate_limit=args.fortnox_rate_limit,
            fortnox_rate_window=args.fortnox_rate_window,
        )
    except ValueError as exc:
        parser.error(str(exc))  # exits 2 with the message
    try:
        serve_config(config, host=args.host, port=args.port, log_level=args.log_level, state_file=args.state)
    except StateFileError as exc:  # raised before anything is served
        parser.error(str(exc))


if __name__ == "__main__":
    main()
