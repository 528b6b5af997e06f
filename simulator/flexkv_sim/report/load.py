"""Reading a replay's result directory back: only files, never the engine or the twin.

A result directory holds ``summary.json`` (required), ``requests.parquet`` or
``requests.csv`` (one row per request), ``utilisation.csv`` (timing mode: busy fraction
and bytes of each link per time bin), ``capacity_curve.csv`` (the CPU tier's LRU hit
rate by capacity) and ``config.json`` (the resolved config). ``flexkv-sim replay`` and
``flexkv-run replay`` write the same files (the engine no ``utilisation.csv``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

SUMMARY_FILE = "summary.json"
CONFIG_FILE = "config.json"
REQUESTS_FILES = ("requests.parquet", "requests.csv")  # preferred first
UTILISATION_FILE = "utilisation.csv"
CURVE_FILE = "capacity_curve.csv"  # flexkv_sim.doctor.why.CURVE_FILE

TIERS = ("gpu", "cpu", "ssd", "remote")
PATHS = ("h2d", "d2h", "ssd_read", "ssd_write", "remote_read", "remote_write")
# Latency columns of a timing replay, in the order the pages show them.
LATENCY_METRICS = ("get_s", "ttft_s", "queue_s", "prefill_s", "put_s")
LATENCY_LABELS = {
    "get_s": "GET latency",
    "ttft_s": "TTFT",
    "queue_s": "queueing delay",
    "prefill_s": "prefill",
    "put_s": "PUT latency",
    "decode_s": "decode",
}
_NUMERIC_COLUMNS = (
    "t",
    "num_tokens",
    "num_blocks",
    "gpu_tokens",
    "cpu_tokens",
    "ssd_tokens",
    "remote_tokens",
    "queue_s",
    "get_s",
    "prefill_s",
    "ttft_s",
    "decode_s",
    "put_s",
    "end_t",
)
_UTILISATION_COLUMNS = ("t_start", "t_end", "path", "busy_fraction")


@dataclass
class RunData:
    """One replay's results as read from its directory."""

    path: Path
    label: str
    summary: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)
    requests: pd.DataFrame | None = None
    requests_file: Path | None = None
    utilisation: pd.DataFrame | None = None
    capacity_curve: pd.DataFrame | None = None  # capacity_blocks, hit_rate
    notes: list[str] = field(default_factory=list)  # what was missing or unreadable

    @property
    def mode(self) -> str:
        return str(self.summary.get("mode", "unknown"))

    @property
    def gets(self) -> pd.DataFrame | None:
        """The GET rows of the per-request records (all rows when there is no ``op``)."""
        if self.requests is None:
            return None
        if "op" not in self.requests.columns:
            return self.requests
        return self.requests[self.requests["op"].astype(str).str.lower() == "get"]

    @property
    def has_timing(self) -> bool:
        """Whether latencies were measured (summary ``latency`` or latency columns)."""
        if self.summary.get("latency"):
            return True
        cols = self.requests.columns if self.requests is not None else ()
        return any(m in cols for m in LATENCY_METRICS)

    def latency_values(self, metric: str) -> np.ndarray | None:
        """A latency column of the GET rows in seconds, NaNs dropped; None if absent."""
        gets = self.gets
        if gets is None or metric not in gets.columns:
            return None
        values = gets[metric].to_numpy(dtype=float, na_value=np.nan)
        return values[np.isfinite(values)]

    def latency_stats(self, metric: str) -> dict[str, float | None] | None:
        """p50/p90/p99/mean of ``metric``: the summary's, else computed from the records."""
        stats = (self.summary.get("latency") or {}).get(metric)
        if isinstance(stats, dict):
            return {k: _float_or_none(stats.get(k)) for k in ("p50", "p90", "p99", "mean")}
        values = self.latency_values(metric)
        if values is None:
            return None
        if values.size == 0:
            return {"p50": None, "p90": None, "p99": None, "mean": None}
        p50, p90, p99 = np.percentile(values, [50, 90, 99])
        return {
            "p50": float(p50),
            "p90": float(p90),
            "p99": float(p99),
            "mean": float(values.mean()),
        }

    def link_utilisation(self) -> dict[str, float]:
        """Mean busy fraction per path: the summary's, else averaged from ``utilisation.csv``."""
        means = self.summary.get("link_utilisation")
        if isinstance(means, dict) and means:
            return {str(p): float(v) for p, v in means.items() if v is not None}
        util = self.utilisation
        if util is None or util.empty:
            return {}
        span = float(self.summary.get("span_s") or util["t_end"].max() - util["t_start"].min())
        if span <= 0:
            return {}
        busy = util["busy_fraction"] * (util["t_end"] - util["t_start"])
        return {str(p): float(v) / span for p, v in busy.groupby(util["path"]).sum().items()}


def _float_or_none(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def load_run(run_dir: Path | str, label: str | None = None) -> RunData:
    """Read the result files of ``run_dir``.

    Raises FileNotFoundError when the directory or its ``summary.json`` is missing and
    ValueError when ``summary.json`` is not a JSON object. The other files are optional:
    what is missing is listed in ``notes`` and the pages say so.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory not found: {run_dir}")
    summary = _read_json_object(run_dir / SUMMARY_FILE, required=True)
    run = RunData(path=run_dir, label=label or run_dir.resolve().name, summary=summary)
    config_path = run_dir / CONFIG_FILE
    if config_path.is_file():
        run.config = _read_json_object(config_path, required=False)
    else:
        run.config = summary.get("config") or {}
    run.requests, run.requests_file = _read_requests(run_dir, run.notes)
    run.utilisation = _read_utilisation(run_dir / UTILISATION_FILE, run.notes)
    run.capacity_curve = _read_curve(run_dir / CURVE_FILE, run.notes)
    return run


def _read_json_object(path: Path, *, required: bool) -> dict[str, Any]:
    if not path.is_file():
        if required:
            raise FileNotFoundError(
                f"{path}: {path.name} not found; expected a replay result directory "
                f"(flexkv-sim replay --out DIR)"
            )
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: {path.name} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: {path.name} must hold a JSON object, got {type(data).__name__}")
    return data


def _read_requests(run_dir: Path, notes: list[str]) -> tuple[pd.DataFrame | None, Path | None]:
    frame = None
    for name in REQUESTS_FILES:
        path = run_dir / name
        if not path.is_file():
            continue
        try:
            frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
        except ImportError as exc:  # parquet without pyarrow/fastparquet: try the CSV
            notes.append(f"{name} not readable here ({exc})")
            continue
        except (ValueError, OSError, pd.errors.ParserError) as exc:
            raise ValueError(f"{path}: cannot read per-request records: {exc}") from exc
        for col in _NUMERIC_COLUMNS:
            if col in frame.columns:
                frame[col] = pd.to_numeric(frame[col], errors="coerce")
        return frame, path
    notes.append("no per-request records (requests.parquet or requests.csv)")
    return None, None


def _read_utilisation(path: Path, notes: list[str]) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    try:
        util = pd.read_csv(path)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise ValueError(f"{path}: cannot read link utilisation: {exc}") from exc
    missing = [c for c in _UTILISATION_COLUMNS if c not in util.columns]
    if missing:
        notes.append(f"{path.name} lacks columns {', '.join(missing)}; not shown")
        return None
    for col in ("t_start", "t_end", "busy_fraction", "bytes"):
        if col in util.columns:
            util[col] = pd.to_numeric(util[col], errors="coerce")
    util["path"] = util["path"].astype(str)
    return util.dropna(subset=["t_start", "t_end", "busy_fraction"])


def _read_curve(path: Path, notes: list[str]) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    try:
        curve = pd.read_csv(path)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise ValueError(f"{path}: cannot read the capacity curve: {exc}") from exc
    if not {"capacity_blocks", "hit_rate"} <= set(curve.columns):
        notes.append(f"{path.name} lacks columns capacity_blocks, hit_rate; not shown")
        return None
    for col in ("capacity_blocks", "hit_rate"):
        curve[col] = pd.to_numeric(curve[col], errors="coerce")
    return curve.dropna(subset=["capacity_blocks", "hit_rate"]).sort_values("capacity_blocks")
