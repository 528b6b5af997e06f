"""Fitting a hardware profile from the transfer records of ``flexkv-run`` runs.

Method (stated so a reader can check it), per path, over every op of every run given:

1. Each op's time alone: the engine's sharing of a path between concurrent ops is undone
   as the twin's processor sharing would do it, and waiting behind another op of the
   path is replaced by the path's dispatch latency (:func:`.estimate.alone_times`).
2. The curve ``time = overhead + bytes / bandwidth``, and for SSD paths the queue-depth
   term of the profile: an op of ``n`` blocks at queue depth ``Q`` keeps ``q = min(n,
   Q)`` I/Os in flight and moves at ``bandwidth x q / (q +
   half_bandwidth_queue_depth)``, so ``time = overhead + bytes / bandwidth + (h /
   bandwidth) x bytes / q`` (one I/O per block), plus ``per_io x ios`` where the records
   count each op's I/Os (blocks next to each other in a file and in the host pool merge
   into one; how well they merge varies from op to op, so one run identifies the term,
   and the twin counts the I/Os of the ops it predicts by the same rule). ``h`` is
   identified only across runs at different queue depths (within one run, ops below the
   depth are also the small ones, so size effects would pass for queueing); from runs at
   one depth the curve is that depth's and ``h`` is 0, and the fit says so.
   Multiplicative noise of median 1, fitted by robust iteratively reweighted least
   squares on relative errors (:func:`.estimate.fit_curve`); the noise's log-normal
   sigma is the curve's ``jitter``.
3. PCIe duplex: how much the two directions slow each other while both move
   (:mod:`.duplex`).
4. The hand-off between dependent ops (a completion handled, the next op dispatched),
   the median gap between an op's end and its dependent's submission, is added to every
   op's overhead. GET planning (``match``) is the median latency of GETs that moved
   nothing; ``complete``, the median time from a GET's or PUT's last op end to its end
   (the engine's completion path).
5. Compute: when a run emulated prefill (``--prefill model``), ``prefill_fixed``,
   ``prefill_per_token`` and ``prefill_quadratic`` are fitted to its per-request prefill
   times by non-negative least squares, and ``decode_step`` is its decode time per output
   token; otherwise the run's ``serving_config.compute`` is copied.

The PCIe curve is written for both copy modes (a CPU-only run has no copy engine).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flexkv_engine.config import Config, ConfigError, load_config
from flexkv_engine.core.paths import (
    D2H,
    H2D,
    REMOTE_READ,
    REMOTE_WRITE,
    SSD_READ,
    SSD_WRITE,
)
from flexkv_engine.trace import (
    OutcomeRecord,
    RequestRecord,
    TraceError,
    TransferRecord,
    read_trace,
)

from .duplex import duplex_bandwidth, overlaps
from .estimate import CurveFit, OpSample, alone_times, fit_curve
from .host import fit_interpreter

SSD_PATHS = (SSD_READ, SSD_WRITE)
LOAD_PATHS = (H2D, SSD_READ, REMOTE_READ)

#: A path fitted from fewer ops than this is flagged: with a handful of ops, a burst or
#: two on a shared machine moves its overhead and bandwidth, and its jitter (a median of
#: deviations) means little.
MIN_FIT_OPS = 20
#: A path whose curve explains less than this share of the variance of its op times is
#: flagged (its sizes say little about its times; the jitter carries the rest). Not 0.8:
#: the recorded fit of bench/RESULTS.md (calibration, run A) has R^2 0.74 to 0.79 on
#: paths that predict held-out runs within about 10%, a good fit on a shared machine;
#: under 0.5, the noise explains more of the op times than the curve does.
MIN_FIT_R2 = 0.5


@dataclass(frozen=True)
class RunData:
    run_dir: Path | None
    trace_path: Path
    config: Config | None
    summary: dict[str, Any] | None
    transfers: list[TransferRecord]
    outcomes: list[OutcomeRecord]
    output_tokens: dict[str, int]  # request id -> output tokens (for decode time)
    events: list[dict[str, Any]] = field(default_factory=list)  # planner calls, in order


@dataclass(frozen=True)
class PathFit:
    path: str
    ops: int
    used: int  # ops with full weight in the robust fit
    overhead_s: float
    bandwidth: float
    r2: float
    median_rel_err: float
    jitter: float = 0.0
    half_bandwidth_queue_depth: float | None = None  # SSD paths only
    queue_depth_identified: bool = False
    per_io_s: float | None = None  # SSD paths whose records count their I/Os
    duplex_slowdown: float | None = None  # PCIe: slowdown while the other direction moves


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
    transfers, outcomes, output_tokens, events = [], [], {}, []
    for record in read_trace(trace):
        if isinstance(record, TransferRecord):
            transfers.append(record)
        elif isinstance(record, dict) and record.get("type") == "event":
            events.append(record)
        elif isinstance(record, OutcomeRecord):
            outcomes.append(record)
        elif isinstance(record, RequestRecord) and record.output_tokens:
            output_tokens[record.request_id] = record.output_tokens
    if not transfers:
        raise TraceError(f"{trace}: no transfer records to calibrate from")
    return RunData(run_dir, trace, config, summary, transfers, outcomes, output_tokens, events)


def _queue_depth(run: RunData) -> int:
    """The queue depth the twin would use for the run (``ssd_cache_iouring_entries``)."""
    if run.config is not None:
        return max(run.config.cache_config.ssd_cache_iouring_entries, 1)
    return 1


def _samples(run: RunData) -> dict[str, list[OpSample]]:
    by_path: dict[str, list[TransferRecord]] = defaultdict(list)
    for rec in run.transfers:
        by_path[rec.path].append(rec)
    qd = _queue_depth(run)
    out: dict[str, list[OpSample]] = {}
    other = {H2D: D2H, D2H: H2D}
    for path, recs in by_path.items():
        alone = alone_times([(r.t_submit, r.queue_s, r.transfer_s) for r in recs])
        shares = (overlaps(recs, by_path.get(other[path], [])) if path in other
                  else [0.0] * len(recs))
        out[path] = [
            OpSample(r.num_bytes, r.num_blocks, qd, t, r.ios, f)
            for r, t, f in zip(recs, alone, shares, strict=True)
        ]
    return out


def _dispatch_gaps(run: RunData) -> list[float]:
    """Times from an op's end to the submission of an op that waited for it."""
    by_request: dict[tuple[str, bool], dict[int, TransferRecord]] = defaultdict(dict)
    for rec in run.transfers:
        by_request[(rec.request_id, rec.path in LOAD_PATHS)][rec.op_id] = rec
    gaps = []
    for ops in by_request.values():
        for rec in ops.values():
            ends = [
                ops[d].t_submit + ops[d].queue_s + ops[d].transfer_s for d in rec.deps if d in ops
            ]
            if ends:
                gaps.append(max(rec.t_submit - max(ends), 0.0))
    return gaps


def _completion_gaps(run: RunData) -> list[float]:
    """Per finished GET or PUT that moved something: its end (outcome) minus its last
    op's end."""
    ends: dict[tuple[str, bool], float] = {}
    for rec in run.transfers:
        key = (rec.request_id, rec.path in LOAD_PATHS)
        ends[key] = max(ends.get(key, 0.0), rec.t_submit + rec.queue_s + rec.transfer_s)
    gaps = []
    for o in run.outcomes:
        last = ends.get((o.request_id, o.op == "get"))
        if last is not None and o.ok:
            gaps.append(max(o.t - last, 0.0))
    return gaps


def _path_fit(path: str, samples: list[OpSample], gap: float) -> PathFit:
    f: CurveFit = fit_curve(samples, ssd=path in SSD_PATHS)
    return PathFit(
        path,
        len(samples),
        f.inliers,
        f.overhead_s + gap,
        f.bandwidth,
        f.r2,
        f.median_rel_err,
        f.jitter,
        f.half_qd if path in SSD_PATHS else None,
        f.qd_identified,
        f.per_io_s,
        f.duplex_slowdown,
    )


def fit_warnings(f: PathFit) -> list[str]:
    """Why the fit of ``f`` is doubtful: fewer than :data:`MIN_FIT_OPS` ops, or an R^2
    below :data:`MIN_FIT_R2`. Empty when neither."""
    out = []
    if f.ops < MIN_FIT_OPS:
        out.append(f"fitted from {f.ops} ops, fewer than {MIN_FIT_OPS}")
    if f.r2 < MIN_FIT_R2:
        out.append(
            f"R^2 {f.r2:.3f} is below {MIN_FIT_R2}: op sizes explain little of its op times "
            f"(median error {f.median_rel_err:.1%}, jitter {f.jitter:.3f})"
        )
    return out


def _method(f: PathFit, runs: int) -> str:
    text = (
        f"robust least squares on relative errors over {f.ops} ops of {runs} run(s) "
        f"({f.used} at full weight); jitter = sigma of the log residuals"
    )
    if f.half_bandwidth_queue_depth is not None:
        text += (
            "; per-I/O cost from the I/O counts of its ops"
            if f.per_io_s is not None
            else "; ops without I/O counts, so no per-I/O cost"
        )
        text += (
            "; queue-depth term from runs at different queue depths"
            if f.queue_depth_identified
            else "; runs at one queue depth only, so no queue-depth term"
        )
    for warning in fit_warnings(f):
        text += f"; warning: {warning}"
    return text


def _compute(runs: Sequence[RunData], doc: dict[str, Any]) -> None:
    """Fit the compute model from prefill timings, or copy the first run's config."""
    import numpy as np
    import pandas as pd

    from .estimate import nonneg_least_squares

    rows, decode = [], [0.0, 0]
    for run in runs:
        if run.run_dir is None or not (run.run_dir / "requests.csv").exists():
            continue
        req = pd.read_csv(run.run_dir / "requests.csv")
        reused = sum(req[f"{t}_tokens"] for t in ("gpu", "cpu", "ssd", "remote"))
        new = (req["num_tokens"] - reused).clip(lower=0)
        for n, r, p in zip(new, reused, req["prefill_s"], strict=True):
            if p > 0:
                rows.append((1.0, float(n), float(n) * float(n + r), float(p)))
        for rid, d in zip(req["request_id"].astype(str), req["decode_s"], strict=True):
            if d > 0 and run.output_tokens.get(rid):
                decode[0] += float(d)
                decode[1] += run.output_tokens[rid]
    config = next((r.config for r in runs if r.config is not None), None)
    if rows:
        data = np.array(rows)
        fixed, per_token, quad = nonneg_least_squares(data[:, :3], data[:, 3], np.ones(len(data)))
        step = (
            decode[0] / decode[1]
            if decode[1]
            else (config.serving_config.compute.decode_step_s if config is not None else 0.0)
        )
        doc["compute"] = {
            "prefill_fixed": float(fixed),
            "prefill_per_token": float(per_token),
            "prefill_quadratic": float(quad),
            "decode_step": float(step),
        }
        doc["sources"]["compute"] = (
            f"least squares over {len(rows)} measured prefills (fixed + per token x new + "
            "quadratic x new x (cached + new)); decode: time per output token"
        )
    elif config is not None:
        c = config.serving_config.compute
        doc["compute"] = {
            "prefill_fixed": c.prefill_fixed_s,
            "prefill_per_token": c.prefill_per_token_s,
            "prefill_quadratic": c.prefill_quadratic_s,
            "decode_step": c.decode_step_s,
        }
        doc["sources"]["compute"] = "the run's serving_config.compute (no prefill was timed)"


def calibrate(runs: RunData | Sequence[RunData]) -> tuple[dict[str, Any], list[PathFit]]:
    """A profile document (YAML-ready) and the fit of each path the runs used."""
    import numpy as np

    runs = [runs] if isinstance(runs, RunData) else list(runs)
    pooled: dict[str, list[OpSample]] = defaultdict(list)
    gaps: list[float] = []
    for run in runs:
        for path, samples in _samples(run).items():
            pooled[path].extend(samples)
        gaps.extend(_dispatch_gaps(run))
    gap = float(np.median(gaps)) if gaps else 0.0
    fits = {p: _path_fit(p, s, gap) for p, s in sorted(pooled.items())}
    names = ", ".join(str(r.trace_path) for r in runs)
    doc: dict[str, Any] = {
        "schema_version": 1,
        "name": f"calibrated:{names}",
        "description": "fitted by flexkv-sim calibrate",
        "sources": {},
    }
    cache = next((r.config.cache_config for r in runs if r.config is not None), None)
    pcie: dict[str, Any] = {}
    for path, sms in ((H2D, "transfer_sms_h2d"), (D2H, "transfer_sms_d2h")):
        if path not in fits:
            continue
        f = fits[path]
        curve = {"overhead": f.overhead_s, "bandwidth": f.bandwidth, "jitter": f.jitter}
        grid = getattr(cache, sms, 8) if cache is not None else 8
        pcie[path] = {
            "sm": dict(curve),
            "ce": dict(curve),
            "sm_bandwidth_per_sm": f.bandwidth / max(grid, 1),
        }
        for mode in ("sm", "ce"):
            doc["sources"][f"pcie.{path}.{mode}"] = _method(f, len(runs))
    if pcie:
        pcie["duplex_bandwidth"], doc["sources"]["pcie.duplex_bandwidth"] = duplex_bandwidth(
            {p: fits[p] for p in (H2D, D2H) if p in fits})
        doc["pcie"] = pcie
    ssd = {}
    for kind, path in (("read", SSD_READ), ("write", SSD_WRITE)):
        if path in fits:
            f = fits[path]
            ssd[kind] = {
                "overhead": f.overhead_s,
                "bandwidth": f.bandwidth,
                "half_bandwidth_queue_depth": f.half_bandwidth_queue_depth or 0.0,
                "per_io": f.per_io_s or 0.0,
                "jitter": f.jitter,
            }
            doc["sources"][f"ssd.{kind}"] = _method(f, len(runs))
    if ssd:
        doc["ssd"] = ssd
    for key, path in (("network", REMOTE_READ), ("network_write", REMOTE_WRITE)):
        if path in fits:
            f = fits[path]
            doc[key] = {"overhead": f.overhead_s, "bandwidth": f.bandwidth, "jitter": f.jitter}
            doc["sources"][key] = _method(f, len(runs))
    idle = [
        o.latency_s
        for run in runs
        for o in run.outcomes
        if o.op == "get" and not any(v for k, v in o.hit_blocks.items() if k != "gpu")
    ]
    doc["match"] = float(np.median(idle)) if idle else 0.0
    doc["sources"]["match"] = f"median latency of {len(idle)} GETs that moved nothing"
    ends = [gap for run in runs for gap in _completion_gaps(run)]
    doc["complete"] = float(np.median(ends)) if ends else 0.0
    doc["sources"]["complete"] = (
        f"median time from the last op's end to the request's end over {len(ends)} GETs "
        "and PUTs that moved something")
    _compute(runs, doc)
    fit_interpreter(runs, doc)
    return doc, list(fits.values())


def require_config(run: RunData) -> Config:
    if run.config is None:
        raise ConfigError("the run directory has no config.json", key_path="config.json")
    return run.config
