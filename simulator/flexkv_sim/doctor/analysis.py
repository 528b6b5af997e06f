"""The doctor: FlexKV's troubleshooting guide as an analysis of one scenario.

:func:`diagnose` loads the scenario's trace once, replays its config, and looks for the
guide's three symptoms:

- **Hit rate low.** Graded (> 80% excellent, 50-80% good, < 50% needs work). When not
  excellent the causes are separated: (i) workload reuse (the infinite-cache hit rate, a
  bound no cache setting can beat), (ii) capacity misses (the LRU curve at 1x/2x/4x/10x
  the CPU tier, the capacity for 90% of the bound, the curve at CPU + SSD blocks),
  (iii) eviction settings (``evict_ratio`` > 0.05 or ``evict_start_threshold`` < 1
  leave capacity empty), (iv) block size (``tokens_per_block`` above 16 loses the reuse
  of partial blocks).
- **Transfers slow.** A timing replay on the scenario's hardware profiles gives each
  path's time per op and per block, checked against the guide's limits per block
  (GPU<->CPU 10 ms, CPU<->SSD 50 ms, CPU<->remote 500 ms); an SM-limited PCIe path gets
  the copy engine and a wider grid as suggestions; with the copy engine on,
  ``transfer_sms_*`` no longer matters.
- **Memory high.** Each tier's bytes from its blocks and the model's bytes per block.

Every suggestion is replayed: its ``before`` and ``after`` are the twin's metric for the
scenario as it is and with only that suggestion's changes (hit-rate mode for hit rates,
timing mode for latencies).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

from flexkv_engine.config import Config
from flexkv_engine.config.model import GIB

from ..hardware import DEFAULT_PROFILES, HardwareProfile, load_profiles
from ..sweep.scenario import LoadedTrace, Scenario, load_trace, point_config, prepare_point

DOCTOR_SCHEMA_VERSION = 1
EXCELLENT, GOOD = 0.8, 0.5
GRADES = ("excellent", "good", "needs work")
LOW_EVICT_RATIO = 0.05
BEST_BLOCK_TOKENS = 16
CAPACITY_FACTORS = (1, 2, 4, 10)
# The guide's limits on the time to move one block, per path (seconds).
BLOCK_LIMITS_S = {
    "h2d": 0.010,
    "d2h": 0.010,
    "ssd_read": 0.050,
    "ssd_write": 0.050,
    "remote_read": 0.500,
    "remote_write": 0.500,
}
PATH_NAMES = {
    "h2d": "GPU<-CPU (H2D)",
    "d2h": "GPU->CPU (D2H)",
    "ssd_read": "CPU<-SSD",
    "ssd_write": "CPU->SSD",
    "remote_read": "CPU<-remote",
    "remote_write": "CPU->remote",
}
# Below this gain (absolute hit rate) a change is not worth suggesting.
MIN_GAIN = 0.01
_PLAIN_LRU = {
    "cache_config.eviction_policy": "lru",
    "cache_config.evict_ratio": 0.0,
    "cache_config.evict_start_threshold": 1.0,
    "cache_config.hit_reward_seconds": 0.0,
    "cache_config.store_after_hits": 0,
}


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


class Doctor:
    """One scenario's trace (loaded once), its config and its hardware profiles."""

    def __init__(self, scenario: Scenario, *, loaded: LoadedTrace | None = None) -> None:
        self.scenario = scenario
        self.loaded = loaded if loaded is not None else load_trace(scenario)
        self._reblocked: dict[int, list[Any]] = {}
        self.profile_names = tuple(scenario.hardware) or DEFAULT_PROFILES
        self._profile: HardwareProfile | None = None
        self._hitrate: dict[tuple, dict[str, Any]] = {}
        self._timing: dict[tuple, dict[str, Any]] = {}
        self.base = self.config({})

    @property
    def profile(self) -> HardwareProfile:
        if self._profile is None:
            self._profile = load_profiles(self.profile_names)
        return self._profile

    def config(self, changes: Mapping[str, Any]) -> Config:
        return prepare_point(
            self.loaded, point_config(self.scenario, dict(changes)), self._reblocked
        ).config

    def _input(self, changes: Mapping[str, Any]) -> Any:
        return prepare_point(
            self.loaded, point_config(self.scenario, dict(changes)), self._reblocked
        )

    # -- the twin ------------------------------------------------------------------------
    def hitrate(self, changes: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Hit-rate replay with ``changes`` (key path -> value) over the scenario's config."""
        from ..replay import replay_hitrate

        key = tuple(sorted((changes or {}).items()))
        if key not in self._hitrate:
            result = replay_hitrate(self._input(changes or {}), progress=False)
            stats = result.planner.stats
            self._hitrate[key] = {
                "hit_rate": stats.hit_rate,
                "hit_rate_by_tier": stats.hit_rate_by_tier(),
                "prompt_tokens": stats.prompt_tokens,
                "gets": stats.gets,
            }
        return self._hitrate[key]

    def timing(self, changes: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Timing replay: per path ops, mean time per op and per block; GET percentiles."""
        from ..replay.timing import TIMING_COLUMNS, replay_timing
        from ..summary import timing_section

        key = tuple(sorted((changes or {}).items()))
        if key in self._timing:
            return self._timing[key]
        inp = self._input(changes or {})
        block_bytes = inp.config.model_config.bytes_per_block(
            inp.config.cache_config.tokens_per_block
        )
        timed = replay_timing(inp, self.profile, progress=False, record_transfers=True)
        paths: dict[str, dict[str, Any]] = {}
        for op in timed.transfers or []:
            path, num_bytes, seconds = op.path, op.num_bytes, op.queue_s + op.transfer_s
            p = paths.setdefault(
                path, {"ops": 0, "blocks": 0, "time_s": 0.0, "block_s": 0.0, "max_block_s": 0.0}
            )
            blocks = max(num_bytes / block_bytes, 1e-12)
            p["ops"] += 1
            p["blocks"] += round(blocks)
            p["time_s"] += seconds
            p["block_s"] += seconds / blocks
            p["max_block_s"] = max(p["max_block_s"], seconds / blocks)
        out_paths = {}
        for path, p in sorted(paths.items()):
            out_paths[path] = {
                "ops": p["ops"],
                "blocks": p["blocks"],
                "bytes_per_block": block_bytes,
                "op_mean_s": p["time_s"] / p["ops"],
                "per_block_mean_s": p["block_s"] / p["ops"],
                "per_block_max_s": p["max_block_s"],
                "per_token_s": p["time_s"]
                / (p["blocks"] * inp.config.cache_config.tokens_per_block)
                if p["blocks"]
                else 0.0,
                "limit_per_block_s": BLOCK_LIMITS_S.get(path),
            }
        latency = timing_section(
            timed.records, TIMING_COLUMNS, timed.links, timed.span_s, self.profile_names
        )["latency"]
        self._timing[key] = {
            "profiles": list(self.profile_names),
            "paths": out_paths,
            "get_s": latency["get_s"],
            "ttft_s": latency["ttft_s"],
            "hit_rate": timed.planner.stats.hit_rate,
        }
        return self._timing[key]

    def curve(self) -> Any:
        from ..curve import hit_rate_curve

        return hit_rate_curve(self._input(_PLAIN_LRU), progress=False)


# ---- the diagnosis --------------------------------------------------------------------------
def diagnose(
    scenario: Scenario, *, timing: bool = True, loaded: LoadedTrace | None = None
) -> dict[str, Any]:
    """The doctor's report on ``scenario`` as JSON-ready data (see ``render_text``)."""
    begin = time.perf_counter()
    doc = Doctor(scenario, loaded=loaded)
    cfg = doc.base
    base = doc.hitrate()
    hit = base["hit_rate"]
    findings: list[dict[str, Any]] = []
    suggestions: list[dict[str, Any]] = []
    memory = tier_memory(cfg)
    report: dict[str, Any] = {
        "schema_version": DOCTOR_SCHEMA_VERSION,
        "kind": "doctor",
        "scenario": scenario.source,
        "name": scenario.name,
        "trace": scenario.describe_trace(),
        "requests": len(doc.loaded.requests),
        "recorded_tokens_per_block": doc.loaded.header.tokens_per_block,
        "config": _config_summary(cfg),
        "hit_rate": hit,
        "hit_rate_by_tier": base["hit_rate_by_tier"],
        "grade": grade(hit),
        "memory": memory,
    }
    _hit_rate_analysis(doc, report, findings, suggestions)
    _memory_findings(memory, findings)
    if timing:
        _transfer_analysis(doc, report, findings, suggestions)
    report["findings"] = findings
    report["suggestions"] = suggestions
    report["wall_s"] = time.perf_counter() - begin
    return report


def _config_summary(cfg: Config) -> dict[str, Any]:
    cc = cfg.cache_config
    keys = (
        "tokens_per_block", "num_cpu_blocks", "enable_ssd", "num_ssd_blocks", "enable_remote",
        "num_remote_blocks", "eviction_policy", "evict_ratio", "evict_start_threshold",
        "use_ce_transfer_h2d", "use_ce_transfer_d2h", "transfer_sms_h2d", "transfer_sms_d2h",
    )  # fmt: skip
    out = {f"cache_config.{k}": getattr(cc, k) for k in keys}
    out["serving_config.num_gpu_blocks"] = cfg.serving_config.num_gpu_blocks
    out["model_config.bytes_per_token"] = cfg.model_config.bytes_per_token
    return out


def _suggest(
    doc: Doctor,
    suggestions: list[dict[str, Any]],
    sid: str,
    changes: dict[str, Any],
    reason: str,
    *,
    min_gain: float = MIN_GAIN,
) -> dict[str, Any] | None:
    """Replay ``changes`` in hit-rate mode; keep the suggestion if it gains enough."""
    before = doc.hitrate()["hit_rate"]
    after = doc.hitrate(changes)["hit_rate"]
    if after - before < min_gain:
        return None
    item = {
        "id": sid,
        "changes": changes,
        "reason": reason,
        "metric": "hit_rate",
        "mode": "hitrate",
        "before": before,
        "after": after,
        "predicted": True,
    }
    suggestions.append(item)
    return item


def _hit_rate_analysis(
    doc: Doctor,
    report: dict[str, Any],
    findings: list[dict[str, Any]],
    suggestions: list[dict[str, Any]],
) -> None:
    cfg = doc.base
    cc = cfg.cache_config
    hit = report["hit_rate"]
    curve = doc.curve()
    bound = curve.max_hit_rate
    cpu = cc.tier_blocks("cpu")
    ssd = cc.tier_blocks("ssd")
    need90 = curve.capacity_for(0.9)
    at = {f"{f}x": curve.hit_rate_at(cpu * f) for f in CAPACITY_FACTORS}
    capacity = {
        "cpu_blocks": cpu,
        "lru_hit_rate": at,
        "blocks_for_90pct": need90,
        "hit_rate_at_90pct": curve.hit_rate_at(need90),
        "blocks_for_max": curve.max_capacity,
        "cpu_plus_ssd_blocks": cpu + ssd if ssd else None,
        "cpu_plus_ssd_bound": curve.hit_rate_at(cpu + ssd) if ssd else None,
    }
    report["reuse"] = {
        "infinite_cache_hit_rate": bound,
        "distinct_blocks": curve.distinct_blocks,
        "prompt_tokens": curve.prompt_tokens,
    }
    report["capacity"] = capacity
    if report["grade"] == "excellent":
        findings.append(
            {
                "kind": "hit_rate",
                "severity": "ok",
                "message": f"hit rate {hit:.2f} is excellent (> {EXCELLENT:.0%})",
            }
        )
        return
    findings.append(
        {
            "kind": "hit_rate",
            "severity": "warning" if hit < GOOD else "info",
            "message": f"hit rate {hit:.2f}: {report['grade']} "
            f"(> {EXCELLENT:.0%} excellent, {GOOD:.0%}-{EXCELLENT:.0%} good)",
        }
    )
    # (i) workload reuse
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
    # (ii) capacity misses
    room = bound - at["1x"]
    if room >= 0.05 and at["1x"] < 0.9 * bound:
        findings.append(
            {
                "kind": "capacity",
                "severity": "warning",
                "message": f"capacity misses: LRU at {cpu} CPU blocks hits {at['1x']:.2f}, "
                f"at 2x {at['2x']:.2f}, 4x {at['4x']:.2f}, 10x {at['10x']:.2f}; {need90} "
                f"blocks reach 90% of the bound {bound:.2f}"
                + (
                    f"; CPU + SSD ({cpu + ssd} blocks) bounds it at "
                    f"{capacity['cpu_plus_ssd_bound']:.2f}"
                    if ssd
                    else ""
                ),
            }
        )
        gib = report["memory"]["bytes_per_block"] / GIB
        want = nice_blocks(need90)
        if want > cpu:
            _suggest(
                doc,
                suggestions,
                "raise_cpu_blocks",
                {"cache_config.num_cpu_blocks": want},
                f"raise the CPU tier from {cpu} to {want} blocks (90% of the bound needs "
                f"{need90}; {want * gib:.1f} GiB of pinned memory)",
            )
        if not cc.enable_ssd:
            ssd_want = nice_blocks(max(curve.max_capacity, need90) * 1.25)
            _suggest(
                doc,
                suggestions,
                "enable_ssd",
                {"cache_config.enable_ssd": True, "cache_config.num_ssd_blocks": ssd_want},
                f"enable the SSD tier with {ssd_want} blocks ({ssd_want * gib:.0f} GiB): "
                "blocks evicted from CPU are found there",
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
    _settings_analysis(doc, findings, suggestions)


def _settings_analysis(
    doc: Doctor, findings: list[dict[str, Any]], suggestions: list[dict[str, Any]]
) -> None:
    """(iii) eviction settings, (iv) block size, then every hit-rate suggestion together."""
    cfg = doc.base
    cc = cfg.cache_config
    # (iii) eviction settings
    wasteful = {}
    if cc.evict_ratio > LOW_EVICT_RATIO:
        wasteful["cache_config.evict_ratio"] = LOW_EVICT_RATIO
    if cc.evict_start_threshold < 1.0:
        wasteful["cache_config.evict_start_threshold"] = 1.0
    if wasteful:
        findings.append(
            {
                "kind": "eviction",
                "severity": "info",
                "message": f"evict_ratio {cc.evict_ratio} / evict_start_threshold "
                f"{cc.evict_start_threshold} evict early and leave capacity empty",
            }
        )
        _suggest(
            doc,
            suggestions,
            "eviction",
            wasteful,
            "evict less at once (evict_ratio <= 0.05) and only when full (threshold 1.0)",
            min_gain=0.0,
        )
    # (iv) block size
    tpb = cc.tokens_per_block
    recorded = doc.loaded.header.tokens_per_block
    if tpb is not None and tpb > BEST_BLOCK_TOKENS and recorded < tpb:
        scale = tpb // recorded
        changes: dict[str, Any] = {"cache_config.tokens_per_block": recorded}
        for t in ("cpu", "ssd", "remote"):
            if cc.tier_blocks(t):
                changes[f"cache_config.num_{t}_blocks"] = cc.tier_blocks(t) * scale
        if cfg.serving_config.num_gpu_blocks:
            changes["serving_config.num_gpu_blocks"] = cfg.serving_config.num_gpu_blocks * scale
        findings.append(
            {
                "kind": "block_size",
                "severity": "info",
                "message": f"tokens_per_block {tpb} > {BEST_BLOCK_TOKENS}: the tokens of a "
                "partly shared last block are not reused",
            }
        )
        _suggest(
            doc,
            suggestions,
            "block_size",
            changes,
            f"use blocks of {recorded} tokens (the recorded size), same memory per tier",
        )
    # everything together
    if len(suggestions) > 1:
        merged: dict[str, Any] = {}
        for s in suggestions:
            if s["id"] != "block_size":
                merged.update(s["changes"])
        if merged and len(merged) > 1:
            _suggest(
                doc,
                suggestions,
                "all_hit_rate",
                merged,
                "the capacity and eviction suggestions together",
                min_gain=0.0,
            )


def _memory_findings(memory: dict[str, Any], findings: list[dict[str, Any]]) -> None:
    parts = [
        f"{t} {v['blocks']} blocks = {v['gib']:.2f} GiB"
        for t, v in memory["tiers"].items()
        if v["blocks"]
    ]
    findings.append(
        {
            "kind": "memory",
            "severity": "info",
            "message": f"{memory['bytes_per_block']} bytes per block of "
            f"{memory['tokens_per_block']} tokens: " + ", ".join(parts),
        }
    )


def _transfer_analysis(
    doc: Doctor,
    report: dict[str, Any],
    findings: list[dict[str, Any]],
    suggestions: list[dict[str, Any]],
) -> None:
    cc = doc.base.cache_config
    base = doc.timing()
    report["transfers"] = base
    for path, p in base["paths"].items():
        limit = p["limit_per_block_s"]
        if limit is None:
            continue
        slow = p["per_block_mean_s"] > limit
        p["ok"] = not slow
        if slow:
            findings.append(
                {
                    "kind": "transfer",
                    "severity": "warning",
                    "path": path,
                    "message": f"{PATH_NAMES.get(path, path)} takes {_ms(p['per_block_mean_s'])} "
                    f"per block (limit {_ms(limit)})",
                }
            )
    prof = doc.profile
    for direction, _pcie in (("h2d", prof.h2d), ("d2h", prof.d2h)):
        if getattr(cc, f"use_ce_transfer_{direction}"):
            findings.append(
                {
                    "kind": "copy_engine",
                    "severity": "info",
                    "path": direction,
                    "message": f"use_ce_transfer_{direction} is on: the copy engine moves the "
                    f"blocks, so transfer_sms_{direction} no longer matters",
                }
            )
    h2d = base["paths"].get("h2d")
    if not h2d:
        return
    if cc.use_ce_transfer_h2d:
        # Show it: the twin's H2D time with the SM grid changed is the same.
        other = 8 if cc.transfer_sms_h2d != 8 else 16
        alt = doc.timing({"cache_config.transfer_sms_h2d": other})["paths"]["h2d"]["op_mean_s"]
        for f in findings:
            if f["kind"] == "copy_engine" and f["path"] == "h2d":
                f["message"] += (
                    f" (twin: H2D {_ms(h2d['op_mean_s'])} per op at transfer_sms_h2d="
                    f"{cc.transfer_sms_h2d}, {_ms(alt)} at {other})"
                )
                f["sms_check"] = {
                    "transfer_sms_h2d": [cc.transfer_sms_h2d, other],
                    "h2d_op_mean_s": [h2d["op_mean_s"], alt],
                }
    before = h2d["op_mean_s"]
    options: list[tuple[str, dict[str, Any], str]] = []
    sm_limited = [
        d
        for d, pcie in (("h2d", prof.h2d), ("d2h", prof.d2h))
        if not getattr(cc, f"use_ce_transfer_{d}")
        and getattr(cc, f"transfer_sms_{d}") * pcie.sm_bandwidth_per_sm < pcie.sm.bandwidth
    ]
    if sm_limited:
        sms = {
            d: math.ceil(getattr(prof, d).sm.bandwidth / getattr(prof, d).sm_bandwidth_per_sm)
            for d in sm_limited
        }
        options.append(
            (
                "transfer_sms",
                {f"cache_config.transfer_sms_{d}": n for d, n in sms.items()},
                "the SM transfer kernel is limited by its grid: "
                + ", ".join(
                    f"transfer_sms_{d} {getattr(cc, f'transfer_sms_{d}')} -> {n}"
                    for d, n in sms.items()
                )
                + " reaches the link",
            )
        )
    if not (cc.use_ce_transfer_h2d and cc.use_ce_transfer_d2h):
        options.append(
            (
                "copy_engine",
                {
                    "cache_config.use_ce_transfer_h2d": True,
                    "cache_config.use_ce_transfer_d2h": True,
                },
                "move blocks with the copy engine (transfer_sms then no longer matters)",
            )
        )
    for sid, changes, reason in options:
        after = doc.timing(changes)["paths"].get("h2d", {}).get("op_mean_s")
        if after is None or after > 0.95 * before:
            continue
        suggestions.append(
            {
                "id": sid,
                "changes": changes,
                "reason": reason,
                "metric": "h2d_op_mean_s",
                "mode": "timing",
                "before": before,
                "after": after,
                "predicted": True,
                "get_p50_s": {
                    "before": base["get_s"]["p50"],
                    "after": doc.timing(changes)["get_s"]["p50"],
                },
            }
        )


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f} ms"
