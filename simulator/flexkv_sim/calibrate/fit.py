"""Fitting a hardware profile from the transfer records of a ``flexkv-run`` run.

Method (stated so a reader can check it): for each path, take the ops that ran alone
(no other op of the same path overlapped them), and fit ``queue_s + transfer_s =
overhead + bytes / bandwidth`` by ordinary least squares (a negative intercept is
refitted through the origin). With fewer than three such ops, all ops are used. The
engine's hand-off between dependent ops (a completion handled, the next op dispatched)
is measured as the median gap between an op's end and its dependent's submission, and
added to every op's overhead. The GET planning time (``match``) is the median latency
of GETs that moved nothing. SSD curves are fitted at the run's queue depth, so they carry
no queue-depth term (``half_bandwidth_queue_depth: 0``).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flexkv_engine.config import Config, ConfigError, load_config
from flexkv_engine.core.paths import D2H, H2D, REMOTE_READ, REMOTE_WRITE, SSD_READ, SSD_WRITE
from flexkv_engine.trace import OutcomeRecord, TraceError, TransferRecord, read_trace


@dataclass(frozen=True)
class RunData:
    run_dir: Path | None
    trace_path: Path
    config: Config | None
    summary: dict[str, Any] | None
    transfers: list[TransferRecord]
    outcomes: list[OutcomeRecord]


@dataclass(frozen=True)
class PathFit:
    path: str
    ops: int
    used: int
    overhead_s: float
    bandwidth: float
    r2: float
    median_rel_err: float


def load_run(source: str | Path) -> RunData:
    """A ``flexkv-run replay --out`` directory, or a trace file written by the tracer."""
    source = Path(source)
    run_dir = source if source.is_dir() else None
    trace = source / "trace.jsonl" if run_dir else source
    if not trace.exists():
        raise FileNotFoundError(2, "no trace with transfer records", str(trace))
    config = summary = None
    if run_dir is not None:
        if (run_dir / "config.json").exists():
            config = load_config(run_dir / "config.json", env={})
        if (run_dir / "summary.json").exists():
            summary = json.loads((run_dir / "summary.json").read_text())
    transfers, outcomes = [], []
    for record in read_trace(trace):
        if isinstance(record, TransferRecord):
            transfers.append(record)
        elif isinstance(record, OutcomeRecord):
            outcomes.append(record)
    if not transfers:
        raise TraceError(f"{trace}: no transfer records to calibrate from")
    return RunData(run_dir, trace, config, summary, transfers, outcomes)


def _isolated(records: list[TransferRecord]) -> list[TransferRecord]:
    spans = sorted(records, key=lambda r: r.t_submit)
    alone = []
    latest_end = float("-inf")
    for i, rec in enumerate(spans):
        end = rec.t_submit + rec.queue_s + rec.transfer_s
        next_start = spans[i + 1].t_submit if i + 1 < len(spans) else float("inf")
        if rec.t_submit >= latest_end and end <= next_start:
            alone.append(rec)
        latest_end = max(latest_end, end)
    return alone


def fit_path(path: str, records: list[TransferRecord], extra_overhead: float) -> PathFit:
    import numpy as np

    used = _isolated(records)
    if len(used) < 3:
        used = records
    x = np.array([r.num_bytes for r in used], dtype=float)
    y = np.array([r.queue_s + r.transfer_s for r in used], dtype=float)
    design = np.column_stack([np.ones_like(x), x])
    (a, b), *_ = np.linalg.lstsq(design, y, rcond=None)
    if a < 0 or len(set(x)) < 2:
        a = 0.0 if len(set(x)) >= 2 else float(np.median(y - x * 0))
        b = float((x @ (y - a)) / (x @ x)) if x.any() else 0.0
    b = max(float(b), 1e-15)
    pred = a + b * x
    ss_res = float(((y - pred) ** 2).sum())
    ss_tot = float(((y - y.mean()) ** 2).sum()) or 1.0
    rel = np.abs(pred - y) / np.maximum(y, 1e-12)
    return PathFit(path, len(records), len(used), float(a) + extra_overhead, 1.0 / b,
                   1.0 - ss_res / ss_tot, float(np.median(rel)))


def _dispatch_gap(transfers: list[TransferRecord]) -> float:
    """Median time from an op's end to the submission of an op that waited for it."""
    import numpy as np

    by_request: dict[tuple[str, bool], dict[int, TransferRecord]] = defaultdict(dict)
    for rec in transfers:
        by_request[(rec.request_id, rec.path in (H2D, SSD_READ, REMOTE_READ))][rec.op_id] = rec
    gaps = []
    for ops in by_request.values():
        for rec in ops.values():
            ends = [ops[d].t_submit + ops[d].queue_s + ops[d].transfer_s
                    for d in rec.deps if d in ops]
            if ends:
                gaps.append(max(rec.t_submit - max(ends), 0.0))
    return float(np.median(gaps)) if gaps else 0.0


def calibrate(run: RunData) -> tuple[dict[str, Any], list[PathFit]]:
    """A profile document (YAML-ready) and the fit of each path the run used."""
    import numpy as np

    gap = _dispatch_gap(run.transfers)
    by_path: dict[str, list[TransferRecord]] = defaultdict(list)
    for rec in run.transfers:
        by_path[rec.path].append(rec)
    fits = {p: fit_path(p, recs, gap) for p, recs in sorted(by_path.items())}
    cache = run.config.cache_config if run.config is not None else None
    doc: dict[str, Any] = {"schema_version": 1, "name": f"calibrated:{run.trace_path}",
                           "description": "fitted by flexkv-sim calibrate", "sources": {}}
    pcie: dict[str, Any] = {}
    for path, flag, sms in ((H2D, "use_ce_transfer_h2d", "transfer_sms_h2d"),
                            (D2H, "use_ce_transfer_d2h", "transfer_sms_d2h")):
        if path not in fits:
            continue
        f = fits[path]
        curve = {"overhead": f.overhead_s, "bandwidth": f.bandwidth}
        entry: dict[str, Any] = {"sm": dict(curve), "ce": dict(curve)}
        grid = getattr(cache, sms, 8) if cache is not None else 8
        entry["sm_bandwidth_per_sm"] = f.bandwidth / max(grid, 1)
        pcie[path] = entry
        mode = "ce" if cache is not None and getattr(cache, flag) else "sm"
        doc["sources"][f"pcie.{path}.{mode}"] = f"least squares over {f.used} ops"
    if pcie:
        pcie["duplex_bandwidth"] = 2 * max(pcie[p]["sm"]["bandwidth"] for p in pcie
                                           if p in (H2D, D2H))
        doc["pcie"] = pcie
    ssd = {kind: {"overhead": fits[p].overhead_s, "bandwidth": fits[p].bandwidth,
                  "half_bandwidth_queue_depth": 0}
           for kind, p in (("read", SSD_READ), ("write", SSD_WRITE)) if p in fits}
    if ssd:
        doc["ssd"] = ssd
    for key, path in (("network", REMOTE_READ), ("network_write", REMOTE_WRITE)):
        if path in fits:
            doc[key] = {"overhead": fits[path].overhead_s, "bandwidth": fits[path].bandwidth}
    idle = [o.latency_s for o in run.outcomes
            if o.op == "get" and not any(v for k, v in o.hit_blocks.items() if k != "gpu")]
    doc["match"] = float(np.median(idle)) if idle else 0.0
    doc["sources"]["match"] = f"median latency of {len(idle)} GETs that moved nothing"
    if run.config is not None:
        c = run.config.serving_config.compute
        doc["compute"] = {"prefill_fixed": c.prefill_fixed_s,
                          "prefill_per_token": c.prefill_per_token_s,
                          "prefill_quadratic": c.prefill_quadratic_s,
                          "decode_step": c.decode_step_s}
        doc["sources"]["compute"] = "the run's serving_config.compute"
    return doc, list(fits.values())


def require_config(run: RunData) -> Config:
    if run.config is None:
        raise ConfigError("the run directory has no config.json", key_path="config.json")
    return run.config
