"""The prefix index of one cache tier.

A radix tree over chained block keys (see :mod:`.keys`). Each node holds a *run* of
consecutive blocks that were always accessed together, so a request costs work per node
on its path, not per block: at 16-token blocks a request spans hundreds of blocks but only
a handful of nodes.

Invariants (checked by :meth:`TierIndex.check`):

- The tier is prefix-closed: a block is cached only with every block before it (a tree).
- A node is uniform: its blocks share ready flag, lock count and access state. Requests
  that touch part of a node split it first.
- Only *ready*, *unlocked* leaves are evicted, deepest block first.
- Unready nodes (being written) are leaves: nothing is inserted below them.
- Every block id is held by exactly one node or is free: ``used + free == capacity``.
  A node dropped by :meth:`TierIndex.invalidate` while still locked or being written
  keeps its ids, out of the tree, until its last lock is released.

Locks. :meth:`lookup` takes a *path lock* on ``[0, length)``: it increments every node
from the end node up to the root, and :meth:`release` undoes that walk. A split keeps the
lower half in the existing node object and inserts the upper half above it, so a path
lock held on the lower half still walks through both. :meth:`insert` creates an unready
node that holds one lock of its own until :meth:`commit` or :meth:`abort`.

Restarts. :meth:`TierIndex.restore` rebuilds an empty index from stored blocks (key,
parent key, block id), so a tier whose bytes outlive the process (SSD) hits again.

Native speed. :func:`make_tier_index` builds a tier's index, taking the C++ twin of
this class (:mod:`.native_index`, csrc/index) when the native module is built; this
class is its reference and fallback.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from heapq import heapify, heappop, heappush
from typing import cast

from .allocator import BlockAllocator, CountingAllocator, eviction_target
from .policies import LRU, EvictionPolicy
from .restore import restore_runs


class Node:
    """A run of blocks; ``keys[i]`` is the key of block ``start + i`` of any path through it."""

    __slots__ = (
        "children",
        "created",
        "cseq",
        "hits",
        "ids",
        "keys",
        "last",
        "lock",
        "n",
        "parent",
        "ready",
        "seq",
        "start",
        "ticket",
    )

    def __init__(
        self,
        keys: list[int],
        ids: list[int] | None,
        start: int,
        parent: Node | None,
        now: float,
        seq: int,
    ) -> None:
        self.keys = keys
        self.ids = ids  # tier block ids, one per block (None when the index keeps no ids)
        self.n = len(keys)
        self.start = start
        self.parent = parent
        self.children: dict[int, Node] = {}
        self.ready = True
        self.lock = 0
        self.last = now
        self.seq = seq
        self.hits = 0
        self.created = now
        self.cseq = seq
        self.ticket = 0

    @property
    def end(self) -> int:
        return self.start + self.n

    @property
    def removed(self) -> bool:
        """Out of the tree: evicted, aborted or invalidated (``ticket`` -1, or -2 while an
        invalidated node still holds its ids for a lock or a write)."""
        return self.ticket < 0

    def __repr__(self) -> str:
        return (
            f"Node([{self.start},{self.end}) ready={self.ready} lock={self.lock} "
            f"children={len(self.children)})"
        )


class TierIndex:
    """Prefix index, allocator and eviction of one tier (CPU, SSD or remote)."""

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
        self.name = name
        self.policy = policy or LRU()
        # One heap entry per node; a touched node is re-queued when it reaches the top.
        self._lazy = self.policy.monotone
        self.evict_ratio = evict_ratio
        self.evict_start_threshold = evict_start_threshold
        # Without ids (the twin), only counts are kept: same decisions, no per-block lists.
        self.track_ids = track_ids
        self.allocator: BlockAllocator | CountingAllocator = (
            BlockAllocator(capacity) if track_ids else CountingAllocator(capacity)
        )
        self._seq = itertools.count(1)
        self._tickets = itertools.count(1)
        self.root = Node([], [], 0, None, 0.0, 0)
        self._heap: list[tuple[tuple[float, ...], int, Node]] = []
        self.num_nodes = 0
        self.evicted_blocks = 0
        self.evictions = 0  # eviction rounds
        self.alloc_failures = 0
        self.dropped_blocks = 0  # invalidated: found bad in the tier
        # Invalidated nodes still locked or being written: their ids are freed at the end.
        self._held: set[Node] = set()

    # -- accounting -------------------------------------------------------------------
    @property
    def capacity(self) -> int:
        return self.allocator.capacity

    @property
    def used(self) -> int:
        return self.allocator.used

    @property
    def free(self) -> int:
        return self.allocator.free

    # -- lookup -----------------------------------------------------------------------
    def _walk(self, keys: list[int], n: int) -> tuple[list[Node], Node | None, int]:
        """Nodes fully matched by ``keys[:n]``, then the partly matched node and its match."""
        path: list[Node] = []
        node = self.root
        pos = 0
        while pos < n:
            child = node.children.get(keys[pos])
            if child is None:
                break
            ck = child.keys
            m = child.n if child.n <= n - pos else n - pos
            if ck[m - 1] == keys[pos + m - 1]:
                if m == child.n:
                    path.append(child)
                    node = child
                    pos += m
                    continue
                return path, child, m
            # Chained keys: equality at i implies equality before i, so bisect for the
            # last equal position in (0, m - 1).
            lo, hi = 0, m - 1
            while hi - lo > 1:
                mid = (lo + hi) >> 1
                if ck[mid] == keys[pos + mid]:
                    lo = mid
                else:
                    hi = mid
            return path, child, lo + 1
        return path, None, 0

    def probe(self, keys: list[int]) -> tuple[int, int]:
        """``(ready, present)``: longest ready and present prefix lengths. No side effects."""
        path, part, j = self._walk(keys, len(keys))
        last = part if part is not None else (path[-1] if path else None)
        if last is None:
            return 0, 0
        present = last.start + (j if part is not None else last.n)
        return (present if last.ready else last.start), present

    def lookup(
        self, keys: list[int], now: float, *, hit: bool, limit: int | None = None
    ) -> tuple[int, int, Node]:
        """Match, touch and path-lock the longest ready prefix of ``keys[:limit]``.

        Returns ``(ready, present, handle)``; ``handle`` is the node ending exactly at
        ``ready`` (the root when nothing matched) and must be given to :meth:`release`.
        ``present > ready`` means blocks after ``ready`` exist but are still being written.
        ``hit`` counts the access as a GET hit for frequency-aware policies.
        """
        n = len(keys) if limit is None else limit
        path, part, j = self._walk(keys, n)
        present = ready = path[-1].end if path else 0
        if part is not None:
            present += j
            if part.ready:
                path.append(self._split(part, j))
                ready = present
        elif path and not path[-1].ready:
            ready = path.pop().start
        seq = self._seq
        for node in reversed(path):  # deepest first: ties evict the deepest block first
            node.last = now
            node.seq = next(seq)
            node.lock += 1
            if hit:
                node.hits += 1
        self.root.lock += 1
        return ready, present, (path[-1] if path else self.root)

    def get_put(self, keys: list[int], now: float, store: int) -> tuple[int, int, int]:
        """A GET then a PUT of ``keys``, both completed at once (the twin's hit-rate mode).

        GET: :meth:`lookup` as a hit, then :meth:`release`. PUT: :meth:`lookup`, then, if
        nothing after the ready prefix is being written, :meth:`insert` of the blocks up to
        ``store`` and :meth:`commit`, then :meth:`release`. Returns the GET's ``(ready,
        present)`` and the blocks stored.
        """
        ready, present, handle = self.lookup(keys, now, hit=True)
        self.release(handle)
        put_ready, put_present, handle = self.lookup(keys, now, hit=False)
        stored = 0
        if put_present == put_ready < store:
            node = self.insert(handle, keys, store - put_ready, now)
            if node is not None:
                self.commit(node)
                stored = node.n
        self.release(handle)
        return ready, present, stored

    def pin(self, node: Node) -> Node:
        """Take a path lock on ``[0, node.end)`` (released by :meth:`release`)."""
        walk: Node | None = node
        while walk is not None:
            walk.lock += 1
            walk = walk.parent
        return node

    def release(self, handle: Node) -> None:
        """Undo a path lock taken by :meth:`lookup`."""
        node: Node | None = handle
        while node is not None:
            node.lock -= 1
            if node.ticket == -2 and node.lock == 0:
                self._free_held(node)
            node = node.parent
        if (
            handle.lock == 0
            and handle.ready
            and not handle.children
            and (handle.ticket == 0 or (handle.ticket > 0 and not self._lazy))
            and handle is not self.root
        ):
            self._push(handle)

    def _split(self, node: Node, j: int) -> Node:
        """Split ``node`` after its first ``j`` blocks; return the new upper node."""
        parent = node.parent
        assert parent is not None
        ids = node.ids
        upper = Node(
            node.keys[:j],
            ids[:j] if ids is not None else None,
            node.start,
            parent,
            node.created,
            node.cseq,
        )
        upper.ready, upper.lock = node.ready, node.lock
        upper.last, upper.seq, upper.hits = node.last, node.seq, node.hits
        parent.children[node.keys[0]] = upper
        node.keys = node.keys[j:]
        if ids is not None:
            node.ids = ids[j:]
        node.n -= j
        node.start += j
        node.parent = upper
        upper.children[node.keys[0]] = node
        self.num_nodes += 1
        return upper

    # -- insertion --------------------------------------------------------------------
    def insert(self, parent: Node, keys: list[int], count: int, now: float) -> Node | None:
        """Insert blocks ``parent.end .. parent.end + count`` of ``keys`` as one unready node.

        ``parent`` must be a handle from :meth:`lookup` (ready, path-locked, ending where
        the new blocks start, with nothing present after it). Evicts as needed; when the
        tier cannot free enough, inserts the prefix that fits (counted in
        ``alloc_failures``). Returns None when nothing fits.
        """
        start = parent.end
        if count <= 0 or keys[start] in parent.children or not parent.ready:
            raise ValueError(f"{self.name}: cannot insert at block {start}")
        got, ids = self._reserve(count)
        if not got:
            return None
        node = Node(keys[start : start + got], ids, start, parent, now, next(self._seq))
        node.ready = False
        node.lock = 1
        parent.children[node.keys[0]] = node
        self.num_nodes += 1
        return node

    def commit(self, node: Node) -> None:
        """The blocks of an inserted node are in place: make them matchable and evictable."""
        node.ready = True
        node.lock -= 1
        if node.ticket == -2:  # invalidated while being written
            if node.lock == 0:
                self._free_held(node)
            return
        if node.lock == 0 and not node.children and (node.ticket == 0 or not self._lazy):
            self._push(node)

    def abort(self, node: Node) -> None:
        """Drop an inserted node whose write failed or was cancelled; its ids are freed."""
        if node.ready or node.children:
            raise ValueError(f"{self.name}: abort of a committed or extended node {node}")
        node.lock -= 1
        self._remove(node)

    # -- eviction ---------------------------------------------------------------------
    def _push(self, node: Node) -> None:
        ticket = next(self._tickets)
        node.ticket = ticket
        heappush(self._heap, (self.policy.priority(node), ticket, node))

    def _reserve(self, count: int) -> tuple[int, list[int] | None]:
        """Evict as FlexKV's rule says, then take up to ``count`` blocks: (taken, ids)."""
        alloc = self.allocator
        target = eviction_target(
            alloc.capacity, alloc.used, count, self.evict_ratio, self.evict_start_threshold
        )
        if target:
            self.evict(target)
        take = count if count <= alloc.free else alloc.free
        if take < count:
            self.alloc_failures += 1
        if not take:
            return 0, None
        return take, alloc.allocate(take)

    def evict(self, count: int) -> int:
        """Evict up to ``count`` blocks in policy order; returns how many were evicted."""
        heap = self._heap
        if len(heap) > 2 * self.num_nodes + 1024:
            heap[:] = [e for e in heap if e[2].ticket == e[1]]
            heapify(heap)
        done = 0
        self.evictions += 1
        priority = self.policy.priority
        while done < count and heap:
            queued, ticket, node = heappop(heap)
            if node.ticket != ticket:
                continue  # stale entry: the node was re-queued or removed since
            node.ticket = 0
            if node.lock or not node.ready or node.children:
                continue  # re-queued when it becomes an evictable leaf again
            if self._lazy and priority(node) != queued:
                self._push(node)  # touched since it was queued: its place is further back
                continue
            want = count - done
            if node.n <= want:
                done += node.n
                self._remove(node)
            else:
                keep = node.n - want
                if node.ids is not None:
                    self.allocator.release(node.ids[keep:])  # type: ignore[arg-type]
                    del node.ids[keep:]
                else:
                    self.allocator.release(want)  # type: ignore[arg-type]
                del node.keys[keep:]
                node.n = keep
                done += want
                self._push(node)
        self.evicted_blocks += done
        return done

    def _remove(self, node: Node) -> None:
        if node.ticket == -2:  # aborted after it was invalidated: already out of the tree
            self._free_held(node)
            return
        parent = node.parent
        assert parent is not None
        del parent.children[node.keys[0]]
        # Keep node.parent: a path lock still held on a removed (aborted) node must walk
        # up to the root when it is released.
        node.ticket = -1
        self.allocator.release(node.ids if node.ids is not None else node.n)  # type: ignore[arg-type]
        self.num_nodes -= 1
        self._push_if_leaf(parent)

    def _push_if_leaf(self, parent: Node) -> None:
        """Queue ``parent`` for eviction if losing a child made it an evictable leaf."""
        if (
            parent is not self.root
            and not parent.children
            and parent.lock == 0
            and parent.ready
            and (parent.ticket == 0 or (parent.ticket > 0 and not self._lazy))
        ):
            self._push(parent)

    # -- bad blocks and restarts ------------------------------------------------------
    def invalidate(self, handle: Node, start: int) -> int:
        """Drop blocks ``start ..`` of the path ending at ``handle``, and every block below
        them: their bytes were found bad (an I/O error, a checksum mismatch, a lost file).

        Later lookups miss them. Ids of dropped nodes that are unlocked go back to the
        free list at once; a node still locked by another request, or being written,
        keeps its ids (so no new block lands in a slot still being read) until its last
        lock is released or its write ends; locks on it are released as usual. Returns
        the blocks dropped (0 when they are gone already).
        """
        node: Node | None = handle
        while node is not None and node is not self.root and node.start > start:
            node = node.parent
        if node is None or node is self.root or node.removed or node.end <= start:
            return 0
        if node.start < start:
            self._split(node, start - node.start)  # ``node`` keeps [start, end)
        parent = node.parent
        assert parent is not None
        del parent.children[node.keys[0]]
        dropped = 0
        stack = [node]
        while stack:
            gone = stack.pop()
            stack.extend(gone.children.values())
            self.num_nodes -= 1
            dropped += gone.n
            if gone.lock == 0 and gone.ready:
                gone.ticket = -1
                self.allocator.release(gone.ids if gone.ids is not None else gone.n)  # type: ignore[arg-type]
            else:
                gone.ticket = -2
                self._held.add(gone)
        self.dropped_blocks += dropped
        self._push_if_leaf(parent)
        return dropped

    def _free_held(self, node: Node) -> None:
        node.ticket = -1
        self._held.discard(node)
        self.allocator.release(node.ids if node.ids is not None else node.n)  # type: ignore[arg-type]

    def restore(self, entries: Iterable[tuple[int, int | None, int]], now: float) -> list[int]:
        """Rebuild this (empty) index from stored blocks, e.g. the SSD tier after a restart.

        ``entries`` are ``(key, parent key or None for a first block, block id)``, oldest
        first. Restored blocks are ready and unlocked, with access time ``now``; among
        them the older ones are evicted first. Skipped: a block whose parent is not
        restored (no chain to a first block), an id out of range, and an entry whose key
        or id a later entry uses again. Returns the ids restored (the others are free).
        """
        if not self.track_ids:
            raise ValueError(f"{self.name}: restore needs block ids (track_ids=True)")
        if self.root.children or self.used:
            raise ValueError(f"{self.name}: restore needs an empty index")
        made: list[tuple[int, Node]] = []  # (newest entry, node)
        for above, keys, ids, newest in restore_runs(entries, self.capacity):
            parent = self.root if above < 0 else made[above][1]
            node = Node(keys, ids, parent.end, parent, now, 0)
            parent.children[keys[0]] = node
            made.append((newest, node))
        restored: list[int] = []
        for _, node in sorted(made, key=lambda item: item[0]):
            node.seq = node.cseq = next(self._seq)
            assert node.ids is not None
            restored.extend(node.ids)
        assert isinstance(self.allocator, BlockAllocator)
        self.allocator.take(restored)
        self.num_nodes += len(made)
        for _, node in sorted(made, key=lambda item: item[0]):
            if not node.children:
                self._push(node)
        return restored

    # -- introspection ----------------------------------------------------------------
    def block_ids(self, handle: Node, start: int, end: int) -> list[int]:
        """Tier block ids of blocks ``[start, end)`` of the path ending at ``handle``."""
        if not self.track_ids:
            raise ValueError(f"{self.name}: this index keeps no block ids (track_ids=False)")
        if not start <= end <= handle.end:
            raise ValueError(f"{self.name}: blocks [{start}, {end}) beyond {handle}")
        chunks: list[list[int]] = []
        node: Node | None = handle
        while node is not None and node.end > start:
            if node.start < end:
                lo = max(start - node.start, 0)
                assert node.ids is not None
                chunks.append(node.ids[lo : min(end, node.end) - node.start])
            node = node.parent
        return [i for chunk in reversed(chunks) for i in chunk]

    def nodes(self) -> list[Node]:
        out: list[Node] = []
        stack = list(self.root.children.values())
        while stack:
            node = stack.pop()
            out.append(node)
            stack.extend(node.children.values())
        return out

    def check(self) -> None:
        """Assert every invariant of the module docstring (tests and debugging)."""
        seen: set[int] = set()
        held = 0
        for node in self.nodes():
            parent = node.parent
            assert parent is not None and parent.children.get(node.keys[0]) is node, node
            assert node.n == len(node.keys) > 0, node
            assert node.start == parent.end, node
            assert node.lock >= 0, node
            if parent is not self.root:
                assert parent.ready, f"child below unready {parent}"
            if not node.ready:
                assert not node.children, f"unready node with children {node}"
            if node.ids is not None:
                assert len(node.ids) == node.n, node
                for i in node.ids:
                    assert 0 <= i < self.capacity and i not in seen, f"block id {i} twice"
                    seen.add(i)
            held += node.n
        for node in self._held:
            assert node.ticket == -2 and (node.lock > 0 or not node.ready), node
            if node.ids is not None:
                for i in node.ids:
                    assert 0 <= i < self.capacity and i not in seen, f"block id {i} twice"
                    seen.add(i)
            held += node.n
        if isinstance(self.allocator, BlockAllocator):
            free = self.allocator.free_ids()
            assert len(set(free)) == len(free), "a free block id listed twice"
            for i in free:
                assert i not in seen, f"block id {i} both free and held"
        assert held == self.used, (held, self.used)
        assert self.used + self.free == self.capacity
        assert self.num_nodes == len(self.nodes())


def make_tier_index(
    name: str,
    capacity: int,
    policy: EvictionPolicy | None = None,
    *,
    evict_ratio: float = 0.0,
    evict_start_threshold: float = 1.0,
    track_ids: bool = True,
    native: bool | None = None,
) -> TierIndex:
    """The index of one tier: this module's :class:`TierIndex` or its C++ twin.

    ``native``: None (the default) takes the C++ index (:mod:`.native_index`) when the
    native module is built and has the policy, else this module's; True requires it
    (ImportError when it is not built, ValueError for a policy it lacks); False never
    takes it. Both make the same decisions on the same calls (a parity test drives them
    side by side), so the choice changes speed only. The C++ index has the same methods
    and node attributes; it is typed here as :class:`TierIndex`, whose interface it has.
    """
    if native is not False:
        try:
            from .native_index import NativeTierIndex, native_policy
        except ImportError:
            if native:
                raise
        else:
            if native or native_policy(policy or LRU()) is not None:
                return cast(
                    TierIndex,
                    NativeTierIndex(
                        name,
                        capacity,
                        policy,
                        evict_ratio=evict_ratio,
                        evict_start_threshold=evict_start_threshold,
                        track_ids=track_ids,
                    ),
                )
    return TierIndex(
        name,
        capacity,
        policy,
        evict_ratio=evict_ratio,
        evict_start_threshold=evict_start_threshold,
        track_ids=track_ids,
    )
