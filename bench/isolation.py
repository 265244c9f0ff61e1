"""Scenario C (issue 23, fair sharing across tenants): a small tenant's latency next to noisy neighbours.

The victim, tenant `shop` (SoftOne), submits a stream of one-invoice jobs, one every 250 ms (40; quick 15); its
latency is submit → job final (its one Key written), measured by this process's clock from just before the submit.
It runs alone, then next to each neighbour, whose load starts 1 s (quick 0.5 s) before the stream, from a producer
process of its own (bench/neighbour.py):
  a  a SoftOne tenant's 30,000-invoice file (10 rows each; quick 6,000);
  b  a Fortnox tenant at Fortnox's real limit, 25 requests per 5 s, with 300 invoices queued (quick 60);
  c  a tenant whose ERP refuses connections (its base_url is a closed local port), 2,000 invoices queued (quick 200):
     never waited for, it never finishes;
  d  500 tenants with 20 one-invoice jobs each, all at once (quick 100 x 5);
  e  the victim's own 30,000-invoice file (its one-invoice jobs must not queue behind it: lanes).
The neighbours of a and b also run alone, just before their case, for their throughput alone (e's file is compared
with a's alone: the same file, another tenant's). For b, the Fortnox tenant's rate is reported against its limit.
Every case starts from scratch: workers started again, every Redis key of the run deleted, the sandbox reset, then a
warm-up job per tenant of the case (logins, connections) before the clock starts.

Its own stack and tenants file: Redis (embedded unless ERPSYNC_REDIS_URL), the sandbox at 100 ms per request with a
SoftOne company per tenant (d's small tenants share one unless `--tenant-keys distinct`), and the Procfile's workers:
intake prefork x 2 at nice 6, sends in 12 threads. It runs in a process of its own (the producer's Celery app and
caches are bound to one stack): `python -m bench --scenario C`, which `python -m bench` starts after A and B.

Targets (issue 23): next to each neighbour the victim's p95 ≤ 1.5 x its p95 alone and ≤ 1 s (at 100 ms); the bulk
neighbour (a, and the victim's own file in e) keeps ≥ 0.9 of its throughput alone; in d no tenant's p95 is above
2 x the median tenant's. The report says which are met; nothing fails on them.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import redis

from bench.neighbour import fortnox_invoices, small_tenant
from bench.run import archive_on, cpu_seconds, invoices, percentiles
from sandbox.config import DEMO_FORTNOX_CLIENT_ID, DEMO_FORTNOX_CLIENT_SECRET, DEMO_FORTNOX_TENANT_ID
from worker.devstack.stack import ROOT, LocalStack, free_port
from worker.redaction import redact_url
from worker.store.keys import Keys
from worker.store.records import JOB_FINAL

VICTIM, BULK, FORTNOX, REFUSED = "shop", "bulk", "fortnox", "refused"
FORTNOX_LIMIT, FORTNOX_WINDOW_S = 25, 5.0  # Fortnox's real limit, on both sides
INTAKE_PROCESSES = 2  # the Procfile's intake worker: prefork x ERPSYNC_WORKER_CONCURRENCY (2)
TARGETS = {
    "victim_p95_vs_alone_max": 1.5,
    "victim_p95_s_max": 1.0,
    "bulk_vs_alone_min": 0.9,
    "tenant_p95_max_vs_median_max": 2.0,
}
JOB_FIELDS = ("status", "total", "n_created", "n_failed", "submitted_at", "finished_at")


@dataclass(frozen=True)
class Sizes:
    bulk_docs: int
    fortnox_docs: int
    refused_docs: int
    small_tenants: int
    small_jobs: int
    victim_jobs: int
    bulk_rows: int = 10
    interval_s: float = 0.25  # between the victim's jobs
    delay_s: float = 1.0  # from the neighbour's first submit to the victim's first


FULL = Sizes(bulk_docs=30_000, fortnox_docs=300, refused_docs=2_000, small_tenants=500, small_jobs=20, victim_jobs=40)
# Quick: loads that still outlast most of the victim's shorter stream, which starts sooner after them; more Fortnox
# invoices than send threads wait beyond the first window (fewer would leave the victim threads to spare).
QUICK = Sizes(
    bulk_docs=6_000, fortnox_docs=60, refused_docs=200, small_tenants=100, small_jobs=5, victim_jobs=15, delay_s=0.5
)


@dataclass(frozen=True)
class Load:
    """A neighbour: what its producer (bench/neighbour.py) submits, and the tenants warmed up before it."""

    title: str
    argv: tuple[str, ...]
    tenants: tuple[str, ...]
    ends: bool = True  # False: its ERP refuses connections, it never finishes


def loads(s: Sizes) -> dict[str, Load]:
    file = ("--docs", str(s.bulk_docs), "--rows", str(s.bulk_rows))
    small = tuple(small_tenant(n) for n in range(s.small_tenants))
    return {
        "a": Load(f"SoftOne tenant's {s.bulk_docs:,}-invoice file", ("--tenant", BULK, *file), (BULK,)),
        "b": Load(
            f"Fortnox tenant, {s.fortnox_docs:,} invoices at {FORTNOX_LIMIT} / {FORTNOX_WINDOW_S:g} s",
            ("--tenant", FORTNOX, "--fortnox", "--docs", str(s.fortnox_docs)),
            (FORTNOX,),
        ),
        "c": Load(
            f"tenant whose ERP refuses connections, {s.refused_docs:,} invoices",
            ("--tenant", REFUSED, "--docs", str(s.refused_docs), "--rows", str(s.bulk_rows)),
            (),
            ends=False,
        ),
        "d": Load(
            f"{s.small_tenants} tenants x {s.small_jobs} one-invoice jobs, all at once",
            ("--small", str(s.small_tenants), "--jobs", str(s.small_jobs)),
            small,
        ),
        "e": Load(f"the victim's own {s.bulk_docs:,}-invoice file", ("--tenant", VICTIM, *file), ()),
    }


def configuration(s: Sizes, refused_url: str, distinct_keys: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """The tenants file (ERPSYNC_TENANTS_FILE) and the sandbox's config: a SoftOne company per tenant (the small
    tenants share one unless `distinct_keys`), the sandbox's demo Fortnox account, Fortnox's limit on both sides."""
    accounts: dict[str, tuple[str, str]] = {}
    tenants: list[dict[str, Any]] = []

    def softone(name: str, account: str, **extra: str) -> None:
        if account not in accounts:  # random keys, as real ones are (the producer's credential scan meets them)
            accounts[account] = (secrets.token_urlsafe(18), secrets.token_urlsafe(18))
        company, connect = accounts[account]
        tenants.append({"name": name, "company_api_key": company, "connect_api_key": connect, **extra})

    softone(VICTIM, VICTIM)
    softone(BULK, BULK)
    softone(REFUSED, REFUSED, base_url=refused_url)
    for n in range(s.small_tenants):
        softone(small_tenant(n), small_tenant(n) if distinct_keys else "small")
    tenants.append(
        {
            "name": FORTNOX,
            "target": "fortnox",
            "client_id": DEMO_FORTNOX_CLIENT_ID,
            "client_secret": DEMO_FORTNOX_CLIENT_SECRET,
            "tenant_id": DEMO_FORTNOX_TENANT_ID,
            "rate_limit": f"{FORTNOX_LIMIT}/{FORTNOX_WINDOW_S:g}",
        }
    )
    companies = [
        {"company_api_key": company, "connect_api_keys": [connect], "company_id": 3000 + i, "name": f"{a} AB"}
        for i, (a, (company, connect)) in enumerate(accounts.items())
    ]
    sandbox = {
        "companies": companies,
        "fortnox_rate_limit": FORTNOX_LIMIT,
        "fortnox_rate_window_seconds": FORTNOX_WINDOW_S,
    }
    return {"tenants": tenants}, sandbox


def timestamp(iso: str | None) -> float | None:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() if iso else None


class Producer:
    """A neighbour's producer process; made once it has started submitting (`started`, its clock)."""

    def __init__(self, stack: LocalStack, argv: Sequence[str], tag: str, log: Path) -> None:
        with open(log, "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bench.neighbour", *argv, "--tag", tag],
                cwd=ROOT,
                env=stack.env,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("started "):
            self.stop()
            raise RuntimeError(f"the neighbour's producer did not start (see {log})")
        self.started = float(line.split()[1])

    def jobs(self, timeout: float) -> tuple[list[tuple[str, str]], float]:
        """(tenant, job id) of every job it submitted, and how long submitting took; waits for it to end."""
        out, _ = self.proc.communicate(timeout=timeout)
        if self.proc.returncode:
            raise RuntimeError(f"the neighbour's producer failed with code {self.proc.returncode}")
        done = json.loads(out.strip().splitlines()[-1])
        return [(t, j) for t, j in done["jobs"]], done["submitted_s"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(30)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class Isolation:
    """Scenario C on a stack of its own; `run()` returns the report's `isolation` section."""

    def __init__(self, sizes: Sizes, options: dict[str, Any]) -> None:
        self.sizes, self.options = sizes, options
        self.workdir = Path(tempfile.mkdtemp(prefix="erpsync-bench-c-"))
        self.prefix = f"erpsync-bench-c-{uuid.uuid4().hex[:6]}"
        tenants, sandbox = configuration(sizes, f"http://127.0.0.1:{free_port()}", options["tenant_keys"] == "distinct")
        (self.workdir / "tenants.json").write_text(json.dumps(tenants))
        (self.workdir / "sandbox.json").write_text(json.dumps(sandbox))
        self.stack = LocalStack(
            workdir=self.workdir,
            redis_url=options.get("redis_url"),
            latency_ms=options["latency_ms"],
            sandbox_config=self.workdir / "sandbox.json",
            extra_env={
                **options.get("settings", {}),
                "ERPSYNC_QUEUE": self.prefix,
                "ERPSYNC_KEY_PREFIX": self.prefix,
                "ERPSYNC_TENANTS_FILE": str(self.workdir / "tenants.json"),
                "ERPSYNC_DEMO_TENANT": "false",
                # `off` unless --archive names one (bench/run.py): comparable with the runs before the archive.
                "ERPSYNC_ARCHIVE_URL": options.get("archive", "off"),
            },
        )
        self.workers: list[subprocess.Popen[bytes]] = []
        self.r: redis.Redis | None = None
        self.sandbox: httpx.Client | None = None

    # ----- the run
    def run(self) -> dict[str, Any]:
        started = time.time()
        neighbours = loads(self.sizes)
        alone_of: dict[str, dict[str, Any]] = {}
        cases: dict[str, dict[str, Any]] = {}
        try:
            self.stack.start_redis()
            self.stack.start_sandbox()
            self.stack.use_in_this_process()
            url = self.stack.env["ERPSYNC_REDIS_URL"].replace("redis+socket://", "unix://")
            self.r = redis.Redis.from_url(url, decode_responses=True)
            self.sandbox = httpx.Client(base_url=self.stack.sandbox_url, timeout=60)
            if archive_on(self.stack.env["ERPSYNC_ARCHIVE_URL"]):
                self.start_archive()
            alone = self.case("alone", None)
            for name, load in neighbours.items():
                if name in ("a", "b"):  # the neighbour alone just before it runs next to the victim: less drift
                    alone_of[name] = self.case(f"{name}-alone", load, victim=False)
                cases[name] = self.case(name, load)
        finally:
            self.stop_workers()
            self.clean(final=True)
            self.stack.stop()
            if not os.environ.get("ERPSYNC_KEEP_LOGS"):
                shutil.rmtree(self.workdir, ignore_errors=True)
        report = summarize(alone, alone_of, cases, neighbours)
        report["settings"] = self.settings()
        report["seconds"] = round(time.time() - started, 1)
        return report

    def start_archive(self) -> None:
        """--archive: the archive migrated and its archiver running through every case (it keeps the archive's
        keys: `clean` leaves them)."""
        done = self.stack.erpsync("archive", "migrate")
        if done.returncode != 0:
            raise RuntimeError(f"erpsync archive migrate failed: {done.stderr.strip()[-2000:]}")
        self.stack.start_archiver()

    def settings(self) -> dict[str, Any]:
        return {
            "latency_ms": self.options["latency_ms"],
            "intake_processes": INTAKE_PROCESSES,
            "intake_nice": self.options["intake_nice"],
            "send_threads": self.options["send_threads"],
            "victim": VICTIM,
            "victim_producer": self.options["victim_producer"],
            "tenant_keys": self.options["tenant_keys"],
            "set": self.options.get("settings", {}),
            "archive": redact_url(self.options.get("archive", "off")),
            **asdict(self.sizes),
        }

    def case(self, name: str, load: Load | None, *, victim: bool = True) -> dict[str, Any]:
        """One case from scratch: the neighbour's load (if any), then `delay_s` later the victim's stream (if
        `victim`)."""
        print(f"  C {name}: {load.title if load else 'the victim alone'}", flush=True)
        self.fresh(name)
        tag = f"C{uuid.uuid4().hex[:6]}"
        self.warm_up(((VICTIM,) if victim else ()) + (load.tenants if load else ()), tag)
        cpu, requests = self.cpu(), self.requests()
        producer = Producer(self.stack, load.argv, tag, self.workdir / f"neighbour-{name}.log") if load else None
        result: dict[str, Any] = {}
        try:
            sent: list[tuple[str, float]] = []
            if victim:
                time.sleep(self.sizes.delay_s if producer else 0)
                sent = self.victim_stream(tag)
                result["victim"] = self.victim_result(sent)
            if producer and load:
                result["neighbour"] = self.neighbour_result(producer, load, tag)
                ended = result["neighbour"].get("ended_at") or float("inf")
                if victim:
                    result["victim"]["submitted_during_load"] = sum(1 for _, t0 in sent if t0 < ended)
        finally:
            if producer:
                producer.stop()
        result["cpu_s"] = {k: round(v - cpu[k], 2) for k, v in self.cpu().items()}
        result["http_requests"] = self.requests() - requests
        print("    " + progress(result), flush=True)
        return result

    # ----- a case's steps
    def fresh(self, name: str) -> None:
        """Nothing carries over: the workers are killed, every key of the run deleted, the sandbox reset, and
        the Procfile's two workers started again."""
        self.stop_workers()
        self.clean()
        assert self.sandbox is not None
        self.sandbox.post("/_sandbox/reset").raise_for_status()
        kinds = [
            {
                "name": f"intake-{name}",
                "concurrency": INTAKE_PROCESSES,
                "pool": "prefork",
                "queues": "intake",
                "nice": self.options["intake_nice"],
            },
            {"name": f"send-{name}", "concurrency": self.options["send_threads"], "pool": "threads", "queues": "send"},
        ]
        with ThreadPoolExecutor(len(kinds)) as pool:
            self.workers = list(pool.map(lambda kind: self.stack.start_worker(**kind), kinds))

    def stop_workers(self) -> None:
        for proc in self.workers:
            self.stack.kill_worker(proc)
        self.workers = []

    def clean(self, final: bool = False) -> None:
        """Delete every key of the run (the Redis may be shared: only ours), and the messages that killed workers
        left unacknowledged in kombu's `unacked` hash. The archive's keys stay until the end (--archive): without
        its epoch, a duplicate index the archive knows documents of counts as lost, and intake would wait."""
        if self.r is None:
            return
        ours = {self.prefix, f"{self.prefix}.send"}
        patterns = [f"{self.prefix}*"] + ([f"_kombu.binding.{self.prefix}*"] if final else [])
        archive = Keys(self.prefix).archive
        for pattern in patterns:
            keys = [k for k in self.r.scan_iter(pattern, count=1000) if final or not k.startswith(archive)]
            for i in range(0, len(keys), 1000):
                self.r.unlink(*keys[i : i + 1000])
        for tag, raw in self.r.hscan_iter("unacked"):
            with contextlib.suppress(ValueError, IndexError, TypeError):
                if json.loads(raw)[2] in ours:
                    self.r.hdel("unacked", tag)
                    self.r.zrem("unacked_index", tag)

    def warm_up(self, tenants: Sequence[str], tag: str) -> None:
        """A one-invoice job per tenant, each to its Key: logins and connections are made before the clock runs, as
        in a worker that has been up for a while. Also proves every tenant of the case configured right."""
        from worker.producer.submit import submit

        ids = []
        for n, tenant in enumerate(tenants):
            doc = fortnox_invoices(1, f"{tag}w{n}")[0] if tenant == FORTNOX else invoices(1, 1, f"{tag}w{n}")[0]
            ids.append(submit([doc], tenant=tenant, source="bench C warm-up"))
        rows = self.wait_jobs(ids, 300)
        bad = [f"{t}: {row['status']}" for t, row in zip(tenants, rows, strict=True) if row["n_created"] != "1"]
        if bad:
            raise RuntimeError(f"warm-up jobs did not create their invoice: {bad[:5]} (logs: {self.workdir})")

    def victim_stream(self, tag: str) -> list[tuple[str, float]]:
        """The victim's one-invoice jobs, one every `interval_s` on a fixed schedule: (job id, submitted at)."""
        docs = invoices(self.sizes.victim_jobs, 1, f"{tag}-{VICTIM}")
        sent: list[tuple[str, float]] = []
        start = time.time()
        for i, doc in enumerate(docs):
            time.sleep(max(0.0, start + i * self.sizes.interval_s - time.time()))
            t0 = time.time()
            sent.append((self.submit_victim(doc, f"{tag}-{VICTIM}-{i:03d}"), t0))
        return sent

    def submit_victim(self, doc: dict[str, Any], job_id: str) -> str:
        if self.options["victim_producer"] == "raw":  # the producer contract for any language (docs/reference.md)
            message = {
                "job_id": job_id,
                "tenant": VICTIM,
                "kind": "customer_invoice",
                "source": "bench C",
                "documents": [doc],
            }
            assert self.r is not None
            self.r.lpush(f"{self.prefix}:submit", json.dumps(message))
            return job_id
        from worker.producer.submit import submit

        return submit([doc], tenant=VICTIM, source="bench C")

    def victim_result(self, sent: list[tuple[str, float]]) -> dict[str, Any]:
        """Latency of each job: submit → job final. A job still open after 5 minutes counts with the time waited."""
        rows = self.wait_jobs([job_id for job_id, _ in sent], 300, strict=False)
        now, latencies, failed, unfinished = time.time(), [], 0, 0
        for (_, t0), row in zip(sent, rows, strict=True):
            finished = timestamp(row["finished_at"]) if row["status"] in JOB_FINAL else None
            unfinished += finished is None
            failed += finished is not None and row["n_created"] != row["total"]
            latencies.append((finished or now) - t0)
        return {
            "jobs": len(sent),
            **percentiles(latencies),
            "max": round(max(latencies), 3),
            "failed": failed,
            "unfinished": unfinished,
        }

    def neighbour_result(self, producer: Producer, load: Load, tag: str) -> dict[str, Any]:
        """The neighbour's documents and, if it ends, its throughput: documents created per second from its first
        submit to its last job's end."""
        jobs, submitted_s = producer.jobs(timeout=1800)
        ids = [job_id for _, job_id in jobs]
        rows = self.wait_jobs(ids, 1800, strict=False) if load.ends else self.job_rows(ids)
        ends = [timestamp(row["finished_at"]) for row in rows if row["status"] in JOB_FINAL]
        total, created = (sum(int(row[k] or 0) for row in rows) for k in ("total", "n_created"))
        out: dict[str, Any] = {
            "tenants": len({t for t, _ in jobs}),
            "jobs": len(jobs),
            "documents": total,
            "created": created,
            "failed": sum(int(row["n_failed"] or 0) for row in rows),
            "submitted_s": submitted_s,
            "finished": load.ends and len(ends) == len(rows),
        }
        if out["finished"]:
            out["ended_at"] = max(e for e in ends if e is not None)
            out["seconds"] = round(out["ended_at"] - producer.started, 3)
            out["documents_per_s"] = round(created / out["seconds"], 1) if out["seconds"] > 0 else None
        else:
            out["pending"] = total - created - out["failed"]
            out["documents_per_s"] = None
        if FORTNOX in load.tenants:
            out["fortnox"] = self.fortnox_rate(tag)
        if out["tenants"] > 1:
            out["per_tenant"] = tenant_spread(jobs, rows)
        return out

    def fortnox_rate(self, tag: str) -> dict[str, Any]:
        """How the Fortnox tenant used its limit while draining: its invoices' arrival times at the sandbox against
        the fastest drain the sliding window allows, and the sandbox's own count of 429s and fullest window."""
        assert self.sandbox is not None
        stats = self.sandbox.get("/_sandbox/stats").json()["fortnox"]
        ledger = self.sandbox.get("/_sandbox/ledger", params={"target": "fortnox"}).json()["documents"]
        times = sorted(
            t
            for d in ledger
            if str(d.get("external_id", "")).startswith(f"{tag}-")
            for t in [timestamp(d["created_at"])]
            if t is not None
        )
        out = {
            "invoices": len(times),
            "allowed_per_s": FORTNOX_LIMIT / FORTNOX_WINDOW_S,
            "rate_limited_429": stats["rate_limited"],
            "max_in_window": stats["max_in_window"],
        }
        if len(times) > 1:
            drain = times[-1] - times[0]
            fastest = ((len(times) - 1) // FORTNOX_LIMIT) * FORTNOX_WINDOW_S
            out.update(
                {
                    "drain_s": round(drain, 2),
                    "achieved_per_s": round((len(times) - 1) / drain, 2),
                    "fastest_drain_s": fastest,
                    "vs_limit": round(fastest / drain, 2) if fastest else None,
                }
            )
        return out

    # ----- reading jobs (the producer contract: the job hash under {prefix}:job:{id})
    def job_rows(self, ids: Sequence[str]) -> list[dict[str, str | None]]:
        assert self.r is not None
        rows: list[dict[str, str | None]] = []
        for i in range(0, len(ids), 2000):
            pipe = self.r.pipeline(transaction=False)
            for job_id in ids[i : i + 2000]:
                pipe.hmget(f"{self.prefix}:job:{job_id}", JOB_FIELDS)
            rows += [dict(zip(JOB_FIELDS, values, strict=True)) for values in pipe.execute()]
        return rows

    def wait_jobs(self, ids: Sequence[str], timeout: float, strict: bool = True) -> list[dict[str, str | None]]:
        """The jobs' hashes once every one is final; after `timeout` as they are (or TimeoutError if `strict`)."""
        deadline, todo = time.monotonic() + timeout, list(ids)
        while todo and time.monotonic() < deadline:
            todo = [j for j, row in zip(todo, self.job_rows(todo), strict=True) if row["status"] not in JOB_FINAL]
            if todo:
                time.sleep(0.1)
        if todo and strict:
            raise TimeoutError(f"{len(todo)} of {len(ids)} jobs not final after {timeout:.0f}s (logs: {self.workdir})")
        return self.job_rows(ids)

    def requests(self) -> int:
        """ERP requests the sandbox has answered since its reset (its login endpoints left out)."""
        assert self.sandbox is not None
        counts = self.sandbox.get("/_sandbox/stats").json()["requests"]
        return sum(sum(c.values()) for route, c in counts.items() if not route.endswith(("/Login/Token", "/token")))

    def cpu(self) -> dict[str, float]:
        redis_proc = self.stack.embedded.proc if self.stack.embedded else None
        return {
            "workers": sum(cpu_seconds(p.pid) for p in self.workers),
            "sandbox": cpu_seconds(self.stack.sandbox.pid if self.stack.sandbox else None),
            "redis": cpu_seconds(redis_proc.pid if redis_proc else None),
        }


def tenant_spread(jobs: list[tuple[str, str]], rows: list[dict[str, str | None]]) -> dict[str, Any]:
    """Each tenant's p95 of submit → job final (the job hash's submitted_at and finished_at), the median of those
    p95s and how far the worst is above it."""
    latencies: dict[str, list[float]] = defaultdict(list)
    for (tenant, _), row in zip(jobs, rows, strict=True):
        start, end = timestamp(row["submitted_at"]), timestamp(row["finished_at"])
        if start is not None and end is not None and row["status"] in JOB_FINAL:
            latencies[tenant].append(end - start)
    p95s = {tenant: percentiles(values)["p95"] for tenant, values in sorted(latencies.items())}
    if not p95s:
        return {}
    median = statistics.median(p95s.values())
    worst = max(p95s, key=lambda t: p95s[t])
    return {
        "tenants": len(p95s),
        "median_p95_s": round(median, 3),
        "max_p95_s": p95s[worst],
        "max_tenant": worst,
        "max_vs_median": round(p95s[worst] / median, 2) if median > 0 else None,
        "p95_s": p95s,
    }


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def summarize(
    alone: dict[str, Any],
    neighbours_alone: dict[str, dict[str, Any]],
    cases: dict[str, dict[str, Any]],
    neighbours: dict[str, Load],
) -> dict[str, Any]:
    """The report's `isolation` section: every case with its ratios to alone, and the targets met or not."""
    base = alone["victim"]["p95"]
    alone_of = {"a": "a", "b": "b", "e": "a"}  # e's file is a's file, another tenant's
    out_cases: dict[str, Any] = {}
    for name, result in cases.items():
        neighbour = dict(result.get("neighbour", {}))
        neighbour.pop("ended_at", None)
        if name in alone_of:
            of = neighbours_alone[alone_of[name]]["neighbour"]
            neighbour["alone_documents_per_s"] = of.get("documents_per_s")
            neighbour["vs_alone"] = ratio(neighbour.get("documents_per_s"), of.get("documents_per_s"))
            neighbour["alone_of"] = alone_of[name]
        out_cases[name] = {
            "neighbour_is": neighbours[name].title,
            "victim": result["victim"],
            "victim_p95_vs_alone": ratio(result["victim"]["p95"], base),
            "neighbour": neighbour,
            "cpu_s": result["cpu_s"],
            "http_requests": result["http_requests"],
        }
    # The victim alone, and the neighbours of a and b alone (each with the CPU and ERP requests of its run).
    alone_section = {"victim": alone["victim"], "cpu_s": alone["cpu_s"], "http_requests": alone["http_requests"]}
    for name, result in neighbours_alone.items():
        entry = {**result["neighbour"], "cpu_s": result["cpu_s"], "http_requests": result["http_requests"]}
        entry.pop("ended_at", None)
        alone_section[name] = entry
    return {"alone": alone_section, "cases": out_cases, "targets": {**TARGETS, "met": targets_met(out_cases)}}


def targets_met(cases: dict[str, Any]) -> dict[str, dict[str, bool | None]]:
    met: dict[str, dict[str, bool | None]] = {}
    for name, case in cases.items():
        r = case["victim_p95_vs_alone"]
        entry: dict[str, bool | None] = {
            "victim_p95_vs_alone": None if r is None else r <= TARGETS["victim_p95_vs_alone_max"],
            "victim_p95_s": case["victim"]["p95"] <= TARGETS["victim_p95_s_max"],
        }
        if name in ("a", "e"):
            vs = case["neighbour"].get("vs_alone")
            entry["bulk_vs_alone"] = None if vs is None else vs >= TARGETS["bulk_vs_alone_min"]
        spread = case["neighbour"].get("per_tenant", {}).get("max_vs_median")
        if name == "d":
            entry["tenant_p95_max_vs_median"] = (
                None if spread is None else spread <= TARGETS["tenant_p95_max_vs_median_max"]
            )
        met[name] = entry
    return met


def progress(result: dict[str, Any]) -> str:
    parts = []
    if "victim" in result:
        v = result["victim"]
        parts.append(f"victim p50 {v['p50']:.2f}s p95 {v['p95']:.2f}s ({v['failed']} failed, {v['unfinished']} open)")
    if "neighbour" in result:
        n = result["neighbour"]
        rate = f"{n['documents_per_s']} docs/s" if n.get("documents_per_s") else f"{n.get('pending', 0)} pending"
        parts.append(f"neighbour {n['created']}/{n['documents']} created, {rate}")
    return "; ".join(parts)


# ----- the report in Markdown
def _num(value: Any, fmt: str = "") -> str:
    return "—" if value is None else format(value, fmt)


def markdown(c: dict[str, Any]) -> list[str]:
    """Scenario C's lines of latest.md: its settings, the table, then the details and the targets."""
    s, alone, cases = c["settings"], c["alone"], c["cases"]
    lines = [
        f"Scenario C, tenant isolation: sandbox latency {s['latency_ms']} ms; intake prefork x {s['intake_processes']}"
        f"{f' at nice {n}' if (n := s['intake_nice']) else ''}, sends in {s['send_threads']} threads; the victim "
        f"`{s['victim']}` (SoftOne) submits {s['victim_jobs']} one-invoice jobs, one every {s['interval_s']:g} s "
        f"({'raw Redis producer' if s['victim_producer'] == 'raw' else 'submit()'}), {s['delay_s']:g} s after its "
        f"neighbour's load starts; latency submit → job final; the small tenants of (d) "
        f"{'have a SoftOne account each' if s['tenant_keys'] == 'distinct' else 'share one SoftOne account'}"
        f"{''.join(f', {k}={v}' for k, v in s.get('set', {}).items())} (scenario C took {c.get('seconds', 0):g} s).",
        "",
        "| neighbour | victim p50 s | victim p95 s | p95 vs alone | neighbour docs/s | vs alone |",
        "|---|---|---|---|---|---|",
        f"| none (alone) | {alone['victim']['p50']} | {alone['victim']['p95']} | 1.0 | | |",
    ]
    for name, case in cases.items():
        v, n = case["victim"], case["neighbour"]
        rate = _num(n.get("documents_per_s")) if n.get("finished") else "— (never finishes)"
        vs = _num(n.get("vs_alone")) + (
            f" (of {n['alone_of']}'s alone)" if n.get("alone_of") not in (None, name) else ""
        )
        lines.append(
            f"| ({name}) {case['neighbour_is']} | {v['p50']} | {v['p95']} | {_num(case['victim_p95_vs_alone'])} "
            f"| {rate} | {vs if 'vs_alone' in n else ''} |"
        )
    lines += ["", *details(alone, cases), targets_line(c)]
    return lines


def details(alone: dict[str, Any], cases: dict[str, Any]) -> list[str]:
    out = [
        "- Neighbours alone: "
        + "; ".join(
            f"({k}) {alone[k]['documents']:,} invoices in {alone[k].get('seconds')} s"
            f" = {_num(alone[k].get('documents_per_s'))} docs/s"
            for k in ("a", "b")
            if k in alone
        )
    ]
    for name, case in cases.items():
        n = case["neighbour"]
        if "fortnox" in n:
            f = n["fortnox"]
            out.append(
                f"- ({name}) Fortnox: {f['invoices']} invoices drained in {_num(f.get('drain_s'))} s = "
                f"{_num(f.get('achieved_per_s'))}/s against {f['allowed_per_s']:g}/s allowed "
                f"(the window allows {_num(f.get('fastest_drain_s'))} s at the fastest: "
                f"{_num(f.get('vs_limit'))} of the limit); {f['rate_limited_429']} answered 429, at most "
                f"{f['max_in_window']} in a window"
            )
        if not n.get("finished"):
            out.append(
                f"- ({name}) {n['documents']:,} invoices queued: {n['created']} created, {n['failed']} failed, "
                f"{n.get('pending', 0)} pending when the victim's stream was done"
            )
        spread = n.get("per_tenant")
        if spread:
            out.append(
                f"- ({name}) p95 per tenant over {spread['tenants']} tenants: median {spread['median_p95_s']} s, "
                f"max {spread['max_p95_s']} s ({spread['max_tenant']}) = {_num(spread['max_vs_median'])} x the "
                "median"
            )
    requests = [f"alone {alone['http_requests']}", *(f"({k}) {c['http_requests']}" for k, c in cases.items())]
    out.append("- ERP requests of each run, the victim's included (logins left out): " + ", ".join(requests))
    during = [f"({k}) {c['victim'].get('submitted_during_load', '—')}/{c['victim']['jobs']}" for k, c in cases.items()]
    out.append("- Victim jobs submitted before the neighbour's last invoice was done: " + ", ".join(during))
    failed = {k: c["victim"]["failed"] + c["victim"]["unfinished"] for k, c in cases.items()}
    if any(failed.values()) or alone["victim"]["failed"] + alone["victim"]["unfinished"]:
        out.append(f"- Victim jobs failed or never finished: {failed}")
    return out


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else "met" if ok else "NOT met"


def targets_line(c: dict[str, Any]) -> str:
    t, met = c["targets"], c["targets"]["met"]
    names = {
        "victim_p95_vs_alone": f"victim p95 ≤ {t['victim_p95_vs_alone_max']:g} x alone",
        "victim_p95_s": f"victim p95 ≤ {t['victim_p95_s_max']:g} s",
        "bulk_vs_alone": f"bulk neighbour ≥ {t['bulk_vs_alone_min']:g} x its throughput alone",
        "tenant_p95_max_vs_median": f"no tenant's p95 > {t['tenant_p95_max_vs_median_max']:g} x the median",
    }
    parts = []
    for key, title in names.items():
        verdicts = [f"{case} {verdict(checks[key])}" for case, checks in met.items() if key in checks]
        parts.append(f"{title}: {', '.join(verdicts)}")
    return "- Targets (issue 23): " + "; ".join(parts)


# ----- entry points (bench/run.py's main)
def run(sizes: Sizes, options: dict[str, Any]) -> dict[str, Any]:
    """Scenario C in this process (a fresh one: the producer's Celery app and caches are bound to its stack)."""
    print(
        f"bench C: victim {sizes.victim_jobs} one-invoice jobs every {sizes.interval_s:g} s; neighbours: "
        + "; ".join(f"({k}) {load.title}" for k, load in loads(sizes).items())
        + f"; sandbox latency {options['latency_ms']} ms",
        flush=True,
    )
    return Isolation(sizes, options).run()


def run_in_child(argv: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Scenario C as `python -m bench --scenario C` in a process of its own (after A and B, whose stack this
    process's Celery app and caches are bound to); returns its report's `isolation` section."""
    out = Path(tempfile.mkdtemp(prefix="erpsync-bench-c-out-"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", "--scenario", "C", "--out", str(out), *argv], cwd=ROOT, env=env
    )
    try:
        code = proc.wait()
    finally:
        if proc.poll() is None:  # interrupted: let it stop its own stack
            proc.terminate()
            proc.wait(120)
    if code != 0:
        raise RuntimeError(f"scenario C failed (exit code {code})")
    section: dict[str, Any] = json.loads((out / "latest.json").read_text())["isolation"]
    shutil.rmtree(out, ignore_errors=True)
    return section
