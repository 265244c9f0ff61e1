"""The archive's cost (issue 25): scenario A with the archive off and on PostgreSQL, each against direct, in one run.

Issue 25's target: with the archive on (PostgreSQL), scenario A's ratio to direct drops by at most 5 % against the
archive off, and the archive's lag is back at 0 within 5 s of the job's last Key.

One stack (Redis, embedded unless ERPSYNC_REDIS_URL; the sandbox; bench/run.py's split workers and settings) for
both variants: they differ only in ERPSYNC_ARCHIVE_URL, `off` or a fresh PostgreSQL database created for the run on
`--pg-admin`'s server, migrated with `erpsync archive migrate` and dropped at the end. Each round runs the two around
one direct run (off, direct, on; the next round on, direct, off): each variant's ratio is to its round's direct run.
Before each of its runs, a variant's workers are started afresh with its setting (with the archive on, the
archiver `erpsync archive run` too, and this process, the producer, submits with it) and warmed up, and the
warm-up's entries are archived before the clock starts; after the run, workers and archiver are stopped.

For every run, a thread of this process polls the length of the outbox stream `{prefix}:archive` (XLEN) every
0.1 s (in both variants, alike); with the archive on, the run is followed until the stream is empty again:
`lag_to_zero_s` is from the job's last Key (its records' latest `updated_at`) to the first empty sample after the
last non-empty one; the archiver's own `committed_at` of its last commit gives the same from its side. CPU seconds
of each part (the workers, Redis, the archiver, and every `postgres` process of this machine) are taken over the
run and up to the lag's 0; Redis's INFO commandstats, before and after, gives what its commands cost (XADD from
the store's scripts among them). The archive is then checked to hold exactly one `created` outcome row per
document created (erpsync_outcomes of the job) and the job's summary.

Skipped with a note when no PostgreSQL answers at `--pg-admin` (under CI=true that is a failure). Runs in the
process of `python -m bench` when it is the only scenario, else in a process of its own (`run_in_child`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bench.run import Bench, cpu_probe_ms, cpu_seconds, invoices
from worker.devstack.stack import ROOT, stop, wait_until
from worker.redaction import redact_url
from worker.settings import get_settings
from worker.store.client import get_redis
from worker.store.keys import Keys
from worker.store.results import ResultsStore

DROP_MAX = 0.05  # issue 25: A's ratio to direct drops by at most 5 %
LAG_TO_ZERO_MAX_S = 5.0  # ... and the lag is back at 0 within 5 s of the last Key
VARIANTS = ("off", "on")
POLL_S = 0.1
#: The outbox stream's commands: XADD by the store's scripts, the rest by the archiver (reported whatever they cost).
STREAM_COMMANDS = ("xadd", "xreadgroup", "xack", "xdel", "xlen", "xrange")


def psycopg_url(url: str) -> str:
    """`postgresql://` means psycopg 3, as in the product (worker/archive/database.py)."""
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+psycopg://" + url[len(plain) :]
    return url


def pg_problem(admin_url: str) -> str | None:
    """Why the PostgreSQL server of `admin_url` cannot be used, or None when it answers."""
    engine = create_engine(admin_url, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return None
    except Exception as exc:  # any reason at all: the comparison is skipped with it
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    finally:
        engine.dispose()


def postgres_cpu() -> float:
    """CPU seconds so far of every `postgres` process on this machine (the server, its backends, its writers):
    the archive's database shares the 2 cores with everything else here."""
    total = 0.0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            name = Path(entry.path, "comm").read_text().strip()
        except OSError:
            continue
        if name == "postgres":
            total += cpu_seconds(int(entry.name), children=False)
    return total


def command_times(client: redis.Redis) -> dict[str, tuple[int, int]]:
    """Redis's INFO commandstats: command → (calls, microseconds) so far (commands of scripts counted too)."""
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"])) for name, v in stats.items()}


class StreamWatch:
    """XLEN of the outbox stream every `POLL_S` s, from a thread of its own: (time, length) samples."""

    def __init__(self, client: redis.Redis, key: str) -> None:
        self.client, self.key = client, key
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-xlen", daemon=True)

    def start(self) -> StreamWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            at = time.time()
            self.samples.append((at, int(self.client.xlen(self.key))))
            self._stop.wait(max(0.0, at + POLL_S - time.time()))

    def wait_empty(self, after: float, timeout: float, archiver: subprocess.Popen[bytes] | None) -> None:
        """Until a sample taken after `after` finds the stream empty (nothing is appended once the job is final);
        an archiver that exits meanwhile is an error at once."""
        wait_until(
            lambda: any(at >= after and n == 0 for at, n in list(self.samples)), timeout, "archive lag 0", archiver
        )

    def emptied_at(self) -> float | None:
        """The time of the first empty sample after the last non-empty one (None if never empty)."""
        samples = list(self.samples)
        last_full = max((i for i, (_, n) in enumerate(samples) if n), default=-1)
        rest = samples[last_full + 1 :]
        return rest[0][0] if rest else None

    def length_at(self, at: float) -> int | None:
        """The stream's length at the first sample from `at` on."""
        return next((n for t, n in self.samples if t >= at), None)


class ArchiveBench(Bench):
    """Bench's systems and stack, with the erpsync workers started per run with the archive off or on."""

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args)
        # The stack's own setting is `off` (whatever --archive says for A, B and C): the variant's is given to
        # each of its processes.
        self.stack.extra_env = {**self.stack.extra_env, "ERPSYNC_ARCHIVE_URL": "off"}
        self.database = f"erpsync_bench_{uuid.uuid4().hex[:10]}"
        self.url = make_url(args.pg_admin).set(database=self.database).render_as_string(hide_password=False)
        self.server_version = ""
        self.archiver: subprocess.Popen[bytes] | None = None
        self.watch_client: redis.Redis | None = None
        self.orders: list[list[str]] = []

    def _cpu(self) -> dict[str, float]:
        return {**super()._cpu(), "postgres": postgres_cpu()}

    # ----- the database
    def create_database(self) -> None:
        admin = create_engine(self.args.pg_admin, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as connection:
                connection.execute(text(f"CREATE DATABASE {self.database}"))
                self.server_version = str(connection.execute(text("SHOW server_version")).scalar())
        finally:
            admin.dispose()

    def drop_database(self) -> None:
        admin = create_engine(self.args.pg_admin, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as connection:
                connection.execute(text(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)"))
        finally:
            admin.dispose()

    # ----- the run
    def compare(self) -> dict[str, Any]:
        started = time.time()
        self.cpu_probe_ms.append(cpu_probe_ms())
        jobs = [invoices(self.args.a_docs, 10, f"R{uuid.uuid4().hex[:6]}")]
        self.create_database()
        ok = False
        try:
            self.stack.start_redis()
            self.stack.start_sandbox()
            self.stack.use_in_this_process()
            self.sandbox = httpx.Client(base_url=self.stack.sandbox_url, timeout=60)
            url = self.stack.env["ERPSYNC_REDIS_URL"].replace("redis+socket://", "unix://")
            self.watch_client = redis.Redis.from_url(url)
            done = self.stack.erpsync("archive", "migrate", env={"ERPSYNC_ARCHIVE_URL": self.url})
            if done.returncode != 0:
                raise RuntimeError(f"erpsync archive migrate failed: {done.stderr.strip()[-2000:]}")
            for n in range(1, self.args.rounds + 1):
                self._round = n
                order = ["off", "direct", "on"] if n % 2 else ["on", "direct", "off"]
                self.orders.append(order)
                for turn in order:
                    if turn == "direct":
                        self.run_direct("A", self.fresh(jobs, f"direct{n}"))
                    else:
                        self.erpsync_turn(turn, jobs)
            ok = True
        finally:
            self.stop_variant([])
            self.stack.stop()
            self.drop_database()
            if ok and not os.environ.get("ERPSYNC_KEEP_LOGS"):
                shutil.rmtree(self.stack.workdir, ignore_errors=True)
        self.cpu_probe_ms.append(cpu_probe_ms())
        return self.summary(time.time() - started)

    def erpsync_turn(self, variant: str, jobs: list[list[dict[str, Any]]]) -> None:
        """One measured erpsync run with the archive `variant`: its processes started, warmed up, measured, stopped."""
        url = self.url if variant == "on" else "off"
        env = {"ERPSYNC_ARCHIVE_URL": url}
        os.environ["ERPSYNC_ARCHIVE_URL"] = url  # this process, the producer, too
        get_settings.cache_clear()
        procs = self._workers("worker", env=env)
        self.worker_pids = [p.pid for p in procs]
        try:
            if variant == "on":
                self.archiver = self.stack.start_archiver(env=env)
            self._warm_up("erpsync", procs)
            client, key = self.watch_client, Keys(self.stack.env["ERPSYNC_KEY_PREFIX"]).archive
            assert client is not None
            wait_until(lambda: client.xlen(key) == 0, 300, "the warm-up archived")
            fresh = self.fresh(jobs, f"{variant}{self._round}")
            commands, cpu = command_times(client), self._cpu()
            watch = StreamWatch(client, key).start()
            try:
                out = self.run_erpsync("A", fresh, 1, system=f"archive {variant}")
                if variant == "on":
                    watch.wait_empty(out["seen_finished"], 600, self.archiver)
            finally:
                watch.stop()
            self.after_run(variant, out, watch, commands, cpu)
        finally:
            self.stop_variant(procs)

    def after_run(
        self,
        variant: str,
        out: dict[str, Any],
        watch: StreamWatch,
        commands: dict[str, tuple[int, int]],
        cpu: dict[str, float],
    ) -> None:
        """The run's row gets what the archive cost, up to its lag's 0 (or, archive off, up to the job's end)."""
        assert self.watch_client is not None
        row = self.results[-1]
        now = self._cpu()
        after = command_times(self.watch_client)
        spent = {k: (after[k][0] - commands.get(k, (0, 0))[0], after[k][1] - commands.get(k, (0, 0))[1]) for k in after}
        top = sorted((item for item in spent.items() if item[1][1] > 0), key=lambda item: -item[1][1])
        shown = [item for n, item in enumerate(top) if n < 8 or item[0] in STREAM_COMMANDS]
        row["redis_commands"] = {name: {"calls": calls, "ms": round(us / 1000, 1)} for name, (calls, us) in shown}
        row["redis_commands_ms"] = round(sum(us for _, us in spent.values()) / 1000, 1)
        row["cpu_to_end_s"] = {k: round(v - cpu.get(k, 0.0), 2) for k, v in now.items()}
        row["peak_lag_entries"] = max((n for _, n in watch.samples), default=0)
        if variant != "on":
            return
        last_key = out["last_key"]
        emptied = watch.emptied_at()
        state = self.watch_client.hget(Keys(self.stack.env["ERPSYNC_KEY_PREFIX"]).archive_state, "committed_at")
        row["lag_at_last_key_entries"] = watch.length_at(last_key)
        row["lag_at_seen_finished_entries"] = watch.length_at(out["seen_finished"])
        row["lag_to_zero_s"] = round(max(0.0, emptied - last_key), 2) if emptied is not None else None
        row["last_commit_after_last_key_s"] = round(float(state) - last_key, 2) if state else None
        row["outcomes"] = self.outcome_rows(out["ids"][0], row["documents"])
        print(
            f"    archive lag: {row['peak_lag_entries']} entries at most, {row['lag_at_last_key_entries']} at the last "
            f"Key, 0 after {row['lag_to_zero_s']} s; archiver {row['cpu_to_end_s'].get('archiver')} CPU s, "
            f"postgres {row['cpu_to_end_s']['postgres']} CPU s; outcome rows {row['outcomes']}",
            flush=True,
        )

    def outcome_rows(self, job_id: str, documents: int) -> dict[str, Any]:
        """The archive's rows of the job: `created` outcomes (and distinct positions among them) against the
        documents created, and its summary."""
        store = ResultsStore(get_redis(get_settings()), get_settings())
        job = store.job(job_id) or {}
        engine = create_engine(self.url)
        try:
            with engine.connect() as connection:
                created, positions = connection.execute(
                    text("SELECT count(*), count(DISTINCT position) FROM erpsync_outcomes "
                         "WHERE job_id = :job AND status = 'created'"), {"job": job_id},
                ).one()  # fmt: skip
                summary = connection.execute(
                    text("SELECT status FROM erpsync_jobs WHERE job_id = :job"), {"job": job_id}
                ).scalar()
        finally:
            engine.dispose()
        n_created = int(job.get("n_created", 0))
        return {
            "documents": documents,
            "created": n_created,
            "rows_created": int(created),
            "distinct_positions": int(positions),
            "job_summary": summary,
            "match": int(created) == int(positions) == n_created == documents,
        }

    def stop_variant(self, procs: list[subprocess.Popen[bytes]]) -> None:
        self._stop(procs)
        if self.archiver is not None:
            stop(self.archiver)
            self.archiver = None

    # ----- the section
    def summary(self, seconds: float) -> dict[str, Any]:
        runs = {(r["round"], r["system"]): r for r in self.results}
        rounds = range(1, self.args.rounds + 1)
        ratios = {
            v: [runs[(n, f"archive {v}")]["documents_per_s"] / runs[(n, "direct")]["documents_per_s"] for n in rounds]
            for v in VARIANTS
        }
        medians = {v: statistics.median(ratios[v]) for v in VARIANTS}
        drop = (medians["off"] - medians["on"]) / medians["off"]
        drops = [(off - on) / off for off, on in zip(ratios["off"], ratios["on"], strict=True)]
        on_runs = [runs[(n, "archive on")] for n in rounds]
        lags = [r.get("lag_to_zero_s") for r in on_runs]
        met = {
            "drop": drop <= DROP_MAX,
            "lag_to_zero": all(lag is not None and lag <= LAG_TO_ZERO_MAX_S for lag in lags),
            "outcome_rows": all(r["outcomes"]["match"] for r in on_runs),
        }
        return {
            "documents": self.args.a_docs,
            "rows_per_document": 10,
            "rounds": self.args.rounds,
            "orders": self.orders,
            "database": {
                "server": redact_url(self.args.pg_admin.rsplit("/", 1)[0]),
                "version": self.server_version,
                "name": self.database,
            },
            "settings": {
                "latency_ms": self.args.latency_ms,
                "pool": self.args.pool,
                "concurrency": self.args.concurrency,
                "send_threads": self.args.send_threads,
                "intake_nice": self.args.intake_nice,
                "quick": self.args.quick,
                "set": dict(self.args.setting),
            },
            "runs": self.results,
            "vs_direct": {v: round(medians[v], 3) for v in VARIANTS},
            "vs_direct_rounds": {v: [round(x, 3) for x in ratios[v]] for v in VARIANTS},
            "drop": round(drop, 4),
            "drop_rounds": [round(x, 4) for x in drops],
            "lag_to_zero_s": lags,
            "last_commit_after_last_key_s": [r.get("last_commit_after_last_key_s") for r in on_runs],
            "archiver_cpu_s": [r["cpu_to_end_s"].get("archiver") for r in on_runs],
            "postgres_cpu_s": [r["cpu_to_end_s"].get("postgres") for r in on_runs],
            "outcome_rows": [r["outcomes"] for r in on_runs],
            "targets": {"drop_max": DROP_MAX, "lag_to_zero_max_s": LAG_TO_ZERO_MAX_S, "met": met},
            "cpu_probe_ms": self.cpu_probe_ms,
            "seconds": round(seconds, 1),
        }


# ----- entry points (bench/run.py's run_scenarios)
def run(args: argparse.Namespace) -> dict[str, Any]:
    """The comparison in this process (a fresh one: the producer's Celery app and caches are bound to its stack);
    the report's `archive` section, or {"skipped": why} when no PostgreSQL answers."""
    args.pg_admin = psycopg_url(args.pg_admin)
    problem = pg_problem(args.pg_admin)
    if problem is not None:
        note = f"no PostgreSQL answers at {redact_url(args.pg_admin)} ({problem})"
        if os.environ.get("CI") == "true":
            raise RuntimeError(f"the archive comparison: CI=true and {note}")
        print(f"bench archive: skipped: {note}", flush=True)
        return {"skipped": note}
    print(
        f"bench archive: A {args.a_docs} invoices x 10 rows with the archive off and on PostgreSQL, each against "
        f"direct; {args.rounds} round(s); latency {args.latency_ms} ms",
        flush=True,
    )
    return ArchiveBench(args).compare()


def child_argv(args: argparse.Namespace) -> list[str]:
    """The options of this run that the comparison takes, for its own process (`run_in_child`)."""
    argv = ["--latency-ms", str(args.latency_ms), "--pool", args.pool, "--concurrency", str(args.concurrency)]
    argv += ["--send-threads", str(args.send_threads), "--intake-nice", str(args.intake_nice)]
    argv += ["--rounds", str(args.rounds), "--pg-admin", args.pg_admin]
    argv += ["--quick"] if args.quick else []
    argv += ["--scale", str(args.scale)] if args.scale is not None else []
    return argv + [part for name, value in args.setting for part in ("--set", f"{name}={value}")]


def run_in_child(argv: list[str], env: dict[str, str]) -> dict[str, Any]:
    """The comparison as `python -m bench --scenario archive` in a process of its own; its `archive` section."""
    out = Path(tempfile.mkdtemp(prefix="erpsync-bench-archive-out-"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", "--scenario", "archive", "--out", str(out), *argv], cwd=ROOT, env=env
    )
    try:
        code = proc.wait()
    finally:
        if proc.poll() is None:  # interrupted: let it stop its own stack and drop its database
            proc.terminate()
            proc.wait(120)
    if code != 0:
        raise RuntimeError(f"the archive comparison failed (exit code {code})")
    section: dict[str, Any] = json.loads((out / "latest.json").read_text())["archive"]
    shutil.rmtree(out, ignore_errors=True)
    return section


# ----- latest.md
def _pct(x: float) -> str:
    return f"{x * 100:.1f} %"


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def markdown(a: dict[str, Any]) -> list[str]:
    """The comparison's lines of latest.md."""
    if "skipped" in a:
        return [f"Archive (issue 25): skipped: {a['skipped']}."]
    db, t, met = a["database"], a["targets"], a["targets"]["met"]
    orders = "; ".join(", ".join(o) for o in a["orders"][:2]) + ("; ..." if a["rounds"] > 2 else "")
    lines = [
        f"Archive (issue 25): scenario A, {a['documents']:,} invoices x {a['rows_per_document']} rows, with the "
        f"archive off and on PostgreSQL {db['version']} (a fresh database on {db['server']}, the archiver running), "
        f"each against its round's direct run; {a['rounds']} round(s) in the order {orders}; every erpsync run on "
        f"workers started afresh and warmed up (the comparison took {a['seconds']:g} s).",
        "",
        "| round | system | docs/s | vs direct | p95 s | CPU s: worker | redis | archiver | postgres | peak lag "
        "| lag at last Key | lag 0 after s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    direct = {r["round"]: r["documents_per_s"] for r in a["runs"] if r["system"] == "direct"}
    for r in a["runs"]:
        cpu = r.get("cpu_to_end_s") or r.get("cpu_s", {})
        cells = [
            r["round"], r["system"], f"{r['documents_per_s']:.0f}",
            f"{r['documents_per_s'] / direct[r['round']]:.3f}" if r["system"] != "direct" else "",
            r["latency_s"]["p95"], *(cpu.get(k, "") for k in ("worker", "redis", "archiver", "postgres")),
            *(r.get(k, "") for k in ("peak_lag_entries", "lag_at_last_key_entries", "lag_to_zero_s")),
        ]  # fmt: skip
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    rounds = a["vs_direct_rounds"]
    rows = [
        f"{o['rows_created']:,} = {o['created']:,}"
        if o["match"]
        else f"{o['rows_created']:,} rows ({o['distinct_positions']:,} positions) for {o['created']:,} created "
        f"of {o['documents']:,}"
        for o in a["outcome_rows"]
    ]
    lines += [
        "",
        "CPU seconds of the erpsync runs are up to the lag's 0 (archive on) or the job's end (off); `postgres` is "
        "every postgres process of the machine.",
        "",
        f"- Ratio to direct: archive off {a['vs_direct']['off']} (rounds {rounds['off']}), on {a['vs_direct']['on']} "
        f"(rounds {rounds['on']}); drop (off - on) / off {_pct(a['drop'])} (per round "
        f"{', '.join(_pct(x) for x in a['drop_rounds'])}): target ≤ {_pct(t['drop_max'])} {_verdict(met['drop'])}",
        f"- Lag back at 0 after the job's last Key: {', '.join(f'{x} s' for x in a['lag_to_zero_s'])} (the archiver's "
        f"last commit {', '.join(f'{x} s' for x in a['last_commit_after_last_key_s'])} after it): target ≤ "
        f"{t['lag_to_zero_max_s']:g} s {_verdict(met['lag_to_zero'])}",
        f"- CPU seconds to the lag's 0: archiver {a['archiver_cpu_s']}, PostgreSQL {a['postgres_cpu_s']}",
        f"- Outcome rows in the archive (`created`, of the job) against documents created: {', '.join(rows)}; job "
        f"summaries {[o['job_summary'] for o in a['outcome_rows']]}: {_verdict(met['outcome_rows'])}",
    ]
    runs = {(r["round"], r["system"]): r for r in a["runs"]}
    for n in range(1, a["rounds"] + 1):
        off, on = (runs[(n, f"archive {v}")] for v in VARIANTS)
        cmd_off, cmd_on = off.get("redis_commands", {}), on.get("redis_commands", {})
        names = dict.fromkeys([*list(cmd_on)[:5], *list(cmd_off)[:5], *(c for c in STREAM_COMMANDS if c in cmd_on)])
        parts = [f"all commands {off.get('redis_commands_ms')} → {on.get('redis_commands_ms')} ms"] + [
            f"{name} {cmd_off.get(name, {}).get('ms', 0):g} → {cmd_on.get(name, {}).get('ms', 0):g} ms "
            f"({cmd_off.get(name, {}).get('calls', 0):,} → {cmd_on.get(name, {}).get('calls', 0):,} calls)"
            for name in names
        ]
        lines.append(f"- Round {n}, Redis command time, archive off → on: " + "; ".join(parts))
    return lines
