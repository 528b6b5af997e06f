"""What a configuration amounts to: each tier's size, and the keys that do nothing.

``flexkv-run config`` prints both on stderr; the twin may show them beside its results.

A key counts as *set* when a source named it: the file, a ``FLEXKV_*`` variable or
``--set`` (the paths in :attr:`Config.explicit`, kept by the loader even when the value
equals the default, since the operator wrote it), or, for a config built in code, when
its value differs from the default. Capacities and ``enable_*`` are filled in by
:meth:`Config.resolve`, so for them only :attr:`Config.explicit` counts.

Standard library only, like the rest of the package.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..core.policies import POLICIES, policy_params
from .model import DEFAULT_CPU_CACHE_GB, GIB, CacheConfig, Config

SSD_KEYS = ("ssd_cache_dir", "ssd_cache_iouring_entries", "max_file_size_gb", "ssd_restore")
"""``cache_config`` keys that only the SSD tier reads."""
REMOTE_KEYS = (
    "remote_backend",
    "remote_url",
    "remote_key_prefix",
    "remote_password",
    "remote_store_capacity_gb",
)
"""``cache_config`` keys that only the remote tier reads."""

_DEFAULTS = {f.name: f.default for f in dataclasses.fields(CacheConfig)}
# Keys that Config.resolve fills in: only a source naming them makes them set.
_RESOLVED = frozenset(
    {"tokens_per_block", "enable_ssd", "enable_remote"}
    | {f"num_{tier}_blocks" for tier in ("cpu", "ssd", "remote")}
    | {f"{tier}_cache_gb" for tier in ("cpu", "ssd", "remote")}
)
_TIER_NAMES = {"cpu": "CPU", "ssd": "SSD", "remote": "remote"}


@dataclass(frozen=True)
class TierSize:
    """One tier's capacity: ``blocks`` of ``block_bytes`` each; ``key`` says where the
    count comes from (the key that set it, or the default)."""

    tier: str  # cpu, ssd, remote, or gpu (the serving engine's prefix cache)
    blocks: int
    block_bytes: int
    key: str

    @property
    def bytes(self) -> int:
        return self.blocks * self.block_bytes

    @property
    def gib(self) -> float:
        """The size in GiB (2**30 bytes), the unit of the ``*_cache_gb`` keys."""
        return self.bytes / GIB

    def describe(self) -> str:
        """One line: ``ssd  1024 blocks x 2097152 bytes = 2.000 GiB  (from ...)``."""
        return (
            f"{self.tier:<6} {self.blocks} blocks x {self.block_bytes} bytes = "
            f"{self.gib:.3f} GiB  ({self.key})"
        )


@dataclass(frozen=True)
class InertKey:
    """A key that is set and has no effect under the rest of the config, and why."""

    key_path: str
    reason: str

    def describe(self) -> str:
        return f"{self.key_path} does nothing: {self.reason}"


def tier_sizes(config: Config) -> list[TierSize]:
    """The size of every enabled tier, CPU first, then the GPU prefix cache if any.

    ``config`` must be resolved (:meth:`Config.resolve`). A GPU line appears when
    ``serving_config.num_gpu_blocks`` is above 0; the working blocks of running requests
    come on top of it and depend on the trace.
    """
    if not config.is_resolved:
        raise ValueError("the config is not resolved: call Config.resolve() first")
    cc = config.cache_config
    assert cc.tokens_per_block is not None
    block_bytes = config.model_config.bytes_per_block(cc.tokens_per_block)
    sizes = [
        TierSize(tier, cc.tier_blocks(tier), block_bytes, _capacity_source(config, tier))
        for tier in ("cpu", "ssd", "remote")
        if cc.tier_enabled(tier)
    ]
    gpu = config.serving_config.num_gpu_blocks
    if gpu > 0:
        key = "serving_config.num_gpu_blocks: the serving engine's prefix cache"
        sizes.append(TierSize("gpu", gpu, block_bytes, key))
    return sizes


def _capacity_source(config: Config, tier: str) -> str:
    for key in (f"num_{tier}_blocks", f"{tier}_cache_gb"):
        if is_set(config, key):
            return f"cache_config.{key}"
    return f"default: {DEFAULT_CPU_CACHE_GB:g} GiB" if tier == "cpu" else "default"


def is_set(config: Config, name: str) -> bool:
    """Whether ``cache_config.<name>`` was set (see the module docstring)."""
    if f"cache_config.{name}" in config.explicit:
        return True
    if name in _RESOLVED or name not in _DEFAULTS:
        return False
    return bool(getattr(config.cache_config, name) != _DEFAULTS[name])


def inert_keys(config: Config) -> list[InertKey]:
    """The ``cache_config`` keys that are set and do nothing, each with the reason.

    - SSD keys (``ssd_cache_iouring_entries``, ``ssd_cache_dir``, ...) and a capacity
      with ``enable_ssd: false``, while the SSD tier is off; the same for the remote
      tier's keys;
    - ``<tier>_cache_gb`` beside ``num_<tier>_blocks``, which wins;
    - ``transfer_sms_h2d`` / ``transfer_sms_d2h`` while ``use_ce_transfer_h2d`` /
      ``use_ce_transfer_d2h`` sends that direction through the copy engines;
    - a policy parameter (``hit_reward_seconds``, ``slru_protected_threshold``) that the
      chosen ``eviction_policy`` does not take;
    - ``remote_password`` with the fs store, ``trace_file_path`` without
      ``enable_trace``.

    ``config`` must be resolved, so that whether a tier is on is known.
    """
    if not config.is_resolved:
        raise ValueError("the config is not resolved: call Config.resolve() first")
    cc = config.cache_config
    found = [*_tier_off(config), *_shadowed_sizes(config)]
    for direction in ("h2d", "d2h"):
        ce, sms = f"use_ce_transfer_{direction}", f"transfer_sms_{direction}"
        if getattr(cc, ce) and is_set(config, sms):
            found.append(
                _key(
                    sms,
                    f"{ce} is on: {direction.upper()} copies run on the "
                    "copy engines, not on an SM kernel",
                )
            )
    taken = POLICIES[cc.eviction_policy].params
    found += [
        _key(name, f"eviction_policy {cc.eviction_policy!r} does not take it")
        for name in policy_params()
        if name not in taken and is_set(config, name)
    ]
    fs_remote = cc.tier_enabled("remote") and cc.remote_backend == "fs"
    if fs_remote and is_set(config, "remote_password"):
        found.append(_key("remote_password", "the fs remote store takes no password"))
    if not cc.enable_trace and is_set(config, "trace_file_path"):
        found.append(_key("trace_file_path", "enable_trace is off"))
    return found


def _key(name: str, reason: str) -> InertKey:
    return InertKey(f"cache_config.{name}", reason)


def _tier_off(config: Config) -> list[InertKey]:
    """Keys of the SSD and remote tiers while that tier is off."""
    found = []
    for tier, keys in (("ssd", SSD_KEYS), ("remote", REMOTE_KEYS)):
        if config.cache_config.tier_enabled(tier):
            continue
        why = f"the {_TIER_NAMES[tier]} tier is off"
        names = list(keys)
        if f"cache_config.enable_{tier}" in config.explicit:
            # Switched off by name: a capacity given beside it is ignored. (Without
            # enable_<tier>, a capacity of 0 is what turns the tier off.)
            why += f" (enable_{tier}: false)"
            names = [f"num_{tier}_blocks", f"{tier}_cache_gb", *names]
        found += [_key(name, why) for name in names if is_set(config, name)]
    return found


def _shadowed_sizes(config: Config) -> list[InertKey]:
    """``<tier>_cache_gb`` of an enabled tier whose ``num_<tier>_blocks`` is set too."""
    found = []
    for tier in ("cpu", "ssd", "remote"):
        blocks, gb = f"num_{tier}_blocks", f"{tier}_cache_gb"
        if config.cache_config.tier_enabled(tier) and is_set(config, blocks) and is_set(config, gb):
            found.append(_key(gb, f"{blocks} is set too, and a count of blocks wins over a size"))
    return found
