"""Timing mode: the core's planner inside a SimPy model of the links and the GPU.

Each request of the trace lives as a chain of SimPy event callbacks, in the order of
``flexkv-run replay``'s serving emulator (``flexkv_engine.hw_replay.serving``):

1. arrives at its timestamp and waits for a slot (``serving_config.max_concurrency``);
2. matches the serving engine's GPU prefix cache and waits, first come first served, for
   working GPU blocks for the rest (:mod:`flexkv_engine.serving_pool`, the same pool and
   rule as the engine's);
3. plans the FlexKV GET (after the profile's ``match`` time) and runs its transfer graph
   on the devices;
4. prefills the tokens that no tier served (the compute model), which gives TTFT;
5. plans the write-through PUT, whose transfers run beside the decode of
   ``output_tokens`` steps; once both are over it leaves its blocks to the GPU prefix
   cache and gives its working blocks back.

Transfers run on :mod:`flexkv_sim.devices` links: PCIe H2D/D2H (duplex-coupled, curve by
copy mode), SSD read/write (bandwidth by queue depth; an op of fewer blocks than the queue
depth pays for the slots it leaves empty), network to the remote store.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from operator import itemgetter
from typing import Any

import simpy

from flexkv_engine.core.graph import TransferGraph, TransferOp
from flexkv_engine.core.paths import (
    D2H,
    H2D,
    REMOTE_READ,
    REMOTE_WRITE,
    SSD_READ,
    SSD_WRITE,
)
from flexkv_engine.core.planner import Planner
from flexkv_engine.core.ssd_ios import blocks_per_io, count_ios
from flexkv_engine.gpu_cache import GpuPrefixCache
from flexkv_engine.layout import KVLayout
from flexkv_engine.planning import build_planner, ssd_num_files
from flexkv_engine.replay_input import ReplayInput
from flexkv_engine.request_life import COLUMNS
from flexkv_engine.serving_pool import WorkingPool, working_blocks
from flexkv_engine.trace import TransferRecord

from ..calls import call_later, run_events, schedule_arrival
from ..devices import DuplexPair, FluidLink, Gate, HostCpu
from ..hardware import HardwareProfile
from ..progress import cyclic_gc_paused, progress_bar
from .request_run import RequestRun
from .store import StoreModel, record_writes

TIMING_COLUMNS = COLUMNS  # a request's row: request_life.COLUMNS, as the engine's
UTILISATION_BINS = 200


@dataclass
class TimingResult:
    planner: Planner
    wall_s: float
    span_s: float
    links: dict[str, FluidLink]
    records: list[tuple[Any, ...]] = field(default_factory=list)  # rows of TIMING_COLUMNS
    transfers: list[TransferRecord] | None = None  # with record_transfers=True
    events: list[dict[str, Any]] | None = None  # with record_events=True


class TimingModel:
    """Devices, planner and GPU prefix cache of one timing replay."""

    def __init__(
        self,
        inp: ReplayInput,
        profile: HardwareProfile,
        bin_s: float,
        *,
        env: simpy.Environment | None = None,
        store: StoreModel | None = None,
    ) -> None:
        """``env`` and ``store``: shared with other instances (default: their own)."""
        config = inp.config
        cache = config.cache_config
        own_env = env is None
        self.env = env = env if env is not None else simpy.Environment()
        # The twin moves no bytes; it keeps block ids only to count the I/Os of SSD ops
        # when the profile charges them.
        per_io = profile.ssd_read.per_io_s > 0 or profile.ssd_write.per_io_s > 0
        self.count_ios = per_io and bool(cache.enable_ssd)
        self.planner = build_planner(cache, track_ids=self.count_ios)
        if store is None:
            store = StoreModel.for_config(config)
        self.store = store if self.planner.remote is not None else None
        self.gpu_cache = GpuPrefixCache(config.serving_config.num_gpu_blocks, track_ids=False)
        self.tpb = self.planner.tokens_per_block
        self.block_bytes = config.model_config.bytes_per_block(self.tpb)
        self.compute = config.serving_config.compute
        if "serving_config.compute" not in {k.rsplit(".", 1)[0] for k in config.explicit}:
            self.compute = profile.compute
        self.match_s = profile.match_s
        self.complete_s = profile.complete_s
        # The engine's host CPU work (interpreter.* of the profile): with it, the match
        # and completion times and each request's per-block work share the host's CPUs,
        # so that a loaded engine waits for its CPUs as well as for its devices.
        self.prefill_cpu_s = profile.prefill_cpu_per_block_s
        self.put_cpu_s = profile.put_cpu_per_block_s
        self.host = (HostCpu(env, profile.host_cpus, bin_s=bin_s)
                     if self.prefill_cpu_s or self.put_cpu_s else None)
        qd = cache.ssd_cache_iouring_entries
        links = {
            H2D: FluidLink(env, H2D, profile.h2d_curve(cache), bin_s=bin_s),
            D2H: FluidLink(env, D2H, profile.d2h_curve(cache), bin_s=bin_s),
            SSD_READ: FluidLink(env, SSD_READ, profile.ssd_read.curve(qd), bin_s=bin_s),
            SSD_WRITE: FluidLink(env, SSD_WRITE, profile.ssd_write.curve(qd), bin_s=bin_s),
            REMOTE_READ: FluidLink(env, REMOTE_READ, profile.network, bin_s=bin_s),
            REMOTE_WRITE: FluidLink(env, REMOTE_WRITE, profile.network_write_curve, bin_s=bin_s),
        }
        DuplexPair(links[H2D], links[D2H], profile.duplex_bandwidth)
        # The engine's queues in front of the devices (devices.Gate): one op at a time per
        # PCIe direction; one ring of ``qd`` I/Os for SSD reads and writes together.
        links[H2D].gate, links[D2H].gate = Gate(1), Gate(1)
        links[SSD_READ].gate = links[SSD_WRITE].gate = Gate(max(qd, 1))
        for path, ssd in ((SSD_READ, profile.ssd_read), (SSD_WRITE, profile.ssd_write)):
            # An op of fewer blocks than the queue depth cannot fill the queue.
            link = links[path]
            link.queue_depth, link.io_bytes = max(qd, 1), self.block_bytes
            link.per_idle_slot_s = ssd.idle_slot_s(qd, self.block_bytes)
        self.links = links
        stride = KVLayout.from_model(config.model_config, self.tpb).stride
        self.ssd_file_count = ssd_num_files(cache, stride) if cache.enable_ssd else 1
        self.ssd_per_io = blocks_per_io(stride)
        # Per-copy costs: copy-engine paths copy whole blocks one by one (after a gather
        # on the GPU); the remote store moves one object per block; SSD ops: _copies.
        self.copies_per_block = {
            H2D: 1 if cache.use_ce_transfer_h2d else 0,
            D2H: 1 if cache.use_ce_transfer_d2h else 0,
            REMOTE_READ: 1,
            REMOTE_WRITE: 1,
        }
        # Per path, precomputed for _send: (link, copies per block or None where an op's
        # I/Os are counted, bytes per block).
        self._paths = {
            path: (
                link,
                None if self.count_ios and path in (SSD_READ, SSD_WRITE)
                else self.copies_per_block.get(path, 0),
                self.block_bytes,
            )
            for path, link in links.items()
        }
        limit = config.serving_config.max_concurrency
        self.slots = simpy.Resource(env, limit) if limit > 0 else None
        self.working = WorkingPool(working_blocks(inp.requests, limit))
        self.records: list[tuple[Any, ...]] = []  # rows of TIMING_COLUMNS, in end order
        self.sequential = False
        self._pending: list[Any] = []  # one-at-a-time pacing: requests not started, reversed
        # Arrivals not yet due, in key order, apart from the heap (calls.run_events);
        # on an environment of several models (shared.py) they go on the heap.
        self._arrivals: deque[Any] | None = deque() if own_env else None
        self.transfers: list[TransferRecord] | None = None  # a list: record every op
        # A list: log every planner call as the engine's tracer does (event records).
        self.events: list[dict[str, Any]] | None = None

    def cpu(self, seconds: float, then: Callable[[], None]) -> None:
        """``then()`` after ``seconds`` of host work: on the host's CPUs when they are
        modelled, else a plain delay."""
        if self.host is not None:
            self.host.run(seconds, then)
        else:
            call_later(self.env, seconds, then)

    def log(self, kind: str, request_id: str, **fields: Any) -> None:
        """One planner call, numbered in call order (``ordered.replay_events`` reads it)."""
        events = self.events
        assert events is not None
        events.append({"seq": len(events), "kind": kind, "id": request_id,
                       "t": self.env.now, **fields})

    def _complete(self, graph: TransferGraph, op: TransferOp) -> None:
        if self.events is not None:
            self.log("done", graph.request_id, graph=graph.kind, op_id=op.op_id, ok=True,
                     first_bad=0)
        self.planner.complete(graph, op)

    def _recorded(
        self, graph: TransferGraph, op: TransferOp, copies: int, admitted: list[float],
        then: Callable[[], None],
    ) -> Callable[[], None]:
        """``then``, after appending ``op``'s record (submitted now; ``admitted`` gets the
        time it left the queue; ``copies``: what :meth:`_copies` gave it, an SSD op's I/O
        count when they are counted)."""
        submit, log, nbytes = self.env.now, self.transfers, op.blocks * self.block_bytes
        assert log is not None
        ios = copies if self.count_ios and op.path in (SSD_READ, SSD_WRITE) else 0

        def ended() -> None:
            start = admitted[0] if admitted else submit
            log.append(TransferRecord(
                request_id=graph.request_id, op_id=op.op_id, path=op.path, num_bytes=nbytes,
                num_blocks=op.blocks, t_submit=submit, queue_s=start - submit,
                transfer_s=self.env.now - start, deps=tuple(op.deps), ios=ios,
            ))
            then()

        return ended

    def _copies(self, op: TransferOp) -> int:
        """Per-copy costs an op pays: an SSD op's I/Os (when block ids are kept), one
        per block on paths that copy blocks one by one, else one."""
        if op.path in (SSD_READ, SSD_WRITE) and self.count_ios:
            src, dst = self.planner.block_ids(op)
            ssd, host = (dst, src) if op.path == SSD_WRITE else (src, dst)
            assert ssd is not None and host is not None
            return count_ios(ssd, host, self.ssd_file_count, self.ssd_per_io)
        return max(1, op.blocks * self.copies_per_block.get(op.path, 0))

    # -- transfer graphs -----------------------------------------------------------------
    def _send(self, graph: TransferGraph, op: TransferOp, then: Callable[[], None]) -> None:
        """Submit ``op`` to its link; ``then()`` once it has moved."""
        link, per_block, block_bytes = self._paths[op.path]
        blocks = op.end - op.start
        # As _copies, without its call where the I/Os are not counted.
        if per_block is None:
            copies = self._copies(op)
        else:
            copies = blocks * per_block or 1  # max(1, ...) of a count >= 0
        # Units of the link's queue it needs: SSD ops one per I/O (per block when the
        # I/Os are not counted), capped at the depth by the gate.
        need = copies if self.count_ios else blocks
        if self.transfers is None:
            link.transfer(blocks * block_bytes, copies, then, need)
            return
        admitted: list[float] = []
        link.transfer(
            blocks * block_bytes, copies,
            self._recorded(graph, op, copies, admitted, then), need, admitted,
        )

    def execute(self, graph: TransferGraph, then: Callable[[], None]) -> None:
        """Run ``graph``'s ops on the links as their dependencies allow, then call ``then``
        (after the profile's ``complete`` time: the engine's completion path)."""
        if self.complete_s:
            then = self._after_complete(then)
        complete = self.planner.complete if self.events is None else self._complete
        ops = graph.ops
        if len(ops) == 1:  # the common case: no dependencies to follow
            self._execute_one(graph, ops[0], complete, then)
        else:
            self._execute_graph(graph, complete, then)

    # Closures live in helpers of their own: a function that makes one pays for cells
    # for its captured variables on every call, the paths that make none included.
    def _after_complete(self, then: Callable[[], None]) -> Callable[[], None]:
        delay = self.complete_s

        def completed() -> None:
            self.cpu(delay, then)

        return completed

    def _execute_one(
        self, graph: TransferGraph, only: TransferOp,
        complete: Callable[[TransferGraph, TransferOp], None], then: Callable[[], None],
    ) -> None:
        store = self.store if only.path == REMOTE_WRITE else None

        def single() -> None:
            complete(graph, only)
            if store is not None:
                record_writes(graph, store, only)
            then()

        link, per_block, block_bytes = self._paths[only.path]
        if per_block is None or self.transfers is not None:
            self._send(graph, only, single)
        else:  # _send's steps for an op whose copies are per block, nothing recorded
            blocks = only.end - only.start
            copies = blocks * per_block or 1  # max(1, ...) of a count >= 0
            link.transfer(blocks * block_bytes, copies, single,
                          copies if self.count_ios else blocks)

    def _execute_graph(
        self, graph: TransferGraph, complete: Callable[[TransferGraph, TransferOp], None],
        then: Callable[[], None],
    ) -> None:
        started: set[int] = set()

        def start(op: TransferOp) -> None:
            started.add(op.op_id)
            self._send(graph, op, lambda: done(op))

        def done(op: TransferOp) -> None:
            complete(graph, op)
            if op.path == REMOTE_WRITE and self.store is not None:
                record_writes(graph, self.store, op)
            if graph.done:
                then()
                return
            for nxt in graph.runnable():
                if nxt.op_id not in started:
                    start(nxt)

        for op in graph.runnable():
            start(op)

    # -- requests ------------------------------------------------------------------------
    def submit(self, req: Any, arrival: float | None = None) -> None:
        """Schedule ``req``'s arrival (and, without a concurrency limit, its match)."""
        env = self.env
        arrival = req.t if arrival is None else arrival
        run = RequestRun(self, req, arrival)
        delay = arrival - env.now
        if delay < 0:
            raise ValueError(f"request {req.request_id} arrives at {arrival}, before now")
        fn = run.admitted if self.slots is None else run.queue
        if self._arrivals is None:
            call_later(env, delay, fn)
        else:
            schedule_arrival(env, self._arrivals, delay, fn)

    def result(self, wall_s: float) -> TimingResult:
        """The replay's result once the environment ran out of events."""
        for link in self.links.values():
            link.finish()
        records = sorted(self.records, key=itemgetter(1))  # by arrival, stable
        return TimingResult(
            planner=self.planner,
            wall_s=wall_s,
            span_s=self.env.now,
            links=self.links,
            records=records,
            transfers=self.transfers,
            events=self.events,
        )

    def submit_next(self) -> None:
        """One-at-a-time pacing: the next request starts now."""
        if self._pending:
            self.submit(self._pending.pop(), self.env.now)


def replay_timing(
    inp: ReplayInput,
    profile: HardwareProfile,
    *,
    speed: float | str | None = None,
    progress: bool | None = None,
    record_transfers: bool = False,
    record_events: bool = False,
) -> TimingResult:
    """Replay ``inp`` in simulated time on ``profile``'s devices.

    ``speed``: None replays at the trace's timestamps; a number X compresses time X-fold
    (as ``flexkv-run replay --speed X``); ``"max"`` runs one request at a time in trace
    order, each starting when the previous one's PUT and decode are over (as
    ``flexkv-run replay --speed max``). ``record_transfers``: keep a
    :class:`TransferRecord` per simulated op in ``TimingResult.transfers`` (its time
    on the link, fixed latency included; the twin has no device queue).
    ``record_events``: log every planner call in ``TimingResult.events``, as the
    engine's tracer does (:mod:`.ordered`).
    """
    requests = inp.requests
    if isinstance(speed, (int, float)):
        requests = [replace(r, t=r.t / speed) for r in requests]
    span_hint = (requests[-1].t - requests[0].t) if requests else 0.0
    model = TimingModel(inp, profile, bin_s=max(span_hint / UTILISATION_BINS, 1e-3))
    if record_transfers:
        model.transfers = []
    if record_events:
        model.events = []
    env = model.env
    bar = progress_bar(len(requests), "simulate", progress)
    begin = time.perf_counter()
    step = max(len(requests) // 100, 1)
    with cyclic_gc_paused():
        if speed == "max":
            model.sequential = True
            model.working = WorkingPool(working_blocks(requests, 1))
            model._pending = list(reversed(requests))
            model.submit_next()
            run_events(env, arrivals=model._arrivals)
            bar.update(len(requests))
        else:
            for i, req in enumerate(requests):
                model.submit(req)
                if i % step == step - 1:
                    # Advance in slices so the progress bar moves and memory stays bounded.
                    if req.t > env.now:
                        run_events(env, until=req.t, arrivals=model._arrivals)
                    bar.update(step)
            run_events(env, arrivals=model._arrivals)
            bar.update(len(requests) - (len(requests) // step) * step)
    result = model.result(time.perf_counter() - begin)
    bar.close()
    return result
