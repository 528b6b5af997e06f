"""Why a replay's hit rate is what it is, in one line each: the bound, the capacity the
bound needs against the configured one, and the doctor's weightiest findings.

``flexkv-sim replay`` and ``flexkv-run replay`` print these lines under their summary,
store them in ``summary.json`` (:meth:`ReplayResult.summary` adds
:meth:`Why.summary_fields`: ``why``, with ``bound``, ``blocks_for_90pct``,
``configured_blocks`` and ``capacity_curve``) and the report draws the curve from
``capacity_curve.csv`` beside it. The cost is one pass over the trace (the CPU tier's
LRU curve, :func:`flexkv_sim.curve.hit_rate_curve`) and no replay: the hit rate is the
replay's own, and the doctor's rules used are those of :mod:`.rules`. Torch-free.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from flexkv_engine.replay_input import ReplayInput
from flexkv_engine.results import ReplayResult

from .rules import cheap_findings, top_findings

CURVE_FILE = "capacity_curve.csv"
WHY_FINDINGS = 3  # doctor's findings shown
# The curve models plain LRU (flexkv_sim.curve.check_lru_config): a run with other
# settings is explained by the curve of the same tiers under plain LRU.
_PLAIN_LRU = {
    "eviction_policy": "lru",
    "evict_ratio": 0.0,
    "evict_start_threshold": 1.0,
    "hit_reward_seconds": 0.0,
    "store_after_hits": 0,
}


@dataclass(frozen=True, eq=False)
class Why:
    """The lines and the numbers behind them; ``curve`` is the CPU tier's LRU curve."""

    lines: list[str]
    bound: float
    blocks_for_90pct: int
    configured_blocks: int
    hit_rate_at_configured: float
    findings: list[dict[str, Any]]
    curve: Any  # flexkv_sim.curve.HitRateCurve
    plain_lru: bool  # whether the run itself is plain LRU (else the curve is of plain LRU)
    wall_s: float

    def summary_fields(self) -> dict[str, Any]:
        """The keys ``summary.json`` gets."""
        c = self.curve
        return {
            "why": list(self.lines),
            "bound": self.bound,
            "blocks_for_90pct": self.blocks_for_90pct,
            "configured_blocks": self.configured_blocks,
            "capacity_curve": {
                "tier": c.tier,
                "policy": "lru",
                "run_is_plain_lru": self.plain_lru,
                "tokens_per_block": c.tokens_per_block,
                "distinct_blocks": c.distinct_blocks,
                "max_capacity_blocks": c.max_capacity,
                "hit_rate_at_configured": self.hit_rate_at_configured,
                "file": CURVE_FILE,
                "wall_s": self.wall_s,
            },
            "why_findings": [dict(f) for f in self.findings],
        }

    def write_curve(self, out: Path) -> Path:
        """``capacity_curve.csv`` in ``out``: ``capacity_blocks,hit_rate`` at the
        capacities worth drawing (at most a few thousand)."""
        from ..curve import plot_capacities

        caps = plot_capacities(self.curve)
        rates = self.curve.rates(caps)
        path = Path(out) / CURVE_FILE
        lines = ["capacity_blocks,hit_rate"]
        lines += [f"{int(c)},{float(r)!r}" for c, r in zip(caps, rates, strict=True)]
        path.write_text("\n".join(lines) + "\n")
        return path


def plain_lru(inp: ReplayInput) -> tuple[ReplayInput, bool]:
    """``inp`` with its tiers under plain LRU, and whether it was so already."""
    cc = inp.config.cache_config
    if all(getattr(cc, key) == value for key, value in _PLAIN_LRU.items()):
        return inp, True
    config = replace(inp.config, cache_config=replace(cc, **_PLAIN_LRU))
    return replace(inp, config=config), False


def explain(inp: ReplayInput, summary: Mapping[str, Any]) -> Why:
    """The why lines of the replay of ``inp`` whose summary is ``summary``."""
    from ..curve import hit_rate_curve

    begin = time.perf_counter()
    lru, already = plain_lru(inp)
    curve = hit_rate_curve(lru, progress=False)
    config = inp.config
    cheap = cheap_findings(float(summary["hit_rate"]), curve, config, inp.recorded_tokens_per_block)
    cc = config.cache_config
    cpu = cc.tier_blocks("cpu")
    ssd = cc.tier_blocks("ssd")
    bound = curve.max_hit_rate
    need90 = curve.capacity_for(0.9)
    at_cpu = curve.hit_rate_at(cpu)
    line = (
        f"the bound is {bound:.1%} (an infinite cache); 90% of it needs {need90:,} CPU "
        f"blocks; you have {cpu:,} (LRU there: {at_cpu:.1%})"
    )
    if ssd:
        line += f"; with SSD, {cpu + ssd:,} blocks (LRU there: {curve.hit_rate_at(cpu + ssd):.1%})"
    if not already:
        line += f"; curve of plain LRU, this run uses {cc.eviction_policy}"
        changed = [
            k for k, v in _PLAIN_LRU.items() if k != "eviction_policy" and getattr(cc, k) != v
        ]
        if changed:
            line += " with " + ", ".join(f"{k}={getattr(cc, k)}" for k in changed)
    top = top_findings(cheap["findings"], WHY_FINDINGS)
    lines = [line] + [f"doctor: {f['message']}" for f in top]
    return Why(
        lines=lines,
        bound=bound,
        blocks_for_90pct=need90,
        configured_blocks=cpu,
        hit_rate_at_configured=at_cpu,
        findings=top,
        curve=curve,
        plain_lru=already,
        wall_s=time.perf_counter() - begin,
    )


def add_why(result: ReplayResult) -> Why:
    """Explain ``result``: its ``summary()`` then has the lines and numbers (after the
    replay's own keys); the caller writes the curve into the run directory
    (:meth:`Why.write_curve`)."""
    why = explain(result.inp, result.summary())
    result.why = why
    return why
