"""The validation page: measured vs predicted latency CDFs and a per-request scatter."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _cdf(values: Any) -> tuple[Any, Any]:
    import numpy as np

    data = np.sort(np.asarray(values, dtype=float))
    if data.size > 2000:
        data = data[np.linspace(0, data.size - 1, 2000).astype(int)]
    return data * 1e3, np.linspace(0, 1, data.size)


def write_validation_page(out: Path, both: Any, report: dict) -> Path:
    """``validation.html`` in ``out``, with ``plotly.min.js`` beside it (the report's page)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from ..report.html import Page, table

    gets = both[both["op_measured"] == "get"] if "op_measured" in both else both
    fig = make_subplots(
        rows=1,
        cols=3,
        subplot_titles=("GET latency CDF", "TTFT CDF", "GET latency per request (ms)"),
    )
    for col, column in ((1, "get_s"), (2, "ttft_s")):
        for side, color in (("measured", "#1f77b4"), ("predicted", "#d62728")):
            x, y = _cdf(gets[f"{column}_{side}"])
            fig.add_trace(
                go.Scatter(x=x, y=y, name=f"{column} {side}", mode="lines", line={"color": color}),
                row=1,
                col=col,
            )
        fig.update_xaxes(title_text="ms", type="log", row=1, col=col)
    fig.add_trace(
        go.Scattergl(
            x=gets["get_s_measured"] * 1e3,
            y=gets["get_s_predicted"] * 1e3,
            mode="markers",
            name="requests",
            marker={"size": 4, "opacity": 0.5},
        ),
        row=1,
        col=3,
    )
    top = float(max(gets["get_s_measured"].max(), gets["get_s_predicted"].max()) * 1e3) or 1.0
    fig.add_trace(
        go.Scatter(
            x=[0, top],
            y=[0, top],
            mode="lines",
            name="exact",
            line={"dash": "dot", "color": "gray"},
        ),
        row=1,
        col=3,
    )
    fig.update_xaxes(title_text="measured (ms)", row=1, col=3)
    fig.update_yaxes(title_text="predicted (ms)", row=1, col=3)
    fig.update_layout(
        height=480,
        title=(
            f"Twin vs measured run: hit-rate error {report['hit_rate_abs_err']:.4f}, "
            f"block agreement {report['block_agreement']:.1%}"
        ),
    )
    rows = [
        (k, f"{v:.4f}") for k, v in report.items() if k.endswith("_err") and isinstance(v, float)
    ]
    page = Page(
        f"FlexKV Twin validation: {Path(str(report['run'])).name}",
        f"run {report['run']} · profile {report['profile']} · pacing {report['pacing']}",
    )
    page.section("Errors of the twin against the measured run", table(("error", "value"), rows))
    page.section("Measured vs predicted", page.figure(fig))
    return page.write(Path(out) / "validation.html")
