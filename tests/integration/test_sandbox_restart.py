"""The crash drill of issue 26 under honcho: the sandbox SIGKILLed mid-run, honcho stopping every process, honcho
started again - and the audit clean, because the sandbox kept its ledger and its Keys in its state file.

The Procfile is the repository's own (its worker, sender and sandbox lines, as written), run by the venv's honcho
with the venv's bin first on PATH, pointed at the session's Redis under a prefix of its own, the sandbox on a free
port with its state file in the test's directory. Without ``--state`` the restarted sandbox would have an empty
ledger and hand out the same Keys again (the second test shows it on the sandbox alone): reconciliation would not
find the invoices created before the kill, and they would be created twice.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.faults import audit_records, invoice
from worker.devstack.stack import ROOT, free_port
from worker.settings import Settings
from worker.store.records import JOB_FINAL
from worker.store.results import ResultsStore

pytestmark = pytest.mark.integration

VENV_BIN = Path(sys.executable).parent
PROCESSES = ("worker", "sender", "sandbox")
INVOICES = "/Economy/Billing/CustomerInvoices"
DOCUMENTS = 400


def procfile_lines(names: tuple[str, ...] = PROCESSES) -> list[str]:
    """The repository Procfile's lines of these processes, as written."""
    lines = (ROOT / "Procfile").read_text().splitlines()
    found = [line for line in lines if line.split(":", 1)[0] in names]
    assert [line.split(":", 1)[0] for line in found] == list(names), found
    return found


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _cmdline(pid: int) -> list[str]:
    try:
        return [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
    except OSError:
        return []


@dataclass
class Honcho:
    """`honcho start` of a Procfile made for the test, its output in a log file of its own per run."""

    workdir: Path
    env: dict[str, str]
    runs: int = 0
    proc: subprocess.Popen[bytes] | None = None
    logs: list[Path] = field(default_factory=list)

    @property
    def sandbox_url(self) -> str:
        return f"http://127.0.0.1:{self.env['ERPSYNC_SANDBOX_PORT']}"

    def start(self) -> None:
        procfile, env_file = self.workdir / "Procfile", self.workdir / "empty.env"
        procfile.write_text("\n".join(procfile_lines()) + "\n")
        env_file.write_text("")  # not the checkout's .env, if there is one
        self.runs += 1
        log_path = self.workdir / f"honcho-{self.runs}.log"
        self.logs.append(log_path)
        log = open(log_path, "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "honcho"), "start", "-f", str(procfile), "-e", str(env_file), "--no-colour"],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.wait(self._ready, 90, "honcho: sandbox healthy, both workers ready")

    def _ready(self) -> bool:
        text = self.logs[-1].read_text(errors="replace")
        if text.count(" ready.") < 2:  # Celery's "intake@host ready." and "sender@host ready."
            return False
        try:
            return httpx.get(f"{self.sandbox_url}/_sandbox/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def wait(self, predicate: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not after {timeout:.0f} s\n{self.output()[-6000:]}")
            time.sleep(0.1)

    def output(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.logs)

    def sandbox_pid(self) -> int:
        """The sandbox's Python process under this honcho (not the shell honcho runs it with)."""
        assert self.proc is not None
        tree, found, todo = _children(), [], [self.proc.pid]
        while todo:
            for child in tree.get(todo.pop(), []):
                todo.append(child)
                args = _cmdline(child)
                if "sandbox" in args and "--state" in args:
                    found.append(child)
        leaves = [pid for pid in found if not set(tree.get(pid, [])) & set(found)]
        assert len(leaves) == 1, (found, [_cmdline(p) for p in found])
        return leaves[0]

    def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        self.wait(lambda: self.proc is not None and self.proc.poll() is not None, timeout, "honcho stopping everything")
        return int(self.proc.returncode)

    def stop(self) -> None:
        """SIGTERM: honcho stops its processes; their process groups are killed if anything is left."""
        if self.proc is None or self.proc.poll() is not None:
            return
        tree, todo, groups = _children(), [self.proc.pid], set()
        while todo:
            for child in tree.get(todo.pop(), []):
                todo.append(child)
                groups.add(os.getpgid(child))
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        for group in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)


@pytest.fixture
def honcho(redis_url: str, tmp_path: Path) -> Iterator[Honcho]:
    prefix = f"erpsync-restart-{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ERPSYNC_", "FLOWER_"))}
    env |= {
        "PATH": os.pathsep.join([str(VENV_BIN), env.get("PATH", "")]),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")])),
        "ERPSYNC_REDIS_URL": redis_url,
        "ERPSYNC_QUEUE": prefix,
        "ERPSYNC_KEY_PREFIX": prefix,
        "ERPSYNC_ARCHIVE_URL": "off",  # no archiver in this drill
        "ERPSYNC_SANDBOX_PORT": str(port),
        "ERPSYNC_SANDBOX_STATE": str(tmp_path / "sandbox.sqlite3"),
        "ERPSYNC_SANDBOX_LATENCY_MS": "200",  # a run of some seconds, to be killed in the middle of
        "ERPSYNC_WORKER_CONCURRENCY": "1",
        "ERPSYNC_SENDER_THREADS": "4",
        "ERPSYNC_BATCH_MAX_DOCS": "10",
        "ERPSYNC_INTAKE_CHUNK_DOCS": "50",
        "ERPSYNC_RETRY_BACKOFF_BASE": "0.2",
        "ERPSYNC_RETRY_BACKOFF_CAP": "2",
        "ERPSYNC_RECONCILE_DELAY_SECONDS": "0.3",
        "ERPSYNC_SEND_LEASE_SECONDS": "6",
    }
    env |= {f"ERPSYNC_{t}_BASE_URL": f"http://127.0.0.1:{port}" for t in ("SOFTONE", "FORTNOX", "INVOICE_SERVICE")}
    running = Honcho(tmp_path, env)
    try:
        yield running
    finally:
        running.stop()
        client = redis.Redis.from_url(redis_url)
        for key in client.scan_iter(f"{prefix}*", count=1000):
            client.delete(key)
        client.delete(prefix)


def submit(env: dict[str, str], docs: list[dict[str, Any]]) -> str:
    """One job through the Python producer, in a process of the drill's environment; its id."""
    request = json.dumps({"jobs": [docs], "kind": "customer_invoice", "tenant": "demo"})
    done = subprocess.run(
        [sys.executable, "-c", "from tests.faults import _submit_main; _submit_main()"],
        input=request, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return str(json.loads(done.stdout.strip().splitlines()[-1])[0])


def ledger(url: str, ours: set[str]) -> list[dict[str, Any]]:
    documents = httpx.get(f"{url}/_sandbox/ledger", params={"target": "softone"}, timeout=30).json()["documents"]
    return [d for d in documents if d["external_id"] in ours]


def kept_in_file(path: Path) -> dict[str, int]:
    """ExternalId -> Key of what the state file holds (read while no sandbox has it open)."""
    db = sqlite3.connect(path)
    try:
        return {x: k for x, k in db.execute("SELECT external_id, key FROM ledger WHERE target = 'softone'")}
    finally:
        db.close()


def test_the_sandbox_killed_mid_run_under_honcho_keeps_its_ledger_and_the_audit_is_clean(honcho: Honcho) -> None:
    run = uuid.uuid4().hex[:6]
    docs = [invoice(f"restart-{run}-{i:04d}", 100_000 + i) for i in range(DOCUMENTS)]
    ours = {str(d["ExternalId"]) for d in docs}
    store = ResultsStore(
        redis.Redis.from_url(honcho.env["ERPSYNC_REDIS_URL"], decode_responses=True),
        Settings.model_construct(key_prefix=honcho.env["ERPSYNC_KEY_PREFIX"]),
    )
    honcho.start()
    # Half the creates are saved at once and answered 4 s later: the kill lands while answers are on their way,
    # so the file holds invoices the worker has no Key for yet and must find again after the restart.
    slow = {"probabilities": {"slow": 0.5}, "slow_ms": 4000, "seed": 26, "paths": [INVOICES]}
    assert httpx.post(f"{honcho.sandbox_url}/_sandbox/faults", json=slow, timeout=10).status_code == 200
    job_id = submit(honcho.env, docs)

    def mid_run() -> bool:  # a fifth of the job created, and some of it not answered yet
        created = {d["external_id"] for d in ledger(honcho.sandbox_url, ours)}
        recorded = {r.external_id for r in store.records(job_id) if r.key is not None}
        return len(created) >= DOCUMENTS // 5 and bool(created - recorded)

    honcho.wait(mid_run, 120, "a fifth of the job created, some of it unanswered")
    os.kill(honcho.sandbox_pid(), signal.SIGKILL)
    assert honcho.wait_exit(90) != 0  # honcho stops every process when one dies
    before = kept_in_file(Path(honcho.env["ERPSYNC_SANDBOX_STATE"]))
    assert DOCUMENTS // 5 <= len(before) < DOCUMENTS, len(before)
    unanswered = set(before) - {r.external_id for r in store.records(job_id) if r.key is not None}
    assert unanswered  # in the ERP, no Key recorded: the restarted workers must find them there

    honcho.start()  # the faults were the killed process's: the new one has none
    honcho.wait(lambda: (store.job(job_id) or {}).get("status") in JOB_FINAL, 300, f"job {job_id} finished")

    final = ledger(honcho.sandbox_url, ours)
    records = [
        {"external_id": r.external_id, "status": r.status, "key": r.key, "error": r.error}
        for r in store.records(job_id)
    ]
    dead = {str(d["external_id"]): d for d in store.dead_letters() if d.get("job_id") == job_id}
    report = audit_records(records, final, dead)
    report.assert_clean()  # every invoice created exactly once, with the Key we hold; nothing unknown
    assert len(report.created) == DOCUMENTS, report.summary()
    # The restarted sandbox still had what it created before the kill ...
    assert {x: k for x, k in ((d["external_id"], d["key"]) for d in final) if x in before} == before
    # ... and its Keys went on above them: without --state they would have started again at the first Key.
    after = [d["key"] for d in final if d["external_id"] not in before]
    assert after and min(after) > max(before.values())


@pytest.mark.parametrize("keep", [True, False], ids=["with-state", "without-state"])
def test_what_a_killed_sandbox_still_has_after_a_restart(tmp_path: Path, keep: bool) -> None:
    """The same kill on the sandbox alone: with --state the ledger and the Keys survive; without, the ledger is
    empty and the next invoice gets the Key the lost one had - what made the drill's duplicates."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [str(VENV_BIN / "erpsync"), "sandbox", "--port", str(port)]
    cmd += ["--state", str(tmp_path / "sandbox.sqlite3")] if keep else []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    query = {"companyApiKey": "demo-company-key", "connectApiKey": "demo-connect-key"}

    def start() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/_sandbox/health", timeout=1).status_code == 200:
                    return proc
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "the sandbox did not start"
            time.sleep(0.1)

    def create(external_id: str) -> int:
        token = httpx.post(f"{url}/Login/Token", params=query).json()["Token"]
        body = [invoice(external_id, 4242)]
        answer = httpx.post(f"{url}{INVOICES}", params={**query, "token": token}, json=body)
        return int(answer.json()["Keys"][0])

    proc = start()
    try:
        first = create("before-kill")
    finally:
        proc.kill()
        proc.wait(10)
    proc = start()
    try:
        kept = [(d["external_id"], d["key"]) for d in httpx.get(f"{url}/_sandbox/ledger").json()["documents"]]
        second = create("after-kill")
    finally:
        proc.kill()
        proc.wait(10)
    if keep:
        assert kept == [("before-kill", first)] and second == first + 1
    else:
        assert kept == [] and second == first  # the same Key for another invoice
