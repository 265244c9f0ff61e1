"""`erpsync tenants ...`: list the configured tenants with their state, pause and resume one, authorise one again.

    erpsync tenants [--json]                      name, target, state, reason and since, auth health, backlog
    erpsync tenants pause NAME [--reason TEXT]    its batches wait (what is in flight finishes)
    erpsync tenants resume NAME                   its backlog goes on
    erpsync tenants reauth NAME [--refresh-token-file FILE]
                                                  new credentials, stored in Redis; ends a pause by `auth`

`reauth` never takes a credential on the command line (`ps` shows every process's arguments): it reads a Fortnox
refresh token from `--refresh-token-file`, otherwise each credential the tenant takes from standard input (one per
line, in the order the prompt names them) when it is not a terminal, else from a prompt that does not echo.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from pathlib import Path
from typing import Any

from rich.table import Table

from worker.celery_app.enqueue import publish
from worker.cli.console import EXIT_OK, out
from worker.errors import UserError
from worker.ops import tenants as ops
from worker.ops.overview import since_text
from worker.settings import Settings, get_settings
from worker.store import client as redis_client
from worker.store.client import RedisClient
from worker.store.tokens import REFRESH_TOKEN

__all__ = ["add_tenants_commands"]


def _client_and_settings() -> tuple[RedisClient, Settings]:
    settings = get_settings()
    return redis_client.get_redis(settings), settings


def cmd_list(args: argparse.Namespace) -> int:
    client, settings = _client_and_settings()
    rows = ops.list_tenants(client, settings)
    if args.json:
        print(json.dumps(rows))
        return EXIT_OK
    if not rows:
        out.print("no tenants configured (ERPSYNC_TENANTS_FILE)")
        return EXIT_OK
    now = time.time()
    table = Table("tenant", "target", "state", "why, since", "auth", "backlog", box=None, pad_edge=False)
    for t in rows:
        paused = t["state"] == "paused"
        state = "[yellow]paused[/]" if paused else "active"
        why = f"{t['paused_by']}: {t['reason'] or ''}, {since_text(now - t['since'])} ago" if paused else ""
        auth = {"ok": "ok", "refused": "[red]refused[/]"}.get(t["auth"], t["auth"])
        lanes, later = t["backlog_lanes"], t["backlog_later"]
        backlog = f"{t['backlog']} ({lanes['interactive']}/{lanes['bulk']}/{later})" if t["backlog"] else "0"
        table.add_row(t["name"], t["target"], state, why, auth, backlog)
    out.print(table)
    out.print("backlog: documents waiting to be sent (interactive/bulk/coming back later)")
    return EXIT_OK


def cmd_pause(args: argparse.Namespace) -> int:
    client, settings = _client_and_settings()
    ops.pause(client, settings, args.name, reason=args.reason)
    out.print(f"tenant {args.name} paused: its batches wait until `erpsync tenants resume {args.name}`")
    return EXIT_OK


def cmd_resume(args: argparse.Namespace) -> int:
    client, settings = _client_and_settings()
    was = ops.resume(client, settings, args.name, enqueue=publish)
    out.print(f"tenant {args.name} resumed" if was else f"tenant {args.name} was not paused")
    return EXIT_OK


def _read_credentials(args: argparse.Namespace, fields: list[str]) -> dict[str, str]:
    """The new credentials, never from the command line: a refresh-token file, standard input, or a prompt."""
    if args.refresh_token_file is not None:
        if fields != [REFRESH_TOKEN]:
            raise UserError(
                f"--refresh-token-file is for Fortnox refresh-token tenants; {args.name} takes {', '.join(fields)}"
            )
        try:
            text = Path(args.refresh_token_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise UserError(f"cannot read {args.refresh_token_file}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise UserError(f"{args.refresh_token_file} is not UTF-8 text") from None
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if len(lines) != 1:
            raise UserError(f"{args.refresh_token_file} must hold the refresh token on one line, nothing else")
        return {REFRESH_TOKEN: lines[0]}
    if not sys.stdin.isatty():
        values = [line.strip() for line in sys.stdin.read().splitlines() if line.strip()]
        if len(values) != len(fields):
            raise UserError(f"standard input must hold {len(fields)} line(s): {', '.join(fields)}, in this order")
        return dict(zip(fields, values, strict=True))
    return {field: getpass.getpass(f"new {field} for tenant {args.name}: ") for field in fields}


def cmd_reauth(args: argparse.Namespace) -> int:
    client, settings = _client_and_settings()
    config = settings.tenants().get(args.name)
    fields = list(ops.required_fields(config)) if config is not None else []
    if config is not None and not fields:
        raise UserError(
            f"tenant {args.name} ({config.target.value}) takes its credentials from the tenants file only: "
            "edit it there"
        )
    credentials = _read_credentials(args, fields) if config is not None else {}
    resumed = ops.reauth(client, settings, args.name, credentials, enqueue=publish)
    state = ops.list_tenants(client, settings)
    row = next((t for t in state if t["name"] == args.name), None)
    done = f"tenant {args.name}: new {', '.join(credentials)} stored"
    if resumed:
        out.print(f"{done}; resumed")
    elif row is not None and row["state"] == "paused":
        out.print(f"{done}; still paused by an operator: `erpsync tenants resume {args.name}` lets it go on")
    else:
        out.print(f"{done}; used from its next request")
    return EXIT_OK


def add_tenants_commands(sub: Any) -> None:
    parser = sub.add_parser(
        "tenants", help="tenants with their state, auth health and backlog; pause, resume, reauth (authorise again)"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable list")
    parser.set_defaults(func=cmd_list)
    commands = parser.add_subparsers(dest="tenants_command")
    p = commands.add_parser("list", help="every configured tenant: state, reason and since, auth health, backlog")
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable list")
    p.set_defaults(func=cmd_list)
    p = commands.add_parser("pause", help="hold a tenant's batches (its backlog waits; what is in flight finishes)")
    p.add_argument("name", help="the tenant")
    p.add_argument("--reason", default="paused by an operator", help="shown with its state (no secrets)")
    p.set_defaults(func=cmd_pause)
    p = commands.add_parser("resume", help="let a paused tenant's backlog go on")
    p.add_argument("name", help="the tenant")
    p.set_defaults(func=cmd_resume)
    p = commands.add_parser(
        "reauth",
        help="store new credentials for a tenant (read from a file, standard input or a prompt: never the command "
        "line) and resume it if its ERP had refused its authorisation",
    )
    p.add_argument("name", help="the tenant")
    p.add_argument(
        "--refresh-token-file",
        metavar="FILE",
        help="a file holding the new Fortnox refresh token on one line (delete it afterwards)",
    )
    p.set_defaults(func=cmd_reauth)
