"""A tier too small for the prompts is said on the terminal, in summary.json and in the
report, not only counted in the tier's allocation failures."""

from __future__ import annotations

import json

from click.testing import CliRunner

from flexkv_sim.cli import main as sim_main
from flexkv_sim.workloads import generate, write_trace


def test_a_tier_smaller_than_a_prompt_is_warned_about(tmp_path) -> None:
    trace = tmp_path / "agent.jsonl"
    header, records = generate("agent", requests=40, seed=2, rate=4.0)
    write_trace(trace, header, records)
    args = ["replay", str(trace), "--out", str(tmp_path / "small")]
    small = CliRunner().invoke(sim_main, [*args, "--set", "cache_config.num_cpu_blocks=256"])
    assert small.exit_code == 0, small.output
    assert "warning: cpu tier:" in small.stderr
    assert "raise cache_config.num_cpu_blocks" in small.stderr
    summary = json.loads((tmp_path / "small" / "summary.json").read_text())
    assert summary["tiers"]["cpu"]["alloc_failures"] > 0
    assert summary["longest_prompt_blocks"] > 256
    assert summary["warnings"] and summary["warnings"][0].startswith("cpu tier:")
    assert "Warning: cpu tier:" in (tmp_path / "small" / "report.html").read_text()
    roomy = CliRunner().invoke(sim_main, ["replay", str(trace), "--json", "--set",
                                          "cache_config.num_cpu_blocks=100000"])
    assert roomy.exit_code == 0 and "warning" not in roomy.stderr
    assert json.loads(roomy.stdout)["warnings"] == []
