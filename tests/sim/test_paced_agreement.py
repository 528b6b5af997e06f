"""A paced replay under load and its twin: the same hits per tier, the same order of events.

The engine replays a short generated trace at 2x its rate with concurrent requests
(CPU tier, SSD tier through io_uring or threads, emulated prefill), tracing every planner
call. Its own order of calls, replayed through the core, must give its hits for every
request; the twin's timing replay, with a profile fitted from the run itself, must give
hits per tier within half a point.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest

pytest.importorskip("torch")

from click.testing import CliRunner

from flexkv_engine.cli import main as run_main
from flexkv_engine.trace import RequestRecord, read_trace
from flexkv_sim.cli import main as sim_main
from flexkv_sim.workloads import generate, write_trace

SETS = [
    "model_config.num_layers=2", "model_config.num_kv_heads=2", "model_config.head_size=64",
    "model_config.dtype=float16", "cache_config.num_cpu_blocks=600",
    "cache_config.num_ssd_blocks=4000", "cache_config.ssd_cache_iouring_entries=16",
    "serving_config.compute.prefill_fixed_s=7e-3",
    "serving_config.compute.prefill_per_token_s=2e-6",
]


@pytest.fixture(scope="module")
def paced_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("paced")
    trace = root / "chat.jsonl"
    header, records = generate("multiturn", requests=400, seed=5, rate=8.0)
    write_trace(trace, header, records)
    ssd = Path(tempfile.mkdtemp(prefix="flexkv-test-", dir="/var/tmp"))
    args = ["replay", str(trace), "--speed", "2", "--prefill", "model", "--json",
            "--out", str(root / "run")]
    for s in [*SETS, f"cache_config.ssd_cache_dir={ssd}/d"]:
        args += ["--set", s]
    try:
        result = CliRunner().invoke(run_main, args)
    finally:
        shutil.rmtree(ssd, ignore_errors=True)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["integrity_failures"] == 0
    profile = root / "fit.yaml"
    fitted = CliRunner().invoke(sim_main, ["calibrate", str(root / "run"), "-o", str(profile)])
    assert fitted.exit_code == 0, fitted.output
    checked = CliRunner().invoke(sim_main, [
        "validate", "--measured", str(root / "run"), "--profile", str(profile), "--json",
    ])
    assert checked.exit_code == 0, checked.output
    return root, summary, json.loads(checked.stdout)


def test_the_run_is_paced_and_concurrent(paced_run) -> None:
    root, summary, _ = paced_run
    assert summary["pacing"]["speed"] == 2.0
    events = [r for r in read_trace(root / "run" / "trace.jsonl")
              if isinstance(r, dict) and r.get("type") == "event"]
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    # Requests overlapped: one arrived while the one before it was still running.
    import pandas as pd

    rows = pd.read_csv(root / "run" / "requests.csv").sort_values("t")
    arrival, end = rows["t"].to_numpy(), rows["end_t"].to_numpy()  # the replay's clock
    assert (end[:-1] > arrival[1:]).sum() >= 5


def test_the_engines_order_of_events_replays_to_its_hits(paced_run) -> None:
    _, _, report = paced_run
    check = report["order_check"]
    assert check["events"] > 2 * report["requests"]
    assert check["agree"] == 1.0, check["differ"]


def test_the_twin_predicts_hits_per_tier_within_half_a_point(paced_run) -> None:
    _, _, report = paced_run
    for tier in ("gpu", "cpu", "ssd", "remote", "total"):
        assert report["hit_rate"][tier]["abs_err"] <= 0.005, (tier, report["hit_rate"][tier])
    assert report["hit_rate"]["ssd"]["measured"] > 0.05  # the SSD tier served a real share
    differences = report["hit_differences"]
    assert sum(differences["by_reason"].values()) == differences["requests"]
    assert set(differences["by_reason"]) <= {"in_flight", "put_order", "eviction_order"}


def test_validate_reports_queueing_and_throughput(paced_run) -> None:
    _, summary, report = paced_run
    assert set(report["queueing_by_path"]) >= {"h2d", "d2h", "ssd_read", "ssd_write"}
    rate = report["throughput"]["requests_per_s"]
    assert rate["measured"] == pytest.approx(summary["requests"] / summary["wall_s"])
    assert rate["rel_err"] < 0.15


def test_the_host_cpu_work_is_measured_and_fitted(paced_run) -> None:
    import yaml

    root, summary, _ = paced_run
    cpu = summary["cpu"]
    # Both are CPU seconds of this process during the replay; the prefill windows'
    # share is part of the whole.
    assert 0 < cpu["prefill_s"] < cpu["process_s"]
    blocks = sum(len(r.keys) for r in read_trace(root / "chat.jsonl")
                 if isinstance(r, RequestRecord))
    host = yaml.safe_load((root / "fit.yaml").read_text())["interpreter"]
    assert host["prefill_per_block"] * blocks == pytest.approx(cpu["prefill_s"])
    assert host["put_per_block"] > 0
    assert host["cpus"] >= 1
    assert "paced run" in yaml.safe_load((root / "fit.yaml").read_text())["sources"][
        "interpreter"]
