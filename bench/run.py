"""`make bench`: erpsync against a naive worker and against the direct ceiling, in one run, on real processes.

Scenarios (full size; `--quick` runs 3 % of them; `--scenario` picks, by default A, B, C and archive):
  A  end of day: 20,000 invoices x 10 rows submitted as one job;
  B  stream: 10,000 one-invoice jobs submitted by 8 concurrent producers;
  C  tenant isolation (issue 23): a small tenant's latency alone and next to noisy neighbours, on a stack of its own
     at 100 ms (bench/isolation.py; its own quick sizes). `--scenario C` runs it alone; the report's `isolation`;
  archive  the archive's cost (issue 25): A with the archive off and on PostgreSQL (below); the report's `archive`.
Systems:
  erpsync  the product: intake queue (drain_intake) → coalescing buffer → dispatcher → array POSTs (send_next);
  naive    one Celery task and one POST per document (bench/naive.py), same pool and concurrency;
  direct   the same array bodies POSTed from this process with the same concurrency, no queue: the ceiling.

Each run starts its own Redis (embedded unless ERPSYNC_REDIS_URL), sandbox (30 ms per request by default)
and worker processes. Results: bench/results/latest.json and .md (and a PNG chart when matplotlib is
installed: `pip install -e .[bench]`). Numbers are reported as measured, and compared only as ratios within
the same run: the machine is shared and noisy.

erpsync and direct take turns, `--rounds` times per scenario (3 by default, 1 in quick mode), each round in
the other order: the speed of a shared machine drifts by a quarter and more within a minute, and a drift then
falls on both systems alike. Each round gives its own ratio; the report's `vs_direct` is their median, with
every round's ratio beside it. The naive worker runs once: its gap is far beyond any drift. Between machines,
the ratio moves with how much a CPU-second does (erpsync is bound by CPU, direct mostly waits): the report names
the CPU and times a fixed task before and after the run (`cpu_probe_ms`), so that runs can be compared.

The archive (worker/archive/, ERPSYNC_ARCHIVE_URL) is `off` for A, B and C unless `--archive URL` names one, so
that their figures stay comparable with the runs before it existed (a LocalStack's own default is an SQLite file).
With `--archive URL` their archive is migrated (`erpsync archive migrate`) and its archiver runs beside the workers
(its CPU a part of the run's). The archive's own cost is the comparison `archive` (bench/archive.py), on a stack of
its own: scenario A at A's size (`--quick`, `--scale` alike) with the archive off and with it on PostgreSQL (a fresh
database on `--pg-admin`'s server, migrated with `erpsync archive migrate`, dropped after; the archiver `erpsync
archive run` running during the archive-on runs). Each of the `--rounds` rounds runs the two around one direct run,
in the other order every other round (off, direct, on; then on, direct, off), so that each variant has its own ratio
to direct per round; before each of its runs a variant's workers are started afresh with the same settings but
ERPSYNC_ARCHIVE_URL, and warmed up. Reported (latest.md's "Archive" part, latest.json's `archive`): every round's
ratios and their medians, the drop (off - on) / off, for every archive-on run the time from the job's last Key to
the archive's lag at 0 (the stream's XLEN polled every 0.1 s), the archiver's and PostgreSQL's CPU seconds, Redis's
command times, and whether the archive holds exactly one `created` outcome row per document created. Issue 25's
targets: a drop of at most 5 %, the lag at 0 within 5 s of the last Key. Skipped with a note when no PostgreSQL
answers (a failure under CI=true). The first of A/B, C and archive runs in this process, the others each in a
process of their own (this process's Celery app is bound to its first stack).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import redis

from worker.devstack.stack import ROOT, LocalStack, wait_until
from worker.redaction import redact_url
from worker.settings import get_settings
from worker.store.client import get_redis
from worker.store.records import JOB_FINAL
from worker.store.results import ResultsStore

RESULTS = ROOT / "bench" / "results"
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"  # the archive comparison's server (--pg-admin)
CPU_PARTS = ["producers/direct (this process)", "worker", "sandbox", "redis"]


def invoices(n: int, rows: int, tag: str) -> list[dict[str, Any]]:
    """Realistic invoices with unique ExternalIds (all-digit customers: known to the sandbox)."""
    out = []
    for i in range(n):
        out.append({
            "ExternalId": f"{tag}-{i:06d}",
            "CustomerNr": str(1000 + i % 1000),
            "InvoiceDate": "2026-11-20",
            "OriginType": 2,
            "Currency": "SEK",
            "InvoiceRows": [
                {"CustomerRowType": 2, "RowNr": r + 1, "ProductNr": f"7310050{(i + r) % 100:03d}",
                 "Text": "Kanelbulle", "Quantity": 1 + (i + r) % 3, "Unit": "st",
                 "UnitPrice": round(10 + ((i * 7 + r) % 900) / 10, 2), "VatRate": 12}
                for r in range(rows)
            ],
        })  # fmt: skip
    return out


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0}
    q = statistics.quantiles(values, n=100, method="inclusive") if len(values) > 1 else [values[0]] * 99
    return {"p50": round(q[49], 3), "p95": round(q[94], 3), "p99": round(q[98], 3)}


def peak_rss_mb(pid: int) -> dict[str, float]:
    """VmHWM (peak resident set) of a process and its children, in MB."""
    out: dict[str, float] = {}
    pids = [pid]
    while pids:
        p = pids.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            name = Path(f"/proc/{p}/comm").read_text().strip()
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                out[f"{name}[{p}]"] = round(int(line.split()[1]) / 1024, 1)
        pids.extend(int(c) for c in children)
    return out


def cpu_seconds(pid: int | None, children: bool = True) -> float:
    """User + system CPU seconds used so far by a process and (unless told not) its live children."""
    if pid is None:
        return 0.0
    total, pids, tick = 0.0, [pid], os.sysconf("SC_CLK_TCK")
    while pids:
        p = pids.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            kids = Path(f"/proc/{p}/task/{p}/children").read_text().split() if children else []
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime (fields 14 and 15 of stat)
        pids.extend(int(c) for c in kids)
    return total


def cpu_model() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo; elsewhere what `platform` knows)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


# The probe's work: one ten-row invoice as plain data, fixed here so that the probe never changes with erpsync.
_PROBE_DOCUMENT = {
    "ExternalId": "probe-1", "CustomerNr": "10001", "InvoiceDate": "2026-11-20", "Currency": "SEK",
    "InvoiceRows": [{"RowType": 2, "ProductNr": f"ART-{n}", "Text": f"Article {n}", "Quantity": n + 1,
                     "UnitPrice": 99.5 + n, "DiscountPercent": 0, "VatRate": 25.0, "OriginType": 2}
                    for n in range(10)],
}  # fmt: skip


def cpu_probe_ms(repeat: int = 5) -> float:
    """Milliseconds of a fixed CPU-only task, the best of `repeat`: a stdlib JSON round trip of one ten-row invoice,
    1,000 times. The same work on every machine and every version of erpsync, so that runs on different machines can
    be told apart by how much a CPU-second does there; that moves erpsync, which is bound by CPU, far more than
    direct, which mostly waits on the sandbox's latency (docs/benchmarks.md)."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(1000):
            json.loads(json.dumps(_PROBE_DOCUMENT))
        best = min(best, time.perf_counter() - started)
    return round(best * 1000, 1)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        workdir = Path(tempfile.mkdtemp(prefix="erpsync-bench-"))
        prefix = f"erpsync-bench-{uuid.uuid4().hex[:6]}"
        self.stack = LocalStack(
            workdir=workdir, redis_url=os.environ.get("ERPSYNC_REDIS_URL") or None, latency_ms=args.latency_ms,
            concurrency=args.concurrency, pool=args.pool,
            # The tenant's cap on requests in flight is direct's concurrency: both keep as many requests going.
            # The archive: `off` unless --archive names one (the docstring); not among --set's settings.
            extra_env={"ERPSYNC_TENANT_MAX_IN_FLIGHT": str(args.concurrency), **dict(args.setting),
                       "ERPSYNC_ARCHIVE_URL": args.archive, "ERPSYNC_QUEUE": prefix, "ERPSYNC_KEY_PREFIX": prefix,
                       "NAIVE_QUEUE": f"{prefix}-naive"},
        )  # fmt: skip
        self.sandbox: httpx.Client | None = None
        self.results: list[dict[str, Any]] = []
        self.worker_pids: list[int] = []
        self.ingest: dict[str, Any] | None = None
        self._cpu_before: dict[str, float] = {}
        self._round = 1  # the round of erpsync and direct being measured (`record` notes it)
        self.cpu_probe_ms: list[float] = []  # before and after the scenarios

    def _cpu(self) -> dict[str, float]:
        """CPU seconds so far of each part of the run: where a scenario's time went, on 2 shared cores (the
        archiver's too while one runs: --archive)."""
        redis_proc = self.stack.embedded.proc if self.stack.embedded else None
        cpu = {
            "producers/direct (this process)": cpu_seconds(os.getpid(), children=False),
            "worker": sum(cpu_seconds(pid) for pid in self.worker_pids),
            "sandbox": cpu_seconds(self.stack.sandbox.pid if self.stack.sandbox else None),
            "redis": cpu_seconds(redis_proc.pid if redis_proc else None),
        }
        archivers = [p.pid for p in self.stack.archivers if p.poll() is None]
        if archivers:
            cpu["archiver"] = sum(cpu_seconds(pid) for pid in archivers)
        return cpu

    def _start_clock(self) -> None:
        self._cpu_before = self._cpu()

    # ----- helpers
    def _requests(self) -> int:
        assert self.sandbox is not None
        stats = self.sandbox.get("/_sandbox/stats").json()["requests"]
        return sum(sum(c.values()) for route, c in stats.items() if not route.endswith("/Login/Token"))

    def _workers(self, app: str, env: dict[str, str] | None = None) -> list[subprocess.Popen[bytes]]:
        """The system's worker processes; `env`: settings of theirs over the stack's (the archive comparison's)."""
        if app == "worker" and self.args.pool == "split":
            # Intake (CPU-bound validation) in one process per core; sends (I/O-bound POSTs) in threads.
            return [
                self.stack.start_worker(
                    name="intake",
                    concurrency=os.cpu_count() or 2,
                    env=env,
                    pool="prefork",
                    queues="intake",
                    nice=self.args.intake_nice,
                ),
                self.stack.start_worker(
                    name="send", concurrency=self.args.send_threads, env=env, pool="threads", queues="send"
                ),
            ]
        if app == "worker":
            return [self.stack.start_worker(name="bench", env=env)]
        return [self._naive_worker()]

    def _naive_worker(self) -> subprocess.Popen[bytes]:
        queue = self.stack.env["NAIVE_QUEUE"]
        log = open(self.stack.workdir / "worker-naive.log", "ab")  # noqa: SIM115
        cmd = [sys.executable, "-m", "celery", "-A", "bench.naive", "worker", "--loglevel=WARNING", "-Q", queue,
               "-c", str(self.args.concurrency), "--pool", "threads" if self.args.pool == "threads" else "prefork",
               "-n", "naive@%h", "--without-gossip",
               "--without-mingle"]  # fmt: skip
        proc = subprocess.Popen(cmd, cwd=ROOT, env=self.stack.env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
        time.sleep(3)
        return proc

    def record(self, scenario: str, system: str, docs: int, rows: int, elapsed: float, requests: int,
               latencies: list[float], rss: dict[str, float]) -> None:  # fmt: skip
        cpu = {k: round(v - self._cpu_before.get(k, 0.0), 2) for k, v in self._cpu().items()}
        row: dict[str, Any] = {
            "scenario": scenario, "system": system, "round": self._round, "documents": docs, "rows": rows,
            "seconds": round(elapsed, 3),
            "documents_per_s": round(docs / elapsed, 1), "rows_per_s": round(rows / elapsed, 1),
            "http_requests": requests, "latency_s": percentiles(latencies), "peak_rss_mb": rss, "cpu_s": cpu,
        }  # fmt: skip
        self.results.append(row)
        print(f"  {scenario} {system:8s} round {self._round}: {docs} docs in {elapsed:.1f}s = "
              f"{row['documents_per_s']:.0f} docs/s, {requests} requests, p95 {row['latency_s']['p95']:.2f}s",
              flush=True)  # fmt: skip

    def _warm_up(self, system: str, procs: list[subprocess.Popen[bytes]]) -> None:
        """A few documents through a freshly started system before its clock runs: its first requests log in
        and open connections, as direct does before its clock starts; a long-running worker has done both."""
        if system == "direct":
            return
        jobs = [invoices(2 * int(self.stack.env.get("ERPSYNC_BATCH_MAX_DOCS", "50")), 2, f"warm{uuid.uuid4().hex[:6]}")]
        if system == "erpsync":
            self.run_erpsync("warm-up", jobs, 1, measured=False)
        else:
            self.run_naive("warm-up", jobs, 1, procs[0], measured=False)

    # ----- systems
    def run_erpsync(
        self,
        scenario: str,
        jobs: list[list[dict[str, Any]]],
        producers: int,
        *,
        measured: bool = True,
        system: str = "erpsync",
    ) -> dict[str, Any]:
        """Submit `jobs` and wait for them all; returns their ids, when the last Key was written (`last_key`, by
        the records' clock) and when this process saw the jobs finished (`seen_finished`)."""
        # Imported once run() has made this process the stack's producer: the Celery app reads the settings when
        # imported.
        from worker.producer.submit import submit

        settings = get_settings()
        store = ResultsStore(get_redis(settings), settings)
        before = self._requests()
        self._start_clock()
        started = time.time()
        ids: list[str] = []
        lock = threading.Lock()

        def produce(share: list[list[dict[str, Any]]]) -> None:
            for docs in share:
                job_id = submit(docs, kind="customer_invoice", tenant="demo", source=f"bench-{scenario}")
                with lock:
                    ids.append(job_id)

        shares = [jobs[i::producers] for i in range(producers)]
        with ThreadPoolExecutor(producers) as pool:
            list(pool.map(produce, shares))
        open_jobs = f"{settings.key_prefix}:open_jobs"
        wait_until(lambda: store.r.scard(open_jobs) == 0, 3600, "erpsync jobs")
        seen_finished = time.time()
        latencies, last = [], started
        for job_id in ids:
            job = store.job(job_id) or {}
            submitted = datetime.fromisoformat(job["submitted_at"]).timestamp()
            for record in store.records(job_id):
                done = datetime.fromisoformat((record.updated_at or "").replace("Z", "+00:00")).timestamp()
                latencies.append(done - submitted)
                last = max(last, done)
        docs = sum(len(j) for j in jobs)
        rows = sum(len(d["InvoiceRows"]) for j in jobs for d in j)
        rss = peak_rss_mb(os.getpid())
        for pid in self.worker_pids:
            rss.update(peak_rss_mb(pid))
        if measured:
            self.record(scenario, system, docs, rows, last - started, self._requests() - before, latencies, rss)
        return {"ids": ids, "started": started, "last_key": last, "seen_finished": seen_finished}

    def run_naive(
        self, scenario: str, jobs: list[list[dict[str, Any]]], producers: int, proc: Any, *, measured: bool = True
    ) -> None:
        from bench.naive import send_one  # imported once run() has set NAIVE_QUEUE and the settings it reads

        client = redis.Redis.from_url(self.stack.env["ERPSYNC_REDIS_URL"].replace("redis+socket://", "unix://"))
        done_key = f"bench:naive:{uuid.uuid4().hex}"
        docs = [d for j in jobs for d in j]
        before = self._requests()
        self._start_clock()
        started = time.time()

        def produce(share: list[dict[str, Any]]) -> None:
            for d in share:
                send_one.apply_async(args=[d, done_key, time.time()])

        with ThreadPoolExecutor(producers) as pool:
            list(pool.map(produce, [docs[i::producers] for i in range(producers)]))
        wait_until(lambda: client.llen(done_key) >= len(docs), 1800, "naive tasks", proc)
        elapsed = time.time() - started
        latencies = [float(x) for x in client.lrange(done_key, 0, -1)]
        client.delete(done_key)
        rows = sum(len(d["InvoiceRows"]) for d in docs)
        if measured:
            self.record(scenario, "naive", len(docs), rows, elapsed, self._requests() - before, latencies,
                        peak_rss_mb(proc.pid))  # fmt: skip

    def run_direct(self, scenario: str, jobs: list[list[dict[str, Any]]]) -> None:
        docs = [d for j in jobs for d in j]
        size = int(self.stack.env.get("ERPSYNC_BATCH_MAX_DOCS", "50"))
        bodies = [json.dumps(docs[i : i + size], ensure_ascii=False).encode() for i in range(0, len(docs), size)]
        client = httpx.Client(base_url=self.stack.sandbox_url, timeout=60,
                              limits=httpx.Limits(max_connections=self.args.concurrency))  # fmt: skip
        keys = {"companyApiKey": "demo-company-key", "connectApiKey": "demo-connect-key"}
        token = client.post("/Login/Token", params=keys).json()["Token"]
        before = self._requests()
        latencies: list[float] = []
        self._start_clock()
        started = time.time()

        def post(body: bytes) -> None:
            r = client.post("/Economy/Billing/CustomerInvoices", params={**keys, "token": token}, content=body,
                            headers={"Content-Type": "application/json"})  # fmt: skip
            r.raise_for_status()
            done = time.time() - started
            latencies.extend([done] * len(r.json()["Keys"]))

        with ThreadPoolExecutor(self.args.concurrency) as pool:
            list(pool.map(post, bodies))
        elapsed = time.time() - started
        rows = sum(len(d["InvoiceRows"]) for d in docs)
        self.record(scenario, "direct", len(docs), rows, elapsed, self._requests() - before, latencies,
                    peak_rss_mb(os.getpid()))  # fmt: skip

    def run_ingest(self, rows: int) -> None:
        """`erpsync submit` of a POS CSV of `rows` rows as its own process: its peak RSS and the workers'."""
        path = self.stack.workdir / "pos-day.csv"
        day = f"2030-{1 + int(uuid.uuid4().hex[:2], 16) % 12:02d}-15"  # fresh receipt ids for this run
        subprocess.run([sys.executable, str(ROOT / "examples" / "make_pos_day.py"), "--format", "csv", "--rows",
                        str(rows), "--date", day, "--out", str(path)], check=True)  # fmt: skip
        before = self._requests()
        self._start_clock()
        started = time.time()
        proc = subprocess.Popen([sys.executable, "-m", "worker.cli", "submit", str(path), "--json"], cwd=ROOT,
                                env=self.stack.env, stdout=subprocess.PIPE)  # fmt: skip
        # VmHWM of the running command, polled: after exec it is the command's own high-water mark (the
        # rusage of a child would count this big benchmark process, of which it was forked, as well).
        peak_kb = 0
        while proc.poll() is None:
            with contextlib.suppress(OSError, IndexError, ValueError):
                status_text = Path(f"/proc/{proc.pid}/status").read_text()
                peak_kb = max(peak_kb, int(status_text.split("VmHWM:")[1].split()[0]))
            time.sleep(0.05)
        status = proc.returncode
        submitted = time.time() - started
        out = proc.stdout.read() if proc.stdout else b""
        if status != 0:
            raise RuntimeError(f"erpsync submit of {path} failed: {out!r}")
        job_id = json.loads(out)["job_id"]
        store = ResultsStore(get_redis(get_settings()), get_settings())
        wait_until(lambda: (store.job(job_id) or {}).get("status") in JOB_FINAL, 3600, "the CSV job")
        job = store.job(job_id) or {}
        elapsed = time.time() - started
        workers: dict[str, float] = {}
        for pid in self.worker_pids:
            workers.update(peak_rss_mb(pid))
        self.ingest = {
            "rows": rows, "file_mb": round(path.stat().st_size / 1e6, 1), "documents": int(job.get("total", 0)),
            "created": int(job.get("n_created", 0)), "submit_seconds": round(submitted, 1),
            "seconds": round(elapsed, 1), "documents_per_s": round(int(job.get("total", 0)) / elapsed, 1),
            "submitter_peak_rss_mb": round(peak_kb / 1024, 1),
            "largest_worker_process_peak_rss_mb": max(workers.values(), default=0.0),
            "worker_processes_peak_rss_mb": workers, "http_requests": self._requests() - before,
            "cpu_s": {k: round(v - self._cpu_before.get(k, 0.0), 2) for k, v in self._cpu().items()},
        }  # fmt: skip
        print(f"  ingest {rows} CSV rows -> {self.ingest['documents']} invoices in {elapsed:.1f}s; submitter peak RSS "
              f"{self.ingest['submitter_peak_rss_mb']} MB, largest worker process "
              f"{self.ingest['largest_worker_process_peak_rss_mb']} MB", flush=True)  # fmt: skip
        path.unlink()

    # ----- the run
    def run(self) -> dict[str, Any]:
        a_docs, b_docs = self.args.a_docs, self.args.b_docs
        scenarios: dict[str, tuple[list[list[dict[str, Any]]], int]] = {
            "A": ([invoices(a_docs, 10, f"A{uuid.uuid4().hex[:6]}")], 1),
            "B": ([[d] for d in invoices(b_docs, 1, f"B{uuid.uuid4().hex[:6]}")], 8),
        }
        scenarios = {k: v for k, v in scenarios.items() if k in self.args.scenario}
        self.cpu_probe_ms.append(cpu_probe_ms())
        self.stack.start_redis()
        self.stack.start_sandbox()
        self.stack.use_in_this_process()
        os.environ["NAIVE_QUEUE"] = self.stack.env["NAIVE_QUEUE"]  # bench.naive reads it when imported
        self.sandbox = httpx.Client(base_url=self.stack.sandbox_url, timeout=60)
        try:
            if archive_on(self.args.archive):
                self.start_archive()
            procs = self._start("erpsync")
            for name, (jobs, producers) in scenarios.items():
                for n in range(1, self.args.rounds + 1):
                    self._round = n
                    turns = ("erpsync", "direct") if self._round % 2 else ("direct", "erpsync")
                    for system in turns:  # erpsync's workers wait, idle, while direct runs (see its worker CPU)
                        self._measure(system, name, jobs, producers, procs)
            self._round = 1
            if self.args.ingest_rows:
                # After the scenarios: its 200,000 invoices would weigh on their Redis and sandbox.
                self.run_ingest(self.args.ingest_rows)
            self._stop(procs)
            if not self.args.skip_naive:
                procs = self._start("naive")
                for name, (jobs, producers) in scenarios.items():
                    self._measure("naive", name, jobs, producers, procs)
                self._stop(procs)
        finally:
            self.stack.stop()
        self.cpu_probe_ms.append(cpu_probe_ms())
        return self.report()

    def start_archive(self, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """The archive of the stack's env (or `env`'s) migrated, and its archiver started (stopped with the stack)."""
        done = self.stack.erpsync("archive", "migrate", env=env)
        if done.returncode != 0:
            raise RuntimeError(f"erpsync archive migrate failed: {done.stderr.strip()[-2000:]}")
        return self.stack.start_archiver(env=env)

    def _start(self, system: str) -> list[subprocess.Popen[bytes]]:
        procs = self._workers("worker" if system == "erpsync" else "bench.naive")
        self.worker_pids = [p.pid for p in procs]
        self._warm_up(system, procs)
        return procs

    def _stop(self, procs: list[subprocess.Popen[bytes]]) -> None:
        for proc in procs:
            self.stack.kill_worker(proc)  # its figures are taken; free the CPU for the next system
        self.worker_pids = []

    def _measure(
        self, system: str, scenario: str, jobs: list[list[dict[str, Any]]], producers: int,
        procs: list[subprocess.Popen[bytes]],
    ) -> None:  # fmt: skip
        fresh = self.fresh(jobs, f"{system}{self._round}")
        if system == "erpsync":
            self.run_erpsync(scenario, fresh, producers)
        elif system == "naive":
            self.run_naive(scenario, fresh, producers, procs[0])
        else:
            self.run_direct(scenario, fresh)

    def fresh(self, jobs: list[list[dict[str, Any]]], tag: str) -> list[list[dict[str, Any]]]:
        """Ready for a measured run: an empty sandbox, and `jobs` with fresh ExternalIds (`tag`)."""
        # Every run meets the same sandbox: an empty ledger (the one before it, and the 200,000 invoices of the CSV
        # submit, would otherwise weigh on the sandbox of the runs after it). Fresh ExternalIds for each run: the
        # duplicate index would rightly take a repeated one for a duplicate.
        self.sandbox.post("/_sandbox/reset").raise_for_status()  # type: ignore[union-attr]
        fresh = [[{**d, "ExternalId": f"{tag}-{d['ExternalId']}"} for d in j] for j in jobs]
        # The scenarios' documents (millions of objects, all held by this process) are the bench's own: out of
        # the garbage collector's sight, so that its full collections, which would walk them all, do not land
        # on whichever system is measured (a real producer streams).
        gc.collect()
        gc.freeze()
        return fresh

    def report(self) -> dict[str, Any]:
        return make_report(self.args, self.results, self.cpu_probe_ms, self.ingest)


def make_report(
    args: argparse.Namespace, results: list[dict[str, Any]], cpu_probes: list[float], ingest: dict[str, Any] | None
) -> dict[str, Any]:
    """latest.json: the machine, the settings, every run of A and B and their ratios (and C's section, added by
    main)."""
    ratios: dict[str, Any] = {}
    for scenario in ("A", "B"):
        ours = [r for r in results if r["scenario"] == scenario and r["system"] == "erpsync"]
        if not ours:
            continue
        # Of all rounds, the worst: the targets on requests and latency must hold in every one.
        entry: dict[str, Any] = {
            "requests_per_document": max(round(r["http_requests"] / r["documents"], 4) for r in ours),
            "p95_latency_s": max(r["latency_s"]["p95"] for r in ours),
        }
        naive = representative(results, scenario, "naive")
        if naive:
            ours_median = statistics.median(r["documents_per_s"] for r in ours)
            entry["vs_naive"] = round(ours_median / naive["documents_per_s"], 2)
        direct = {r["round"]: r for r in results if r["scenario"] == scenario and r["system"] == "direct"}
        rounds = [round(r["documents_per_s"] / direct[r["round"]]["documents_per_s"], 2) for r in ours
                  if r["round"] in direct]  # fmt: skip
        if rounds:
            entry["vs_direct"] = round(statistics.median(rounds), 2)
            if len(rounds) > 1:
                entry["vs_direct_rounds"] = rounds
        ratios[scenario] = entry
    return {
        "when": datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "cpu_model": cpu_model(),
            "cpu_probe_ms": cpu_probes,
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "settings": {
            "latency_ms": args.latency_ms,
            "pool": args.pool,
            "concurrency": args.concurrency,
            "send_threads": args.send_threads,
            "intake_nice": args.intake_nice,
            "rounds": args.rounds,
            "quick": args.quick,
            "set": dict(args.setting),
            "archive": redact_url(args.archive),  # A's, B's and C's (the comparison's own: its section)
        },
        "results": results,
        "ratios": ratios,
        "ingest": ingest,
    }


def archive_on(url: str) -> bool:
    """ERPSYNC_ARCHIVE_URL turns the archive on (worker/settings.py, `archive_enabled`)."""
    return url.strip().lower() not in ("", "off", "none")


def representative(results: list[dict[str, Any]], scenario: str, system: str) -> dict[str, Any] | None:
    """The run of `system` in `scenario` with the median documents/s of its rounds (the lower middle of an even
    number), or None."""
    runs = sorted((r for r in results if r["scenario"] == scenario and r["system"] == system),
                  key=lambda r: r["documents_per_s"])  # fmt: skip
    return runs[(len(runs) - 1) // 2] if runs else None


def machine_speed(machine: dict[str, Any]) -> str:
    """` (model; CPU probe N ms, M ms after)` for the report's first line; empty for reports made before the probe."""
    probes = machine.get("cpu_probe_ms") or []
    if not probes:
        return ""
    after = f", {probes[-1]:g} ms after the run" if len(probes) > 1 else ""
    return f" ({machine.get('cpu_model', 'unknown')}; CPU probe {probes[0]:g} ms{after})"


def markdown(report: dict[str, Any]) -> str:
    ran = " and ".join(name for key, name in (("isolation", "scenario C"), ("archive", "the archive comparison"))
                       if report.get(key))  # fmt: skip
    lines = ab_markdown(report) if report["results"] else [
        f"Run {report['when']} on {report['machine']['cpus']} CPUs{machine_speed(report['machine'])}, "
        f"Python {report['machine']['python']}{' (quick mode)' if report['settings']['quick'] else ''}: {ran}."
    ]  # fmt: skip
    if report.get("isolation"):
        from bench.isolation import markdown as isolation_markdown  # bench.isolation imports this module

        lines += ["", *isolation_markdown(report["isolation"])]
    if report.get("archive"):
        from bench.archive import markdown as archive_markdown  # bench.archive imports this module

        lines += ["", *archive_markdown(report["archive"])]
    return "\n".join(lines) + "\n"


def ab_markdown(report: dict[str, Any]) -> list[str]:
    """Scenarios A and B: the first line (the machine and the settings), the runs, their CPU, the ratios."""
    s = report["settings"]
    split = ""  # how the split's two workers ran (older reports lack these settings)
    if s["pool"] == "split":
        split += f" ({s['send_threads']} send threads)" if s.get("send_threads") else ""
        split += f", intake at nice {s['intake_nice']}" if s.get("intake_nice") else ""
    lines = [
        f"Run {report['when']} on {report['machine']['cpus']} CPUs{machine_speed(report['machine'])}, "
        f"Python {report['machine']['python']}; "
        f"sandbox latency {s['latency_ms']} ms, worker pool {s['pool']} x {s['concurrency']}"
        f"{split}"
        f"{f', {rounds} rounds of erpsync and direct' if (rounds := s.get('rounds', 1)) > 1 else ''}"
        f"{' (quick mode)' if s['quick'] else ''}"
        f"{''.join(f', {k}={v}' for k, v in s.get('set', {}).items())}"
        f"{f', archive {a}' if (a := s.get('archive', 'off')) != 'off' else ''}.",
        "",
        "| scenario | system | round | documents | docs/s | rows/s | HTTP requests | p50 s | p95 s | p99 s "
        "| peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        rss = max(r["peak_rss_mb"].values()) if r["peak_rss_mb"] else 0
        lat = r["latency_s"]
        lines.append(f"| {r['scenario']} | {r['system']} | {r.get('round', 1)} | {r['documents']} | "
                     f"{r['documents_per_s']:.0f} | {r['rows_per_s']:.0f} | {r['http_requests']} | {lat['p50']} | "
                     f"{lat['p95']} | {lat['p99']} | {rss} |")  # fmt: skip
    parts = CPU_PARTS + ["archiver"] * any("archiver" in r.get("cpu_s", {}) for r in report["results"])
    lines += [
        "",
        "CPU seconds per part of the run (user + system; where the time went):",
        "",
        "| scenario | system | round | " + " | ".join(parts) + " |",
        "|---|---|---|" + "---|" * len(parts),
    ]
    for r in report["results"]:
        cpu = r.get("cpu_s", {})
        lines.append(
            f"| {r['scenario']} | {r['system']} | {r.get('round', 1)} | "
            + " | ".join(str(cpu.get(k, "")) for k in parts)
            + " |"
        )
    lines.append("")
    for scenario, ratio in report["ratios"].items():
        parts = [f"{k.replace('_', ' ')} {v}" for k, v in ratio.items()]
        lines.append(f"- Scenario {scenario}: " + ", ".join(parts))
    ingest = report.get("ingest")
    if ingest:
        lines.append(
            f"- Streaming submit: {ingest['rows']:,} CSV rows ({ingest['file_mb']} MB) → {ingest['documents']:,} "
            f"invoices, {ingest['created']:,} created in {ingest['seconds']} s (submit done after "
            f"{ingest['submit_seconds']} s); peak RSS of `erpsync submit` {ingest['submitter_peak_rss_mb']} MB, "
            f"of the largest worker process {ingest['largest_worker_process_peak_rss_mb']} MB"
        )
    return lines


def chart(report: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    systems = ["erpsync", "naive", "direct"]
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.25
    for i, system in enumerate(systems):
        values = [(run or {}).get("documents_per_s", 0) for sc in ("A", "B")
                  for run in [representative(report["results"], sc, system)]]  # fmt: skip
        ax.bar([x + i * width for x in range(2)], values, width, label=system)
    ax.set_xticks([x + width for x in range(2)], ["A: end of day (1 job)", "B: stream (1-doc jobs)"])
    ax.set_ylabel("documents / s (submit → all Keys written)")
    ax.set_title("erpsync throughput vs naive and direct")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return True


def _setting(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.startswith("ERPSYNC_"):
        raise argparse.ArgumentTypeError(f"expected ERPSYNC_NAME=VALUE, got {text!r}")
    return name, value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 %% of the full sizes (C: its quick sizes)")
    parser.add_argument("--latency-ms", type=int, default=30, help="the sandbox's latency for A and B")
    parser.add_argument(
        "--pool",
        default="split",
        choices=["prefork", "threads", "split"],
        help="split: intake in prefork (a process per core), sends in threads (--send-threads; at most --concurrency "
        "requests in flight)",
    )
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--send-threads",
        type=int,
        default=12,
        help="threads of the split's send worker; requests in flight stay capped at --concurrency (the tenant's cap)",
    )
    parser.add_argument(
        "--intake-nice",
        type=int,
        default=6,
        help="the split's intake worker runs at this CPU priority (`celery worker --nice`, as in the Procfile), so "
        "that sends and the sandbox get the CPU first; 0: the same priority as everything else",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="turns of erpsync and direct per scenario, the ratio being their median (default 3; quick 1)",
    )
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument(
        "--scenario",
        action="append",
        choices=["A", "B", "C", "archive"],
        help="run only this scenario (repeatable; default all: A, B, C and the archive comparison)",
    )
    parser.add_argument(
        "--archive",
        default="off",
        metavar="URL",
        help="ERPSYNC_ARCHIVE_URL for A, B and C (default off: comparable with earlier runs); when on, it is "
        "migrated and its archiver runs. The archive comparison has its own (a fresh database on --pg-admin)",
    )
    parser.add_argument(
        "--pg-admin",
        default=PG_ADMIN,
        metavar="URL",
        help="the PostgreSQL server on which the archive comparison creates (and then drops) its database",
    )
    parser.add_argument(
        "--ingest-rows",
        type=int,
        default=None,
        help="rows of the POS CSV submitted as its own process (default 1,000,000; quick 20,000; 0: skip)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--scale", type=float, default=None, help="multiply A's and B's sizes (overrides --quick; C: quick below 1)"
    )
    parser.add_argument(
        "--set",
        dest="setting",
        type=_setting,
        action="append",
        default=[],
        metavar="ERPSYNC_NAME=VALUE",
        help="a setting for this run's processes, to measure its effect (e.g. ERPSYNC_SEND_GROUP_BATCHES=1); "
        "the run's own ERPSYNC_* environment is not passed on",
    )
    parser.add_argument("--c-latency-ms", type=int, default=100, help="the sandbox's latency for C (issue 23: 100)")
    parser.add_argument(
        "--victim-producer",
        choices=["submit", "raw"],
        default="submit",
        help="how C's victim submits: worker.producer.submit, or a job message LPUSHed to {prefix}:submit (the "
        "producer contract for any language)",
    )
    parser.add_argument(
        "--tenant-keys",
        choices=["shared", "distinct"],
        default="shared",
        help="C's small tenants share one SoftOne account (default), or each has its own (two more credentials "
        "per tenant for the producer's credential scan)",
    )
    args = parser.parse_args(argv)
    if any(name == "ERPSYNC_ARCHIVE_URL" for name, _ in args.setting):
        parser.error("the archive is chosen with --archive URL, not --set")
    args.scenario = args.scenario or ["A", "B", "C", "archive"]
    scale = args.scale if args.scale is not None else (0.03 if args.quick else 1.0)
    args.a_docs, args.b_docs = max(10, int(20_000 * scale)), max(10, int(10_000 * scale))
    args.full_size = scale >= 1
    if args.rounds is None:
        args.rounds = 3 if scale >= 1 else 1
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.ingest_rows is None:
        args.ingest_rows = 1_000_000 if scale >= 1 else max(1000, int(1_000_000 * scale * 0.67))
    return args


def isolation_argv(args: argparse.Namespace) -> list[str]:
    """The options of this run that scenario C takes, for its own process (`isolation.run_in_child`)."""
    argv = ["--c-latency-ms", str(args.c_latency_ms), "--send-threads", str(args.send_threads)]
    argv += ["--intake-nice", str(args.intake_nice), "--victim-producer", args.victim_producer]
    argv += ["--tenant-keys", args.tenant_keys, "--archive", args.archive]
    argv += ["--quick"] if args.quick else []
    argv += ["--scale", str(args.scale)] if args.scale is not None else []
    return argv + [part for name, value in args.setting for part in ("--set", f"{name}={value}")]


def run_scenarios(args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    """A and B (Bench), then C, then the archive comparison, each on a stack of its own. The first of them runs in
    this process, the others each in a process of its own (this process's Celery app and caches are bound to the
    stack of the first)."""
    from bench import archive, isolation  # they import this module

    sizes = isolation.FULL if args.full_size else isolation.QUICK
    options = {
        "redis_url": env.get("ERPSYNC_REDIS_URL") or None,
        "latency_ms": args.c_latency_ms,
        "send_threads": args.send_threads,
        "intake_nice": args.intake_nice,
        "settings": dict(args.setting),
        "victim_producer": args.victim_producer,
        "tenant_keys": args.tenant_keys,
        "archive": args.archive,
    }
    report: dict[str, Any] | None = None
    probes: list[float] = []
    bound = False  # this process is some stack's producer: what follows runs in a child
    if any(s in args.scenario for s in "AB"):
        print(
            f"bench: A {args.a_docs} invoices x 10 rows, B {args.b_docs} one-invoice jobs; latency {args.latency_ms} ms"
        )
        report, bound = Bench(args).run(), True
    else:
        probes.append(cpu_probe_ms())
    sections: dict[str, Any] = {}
    if "C" in args.scenario:
        if bound:
            sections["isolation"] = isolation.run_in_child(isolation_argv(args), env)
        else:
            sections["isolation"] = isolation.run(sizes, options)
        bound = True
    if "archive" in args.scenario:
        sections["archive"] = archive.run_in_child(archive.child_argv(args), env) if bound else archive.run(args)
    if report is None:
        probes.append(cpu_probe_ms())
        report = make_report(args, [], probes, None)
    report.update(sections)
    return report


def main(argv: list[str] | None = None) -> int:
    env = dict(os.environ)  # before A and B make this process their stack's producer (C's process gets this one)
    args = parse_args(argv)
    # `timeout`/Ctrl-C must still stop every process this run started (the finally blocks do).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    report = run_scenarios(args, env)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(report, indent=2))
    (args.out / "latest.md").write_text(markdown(report))
    drew = bool(report["results"]) and chart(report, args.out / "latest.png")
    print(markdown(report))
    print(f"written: {args.out}/latest.json, latest.md" + (", latest.png" if drew else " (no chart)"))
    return 0
