"""`erpsync status` (overview), `jobs`, `metrics` and `flower` through main(): output, --json, exit codes, and
one-line errors (Redis unreachable, bad option values, Flower without credentials) with no traceback."""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest
import redis
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console

from worker.cli import commands as cli
from worker.cli import ops as cli_ops
from worker.ops import overview
from worker.settings import get_settings
from worker.store.records import CREATED, Record
from worker.store.results import ResultsStore

PREFIX = "cliops"


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Only our ERPSYNC_* and FLOWER_* settings, read afresh for each test."""
    import os

    for name in list(os.environ):
        if name.startswith(("ERPSYNC_", "FLOWER_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ERPSYNC_KEY_PREFIX", PREFIX)
    monkeypatch.setenv("ERPSYNC_QUEUE", PREFIX)
    monkeypatch.setenv("ERPSYNC_STALL_SECONDS", "60")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def r(monkeypatch: pytest.MonkeyPatch) -> fakeredis.FakeRedis:
    """A fakeredis behind get_redis, and no worker broadcast (no broker in unit tests)."""
    client = fakeredis.FakeRedis(decode_responses=True)
    monkeypatch.setattr("worker.store.client.get_redis", lambda settings=None: client)
    monkeypatch.setattr(
        overview, "workers", lambda settings, timeout=1.0: {"workers": [], "other_workers": 0, "error": None}
    )
    return client


def make_job(client: fakeredis.FakeRedis, job_id: str, *, tenant: str = "demo", n: int = 2, age: float = 0) -> None:
    store = ResultsStore(client, get_settings())
    store.create_job(
        {"job_id": job_id, "tenant": tenant, "target": "softone", "kind": "customer_invoice", "source": "t"},
        ["{}"] * n,
        [f"{job_id}-{i}" for i in range(n)],
    )
    if age:
        key = f"{PREFIX}:job:{job_id}"
        for field in ("created_at", "updated_at", "received_at"):
            client.hset(key, field, overview.iso(time.time() - age))
        client.zadd(f"{PREFIX}:jobs", {job_id: time.time() - age})


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_status_json_names_the_stalled_job_and_its_age(
    r: fakeredis.FakeRedis, capsys: pytest.CaptureFixture[str]
) -> None:
    make_job(r, "stuck", age=300)
    make_job(r, "moving")
    code, out, err = run(capsys, "status", "--json")
    assert code == 0 and err == ""
    data = json.loads(out)
    jobs = {j["job_id"]: j for j in data["open_jobs"]}
    assert jobs["stuck"]["stalled"] is True and jobs["stuck"]["age_seconds"] >= 299
    assert jobs["moving"]["stalled"] is False
    assert data["stalled_jobs"] == 1 and data["workers"] == []


def test_status_screen_highlights_the_stalled_job(
    r: fakeredis.FakeRedis, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli_ops, "out", Console(width=200))
    make_job(r, "stuck-job", age=300)
    code, out, _ = run(capsys, "status")
    assert code == 0
    line = next(line for line in out.splitlines() if "stuck-job" in line)
    # 300 s old when made; the screen is drawn after the workers' broadcast (up to 1 s), so a second may pass
    assert "STALLED" in line and re.search(r"5m0\ds", line), line
    assert "1 stalled" in out and "1 open job," in out and "workers: NONE answering" in out and "rejected" not in out
    r.lpush(f"{PREFIX}:rejected", json.dumps({"at": "2026-11-21T03:00:00Z", "job_id": "j9", "reason": "not JSON"}))
    assert "producer messages rejected: 1 (newest: 2026-11-21T03:00:00Z, job j9: not JSON)" in run(capsys, "status")[1]


def test_status_screen_fits_the_terminal_it_is_drawn_on(
    r: fakeredis.FakeRedis, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`erpsync status` at 80x24 with more open jobs than fit: at most 24 lines of at most 80 cells, and the jobs
    left out are counted in the section's title (tests/unit/test_status_terminal.py has the layout's own checks)."""
    monkeypatch.setattr(cli_ops, "out", Console(width=80, height=24))
    for i in range(30):
        make_job(r, f"job-{i:02d}", tenant=f"tenant-{i % 7}", age=300 - i)
    code, out, _ = run(capsys, "status")
    lines = out.splitlines()
    assert code == 0 and len(lines) <= 24 and max(len(line) for line in lines) <= 80, out
    assert any(line.startswith("open jobs: ") and " of 30, oldest first" in line for line in lines), out
    assert "job-00" in out and "tenant-0" in out


def test_status_with_a_job_id_still_shows_that_job(r: fakeredis.FakeRedis, capsys: pytest.CaptureFixture[str]) -> None:
    make_job(r, "one", n=1)
    ResultsStore(r, get_settings()).set_records([("one", 0, Record("one-0", CREATED, key=5))])
    code, out, _ = run(capsys, "status", "one", "--json")
    assert code == 0 and json.loads(out)["status"] == "succeeded"
    code, _, err = run(capsys, "status", "nope")
    assert code == 2 and "no job 'nope'" in err
    code, _, err = run(capsys, "status", "one", "--watch")
    assert code == 2 and "--watch" in err


def test_status_watch_json_prints_a_line_per_refresh_and_ctrl_c_ends_it(
    r: fakeredis.FakeRedis, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(cli_ops.time, "sleep", sleep)
    code, out, _ = run(capsys, "status", "--watch", "0.5", "--json")
    assert code == 0 and sleeps == [0.5, 0.5]
    assert [json.loads(line)["key_prefix"] for line in out.splitlines()] == [PREFIX, PREFIX]
    code, _, err = run(capsys, "status", "--watch", "0")
    assert code == 2 and "--watch" in err


def test_status_watch_into_a_pipe_prints_each_refresh_after_the_last(
    r: fakeredis.FakeRedis, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not a terminal (a pipe, `| tee`): nothing can be redrawn in place, so every refresh is printed whole, and an
    outage is a line of its own; a reader that goes away then ends it (exit 141, test_cli_small_fixes)."""
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 2:  # Redis goes away
            monkeypatch.setattr(r, "execute_command", gone)
            monkeypatch.setattr(r, "pipeline", gone)
        if len(sleeps) == 3:
            raise KeyboardInterrupt

    def gone(*args: Any, **kwargs: Any) -> Any:
        raise redis.ConnectionError("connection refused")

    monkeypatch.setattr(cli_ops.time, "sleep", sleep)
    monkeypatch.setattr(cli_ops, "out", Console(width=80, height=24, force_terminal=False, color_system=None))
    code, out, _ = run(capsys, "status", "--watch", "0.5")
    assert code == 0 and sleeps == [0.5, 0.5, 0.5]
    assert out.count(f"erpsync {PREFIX} ") == 2 and "Redis unreachable" in out


def test_jobs_json_filters(r: fakeredis.FakeRedis, capsys: pytest.CaptureFixture[str]) -> None:
    make_job(r, "old", tenant="acme", age=7200)
    make_job(r, "new", tenant="demo", n=1)
    ResultsStore(r, get_settings()).set_records([("new", 0, Record("new-0", CREATED, key=5))])

    def ids(*argv: str) -> list[str]:
        code, out, _ = run(capsys, "jobs", "--json", *argv)
        assert code == 0
        return [j["job_id"] for j in json.loads(out)["jobs"]]

    assert ids() == ["new", "old"]
    assert ids("--tenant", "acme") == ["old"]
    assert ids("--status", "succeeded") == ["new"]
    assert ids("--status", "queued") == ["old"]
    assert ids("--since", "1h") == ["new"]
    assert ids("--since", "2000-01-01") == ["new", "old"]
    assert ids("--limit", "1") == ["new"]


def test_jobs_table(
    r: fakeredis.FakeRedis, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli_ops, "out", Console(width=200))
    make_job(r, "listed-job", tenant="acme", n=3)
    code, out, _ = run(capsys, "jobs", "--tenant", "acme")
    assert code == 0 and "1 job, newest first (tenant acme)" in out
    assert "listed-job" in out and "3: 3 pending" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["jobs", "--since", "yesterday"], "--since 'yesterday'"),
        (["jobs", "--limit", "0"], "--limit 0"),
    ],
)
def test_jobs_bad_values_are_one_line_and_exit_2(
    r: fakeredis.FakeRedis, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and message in err and err.count("\n") == 1 and "Traceback" not in err


def test_an_unknown_status_is_a_usage_error(r: fakeredis.FakeRedis) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["jobs", "--status", "done"])
    assert exc.value.code == 2


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_once_prints_the_gauges(r: fakeredis.FakeRedis, capsys: pytest.CaptureFixture[str]) -> None:
    make_job(r, "stuck", age=120)
    r.rpush(PREFIX, "message")
    code, out, _ = run(capsys, "metrics", "--once")
    assert code == 0
    values = samples(out)
    assert values[("erpsync_queue_depth", (("queue", PREFIX),))] == 1
    assert values[("erpsync_jobs_open", ())] == 1 and values[("erpsync_stalled_jobs", ())] == 1
    assert values[("erpsync_oldest_pending_seconds", ())] >= 119
    code, out, _ = run(capsys, "metrics", "--json")
    assert code == 0
    listed = {(m["name"], json.dumps(m["labels"], sort_keys=True)): m["value"] for m in json.loads(out)["metrics"]}
    assert listed[("erpsync_queue_depth", json.dumps({"queue": PREFIX}))] == 1


class Broken:
    def collect(self) -> Any:
        raise redis.ConnectionError("Error 111 connecting")


def call(app: Any, path: str) -> tuple[str, bytes]:
    status: list[str] = []
    body = b"".join(app({"PATH_INFO": path}, lambda s, headers: status.append(s)))
    return status[0], body


def test_metrics_endpoint_answers_503_in_one_line_while_redis_is_down() -> None:
    registry = CollectorRegistry()
    registry.register(Broken())  # type: ignore[arg-type]
    status, body = call(cli_ops._metrics_app(registry), "/metrics")
    assert status.startswith("503") and body == b"redis unavailable: ConnectionError\n"
    assert call(cli_ops._metrics_app(registry), "/other")[0].startswith("404")


def test_metrics_server_refuses_a_port_in_use(r: fakeredis.FakeRedis, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = run(capsys, "metrics", "--port", str(port))
    assert code == 2 and f"cannot serve metrics on 127.0.0.1:{port}" in err


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    "argv",
    [
        ["status"],
        ["status", "--json"],
        ["status", "--watch"],
        ["status", "some-job"],
        ["jobs"],
        ["jobs", "--json"],
        ["metrics", "--once"],
        ["metrics", "--json"],
        ["results", "some-job"],
        ["dead", "list"],
    ],
)
def test_redis_unreachable_is_one_line_and_exit_2(
    argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    port = closed_port()
    monkeypatch.setenv("ERPSYNC_REDIS_URL", f"redis://:hunter2@127.0.0.1:{port}/0")
    get_settings.cache_clear()
    started = time.monotonic()
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith(f"error: cannot reach Redis at redis://:***@127.0.0.1:{port}/0")
    assert err.count("\n") == 1 and "Traceback" not in err and "hunter2" not in err
    assert time.monotonic() - started < 10


def test_a_bad_setting_is_named_in_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ERPSYNC_STALL_SECONDS", "soon")
    get_settings.cache_clear()
    code, _, err = run(capsys, "status")
    assert code == 2 and err.startswith("error: ERPSYNC_STALL_SECONDS:") and "Traceback" not in err


# ----- erpsync flower


@pytest.fixture
def execs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[str], dict[str, str]]]:
    calls: list[tuple[str, list[str], dict[str, str]]] = []
    monkeypatch.setattr(cli_ops.os, "execvpe", lambda file, argv, env: calls.append((file, list(argv), dict(env))))
    return calls


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "FLOWER_BASIC_AUTH is not set"),
        ("", "FLOWER_BASIC_AUTH is not set"),
        ("opsonly-s3cret", "entry 1 is not user:password"),
        (":s3cret-pass", "entry 1 is not user:password"),
        ("ops:", "entry 1 is not user:password"),
        ("ops:s3cret-pass,admin", "entry 2 is not user:password"),
        ("ops:s3cret-pass, admin:s3cret-too", "entry 2 has spaces around it"),
    ],
)
def test_flower_refuses_to_start_without_credentials(
    value: str | None,
    message: str,
    execs: list[Any],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if value is not None:
        monkeypatch.setenv("FLOWER_BASIC_AUTH", value)
    code, _, err = run(capsys, "flower")
    assert code == 2 and message in err and err.count("\n") == 1 and execs == []
    assert "s3cret" not in err  # the value is never echoed


def test_flower_runs_celery_flower_on_loopback_with_state_and_credentials_only_in_the_environment(
    execs: list[Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("FLOWER_BASIC_AUTH", "ops:pa:ss-word,second:other-pw")
    code, _, err = run(capsys, "flower", "--port", "5599", "--db", str(tmp_path / "f.db"))
    assert code == 0 and err == ""
    ((file, argv, env),) = execs
    assert argv[0] == file and argv[1:6] == ["-m", "celery", "-A", "worker", "flower"]
    assert "--address=127.0.0.1" in argv and "--port=5599" in argv and "--persistent=True" in argv
    assert f"--db={tmp_path / 'f.db'}" in argv and f"--state_save_interval={cli_ops.FLOWER_STATE_SAVE_MS}" in argv
    assert not any("pa:ss-word" in a or "basic" in a.lower() for a in argv)
    assert env["FLOWER_BASIC_AUTH"] == "ops:pa:ss-word,second:other-pw"
    assert env["ERPSYNC_KEY_PREFIX"] == PREFIX  # Flower's celery app gets the same settings


def test_flower_defaults_come_from_flower_environment_variables(
    execs: list[Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("FLOWER_BASIC_AUTH", "ops:secret-pass")
    monkeypatch.setenv("FLOWER_PORT", "5600")
    monkeypatch.setenv("FLOWER_DB", str(tmp_path / "state.db"))
    assert run(capsys, "flower")[0] == 0
    argv = execs[0][1]
    assert "--port=5600" in argv and f"--db={tmp_path / 'state.db'}" in argv


def test_flower_warns_when_bound_beyond_loopback_and_checks_its_db_directory(
    execs: list[Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("FLOWER_BASIC_AUTH", "ops:secret-pass")
    code, _, err = run(capsys, "flower", "--address", "0.0.0.0", "--db", str(tmp_path / "f.db"))
    assert code == 0 and "warning:" in err and "/metrics and /healthcheck" in err
    assert "--address=0.0.0.0" in execs[0][1]
    code, _, err = run(capsys, "flower", "--address", "::1", "--db", str(tmp_path / "f.db"))
    assert code == 0 and err == ""
    code, _, err = run(capsys, "flower", "--db", str(tmp_path / "missing" / "f.db"))
    assert code == 2 and "does not exist" in err and len(execs) == 2


def test_the_procfile_runs_flower_and_metrics_through_erpsync_without_credentials() -> None:
    """Every `erpsync` line of the Procfile parses (defaults filled in for ${VAR:-default}); no secret in it."""
    import re
    import shlex
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "Procfile").read_text()
    processes = dict(line.split(":", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert processes["flower"].strip() == "erpsync flower" and processes["metrics"].strip() == "erpsync metrics"
    for command in processes.values():
        argv = shlex.split(re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", command))
        if argv[0] == "erpsync":
            cli.build_parser().parse_args(argv[1:])
    commands = " ".join(processes.values()).lower()
    assert "basic" not in commands and "password" not in commands


def test_a_rejected_job_is_finished_and_not_created(r: fakeredis.FakeRedis, capsys: pytest.CaptureFixture[str]) -> None:
    """A raw producer message refused as a whole (worker/producer/submissions.py) ends as a job in status `rejected`."""
    r.hset(
        f"{PREFIX}:job:rej",
        mapping={
            "job_id": "rej",
            "status": "rejected",
            "reason": "unknown tenant 'x'",
            "total": "0",
            "finished_at": overview.iso(time.time()),
        },
    )
    r.zadd(f"{PREFIX}:jobs", {"rej": time.time()})
    code, out, _ = run(capsys, "status", "rej", "--json")
    assert code == 1 and json.loads(out)["reason"] == "unknown tenant 'x'"
    assert run(capsys, "results", "rej", "--json")[0] == 1
    code, out, _ = run(capsys, "jobs", "--json", "--status", "rejected")
    (job,) = json.loads(out)["jobs"]
    assert job["job_id"] == "rej" and job["reason"] == "unknown tenant 'x'" and not job["stalled"]


def test_a_bad_flower_port_in_the_environment_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWER_BASIC_AUTH", "ops:secret-pass")
    monkeypatch.setenv("FLOWER_PORT", "fifty")
    with pytest.raises(SystemExit) as exc:
        cli.main(["flower"])
    assert exc.value.code == 2
