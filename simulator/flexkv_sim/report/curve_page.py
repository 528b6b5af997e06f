"""``curve.html``: the hit-rate curve of ``flexkv-sim curve --out`` as a page.

Built from the curve's summary (``curve.json``) and its sampled points alone; the curve
itself is computed by :mod:`flexkv_sim.curve`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from . import figures
from .html import Page, fmt_int, fmt_pct, note, table

TIER_LABELS = {"cpu": "CPU", "ssd": "SSD", "remote": "remote"}


def write_curve_page(
    out: Path, capacities: np.ndarray, rates: np.ndarray, summary: dict[str, Any]
) -> Path:
    """The curve (linear or log capacity axis) and key capacities, as a page (plotly.js
    from the plotly.min.js beside it)."""
    import plotly.graph_objects as go

    tpb = summary["tokens_per_block"]
    tier = summary["tier"]
    name = TIER_LABELS[tier]
    behind = summary.get("behind_blocks") or {}
    front = " and ".join(f"{TIER_LABELS[t]} {fmt_int(n)}" for t, n in behind.items())
    line = {"color": figures.TIER_COLORS[tier], "width": 2}
    fig = go.Figure(
        go.Scatter(
            x=capacities,
            y=rates,
            mode="lines",
            line=line,
            hovertemplate="%{x:,} blocks: %{y:.2%}<extra></extra>",
        )
    )
    rows = [
        (f"{k} of the maximum", v["capacity_blocks"], v["hit_rate"])
        for k, v in summary["capacity_for"].items()
    ]
    configured = summary.get("configured_blocks")
    if configured:
        rows.append(("configured", configured, summary.get("configured_hit_rate")))
    for label, cap, _ in rows:
        mine = label == "configured"
        fig.add_vline(
            x=cap,
            annotation_text=label.replace(" the maximum", " max"),
            annotation_position="top left" if mine else "bottom right",
            line={
                "dash": "dash" if mine else "dot",
                "width": 1,
                "color": "#d62728" if mine else "#9aa5b1",
            },
        )
    title = f"{name} tier hit rate by capacity (LRU)"
    if front:
        title += f", behind {front} blocks"
    figures.styled(
        fig,
        title,
        f"{name} capacity (num_{tier}_blocks, blocks of {tpb} tokens)",
        f"{name} hit rate (its share of prompt tokens)",
        percent_y=True,
    )
    axis_buttons = [
        {"label": t, "method": "relayout", "args": [{"xaxis.type": t}]} for t in ("linear", "log")
    ]
    fig.update_layout(
        showlegend=False,
        updatemenus=[
            {
                "type": "buttons",
                "direction": "right",
                "x": 1.0,
                "xanchor": "right",
                "y": 1.12,
                "buttons": axis_buttons,
            }
        ],
    )
    page = Page(
        f"FlexKV Twin {name} hit-rate curve: {summary.get('trace_name', 'trace')}",
        f"{name} tier{f' behind {front} blocks' if front else ''} · "
        f"{fmt_int(summary['requests'])} requests · "
        f"{fmt_int(summary['distinct_blocks'])} distinct blocks · max hit rate "
        f"{fmt_pct(summary['max_hit_rate'])}",
    )
    text = (
        "Exact LRU hit rate at every capacity (one pass over the trace, stack distances), "
        f"as flexkv-sim replay --mode hitrate counts it (hit_rate_by_tier.{tier})."
    )
    if front:
        text += (
            f" The tiers in front stay at their configured sizes ({front} blocks); the "
            "CPU tier passes at most num_cpu_blocks blocks of a request down."
        )
    if tier == "remote":
        text += (
            " The remote store keeps what the remote index evicts and a GET adopts it "
            "back, so num_remote_blocks bounds only how many blocks one request loads."
        )
    page.section("Hit rate by capacity", page.figure(fig), note(text))
    cells = [(k, fmt_int(c), fmt_int(c * tpb), fmt_pct(h, 2)) for k, c, h in rows]
    page.section("Key capacities", table(("capacity", "blocks", "tokens", "hit rate"), cells))
    return page.write(Path(out))
