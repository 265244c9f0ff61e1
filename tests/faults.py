"""Fault harness: a private stack of real processes that tests (and the benchmark) can break on purpose.

`FaultStack` owns everything it runs, so a scenario may kill or restart any of it without disturbing other
tests: its own redis-server (embedded, unix socket, AOF on), the sandbox ERP behind an `ErpGate`, and
`celery worker` processes. What it can do:

- workers: `start_worker(failpoints="post.answered=kill")` (worker/failpoints.py: crash at an exact line),
  `wait_killed(proc)`, `kill_worker(proc)` (SIGKILL of the whole process group), `terminate_worker(proc)`
  (SIGTERM: Celery's warm shutdown), `expire_unacked()` (the broker's visibility timeout passes for every
  message a dead worker held, so the next worker to start restores them: a late redelivery, on demand);
- the ERP: `erp_down()` / `erp_up()` — the gate refuses connections and cuts the open ones while the sandbox
  keeps its ledger (an outage of the network or the ERP's front); `pause_sandbox()` / `resume_sandbox()` —
  SIGSTOP: connections are accepted and never answered (a hung ERP); `stop_sandbox()` / `start_sandbox()` —
  the process itself on the same port; a restarted sandbox has forgotten what it held (its ledger is kept
  here for the audit, its Keys continue above the old ones), so use it only where that is the point;
- Redis: `restart_redis(crash=False, down_for=0)` — on the same socket with its AOF (crash: SIGKILL, so the
  last second of writes may be lost, as with `appendfsync everysec`);
- `submit(...)`, `wait_jobs(...)`, `wait_idle()`, and `audit(job_ids)`: the one check every scenario ends with.

A scenario is then a few lines: start a worker with a failpoint, submit, wait for it to die, start another,
wait, `faults.audit(job_ids).assert_clean()`.
"""

from __future__ import annotations

import contextlib
import json
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis

from worker.devstack.stack import ROOT, EmbeddedRedis, LocalStack, free_port, stop
from worker.settings import Settings
from worker.store.records import DUPLICATE, FAILED, JOB_FINAL, PENDING, UNKNOWN
from worker.store.results import ResultsStore

#: Settings for scenario stacks: short leases and timeouts so that a dead worker's batch is taken over in
#: seconds (a live sender renews its lease every third of it); the backoff cap must stay <= visibility/4.
FAST_SETTINGS = {
    "ERPSYNC_SEND_LEASE_SECONDS": "6",
    "ERPSYNC_HTTP_CONNECT_TIMEOUT": "1",
    "ERPSYNC_HTTP_WRITE_TIMEOUT": "1",
    "ERPSYNC_HTTP_READ_TIMEOUT": "5",
    "ERPSYNC_HTTP_POOL_TIMEOUT": "5",
    "ERPSYNC_RATE_LIMIT_WAIT_SECONDS": "1",
    "ERPSYNC_VISIBILITY_TIMEOUT": "60",
    "ERPSYNC_RETRY_BACKOFF_BASE": "0.2",
    "ERPSYNC_RETRY_BACKOFF_CAP": "2",
    "ERPSYNC_RECONCILE_DELAY_SECONDS": "0.5",
    "ERPSYNC_BATCH_MAX_DOCS": "10",
    "ERPSYNC_INTAKE_CHUNK_DOCS": "10",
}


def poll(predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.2) -> Any:
    """Call `predicate` until it returns something true (returned), or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not after {timeout:.0f}s")
        time.sleep(every)


# ----- the ERP gate


class ErpGate:
    """A TCP forwarder in front of the sandbox that can be closed: connection refused, open connections cut.

    The ERP behind it keeps its state, as a real one does while the network to it is down."""

    def __init__(self, upstream: Callable[[], int], port: int | None = None) -> None:
        self.upstream = upstream  # the sandbox's port, asked on every connection (it may be restarted)
        self.port = port or free_port()
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()

    @property
    def is_open(self) -> bool:
        return self._listener is not None

    def open(self) -> None:
        if self._listener is not None:
            return
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(256)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), name="erp-gate", daemon=True).start()

    def close(self) -> None:
        """Refuse new connections and reset the open ones (a request in flight loses its answer)."""
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            conns, self._conns = self._conns, set()
        for conn in conns:
            with contextlib.suppress(OSError):
                # linger 0: close with RST, as a dropped route or a dying front end would
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                conn.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed
            try:
                server = socket.create_connection(("127.0.0.1", self.upstream()), timeout=5)
            except OSError:
                client.close()  # the sandbox itself is down: the caller sees its connection dropped
                continue
            server.settimeout(None)
            with self._lock:
                self._conns |= {client, server}
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        selector = selectors.DefaultSelector()
        selector.register(a, selectors.EVENT_READ, b)
        selector.register(b, selectors.EVENT_READ, a)
        try:
            while True:
                for key, _ in selector.select():
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    key.data.sendall(data)
        except (OSError, ValueError):
            return  # reset, or closed by close()
        finally:
            selector.close()
            with self._lock:
                self._conns -= {a, b}
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.close()


# ----- the audit


@dataclass
class Audit:
    """Every document of the audited jobs against the sandbox ledger.

    - created: `created` (or `duplicate` of an earlier job) and in the ledger exactly once with the Key we hold;
    - failed: `failed` with a reason, and not in the ledger; unknown: `unknown` with a reason and a dead letter
      (the ERP may or may not hold it: that is what unknown means);
    - problems: anything else — pending documents, documents in the ledger twice, Keys that differ, created
      documents the ERP does not have, failed ones it does, outcomes without a reason."""

    documents: int = 0
    created: dict[str, int | str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    unknown: dict[str, str] = field(default_factory=dict)
    pending: list[str] = field(default_factory=list)
    duplicates: dict[str, int] = field(default_factory=dict)  # ExternalId -> times in the ledger (> 1)
    problems: list[str] = field(default_factory=list)

    def assert_clean(self, *, unknown: bool = False) -> None:
        """No problem, nothing pending, no duplicate; and no unknown document unless `unknown` allows it."""
        issues = list(self.problems)
        issues += [f"{x}: pending" for x in self.pending]
        issues += [f"{x}: {n} times in the ledger" for x, n in self.duplicates.items()]
        if not unknown:
            issues += [f"{x}: unknown ({why})" for x, why in self.unknown.items()]
        assert not issues, f"audit of {self.documents} documents:\n" + "\n".join(issues[:40])

    def summary(self) -> dict[str, int]:
        return {"documents": self.documents, "created": len(self.created), "failed": len(self.failed),
                "unknown": len(self.unknown), "pending": len(self.pending), "duplicates": len(self.duplicates),
                "problems": len(self.problems)}  # fmt: skip


def audit_records(
    records: Sequence[Mapping[str, Any]], ledger: Iterable[Mapping[str, Any]], dead: Mapping[str, Mapping[str, Any]]
) -> Audit:
    """The audit over plain data: records (external_id, status, key, error), ledger entries (external_id, key),
    dead letters by ExternalId. Separate from the stack so that its rules can be tested on their own."""
    ours = {str(r["external_id"]) for r in records}
    keys: dict[str, list[Any]] = {}  # ExternalId -> the Keys the ledger has it with, once per time it is there
    for d in ledger:
        if str(d["external_id"]) in ours:
            keys.setdefault(str(d["external_id"]), []).append(d["key"])
    report = Audit(documents=len(records), duplicates={x: len(k) for x, k in keys.items() if len(k) > 1})
    for r in records:
        _audit_record(report, r, keys.get(str(r["external_id"]), []), dead)
    return report


def _audit_record(report: Audit, r: Mapping[str, Any], in_ledger: list[Any], dead: Mapping[str, Any]) -> None:
    """Add one record to the report; `in_ledger`: the Keys the ledger has its ExternalId with."""
    x, status, error = str(r["external_id"]), r["status"], r.get("error")
    if status == PENDING:
        report.pending.append(x)
    elif status in ("created", DUPLICATE):
        _audit_created(report, x, status, r.get("key"), in_ledger)
    elif status == FAILED:
        _audit_failed(report, x, error, in_ledger)
    elif status == UNKNOWN:
        _audit_unknown(report, x, error, dead)
    else:
        report.problems.append(f"{x}: status {status!r}")


def _audit_created(report: Audit, x: str, status: str, key: Any, in_ledger: list[Any]) -> None:
    """Created (or a duplicate of an earlier job's): in the ledger, with the Key we hold."""
    if not in_ledger:
        report.problems.append(f"{x}: {status} with Key {key!r}, but not in the ledger")
    elif key not in in_ledger:
        report.problems.append(f"{x}: {status} with Key {key!r}, the ledger has {in_ledger}")
    else:
        report.created[x] = key


def _audit_failed(report: Audit, x: str, error: str | None, in_ledger: list[Any]) -> None:
    """Failed: with a reason, and not in the ledger."""
    if not error:
        report.problems.append(f"{x}: failed without a reason")
    if in_ledger:
        report.problems.append(f"{x}: failed, but the ledger has it ({in_ledger})")
    report.failed[x] = error or ""


def _audit_unknown(report: Audit, x: str, error: str | None, dead: Mapping[str, Any]) -> None:
    """Unknown: with a reason, and a dead letter for an operator to settle it (the ERP may or may not hold it)."""
    if not error:
        report.problems.append(f"{x}: unknown without a reason")
    if x not in dead:
        report.problems.append(f"{x}: unknown, but no dead letter")
    report.unknown[x] = error or ""


# ----- the stack


@dataclass
class FaultStack:
    """A private Redis (AOF), sandbox (behind an ErpGate) and workers; see the module docstring."""

    workdir: Path
    settings: Mapping[str, str] = field(default_factory=lambda: dict(FAST_SETTINGS))
    concurrency: int = 2
    pool: str = "prefork"
    latency_ms: int = 0
    stack: LocalStack = field(init=False)
    gate: ErpGate = field(init=False)
    redis_server: EmbeddedRedis = field(init=False)
    _old_ledgers: list[dict[str, Any]] = field(default_factory=list)
    _names: Counter[str] = field(default_factory=Counter)
    _logs: dict[int, Path] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.redis_server = EmbeddedRedis(self.workdir / "redis")
        self.gate = ErpGate(lambda: self.stack.sandbox_port)
        gate_url = f"http://127.0.0.1:{self.gate.port}"
        env = {f"ERPSYNC_{t}_BASE_URL": gate_url for t in ("SOFTONE", "FORTNOX", "INVOICE_SERVICE")}
        self.stack = LocalStack(
            workdir=self.workdir,
            concurrency=self.concurrency,
            pool=self.pool,
            latency_ms=self.latency_ms,
            extra_env={**env, **self.settings},
        )

    # ----- life cycle
    def start(self) -> FaultStack:
        self.redis_server.start()
        self.stack.redis_url = self.redis_server.url
        self.stack.embedded = self.redis_server  # stopped with the stack
        self.stack.start_sandbox()
        self.gate.open()
        return self

    def stop(self) -> None:
        self.gate.close()
        with contextlib.suppress(ProcessLookupError, OSError):
            if self.stack.sandbox is not None:
                self.stack.sandbox.send_signal(signal.SIGCONT)  # a paused sandbox cannot stop
        self.stack.stop()

    @property
    def env(self) -> dict[str, str]:
        return self.stack.env

    @property
    def prefix(self) -> str:
        return self.env.get("ERPSYNC_KEY_PREFIX", "erpsync")

    @property
    def queues(self) -> list[str]:
        base = self.env.get("ERPSYNC_QUEUE", "erpsync")
        return [base, self.env.get("ERPSYNC_SEND_QUEUE") or f"{base}.send"]

    def redis(self) -> redis.Redis:
        return redis.Redis(unix_socket_path=str(self.redis_server.socket_path), decode_responses=True)

    def store(self) -> ResultsStore:
        # model_construct: the stack's prefix, without reading this process's environment (another stack's).
        return ResultsStore(self.redis(), Settings.model_construct(key_prefix=self.prefix))

    # ----- workers
    def start_worker(
        self,
        name: str | None = None,
        *,
        failpoints: str | None = None,
        concurrency: int | None = None,
        pool: str | None = None,
        queues: str = "both",
        env: Mapping[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """A worker (ready when returned: recovery has run); `failpoints` as ERPSYNC_FAILPOINTS."""
        base = name or "w"
        self._names[base] += 1
        unique = f"{base}{self._names[base]}"  # a log file of its own (LocalStack waits for "ready" in it)
        extra = {**(env or {}), **({"ERPSYNC_FAILPOINTS": failpoints} if failpoints else {})}
        proc = self.stack.start_worker(unique, concurrency, extra, pool=pool, queues=queues)
        self._logs[proc.pid] = self.workdir / f"worker-{unique}.log"
        return proc

    def worker_log(self, proc: subprocess.Popen[bytes]) -> str:
        """What a worker started here has logged."""
        return self._logs[proc.pid].read_text(errors="replace")

    def wait_killed(self, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
        """Wait for a worker to die of its failpoint (SIGKILL)."""
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"worker {proc.pid} still alive after {timeout}s: its failpoint was not reached\n"
                                 f"{self.stack.logs()[-3000:]}") from None  # fmt: skip
        assert code == -signal.SIGKILL, f"worker {proc.pid} exited with {code}, not killed"

    def kill_worker(self, proc: subprocess.Popen[bytes]) -> None:
        self.stack.kill_worker(proc)

    def terminate_worker(self, proc: subprocess.Popen[bytes], timeout: float = 60) -> int:
        """SIGTERM to the worker's main process (what a process manager sends): Celery's warm shutdown lets the
        tasks running finish. Returns the exit code; SIGKILLs the group if it does not stop in `timeout`."""
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill_worker(proc)
            raise AssertionError(f"worker {proc.pid} did not stop within {timeout}s of SIGTERM") from None

    def stop_workers(self) -> None:
        for proc in self.stack.workers:
            if proc.poll() is None:
                self.terminate_worker(proc)

    def unacked(self) -> set[str]:
        """Delivery tags of the messages delivered to a worker and not acknowledged (kombu's Redis transport keeps
        them in `unacked` until they are acked, or restored after the visibility timeout)."""
        return set(self.redis().hkeys("unacked"))

    def expire_unacked(self) -> int:
        """Make every unacknowledged message look older than the visibility timeout; the next worker to start
        restores them to their queues (kombu does so when it starts polling). Returns how many."""
        client = self.redis()
        tags = client.zrange("unacked_index", 0, -1)
        if tags:
            client.zadd("unacked_index", dict.fromkeys(tags, 0))
        return len(tags)

    def wait_idle(self, timeout: float = 60, quiet: float = 1.0) -> None:
        """Wait until no message is queued or unacknowledged for `quiet` seconds (every task has run)."""
        client = self.redis()

        def busy() -> int:
            return int(client.hlen("unacked")) + sum(int(client.llen(q)) for q in self.queues)

        quiet_since: list[float] = []

        def idle() -> bool:
            if busy():
                quiet_since.clear()
                return False
            quiet_since.append(time.monotonic())
            return quiet_since[-1] - quiet_since[0] >= quiet

        poll(idle, timeout, "queues idle")

    # ----- ERP
    def sandbox(self) -> httpx.Client:
        """A client on the sandbox's operator endpoints (straight to it, not through the gate)."""
        return httpx.Client(base_url=self.stack.sandbox_url, timeout=30)

    def make_whole(self, client: httpx.Client) -> None:
        """After a test: the ERP reachable, clean, without faults or latency, and every worker of the test
        stopped gracefully (the next test starts with nothing held)."""
        self.erp_up()
        for proc in self.stack.workers:
            if proc.poll() is None:
                self.terminate_worker(proc)
        client.delete("/_sandbox/faults")
        client.post("/_sandbox/latency", json={"ms": 0, "jitter_ms": 0})

    def erp_down(self) -> None:
        self.gate.close()

    def erp_up(self) -> None:
        self.gate.open()

    def pause_sandbox(self) -> None:
        assert self.stack.sandbox is not None
        self.stack.sandbox.send_signal(signal.SIGSTOP)

    def resume_sandbox(self) -> None:
        assert self.stack.sandbox is not None
        self.stack.sandbox.send_signal(signal.SIGCONT)

    def stop_sandbox(self) -> None:
        """Stop the sandbox process; its ledger is kept here for `ledger()` and the audit."""
        self._old_ledgers += self._current_ledger()
        stop(self.stack.sandbox)

    def start_sandbox(self) -> None:
        """Start the sandbox again on its port; its Keys continue above every Key the old one gave."""
        keys = [d["key"] for d in self._old_ledgers if isinstance(d.get("key"), int)]
        config = self.workdir / "sandbox-restart.json"
        config.write_text(json.dumps({"first_key": max(keys, default=0) + 1_000_000}))
        self.stack.sandbox_config = config
        self.stack.start_sandbox(port=self.stack.sandbox_port)

    def _current_ledger(self) -> list[dict[str, Any]]:
        if self.stack.sandbox is None or self.stack.sandbox.poll() is not None:
            return []  # stopped: what it held is in _old_ledgers
        with self.sandbox() as client:
            return list(client.get("/_sandbox/ledger").json()["documents"])

    def ledger(self) -> list[dict[str, Any]]:
        """Every document the ERP created, over every sandbox process of this stack."""
        return self._old_ledgers + self._current_ledger()

    # ----- Redis
    def restart_redis(self, *, crash: bool = False, down_for: float = 0.0) -> None:
        """Stop Redis (SHUTDOWN, or SIGKILL when `crash`), wait `down_for` seconds, start it on the same socket
        with its AOF. Workers reconnect on their own."""
        server = self.redis_server
        if crash and server.proc is not None:
            server.proc.kill()
            server.proc.wait(10)
        else:
            server.stop()
        time.sleep(down_for)
        server.start()

    # ----- jobs
    def submit(
        self, jobs: Sequence[Sequence[Mapping[str, Any]]], *, kind: str = "customer_invoice", tenant: str = "demo"
    ) -> list[str]:
        """Submit each list of documents as a job, through the Python producer in a process of the stack's
        environment (this process may be another stack's producer). Returns the job ids."""
        request = json.dumps({"jobs": [list(j) for j in jobs], "kind": kind, "tenant": tenant})
        done = subprocess.run(
            [sys.executable, "-c", "from tests.faults import _submit_main; _submit_main()"],
            input=request,
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"submit failed ({done.returncode}): {done.stderr[-2000:]}")
        return list(json.loads(done.stdout.strip().splitlines()[-1]))

    def wait_jobs(self, job_ids: Sequence[str], timeout: float = 60) -> None:
        store = self.store()

        def finished() -> bool:
            return all((store.job(j) or {}).get("status") in JOB_FINAL for j in job_ids)

        try:
            poll(finished, timeout, "jobs finished")
        except TimeoutError:
            states = {j: (store.job(j) or {}).get("status") for j in job_ids}
            raise AssertionError(f"jobs not finished after {timeout}s: {states}\n{self.stack.logs()[-4000:]}") from None

    def records(self, job_ids: Sequence[str]) -> list[dict[str, Any]]:
        store = self.store()
        return [
            {"job_id": j, "external_id": r.external_id, "status": r.status, "key": r.key, "error": r.error,
             "batch_id": r.batch_id}
            for j in job_ids
            for r in store.records(j)
        ]  # fmt: skip

    def batches(self, job_ids: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
        """Batch id -> its hash (without the body) and `log` (its attempts), of the given jobs or all."""
        client, store = self.redis(), self.store()
        wanted = set(job_ids) if job_ids is not None else None
        out: dict[str, dict[str, Any]] = {}
        for key in client.scan_iter(f"{self.prefix}:batch:*", count=1000):
            batch_id = key.removeprefix(f"{self.prefix}:batch:")
            if batch_id.endswith(":log"):
                continue
            data = store.batch(batch_id)
            if not data:
                continue
            if wanted is not None and not {m[0] for m in json.loads(data["members"])} & wanted:
                continue
            data.pop("body", None)
            out[batch_id] = {**data, "log": store.attempts(batch_id)}
        return out

    def audit(self, job_ids: Sequence[str]) -> Audit:
        """The audit every scenario ends with (see Audit) over these jobs."""
        records = self.records(job_ids)
        dead = {str(d["external_id"]): d for d in self.store().dead_letters() if d.get("job_id") in set(job_ids)}
        return audit_records(records, self.ledger(), dead)


def _submit_main() -> None:
    """`submit()`'s other end: read {"jobs", "kind", "tenant"} from stdin, print the job ids as JSON."""
    # Imported here, in the stack's environment: the producer imports the Celery app, which reads the settings.
    from worker.producer.submit import submit

    request = json.load(sys.stdin)
    ids = [submit(docs, kind=request["kind"], tenant=request["tenant"], source="faults") for docs in request["jobs"]]
    print(json.dumps(ids))


def invoice(external_id: str, customer: int, *, rows: int = 2, date: str = "2026-11-20") -> dict[str, Any]:
    """A valid POS invoice whose content is unique per `customer` (reconciliation matches on content)."""
    return {
        "ExternalId": external_id,
        "CustomerNr": str(customer),
        "InvoiceDate": date,
        "OriginType": 2,
        "InvoiceRows": [
            {"CustomerRowType": 2, "RowNr": r + 1, "ProductNr": f"73100{r:03d}", "Text": "Kanelbulle",
             "Quantity": r + 1, "UnitPrice": 24.5, "VatRate": 12}
            for r in range(rows)
        ],
    }  # fmt: skip
