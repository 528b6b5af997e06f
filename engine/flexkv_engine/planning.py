"""Build the core's tiers and planner from a resolved config (torch-free).

The engine and the twin both call :func:`build_planner`, so they run the same indexes
with the same policies and eviction settings.
"""

from __future__ import annotations

from .config import CacheConfig
from .core.index import make_tier_index
from .core.paths import CPU, REMOTE, SSD
from .core.planner import Planner
from .core.policies import make_policy, policy_params
from .core.ssd_ios import num_files


def ssd_max_file_size(cache: CacheConfig) -> int | None:
    """``max_file_size_gb`` in bytes (None: unbounded)."""
    return None if cache.max_file_size_gb < 0 else int(cache.max_file_size_gb * 2**30)


def ssd_num_files(cache: CacheConfig, stride: int) -> int:
    """How many files the SSD tier of a resolved config stripes its blocks over."""
    return num_files(
        len(cache.ssd_cache_dir), cache.num_ssd_blocks or 0, stride, ssd_max_file_size(cache)
    )


def tier_capacities(cache: CacheConfig) -> dict[str, int]:
    """Blocks per enabled tier of a resolved cache config (CPU always present)."""
    if cache.num_cpu_blocks is None:
        raise ValueError("cache_config is not resolved: call Config.resolve() first")
    tiers = {CPU: cache.num_cpu_blocks}
    if cache.enable_ssd:
        tiers[SSD] = cache.num_ssd_blocks or 0
    if cache.enable_remote:
        tiers[REMOTE] = cache.num_remote_blocks or 0
    return tiers


def build_planner(
    cache: CacheConfig, *, track_ids: bool = True, native: bool | None = None
) -> Planner:
    """One tier index per enabled tier, each with its own policy instance.

    ``track_ids=False`` (the twin) keeps capacity counts instead of block-id lists: the
    same decisions, without the per-block bookkeeping that only moving bytes needs.
    ``native``: which index (:func:`flexkv_engine.core.index.make_tier_index`); by
    default the C++ one when the native module is built, else the Python one.
    """
    if cache.tokens_per_block is None:
        raise ValueError("cache_config is not resolved: call Config.resolve() first")
    settings = {key: getattr(cache, key) for key in policy_params()}
    tiers = {
        name: make_tier_index(
            name,
            capacity,
            make_policy(cache.eviction_policy, **settings),
            evict_ratio=cache.evict_ratio,
            evict_start_threshold=cache.evict_start_threshold,
            track_ids=track_ids,
            native=native,
        )
        for name, capacity in tier_capacities(cache).items()
    }
    return Planner(tiers, cache.tokens_per_block, store_after_hits=cache.store_after_hits)
