"""The PCIe duplex term: how much the two copy directions slow each other when both move.

The twin's :class:`~flexkv_sim.devices.DuplexPair` runs each direction at its own
bandwidth alone and at most ``duplex_bandwidth / 2`` while the other one is busy. On a
GPU host that is the link's duplex limit; on a machine without a GPU the stand-in
copies of both directions share the host's cores and memory bandwidth, and under load
they overlap often (paced replays: one request's PUT beside another's GET).

Method: each PCIe op carries the share ``f`` of its service window (``t_submit +
queue_s`` to its end) during which the other direction was busy (:func:`overlaps`), and
the path's curve gets a third term, ``time = overhead + (bytes / bandwidth) (1 + f (s -
1))``, fitted with the others (:func:`.estimate.fit_curve`): ``s`` is the slowdown of
the bandwidth part while both directions move. It is fitted only where at least
``MIN_OVERLAPPING`` ops ran at least half beside the other direction (a paced run under
load; one request at a time never overlaps). Each direction then moves at ``bandwidth /
s`` while both are busy, and the duplex bandwidth is the sum of the two
(:func:`duplex_bandwidth`); without the term in both directions it is twice the larger
bandwidth, so that neither direction slows the other.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from typing import Any

MIN_OVERLAPPING = 15


def _windows(records: Sequence[Any]) -> list[tuple[float, float]]:
    return [(r.t_submit + r.queue_s, r.t_submit + r.queue_s + r.transfer_s) for r in records]


def _union(windows: list[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for s, e in sorted(windows):
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return merged


def overlaps(records: Sequence[Any], others: Sequence[Any]) -> list[float]:
    """For each record, the share of its service window during which some record of
    ``others`` was in service."""
    busy = _union(_windows(others))
    starts = [b[0] for b in busy]
    out = []
    for start, end in _windows(records):
        if end <= start:
            out.append(0.0)
            continue
        covered = 0.0
        i = max(bisect_left(starts, start) - 1, 0)
        while i < len(busy) and busy[i][0] < end:
            s, e = busy[i]
            covered += max(0.0, min(end, e) - max(start, s))
            i += 1
        out.append(covered / (end - start))
    return out


def duplex_bandwidth(fits: dict[str, Any]) -> tuple[float, str]:
    """``pcie.duplex_bandwidth`` from the two directions' fits (``bandwidth`` and
    ``duplex_slowdown``, None where not fitted), and how it was found."""
    if not fits:
        return 0.0, "no PCIe ops"
    slow = {p: f.duplex_slowdown for p, f in fits.items()}
    if len(fits) < 2 or any(s is None for s in slow.values()):
        widest = max(f.bandwidth for f in fits.values())
        return 2 * widest, (
            f"no duplex term: fewer than {MIN_OVERLAPPING} ops of each direction ran "
            "beside the other; twice the larger bandwidth")
    text = ", ".join(f"{p} {s:.2f}x" for p, s in sorted(slow.items()))
    return sum(f.bandwidth / f.duplex_slowdown for f in fits.values()), (
        f"each direction's slowdown while the other moves ({text}), fitted with its "
        "curve; the sum of the bandwidths that leaves")
