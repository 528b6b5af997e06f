"""Several engine instances on one remote store: requests routed, the store shared.

A serving cluster routes each request to one of ``N`` instances; every instance has its
own GPU prefix cache, CPU and SSD tiers and remote index, and all of them write to and
read from one remote store (:class:`~.store.StoreModel`). An instance hits blocks another
stored once its existence check finds them (``Planner.plan_get``'s ``remote_known``).

Routing: ``round-robin`` sends request ``i`` to instance ``i % N`` (no affinity: the
turns of a conversation land on different instances, and only the store connects them);
``prefix`` sends a request by its first block key (the system prompt or conversation
start), the affinity a prefix-aware router gives.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import simpy

from flexkv_engine.replay_input import ReplayInput
from flexkv_engine.trace import RequestRecord

from ..calls import run_events
from ..hardware import HardwareProfile
from ..progress import cyclic_gc_paused
from .hitrate import HitRateResult, Instance
from .store import StoreModel
from .timing import UTILISATION_BINS, TimingModel, TimingResult

ROUTES = ("round-robin", "prefix")


@dataclass
class SharedResult:
    """Per-instance results (hit-rate or timing) and the store they shared."""

    instances: list[Any]  # HitRateResult or TimingResult, one per instance
    store: StoreModel | None
    wall_s: float


def route(inp: ReplayInput, instances: int, how: str = "round-robin") -> list[ReplayInput]:
    """Split ``inp``'s requests over ``instances`` inputs (same config, trace order kept)."""
    if instances < 1:
        raise ValueError(f"instances must be >= 1, got {instances}")
    if how not in ROUTES:
        raise ValueError(f"unknown route {how!r}; choose from: {', '.join(ROUTES)}")
    parts: list[list[RequestRecord]] = [[] for _ in range(instances)]
    for i, req in enumerate(inp.requests):
        if how == "round-robin" or not req.keys:
            parts[i % instances].append(req)
        else:
            parts[req.keys[0] % instances].append(req)
    return [replace(inp, requests=part) for part in parts]


def replay_shared_hitrate(inputs: Sequence[ReplayInput], *, shared: bool = True) -> SharedResult:
    """Hit-rate replay of the instances in time order (ties: instance order).

    ``shared=False`` gives every instance a store of its own, an equal part of the
    store-wide capacity: the baseline that shows what sharing adds.
    """
    runs = [
        Instance(inp, store) for inp, store in zip(inputs, _stores(inputs, shared), strict=True)
    ]
    streams = [
        [((req.t, i, j), req) for j, req in enumerate(inp.requests)] for i, inp in enumerate(inputs)
    ]
    merged = heapq.merge(*streams)
    begin = time.perf_counter()
    with cyclic_gc_paused():
        for (_, i, _), req in merged:
            runs[i].replay(req)
    wall_s = time.perf_counter() - begin
    results = [HitRateResult(run.planner, wall_s, run.records) for run in runs]
    return SharedResult(results, runs[0].store if shared and runs else None, wall_s)


def replay_shared_timing(
    inputs: Sequence[ReplayInput],
    profile: HardwareProfile,
    *,
    speed: float | None = None,
    shared: bool = True,
) -> SharedResult:
    """Timing replay of the instances in one simulated clock, each on its own devices.

    Every instance has its own PCIe, SSD and network link (one node each); they share
    the store's contents (``shared=False``: a part each, as in hit-rate mode). ``speed``
    compresses time as in ``replay_timing``.
    """
    env = simpy.Environment()
    models = []
    for inp, store in zip(inputs, _stores(inputs, shared), strict=True):
        requests = inp.requests
        if speed is not None:
            requests = [replace(r, t=r.t / speed) for r in requests]
        span = (requests[-1].t - requests[0].t) if requests else 0.0
        model = TimingModel(inp, profile, max(span / UTILISATION_BINS, 1e-3), env=env, store=store)
        for req in requests:
            model.submit(req)
        models.append(model)
    begin = time.perf_counter()
    with cyclic_gc_paused():
        run_events(env)  # the Calls stepped directly, in env.run()'s order
    wall_s = time.perf_counter() - begin
    results: list[TimingResult] = [m.result(wall_s) for m in models]
    return SharedResult(list(results), models[0].store if shared and models else None, wall_s)


def _stores(inputs: Sequence[ReplayInput], shared: bool) -> list[StoreModel | None]:
    """One store for all instances, or an equal part of its capacity for each."""
    if not inputs:
        return []
    if shared:
        return [StoreModel.for_config(inputs[0].config)] * len(inputs)
    return [StoreModel.for_config(inp.config, len(inputs)) for inp in inputs]
