"""`erpsync` command line: submit jobs, follow them, read results, replay dead letters, run the sandbox and the
demo; the pipeline-wide views (status without a job id, jobs, metrics) and Flower are in worker/cli/ops.py.

Exit codes (worker/cli/console.py): 0 every document created (or already there), or a listing shown; 1 some
document not created; 2 usage or configuration error; 3 timed out waiting; 4 the job is incomplete (its file
broke part-way). User errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from schemas.envelope import DocumentKind, Lane, Target
from worker.cli.archive import add_archive_commands
from worker.cli.console import (
    EXIT_INCOMPLETE,
    EXIT_NOT_ALL_CREATED,
    EXIT_OK,
    EXIT_OUTPUT_CLOSED,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    FINISHED,
    JOB_STATUS_CHOICES,
    UserError,
    err,
    out,
    plural,
)
from worker.cli.history import add_history_command, archived_results, result_record
from worker.cli.ops import FLOWER_STATE_SAVE_MS, cmd_flower, cmd_jobs, cmd_metrics, status_overview
from worker.cli.tenants import add_tenants_commands
from worker.cli.web import add_console_command
from worker.cli.webhooks import add_webhook_commands
from worker.errors import ArchiveError, ConfigurationError, JobIncomplete
from worker.producer.ingest import open_source
from worker.redaction import redact_url
from worker.settings import get_settings
from worker.store import client as redis_client  # get_redis through its module: tests replace it there
from worker.store.errors import OUTAGE_ERRORS
from worker.store.records import job_summary
from worker.store.results import ResultsStore

PROGRESS_THRESHOLD_BYTES = 1 << 20  # a bar for files of a megabyte or more


def _store() -> ResultsStore:
    settings = get_settings()
    return ResultsStore(redis_client.get_redis(settings), settings)


def _job_or_fail(job_id: str) -> dict[str, str]:
    job = _store().job(job_id)
    if job is None:
        raise UserError(f"no job {job_id!r} in the results store (wrong id, or older than the retention)")
    return job


def results_payload(job_id: str) -> dict[str, Any]:
    """The `results --json` contract: from the results store while Redis holds the job, then from the archive
    (worker/cli/history.py), the same shape with `"source": "archive"`."""
    store = _store()
    job = store.job(job_id)
    if job is None:
        archived = archived_results(job_id)
        if archived is None:
            archive = " or the archive" if get_settings().archive_enabled else " (the archive is off)"
            raise UserError(f"no job {job_id!r} in the results store{archive} (wrong id, or older than the retention)")
        return archived
    summary = job_summary(job)
    return {
        "job_id": job_id,
        "status": job.get("status"),
        "lane": job.get("lane"),
        # An `incomplete` job's source broke at this line (None when unknown) for this reason; None otherwise.
        "source_error_line": summary["source_error_line"],
        "source_error": summary["source_error"],
        "records": [result_record(r) for r in store.records(job_id)],
    }


def _exit_code(job: dict[str, str]) -> int:
    if job.get("status") == "succeeded":
        return EXIT_OK
    if job.get("status") == "incomplete":  # before the documents' outcomes: the file itself was not whole
        return EXIT_INCOMPLETE
    if job.get("status") in ("partial", "failed", "rejected"):
        return EXIT_NOT_ALL_CREATED
    return EXIT_TIMEOUT


def _print_summary(job: dict[str, str], *, show_keys: int = 10) -> None:
    summary = job_summary(job)
    counts = summary["counts"]
    out.print(
        f"job [bold]{summary['job_id']}[/] [bold]{summary['status']}[/]: "
        f"{plural(int(summary['total']), 'document')} "
        f"({summary['kind']}, tenant {summary['tenant']}) — created {counts['created']}, duplicate "
        f"{counts['duplicate']}, "
        + "".join(f"{status} {counts[status]}, " for status in ("updated", "changed") if counts[status])
        + f"failed {counts['failed']}, unknown {counts['unknown']}, pending {counts['pending']}"
    )
    if summary["source_error"]:
        line = summary["source_error_line"]
        where = f"at line {line}" if line is not None else "part-way"
        out.print(
            f"  [bold]incomplete[/]: the source broke {where}: {escape(summary['source_error'])}; the job holds "
            f"the {plural(int(summary['total']), 'document')} read before it"
        )
    records = _store().records(summary["job_id"])
    keyed = [r for r in records if r.key is not None][:show_keys]
    if keyed:
        table = Table("ExternalId", "status", "Key", "number", title=f"created Keys (first {len(keyed)})")
        for r in keyed:
            table.add_row(r.external_id, r.status, str(r.key), r.number or "")
        out.print(table)
    bad = [r for r in records if r.status in ("failed", "unknown", "changed")][:show_keys]
    if bad:
        table = Table("ExternalId", "status", "error", title=f"not created or not sent (first {len(bad)})")
        for r in bad:
            table.add_row(r.external_id, r.status, r.error or "")
        out.print(table)


# ----- commands


def cmd_submit(args: argparse.Namespace) -> int:
    # Imported on use: the producer imports the Celery app, which reads the settings when imported; inside a
    # command, a bad setting is main()'s one-line error rather than a traceback.
    from worker.producer.submit import submit, wait_for

    # A file that breaks part-way still makes a job, of the documents read before the bad line: `incomplete`, which
    # is said on stderr at once and by the exit code (EXIT_INCOMPLETE), with --wait once those are processed.
    incomplete: JobIncomplete | None = None
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

        try:
            job_id = submit(
                source.documents(),
                kind=kind,
                tenant=tenant,
                target=args.target or header.get("target"),
                source=header.get("source") or Path(args.file).name,
                job_id=header.get("job_id"),
                priority=args.priority or header.get("priority"),
                operation="upsert" if args.upsert else header.get("operation") or "create",
                on_progress=advance,
            )
        except JobIncomplete as exc:
            incomplete, job_id = exc, exc.job_id
    count = source.documents_read if incomplete is None else incomplete.stored
    if source.split_receipts:
        examples = ", ".join(source.split_receipt_ids[:3])
        err.print(
            f"warning: {source.split_receipts} receipt(s) have rows apart from each other in the file (e.g. "
            f"{examples}); each later part is a document of its own and fails as a repeated ExternalId. "
            "Sort the export by receipt id."
        )
    if incomplete is not None:
        err.print(f"[red]error:[/] {escape(str(incomplete))}")
    if not args.wait:
        if args.json:
            submitted: dict[str, Any] = {
                "job_id": job_id,
                "status": "queued",
                "documents": count,
                "rows": source.rows_read,
            }
            if incomplete is not None:  # the job will end `incomplete`, whatever its documents' outcomes
                submitted |= {"source_error_line": incomplete.line, "source_error": incomplete.reason}
            print(json.dumps(submitted, ensure_ascii=False))
        else:
            out.print(f"submitted job [bold]{job_id}[/] ({plural(count, 'document')}, {kind}, tenant {tenant})")
        return EXIT_OK if incomplete is None else EXIT_INCOMPLETE
    if not args.json:
        err.print(f"submitted job {job_id} ({plural(count, 'document')}); waiting…")
    job = wait_for(job_id, timeout=args.timeout, settings=settings)
    if args.json:
        print(json.dumps(results_payload(job_id), ensure_ascii=False))
    else:
        _print_summary(job)
        if job.get("status") not in FINISHED:
            err.print(f"still {job.get('status')} after {args.timeout:.0f}s; follow it with: erpsync status {job_id}")
    return _exit_code(job)


def cmd_status(args: argparse.Namespace) -> int:
    if args.job_id is None:
        return status_overview(args)
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
        archived = " (from the archive: Redis no longer holds it)" if payload.get("source") == "archive" else ""
        table = Table(
            "#", "ExternalId", "status", "Key", "number", "error",
            title=f"job {args.job_id}: {payload['status']}{archived}",
        )  # fmt: skip
        for i, r in enumerate(payload["records"]):
            table.add_row(
                str(i), r["external_id"], r["status"], str(r["key"] or ""), r["number"] or "", r["error"] or ""
            )
        out.print(table)
        if payload.get("source_error"):  # an `incomplete` job: where its source broke; the rows are what it holds
            line = payload.get("source_error_line")
            where = f"at line {line}" if line else "part-way"
            out.print(f"incomplete: the source broke {where}: {escape(payload['source_error'])}; the job holds the "
                      f"{plural(len(payload['records']), 'document')} read before it")  # fmt: skip
    status = payload["status"] or ""
    return _exit_code({"status": status}) if status in FINISHED else EXIT_OK


def cmd_dead(args: argparse.Namespace) -> int:
    # Imported on use: replaying submits, and the producer imports the Celery app (see cmd_submit).
    from worker.ops import deadletters

    store = _store()
    if args.action == "list":
        found = deadletters.entries(store, include_closed=args.all)
        _print_dead_letters([deadletters.summary(e) for e in found], as_json=args.json, every=args.all)
        return EXIT_OK
    targets = _dead_letter_targets(store, args)
    if args.action == "show":
        print(json.dumps(targets[0], ensure_ascii=False, indent=None if args.json else 2))
    elif args.action == "drop":
        store.drop_dead_letter(targets[0]["id"])
        if not args.json:
            out.print(f"dropped dead letter {targets[0]['id']}")
    else:
        replayed = [{"id": e["id"], "job_id": deadletters.replay(store, e)} for e in targets]
        _print_replayed(replayed, as_json=args.json)
    return EXIT_OK


def _dead_letter_targets(store: ResultsStore, args: argparse.Namespace) -> list[dict[str, Any]]:
    """What `dead show|drop|replay` acts on, with its state (worker/ops/deadletters.py): the entry named by its id
    or, for `replay --all`, every open one (neither replayed nor resolved). A resolved one is not replayed."""
    from worker.ops import deadletters  # imported on use (cmd_dead)

    if args.action == "replay" and args.all:
        return deadletters.entries(store)
    if not args.id:
        raise UserError(f"erpsync dead {args.action} needs a dead-letter id" + (" or --all" if args.action ==
                        "replay" else ""))  # fmt: skip
    entry = deadletters.lookup(store, args.id)
    if entry is None:
        raise UserError(f"no dead letter {args.id!r} (see: erpsync dead list --all)")
    if args.action == "replay" and entry["state"] == "resolved":
        raise UserError(f"dead letter {args.id} is resolved (Key {entry['resolved_key'] or '-'}, created by job "
                        f"{entry['resolved_by'] or '-'}): nothing to replay")  # fmt: skip
    return [entry]


def _print_dead_letters(entries: list[dict[str, Any]], *, as_json: bool, every: bool = False) -> None:
    """`dead list`: the entries' summaries (worker/ops/deadletters.py) with their state, the job that replayed each
    and the Key of a resolved one, as a table or JSON."""
    if as_json:
        print(json.dumps({"count": len(entries), "dead_letters": entries}, ensure_ascii=False))
        return
    from worker.cli.screen import Col, fitted, kind  # imported on use: the overview's modules come with it

    title = plural(len(entries), "dead letter") + ("" if every else " open (every one: --all)")
    cols = [Col("id", last_resort=True), Col("state"), Col("status"), Col("tenant", shrink=True), Col("kind"),
            Col("ExternalId", shrink=True), Col("replay", last_resort=True), Col("Key"),
            Col("reason", shrink=True)]  # fmt: skip
    rows = []
    for e in entries:
        replay = e["replay_job"] or ""
        if replay and e["replay_outcome"] not in (None, "created"):
            replay += f" ({e['replay_outcome']})"
        rows.append([e["id"], e["state"], e["status"], e["tenant"], kind(e["kind"]), e["external_id"], replay,
                     e["resolved_key"] or "", e["reason"] or ""])  # fmt: skip
    out.print(title, style="bold", overflow="ellipsis", no_wrap=True)
    table = fitted(cols, rows, out.size.width)
    if table is None:  # narrower than the ids: one entry a line
        for row in rows:
            out.print(" ".join(cell for cell in row if cell), overflow="ellipsis", no_wrap=True)
    else:
        out.print(table)


def _print_replayed(jobs: list[dict[str, str]], *, as_json: bool) -> None:
    """`dead replay`: each replayed entry's id and the job it was submitted again as."""
    if as_json:
        print(json.dumps({"replayed": jobs}))
        return
    for j in jobs:
        out.print(f"replayed {j['id']} as job {j['job_id']}")
    if not jobs:
        out.print("nothing to replay")


def cmd_sandbox(args: argparse.Namespace) -> int:
    # The only place production code touches the sandbox: to start it. Imported on use: starlette and uvicorn
    # are for this command alone.
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
        state_file=args.state,  # a state file that cannot be used -> "error: sandbox state ...", exit 2
    )
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from worker.devstack.demo import run_demo  # imported on use: the local stack's httpx is for this command alone

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
    p.add_argument(
        "--priority",
        choices=[lane.value for lane in Lane],
        help="the job's lane: interactive jobs are validated before the tenant's bulk ones (default: by size, "
        "interactive up to ERPSYNC_INTERACTIVE_MAX_DOCUMENTS documents)",
    )
    p.add_argument(
        "--upsert",
        action="store_true",
        help="send a document created before with other content as an update of it, where the ERP takes updates "
        "(Fortnox); without it such a document is reported `changed` and not sent",
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
    p.add_argument(
        "--all",
        action="store_true",
        help="list: every dead letter, replayed and resolved ones too (default: the open ones); "
        "replay: every open one (neither replayed nor resolved)",
    )
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
    p.add_argument(
        "--state",
        metavar="FILE",
        help="SQLite file keeping the sandbox's state across restarts, as a real ERP would: ledger with history, "
        "Key/number sequences, SoftOne and Fortnox tokens, webhook receivers; each change written before its "
        "answer; created if missing (default: in memory, lost on exit; the Procfile uses "
        "$ERPSYNC_SANDBOX_STATE or erpsync-sandbox.sqlite3)",
    )
    p.set_defaults(func=cmd_sandbox)

    p = sub.add_parser("demo", help="run the end-to-end demo (embedded Redis, sandbox, worker)")
    p.add_argument("--file", default="examples/pos-end-of-day.jsonl")
    p.add_argument("--latency-ms", type=int, default=30)
    p.add_argument("--concurrency", type=int, default=4)
    p.set_defaults(func=cmd_demo)

    add_archive_commands(sub)
    add_tenants_commands(sub)
    add_history_command(sub)
    add_webhook_commands(sub)
    add_console_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (UserError, ConfigurationError, ArchiveError) as exc:
        err.print(f"[red]error:[/] {exc}")
    except ValidationError as exc:  # settings from the environment
        for e in exc.errors(include_url=False):
            name = "ERPSYNC_" + "_".join(str(p) for p in e["loc"]).upper() if e["loc"] else "settings"
            err.print(f"[red]error:[/] {name}: {e['msg']}")
    except ValueError as exc:  # SubmitError
        err.print(f"[red]error:[/] {exc}")
    except OUTAGE_ERRORS as exc:
        url = redact_url(get_settings().redis_url)
        err.print(f"[red]error:[/] cannot reach Redis at {url} ({exc}); set ERPSYNC_REDIS_URL")
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
    except BrokenPipeError:  # stdout's reader went away (`erpsync jobs --json | head`); Redis's are redis errors
        # Quietly, like `yes | head`: stdout now goes nowhere, so that the interpreter's last flush at exit cannot
        # raise again; 141 (EXIT_OUTPUT_CLOSED) tells a `set -o pipefail` script that the output was cut.
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):  # stdout is no file (main() called in-process): nothing left to flush
            pass
        finally:
            os.close(devnull)
        return EXIT_OUTPUT_CLOSED
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
