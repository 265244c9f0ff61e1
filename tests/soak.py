"""Soak test: minutes of mixed load through random ERP faults, worker kills and ERP outages, then the audit.

    python -m tests.soak --minutes 30 [--seed N]        (or `make soak`, SOAK_MINUTES=... to change)

A private stack of real processes (tests/faults.py: its own Redis with AOF, the sandbox behind a gate that can
refuse connections, `celery worker` processes) runs under three threads of trouble for `--minutes`:

- load: many small jobs (1-25 documents) and now and then a big file (1,000-3,000), SoftOne invoices and orders,
  about 2 % of documents invalid for our schema, and some jobs submitted again verbatim (duplicates that must
  not be created twice); a backlog cap keeps the run from outgrowing the machine;
- the ERP: the sandbox's random faults at modest rates (429, 503, slow answers, connections dropped after
  the commit, 500 after the commit, tokens expired) and, now and then, the ERP refusing connections for
  5-45 s;
- workers: SIGKILLs of a random worker at random times, SIGTERMs (warm shutdown), and workers started with a
  random failpoint (worker/failpoints.py) that kills them at an exact line; each dead worker is replaced;
- Redis, rarely: restarted (SHUTDOWN, or SIGKILL of redis-server) and back from its AOF after 0.5-3 s. It
  runs with `appendfsync always`, as production should (docs/guarantees.md).

Then the trouble stops, the run settles (a fresh worker recovers what the dead ones held, the messages they
held are redelivered as after the visibility timeout) and every document of every job is audited against the
sandbox's ledger (tests/faults.Audit). The report goes to bench/results/soak-latest.json and .md; the exit code
is non-zero if any document is in the ledger twice, is lost (pending, or `created` without being in the
ledger) or the audit finds any other problem.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.faults import FAST_SETTINGS, Audit, FaultStack, invoice
from worker.devstack.stack import ROOT
from worker.failpoints import FAILPOINTS
from worker.store.records import JOB_FINAL

RESULTS = ROOT / "bench" / "results"


def harden_redis(faults: FaultStack) -> None:
    """`appendfsync always` (the harness's redis-server starts with everysec); again after every restart."""
    faults.redis().config_set("appendfsync", "always")


#: The fault harness's short leases and timeouts (a killed worker's batch is taken over in seconds), with
#: production-sized batches and intake chunks.
SOAK_SETTINGS = {**FAST_SETTINGS, "ERPSYNC_BATCH_MAX_DOCS": "50", "ERPSYNC_INTAKE_CHUNK_DOCS": "1000"}

#: Random sandbox faults per ERP request: modest, about 8 % of requests in all.
RANDOM_FAULTS = {"429": 0.02, "503": 0.02, "slow": 0.015, "drop_after_commit": 0.01, "500_after_commit": 0.01,
                 "token_expiry": 0.005}  # fmt: skip

WORKERS = 3  # live workers kept running (each with 2 pool processes)
MAX_BACKLOG_DOCS = 8000  # documents submitted and not final; the load waits above it


@dataclass
class Tally:
    """What was done to the system (the audit says what became of it)."""

    documents: int = 0
    jobs: int = 0
    invalid: int = 0  # documents our schema rejects (they must fail with their field)
    resubmitted_jobs: int = 0  # jobs submitted again verbatim
    resubmitted_documents: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)  # documents per kind
    big_jobs: int = 0
    submit_errors: int = 0
    kills: int = 0  # SIGKILL of a worker by the soak
    failpoint_kills: int = 0  # workers that died at their failpoint
    sigterms: int = 0
    sigterm_escalated: int = 0  # SIGTERM not obeyed in time: killed
    erp_outages: int = 0
    erp_down_seconds: float = 0.0
    redis_restarts: int = 0
    redis_crashes: int = 0  # of which SIGKILL
    worker_starts: int = 0


class Soak:
    def __init__(self, minutes: float, seed: int, workdir: Path) -> None:
        self.minutes, self.seed = minutes, seed
        self.faults = FaultStack(workdir, settings=SOAK_SETTINGS, concurrency=2)
        self.tally = Tally()
        self.job_ids: list[str] = []
        self.jobs_by_kind: dict[str, list[list[dict[str, Any]]]] = {"customer_invoice": [], "order": []}
        self.open_jobs: dict[str, int] = {}  # job id -> documents, while not final
        self.live: list[subprocess.Popen[bytes]] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.redis_lock = threading.Lock()  # no submission while Redis restarts: its job ids would be lost to us
        self.customers = itertools.count(1_000_000)
        self.errors: list[str] = []
        self.events: list[dict[str, Any]] = []
        self.started = time.monotonic()

    # ----- helpers
    def note(self, what: str, **details: Any) -> None:
        at = round(time.monotonic() - self.started, 1)
        with self.lock:
            self.events.append({"t": at, "event": what, **details})
        print(f"[{at:7.1f}s] {what} {details if details else ''}", flush=True)

    def start_worker(self, failpoints: str | None = None) -> None:
        proc = self.faults.start_worker(failpoints=failpoints)
        self.tally.worker_starts += 1
        self.live.append(proc)

    # ----- load
    def make_job(self, rng: random.Random, size: int, tag: str) -> list[dict[str, Any]]:
        docs = []
        for i in range(size):
            doc = invoice(f"{tag}-{i:04d}", next(self.customers), rows=rng.randint(1, 4))
            if rng.random() < 0.02:
                doc["InvoiceRows"][0]["Quantity"] = "två"  # invalid for our schema: fails alone, with its field
                self.tally.invalid += 1
            docs.append(doc)
        return docs

    def backlog(self) -> int:
        store = self.faults.store()
        ids = list(self.open_jobs)
        pipe = store.r.pipeline(transaction=False)
        for job_id in ids:
            pipe.hget(store.keys.job(job_id), "status")
        for job_id, status in zip(ids, pipe.execute(), strict=True):
            if status in JOB_FINAL:
                del self.open_jobs[job_id]
        return sum(self.open_jobs.values())

    def load(self, rng: random.Random, deadline: float) -> None:
        n = 0
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                with self.redis_lock:
                    backlog = self.backlog()
                if backlog > MAX_BACKLOG_DOCS:
                    self.stop.wait(1.0)
                    continue
            except Exception as exc:  # the soak reports it and goes on
                self.errors.append(f"backlog check: {exc!r}")
                self.stop.wait(1.0)
                continue
            kind = "order" if rng.random() < 0.2 else "customer_invoice"
            jobs: list[list[dict[str, Any]]] = []
            if rng.random() < 0.06:
                jobs.append(self.make_job(rng, rng.randint(1000, 3000), f"soak-{self.seed}-{n}-big"))
                self.tally.big_jobs += 1
            for j in range(rng.randint(3, 25)):
                jobs.append(self.make_job(rng, rng.choice([1, 1, 2, 3, 5, 8, 12, 20, 25]), f"soak-{self.seed}-{n}-{j}"))
            earlier = self.jobs_by_kind[kind]
            again = rng.sample(earlier, min(len(earlier), rng.randint(1, 3))) if rng.random() < 0.15 else []
            try:
                with self.redis_lock:
                    ids = self.faults.submit(jobs + again, kind=kind)
            except Exception as exc:  # reported with the figures
                self.tally.submit_errors += 1
                self.errors.append(f"submit: {exc!r}"[:500])
                continue
            n += 1
            for job_id, docs in zip(ids, jobs + again, strict=True):
                self.job_ids.append(job_id)
                self.open_jobs[job_id] = len(docs)
                self.tally.documents += len(docs)
                self.tally.by_kind[kind] += len(docs)
            self.tally.jobs += len(ids)
            self.tally.resubmitted_jobs += len(again)
            self.tally.resubmitted_documents += sum(len(j) for j in again)
            earlier.extend(j for j in jobs if len(j) <= 25)
            self.stop.wait(rng.uniform(0.3, 2.0))

    # ----- trouble
    def replace_dead(self) -> None:
        for proc in list(self.live):
            if proc.poll() is not None:
                self.live.remove(proc)
                self.tally.failpoint_kills += 1
                self.note("worker died at its failpoint", pid=proc.pid, code=proc.returncode)
        while len(self.live) < WORKERS:
            self.start_worker()

    def chaos(self, rng: random.Random, deadline: float) -> None:
        while not self.stop.is_set() and time.monotonic() < deadline:
            if self.stop.wait(rng.uniform(8, 30)):
                return
            try:
                self.replace_dead()
                self.one_fault(rng)
                self.replace_dead()
            except Exception as exc:  # reported; the run goes on
                self.errors.append(f"chaos: {exc!r}"[:500])
                self.note("chaos step failed", error=repr(exc)[:200])

    def one_fault(self, rng: random.Random) -> None:
        action = rng.choices(["kill", "sigterm", "failpoint", "erp_down", "redis"], weights=[4, 2, 2, 2, 1])[0]
        if action == "redis":
            crash, down = rng.random() < 0.5, rng.uniform(0.5, 3)
            self.note("Redis restart", crash=crash, seconds=round(down, 1))
            with self.redis_lock:
                self.faults.restart_redis(crash=crash, down_for=down)
                harden_redis(self.faults)
            self.tally.redis_restarts += 1
            self.tally.redis_crashes += crash
            return
        if action == "erp_down":
            seconds = rng.uniform(5, 45)
            self.note("ERP down", seconds=round(seconds, 1))
            self.faults.erp_down()
            try:
                self.stop.wait(seconds)
            finally:
                self.faults.erp_up()
            self.tally.erp_outages += 1
            self.tally.erp_down_seconds += seconds
            return
        victim = rng.choice(self.live)
        self.live.remove(victim)
        if action == "sigterm":
            self.note("SIGTERM", pid=victim.pid)
            self.tally.sigterms += 1
            try:
                self.faults.terminate_worker(victim, timeout=90)
            except AssertionError:
                self.tally.sigterm_escalated += 1
                self.note("SIGTERM not obeyed in 90 s: killed", pid=victim.pid)
            self.start_worker()
            return
        self.note("SIGKILL", pid=victim.pid)
        self.faults.kill_worker(victim)
        self.tally.kills += 1
        if action == "failpoint":
            point = rng.choice(sorted(FAILPOINTS))
            nth = rng.randint(1, 30)
            spec = f"{point}=kill-after=0.3s@{nth}" if point == "post.sending" else f"{point}=kill@{nth}"
            self.note("worker with a failpoint", failpoints=spec)
            self.start_worker(failpoints=spec)
        else:
            self.start_worker()

    # ----- the run
    def run(self) -> dict[str, Any]:
        faults = self.faults
        faults.start()
        harden_redis(faults)
        with faults.sandbox() as erp:
            erp.post("/_sandbox/latency", json={"ms": 30, "jitter_ms": 30})
            erp.post("/_sandbox/faults", json={"probabilities": RANDOM_FAULTS, "seed": self.seed, "retry_after": 1,
                                               "slow_ms": 2000})  # fmt: skip
        self.replace_dead()
        self.started = time.monotonic()
        deadline = self.started + self.minutes * 60
        rng = random.Random(self.seed)
        threads = [
            threading.Thread(target=self.load, args=(random.Random(rng.random()), deadline), name="load"),
            threading.Thread(target=self.chaos, args=(random.Random(rng.random()), deadline), name="chaos"),
        ]
        for t in threads:
            t.start()
        next_note = time.monotonic() + 60
        try:
            while any(t.is_alive() for t in threads):
                time.sleep(1)
                if time.monotonic() >= next_note:
                    next_note += 60
                    self.note("progress", jobs=self.tally.jobs, documents=self.tally.documents,
                              backlog=sum(self.open_jobs.values()))  # fmt: skip
        finally:
            self.stop.set()
            for t in threads:
                t.join()
        loaded = time.monotonic() - self.started
        return self.settle(loaded)

    def settle(self, loaded: float) -> dict[str, Any]:
        """Stop the trouble, let one fresh worker recover everything, wait for every job, audit."""
        faults = self.faults
        self.note("settling")
        faults.erp_up()
        with faults.sandbox() as erp:
            erp.delete("/_sandbox/faults")
            erp.post("/_sandbox/latency", json={"ms": 0, "jitter_ms": 0})
        for proc in list(self.live):  # a worker with a pending failpoint must not fire it while settling
            faults.kill_worker(proc)
            self.live.remove(proc)
        faults.expire_unacked()  # what every dead worker held comes back now, not after the visibility timeout
        for _ in range(WORKERS):
            self.start_worker()
        settle_started = time.monotonic()
        unfinished = self.wait_final(timeout=900)
        with contextlib.suppress(TimeoutError):
            faults.wait_idle(timeout=120, quiet=2)
        settled_in = time.monotonic() - settle_started
        self.note("auditing", jobs=len(self.job_ids), unfinished=len(unfinished))
        report = faults.audit(self.job_ids)
        with faults.sandbox() as erp:
            stats = erp.get("/_sandbox/stats").json()
        return self.figures(report, stats, loaded, settled_in, unfinished)

    def wait_final(self, timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.backlog() == 0:
                return []
            time.sleep(2)
        return list(self.open_jobs)

    def figures(
        self, report: Audit, stats: dict[str, Any], loaded: float, settled_in: float, unfinished: list[str]
    ) -> dict[str, Any]:
        records = self.faults.records(self.job_ids)
        statuses = Counter(r["status"] for r in records)
        # A document that failed in one job (its retries ran out) and was created by a later re-submission of the
        # same ExternalId is in the ledger once, with the Key the later job holds: as it should be.
        later = [
            p for p in report.problems if ": failed, but the ledger has it (" in p and p.split(":")[0] in report.created
        ]
        report.problems = [p for p in report.problems if p not in later]
        missing = [p for p in report.problems if "but not in the ledger" in p]
        lost = len(report.pending) + len(missing)
        failed_why = Counter(_reason(why) for why in report.failed.values())
        unknown_why = Counter(_reason(why) for why in report.unknown.values())
        tally = asdict(self.tally)
        tally["by_kind"] = dict(self.tally.by_kind)
        tally["erp_down_seconds"] = round(self.tally.erp_down_seconds, 1)
        requests = {route: sum(by_status.values()) for route, by_status in stats["requests"].items()}
        ok = not report.duplicates and lost == 0 and not report.problems and not unfinished
        return {
            "ok": ok,
            "seed": self.seed,
            "minutes": round(loaded / 60, 2),
            "settle_seconds": round(settled_in, 1),
            **tally,
            "faults_injected": stats["faults"],
            "faults_injected_total": sum(stats["faults"].values()),
            "erp_requests": requests,
            "ledger_documents": stats.get("documents_created"),
            "audit": {
                "documents": report.documents,
                "created": len(report.created),
                "duplicate_of_earlier_job": statuses.get("duplicate", 0),
                "failed": len(report.failed),
                "unknown": len(report.unknown),
                "pending": len(report.pending),
                "duplicates_in_ledger": len(report.duplicates),
                "lost": lost,
                "problems": len(report.problems),
                "failed_then_created_by_a_resubmission": len(later),
            },
            "failed_reasons": dict(failed_why.most_common(12)),
            "unknown_reasons": dict(unknown_why.most_common(12)),
            "problems": report.problems[:50],
            "duplicates": dict(list(report.duplicates.items())[:50]),
            "unfinished_jobs": unfinished[:50],
            "errors": self.errors[:50],
            "events": self.events,
        }


def _reason(text: str) -> str:
    """A failure reason without the parts that vary per document (ids, numbers), to count them by kind."""
    cut = text.split(";")[0].split(":")[0] if "InvoiceRows" not in text else text.split(":")[0]
    return "".join("#" if c.isdigit() else c for c in cut)[:100]


def markdown(fig: dict[str, Any]) -> str:
    audit = fig["audit"]
    faults = ", ".join(f"{k} {v}" for k, v in fig["faults_injected"].items())
    lines = [
        f"# Soak run ({'PASSED' if fig['ok'] else 'FAILED'})",
        "",
        f"`python -m tests.soak --minutes {fig['minutes']:g} --seed {fig['seed']}`: {fig['minutes']:g} minutes of "
        f"load and faults, then {fig['settle_seconds']:g} s to settle.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| documents pushed | {fig['documents']:,} ({', '.join(f'{k} {v:,}' for k, v in fig['by_kind'].items())}) |",
        f"| jobs | {fig['jobs']:,} ({fig['big_jobs']} big files of 1,000-3,000) |",
        f"| invalid documents (schema) | {fig['invalid']:,} |",
        f"| jobs submitted again (duplicates) | {fig['resubmitted_jobs']:,} ({fig['resubmitted_documents']:,} docs) |",
        f"| random ERP faults injected | {fig['faults_injected_total']:,}: {faults} |",
        f"| worker SIGKILLs | {fig['kills']} (+ {fig['failpoint_kills']} died at a random failpoint) |",
        f"| worker SIGTERMs | {fig['sigterms']} ({fig['sigterm_escalated']} had to be killed) |",
        f"| ERP outages (connection refused) | {fig['erp_outages']} ({fig['erp_down_seconds']:g} s in all) |",
        f"| Redis restarts | {fig['redis_restarts']} ({fig['redis_crashes']} by SIGKILL) |",
        f"| created (incl. duplicates settled with the earlier job's Key) | {audit['created']:,} "
        f"({audit['duplicate_of_earlier_job']:,} duplicates) |",
        f"| failed (with a reason) | {audit['failed']:,} |",
        f"| unknown outcomes (dead letters) | {audit['unknown']:,} |",
        f"| **duplicates in the ledger** | **{audit['duplicates_in_ledger']}** |",
        f"| **lost** (pending, or created but not in the ledger) | **{audit['lost']}** |",
        f"| failed in one job, created by a later re-submission | {audit['failed_then_created_by_a_resubmission']} |",
        f"| other audit problems | {audit['problems']} |",
        "",
        "Failed, by reason: " + "; ".join(f"{n}: {why}" for why, n in fig["failed_reasons"].items()),
        "",
        "Unknown, by reason: " + ("; ".join(f"{n}: {why}" for why, n in fig["unknown_reasons"].items()) or "none"),
        "",
    ]
    if fig["problems"] or fig["unfinished_jobs"] or fig["errors"]:
        lines += ["## Problems", "", *[f"- {p}" for p in fig["problems"] + fig["errors"]],
                  *[f"- unfinished job {j}" for j in fig["unfinished_jobs"]], ""]  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS / "soak-latest", help="report path without suffix")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, Redis AOF)")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1_000_000)
    workdir = Path(tempfile.mkdtemp(prefix="erpsync-soak-"))
    print(f"soak: {args.minutes:g} minutes, seed {seed}, work directory {workdir}", flush=True)
    soak = Soak(args.minutes, seed, workdir)
    # SIGTERM (a CI timeout) stops the stack too: the finally below runs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        fig = soak.run()
    finally:
        soak.stop.set()
        soak.faults.stop()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(fig, indent=2, ensure_ascii=False) + "\n")
    args.out.with_suffix(".md").write_text(markdown(fig))
    print(markdown(fig))
    print(f"report: {args.out}.json, {args.out}.md")
    if fig["ok"] and not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"logs kept in {workdir}")
    return 0 if fig["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
