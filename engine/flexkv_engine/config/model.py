"""The configuration as frozen dataclasses.

A ``Config`` straight from the loader may leave some values open (``None``): the block
size (a trace brings its own), tier capacities (given in blocks or in GiB) and whether
SSD and remote are on. :meth:`Config.resolve` fixes all of them. Every dataclass checks
its values against :mod:`flexkv_engine.config.schema` when it is built, so a config made
in code is held to the same rules as one read from a file.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from . import checks, schema
from .errors import ConfigError

GIB = 2**30
"""Bytes in one of the ``*_cache_gb`` units. FlexKV sizes its caches in GiB, and so do we."""
DEFAULT_TOKENS_PER_BLOCK = 16
DEFAULT_CPU_CACHE_GB = 16.0
TIERS = ("cpu", "ssd", "remote")


def _check_section(obj: Any, section: schema.Section, prefix: str) -> None:
    for name, spec in section.fields.items():
        if isinstance(spec, schema.Section):
            continue
        value = getattr(obj, name)
        checked = checks.check(spec, value, f"{prefix}.{name}")
        if checked is not value:
            object.__setattr__(obj, name, checked)


@dataclass(frozen=True)
class CacheConfig:
    """The KV-cache tiers and how they are managed (FlexKV's ``cache_config``).

    ``None`` means "not set": ``tokens_per_block`` then comes from the trace (else 16);
    a tier's capacity comes from ``num_<tier>_blocks``, else ``<tier>_cache_gb`` (GiB),
    else 16 GiB for CPU and nothing for SSD and remote; ``enable_ssd`` and
    ``enable_remote`` are on when that tier has a capacity.
    """

    num_cpu_blocks: int | None = None
    num_ssd_blocks: int | None = None
    num_remote_blocks: int | None = None
    cpu_cache_gb: float | None = None
    ssd_cache_gb: float | None = None
    remote_cache_gb: float | None = None
    tokens_per_block: int | None = None
    enable_ssd: bool | None = None
    enable_remote: bool | None = None
    eviction_policy: str = "lru"
    evict_ratio: float = 0.0
    evict_start_threshold: float = 1.0
    hit_reward_seconds: float = 0.0
    slru_protected_threshold: int = 2
    store_after_hits: int = 0  # store a block in a tier once seen this often; 0 = always
    use_ce_transfer_h2d: bool = False
    use_ce_transfer_d2h: bool = False
    transfer_sms_h2d: int = 8
    transfer_sms_d2h: int = 8
    ssd_cache_dir: tuple[str, ...] = ("./flexkv_ssd",)
    ssd_cache_iouring_entries: int = 512  # io_uring queue depth; 0 = pread/pwrite threads
    max_file_size_gb: float = 32.0  # per SSD cache file; -1 = unlimited
    # At start, rebuild the SSD tier's index from the slot table of a cache directory
    # written before (a restart hits what was stored); False starts the tier empty.
    ssd_restore: bool = True
    enable_trace: bool = False
    trace_file_path: str = "./flexkv_trace.log"
    remote_backend: str = "fs"
    remote_url: str | None = None  # fs: a directory; redis: redis://host:port/db
    remote_key_prefix: str = "flexkv:"
    remote_password: str | None = field(default=None, repr=False)
    remote_store_capacity_gb: float | None = None

    def __post_init__(self) -> None:
        _check_section(self, schema.CACHE, "cache_config")

    def tier_enabled(self, tier: str) -> bool:
        """Whether ``tier`` (cpu, ssd, remote) is on; only meaningful once resolved."""
        return tier == "cpu" or bool(getattr(self, f"enable_{tier}"))

    def tier_blocks(self, tier: str) -> int:
        """Capacity of ``tier`` in blocks; 0 for a tier left open (call resolve first)."""
        return getattr(self, f"num_{tier}_blocks") or 0


@dataclass(frozen=True)
class ModelConfig:
    """The shape of one rank's KV cache (FlexKV's ``model_config``; default Llama-3-8B).

    ``model`` names a layout of :mod:`flexkv_engine.config.catalog`. The loader fills the
    other keys from it unless they are given; built in code, ``model`` is only a label
    (use ``catalog.model_config(name)`` to get the layout).
    """

    num_layers: int = 32
    num_kv_heads: int = 8
    head_size: int = 128
    dtype: str = "bfloat16"
    use_mla: bool = False
    model: str | None = None

    def __post_init__(self) -> None:
        _check_section(self, schema.MODEL, "model_config")

    @property
    def dtype_size(self) -> int:
        """Bytes per element."""
        return schema.DTYPE_SIZES[self.dtype]

    @property
    def bytes_per_token(self) -> int:
        """KV bytes of one token over all layers (MLA keeps one latent, not K and V)."""
        kv = 1 if self.use_mla else 2
        return self.num_layers * kv * self.num_kv_heads * self.head_size * self.dtype_size

    def bytes_per_block(self, tokens_per_block: int) -> int:
        if isinstance(tokens_per_block, bool) or not isinstance(tokens_per_block, int):
            raise TypeError(f"tokens_per_block must be an int, got {tokens_per_block!r}")
        if tokens_per_block < 1:
            raise ValueError(f"tokens_per_block must be at least 1, got {tokens_per_block}")
        return self.bytes_per_token * tokens_per_block


@dataclass(frozen=True)
class ComputeModel:
    """Prefill and decode time of the emulated serving engine, in seconds."""

    prefill_fixed_s: float = 0.0
    prefill_per_token_s: float = 0.0
    prefill_quadratic_s: float = 0.0
    decode_step_s: float = 0.0

    def __post_init__(self) -> None:
        _check_section(self, schema.COMPUTE, "serving_config.compute")

    def prefill_time(self, new_tokens: int, context_tokens: int) -> float:
        """Time to prefill ``new_tokens`` after ``context_tokens`` already cached.

        ``fixed + per_token * new + quadratic * new * (context + new)``: the quadratic
        term is attention, where each new token attends to the context and to the new
        tokens. The fixed part is paid even when nothing is new.
        """
        if new_tokens < 0 or context_tokens < 0:
            raise ValueError(
                f"token counts must not be negative, got {new_tokens} new, {context_tokens} context"
            )
        return (
            self.prefill_fixed_s
            + self.prefill_per_token_s * new_tokens
            + self.prefill_quadratic_s * new_tokens * (context_tokens + new_tokens)
        )


@dataclass(frozen=True)
class ServingConfig:
    """The serving engine that the hardware replay and the twin emulate."""

    num_gpu_blocks: int = 0  # GPU prefix cache kept across requests; 0 = none
    max_concurrency: int = 0  # requests in flight; 0 = unlimited
    compute: ComputeModel = field(default_factory=ComputeModel)
    hardware_profile: str | None = None  # a profile name or path in scenarios/hardware

    def __post_init__(self) -> None:
        if isinstance(self.compute, dict):
            object.__setattr__(self, "compute", ComputeModel(**self.compute))
        elif not isinstance(self.compute, ComputeModel):
            raise ConfigError(
                f"expected a mapping, got {type(self.compute).__name__}",
                key_path="serving_config.compute",
            )
        _check_section(self, schema.SERVING, "serving_config")


@dataclass(frozen=True)
class Config:
    """The whole configuration.

    ``explicit`` holds the dotted paths (``cache_config.tokens_per_block``) that a file,
    the environment or an override set; ``source`` names the file. Neither takes part in
    equality: two configs are equal when their values are.
    """

    cache_config: CacheConfig = field(default_factory=CacheConfig)
    model_config: ModelConfig = field(default_factory=ModelConfig)
    serving_config: ServingConfig = field(default_factory=ServingConfig)
    explicit: frozenset[str] = field(default=frozenset(), compare=False)
    source: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        for name, cls in (
            ("cache_config", CacheConfig),
            ("model_config", ModelConfig),
            ("serving_config", ServingConfig),
        ):
            if not isinstance(getattr(self, name), cls):
                raise TypeError(f"Config.{name} must be a {cls.__name__}")
        object.__setattr__(self, "explicit", frozenset(self.explicit))

    @property
    def is_resolved(self) -> bool:
        """Whether every open value has been fixed by :meth:`resolve`."""
        cc = self.cache_config
        return (
            cc.tokens_per_block is not None
            and all(getattr(cc, f"num_{t}_blocks") is not None for t in TIERS)
            and cc.enable_ssd is not None
            and cc.enable_remote is not None
        )

    def resolve(self, trace_tokens_per_block: int | None = None) -> Config:
        """Return a copy with every open value fixed.

        - ``tokens_per_block``: the configured value, else ``trace_tokens_per_block``,
          else 16.
        - ``num_<tier>_blocks``: the configured count, else
          ``floor(<tier>_cache_gb * 2**30 / bytes_per_block)``, else 16 GiB worth for CPU
          and 0 for SSD and remote.
        - ``enable_ssd`` / ``enable_remote``: as configured, else whether the tier has
          blocks. A disabled tier gets 0 blocks.

        Raises ConfigError when the CPU tier, or an enabled SSD or remote tier, ends up
        with no blocks. Resolving a resolved config returns an equal one.
        """
        cc = self.cache_config
        if trace_tokens_per_block is not None and (
            isinstance(trace_tokens_per_block, bool)
            or not isinstance(trace_tokens_per_block, int)
            or trace_tokens_per_block < 1
        ):
            raise ConfigError(
                f"must be a positive integer, got {trace_tokens_per_block!r}",
                key_path="trace_tokens_per_block",
            )
        tpb = cc.tokens_per_block or trace_tokens_per_block or DEFAULT_TOKENS_PER_BLOCK
        if tpb > schema.MAX_TOKENS_PER_BLOCK:
            raise ConfigError(
                f"must be at most {schema.MAX_TOKENS_PER_BLOCK}, got {tpb}",
                key_path="cache_config.tokens_per_block",
            )
        block_bytes = self.model_config.bytes_per_block(tpb)
        changes: dict[str, Any] = {"tokens_per_block": tpb}
        for tier in TIERS:
            blocks, why = self._tier_blocks(tier, block_bytes)
            if blocks > schema.MAX_BLOCKS:
                counted = getattr(cc, f"num_{tier}_blocks") is not None
                raise ConfigError(
                    f"must be at most {schema.MAX_BLOCKS:g} blocks, got {blocks:g}"
                    if counted
                    else f"{blocks} blocks of {block_bytes} bytes is more than "
                    f"{schema.MAX_BLOCKS:g}",
                    key_path=f"cache_config.num_{tier}_blocks"
                    if counted
                    else f"cache_config.{tier}_cache_gb",
                )
            enabled = True if tier == "cpu" else getattr(cc, f"enable_{tier}")
            if enabled is None:
                enabled = blocks > 0
            if not enabled:
                blocks = 0
            elif blocks == 0:
                what = "is always on" if tier == "cpu" else "is enabled"
                raise ConfigError(
                    f"the {tier} tier {what} but has no blocks{why}",
                    key_path=f"cache_config.num_{tier}_blocks",
                    source=self.source,
                    hint=f"set num_{tier}_blocks or {tier}_cache_gb above 0",
                )
            changes[f"num_{tier}_blocks"] = blocks
            if tier != "cpu":
                changes[f"enable_{tier}"] = enabled
        return dataclasses.replace(self, cache_config=dataclasses.replace(cc, **changes))

    def _tier_blocks(self, tier: str, block_bytes: int) -> tuple[int, str]:
        """Blocks of ``tier`` before enabling rules, and why when it is 0 from a size."""
        cc = self.cache_config
        blocks = getattr(cc, f"num_{tier}_blocks")
        if blocks is not None:
            return blocks, ""
        gb = getattr(cc, f"{tier}_cache_gb")
        if gb is None:
            gb = DEFAULT_CPU_CACHE_GB if tier == "cpu" else 0.0
        blocks = int(gb * GIB // block_bytes)
        if not gb:
            return blocks, ""
        return blocks, f" ({tier}_cache_gb={gb:g} is less than one block of {block_bytes} bytes)"
