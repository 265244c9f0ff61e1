"""Scenario C of `make bench` (tenant isolation, bench/isolation.py) in its quick mode runs end to end and reports every
case. Its targets are the benchmark's to report, not a test's to assert: only the report's structure is checked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(660)
def test_scenario_c_quick_runs_and_reports_every_case(tmp_path: Path, redis_url: str) -> None:
    env = {"PATH": "/usr/bin:/bin", "ERPSYNC_REDIS_URL": redis_url, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--scenario", "C", "--out", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "latest.json").read_text())
    assert report["results"] == [] and report["ratios"] == {}  # A and B did not run
    c = report["isolation"]
    s = c["settings"]
    assert s["latency_ms"] == 100 and s["intake_processes"] == 2 and s["intake_nice"] == 6 and s["send_threads"] == 12
    alone = c["alone"]["victim"]
    assert alone["jobs"] == s["victim_jobs"] and 0 < alone["p50"] <= alone["p95"]
    assert set(c["cases"]) == set("abcde")
    for name, case in c["cases"].items():
        victim = case["victim"]
        assert victim["jobs"] == s["victim_jobs"] and victim["failed"] == victim["unfinished"] == 0, name
        assert 0 < victim["p50"] <= victim["p95"], name
        assert case["victim_p95_vs_alone"] == round(victim["p95"] / alone["p95"], 2), name
        assert 0 <= victim["submitted_during_load"] <= victim["jobs"], name
        assert set(c["targets"]["met"][name]) >= {"victim_p95_vs_alone", "victim_p95_s"}, name
    cases = c["cases"]
    for name, size in (("a", s["bulk_docs"]), ("b", s["fortnox_docs"]), ("e", s["bulk_docs"])):
        neighbour, of = cases[name]["neighbour"], c["alone"][cases[name]["neighbour"]["alone_of"]]
        assert neighbour["finished"] and neighbour["created"] == neighbour["documents"] == size, name
        assert neighbour["documents_per_s"] > 0 and of["documents_per_s"] > 0, name
        assert neighbour["vs_alone"] == round(neighbour["documents_per_s"] / of["documents_per_s"], 2), name
    assert cases["a"]["neighbour"]["alone_of"] == "a" and cases["e"]["neighbour"]["alone_of"] == "a"
    for fortnox in (cases["b"]["neighbour"]["fortnox"], c["alone"]["b"]["fortnox"]):  # the Fortnox tenant's rate
        assert fortnox["invoices"] == s["fortnox_docs"] and fortnox["allowed_per_s"] == 5
        assert fortnox["achieved_per_s"] > 0 and fortnox["drain_s"] > 0
    refused = cases["c"]["neighbour"]  # its ERP refuses connections: queued, never done
    assert refused["documents"] == s["refused_docs"] and refused["created"] == 0 and not refused["finished"]
    assert refused["documents_per_s"] is None
    small = cases["d"]["neighbour"]
    assert small["finished"] and small["created"] == small["documents"] == s["small_tenants"] * s["small_jobs"]
    spread = small["per_tenant"]
    assert spread["tenants"] == len(spread["p95_s"]) == s["small_tenants"]
    assert spread["max_p95_s"] == max(spread["p95_s"].values()) > 0
    assert spread["max_vs_median"] == round(spread["max_p95_s"] / spread["median_p95_s"], 2)
    assert "tenant_p95_max_vs_median" in c["targets"]["met"]["d"]
    markdown = (tmp_path / "latest.md").read_text()
    assert "| neighbour | victim p50 s | victim p95 s | p95 vs alone | neighbour docs/s | vs alone |" in markdown
    assert "| none (alone) |" in markdown and all(f"| ({name}) " in markdown for name in "abcde")
    assert "- Targets (issue 23): " in markdown and "(quick mode)" in markdown.splitlines()[0]
