"""The emulated serving engine's working GPU blocks, shared by both tools. Torch-free.

Besides its prefix cache (:mod:`.gpu_cache`), the serving engine that ``flexkv-run
replay`` emulates and the twin models has a pool of *working* GPU blocks that running
requests draw from: a request needs one per block that the prefix cache did not give it,
from before its FlexKV GET until its PUT and decode are over. When the pool is short, a
request waits, first come first served: it is admitted when it is first in line and
enough blocks are free, so a long prompt is never overtaken (and starved) by short ones.

:class:`WorkingPool` decides who gets blocks and when; the engine's thread-safe slot pool
and the twin's event callbacks both delegate to it, so the two queue requests alike.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

#: Requests of the longest prompt that the working pool holds at once.
WORKING_REQUESTS = 4


def working_blocks(requests: Sequence[Any], max_concurrency: int) -> int:
    """Size of the working pool for ``requests`` (records with ``keys``):
    ``WORKING_REQUESTS`` of the longest prompt, or fewer when the concurrency limit
    (``serving_config.max_concurrency``, 0 = none) admits fewer requests at once."""
    longest = max((len(r.keys) for r in requests), default=1)
    per = min(max_concurrency, WORKING_REQUESTS) if max_concurrency > 0 else WORKING_REQUESTS
    return max(longest, 1) * per


class WorkingPool:
    """First-come-first-served allotment of ``capacity`` blocks to waiters."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.free = capacity
        self._waiting: deque[tuple[int, Any]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def request(self, n: int, waiter: Any) -> bool:
        """Ask for ``n`` blocks: True if granted now, else ``waiter`` queues and is
        returned by the :meth:`release` that grants them."""
        if n > self.capacity:
            raise ValueError(f"a request needs {n} GPU blocks; the working pool has "
                             f"{self.capacity}")
        if not self._waiting and self.free >= n:
            self.free -= n
            return True
        self._waiting.append((n, waiter))
        return False

    def release(self, n: int) -> list[Any]:
        """Give ``n`` blocks back; the waiters now granted, in their order."""
        self.free += n
        granted = []
        while self._waiting and self._waiting[0][0] <= self.free:
            need, waiter = self._waiting.popleft()
            self.free -= need
            granted.append(waiter)
        return granted
