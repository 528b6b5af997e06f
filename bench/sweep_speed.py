"""Sweep speed: a 12-point grid over a generated 50,000-request trace with 2 jobs.

The scenario generates a multi-turn chat workload (each worker generates it once); the
grid is 4 CPU-tier sizes x 3 block sizes (``num_cpu_blocks`` x ``tokens_per_block``),
replayed in hit-rate mode (``--mode timing`` for the SimPy model). Prints a JSON report:
the sweep's wall time (worker start, trace generation and every replay), each worker's
generation time, and each point's replay time and hit rate. Target: within 5 minutes
with 2 jobs on the 2-core machine.

    python bench/sweep_speed.py [--requests 50000] [--jobs 2] [--mode hitrate]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path

from flexkv_sim.sweep import parse_grid, run_sweep, scenario_from_dict, write_dashboard
from flexkv_sim.sweep import write_results as write_sweep

GRID = [
    "cache_config.num_cpu_blocks=2000,8000,32000,128000",
    "cache_config.tokens_per_block=16,32,64",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=50_000)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--mode", choices=("hitrate", "timing"), default="hitrate")
    parser.add_argument("--executor", choices=("local", "ray"), default="local")
    args = parser.parse_args()
    scenario = scenario_from_dict(
        {
            "schema_version": 1,
            "name": "bench-sweep",
            "workload": {"name": "multiturn", "requests": args.requests, "seed": 1, "rate": 20.0},
            "hardware": ["h100-sxm-pcie5", "ssd-gen4", "network-25gbe"],
            "mode": args.mode,
        }
    )
    axes = parse_grid(GRID)
    result = run_sweep(scenario, axes, jobs=args.jobs, executor=args.executor)
    with tempfile.TemporaryDirectory() as tmp:  # the files are part of a sweep's cost
        write_sweep(Path(tmp), result, scenario)
        write_dashboard(Path(tmp))
    loads = {r["worker"]: r["load_s"] for r in result.rows}
    print(
        json.dumps(
            {
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
                "requests": args.requests,
                "mode": result.mode,
                "executor": result.executor,
                "jobs": result.jobs,
                "points": len(result.rows),
                "sweep_wall_s": round(result.wall_s, 1),
                "worker_generate_s": sorted(round(v, 1) for v in loads.values()),
                "sum_replay_s": round(sum(r["wall_s"] for r in result.rows), 1),
                "rows": [
                    {
                        "cpu_blocks": r["cache_config.num_cpu_blocks"],
                        "tokens_per_block": r["cache_config.tokens_per_block"],
                        "hit_rate": round(r["hit_rate"], 4),
                        "replay_s": round(r["wall_s"], 2),
                        **({"ttft_p99_s": r["ttft_p99_s"]} if "ttft_p99_s" in r else {}),
                    }
                    for r in result.rows
                ],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
