"""The doctor's transfer rules: findings and options from a timing replay's paths.

None of them replays anything: :meth:`Doctor.timing` gives each path's time per op and
per block, the config says which directions use the copy engine, and the hardware
profile what the SM kernel's grid reaches. :func:`diagnose` replays each option and
keeps those that bring the H2D time per op to :data:`MAX_TIMING_RATIO` of before or less.
"""

from __future__ import annotations

import math
from typing import Any

from flexkv_engine.config import Config

from ..hardware import HardwareProfile
from .rules import Option

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
# A timing option is kept when H2D per op takes at most this share of its time before.
MAX_TIMING_RATIO = 0.95
DIRECTIONS = ("h2d", "d2h")


def slow_path_findings(
    paths: dict[str, dict[str, Any]],
) -> tuple[dict[str, bool], list[dict[str, Any]]]:
    """Each path that has a limit against it: whether its mean time per block is within
    it (path -> ok), and a warning for each path that is not."""
    ok: dict[str, bool] = {}
    findings: list[dict[str, Any]] = []
    for path, p in paths.items():
        limit = p["limit_per_block_s"]
        if limit is None:
            continue
        slow = p["per_block_mean_s"] > limit
        ok[path] = not slow
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
    return ok, findings


def other_sms_h2d(config: Config) -> int:
    """The H2D grid to time beside the configured one when the copy engine is on."""
    return 8 if config.cache_config.transfer_sms_h2d != 8 else 16


def copy_engine_findings(
    config: Config, h2d_op_mean_s: tuple[float, float] | None = None
) -> list[dict[str, Any]]:
    """A note per direction that uses the copy engine: its ``transfer_sms_*`` no longer
    matters. ``h2d_op_mean_s``: the twin's H2D time per op at the configured grid and at
    :func:`other_sms_h2d`'s, shown on the H2D note."""
    cc = config.cache_config
    findings: list[dict[str, Any]] = []
    for direction in DIRECTIONS:
        if not getattr(cc, f"use_ce_transfer_{direction}"):
            continue
        finding: dict[str, Any] = {
            "kind": "copy_engine",
            "severity": "info",
            "path": direction,
            "message": f"use_ce_transfer_{direction} is on: the copy engine moves the "
            f"blocks, so transfer_sms_{direction} no longer matters",
        }
        if direction == "h2d" and h2d_op_mean_s is not None:
            # Show it: the twin's H2D time with the SM grid changed is the same.
            other = other_sms_h2d(config)
            at, alt = h2d_op_mean_s
            finding["message"] += (
                f" (twin: H2D {_ms(at)} per op at transfer_sms_h2d="
                f"{cc.transfer_sms_h2d}, {_ms(alt)} at {other})"
            )
            finding["sms_check"] = {
                "transfer_sms_h2d": [cc.transfer_sms_h2d, other],
                "h2d_op_mean_s": [at, alt],
            }
        findings.append(finding)
    return findings


def transfer_options(config: Config, profile: HardwareProfile) -> list[Option]:
    """The changes that may shorten H2D: a grid wide enough for the link in each SM-limited
    direction, then the copy engine in both directions (unless both use it already)."""
    cc = config.cache_config
    options: list[Option] = []
    sm_limited = [
        d
        for d in DIRECTIONS
        if not getattr(cc, f"use_ce_transfer_{d}")
        and getattr(cc, f"transfer_sms_{d}") * getattr(profile, d).sm_bandwidth_per_sm
        < getattr(profile, d).sm.bandwidth
    ]
    if sm_limited:
        sms = {
            d: math.ceil(getattr(profile, d).sm.bandwidth / getattr(profile, d).sm_bandwidth_per_sm)
            for d in sm_limited
        }
        options.append(
            Option(
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
            Option(
                "copy_engine",
                {
                    "cache_config.use_ce_transfer_h2d": True,
                    "cache_config.use_ce_transfer_d2h": True,
                },
                "move blocks with the copy engine (transfer_sms then no longer matters)",
            )
        )
    return options


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f} ms"
