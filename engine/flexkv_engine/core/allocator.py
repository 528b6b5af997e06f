"""Block-id allocation for one tier, and FlexKV's eviction-amount rule.

Ids are handed out lowest first, as FlexKV's block pool does. The free ids are one list
kept in descending order, so taking the ``k`` lowest is a slice off its end and
returning ids is an ``extend``; the list is re-sorted lazily, once per batch of releases
(timsort merges the sorted runs in linear time). All per-block work is thus done by
list operations in C, which matters at 16-token blocks where a request spans hundreds of
blocks.
"""

from __future__ import annotations


class BlockAllocator:
    """Lowest-first allocator of block ids ``0 .. capacity-1``."""

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError(f"capacity must be >= 0, got {capacity}")
        self.capacity = capacity
        self._free: list[int] = list(range(capacity - 1, -1, -1))
        self._dirty = False

    @property
    def free(self) -> int:
        return len(self._free)

    @property
    def used(self) -> int:
        return self.capacity - len(self._free)

    def allocate(self, count: int) -> list[int]:
        """Take the ``count`` lowest free ids."""
        free = self._free
        if count >= len(free):
            if count > len(free):
                raise ValueError(f"cannot allocate {count} blocks: {len(free)} free")
            # Every free id is taken (the steady state with evict_ratio=0). Still hand
            # them out in ascending order: blocks of one op that get consecutive ids
            # merge into fewer, larger SSD I/Os (core.ssd_ios).
            if self._dirty:
                free.sort()
            else:
                free.reverse()
            self._free = []
            self._dirty = False
            return free
        if self._dirty:
            free.sort(reverse=True)
            self._dirty = False
        out = free[len(free) - count :]
        del free[len(free) - count :]
        out.reverse()
        return out

    def release(self, ids: list[int]) -> None:
        """Return ids to the free set (the index guarantees each is held exactly once)."""
        if ids:
            self._free.extend(ids)
            self._dirty = True

    def take(self, ids: list[int]) -> None:
        """Take these ids, all free now (restoring an index whose ids were stored)."""
        wanted = set(ids)
        keep = [i for i in self._free if i not in wanted]
        if len(wanted) != len(ids) or len(self._free) - len(keep) != len(ids):
            raise ValueError("take: an id is listed twice or is not free")
        self._free = keep  # still descending (or marked for a re-sort)

    def free_ids(self) -> list[int]:
        return sorted(self._free)


class CountingAllocator:
    """Capacity accounting without block ids, for callers that never move bytes.

    The twin only needs to know how many blocks a tier holds, so it skips the per-block
    id lists; eviction and admission decisions are the same as with ids.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError(f"capacity must be >= 0, got {capacity}")
        self.capacity = capacity
        self.free = capacity

    @property
    def used(self) -> int:
        return self.capacity - self.free

    def allocate(self, count: int) -> None:
        if count > self.free:
            raise ValueError(f"cannot allocate {count} blocks: {self.free} free")
        self.free -= count

    def release(self, count: int) -> None:
        self.free += count


def eviction_target(
    capacity: int, used: int, need: int, evict_ratio: float, evict_start_threshold: float
) -> int:
    """How many blocks to evict before allocating ``need`` (FlexKV's rule).

    Eviction starts when utilisation reaches ``evict_start_threshold`` or the request does
    not fit; it then evicts the largest of the shortfall, what brings utilisation back
    under the threshold, and ``evict_ratio * capacity``. Returns 0 when no eviction is due.
    """
    if capacity == 0:
        return 0
    shortfall = used + need - capacity
    over_threshold = used >= evict_start_threshold * capacity
    if shortfall <= 0 and not over_threshold:
        return 0
    to_threshold = used + need - int(evict_start_threshold * capacity)
    return max(shortfall, to_threshold, int(evict_ratio * capacity), 0)
