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

This module runs the replays and collects their figures; the findings, limits, messages
and the changes worth replaying are the rules' (:mod:`.rules`, :mod:`.transfer_rules`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from flexkv_engine.config import Config

from ..hardware import DEFAULT_PROFILES, HardwareProfile, load_profiles
from ..sweep.scenario import LoadedTrace, Scenario, load_trace, point_config, prepare_point
from .rules import Option, cheap_findings, combined_option, hit_rate_options
from .transfer_rules import (
    BLOCK_LIMITS_S,
    MAX_TIMING_RATIO,
    copy_engine_findings,
    other_sms_h2d,
    slow_path_findings,
    transfer_options,
)

__all__ = ["DOCTOR_SCHEMA_VERSION", "PLAIN_LRU", "Doctor", "diagnose"]

DOCTOR_SCHEMA_VERSION = 1
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
        from ..replay.run import hitrate_result

        key = tuple(sorted((changes or {}).items()))
        if key not in self._hitrate:
            inp = self._input(changes or {})
            summary = hitrate_result(inp, replay_hitrate(inp, progress=False)).summary()
            self._hitrate[key] = {
                k: summary[k] for k in ("hit_rate", "hit_rate_by_tier", "prompt_tokens", "gets")
            }
        return self._hitrate[key]

    def timing(self, changes: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Timing replay: per path ops, mean time per op and per block; GET percentiles."""
        from ..replay.run import timing_result
        from ..replay.timing import replay_timing

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
        summary = timing_result(inp, timed, self.profile_names).summary()
        self._timing[key] = {
            "profiles": list(self.profile_names),
            "paths": out_paths,
            "get_s": summary["latency"]["get_s"],
            "ttft_s": summary["latency"]["ttft_s"],
            "hit_rate": summary["hit_rate"],
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


def _suggest(doc: Doctor, suggestions: list[dict[str, Any]], option: Option) -> None:
    """Replay ``option`` in hit-rate mode; keep it as a suggestion if it gains enough."""
    before = doc.hitrate()["hit_rate"]
    after = doc.hitrate(option.changes)["hit_rate"]
    if after - before < option.min_gain:
        return
    suggestions.append(
        {
            "id": option.id,
            "changes": option.changes,
            "reason": option.reason,
            "metric": "hit_rate",
            "mode": "hitrate",
            "before": before,
            "after": after,
            "predicted": True,
        }
    )


def _hit_rate_suggestions(
    doc: Doctor, report: dict[str, Any], suggestions: list[dict[str, Any]]
) -> None:
    """Replay the changes the cheap rules point at: (ii) capacity, (iii) eviction
    settings, (iv) block size, then every hit-rate suggestion together."""
    for option in hit_rate_options(
        doc.base,
        doc.loaded.header.tokens_per_block,
        report["reuse"],
        report["capacity"],
        report["memory"],
    ):
        _suggest(doc, suggestions, option)
    combined = combined_option(suggestions)
    if combined is not None:
        _suggest(doc, suggestions, combined)


def _transfer_analysis(
    doc: Doctor,
    report: dict[str, Any],
    findings: list[dict[str, Any]],
    suggestions: list[dict[str, Any]],
) -> None:
    """The timing replay's paths against their limits, then each transfer option that
    the rules name replayed in timing mode."""
    cfg = doc.base
    base = doc.timing()
    report["transfers"] = base
    ok, slow = slow_path_findings(base["paths"])
    for path, within in ok.items():
        base["paths"][path]["ok"] = within
    findings.extend(slow)
    h2d = base["paths"].get("h2d")
    sms_check = None
    if h2d and cfg.cache_config.use_ce_transfer_h2d:
        alt = doc.timing({"cache_config.transfer_sms_h2d": other_sms_h2d(cfg)})
        sms_check = (h2d["op_mean_s"], alt["paths"]["h2d"]["op_mean_s"])
    findings.extend(copy_engine_findings(cfg, sms_check))
    if not h2d:
        return
    before = h2d["op_mean_s"]
    for option in transfer_options(cfg, doc.profile):
        after = doc.timing(option.changes)["paths"].get("h2d", {}).get("op_mean_s")
        if after is None or after > MAX_TIMING_RATIO * before:
            continue
        suggestions.append(
            {
                "id": option.id,
                "changes": option.changes,
                "reason": option.reason,
                "metric": "h2d_op_mean_s",
                "mode": "timing",
                "before": before,
                "after": after,
                "predicted": True,
                "get_p50_s": {
                    "before": base["get_s"]["p50"],
                    "after": doc.timing(option.changes)["get_s"]["p50"],
                },
            }
        )
