"""The pipeline at a glance for people and scripts: `erpsync status` (no job id), `jobs`, `metrics`, and
`erpsync flower`. The data comes from worker/ops/overview.py; this module only renders and serves it.

The overview and the workers' metrics (prometheus_client, httpx) are imported by the functions that use them, so
that the other commands start without them.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from wsgiref.simple_server import WSGIRequestHandler, make_server
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from rich.console import RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from worker.cli.console import EXIT_OK, UserError, err, is_loopback, out, plural
from worker.settings import Settings, get_settings
from worker.store import client as redis_client  # get_redis through its module: tests replace it there
from worker.store.client import RedisClient
from worker.store.errors import OUTAGE_ERRORS, REDIS_ERRORS

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry


def _client_and_settings() -> tuple[RedisClient, Settings]:
    settings = get_settings()
    return redis_client.get_redis(settings), settings


def _age(seconds: float | None) -> str:
    from worker.ops.overview import since_text  # imported on use (module docstring)

    return since_text(seconds)


def _counts_text(counts: dict[str, int]) -> str:
    """`2 created, 1 failed`: the non-zero document counts of a job."""
    return ", ".join(f"{n} {status}" for status, n in counts.items() if n) or "-"


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left")
    for name in columns:
        # ids are shown whole (other columns wrap first): a cut id cannot be pasted into `erpsync status JOB_ID`
        table.add_column(name, no_wrap=name in ("job", "id", "ExternalId", "worker"), overflow="fold")
    return table


def render_overview(data: dict[str, Any], width: int | None = None, height: int | None = None) -> RenderableType:
    """The overview fitted to the screen (worker/cli/screen.py): `out`'s size unless given."""
    from worker.cli.screen import render_overview as render  # imported on use (module docstring)

    size = out.size
    return render(data, width or size.width, height or size.height)


def status_overview(args: argparse.Namespace) -> int:
    from worker.ops.overview import overview  # imported on use (module docstring)

    client, settings = _client_and_settings()
    if args.watch is None:
        data = overview(client, settings)
        if args.json:
            print(json.dumps(data, ensure_ascii=False))
        else:
            out.print(render_overview(data))
        return EXIT_OK
    if args.watch <= 0:
        raise UserError(f"--watch {args.watch}: the refresh interval must be above 0 seconds")
    data = overview(client, settings)  # a first read outside the loop: Redis unreachable is a plain error
    read = functools.partial(overview, client, settings)
    try:
        if args.json:
            _watch_json(data, read, args.watch)
        else:
            _watch_screen(data, read, args.watch)
    except KeyboardInterrupt:  # Ctrl-C is how --watch ends
        return EXIT_OK


def _watch_json(data: dict[str, Any], read: Callable[[], dict[str, Any]], interval: float) -> NoReturn:
    """`status --watch --json`: one JSON object per line, for a script to follow."""
    while True:
        print(json.dumps(data, ensure_ascii=False), flush=True)
        time.sleep(interval)
        data = read()


def _watch_screen(data: dict[str, Any], read: Callable[[], dict[str, Any]], interval: float) -> NoReturn:
    """`status --watch`: the screen redrawn in place; while Redis is unreachable it says so, and goes on watching.
    Into a pipe or a file (not a terminal, where nothing can be redrawn) each refresh is printed after the last, so
    that `erpsync status --watch | tee` shows them and a reader that goes away ends it (exit 141)."""

    def draw(data: dict[str, Any]) -> RenderableType:  # a line short of the terminal: the cursor's line stays free
        return render_overview(data, out.size.width, max(1, out.size.height - 1))

    if not out.is_terminal:
        screen = draw(data)
        while True:
            out.print(screen)
            out.print()
            time.sleep(interval)
            try:
                screen = draw(read())
            except OUTAGE_ERRORS as exc:
                screen = Text(f"{time.strftime('%H:%M:%S')} Redis unreachable: {exc}", style="bold red")
    with Live(draw(data), console=out, auto_refresh=False, screen=False) as live:
        while True:
            time.sleep(interval)
            try:
                live.update(draw(read()), refresh=True)
            except OUTAGE_ERRORS as exc:
                live.update(
                    Text(f"{time.strftime('%H:%M:%S')} Redis unreachable: {exc}", style="bold red"), refresh=True
                )


def cmd_jobs(args: argparse.Namespace) -> int:
    from worker.ops.overview import parse_since, recent_jobs  # imported on use (module docstring)

    try:
        since = parse_since(args.since) if args.since else None
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if args.limit < 1:
        raise UserError(f"--limit {args.limit}: must be at least 1")
    client, settings = _client_and_settings()
    found = recent_jobs(client, settings, tenant=args.tenant, since=since, status=args.status, limit=args.limit)
    if args.json:
        print(json.dumps(found, ensure_ascii=False))
        return EXIT_OK
    filters = ", ".join(f"{k} {v}" for k, v in (("tenant", args.tenant), ("since", args.since),
                                                 ("status", args.status)) if v)  # fmt: skip
    title = f"{plural(len(found['jobs']), 'job')}, newest first" + (f" ({filters})" if filters else "")
    table = _table(title, "job", "tenant", "kind", "status", "documents", "submitted", "took")
    for j in found["jobs"]:
        status = j["status"] + (" (stalled)" if j["stalled"] else "")
        if j["reason"]:  # a rejected job: why
            status += f": {j['reason']}"
        style = "bold red" if j["stalled"] else ("red" if j["status"] in ("failed", "rejected") else None)
        took = _age(j["age_seconds"]) + ("" if j["finished_at"] else " so far")
        table.add_row(j["job_id"], j["tenant"] or "", j["kind"] or "", status,
                      f"{j['total']}: {_counts_text(j['counts'])}", (j["submitted_at"] or "")[:19].replace("T", " "),
                      took, style=style)  # fmt: skip
    out.print(table)
    if found["truncated"]:
        err.print(f"looked at the newest {found['scanned']} jobs only; narrow it down with --since")
    return EXIT_OK


def metrics_registry(client: RedisClient, settings: Settings) -> CollectorRegistry:
    """A registry with the scrape-time gauges and the workers' counters."""
    # Imported on use (module docstring).
    from prometheus_client import CollectorRegistry

    from worker.observability.metrics import RedisCountersCollector
    from worker.ops.overview import OverviewCollector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(OverviewCollector(client, settings))
    registry.register(RedisCountersCollector(client, settings))
    return registry


def cmd_metrics(args: argparse.Namespace) -> int:
    from prometheus_client import generate_latest  # imported on use (module docstring)

    client, settings = _client_and_settings()
    registry = metrics_registry(client, settings)
    if args.once or args.json:
        client.ping()  # Redis unreachable: the one-line error and exit 2, not an empty exposition
        if args.json:
            samples = [
                {"name": s.name, "labels": s.labels, "value": s.value}
                for family in registry.collect()
                for s in family.samples
            ]
            print(json.dumps({"metrics": samples}))
        else:
            sys.stdout.write(generate_latest(registry).decode())
        return EXIT_OK
    port = args.port or settings.metrics_port
    try:
        server = make_server(args.host, port, _metrics_app(registry), handler_class=_QuietHandler)
    except OSError as exc:
        raise UserError(f"cannot serve metrics on {args.host}:{port}: {exc.strerror or exc}") from None
    err.print(f"serving Prometheus metrics on http://{args.host}:{port}/metrics (Ctrl-C stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        return EXIT_OK
    finally:
        server.server_close()
    return EXIT_OK


def _metrics_app(registry: CollectorRegistry) -> WSGIApplication:
    """WSGI app: /metrics in Prometheus text; a scrape while Redis is down answers 503 in one line."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest  # imported on use (module docstring)

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        if environ.get("PATH_INFO") not in ("/metrics", "/"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found: try /metrics\n"]
        try:
            body = generate_latest(registry)
        except REDIS_ERRORS as exc:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [f"redis unavailable: {type(exc).__name__}\n".encode()]
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
        return [body]

    return app


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Every scrape would be a line on stderr."""


# ----- Flower


FLOWER_STATE_SAVE_MS = 60_000  # a crashed Flower loses at most a minute of task history


def flower_credentials(value: str | None) -> list[str]:
    """The `user:password` entries of FLOWER_BASIC_AUTH (comma-separated); UserError naming what is wrong,
    never the value itself."""
    if not value or not value.strip():
        raise UserError(
            "FLOWER_BASIC_AUTH is not set: Flower runs only with basic auth (FLOWER_BASIC_AUTH=user:password)"
        )
    entries = value.split(",")
    for i, entry in enumerate(entries):
        user, colon, password = entry.partition(":")
        if not colon or not user.strip() or not password:
            raise UserError(
                f"FLOWER_BASIC_AUTH entry {i + 1} is not user:password (both non-empty; entries separated by commas)"
            )
        if entry != entry.strip():  # Flower compares the whole entry: a space would become part of the name
            raise UserError(f"FLOWER_BASIC_AUTH entry {i + 1} has spaces around it")
    return entries


def flower_command(args: argparse.Namespace) -> list[str]:
    """`celery -A worker flower` with our flags. Credentials stay in the environment (FLOWER_BASIC_AUTH, which
    Flower reads itself): on the command line, every local user could read them in `ps`."""
    from worker.devstack.stack import celery_command  # imported on use: the local stack's httpx is not needed here

    cmd = celery_command(
        "flower",
        f"--address={args.address}",
        f"--port={args.port}",
        "--persistent=True",
        f"--db={args.db}",
        f"--state_save_interval={args.state_save_interval_ms}",
    )
    if args.url_prefix:
        cmd.append(f"--url_prefix={args.url_prefix}")
    return cmd


def _enable_task_events() -> None:
    """Turn on the running workers' task events now (they start without: worker/celery_app/application.py), so that
    Flower sees the very next task; Flower itself repeats this every 5 s for workers started after it."""
    # Imported on use: the Celery app reads the settings when imported (cmd_flower has checked them by then).
    from worker.celery_app.application import app

    try:
        app.control.enable_events()
    except Exception as exc:  # the broker is down: Flower starts anyway, reconnects and enables them itself
        err.print(f"[yellow]warning:[/] could not ask the workers for task events yet ({type(exc).__name__})")


def cmd_flower(args: argparse.Namespace) -> int:
    flower_credentials(os.environ.get("FLOWER_BASIC_AUTH"))
    get_settings()  # a bad ERPSYNC_* value: our one-line error rather than a traceback from celery
    if not 1 <= args.port <= 65535:
        raise UserError(f"--port {args.port}: not a TCP port")
    db_dir = Path(args.db).resolve().parent
    if not db_dir.is_dir():
        raise UserError(f"--db {args.db}: directory {db_dir} does not exist")
    if args.state_save_interval_ms < 0:
        raise UserError("--state-save-interval-ms must be 0 (save on exit only) or more")
    if not is_loopback(args.address):
        err.print(
            f"[yellow]warning:[/] Flower on {args.address}: its /metrics and /healthcheck answer without "
            "authentication; keep it on loopback behind a TLS proxy (docs/operations.md, Flower)"
        )
    _enable_task_events()
    cmd = flower_command(args)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe(cmd[0], cmd, os.environ)  # Flower takes this process over: signals reach it directly
    return EXIT_OK  # not reached
