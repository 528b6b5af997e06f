"""``summary.json``: the result of a replay, the same shape for the twin and the engine.

Shared by ``flexkv-sim replay`` and ``flexkv-run replay`` (torch-free). These are the
pieces; :meth:`flexkv_engine.results.ReplayResult.summary` puts them together, and every
caller obtains a summary from it.

DESIGN.md 4: ``hit_rate`` = tokens served by CPU, SSD and remote / prompt tokens;
``hit_rate_by_tier`` gives each tier's served tokens / prompt tokens (GPU apart from
``hit_rate``); all rates are fractions. Provenance names the package version, the schema
version, the config hash and the seed.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping, Sequence
from typing import Any

from . import __version__
from .config import config_hash, config_to_dict
from .core.paths import CACHE_TIERS, PATHS
from .core.planner import Planner
from .replay_input import ReplayInput

SUMMARY_SCHEMA_VERSION = 1


def build_summary(
    inp: ReplayInput,
    planner: Planner,
    *,
    tool: str,
    mode: str,
    wall_s: float,
    seed: int | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The summary of a finished replay (``extra`` adds mode-specific sections)."""
    stats = planner.stats
    config = inp.config
    tpb = planner.tokens_per_block
    block_bytes = config.model_config.bytes_per_block(tpb)
    tiers = planner.tiers
    summary: dict[str, Any] = {
        "tool": tool,
        "mode": mode,
        "requests": len(inp.requests),
        "gets": stats.gets,
        "puts": stats.puts,
        "prompt_tokens": stats.prompt_tokens,
        "hit_rate": stats.hit_rate,
        "hit_rate_by_tier": stats.hit_rate_by_tier(),
        "hit_tokens_by_tier": dict(stats.tokens_by_tier),
        "gets_in_flight": stats.gets_in_flight,
        "tokens_per_block": tpb,
        "bytes_per_block": block_bytes,
        "blocks_by_path": {p: stats.blocks_by_path[p] for p in PATHS},
        "bytes_by_path": {p: stats.blocks_by_path[p] * block_bytes for p in PATHS},
        "ops_by_path": {p: stats.ops_by_path[p] for p in PATHS},
        "tiers": {
            name: {
                "capacity_blocks": tiers[name].capacity,
                "used_blocks": tiers[name].used,
                "evicted_blocks": tiers[name].evicted_blocks,
                "alloc_failures": tiers[name].alloc_failures,
                "stored_blocks": stats.stored_blocks[name],
            }
            for name in CACHE_TIERS
            if name in tiers
        },
        "load_s": inp.load_s,
        "wall_s": wall_s,
        "trace": {
            "path": inp.trace_path,
            "format": inp.trace_format,
            "recorded_tokens_per_block": inp.recorded_tokens_per_block,
        },
        "provenance": {
            "package_version": __version__,
            "schema_version": SUMMARY_SCHEMA_VERSION,
            "config_hash": config_hash(config),
            "seed": seed,
            "python": platform.python_version(),
        },
        "config": config_to_dict(config),
    }
    if extra:
        summary.update(extra)
    longest = max((len(r.keys) for r in inp.requests), default=0)
    summary["longest_prompt_blocks"] = longest
    summary["warnings"] = capacity_warnings(summary["tiers"], longest)
    return summary


def capacity_warnings(tiers: dict[str, dict[str, Any]], longest_blocks: int) -> list[str]:
    """A sentence per tier that could not place blocks it was asked to (allocation
    failures): the hit rate then says more about the tier's size than about the
    workload, so both tools print these and the report shows them."""
    out = []
    for name, tier in tiers.items():
        failures = tier.get("alloc_failures") or 0
        if not failures:
            continue
        capacity = tier["capacity_blocks"]
        key = f"cache_config.num_{name}_blocks"
        fits = (f"the longest prompt is {longest_blocks:,} blocks, more than the tier holds"
                if longest_blocks > capacity else "in-flight requests held the tier full")
        out.append(f"{name} tier: {failures:,} allocation failures in {capacity:,} blocks "
                   f"({fits}); its hits are bounded by its size: raise {key}")
    return out


#: The latency columns each tool summarises (the engine has no prefill column of its own).
TWIN_LATENCIES = ("get_s", "ttft_s", "queue_s", "prefill_s", "put_s")
RUN_LATENCIES = ("get_s", "ttft_s", "queue_s", "put_s")


def latency_section(
    records: Sequence[Sequence[Any]], columns: Sequence[str], names: Sequence[str]
) -> dict[str, dict[str, float | None]]:
    """Percentiles of the GETs' ``names`` columns (rows of ``columns``)."""
    index = {name: i for i, name in enumerate(columns)}
    op = index["op"]
    gets = [r for r in records if r[op] == "get"]
    return {name: percentiles([r[index[name]] for r in gets]) for name in names}


def timing_section(
    records: Sequence[Sequence[Any]],
    columns: Sequence[str],
    links: Mapping[str, Any],
    span_s: float,
    hardware: Sequence[str],
) -> dict[str, Any]:
    """The twin's timing part: latency percentiles, link utilisation and span.

    ``links`` map a path to an object with ``busy_s`` and ``ops`` (the twin's links)."""
    return {
        "latency": latency_section(records, columns, TWIN_LATENCIES),
        "span_s": span_s,
        "link_utilisation": {
            path: (link.busy_s / span_s if span_s > 0 else 0.0) for path, link in links.items()
        },
        "link_ops": {path: link.ops for path, link in links.items()},
        "hardware": list(hardware),
    }


def percentiles(values: Any) -> dict[str, float | None]:
    """p50, p90, p99 and mean of a sequence (None for an empty one)."""
    import numpy as np

    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return {"p50": None, "p90": None, "p99": None, "mean": None}
    p50, p90, p99 = np.percentile(data, [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "mean": float(data.mean())}
