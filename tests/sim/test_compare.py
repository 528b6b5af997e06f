"""``flexkv-sim compare``: a comparison page of result directories, through the CLI."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from flexkv_sim.cli import main
from flexkv_sim.workloads import generate, write_trace


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    trace = root / "agent.jsonl"
    write_trace(trace, *generate("agent", requests=120, seed=2, rate=5.0))
    dirs = []
    for blocks in (200, 2000):
        out = root / f"cpu{blocks}"
        result = CliRunner().invoke(
            main,
            [
                "replay",
                str(trace),
                "--set",
                f"cache_config.num_cpu_blocks={blocks}",
                "--out",
                str(out),
                "--no-report",
            ],
        )
        assert result.exit_code == 0, result.output
        dirs.append(out)
    return dirs


def test_compare_writes_one_page_with_the_labels(runs, tmp_path) -> None:
    out = tmp_path / "cmp.html"
    result = CliRunner().invoke(
        main, ["compare", *map(str, runs), "--labels", "small, large", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert str(out) in result.output
    page = out.read_text()
    assert "FlexKV Twin comparison: 2 runs" in page
    assert "small" in page and "large" in page
    assert "cache_config.num_cpu_blocks" in page  # the config key that differs


def test_compare_names_runs_by_directory_without_labels(runs, tmp_path) -> None:
    out = tmp_path / "cmp.html"
    assert CliRunner().invoke(main, ["compare", *map(str, runs), "-o", str(out)]).exit_code == 0
    page = out.read_text()
    assert "cpu200" in page and "cpu2000" in page


def test_compare_refuses_bad_input(runs, tmp_path) -> None:
    out = str(tmp_path / "cmp.html")
    wrong = CliRunner().invoke(main, ["compare", *map(str, runs), "--labels", "one", "-o", out])
    assert wrong.exit_code == 2 and "labels" in wrong.output
    missing = CliRunner().invoke(main, ["compare", str(tmp_path / "nope"), "-o", out])
    assert missing.exit_code == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    no_summary = CliRunner().invoke(main, ["compare", str(empty), "-o", out])
    assert no_summary.exit_code == 2 and "summary.json" in no_summary.output
