"""``flexkv-sim sweep --executor ray`` on a local Ray instance (Ray is optional)."""

from __future__ import annotations

import pytest

from flexkv_sim.sweep import parse_grid, run_sweep, scenario_from_dict

ray = pytest.importorskip("ray", reason="ray is not installed (optional: pip install ray)")

SCENARIO = {
    "schema_version": 1,
    "workload": {"name": "multiturn", "requests": 400, "seed": 5, "rate": 20.0},
}


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.slow
def test_ray_sweep_equals_the_local_sweep(local_ray) -> None:
    scenario = scenario_from_dict(SCENARIO)
    axes = parse_grid(
        ["cache_config.num_cpu_blocks=100,1000", "cache_config.tokens_per_block=16,64"]
    )
    remote = run_sweep(scenario, axes, jobs=2, executor="ray")
    local = run_sweep(scenario, axes, jobs=1)
    assert remote.executor == "ray" and len(remote.rows) == 4
    assert [r["hit_rate"] for r in remote.rows] == [r["hit_rate"] for r in local.rows]
    assert len({r["worker"] for r in remote.rows}) <= 2
