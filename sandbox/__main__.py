"""``python -m sandbox [--host H] [--port P] [--latency-ms N] [--config FILE] ...``"""

from __future__ import annotations

import argparse

from sandbox.server import serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description="SoftOne GO sandbox ERP server")
    add = parser.add_argument
    add("--host", default="127.0.0.1")
    add("--port", type=int, default=8765)
    add("--latency-ms", type=int, default=None, help="added to every ERP request (default 0)")
    add("--latency-jitter-ms", type=int, default=None, help="plus uniform 0..N ms (default 0)")
    add("--config", default=None, help="JSON file with companies/customers (default: demo tenant)")
    add("--token-ttl-seconds", type=int, default=None, help="token lifetime (default 3600)")
    add("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    args = parser.parse_args(argv)
    serve(
        host=args.host,
        port=args.port,
        latency_ms=args.latency_ms,
        latency_jitter_ms=args.latency_jitter_ms,
        config_path=args.config,
        token_ttl_seconds=args.token_ttl_seconds,
        log_level=args.log_level,
    )


if __name__ == "__main__":
    main()
