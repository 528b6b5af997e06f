"""The sweep dashboard: a page built from a sweep's result files only; the sweep's folder
holds it and the ``plotly.min.js`` it loads, and opens offline as a whole.

For each grid key, the hit rate (and in timing mode TTFT and GET latency percentiles)
against its values, one line per combination of the other keys; then every point in a
table. Like the run report, it reads files and never imports the engine or the twin.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from ..report import figures
from ..report.html import Page, fmt_int, fmt_num, fmt_pct, fmt_seconds, note, table
from .results import read_results

DASHBOARD_FILE = "dashboard.html"
MAX_TABLE_ROWS = 2000


def write_dashboard(sweep_dir: Path, out: Path | None = None) -> Path:
    """Write ``dashboard.html`` (default: into ``sweep_dir``) and ``plotly.min.js`` beside
    it; returns the page's path."""
    sweep_dir = Path(sweep_dir)
    meta, frame = read_results(sweep_dir)
    page = build_dashboard(meta, frame)
    return page.write(Path(out) if out is not None else sweep_dir / DASHBOARD_FILE)


def build_dashboard(meta: dict[str, Any], frame: pd.DataFrame) -> Page:
    keys = [g["key"] for g in meta.get("grid", [])]
    scenario = meta.get("scenario", {})
    best = frame.loc[frame["hit_rate"].idxmax()] if len(frame) else None
    page = Page(
        f"FlexKV Twin sweep: {scenario.get('name', 'scenario')}",
        f"{meta.get('mode')} mode · {fmt_int(len(frame))} points · "
        f"{meta.get('executor')} executor, {meta.get('jobs')} jobs · "
        f"{fmt_seconds(meta.get('wall_s'))}",
    )
    info = [
        ("scenario", scenario.get("source", "")),
        ("trace", scenario.get("trace") or _workload_text(scenario.get("workload") or {})),
        ("mode", meta.get("mode")),
        (
            "grid",
            "; ".join(
                f"{g['key']} = {', '.join(map(str, g['values']))}" for g in meta.get("grid", [])
            )
            or "(one point)",
        ),
        ("points", fmt_int(len(frame))),
        ("executor / jobs", f"{meta.get('executor')} / {meta.get('jobs')}"),
        ("sweep wall time", fmt_seconds(meta.get("wall_s"))),
        ("sum of replay wall times", fmt_seconds(frame["wall_s"].sum() if len(frame) else 0)),
        ("results schema", str(meta.get("schema_version"))),
    ]
    if best is not None:
        info.append(
            (
                "best hit rate",
                f"{fmt_pct(best['hit_rate'], 2)} at " + ", ".join(f"{k}={best[k]}" for k in keys),
            )
        )
    page.section("Sweep", table(("", ""), info, code_cols=(1,)))
    timing = meta.get("mode") == "timing"
    for key in keys:
        parts = [page.figure(_by_key(frame, keys, key, "hit_rate", "hit rate", percent=True))]
        if timing:
            for col, label in (
                ("ttft_p50_s", "TTFT p50"),
                ("ttft_p99_s", "TTFT p99"),
                ("get_p99_s", "GET latency p99"),
            ):
                if col in frame.columns and frame[col].notna().any():
                    parts.append(page.figure(_by_key(frame, keys, key, col, label)))
        page.section(f"By {key}", *parts)
    if not keys:
        page.section("Result", note("No --grid key: the sweep ran the scenario once."))
    page.section("All points", _points_table(frame, keys, timing))
    return page


def _workload_text(w: dict[str, Any]) -> str:
    return f"generated {w.get('name')}: {w.get('requests')} requests, seed {w.get('seed')}"


def _ordered(part: pd.DataFrame, key: str) -> pd.DataFrame:
    try:
        return part.sort_values(key, kind="stable")
    except TypeError:  # mixed value types: order by their text
        return part.sort_values(key, key=lambda col: col.astype(str), kind="stable")


def _by_key(
    frame: pd.DataFrame,
    keys: list[str],
    key: str,
    column: str,
    label: str,
    *,
    percent: bool = False,
) -> go.Figure:
    """``column`` against ``key``'s values; one line per combination of the other keys.

    Rates are drawn as percentages, durations (seconds in the table) in milliseconds.
    """
    others = [k for k in keys if k != key]
    numeric = pd.api.types.is_numeric_dtype(frame[key])
    groups = list(frame.groupby(others, sort=True, dropna=False)) if others else [((), frame)]
    fig = go.Figure()
    for i, (combo, group) in enumerate(groups):
        values = combo if isinstance(combo, tuple) else (combo,)
        name = ", ".join(f"{k}={v}" for k, v in zip(others, values, strict=True)) or label
        part = _ordered(group, key)
        raw = part[column].to_numpy(dtype=float)
        text = [fmt_pct(v, 2) if percent else fmt_seconds(v) for v in raw]
        fig.add_trace(
            go.Scatter(
                x=part[key] if numeric else part[key].astype(str),
                y=raw if percent else raw * 1e3,
                name=name,
                mode="lines+markers",
                text=text,
                line={"color": figures.RUN_COLORS[i % len(figures.RUN_COLORS)]},
                hovertemplate=f"{name}<br>{key}=%{{x}}: %{{text}}<extra></extra>",
            )
        )
    figures.styled(
        fig, f"{label} by {key}", key, label if percent else f"{label} (ms)", percent_y=percent
    )
    fig.update_layout(showlegend=bool(others))
    if not numeric:
        fig.update_xaxes(type="category")
    return fig


def _points_table(frame: pd.DataFrame, keys: list[str], timing: bool) -> str:
    header = ["point", *keys, "hit rate", "CPU", "SSD", "remote", "GPU"]
    if timing:
        header += ["TTFT p50", "TTFT p99", "GET p99"]
    header += ["replay wall", "worker"]
    rows = []
    for _, r in frame.head(MAX_TABLE_ROWS).iterrows():
        row = [
            fmt_int(r["point"]),
            *(_cell(r[k]) for k in keys),
            fmt_pct(r["hit_rate"], 2),
            *(fmt_pct(r[f"hit_rate_{t}"], 2) for t in ("cpu", "ssd", "remote", "gpu")),
        ]
        if timing:
            row += [
                fmt_seconds(r.get("ttft_p50_s")),
                fmt_seconds(r.get("ttft_p99_s")),
                fmt_seconds(r.get("get_p99_s")),
            ]
        row += [fmt_seconds(r["wall_s"]), str(r["worker"])]
        rows.append(row)
    parts = [table(header, rows, code_cols=range(1, len(keys) + 1))]
    if len(frame) > MAX_TABLE_ROWS:
        parts.append(
            note(
                f"First {fmt_int(MAX_TABLE_ROWS)} of {fmt_int(len(frame))} points; "
                "all are in results.csv."
            )
        )
    return "\n".join(parts)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return fmt_num(value, 6)
    return str(value)
