"""The emulated serving engine's own GPU prefix cache (``serving_config.num_gpu_blocks``).

A serving engine keeps the KV blocks of finished requests in GPU memory while it can;
only what it lacks is asked of FlexKV. Running requests always get the blocks they need
(outside this cache); a finished request's blocks join the cache, evicting the least
recently used ones. ``num_gpu_blocks = 0`` means no prefix cache.

The twin and ``flexkv-run replay`` both drive it in the same order for each request:
``acquire`` at the start (matched blocks are locked while it runs), FlexKV GET for the
rest, prefill, FlexKV PUT, decode, ``release`` at the end. Torch-free.
"""

from __future__ import annotations

from .core.index import Node, make_tier_index
from .core.policies import LRU


class GpuPrefixCache:
    """An LRU prefix cache of ``num_blocks`` blocks, indexed like a FlexKV tier."""

    def __init__(self, num_blocks: int, *, track_ids: bool = True) -> None:
        self.index = (
            make_tier_index("gpu", num_blocks, LRU(), track_ids=track_ids)
            if num_blocks > 0
            else None
        )

    def acquire(self, keys: list[int], now: float) -> tuple[int, Node | None]:
        """Blocks of ``keys`` already in the cache (a prefix), locked until ``release``."""
        if self.index is None:
            return 0, None
        ready, _, handle = self.index.lookup(keys, now, hit=True)
        return ready, handle

    def release(
        self, keys: list[int], handle: Node | None, now: float
    ) -> tuple[int, list[int]]:
        """The request finished: keep its blocks (what fits), then unlock.

        Returns ``(start, ids)``: blocks ``start .. start + len(ids)`` of the request were
        added to the cache in GPU slots ``ids`` (the caller puts their bytes there).
        """
        index = self.index
        if index is None or handle is None:
            return 0, []
        ready, present, tail = index.lookup(keys, now, hit=False)
        added: tuple[int, list[int]] = (ready, [])
        if present == ready < len(keys):
            node = index.insert(tail, keys, len(keys) - ready, now)
            if node is not None:
                index.commit(node)
                added = (ready, list(node.ids) if node.ids is not None else [])
        index.release(tail)
        index.release(handle)
        return added

    def slots(self, handle: Node | None, count: int) -> list[int]:
        """GPU slots of the first ``count`` cached blocks of an acquired request."""
        if self.index is None or handle is None or count == 0:
            return []
        return self.index.block_ids(handle, 0, count)
