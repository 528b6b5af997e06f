"""The GET/PUT planner over the CPU, SSD and remote tiers.

GET: the serving engine already holds ``gpu_blocks`` leading blocks in its own prefix
cache; FlexKV serves what follows. The CPU tier serves its ready prefix; beyond it, SSD
serves what it holds, and the remote tier what lies beyond that. Blocks loaded from SSD
or remote are staged in CPU (the tiers are inclusive), then copied to the GPU.

The remote store is shared: blocks another instance stored are not in this instance's
remote index. The caller checks the store for the keys beyond the index's ready prefix
(:meth:`Planner.remote_ready`), in one batch, and passes how far the store holds the
request as ``remote_known``; those blocks join the index (counted against
``num_remote_blocks``, evicted by the same policy) and are read like the others.

PUT: write-through. Blocks the CPU lacks are copied GPU -> CPU, then every lower tier
gets, from CPU, the blocks it lacks. ``store_after_hits`` (admission) stores a block
only once it was requested that many times before.

Planning is deterministic for a given sequence of calls; ``now`` is always an argument.
Callers execute the ops of a graph (or not, in hit-rate mode) and report each one
through :meth:`Planner.complete`.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Mapping

from .graph import CANCELLED, DONE, FAILED, PENDING, TransferGraph, TransferOp
from .index import Node, TierIndex
from .keys import tokens_in
from .paths import CPU, D2H, GPU, H2D, REMOTE, REMOTE_READ, REMOTE_WRITE, SSD, SSD_READ, SSD_WRITE
from .stats import CacheStats


class Planner:
    """Plans GET/PUT/prefetch transfer graphs over the tiers and keeps their stats."""

    def __init__(
        self,
        tiers: Mapping[str, TierIndex],
        tokens_per_block: int,
        *,
        store_after_hits: int = 0,
        seen_capacity: int = 1 << 20,
    ) -> None:
        if CPU not in tiers:
            raise ValueError("the CPU tier is required")
        unknown = set(tiers) - {CPU, SSD, REMOTE}
        if unknown:
            raise ValueError(f"unknown tiers {sorted(unknown)}; choose from: cpu, ssd, remote")
        if store_after_hits < 0:
            raise ValueError(f"store_after_hits must be >= 0, got {store_after_hits}")
        self.cpu = tiers[CPU]
        self.ssd = tiers.get(SSD)
        self.remote = tiers.get(REMOTE)
        self.tiers = dict(tiers)
        self.tokens_per_block = tokens_per_block
        self.store_after_hits = store_after_hits
        self._seen: OrderedDict[int, int] = OrderedDict()
        self._seen_capacity = seen_capacity
        self._graph_ids = itertools.count(1)
        self.stats = CacheStats()

    # -- GET / prefetch ---------------------------------------------------------------
    def plan_get(
        self,
        request_id: str,
        keys: list[int],
        num_tokens: int,
        now: float,
        *,
        gpu_blocks: int = 0,
        to_gpu: bool = True,
        remote_known: int = 0,
    ) -> TransferGraph:
        """Plan loading the blocks of ``keys`` after the first ``gpu_blocks``.

        With ``to_gpu=False`` (prefetch) blocks are only staged into the CPU tier.
        ``remote_known``: the remote store holds ``keys[:remote_known]`` (an existence
        check); blocks of it missing from the remote index are added to it first.
        """
        graph = TransferGraph(
            next(self._graph_ids),
            "get" if to_gpu else "prefetch",
            request_id,
            keys,
            num_tokens,
            now,
        )
        graph.gpu_blocks = gpu_blocks
        cpu = self.cpu
        c_ready, c_present, c_handle = cpu.lookup(keys, now, hit=True)
        graph.locks.append((cpu, c_handle))
        end = c_ready
        n = len(keys)
        if c_present > c_ready:
            graph.in_flight = True
        elif c_ready < n and (self.ssd is not None or self.remote is not None):
            end = self._plan_staging(graph, keys, c_ready, c_handle, now, remote_known)
        first = gpu_blocks if gpu_blocks > 0 else 0
        cpu_end = first if first > c_ready else c_ready
        graph.served[CPU] = (first, cpu_end)
        if to_gpu:
            if cpu_end > first:
                graph.add(H2D, first, cpu_end, (cpu, c_handle), None)
            if end > cpu_end:
                reads = tuple(op.op_id for op in graph.ops if op.path != H2D)
                graph.add(H2D, cpu_end, end, graph.ops[0].dst, None, reads)
        if not graph.ops:
            self._finish(graph)
        return graph

    def _plan_staging(
        self,
        graph: TransferGraph,
        keys: list[int],
        c_ready: int,
        c_handle: Node,
        now: float,
        remote_known: int,
    ) -> int:
        """Plan SSD/remote -> CPU loads beyond the CPU prefix; return the staged end."""
        # (tier, read path, ready prefix, lock handle) of each lower tier that was matched.
        found: list[tuple[TierIndex, str, int, Node]] = []
        deepest = 0
        for tier, path in ((self.ssd, SSD_READ), (self.remote, REMOTE_READ)):
            if tier is None or deepest >= len(keys):
                continue
            ready, present, handle = tier.lookup(keys, now, hit=True)
            graph.locks.append((tier, handle))
            graph.in_flight |= present > ready
            if tier is self.remote and present == ready < remote_known:
                ready, handle = self._adopt(graph, tier, keys, handle, remote_known, now)
            found.append((tier, path, ready, handle))
            deepest = max(deepest, ready)
        if deepest <= c_ready:
            return c_ready
        node = self.cpu.insert(c_handle, keys, deepest - c_ready, now)
        if node is None:
            return c_ready
        end = node.end
        graph.writers[node] = 0
        graph.locks.append((self.cpu, self.cpu.pin(node)))  # held until the H2D copy ends
        first = graph.gpu_blocks
        begin = c_ready
        for tier, path, ready, handle in found:  # SSD first, remote beyond it
            stop = min(ready, end)
            if stop > begin:
                graph.add(path, begin, stop, (tier, handle), (self.cpu, node))
                graph.served[tier.name] = (max(begin, first), max(stop, first))
                begin = stop
        return end

    def _adopt(
        self,
        graph: TransferGraph,
        tier: TierIndex,
        keys: list[int],
        handle: Node,
        known: int,
        now: float,
    ) -> tuple[int, Node]:
        """Add blocks another instance stored to the remote index; return (ready, handle)."""
        node = tier.insert(handle, keys, min(known, len(keys)) - handle.end, now)
        if node is None:
            return handle.end, handle
        graph.locks.append((tier, tier.pin(node)))  # held like the lookup's path lock
        tier.commit(node)
        self.stats.adopted_blocks += node.n
        return node.end, node

    def remote_ready(self, keys: list[int]) -> int:
        """Ready prefix of ``keys`` in the remote index (0 without one); no side effects.

        What lies beyond it is worth an existence check in the shared store.
        """
        return self.remote.probe(keys)[0] if self.remote is not None else 0

    # -- PUT ---------------------------------------------------------------------------
    def plan_put(
        self, request_id: str, keys: list[int], num_tokens: int, now: float
    ) -> TransferGraph:
        """Plan the write-through of ``keys`` from the GPU into every tier that lacks them."""
        graph = TransferGraph(next(self._graph_ids), "put", request_id, keys, num_tokens, now)
        n = self._admitted(keys) if self.store_after_hits else len(keys)
        cpu = self.cpu
        c_ready, c_present, c_handle = cpu.lookup(keys, now, hit=False)
        graph.locks.append((cpu, c_handle))
        cpu_end = c_ready
        ready_handle = c_handle  # the path of the blocks already in CPU
        d2h: TransferOp | None = None
        if c_present == c_ready and c_ready < n:
            node = cpu.insert(c_handle, keys, n - c_ready, now)
            if node is not None:
                graph.writers[node] = 0
                # The lower tiers read the new blocks from CPU: keep them until the end.
                graph.locks.append((cpu, cpu.pin(node)))
                d2h = graph.add(D2H, c_ready, node.end, None, (cpu, node))
                cpu_end = node.end
                c_handle = node
        for tier, path in ((self.ssd, SSD_WRITE), (self.remote, REMOTE_WRITE)):
            if tier is None or cpu_end == 0:
                continue
            ready, present, handle = tier.lookup(keys, now, hit=False, limit=cpu_end)
            graph.locks.append((tier, handle))
            if present != ready or ready >= cpu_end:
                continue
            node = tier.insert(handle, keys, cpu_end - ready, now)
            if node is None:
                continue
            graph.writers[node] = 0
            deps = (d2h.op_id,) if d2h is not None and node.end > d2h.start else ()
            # A write of blocks already in CPU reads them through their own path, so that
            # it keeps its source if the D2H copy of the new blocks fails.
            graph.add(path, ready, node.end, (cpu, c_handle if deps else ready_handle),
                      (tier, node), deps)
        if not graph.ops:
            self._finish(graph)
        return graph

    def _admitted(self, keys: list[int]) -> int:
        """Length of the prefix requested at least ``store_after_hits`` times before."""
        seen = self._seen
        admitted = len(keys)
        for i, key in enumerate(keys):
            count = seen.pop(key, 0)
            seen[key] = count + 1
            if count < self.store_after_hits and admitted == len(keys):
                admitted = i
        while len(seen) > self._seen_capacity:
            seen.popitem(last=False)
        return admitted

    # -- hit-rate mode -------------------------------------------------------------------
    @property
    def single_tier(self) -> bool:
        """Only a CPU tier: :meth:`access` applies."""
        return self.ssd is None and self.remote is None

    def access(
        self,
        request_id: str,
        keys: list[int],
        num_tokens: int,
        now: float,
        *,
        gpu_blocks: int = 0,
    ) -> tuple[int, int]:
        """GET then PUT of one request, completed at once, without transfer graphs.

        For a planner with a CPU tier alone, this makes the same index calls in the same
        order as ``run(plan_get(...))`` then ``run(plan_put(...))`` and updates the same
        stats (a property test checks both paths against each other), at a fraction of
        the cost: it is the twin's hit-rate mode. Returns the CPU-served block range.
        """
        if not self.single_tier:
            raise ValueError("access() needs a planner with a CPU tier only")
        del request_id
        cpu, stats = self.cpu, self.stats
        tpb = self.tokens_per_block
        # GET: lock, touch and count the ready prefix (nothing to stage without lower
        # tiers), release; PUT: write what the CPU lacks. One index call for both.
        n = self._admitted(keys) if self.store_after_hits else len(keys)
        ready, present, stored = cpu.get_put(keys, now, n)
        first = gpu_blocks if gpu_blocks > 0 else 0
        end = first if first > ready else ready
        stats.gets += 1
        stats.prompt_tokens += num_tokens
        if present > ready:
            stats.gets_in_flight += 1
        if gpu_blocks:
            stats.tokens_by_tier[GPU] += tokens_in(0, gpu_blocks, tpb, num_tokens)
            stats.blocks_by_tier[GPU] += gpu_blocks
        if end > first:
            stats.tokens_by_tier[CPU] += tokens_in(first, end, tpb, num_tokens)
            stats.blocks_by_tier[CPU] += end - first
            stats.ops_by_path[H2D] += 1
            stats.blocks_by_path[H2D] += end - first
        if stored:
            stats.ops_by_path[D2H] += 1
            stats.blocks_by_path[D2H] += stored
            stats.stored_blocks[CPU] += stored
        stats.puts += 1
        return first, end

    # -- completion --------------------------------------------------------------------
    def invalidate_source(self, op: TransferOp, start: int | None = None) -> int:
        """Drop the blocks a failed read ``op`` was loading, from ``start`` (a position in
        the request, default ``op.start``) on, with every block below them, from its
        source tier: they were found unreadable or corrupt, so later GETs miss them, and
        the next PUT stores them again, instead of failing on them. Call before
        :meth:`complete`; returns the blocks dropped."""
        if op.src is None:
            return 0
        tier, handle = op.src
        first = op.start if start is None else min(max(start, op.start), op.end - 1)
        return tier.invalidate(handle, first)

    def complete(self, graph: TransferGraph, op: TransferOp, ok: bool = True) -> None:
        """Report that ``op`` ended; a failed op takes its dependents down with it."""
        if op.status != PENDING:
            raise ValueError(f"{op} reported twice")
        if ok:
            op.status = DONE
            graph.pending -= 1
            dst = op.dst
            if dst is not None:
                writers = graph.writers
                node = dst[1]
                left = writers.get(node)
                if left is not None:
                    writers[node] = left - 1
                    if left == 1:
                        doomed = graph.doomed
                        if doomed is not None and node in doomed:
                            dst[0].abort(node)  # another writer of it failed
                        else:
                            dst[0].commit(node)
        else:
            self._drop(graph, op, FAILED)
            self.stats.failed_ops += 1
            for other in graph.ops:
                if other.status == PENDING and op.op_id in other.deps:
                    self._drop(graph, other, CANCELLED)
                    self.stats.cancelled_ops += 1
        if graph.pending == 0:
            self._finish(graph)

    def cancel(self, graph: TransferGraph) -> None:
        """Roll back every op not yet done (the caller ensures none is still moving bytes)."""
        for op in graph.ops:
            if op.status == PENDING:
                self._drop(graph, op, CANCELLED)
                self.stats.cancelled_ops += 1
        if not graph.done:
            self._finish(graph)

    def run(self, graph: TransferGraph) -> TransferGraph:
        """Complete every op at once (hit-rate mode: no bytes move)."""
        complete = self.complete
        for op in graph.ops:
            if op.status is PENDING:
                complete(graph, op)
        return graph

    def _drop(self, graph: TransferGraph, op: TransferOp, status: str) -> None:
        op.status = status
        graph.pending -= 1
        if op.dst is not None:
            tier, node = op.dst
            writers = graph.writers
            left = writers.get(node)
            if left is None:
                return
            if left > 1:
                # Other ops still write into the node's blocks (an SSD read and a remote
                # read staging one run, say): it is aborted when the last of them ends,
                # so that no pending op writes into blocks already freed.
                writers[node] = left - 1
                if graph.doomed is None:
                    graph.doomed = set()
                graph.doomed.add(node)
            else:
                del writers[node]
                tier.abort(node)

    def _finish(self, graph: TransferGraph) -> None:
        graph.done = True
        for tier, handle in graph.locks:
            tier.release(handle)
        graph.locks.clear()
        stats = self.stats
        by_path, ops_by_path, stored = stats.blocks_by_path, stats.ops_by_path, stats.stored_blocks
        put = graph.kind == "put"
        for op in graph.ops:
            if op.status == DONE:
                ops_by_path[op.path] += 1
                by_path[op.path] += op.end - op.start
                if put and op.dst is not None:
                    stored[op.dst[0].name] += op.end - op.start
        if put:
            stats.puts += 1
        elif graph.kind == "get":
            self._record_get(graph)

    def _record_get(self, graph: TransferGraph) -> None:
        stats = self.stats
        tpb, total = self.tokens_per_block, graph.num_tokens
        stats.gets += 1
        stats.prompt_tokens += total
        if graph.in_flight:
            stats.gets_in_flight += 1
        tokens, blocks = stats.tokens_by_tier, stats.blocks_by_tier
        gpu = graph.gpu_blocks
        if gpu:
            tokens[GPU] += tokens_in(0, gpu, tpb, total)
            blocks[GPU] += gpu
        # The staged part (SSD/remote -> CPU -> GPU) arrives whole or not at all; the CPU
        # part depends only on its own H2D copy.
        ops = graph.ops
        staged_ok = all(op.status == DONE for op in ops)
        cpu_ok = staged_ok or any(op.status == DONE for op in ops if op.path == H2D and not op.deps)
        served = graph.served
        for tier, (start, end) in served.items():
            if end == start:
                continue
            if not (cpu_ok if tier == CPU else staged_ok):
                served[tier] = (start, start)
                continue
            tokens[tier] += min(end * tpb, total) - min(start * tpb, total)
            blocks[tier] += end - start

    # -- data-plane helpers -----------------------------------------------------------
    def block_ids(self, op: TransferOp) -> tuple[list[int] | None, list[int] | None]:
        """Source and destination tier block ids of ``op`` (None for the GPU side)."""
        src = op.src[0].block_ids(op.src[1], op.start, op.end) if op.src else None
        dst = op.dst[0].block_ids(op.dst[1], op.start, op.end) if op.dst else None
        return src, dst
