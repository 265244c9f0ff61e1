"""Running `erpsync` in-process in unit tests: a fakeredis behind every command's Redis, and a command's exit code
with what it printed."""

from __future__ import annotations

import fakeredis
import pytest

from worker.cli import commands as cli


def fake_redis_behind_cli(monkeypatch: pytest.MonkeyPatch) -> fakeredis.FakeRedis:
    """A fakeredis that `worker.store.client.get_redis` (what every command connects with) returns."""
    client = fakeredis.FakeRedis(decode_responses=True)
    monkeypatch.setattr("worker.store.client.get_redis", lambda settings=None: client)
    return client


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """`erpsync ARGV...`: its exit code, stdout and stderr."""
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err
