"""The shared remote store as the twin sees it: which blocks it holds, oldest first.

The engine asks the real store (``storage.remote``) which keys it holds beyond its own
remote index, in one batch per GET, and adds what it finds (``Planner.plan_get``'s
``remote_known``). The twin asks this model the same question. Blocks enter when a
remote write finishes; a rewrite makes a block the newest; past the store-wide capacity
(``remote_store_capacity_gb``, counted in stored objects: header and block) the oldest
blocks go, as the engine's backends do. One
model can serve several instances of a replay: they share the store, not their indexes.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence

from flexkv_engine.config import Config
from flexkv_engine.core.graph import DONE, PENDING, TransferGraph, TransferOp
from flexkv_engine.core.paths import REMOTE_READ, REMOTE_WRITE
from flexkv_engine.core.planner import Planner
from flexkv_engine.layout import KVLayout
from flexkv_engine.object_sizes import gib_to_bytes, object_size


class StoreModel:
    """Keys in the store in write order; ``capacity`` blocks at most (None: unbounded)."""

    def __init__(self, capacity: int | None = None) -> None:
        if capacity is not None and capacity < 0:
            raise ValueError(f"store capacity must be >= 0 blocks, got {capacity}")
        self.capacity = capacity
        self._keys: OrderedDict[int, None] = OrderedDict()
        self.evicted = 0

    @classmethod
    def for_config(cls, config: Config, parts: int = 1) -> StoreModel | None:
        """The store of ``config``'s remote tier (None when the tier is off); with
        ``parts`` > 1, one of that many equal partitions of its capacity."""
        cache = config.cache_config
        if not cache.enable_remote:
            return None
        if cache.remote_store_capacity_gb is None:
            return cls()
        assert cache.tokens_per_block is not None
        # As the engine's stores count: objects of a header and a (4 KiB aligned) block.
        stride = KVLayout.from_model(config.model_config, cache.tokens_per_block).stride
        capacity = gib_to_bytes(cache.remote_store_capacity_gb)
        assert capacity is not None
        return cls(capacity // object_size(stride) // parts)

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: int) -> bool:
        return key in self._keys

    def known(self, keys: Sequence[int], start: int = 0) -> int:
        """``start`` plus how many of ``keys[start:]`` the store holds, leading ones only."""
        held = self._keys
        end = start
        n = len(keys)
        while end < n and keys[end] in held:
            end += 1
        return end

    def stored(self, keys: Sequence[int]) -> None:
        """Blocks written (or rewritten): they become the newest; the oldest go past capacity."""
        held = self._keys
        for key in keys:
            held[key] = None
            held.move_to_end(key)
        cap = self.capacity
        if cap is not None:
            while len(held) > cap:
                held.popitem(last=False)
                self.evicted += 1


def fail_lost_reads(
    planner: Planner, graph: TransferGraph, store: StoreModel,
    on_fail: Callable[[TransferOp, int], None] | None = None,
) -> None:
    """Fail the remote reads of ``graph`` whose objects the store no longer holds.

    As the engine's read of a missing object does: the GET misses that part, and the
    remote index drops the blocks from the first missing one on. ``on_fail(op,
    first_bad)`` is told of each read failed so (the event log).
    """
    keys = graph.keys
    for op in graph.ops:
        if op.path != REMOTE_READ or op.status != PENDING:
            continue
        missing = store.known(keys[: op.end], op.start)
        if missing < op.end:
            if on_fail is not None:
                on_fail(op, missing - op.start)
            planner.invalidate_source(op, missing)
            planner.complete(graph, op, ok=False)


def record_writes(graph: TransferGraph, store: StoreModel, op: TransferOp | None = None) -> None:
    """Add what ``graph``'s finished remote writes stored (only ``op`` when given)."""
    keys = graph.keys
    for done in (op,) if op is not None else graph.ops:
        if done.path == REMOTE_WRITE and done.status == DONE:
            store.stored(keys[done.start : done.end])
