"""The report of one replay: an HTML page built from its result directory.

Its headline says what the hit rate counts (the CPU, SSD and remote tiers, not the
serving engine's GPU prefix cache, whose hits it gives apart); its first section says
why: the bound, the capacity curve with the configured capacity marked, and the
doctor's weightiest findings (``summary.json``'s ``why``, ``capacity_curve.csv``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import figures, tables
from .html import Page, bullets, details, fmt_int, note, paragraph, table
from .load import CURVE_FILE, LATENCY_LABELS, RunData, load_run

REPORT_FILE = "report.html"

HITRATE_MODE_NOTE = (
    "Not measured: this run was replayed in hitrate mode, where no time passes in the "
    "twin, so there are no {what} to show. Replay in timing mode (flexkv-sim replay "
    "--mode timing) to see them."
)


def write_report(run_dir: Path, out: Path | None = None) -> Path:
    """Write the HTML report of the replay in ``run_dir`` (default ``run_dir/report.html``).

    Reads only result files (``summary.json``, ``requests.parquet`` or ``requests.csv``,
    ``utilisation.csv``, ``config.json``); sections whose data a run lacks (a hitrate-mode
    run has no latencies) are replaced by a note. Returns the path written.
    """
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    out = Path(out) if out is not None else run_dir / REPORT_FILE
    return build_report(run).write(out)


def build_report(run: RunData) -> Page:
    """The page of one run, not yet written."""
    s = run.summary
    trace_path = (s.get("trace") or {}).get("path")
    name = Path(str(trace_path)).name if trace_path else run.label
    page = Page(
        f"FlexKV Twin report: {name}",
        f"{s.get('tool', 'replay')} · {run.mode} mode · {fmt_int(s.get('requests'))} requests"
        f" · {tables.hit_rate_headline(s)}",
    )
    _why(page, run)
    _overview(page, run)
    _hit_rate_over_time(page, run)
    _latency(page, run)
    _utilisation(page, run)
    _bytes(page, run)
    _tiers(page, run)
    config = run.config or s.get("config") or {}
    page.section(
        "Configuration",
        details("resolved config (config.json)", json.dumps(config, indent=2, sort_keys=True))
        if config
        else note("No config.json in the result directory."),
    )
    return page


def _overview(page: Page, run: RunData) -> None:
    parts = [
        table(("this run", ""), tables.run_info_rows(run), code_cols=(1,)),
        table(("key figure", "value"), tables.key_figure_rows(run)),
    ]
    parts += [note(n) for n in run.notes]
    parts += [note(f"Warning: {w}") for w in run.summary.get("warnings") or []]
    page.section("Overview", *parts)


def _why(page: Page, run: RunData) -> None:
    title = "Why this hit rate"
    s = run.summary
    lines = s.get("why")
    parts = [paragraph(f"The headline: {tables.hit_rate_headline(s)}.")]
    if lines:
        parts.append(bullets(lines))
    else:
        parts.append(note("summary.json has no why lines (a replay older than them)."))
    curve = run.capacity_curve
    if curve is not None and not curve.empty:
        meta = s.get("capacity_curve") or {}
        ssd = (s.get("tiers") or {}).get("ssd", {}).get("capacity_blocks")
        configured = s.get("configured_blocks")
        fig = figures.capacity_curve_figure(
            curve,
            configured=configured,
            bound=s.get("bound"),
            blocks_for_90pct=s.get("blocks_for_90pct"),
            with_ssd=configured + ssd if ssd and configured is not None else None,
            tokens_per_block=meta.get("tokens_per_block") or s.get("tokens_per_block"),
        )
        parts.append(page.figure(fig))
        if meta.get("run_is_plain_lru") is False:
            parts.append(
                note(
                    "The curve is of plain LRU over the same tiers; this run's "
                    "eviction settings differ, so its hit rate may lie off it."
                )
            )
    elif lines:
        parts.append(note(f"No {CURVE_FILE} in the result directory: curve not drawn."))
    page.section(title, *parts)


def _hit_rate_over_time(page: Page, run: RunData) -> None:
    title = "Hit rate over time"
    gets = run.gets
    if gets is None:
        page.section(title, note("No per-request records: hit rate over time not shown."))
        return
    missing = [c for c in ("t", "num_tokens") if c not in gets.columns]
    if missing:
        page.section(
            title, note(f"{run.requests_file}: lacks columns {', '.join(missing)}; not shown.")
        )
        return
    if gets.empty or not np.nansum(gets["num_tokens"].to_numpy(dtype=float)):
        page.section(title, note("No GET requests with prompt tokens in the records."))
        return
    page.section(title, page.figure(figures.tier_share_figure(gets)))


def _latency(page: Page, run: RunData) -> None:
    title = "Latency"
    if not run.has_timing:
        page.section(
            title,
            note(HITRATE_MODE_NOTE.format(what="latencies (GET latency, TTFT, queueing delay)")),
        )
        return
    parts = [table(tables.LATENCY_TABLE_HEADER, tables.latency_table_rows(run))]
    series = {}
    for metric in ("get_s", "ttft_s", "queue_s"):
        values = run.latency_values(metric)
        if values is not None and values.size:
            series[LATENCY_LABELS[metric]] = values
    if series:
        parts.append(
            page.figure(
                figures.cdf_figure(
                    series, "Latency CDFs of GET requests: GET latency, TTFT and queueing delay"
                )
            )
        )
    else:
        parts.append(note("The per-request records hold no latency columns: CDFs not shown."))
    page.section(title, *parts)


def _utilisation(page: Page, run: RunData) -> None:
    title = "Link utilisation"
    if run.utilisation is None:
        what = "link utilisation over time"
        page.section(
            title,
            note(
                HITRATE_MODE_NOTE.format(what=what)
                if not run.has_timing
                else "No utilisation.csv in the result directory: utilisation over time not shown."
            ),
        )
        return
    if run.utilisation.empty:
        page.section(title, note("utilisation.csv has no rows: no link was ever busy."))
        return
    page.section(title, page.figure(figures.utilisation_figure(run.utilisation)))


def _bytes(page: Page, run: RunData) -> None:
    title = "Bytes moved per path"
    by_path = run.summary.get("bytes_by_path") or {}
    if not by_path:
        page.section(title, note("summary.json has no bytes_by_path."))
        return
    paths = tables.paths_of(run)
    fig = figures.bar_figure(
        paths,
        {"bytes": [by_path.get(p) for p in paths]},
        "Bytes moved per transfer path",
        "bytes moved",
        unit="bytes",
    )
    fig.update_traces(marker_color=[figures.PATH_COLORS.get(p, "#7f7f7f") for p in paths])
    page.section(title, page.figure(fig), table(*tables.path_table(run)))


def _tiers(page: Page, run: RunData) -> None:
    title = "Tiers: occupancy and evictions"
    rows = tables.tier_table_rows(run)
    if not rows:
        page.section(title, note("summary.json has no tiers section."))
        return
    page.section(title, table(tables.TIER_TABLE_HEADER, rows))
