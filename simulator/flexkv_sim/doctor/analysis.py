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
from .rules import (
    CAPACITY_FACTORS,
    EXCELLENT,
    GOOD,
    GRADES,
    LOW_EVICT_RATIO,
    block_size_rule,
    capacity_limits,
    cheap_findings,
    eviction_rule,
    grade,
    nice_blocks,
    tier_memory,
)

__all__ = [
    "BLOCK_LIMITS_S",
    "CAPACITY_FACTORS",
    "DOCTOR_SCHEMA_VERSION",
    "EXCELLENT",
    "GOOD",
    "GRADES",
    "LOW_EVICT_RATIO",
    "PLAIN_LRU",
    "Doctor",
    "diagnose",
    "grade",
    "nice_blocks",
    "tier_memory",
]

DOCTOR_SCHEMA_VERSION = 1
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
# The curve models plain LRU: these keys give it any scenario's tier.
PLAIN_LRU = {
    "cache_config.eviction_policy": "lru",
    "cache_config.evict_ratio": 0.0,
    "cache_config.evict_start_threshold": 1.0,
    "cache_config.hit_reward_seconds": 0.0,
    "cache_config.store_after_hits": 0,
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

        return hit_rate_curve(self._input(PLAIN_LRU), progress=False)


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
    cheap = cheap_findings(hit, doc.curve(), cfg, doc.loaded.header.tokens_per_block)
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
        "grade": cheap["grade"],
        "memory": cheap["memory"],
        "reuse": cheap["reuse"],
        "capacity": cheap["capacity"],
    }
    findings: list[dict[str, Any]] = list(cheap["findings"])
    suggestions: list[dict[str, Any]] = []
    if report["grade"] != "excellent":
        _hit_rate_suggestions(doc, report, suggestions)
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


def _hit_rate_suggestions(
    doc: Doctor, report: dict[str, Any], suggestions: list[dict[str, Any]]
) -> None:
    """Replay the changes the cheap rules point at: (ii) capacity, (iii) eviction
    settings, (iv) block size, then every hit-rate suggestion together."""
    cfg = doc.base
    cc = cfg.cache_config
    reuse, capacity = report["reuse"], report["capacity"]
    if capacity_limits(reuse, capacity):
        cpu, need90 = capacity["cpu_blocks"], capacity["blocks_for_90pct"]
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
            ssd_want = nice_blocks(max(capacity["blocks_for_max"], need90) * 1.25)
            _suggest(
                doc,
                suggestions,
                "enable_ssd",
                {"cache_config.enable_ssd": True, "cache_config.num_ssd_blocks": ssd_want},
                f"enable the SSD tier with {ssd_want} blocks ({ssd_want * gib:.0f} GiB): "
                "blocks evicted from CPU are found there",
            )
    _, wasteful = eviction_rule(cfg)
    if wasteful:
        _suggest(
            doc,
            suggestions,
            "eviction",
            wasteful,
            "evict less at once (evict_ratio <= 0.05) and only when full (threshold 1.0)",
            min_gain=0.0,
        )
    recorded = doc.loaded.header.tokens_per_block
    _, smaller = block_size_rule(cfg, recorded)
    if smaller:
        _suggest(
            doc,
            suggestions,
            "block_size",
            smaller,
            f"use blocks of {recorded} tokens (the recorded size), same memory per tier",
        )
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
