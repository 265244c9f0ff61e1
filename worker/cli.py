"""`erpsync` command line: submit jobs, follow them, read results; see the pipeline (status, jobs, metrics);
run Flower, the sandbox and the demo.

Exit codes: 0 every document created (or already there: duplicate), or a listing shown; 1 some document not
created; 2 usage or configuration error (Redis unreachable, unknown tenant or job, unreadable file, a bad
option value); 3 timed out waiting. User errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import redis
from pydantic import ValidationError
from rich.columns import Columns
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from schemas.envelope import DocumentKind, Target
from worker.errors import ConfigurationError
from worker.redaction import redact_url
from worker.settings import get_settings

EXIT_OK, EXIT_NOT_ALL_CREATED, EXIT_USAGE, EXIT_TIMEOUT = 0, 1, 2, 3
PROGRESS_THRESHOLD_BYTES = 1 << 20  # a bar for files of a megabyte or more
OVERVIEW_ROWS = 30  # open jobs on the status screen (--json has them all)
JOB_STATUS_CHOICES = ("receiving", "queued", "running", "succeeded", "partial", "failed", "rejected")
# Finished: what the results store finishes a job with, and `rejected` (a raw producer message refused whole).
FINISHED = ("succeeded", "partial", "failed", "rejected")

out = Console()
err = Console(stderr=True, soft_wrap=True)  # an error stays one line, whatever the width


class UserError(Exception):
    """A problem the user can fix; printed as one line, no traceback."""


def _store() -> Any:
    from worker.redis_client import get_redis
    from worker.results import ResultsStore

    settings = get_settings()
    return ResultsStore(get_redis(settings), settings)


def _job_or_fail(job_id: str) -> dict[str, str]:
    job = _store().job(job_id)
    if job is None:
        raise UserError(f"no job {job_id!r} in the results store (wrong id, or older than the retention)")
    return job


def results_payload(job_id: str) -> dict[str, Any]:
    """The `results --json` contract."""
    store = _store()
    job = store.job(job_id)
    if job is None:
        raise UserError(f"no job {job_id!r} in the results store (wrong id, or older than the retention)")
    return {
        "job_id": job_id,
        "status": job.get("status"),
        "records": [
            {
                "external_id": r.external_id,
                "status": r.status,
                "key": r.key,
                "number": r.number,
                "error": r.error,
                "errors": r.errors,
            }
            for r in store.records(job_id)
        ],
    }


def _exit_code(job: dict[str, str]) -> int:
    if job.get("status") == "succeeded":
        return EXIT_OK
    if job.get("status") in ("partial", "failed", "rejected"):
        return EXIT_NOT_ALL_CREATED
    return EXIT_TIMEOUT


def _print_summary(job: dict[str, str], *, show_keys: int = 10) -> None:
    from worker.results import job_summary

    summary = job_summary(job)
    counts = summary["counts"]
    out.print(
        f"job [bold]{summary['job_id']}[/] [bold]{summary['status']}[/]: {summary['total']} documents "
        f"({summary['kind']}, tenant {summary['tenant']}) — created {counts['created']}, duplicate "
        f"{counts['duplicate']}, failed {counts['failed']}, unknown {counts['unknown']}, pending {counts['pending']}"
    )
    records = _store().records(summary["job_id"])
    keyed = [r for r in records if r.key is not None][:show_keys]
    if keyed:
        table = Table("ExternalId", "status", "Key", "number", title=f"created Keys (first {len(keyed)})")
        for r in keyed:
            table.add_row(r.external_id, r.status, str(r.key), r.number or "")
        out.print(table)
    bad = [r for r in records if r.status in ("failed", "unknown")][:show_keys]
    if bad:
        table = Table("ExternalId", "status", "error", title=f"not created (first {len(bad)})")
        for r in bad:
            table.add_row(r.external_id, r.status, r.error or "")
        out.print(table)


# ----- commands


def cmd_submit(args: argparse.Namespace) -> int:
    from worker.ingest import open_source
    from worker.producer import submit, wait_for

    settings = get_settings()
    source = open_source(Path(args.file), args.format)
    header = source.header
    kind = args.kind or header.get("kind") or "customer_invoice"
    tenant = args.tenant or header.get("tenant") or settings.default_tenant
    show = source.size >= PROGRESS_THRESHOLD_BYTES and not args.json
    with Progress(
        TextColumn("submitting {task.fields[rows]:,} rows → {task.fields[docs]:,} documents"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not show,
    ) as progress:
        task = progress.add_task("read", total=max(source.size, 1), rows=0, docs=0)

        def advance(_: int) -> None:
            progress.update(task, completed=source.bytes_read, rows=source.rows_read, docs=source.documents_read)

        job_id = submit(
            source.documents(),
            kind=kind,
            tenant=tenant,
            target=args.target or header.get("target"),
            source=header.get("source") or Path(args.file).name,
            job_id=header.get("job_id"),
            on_progress=advance,
        )
    count = source.documents_read
    if source.split_receipts:
        examples = ", ".join(source.split_receipt_ids[:3])
        err.print(
            f"warning: {source.split_receipts} receipt(s) have rows apart from each other in the file (e.g. "
            f"{examples}); each later part is a document of its own and fails as a repeated ExternalId. "
            "Sort the export by receipt id."
        )
    if not args.wait:
        if args.json:
            print(json.dumps({"job_id": job_id, "status": "queued", "documents": count, "rows": source.rows_read}))
        else:
            out.print(f"submitted job [bold]{job_id}[/] ({count} documents, {kind}, tenant {tenant})")
        return EXIT_OK
    if not args.json:
        err.print(f"submitted job {job_id} ({count} documents); waiting…")
    job = wait_for(job_id, timeout=args.timeout, settings=settings)
    if args.json:
        print(json.dumps(results_payload(job_id), ensure_ascii=False))
    else:
        _print_summary(job)
        if job.get("status") not in FINISHED:
            err.print(f"still {job.get('status')} after {args.timeout:.0f}s; follow it with: erpsync status {job_id}")
    return _exit_code(job)


def cmd_status(args: argparse.Namespace) -> int:
    from worker.results import job_summary

    if args.job_id is None:
        return _status_overview(args)
    if args.watch is not None:
        raise UserError("--watch is for the overview (erpsync status --watch), not for one job")
    job = _job_or_fail(args.job_id)
    summary = job_summary(job)
    if job.get("reason"):  # a rejected job says why
        summary["reason"] = job["reason"]
    if args.json:
        print(json.dumps(summary, ensure_ascii=False))
    else:
        _print_summary(job, show_keys=0)
        for name in ("submitted_at", "started_at", "finished_at", "reason"):
            if summary.get(name):
                out.print(f"  {name.replace('_', ' ')}: {summary[name]}")
    return _exit_code(job) if job.get("status") in FINISHED else EXIT_OK


def cmd_results(args: argparse.Namespace) -> int:
    payload = results_payload(args.job_id)
    if args.json:
        print(json.dumps(payload, ensure_ascii=False))
    else:
        table = Table(
            "#", "ExternalId", "status", "Key", "number", "error", title=f"job {args.job_id}: {payload['status']}"
        )
        for i, r in enumerate(payload["records"]):
            table.add_row(
                str(i), r["external_id"], r["status"], str(r["key"] or ""), r["number"] or "", r["error"] or ""
            )
        out.print(table)
    job = _job_or_fail(args.job_id)
    return _exit_code(job) if job.get("status") in FINISHED else EXIT_OK


def cmd_dead(args: argparse.Namespace) -> int:
    from worker import deadletters

    store = _store()
    if args.action == "list":
        entries = [deadletters.summary(e) for e in store.dead_letters()]
        if args.json:
            print(json.dumps({"count": len(entries), "dead_letters": entries}, ensure_ascii=False))
        else:
            table = Table("id", "status", "tenant", "kind", "ExternalId", "replays", "reason",
                          title=f"{len(entries)} dead letters")  # fmt: skip
            for e in entries:
                table.add_row(e["id"], e["status"], e["tenant"], e["kind"], e["external_id"], str(e["replays"]),
                              (e["reason"] or "")[:120])  # fmt: skip
            out.print(table)
        return EXIT_OK
    if args.action == "replay" and args.all:
        targets = [e for e in store.dead_letters() if not e.get("replays")]
    else:
        if not args.id:
            raise UserError(f"erpsync dead {args.action} needs a dead-letter id" + (" or --all" if args.action ==
                            "replay" else ""))  # fmt: skip
        entry = store.dead_letter(args.id)
        if entry is None:
            raise UserError(f"no dead letter {args.id!r} (see: erpsync dead list)")
        targets = [entry]
    if args.action == "show":
        print(json.dumps(targets[0], ensure_ascii=False, indent=None if args.json else 2))
    elif args.action == "drop":
        store.drop_dead_letter(targets[0]["id"])
        if not args.json:
            out.print(f"dropped dead letter {targets[0]['id']}")
    else:
        jobs = [{"id": e["id"], "job_id": deadletters.replay(store, e)} for e in targets]
        if args.json:
            print(json.dumps({"replayed": jobs}))
        else:
            for j in jobs:
                out.print(f"replayed {j['id']} as job {j['job_id']}")
            if not jobs:
                out.print("nothing to replay")
    return EXIT_OK


# ----- the pipeline at a glance: status (no job id), jobs, metrics


def _client_and_settings() -> tuple[redis.Redis, Any]:
    from worker.redis_client import get_redis

    settings = get_settings()
    return get_redis(settings), settings


def _age(seconds: float | None) -> str:
    from worker.overview import since_text

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


def render_overview(data: dict[str, Any]) -> Group:
    """One screen: queues and waiting input, workers, open jobs (stalled ones in red), failures, dead letters."""
    stalled = f"[bold red]{data['stalled_jobs']} stalled[/]" if data["stalled_jobs"] else "0 stalled"
    parts: list[Any] = [
        Text.from_markup(
            f"[bold]erpsync[/] (prefix {data['key_prefix']}) at {data['generated_at']}: {data['open_jobs_total']} "
            f"open job(s), {stalled} (no progress for {data['stall_seconds']}s), oldest pending document "
            f"{_age(data['oldest_pending_seconds'])} old"
        )
    ]
    queues = _table("waiting", "where", "count")
    for q in data["queues"]:
        queues.add_row(f"celery queue {q['queue']}", str(q["messages"]))
    queues.add_row("intake items (job chunks)", str(data["intake_items"]))
    queues.add_row("raw producer messages", f"{data['submissions_waiting']} (+{data['submissions_held']} held)")
    for b in data["buffers"]:
        if b["documents"]:
            queues.add_row(f"buffer {b['tenant']}/{b['kind']}", f"{b['documents']} documents")
    workers = _table("workers", "worker", "queues")
    for w in data["workers"]:
        workers.add_row(w["name"], ", ".join(w["queues"]))
    if not data["workers"]:
        why = f" ({data['workers_error']})" if data["workers_error"] else ""
        workers.add_row(Text("none answering" + why, style="bold red"), ", ".join(q["queue"] for q in data["queues"]))
    if data["other_workers"]:
        workers.caption = f"{data['other_workers']} more on this broker serve other queues"
    parts.append(Columns([queues, workers]))
    shown = data["open_jobs"][:OVERVIEW_ROWS]
    jobs = _table(f"open jobs, oldest first ({len(shown)} of {data['open_jobs_total']})",
                  "job", "tenant", "kind", "status", "done", "age", "idle", "")  # fmt: skip
    for j in shown:
        jobs.add_row(j["job_id"], j["tenant"], j["kind"], j["status"], f"{j['total'] - j['pending']}/{j['total']}",
                     _age(j["age_seconds"]), _age(j["idle_seconds"]), "STALLED" if j["stalled"] else "",
                     style="bold red" if j["stalled"] else None)  # fmt: skip
    parts.append(jobs if shown else Text("open jobs: none"))
    if data["recent_failures"]:
        failures = _table("recent failures", "job", "tenant", "#", "ExternalId", "status", "reason")
        for f in data["recent_failures"]:
            failures.add_row(f["job_id"], f["tenant"] or "", "" if f["position"] is None else str(f["position"]),
                             f["external_id"] or "", f["status"], (f["reason"] or "")[:160])  # fmt: skip
        parts.append(failures)
    dead = data["dead_letters"]
    if dead["newest"]:
        table = _table(f"dead letters: {dead['count']} (newest; see erpsync dead list)",
                       "id", "status", "tenant", "ExternalId", "reason")  # fmt: skip
        for d in dead["newest"]:
            table.add_row(d["id"], d["status"], d["tenant"], d["external_id"] or "", (d["reason"] or "")[:160])
        parts.append(table)
    else:
        parts.append(Text(f"dead letters: {dead['count']}"))
    rejected = data["rejected_messages"]
    if rejected["count"]:
        newest = rejected["newest"][0]
        parts.append(Text(f"producer messages rejected: {rejected['count']} (newest: {newest.get('at')}, job "
                          f"{newest.get('job_id')}: {newest.get('reason')})", style="red"))  # fmt: skip
    return Group(*parts)


def _status_overview(args: argparse.Namespace) -> int:
    from worker.overview import overview

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
    try:
        if args.json:  # one JSON object per line, for a script to follow
            while True:
                print(json.dumps(data, ensure_ascii=False), flush=True)
                time.sleep(args.watch)
                data = overview(client, settings)
        with Live(render_overview(data), console=out, auto_refresh=False, screen=False) as live:
            while True:
                time.sleep(args.watch)
                try:
                    live.update(render_overview(overview(client, settings)), refresh=True)
                except (redis.ConnectionError, redis.TimeoutError) as exc:  # keep watching through an outage
                    live.update(
                        Text(f"{time.strftime('%H:%M:%S')} Redis unreachable: {exc}", style="bold red"), refresh=True
                    )
    except KeyboardInterrupt:  # Ctrl-C is how --watch ends
        return EXIT_OK


def cmd_jobs(args: argparse.Namespace) -> int:
    from worker.overview import parse_since, recent_jobs

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
    title = f"{len(found['jobs'])} jobs, newest first" + (f" ({filters})" if filters else "")
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


def metrics_registry(client: redis.Redis, settings: Any) -> Any:
    """A registry with the scrape-time gauges and, when worker/metrics.py is there, the workers' counters."""
    from prometheus_client import CollectorRegistry

    from worker.overview import OverviewCollector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(OverviewCollector(client, settings))
    try:
        from worker.metrics import RedisCountersCollector
    except ModuleNotFoundError as exc:  # only while worker/metrics.py does not exist; any other import error shows
        if exc.name != "worker.metrics":
            raise
    else:
        registry.register(RedisCountersCollector(client, settings))
    return registry


def cmd_metrics(args: argparse.Namespace) -> int:
    from prometheus_client import generate_latest

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


def _metrics_app(registry: Any) -> Any:
    """WSGI app: /metrics in Prometheus text; a scrape while Redis is down answers 503 in one line."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if environ.get("PATH_INFO") not in ("/metrics", "/"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found: try /metrics\n"]
        try:
            body = generate_latest(registry)
        except redis.RedisError as exc:
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
    from worker.stack import celery_command

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


def _is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


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
    if not _is_loopback(args.address):
        err.print(
            f"[yellow]warning:[/] Flower on {args.address}: its /metrics and /healthcheck answer without "
            "authentication; keep it on loopback behind a TLS proxy (README, Flower)"
        )
    cmd = flower_command(args)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe(cmd[0], cmd, os.environ)  # Flower takes this process over: signals reach it directly
    return EXIT_OK  # not reached


def cmd_sandbox(args: argparse.Namespace) -> int:
    # The only place production code touches the sandbox: to start it.
    import sandbox

    sandbox.serve(  # ValueError (bad --faults, unreadable --customers, ...) -> "error: ..." and exit 2
        host=args.host,
        port=args.port,
        latency_ms=args.latency_ms,
        config_path=args.config,
        token_ttl_seconds=args.token_ttl_seconds,
        faults=args.faults,
        seed=args.seed,
        retry_after=args.retry_after,
        slow_ms=args.slow_ms,
        customers_path=args.customers,
        fortnox_token_ttl_seconds=args.fortnox_token_ttl_seconds,
        fortnox_rate_limit=args.fortnox_rate_limit,
        fortnox_rate_window=args.fortnox_rate_window,
    )
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from worker.demo import run_demo

    return run_demo(Path(args.file), latency_ms=args.latency_ms, concurrency=args.concurrency)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="erpsync", description="Sync business documents into ERP APIs.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("submit", help="submit a JSON, JSONL or POS CSV file of documents as one job (streamed)")
    p.add_argument("file", help="JSON (a document, a list, or an envelope), JSONL, or a POS end-of-day CSV")
    p.add_argument("--format", choices=["json", "jsonl", "csv"], help="file format (default: by the file's suffix)")
    p.add_argument("--tenant", help="tenant name (default: ERPSYNC_DEFAULT_TENANT)")
    p.add_argument("--kind", choices=[k.value for k in DocumentKind], help="document kind (default customer_invoice)")
    p.add_argument(
        "--target",
        choices=[t.value for t in Target],
        help="the ERP the job is for (default: the tenant's; a tenant is at one ERP)",
    )
    p.add_argument("--wait", action="store_true", help="wait for the job to finish and print its summary")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait with --wait (default 600)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser(
        "status",
        help="without JOB_ID: queues, workers, open jobs (stalled ones), failures, dead letters; "
        "with JOB_ID: that job's status and counts",
    )
    p.add_argument("job_id", nargs="?", help="a job id (default: the overview of the whole pipeline)")
    p.add_argument(
        "--watch",
        nargs="?",
        type=float,
        const=2.0,
        metavar="SECONDS",
        help="refresh the overview every SECONDS (default 2) until Ctrl-C",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output (with --watch: one object per line)")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("jobs", help="recent jobs, newest first")
    p.add_argument("--tenant", help="only this tenant's jobs")
    p.add_argument("--since", help="submitted since: 30m, 1h, 2d, 1w or an ISO-8601 date-time (UTC by default)")
    p.add_argument("--status", choices=JOB_STATUS_CHOICES, help="only jobs in this status")
    p.add_argument("--limit", type=int, default=50, help="at most this many jobs (default 50)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_jobs)

    p = sub.add_parser("metrics", help="serve Prometheus metrics (queue depths, buffers, jobs, worker counters)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default ERPSYNC_METRICS_PORT, 9808)")
    p.add_argument("--once", action="store_true", help="print the exposition text once and exit")
    p.add_argument("--json", action="store_true", help="print the samples once as JSON and exit")
    p.set_defaults(func=cmd_metrics)

    p = sub.add_parser("flower", help="run Flower with basic auth from FLOWER_BASIC_AUTH, on loopback, state kept")
    p.add_argument(
        "--address",
        default=os.environ.get("FLOWER_ADDRESS") or "127.0.0.1",
        help="address to listen on (default 127.0.0.1: put a TLS proxy in front)",
    )
    p.add_argument(
        "--port",
        type=int,
        default=os.environ.get("FLOWER_PORT") or "5555",
        help="port (default FLOWER_PORT or 5555)",
    )
    p.add_argument(
        "--db", default=os.environ.get("FLOWER_DB") or "flower.db", help="state file (default FLOWER_DB or ./flower.db)"
    )
    p.add_argument(
        "--state-save-interval-ms",
        type=int,
        default=FLOWER_STATE_SAVE_MS,
        help=f"save the state this often too, not only on exit (default {FLOWER_STATE_SAVE_MS})",
    )
    p.add_argument("--url-prefix", default=None, help="when the proxy serves Flower under a path, e.g. flower")
    p.set_defaults(func=cmd_flower)

    p = sub.add_parser("results", help="every document's outcome in a job")
    p.add_argument("job_id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_results)

    p = sub.add_parser("dead", help="dead letters: list, show, replay, drop")
    p.add_argument("action", choices=["list", "show", "replay", "drop"])
    p.add_argument("id", nargs="?", help="dead-letter id (job_id#position)")
    p.add_argument("--all", action="store_true", help="replay: every dead letter not replayed yet")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_dead)

    p = sub.add_parser("sandbox", help="run the sandbox ERP server (SoftOne GO, Fortnox, invoice service)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--latency-ms", type=int, default=None, help="delay per ERP request (default: config, else 0)")
    p.add_argument("--config", help="sandbox config JSON (companies, customers)")
    p.add_argument(
        "--customers",
        help='JSON {"<CustomerNr>": "<name>"} or [<CustomerNr>, ...] replacing the customer register '
        "(default: every all-digit number is a customer)",
    )
    p.add_argument("--token-ttl-seconds", type=int, default=None)
    p.add_argument("--fortnox-token-ttl-seconds", type=int, default=None, help="Fortnox access tokens (default 3600)")
    p.add_argument("--fortnox-rate-limit", type=int, default=None, help="Fortnox requests per window (default 25)")
    p.add_argument("--fortnox-rate-window", type=float, default=None, help="Fortnox window in seconds (default 5)")
    p.add_argument(
        "--faults",
        metavar="KIND=P,...",
        help="random faults per ERP request, e.g. 429=0.05,503=0.05,slow=0.05,drop_after_commit=0.05,"
        "500_after_commit=0.05,token_expiry=0.01 (probabilities 0..1, sum <= 1)",
    )
    p.add_argument("--seed", type=int, default=None, help="seed of the random faults (default: chosen and logged)")
    p.add_argument("--retry-after", type=int, default=None, help="Retry-After seconds of a random 429 (default 1)")
    p.add_argument("--slow-ms", type=int, default=None, help="how long a random 'slow' holds the answer (default 3000)")
    p.set_defaults(func=cmd_sandbox)

    p = sub.add_parser("demo", help="run the end-to-end demo (embedded Redis, sandbox, worker)")
    p.add_argument("--file", default="examples/pos-end-of-day.jsonl")
    p.add_argument("--latency-ms", type=int, default=30)
    p.add_argument("--concurrency", type=int, default=4)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (UserError, ConfigurationError) as exc:
        err.print(f"[red]error:[/] {exc}")
    except ValidationError as exc:  # settings from the environment
        for e in exc.errors(include_url=False):
            name = "ERPSYNC_" + "_".join(str(p) for p in e["loc"]).upper() if e["loc"] else "settings"
            err.print(f"[red]error:[/] {name}: {e['msg']}")
    except ValueError as exc:  # SubmitError
        err.print(f"[red]error:[/] {exc}")
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        url = redact_url(get_settings().redis_url)
        err.print(f"[red]error:[/] cannot reach Redis at {url} ({exc}); set ERPSYNC_REDIS_URL")
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
