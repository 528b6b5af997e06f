"""``flexkv-sim curve``: table on stdout, JSON, result files, errors."""

from __future__ import annotations

import csv
import io
import itertools
import json

import pytest
from click.testing import CliRunner

from flexkv_engine.replay_input import prepare_replay
from flexkv_sim import cli_analysis, curve
from flexkv_sim.cli import main
from flexkv_sim.replay import replay_hitrate
from flexkv_sim.workloads import generate, write_trace


@pytest.fixture(scope="module")
def trace(tmp_path_factory):
    path = tmp_path_factory.mktemp("curve-cli") / "chat.jsonl"
    write_trace(path, *generate("multiturn", requests=300, seed=9, rate=10.0))
    return path


def test_cli_choices_match_the_library() -> None:
    assert cli_analysis.CURVE_TIERS == curve.TIERS
    assert cli_analysis.POINT_KINDS == curve.POINT_KINDS


def test_json_points_and_files(trace, tmp_path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main,
        [
            "curve",
            str(trace),
            "--set",
            "cache_config.tokens_per_block=32",
            "--json",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    points = data["points"]
    assert data["tokens_per_block"] == 32 and data["points_kind"] == "changes"
    assert points[0] == {"capacity_blocks": 0, "hit_rate": 0.0}
    caps = [p["capacity_blocks"] for p in points]
    assert caps == sorted(set(caps))
    rates = [p["hit_rate"] for p in points]
    assert all(a < b for a, b in itertools.pairwise(rates))  # each row is a change
    # A listed capacity equals the replay there.
    mid = points[len(points) // 2]
    inp = prepare_replay(
        trace,
        overrides=[
            "cache_config.tokens_per_block=32",
            f"cache_config.num_cpu_blocks={mid['capacity_blocks']}",
        ],
    )
    assert replay_hitrate(inp, progress=False).planner.stats.hit_rate == mid["hit_rate"]
    for name in ("curve.csv", "curve.json", "curve.html"):
        assert (out / name).is_file()
    assert json.loads((out / "curve.json").read_text())["points"] == points


def test_csv_on_stdout_and_corners(trace) -> None:
    result = CliRunner().invoke(main, ["curve", str(trace)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(rows[0]) == ["capacity_blocks", "hit_rate"]
    corners = CliRunner().invoke(main, ["curve", str(trace), "--points", "corners"])
    assert 2 <= len(corners.stdout.splitlines()) - 1 < len(rows)
    assert "infinite-cache hit rate" in result.stderr


def test_not_plain_lru_exits_2(trace) -> None:
    result = CliRunner().invoke(
        main, ["curve", str(trace), "--set", "cache_config.eviction_policy=slru"]
    )
    assert result.exit_code == 2
    assert "cache_config.eviction_policy" in result.output


def test_ssd_tier_is_noted(trace) -> None:
    result = CliRunner().invoke(
        main, ["curve", str(trace), "--set", "cache_config.num_ssd_blocks=500", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert "CPU tier's share" in result.stderr
