"""The C++ prefix index (csrc/index) behind :class:`.index.TierIndex`'s interface.

The same algorithm as :mod:`.index`, step for step: the same radix tree of block runs,
lazy heap of evictable leaves, locks, ready flags, eviction rule and lowest-first ids,
with the six policies of :mod:`.policies` computed in C++. Keys stay Python ints,
hashed and compared as Python does. Nodes are ``_native.IndexNode`` handles with the
attributes of :class:`.index.Node` (read-only); a node handed out twice is the same
object.

Importing this module loads the native module (ImportError when it is not built);
:func:`.index.make_tier_index` imports it only when it builds a native index, so the
core still imports nothing compiled. The index runs with the GIL held, like the Python
one, and is no more thread-safe than it.
"""

from __future__ import annotations

from collections.abc import Iterable

from .. import _native  # type: ignore[attr-defined]
from .policies import FIFO, FILO, LFU, LRU, MRU, SLRU, EvictionPolicy
from .restore import restore_runs

if not hasattr(_native, "TierIndex"):  # a module built before csrc/index existed
    raise ImportError("the native module was built without the index (make native)")

#: Policies computed natively, by exact class: a subclass may change ``priority``.
NATIVE_POLICIES: dict[type[EvictionPolicy], str] = {
    LRU: "lru",
    LFU: "lfu",
    SLRU: "slru",
    FIFO: "fifo",
    MRU: "mru",
    FILO: "filo",
}


def native_policy(policy: EvictionPolicy) -> str | None:
    """The native name of ``policy``, or None when the C++ index does not compute it."""
    return NATIVE_POLICIES.get(type(policy))


class NativeTierIndex(_native.TierIndex):  # type: ignore[misc]
    """Prefix index, allocator and eviction of one tier, in C++ (see :mod:`.index`)."""

    def __init__(
        self,
        name: str,
        capacity: int,
        policy: EvictionPolicy | None = None,
        *,
        evict_ratio: float = 0.0,
        evict_start_threshold: float = 1.0,
        track_ids: bool = True,
    ) -> None:
        if not 0.0 <= evict_ratio <= 1.0:
            raise ValueError(f"evict_ratio must be in [0, 1], got {evict_ratio}")
        if not 0.0 < evict_start_threshold <= 1.0:
            raise ValueError(
                f"evict_start_threshold must be in (0, 1], got {evict_start_threshold}"
            )
        policy = policy or LRU()
        kind = native_policy(policy)
        if kind is None:
            raise ValueError(
                f"the native index has no eviction policy {type(policy).__name__}; "
                f"it has: {', '.join(sorted(NATIVE_POLICIES.values()))}"
            )
        super().__init__(
            name,
            capacity,
            kind,
            getattr(policy, "hit_reward_seconds", 0.0),
            getattr(policy, "protected_threshold", 2),
            evict_ratio,
            evict_start_threshold,
            track_ids,
        )
        self.policy = policy

    def restore(self, entries: Iterable[tuple[int, int | None, int]], now: float) -> list[int]:
        """Rebuild this (empty) index from stored blocks: :meth:`.index.TierIndex.restore`."""
        if not self.track_ids:
            raise ValueError(f"{self.name}: restore needs block ids (track_ids=True)")
        if self.root.children or self.used:
            raise ValueError(f"{self.name}: restore needs an empty index")
        restored: list[int] = self._restore_runs(restore_runs(entries, self.capacity), now)
        return restored

    def __repr__(self) -> str:
        return f"NativeTierIndex({self.name!r}, capacity={self.capacity}, {self.policy.name})"
