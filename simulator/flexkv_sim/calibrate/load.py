"""What ``validate`` reports of a run under load, measured against predicted.

- ``order_check``: the engine's recorded order of planner calls replayed through the
  core (:mod:`..replay.ordered`). It must give the engine's hits for every request: the
  model agrees op by op once timing is taken out.
- ``hit_differences``: the requests whose hits differ between the run and the twin's
  timing replay, with the reason for each (:data:`..replay.ordered.REASONS`).
- ``queueing_by_path``: the wait of ops in each path's queue (``queue_s``: the engine's
  copy worker per PCIe direction, the io_uring ring for SSD), mean and p90.
- ``throughput``: requests per second, from the first arrival to the last request's end,
  and the hit tokens served per second.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from flexkv_engine.replay_input import ReplayInput
from flexkv_engine.trace import TransferRecord

from ..replay.ordered import REASONS, OrderedResult, explain, replay_events, sharers_index

HIT_COLUMNS = ("cpu_tokens", "ssd_tokens", "remote_tokens")


def load_report(inp: ReplayInput, run: Any, predicted: Any, meas: Any, pred: Any) -> dict:
    """Everything above for a measured ``run`` (``fit.RunData``) and the twin's replay of
    it (``TimingResult``, with transfers and events recorded)."""
    transfers = predicted.transfers or []
    first_arrival = float(pred["t"].min()) if len(pred) else 0.0
    return {
        **order_report(inp, run.events, predicted.events or [], meas, pred),
        "queueing_by_path": queueing_by_path(run.transfers, transfers),
        "throughput": throughput(meas, pred, float((run.summary or {}).get("wall_s") or 0.0),
                                 predicted.span_s - first_arrival),
    }


def _rel(pred: float, meas: float) -> float | None:
    return abs(pred - meas) / meas if meas > 0 else None


def order_report(
    inp: ReplayInput, measured_events: list[dict[str, Any]], predicted_events: list[dict[str, Any]],
    meas: Any, pred: Any,
) -> dict[str, Any]:
    """``order_check`` and ``hit_differences`` (``meas`` and ``pred``: per-request frames)."""
    measured_hits = {
        str(r.request_id): tuple(int(getattr(r, c)) for c in HIT_COLUMNS)
        for r in meas[meas["op"] == "get"].itertuples()
    }
    predicted_hits = {
        str(r.request_id): tuple(int(getattr(r, c)) for c in HIT_COLUMNS)
        for r in pred[pred["op"] == "get"].itertuples()
    }
    out: dict[str, Any] = {}
    engine_order: OrderedResult | None = None
    if measured_events:
        engine_order = replay_events(inp, measured_events)
        same = [rid for rid, hits in measured_hits.items() if engine_order.hits.get(rid) == hits]
        out["order_check"] = {
            "events": engine_order.events,
            "requests": len(measured_hits),
            "agree": len(same) / len(measured_hits) if measured_hits else 1.0,
            "differ": sorted(set(measured_hits) - set(same))[:20],
        }
    else:
        out["order_check"] = None  # a run recorded before event records existed
    differ = sorted(rid for rid, hits in measured_hits.items() if predicted_hits.get(rid) != hits)
    reasons: Counter[str] = Counter()
    if differ and engine_order is not None:
        twin_order = replay_events(inp, predicted_events)
        index = sharers_index(inp)
        keys = {r.request_id: r.keys for r in inp.requests}
        for rid in differ:
            sharers = {other for k in keys[rid] for other in index[k] if other != rid}
            reasons[explain(rid, engine_order, twin_order, sorted(sharers))] += 1
    elif differ:
        reasons["unknown"] = len(differ)
    out["hit_differences"] = {
        "requests": len(differ),
        "share": len(differ) / len(measured_hits) if measured_hits else 0.0,
        "by_reason": dict(reasons),
        "reasons": {k: REASONS[k] for k in reasons if k in REASONS},
    }
    return out


def _stats(values: list[float]) -> dict[str, float]:
    import numpy as np

    if not values:
        return {"mean_s": 0.0, "p90_s": 0.0}
    return {"mean_s": float(np.mean(values)), "p90_s": float(np.percentile(values, 90))}


def queueing_by_path(
    measured: list[TransferRecord], predicted: list[TransferRecord]
) -> dict[str, Any]:
    out = {}
    for path in sorted({r.path for r in measured} | {r.path for r in predicted}):
        m = _stats([r.queue_s for r in measured if r.path == path])
        p = _stats([r.queue_s for r in predicted if r.path == path])
        out[path] = {"measured": m, "predicted": p}
    return out


def throughput(meas: Any, pred: Any, measured_span_s: float, predicted_span_s: float) -> dict:
    """Requests and hit tokens per second over each side's span."""
    out = {}
    for name, column in (("requests_per_s", None), ("hit_tokens_per_s", HIT_COLUMNS)):
        m_count = len(meas) if column is None else float(meas[list(column)].to_numpy().sum())
        p_count = len(pred) if column is None else float(pred[list(column)].to_numpy().sum())
        m = m_count / measured_span_s if measured_span_s > 0 else 0.0
        p = p_count / predicted_span_s if predicted_span_s > 0 else 0.0
        out[name] = {"measured": m, "predicted": p, "rel_err": _rel(p, m)}
    return out
