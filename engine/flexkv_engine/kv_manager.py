"""The KV manager: FlexKV's asynchronous API over the core's planner and the data paths.

``get_async`` / ``put_async`` / ``prefetch_async`` plan a transfer graph with the core
(under one lock, so planning is deterministic for a given order of calls) and hand the
runnable ops to the movers of their paths. Poller threads, one per mover, take
completions as they happen: the planner marks written blocks ready, dependent ops are
dispatched, and a finished request wakes its waiters. Nothing waits for the caller to
poll, and no request crosses a process boundary, so GET latency is the transfers plus
microseconds.

A GET fills the caller's GPU block ids ``gpu_block_ids[i]`` for block ``i`` of the request;
its result says how many leading blocks are in place (only whole, finished blocks count).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .config import Config
from .core.graph import TransferGraph, TransferOp
from .core.keys import block_keys
from .core.paths import (
    CACHE_TIERS,
    D2H,
    GPU,
    H2D,
    REMOTE_READ,
    REMOTE_WRITE,
    SSD_READ,
    SSD_WRITE,
)
from .core.ssd_ios import blocks_per_io, count_ios
from .layout import KVLayout
from .metrics import Metrics
from .movers import gpu_mover, open_remote, open_ssd
from .planning import build_planner
from .request_life import tier_tokens
from .storage.host_pool import GpuKVCache, HostPool
from .trace import RequestRecord
from .transfer.protocol import Done, Job, Mover

log = logging.getLogger("flexkv_engine")
DONE, CANCELLED, FAILED = "done", "cancelled", "failed"
_REMOTE_PATHS = (REMOTE_READ, REMOTE_WRITE)
_SSD_PATHS = (SSD_READ, SSD_WRITE)
# Paths whose movers get the blocks' keys: the remote store names objects by key, the
# SSD path records them in its slot table.
_KEYED_PATHS = (*_REMOTE_PATHS, *_SSD_PATHS)


@dataclass
class KVResult:
    """What a finished request did. ``loaded_blocks``: leading blocks now in the GPU ids."""

    request_id: int
    kind: str
    status: str
    num_blocks: int
    loaded_blocks: int = 0
    hit_blocks: dict[str, int] = field(default_factory=dict)
    match_s: float = 0.0
    latency_s: float = 0.0
    errors: list[str] = field(default_factory=list)
    in_flight: bool = False  # the GET stopped at blocks another request is still writing
    served: dict[str, tuple[int, int]] = field(default_factory=dict)  # tier -> block range


@dataclass
class _Request:
    request_id: int
    kind: str
    graph: TransferGraph
    gpu_ids: Sequence[int]
    started: float
    match_s: float
    trace_id: str
    submitted: set[int] = field(default_factory=set)  # op ids handed to a mover
    in_flight: set[int] = field(default_factory=set)  # job ids not finished yet
    cancelling: bool = False
    errors: list[str] = field(default_factory=list)
    result: KVResult | None = None


class KVManager:
    """Tiered KV cache of one serving engine: CPU pool, SSD (optional), GPU copies."""

    def __init__(
        self,
        config: Config,
        *,
        num_gpu_blocks: int,
        device: str = "cpu",
        ssd_backend: str = "auto",
        tracer: Any = None,
        cuda_kernels: bool | None = None,
        metrics: Metrics | None = None,
        ssd_restore: bool | None = None,
    ) -> None:
        """``cuda_kernels``: GPU copies by the native CUDA mover (None: when ``device`` is
        CUDA and the native module has CUDA; True: required; False: the torch mover).
        ``metrics``: Prometheus metrics to update (none by default, at no cost).
        ``ssd_restore``: overrides ``cache_config.ssd_restore`` (rebuild the SSD index
        from what an earlier run stored)."""
        if not config.is_resolved:
            raise ValueError("KVManager needs a resolved config (Config.resolve())")
        cache = config.cache_config
        assert cache.tokens_per_block is not None and cache.num_cpu_blocks is not None
        self.config = config
        self.tokens_per_block = cache.tokens_per_block
        self.layout = KVLayout.from_model(config.model_config, cache.tokens_per_block)
        self.planner = build_planner(cache)
        self.host = HostPool(self.layout, cache.num_cpu_blocks, pin=device.startswith("cuda"))
        self.gpu = GpuKVCache(self.layout, num_gpu_blocks, device)
        if tracer is None and cache.enable_trace:
            from .tracer import Tracer

            tracer = Tracer(cache.trace_file_path, config)
        self.tracer = tracer
        self.metrics = metrics
        if self.metrics is not None:
            self.metrics.attach(self)
        self._movers: dict[str, Mover] = {}
        copy = gpu_mover(cache, device, cuda_kernels, self.host, self.gpu)
        self._movers[H2D] = self._movers[D2H] = copy
        self.ssd_files = None
        if cache.enable_ssd:
            restore = cache.ssd_restore if ssd_restore is None else ssd_restore
            ssd = open_ssd(cache, self.host, self.planner, ssd_backend, restore)
            self.ssd_files, self.ssd_backend_name = ssd.files, ssd.backend_name
            self.ssd_restored_blocks = ssd.restored_blocks
            self._movers[SSD_READ] = self._movers[SSD_WRITE] = ssd.mover
        self.remote_store: Any = None
        self.remote_errors = {"unavailable": 0, "gets_failed": 0, "puts_dropped": 0}
        self._remote_retry_at = 0.0  # no existence checks before this (store unreachable)
        if cache.enable_remote:
            self.remote_store, remote = open_remote(cache, self.host)
            self._movers[REMOTE_READ] = self._movers[REMOTE_WRITE] = remote
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._requests: dict[int, _Request] = {}
        self._jobs: dict[int, tuple[_Request, TransferOp, float]] = {}
        self._job_ios: dict[int, int] = {}  # traced SSD jobs: their I/O count
        self._request_ids = itertools.count(1)
        self._job_ids = itertools.count(1)
        self._closing = False
        self.failed_ops = 0
        self._pollers = [
            threading.Thread(target=self._poll_loop, args=(mover,), daemon=True,
                             name=f"flexkv-poll-{'-'.join(mover.paths)}")
            for mover in {id(m): m for m in self._movers.values()}.values()
        ]
        for poller in self._pollers:
            poller.start()

    # -- the API -----------------------------------------------------------------------
    def keys_for(self, token_ids: Sequence[int], namespace: str | None = None) -> list[int]:
        return block_keys(token_ids, self.tokens_per_block, namespace)

    def get_async(
        self,
        keys: list[int],
        gpu_block_ids: Sequence[int],
        *,
        num_tokens: int | None = None,
        gpu_matched_blocks: int = 0,
        trace_id: str | None = None,
        now: float | None = None,
    ) -> int:
        """Load what the tiers hold of ``keys`` (after ``gpu_matched_blocks``) into the GPU.

        ``now`` is the time the eviction policies see (default ``time.monotonic()``); a
        replay passes trace time so that its choices match the twin's.
        """
        self._check_ids(keys, gpu_block_ids)
        return self._start(
            "get", keys, gpu_block_ids, num_tokens, gpu_matched_blocks, trace_id, now
        )

    def put_async(
        self,
        keys: list[int],
        gpu_block_ids: Sequence[int],
        *,
        num_tokens: int | None = None,
        trace_id: str | None = None,
        now: float | None = None,
    ) -> int:
        """Write the blocks of ``keys`` from the GPU through every tier that lacks them."""
        self._check_ids(keys, gpu_block_ids)
        return self._start("put", keys, gpu_block_ids, num_tokens, 0, trace_id, now)

    def prefetch_async(self, keys: list[int], *, num_tokens: int | None = None) -> int:
        """Stage what SSD or remote hold of ``keys`` into the CPU tier (no GPU copy)."""
        return self._start("prefetch", keys, (), num_tokens, 0, None, None)

    def wait(
        self, request_ids: Sequence[int], timeout: float | None = None
    ) -> dict[int, KVResult]:
        """Results of the requests (those finished within ``timeout`` if one is given)."""
        with self._cond:
            self._cond.wait_for(
                lambda: all(self._requests[r].result is not None for r in request_ids
                            if r in self._requests),
                timeout,
            )
            return self._collect(request_ids)

    def try_wait(self, request_ids: Sequence[int]) -> dict[int, KVResult]:
        """Results of the requests that already finished; never blocks."""
        with self._lock:
            return self._collect(request_ids)

    def cancel(self, request_id: int) -> None:
        """Roll back what the request has not done yet; ops already moving finish first."""
        with self._lock:
            req = self._requests.get(request_id)
            if req is None or req.result is not None:
                return
            req.cancelling = True
            if not req.in_flight:
                self.planner.cancel(req.graph)
                self._finish(req)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            s = self.planner.stats
            return {
                "gets": s.gets, "puts": s.puts, "hit_rate": s.hit_rate,
                "hit_rate_by_tier": s.hit_rate_by_tier(),
                "blocks_by_path": dict(s.blocks_by_path), "failed_ops": self.failed_ops,
                "remote_errors": dict(self.remote_errors), "adopted_blocks": s.adopted_blocks,
                **self._ssd_stats(),
                "tiers": {n: {"used": t.used, "capacity": t.capacity,
                              "evicted_blocks": t.evicted_blocks}
                          for n, t in self.planner.tiers.items()},
            }

    def _ssd_stats(self) -> dict[str, Any]:
        """``ssd_errors`` (failed SSD ops, checksum mismatches included) and, with an SSD
        tier, ``ssd``: failures by kind, blocks dropped as bad and blocks restored."""
        mover: Any = self._movers.get(SSD_READ)
        if mover is None or self.planner.ssd is None:
            return {"ssd_errors": 0}
        counts = {
            "reads_failed": mover.reads_failed, "writes_failed": mover.writes_failed,
            "checksum_errors": mover.checksum_errors,
            "dropped_blocks": self.planner.ssd.dropped_blocks,
            "restored_blocks": self.ssd_restored_blocks,
        }
        return {"ssd_errors": counts["reads_failed"] + counts["writes_failed"], "ssd": counts}

    def close(self) -> None:
        """Finish in-flight work, stop the workers, close the SSD files and the store."""
        with self._cond:
            self._cond.wait_for(lambda: not self._jobs, timeout=30.0)
            self._closing = True
        for poller in self._pollers:
            poller.join()
        for mover in {id(m): m for m in self._movers.values()}.values():
            mover.close()
        if self.ssd_files is not None:
            self.ssd_files.close()
        if self.remote_store is not None:
            self.remote_store.close()
        if self.tracer is not None:
            self.tracer.close()

    def __enter__(self) -> KVManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------
    def _check_ids(self, keys: Sequence[int], gpu_block_ids: Sequence[int]) -> None:
        if len(gpu_block_ids) < len(keys):
            raise ValueError(f"{len(keys)} blocks but only {len(gpu_block_ids)} GPU block ids")
        bad = [i for i in gpu_block_ids[: len(keys)] if not 0 <= i < self.gpu.num_blocks]
        if bad:
            raise ValueError(f"GPU block id {bad[0]} outside 0..{self.gpu.num_blocks - 1}")

    def _start(
        self, kind: str, keys: list[int], gpu_ids: Sequence[int], num_tokens: int | None,
        gpu_matched: int, trace_id: str | None, now: float | None,
    ) -> int:
        tokens = num_tokens if num_tokens is not None else len(keys) * self.tokens_per_block
        known = 0
        if kind != "put" and self.remote_store is not None:
            known = self._remote_known(keys)
        with self._lock:
            if self._closing:
                raise RuntimeError("KVManager is closed")
            rid = next(self._request_ids)
            began = time.perf_counter()
            if now is None:
                now = time.monotonic()
            if kind == "put":
                graph = self.planner.plan_put(str(rid), keys, tokens, now)
            else:
                graph = self.planner.plan_get(
                    str(rid), keys, tokens, now, gpu_blocks=gpu_matched,
                    to_gpu=kind == "get", remote_known=known,
                )
            req = _Request(rid, kind, graph, gpu_ids, began, time.perf_counter() - began,
                           trace_id or str(rid))
            self._requests[rid] = req
            if self.tracer is not None:
                self.tracer.event(kind, req.trace_id, now=now, gpu_blocks=gpu_matched,
                                  remote_known=known)
            if self.tracer is not None and trace_id is None and kind != "prefetch":
                # Direct API use; a replay records its serving requests itself.
                self.tracer.request(RequestRecord(
                    self.tracer.elapsed(began), kind, req.trace_id, tokens, keys
                ))
            if graph.done:
                self._finish(req)
            else:
                self._dispatch(req)
            return rid

    def _remote_known(self, keys: list[int]) -> int:
        """How far the shared store holds ``keys``: one batched existence check of what
        lies beyond the remote index, made outside the lock. While the store is
        unreachable (checked again after a second) the index alone answers."""
        from .storage.remote import RemoteUnavailable

        with self._lock:
            ready = self.planner.remote_ready(keys)
        if ready >= len(keys) or time.monotonic() < self._remote_retry_at:
            return ready
        try:
            held = self.remote_store.exists(keys[ready:])
        except RemoteUnavailable as exc:
            with self._lock:
                self.remote_errors["unavailable"] += 1
            if self._remote_retry_at == 0.0:
                log.warning("remote store %s unreachable, serving without it: %s",
                            self.remote_store.name, exc)
            self._remote_retry_at = time.monotonic() + 1.0
            return ready
        if self._remote_retry_at:
            log.warning("remote store %s reachable again", self.remote_store.name)
            self._remote_retry_at = 0.0
        for found in held:
            if not found:
                break
            ready += 1
        return ready

    def _dispatch(self, req: _Request) -> None:
        """Hand every runnable, not yet submitted op of ``req`` to its mover (lock held)."""
        graph = req.graph
        for op in graph.runnable():
            if op.op_id in req.submitted:
                continue
            req.submitted.add(op.op_id)
            src, dst = self.planner.block_ids(op)
            if op.path == H2D:
                dst = list(req.gpu_ids[op.start : op.end])
            elif op.path == D2H:
                src = list(req.gpu_ids[op.start : op.end])
            job_id = next(self._job_ids)
            assert src is not None and dst is not None
            self._jobs[job_id] = (req, op, time.perf_counter())
            if self.tracer is not None and op.path in _SSD_PATHS:
                self._job_ios[job_id] = self._count_ios(op.path, src, dst)
            req.in_flight.add(job_id)
            keys = graph.keys[op.start : op.end] if op.path in _KEYED_PATHS else ()
            parent = graph.keys[op.start - 1] if keys and op.start else None
            self._movers[op.path].submit(Job(job_id, op.path, src, dst, keys, parent))

    def _count_ios(self, path: str, src: Sequence[int], dst: Sequence[int]) -> int:
        files = self.ssd_files
        assert files is not None
        ssd, host = (dst, src) if path == SSD_WRITE else (src, dst)
        return count_ios(ssd, host, files.nfiles, blocks_per_io(files.stride))

    def _poll_loop(self, mover: Mover) -> None:
        while True:
            try:
                finished = mover.poll(timeout=0.05)
            except Exception as exc:  # a broken mover fails its ops rather than hang them
                log.exception("the %s mover failed while polling", "/".join(mover.paths))
                finished = self._lost(mover, f"{'/'.join(mover.paths)} mover failed: {exc!r}")
                time.sleep(0.05)
            for done in finished:
                self._on_done(done)
            with self._lock:
                if self._closing and not self._jobs:
                    return

    def _lost(self, mover: Mover, error: str) -> list[Done]:
        """A failure for each job in flight on ``mover``; its own later reports of them
        are then ignored."""
        with self._lock:
            return [Done(job_id, False, error, 0, 0.0, 0.0)
                    for job_id, (_, op, _) in self._jobs.items() if op.path in mover.paths]

    def _on_done(self, done: Done) -> None:
        with self._lock:
            if done.job_id not in self._jobs:
                return  # already failed by _lost
            req, op, submitted = self._jobs.pop(done.job_id)
            req.in_flight.discard(done.job_id)
            if not done.ok:
                self.failed_ops += 1
                req.errors.append(done.error or f"{op.path} failed")
                if op.path in _REMOTE_PATHS:
                    # The mover logs an outage once; each lost op is only counted.
                    self.remote_errors[
                        "puts_dropped" if op.path == REMOTE_WRITE else "gets_failed"
                    ] += 1
                    log.debug("%s op of request %s failed: %s", op.path, req.trace_id,
                              done.error)
                else:
                    log.error("%s op of request %s failed: %s", op.path, req.trace_id,
                              done.error)
                if op.path == SSD_READ or (
                    op.path == REMOTE_READ and done.first_bad < op.end - op.start
                ):
                    # Unreadable, corrupt or (remote) gone from the store: later GETs miss
                    # these blocks, and the next PUT stores them again, instead of failing
                    # on them. An unreachable store names no bad block: nothing is dropped.
                    self.planner.invalidate_source(op, op.start + done.first_bad)
            if self.tracer is not None:
                ios = self._job_ios.pop(done.job_id, 0)
                self.tracer.transfer(req.trace_id, op, done, submitted, ios)
            if self.metrics is not None:
                self.metrics.transfer_done(op.path, done)
            if self.tracer is not None:
                self.tracer.event("done", req.trace_id, graph=req.kind, op_id=op.op_id,
                                  ok=done.ok, first_bad=done.first_bad)
            self.planner.complete(req.graph, op, ok=done.ok)
            if req.cancelling and not req.in_flight and not req.graph.done:
                self.planner.cancel(req.graph)
            if req.graph.done:
                self._finish(req)
            elif not req.cancelling:
                self._dispatch(req)
            if not self._jobs:
                self._cond.notify_all()

    def _finish(self, req: _Request) -> None:
        graph = req.graph
        hits = {GPU: graph.gpu_blocks}
        loaded = graph.gpu_blocks
        for tier in CACHE_TIERS:
            start, end = graph.served.get(tier, (0, 0))
            hits[tier] = end - start
            if end > start and start <= loaded:
                loaded = max(loaded, end)
        status = CANCELLED if req.cancelling else (FAILED if req.errors else DONE)
        req.result = KVResult(
            req.request_id, req.kind, status, len(graph.keys),
            loaded if req.kind == "get" else 0, hits, req.match_s,
            time.perf_counter() - req.started, list(req.errors), graph.in_flight,
            dict(graph.served),
        )
        if self.tracer is not None:
            self.tracer.outcome(req.trace_id, req.kind, req.result, self.tokens_per_block,
                                graph.num_tokens)
        if self.metrics is not None:
            served = (self.served_tokens(req.result, graph.num_tokens)
                      if req.kind == "get" else None)
            self.metrics.request_done(req.result, served, graph.num_tokens, self.planner.tiers)
        self._cond.notify_all()

    def _collect(self, request_ids: Sequence[int]) -> dict[int, KVResult]:
        out = {}
        for rid in request_ids:
            req = self._requests.get(rid)
            if req is not None and req.result is not None:
                out[rid] = req.result
                del self._requests[rid]
        return out

    def served_tokens(self, result: KVResult, num_tokens: int) -> dict[str, int]:
        """Tokens each tier served for a GET result (the operator guide's accounting)."""
        tokens = tier_tokens(result.hit_blocks.get(GPU, 0), result.served,
                             self.tokens_per_block, num_tokens)
        return dict(zip((GPU, *CACHE_TIERS), tokens, strict=True))


__all__ = ["KVManager", "KVResult"]
