"""Why a replay's hit rate is what it is (``flexkv_sim.doctor.why``): the bound, the
capacity for 90% of it against the configured one, and the doctor's cheap findings, on
the terminal, in summary.json and in the report; and a headline that says what it counts.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from flexkv_engine.cli_common import hit_rate_scope
from flexkv_engine.replay_input import prepare_replay
from flexkv_sim.cli import main
from flexkv_sim.curve import hit_rate_curve
from flexkv_sim.doctor import diagnose
from flexkv_sim.doctor.rules import cheap_findings, top_findings
from flexkv_sim.doctor.why import CURVE_FILE, explain, plain_lru
from flexkv_sim.report import load
from flexkv_sim.report.tables import hit_rate_scope as report_scope
from flexkv_sim.sweep import scenario_from_dict
from flexkv_sim.workloads import generate, write_trace


@pytest.fixture(scope="module")
def trace(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("why") / "chat.jsonl"
    write_trace(path, *generate("multiturn", requests=300, seed=4, rate=10.0))
    return path


def replay(*args: str) -> CliRunner:
    result = CliRunner().invoke(main, ["replay", *args])
    assert result.exit_code == 0, result.output
    return result


def test_the_numbers_are_the_curves(trace) -> None:
    inp = prepare_replay(trace, overrides=["cache_config.num_cpu_blocks=400"])
    curve = hit_rate_curve(inp, progress=False)
    why = explain(inp, {"hit_rate": curve.hit_rate_at(400)})
    assert why.bound == curve.max_hit_rate
    assert why.blocks_for_90pct == curve.capacity_for(0.9)
    assert why.configured_blocks == 400
    assert why.lines[0] == (
        f"the bound is {curve.max_hit_rate:.1%} (an infinite cache); 90% of it needs "
        f"{curve.capacity_for(0.9):,} CPU blocks; you have 400 (LRU there: "
        f"{curve.hit_rate_at(400):.1%})"
    )
    assert 2 <= len(why.lines) <= 4
    assert all(line.startswith("doctor: ") for line in why.lines[1:])


def test_the_findings_are_the_doctors_own(trace) -> None:
    """The cheap rules give exactly the findings the doctor gives (no timing run)."""
    sets = {"num_cpu_blocks": 300, "evict_ratio": 0.2, "tokens_per_block": 32}
    scenario = scenario_from_dict(
        {"schema_version": 1, "trace": str(trace), "config": {"cache_config": sets}}
    )
    report = diagnose(scenario, timing=False)
    inp = prepare_replay(trace, overrides=[f"cache_config.{k}={v}" for k, v in sets.items()])
    curve = hit_rate_curve(plain_lru(inp)[0], progress=False)
    cheap = cheap_findings(report["hit_rate"], curve, inp.config, 16)
    assert cheap["findings"] == report["findings"]
    assert cheap["capacity"] == report["capacity"] and cheap["reuse"] == report["reuse"]
    assert {f["kind"] for f in cheap["findings"]} >= {"eviction", "block_size", "capacity"}
    why = explain(inp, {"hit_rate": report["hit_rate"]})
    top = top_findings(report["findings"])
    assert why.lines[1:] == [f"doctor: {f['message']}" for f in top]
    assert [f["severity"] for f in top] == sorted(
        (f["severity"] for f in top), key=["warning", "info", "ok"].index
    )
    # Not plain LRU: the curve is plain LRU's, and the line says so.
    assert "curve of plain LRU, this run uses lru with evict_ratio=0.2" in why.lines[0]
    assert not why.plain_lru


def test_an_excellent_run_shows_its_ok_finding() -> None:
    top = top_findings([{"kind": "hit_rate", "severity": "ok", "message": "fine"}])
    assert [f["message"] for f in top] == ["fine"]


def test_sim_replay_says_why_everywhere(trace, tmp_path) -> None:
    out = tmp_path / "run"
    result = replay(str(trace), "--set", "cache_config.num_cpu_blocks=400", "--out", str(out))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["configured_blocks"] == 400
    assert 0 < summary["hit_rate"] <= summary["bound"] <= 1
    assert summary["blocks_for_90pct"] > 400
    assert summary["why"][0].startswith("the bound is ")
    lines = result.stdout.splitlines()
    at = lines.index(f"why             {summary['why'][0]}")
    assert lines[at + 1 : at + len(summary["why"])] == [
        f"                {line}" for line in summary["why"][1:]
    ]
    assert lines[-1] == f"report in       {out / 'report.html'}"
    curve = pd.read_csv(out / CURVE_FILE)
    assert list(curve.columns) == ["capacity_blocks", "hit_rate"]
    assert curve["hit_rate"].max() == pytest.approx(summary["bound"])
    page = (out / "report.html").read_text()
    assert "<h2>Why this hit rate</h2>" in page
    assert page.index("Why this hit rate</h2>") < page.index("<h2>Overview</h2>")
    assert "configured: 400 blocks" in page and "CPU tier hit rate by capacity" in page
    for line in summary["why"]:
        assert line.replace("'", "&#x27;").replace(">", "&gt;") in page
    as_json = json.loads(replay(str(trace), "--json").stdout)
    assert as_json["why"] and as_json["bound"] == pytest.approx(summary["bound"])


def test_headline_counts_gpu_prefix_hits_apart(trace, tmp_path) -> None:
    out = tmp_path / "gpu"
    result = replay(
        str(trace), "--set", "serving_config.num_gpu_blocks=200", "--set",
        "cache_config.num_cpu_blocks=400", "--out", str(out),
    )  # fmt: skip
    s = json.loads((out / "summary.json").read_text())
    hit, gpu = s["hit_rate"], s["hit_rate_by_tier"]["gpu"]
    assert gpu > 0
    assert (
        f"hit rate        {hit:.4f}  (CPU tier; GPU prefix hits {gpu:.4f} not counted, "
        f"{hit + gpu:.4f} with them)"
    ) in result.stdout.splitlines()
    page = (out / "report.html").read_text()
    assert (
        f"hit rate {hit:.1%} (CPU tier; GPU prefix hits {gpu:.1%} not counted, "
        f"{hit + gpu:.1%} with them)"
    ) in page
    none = replay(str(trace), "--set", "cache_config.num_cpu_blocks=400")
    assert "(CPU tier; no GPU prefix cache)" in none.stdout


@pytest.mark.parametrize(
    "summary",
    [
        {"hit_rate": 0.5, "hit_rate_by_tier": {"gpu": 0.125}, "tiers": {"cpu": {}, "ssd": {}}},
        {"hit_rate": 0.5, "hit_rate_by_tier": {"gpu": 0.0}, "tiers": {"cpu": {}},
         "config": {"serving_config": {"num_gpu_blocks": 0}}},
        {"hit_rate": 0.25, "hit_rate_by_tier": {}, "tiers": {"cpu": {}, "ssd": {}, "remote": {}}},
    ],
)  # fmt: skip
def test_terminal_and_report_use_the_same_words(summary) -> None:
    assert hit_rate_scope(summary) == report_scope(summary, fmt=lambda v: f"{v:.4f}")


def test_report_reads_the_curve_file_the_twin_writes() -> None:
    assert load.CURVE_FILE == CURVE_FILE


def test_a_summary_without_why_is_said_so(tmp_path) -> None:
    from flexkv_sim.report import write_report

    run = tmp_path / "old"
    run.mkdir()
    summary = {"tool": "flexkv-sim", "mode": "hitrate", "requests": 1, "hit_rate": 0.5,
               "hit_rate_by_tier": {"gpu": 0.0, "cpu": 0.5}, "tiers": {"cpu": {}}}  # fmt: skip
    (run / "summary.json").write_text(json.dumps(summary))
    page = write_report(run).read_text()
    assert "summary.json has no why lines" in page
    assert "hit rate 50.0% (CPU tier; GPU prefix hits 0.0% not counted, 50.0% with them)" in page
