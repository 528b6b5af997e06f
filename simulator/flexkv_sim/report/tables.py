"""Rows of the tables shared by the run report and the comparison page.

Each function turns one run into ``(label, formatted value)`` rows, so a comparison lays
the same rows side by side.
"""

from __future__ import annotations

from typing import Any

from .html import MISSING, fmt_bytes, fmt_int, fmt_pct, fmt_seconds
from .load import LATENCY_LABELS, LATENCY_METRICS, PATHS, TIERS, RunData

Row = tuple[str, str]


def _get(d: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(key)
    return d


TIER_NAMES = {"cpu": "CPU", "ssd": "SSD", "remote": "remote"}


def hit_rate_scope(summary: dict[str, Any], fmt: Any = fmt_pct) -> str:
    """What ``hit_rate`` counts, and the GPU prefix hits it leaves out.

    ``CPU+SSD tiers; GPU prefix hits 12.0% not counted, 65.0% with them``, or ``CPU
    tier; no GPU prefix cache``. The same words as the terminal summary
    (``flexkv_engine.cli_common.hit_rate_scope``), which formats the rates as fractions.
    """
    tiers = [t for t in TIER_NAMES if t in (summary.get("tiers") or {})] or list(TIER_NAMES)
    scope = "+".join(TIER_NAMES[t] for t in tiers) + (" tier" if len(tiers) == 1 else " tiers")
    gpu = _get(summary, "hit_rate_by_tier", "gpu")
    gpu_blocks = _get(summary, "config", "serving_config", "num_gpu_blocks")
    if not gpu and gpu_blocks == 0:
        return f"{scope}; no GPU prefix cache"
    if gpu is None:
        return f"{scope}; GPU prefix hits not recorded"
    total = summary.get("hit_rate")
    with_gpu = f", {fmt(total + gpu)} with them" if isinstance(total, int | float) else ""
    return f"{scope}; GPU prefix hits {fmt(gpu)} not counted{with_gpu}"


def hit_rate_headline(summary: dict[str, Any]) -> str:
    """``hit rate 53.0% (CPU+SSD tiers; GPU prefix hits 12.0% not counted, ...)``."""
    return f"hit rate {fmt_pct(summary.get('hit_rate'))} ({hit_rate_scope(summary)})"


def run_info_rows(run: RunData) -> list[Row]:
    """Where the run came from: trace, tool, mode and provenance."""
    s = run.summary
    trace = s.get("trace") or {}
    prov = s.get("provenance") or {}
    rows = [
        ("trace", str(trace.get("path") or MISSING)),
        ("trace format", str(trace.get("format") or MISSING)),
        ("recorded tokens per block", fmt_int(trace.get("recorded_tokens_per_block"))),
        ("tool / mode", f"{s.get('tool', MISSING)} / {run.mode}"),
        ("tokens per block", fmt_int(s.get("tokens_per_block"))),
        ("package version", str(prov.get("package_version") or MISSING)),
        ("schema version", str(prov.get("schema_version") or MISSING)),
        ("config hash", str(prov.get("config_hash") or MISSING)),
        ("seed", MISSING if prov.get("seed") is None else str(prov.get("seed"))),
    ]
    if s.get("hardware"):
        rows.append(("hardware profiles", ", ".join(map(str, s["hardware"]))))
    rows.append(("result directory", str(run.path)))
    return rows


def key_figure_rows(run: RunData) -> list[Row]:
    """Requests, hit rates (total and per tier), latency percentiles and run times."""
    s = run.summary
    by_tier = s.get("hit_rate_by_tier") or {}
    total, gpu = s.get("hit_rate"), by_tier.get("gpu")
    rows = [
        ("requests", fmt_int(s.get("requests"))),
        ("prompt tokens", fmt_int(s.get("prompt_tokens"))),
        ("hit rate (CPU + SSD + remote; GPU prefix hits apart)", fmt_pct(total)),
        (
            "hit rate with GPU prefix hits",
            fmt_pct(total + gpu)
            if isinstance(total, int | float) and isinstance(gpu, int | float)
            else MISSING,
        ),
    ]
    rows += [(f"hit rate {tier}", fmt_pct(by_tier.get(tier))) for tier in TIERS]
    if s.get("gets_in_flight") is not None:
        rows.append(("GETs that waited on a PUT in flight", fmt_int(s.get("gets_in_flight"))))
    for metric in ("get_s", "ttft_s", "queue_s"):
        stats = run.latency_stats(metric)
        if stats is None:
            continue
        label = LATENCY_LABELS[metric]
        rows += [(f"{label} {p}", fmt_seconds(stats.get(p))) for p in ("p50", "p90", "p99")]
    if s.get("span_s") is not None:
        rows.append(("simulated span", fmt_seconds(s.get("span_s"))))
    rows += [
        ("trace load time", fmt_seconds(s.get("load_s"))),
        ("replay wall time", fmt_seconds(s.get("wall_s"))),
    ]
    return rows


def latency_table_rows(run: RunData) -> list[list[str]]:
    """One row per latency metric present: name, p50, p90, p99, mean."""
    rows = []
    for metric in LATENCY_METRICS:
        stats = run.latency_stats(metric)
        if stats is None:
            continue
        rows.append(
            [
                LATENCY_LABELS[metric],
                *(fmt_seconds(stats.get(p)) for p in ("p50", "p90", "p99", "mean")),
            ]
        )
    return rows


def path_table(run: RunData) -> tuple[tuple[str, ...], list[list[str]]]:
    """Per transfer path: bytes, blocks, operations and (timing mode) mean busy fraction."""
    s = run.summary
    util = run.link_utilisation()
    header = ("path", "bytes", "blocks", "operations")
    rows = [
        [
            path,
            fmt_bytes(_get(s, "bytes_by_path", path)),
            fmt_int(_get(s, "blocks_by_path", path)),
            fmt_int(_get(s, "ops_by_path", path)),
        ]
        for path in paths_of(run)
    ]
    if util:
        header += ("mean busy fraction",)
        for row in rows:
            row.append(fmt_pct(util.get(row[0])))
    return header, rows


def paths_of(run: RunData) -> list[str]:
    """The transfer paths a run names, in the standard order, unknown ones after."""
    names: set[str] = set()
    for key in ("bytes_by_path", "blocks_by_path", "ops_by_path", "link_utilisation"):
        names |= set(run.summary.get(key) or {})
    return [p for p in PATHS if p in names] + sorted(names - set(PATHS))


def tier_table_rows(run: RunData) -> list[list[str]]:
    """Per cache tier: capacity, occupancy, stored, evicted, allocation failures, hits."""
    s = run.summary
    tiers = s.get("tiers") or {}
    by_tier = s.get("hit_rate_by_tier") or {}
    hit_tokens = s.get("hit_tokens_by_tier") or {}
    rows = []
    for name in [t for t in TIERS if t in tiers] + sorted(set(tiers) - set(TIERS)):
        info = tiers[name] or {}
        cap, used = info.get("capacity_blocks"), info.get("used_blocks")
        occupancy = None
        if isinstance(cap, int | float) and cap and isinstance(used, int | float):
            occupancy = used / cap
        rows.append(
            [
                name,
                fmt_int(cap),
                fmt_int(used),
                fmt_pct(occupancy),
                fmt_int(info.get("stored_blocks")),
                fmt_int(info.get("evicted_blocks")),
                fmt_int(info.get("alloc_failures")),
                fmt_int(hit_tokens.get(name)),
                fmt_pct(by_tier.get(name)),
            ]
        )
    return rows


TIER_TABLE_HEADER = (
    "tier",
    "capacity (blocks)",
    "used (blocks)",
    "occupancy",
    "stored (blocks)",
    "evicted (blocks)",
    "allocation failures",
    "hit tokens",
    "hit rate",
)
LATENCY_TABLE_HEADER = ("metric (GET requests)", "p50", "p90", "p99", "mean")


def flatten(config: Any, prefix: str = "") -> dict[str, str]:
    """A nested config as ``a.b.c -> value`` (lists as their JSON-ish repr)."""
    if not isinstance(config, dict):
        return {prefix: repr(config) if isinstance(config, str) else str(config)}
    out: dict[str, str] = {}
    for key, value in config.items():
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out
