"""The doctor's cheap rules: findings from a replay's hit rate, the LRU curve and the config.

None of them replays anything: the hit rate comes from the replay already made, the
curve is one pass over the trace (:func:`flexkv_sim.curve.hit_rate_curve`), the rest is
arithmetic on the config. :func:`diagnose` runs them first and then replays each
suggestion that :func:`hit_rate_options` names; a replay report (:mod:`.why`) runs them
alone. The rules on a timing replay's transfers are in :mod:`.transfer_rules`.

A finding is ``{"kind", "severity", "message", ...}``; severities are ``warning``,
``info`` and ``ok``, in that order of weight.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from flexkv_engine.config import Config
from flexkv_engine.config.model import GIB

EXCELLENT, GOOD = 0.8, 0.5
GRADES = ("excellent", "good", "needs work")
LOW_EVICT_RATIO = 0.05
BEST_BLOCK_TOKENS = 16
CAPACITY_FACTORS = (1, 2, 4, 10)
SEVERITIES = ("warning", "info", "ok")
# Below this gain (absolute hit rate) a change is not worth suggesting.
MIN_GAIN = 0.01


class Option(NamedTuple):
    """A change worth replaying: its id, the key paths it sets (key path -> value), why,
    and (hit-rate options) the least gain that keeps it as a suggestion."""

    id: str
    changes: dict[str, Any]
    reason: str
    min_gain: float = MIN_GAIN


def grade(hit_rate: float) -> str:
    """The guide's grade: > 80% excellent, 50-80% good, < 50% needs work."""
    if hit_rate > EXCELLENT:
        return "excellent"
    if hit_rate >= GOOD:
        return "good"
    return "needs work"


def nice_blocks(n: float) -> int:
    """``n`` rounded up to 1, 2, 2.5 or 5 times a power of ten (at least 1)."""
    if n <= 1:
        return 1
    p = 10 ** math.floor(math.log10(n))
    for m in (1, 2, 2.5, 5, 10):
        if m * p >= n:
            return int(m * p)
    return int(10 * p)  # pragma: no cover


def tier_memory(config: Config) -> dict[str, Any]:
    """Bytes per block and each tier's blocks and GiB (2**30 bytes), GPU included."""
    from flexkv_engine.config.model import GIB

    cc = config.cache_config
    tpb = cc.tokens_per_block
    assert tpb is not None
    per_block = config.model_config.bytes_per_block(tpb)
    blocks = {"gpu": config.serving_config.num_gpu_blocks}
    blocks.update({t: cc.tier_blocks(t) for t in ("cpu", "ssd", "remote")})
    return {
        "tokens_per_block": tpb,
        "bytes_per_token": config.model_config.bytes_per_token,
        "bytes_per_block": per_block,
        "tiers": {
            t: {"blocks": n, "bytes": n * per_block, "gib": n * per_block / GIB}
            for t, n in blocks.items()
        },
    }


def reuse_and_capacity(curve: Any, config: Config) -> tuple[dict[str, Any], dict[str, Any]]:
    """The workload's reuse (the infinite-cache bound) and the LRU curve at the CPU
    tier's 1x/2x/4x/10x, the capacity for 90% of the bound, and at CPU + SSD blocks."""
    cc = config.cache_config
    cpu = cc.tier_blocks("cpu")
    ssd = cc.tier_blocks("ssd")
    need90 = curve.capacity_for(0.9)
    capacity = {
        "cpu_blocks": cpu,
        "lru_hit_rate": {f"{f}x": curve.hit_rate_at(cpu * f) for f in CAPACITY_FACTORS},
        "blocks_for_90pct": need90,
        "hit_rate_at_90pct": curve.hit_rate_at(need90),
        "blocks_for_max": curve.max_capacity,
        "cpu_plus_ssd_blocks": cpu + ssd if ssd else None,
        "cpu_plus_ssd_bound": curve.hit_rate_at(cpu + ssd) if ssd else None,
    }
    reuse = {
        "infinite_cache_hit_rate": curve.max_hit_rate,
        "distinct_blocks": curve.distinct_blocks,
        "prompt_tokens": curve.prompt_tokens,
    }
    return reuse, capacity


def capacity_limits(reuse: dict[str, Any], capacity: dict[str, Any]) -> bool:
    """Whether capacity misses are worth a warning: the bound leaves at least 5 points
    above the CPU tier's LRU hit rate and that rate is below 90% of the bound."""
    bound = reuse["infinite_cache_hit_rate"]
    at1 = capacity["lru_hit_rate"]["1x"]
    return bound - at1 >= 0.05 and at1 < 0.9 * bound


def hit_rate_findings(
    hit: float, reuse: dict[str, Any], capacity: dict[str, Any]
) -> list[dict[str, Any]]:
    """(grade) the hit rate against the guide's grades; when not excellent, (i) workload
    reuse and (ii) capacity misses."""
    level = grade(hit)
    if level == "excellent":
        return [
            {
                "kind": "hit_rate",
                "severity": "ok",
                "message": f"hit rate {hit:.2f} is excellent (> {EXCELLENT:.0%})",
            }
        ]
    findings: list[dict[str, Any]] = [
        {
            "kind": "hit_rate",
            "severity": "warning" if hit < GOOD else "info",
            "message": f"hit rate {hit:.2f}: {level} "
            f"(> {EXCELLENT:.0%} excellent, {GOOD:.0%}-{EXCELLENT:.0%} good)",
        }
    ]
    bound = reuse["infinite_cache_hit_rate"]
    if bound < EXCELLENT:
        findings.append(
            {
                "kind": "workload_reuse",
                "severity": "warning" if bound < GOOD else "info",
                "message": f"the workload reuses little: even an infinite cache hits {bound:.2f} "
                "(no cache setting can beat this bound)",
                "infinite_cache_hit_rate": bound,
            }
        )
    cpu, at, need90 = capacity["cpu_blocks"], capacity["lru_hit_rate"], capacity["blocks_for_90pct"]
    if capacity_limits(reuse, capacity):
        both = capacity["cpu_plus_ssd_blocks"]
        findings.append(
            {
                "kind": "capacity",
                "severity": "warning",
                "message": f"capacity misses: LRU at {cpu} CPU blocks hits {at['1x']:.2f}, "
                f"at 2x {at['2x']:.2f}, 4x {at['4x']:.2f}, 10x {at['10x']:.2f}; {need90} "
                f"blocks reach 90% of the bound {bound:.2f}"
                + (
                    f"; CPU + SSD ({both} blocks) bounds it at {capacity['cpu_plus_ssd_bound']:.2f}"
                    if both
                    else ""
                ),
            }
        )
    elif bound >= 0.05:
        findings.append(
            {
                "kind": "capacity",
                "severity": "ok",
                "message": f"capacity is not the limit: LRU at {cpu} CPU blocks hits "
                f"{at['1x']:.2f} of the bound {bound:.2f}",
            }
        )
    return findings


def eviction_rule(config: Config) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """(iii) eviction settings that leave capacity empty: the finding and the changes."""
    cc = config.cache_config
    wasteful: dict[str, Any] = {}
    if cc.evict_ratio > LOW_EVICT_RATIO:
        wasteful["cache_config.evict_ratio"] = LOW_EVICT_RATIO
    if cc.evict_start_threshold < 1.0:
        wasteful["cache_config.evict_start_threshold"] = 1.0
    if not wasteful:
        return None, {}
    return {
        "kind": "eviction",
        "severity": "info",
        "message": f"evict_ratio {cc.evict_ratio} / evict_start_threshold "
        f"{cc.evict_start_threshold} evict early and leave capacity empty",
    }, wasteful


def block_size_rule(
    config: Config, recorded_tokens_per_block: int
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """(iv) blocks coarser than 16 tokens and than recorded: the finding and the changes
    back to the recorded size with the same memory per tier."""
    cc = config.cache_config
    tpb = cc.tokens_per_block
    recorded = recorded_tokens_per_block
    if tpb is None or tpb <= BEST_BLOCK_TOKENS or recorded >= tpb:
        return None, {}
    scale = tpb // recorded
    changes: dict[str, Any] = {"cache_config.tokens_per_block": recorded}
    for t in ("cpu", "ssd", "remote"):
        if cc.tier_blocks(t):
            changes[f"cache_config.num_{t}_blocks"] = cc.tier_blocks(t) * scale
    if config.serving_config.num_gpu_blocks:
        changes["serving_config.num_gpu_blocks"] = config.serving_config.num_gpu_blocks * scale
    return {
        "kind": "block_size",
        "severity": "info",
        "message": f"tokens_per_block {tpb} > {BEST_BLOCK_TOKENS}: the tokens of a "
        "partly shared last block are not reused",
    }, changes


def hit_rate_options(
    config: Config,
    recorded_tokens_per_block: int,
    reuse: dict[str, Any],
    capacity: dict[str, Any],
    memory: dict[str, Any],
) -> list[Option]:
    """The changes the cheap rules point at, in the doctor's order: (ii) capacity (a CPU
    tier for 90% of the bound, the SSD tier where it is off), (iii) eviction settings,
    (iv) block size."""
    cc = config.cache_config
    options: list[Option] = []
    if capacity_limits(reuse, capacity):
        cpu, need90 = capacity["cpu_blocks"], capacity["blocks_for_90pct"]
        gib = memory["bytes_per_block"] / GIB
        want = nice_blocks(need90)
        if want > cpu:
            options.append(
                Option(
                    "raise_cpu_blocks",
                    {"cache_config.num_cpu_blocks": want},
                    f"raise the CPU tier from {cpu} to {want} blocks (90% of the bound needs "
                    f"{need90}; {want * gib:.1f} GiB of pinned memory)",
                )
            )
        if not cc.enable_ssd:
            ssd_want = nice_blocks(max(capacity["blocks_for_max"], need90) * 1.25)
            options.append(
                Option(
                    "enable_ssd",
                    {"cache_config.enable_ssd": True, "cache_config.num_ssd_blocks": ssd_want},
                    f"enable the SSD tier with {ssd_want} blocks ({ssd_want * gib:.0f} GiB): "
                    "blocks evicted from CPU are found there",
                )
            )
    _, wasteful = eviction_rule(config)
    if wasteful:
        options.append(
            Option(
                "eviction",
                wasteful,
                "evict less at once (evict_ratio <= 0.05) and only when full (threshold 1.0)",
                min_gain=0.0,
            )
        )
    recorded = recorded_tokens_per_block
    _, smaller = block_size_rule(config, recorded)
    if smaller:
        options.append(
            Option(
                "block_size",
                smaller,
                f"use blocks of {recorded} tokens (the recorded size), same memory per tier",
            )
        )
    return options


def combined_option(suggestions: list[dict[str, Any]]) -> Option | None:
    """The kept hit-rate suggestions but the block size's, together: when two or more
    were kept and together they change more than one key."""
    if len(suggestions) <= 1:
        return None
    merged: dict[str, Any] = {}
    for s in suggestions:
        if s["id"] != "block_size":
            merged.update(s["changes"])
    if not merged or len(merged) <= 1:
        return None
    return Option(
        "all_hit_rate", merged, "the capacity and eviction suggestions together", min_gain=0.0
    )


def memory_finding(memory: dict[str, Any]) -> dict[str, Any]:
    parts = [
        f"{t} {v['blocks']} blocks = {v['gib']:.2f} GiB"
        for t, v in memory["tiers"].items()
        if v["blocks"]
    ]
    return {
        "kind": "memory",
        "severity": "info",
        "message": f"{memory['bytes_per_block']} bytes per block of "
        f"{memory['tokens_per_block']} tokens: " + ", ".join(parts),
    }


def cheap_findings(
    hit: float, curve: Any, config: Config, recorded_tokens_per_block: int
) -> dict[str, Any]:
    """Every rule that needs no replay, in the doctor's order: ``grade``, ``reuse``,
    ``capacity``, ``memory`` and ``findings`` (eviction and block size only when the hit
    rate is not excellent, as in :func:`diagnose`)."""
    reuse, capacity = reuse_and_capacity(curve, config)
    findings = hit_rate_findings(hit, reuse, capacity)
    if grade(hit) != "excellent":
        for rule in (eviction_rule(config), block_size_rule(config, recorded_tokens_per_block)):
            if rule[0] is not None:
                findings.append(rule[0])
    memory = tier_memory(config)
    findings.append(memory_finding(memory))
    return {
        "grade": grade(hit),
        "reuse": reuse,
        "capacity": capacity,
        "memory": memory,
        "findings": findings,
    }


def top_findings(findings: list[dict[str, Any]], n: int = 3) -> list[dict[str, Any]]:
    """The ``n`` weightiest findings (warnings, then information, in the doctor's order);
    only when there is nothing else, the first ``ok``."""
    weight = {s: i for i, s in enumerate(SEVERITIES)}
    ranked = sorted(
        (f for f in findings if f["severity"] != "ok"),
        key=lambda f: weight.get(f["severity"], len(SEVERITIES)),
    )
    if not ranked:
        ranked = [f for f in findings if f["severity"] == "ok"][:1]
    return ranked[:n]
