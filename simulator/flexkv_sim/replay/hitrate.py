"""Hit-rate mode: every request's GET, then its PUT, completed at once, in time order.

No bytes move and no time passes between a GET and its PUT, so this is as fast as the
core allows. It runs the same planner as the engine (``build_planner``), so a trace
replayed one request at a time on hardware (``flexkv-run replay --speed max``) hits the
same blocks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from flexkv_engine.core.planner import Planner
from flexkv_engine.gpu_cache import GpuPrefixCache
from flexkv_engine.planning import build_planner
from flexkv_engine.replay_input import ReplayInput
from flexkv_engine.request_life import HIT_COLUMNS, tier_tokens
from flexkv_engine.trace import RequestRecord

from ..progress import cyclic_gc_paused, progress_bar
from .store import StoreModel, fail_lost_reads, record_writes

RECORD_COLUMNS = HIT_COLUMNS  # request_life.COLUMNS up to in_flight (no timing)


@dataclass
class HitRateResult:
    planner: Planner
    wall_s: float
    records: list[tuple] = field(default_factory=list)  # rows of RECORD_COLUMNS


def replay_hitrate(
    inp: ReplayInput, *, progress: bool | None = None, store: StoreModel | None = None
) -> HitRateResult:
    """Replay ``inp`` through a fresh planner built from its config.

    Per request, in the order ``flexkv-run replay`` uses: GPU prefix cache match, GET,
    PUT, then the request's blocks join the GPU prefix cache. A CPU tier alone goes
    through ``Planner.access`` (the same index calls without transfer graphs). With a
    remote tier, ``store`` is the shared store (default: a fresh one of the config's).
    """
    instance = Instance(inp, store)
    bar = progress_bar(len(inp.requests), "replay", progress)
    start = time.perf_counter()
    replay = instance.replay
    with cyclic_gc_paused():
        for i, req in enumerate(inp.requests):
            replay(req)
            if i & 1023 == 1023:
                bar.update(1024)
    wall_s = time.perf_counter() - start
    bar.update(len(inp.requests) & 1023)
    bar.close()
    return HitRateResult(planner=instance.planner, wall_s=wall_s, records=instance.records)


class Instance:
    """One engine instance of a hit-rate replay: planner, GPU prefix cache, its records."""

    def __init__(self, inp: ReplayInput, store: StoreModel | None = None) -> None:
        config = inp.config
        self.planner = planner = build_planner(config.cache_config, track_ids=False)
        if store is None:
            store = StoreModel.for_config(config)
        self.store = store if planner.remote is not None else None
        self.gpu = GpuPrefixCache(config.serving_config.num_gpu_blocks, track_ids=False)
        self.step = (
            _access_step(planner) if planner.single_tier else _graph_step(planner, self.store)
        )
        self.records: list[tuple] = []

    def replay(self, req: RequestRecord) -> None:
        keys, gpu, step = req.keys, self.gpu, self.step
        if gpu.index is None:  # no GPU prefix cache: nothing to match or keep
            hits, in_flight = step(req, 0)
            gpu_tokens = 0
        else:
            gpu_blocks, gpu_handle = gpu.acquire(keys, req.t)
            hits, in_flight = step(req, gpu_blocks)
            gpu.release(keys, gpu_handle, req.t)
            gpu_tokens = min(gpu_blocks * self.planner.tokens_per_block, req.num_tokens)
        self.records.append((req.request_id, req.t, req.op, req.num_tokens, len(keys),
                             gpu_tokens, *hits, in_flight))


Step = Callable[[RequestRecord, int], tuple[tuple[int, int, int], bool]]


def _graph_step(planner: Planner, store: StoreModel | None = None) -> Step:
    """GET then PUT through transfer graphs, completed at once (any set of tiers)."""
    tpb, plan_get, plan_put, run = (
        planner.tokens_per_block, planner.plan_get, planner.plan_put, planner.run,
    )

    def step(req: RequestRecord, gpu_blocks: int) -> tuple[tuple[int, int, int], bool]:
        keys, tokens, now = req.keys, req.num_tokens, req.t
        hits = [0, 0, 0]
        in_flight = False
        if req.op == "get":
            known = store.known(keys, planner.remote_ready(keys)) if store is not None else 0
            graph = plan_get(req.request_id, keys, tokens, now, gpu_blocks=gpu_blocks,
                             remote_known=known)
            if store is not None:
                fail_lost_reads(planner, graph, store)
            run(graph)
            in_flight = graph.in_flight
            hits = list(tier_tokens(0, graph.served, tpb, tokens)[1:])
        put = run(plan_put(req.request_id, keys, tokens, now))
        if store is not None:
            record_writes(put, store)
        return (hits[0], hits[1], hits[2]), in_flight

    return step


def _access_step(planner: Planner) -> Step:
    """A CPU tier alone: ``Planner.access`` makes the same index calls without graphs."""
    tpb, access, graph_step = planner.tokens_per_block, planner.access, _graph_step(planner)

    def step(req: RequestRecord, gpu_blocks: int) -> tuple[tuple[int, int, int], bool]:
        if req.op != "get":
            return graph_step(req, gpu_blocks)
        tokens = req.num_tokens
        first, end = access(req.request_id, req.keys, tokens, req.t, gpu_blocks=gpu_blocks)
        return (min(end * tpb, tokens) - min(first * tpb, tokens), 0, 0), False

    return step
