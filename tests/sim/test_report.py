"""flexkv_sim.report: run reports and comparisons built from synthetic result directories."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flexkv_sim.report import load_run, write_comparison, write_report
from flexkv_sim.report.figures import (
    binned_tier_share,
    binned_utilisation,
    cdf_figure,
    cdf_points,
)

PATHS = ("h2d", "d2h", "ssd_read", "ssd_write", "remote_read", "remote_write")
TIMING_COLUMNS = ("queue_s", "get_s", "prefill_s", "ttft_s", "decode_s", "put_s", "end_t")
SECTIONS = (
    "Overview", "Hit rate over time", "Latency", "Link utilisation", "Bytes moved per path",
    "Tiers: occupancy and evictions", "Configuration",
)


# ---- synthetic result directories -------------------------------------------------------
def _requests(n: int, timing: bool, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    num_tokens = rng.integers(256, 4096, n)
    gpu = (num_tokens * rng.uniform(0, 0.2, n)).astype(int)
    cpu = ((num_tokens - gpu) * rng.uniform(0, 0.6, n)).astype(int)
    ssd = ((num_tokens - gpu - cpu) * rng.uniform(0, 0.5, n)).astype(int)
    frame = pd.DataFrame({
        "request_id": [f"r{i}" for i in range(n)],
        "t": np.sort(rng.uniform(0, 600, n)),
        "op": np.where(rng.uniform(size=n) < 0.9, "get", "put"),
        "num_tokens": num_tokens,
        "num_blocks": num_tokens // 16,
        "gpu_tokens": gpu,
        "cpu_tokens": cpu,
        "ssd_tokens": ssd,
        "remote_tokens": 0,
        "in_flight": rng.uniform(size=n) < 0.01,
    })
    if timing:
        frame["queue_s"] = rng.exponential(0.002, n)
        frame["get_s"] = rng.lognormal(-6, 1, n)
        frame["prefill_s"] = rng.uniform(0.01, 0.2, n)
        frame["ttft_s"] = frame["queue_s"] + frame["get_s"] + frame["prefill_s"]
        frame["decode_s"] = rng.uniform(0.5, 2, n)
        frame["put_s"] = rng.lognormal(-5, 1, n)
        frame["end_t"] = frame["t"] + frame["ttft_s"] + frame["decode_s"]
    return frame


def _summary(mode: str, requests: int) -> dict:
    summary = {
        "tool": "flexkv-sim",
        "mode": mode,
        "requests": requests,
        "gets": requests,
        "puts": requests,
        "prompt_tokens": 123_456_789,
        "hit_rate": 0.6321,
        "hit_rate_by_tier": {"gpu": 0.0815, "cpu": 0.4123, "ssd": 0.2198, "remote": 0.0},
        "hit_tokens_by_tier": {"gpu": 1_000, "cpu": 50_000, "ssd": 27_000, "remote": 0},
        "gets_in_flight": 17,
        "tokens_per_block": 16,
        "bytes_per_block": 2_097_152,
        "bytes_by_path": {"h2d": 9 * 2**30, "d2h": 5 * 2**30, "ssd_read": 3 * 2**30,
                          "ssd_write": 4 * 2**30, "remote_read": 0, "remote_write": 0},
        "blocks_by_path": dict.fromkeys(PATHS, 100),
        "ops_by_path": dict.fromkeys(PATHS, 10),
        "tiers": {
            "cpu": {"capacity_blocks": 8192, "used_blocks": 8000, "evicted_blocks": 31_337,
                    "alloc_failures": 0, "stored_blocks": 40_000},
            "ssd": {"capacity_blocks": 65536, "used_blocks": 30_000, "evicted_blocks": 0,
                    "alloc_failures": 2, "stored_blocks": 30_000},
        },
        "load_s": 0.5,
        "wall_s": 2.25,
        "trace": {"path": "/data/traces/mooncake_conv.jsonl", "format": "mooncake",
                  "recorded_tokens_per_block": 512},
        "provenance": {"package_version": "0.1.0", "schema_version": 1,
                       "config_hash": "c0ffee12", "seed": 7},
        "config": {"cache_config": {"num_cpu_blocks": 8192, "eviction_policy": "lru"}},
    }
    if mode == "timing":
        summary["latency"] = {
            "get_s": {"p50": 0.00248, "p90": 0.0091, "p99": 0.0254, "mean": 0.004},
            "ttft_s": {"p50": 0.105, "p90": 0.18, "p99": 0.21, "mean": 0.11},
            "queue_s": {"p50": 0.0014, "p90": 0.0046, "p99": 0.0092, "mean": 0.002},
        }
        summary["link_utilisation"] = {p: 0.1 * (i + 1) for i, p in enumerate(PATHS)}
        summary["span_s"] = 610.0
    return summary


def _utilisation(span: float = 600.0, bins: int = 200) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    width = span / bins
    rows = [
        (b * width, (b + 1) * width, path, float(rng.uniform(0, 1)), int(rng.integers(0, 2**30)))
        for path in PATHS
        for b in range(bins)
        if rng.uniform() < 0.7  # idle bins are absent, as the twin writes them
    ]
    return pd.DataFrame(rows, columns=["t_start", "t_end", "path", "busy_fraction", "bytes"])


def make_run(
    root: Path, name: str, *, mode: str = "timing", n: int = 500, records: str = "csv",
    config: dict | None = None,
) -> Path:
    run_dir = root / name
    run_dir.mkdir(parents=True)
    timing = mode == "timing"
    summary = _summary(mode, n)
    if config is not None:
        summary["config"] = config
    (run_dir / "summary.json").write_text(json.dumps(summary))
    (run_dir / "config.json").write_text(json.dumps(summary["config"]))
    frame = _requests(n, timing)
    if records == "parquet":
        frame.to_parquet(run_dir / "requests.parquet", index=False)
    else:
        frame.to_csv(run_dir / "requests.csv", index=False)
    if timing:
        _utilisation().to_csv(run_dir / "utilisation.csv", index=False)
    return run_dir


def assert_self_contained(path: Path) -> str:
    """The page loads nothing but ``plotly.min.js`` from its own folder, which holds the
    bundle once; returns the page's text."""
    page = path.read_text(encoding="utf-8")
    assert re.findall(r"<script[^>]*\bsrc\s*=\s*\"([^\"]*)\"", page, re.IGNORECASE) == [
        "plotly.min.js"
    ]
    assert not re.search(r"<link[^>]*href\s*=\s*[\"']?https?://", page, re.IGNORECASE)
    assert not re.search(r"@import\s+url\(\s*[\"']?https?://", page, re.IGNORECASE)
    assert not re.search(r"\* plotly\.js v\d", page)  # not inlined
    bundle = (path.parent / "plotly.min.js").read_text(encoding="utf-8")
    assert len(re.findall(r"\* plotly\.js v\d", bundle)) == 1  # the bundle, once
    return page


# ---- the run report ---------------------------------------------------------------------
def test_timing_report_has_every_section_and_figure(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, "timing")
    path = write_report(run_dir)
    assert path == run_dir / "report.html" and path.is_file()
    page = assert_self_contained(path)
    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in page
    assert "hitrate mode" not in page
    # key figures, formatted
    for text in ("63.2%", "41.2%", "22.0%", "8.2%", "2.48 ms", "9.1 ms", "25.4 ms",
                 "105 ms", "1.4 ms", "31,337", "97.7%", "9 GiB", "mooncake_conv.jsonl",
                 "c0ffee12", "&quot;eviction_policy&quot;"):
        assert text in page, text
    # hit rate over time, latency CDF, utilisation, bytes: four figures
    assert page.count('class="plotly-graph-div"') == 4
    assert "Latency CDFs of GET requests" in page
    assert "Link utilisation over time" in page


def test_hitrate_report_omits_timing_sections_with_a_note(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, "hitrate", mode="hitrate")
    out = write_report(run_dir, tmp_path / "pages" / "hr.html")
    assert out == tmp_path / "pages" / "hr.html"
    page = assert_self_contained(out)
    assert "<h2>Latency</h2>" in page and "<h2>Link utilisation</h2>" in page
    assert page.count("replayed in hitrate mode") == 2
    assert "Latency CDFs" not in page and "Link utilisation over time" not in page
    assert "TTFT p50" not in page and "mean busy fraction" not in page
    assert "63.2%" in page
    assert page.count('class="plotly-graph-div"') == 2  # hit rate over time, bytes


@pytest.mark.parametrize("records", ["csv", "parquet"])
def test_csv_and_parquet_records(tmp_path: Path, records: str) -> None:
    if records == "parquet":
        pytest.importorskip("pyarrow")
    run_dir = make_run(tmp_path, records, records=records)
    run = load_run(run_dir)
    assert run.requests_file == run_dir / f"requests.{records}"
    assert len(run.requests) == 500
    page = write_report(run_dir).read_text(encoding="utf-8")
    assert "Hit rate over time by tier" in page and "Latency CDFs" in page


def test_parquet_is_preferred_over_csv(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    run_dir = make_run(tmp_path, "both", records="parquet")
    _requests(10, timing=True).to_csv(run_dir / "requests.csv", index=False)
    run = load_run(run_dir)
    assert run.requests_file.name == "requests.parquet" and len(run.requests) == 500


def test_missing_summary_names_the_file(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, "run")
    (run_dir / "summary.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"summary\.json"):
        write_report(run_dir)
    with pytest.raises(FileNotFoundError, match="run directory not found"):
        write_report(tmp_path / "nowhere")


@pytest.mark.parametrize("text", ["{not json", "[1, 2]"])
def test_bad_summary_is_a_value_error(tmp_path: Path, text: str) -> None:
    run_dir = make_run(tmp_path, "run")
    (run_dir / "summary.json").write_text(text)
    with pytest.raises(ValueError, match=r"summary\.json"):
        write_report(run_dir)


def test_report_without_records_or_config_still_renders(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, "bare", mode="hitrate")
    (run_dir / "requests.csv").unlink()
    (run_dir / "config.json").unlink()
    page = write_report(run_dir).read_text(encoding="utf-8")
    assert "no per-request records" in page
    assert "eviction_policy" in page  # the summary's config stands in for config.json


def test_timing_summary_without_utilisation_file(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, "t")
    (run_dir / "utilisation.csv").unlink()
    page = write_report(run_dir).read_text(encoding="utf-8")
    assert "No utilisation.csv in the result directory" in page
    assert "60.0%" in page  # the mean busy fraction of ssd_write from the summary


# ---- the comparison ---------------------------------------------------------------------
def test_comparison_of_timing_and_hitrate_runs(tmp_path: Path) -> None:
    a = make_run(tmp_path, "a", config={"cache_config": {"num_cpu_blocks": 8192}})
    b = make_run(tmp_path, "b", mode="hitrate",
                 config={"cache_config": {"num_cpu_blocks": 16384}})
    out = write_comparison([a, b], tmp_path / "cmp.html", labels=["lru-8k", "lru-16k"])
    page = assert_self_contained(out)
    for title in ("Runs", "Summary side by side", "Hit rate per tier", "Latency",
                  "Bytes moved per path", "Link utilisation", "Tiers", "Config differences"):
        assert f"<h2>{title}</h2>" in page, title
    assert "lru-8k" in page and "lru-16k" in page
    assert "No latencies for lru-16k" in page
    assert "No link utilisation for lru-16k" in page
    assert "cache_config.num_cpu_blocks" in page and "16384" in page
    assert "GET latency: CDF per run" in page and "TTFT: CDF per run" in page
    assert "63.2%" in page and "2.48 ms" in page


def test_comparison_labels(tmp_path: Path) -> None:
    a = make_run(tmp_path / "x", "run", n=50)
    b = make_run(tmp_path / "y", "run", n=50)
    page = write_comparison([a, b], tmp_path / "c.html").read_text(encoding="utf-8")
    assert "x/run" in page and "y/run" in page
    with pytest.raises(ValueError, match="labels"):
        write_comparison([a, b], tmp_path / "c.html", labels=["one"])
    with pytest.raises(ValueError, match="at least one"):
        write_comparison([], tmp_path / "c.html")


# ---- aggregation ------------------------------------------------------------------------
def test_cdf_is_thinned_but_keeps_the_tail() -> None:
    values = np.random.default_rng(0).lognormal(size=50_000)
    x, y = cdf_points(values)
    assert len(x) <= 2000 and x[-1] == values.max() and y[-1] == 1.0
    assert np.all(np.diff(x) >= 0) and np.all(np.diff(y) > 0)
    fig = cdf_figure({"a": values, "b": values[:100]}, "t")
    assert [len(tr.x) for tr in fig.data] == [len(x), 100]
    assert cdf_points(np.array([np.nan]))[0].size == 0


def test_tier_share_is_token_weighted() -> None:
    gets = pd.DataFrame({
        "t": [0.0, 1.0] * 50 + [10.0] * 50,
        "num_tokens": [100, 300] * 50 + [1000] * 50,
        "gpu_tokens": [0] * 150,
        "cpu_tokens": [100, 0] * 50 + [250] * 50,
        "ssd_tokens": [0, 150] * 50 + [0] * 50,
        "remote_tokens": [0] * 150,
    })
    share = binned_tier_share(gets, bins=2)
    assert list(share["requests"]) == [100, 50]
    assert share["cpu"].tolist() == pytest.approx([0.25, 0.25])
    assert share["ssd"].tolist() == pytest.approx([150 / 400, 0.0])


def test_utilisation_grid_fills_idle_bins_and_keeps_busy_time() -> None:
    util = pd.DataFrame({
        "t_start": [0.0, 3.0, 0.0], "t_end": [1.0, 4.0, 1.0], "path": ["h2d", "h2d", "d2h"],
        "busy_fraction": [0.5, 1.0, 0.25], "bytes": [100, 200, 50],
    })
    grid = binned_utilisation(util)
    h2d = grid[grid["path"] == "h2d"]
    assert h2d["busy_fraction"].tolist() == [0.5, 0.0, 0.0, 1.0]
    assert set(grid["path"]) == {"h2d", "d2h"} and len(grid) == 8
    coarse = binned_utilisation(util, max_bins=2)
    assert coarse[coarse["path"] == "h2d"]["busy_fraction"].tolist() == [0.25, 0.5]
    assert coarse[coarse["path"] == "h2d"]["bytes_per_s"].tolist() == [50.0, 100.0]


def test_report_reads_files_only() -> None:
    """Dashboards never import the engine or the twin's replay code (STYLE.md)."""
    package = Path(__file__).resolve().parents[2] / "simulator" / "flexkv_sim" / "report"
    for source in package.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            assert not any(n.split(".")[0] in {"flexkv_engine", "flexkv_sim"} for n in names), (
                f"{source.name} imports {names}"
            )
