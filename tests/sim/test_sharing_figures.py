"""The figures that README.md and scenarios/sharing/two-instances.yaml state are what the
commands print."""

from __future__ import annotations

import json
import re
from pathlib import Path

from click.testing import CliRunner

from flexkv_sim.cli import main as sim_main

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "scenarios" / "sharing" / "two-instances.yaml"


def _shared(*extra: str) -> dict:
    result = CliRunner().invoke(sim_main, ["shared", "--scenario", str(SCENARIO), "--json",
                                           *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_scenario_and_readme_figures_are_what_the_command_prints() -> None:
    text = SCENARIO.read_text()
    default = _shared()
    bigger = _shared("--set", "cache_config.remote_store_capacity_gb=200")
    stated = re.search(r"hit rate (\d\.\d{3}) with the store shared, against (\d\.\d{3})", text)
    assert stated is not None
    assert stated.groups() == (f"{default['shared']['hit_rate']:.3f}",
                               f"{default['private']['hit_rate']:.3f}")
    adopted = re.search(r"\(([\d,]+) blocks adopted", text)
    assert adopted is not None
    assert int(adopted.group(1).replace(",", "")) == default["shared"]["adopted_blocks"]
    stated_200 = re.search(r"remote_store_capacity_gb=200`: (\d\.\d{3}) against (\d\.\d{3})", text)
    assert stated_200 is not None
    assert stated_200.groups() == (f"{bigger['shared']['hit_rate']:.3f}",
                                   f"{bigger['private']['hit_rate']:.3f}")
    readme = (ROOT / "README.md").read_text()
    assert (f"two-instances.yaml`: {default['shared']['hit_rate']:.3f} shared against "
            f"{default['private']['hit_rate']:.3f} partitioned") in readme
