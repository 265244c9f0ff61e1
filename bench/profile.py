"""`python -m bench.profile`: CPU per stage of scenario A's hot path, in this process, with cProfile on request.

Each stage runs alone and in order, against a real Redis (embedded unless ERPSYNC_REDIS_URL) and the sandbox
(no latency): submit (encode and store the job), intake (validate, claim, batch), flush (what the buffer
still holds) and send (POST, record the Keys; Celery's eager `apply`, so without the worker's own overhead).
The figures are CPU seconds of this process (time.process_time), so the waits on Redis and the sandbox are
not in them, then the CPU the stage cost the Redis server (its INFO) and the sandbox process. `--stage intake`
adds cProfile's top functions for that stage and its Redis commands; `--repeat N` runs it all N times and
prints the median per stage, to compare two versions of the code on a noisy machine. It is how the hot path
was profiled for issue 4 (docs/benchmarks.md); `make bench` measures the whole system.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from bench.run import cpu_seconds, invoices
from worker.devstack.stack import LocalStack

STAGES = ("submit", "intake", "flush", "send")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=4000, help="invoices of 10 rows (default 4,000)")
    parser.add_argument(
        "--stage", choices=STAGES, help="also print cProfile's top functions of this stage, and its Redis commands"
    )
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument(
        "--sort", choices=["tottime", "cumulative"], default="tottime", help="order of --stage's functions"
    )
    parser.add_argument("--repeat", type=int, default=1, help="run N times; print the median µs per stage")
    args = parser.parse_args(argv)
    prefix = f"erpsync-profile-{uuid.uuid4().hex[:6]}"
    stack = LocalStack(
        workdir=Path(tempfile.mkdtemp(prefix="erpsync-profile-")), redis_url=os.environ.get("ERPSYNC_REDIS_URL"),
        # The archive off: the hot path as before it (a LocalStack's default, an SQLite archive, wants its epoch
        # written by a worker's start, and its stream drained by an archiver: neither runs here).
        latency_ms=0, extra_env={"ERPSYNC_QUEUE": prefix, "ERPSYNC_KEY_PREFIX": prefix, "ERPSYNC_ARCHIVE_URL": "off"},
    )  # fmt: skip
    stack.start_redis()
    stack.start_sandbox()
    stack.use_in_this_process()
    try:
        runs = [run(args, stack.sandbox.pid if stack.sandbox else None) for _ in range(args.repeat)]
        if args.repeat > 1:
            print(f"median of {args.repeat} runs, µs per document (this process / Redis / sandbox):")
            for name in STAGES:
                mid = [statistics.median(r[name][i] for r in runs) for i in range(3)]
                print(f"{name:7s} {mid[0]:6.1f} / {mid[1]:6.1f} / {mid[2]:6.1f}")
    finally:
        stack.stop()
    return 0


def run(args: argparse.Namespace, sandbox_pid: int | None) -> dict[str, tuple[float, float, float]]:
    """One pass over the stages: µs per document of each, (this process, Redis, sandbox)."""
    # Imported once main() has made this process the stack's producer: the Celery app reads the settings when
    # imported.
    from worker.celery_app.enqueue import publish
    from worker.pipeline import runtime
    from worker.pipeline import send as send_step
    from worker.pipeline.batch import flush
    from worker.pipeline.intake import process_items
    from worker.producer.submit import submit
    from worker.settings import get_settings

    n = args.docs
    docs = invoices(n, 10, f"P{uuid.uuid4().hex[:6]}")
    store, intake = runtime.store(), runtime.intake()

    flush_id = f"profile-{uuid.uuid4().hex[:8]}"  # what a flush's batch ids derive from (its task's id)

    def drain() -> None:
        while taken := intake.take("profile"):
            process_items(publish, [(i.job_id, i.start, i.end) for i in taken])
            intake.done("profile")

    def send() -> None:
        for batch_id in sorted(store.open_batch_ids()):
            send_step.send(publish, batch_id)  # the send step itself, outside the dispatcher (no slot, no ticket)

    job: dict[str, Any] = {}
    steps: dict[str, Callable[[], Any]] = {
        "submit": lambda: job.setdefault("id", submit(docs, kind="customer_invoice", tenant="demo")),
        "intake": drain,
        "flush": lambda: flush(publish, flush_id, "demo", "customer_invoice"),
        "send": send,
    }
    out: dict[str, tuple[float, float, float]] = {}
    for name in STAGES:
        if name == "flush":  # the buffer's rest is flushed once old enough (ERPSYNC_BATCH_MAX_WAIT_MS); not timed
            time.sleep(get_settings().batch_max_wait_ms / 1000 + 0.05)
        profile = name == args.stage
        out[name] = measure(name, steps[name], n, store.r, sandbox_pid, profile=profile, sort=args.sort, top=args.top)
    final = store.job(job["id"]) or {}
    print(f"job {job['id']}: {final.get('status')}, {final.get('n_created')} of {n} created")
    return out


def measure(
    name: str,
    step: Callable[[], Any],
    n: int,
    client: redis.Redis,
    sandbox_pid: int | None,
    *,
    profile: bool = False,
    sort: str = "tottime",
    top: int = 30,
) -> tuple[float, float, float]:
    """Run one stage and print its CPU; returns µs per document of (this process, Redis, sandbox). With `profile`,
    also print cProfile's `top` functions of the stage (by `sort`) and its Redis commands."""
    profiler = cProfile.Profile() if profile else None
    # The stage's Redis commands are what it adds to the server's counters: read, not reset, since
    # ERPSYNC_REDIS_URL may name a Redis that others watch.
    commands_before = client.info("commandstats") if profiler else {}
    cpu, wall, rcpu, scpu = time.process_time(), time.perf_counter(), redis_cpu(client), cpu_seconds(sandbox_pid)
    if profiler:
        profiler.enable()
    step()
    if profiler:
        profiler.disable()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    rcpu, scpu = redis_cpu(client) - rcpu, cpu_seconds(sandbox_pid) - scpu
    print(
        f"{name:7s} CPU {cpu:6.2f} s = {1e6 * cpu / n:5.0f} us per document, Redis {1e6 * rcpu / n:4.0f} us, "
        f"sandbox {1e6 * scpu / n:4.0f} us   (wall {wall:5.2f} s)",
        flush=True,
    )
    if profiler:
        print_profile(profiler, sort, top)
        print_stage_commands(client, commands_before)
    return (1e6 * cpu / n, 1e6 * rcpu / n, 1e6 * scpu / n)


def redis_cpu(client: redis.Redis) -> float:
    """CPU seconds the Redis server has used (its INFO)."""
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def print_profile(profiler: cProfile.Profile, sort: str, top: int) -> None:
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats(sort).print_stats(top)
    print(text.getvalue())


def print_stage_commands(client: redis.Redis, before: dict[str, Any]) -> None:
    """The 15 costliest Redis commands of a stage: what it added to the server's commandstats."""
    print("Redis commands of this stage (a command in a script or MULTI counts in both):")
    stage_commands = []
    for command, stat in client.info("commandstats").items():
        was = before.get(command, {"calls": 0, "usec": 0})
        calls, usec = stat["calls"] - was["calls"], stat["usec"] - was["usec"]
        if calls:
            stage_commands.append((usec, calls, command))
    for usec, calls, command in sorted(stage_commands, reverse=True)[:15]:
        print(f"  {command:28s} {calls:7d} calls {usec / 1000:8.1f} ms {usec / calls:8.1f} us/call")


if __name__ == "__main__":
    raise SystemExit(main())
