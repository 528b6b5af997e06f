"""``flexkv-run replay --out``: the run directory gets the twin's report, whose headline
says what the hit rate counts and whose first section says why; the terminal names it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

SAMPLE = Path(__file__).resolve().parents[2] / "traces" / "sample_multiturn.jsonl"
TINY = (
    "model_config.num_layers=1",
    "model_config.num_kv_heads=1",
    "model_config.head_size=16",
    "model_config.dtype=float16",
    "cache_config.num_cpu_blocks=400",
    "serving_config.num_gpu_blocks=64",
)


def test_replay_writes_the_report_with_headline_and_why(tmp_path) -> None:
    pytest.importorskip("torch")
    from flexkv_engine.cli import main

    out = tmp_path / "run"
    sets = [a for o in TINY for a in ("--set", o)]
    args = ["replay", str(SAMPLE), "--device", "cpu", "--speed", "max", "--out", str(out)]
    result = CliRunner().invoke(main, [*args, *sets])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tool"] == "flexkv-run" and summary["integrity_failures"] == 0
    assert summary["configured_blocks"] == 400 and summary["why"]
    lines = result.stdout.splitlines()
    assert lines[-1] == f"report in       {out / 'report.html'}"
    assert "integrity       0 failures" in lines
    assert f"why             {summary['why'][0]}" in lines
    hit, gpu = summary["hit_rate"], summary["hit_rate_by_tier"]["gpu"]
    page = (out / "report.html").read_text()
    assert "FlexKV Twin report: sample_multiturn.jsonl" in page
    assert (
        f"hit rate {hit:.1%} (CPU tier; GPU prefix hits {gpu:.1%} not counted, "
        f"{hit + gpu:.1%} with them)"
    ) in page
    assert "<h2>Why this hit rate</h2>" in page and "configured: 400 blocks" in page
    assert summary["why"][0] in page
    assert "GET latency p50" in page  # the engine's latencies, read from its records
    assert (out / "plotly.min.js").is_file() and (out / "capacity_curve.csv").is_file()
    bare = CliRunner().invoke(main, [*args[:-1], str(tmp_path / "bare"), "--no-report", *sets])
    assert bare.exit_code == 0, bare.output
    assert not (tmp_path / "bare" / "report.html").exists()
    assert "report in" not in bare.stdout


def test_the_engine_loads_the_twin_only_inside_the_command() -> None:
    probe = (
        "import sys, flexkv_engine.cli, flexkv_engine.cli_replay, flexkv_engine.hw_replay; "
        "print(sorted(m for m in sys.modules if m.startswith('flexkv_sim')))"
    )
    pytest.importorskip("torch")
    out = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    ).stdout.strip()
    assert out == "[]"
