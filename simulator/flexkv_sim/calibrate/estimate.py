"""The numerical part of calibration: what each recorded op would take alone, and the fit.

``alone_times``: the engine's movers share a path between concurrent ops (the io_uring
ring interleaves their I/Os) or queue them (one torch worker per direction). The twin
shares a link by processor sharing, so the fit undoes it the same way: an op's time
alone is the integral of ``dt / n(t)`` over its service window (``t_submit + queue_s``
to its end), ``n(t)`` being the path's ops in service at ``t``. Its queue time counts
as its own latency only when it waited for no other op of the path; an op that waited
gets the path's median dispatch latency instead, since the wait is contention that the
twin's sharing produces itself.

``fit_curve``: ``time = (overhead + bytes / bandwidth [+ per-I/O term] [+ SSD queue
term]) x noise``, with multiplicative noise of median 1. The per-I/O term (SSD paths
whose records count their I/Os) is ``per_io x ios``: blocks that merge into fewer,
larger I/Os cost less, and since merging varies from op to op, one run identifies it.
Estimated by iteratively reweighted least squares on relative residuals (weights ``1 /
predicted^2``, so a 1 ms op counts as much as a 100 ms one) with Huber weights on the
log residuals (ops further than 1.5 robust standard deviations out count less: a
neighbour's I/O burst on a shared machine does not drag the curve), coefficients kept >=
0, and the curve scaled so that the median ratio of measured to predicted is 1.
``jitter`` is the robust standard deviation (1.4826 x MAD) of the log residuals: the op-
to-op spread the twin draws from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

HUBER_K = 1.5
MAD_TO_SIGMA = 1.4826
ITERATIONS = 30


@dataclass(frozen=True)
class OpSample:
    """One recorded op: its size, the run's queue depth, and its time alone."""

    num_bytes: int
    blocks: int
    queue_depth: int
    alone_s: float
    ios: int = 0  # SSD ops: the I/Os their blocks merged into (0: not recorded)
    overlap: float = 0.0  # PCIe ops: share of the op the other direction was busy


@dataclass(frozen=True)
class CurveFit:
    overhead_s: float
    bandwidth: float  # bytes/s; for SSD the peak, derated by queue depth with ``half_qd``
    half_qd: float  # SSD: half_bandwidth_queue_depth (0 when not fitted or not found)
    qd_identified: bool  # ops at two or more queue depths
    per_io_s: float | None  # SSD: seconds per I/O; None when the ops carry no I/O counts
    jitter: float
    inliers: int  # ops with full Huber weight
    r2: float  # of the predicted times, over all ops
    median_rel_err: float
    duplex_slowdown: float | None = None  # PCIe: bandwidth part's slowdown, both busy


def alone_times(ops: list[tuple[float, float, float]]) -> list[float]:
    """``(t_submit, queue_s, transfer_s)`` of one path's ops in one run -> time alone."""
    import numpy as np

    n = len(ops)
    if n == 0:
        return []
    start = np.array([t + q for t, q, _ in ops])
    end = start + np.array([x for _, _, x in ops])
    submit = np.array([t for t, _, _ in ops])
    # Sweep the service windows: between consecutive events n(t) is constant.
    events = sorted(
        [(s, 1, i) for i, s in enumerate(start)] + [(e, -1, i) for i, e in enumerate(end)]
    )
    alone = np.zeros(n)
    active: set[int] = set()
    last = events[0][0]
    for when, kind, i in events:
        if active and when > last:
            share = (when - last) / len(active)
            for j in active:
                alone[j] += share
        last = when
        if kind == 1:
            active.add(i)
        else:
            active.discard(i)
    # Did an op's queue window overlap another op's service window (it waited)?
    order = np.argsort(start)
    ends_sorted_by_start = end[order]
    running_max = np.maximum.accumulate(ends_sorted_by_start)
    waited = np.zeros(n, dtype=bool)
    for i in range(n):
        if ops[i][1] <= 0:
            continue
        k = int(np.searchsorted(start[order], start[i], side="left"))  # started before i
        if k > 0 and running_max[k - 1] > submit[i]:
            waited[i] = True
    queue = np.array([q for _, q, _ in ops])
    free = queue[~waited]
    dispatch = float(np.median(free)) if free.size else 0.0
    return list(alone + np.where(waited, dispatch, queue))


def nonneg_least_squares(x: Any, y: Any, w: Any) -> Any:
    """Weighted least squares with every coefficient >= 0 (negative ones are dropped)."""
    import numpy as np

    cols = list(range(x.shape[1]))
    sw = np.sqrt(w)
    while True:
        coef, *_ = np.linalg.lstsq(x[:, cols] * sw[:, None], y * sw, rcond=None)
        if (coef >= 0).all() or len(cols) == 1:
            break
        cols = [c for c, v in zip(cols, coef, strict=True) if v >= 0] or cols[1:]
    beta = np.zeros(x.shape[1])
    beta[cols] = np.maximum(coef, 0.0)
    return beta


def fit_curve(samples: list[OpSample], *, ssd: bool, min_overlapping: int = 15) -> CurveFit:
    """Fit one path's curve (for SSD its queue-depth term, for PCIe its duplex term where
    ``min_overlapping`` ops ran at least half beside the other direction) to its ops'
    times alone."""
    import numpy as np

    y = np.array([s.alone_s for s in samples], dtype=float)
    x = np.array([s.num_bytes for s in samples], dtype=float)
    blocks = np.maximum(np.array([s.blocks for s in samples], dtype=float), 1.0)
    qd = np.maximum(np.array([s.queue_depth for s in samples], dtype=float), 1.0)
    keep = y > 0
    ios = np.array([s.ios for s in samples], dtype=float)
    share = np.array([s.overlap for s in samples], dtype=float)
    y, x, blocks, qd, ios, share = (
        y[keep], x[keep], blocks[keep], qd[keep], ios[keep], share[keep])
    if y.size == 0:
        return CurveFit(0.0, 1e12, 0.0, False, None, 0.0, 0, 0.0, 0.0)
    columns = [np.ones_like(x), x]
    # Per I/O: only where every op counted its I/Os and ops differ in blocks per I/O
    # (else the term is the per-byte term again).
    per_io_fitted = ssd and bool((ios > 0).all()) and len(set((blocks / ios).tolist())) > 1
    if per_io_fitted:
        columns.append(ios)
    # SSD: q = min(blocks, queue depth) I/Os in flight; time = a + x/B + (h/B) x/q. Only
    # runs at different queue depths identify h: within one run the ops below the depth
    # differ from the others in size too, and whatever else varies with op size (I/O
    # merging, per-op software costs) would be read as a queue-depth effect.
    depths = set(qd.tolist())
    identified = ssd and len(depths) >= 2
    if identified:
        columns.append(x / np.minimum(blocks, qd))
    duplex = not ssd and int((share >= 0.5).sum()) >= min_overlapping
    if duplex:
        columns.append(x * share)
    names = ["overhead", "per_byte", *(["per_io"] if per_io_fitted else []),
             *(["queue"] if identified else []), *(["duplex"] if duplex else [])]
    design = np.column_stack(columns)
    if len(set(x.tolist())) < 2:  # one size only: no slope to fit, time is a latency
        design = design[:, :1]
    w = 1.0 / y**2
    for _ in range(ITERATIONS):
        beta = nonneg_least_squares(design, y, w)
        pred = np.maximum(design @ beta, 1e-12)
        resid = np.log(y / pred)
        centre = float(np.median(resid))
        scale = MAD_TO_SIGMA * float(np.median(np.abs(resid - centre))) or 1e-6
        huber = np.minimum(1.0, HUBER_K * scale / np.maximum(np.abs(resid - centre), 1e-12))
        w = huber / pred**2
    beta = beta * float(np.exp(np.median(np.log(y / np.maximum(design @ beta, 1e-12)))))
    pred = np.maximum(design @ beta, 1e-12)
    resid = np.log(y / pred)
    jitter = MAD_TO_SIGMA * float(np.median(np.abs(resid - np.median(resid))))
    coef = dict.fromkeys(("overhead", "per_byte", "per_io", "queue", "duplex"), 0.0)
    coef.update(zip(names, (float(b) for b in beta), strict=False))
    overhead, per_byte, queue_term = coef["overhead"], coef["per_byte"], coef["queue"]
    bandwidth = 1.0 / per_byte if per_byte > 0 else 1e12
    half_qd = queue_term / per_byte if per_byte > 0 else 0.0
    ss_res = float(((y - pred) ** 2).sum())
    ss_tot = float(((y - y.mean()) ** 2).sum()) or 1.0
    return CurveFit(
        overhead_s=float(overhead),
        bandwidth=float(bandwidth),
        half_qd=float(half_qd),
        qd_identified=identified,
        per_io_s=coef["per_io"] if per_io_fitted else None,
        jitter=jitter,
        inliers=int((np.abs(resid - np.median(resid)) <= HUBER_K * (jitter or 1e-6)).sum()),
        r2=1.0 - ss_res / ss_tot,
        median_rel_err=float(np.median(np.abs(pred - y) / y)),
        duplex_slowdown=1.0 + coef["duplex"] / per_byte if duplex and per_byte > 0 else None,
    )
