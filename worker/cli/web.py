"""`erpsync console`: the web console (worker/console/) served by uvicorn, on loopback by default.

    ERPSYNC_CONSOLE_AUTH=ops:long-password erpsync console            http://127.0.0.1:8808
    erpsync console --host 0.0.0.0 --port 8808 --secure-cookie        behind a TLS proxy

It refuses to start without an account (ERPSYNC_CONSOLE_AUTH, ERPSYNC_CONSOLE_READONLY_AUTH: one-line error, exit
2). Sessions are signed with ERPSYNC_CONSOLE_SECRET, or with a random secret per start (everyone logs in again
after a restart, and several console processes behind one proxy need the same secret).
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
from typing import Any

from worker.cli.console import EXIT_OK, UserError, err, is_loopback
from worker.settings import get_settings
from worker.store import client as redis_client  # get_redis through its module: tests replace it there

__all__ = ["DEFAULT_PORT", "SECRET_ENV", "add_console_command", "cmd_console"]

DEFAULT_PORT = 8808
SECRET_ENV = "ERPSYNC_CONSOLE_SECRET"
MIN_SECRET_LENGTH = 32


def _check_address(host: str, port: int) -> None:
    """The address can be served (a port in use, an address not of this machine): a one-line error and exit 2
    rather than uvicorn's log line and exit 1."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(infos[0][4])
    except OSError as exc:
        raise UserError(f"cannot serve the console on {host}:{port}: {exc.strerror or exc}") from None


def cmd_console(args: argparse.Namespace) -> int:
    # Imported on use: starlette, jinja2 and uvicorn are for this command alone.
    import uvicorn

    from worker.console.app import create_app
    from worker.console.auth import accounts_from_env
    from worker.console.data import Console

    accounts = accounts_from_env(os.environ)
    if not 1 <= args.port <= 65535:
        raise UserError(f"--port {args.port}: not a TCP port")
    secret = os.environ.get(SECRET_ENV, "")
    if secret and len(secret) < MIN_SECRET_LENGTH:
        raise UserError(f"{SECRET_ENV} is shorter than {MIN_SECRET_LENGTH} characters: use a long random value")
    settings = get_settings()
    client = redis_client.get_redis(settings)
    client.ping()  # Redis unreachable: main()'s one-line error and exit 2, before serving empty pages
    if not is_loopback(args.host):
        err.print(
            f"[yellow]warning:[/] the console listens on {args.host}, not only on loopback: put a TLS proxy in front "
            "and use --secure-cookie"
        )
    _check_address(args.host, args.port)
    app = create_app(Console(client, settings), accounts, secret=secret or secrets.token_urlsafe(32),
                     secure_cookie=args.secure_cookie)  # fmt: skip
    err.print(f"erpsync console on http://{args.host}:{args.port}/ (Ctrl-C stops)")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False, server_header=False)
    return EXIT_OK


def add_console_command(sub: Any) -> None:
    """Register `erpsync console` on the subparsers of `erpsync`."""
    p = sub.add_parser(
        "console",
        help="the web console: tenants, jobs and their documents, search, dead letters (login from "
        "ERPSYNC_CONSOLE_AUTH; read-only users from ERPSYNC_CONSOLE_READONLY_AUTH)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: loopback only)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument(
        "--secure-cookie",
        action="store_true",
        help="mark the session cookie Secure (the console is reached over HTTPS, through a TLS proxy)",
    )
    p.set_defaults(func=cmd_console)
