"""The doctor's report as text (stdout), Markdown (``doctor.md``) and files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

METRIC_NAMES = {"hit_rate": "hit rate", "h2d_op_mean_s": "H2D latency per op"}


def format_metric(metric: str, value: float) -> str:
    if metric.endswith("_s"):
        return f"{value * 1e3:.3f} ms"
    return f"{value:.2f}"


def effect(s: dict[str, Any]) -> str:
    """``hit rate 0.31 -> 0.74 (predicted)``."""
    m = s["metric"]
    return (
        f"{METRIC_NAMES.get(m, m)} {format_metric(m, s['before'])} -> "
        f"{format_metric(m, s['after'])} (predicted)"
    )


def _changes(changes: dict[str, Any]) -> str:
    return ", ".join(f"{k.split('.')[-1]}={json.dumps(v)}" for k, v in changes.items())


def render_text(report: dict[str, Any], *, markdown: bool = False) -> str:
    h = "## " if markdown else ""
    bullet = "- " if markdown else "  "
    lines = [
        f"{'# ' if markdown else ''}FlexKV doctor: {report['name']}",
        "",
        f"trace: {report['trace']} ({report['requests']} requests)",
        (
            f"hit rate {report['hit_rate']:.2f}: {report['grade'].upper()} "
            "(> 0.80 excellent, 0.50-0.80 good, < 0.50 needs work)"
        ),
    ]
    reuse = report.get("reuse")
    if reuse:
        lines.append(
            f"infinite-cache hit rate (bound) {reuse['infinite_cache_hit_rate']:.2f}, "
            f"{reuse['distinct_blocks']} distinct blocks"
        )
    cap = report.get("capacity")
    if cap:
        at = cap["lru_hit_rate"]
        lines.append(
            f"LRU hit rate at {cap['cpu_blocks']} CPU blocks: 1x {at['1x']:.2f}, "
            f"2x {at['2x']:.2f}, "
            f"4x {at['4x']:.2f}, 10x {at['10x']:.2f}; 90% of the bound from "
            f"{cap['blocks_for_90pct']} blocks"
        )
        if cap.get("cpu_plus_ssd_blocks"):
            lines.append(
                f"CPU + SSD ({cap['cpu_plus_ssd_blocks']} blocks) bound: "
                f"{cap['cpu_plus_ssd_bound']:.2f}"
            )
    lines += ["", f"{h}Memory per tier"]
    mem = report["memory"]
    lines.append(
        f"{bullet}{mem['bytes_per_block']} bytes per block "
        f"({mem['tokens_per_block']} tokens x {mem['bytes_per_token']} bytes)"
    )
    for tier, v in mem["tiers"].items():
        if v["blocks"]:
            lines.append(f"{bullet}{tier}: {v['blocks']} blocks = {v['gib']:.2f} GiB")
    tr = report.get("transfers")
    if tr:
        lines += ["", f"{h}Transfers (timing mode, {'+'.join(tr['profiles'])})"]
        for path, p in tr["paths"].items():
            limit = p.get("limit_per_block_s")
            verdict = (
                ""
                if limit is None
                else (f" (limit {limit * 1e3:g} ms: {'ok' if p.get('ok') else 'SLOW'})")
            )
            lines.append(
                f"{bullet}{path}: {p['ops']} ops, {p['op_mean_s'] * 1e3:.3f} ms per op, "
                f"{p['per_block_mean_s'] * 1e3:.4f} ms per block{verdict}"
            )
        lines.append(
            f"{bullet}GET latency p50 {tr['get_s']['p50'] * 1e3:.3f} ms, "
            f"p99 {tr['get_s']['p99'] * 1e3:.3f} ms"
        )
    lines += ["", f"{h}Findings"]
    for f in report["findings"]:
        lines.append(f"{bullet}[{f['kind']}] {f['message']}")
    lines += ["", f"{h}Suggestions"]
    if not report["suggestions"]:
        lines.append(f"{bullet}none: no configuration change the twin predicts to help")
    for i, s in enumerate(report["suggestions"], 1):
        lines.append(f"{'- ' if markdown else ''}{i}. {_changes(s['changes'])}: {effect(s)}")
        lines.append(f"{'  ' if markdown else '   '}{s['reason']}")
    return "\n".join(lines) + "\n"


def write_doctor_dir(out: Path, report: dict[str, Any]) -> Path:
    """``doctor.json`` (the report) and ``doctor.md`` (the same, readable)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "doctor.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    (out / "doctor.md").write_text(render_text(report, markdown=True))
    return out
