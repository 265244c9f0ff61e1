"""`erpsync webhooks`: `run` the webhook sender (worker/webhooks/sender.py) until SIGTERM or Ctrl-C, and `list` what
waits and what failed: deliveries due, failing and given up, per tenant, with their last errors.

Exit codes (worker/cli/console.py): 0 the sender stopped cleanly or a listing shown; 2 usage or configuration error
(Redis unreachable, a bad tenants file). Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import time
from typing import Any

from rich.table import Table

from worker.cli.console import EXIT_OK, UserError, err, out
from worker.settings import get_settings
from worker.store import client as redis_client  # get_redis through its module: tests replace it there

__all__ = ["add_webhook_commands", "cmd_webhooks_list", "cmd_webhooks_run", "webhooks_listing"]

LIST_LIMIT = 50


def add_webhook_commands(sub: Any) -> None:
    """`erpsync webhooks run|list` on the main parser's subcommands."""
    p = sub.add_parser("webhooks", help="job webhooks: run the sender, list deliveries waiting and given up")
    actions = p.add_subparsers(dest="webhooks_action", required=True, metavar="{run,list}")
    run = actions.add_parser("run", help="send job webhooks until SIGTERM or Ctrl-C (a process of its own)")
    run.add_argument("--max-in-flight", type=int, default=None, help="POSTs at once over every tenant (default 32)")
    run.add_argument("--per-tenant", type=int, default=None, help="POSTs at once to one tenant's endpoint (default 4)")
    run.set_defaults(func=cmd_webhooks_run)
    listing = actions.add_parser("list", help="deliveries due, failing and given up (with their last errors)")
    listing.add_argument(
        "--limit", type=int, default=LIST_LIMIT, help=f"deliveries listed of each (default {LIST_LIMIT})"
    )
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_webhooks_list)


def cmd_webhooks_run(args: argparse.Namespace) -> int:
    # Imported on use: the other commands start without httpx's async stack and the sender.
    from worker.observability import logs
    from worker.redaction import secrets_filter
    from worker.store.webhooks import WebhookStore
    from worker.webhooks.sender import MAX_IN_FLIGHT, PER_TENANT, WebhookSender

    max_in_flight = MAX_IN_FLIGHT if args.max_in_flight is None else args.max_in_flight
    per_tenant = PER_TENANT if args.per_tenant is None else args.per_tenant
    if max_in_flight < 1 or per_tenant < 1:
        raise UserError("--max-in-flight and --per-tenant must be at least 1")
    settings = get_settings()
    hooked = sorted(name for name, tenant in settings.tenants().items() if tenant.webhook_url)
    client = redis_client.get_redis(settings)
    client.ping()  # Redis unreachable: the one-line error and exit 2, before anything starts
    logs.setup(settings)
    for secret in settings.secret_values():
        secrets_filter().add_secret(secret)
    sender = WebhookSender(
        WebhookStore(client, settings.key_prefix), settings, max_in_flight=max_in_flight, per_tenant=per_tenant
    )
    err.print(
        f"webhook sender {sender.consumer} started (prefix {settings.key_prefix}, timeout "
        f"{settings.webhook_timeout_seconds:g}s, {len(hooked)} tenant(s) with a webhook"
        + ("" if hooked else ": the tenants file is read again when it changes")
        + "); SIGTERM or Ctrl-C stops"
    )
    asyncio.run(_run_until_signalled(sender))
    err.print("webhook sender stopped")
    return EXIT_OK


async def _run_until_signalled(sender: Any) -> None:
    """`sender.run` until SIGTERM or SIGINT (it finishes the POSTs under way); a second signal stops at once."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()

    def on_signal() -> None:
        if stop.is_set() and main is not None:
            main.cancel()
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal)
    try:
        await sender.run(stop)
    except asyncio.CancelledError:
        err.print("stopped at once: deliveries under way are sent again after their lease")
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


def webhooks_listing(limit: int = LIST_LIMIT) -> dict[str, Any]:
    """The `webhooks list --json` object: the counts of `erpsync status` and the deliveries failing and given up
    (newest given up first), without their bodies."""
    from worker.ops.overview import webhooks  # imported on use, like worker/cli/ops.py
    from worker.store.webhooks import WebhookStore

    settings = get_settings()
    client = redis_client.get_redis(settings)
    store = WebhookStore(client, settings.key_prefix)
    return {
        **webhooks(client, settings, time.time()),
        "failing_deliveries": store.failing(limit),
        "given_up_deliveries": store.given_up(limit),
    }


def cmd_webhooks_list(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise UserError(f"--limit {args.limit}: must be at least 1")
    data = webhooks_listing(args.limit)
    if args.json:
        print(json.dumps(data, ensure_ascii=False))
        return EXIT_OK
    out.print(
        f"webhooks: {data['due']} due, {data['failing']} failing, {data['given_up']} given up, "
        f"{data['events_waiting']} job events waiting for a sender"
    )
    if data["tenants"]:
        table = Table("tenant", "due", "failing", "given up", title="per tenant", title_justify="left")
        for t in data["tenants"]:
            table.add_row(t["tenant"], str(t["due"]), str(t["failing"]), str(t["given_up"]))
        out.print(table)
    for key, title in (("failing_deliveries", "failing, due again"), ("given_up_deliveries", "given up, newest first")):
        rows = data[key]
        if not rows:
            continue
        table = Table("delivery", "tenant", "job status", "attempts", "last error", "at", title=title,
                      title_justify="left")  # fmt: skip
        for d in rows:
            table.add_row(d["id"], d.get("tenant", ""), d.get("status", ""), d.get("attempts", "0"),
                          d.get("last_error", ""), _when(d.get("failed_at") or d.get("last_attempt")))  # fmt: skip
        out.print(table)
    return EXIT_OK


def _when(epoch: str | None) -> str:
    if not epoch:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(float(epoch))) + "Z"
