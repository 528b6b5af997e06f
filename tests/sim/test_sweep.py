"""``flexkv_sim.sweep`` and ``flexkv-sim sweep``: grids, scenarios, workers, result files."""

from __future__ import annotations

import json
import re
import sys

import pandas as pd
import pytest
from click.testing import CliRunner

from flexkv_engine.config import ConfigError
from flexkv_engine.replay_input import prepare_replay
from flexkv_sim.cli import main
from flexkv_sim.replay import replay_hitrate
from flexkv_sim.sweep import (
    RESULTS_SCHEMA_VERSION,
    grid_points,
    load_scenario,
    parse_grid,
    read_results,
    run_sweep,
    scenario_from_dict,
    write_dashboard,
    write_results,
)
from flexkv_sim.workloads import generate, write_trace

WORKLOAD = {"name": "multiturn", "requests": 600, "seed": 3, "rate": 20.0}


@pytest.fixture(scope="module")
def trace_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("sweep") / "chat.jsonl"
    header, records = generate("multiturn", requests=600, seed=3, rate=20.0)
    write_trace(path, header, records)
    return path


def write_scenario(path, text: str):
    path.write_text(text)
    return path


def test_grid_values_are_yaml_scalars_and_combine_last_fastest() -> None:
    axes = parse_grid(
        [
            "cache_config.num_cpu_blocks=100,200",
            "eviction_policy=lru,lfu",
            "hardware=h100-sxm-pcie5+ssd-gen5,ci-cpu",
        ]
    )
    assert axes[0] == ("cache_config.num_cpu_blocks", [100, 200])
    assert axes[1] == ("eviction_policy", ["lru", "lfu"])
    points = grid_points(axes)
    assert len(points) == 8
    assert points[0] == {
        "cache_config.num_cpu_blocks": 100,
        "eviction_policy": "lru",
        "hardware": "h100-sxm-pcie5+ssd-gen5",
    }
    assert points[1]["hardware"] == "ci-cpu"
    assert grid_points([]) == [{}]


@pytest.mark.parametrize(
    ("item", "match"),
    [
        ("cache_config.num_cpu_blocks=10,abc", "num_cpu_blocks"),
        ("cache_config.no_such_key=1", "no_such_key"),
        ("eviction_policy=lru,lruu", "lruu"),
        ("cache_config.num_cpu_blocks", "expected key.path"),
        ("cache_config.num_cpu_blocks=1,1", "repeats"),
    ],
)
def test_bad_grids_are_refused_naming_the_key(item: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_grid([item])


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"workload": WORKLOAD}, "schema_version"),
        ({"schema_version": 1}, "exactly one of trace"),
        ({"schema_version": 1, "workload": WORKLOAD, "extra": 1}, "extra"),
        ({"schema_version": 1, "workload": {**WORKLOAD, "name": "chatt"}}, "chatt"),
        ({"schema_version": 1, "workload": {**WORKLOAD, "params": {"turns": 0}}}, "turns"),
        ({"schema_version": 1, "workload": {**WORKLOAD, "requests": -1}}, "requests"),
        ({"schema_version": 1, "workload": WORKLOAD, "mode": "fast"}, "mode"),
        ({"schema_version": 1, "trace": "missing.jsonl"}, "no such file"),
    ],
)
def test_bad_scenarios_are_refused(data: dict, match: str, tmp_path) -> None:
    with pytest.raises(ConfigError, match=match):
        scenario_from_dict(data, base_dir=tmp_path)


def test_local_sweep_equals_replays_and_loads_the_trace_once_per_worker(trace_file) -> None:
    scenario = scenario_from_dict(
        {
            "schema_version": 1,
            "trace": str(trace_file),
            "config": {"cache_config": {"num_cpu_blocks": 300}},
        }
    )
    axes = parse_grid(
        ["cache_config.num_cpu_blocks=100,400,1600", "cache_config.tokens_per_block=16,32"]
    )
    seen = []
    result = run_sweep(scenario, axes, jobs=2, on_row=seen.append)
    assert [r["point"] for r in result.rows] == list(range(6))
    assert sorted(r["point"] for r in seen) == list(range(6))
    frame = pd.DataFrame(result.rows, columns=result.columns)
    for row in result.rows:
        inp = prepare_replay(
            trace_file,
            overrides=[
                f"cache_config.num_cpu_blocks={row['cache_config.num_cpu_blocks']}",
                f"cache_config.tokens_per_block={row['cache_config.tokens_per_block']}",
            ],
        )
        assert row["hit_rate"] == replay_hitrate(inp, progress=False).planner.stats.hit_rate
        assert row["block_tokens"] == row["cache_config.tokens_per_block"]
    workers = frame.groupby("worker")["load_s"].nunique()
    assert 1 <= len(workers) <= 2 and (workers == 1).all()  # one load per worker
    assert (frame["schema_version"] == RESULTS_SCHEMA_VERSION).all()


def test_timing_sweep_reports_latency_percentiles(trace_file, tmp_path) -> None:
    config = tmp_path / "base.json"
    config.write_text(
        '{"cache_config": {"num_cpu_blocks": 500}, // a comment\n'
        ' "serving_config": {"num_gpu_blocks": 32}}'
    )
    scenario = load_scenario(
        write_scenario(
            tmp_path / "s.yaml",
            f"""
schema_version: 1
trace: {trace_file}
config: base.json
hardware: [ci-cpu]
mode: timing
""",
        )
    )
    result = run_sweep(scenario, parse_grid(["cache_config.num_cpu_blocks=50,500"]))
    assert result.mode == "timing" and len(result.rows) == 2
    for row in result.rows:
        assert row["profiles"] == "ci-cpu"
        assert 0 < row["ttft_p50_s"] <= row["ttft_p99_s"]
        assert row["get_p99_s"] >= 0
        assert row["hit_rate_gpu"] > 0
    assert result.rows[0]["hit_rate"] < result.rows[1]["hit_rate"]


def test_result_files_and_dashboard(trace_file, tmp_path) -> None:
    scenario = scenario_from_dict({"schema_version": 1, "trace": str(trace_file)})
    axes = parse_grid(["cache_config.num_cpu_blocks=100,1000", "eviction_policy=lru,fifo"])
    result = run_sweep(scenario, axes)
    out = write_results(tmp_path / "out", result, scenario)
    meta, frame = read_results(out)
    assert meta["schema_version"] == RESULTS_SCHEMA_VERSION
    assert [g["key"] for g in meta["grid"]] == ["cache_config.num_cpu_blocks", "eviction_policy"]
    assert set(meta["columns"]) == set(frame.columns)
    csv = pd.read_csv(out / "results.csv")
    assert list(csv.columns) == result.columns and len(csv) == 4
    assert csv["hit_rate"].tolist() == frame["hit_rate"].tolist()
    page = write_dashboard(out).read_text()
    assert "hit rate by cache_config.num_cpu_blocks" in page
    assert "hit rate by eviction_policy" in page
    # plotly.js comes from the sweep's folder, nothing from the network
    assert re.findall(r'<script[^>]*src="([^"]*)"', page) == ["plotly.min.js"]
    assert (out / "plotly.min.js").stat().st_size > 1_000_000
    assert "https://" not in page.split("</script>")[-1]


def test_cli_sweep_writes_everything(tmp_path) -> None:
    scenario = write_scenario(
        tmp_path / "chat.yaml",
        """
schema_version: 1
workload: {name: rag, requests: 300, seed: 2, rate: 10, params: {documents: 50}}
config: {cache_config: {tokens_per_block: 16}}
""",
    )
    result = CliRunner().invoke(
        main,
        [
            "sweep",
            str(scenario),
            "--grid",
            "cache_config.num_cpu_blocks=200,2000",
            "--jobs",
            "2",
            "--out",
            str(tmp_path / "out"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["cache_config.num_cpu_blocks"] for r in rows] == [200, 2000]
    for name in ("results.csv", "results.parquet", "results.json", "dashboard.html"):
        assert (tmp_path / "out" / name).is_file()


def test_cli_sweep_bad_input_exits_2(tmp_path) -> None:
    scenario = write_scenario(
        tmp_path / "s.yaml",
        "schema_version: 1\nworkload: {name: multiturn, requests: 10, seed: 1}\n",
    )
    bad_grid = CliRunner().invoke(main, ["sweep", str(scenario), "--grid", "cache_config.x=1"])
    assert bad_grid.exit_code == 2 and "cache_config.x" in bad_grid.output
    bad = write_scenario(tmp_path / "bad.yaml", "schema_version: 2\n")
    assert CliRunner().invoke(main, ["sweep", str(bad)]).exit_code == 2


def test_cli_sweep_without_ray_exits_2(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    scenario = write_scenario(
        tmp_path / "s.yaml",
        "schema_version: 1\nworkload: {name: multiturn, requests: 10, seed: 1}\n",
    )
    result = CliRunner().invoke(
        main, ["sweep", str(scenario), "--executor", "ray", "--out", str(tmp_path / "out")]
    )
    assert result.exit_code == 2
    assert "pip install ray" in result.output
