"""A neighbour's producer for scenario C (bench/isolation.py): a process of its own, as another tenant's producer is.

    python -m bench.neighbour --tenant bulk --docs 30000 --rows 10 --tag T              one job: a SoftOne file
    python -m bench.neighbour --tenant fortnox --fortnox --docs 300 --tag T             one job: Fortnox invoices
    python -m bench.neighbour --small 500 --jobs 20 --tag T                             500 tenants x 20 one-doc jobs

The documents are made before the clock starts. It prints `started <unix time>` when it starts submitting, then, once
every job is stored and queued, one JSON line: {"started", "submitted_s", "jobs": [[tenant, job_id], ...]}. Run with
the stack's environment (ERPSYNC_*), like `erpsync submit`.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.run import invoices


def fortnox_invoices(n: int, tag: str) -> list[dict[str, Any]]:
    """Fortnox invoices (one row each, all-digit customers: known to the sandbox), unique references."""
    return [
        {
            "CustomerNumber": str(1000 + i % 1000),
            "InvoiceDate": "2026-11-20",
            "ExternalInvoiceReference1": f"{tag}-{i:06d}",
            "InvoiceRows": [
                {
                    "ArticleNumber": "7310050",
                    "Description": "Kanelbulle",
                    "DeliveredQuantity": 2,
                    "Price": 24.5,
                    "VAT": 12,
                }
            ],
        }
        for i in range(n)
    ]


def small_tenant(n: int) -> str:
    return f"small-{n:03d}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.neighbour", description=__doc__.splitlines()[0])
    parser.add_argument("--tenant", help="one job of --docs documents for this tenant")
    parser.add_argument("--docs", type=int, default=0)
    parser.add_argument("--rows", type=int, default=10)
    parser.add_argument("--fortnox", action="store_true", help="Fortnox invoices (the tenant's target is fortnox)")
    parser.add_argument("--small", type=int, default=0, help="this many tenants small-000, ... each submit --jobs")
    parser.add_argument("--jobs", type=int, default=20, help="one-document jobs per small tenant")
    parser.add_argument("--threads", type=int, default=8, help="producer threads for the small tenants' jobs")
    parser.add_argument("--tag", required=True, help="prefix of the ExternalIds (fresh for every run)")
    args = parser.parse_args(argv)
    # Imported here: the Celery app reads the settings (the stack's environment) when imported.
    from worker.producer.submit import submit

    if args.small:
        # Job j of every tenant before job j + 1 of any: all at once, no tenant first in line.
        docs = iter(invoices(args.small * args.jobs, 1, args.tag))
        work = [(small_tenant(t), [next(docs)]) for _ in range(args.jobs) for t in range(args.small)]
    else:
        made = fortnox_invoices(args.docs, args.tag) if args.fortnox else invoices(args.docs, args.rows, args.tag)
        work = [(args.tenant, made)]
    jobs: list[list[str]] = []
    lock = threading.Lock()
    todo = iter(work)

    def produce() -> None:
        while True:
            with lock:
                item = next(todo, None)
            if item is None:
                return
            job_id = submit(item[1], tenant=item[0], source=f"bench C {args.tag}")
            with lock:
                jobs.append([item[0], job_id])

    started = time.time()
    print(f"started {started}", flush=True)
    threads = min(args.threads, len(work))
    with ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(produce) for _ in range(threads)]:
            future.result()
    print(json.dumps({"started": started, "submitted_s": round(time.time() - started, 3), "jobs": jobs}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
