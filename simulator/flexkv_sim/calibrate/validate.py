"""How well the twin predicts a measured run: side-by-side figures and their errors.

The run's trace is replayed in the twin with a given profile, the run's resolved config
and its pacing (``--speed X`` or one at a time), then compared request by request
(matched by request id) and in aggregate. Under load (:mod:`.load`) the report also
replays the engine's own order of planner calls, explains each request whose hits
differ, and compares queueing per path and throughput. Errors are fractions: ``hit_rate_abs_err`` is
absolute, the latency errors are relative to the measured value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flexkv_engine.cli_common import write_json
from flexkv_engine.config import ConfigError
from flexkv_engine.core.paths import PATHS
from flexkv_engine.replay_input import prepare_replay
from flexkv_engine.trace import TransferRecord

from ..hardware import load_profiles
from ..replay.timing import TIMING_COLUMNS, replay_timing
from .fit import load_run, require_config
from .load import load_report

TIERS = ("gpu", "cpu", "ssd", "remote")
METRICS = (("get_s", "get_latency"), ("ttft_s", "ttft"))


def _measured_records(run_dir: Path) -> Any:
    import pandas as pd

    for name, reader in (("requests.parquet", pd.read_parquet), ("requests.csv", pd.read_csv)):
        if (run_dir / name).exists():
            return reader(run_dir / name)
    raise FileNotFoundError(2, "no per-request records", str(run_dir / "requests.csv"))


def _rel(pred: float | None, meas: float | None) -> float | None:
    if pred is None or meas is None or meas <= 0:
        return None
    return abs(pred - meas) / meas


def validate(run_dir: str | Path, profile: str | Path, *, out: Path | None = None) -> dict:
    """Replay the measured run in the twin and report the prediction errors."""
    import numpy as np
    import pandas as pd

    run = load_run(run_dir)
    if run.run_dir is None or run.summary is None:
        raise ConfigError(
            "validate needs a run directory written by flexkv-run replay --out",
            key_path=str(run_dir),
        )
    config = require_config(run)
    pacing = run.summary.get("pacing", {}).get("speed", "max")
    inp = prepare_replay(run.trace_path, config=config)
    predicted = replay_timing(
        inp, load_profiles([str(profile)]), speed=pacing, progress=False, record_transfers=True,
        record_events=True,
    )
    pred = pd.DataFrame.from_records(predicted.records, columns=list(TIMING_COLUMNS))
    meas = _measured_records(run.run_dir)
    pred["request_id"] = pred["request_id"].astype(str)
    meas["request_id"] = meas["request_id"].astype(str)
    both = meas.merge(pred, on="request_id", suffixes=("_measured", "_predicted"))
    hit_cols = [f"{t}_tokens" for t in TIERS]
    agree = (
        both[[c + "_measured" for c in hit_cols]].to_numpy()
        == both[[c + "_predicted" for c in hit_cols]].to_numpy()
    ).all(axis=1)
    prompt = float(meas["num_tokens"].sum()) or 1.0
    report: dict[str, Any] = {
        "run": str(run.run_dir),
        "profile": str(profile),
        "pacing": pacing,
        "requests": len(meas),
        "matched_requests": len(both),
        "block_agreement": float(agree.mean()) if len(both) else 0.0,
        "hit_rate": {},
        "latency": {},
        "bytes_by_path": {},
    }
    for tier in TIERS:
        m = float(meas[f"{tier}_tokens"].sum()) / prompt
        p = float(pred[f"{tier}_tokens"].sum()) / prompt
        report["hit_rate"][tier] = {"measured": m, "predicted": p, "abs_err": abs(p - m)}
    flex = [t for t in TIERS if t != "gpu"]
    m_total = sum(report["hit_rate"][t]["measured"] for t in flex)
    p_total = sum(report["hit_rate"][t]["predicted"] for t in flex)
    report["hit_rate"]["total"] = {
        "measured": m_total,
        "predicted": p_total,
        "abs_err": abs(p_total - m_total),
    }
    report["hit_rate_abs_err"] = abs(p_total - m_total)
    gets_m, gets_p = meas[meas["op"] == "get"], pred[pred["op"] == "get"]
    for column, name in METRICS:
        stats = {}
        for q in (50, 90, 99):
            mv = float(np.percentile(gets_m[column], q)) if len(gets_m) else None
            pv = float(np.percentile(gets_p[column], q)) if len(gets_p) else None
            stats[f"p{q}"] = {"measured": mv, "predicted": pv, "rel_err": _rel(pv, mv)}
            report[f"{name}_p{q}_rel_err"] = _rel(pv, mv)
        report["latency"][column] = stats
    measured_bytes = run.summary.get("bytes_by_path", {})
    block_bytes = run.summary.get("bytes_per_block", 0)
    stats = predicted.planner.stats
    for path in PATHS:
        p = stats.blocks_by_path[path] * block_bytes
        m = measured_bytes.get(path, 0)
        report["bytes_by_path"][path] = {"measured": m, "predicted": p, "rel_err": _rel(p, m)}
    report["ops_by_path"] = compare_ops(run.transfers, predicted.transfers or [])
    report.update(load_report(inp, run, predicted, meas, pred))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "validation.json", report)
        both.to_csv(out / "requests_compared.csv", index=False)
        from .page import write_validation_page

        report["html"] = str(write_validation_page(out, both, report))
    return report


def compare_ops(measured: list[TransferRecord], predicted: list[TransferRecord]) -> dict:
    """Per path: the same ops (request, path and op id) measured and predicted, in seconds.

    Measured time is queue + transfer, predicted is the twin's time on the link; both
    sums and the median ratio predicted / measured (1 is exact) say which path is off.
    """
    import numpy as np

    # A request's GET and PUT graphs number their ops from 0 each; paths tell them apart.
    twin = {(r.request_id, r.path, r.op_id): r.transfer_s for r in predicted}
    pairs: dict[str, list[tuple[float, float]]] = {}
    for r in measured:
        p = twin.get((r.request_id, r.path, r.op_id))
        if p is not None:
            pairs.setdefault(r.path, []).append((r.queue_s + r.transfer_s, p))
    out = {}
    for path, rows in sorted(pairs.items()):
        m, p = np.array(rows).T
        ratio = p / np.maximum(m, 1e-12)
        out[path] = {
            "ops": len(rows),
            "measured_s": float(m.sum()),
            "predicted_s": float(p.sum()),
            "median_ratio": float(np.median(ratio)),
        }
    return out

