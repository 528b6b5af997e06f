"""A sweep's result directory: ``results.csv``, ``results.parquet``, ``results.json``.

``results.csv`` and ``results.parquet`` hold the same table, one row per grid point,
with a ``schema_version`` column; ``results.json`` is the sidecar (schema version,
column meanings, grid, scenario, how the sweep ran). See ``SCHEMA.md``.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

from .. import __version__
from .runner import RESULTS_SCHEMA_VERSION, SweepResult
from .scenario import Scenario

RESULTS_CSV = "results.csv"
RESULTS_PARQUET = "results.parquet"
RESULTS_JSON = "results.json"

COLUMN_DOCS = {
    "point": "index of the grid point (the last --grid key varies fastest)",
    "mode": "hitrate or timing",
    "hit_rate": "tokens served by CPU, SSD and remote / prompt tokens",
    "hit_rate_gpu": "tokens of the serving engine's GPU prefix cache / prompt tokens",
    "hit_rate_cpu": "tokens served by the CPU tier / prompt tokens",
    "hit_rate_ssd": "tokens served by the SSD tier / prompt tokens",
    "hit_rate_remote": "tokens served by the remote tier / prompt tokens",
    "requests": "requests replayed",
    "gets": "GET requests",
    "prompt_tokens": "prompt tokens of the GETs",
    "gets_in_flight": "GETs that found blocks still being written",
    "block_tokens": "resolved cache_config.tokens_per_block",
    "cpu_blocks": "resolved cache_config.num_cpu_blocks",
    "ssd_blocks": "resolved cache_config.num_ssd_blocks (0: no SSD tier)",
    "remote_blocks": "resolved cache_config.num_remote_blocks (0: no remote tier)",
    "get_p50_s": "GET latency, median (s, timing mode)",
    "get_p90_s": "GET latency, 90th percentile (s, timing mode)",
    "get_p99_s": "GET latency, 99th percentile (s, timing mode)",
    "ttft_p50_s": "time to first token, median (s, timing mode)",
    "ttft_p90_s": "time to first token, 90th percentile (s, timing mode)",
    "ttft_p99_s": "time to first token, 99th percentile (s, timing mode)",
    "profiles": "hardware profiles merged for the point (timing mode)",
    "config_hash": "hash of the resolved config (as in summary.json)",
    "wall_s": "wall time of the point's replay (s)",
    "load_s": "wall time its worker took to read or generate the trace, once (s)",
    "worker": "host:pid of the worker that ran the point",
    "schema_version": f"version of this table's schema ({RESULTS_SCHEMA_VERSION})",
}


def write_results(out: Path, result: SweepResult, scenario: Scenario) -> Path:
    """Write the three result files into ``out`` (created); returns ``out``."""
    import pandas as pd

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(result.rows, columns=result.columns)
    frame.to_csv(out / RESULTS_CSV, index=False)
    parquet = frame.copy()
    for key, values in result.axes:  # parquet needs one type per column
        if len({type(v) for v in values}) > 1:
            parquet[key] = parquet[key].astype(str)
    parquet.to_parquet(out / RESULTS_PARQUET, index=False)
    grid_keys = [k for k, _ in result.axes]
    meta = {
        "schema_version": RESULTS_SCHEMA_VERSION,
        "kind": "flexkv-sim sweep",
        "package_version": __version__,
        "python": platform.python_version(),
        "mode": result.mode,
        "executor": result.executor,
        "jobs": result.jobs,
        "points": len(result.rows),
        "wall_s": result.wall_s,
        "grid": [{"key": k, "values": v} for k, v in result.axes],
        "scenario": scenario.to_dict(),
        "columns": {
            c: COLUMN_DOCS.get(c, "grid key (the value of this point)")
            if c not in grid_keys
            else "grid key (the value of this point)"
            for c in result.columns
        },
        **result.meta,
    }
    (out / RESULTS_JSON).write_text(json.dumps(meta, indent=2, default=str) + "\n")
    return out


def read_results(sweep_dir: Path) -> tuple[dict[str, Any], Any]:
    """The sidecar and the table of a sweep directory (parquet preferred)."""
    import pandas as pd

    sweep_dir = Path(sweep_dir)
    meta = json.loads((sweep_dir / RESULTS_JSON).read_text(encoding="utf-8"))
    version = meta.get("schema_version")
    if version != RESULTS_SCHEMA_VERSION:
        raise ValueError(
            f"{sweep_dir / RESULTS_JSON}: schema_version {version!r} is not "
            f"{RESULTS_SCHEMA_VERSION}"
        )
    parquet = sweep_dir / RESULTS_PARQUET
    frame = pd.read_parquet(parquet) if parquet.exists() else pd.read_csv(sweep_dir / RESULTS_CSV)
    return meta, frame
