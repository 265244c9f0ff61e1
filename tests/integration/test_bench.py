"""`make bench-quick` (python -m bench --quick) runs end to end and reports (how fast is not a test's business); its
scenario C, tenant isolation: test_bench_isolation.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_bench_runs_and_reports(tmp_path: Path, redis_url: str) -> None:
    env = {"PATH": "/usr/bin:/bin", "ERPSYNC_REDIS_URL": redis_url, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path), "--set", "ERPSYNC_SEND_GROUP_BATCHES=2",
         "--rounds", "2", "--scenario", "A", "--scenario", "B"],  # C: test_bench_isolation.py
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads((tmp_path / "latest.json").read_text())
    runs = sorted((r["scenario"], r["system"], r["round"]) for r in report["results"])
    # erpsync and direct take turns, two rounds each; the naive worker runs once
    assert runs == sorted((s, x, n) for s in "AB" for x, rounds in (("erpsync", 2), ("naive", 1), ("direct", 2))
                          for n in range(1, rounds + 1))  # fmt: skip
    for row in report["results"]:
        assert row["documents"] > 0 and row["documents_per_s"] > 0 and row["http_requests"] > 0
        assert set(row["latency_s"]) == {"p50", "p95", "p99"} and row["peak_rss_mb"]
    assert set(report["ratios"]["A"]) >= {"vs_naive", "vs_direct", "requests_per_document"}
    for scenario in "AB":  # the ratio to direct is the median of the rounds' own, each of its own round's pair
        ratios = report["ratios"][scenario]
        assert len(ratios["vs_direct_rounds"]) == 2
        assert ratios["vs_direct"] == round(sum(ratios["vs_direct_rounds"]) / 2, 2)
        for n, ratio in enumerate(ratios["vs_direct_rounds"], start=1):
            ours, direct = (next(r for r in report["results"] if (r["scenario"], r["system"], r["round"]) ==
                                 (scenario, system, n)) for system in ("erpsync", "direct"))  # fmt: skip
            assert ratio == round(ours["documents_per_s"] / direct["documents_per_s"], 2)
    assert all(row["cpu_s"]["worker"] > 0 for row in report["results"] if row["system"] != "direct")
    ingest = report["ingest"]  # the streaming CSV submit, by its own process
    assert ingest["documents"] > 0 and ingest["created"] == ingest["documents"]
    assert ingest["submitter_peak_rss_mb"] > 0 and ingest["largest_worker_process_peak_rss_mb"] > 0
    assert report["settings"]["set"] == {"ERPSYNC_SEND_GROUP_BATCHES": "2"}
    assert (
        report["settings"]["intake_nice"] == 6
    )  # the split's intake worker yields the CPU (worker/celery_app/priority.py)
    machine = report["machine"]  # what the run ran on, and how fast its CPU was before and after (bench.run)
    assert machine["cpu_model"] and len(machine["cpu_probe_ms"]) == 2 and min(machine["cpu_probe_ms"]) > 0
    markdown = (tmp_path / "latest.md").read_text()
    assert f"{machine['cpu_model']}; CPU probe {machine['cpu_probe_ms'][0]:g} ms" in markdown.splitlines()[0]
    assert "| A | erpsync |" in markdown and "Streaming submit:" in markdown
    assert "ERPSYNC_SEND_GROUP_BATCHES=2" in markdown.splitlines()[0]
    assert "intake at nice 6" in markdown.splitlines()[0]
    assert "2 rounds of erpsync and direct" in markdown.splitlines()[0] and "| A | direct | 2 |" in markdown


def test_bench_refuses_a_setting_that_is_not_ours() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--set", "PATH=/tmp"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and "expected ERPSYNC_NAME=VALUE" in done.stderr


def test_profile_runs_every_stage_and_creates_every_document(redis_url: str) -> None:
    """`python -m bench.profile` (the hot path, stage by stage, in one process): it runs and reports."""
    env = {"PATH": "/usr/bin:/bin", "ERPSYNC_REDIS_URL": redis_url, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "bench.profile", "--docs", "120", "--stage", "intake", "--top", "5"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    lines = done.stdout.splitlines()
    for stage in ("submit", "intake", "flush", "send"):
        assert any(line.startswith(f"{stage} ") and "us per document" in line for line in lines), done.stdout
    assert "function calls" in done.stdout  # cProfile's table for --stage intake
    assert lines[-1].endswith("succeeded, 120 of 120 created"), lines[-1]
