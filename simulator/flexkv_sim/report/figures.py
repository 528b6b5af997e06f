"""Figures shared by the run report and the comparison page.

Every builder aggregates first (time bins, at most ``MAX_CDF_POINTS`` per CDF), so a page
for a 50,000-request run stays small and quick to draw. Builders take mappings from a
series name to its data: the run report passes one run's metrics, the comparison passes
one metric of several runs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .html import byte_unit, fmt_bytes
from .load import PATHS, TIERS

MAX_CDF_POINTS = 2000
TIME_BINS = 120  # bins of request time for hit rate over time
UTILISATION_BINS = 400  # at most this many bins of simulated time per link

TIER_LABELS = {"gpu": "GPU (serving engine)", "cpu": "CPU", "ssd": "SSD", "remote": "remote"}
TIER_COLORS = {"gpu": "#9aa5b1", "cpu": "#1f77b4", "ssd": "#ff7f0e", "remote": "#2ca02c"}
PATH_COLORS = {
    "h2d": "#1f77b4",
    "d2h": "#6baed6",
    "ssd_read": "#ff7f0e",
    "ssd_write": "#fdae6b",
    "remote_read": "#2ca02c",
    "remote_write": "#74c476",
}
RUN_COLORS = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#9467bd",
    "#ff7f0e",
    "#17becf",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
)
_BLANK_TEMPLATE = go.layout.Template()  # plotly's default template adds ~7 KB per figure


def styled(
    fig: go.Figure,
    title: str,
    x_title: str,
    y_title: str,
    *,
    height: int = 420,
    percent_y: bool = False,
) -> go.Figure:
    """The common look: white plot, light grid, title top left, legend on top."""
    fig.update_layout(
        template=_BLANK_TEMPLATE,
        title={"text": title, "x": 0.01, "xanchor": "left"},
        height=height,
        margin={"l": 70, "r": 24, "t": 80, "b": 56},
        font={
            "family": "system-ui, -apple-system, Segoe UI, Roboto, Arial, sans-serif",
            "size": 13,
            "color": "#1f2933",
        },
        plot_bgcolor="#ffffff",
        paper_bgcolor="#ffffff",
        colorway=list(RUN_COLORS),
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "left", "x": 0},
        hoverlabel={"namelength": -1},
    )
    axis = {
        "showgrid": True,
        "gridcolor": "#e4e7eb",
        "zeroline": False,
        "linecolor": "#9aa5b1",
        "showline": True,
        "ticks": "outside",
    }
    fig.update_xaxes(title_text=x_title, **axis)
    fig.update_yaxes(title_text=y_title, **axis)
    if percent_y:
        fig.update_yaxes(tickformat=".0%", rangemode="tozero")
    return fig


# ---- hit rate over time -----------------------------------------------------------------
def binned_tier_share(gets: pd.DataFrame, bins: int = TIME_BINS) -> pd.DataFrame:
    """Token-weighted share of prompt tokens each tier served, per bin of request time.

    Columns: ``t`` (bin middle, seconds since the first request), ``requests``,
    ``tokens`` and one share column per tier present. Empty bins are dropped.
    """
    tiers = [t for t in TIERS if f"{t}_tokens" in gets.columns]
    data = gets.dropna(subset=["t", "num_tokens"])
    t = data["t"].to_numpy(dtype=float)
    rel = t - t.min() if t.size else t
    span = float(rel.max()) if rel.size else 0.0
    n = max(1, min(bins, len(data) // 25))
    if span > 0:
        width = span / n
        idx = np.minimum((rel / width).astype(np.int64), n - 1)
        mids = (np.arange(n) + 0.5) * width
    else:  # every request at one instant: bin by position instead
        idx = np.arange(len(data)) * n // max(len(data), 1)
        mids = np.zeros(n)
    tokens = np.bincount(idx, weights=data["num_tokens"].to_numpy(dtype=float), minlength=n)
    out = pd.DataFrame(
        {
            "t": mids,
            "requests": np.bincount(idx, minlength=n),
            "tokens": tokens,
        }
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        for tier in tiers:
            served = data[f"{tier}_tokens"].fillna(0).to_numpy(dtype=float)
            out[tier] = np.bincount(idx, weights=served, minlength=n) / tokens
    return out[out["tokens"] > 0].reset_index(drop=True)


def tier_share_figure(gets: pd.DataFrame, bins: int = TIME_BINS) -> go.Figure:
    """Stacked areas: CPU, SSD, remote (their top is the FlexKV hit rate), then GPU."""
    share = binned_tier_share(gets, bins)
    fig = go.Figure()
    for tier in ("cpu", "ssd", "remote", "gpu"):
        if tier not in share.columns:
            continue
        fig.add_trace(
            go.Scatter(
                x=share["t"],
                y=share[tier],
                name=TIER_LABELS[tier],
                stackgroup="tiers",
                mode="lines",
                line={"width": 0.5, "color": TIER_COLORS[tier]},
                customdata=share["requests"],
                hovertemplate=f"{TIER_LABELS[tier]}: %{{y:.1%}} of prompt tokens"
                "<br>%{customdata} GETs in bin<extra></extra>",
            )
        )
    width = float(share["t"].iloc[1] - share["t"].iloc[0]) if len(share) > 1 else 0.0
    fig.update_layout(hovermode="x unified")
    styled(
        fig,
        "Hit rate over time by tier (token-weighted; CPU + SSD + remote = FlexKV hit rate)",
        f"time since first request (s), bins of {width:.3g} s" if width else "time (s)",
        "share of prompt tokens",
        percent_y=True,
    )
    fig.update_yaxes(range=[0, 1])
    return fig


# ---- CDFs -------------------------------------------------------------------------------
def cdf_points(
    values: np.ndarray, max_points: int = MAX_CDF_POINTS
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted values and their cumulative fractions, thinned to at most ``max_points``.

    Points are taken evenly by rank and always include the last, so p99 and the maximum
    stay on the curve.
    """
    data = np.sort(values[np.isfinite(values)])
    n = data.size
    if n == 0:
        return data, data
    if n <= max_points:
        idx = np.arange(n)
    else:
        idx = np.unique(np.linspace(0, n - 1, max_points).round().astype(np.int64))
    return data[idx], (idx + 1) / n


def cdf_figure(
    series: Mapping[str, np.ndarray],
    title: str,
    *,
    scale: float = 1e3,
    unit: str = "ms",
    colors: Sequence[str] | None = None,
    max_points: int = MAX_CDF_POINTS,
) -> go.Figure:
    """Empirical CDFs of durations given in seconds, drawn in ``unit`` (``scale`` per second).

    The x axis starts logarithmic when the values span more than two decades; buttons
    switch between log and linear.
    """
    fig = go.Figure()
    lo, hi = math.inf, 0.0
    for i, (name, values) in enumerate(series.items()):
        x, y = cdf_points(np.asarray(values, dtype=float), max_points)
        if x.size == 0:
            continue
        x = x * scale
        positive = x[x > 0]
        if positive.size:
            lo, hi = min(lo, float(positive[0])), max(hi, float(positive[-1]))
        line = {"width": 2, "shape": "hv"}
        if colors is not None:
            line["color"] = colors[i % len(colors)]
        fig.add_trace(
            go.Scatter(
                x=x.astype(np.float32),
                y=y.astype(np.float32),
                name=name,
                mode="lines",
                line=line,
                hovertemplate=f"{name}<br>%{{x:.4g}} {unit}: %{{y:.2%}} of GETs<extra></extra>",
            )
        )
    log = hi > 0 and hi / lo > 100
    styled(fig, title, f"duration ({unit})", "share of GETs at or below", percent_y=True)
    fig.update_yaxes(range=[0, 1.02])
    # Decade labels only on a log axis, and no SI prefixes that would clash with the unit.
    fig.update_xaxes(type="log" if log else "linear", minorloglabels="none", exponentformat="power")
    fig.update_layout(
        updatemenus=[
            {
                "type": "buttons",
                "direction": "left",
                "x": 1.0,
                "xanchor": "right",
                "y": 1.0,
                "yanchor": "bottom",
                "pad": {"b": 4},
                "showactive": True,
                "active": 0 if log else 1,
                "buttons": [
                    {"label": "log x", "method": "relayout", "args": [{"xaxis.type": "log"}]},
                    {"label": "linear x", "method": "relayout", "args": [{"xaxis.type": "linear"}]},
                ],
            }
        ]
    )
    return fig


# ---- bars -------------------------------------------------------------------------------
BarUnit = Literal["percent", "bytes", "count"]


def bar_figure(
    categories: Sequence[str],
    groups: Mapping[str, Sequence[float | None]],
    title: str,
    y_title: str,
    *,
    unit: BarUnit = "count",
    colors: Sequence[str] | None = None,
    category_labels: Mapping[str, str] | None = None,
) -> go.Figure:
    """Grouped bars: one bar per category for each group (one group: a plain bar chart)."""
    labels = [(category_labels or {}).get(c, c) for c in categories]
    largest = max(
        (abs(v) for vals in groups.values() for v in vals if v is not None and math.isfinite(v)),
        default=0.0,
    )
    byte_name, byte_size = byte_unit(largest)
    fig = go.Figure()
    for i, (name, values) in enumerate(groups.items()):
        y = [math.nan if v is None else float(v) for v in values]
        if unit == "bytes":
            text = [fmt_bytes(v) for v in y]
            y = [v / byte_size for v in y]
        elif unit == "percent":
            text = [f"{v:.1%}" if math.isfinite(v) else "" for v in y]
        else:
            text = [f"{v:,.6g}" if math.isfinite(v) else "" for v in y]
        marker = {"color": colors[i % len(colors)]} if colors is not None else {}
        fig.add_trace(
            go.Bar(
                x=labels,
                y=y,
                name=name,
                text=text,
                textposition="outside",
                marker=marker,
                cliponaxis=False,
                hovertemplate=f"{name}<br>%{{x}}: %{{text}}<extra></extra>",
            )
        )
    if unit == "bytes":
        y_title = f"{y_title} ({byte_name})"
    styled(fig, title, "", y_title, percent_y=unit == "percent")
    fig.update_layout(barmode="group", showlegend=len(groups) > 1, uniformtext_minsize=9)
    return fig


# ---- link utilisation -------------------------------------------------------------------
def binned_utilisation(util: pd.DataFrame, max_bins: int = UTILISATION_BINS) -> pd.DataFrame:
    """Busy fraction and throughput of each link on a regular grid of simulated time.

    The input lists only bins in which a link was active; here every path gets every
    bin (zero where idle), and bins are merged so there are at most ``max_bins``.
    Columns: ``path``, ``t`` (bin middle, s), ``busy_fraction``, ``bytes_per_s``.
    """
    t_lo = min(float(util["t_start"].min()), 0.0)
    t_hi = float(util["t_end"].max())
    native = float((util["t_end"] - util["t_start"]).median())
    width = max(native, (t_hi - t_lo) / max_bins, 1e-12)
    n = max(1, math.ceil((t_hi - t_lo) / width - 1e-9))
    starts = t_lo + np.arange(n) * width
    widths = np.minimum(starts + width, t_hi) - starts
    widths[widths <= 0] = width
    mid = 0.5 * (util["t_start"] + util["t_end"]).to_numpy(dtype=float)
    idx = np.clip(((mid - t_lo) / width).astype(np.int64), 0, n - 1)
    busy_s = (util["busy_fraction"] * (util["t_end"] - util["t_start"])).to_numpy(dtype=float)
    moved = (
        util["bytes"].fillna(0).to_numpy(dtype=float)
        if "bytes" in util.columns
        else np.zeros(len(util))
    )
    order = [p for p in PATHS if p in set(util["path"])]
    order += sorted(set(util["path"]) - set(order))
    frames = []
    paths = util["path"].to_numpy()
    for path in order:
        sel = paths == path
        frames.append(
            pd.DataFrame(
                {
                    "path": path,
                    "t": starts + widths / 2,
                    "busy_fraction": np.bincount(idx[sel], weights=busy_s[sel], minlength=n)
                    / widths,
                    "bytes_per_s": np.bincount(idx[sel], weights=moved[sel], minlength=n) / widths,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def utilisation_figure(util: pd.DataFrame, max_bins: int = UTILISATION_BINS) -> go.Figure:
    """Busy fraction of each link over simulated time: one row per path, shared time axis.

    Rows rather than overlaid lines: six busy links drawn on one axis hide one another.
    The hover gives the throughput of the bin.
    """
    grid = binned_utilisation(util, max_bins)
    paths = list(dict.fromkeys(grid["path"]))
    fig = make_subplots(rows=len(paths), cols=1, shared_xaxes=True, vertical_spacing=0.025)
    for row, path in enumerate(paths, start=1):
        part = grid[grid["path"] == path]
        color = PATH_COLORS.get(path, RUN_COLORS[row % len(RUN_COLORS)])
        fig.add_trace(
            go.Scatter(
                x=part["t"].to_numpy(np.float32),
                y=part["busy_fraction"].to_numpy(np.float32),
                name=path,
                mode="lines",
                fill="tozeroy",
                line={"width": 1, "shape": "hv", "color": color},
                customdata=part["bytes_per_s"].to_numpy(np.float32),
                hovertemplate=f"{path}: busy %{{y:.1%}}, %{{customdata:.3s}}B/s<extra></extra>",
            ),
            row=row,
            col=1,
        )
    ts = grid["t"].drop_duplicates()
    width = float(ts.iloc[1] - ts.iloc[0]) if len(ts) > 1 else 0.0
    styled(
        fig,
        "Link utilisation over time (busy fraction of each path)",
        "",
        "",
        height=110 + 95 * len(paths),
        percent_y=True,
    )
    top = float(grid["busy_fraction"].max()) if len(grid) else 1.0
    fig.update_yaxes(range=[0, max(1.0, top) * 1.05], nticks=3)
    fig.update_layout(showlegend=False, hovermode="x")
    for row, path in enumerate(paths, start=1):
        fig.update_yaxes(title_text=path, title_font_size=12, row=row, col=1)
    fig.update_xaxes(
        title_text=f"simulated time (s), bins of {width:.3g} s" if width else "simulated time (s)",
        row=len(paths),
        col=1,
    )
    return fig


# ---- capacity curve ---------------------------------------------------------------------
def capacity_curve_figure(
    curve: pd.DataFrame,
    *,
    configured: int | None,
    bound: float | None = None,
    blocks_for_90pct: int | None = None,
    with_ssd: int | None = None,
    tokens_per_block: int | None = None,
) -> go.Figure:
    """The CPU tier's LRU hit rate by capacity, with the configured capacity marked.

    Markers are two-point lines rather than plotly shapes, so they stay in place on a
    logarithmic axis and are named in the legend. The x axis starts logarithmic when the
    configured capacity and the bound's lie far apart.
    """
    x = curve["capacity_blocks"].to_numpy(dtype=float)
    y = curve["hit_rate"].to_numpy(dtype=float)
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=x,
            y=y.astype(np.float32),
            name="LRU hit rate (CPU tier)",
            mode="lines",
            line={"color": TIER_COLORS["cpu"], "width": 2},
            hovertemplate="%{x:,} blocks: %{y:.2%}<extra></extra>",
        )
    )
    top = max(float(np.nanmax(y)) if y.size else 0.0, bound or 0.0) * 1.08 or 1.0
    marks = [
        (blocks_for_90pct, "90% of the bound", "#9aa5b1", "dot"),
        (with_ssd, "CPU + SSD", TIER_COLORS["ssd"], "dashdot"),
        (configured, "configured", "#d62728", "dash"),
    ]
    for cap, label, color, dash in marks:
        if cap is None:
            continue
        fig.add_trace(
            go.Scatter(
                x=[cap, cap],
                y=[0, top],
                name=f"{label}: {cap:,} blocks",
                mode="lines",
                line={"color": color, "dash": dash, "width": 1.5},
                hovertemplate=f"{label}: {cap:,} blocks<extra></extra>",
            )
        )
    right = max([float(x.max()) if x.size else 1.0, *(c for c, *_ in marks if c)])
    if bound is not None:
        fig.add_trace(
            go.Scatter(
                x=[1, right],
                y=[bound, bound],
                name=f"bound (infinite cache): {bound:.1%}",
                mode="lines",
                line={"color": "#52606d", "dash": "dot", "width": 1},
                hovertemplate=f"bound {bound:.2%}<extra></extra>",
            )
        )
    positive = [c for c in (configured, blocks_for_90pct) if c]
    log = bool(positive) and right / min(positive) > 20
    unit = f"blocks of {tokens_per_block} tokens" if tokens_per_block else "blocks"
    styled(
        fig,
        "CPU tier hit rate by capacity (LRU, one pass over the trace)",
        f"capacity ({unit})",
        "hit rate (share of prompt tokens)",
        percent_y=True,
    )
    fig.update_yaxes(range=[0, top])
    fig.update_xaxes(type="log" if log else "linear", exponentformat="power")
    fig.update_layout(
        legend={"y": 1.02},
        margin={"t": 110},
        updatemenus=[
            {
                "type": "buttons",
                "direction": "left",
                "x": 1.0,
                "xanchor": "right",
                "y": 1.0,
                "yanchor": "bottom",
                "pad": {"b": 30},
                "showactive": True,
                "active": 0 if log else 1,
                "buttons": [
                    {"label": "log x", "method": "relayout", "args": [{"xaxis.type": "log"}]},
                    {"label": "linear x", "method": "relayout", "args": [{"xaxis.type": "linear"}]},
                ],
            }
        ],
    )
    return fig
