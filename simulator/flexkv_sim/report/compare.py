"""One page comparing several replays: summaries side by side, hit rates, latency CDFs
overlaid, bytes and link utilisation per path, and the config keys that differ.

Reads result directories only, like the run report, and shares its figures and tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from . import figures, tables
from .html import MISSING, Page, fmt_int, note, table
from .load import LATENCY_LABELS, TIERS, RunData, load_run


def write_comparison(
    run_dirs: Sequence[Path], out: Path, labels: Sequence[str] | None = None
) -> Path:
    """Write one HTML page comparing the replays in ``run_dirs``; returns ``out``.

    ``labels`` name the runs (default: their directory names, made unique). Raises
    ValueError for no runs or a label count that does not match, and FileNotFoundError
    when a directory or its ``summary.json`` is missing.
    """
    runs = load_runs(run_dirs, labels)
    return build_comparison(runs).write(Path(out))


def load_runs(run_dirs: Sequence[Path], labels: Sequence[str] | None = None) -> list[RunData]:
    dirs = [Path(d) for d in run_dirs]
    if not dirs:
        raise ValueError("write_comparison needs at least one run directory")
    if labels is None:
        labels = default_labels(dirs)
    elif len(labels) != len(dirs):
        raise ValueError(f"got {len(labels)} labels for {len(dirs)} run directories")
    return [load_run(d, label=str(lab)) for d, lab in zip(dirs, labels, strict=True)]


def default_labels(dirs: Sequence[Path]) -> list[str]:
    """Directory names; where names repeat, the shortest distinct trailing path."""
    parts = [d.resolve().parts for d in dirs]
    for depth in range(1, max(len(p) for p in parts) + 1):
        labels = ["/".join(p[-depth:]) for p in parts]
        if len(set(labels)) == len(labels):
            return labels
    return [f"{d.name} #{i + 1}" for i, d in enumerate(dirs)]  # the same directory twice


def build_comparison(runs: Sequence[RunData]) -> Page:
    """The comparison page, not yet written."""
    labels = [r.label for r in runs]
    colors = [figures.RUN_COLORS[i % len(figures.RUN_COLORS)] for i in range(len(runs))]
    page = Page(f"FlexKV Twin comparison: {len(runs)} runs", " · ".join(labels))
    _runs(page, runs)
    _side_by_side(page, runs)
    _hit_rates(page, runs, colors)
    _latency(page, runs, colors)
    _bytes(page, runs, colors)
    _utilisation(page, runs, colors)
    _tiers(page, runs)
    _config_differences(page, runs)
    return page


def _runs(page: Page, runs: Sequence[RunData]) -> None:
    rows = []
    for run in runs:
        info = dict(tables.run_info_rows(run))
        rows.append(
            [
                run.label,
                info["trace"],
                info["tool / mode"],
                info["config hash"],
                info["seed"],
                str(run.path),
            ]
        )
    parts = [
        table(
            ("run", "trace", "tool / mode", "config hash", "seed", "result directory"),
            rows,
            code_cols=(1, 5),
        )
    ]
    parts += [note(f"{run.label}: {n}") for run in runs for n in run.notes]
    page.section("Runs", *parts)


def _side_by_side(page: Page, runs: Sequence[RunData]) -> None:
    per_run = [dict(tables.key_figure_rows(run)) for run in runs]
    names: list[str] = []
    for rows in per_run:
        names += [n for n in rows if n not in names]
    body = [[name, *(rows.get(name, MISSING) for rows in per_run)] for name in names]
    page.section("Summary side by side", table(("key figure", *(r.label for r in runs)), body))


def _hit_rates(page: Page, runs: Sequence[RunData], colors: list[str]) -> None:
    categories = ["total", *TIERS]
    cat_labels = {"total": "FlexKV (CPU + SSD + remote)", **figures.TIER_LABELS}
    groups = {}
    for run in runs:
        by_tier = run.summary.get("hit_rate_by_tier") or {}
        groups[run.label] = [run.summary.get("hit_rate"), *(by_tier.get(t) for t in TIERS)]
    fig = figures.bar_figure(
        categories,
        groups,
        "Hit rate per tier (share of prompt tokens)",
        "hit rate",
        unit="percent",
        colors=colors,
        category_labels=cat_labels,
    )
    page.section("Hit rate per tier", page.figure(fig))


def _latency(page: Page, runs: Sequence[RunData], colors: list[str]) -> None:
    title = "Latency"
    timed = [(run, c) for run, c in zip(runs, colors, strict=True) if run.has_timing]
    untimed = [run.label for run in runs if not run.has_timing]
    parts = []
    if untimed:
        parts.append(
            note(
                f"No latencies for {', '.join(untimed)}: replayed in hitrate mode, where no "
                "time passes in the twin."
            )
        )
    drawn = 0
    for metric in ("get_s", "ttft_s", "queue_s"):
        series, series_colors = {}, []
        for run, color in timed:
            values = run.latency_values(metric)
            if values is not None and values.size:
                series[run.label] = values
                series_colors.append(color)
        if series:
            label = LATENCY_LABELS[metric]
            drawn += 1
            parts.append(
                page.figure(
                    figures.cdf_figure(
                        series, f"{label[0].upper()}{label[1:]}: CDF per run", colors=series_colors
                    )
                )
            )
    if timed and not drawn:
        parts.append(note("The timed runs' records hold no latency columns."))
    page.section(title, *parts)


def _bytes(page: Page, runs: Sequence[RunData], colors: list[str]) -> None:
    paths = _union_paths(runs)
    if not paths:
        page.section("Bytes moved per path", note("No run records bytes_by_path."))
        return
    groups = {
        run.label: [(run.summary.get("bytes_by_path") or {}).get(p) for p in paths] for run in runs
    }
    fig = figures.bar_figure(
        paths, groups, "Bytes moved per transfer path", "bytes moved", unit="bytes", colors=colors
    )
    page.section("Bytes moved per path", page.figure(fig))


def _utilisation(page: Page, runs: Sequence[RunData], colors: list[str]) -> None:
    title = "Link utilisation"
    means = {run.label: run.link_utilisation() for run in runs}
    without = [label for label, m in means.items() if not m]
    parts = []
    if without:
        parts.append(
            note(
                f"No link utilisation for {', '.join(without)} (hitrate mode or "
                "no utilisation data)."
            )
        )
    with_data = [(run, c) for run, c in zip(runs, colors, strict=True) if means[run.label]]
    if with_data:
        paths = _union_paths([r for r, _ in with_data])
        groups = {r.label: [means[r.label].get(p) for p in paths] for r, _ in with_data}
        fig = figures.bar_figure(
            paths,
            groups,
            "Mean link utilisation (busy fraction over the simulated span)",
            "mean busy fraction",
            unit="percent",
            colors=[c for _, c in with_data],
        )
        parts.append(page.figure(fig))
    page.section(title, *parts)


def _union_paths(runs: Sequence[RunData]) -> list[str]:
    paths: list[str] = []
    for run in runs:
        paths += [p for p in tables.paths_of(run) if p not in paths]
    return paths


def _tiers(page: Page, runs: Sequence[RunData]) -> None:
    rows = [[run.label, *row] for run in runs for row in tables.tier_table_rows(run)]
    if not rows:
        page.section("Tiers", note("No run records a tiers section."))
        return
    page.section("Tiers", table(("run", *tables.TIER_TABLE_HEADER), rows))


def _config_differences(page: Page, runs: Sequence[RunData]) -> None:
    title = "Config differences"
    flat = [tables.flatten(run.config or run.summary.get("config") or {}) for run in runs]
    keys = sorted(set().union(*flat))
    differing = [k for k in keys if len({f.get(k, MISSING) for f in flat}) > 1]
    if len(runs) < 2:
        page.section(title, note("One run: nothing to compare."))
    elif not differing:
        page.section(
            title,
            note(
                f"All {fmt_int(len(runs))} runs share the same config ({fmt_int(len(keys))} keys)."
            ),
        )
    else:
        rows = [[k, *(f.get(k, MISSING) for f in flat)] for k in differing]
        page.section(
            title,
            table(("config key", *(r.label for r in runs)), rows, code_cols=range(len(runs) + 1)),
        )
