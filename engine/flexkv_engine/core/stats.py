"""Cache statistics with the operator guide's definitions.

FlexKV hit rate = tokens served by FlexKV's tiers (CPU, SSD, remote) / prompt tokens.
Tokens already matched in the serving engine's GPU prefix cache are counted apart (they
are neither a FlexKV hit nor a miss). Per-tier rates use the same denominator.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .paths import CACHE_TIERS, GPU, PATHS


@dataclass
class CacheStats:
    """Counters owned by one planner; the caller turns blocks into bytes."""

    gets: int = 0
    puts: int = 0
    prompt_tokens: int = 0
    tokens_by_tier: dict[str, int] = field(
        default_factory=lambda: {GPU: 0, **dict.fromkeys(CACHE_TIERS, 0)}
    )
    blocks_by_tier: dict[str, int] = field(
        default_factory=lambda: {GPU: 0, **dict.fromkeys(CACHE_TIERS, 0)}
    )
    stored_blocks: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CACHE_TIERS, 0))
    ops_by_path: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PATHS, 0))
    blocks_by_path: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PATHS, 0))
    gets_in_flight: int = 0  # GETs that found blocks still being written
    # Blocks the shared store held but the remote index lacked (another instance wrote
    # them, or this one had evicted them from its index), added by a GET.
    adopted_blocks: int = 0
    failed_ops: int = 0
    cancelled_ops: int = 0

    @property
    def flexkv_tokens(self) -> int:
        t = self.tokens_by_tier
        return sum(t[tier] for tier in CACHE_TIERS)

    @property
    def hit_rate(self) -> float:
        """The operator guide's FlexKV hit rate (a fraction)."""
        return self.flexkv_tokens / self.prompt_tokens if self.prompt_tokens else 0.0

    def hit_rate_by_tier(self) -> dict[str, float]:
        p = self.prompt_tokens
        return {tier: (tokens / p if p else 0.0) for tier, tokens in self.tokens_by_tier.items()}
