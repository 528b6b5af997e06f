"""Sweeps: a grid of config overrides over a scenario, replayed in parallel.

::

    scenario = load_scenario("chat.yaml")  # or scenario_from_trace("chat.jsonl", ...)
    axes = parse_grid(["cache_config.num_cpu_blocks=1000,2000,4000"])
    result = run_sweep(scenario, axes, jobs=2)
    write_results(out, result, scenario)
    write_dashboard(out)

The scenario schema and the results schema are in ``SCHEMA.md`` beside this file.
"""

from .dashboard import DASHBOARD_FILE, write_dashboard
from .grid import grid_points, parse_grid
from .results import RESULTS_CSV, RESULTS_JSON, RESULTS_PARQUET, read_results, write_results
from .runner import (
    EXECUTORS,
    RESULTS_SCHEMA_VERSION,
    PointWorker,
    SweepError,
    SweepResult,
    result_columns,
    run_sweep,
)
from .scenario import (
    SCENARIO_SCHEMA_VERSION,
    Scenario,
    load_scenario,
    load_scenario_or_trace,
    scenario_from_dict,
    scenario_from_trace,
)

__all__ = [
    "DASHBOARD_FILE",
    "EXECUTORS",
    "RESULTS_CSV",
    "RESULTS_JSON",
    "RESULTS_PARQUET",
    "RESULTS_SCHEMA_VERSION",
    "SCENARIO_SCHEMA_VERSION",
    "PointWorker",
    "Scenario",
    "SweepError",
    "SweepResult",
    "grid_points",
    "load_scenario",
    "load_scenario_or_trace",
    "parse_grid",
    "read_results",
    "result_columns",
    "run_sweep",
    "scenario_from_dict",
    "scenario_from_trace",
    "write_dashboard",
    "write_results",
]
